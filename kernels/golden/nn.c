// Golden runners of the network layers (tests/golden/gen_nn.py): conv2d, batchnorm (inference
// and training form), relu, maxpool2d, avgpool, linear. Each case uploads its inputs to the
// backend, runs the op and its backward passes, and compares every result with the PyTorch
// one. Tensor memory is only touched through upload and download, so the runners work on any
// backend.
#include "suites.h"

#include <stdlib.h>

#include "../error.h"
#include "../ops.h"

// The most tensors a case uses; every slot starts empty, so one call frees them all.
enum { MAX_TENSORS = 14 };

// Replays every case of g with run_case; a case whose fixture is unusable stops the suite.
typedef int (*case_fn)(tmix_backend *be, tmix_golden *g, int c, tmix_tensor *t,
                       tmix_golden_report report, void *ctx);

static int run_cases(tmix_backend *be, tmix_golden *g, case_fn run_case,
                     tmix_golden_report report, void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        tmix_tensor t[MAX_TENSORS] = {0};
        int rc = run_case(be, g, c, t, report, ctx);
        tmix_golden_free(be, t, MAX_TENSORS);
        if (rc < 0)
            return rc;
    }
    return 0;
}

// A parameter stored as a two-element JSON array [h, w].
static int int_pair(const tmix_golden *g, int c, const char *key, int *h, int *w)
{
    TMIX_TRY(tmix_golden_int(g, c, key, 0, h));
    return tmix_golden_int(g, c, key, 1, w);
}

// ---- conv2d ----------------------------------------------------------------------------------

static int conv2d_case(tmix_backend *be, tmix_golden *g, int c, tmix_tensor *t,
                       tmix_golden_report report, void *ctx)
{
    tmix_conv2d_params p = {0};
    TMIX_TRY(int_pair(g, c, "stride", &p.stride_h, &p.stride_w));
    TMIX_TRY(int_pair(g, c, "pad", &p.pad_h, &p.pad_w));
    TMIX_TRY(int_pair(g, c, "dilation", &p.dilation_h, &p.dilation_w));
    tmix_tensor *in = &t[0], *w = &t[1], *b = &t[2], *out = &t[3];
    tmix_tensor *dout = &t[4], *din = &t[5], *dw = &t[6], *db = &t[7];
    const bool has_bias = tmix_golden_has(g, c, "bias");
    TMIX_TRY(tmix_golden_input(g, c, "in", be, in));
    TMIX_TRY(tmix_golden_input(g, c, "weight", be, w));
    if (has_bias)
        TMIX_TRY(tmix_golden_input(g, c, "bias", be, b));
    TMIX_TRY(tmix_golden_output(g, c, "out", be, out));
    TMIX_TRY(tmix_golden_input(g, c, "dout", be, dout));
    TMIX_TRY(tmix_golden_output(g, c, "grad_input", be, din));
    TMIX_TRY(tmix_golden_output(g, c, "grad_weight", be, dw));
    if (has_bias)
        TMIX_TRY(tmix_golden_output(g, c, "grad_bias", be, db));

    double t0 = tmix_now_ms(), ms;
    int rc = tmix_conv2d_forward(be, out, in, w, has_bias ? b : NULL, p);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "forward", rc, "out", out, TMIX_TOL_GEMM, ms, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_conv2d_backward_input(be, din, dout, w, p);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "grad_input", rc, "grad_input", din, TMIX_TOL_GEMM, ms, report,
                      ctx);

    t0 = tmix_now_ms();
    rc = tmix_conv2d_backward_weight(be, dw, dout, in, p);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "grad_weight", rc, "grad_weight", dw, TMIX_TOL_GEMM, ms, report,
                      ctx);

    if (has_bias) {
        t0 = tmix_now_ms();
        rc = tmix_bias_backward(be, db, dout);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "grad_bias", rc, "grad_bias", db, TMIX_TOL_GEMM, ms, report,
                          ctx);
    }
    return 0;
}

int tmix_golden_conv2d(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    return run_cases(be, g, conv2d_case, report, ctx);
}

// ---- batchnorm -------------------------------------------------------------------------------

