// Unit tests of the warp group: affine_grid, grid_sample, resize_bilinear and
// minmax_normalize. Finite-difference gradient checks of every backward op on the CPU
// backend, argument checks of every entry point, and thread-count independence.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "harness.h"
#include "ops.h"

// Pixel coordinate of grid value g on an axis of n pixels (align_corners=False).
static double to_pixel(float g, int64_t n)
{
    return (((double)g + 1.0) * (double)n - 1.0) * 0.5;
}

// Grid value whose pixel coordinate on an axis of n pixels is p.
static float from_pixel(double p, int64_t n)
{
    return (float)((2.0 * p + 1.0) / (double)n - 1.0);
}

// Distance of pixel coordinate p from the nearest cell border (an integer), where bilinear
// sampling has a kink.
static double border_distance(double p)
{
    double f = p - floor(p);
    return f < 1.0 - f ? f : 1.0 - f;
}

// ---- gradcheck.affine_grid.grad_theta ----------------------------------------------------
typedef struct {
    test_loss loss; // L = <grid, r>, r (N, H, W, 2)
    tmix_tensor grid, theta;
} affine_problem;

static int affine_forward(test_loss *self)
{
    affine_problem *c = (affine_problem *)self;
    return tmix_affine_grid_forward(cpu(), &c->grid, &c->theta);
}

static int test_gradcheck_affine_grid(void)
{
    enum { N = 2, H = 5, W = 7 };
    float theta[N * 6], grid[N * H * W * 2], r[N * H * W * 2], dtheta[N * 6] = {0};
    fill_uniform(theta, N * 6, 1, -1.5f, 1.5f);
    fill_uniform(r, N * H * W * 2, 2, -1.0f, 1.0f);
    affine_problem c = {
        .loss = {.forward = affine_forward, .out = grid, .r = r, .n = N * H * W * 2},
        .grid = V4(grid, N, H, W, 2),
        .theta = V3(theta, N, 2, 3),
    };
    tmix_tensor dgrid = V4(r, N, H, W, 2);
    tmix_tensor dth = V3(dtheta, N, 2, 3);
    CHECK_OK(tmix_affine_grid_backward(cpu(), &dth, &dgrid));
    CHECK(gradcheck_loss("dtheta", theta, N * 6, dtheta, &c.loss, 1e-2, 1e-3, 1e-2) == 0);

    // Backward accumulates: a second call doubles the gradient.
    float once[N * 6];
    memcpy(once, dtheta, sizeof once);
    CHECK_OK(tmix_affine_grid_backward(cpu(), &dth, &dgrid));
    for (int i = 0; i < N * 6; i++)
        CHECK(fabsf(dtheta[i] - 2 * once[i]) <= 1e-6f * (1 + fabsf(once[i])));
    return 0;
}

// ---- grid_sample gradchecks --------------------------------------------------------------
typedef struct {
    test_loss loss; // L = <out, r>, r (N, C, Ho, Wo)
    tmix_tensor out, in, grid;
} sample_problem;

static int sample_forward(test_loss *self)
{
    sample_problem *c = (sample_problem *)self;
    return tmix_grid_sample_forward(cpu(), &c->out, &c->in, &c->grid);
}

enum { GN = 2, GC = 3, GH = 5, GW = 6, GHO = 4, GWO = 7 };
#define IN_SIZE (GN * GC * GH * GW)
#define OUT_SIZE (GN * GC * GHO * GWO)
#define GRID_SIZE (GN * GHO * GWO * 2)

// Grid points whose pixel coordinates sit in the middle of their cells (fraction 0.25 to
// 0.75), so a step of h in the grid (h * W / 2 pixels) never crosses a kink. Cells run from
// -1 to size - 1 so that some neighbours are outside; every seventh point lies wholly
// outside the image, where the gradient must be 0.
static void smooth_grid(float *grid, int64_t points, int64_t h, int64_t w, uint64_t seed)
{
    float u[4];
    for (int64_t p = 0; p < points; p++) {
        fill_uniform(u, 4, seed + (uint64_t)p, 0.0f, 1.0f);
        int64_t cx = (int64_t)(u[0] * (float)(w + 1)) - 1;
        int64_t cy = (int64_t)(u[1] * (float)(h + 1)) - 1;
        if (p % 7 == 3)
            cx = u[0] < 0.5f ? -3 : w + 1;
        grid[2 * p + 0] = from_pixel((double)cx + 0.25 + 0.5 * u[2], w);
        grid[2 * p + 1] = from_pixel((double)cy + 0.25 + 0.5 * u[3], h);
    }
}

