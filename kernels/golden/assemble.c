// Golden runners of the ops that assemble networks: add, concat_channels, fill_channels,
// gather, cam, box_masks. Fixtures come from tests/golden/gen_assemble.py; the roles read
// here are documented there. Host arrays of the ops (index, labels, boxes) are case params.
// Tensor memory is touched only through upload/download, so any backend can run them.
#include "suites.h"

#include <stdio.h>
#include <stdlib.h>

#include "../error.h"
#include "../ops.h"

// Reads element i of the params array `key` of case c into out[i], for i < n.
static int int_array(const tmix_golden *g, int c, const char *key, int64_t n, int64_t *out)
{
    for (int64_t i = 0; i < n; i++) {
        int v;
        TMIX_TRY(tmix_golden_int(g, c, key, (int)i, &v));
        out[i] = v;
    }
    return 0;
}

// Roles: a, b, out.
int tmix_golden_add(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { A, B, OUT, NT };
        tmix_tensor t[NT] = {{0}};
        int rc;
        if ((rc = tmix_golden_input(g, c, "a", be, &t[A])) < 0 ||
            (rc = tmix_golden_input(g, c, "b", be, &t[B])) < 0 ||
            (rc = tmix_golden_output(g, c, "out", be, &t[OUT])) < 0) {
            tmix_golden_free(be, t, NT);
            return rc;
        }
        double t0 = tmix_now_ms();
        rc = tmix_add(be, &t[OUT], &t[A], &t[B]);
        double ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "forward", rc, "out", &t[OUT], TMIX_TOL_ELEMENTWISE, ms,
                          report, ctx);
        tmix_golden_free(be, t, NT);
    }
    return 0;
}

enum { MAX_PARTS = 8 };

// Params: parts. Roles: in0..in{parts-1} and out, the parts placed one after the other from
// channel 0 (forward); dout and grad0..grad{parts-1} (backward, a grad_input row per part).
int tmix_golden_concat_channels(tmix_backend *be, tmix_golden *g, tmix_golden_report report,
                                void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        int parts;
        TMIX_TRY(tmix_golden_int(g, c, "parts", -1, &parts));
        if (parts < 1 || parts > MAX_PARTS)
            return tmix_fail(TMIX_EFORMAT, "concat_channels golden case %s: %d parts (1 to %d)",
                             tmix_golden_case(g, c), parts, MAX_PARTS);
        // part p: input at IN + p, its gradient at GRAD + p
        enum { OUT, DOUT, IN, GRAD = IN + MAX_PARTS, NT = GRAD + MAX_PARTS };
        tmix_tensor t[NT] = {{0}};
        char role[16];
        int rc = tmix_golden_output(g, c, "out", be, &t[OUT]);
        rc = rc < 0 ? rc : tmix_golden_input(g, c, "dout", be, &t[DOUT]);
        for (int p = 0; rc == 0 && p < parts; p++) {
            snprintf(role, sizeof role, "in%d", p);
            rc = tmix_golden_input(g, c, role, be, &t[IN + p]);
            snprintf(role, sizeof role, "grad%d", p);
            rc = rc < 0 ? rc : tmix_golden_output(g, c, role, be, &t[GRAD + p]);
        }
        if (rc < 0) {
            tmix_golden_free(be, t, NT);
            return rc;
        }
        double t0 = tmix_now_ms();
        int c0 = 0;
        rc = 0;
        for (int p = 0; rc == 0 && p < parts; p++) {
            rc = tmix_concat_channels_forward(be, &t[OUT], &t[IN + p], c0);
            c0 += (int)t[IN + p].shape[1];
        }
        double ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "forward", rc, "out", &t[OUT], TMIX_TOL_ELEMENTWISE, ms,
                          report, ctx);

        c0 = 0;
        for (int p = 0; p < parts; p++) {
            t0 = tmix_now_ms();
            rc = tmix_concat_channels_backward(be, &t[GRAD + p], &t[DOUT], c0);
            ms = tmix_golden_elapsed(be, &rc, t0);
            snprintf(role, sizeof role, "grad%d", p);
            tmix_golden_check(g, c, be, "grad_input", rc, role, &t[GRAD + p],
                              TMIX_TOL_ELEMENTWISE, ms, report, ctx);
            c0 += (int)t[IN + p].shape[1];
        }
        tmix_golden_free(be, t, NT);
    }
    return 0;
}

// Params: c0. Roles: base (uploaded into the output first, so the channels left alone are
// checked too), values, out.
int tmix_golden_fill_channels(tmix_backend *be, tmix_golden *g, tmix_golden_report report,
                              void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        int c0;
        TMIX_TRY(tmix_golden_int(g, c, "c0", -1, &c0));
        enum { OUT, VALUES, NT };
        tmix_tensor t[NT] = {{0}};
        int rc;
        if ((rc = tmix_golden_input(g, c, "base", be, &t[OUT])) < 0 ||
            (rc = tmix_golden_input(g, c, "values", be, &t[VALUES])) < 0) {
            tmix_golden_free(be, t, NT);
            return rc;
        }
        double t0 = tmix_now_ms();
        rc = tmix_fill_channels(be, &t[OUT], &t[VALUES], c0);
        double ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "forward", rc, "out", &t[OUT], TMIX_TOL_ELEMENTWISE, ms,
                          report, ctx);
        tmix_golden_free(be, t, NT);
    }
    return 0;
}

