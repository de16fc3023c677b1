// gather: picks rows of a batch by index, out[m] = in[index[m]] along dimension 0 (the
// sources of each mixed image, stacked in the order blend reads them). index is a host array,
// so that every entry is checked before anything is read.
#include "check.h"
#include "cpu.h"
#include "ops.h"

#include <string.h>

int tmix_gather(tmix_backend *be,
                tmix_tensor *out,      // (M, ...)
                const tmix_tensor *in, // (N, ...), same trailing shape
                const int64_t *index)  // [M], host
{
    static const char op[] = "gather";
    TMIX_CHECK_BACKEND(op, be, gather);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, -1));
    int64_t expect[TMIX_MAX_DIMS];
    memcpy(expect, in->shape, sizeof expect);
    expect[0] = -1;
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, in->ndim, expect));
    if (!index)
        return tmix_fail(TMIX_EINVAL, "%s: index is NULL", op);
    int64_t M = out->shape[0], N = in->shape[0];
    for (int64_t m = 0; m < M; m++)
        if (index[m] < 0 || index[m] >= N) {
            char s[96];
            return tmix_fail(TMIX_EINVAL, "%s: index[%lld] is %lld, outside [0, %lld) of in %s",
                             op, (long long)m, (long long)index[m], (long long)N,
                             tmix_shape_str(in, s, sizeof s));
        }
    TMIX_CALL(op, be, gather, out, in, index);
}

int tmix_cpu_gather(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                    const int64_t *index)
{
    (void)be;
    int64_t M = out->shape[0], row = tmix_tensor_numel(in) / in->shape[0];
    const float *x = tmix_f32(in);
    float *y = tmix_f32(out);
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++)
        memcpy(y + m * row, x + index[m] * row, (size_t)row * sizeof *y);
    return 0;
}
