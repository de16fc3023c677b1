// resize_bilinear: PyTorch's F.interpolate(in, size=(Ho, Wo), mode="bilinear",
// align_corners=False, antialias=False), used to bring class-activation maps to image size
// (upsampling) and images to the classifier's size (downsampling, without antialiasing).
#include <math.h>

#include "check.h"
#include "cpu.h"
#include "ops.h"

int tmix_resize_bilinear_forward(tmix_backend *be,
                                 tmix_tensor *out,      // (N, C, Ho, Wo)
                                 const tmix_tensor *in) // (N, C, H, W)
{
    static const char op[] = "resize_bilinear_forward";
    TMIX_CHECK_BACKEND(op, be, resize_bilinear_forward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    const int64_t N = in->shape[0], C = in->shape[1];
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4, (int64_t[]){N, C, -1, -1}));
    return be->ops->resize_bilinear_forward(be, out, in);
}

// Where output index d of an axis reads from: indices i0 <= i1 of the input and their
// weights. This is PyTorch's area_pixel_compute_source_index and guard_index_and_lambda
// for a given output size: scale = in / out, source = (d + 0.5) * scale - 0.5 clamped
// below at 0, i0 = floor(source) clamped to the last pixel, and i1 = i0 + 1 except on the
// last pixel, where both taps read it.
typedef struct {
    int64_t i0, i1;
    double l0, l1;
} axis_tap;

static axis_tap source_tap(int64_t d, int64_t in, int64_t out)
{
    double scale = (double)in / (double)out;
    double src = scale * ((double)d + 0.5) - 0.5;
    if (src < 0)
        src = 0;
    axis_tap t;
    t.i0 = (int64_t)floor(src);
    if (t.i0 > in - 1)
        t.i0 = in - 1;
    t.i1 = t.i0 + (t.i0 < in - 1 ? 1 : 0);
    t.l1 = fmin(fmax(src - (double)t.i0, 0.0), 1.0);
    t.l0 = 1.0 - t.l1;
    return t;
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
            axis_tap ty = source_tap(i, H, Ho);
            const float *r0 = inp + (p * H + ty.i0) * W, *r1 = inp + (p * H + ty.i1) * W;
            float *o = outp + (p * Ho + i) * Wo;
            for (int64_t j = 0; j < Wo; j++) {
                axis_tap tx = source_tap(j, W, Wo);
                double top = tx.l0 * r0[tx.i0] + tx.l1 * r0[tx.i1];
                double bottom = tx.l0 * r1[tx.i0] + tx.l1 * r1[tx.i1];
                o[j] = (float)(ty.l0 * top + ty.l1 * bottom);
            }
        }
    }
    return 0;
}