static int test_gradcheck_grid_sample_input(void)
{
    float in[IN_SIZE], grid[GRID_SIZE], out[OUT_SIZE], r[OUT_SIZE], din[IN_SIZE] = {0};
    fill_uniform(in, IN_SIZE, 10, -1.0f, 1.0f);
    fill_uniform(grid, GRID_SIZE, 11, -1.2f, 1.2f); // linear in `in`: any grid will do
    fill_uniform(r, OUT_SIZE, 12, -1.0f, 1.0f);
    sample_problem c = {
        .loss = {.forward = sample_forward, .out = out, .r = r, .n = OUT_SIZE},
        .out = V4(out, GN, GC, GHO, GWO),
        .in = V4(in, GN, GC, GH, GW),
        .grid = V4(grid, GN, GHO, GWO, 2),
    };
    tmix_tensor dout = V4(r, GN, GC, GHO, GWO);
    tmix_tensor dinv = V4(din, GN, GC, GH, GW);
    CHECK_OK(tmix_grid_sample_backward(cpu(), &dinv, NULL, &dout, &c.in, &c.grid));
    CHECK(gradcheck_loss("din", in, IN_SIZE, din, &c.loss, 1e-2, 1e-3, 1e-2) == 0);
    return 0;
}

static int test_gradcheck_grid_sample_grid(void)
{
    float in[IN_SIZE], grid[GRID_SIZE], out[OUT_SIZE], r[OUT_SIZE], dgrid[GRID_SIZE] = {0};
    fill_uniform(in, IN_SIZE, 20, -1.0f, 1.0f);
    smooth_grid(grid, GN * GHO * GWO, GH, GW, 21);
    fill_uniform(r, OUT_SIZE, 22, -1.0f, 1.0f);
    sample_problem c = {
        .loss = {.forward = sample_forward, .out = out, .r = r, .n = OUT_SIZE},
        .out = V4(out, GN, GC, GHO, GWO),
        .in = V4(in, GN, GC, GH, GW),
        .grid = V4(grid, GN, GHO, GWO, 2),
    };
    tmix_tensor dout = V4(r, GN, GC, GHO, GWO);
    tmix_tensor dg = V4(dgrid, GN, GHO, GWO, 2);
    CHECK_OK(tmix_grid_sample_backward(cpu(), NULL, &dg, &dout, &c.in, &c.grid));
    // Points outside the image have no gradient; the others must have one, or the check
    // below would pass for an op that forgot the grid gradient.
    int64_t nonzero = 0;
    for (int64_t p = 0; p < GN * GHO * GWO; p++) {
        if (p % 7 == 3)
            CHECK(dgrid[2 * p] == 0 && dgrid[2 * p + 1] == 0);
        nonzero += dgrid[2 * p] != 0;
    }
    CHECK(nonzero > GN * GHO * GWO / 2);
    CHECK(gradcheck_loss("dgrid", grid, GRID_SIZE, dgrid, &c.loss, 1e-3, 1e-3, 1e-2) == 0);
    return 0;
}

// ---- gradcheck.warp.grad_theta: theta -> affine_grid -> grid_sample -----------------------
enum { WN = 2, WC = 2, WH = 5, WW = 6 };
#define W_IMG (WN * WC * WH * WW)
#define W_GRID (WN * WH * WW * 2)

typedef struct {
    test_loss loss; // L = <out, r>
    tmix_tensor theta, grid, out, in;
} warp_problem;

static int warp_forward(test_loss *self)
{
    warp_problem *c = (warp_problem *)self;
    int rc = tmix_affine_grid_forward(cpu(), &c->grid, &c->theta);
    return rc != 0 ? rc : tmix_grid_sample_forward(cpu(), &c->out, &c->in, &c->grid);
}

