// grid_sample: bilinear sampling of an image at arbitrary points, as PyTorch's
// F.grid_sample(in, grid, mode="bilinear", padding_mode="zeros", align_corners=False).
// Grid point (gx, gy) in [-1, 1] maps to pixel (((gx + 1) * W - 1) / 2, ((gy + 1) * H - 1) / 2);
// the value there blends the four neighbouring pixels, and neighbours outside the image read
// zero. The output may have a different spatial size than the input.
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "check.h"
#include "cpu.h"
#include "ops.h"
#include "pixel_rules.h"

int tmix_grid_sample_forward(tmix_backend *be,
                             tmix_tensor *out,         // (N, C, Ho, Wo)
                             const tmix_tensor *in,    // (N, C, H, W)
                             const tmix_tensor *grid)  // (N, Ho, Wo, 2)
{
    static const char op[] = "grid_sample_forward";
    TMIX_CHECK_BACKEND(op, be, grid_sample_forward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    const int64_t N = in->shape[0], C = in->shape[1];
    TMIX_TRY(tmix_check_shape(op, "grid", grid, be, TMIX_F32, 4, (int64_t[]){N, -1, -1, 2}));
    const int64_t Ho = grid->shape[1], Wo = grid->shape[2];
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4, (int64_t[]){N, C, Ho, Wo}));
    TMIX_CALL(op, be, grid_sample_forward, out, in, grid);
}

int tmix_grid_sample_backward(tmix_backend *be,
                              tmix_tensor *din,         // (N, C, H, W) or NULL
                              tmix_tensor *dgrid,       // (N, Ho, Wo, 2) or NULL
                              const tmix_tensor *dout,  // (N, C, Ho, Wo)
                              const tmix_tensor *in,    // (N, C, H, W)
                              const tmix_tensor *grid)  // (N, Ho, Wo, 2)
{
    static const char op[] = "grid_sample_backward";
    TMIX_CHECK_BACKEND(op, be, grid_sample_backward);
    if (!din && !dgrid)
        return tmix_fail(TMIX_EINVAL, "%s: din and dgrid are both NULL, nothing to compute", op);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    const int64_t N = in->shape[0], C = in->shape[1];
    TMIX_TRY(tmix_check_shape(op, "grid", grid, be, TMIX_F32, 4, (int64_t[]){N, -1, -1, 2}));
    const int64_t Ho = grid->shape[1], Wo = grid->shape[2];
    TMIX_TRY(tmix_check_shape(op, "dout", dout, be, TMIX_F32, 4, (int64_t[]){N, C, Ho, Wo}));
    if (din)
        TMIX_TRY(tmix_check_shape(op, "din", din, be, TMIX_F32, 4, in->shape));
    if (dgrid)
        TMIX_TRY(tmix_check_shape(op, "dgrid", dgrid, be, TMIX_F32, 4, grid->shape));
    TMIX_CALL(op, be, grid_sample_backward, din, dgrid, dout, in, grid);
}

int tmix_cpu_grid_sample_forward(tmix_backend *be,
                                 tmix_tensor *out,        // (N, C, Ho, Wo)
                                 const tmix_tensor *in,   // (N, C, H, W)
                                 const tmix_tensor *grid) // (N, Ho, Wo, 2)
{
    (void)be;
    const int64_t N = in->shape[0], C = in->shape[1], H = in->shape[2], W = in->shape[3];
    const int64_t Ho = out->shape[2], Wo = out->shape[3];
    const float *inp = tmix_f32(in), *gp = tmix_f32(grid);
    float *outp = tmix_f32(out);
    // Output rows are independent; each output element is written by one thread.
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        for (int64_t i = 0; i < Ho; i++) {
            for (int64_t j = 0; j < Wo; j++) {
                tmix_taps t;
                tmix_taps_kind kind = tmix_find_taps(&t, gp + ((n * Ho + i) * Wo + j) * 2, H, W);
                for (int64_t c = 0; c < C; c++) {
                    const float *plane = inp + (n * C + c) * H * W;
                    double v = kind == TMIX_TAPS_NONFINITE ? NAN : 0.0;
                    for (int k = 0; kind == TMIX_TAPS_INSIDE && k < 4; k++)
                        if (t.idx[k] >= 0)
                            v += t.w[k] * plane[t.idx[k]];
                    outp[((n * C + c) * Ho + i) * Wo + j] = (float)v;
                }
            }
        }
    }
    return 0;
}

