// The conversions around a bf16 convolution (conv2d.cu, layers.cu): float32 NCHW to bfloat16
// NHWC with the channels padded to a multiple of 8 (tensor-core kernels read 16-byte vectors
// of channels), and back. Both are the same batched transpose of a (rows, cols) matrix through
// a 32x32 tile in shared memory, so reads and writes are both coalesced. Where a plane has
// fewer than 32 pixels (the weights: 1, 9 or 49 per channel) a tile would leave most of its
// threads idle, and one thread per element, reading a few pixels apart, does better.
#include <cuda_bf16.h>

#include "bf16_layout.cuh"

enum { TILE = 32 };

static __device__ __forceinline__ float to_float(float v) { return v; }
static __device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
static __device__ __forceinline__ void store(float *p, float v) { *p = v; }
static __device__ __forceinline__ void store(__nv_bfloat16 *p, float v)
{
    *p = __float2bfloat16_rn(v);
}

// dst[b][j][i] = src[b][i][j] (+ bias[j], then max(0, ·) when relu) for i < dst_cols,
// j < cols; src rows at or past `rows` read as 0 (the padding). A (TILE, TILE) block per
// tile; the grid strides over tiles in y and over the batch in z, so no size is capped by the
// grid.
template <typename S, typename D>
static __global__ void transpose_kernel(const S *__restrict__ src, D *__restrict__ dst,
                                        int64_t rows, int64_t cols, int64_t dst_cols,
                                        const float *__restrict__ bias, bool relu,
                                        int64_t batch)
{
    __shared__ float tile[TILE][TILE + 1]; // +1: no bank conflicts on the transposed read
    const int64_t tiles_y = (dst_cols + TILE - 1) / TILE;
    const int64_t j0 = (int64_t)blockIdx.x * TILE; // src column = dst row
    for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
        const S *s = src + b * rows * cols;
        D *d = dst + b * cols * dst_cols;
        for (int64_t ty = blockIdx.y; ty < tiles_y; ty += gridDim.y) {
            const int64_t i0 = ty * TILE; // src row = dst column
            const int64_t i = i0 + threadIdx.y, j = j0 + threadIdx.x;
            tile[threadIdx.y][threadIdx.x] = i < rows && j < cols ? to_float(s[i * cols + j]) : 0.0f;
            __syncthreads();
            const int64_t dj = j0 + threadIdx.y, di = i0 + threadIdx.x;
            if (dj < cols && di < dst_cols) {
                const float v = tile[threadIdx.x][threadIdx.y] + (bias ? bias[dj] : 0.0f);
                store(&d[dj * dst_cols + di], relu && v < 0.0f ? 0.0f : v);
            }
            __syncthreads(); // the next tile overwrites this one
        }
    }
}

// dst[b][j][i] = src[b][i][j] as transpose_kernel does, one thread per element of dst.
template <typename S, typename D>
static __global__ void transpose_small_kernel(const S *__restrict__ src, D *__restrict__ dst,
                                              int64_t rows, int64_t cols, int64_t dst_cols,
                                              const float *__restrict__ bias, bool relu,
                                              int64_t count)
{
    TMIX_CUDA_LOOP(k, count) {
        const int64_t i = k % dst_cols, j = k / dst_cols % cols, b = k / dst_cols / cols;
        const float v = (i < rows ? to_float(src[(b * rows + i) * cols + j]) : 0.0f) +
                        (bias ? bias[j] : 0.0f);
        store(&dst[k], relu && v < 0.0f ? 0.0f : v);
    }
}

static dim3 transpose_grid(int64_t cols, int64_t dst_cols, int64_t batch)
{
    const int64_t gx = (cols + TILE - 1) / TILE, gy = (dst_cols + TILE - 1) / TILE;
    return dim3((unsigned)gx, (unsigned)(gy < 65535 ? gy : 65535),
                (unsigned)(batch < 65535 ? batch : 65535));
}

// Launches the transpose that suits the shape: (rows, cols) to (cols, dst_cols) per batch.
template <typename S, typename D>
static int transpose(tmix_cuda_state *st, const S *src, D *dst, int64_t rows, int64_t cols,
                     int64_t dst_cols, const float *bias, bool relu, int64_t batch)
{
    if (rows < TILE || cols < TILE) {
        const int64_t count = batch * cols * dst_cols;
        transpose_small_kernel<S, D><<<tmix_cuda_blocks(count, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK,
                                       0, st->stream>>>(src, dst, rows, cols, dst_cols, bias,
                                                        relu, count);
    } else {
        transpose_kernel<S, D><<<transpose_grid(cols, dst_cols, batch), dim3(TILE, TILE), 0,
                                 st->stream>>>(src, dst, rows, cols, dst_cols, bias, relu, batch);
    }
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

int tmix_cuda_to_nhwc_bf16(tmix_cuda_state *st, void *dst, const float *src, int64_t n,
                           int64_t c, int64_t hw, int64_t c_pad)
{
    // Per image, src is a (c, hw) matrix and dst its (hw, c_pad) transpose.
    return transpose(st, src, (__nv_bfloat16 *)dst, c, hw, c_pad, nullptr, false, n);
}

int tmix_cuda_from_nhwc_bf16(tmix_cuda_state *st, float *dst, const void *src, int64_t n,
                             int64_t c, int64_t hw, const float *bias, bool relu)
{
    // Per image, src is a (hw, c) matrix and dst its (c, hw) transpose.
    return transpose(st, (const __nv_bfloat16 *)src, dst, hw, c, hw, bias, relu, n);
}