// Draws theta[n] (rotation within 35 degrees, scale 0.7 to 1.3, shift up to 0.3) until every
// point of the grid is at least `margin` pixels from a cell border, so the finite
// differences never straddle a kink. Deterministic: the same seeds every run.
static int smooth_theta(float *theta, float *grid, int64_t n, double margin)
{
    float *t = theta + 6 * n, *gn = grid + n * WH * WW * 2;
    tmix_tensor th = V3(t, 1, 2, 3);
    tmix_tensor g = V4(gn, 1, WH, WW, 2);
    for (uint64_t tries = 0; tries < 1000; tries++) {
        float u[4];
        fill_uniform(u, 4, 1000 * (uint64_t)(n + 1) + tries, -1.0f, 1.0f);
        double a = 0.6 * u[0], s = 1.0 + 0.3 * u[1];
        t[0] = (float)(s * cos(a)), t[1] = (float)(-s * sin(a)), t[2] = 0.3f * u[2];
        t[3] = (float)(s * sin(a)), t[4] = (float)(s * cos(a)), t[5] = 0.3f * u[3];
        if (tmix_affine_grid_forward(cpu(), &g, &th) < 0)
            return -1;
        bool ok = true;
        for (int64_t p = 0; ok && p < WH * WW; p++)
            ok = border_distance(to_pixel(gn[2 * p], WW)) >= margin &&
                 border_distance(to_pixel(gn[2 * p + 1], WH)) >= margin;
        if (ok) {
            printf("  sample %lld: theta from try %llu\n", (long long)n,
                   (unsigned long long)tries);
            return 0;
        }
    }
    return -1;
}

static int test_gradcheck_warp(void)
{
    float theta[WN * 6], grid[W_GRID], dgrid[W_GRID] = {0}, dtheta[WN * 6] = {0};
    float in[W_IMG], out[W_IMG], r[W_IMG];
    fill_uniform(in, W_IMG, 30, -1.0f, 1.0f);
    fill_uniform(r, W_IMG, 31, -1.0f, 1.0f);
    // A step h of theta moves a point by at most h * (|x| + |y| + 1) * W / 2 < 3 h * 3
    // pixels; keep three times that away from every border.
    const double h = 1e-3, margin = 3 * 9 * h;
    for (int64_t n = 0; n < WN; n++)
        CHECK(smooth_theta(theta, grid, n, margin) == 0);
    warp_problem c = {
        .loss = {.forward = warp_forward, .out = out, .r = r, .n = W_IMG},
        .theta = V3(theta, WN, 2, 3),
        .grid = V4(grid, WN, WH, WW, 2),
        .out = V4(out, WN, WC, WH, WW),
        .in = V4(in, WN, WC, WH, WW),
    };
    tmix_tensor dout = V4(r, WN, WC, WH, WW);
    tmix_tensor dg = V4(dgrid, WN, WH, WW, 2);
    tmix_tensor dth = V3(dtheta, WN, 2, 3);
    CHECK_OK(tmix_affine_grid_forward(cpu(), &c.grid, &c.theta));
    CHECK_OK(tmix_grid_sample_backward(cpu(), NULL, &dg, &dout, &c.in, &c.grid));
    CHECK_OK(tmix_affine_grid_backward(cpu(), &dth, &dg));
    CHECK(gradcheck_loss("dtheta", theta, WN * 6, dtheta, &c.loss, h, 1e-3, 1e-2) == 0);
    return 0;
}

