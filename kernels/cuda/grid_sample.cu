// grid_sample on the GPU (the twin of kernels/grid_sample.c): bilinear sampling with zero
// padding and align_corners=False. One thread per grid point finds the point's four taps
// once and loops over the channels: the forward writes each output once, the grid gradient
// is summed over channels by that thread, and the input gradient is a scatter-add (below).
#include <math.h>

#include <math_constants.h>

#include "ops.cuh"
#include "pixel_rules.h"

// The input gradient is accumulated in double in the scratch buffer, at most this many
// bytes of it at a time (whole samples; a sample larger than this takes one pass alone).
#define DIN_SCRATCH_BYTES ((size_t)64 << 20)

// out[n, c, i, j] = sum over the taps of w * in[n, c, tap], in double in tap order as on the
// CPU; NaN for a non-finite point, 0 for one outside.
static __global__ void grid_sample_forward_kernel(float *out,        // (N, C, Ho, Wo)
                                                  const float *in,   // (N, C, H, W)
                                                  const float *grid, // (N, Ho, Wo, 2)
                                                  int64_t N, int64_t C, int64_t H, int64_t W,
                                                  int64_t outs) // Ho * Wo
{
    TMIX_CUDA_LOOP_Y(n, N) {
        TMIX_CUDA_LOOP(p, outs) {
            tmix_taps t;
            tmix_taps_kind kind = tmix_find_taps(&t, grid + (n * outs + p) * 2, H, W);
            for (int64_t c = 0; c < C; c++) {
                const float *plane = in + (n * C + c) * H * W;
                double v = kind == TMIX_TAPS_NONFINITE ? CUDART_NAN : 0.0;
                for (int k = 0; kind == TMIX_TAPS_INSIDE && k < 4; k++)
                    if (t.idx[k] >= 0)
                        v = __dadd_rn(v, __dmul_rn(t.w[k], plane[t.idx[k]]));
                out[(n * C + c) * outs + p] = (float)v;
            }
        }
    }
}

// The backward of samples [n0, n1): for each grid point of them, on whichever of acc and
// dgrid is not NULL,
//   acc[n - n0, c, tap] += w * dout[n, c, p]  (double atomicAdd: the input gradient is a
//       scatter, many points feed one pixel; the order of the adds is not fixed, but in
//       double it moves the sum by ~1e-16 only, so din rounds to the CPU's value but for a
//       rare tie, where it is one float ulp off),
//   dgrid[n, p] += (d out / d (gx, gy)) summed over the channels in order by this thread.
// A non-finite point sets its dgrid entries to NaN as on the CPU: x when y is non-finite
// (the x gradient is made of y weights) and y when x is; it adds nothing to acc.
static __global__ void grid_sample_backward_kernel(double *acc,       // (n1 - n0, C, H, W)
                                                   float *dgrid,      // (N, Ho, Wo, 2)
                                                   const float *dout, // (N, C, Ho, Wo)
                                                   const float *in,   // (N, C, H, W)
                                                   const float *grid, // (N, Ho, Wo, 2)
                                                   int64_t n0, int64_t n1, int64_t C,
                                                   int64_t H, int64_t W,
                                                   int64_t outs) // Ho * Wo
{
    const int64_t plane = H * W, chw = C * plane;
    TMIX_CUDA_LOOP_Y(dn, n1 - n0) {
        const int64_t n = n0 + dn;
        const float *inn = in + n * chw, *gon = dout + n * C * outs;
        TMIX_CUDA_LOOP(p, outs) {
            tmix_taps t;
            tmix_taps_kind kind = tmix_find_taps(&t, grid + (n * outs + p) * 2, H, W);
            float *d = dgrid ? dgrid + (n * outs + p) * 2 : NULL;
            if (kind == TMIX_TAPS_NONFINITE && d) {
                d[0] = isnan(t.ty) ? CUDART_NAN_F : d[0];
                d[1] = isnan(t.tx) ? CUDART_NAN_F : d[1];
            }
            if (kind != TMIX_TAPS_INSIDE)
                continue;
            double gix = 0, giy = 0;
            for (int64_t c = 0; c < C; c++) {
                double g = gon[c * outs + p];
                if (acc) {
                    for (int k = 0; k < 4; k++)
                        if (t.idx[k] >= 0)
                            atomicAdd(acc + dn * chw + c * plane + t.idx[k], t.w[k] * g);
                }
                if (d) {
                    double v[4];
                    for (int k = 0; k < 4; k++)
                        v[k] = t.idx[k] >= 0 ? inn[c * plane + t.idx[k]] : 0.0;
                    // d out / d tx and d out / d ty of the bilinear blend, rounded as on the CPU
                    double dx = __dadd_rn(__dmul_rn(v[1] - v[0], 1.0 - t.ty),
                                          __dmul_rn(v[3] - v[2], t.ty));
                    double dy = __dadd_rn(__dmul_rn(v[2] - v[0], 1.0 - t.tx),
                                          __dmul_rn(v[3] - v[1], t.tx));
                    gix = __dadd_rn(gix, __dmul_rn(g, dx));
                    giy = __dadd_rn(giy, __dmul_rn(g, dy));
                }
            }
            if (d) {
                // pixel x = ((gx + 1) * W - 1) / 2, so d x / d gx = W / 2 (and H / 2 for y)
                d[0] = (float)__dadd_rn(d[0], __dmul_rn(__dmul_rn(gix, (double)W), 0.5));
                d[1] = (float)__dadd_rn(d[1], __dmul_rn(__dmul_rn(giy, (double)H), 0.5));
            }
        }
    }
}

