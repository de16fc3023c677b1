// blend: mixes K images per output with per-pixel masks, out[b] = sum_k masks[b, k] *
// x[b * K + k], the mask broadcast over the channels. The K sources of output b are
// consecutive in x, so a mixing batch is built by stacking the picked images.
#include "check.h"
#include "cpu.h"
#include "ops.h"

// masks (B, K, H, W) fixes B, K, H, W; x must be (B * K, C, H, W) for some C.
static int check_masks_x(const char *op, const tmix_backend *be, const tmix_tensor *masks,
                         const tmix_tensor *x)
{
    TMIX_TRY(tmix_check_tensor(op, "masks", masks, be, TMIX_F32, 4));
    const int64_t *m = masks->shape;
    return tmix_check_shape(op, "x", x, be, TMIX_F32, 4,
                            (int64_t[]){m[0] * m[1], -1, m[2], m[3]});
}

int tmix_blend_forward(tmix_backend *be,
                       tmix_tensor *out,         // (B, C, H, W)
                       const tmix_tensor *masks, // (B, K, H, W)
                       const tmix_tensor *x)     // (B * K, C, H, W)
{
    static const char op[] = "blend_forward";
    TMIX_CHECK_BACKEND(op, be, blend_forward);
    TMIX_TRY(check_masks_x(op, be, masks, x));
    const int64_t *m = masks->shape;
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4,
                              (int64_t[]){m[0], x->shape[1], m[2], m[3]}));
    TMIX_CALL(op, be, blend_forward, out, masks, x);
}

int tmix_cpu_blend_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *masks,
                           const tmix_tensor *x)
{
    int64_t B = masks->shape[0], K = masks->shape[1], C = x->shape[1];
    int64_t HW = masks->shape[2] * masks->shape[3];
    const float *m = tmix_f32(masks), *xs = tmix_f32(x);
    float *y = tmix_f32(out);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *mb = m + b * K * HW;       // (K, HW)
        const float *xb = xs + b * K * C * HW;  // (K, C, HW)
        float *yb = y + b * C * HW;             // (C, HW)
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < HW; p++) {
                // Products of floats are exact in double: one rounding at the end.
                double acc = 0;
                for (int64_t k = 0; k < K; k++)
                    acc += (double)mb[k * HW + p] * xb[(k * C + c) * HW + p];
                yb[c * HW + p] = (float)acc;
            }
    }
    return 0;
}

int tmix_blend_backward(tmix_backend *be,
                        tmix_tensor *dmasks,     // (B, K, H, W) or NULL
                        tmix_tensor *dx,         // (B * K, C, H, W) or NULL
                        const tmix_tensor *dout, // (B, C, H, W)
                        const tmix_tensor *masks,// (B, K, H, W)
                        const tmix_tensor *x)    // (B * K, C, H, W)
{
    static const char op[] = "blend_backward";
    TMIX_CHECK_BACKEND(op, be, blend_backward);
    TMIX_TRY(check_masks_x(op, be, masks, x));
    const int64_t *m = masks->shape;
    if (dmasks)
        TMIX_TRY(tmix_check_shape(op, "dmasks", dmasks, be, TMIX_F32, 4, masks->shape));
    if (dx)
        TMIX_TRY(tmix_check_shape(op, "dx", dx, be, TMIX_F32, 4, x->shape));
    TMIX_TRY(tmix_check_shape(op, "dout", dout, be, TMIX_F32, 4,
                              (int64_t[]){m[0], x->shape[1], m[2], m[3]}));
    TMIX_CALL(op, be, blend_backward, dmasks, dx, dout, masks, x);
}

int tmix_cpu_blend_backward(tmix_backend *be, tmix_tensor *dmasks, tmix_tensor *dx,
                            const tmix_tensor *dout, const tmix_tensor *masks,
                            const tmix_tensor *x)
{
    int64_t B = masks->shape[0], K = masks->shape[1], C = x->shape[1];
    int64_t HW = masks->shape[2] * masks->shape[3];
    const float *m = tmix_f32(masks), *xs = tmix_f32(x), *g = tmix_f32(dout);
    float *dm = dmasks ? tmix_f32(dmasks) : NULL, *dxs = dx ? tmix_f32(dx) : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *gb = g + b * C * HW; // (C, HW)
        for (int64_t k = 0; k < K; k++) {
            const float *mk = m + (b * K + k) * HW;       // (HW)
            const float *xk = xs + (b * K + k) * C * HW;  // (C, HW)
            if (dm) {
                // dmasks[b, k] += sum over c of dout[b, c] * x[b * K + k, c]
                float *dmk = dm + (b * K + k) * HW;
                for (int64_t p = 0; p < HW; p++) {
                    double acc = 0;
                    for (int64_t c = 0; c < C; c++)
                        acc += (double)gb[c * HW + p] * xk[c * HW + p];
                    dmk[p] = (float)(dmk[p] + acc);
                }
            }
            if (dxs) {
                // dx[b * K + k, c] += masks[b, k] * dout[b, c]
                float *dxk = dxs + (b * K + k) * C * HW;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t p = 0; p < HW; p++)
                        dxk[c * HW + p] =
                            (float)(dxk[c * HW + p] + (double)mk[p] * gb[c * HW + p]);
            }
        }
    }
    return 0;
}
