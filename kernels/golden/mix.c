// Golden runners of the mixing ops: softmax_channel, blend, cross_entropy, sgd, preprocess.
// Fixtures come from tests/golden/gen_mix.py; the roles read here are documented there.
// Tensor memory is touched only through upload/download, so any backend can run them.
#include "suites.h"

#include <stdio.h>
#include <stdlib.h>

#include "../error.h"
#include "../ops.h"

// Roles: in, tau, out (forward); dout, grad_input, grad_tau (backward, which reads the
// reference `out` so that it is checked apart from the forward).
int tmix_golden_softmax_channel(tmix_backend *be, tmix_golden *g, tmix_golden_report report,
                                void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { IN, TAU, M, DOUT, OUT, DIN, DTAU, NT };
        tmix_tensor t[NT] = {{0}};
        int rc;
        if ((rc = tmix_golden_input(g, c, "in", be, &t[IN])) < 0 ||
            (rc = tmix_golden_input(g, c, "tau", be, &t[TAU])) < 0 ||
            (rc = tmix_golden_input(g, c, "out", be, &t[M])) < 0 ||
            (rc = tmix_golden_input(g, c, "dout", be, &t[DOUT])) < 0 ||
            (rc = tmix_golden_output(g, c, "out", be, &t[OUT])) < 0 ||
            (rc = tmix_golden_output(g, c, "grad_input", be, &t[DIN])) < 0 ||
            (rc = tmix_golden_output(g, c, "grad_tau", be, &t[DTAU])) < 0) {
            tmix_golden_free(be, t, NT);
            return rc;
        }
        double t0 = tmix_now_ms();
        rc = tmix_softmax_channel_forward(be, &t[OUT], &t[IN], &t[TAU]);
        double ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "forward", rc, "out", &t[OUT], TMIX_TOL_ELEMENTWISE, ms, report,
                          ctx);

        t0 = tmix_now_ms();
        rc = tmix_softmax_channel_backward(be, &t[DIN], &t[DTAU], &t[DOUT], &t[M], &t[IN], &t[TAU]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "grad_input", rc, "grad_input", &t[DIN], TMIX_TOL_ELEMENTWISE,
                          ms, report, ctx);
        tmix_golden_check(g, c, be, "grad_tau", rc, "grad_tau", &t[DTAU], TMIX_TOL_ELEMENTWISE, ms,
                          report, ctx);
        tmix_golden_free(be, t, NT);
    }
    return 0;
}

// Roles: masks, x, out (forward); dout, grad_masks, grad_x (backward).
int tmix_golden_blend(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { MASKS, X, DOUT, OUT, DMASKS, DX, NT };
        tmix_tensor t[NT] = {{0}};
        int rc;
        if ((rc = tmix_golden_input(g, c, "masks", be, &t[MASKS])) < 0 ||
            (rc = tmix_golden_input(g, c, "x", be, &t[X])) < 0 ||
            (rc = tmix_golden_input(g, c, "dout", be, &t[DOUT])) < 0 ||
            (rc = tmix_golden_output(g, c, "out", be, &t[OUT])) < 0 ||
            (rc = tmix_golden_output(g, c, "grad_masks", be, &t[DMASKS])) < 0 ||
            (rc = tmix_golden_output(g, c, "grad_x", be, &t[DX])) < 0) {
            tmix_golden_free(be, t, NT);
            return rc;
        }
        double t0 = tmix_now_ms();
        rc = tmix_blend_forward(be, &t[OUT], &t[MASKS], &t[X]);
        double ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "forward", rc, "out", &t[OUT], TMIX_TOL_ELEMENTWISE, ms, report,
                          ctx);

        t0 = tmix_now_ms();
        rc = tmix_blend_backward(be, &t[DMASKS], &t[DX], &t[DOUT], &t[MASKS], &t[X]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "grad_masks", rc, "grad_masks", &t[DMASKS],
                          TMIX_TOL_ELEMENTWISE, ms, report, ctx);
        tmix_golden_check(g, c, be, "grad_x", rc, "grad_x", &t[DX], TMIX_TOL_ELEMENTWISE, ms,
                          report, ctx);
        tmix_golden_free(be, t, NT);
    }
    return 0;
}

// Roles: logits, targets, loss (forward, shape (1)); grad_logits (backward of a loss of 1).
int tmix_golden_cross_entropy(tmix_backend *be, tmix_golden *g, tmix_golden_report report,
                              void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { LOGITS, TARGETS, LOSS, DLOGITS, NT };
        tmix_tensor t[NT] = {{0}};
        int rc;
        if ((rc = tmix_golden_input(g, c, "logits", be, &t[LOGITS])) < 0 ||
            (rc = tmix_golden_input(g, c, "targets", be, &t[TARGETS])) < 0 ||
            (rc = tmix_golden_output(g, c, "loss", be, &t[LOSS])) < 0 ||
            (rc = tmix_golden_output(g, c, "grad_logits", be, &t[DLOGITS])) < 0) {
            tmix_golden_free(be, t, NT);
            return rc;
        }
        double t0 = tmix_now_ms();
        rc = tmix_cross_entropy_forward(be, &t[LOSS], &t[LOGITS], &t[TARGETS]);
        double ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "forward", rc, "loss", &t[LOSS], TMIX_TOL_ELEMENTWISE, ms,
                          report, ctx);

        t0 = tmix_now_ms();
        rc = tmix_cross_entropy_backward(be, &t[DLOGITS], &t[LOGITS], &t[TARGETS]);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "grad_logits", rc, "grad_logits", &t[DLOGITS],
                          TMIX_TOL_ELEMENTWISE, ms, report, ctx);
        tmix_golden_free(be, t, NT);
    }
    return 0;
}