int tmix_cpu_grid_sample_backward(tmix_backend *be,
                                  tmix_tensor *din,         // (N, C, H, W) or NULL
                                  tmix_tensor *dgrid,       // (N, Ho, Wo, 2) or NULL
                                  const tmix_tensor *dout,  // (N, C, Ho, Wo)
                                  const tmix_tensor *in,    // (N, C, H, W)
                                  const tmix_tensor *grid)  // (N, Ho, Wo, 2)
{
    (void)be;
    const int64_t N = in->shape[0], C = in->shape[1], H = in->shape[2], W = in->shape[3];
    const int64_t Ho = grid->shape[1], Wo = grid->shape[2];
    const int64_t plane = H * W, chw = C * plane, outs = Ho * Wo;
    const float *inp = tmix_f32(in), *gp = tmix_f32(grid), *go = tmix_f32(dout);
    float *dinp = din ? tmix_f32(din) : NULL, *dgp = dgrid ? tmix_f32(dgrid) : NULL;

    // din is a scatter-add: many output points feed one input pixel. Each thread sums its
    // sample's contributions in a private double buffer (fixed order, no rounding per add)
    // and adds the total to din once, so the result is the same for any thread count.
    // No more threads than samples, so the buffers are one per thread that has work.
    int threads = omp_get_max_threads();
    if ((int64_t)threads > N)
        threads = (int)N;
    double *scratch = NULL;
    if (din) {
        size_t bytes = (size_t)threads * (size_t)chw * sizeof *scratch;
        scratch = malloc(bytes);
        if (!scratch)
            return tmix_fail(TMIX_ENOMEM, "grid_sample_backward: %zu scratch bytes", bytes);
    }

#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t n = 0; n < N; n++) {
        double *acc = scratch ? scratch + (size_t)omp_get_thread_num() * (size_t)chw : NULL;
        for (int64_t e = 0; acc && e < chw; e++)
            acc[e] = 0;
        const float *inn = inp + n * chw, *gon = go + n * C * outs;
        for (int64_t p = 0; p < outs; p++) {
            tmix_taps t;
            tmix_taps_kind kind = tmix_find_taps(&t, gp + (n * outs + p) * 2, H, W);
            if (kind == TMIX_TAPS_NONFINITE && dgp) {
                float *d = dgp + (n * outs + p) * 2;
                d[0] = isnan(t.ty) ? NAN : d[0];
                d[1] = isnan(t.tx) ? NAN : d[1];
            }
            if (kind != TMIX_TAPS_INSIDE)
                continue;
            double gix = 0, giy = 0;
            for (int64_t c = 0; c < C; c++) {
                double g = gon[c * outs + p];
                if (acc) {
                    for (int k = 0; k < 4; k++)
                        if (t.idx[k] >= 0)
                            acc[c * plane + t.idx[k]] += t.w[k] * g;
                }
                if (dgp) {
                    double v[4];
                    for (int k = 0; k < 4; k++)
                        v[k] = t.idx[k] >= 0 ? inn[c * plane + t.idx[k]] : 0.0;
                    // d out / d tx and d out / d ty of the bilinear blend
                    gix += g * ((v[1] - v[0]) * (1.0 - t.ty) + (v[3] - v[2]) * t.ty);
                    giy += g * ((v[2] - v[0]) * (1.0 - t.tx) + (v[3] - v[1]) * t.tx);
                }
            }
            if (dgp) {
                // pixel x = ((gx + 1) * W - 1) / 2, so d x / d gx = W / 2 (and H / 2 for y)
                float *d = dgp + (n * outs + p) * 2;
                d[0] = (float)(d[0] + gix * (double)W * 0.5);
                d[1] = (float)(d[1] + giy * (double)H * 0.5);
            }
        }
        for (int64_t e = 0; acc && e < chw; e++)
            dinp[n * chw + e] = (float)(dinp[n * chw + e] + acc[e]);
    }
    free(scratch);
    return 0;
}
