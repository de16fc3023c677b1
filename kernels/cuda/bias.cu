// The bias gradient on the GPU (the twin of kernels/bias.c): dbias[c] += the sum of dout over
// every dimension but 1. One thread or one block owns each channel and sums in a fixed order
// (in double), so the result is deterministic without atomics.
#include "ops.cuh"

// dout (N, C): one thread per channel walks the batch; neighbouring threads read
// neighbouring channels, so the loads coalesce.
static __global__ void bias_backward_rows_kernel(float *dbias,      // (C)
                                                 const float *dout, // (N, C)
                                                 int64_t N, int64_t C)
{
    TMIX_CUDA_LOOP(c, C) {
        double s = 0.0;
        for (int64_t n = 0; n < N; n++)
            s += dout[n * C + c];
        dbias[c] = (float)(dbias[c] + s);
    }
}

// dout (N, C, H, W): one block per channel, threads striding over its N*H*W elements.
static __global__ void bias_backward_planes_kernel(float *dbias,      // (C)
                                                   const float *dout, // (N, C, H, W)
                                                   int64_t N, int64_t C, int64_t HW)
{
    for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
        double s = 0.0;
        for (int64_t i = threadIdx.x; i < N * HW; i += blockDim.x) {
            int64_t n = i / HW;
            s += dout[(n * C + c) * HW + (i - n * HW)];
        }
        s = tmix_block_reduce(s, tmix_cuda_sum(), 0.0);
        if (threadIdx.x == 0)
            dbias[c] = (float)(dbias[c] + s);
    }
}

extern "C" int tmix_cuda_bias_backward(tmix_backend *be, tmix_tensor *dbias,
                                       const tmix_tensor *dout)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t N = dout->shape[0], C = dout->shape[1], HW = tmix_cuda_numel(dout) / (N * C);
    if (HW == 1)
        bias_backward_rows_kernel<<<tmix_cuda_blocks(C, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0,
                                    st->stream>>>(tmix_f32(dbias), tmix_f32(dout), N, C);
    else
        bias_backward_planes_kernel<<<tmix_cuda_blocks(C, 1), TMIX_CUDA_BLOCK, 0, st->stream>>>(
            tmix_f32(dbias), tmix_f32(dout), N, C, HW);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
