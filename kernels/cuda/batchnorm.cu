// Inference-form batch norm on the GPU (the twin of kernels/batchnorm.c): a per-channel
// affine map. Launched over N*C planes of H*W pixels, so the channel is fixed per plane.
#include "ops.cuh"

// out = in * scale[c] + shift[c], rounded once (fmaf); out may be in.
static __global__ void batchnorm_forward_kernel(float *out,         // (N, C, H, W)
                                                const float *in,    // (N, C, H, W)
                                                const float *scale, // (C)
                                                const float *shift, // (C)
                                                int64_t planes, int64_t C, int64_t HW)
{
    TMIX_CUDA_LOOP_Y(plane, planes) {
        int64_t c = plane % C;
        float a = scale[c], b = shift[c];
        const float *x = in + plane * HW;
        float *y = out + plane * HW;
        TMIX_CUDA_LOOP(p, HW)
            y[p] = fmaf(x[p], a, b);
    }
}

// din += dout * scale[c]
static __global__ void batchnorm_backward_kernel(float *din,          // (N, C, H, W)
                                                 const float *dout,   // (N, C, H, W)
                                                 const float *scale,  // (C)
                                                 int64_t planes, int64_t C, int64_t HW)
{
    TMIX_CUDA_LOOP_Y(plane, planes) {
        float a = scale[plane % C];
        const float *g = dout + plane * HW;
        float *d = din + plane * HW;
        TMIX_CUDA_LOOP(p, HW)
            d[p] = fmaf(g[p], a, d[p]);
    }
}

extern "C" int tmix_cuda_batchnorm_forward(tmix_backend *be, tmix_tensor *out,
                                           const tmix_tensor *in, const tmix_tensor *scale,
                                           const tmix_tensor *shift)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t C = in->shape[1], HW = in->shape[2] * in->shape[3], planes = in->shape[0] * C;
    tmix_cuda_plan2d g = tmix_cuda_plan(HW, planes);
    batchnorm_forward_kernel<<<g.grid, g.block, 0, st->stream>>>(
        tmix_f32(out), tmix_f32(in), tmix_f32(scale), tmix_f32(shift), planes, C, HW);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int tmix_cuda_batchnorm_backward_input(tmix_backend *be, tmix_tensor *din,
                                                  const tmix_tensor *dout,
                                                  const tmix_tensor *scale)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t C = din->shape[1], HW = din->shape[2] * din->shape[3], planes = din->shape[0] * C;
    tmix_cuda_plan2d g = tmix_cuda_plan(HW, planes);
    batchnorm_backward_kernel<<<g.grid, g.block, 0, st->stream>>>(
        tmix_f32(din), tmix_f32(dout), tmix_f32(scale), planes, C, HW);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
