// Golden runners of the network layers (tests/golden/gen_nn.py): conv2d, batchnorm, relu,
// maxpool2d, avgpool, linear. Each case uploads its inputs to the backend, runs the op and
// its backward passes, and compares every result with the PyTorch one. Tensor memory is
// only touched through upload and download, so the runners work on any backend.
#include "suites.h"

#include <stdlib.h>

#include "../error.h"
#include "../ops.h"

// The tensors of one case; every slot starts empty, so one loop frees them all.
enum { MAX_TENSORS = 10 };
typedef struct {
    tmix_tensor t[MAX_TENSORS];
} case_tensors;

static void free_all(tmix_backend *be, case_tensors *ts)
{
    for (int i = 0; i < MAX_TENSORS; i++)
        tmix_tensor_free(be, &ts->t[i]);
}

// Ends one timed op call started at t0: waits for the backend, then reports either the op's
// failure or the comparison of `got` with "<case>/<role>".
static void finish(tmix_golden *g, int c, tmix_backend *be, const char *check, int rc,
                   double t0, const char *role, const tmix_tensor *got, double tol,
                   tmix_golden_report report, void *ctx)
{
    if (rc == 0)
        rc = tmix_synchronize(be);
    double ms = tmix_now_ms() - t0;
    if (rc < 0)
        tmix_golden_fail(g, c, be, check, rc, report, ctx);
    else
        tmix_golden_check(g, c, be, check, role, got, tol, ms, report, ctx);
}

// Replays every case of g with run_case; a case whose fixture is unusable stops the suite.
typedef int (*case_fn)(tmix_backend *be, tmix_golden *g, int c, case_tensors *ts,
                       tmix_golden_report report, void *ctx);

