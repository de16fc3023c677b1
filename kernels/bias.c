// Gradient of a per-channel bias (conv2d and linear): dbias[c] += sum of dout[n, c, ...].
#include "check.h"
#include "cpu.h"
#include "ops.h"

int tmix_bias_backward(tmix_backend *be,
                       tmix_tensor *dbias,       // (C)
                       const tmix_tensor *dout)  // (N, C) or (N, C, H, W)
{
    static const char op[] = "bias_backward";
    TMIX_CHECK_BACKEND(op, be, bias_backward);
    TMIX_TRY(tmix_check_tensor(op, "dout", dout, be, TMIX_F32, -1));
    if (dout->ndim != 2 && dout->ndim != 4) {
        char s[96];
        return tmix_fail(TMIX_ESHAPE, "%s: dout is %s, expected (N,C) or (N,C,H,W)", op,
                         tmix_shape_str(dout, s, sizeof s));
    }
    TMIX_TRY(tmix_check_shape(op, "dbias", dbias, be, TMIX_F32, 1, &dout->shape[1]));
    TMIX_CALL(op, be, bias_backward, dbias, dout);
}

int tmix_cpu_bias_backward(tmix_backend *be, tmix_tensor *dbias, const tmix_tensor *dout)
{
    (void)be;
    const int64_t N = dout->shape[0], C = dout->shape[1];
    const int64_t S = tmix_tensor_numel(dout) / (N * C); // spatial size, 1 for (N, C)
    const float *dy = tmix_f32(dout);
    float *db = tmix_f32(dbias);
    // One thread per channel summing the batch in index order (in double): the result does
    // not depend on the thread count.
#pragma omp parallel for schedule(static) if (N * C * S >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t c = 0; c < C; c++) {
        double sum = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *src = dy + (n * C + c) * S;
            for (int64_t i = 0; i < S; i++)
                sum += src[i];
        }
        db[c] = (float)(db[c] + sum);
    }
    return 0;
}
