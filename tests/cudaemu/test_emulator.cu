// The CUDA emulator's own tests: that it runs what the plugin's kernels rely on (barriers,
// shuffles, the block reductions of common.cuh, graphs that replay their arguments) and
// refuses what CUDA refuses. Built like the plugin's sources (cu2cc.py), linked with the
// emulator's runtime. usage: test_emulator CASE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.cuh"

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                    \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

// Every block sums its 256 values with tmix_block_reduce (shuffles and barriers).
static __global__ void block_sums(float *out, const float *in)
{
    const float v = in[blockIdx.x * blockDim.x + threadIdx.x];
    const float sum = tmix_block_reduce(v, tmix_cuda_sum(), 0.0f);
    if (threadIdx.x == 0)
        out[blockIdx.x] = sum;
}

// Each thread reads what its neighbour wrote to shared memory before the barrier.
static __global__ void rotate(int *out)
{
    __shared__ int slots[128];
    slots[threadIdx.x] = (int)threadIdx.x;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = slots[(threadIdx.x + 1) % blockDim.x];
}

static __global__ void add(int *x, int v)
{
    x[threadIdx.x] += v;
}

// Half a warp shuffles while the other half waits at the block's barrier: each waits for
// the other forever. (Threads that exit do not hold a barrier up, as on a GPU.)
static __global__ void mismatched(int *x)
{
    int v = (int)threadIdx.x;
    if (threadIdx.x < 16)
        v = __shfl_down_sync(0xffffffffu, v, 1);
    else
        __syncthreads();
    x[threadIdx.x] = v;
}

static __global__ void trap_kernel(void)
{
    __trap();
}

static int reductions(void)
{
    enum { BLOCKS = 5, THREADS = 256 };
    float *in, *out;
    EXPECT(cudaMalloc((void **)&in, BLOCKS * THREADS * sizeof(float)) == cudaSuccess);
    EXPECT(cudaMalloc((void **)&out, BLOCKS * sizeof(float)) == cudaSuccess);
    for (int i = 0; i < BLOCKS * THREADS; i++)
        in[i] = (float)(i % 7); // device memory is host memory here
    block_sums<<<BLOCKS, THREADS>>>(out, in);
    EXPECT(cudaGetLastError() == cudaSuccess);
    for (int b = 0; b < BLOCKS; b++) {
        float want = 0;
        for (int t = 0; t < THREADS; t++)
            want += (float)((b * THREADS + t) % 7);
        EXPECT(out[b] == want);
    }
    int *rot;
    EXPECT(cudaMalloc((void **)&rot, 2 * 128 * sizeof(int)) == cudaSuccess);
    rotate<<<2, 128>>>(rot);
    for (int i = 0; i < 256; i++)
        EXPECT(rot[i] == (i % 128 + 1) % 128);
    EXPECT(cudaFree(in) == cudaSuccess && cudaFree(out) == cudaSuccess &&
           cudaFree(rot) == cudaSuccess);
    return 0;
}

static int refusals(void)
{
    int *x;
    EXPECT(cudaMalloc((void **)&x, 64 * sizeof(int)) == cudaSuccess);
    add<<<1, 2048>>>(x, 1); // more threads than a block may have
    EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration);
    add<<<dim3(1, 70000), 1>>>(x, 1); // grid.y above 65535
    EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration);
    EXPECT(cudaGetLastError() == cudaSuccess); // taken by the read before
    int on_host;
    EXPECT(cudaFree(&on_host) == cudaErrorInvalidValue);
    EXPECT(cudaFree(x) == cudaSuccess);
    EXPECT(cudaFree(x) == cudaErrorInvalidValue); // twice
    void *p;
    setenv("TMIX_EMU_MEMORY_BYTES", "1000", 1);
    EXPECT(cudaMalloc(&p, 1001) == cudaErrorMemoryAllocation);
    unsetenv("TMIX_EMU_MEMORY_BYTES");
    return 0;
}

static int graphs(void)
{
    cudaStream_t s;
    int *x;
    EXPECT(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    EXPECT(cudaMalloc((void **)&x, 32 * sizeof(int)) == cudaSuccess);
    EXPECT(cudaMemsetAsync(x, 0, 32 * sizeof(int), s) == cudaSuccess);
    int v = 2;
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    add<<<1, 32, 0, s>>>(x, v);
    v = 100;           // the graph keeps the argument it was captured with
    EXPECT(x[0] == 0); // captured, not run
    cudaGraph_t g;
    cudaGraphExec_t exec;
    EXPECT(cudaStreamEndCapture(s, &g) == cudaSuccess);
    EXPECT(cudaGraphInstantiate(&exec, g, 0) == cudaSuccess);
    EXPECT(cudaGraphDestroy(g) == cudaSuccess);
    for (int i = 0; i < 3; i++)
        EXPECT(cudaGraphLaunch(exec, s) == cudaSuccess);
    EXPECT(cudaStreamSynchronize(s) == cudaSuccess);
    for (int i = 0; i < 32; i++)
        EXPECT(x[i] == 6);
    EXPECT(cudaGraphExecDestroy(exec) == cudaSuccess);

    // Waiting while capturing spoils the capture, as in CUDA.
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    add<<<1, 32, 0, s>>>(x, 1);
    EXPECT(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported);
    EXPECT(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated && !g);
    (void)cudaGetLastError();
    EXPECT(x[0] == 6);
    EXPECT(cudaFree(x) == cudaSuccess && cudaStreamDestroy(s) == cudaSuccess);
    return 0;
}

// A trapped kernel breaks the context for good: every later call fails.
static int trap(void)
{
    void *p;
    trap_kernel<<<1, 1>>>();
    EXPECT(cudaGetLastError() == cudaErrorLaunchFailure);
    EXPECT(cudaGetLastError() == cudaErrorLaunchFailure); // sticky
    EXPECT(cudaMalloc(&p, 16) == cudaErrorLaunchFailure);
    return 0;
}

// A block that cannot go on stops the process with a message naming the kernel and block:
// run in a child, whose stderr and end are checked.
static int stuck(void)
{
    int err[2];
    EXPECT(pipe(err) == 0);
    const pid_t child = fork();
    EXPECT(child >= 0);
    if (child == 0) {
        dup2(err[1], 2);
        int *x;
        if (cudaMalloc((void **)&x, 32 * sizeof(int)) == cudaSuccess)
            mismatched<<<1, 32>>>(x);
        _exit(0);
    }
    close(err[1]);
    char said[4096] = "";
    size_t got = 0;
    ssize_t n;
    while (got < sizeof said - 1 && (n = read(err[0], said + got, sizeof said - 1 - got)) > 0)
        got += (size_t)n;
    close(err[0]);
    int status;
    EXPECT(waitpid(child, &status, 0) == child);
    EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    EXPECT(strstr(said, "mismatched: block (0,0,0) is stuck"));
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(void);
    } cases[] = {{"reductions", reductions},
                 {"refusals", refusals},
                 {"graphs", graphs},
                 {"trap", trap},
                 {"stuck", stuck}};
    for (size_t i = 0; argc == 2 && i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(argv[1], cases[i].name) == 0)
            return cases[i].run();
    fprintf(stderr, "usage: %s reductions|refusals|graphs|trap|stuck\n", argv[0]);
    return 2;
}
