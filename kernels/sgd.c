// sgd_update: one step of torch.optim.SGD on one parameter tensor, in place (params.h has
// the formulas). The momentum buffer is an explicit argument, so the caller owns the state
// and `step` tells whether the buffer is still to be initialised.
#include "check.h"
#include "cpu.h"
#include "ops.h"

#include <math.h>

int tmix_sgd_update(tmix_backend *be,
                    tmix_tensor *param,        // any shape
                    const tmix_tensor *grad,   // same shape
                    tmix_tensor *momentum_buf, // same shape, or NULL when momentum == 0
                    tmix_sgd_params p,
                    int64_t step)              // 0 for the first update
{
    static const char op[] = "sgd_update";
    TMIX_CHECK_BACKEND(op, be, sgd_update);
    TMIX_TRY(tmix_check_tensor(op, "param", param, be, TMIX_F32, -1));
    TMIX_TRY(tmix_check_tensor(op, "grad", grad, be, TMIX_F32, -1));
    TMIX_TRY(tmix_check_same_shape(op, "param", param, "grad", grad));
    if (!momentum_buf && p.momentum != 0)
        return tmix_fail(TMIX_EINVAL, "%s: momentum is %g but momentum_buf is NULL", op,
                         p.momentum);
    // A buffer given with momentum == 0 is checked but left alone.
    if (momentum_buf) {
        TMIX_TRY(tmix_check_tensor(op, "momentum_buf", momentum_buf, be, TMIX_F32, -1));
        TMIX_TRY(tmix_check_same_shape(op, "param", param, "momentum_buf", momentum_buf));
    }
    // The same bounds as torch.optim.SGD, plus finiteness.
    if (!(p.lr >= 0) || !isfinite(p.lr))
        return tmix_fail(TMIX_EINVAL, "%s: lr is %g, it must be finite and >= 0", op, p.lr);
    if (!(p.momentum >= 0) || !isfinite(p.momentum))
        return tmix_fail(TMIX_EINVAL, "%s: momentum is %g, it must be finite and >= 0", op,
                         p.momentum);
    if (!isfinite(p.dampening))
        return tmix_fail(TMIX_EINVAL, "%s: dampening is %g, it must be finite", op,
                         p.dampening);
    if (!(p.weight_decay >= 0) || !isfinite(p.weight_decay))
        return tmix_fail(TMIX_EINVAL, "%s: weight_decay is %g, it must be finite and >= 0", op,
                         p.weight_decay);
    if (p.nesterov && (p.momentum <= 0 || p.dampening != 0))
        return tmix_fail(TMIX_EINVAL,
                         "%s: nesterov needs momentum > 0 and dampening 0 (have %g and %g)", op,
                         p.momentum, p.dampening);
    if (step < 0)
        return tmix_fail(TMIX_EINVAL, "%s: step is %lld, it must be >= 0", op,
                         (long long)step);
    TMIX_CALL(op, be, sgd_update, param, grad, momentum_buf, p, step);
}

// Element-wise in double, each stored value rounded once; the order of operations is
// torch's (d = grad + wd * param; buf = momentum * buf + (1 - dampening) * d; ...).
int tmix_cpu_sgd_update(tmix_backend *be, tmix_tensor *param, const tmix_tensor *grad,
                        tmix_tensor *momentum_buf, tmix_sgd_params p, int64_t step)
{
    int64_t n = tmix_tensor_numel(param);
    float *w = tmix_f32(param);
    const float *g = tmix_f32(grad);
    float *buf = p.momentum != 0 ? tmix_f32(momentum_buf) : NULL;
    const double lr = p.lr, mom = p.momentum, damp = p.dampening, wd = p.weight_decay;
    const int nesterov = p.nesterov;
#pragma omp parallel for schedule(static) if (n >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        double d = g[i];
        if (wd != 0)
            d += wd * w[i];
        if (buf) {
            // At step 0 the buffer's contents are ignored: torch starts it at d.
            double b = step == 0 ? d : mom * buf[i] + (1 - damp) * d;
            buf[i] = (float)b;
            d = nesterov ? d + mom * b : b;
        }
        w[i] = (float)(w[i] - lr * d);
    }
    return 0;
}
