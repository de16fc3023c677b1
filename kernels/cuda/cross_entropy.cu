// Soft-label cross-entropy on the GPU (the twin of kernels/cross_entropy.c): one block per
// row computes the row's log-sum-exp (shifted by its max) and its loss or gradient in double
// with fixed-tree block reductions; the forward then sums the per-row losses in one block.
// No atomics, so results are bitwise reproducible.
#include <math.h>

#include "ops.cuh"

// The launch of the per-row kernels: one block per row (blocks stride over the rows when B
// exceeds the grid cap), its threads J rounded up to whole warps, at most TMIX_CUDA_BLOCK.
static tmix_cuda_plan2d row_plan(int64_t B, int64_t J)
{
    tmix_cuda_plan2d p;
    p.grid = dim3(tmix_cuda_blocks(B, 1));
    p.block = dim3(J >= TMIX_CUDA_BLOCK ? TMIX_CUDA_BLOCK : (unsigned)((J + 31) / 32 * 32));
    return p;
}

// tmix_block_reduce with the result given to every thread of the block.
template <typename T, typename Op>
static __device__ __forceinline__ T block_all_reduce(T v, Op op, T identity)
{
    __shared__ T result;
    v = tmix_block_reduce(v, op, identity);
    if (threadIdx.x == 0)
        result = v;
    __syncthreads();
    // The next call's first __syncthreads (in tmix_block_reduce) keeps thread 0 from
    // overwriting result before every thread has read it.
    return result;
}

// log sum_j exp(z_j), shifted by the max so that large logits do not overflow; every thread
// of the block gets it.
static __device__ double row_logsumexp(const float *z, int64_t J) // z: (J)
{
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < J; j += blockDim.x)
        mx = tmix_cuda_max()(mx, z[j]);
    const double m = block_all_reduce(mx, tmix_cuda_max(), -INFINITY);
    double sum = 0.0;
    for (int64_t j = threadIdx.x; j < J; j += blockDim.x)
        sum += exp(z[j] - m);
    return m + log(block_all_reduce(sum, tmix_cuda_sum(), 0.0));
}

// partials[b] = -sum_j targets[b, j] * log_softmax(logits[b])[j]
static __global__ void cross_entropy_rows_kernel(double *partials,      // (B)
                                                 const float *logits,   // (B, J)
                                                 const float *targets,  // (B, J)
                                                 int64_t B, int64_t J)
{
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        const float *zb = logits + b * J, *yb = targets + b * J; // (J)
        const double lse = row_logsumexp(zb, J);
        double acc = 0.0;
        for (int64_t j = threadIdx.x; j < J; j += blockDim.x)
            acc += yb[j] * (lse - zb[j]);
        acc = tmix_block_reduce(acc, tmix_cuda_sum(), 0.0);
        if (threadIdx.x == 0)
            partials[b] = acc;
    }
}

// One block: loss = (sum of the B partials, in a fixed order) / B.
static __global__ void cross_entropy_mean_kernel(float *loss,            // (1)
                                                 const double *partials, // (B)
                                                 int64_t B)
{
    double s = 0.0;
    for (int64_t b = threadIdx.x; b < B; b += blockDim.x)
        s += partials[b];
    s = tmix_block_reduce(s, tmix_cuda_sum(), 0.0);
    if (threadIdx.x == 0)
        loss[0] = (float)(s / (double)B);
}

// dlogits[b, j] += (softmax(logits[b])[j] * sum_i targets[b, i] - targets[b, j]) / B
static __global__ void cross_entropy_backward_kernel(float *dlogits,        // (B, J)
                                                     const float *logits,   // (B, J)
                                                     const float *targets,  // (B, J)
                                                     int64_t B, int64_t J)
{
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        const float *zb = logits + b * J, *yb = targets + b * J; // (J)
        float *db = dlogits + b * J;                             // (J)
        const double lse = row_logsumexp(zb, J);
        double ysum = 0.0;
        for (int64_t j = threadIdx.x; j < J; j += blockDim.x)
            ysum += yb[j];
        ysum = block_all_reduce(ysum, tmix_cuda_sum(), 0.0);
        for (int64_t j = threadIdx.x; j < J; j += blockDim.x)
            db[j] = (float)(db[j] + (exp(zb[j] - lse) * ysum - yb[j]) / (double)B);
    }
}

extern "C" int tmix_cuda_cross_entropy_forward(tmix_backend *be, tmix_tensor *loss,
                                               const tmix_tensor *logits,
                                               const tmix_tensor *targets)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t B = logits->shape[0], J = logits->shape[1];
    void *scratch;
    TMIX_TRY(tmix_cuda_scratch(st, (size_t)B * sizeof(double), &scratch));
    double *partials = (double *)scratch;
    tmix_cuda_plan2d g = row_plan(B, J);
    cross_entropy_rows_kernel<<<g.grid, g.block, 0, st->stream>>>(partials, tmix_f32(logits),
                                                                   tmix_f32(targets), B, J);
    CUDA_CHECK(cudaGetLastError());
    cross_entropy_mean_kernel<<<1, TMIX_CUDA_BLOCK, 0, st->stream>>>(tmix_f32(loss), partials,
                                                                      B);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int tmix_cuda_cross_entropy_backward(tmix_backend *be, tmix_tensor *dlogits,
                                                const tmix_tensor *logits,
                                                const tmix_tensor *targets)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t B = logits->shape[0], J = logits->shape[1];
    tmix_cuda_plan2d g = row_plan(B, J);
    cross_entropy_backward_kernel<<<g.grid, g.block, 0, st->stream>>>(
        tmix_f32(dlogits), tmix_f32(logits), tmix_f32(targets), B, J);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
