// minmax_normalize: rescales each sample to [0, 1] by its own minimum and maximum, as
// TransformMix does with saliency maps before using them as mixing masks. A constant sample
// becomes all zeros (the range is floored at 1e-12 rather than dividing by zero).
#include <math.h>

#include "check.h"
#include "cpu.h"
#include "ops.h"

int tmix_minmax_normalize_forward(tmix_backend *be,
                                  tmix_tensor *out,      // (N, ...), may be in
                                  const tmix_tensor *in) // (N, ...), 2 to 4 dimensions
{
    static const char op[] = "minmax_normalize_forward";
    TMIX_CHECK_BACKEND(op, be, minmax_normalize_forward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, -1));
    if (in->ndim < 2) {
        char s[96];
        return tmix_fail(TMIX_ESHAPE, "%s: in is %s, expected (N, ...) with 2 to %d dimensions",
                         op, tmix_shape_str(in, s, sizeof s), TMIX_MAX_DIMS);
    }
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, in->ndim, in->shape));
    TMIX_CALL(op, be, minmax_normalize_forward, out, in);
}

int tmix_cpu_minmax_normalize_forward(tmix_backend *be,
                                      tmix_tensor *out,      // (N, ...), may be in
                                      const tmix_tensor *in) // (N, ...)
{
    (void)be;
    const int64_t N = in->shape[0], m = tmix_tensor_numel(in) / N;
    const float *inp = tmix_f32(in);
    float *outp = tmix_f32(out);
    // One thread per sample: the minimum and maximum are found before anything is written,
    // which is what makes out == in safe.
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * m;
        float lo = x[0], hi = x[0];
        // A NaN anywhere makes the sample NaN, as torch's min and max propagate it.
        for (int64_t e = 1; e < m; e++) {
            lo = x[e] < lo || isnan(x[e]) ? x[e] : lo;
            hi = x[e] > hi || isnan(x[e]) ? x[e] : hi;
        }
        double range = (double)hi - (double)lo;
        if (range < 1e-12)
            range = 1e-12;
        float *y = outp + n * m;
        for (int64_t e = 0; e < m; e++)
            y[e] = (float)(((double)x[e] - lo) / range);
    }
    return 0;
}