// ---- bad input ------------------------------------------------------------------------------
static int test_badinput_affine_grid(void)
{
    enum { N = 2, H = 3, W = 4 };
    static const char fwd[] = "affine_grid_forward", bwd[] = "affine_grid_backward";
    float theta[N * 6], grid[N * H * W * 2], dtheta[N * 6], big[3 * H * W * 3];
    fill_uniform(theta, N * 6, 40, -1.0f, 1.0f);
    tmix_backend *be = cpu();
    tmix_tensor th = V3(theta, N, 2, 3), g = V4(grid, N, H, W, 2), dth = V3(dtheta, N, 2, 3);
    const test_buf grid_out[] = {{grid, COUNT(grid)}}, dtheta_out[] = {{dtheta, COUNT(dtheta)}};

    // forward
    EXPECT_FAIL(tmix_affine_grid_forward(NULL, &g, &th), TMIX_EINVAL, fwd, grid_out);
    EXPECT_FAIL(tmix_affine_grid_forward(empty_backend(), &g, &th), TMIX_ENOTSUP, fwd,
                grid_out);
    EXPECT_FAIL(tmix_affine_grid_forward(be, NULL, &th), TMIX_EINVAL, fwd, grid_out);
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g, NULL), TMIX_EINVAL, fwd, grid_out);
    tmix_tensor flat = V2(theta, N, 6);
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g, &flat), TMIX_ESHAPE, fwd, grid_out);
    tmix_tensor th33 = V3(big, N, 3, 3); // 3-D transforms: no
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g, &th33), TMIX_ESHAPE, fwd, grid_out);
    tmix_tensor g3 = V3(grid, N, H * W, 2);
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g3, &th), TMIX_ESHAPE, fwd, grid_out);
    tmix_tensor g_batch = V4(big, 3, H, W, 2);
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g_batch, &th), TMIX_ESHAPE, fwd, grid_out);
    tmix_tensor g_last = V4(big, N, H, W, 3);
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g_last, &th), TMIX_ESHAPE, fwd, grid_out);
    tmix_tensor g_zero = V4(grid, N, 0, W, 2);
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g_zero, &th), TMIX_ESHAPE, fwd, grid_out);
    tmix_tensor th_u8 = as_u8(th);
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g, &th_u8), TMIX_EDTYPE, fwd, grid_out);
    tmix_tensor g_u8 = as_u8(g);
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g_u8, &th), TMIX_EDTYPE, fwd, grid_out);
    tmix_tensor g_gpu = on_cuda(g);
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g_gpu, &th), TMIX_EDEVICE, fwd, grid_out);
    tmix_tensor th_gpu = on_cuda(th);
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g, &th_gpu), TMIX_EDEVICE, fwd, grid_out);
    tmix_tensor th_nodata = V3(NULL, N, 2, 3);
    EXPECT_FAIL(tmix_affine_grid_forward(be, &g, &th_nodata), TMIX_EINVAL, fwd, grid_out);
    CHECK(all_const(grid, N * H * W * 2, SENTINEL));

    // backward: the sentinel-filled grid serves as dgrid
    tmix_tensor dth_u8 = as_u8(dth);
    EXPECT_FAIL(tmix_affine_grid_backward(NULL, &dth, &g), TMIX_EINVAL, bwd, dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(empty_backend(), &dth, &g), TMIX_ENOTSUP, bwd,
                dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(be, NULL, &g), TMIX_EINVAL, bwd, dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(be, &dth, NULL), TMIX_EINVAL, bwd, dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(be, &dth, &g3), TMIX_ESHAPE, bwd, dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(be, &dth, &g_batch), TMIX_ESHAPE, bwd, dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(be, &dth, &g_last), TMIX_ESHAPE, bwd, dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(be, &flat, &g), TMIX_ESHAPE, bwd, dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(be, &th33, &g), TMIX_ESHAPE, bwd, dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(be, &dth_u8, &g), TMIX_EDTYPE, bwd, dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(be, &dth, &g_u8), TMIX_EDTYPE, bwd, dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(be, &th_gpu, &g), TMIX_EDEVICE, bwd, dtheta_out);
    EXPECT_FAIL(tmix_affine_grid_backward(be, &dth, &g_gpu), TMIX_EDEVICE, bwd, dtheta_out);
    CHECK(all_const(dtheta, N * 6, SENTINEL));

    // and the valid calls go through
    CHECK_OK(tmix_affine_grid_forward(be, &g, &th));
    CHECK_OK(tmix_affine_grid_backward(be, &dth, &g));
    return 0;
}