// Folds the case's gamma, beta, running mean and var with tmix_batchnorm_fold (so the fold is
// tested too) and uploads scale and shift.
static int batchnorm_fold_upload(tmix_backend *be, tmix_golden *g, int c, tmix_tensor *scale,
                                 tmix_tensor *shift)
{
    tmix_tensor gamma, beta, mean, var;
    float eps;
    TMIX_TRY(tmix_golden_host(g, c, "gamma", &gamma));
    TMIX_TRY(tmix_golden_host(g, c, "beta", &beta));
    TMIX_TRY(tmix_golden_host(g, c, "mean", &mean));
    TMIX_TRY(tmix_golden_host(g, c, "var", &var));
    TMIX_TRY(tmix_golden_float(g, c, "eps", -1, &eps));
    const int64_t C = tmix_tensor_numel(&gamma);
    if (gamma.dtype != TMIX_F32 || beta.dtype != TMIX_F32 || mean.dtype != TMIX_F32 ||
        var.dtype != TMIX_F32 || tmix_tensor_numel(&beta) != C ||
        tmix_tensor_numel(&mean) != C || tmix_tensor_numel(&var) != C)
        return tmix_fail(TMIX_EFORMAT, "batchnorm golden case %s: gamma, beta, mean and var "
                         "must be f32 with one value per channel", tmix_golden_case(g, c));
    float *host = malloc(2 * (size_t)C * sizeof *host);
    if (!host)
        return tmix_fail(TMIX_ENOMEM, "batchnorm golden case %s: %lld channels",
                         tmix_golden_case(g, c), (long long)C);
    tmix_batchnorm_fold(host, host + C, tmix_f32(&gamma), tmix_f32(&beta), tmix_f32(&mean),
                        tmix_f32(&var), eps, (int)C);
    int rc = tmix_tensor_alloc(be, scale, TMIX_F32, 1, &C);
    if (rc == 0)
        rc = tmix_tensor_upload(be, scale, host);
    if (rc == 0)
        rc = tmix_tensor_alloc(be, shift, TMIX_F32, 1, &C);
    if (rc == 0)
        rc = tmix_tensor_upload(be, shift, host + C);
    free(host);
    return rc;
}

static int batchnorm_case(tmix_backend *be, tmix_golden *g, int c, tmix_tensor *t,
                          tmix_golden_report report, void *ctx)
{
    int inplace;
    TMIX_TRY(tmix_golden_int(g, c, "inplace", -1, &inplace));
    tmix_tensor *in = &t[0], *scale = &t[1], *shift = &t[2], *out = &t[3];
    tmix_tensor *dout = &t[4], *din = &t[5];
    TMIX_TRY(batchnorm_fold_upload(be, g, c, scale, shift));
    // In place: out starts as a copy of in and is passed as both.
    TMIX_TRY(tmix_golden_input(g, c, "in", be, inplace ? out : in));
    if (!inplace)
        TMIX_TRY(tmix_golden_output(g, c, "out", be, out));
    TMIX_TRY(tmix_golden_input(g, c, "dout", be, dout));
    TMIX_TRY(tmix_golden_output(g, c, "grad_input", be, din));

    double t0 = tmix_now_ms(), ms;
    int rc = tmix_batchnorm_forward(be, out, inplace ? out : in, scale, shift);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "forward", rc, "out", out, TMIX_TOL_ELEMENTWISE, ms, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_batchnorm_backward_input(be, din, dout, scale);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "grad_input", rc, "grad_input", din, TMIX_TOL_ELEMENTWISE, ms,
                      report, ctx);
    return 0;
}

// A result of one op call and the fixture role it is compared with, under `check`.
typedef struct {
    const char *check, *role;
    const tmix_tensor *got;
} call_result;

// Reports a row for each of the n results of one call (status rc, taking ms).
static void check_results(tmix_golden *g, int c, tmix_backend *be, int rc, double ms,
                          const call_result *r, size_t n, tmix_golden_report report, void *ctx)
{
    for (size_t k = 0; k < n; k++)
        tmix_golden_check(g, c, be, r[k].check, rc, r[k].role, r[k].got, TMIX_TOL_ELEMENTWISE, ms,
                          report, ctx);
}

