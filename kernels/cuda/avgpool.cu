// Global average pooling on the GPU (the twin of kernels/avgpool.c).
#include "ops.cuh"

#define WARPS_PER_BLOCK (TMIX_CUDA_BLOCK / 32)

// One warp per (n, c) plane: pooled maps are small (7x7 in a ResNet) and N*C is large, so a
// warp is enough per plane. Lanes sum in double, then a fixed shuffle tree: deterministic.
static __global__ void avgpool_forward_kernel(float *out,      // (N, C)
                                              const float *in, // (N, C, H, W)
                                              int64_t planes, int64_t HW)
{
    const unsigned lane = threadIdx.x % 32;
    const int64_t warps = (int64_t)gridDim.x * WARPS_PER_BLOCK;
    for (int64_t plane = (int64_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32;
         plane < planes; plane += warps) {
        const float *x = in + plane * HW;
        double s = 0.0;
        for (int64_t p = lane; p < HW; p += 32)
            s += x[p];
        s = tmix_warp_reduce(s, tmix_cuda_sum());
        if (lane == 0)
            out[plane] = (float)(s / (double)HW);
    }
}

// din[n, c, :, :] += dout[n, c] / (H * W)
static __global__ void avgpool_backward_kernel(float *din,        // (N, C, H, W)
                                               const float *dout, // (N, C)
                                               int64_t planes, int64_t HW)
{
    TMIX_CUDA_LOOP_Y(plane, planes) {
        double g = (double)dout[plane] / (double)HW;
        float *d = din + plane * HW;
        TMIX_CUDA_LOOP(p, HW)
            d[p] = (float)(d[p] + g);
    }
}

extern "C" int tmix_cuda_avgpool_forward(tmix_backend *be, tmix_tensor *out,
                                         const tmix_tensor *in)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t planes = in->shape[0] * in->shape[1], HW = in->shape[2] * in->shape[3];
    avgpool_forward_kernel<<<tmix_cuda_blocks(planes, WARPS_PER_BLOCK), TMIX_CUDA_BLOCK, 0,
                             st->stream>>>(tmix_f32(out), tmix_f32(in), planes, HW);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int tmix_cuda_avgpool_backward(tmix_backend *be, tmix_tensor *din,
                                          const tmix_tensor *dout)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t planes = din->shape[0] * din->shape[1], HW = din->shape[2] * din->shape[3];
    tmix_cuda_plan2d g = tmix_cuda_plan(HW, planes);
    avgpool_backward_kernel<<<g.grid, g.block, 0, st->stream>>>(tmix_f32(din), tmix_f32(dout),
                                                                planes, HW);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
