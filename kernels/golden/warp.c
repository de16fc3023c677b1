// Golden runners of the warp group (tests/golden/gen_warp.py writes the fixtures):
// affine_grid, grid_sample, warp (theta -> affine_grid -> grid_sample, the spatial
// transformer of TransformMix), resize_bilinear and minmax_normalize. They work on any
// backend: tensor memory is reached only through upload, download and the ops.
#include "suites.h"

#include "../error.h"
#include "../ops.h"

int tmix_golden_affine_grid(tmix_backend *be, tmix_golden *g, tmix_golden_report report,
                            void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { THETA, GRID, DGRID, DTHETA, COUNT };
        tmix_tensor t[COUNT] = {0};
        int rc;
        if ((rc = tmix_golden_input(g, c, "theta", be, &t[THETA])) < 0 ||
            (rc = tmix_golden_output(g, c, "grid", be, &t[GRID])) < 0 ||
            (rc = tmix_golden_input(g, c, "dgrid", be, &t[DGRID])) < 0 ||
            (rc = tmix_golden_output(g, c, "grad_theta", be, &t[DTHETA])) < 0) {
            tmix_golden_free(be, t, COUNT);
            return rc;
        }
        double t0 = tmix_now_ms(), ms;
        rc = tmix_affine_grid_forward(be, &t[GRID], &t[THETA]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "forward", rc, "grid", &t[GRID], TMIX_TOL_ELEMENTWISE, ms,
                          report, ctx);

        t0 = tmix_now_ms();
        rc = tmix_affine_grid_backward(be, &t[DTHETA], &t[DGRID]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "grad_theta", rc, "grad_theta", &t[DTHETA],
                          TMIX_TOL_ELEMENTWISE, ms, report, ctx);
        tmix_golden_free(be, t, COUNT);
    }
    return 0;
}

int tmix_golden_grid_sample(tmix_backend *be, tmix_golden *g, tmix_golden_report report,
                            void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { IN, GRID, OUT, DOUT, DIN, DGRID, COUNT };
        tmix_tensor t[COUNT] = {0};
        int rc;
        if ((rc = tmix_golden_input(g, c, "in", be, &t[IN])) < 0 ||
            (rc = tmix_golden_input(g, c, "grid", be, &t[GRID])) < 0 ||
            (rc = tmix_golden_output(g, c, "out", be, &t[OUT])) < 0 ||
            (rc = tmix_golden_input(g, c, "dout", be, &t[DOUT])) < 0 ||
            (rc = tmix_golden_output(g, c, "grad_input", be, &t[DIN])) < 0 ||
            (rc = tmix_golden_output(g, c, "grad_grid", be, &t[DGRID])) < 0) {
            tmix_golden_free(be, t, COUNT);
            return rc;
        }
        double t0 = tmix_now_ms(), ms;
        rc = tmix_grid_sample_forward(be, &t[OUT], &t[IN], &t[GRID]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "forward", rc, "out", &t[OUT], TMIX_TOL_ELEMENTWISE, ms, report,
                          ctx);

        // Both gradients from one call (the warp suite covers the one-gradient calls); the
        // two rows share its time.
        t0 = tmix_now_ms();
        rc = tmix_grid_sample_backward(be, &t[DIN], &t[DGRID], &t[DOUT], &t[IN], &t[GRID]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "grad_input", rc, "grad_input", &t[DIN], TMIX_TOL_ELEMENTWISE,
                          ms, report, ctx);
        tmix_golden_check(g, c, be, "grad_grid", rc, "grad_grid", &t[DGRID], TMIX_TOL_ELEMENTWISE,
                          ms, report, ctx);
        tmix_golden_free(be, t, COUNT);
    }
    return 0;
}

