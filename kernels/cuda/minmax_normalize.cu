// Per-sample min-max normalisation on the GPU (the twin of kernels/minmax_normalize.c), in two
// passes: partial min/max over slices of each sample, then every block of the second pass
// folds its sample's partials and rescales. min and max are exact in any order, and the
// second pass starts only after the first has read everything, so out may be in.
#include <math.h>

#include "ops.cuh"

// Blocks per sample in the first pass: enough to spread one big image over the GPU, few
// enough that the second pass folds the partials cheaply.
#define MAX_SLICES 32

// part[n, s] = (min, max) of the elements of sample n that slice s (blockIdx.x) covers.
static __global__ void minmax_partial_kernel(float *part,      // (N, slices, 2)
                                             const float *in,  // (N, M)
                                             int64_t N, int64_t M)
{
    const int64_t slices = gridDim.x;
    for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
        const float *x = in + n * M;
        float lo = INFINITY, hi = -INFINITY;
        TMIX_CUDA_LOOP(i, M) {
            lo = tmix_cuda_min()(lo, x[i]);
            hi = tmix_cuda_max()(hi, x[i]);
        }
        lo = tmix_block_reduce(lo, tmix_cuda_min(), INFINITY);
        hi = tmix_block_reduce(hi, tmix_cuda_max(), -INFINITY);
        if (threadIdx.x == 0) {
            part[(n * slices + blockIdx.x) * 2] = lo;
            part[(n * slices + blockIdx.x) * 2 + 1] = hi;
        }
    }
}

// out[n] = (in[n] - min) / max(max - min, 1e-12), in double and rounded once. A NaN in the
// sample makes min and max NaN, and so every output of the sample, as in PyTorch.
static __global__ void minmax_apply_kernel(float *out,        // (N, M)
                                           const float *in,   // (N, M)
                                           const float *part, // (N, slices, 2)
                                           int64_t N, int64_t M, int slices)
{
    for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
        const float *pn = part + n * slices * 2;
        float lo = pn[0], hi = pn[1];
        for (int s = 1; s < slices; s++) {
            lo = tmix_cuda_min()(lo, pn[2 * s]);
            hi = tmix_cuda_max()(hi, pn[2 * s + 1]);
        }
        const double inv_range = 1.0 / fmax((double)hi - lo, 1e-12);
        const float *x = in + n * M;
        float *y = out + n * M;
        TMIX_CUDA_LOOP(i, M)
            y[i] = (float)(((double)x[i] - lo) * inv_range);
    }
}

extern "C" int tmix_cuda_minmax_normalize_forward(tmix_backend *be, tmix_tensor *out,
                                                  const tmix_tensor *in)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t N = in->shape[0], M = tmix_cuda_numel(in) / N;
    // Slices of at least 8 elements per thread, so small samples take one block.
    unsigned slices = tmix_cuda_blocks(M, 8 * TMIX_CUDA_BLOCK);
    if (slices > MAX_SLICES)
        slices = MAX_SLICES;
    unsigned samples = tmix_cuda_blocks(N, 1);
    void *scratch;
    TMIX_TRY(tmix_cuda_scratch(st, (size_t)N * slices * 2 * sizeof(float), &scratch));
    float *part = (float *)scratch;

    minmax_partial_kernel<<<dim3(slices, samples), TMIX_CUDA_BLOCK, 0, st->stream>>>(
        part, tmix_f32(in), N, M);
    CUDA_CHECK(cudaGetLastError());
    minmax_apply_kernel<<<dim3(tmix_cuda_blocks(M, TMIX_CUDA_BLOCK), samples), TMIX_CUDA_BLOCK,
                          0, st->stream>>>(tmix_f32(out), tmix_f32(in), part, N, M,
                                           (int)slices);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
