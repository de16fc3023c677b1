// concat_channels and fill_channels: a network input assembled along the channel dimension,
// one part at a time (torch.cat(dim=1) of the parts), from tensors or from per-sample
// constants (the λ maps of the mixing module, constant masks).
#include "check.h"
#include "cpu.h"
#include "ops.h"

#include <string.h>

// The channels of p (dimension 1; `part` names it) fit from channel c0 of out (N, Co, H, W),
// `whole` naming out: a part wider than out is a shape fault, a c0 that puts it outside is a
// bad argument.
static int check_place(const char *op, const char *part, const tmix_tensor *p,
                       const char *whole, const tmix_tensor *out, int c0)
{
    char sp[96], so[96];
    int64_t C = p->shape[1], Co = out->shape[1];
    if (C > Co)
        return tmix_fail(TMIX_ESHAPE, "%s: %s %s has %lld channels, more than the %lld of %s %s",
                         op, part, tmix_shape_str(p, sp, sizeof sp), (long long)C, (long long)Co,
                         whole, tmix_shape_str(out, so, sizeof so));
    if (c0 < 0 || c0 > Co - C)
        return tmix_fail(TMIX_EINVAL,
                         "%s: c0 is %d but %s %s must fit in the %lld channels of %s %s "
                         "(0 <= c0 <= %lld)",
                         op, c0, part, tmix_shape_str(p, sp, sizeof sp), (long long)Co, whole,
                         tmix_shape_str(out, so, sizeof so), (long long)(Co - C));
    return 0;
}

int tmix_concat_channels_forward(tmix_backend *be,
                                 tmix_tensor *out,      // (N, Co, H, W), c0 + C <= Co
                                 const tmix_tensor *in, // (N, C, H, W)
                                 int c0)
{
    static const char op[] = "concat_channels_forward";
    TMIX_CHECK_BACKEND(op, be, concat_channels_forward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    const int64_t *s = in->shape;
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4, (int64_t[]){s[0], -1, s[2], s[3]}));
    TMIX_TRY(check_place(op, "in", in, "out", out, c0));
    TMIX_CALL(op, be, concat_channels_forward, out, in, c0);
}

int tmix_cpu_concat_channels_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                                     int c0)
{
    (void)be;
    int64_t N = in->shape[0], C = in->shape[1], Co = out->shape[1];
    int64_t HW = in->shape[2] * in->shape[3];
    const float *x = tmix_f32(in);
    float *y = tmix_f32(out);
    // Channels c0.. of a sample are one contiguous block of out.
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++)
        memcpy(y + (n * Co + c0) * HW, x + n * C * HW, (size_t)(C * HW) * sizeof *y);
    return 0;
}

int tmix_concat_channels_backward(tmix_backend *be,
                                  tmix_tensor *din,        // (N, C, H, W)
                                  const tmix_tensor *dout, // (N, Co, H, W)
                                  int c0)
{
    static const char op[] = "concat_channels_backward";
    TMIX_CHECK_BACKEND(op, be, concat_channels_backward);
    TMIX_TRY(tmix_check_tensor(op, "dout", dout, be, TMIX_F32, 4));
    const int64_t *s = dout->shape;
    TMIX_TRY(tmix_check_shape(op, "din", din, be, TMIX_F32, 4, (int64_t[]){s[0], -1, s[2], s[3]}));
    TMIX_TRY(check_place(op, "din", din, "dout", dout, c0));
    TMIX_CALL(op, be, concat_channels_backward, din, dout, c0);
}

int tmix_cpu_concat_channels_backward(tmix_backend *be, tmix_tensor *din,
                                      const tmix_tensor *dout, int c0)
{
    (void)be;
    int64_t N = din->shape[0], C = din->shape[1], Co = dout->shape[1];
    int64_t CHW = C * din->shape[2] * din->shape[3], HW = din->shape[2] * din->shape[3];
    const float *g = tmix_f32(dout);
    float *dx = tmix_f32(din);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *gn = g + (n * Co + c0) * HW; // (C, HW)
        float *dn = dx + n * CHW;                 // (C, HW)
        for (int64_t i = 0; i < CHW; i++)
            dn[i] += gn[i];
    }
    return 0;
}

int tmix_fill_channels(tmix_backend *be,
                       tmix_tensor *out,          // (N, Co, H, W), c0 + K <= Co
                       const tmix_tensor *values, // (N, K)
                       int c0)
{
    static const char op[] = "fill_channels";
    TMIX_CHECK_BACKEND(op, be, fill_channels);
    TMIX_TRY(tmix_check_tensor(op, "values", values, be, TMIX_F32, 2));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4,
                              (int64_t[]){values->shape[0], -1, -1, -1}));
    TMIX_TRY(check_place(op, "values", values, "out", out, c0));
    TMIX_CALL(op, be, fill_channels, out, values, c0);
}

int tmix_cpu_fill_channels(tmix_backend *be, tmix_tensor *out, const tmix_tensor *values, int c0)
{
    (void)be;
    int64_t N = values->shape[0], K = values->shape[1], Co = out->shape[1];
    int64_t HW = out->shape[2] * out->shape[3];
    const float *v = tmix_f32(values);
    float *y = tmix_f32(out);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            float *yk = y + (n * Co + c0 + k) * HW; // (HW)
            for (int64_t p = 0; p < HW; p++)
                yk[p] = v[n * K + k];
        }
    return 0;
}
