// Batch norm in inference form, folded to a per-channel affine map: out = in * scale + shift.
#include "check.h"
#include "cpu.h"
#include "ops.h"

#include <math.h>

int tmix_batchnorm_forward(tmix_backend *be,
                           tmix_tensor *out,         // (N, C, H, W)
                           const tmix_tensor *in,    // (N, C, H, W)
                           const tmix_tensor *scale, // (C)
                           const tmix_tensor *shift) // (C)
{
    static const char op[] = "batchnorm_forward";
    TMIX_CHECK_BACKEND(op, be, batchnorm_forward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4, in->shape));
    TMIX_TRY(tmix_check_shape(op, "scale", scale, be, TMIX_F32, 1, &in->shape[1]));
    TMIX_TRY(tmix_check_shape(op, "shift", shift, be, TMIX_F32, 1, &in->shape[1]));
    TMIX_CALL(op, be, batchnorm_forward, out, in, scale, shift);
}

int tmix_cpu_batchnorm_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in, const
    tmix_tensor *scale, const tmix_tensor *shift)
{
    (void)be;
    const int64_t NC = in->shape[0] * in->shape[1], C = in->shape[1];
    const int64_t S = in->shape[2] * in->shape[3];
    const float *x = tmix_f32(in), *sc = tmix_f32(scale), *sh = tmix_f32(shift);
    float *y = tmix_f32(out);
    // One (n, c) plane per iteration; each element is read before it is written, so out may
    // be in. The multiply-add is done in double and rounded once, like an fma.
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC; nc++) {
        const double s = sc[nc % C], t = sh[nc % C];
        for (int64_t i = nc * S; i < (nc + 1) * S; i++)
            y[i] = (float)(x[i] * s + t);
    }
    return 0;
}

int tmix_batchnorm_backward_input(tmix_backend *be,
                                  tmix_tensor *din,         // (N, C, H, W)
                                  const tmix_tensor *dout,  // (N, C, H, W)
                                  const tmix_tensor *scale) // (C)
{
    static const char op[] = "batchnorm_backward_input";
    TMIX_CHECK_BACKEND(op, be, batchnorm_backward_input);
    TMIX_TRY(tmix_check_tensor(op, "dout", dout, be, TMIX_F32, 4));
    TMIX_TRY(tmix_check_shape(op, "din", din, be, TMIX_F32, 4, dout->shape));
    TMIX_TRY(tmix_check_shape(op, "scale", scale, be, TMIX_F32, 1, &dout->shape[1]));
    TMIX_CALL(op, be, batchnorm_backward_input, din, dout, scale);
}

int tmix_cpu_batchnorm_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
    const tmix_tensor *scale)
{
    (void)be;
    const int64_t NC = dout->shape[0] * dout->shape[1], C = dout->shape[1];
    const int64_t S = dout->shape[2] * dout->shape[3];
    const float *dy = tmix_f32(dout), *sc = tmix_f32(scale);
    float *dx = tmix_f32(din);
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC; nc++) {
        const double s = sc[nc % C];
        for (int64_t i = nc * S; i < (nc + 1) * S; i++)
            dx[i] = (float)(dx[i] + dy[i] * s);
    }
    return 0;
}

void tmix_batchnorm_fold(float *scale, float *shift, const float *gamma, const float *beta,
                         const float *mean, const float *var, float eps, int channels)
{
    for (int c = 0; c < channels; c++) {
        const double s = gamma[c] / sqrt((double)var[c] + eps);
        scale[c] = (float)s;
        // With the rounded scale, in * scale + shift = (in - mean) * scale + beta up to one
        // rounding of shift, so an output near zero keeps its accuracy.
        shift[c] = (float)(beta[c] - (double)mean[c] * scale[c]);
    }
}