// The training form: the forward's five results, then the backward from PyTorch's saved
// statistics (rounded to float32, as this forward hands its own on), so each is judged alone.
// The results of one call share its time.
static int batchnorm_train_case(tmix_backend *be, tmix_golden *g, int c, tmix_tensor *t,
                                tmix_golden_report report, void *ctx)
{
    int inplace;
    tmix_batchnorm_train_params p;
    TMIX_TRY(tmix_golden_int(g, c, "inplace", -1, &inplace));
    TMIX_TRY(tmix_golden_float(g, c, "eps", -1, &p.eps));
    TMIX_TRY(tmix_golden_float(g, c, "momentum", -1, &p.momentum));
    tmix_tensor *in = &t[0], *gamma = &t[1], *beta = &t[2], *out = &t[3];
    tmix_tensor *save_mean = &t[4], *save_invstd = &t[5], *run_mean = &t[6], *run_var = &t[7];
    tmix_tensor *dout = &t[8], *ref_mean = &t[9], *ref_invstd = &t[10], *din = &t[11];
    tmix_tensor *dgamma = &t[12], *dbeta = &t[13];
    TMIX_TRY(tmix_golden_input(g, c, "in", be, in));
    // In place: out starts as a copy of in and is passed as both.
    TMIX_TRY(inplace ? tmix_golden_input(g, c, "in", be, out)
                     : tmix_golden_output(g, c, "out", be, out));
    TMIX_TRY(tmix_golden_input(g, c, "gamma", be, gamma));
    TMIX_TRY(tmix_golden_input(g, c, "beta", be, beta));
    TMIX_TRY(tmix_golden_output(g, c, "save_mean", be, save_mean));
    TMIX_TRY(tmix_golden_output(g, c, "save_invstd", be, save_invstd));
    TMIX_TRY(tmix_golden_input(g, c, "running_mean", be, run_mean));
    TMIX_TRY(tmix_golden_input(g, c, "running_var", be, run_var));
    TMIX_TRY(tmix_golden_input(g, c, "dout", be, dout));
    TMIX_TRY(tmix_golden_input(g, c, "save_mean", be, ref_mean));
    TMIX_TRY(tmix_golden_input(g, c, "save_invstd", be, ref_invstd));
    TMIX_TRY(tmix_golden_output(g, c, "grad_input", be, din));
    TMIX_TRY(tmix_golden_output(g, c, "grad_gamma", be, dgamma));
    TMIX_TRY(tmix_golden_output(g, c, "grad_beta", be, dbeta));

    double t0 = tmix_now_ms(), ms;
    int rc = tmix_batchnorm_train_forward(be, out, save_mean, save_invstd, run_mean, run_var,
                                          inplace ? out : in, gamma, beta, p);
    ms = tmix_golden_elapsed(be, &rc, t0);
    const call_result forward[] = {
        {"forward", "out", out}, {"save_mean", "save_mean", save_mean},
        {"save_invstd", "save_invstd", save_invstd},
        {"running_mean", "running_mean_out", run_mean},
        {"running_var", "running_var_out", run_var}};
    check_results(g, c, be, rc, ms, forward, sizeof forward / sizeof forward[0], report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_batchnorm_train_backward(be, din, dgamma, dbeta, dout, in, gamma, ref_mean,
                                       ref_invstd);
    ms = tmix_golden_elapsed(be, &rc, t0);
    const call_result backward[] = {{"grad_input", "grad_input", din},
                                    {"grad_gamma", "grad_gamma", dgamma},
                                    {"grad_beta", "grad_beta", dbeta}};
    check_results(g, c, be, rc, ms, backward, sizeof backward / sizeof backward[0], report, ctx);
    return 0;
}

// A case of either form, as its "train" parameter says.
static int batchnorm_any_case(tmix_backend *be, tmix_golden *g, int c, tmix_tensor *t,
                              tmix_golden_report report, void *ctx)
{
    int train;
    TMIX_TRY(tmix_golden_int(g, c, "train", -1, &train));
    return (train ? batchnorm_train_case : batchnorm_case)(be, g, c, t, report, ctx);
}

int tmix_golden_batchnorm(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    return run_cases(be, g, batchnorm_any_case, report, ctx);
}

// ---- relu ------------------------------------------------------------------------------------

static int relu_case(tmix_backend *be, tmix_golden *g, int c, tmix_tensor *t,
                     tmix_golden_report report, void *ctx)
{
    int inplace;
    TMIX_TRY(tmix_golden_int(g, c, "inplace", -1, &inplace));
    tmix_tensor *in = &t[0], *out = &t[1], *ref_out = &t[2];
    tmix_tensor *dout = &t[3], *din = &t[4];
    TMIX_TRY(tmix_golden_input(g, c, "in", be, inplace ? out : in));
    if (!inplace)
        TMIX_TRY(tmix_golden_output(g, c, "out", be, out));
    // The backward pass gets PyTorch's forward output, so it is judged on its own.
    TMIX_TRY(tmix_golden_input(g, c, "out", be, ref_out));
    TMIX_TRY(tmix_golden_input(g, c, "dout", be, dout));
    TMIX_TRY(tmix_golden_output(g, c, "grad_input", be, din));

    double t0 = tmix_now_ms(), ms;
    int rc = tmix_relu_forward(be, out, inplace ? out : in);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "forward", rc, "out", out, TMIX_TOL_ELEMENTWISE, ms, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_relu_backward(be, din, dout, ref_out);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "grad_input", rc, "grad_input", din, TMIX_TOL_ELEMENTWISE, ms,
                      report, ctx);
    return 0;
}

int tmix_golden_relu(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    return run_cases(be, g, relu_case, report, ctx);
}

// ---- maxpool2d -------------------------------------------------------------------------------