static int test_badinput_grid_sample(void)
{
    enum { N = 2, C = 3, H = 4, W = 5, HO = 3, WO = 6 };
    static const char fwd[] = "grid_sample_forward", bwd[] = "grid_sample_backward";
    float in[N * C * H * W], grid[N * HO * WO * 2], out[N * C * HO * WO];
    float dout[N * C * HO * WO], din[N * C * H * W], dgrid[N * HO * WO * 2];
    float big[4 * C * 8 * 8];
    fill_uniform(in, N * C * H * W, 50, -1.0f, 1.0f);
    fill_uniform(grid, N * HO * WO * 2, 51, -1.2f, 1.2f);
    fill_uniform(dout, N * C * HO * WO, 52, -1.0f, 1.0f);
    tmix_backend *be = cpu();
    tmix_tensor x = V4(in, N, C, H, W);
    tmix_tensor g = V4(grid, N, HO, WO, 2);
    tmix_tensor y = V4(out, N, C, HO, WO);
    tmix_tensor dy = V4(dout, N, C, HO, WO);
    tmix_tensor dx = V4(din, N, C, H, W);
    tmix_tensor dg = V4(dgrid, N, HO, WO, 2);
    const test_buf out_out[] = {{out, COUNT(out)}};
    const test_buf grads_out[] = {{din, COUNT(din)}, {dgrid, COUNT(dgrid)}};

    tmix_tensor x3 = V3(in, N * C, H, W);
    tmix_tensor g_batch = V4(big, N + 1, HO, WO, 2);
    tmix_tensor g_last = V4(big, N, HO, WO, 3);
    tmix_tensor y_chan = V4(big, N, C + 1, HO, WO);
    tmix_tensor y_size = V4(big, N, C, HO, WO + 1);
    tmix_tensor x_size = V4(big, N, C, H + 1, W);
    tmix_tensor g_size = V4(big, N, HO + 1, WO, 2);
    tmix_tensor x_u8 = as_u8(x), g_u8 = as_u8(g), dx_u8 = as_u8(dx), dg_u8 = as_u8(dg);
    tmix_tensor y_gpu = on_cuda(y), g_gpu = on_cuda(g);

    // forward
    EXPECT_FAIL(tmix_grid_sample_forward(NULL, &y, &x, &g), TMIX_EINVAL, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(empty_backend(), &y, &x, &g), TMIX_ENOTSUP, fwd,
                out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, NULL, &x, &g), TMIX_EINVAL, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, &y, NULL, &g), TMIX_EINVAL, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, &y, &x, NULL), TMIX_EINVAL, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, &y, &x3, &g), TMIX_ESHAPE, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, &y, &x, &g_batch), TMIX_ESHAPE, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, &y, &x, &g_last), TMIX_ESHAPE, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, &y_chan, &x, &g), TMIX_ESHAPE, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, &y_size, &x, &g), TMIX_ESHAPE, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, &y, &x_u8, &g), TMIX_EDTYPE, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, &y, &x, &g_u8), TMIX_EDTYPE, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, &y_gpu, &x, &g), TMIX_EDEVICE, fwd, out_out);
    EXPECT_FAIL(tmix_grid_sample_forward(be, &y, &x, &g_gpu), TMIX_EDEVICE, fwd, out_out);
    CHECK(all_const(out, N * C * HO * WO, SENTINEL));

    // backward
    EXPECT_FAIL(tmix_grid_sample_backward(NULL, &dx, &dg, &dy, &x, &g), TMIX_EINVAL, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(empty_backend(), &dx, &dg, &dy, &x, &g),
                TMIX_ENOTSUP, bwd, grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, NULL, NULL, &dy, &x, &g), TMIX_EINVAL, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg, NULL, &x, &g), TMIX_EINVAL, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg, &dy, NULL, &g), TMIX_EINVAL, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg, &dy, &x, NULL), TMIX_EINVAL, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg, &dy, &x3, &g), TMIX_ESHAPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg, &dy, &x, &g_batch), TMIX_ESHAPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg, &dy, &x, &g_last), TMIX_ESHAPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg, &y_chan, &x, &g), TMIX_ESHAPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg, &y_size, &x, &g), TMIX_ESHAPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &x_size, &dg, &dy, &x, &g), TMIX_ESHAPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &x_size, NULL, &dy, &x, &g), TMIX_ESHAPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &g_size, &dy, &x, &g), TMIX_ESHAPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, NULL, &g_last, &dy, &x, &g), TMIX_ESHAPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg, &dy, &x_u8, &g), TMIX_EDTYPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx_u8, &dg, &dy, &x, &g), TMIX_EDTYPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg_u8, &dy, &x, &g), TMIX_EDTYPE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg, &y_gpu, &x, &g), TMIX_EDEVICE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &g_gpu, &dy, &x, &g), TMIX_EDEVICE, bwd,
                grads_out);
    EXPECT_FAIL(tmix_grid_sample_backward(be, &dx, &dg, &dy, &x, &g_gpu), TMIX_EDEVICE, bwd,
                grads_out);
    CHECK(all_const(din, N * C * H * W, SENTINEL));
    CHECK(all_const(dgrid, N * HO * WO * 2, SENTINEL));

    // A valid call with a NULL gradient leaves that one alone.
    memset(dgrid, 0, sizeof dgrid);
    CHECK_OK(tmix_grid_sample_backward(be, NULL, &dg, &dy, &x, &g));
    CHECK(all_const(din, N * C * H * W, SENTINEL));
    CHECK_OK(tmix_grid_sample_forward(be, &y, &x, &g));

    // Non-finite grid points give NaN as in PyTorch (NaN weights), huge ones read zeros;
    // neither may reach a float-to-integer conversion, which UBSan would flag.
    const float odd[6] = {NAN, 0.0f, 0.5f, -INFINITY, 1e30f, -1e30f};
    memcpy(grid, odd, sizeof odd);
    memset(dgrid, 0, sizeof dgrid);
    CHECK_OK(tmix_grid_sample_forward(be, &y, &x, &g));
    CHECK_OK(tmix_grid_sample_backward(be, NULL, &dg, &dy, &x, &g));
    for (int c = 0; c < C; c++)
        CHECK(isnan(out[c * HO * WO]) && isnan(out[c * HO * WO + 1]) && out[c * HO * WO + 2] == 0);
    CHECK(dgrid[0] == 0 && isnan(dgrid[1]) && isnan(dgrid[2]) && dgrid[3] == 0);
    CHECK(dgrid[4] == 0 && dgrid[5] == 0);
    return 0;
}