static int sgd_params(tmix_golden *g, int c, tmix_sgd_params *p, int *steps)
{
    TMIX_TRY(tmix_golden_float(g, c, "lr", -1, &p->lr));
    TMIX_TRY(tmix_golden_float(g, c, "momentum", -1, &p->momentum));
    TMIX_TRY(tmix_golden_float(g, c, "dampening", -1, &p->dampening));
    TMIX_TRY(tmix_golden_float(g, c, "weight_decay", -1, &p->weight_decay));
    TMIX_TRY(tmix_golden_int(g, c, "nesterov", -1, &p->nesterov));
    TMIX_TRY(tmix_golden_int(g, c, "steps", -1, steps));
    if (*steps < 1 || *steps > 99)
        return tmix_fail(TMIX_EFORMAT, "sgd golden case %s: %d steps", tmix_golden_case(g, c),
                         *steps);
    return 0;
}

// Params: lr, momentum, dampening, weight_decay, nesterov, steps. Roles: param0 (the
// initial parameter), grad0 ... grad{steps-1}, and the state after the last step: param,
// and buf when momentum != 0. Both comparisons are rows of the check "update".
int tmix_golden_sgd(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        tmix_sgd_params p;
        int steps;
        TMIX_TRY(sgd_params(g, c, &p, &steps));
        enum { PARAM, BUF, GRAD, NT };
        tmix_tensor t[NT] = {{0}};
        bool has_buf = tmix_golden_has(g, c, "buf");
        int rc;
        if ((rc = tmix_golden_input(g, c, "param0", be, &t[PARAM])) < 0 ||
            (rc = has_buf ? tmix_golden_output(g, c, "buf", be, &t[BUF]) : 0) < 0) {
            tmix_golden_free(be, t, NT);
            return rc;
        }
        double ms = 0;
        int op_rc = 0;
        for (int s = 0; s < steps && op_rc == 0; s++) {
            char role[16];
            snprintf(role, sizeof role, "grad%d", s);
            if ((rc = tmix_golden_input(g, c, role, be, &t[GRAD])) < 0) {
                tmix_golden_free(be, t, NT);
                return rc;
            }
            double t0 = tmix_now_ms();
            op_rc = tmix_sgd_update(be, &t[PARAM], &t[GRAD], has_buf ? &t[BUF] : NULL, p, s);
            ms += tmix_golden_elapsed(be, &op_rc, t0);
            tmix_tensor_free(be, &t[GRAD]);
        }
        tmix_golden_check(g, c, be, "update", op_rc, "param", &t[PARAM], TMIX_TOL_ELEMENTWISE, ms,
                          report, ctx);
        if (has_buf)
            tmix_golden_check(g, c, be, "update", op_rc, "buf", &t[BUF], TMIX_TOL_ELEMENTWISE, ms,
                              report, ctx);
        tmix_golden_free(be, t, NT);
    }
    return 0;
}

// Params: crop_y, crop_x, flip (arrays of B ints), mean, std (arrays of C floats). Roles:
// src (u8, (B, H, W, Cs)) and out.
int tmix_golden_preprocess(tmix_backend *be, tmix_golden *g, tmix_golden_report report,
                           void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        enum { SRC, OUT, NT };
        tmix_tensor t[NT] = {{0}};
        int rc = tmix_golden_input(g, c, "src", be, &t[SRC]);
        if (rc == 0)
            rc = tmix_golden_output(g, c, "out", be, &t[OUT]);
        int64_t B = t[SRC].shape[0], C = t[OUT].shape[1];
        // The op's host arrays: B crops, then mean and std in one block of 2C floats.
        tmix_crop *crops = rc < 0 ? NULL : calloc((size_t)B, sizeof *crops);
        float *mean = rc < 0 ? NULL : calloc((size_t)C * 2, sizeof *mean);
        float *std = mean ? mean + C : NULL;
        if (rc == 0 && (!crops || !mean))
            rc = tmix_fail(TMIX_ENOMEM, "preprocess golden: %lld crops", (long long)B);
        for (int b = 0; rc == 0 && b < B; b++) {
            rc = tmix_golden_int(g, c, "crop_y", b, &crops[b].y);
            rc = rc < 0 ? rc : tmix_golden_int(g, c, "crop_x", b, &crops[b].x);
            rc = rc < 0 ? rc : tmix_golden_int(g, c, "flip", b, &crops[b].flip);
        }
        for (int k = 0; rc == 0 && k < C; k++) {
            rc = tmix_golden_float(g, c, "mean", k, &mean[k]);
            rc = rc < 0 ? rc : tmix_golden_float(g, c, "std", k, &std[k]);
        }
        if (rc == 0) {
            double t0 = tmix_now_ms();
            int op_rc = tmix_preprocess(be, &t[OUT], &t[SRC], crops, mean, std);
            double ms = tmix_golden_elapsed(be, &op_rc, t0);
            tmix_golden_check(g, c, be, "forward", op_rc, "out", &t[OUT], TMIX_TOL_ELEMENTWISE, ms,
                              report, ctx);
        }
        free(crops);
        free(mean);
        tmix_golden_free(be, t, NT);
        if (rc < 0)
            return rc;
    }
    return 0;
}
