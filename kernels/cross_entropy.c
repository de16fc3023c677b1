// cross_entropy: the soft-label loss of mixed batches, loss = mean over b of
// -sum_j targets[b, j] * log_softmax(logits[b])[j], as F.cross_entropy with probability
// targets. Targets need not sum to 1 (the formulas below hold for any targets).
#include "check.h"
#include "cpu.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>

static int check_logits_targets(const char *op, const tmix_backend *be,
                                const tmix_tensor *logits, const tmix_tensor *targets)
{
    TMIX_TRY(tmix_check_tensor(op, "logits", logits, be, TMIX_F32, 2));
    return tmix_check_shape(op, "targets", targets, be, TMIX_F32, 2, logits->shape);
}

int tmix_cross_entropy_forward(tmix_backend *be,
                               tmix_tensor *loss,           // (1)
                               const tmix_tensor *logits,   // (B, J)
                               const tmix_tensor *targets)  // (B, J)
{
    static const char op[] = "cross_entropy_forward";
    TMIX_CHECK_BACKEND(op, be, cross_entropy_forward);
    TMIX_TRY(tmix_check_tensor(op, "loss", loss, be, TMIX_F32, -1));
    if (tmix_tensor_numel(loss) != 1) {
        char s[96];
        return tmix_fail(TMIX_ESHAPE, "%s: loss is %s, expected 1 element", op,
                         tmix_shape_str(loss, s, sizeof s));
    }
    TMIX_TRY(check_logits_targets(op, be, logits, targets));
    TMIX_CALL(op, be, cross_entropy_forward, loss, logits, targets);
}

// log sum_j exp(z_j), shifted by the max so that large logits do not overflow.
static double logsumexp(const float *z, int64_t J)
{
    double mx = z[0], sum = 0;
    for (int64_t j = 1; j < J; j++)
        if (z[j] > mx)
            mx = z[j];
    for (int64_t j = 0; j < J; j++)
        sum += exp(z[j] - mx);
    return mx + log(sum);
}

int tmix_cpu_cross_entropy_forward(tmix_backend *be, tmix_tensor *loss, const tmix_tensor *logits,
                                   const tmix_tensor *targets)
{
    int64_t B = logits->shape[0], J = logits->shape[1];
    // Per-sample losses, summed in index order afterwards: the mean does not depend on the
    // thread count.
    double *partial = malloc((size_t)B * sizeof *partial);
    if (!partial)
        return tmix_fail(TMIX_ENOMEM, "cross_entropy_forward: %lld partials", (long long)B);
    const float *z = tmix_f32(logits), *y = tmix_f32(targets);
#pragma omp parallel for schedule(static) if (B * J >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t b = 0; b < B; b++) {
        const float *zb = z + b * J, *yb = y + b * J; // (J)
        double lse = logsumexp(zb, J), acc = 0;
        for (int64_t j = 0; j < J; j++)
            acc += yb[j] * (lse - zb[j]); // -y_j * log_softmax_j
        partial[b] = acc;
    }
    double total = 0;
    for (int64_t b = 0; b < B; b++)
        total += partial[b];
    free(partial);
    tmix_f32(loss)[0] = (float)(total / (double)B);
    return 0;
}

int tmix_cross_entropy_backward(tmix_backend *be,
                                tmix_tensor *dlogits,        // (B, J)
                                const tmix_tensor *logits,   // (B, J)
                                const tmix_tensor *targets)  // (B, J)
{
    static const char op[] = "cross_entropy_backward";
    TMIX_CHECK_BACKEND(op, be, cross_entropy_backward);
    TMIX_TRY(check_logits_targets(op, be, logits, targets));
    TMIX_TRY(tmix_check_shape(op, "dlogits", dlogits, be, TMIX_F32, 2, logits->shape));
    TMIX_CALL(op, be, cross_entropy_backward, dlogits, logits, targets);
}

int tmix_cpu_cross_entropy_backward(tmix_backend *be, tmix_tensor *dlogits,
                                    const tmix_tensor *logits, const tmix_tensor *targets)
{
    int64_t B = logits->shape[0], J = logits->shape[1];
    const float *z = tmix_f32(logits), *y = tmix_f32(targets);
    float *dz = tmix_f32(dlogits);
#pragma omp parallel for schedule(static) if (B * J >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t b = 0; b < B; b++) {
        const float *zb = z + b * J, *yb = y + b * J; // (J)
        float *db = dz + b * J;                       // (J)
        double lse = logsumexp(zb, J), ysum = 0;
        for (int64_t j = 0; j < J; j++)
            ysum += yb[j];
        // d/dz_j of -sum_i y_i log_softmax_i = softmax_j * sum_i y_i - y_j
        for (int64_t j = 0; j < J; j++)
            db[j] = (float)(db[j] + (exp(zb[j] - lse) * ysum - yb[j]) / (double)B);
    }
    return 0;
}