static int maxpool2d_case(tmix_backend *be, tmix_golden *g, int c, tmix_tensor *t,
                          tmix_golden_report report, void *ctx)
{
    tmix_pool2d_params p;
    TMIX_TRY(int_pair(g, c, "kernel", &p.kernel_h, &p.kernel_w));
    TMIX_TRY(int_pair(g, c, "stride", &p.stride_h, &p.stride_w));
    TMIX_TRY(int_pair(g, c, "pad", &p.pad_h, &p.pad_w));
    tmix_tensor *in = &t[0], *out = &t[1], *dout = &t[2], *din = &t[3];
    TMIX_TRY(tmix_golden_input(g, c, "in", be, in));
    TMIX_TRY(tmix_golden_output(g, c, "out", be, out));
    TMIX_TRY(tmix_golden_input(g, c, "dout", be, dout));
    TMIX_TRY(tmix_golden_output(g, c, "grad_input", be, din));

    double t0 = tmix_now_ms(), ms;
    int rc = tmix_maxpool2d_forward(be, out, in, p);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "forward", rc, "out", out, TMIX_TOL_ELEMENTWISE, ms, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_maxpool2d_backward(be, din, dout, in, p);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "grad_input", rc, "grad_input", din, TMIX_TOL_ELEMENTWISE, ms,
                      report, ctx);
    return 0;
}

int tmix_golden_maxpool2d(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    return run_cases(be, g, maxpool2d_case, report, ctx);
}

// ---- avgpool ---------------------------------------------------------------------------------

static int avgpool_case(tmix_backend *be, tmix_golden *g, int c, tmix_tensor *t,
                        tmix_golden_report report, void *ctx)
{
    tmix_tensor *in = &t[0], *out = &t[1], *dout = &t[2], *din = &t[3];
    TMIX_TRY(tmix_golden_input(g, c, "in", be, in));
    TMIX_TRY(tmix_golden_output(g, c, "out", be, out));
    TMIX_TRY(tmix_golden_input(g, c, "dout", be, dout));
    TMIX_TRY(tmix_golden_output(g, c, "grad_input", be, din));

    double t0 = tmix_now_ms(), ms;
    int rc = tmix_avgpool_forward(be, out, in);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "forward", rc, "out", out, TMIX_TOL_ELEMENTWISE, ms, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_avgpool_backward(be, din, dout);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "grad_input", rc, "grad_input", din, TMIX_TOL_ELEMENTWISE, ms,
                      report, ctx);
    return 0;
}

int tmix_golden_avgpool(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    return run_cases(be, g, avgpool_case, report, ctx);
}

// ---- linear ----------------------------------------------------------------------------------

static int linear_case(tmix_backend *be, tmix_golden *g, int c, tmix_tensor *t,
                       tmix_golden_report report, void *ctx)
{
    tmix_tensor *in = &t[0], *w = &t[1], *b = &t[2], *out = &t[3];
    tmix_tensor *dout = &t[4], *din = &t[5], *dw = &t[6], *db = &t[7];
    const bool has_bias = tmix_golden_has(g, c, "bias");
    TMIX_TRY(tmix_golden_input(g, c, "in", be, in));
    TMIX_TRY(tmix_golden_input(g, c, "weight", be, w));
    if (has_bias)
        TMIX_TRY(tmix_golden_input(g, c, "bias", be, b));
    TMIX_TRY(tmix_golden_output(g, c, "out", be, out));
    TMIX_TRY(tmix_golden_input(g, c, "dout", be, dout));
    TMIX_TRY(tmix_golden_output(g, c, "grad_input", be, din));
    TMIX_TRY(tmix_golden_output(g, c, "grad_weight", be, dw));
    if (has_bias)
        TMIX_TRY(tmix_golden_output(g, c, "grad_bias", be, db));

    double t0 = tmix_now_ms(), ms;
    int rc = tmix_linear_forward(be, out, in, w, has_bias ? b : NULL);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "forward", rc, "out", out, TMIX_TOL_GEMM, ms, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_linear_backward_input(be, din, dout, w);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "grad_input", rc, "grad_input", din, TMIX_TOL_GEMM, ms, report,
                      ctx);

    t0 = tmix_now_ms();
    rc = tmix_linear_backward_weight(be, dw, dout, in);
    ms = tmix_golden_elapsed(be, &rc, t0);
    tmix_golden_check(g, c, be, "grad_weight", rc, "grad_weight", dw, TMIX_TOL_GEMM, ms, report,
                      ctx);

    if (has_bias) {
        t0 = tmix_now_ms();
        rc = tmix_bias_backward(be, db, dout);
        ms = tmix_golden_elapsed(be, &rc, t0);
        tmix_golden_check(g, c, be, "grad_bias", rc, "grad_bias", db, TMIX_TOL_GEMM, ms, report,
                          ctx);
    }
    return 0;
}

int tmix_golden_linear(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    return run_cases(be, g, linear_case, report, ctx);
}
