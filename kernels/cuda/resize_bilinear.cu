// resize_bilinear on the GPU (the twin of kernels/resize_bilinear.c): F.interpolate with
// mode="bilinear", align_corners=False and no antialiasing. One thread per output element
// blends its four taps in double, rounding every step as the CPU twin does.
#include <math.h>

#include "ops.cuh"
#include "pixel_rules.h"

// l0 * a + l1 * b with both products rounded before the sum, as on the CPU.
static __device__ __forceinline__ double lerp2(double l0, double a, double l1, double b)
{
    return __dadd_rn(__dmul_rn(l0, a), __dmul_rn(l1, b));
}

// out[p, i, j] = bilinear blend of in[p] at the source of (i, j), for p over the N*C planes.
static __global__ void resize_bilinear_forward_kernel(float *out,      // (N*C, Ho, Wo)
                                                      const float *in, // (N*C, H, W)
                                                      int64_t NC, int64_t H, int64_t W,
                                                      int64_t Ho, int64_t Wo)
{
    TMIX_CUDA_LOOP_Y(row, NC * Ho) {
        const int64_t p = row / Ho;
        tmix_axis_tap ty = tmix_source_tap(row % Ho, H, Ho);
        const float *r0 = in + (p * H + ty.i0) * W, *r1 = in + (p * H + ty.i1) * W;
        float *o = out + row * Wo;
        TMIX_CUDA_LOOP(j, Wo) {
            tmix_axis_tap tx = tmix_source_tap(j, W, Wo);
            double top = lerp2(tx.l0, r0[tx.i0], tx.l1, r0[tx.i1]);
            double bottom = lerp2(tx.l0, r1[tx.i0], tx.l1, r1[tx.i1]);
            o[j] = (float)lerp2(ty.l0, top, ty.l1, bottom);
        }
    }
}

extern "C" int tmix_cuda_resize_bilinear_forward(tmix_backend *be, tmix_tensor *out,
                                                 const tmix_tensor *in)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t NC = in->shape[0] * in->shape[1], H = in->shape[2], W = in->shape[3];
    int64_t Ho = out->shape[2], Wo = out->shape[3];
    tmix_cuda_plan2d g = tmix_cuda_plan(Wo, NC * Ho);
    resize_bilinear_forward_kernel<<<g.grid, g.block, 0, st->stream>>>(
        tmix_f32(out), tmix_f32(in), NC, H, W, Ho, Wo);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