static int test_badinput_resize_bilinear(void)
{
    enum { N = 2, C = 3, H = 5, W = 4, HO = 7, WO = 9 };
    static const char op[] = "resize_bilinear_forward";
    float in[N * C * H * W], out[N * C * HO * WO], big[(N + 1) * (C + 1) * HO * WO];
    fill_uniform(in, N * C * H * W, 60, -1.0f, 1.0f);
    tmix_backend *be = cpu();
    tmix_tensor x = V4(in, N, C, H, W), y = V4(out, N, C, HO, WO);
    const test_buf outs[] = {{out, COUNT(out)}};

    EXPECT_FAIL(tmix_resize_bilinear_forward(NULL, &y, &x), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_resize_bilinear_forward(empty_backend(), &y, &x), TMIX_ENOTSUP, op, outs);
    EXPECT_FAIL(tmix_resize_bilinear_forward(be, NULL, &x), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_resize_bilinear_forward(be, &y, NULL), TMIX_EINVAL, op, outs);
    tmix_tensor x3 = V3(in, N * C, H, W);
    EXPECT_FAIL(tmix_resize_bilinear_forward(be, &y, &x3), TMIX_ESHAPE, op, outs);
    tmix_tensor y3 = V3(out, N * C, HO, WO);
    EXPECT_FAIL(tmix_resize_bilinear_forward(be, &y3, &x), TMIX_ESHAPE, op, outs);
    tmix_tensor y_batch = V4(big, N + 1, C, HO, WO);
    EXPECT_FAIL(tmix_resize_bilinear_forward(be, &y_batch, &x), TMIX_ESHAPE, op, outs);
    tmix_tensor y_chan = V4(big, N, C + 1, HO, WO);
    EXPECT_FAIL(tmix_resize_bilinear_forward(be, &y_chan, &x), TMIX_ESHAPE, op, outs);
    tmix_tensor y_zero = V4(out, N, C, 0, WO);
    EXPECT_FAIL(tmix_resize_bilinear_forward(be, &y_zero, &x), TMIX_ESHAPE, op, outs);
    tmix_tensor x_u8 = as_u8(x);
    EXPECT_FAIL(tmix_resize_bilinear_forward(be, &y, &x_u8), TMIX_EDTYPE, op, outs);
    tmix_tensor y_u8 = as_u8(y);
    EXPECT_FAIL(tmix_resize_bilinear_forward(be, &y_u8, &x), TMIX_EDTYPE, op, outs);
    tmix_tensor y_gpu = on_cuda(y);
    EXPECT_FAIL(tmix_resize_bilinear_forward(be, &y_gpu, &x), TMIX_EDEVICE, op, outs);
    tmix_tensor x_gpu = on_cuda(x);
    EXPECT_FAIL(tmix_resize_bilinear_forward(be, &y, &x_gpu), TMIX_EDEVICE, op, outs);
    CHECK(all_const(out, N * C * HO * WO, SENTINEL));
    CHECK_OK(tmix_resize_bilinear_forward(be, &y, &x));
    return 0;
}