// din[e] += acc[e], rounded once: each sample's input gradient meets din in one add, as on
// the CPU.
static __global__ void add_double_kernel(float *din,        // (count)
                                         const double *acc, // (count)
                                         int64_t count)
{
    TMIX_CUDA_LOOP(e, count)
        din[e] = (float)(din[e] + acc[e]);
}

extern "C" int tmix_cuda_grid_sample_forward(tmix_backend *be, tmix_tensor *out,
                                             const tmix_tensor *in, const tmix_tensor *grid)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t N = in->shape[0], C = in->shape[1], H = in->shape[2], W = in->shape[3];
    int64_t outs = grid->shape[1] * grid->shape[2];
    tmix_cuda_plan2d g = tmix_cuda_plan(outs, N);
    grid_sample_forward_kernel<<<g.grid, g.block, 0, st->stream>>>(
        tmix_f32(out), tmix_f32(in), tmix_f32(grid), N, C, H, W, outs);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int tmix_cuda_grid_sample_backward(tmix_backend *be, tmix_tensor *din,
                                              tmix_tensor *dgrid, const tmix_tensor *dout,
                                              const tmix_tensor *in, const tmix_tensor *grid)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t N = in->shape[0], C = in->shape[1], H = in->shape[2], W = in->shape[3];
    int64_t outs = grid->shape[1] * grid->shape[2], chw = C * H * W;
    // Samples go in chunks whose double accumulator fits DIN_SCRATCH_BYTES; without din,
    // one chunk of all of them.
    int64_t chunk = N;
    if (din) {
        chunk = (int64_t)(DIN_SCRATCH_BYTES / ((size_t)chw * sizeof(double)));
        chunk = chunk < 1 ? 1 : chunk > N ? N : chunk;
    }
    double *acc = NULL;
    if (din) {
        void *scratch;
        TMIX_TRY(tmix_cuda_scratch(st, (size_t)(chunk * chw) * sizeof(double), &scratch));
        acc = (double *)scratch;
    }
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        int64_t n1 = n0 + chunk < N ? n0 + chunk : N;
        if (acc)
            CUDA_CHECK(cudaMemsetAsync(acc, 0, (size_t)((n1 - n0) * chw) * sizeof(double),
                                       st->stream));
        tmix_cuda_plan2d g = tmix_cuda_plan(outs, n1 - n0);
        grid_sample_backward_kernel<<<g.grid, g.block, 0, st->stream>>>(
            acc, dgrid ? tmix_f32(dgrid) : NULL, tmix_f32(dout), tmix_f32(in), tmix_f32(grid),
            n0, n1, C, H, W, outs);
        CUDA_CHECK(cudaGetLastError());
        if (acc) {
            int64_t count = (n1 - n0) * chw;
            add_double_kernel<<<tmix_cuda_blocks(count, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0,
                                st->stream>>>(tmix_f32(din) + n0 * chw, acc, count);
            CUDA_CHECK(cudaGetLastError());
        }
    }
    return 0;
}
