// Batch norm in training form (torch.nn.BatchNorm2d in train()): normalises each channel with
// the statistics of the batch, saves them for the backward pass and updates the running ones.
// Sums are taken in double, the variance in a second pass around the mean, so that large
// N*H*W and inputs far from zero keep float32 accuracy.
#include "check.h"
#include "cpu.h"
#include "ops.h"

#include <math.h>

// The (C) arguments: gamma and beta of the forward, the saved statistics, the running ones
// and the parameter gradients all have one value per channel of the reference tensor `x`.
static int check_channels(const char *op, const char *name, const tmix_tensor *t,
                          const tmix_backend *be, const tmix_tensor *x)
{
    return tmix_check_shape(op, name, t, be, TMIX_F32, 1, &x->shape[1]);
}

int tmix_batchnorm_train_forward(tmix_backend *be,
                                 tmix_tensor *out,          // (N, C, H, W)
                                 tmix_tensor *save_mean,    // (C)
                                 tmix_tensor *save_invstd,  // (C)
                                 tmix_tensor *running_mean, // (C) or NULL
                                 tmix_tensor *running_var,  // (C) or NULL
                                 const tmix_tensor *in,     // (N, C, H, W)
                                 const tmix_tensor *gamma,  // (C)
                                 const tmix_tensor *beta,   // (C)
                                 tmix_batchnorm_train_params p)
{
    static const char op[] = "batchnorm_train_forward";
    TMIX_CHECK_BACKEND(op, be, batchnorm_train_forward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4, in->shape));
    TMIX_TRY(check_channels(op, "save_mean", save_mean, be, in));
    TMIX_TRY(check_channels(op, "save_invstd", save_invstd, be, in));
    if (running_mean)
        TMIX_TRY(check_channels(op, "running_mean", running_mean, be, in));
    if (running_var)
        TMIX_TRY(check_channels(op, "running_var", running_var, be, in));
    TMIX_TRY(check_channels(op, "gamma", gamma, be, in));
    TMIX_TRY(check_channels(op, "beta", beta, be, in));
    // One value per channel has no variance to normalise by (PyTorch refuses it too).
    if (in->shape[0] * in->shape[2] * in->shape[3] < 2) {
        char s[96];
        return tmix_fail(TMIX_ESHAPE, "%s: in is %s, training needs more than one value per "
                         "channel", op, tmix_shape_str(in, s, sizeof s));
    }
    if (!(p.eps > 0) || !isfinite(p.eps))
        return tmix_fail(TMIX_EINVAL, "%s: eps is %g, it must be finite and > 0", op, p.eps);
    if (!(p.momentum >= 0 && p.momentum <= 1))
        return tmix_fail(TMIX_EINVAL, "%s: momentum is %g, it must be in [0, 1]", op,
                         p.momentum);
    TMIX_CALL(op, be, batchnorm_train_forward, out, save_mean, save_invstd, running_mean,
              running_var, in, gamma, beta, p);
}

// One channel per iteration, its sums in a fixed order, so results do not depend on the
// thread count: plane by plane, each plane's in the vector lanes that `omp simd` gives the
// sum (without it each double add would wait for the one before). The channel's statistics
// are complete before its first output is written, and each output is written after its
// input is read, so out may be in.
int tmix_cpu_batchnorm_train_forward(tmix_backend *be, tmix_tensor *out, tmix_tensor *save_mean,
                                     tmix_tensor *save_invstd, tmix_tensor *running_mean,
                                     tmix_tensor *running_var, const tmix_tensor *in,
                                     const tmix_tensor *gamma, const tmix_tensor *beta,
                                     tmix_batchnorm_train_params p)
{
    (void)be;
    const int64_t N = in->shape[0], C = in->shape[1], HW = in->shape[2] * in->shape[3];
    const double n = (double)(N * HW), momentum = p.momentum;
    const float *x = tmix_f32(in), *g = tmix_f32(gamma), *b = tmix_f32(beta);
    float *y = tmix_f32(out), *sm = tmix_f32(save_mean), *si = tmix_f32(save_invstd);
    float *rm = running_mean ? tmix_f32(running_mean) : NULL;
    float *rv = running_var ? tmix_f32(running_var) : NULL;
#pragma omp parallel for schedule(static) if (N * C * HW >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t c = 0; c < C; c++) {
        double sum = 0, m2 = 0;
        for (int64_t k = 0; k < N; k++) {
            const float *xp = x + (k * C + c) * HW; // (HW)
#pragma omp simd reduction(+ : sum)
            for (int64_t i = 0; i < HW; i++)
                sum += xp[i];
        }
        const double mean = sum / n;
        for (int64_t k = 0; k < N; k++) {
            const float *xp = x + (k * C + c) * HW;
#pragma omp simd reduction(+ : m2)
            for (int64_t i = 0; i < HW; i++)
                m2 += (xp[i] - mean) * (xp[i] - mean);
        }
        const double invstd = 1.0 / sqrt(m2 / n + p.eps), a = invstd * g[c], shift = b[c];
        for (int64_t k = 0; k < N; k++) {
            const float *xp = x + (k * C + c) * HW;
            float *yp = y + (k * C + c) * HW;
#pragma omp simd
            for (int64_t i = 0; i < HW; i++)
                yp[i] = (float)((xp[i] - mean) * a + shift);
        }
        sm[c] = (float)mean;
        si[c] = (float)invstd;
        if (rm)
            rm[c] = (float)((1 - momentum) * rm[c] + momentum * mean);
        if (rv)
            rv[c] = (float)((1 - momentum) * rv[c] + momentum * (m2 / (n - 1)));
    }
    return 0;
}

