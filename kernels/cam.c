// cam_forward: the class activation map of each sample's own class (Zhou et al. 2016), the
// classifier's weights of that class applied to the last feature maps, before any
// normalisation: out[n, 0] = sum_c weight[labels[n], c] * features[n, c]. labels is a host
// array, so that every entry is checked before anything is read.
#include "check.h"
#include "cpu.h"
#include "ops.h"

int tmix_cam_forward(tmix_backend *be,
                     tmix_tensor *out,            // (N, 1, h, w)
                     const tmix_tensor *features, // (N, C, h, w)
                     const tmix_tensor *weight,   // (J, C)
                     const int64_t *labels)       // [N], host
{
    static const char op[] = "cam_forward";
    TMIX_CHECK_BACKEND(op, be, cam_forward);
    TMIX_TRY(tmix_check_tensor(op, "features", features, be, TMIX_F32, 4));
    const int64_t *f = features->shape;
    TMIX_TRY(tmix_check_shape(op, "weight", weight, be, TMIX_F32, 2, (int64_t[]){-1, f[1]}));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4, (int64_t[]){f[0], 1, f[2], f[3]}));
    if (!labels)
        return tmix_fail(TMIX_EINVAL, "%s: labels is NULL", op);
    int64_t J = weight->shape[0];
    for (int64_t n = 0; n < f[0]; n++)
        if (labels[n] < 0 || labels[n] >= J) {
            char s[96];
            return tmix_fail(TMIX_EINVAL, "%s: labels[%lld] is %lld, outside the %lld classes "
                             "of weight %s", op, (long long)n, (long long)labels[n],
                             (long long)J, tmix_shape_str(weight, s, sizeof s));
        }
    TMIX_CALL(op, be, cam_forward, out, features, weight, labels);
}

int tmix_cpu_cam_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *features,
                         const tmix_tensor *weight, const int64_t *labels)
{
    (void)be;
    enum { TILE = 64 }; // pixels summed together: the channel loop then reads rows of memory
    int64_t N = features->shape[0], C = features->shape[1];
    int64_t HW = features->shape[2] * features->shape[3];
    const float *x = tmix_f32(features), *w = tmix_f32(weight);
    float *y = tmix_f32(out);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *wn = w + labels[n] * C; // (C)
        const float *xn = x + n * C * HW;    // (C, HW)
        for (int64_t p0 = 0; p0 < HW; p0 += TILE) {
            int64_t len = HW - p0 < TILE ? HW - p0 : TILE;
            // Products of floats are exact in double: one rounding at the end.
            double acc[TILE] = {0};
            for (int64_t c = 0; c < C; c++)
                for (int64_t q = 0; q < len; q++)
                    acc[q] += (double)wn[c] * xn[c * HW + p0 + q];
            for (int64_t q = 0; q < len; q++)
                y[n * HW + p0 + q] = (float)acc[q];
        }
    }
    return 0;
}
