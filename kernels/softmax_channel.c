// softmax_channel: the soft masks of a mixing step, m = softmax(h / tau) over dimension 1
// (the K images being mixed), at every pixel. tau is a learnable temperature, kept on the
// backend as a 1-element tensor, so the entry points cannot read it; the CPU twin checks
// tau > 0 itself.
#include "check.h"
#include "cpu.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>

// A 1-element float tensor of any dimensionality: (1), (1, 1)...
static int check_scalar(const char *op, const char *name, const tmix_tensor *t,
                        const tmix_backend *be)
{
    TMIX_TRY(tmix_check_tensor(op, name, t, be, TMIX_F32, -1));
    if (tmix_tensor_numel(t) != 1) {
        char s[96];
        return tmix_fail(TMIX_ESHAPE, "%s: %s is %s, expected 1 element", op, name,
                         tmix_shape_str(t, s, sizeof s));
    }
    return 0;
}

static int check_tau_value(const char *op, double tau)
{
    if (!(tau > 0) || !isfinite(tau))
        return tmix_fail(TMIX_EINVAL, "%s: tau is %g, it must be finite and > 0", op, tau);
    return 0;
}

int tmix_softmax_channel_forward(tmix_backend *be,
                                 tmix_tensor *out,       // (N, K, H, W)
                                 const tmix_tensor *in,  // (N, K, H, W)
                                 const tmix_tensor *tau) // (1)
{
    static const char op[] = "softmax_channel_forward";
    TMIX_CHECK_BACKEND(op, be, softmax_channel_forward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4, in->shape));
    TMIX_TRY(check_scalar(op, "tau", tau, be));
    TMIX_CALL(op, be, softmax_channel_forward, out, in, tau);
}

// The largest of a pixel's K logits (h points at channel 0 of the pixel).
static double pixel_max(const float *h, int64_t K, int64_t HW)
{
    double mx = h[0];
    for (int64_t k = 1; k < K; k++)
        if (h[k * HW] > mx)
            mx = h[k * HW];
    return mx;
}

// sum_k exp((h_k - max) / tau) of a pixel, in double.
static double pixel_sum(const float *h, int64_t K, int64_t HW, double mx, double tau)
{
    double sum = 0;
    for (int64_t k = 0; k < K; k++)
        sum += exp((h[k * HW] - mx) / tau);
    return sum;
}

static void softmax_sample(float *m,       // (K, H*W)
                           const float *h, // (K, H*W)
                           int64_t K, int64_t HW, double tau)
{
    for (int64_t p = 0; p < HW; p++) {
        double mx = pixel_max(h + p, K, HW), sum = pixel_sum(h + p, K, HW, mx, tau);
        for (int64_t k = 0; k < K; k++)
            m[k * HW + p] = (float)(exp((h[k * HW + p] - mx) / tau) / sum);
    }
}

int tmix_cpu_softmax_channel_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                                     const tmix_tensor *tau)
{
    double t = tmix_f32(tau)[0];
    TMIX_TRY(check_tau_value("softmax_channel_forward", t));
    int64_t N = in->shape[0], K = in->shape[1], HW = in->shape[2] * in->shape[3];
    const float *h = tmix_f32(in);
    float *m = tmix_f32(out);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++)
        softmax_sample(m + n * K * HW, h + n * K * HW, K, HW, t);
    return 0;
}

int tmix_softmax_channel_backward(tmix_backend *be,
                                  tmix_tensor *din,        // (N, K, H, W)
                                  tmix_tensor *dtau,       // (1) or NULL
                                  const tmix_tensor *dout, // (N, K, H, W)
                                  const tmix_tensor *out,  // (N, K, H, W), the forward output
                                  const tmix_tensor *in,   // (N, K, H, W)
                                  const tmix_tensor *tau)  // (1)
{
    static const char op[] = "softmax_channel_backward";
    TMIX_CHECK_BACKEND(op, be, softmax_channel_backward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    TMIX_TRY(tmix_check_shape(op, "din", din, be, TMIX_F32, 4, in->shape));
    if (dtau)
        TMIX_TRY(check_scalar(op, "dtau", dtau, be));
    TMIX_TRY(tmix_check_shape(op, "dout", dout, be, TMIX_F32, 4, in->shape));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4, in->shape));
    TMIX_TRY(check_scalar(op, "tau", tau, be));
    TMIX_CALL(op, be, softmax_channel_backward, din, dtau, dout, out, in, tau);
}

// With z = h / tau and s = sum_j m_j g_j: dL/dz_k = m_k (g_k - s), so din_k += that / tau,
// and dL/dtau = -(1/tau^2) sum_k h_k m_k (g_k - s). Since sum_k m_k (g_k - s) = 0, h_k may
// be shifted by the pixel's max, which keeps large logits from cancelling. Returns the
// sample's sum_k (h_k - max) m_k (g_k - s) over all pixels.
static double softmax_backward_sample(float *din,       // (K, H*W)
                                      const float *g,   // (K, H*W)
                                      const float *h,   // (K, H*W)
                                      int64_t K, int64_t HW, double tau)
{
    double acc = 0;
    for (int64_t p = 0; p < HW; p++) {
        double mx = pixel_max(h + p, K, HW), sum = pixel_sum(h + p, K, HW, mx, tau), s = 0;
        for (int64_t k = 0; k < K; k++)
            s += exp((h[k * HW + p] - mx) / tau) / sum * g[k * HW + p];
        for (int64_t k = 0; k < K; k++) {
            int64_t i = k * HW + p;
            double shifted = h[i] - mx, dz = exp(shifted / tau) / sum * (g[i] - s);
            din[i] = (float)(din[i] + dz / tau);
            acc += shifted * dz;
        }
    }
    return acc;
}

// Recomputes m in double from in and tau rather than reading the float `out`: g - s
// cancels, and a float m would cost digits there.
int tmix_cpu_softmax_channel_backward(tmix_backend *be, tmix_tensor *din, tmix_tensor *dtau,
                                      const tmix_tensor *dout, const tmix_tensor *out,
                                      const tmix_tensor *in, const tmix_tensor *tau)
{
    static const char op[] = "softmax_channel_backward";
    double t = tmix_f32(tau)[0];
    TMIX_TRY(check_tau_value(op, t));
    int64_t N = in->shape[0], K = in->shape[1], HW = in->shape[2] * in->shape[3];
    // Per-sample partials of dtau, summed in index order so the result does not depend
    // on the thread count.
    double *partial = dtau ? malloc((size_t)N * sizeof *partial) : NULL;
    if (dtau && !partial)
        return tmix_fail(TMIX_ENOMEM, "%s: %lld dtau partials", op, (long long)N);
    float *dh = tmix_f32(din);
    const float *g = tmix_f32(dout), *h = tmix_f32(in);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        double acc = softmax_backward_sample(dh + n * K * HW, g + n * K * HW, h + n * K * HW,
                                             K, HW, t);
        if (partial)
            partial[n] = acc;
    }
    if (dtau) {
        double total = 0;
        for (int64_t n = 0; n < N; n++)
            total += partial[n];
        float *dt = tmix_f32(dtau);
        dt[0] = (float)(dt[0] - total / (t * t));
        free(partial);
    }
    return 0;
}