int tmix_golden_warp(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { THETA, IN, OUT, DOUT, DIN, DTHETA, GRID, DGRID, COUNT };
        tmix_tensor t[COUNT] = {0};
        int rc;
        if ((rc = tmix_golden_input(g, c, "theta", be, &t[THETA])) < 0 ||
            (rc = tmix_golden_input(g, c, "in", be, &t[IN])) < 0 ||
            (rc = tmix_golden_output(g, c, "out", be, &t[OUT])) < 0 ||
            (rc = tmix_golden_input(g, c, "dout", be, &t[DOUT])) < 0 ||
            (rc = tmix_golden_output(g, c, "grad_input", be, &t[DIN])) < 0 ||
            (rc = tmix_golden_output(g, c, "grad_theta", be, &t[DTHETA])) < 0) {
            tmix_golden_free(be, t, COUNT);
            return rc;
        }
        // The intermediate grid and its gradient: (N, H, W, 2), the output size being the
        // input's, as in the STN warp.
        const int64_t *s = t[IN].shape;
        const int64_t grid_shape[4] = {s[0], s[2], s[3], 2};
        if ((rc = tmix_tensor_alloc(be, &t[GRID], TMIX_F32, 4, grid_shape)) < 0 ||
            (rc = tmix_tensor_alloc(be, &t[DGRID], TMIX_F32, 4, grid_shape)) < 0 ||
            (rc = tmix_tensor_zero(be, &t[DGRID])) < 0) {
            tmix_golden_free(be, t, COUNT);
            return rc;
        }

        double t0 = tmix_now_ms(), ms;
        int grid_rc = tmix_affine_grid_forward(be, &t[GRID], &t[THETA]);
        rc = grid_rc < 0 ? grid_rc : tmix_grid_sample_forward(be, &t[OUT], &t[IN], &t[GRID]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "forward", rc, "out", &t[OUT], TMIX_TOL_ELEMENTWISE, ms, report,
                          ctx);

        // Each gradient alone, with the other output NULL, as a caller needing one would.
        t0 = tmix_now_ms();
        rc = grid_rc < 0 ? grid_rc
                         : tmix_grid_sample_backward(be, &t[DIN], NULL, &t[DOUT], &t[IN],
                                                     &t[GRID]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "grad_input", rc, "grad_input", &t[DIN], TMIX_TOL_ELEMENTWISE,
                          ms, report, ctx);

        t0 = tmix_now_ms();
        rc = grid_rc < 0 ? grid_rc
                         : tmix_grid_sample_backward(be, NULL, &t[DGRID], &t[DOUT], &t[IN],
                                                     &t[GRID]);
        if (rc == 0)
            rc = tmix_affine_grid_backward(be, &t[DTHETA], &t[DGRID]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "grad_theta", rc, "grad_theta", &t[DTHETA],
                          TMIX_TOL_ELEMENTWISE, ms, report, ctx);
        tmix_golden_free(be, t, COUNT);
    }
    return 0;
}

int tmix_golden_resize_bilinear(tmix_backend *be, tmix_golden *g, tmix_golden_report report,
                                void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { IN, OUT, COUNT };
        tmix_tensor t[COUNT] = {0};
        int rc;
        if ((rc = tmix_golden_input(g, c, "in", be, &t[IN])) < 0 ||
            (rc = tmix_golden_output(g, c, "out", be, &t[OUT])) < 0) {
            tmix_golden_free(be, t, COUNT);
            return rc;
        }
        double t0 = tmix_now_ms(), ms;
        rc = tmix_resize_bilinear_forward(be, &t[OUT], &t[IN]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "forward", rc, "out", &t[OUT], TMIX_TOL_ELEMENTWISE, ms, report,
                          ctx);
        tmix_golden_free(be, t, COUNT);
    }
    return 0;
}

int tmix_golden_minmax_normalize(tmix_backend *be, tmix_golden *g, tmix_golden_report report,
                                 void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { IN, OUT, COUNT };
        tmix_tensor t[COUNT] = {0};
        int inplace, rc;
        if ((rc = tmix_golden_int(g, c, "inplace", -1, &inplace)) < 0)
            return rc;
        // In place, the input is loaded straight into the output buffer.
        if ((rc = inplace ? tmix_golden_input(g, c, "in", be, &t[OUT])
                          : tmix_golden_input(g, c, "in", be, &t[IN])) < 0 ||
            (rc = inplace ? 0 : tmix_golden_output(g, c, "out", be, &t[OUT])) < 0) {
            tmix_golden_free(be, t, COUNT);
            return rc;
        }
        double t0 = tmix_now_ms(), ms;
        rc = tmix_minmax_normalize_forward(be, &t[OUT], inplace ? &t[OUT] : &t[IN]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "forward", rc, "out", &t[OUT], TMIX_TOL_ELEMENTWISE, ms, report,
                          ctx);
        tmix_golden_free(be, t, COUNT);
    }
    return 0;
}