static int run_cases(tmix_backend *be, tmix_golden *g, case_fn run_case,
                     tmix_golden_report report, void *ctx)
{
    for (int c = 0; c < tmix_golden_cases(g); c++) {
        case_tensors ts = {0};
        int rc = run_case(be, g, c, &ts, report, ctx);
        free_all(be, &ts);
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

static int conv2d_case(tmix_backend *be, tmix_golden *g, int c, case_tensors *ts,
                       tmix_golden_report report, void *ctx)
{
    tmix_conv2d_params p;
    TMIX_TRY(int_pair(g, c, "stride", &p.stride_h, &p.stride_w));
    TMIX_TRY(int_pair(g, c, "pad", &p.pad_h, &p.pad_w));
    TMIX_TRY(int_pair(g, c, "dilation", &p.dilation_h, &p.dilation_w));
    tmix_tensor *in = &ts->t[0], *w = &ts->t[1], *b = &ts->t[2], *out = &ts->t[3];
    tmix_tensor *dout = &ts->t[4], *din = &ts->t[5], *dw = &ts->t[6], *db = &ts->t[7];
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

    double t0 = tmix_now_ms();
    int rc = tmix_conv2d_forward(be, out, in, w, has_bias ? b : NULL, p);
    finish(g, c, be, "forward", rc, t0, "out", out, TMIX_TOL_GEMM, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_conv2d_backward_input(be, din, dout, w, p);
    finish(g, c, be, "grad_input", rc, t0, "grad_input", din, TMIX_TOL_GEMM, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_conv2d_backward_weight(be, dw, dout, in, p);
    finish(g, c, be, "grad_weight", rc, t0, "grad_weight", dw, TMIX_TOL_GEMM, report, ctx);

    if (has_bias) {
        t0 = tmix_now_ms();
        rc = tmix_bias_backward(be, db, dout);
        finish(g, c, be, "grad_bias", rc, t0, "grad_bias", db, TMIX_TOL_GEMM, report, ctx);
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

static int batchnorm_case(tmix_backend *be, tmix_golden *g, int c, case_tensors *ts,
                          tmix_golden_report report, void *ctx)
{
    int inplace;
    TMIX_TRY(tmix_golden_int(g, c, "inplace", -1, &inplace));
    tmix_tensor *in = &ts->t[0], *scale = &ts->t[1], *shift = &ts->t[2], *out = &ts->t[3];
    tmix_tensor *dout = &ts->t[4], *din = &ts->t[5];
    TMIX_TRY(batchnorm_fold_upload(be, g, c, scale, shift));
    // In place: out starts as a copy of in and is passed as both.
    TMIX_TRY(tmix_golden_input(g, c, "in", be, inplace ? out : in));
    if (!inplace)
        TMIX_TRY(tmix_golden_output(g, c, "out", be, out));
    TMIX_TRY(tmix_golden_input(g, c, "dout", be, dout));
    TMIX_TRY(tmix_golden_output(g, c, "grad_input", be, din));

    double t0 = tmix_now_ms();
    int rc = tmix_batchnorm_forward(be, out, inplace ? out : in, scale, shift);
    finish(g, c, be, "forward", rc, t0, "out", out, TMIX_TOL_ELEMENTWISE, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_batchnorm_backward_input(be, din, dout, scale);
    finish(g, c, be, "grad_input", rc, t0, "grad_input", din, TMIX_TOL_ELEMENTWISE, report,
           ctx);
    return 0;
}

int tmix_golden_batchnorm(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    return run_cases(be, g, batchnorm_case, report, ctx);
}

// ---- relu ------------------------------------------------------------------------------------

static int relu_case(tmix_backend *be, tmix_golden *g, int c, case_tensors *ts,
                     tmix_golden_report report, void *ctx)
{
    int inplace;
    TMIX_TRY(tmix_golden_int(g, c, "inplace", -1, &inplace));
    tmix_tensor *in = &ts->t[0], *out = &ts->t[1], *ref_out = &ts->t[2];
    tmix_tensor *dout = &ts->t[3], *din = &ts->t[4];
    TMIX_TRY(tmix_golden_input(g, c, "in", be, inplace ? out : in));
    if (!inplace)
        TMIX_TRY(tmix_golden_output(g, c, "out", be, out));
    // The backward pass gets PyTorch's forward output, so it is judged on its own.
    TMIX_TRY(tmix_golden_input(g, c, "out", be, ref_out));
    TMIX_TRY(tmix_golden_input(g, c, "dout", be, dout));
    TMIX_TRY(tmix_golden_output(g, c, "grad_input", be, din));

    double t0 = tmix_now_ms();
    int rc = tmix_relu_forward(be, out, inplace ? out : in);
    finish(g, c, be, "forward", rc, t0, "out", out, TMIX_TOL_ELEMENTWISE, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_relu_backward(be, din, dout, ref_out);
    finish(g, c, be, "grad_input", rc, t0, "grad_input", din, TMIX_TOL_ELEMENTWISE, report,
           ctx);
    return 0;
}

int tmix_golden_relu(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    return run_cases(be, g, relu_case, report, ctx);
}

// ---- maxpool2d -------------------------------------------------------------------------------

static int maxpool2d_case(tmix_backend *be, tmix_golden *g, int c, case_tensors *ts,
                          tmix_golden_report report, void *ctx)
{
    tmix_pool2d_params p;
    TMIX_TRY(int_pair(g, c, "kernel", &p.kernel_h, &p.kernel_w));
    TMIX_TRY(int_pair(g, c, "stride", &p.stride_h, &p.stride_w));
    TMIX_TRY(int_pair(g, c, "pad", &p.pad_h, &p.pad_w));
    tmix_tensor *in = &ts->t[0], *out = &ts->t[1], *dout = &ts->t[2], *din = &ts->t[3];
    TMIX_TRY(tmix_golden_input(g, c, "in", be, in));
    TMIX_TRY(tmix_golden_output(g, c, "out", be, out));
    TMIX_TRY(tmix_golden_input(g, c, "dout", be, dout));
    TMIX_TRY(tmix_golden_output(g, c, "grad_input", be, din));

    double t0 = tmix_now_ms();
    int rc = tmix_maxpool2d_forward(be, out, in, p);
    finish(g, c, be, "forward", rc, t0, "out", out, TMIX_TOL_ELEMENTWISE, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_maxpool2d_backward(be, din, dout, in, p);
    finish(g, c, be, "grad_input", rc, t0, "grad_input", din, TMIX_TOL_ELEMENTWISE, report,
           ctx);
    return 0;
}

int tmix_golden_maxpool2d(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    return run_cases(be, g, maxpool2d_case, report, ctx);
}

// ---- avgpool ---------------------------------------------------------------------------------

static int avgpool_case(tmix_backend *be, tmix_golden *g, int c, case_tensors *ts,
                        tmix_golden_report report, void *ctx)
{
    tmix_tensor *in = &ts->t[0], *out = &ts->t[1], *dout = &ts->t[2], *din = &ts->t[3];
    TMIX_TRY(tmix_golden_input(g, c, "in", be, in));
    TMIX_TRY(tmix_golden_output(g, c, "out", be, out));
    TMIX_TRY(tmix_golden_input(g, c, "dout", be, dout));
    TMIX_TRY(tmix_golden_output(g, c, "grad_input", be, din));

    double t0 = tmix_now_ms();
    int rc = tmix_avgpool_forward(be, out, in);
    finish(g, c, be, "forward", rc, t0, "out", out, TMIX_TOL_ELEMENTWISE, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_avgpool_backward(be, din, dout);
    finish(g, c, be, "grad_input", rc, t0, "grad_input", din, TMIX_TOL_ELEMENTWISE, report,
           ctx);
    return 0;
}

int tmix_golden_avgpool(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    return run_cases(be, g, avgpool_case, report, ctx);
}

// ---- linear ----------------------------------------------------------------------------------

static int linear_case(tmix_backend *be, tmix_golden *g, int c, case_tensors *ts,
                       tmix_golden_report report, void *ctx)
{
    tmix_tensor *in = &ts->t[0], *w = &ts->t[1], *b = &ts->t[2], *out = &ts->t[3];
    tmix_tensor *dout = &ts->t[4], *din = &ts->t[5], *dw = &ts->t[6], *db = &ts->t[7];
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

    double t0 = tmix_now_ms();
    int rc = tmix_linear_forward(be, out, in, w, has_bias ? b : NULL);
    finish(g, c, be, "forward", rc, t0, "out", out, TMIX_TOL_GEMM, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_linear_backward_input(be, din, dout, w);
    finish(g, c, be, "grad_input", rc, t0, "grad_input", din, TMIX_TOL_GEMM, report, ctx);

    t0 = tmix_now_ms();
    rc = tmix_linear_backward_weight(be, dw, dout, in);
    finish(g, c, be, "grad_weight", rc, t0, "grad_weight", dw, TMIX_TOL_GEMM, report, ctx);

    if (has_bias) {
        t0 = tmix_now_ms();
        rc = tmix_bias_backward(be, db, dout);
        finish(g, c, be, "grad_bias", rc, t0, "grad_bias", db, TMIX_TOL_GEMM, report, ctx);
    }
    return 0;
}

int tmix_golden_linear(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx)
{
    return run_cases(be, g, linear_case, report, ctx);
}