static int test_badinput_minmax_normalize(void)
{
    enum { N = 3, C = 2, H = 4, W = 5 };
    static const char op[] = "minmax_normalize_forward";
    float in[N * C * H * W], out[N * C * H * W];
    fill_uniform(in, N * C * H * W, 70, -1.0f, 1.0f);
    tmix_backend *be = cpu();
    tmix_tensor x = V4(in, N, C, H, W), y = V4(out, N, C, H, W);
    const test_buf outs[] = {{out, COUNT(out)}};

    EXPECT_FAIL(tmix_minmax_normalize_forward(NULL, &y, &x), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_minmax_normalize_forward(empty_backend(), &y, &x), TMIX_ENOTSUP, op,
                outs);
    EXPECT_FAIL(tmix_minmax_normalize_forward(be, NULL, &x), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_minmax_normalize_forward(be, &y, NULL), TMIX_EINVAL, op, outs);
    tmix_tensor x1 = V1(in, N * C * H * W); // no batch dimension
    tmix_tensor y1 = V1(out, N * C * H * W);
    EXPECT_FAIL(tmix_minmax_normalize_forward(be, &y1, &x1), TMIX_ESHAPE, op, outs);
    tmix_tensor y3 = V3(out, N, C, H * W); // same size, other shape
    EXPECT_FAIL(tmix_minmax_normalize_forward(be, &y3, &x), TMIX_ESHAPE, op, outs);
    tmix_tensor y_batch = V4(out, N - 1, C, H, W);
    EXPECT_FAIL(tmix_minmax_normalize_forward(be, &y_batch, &x), TMIX_ESHAPE, op, outs);
    tmix_tensor y_size = V4(out, N, C, W, H);
    EXPECT_FAIL(tmix_minmax_normalize_forward(be, &y_size, &x), TMIX_ESHAPE, op, outs);
    tmix_tensor x_u8 = as_u8(x), y_u8 = as_u8(y);
    EXPECT_FAIL(tmix_minmax_normalize_forward(be, &y, &x_u8), TMIX_EDTYPE, op, outs);
    EXPECT_FAIL(tmix_minmax_normalize_forward(be, &y_u8, &x), TMIX_EDTYPE, op, outs);
    tmix_tensor y_gpu = on_cuda(y);
    EXPECT_FAIL(tmix_minmax_normalize_forward(be, &y_gpu, &x), TMIX_EDEVICE, op, outs);
    CHECK(all_const(out, N * C * H * W, SENTINEL));

    // The valid call, out of place and in place, gives [0, 1] per sample.
    CHECK_OK(tmix_minmax_normalize_forward(be, &y, &x));
    CHECK_OK(tmix_minmax_normalize_forward(be, &x, &x));
    CHECK(memcmp(in, out, sizeof in) == 0);
    for (int n = 0; n < N; n++) {
        float lo = 1, hi = 0;
        for (int e = 0; e < C * H * W; e++) {
            lo = fminf(lo, out[n * C * H * W + e]);
            hi = fmaxf(hi, out[n * C * H * W + e]);
        }
        CHECK(lo == 0.0f && hi == 1.0f);
    }
    return 0;
}

// ---- threads.grid_sample -------------------------------------------------------------------
// The warp ops give bitwise the same results for 1, 2 and 3 threads (batch of 4, so the
// samples split unevenly across 3).
enum { TN = 4, TC = 3, TH = 9, TW = 11, THO = 7, TWO = 10 };
#define T_IN (TN * TC * TH * TW)
#define T_OUT (TN * TC * THO * TWO)
#define T_GRID (TN * THO * TWO * 2)

