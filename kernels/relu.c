// ReLU on a tensor of any shape, element by element.
#include "check.h"
#include "cpu.h"
#include "ops.h"

int tmix_relu_forward(tmix_backend *be,
                      tmix_tensor *out,      // any shape
                      const tmix_tensor *in) // same shape
{
    static const char op[] = "relu_forward";
    TMIX_CHECK_BACKEND(op, be, relu_forward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, -1));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, in->ndim, in->shape));
    TMIX_CALL(op, be, relu_forward, out, in);
}

int tmix_cpu_relu_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in)
{
    (void)be;
    const int64_t n = tmix_tensor_numel(in);
    const float *x = tmix_f32(in);
    float *y = tmix_f32(out);
    // `x < 0 ? 0 : x` lets a NaN through, as torch.relu does. `simd`: written as a select,
    // the loop runs on vectors instead of a branch per element that the signs mispredict.
#pragma omp parallel for simd schedule(static) if (n >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] < 0.0f ? 0.0f : x[i];
    return 0;
}

int tmix_relu_backward(tmix_backend *be,
                       tmix_tensor *din,        // any shape
                       const tmix_tensor *dout, // same shape
                       const tmix_tensor *out)  // same shape, the forward output
{
    static const char op[] = "relu_backward";
    TMIX_CHECK_BACKEND(op, be, relu_backward);
    TMIX_TRY(tmix_check_tensor(op, "out", out, be, TMIX_F32, -1));
    TMIX_TRY(tmix_check_shape(op, "dout", dout, be, TMIX_F32, out->ndim, out->shape));
    TMIX_TRY(tmix_check_shape(op, "din", din, be, TMIX_F32, out->ndim, out->shape));
    TMIX_CALL(op, be, relu_backward, din, dout, out);
}

int tmix_cpu_relu_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout, const
    tmix_tensor *out)
{
    (void)be;
    const int64_t n = tmix_tensor_numel(out);
    const float *dy = tmix_f32(dout), *y = tmix_f32(out);
    float *dx = tmix_f32(din);
#pragma omp parallel for simd schedule(static) if (n >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        // dy[i] loaded whatever y[i] is: then the loop is a select and an add, on vectors.
        const float g = dy[i];
        dx[i] += y[i] > 0.0f ? g : 0.0f;
    }
    return 0;
}