int tmix_batchnorm_train_backward(tmix_backend *be,
                                  tmix_tensor *din,               // (N, C, H, W) or NULL
                                  tmix_tensor *dgamma,            // (C) or NULL
                                  tmix_tensor *dbeta,             // (C) or NULL
                                  const tmix_tensor *dout,        // (N, C, H, W)
                                  const tmix_tensor *in,          // (N, C, H, W)
                                  const tmix_tensor *gamma,       // (C)
                                  const tmix_tensor *save_mean,   // (C)
                                  const tmix_tensor *save_invstd) // (C)
{
    static const char op[] = "batchnorm_train_backward";
    TMIX_CHECK_BACKEND(op, be, batchnorm_train_backward);
    TMIX_TRY(tmix_check_tensor(op, "dout", dout, be, TMIX_F32, 4));
    if (din)
        TMIX_TRY(tmix_check_shape(op, "din", din, be, TMIX_F32, 4, dout->shape));
    if (dgamma)
        TMIX_TRY(check_channels(op, "dgamma", dgamma, be, dout));
    if (dbeta)
        TMIX_TRY(check_channels(op, "dbeta", dbeta, be, dout));
    TMIX_TRY(tmix_check_shape(op, "in", in, be, TMIX_F32, 4, dout->shape));
    TMIX_TRY(check_channels(op, "gamma", gamma, be, dout));
    TMIX_TRY(check_channels(op, "save_mean", save_mean, be, dout));
    TMIX_TRY(check_channels(op, "save_invstd", save_invstd, be, dout));
    TMIX_CALL(op, be, batchnorm_train_backward, din, dgamma, dbeta, dout, in, gamma,
              save_mean, save_invstd);
}

// PyTorch's formula (batch_norm_backward_cpu): with sum_dy = sum(dout) and dot = sum(dout *
// (in - mean)), dgamma += dot * invstd, dbeta += sum_dy and din += (dout - sum_dy / n -
// (in - mean) * dot * invstd^2 / n) * invstd * gamma. One channel per iteration, in double,
// the sums taken as in the forward.
int tmix_cpu_batchnorm_train_backward(tmix_backend *be, tmix_tensor *din, tmix_tensor *dgamma,
                                      tmix_tensor *dbeta, const tmix_tensor *dout,
                                      const tmix_tensor *in, const tmix_tensor *gamma,
                                      const tmix_tensor *save_mean,
                                      const tmix_tensor *save_invstd)
{
    (void)be;
    const int64_t N = in->shape[0], C = in->shape[1], HW = in->shape[2] * in->shape[3];
    const double n = (double)(N * HW);
    const float *x = tmix_f32(in), *dy = tmix_f32(dout), *g = tmix_f32(gamma);
    const float *sm = tmix_f32(save_mean), *si = tmix_f32(save_invstd);
    float *dx = din ? tmix_f32(din) : NULL;
    float *dg = dgamma ? tmix_f32(dgamma) : NULL, *db = dbeta ? tmix_f32(dbeta) : NULL;
#pragma omp parallel for schedule(static) if (N * C * HW >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t c = 0; c < C; c++) {
        const double mean = sm[c], invstd = si[c];
        double sum_dy = 0, dot = 0;
        for (int64_t k = 0; k < N; k++) {
            const float *xp = x + (k * C + c) * HW, *gp = dy + (k * C + c) * HW; // (HW)
#pragma omp simd reduction(+ : sum_dy, dot)
            for (int64_t i = 0; i < HW; i++) {
                sum_dy += gp[i];
                dot += gp[i] * (xp[i] - mean);
            }
        }
        if (dg)
            dg[c] = (float)(dg[c] + dot * invstd);
        if (db)
            db[c] = (float)(db[c] + sum_dy);
        if (!dx)
            continue;
        const double proj = dot * invstd * invstd / n, dy_mean = sum_dy / n, a = invstd * g[c];
        for (int64_t k = 0; k < N; k++) {
            const float *xp = x + (k * C + c) * HW, *gp = dy + (k * C + c) * HW;
            float *dxp = dx + (k * C + c) * HW;
#pragma omp simd
            for (int64_t i = 0; i < HW; i++)
                dxp[i] = (float)(dxp[i] + (gp[i] - dy_mean - (xp[i] - mean) * proj) * a);
        }
    }
    return 0;
}