typedef struct {
    float out[T_OUT], din[T_IN], dgrid[T_GRID], warp_grid[TN * TH * TW * 2], dtheta[TN * 6];
    float resized[T_OUT], normalized[T_IN];
} thread_results;

static int run_warp_ops(thread_results *res, const float *in, const float *grid,
                        const float *dout, const float *theta)
{
    tmix_backend *be = cpu();
    tmix_tensor x = V4((float *)in, TN, TC, TH, TW);
    tmix_tensor g = V4((float *)grid, TN, THO, TWO, 2);
    tmix_tensor dy = V4((float *)dout, TN, TC, THO, TWO);
    tmix_tensor th = V3((float *)theta, TN, 2, 3);
    tmix_tensor y = V4(res->out, TN, TC, THO, TWO);
    tmix_tensor dx = V4(res->din, TN, TC, TH, TW);
    tmix_tensor dg = V4(res->dgrid, TN, THO, TWO, 2);
    tmix_tensor wg = V4(res->warp_grid, TN, TH, TW, 2);
    tmix_tensor dth = V3(res->dtheta, TN, 2, 3);
    tmix_tensor rs = V4(res->resized, TN, TC, THO, TWO);
    tmix_tensor nm = V4(res->normalized, TN, TC, TH, TW);
    memset(res, 0, sizeof *res);
    CHECK_OK(tmix_grid_sample_forward(be, &y, &x, &g));
    CHECK_OK(tmix_grid_sample_backward(be, &dx, &dg, &dy, &x, &g));
    CHECK_OK(tmix_affine_grid_forward(be, &wg, &th));
    CHECK_OK(tmix_affine_grid_backward(be, &dth, &dg));
    CHECK_OK(tmix_resize_bilinear_forward(be, &rs, &x));
    CHECK_OK(tmix_minmax_normalize_forward(be, &nm, &x));
    return 0;
}

static int test_threads_grid_sample(void)
{
    static float in[T_IN], grid[T_GRID], dout[T_OUT], theta[TN * 6];
    static thread_results one, many;
    fill_uniform(in, T_IN, 80, -1.0f, 1.0f);
    fill_uniform(grid, T_GRID, 81, -1.3f, 1.3f);
    fill_uniform(dout, T_OUT, 82, -1.0f, 1.0f);
    fill_uniform(theta, TN * 6, 83, -1.2f, 1.2f);
    omp_set_num_threads(1);
    CHECK(run_warp_ops(&one, in, grid, dout, theta) == 0);
    CHECK(!all_const(one.din, T_IN, 0.0f) && !all_const(one.dgrid, T_GRID, 0.0f));
    for (int threads = 2; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        CHECK(run_warp_ops(&many, in, grid, dout, theta) == 0);
        printf("  %d threads: %s\n", threads,
               memcmp(&one, &many, sizeof one) == 0 ? "identical" : "DIFFERENT");
        CHECK(memcmp(one.out, many.out, sizeof one.out) == 0);
        CHECK(memcmp(one.din, many.din, sizeof one.din) == 0);
        CHECK(memcmp(one.dgrid, many.dgrid, sizeof one.dgrid) == 0);
        CHECK(memcmp(&one, &many, sizeof one) == 0);
    }
    return 0;
}

static const test_case tests[] = {
    {"gradcheck.affine_grid.grad_theta", test_gradcheck_affine_grid},
    {"gradcheck.grid_sample.grad_input", test_gradcheck_grid_sample_input},
    {"gradcheck.grid_sample.grad_grid", test_gradcheck_grid_sample_grid},
    {"gradcheck.warp.grad_theta", test_gradcheck_warp},
    {"badinput.affine_grid", test_badinput_affine_grid},
    {"badinput.grid_sample", test_badinput_grid_sample},
    {"badinput.resize_bilinear", test_badinput_resize_bilinear},
    {"badinput.minmax_normalize", test_badinput_minmax_normalize},
    {"threads.grid_sample", test_threads_grid_sample},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
