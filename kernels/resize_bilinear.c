// resize_bilinear: PyTorch's F.interpolate(in, size=(Ho, Wo), mode="bilinear",
// align_corners=False, antialias=False), used to bring class-activation maps to image size
// (upsampling) and images to the classifier's size (downsampling, without antialiasing).
#include <math.h>

#include "check.h"
#include "cpu.h"
#include "ops.h"
#include "pixel_rules.h"

int tmix_resize_bilinear_forward(tmix_backend *be,
                                 tmix_tensor *out,      // (N, C, Ho, Wo)
                                 const tmix_tensor *in) // (N, C, H, W)
{
    static const char op[] = "resize_bilinear_forward";
    TMIX_CHECK_BACKEND(op, be, resize_bilinear_forward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    const int64_t N = in->shape[0], C = in->shape[1];
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4, (int64_t[]){N, C, -1, -1}));
    TMIX_CALL(op, be, resize_bilinear_forward, out, in);
}

int tmix_cpu_resize_bilinear_forward(tmix_backend *be,
                                     tmix_tensor *out,      // (N, C, Ho, Wo)
                                     const tmix_tensor *in) // (N, C, H, W)
{
    (void)be;
    const int64_t NC = in->shape[0] * in->shape[1], H = in->shape[2], W = in->shape[3];
    const int64_t Ho = out->shape[2], Wo = out->shape[3];
    const float *inp = tmix_f32(in);
    float *outp = tmix_f32(out);
    // Every (sample, channel) row is independent; each output element has one writer.
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t p = 0; p < NC; p++) {
        for (int64_t i = 0; i < Ho; i++) {
            tmix_axis_tap ty = tmix_source_tap(i, H, Ho);
            const float *r0 = inp + (p * H + ty.i0) * W, *r1 = inp + (p * H + ty.i1) * W;
            float *o = outp + (p * Ho + i) * Wo;
            for (int64_t j = 0; j < Wo; j++) {
                tmix_axis_tap tx = tmix_source_tap(j, W, Wo);
                double top = tx.l0 * r0[tx.i0] + tx.l1 * r0[tx.i1];
                double bottom = tx.l0 * r1[tx.i0] + tx.l1 * r1[tx.i1];
                o[j] = (float)(ty.l0 * top + ty.l1 * bottom);
            }
        }
    }
    return 0;
}
