// The CUDA emulator's runtime header: what kernels/cuda/*.cu use of the CUDA runtime API and
// of the kernel language, implemented on the CPU (runtime.cc), so that the CUDA plugin's own
// sources run in CI without a GPU. Device memory is host memory; a stream runs its work at
// once, in call order; a kernel runs its blocks one after another, its threads as plain
// calls, or as fibers when the kernel waits at barriers or shuffles (cu2cc.py decides), and
// one kernel runs at a time in the process.
// The build force-includes this header, so __CUDACC__ and __CUDA_ARCH__ code paths are the
// ones compiled, as under nvcc.
#ifndef TMIX_EMU_CUDA_RUNTIME_H
#define TMIX_EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>

#define CUDART_VERSION 13000

// ---- the kernel language -------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static // one block runs at a time

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_)
    {
    }
};

// One kernel runs at a time in the process (runtime.cc), so a thread's indices and a block's
// shared memory are plain globals: thread-local ones would cost every read a call to
// __tls_get_addr in a dlopened library, most of the emulator's time.
extern uint3 tmix_emu_thread_idx, tmix_emu_block_idx;
extern dim3 tmix_emu_block_dim, tmix_emu_grid_dim;
#define threadIdx tmix_emu_thread_idx
#define blockIdx  tmix_emu_block_idx
#define blockDim  tmix_emu_block_dim
#define gridDim   tmix_emu_grid_dim

void tmix_emu_syncthreads(void);
uint64_t tmix_emu_shfl_down(uint64_t bits, unsigned delta);
[[noreturn]] void tmix_emu_trap(void);
void tmix_emu_nanosleep(unsigned ns);

static inline void __syncthreads(void)
{
    tmix_emu_syncthreads();
}
template <typename T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta)
{
    static_assert(sizeof(T) <= sizeof(uint64_t), "shuffles move at most 8 bytes");
    (void)mask; // the emulator checks that the whole warp takes part instead
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = tmix_emu_shfl_down(bits, delta);
    memcpy(&v, &bits, sizeof v);
    return v;
}
static inline void __trap(void)
{
    tmix_emu_trap();
}
static inline void __nanosleep(unsigned ns)
{
    tmix_emu_nanosleep(ns);
}

// A block's threads run one at a time, so an atomic is a plain read-modify-write.
template <typename T> static inline T atomicAdd(T *p, T v)
{
    T old = *p;
    *p = old + v;
    return old;
}

// Rounded as written (this build does not contract a * b + c into one fma).
static inline double __dmul_rn(double a, double b)
{
    return a * b;
}
static inline double __dadd_rn(double a, double b)
{
    return a + b;
}
static inline double __dsub_rn(double a, double b)
{
    return a - b;
}
static inline double __ddiv_rn(double a, double b)
{
    return a / b;
}
static inline float __fmul_rn(float a, float b)
{
    return a * b;
}
static inline float __fadd_rn(float a, float b)
{
    return a + b;
}
static inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float __uint_as_float(unsigned u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// ---- the runtime API -----------------------------------------------------------------------

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorStubLibrary = 34,
    cudaErrorDevicesUnavailable = 46,
    cudaErrorSystemDriverMismatch = 803,
    cudaErrorCompatNotSupportedOnDevice = 804,
    cudaErrorNoKernelImageForDevice = 209,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotSupported = 801,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureWrongThread = 908,
    cudaErrorIllegalState = 401,
    cudaErrorLaunchFailure = 719,
};

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};

enum cudaDeviceAttr { cudaDevAttrIpcEventSupport = 125 };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold = 4 };

#define cudaStreamNonBlocking  0x01u
#define cudaEventDefault       0x00u
#define cudaEventDisableTiming 0x02u
#define cudaEventInterprocess  0x04u
#define cudaHostAllocPortable  0x01u

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;
typedef struct CUmemPool_st *cudaMemPool_t;

typedef struct {
    char reserved[64];
} cudaIpcMemHandle_t;
typedef struct {
    char reserved[64];
} cudaIpcEventHandle_t;

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor;
    int multiProcessorCount;
};

struct cudaFuncAttributes {
    int maxThreadsPerBlock;
    int numRegs;
};

const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaDriverGetVersion(int *version);
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceGetPCIBusId(char *out, int len, int device);
cudaError_t tmix_emu_func_attributes(cudaFuncAttributes *attr);
template <typename F> static inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *attr, F *)
{
    return tmix_emu_func_attributes(attr);
}

cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t s);
cudaError_t cudaFreeAsync(void *p, cudaStream_t s);
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total);
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int device);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void *value);
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t keep);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s);

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t from, cudaEvent_t to);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t *h, void *p);
cudaError_t cudaIpcGetEventHandle(cudaIpcEventHandle_t *h, cudaEvent_t e);

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

// ---- kernel launches -----------------------------------------------------------------------
// cu2cc.py turns `kernel<<<grid, block, shmem, stream>>>(args)` into
// `tmix_emu::launch<FIBERS>("kernel", kernel, grid, block, shmem, stream)(args)`.

namespace tmix_emu
{

struct kernel_run {
    const char *name;
    dim3 grid, block;
    bool fibers; // the kernel waits at barriers or shuffles: its threads need their own stacks
    std::function<void()> thread; // one thread's work, its indices set by the caller
};

// Runs w on stream s: now, or at each replay of the graph s is capturing.
void enqueue(cudaStream_t s, std::function<void()> w);

// Runs the kernel on s's work (now, or into the graph s is capturing); a bad configuration
// becomes the thread's last error, as on a GPU.
void submit(kernel_run run, size_t shmem, cudaStream_t s);

template <typename... P> struct launcher {
    kernel_run run;
    size_t shmem;
    cudaStream_t stream;
    void (*kernel)(P...);

    // Arguments are converted to the parameters' types at the call, and copied, as CUDA does.
    void operator()(std::decay_t<P>... args)
    {
        std::tuple<std::decay_t<P>...> copied(args...);
        void (*k)(P...) = kernel;
        run.thread = [k, copied]() { std::apply(k, copied); };
        submit(run, shmem, stream);
    }
};

template <bool Fibers, typename... P>
launcher<P...> launch(const char *name, void (*kernel)(P...), dim3 grid, dim3 block,
                      size_t shmem = 0, cudaStream_t stream = nullptr)
{
    launcher<P...> l;
    l.run.name = name;
    l.run.grid = grid;
    l.run.block = block;
    l.run.fibers = Fibers;
    l.shmem = shmem;
    l.stream = stream;
    l.kernel = kernel;
    return l;
}

} // namespace tmix_emu

#endif