// Params: index (one int per row of out). Roles: in, out.
int tmix_golden_gather(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { IN, OUT, NT };
        tmix_tensor t[NT] = {{0}};
        int rc = tmix_golden_input(g, c, "in", be, &t[IN]);
        rc = rc < 0 ? rc : tmix_golden_output(g, c, "out", be, &t[OUT]);
        int64_t M = t[OUT].shape[0];
        int64_t *index = rc < 0 ? NULL : calloc((size_t)M, sizeof *index);
        if (rc == 0 && !index)
            rc = tmix_fail(TMIX_ENOMEM, "gather golden: %lld indices", (long long)M);
        rc = rc < 0 ? rc : int_array(g, c, "index", M, index);
        if (rc == 0) {
            double t0 = tmix_now_ms();
            int op_rc = tmix_gather(be, &t[OUT], &t[IN], index);
            double ms = tmix_golden_elapsed(be, &op_rc, t0);
            tmix_golden_check(g, c, be, "forward", op_rc, "out", &t[OUT], TMIX_TOL_ELEMENTWISE,
                              ms, report, ctx);
        }
        free(index);
        tmix_golden_free(be, t, NT);
        if (rc < 0)
            return rc;
    }
    return 0;
}

// Params: labels (one int per sample). Roles: features, weight, out. A sum over channels,
// so the tolerance of the GEMM-based ops.
int tmix_golden_cam(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { FEATURES, WEIGHT, OUT, NT };
        tmix_tensor t[NT] = {{0}};
        int rc = tmix_golden_input(g, c, "features", be, &t[FEATURES]);
        rc = rc < 0 ? rc : tmix_golden_input(g, c, "weight", be, &t[WEIGHT]);
        rc = rc < 0 ? rc : tmix_golden_output(g, c, "out", be, &t[OUT]);
        int64_t N = t[FEATURES].shape[0];
        int64_t *labels = rc < 0 ? NULL : calloc((size_t)N, sizeof *labels);
        if (rc == 0 && !labels)
            rc = tmix_fail(TMIX_ENOMEM, "cam golden: %lld labels", (long long)N);
        rc = rc < 0 ? rc : int_array(g, c, "labels", N, labels);
        if (rc == 0) {
            double t0 = tmix_now_ms();
            int op_rc = tmix_cam_forward(be, &t[OUT], &t[FEATURES], &t[WEIGHT], labels);
            double ms = tmix_golden_elapsed(be, &op_rc, t0);
            tmix_golden_check(g, c, be, "forward", op_rc, "out", &t[OUT], TMIX_TOL_GEMM, ms,
                              report, ctx);
        }
        free(labels);
        tmix_golden_free(be, t, NT);
        if (rc < 0)
            return rc;
    }
    return 0;
}

// Params: y0, x0, y1, x1 (one int per box). Roles: out.
int tmix_golden_box_masks(tmix_backend *be, tmix_golden *g, tmix_golden_report report,
                          void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        tmix_tensor out = {0};
        int rc = tmix_golden_output(g, c, "out", be, &out);
        int64_t B = out.shape[0];
        // The four coordinates as four arrays of B, then packed into boxes.
        int64_t *coord = rc < 0 ? NULL : calloc((size_t)B * 4, sizeof *coord);
        tmix_box *boxes = rc < 0 ? NULL : calloc((size_t)B, sizeof *boxes);
        if (rc == 0 && (!coord || !boxes))
            rc = tmix_fail(TMIX_ENOMEM, "box_masks golden: %lld boxes", (long long)B);
        rc = rc < 0 ? rc : int_array(g, c, "y0", B, coord);
        rc = rc < 0 ? rc : int_array(g, c, "x0", B, coord + B);
        rc = rc < 0 ? rc : int_array(g, c, "y1", B, coord + 2 * B);
        rc = rc < 0 ? rc : int_array(g, c, "x1", B, coord + 3 * B);
        if (rc == 0) {
            for (int64_t b = 0; b < B; b++)
                boxes[b] = (tmix_box){.y0 = (int)coord[b], .x0 = (int)coord[B + b],
                                      .y1 = (int)coord[2 * B + b], .x1 = (int)coord[3 * B + b]};
            double t0 = tmix_now_ms();
            int op_rc = tmix_box_masks(be, &out, boxes);
            double ms = tmix_golden_elapsed(be, &op_rc, t0);
            tmix_golden_check(g, c, be, "forward", op_rc, "out", &out, TMIX_TOL_ELEMENTWISE, ms,
                              report, ctx);
        }
        free(coord);
        free(boxes);
        tmix_tensor_free(be, &out);
        if (rc < 0)
            return rc;
    }
    return 0;
}
