// Global average pooling: out[n, c] is the mean of the (H, W) plane in[n, c].
#include "check.h"
#include "cpu.h"
#include "ops.h"

int tmix_avgpool_forward(tmix_backend *be,
                         tmix_tensor *out,      // (N, C)
                         const tmix_tensor *in) // (N, C, H, W)
{
    static const char op[] = "avgpool_forward";
    TMIX_CHECK_BACKEND(op, be, avgpool_forward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 2, in->shape));
    TMIX_CALL(op, be, avgpool_forward, out, in);
}

int tmix_cpu_avgpool_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in)
{
    (void)be;
    const int64_t NC = in->shape[0] * in->shape[1], S = in->shape[2] * in->shape[3];
    const float *x = tmix_f32(in);
    float *y = tmix_f32(out);
#pragma omp parallel for schedule(static) if (NC * S >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t nc = 0; nc < NC; nc++) {
        double sum = 0.0;
        for (int64_t i = nc * S; i < (nc + 1) * S; i++)
            sum += x[i];
        y[nc] = (float)(sum / (double)S);
    }
    return 0;
}

int tmix_avgpool_backward(tmix_backend *be,
                          tmix_tensor *din,        // (N, C, H, W)
                          const tmix_tensor *dout) // (N, C)
{
    static const char op[] = "avgpool_backward";
    TMIX_CHECK_BACKEND(op, be, avgpool_backward);
    TMIX_TRY(tmix_check_tensor(op, "din", din, be, TMIX_F32, 4));
    TMIX_TRY(tmix_check_shape(op, "dout", dout, be, TMIX_F32, 2, din->shape));
    TMIX_CALL(op, be, avgpool_backward, din, dout);
}

int tmix_cpu_avgpool_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout)
{
    (void)be;
    const int64_t NC = din->shape[0] * din->shape[1], S = din->shape[2] * din->shape[3];
    const float *dy = tmix_f32(dout);
    float *dx = tmix_f32(din);
#pragma omp parallel for schedule(static) if (NC * S >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t nc = 0; nc < NC; nc++) {
        const double g = dy[nc] / (double)S;
        for (int64_t i = nc * S; i < (nc + 1) * S; i++)
            dx[i] = (float)(dx[i] + g);
    }
    return 0;
}
