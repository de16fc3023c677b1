// affine_grid: the sampling grid of a batch of 2-D affine transforms, as PyTorch's
// F.affine_grid(theta, (N, C, H, W), align_corners=False). Each grid point is theta[n]
// applied to the pixel centre (x_j, y_i, 1) in normalised coordinates; the grid feeds
// grid_sample, and together they are the spatial-transformer warp of TransformMix.
#include "check.h"
#include "cpu.h"
#include "ops.h"

// Normalised coordinate of pixel centre i on an axis of n pixels (align_corners=False):
// pixel centres sit at (2i + 1) / n - 1, so the image spans [-1, 1] edge to edge.
static inline double base_coord(int64_t i, int64_t n)
{
    return (double)(2 * i + 1) / (double)n - 1.0;
}

int tmix_affine_grid_forward(tmix_backend *be,
                             tmix_tensor *grid,         // (N, H, W, 2)
                             const tmix_tensor *theta)  // (N, 2, 3)
{
    static const char op[] = "affine_grid_forward";
    TMIX_CHECK_BACKEND(op, be, affine_grid_forward);
    TMIX_TRY(tmix_check_shape(op, "theta", theta, be, TMIX_F32, 3, (int64_t[]){-1, 2, 3}));
    int64_t n = theta->shape[0];
    TMIX_TRY(tmix_check_shape(op, "grid", grid, be, TMIX_F32, 4, (int64_t[]){n, -1, -1, 2}));
    TMIX_CALL(op, be, affine_grid_forward, grid, theta);
}

int tmix_cpu_affine_grid_forward(tmix_backend *be,
                                 tmix_tensor *grid,        // (N, H, W, 2)
                                 const tmix_tensor *theta) // (N, 2, 3)
{
    (void)be;
    const int64_t N = grid->shape[0], H = grid->shape[1], W = grid->shape[2];
    const float *th = tmix_f32(theta);
    float *g = tmix_f32(grid);
    // Rows of all samples are independent; each grid point is written by one thread.
    // The value is (t0 * x + t1 * y) + t2 in double, in that order and without fused
    // multiply-adds, rounded once to float32. grid_sample is sensitive to the last bit of
    // a grid point (exact ties of that rounding are common with power-of-two sizes), so
    // tests/golden/gen_warp.py computes the warp suite's grid exactly this way; a twin on
    // another backend must too, to reproduce the warp suite.
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        for (int64_t i = 0; i < H; i++) {
            const float *t = th + n * 6;
            float *row = g + ((n * H + i) * W) * 2;
            double y = base_coord(i, H);
            for (int64_t j = 0; j < W; j++) {
                double x = base_coord(j, W);
                row[2 * j + 0] = (float)(t[0] * x + t[1] * y + t[2]);
                row[2 * j + 1] = (float)(t[3] * x + t[4] * y + t[5]);
            }
        }
    }
    return 0;
}

int tmix_affine_grid_backward(tmix_backend *be,
                              tmix_tensor *dtheta,      // (N, 2, 3)
                              const tmix_tensor *dgrid) // (N, H, W, 2)
{
    static const char op[] = "affine_grid_backward";
    TMIX_CHECK_BACKEND(op, be, affine_grid_backward);
    TMIX_TRY(tmix_check_shape(op, "dgrid", dgrid, be, TMIX_F32, 4, (int64_t[]){-1, -1, -1, 2}));
    int64_t n = dgrid->shape[0];
    TMIX_TRY(tmix_check_shape(op, "dtheta", dtheta, be, TMIX_F32, 3, (int64_t[]){n, 2, 3}));
    TMIX_CALL(op, be, affine_grid_backward, dtheta, dgrid);
}

int tmix_cpu_affine_grid_backward(tmix_backend *be,
                                  tmix_tensor *dtheta,      // (N, 2, 3)
                                  const tmix_tensor *dgrid) // (N, H, W, 2)
{
    (void)be;
    const int64_t N = dgrid->shape[0], H = dgrid->shape[1], W = dgrid->shape[2];
    const float *dg = tmix_f32(dgrid);
    float *dt = tmix_f32(dtheta);
    // dtheta[n] = sum over (i, j) of dgrid[n, i, j] (outer) (x_j, y_i, 1), summed in double
    // in row-major order by the one thread that owns sample n.
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        double acc[6] = {0};
        const float *d = dg + n * H * W * 2;
        for (int64_t i = 0; i < H; i++) {
            double y = base_coord(i, H);
            for (int64_t j = 0; j < W; j++) {
                double x = base_coord(j, W);
                double gx = d[(i * W + j) * 2 + 0], gy = d[(i * W + j) * 2 + 1];
                acc[0] += gx * x;
                acc[1] += gx * y;
                acc[2] += gx;
                acc[3] += gy * x;
                acc[4] += gy * y;
                acc[5] += gy;
            }
        }
        for (int k = 0; k < 6; k++)
            dt[n * 6 + k] = (float)(dt[n * 6 + k] + acc[k]);
    }
    return 0;
}
