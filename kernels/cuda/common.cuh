// Shared by every file of the CUDA backend plugin: the backend state, the check macros, the
// launch geometry and the deterministic block reductions.
#ifndef TMIX_CUDA_COMMON_CUH
#define TMIX_CUDA_COMMON_CUH

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>
#include <cudnn.h>

// The core's headers are C; the core itself is resolved from the executable at dlopen time.
extern "C" {
#include "backend.h"
#include "error.h"
}

// What a CUDA backend keeps beside its tmix_backend: one device, one stream that every op
// and copy is queued on (so ops run in call order), the cuDNN handle bound to that stream,
// and a scratch buffer for the partial results of multi-kernel reductions.
struct tmix_cuda_state {
    int device;
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    void *scratch;
    size_t scratch_bytes;
    uint64_t scratch_generation; // counts scratch allocations: what a CUDA graph baked in
    tmix_precision precision; // of the convolutions (tmix_backend_set_precision)
    char name[16]; // "cuda:N", what be->name points at
};

static inline tmix_cuda_state *tmix_cuda_state_of(tmix_backend *be)
{
    return (tmix_cuda_state *)be->state;
}

// Records "<name>: <stmt> failed in <func> (<file>:<line>) on device <d>: <why>" with
// tmix_fail and returns code. Clears the calling thread's CUDA error, so that a recoverable
// failure (out of memory, a bad argument) is not reported again by the next launch check.
int tmix_cuda_error(int code, const char *stmt, const char *func, const char *file, int line,
                    const char *why);

// The check-macro generator (ggml style): evaluates stmt once and, unless it returned
// `success`, records what failed and where, and returns `code` from the calling function.
#define TMIX_GPU_CHECK_GEN(stmt, success, code, describe)                                    \
    do {                                                                                      \
        auto tmix_gpu_status_ = (stmt);                                                       \
        if (tmix_gpu_status_ != (success))                                                    \
            return tmix_cuda_error((code), #stmt, __func__, __FILE__, __LINE__,               \
                                   describe(tmix_gpu_status_));                               \
    } while (0)

#define CUDA_CHECK(stmt) TMIX_GPU_CHECK_GEN(stmt, cudaSuccess, TMIX_ECUDA, cudaGetErrorString)
#define CUDNN_CHECK(stmt) \
    TMIX_GPU_CHECK_GEN(stmt, CUDNN_STATUS_SUCCESS, TMIX_ECUDNN, cudnnGetErrorString)

// Makes st's device current for the calling thread: a backend may be used from a thread
// other than the one that opened it, and the current device is per thread.
static inline cudaError_t tmix_cuda_use(const tmix_cuda_state *st)
{
    int current = -1;
    cudaError_t e = cudaGetDevice(&current);
    if (e != cudaSuccess || current == st->device)
        return e;
    return cudaSetDevice(st->device);
}

// bytes rounded up to whole 256-byte lines: where one buffer is cut into several, each part
// starts aligned as cudaMalloc's memory does.
static inline size_t tmix_cuda_align256(size_t bytes)
{
    return (bytes + 255) / 256 * 256;
}

// A scratch buffer of at least `bytes` on st's device, valid until the next call. Growing it
// waits for the stream first, since queued kernels may still use the old buffer.
int tmix_cuda_scratch(tmix_cuda_state *st, size_t bytes, void **out);

static inline int64_t tmix_cuda_numel(const tmix_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

// ---- launch geometry -----------------------------------------------------------------------
// Kernels loop with grid strides over every index, so grids are capped, never rounded up to
// fit; nothing assumes a size is a multiple of the block size.
#define TMIX_CUDA_BLOCK 256
#define TMIX_CUDA_MAX_GRID 65535

static inline unsigned tmix_cuda_blocks(int64_t n, int64_t per_block)
{
    int64_t b = (n + per_block - 1) / per_block;
    return (unsigned)(b < 1 ? 1 : b > TMIX_CUDA_MAX_GRID ? TMIX_CUDA_MAX_GRID : b);
}

// For ops over `planes` contiguous rows of `len` elements each (N*C planes of H*W pixels):
// x walks a row, y walks the planes. Short rows share a block between several planes so
// that few threads idle.
struct tmix_cuda_plan2d {
    dim3 grid, block;
};

static inline tmix_cuda_plan2d tmix_cuda_plan(int64_t len, int64_t planes)
{
    unsigned bx = len >= TMIX_CUDA_BLOCK ? TMIX_CUDA_BLOCK : (unsigned)((len + 31) / 32 * 32);
    unsigned by = TMIX_CUDA_BLOCK / bx;
    tmix_cuda_plan2d p;
    p.block = dim3(bx, by);
    p.grid = dim3(tmix_cuda_blocks(len, bx), tmix_cuda_blocks(planes, by));
    return p;
}

// Grid-stride loops over a 1-D launch (i) and over the two axes of a tmix_cuda_plan launch.
#define TMIX_CUDA_LOOP(i, n)                                                                 \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                \
         i += (int64_t)gridDim.x * blockDim.x)
#define TMIX_CUDA_LOOP_Y(j, n)                                                               \
    for (int64_t j = (int64_t)blockIdx.y * blockDim.y + threadIdx.y; j < (n);                \
         j += (int64_t)gridDim.y * blockDim.y)

// ---- deterministic reductions ----------------------------------------------------------------
// Fixed trees of shuffles: for a given launch geometry the order of every addition is fixed,
// so results are bitwise reproducible (no atomics).
struct tmix_cuda_sum {
    template <typename T>
    __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
// min and max where a NaN wins, as in torch.min / torch.max (fminf and fmaxf drop NaNs).
struct tmix_cuda_min {
    __device__ __forceinline__ float operator()(float a, float b) const
    {
        return a < b || a != a ? a : b;
    }
};
struct tmix_cuda_max {
    __device__ __forceinline__ float operator()(float a, float b) const
    {
        return a > b || a != a ? a : b;
    }
};

// Reduces v over the 32 lanes of a full warp; lane 0 holds the result.
template <typename T, typename Op>
static __device__ __forceinline__ T tmix_warp_reduce(T v, Op op)
{
    for (int offset = 16; offset > 0; offset >>= 1)
        v = op(v, __shfl_down_sync(0xffffffffu, v, offset));
    return v;
}

// Reduces v over a 1-D block (blockDim.x a multiple of 32, at most 1024); thread 0 holds the
// result. Every thread of the block must call it.
template <typename T, typename Op>
static __device__ __forceinline__ T tmix_block_reduce(T v, Op op, T identity)
{
    __shared__ T warp_part[32];
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = tmix_warp_reduce(v, op);
    __syncthreads(); // a previous call may still be reading warp_part
    if (lane == 0)
        warp_part[warp] = v;
    __syncthreads();
    v = identity;
    if (warp == 0) {
        if (lane < blockDim.x / 32)
            v = warp_part[lane];
        v = tmix_warp_reduce(v, op);
    }
    return v;
}

#endif
