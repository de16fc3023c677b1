// `test_twins OP`: every CUDA op against its CPU twin on fresh random inputs of several
// shapes (odd sizes, warps that leave the image, padded windows). The same host inputs go to
// both backends; outputs that an op overwrites start poisoned (NaN on both; bytes, which
// are compared exactly, 0xa5 in one run and 0x5a in the other), so an element the GPU never
// writes fails the comparison; gradients that an op accumulates into start
// from the same random values. twins.conv2d_tf32 runs the GPU's convolutions on TF32 tensor
// cores and bounds the norm-wise error by 3e-3; twins.conv2d_bf16 runs the forward passes on
// bf16 tensor cores (the gradients in TF32) and bounds it by 2e-2. Error: the measure of golden.c; 1e-4, 3e-4 for
// conv2d and linear, whose outputs are sums of hundreds of products: the CPU adds them in
// float, the GPU in double (cuDNN: its own order), and near a cancellation the two differ by
// a few float steps of the largest term (seen: 1.2e-4 on a 144-term sum, 1.6e-6 absolute).
// Skips (77) without a GPU. `test_twins --cpu GROUP` runs the same cases with the CPU in the
// place of the GPU: a check, on any machine, that every case is valid and every output
// written (the unit test twins.cases).
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ops.h"

enum { MAX_TENSORS = 8 };
#define TOL 1e-4
#define TOL_GEMM 3e-4
#define TOL_TF32 3e-3 // norm-wise: TF32 rounds every product to a 10-bit mantissa
#define TOL_BF16 2e-2 // norm-wise: bf16 rounds inputs, weights and outputs to 8-bit mantissas

static double tol = TOL;        // of the group being run
static bool norm_wise = false;  // the group compares ||got - ref|| / ||ref|| (TF32, BF16)
// The error the group's reduced precision must at least make where it surely runs (forward
// convolutions whose channels are whole 8s): below it, the convolution ran in fp32 (a
// fallback, or NVIDIA_TF32_OVERRIDE=0), and the group would prove nothing. A review's CPU
// emulation of the roundings put those errors near 3e-3 (bf16) and 3e-4 (tf32); fp32 1e-7.
static double floor_err = 0;
static bool at_floor = false;   // the call being compared is one of those

// The tensors of one call: host data, then one device copy per backend.
typedef struct {
    int ndim;
    int64_t shape[4];
    tmix_dtype dtype;
    bool output;   // compared after the call
    bool poisoned; // an overwritten output: starts as NaN
    void *host;    // input values, or an accumulating output's start
} arg;

typedef struct {
    arg a[MAX_TENSORS];
    int n;
    // Parameters and host arrays of the op.
    tmix_conv2d_params conv;
    tmix_pool2d_params pool;
    tmix_sgd_params sgd;
    int64_t step, index[64], labels[64];
    int c0;
    tmix_box boxes[16];
    tmix_crop crops[16];
    float mean[3], std[3];
    tmix_image_format format;
    bool no_bias;
    tmix_batchnorm_train_params bn;
} call;

typedef int (*op_fn)(tmix_backend *be, tmix_tensor *t, const call *c);

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double uniform(void) // [0, 1)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static int64_t numel(const arg *a)
{
    int64_t n = 1;
    for (int i = 0; i < a->ndim; i++)
        n *= a->shape[i];
    return n;
}

// Adds a float32 tensor of random values in [lo, hi); poisoned outputs hold NaN instead.
static arg *add_f32(call *c, bool output, bool poisoned, float lo, float hi, int ndim, ...)
{
    arg *a = &c->a[c->n++];
    memset(a, 0, sizeof *a);
    a->ndim = ndim;
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim; i++)
        a->shape[i] = va_arg(ap, int64_t);
    va_end(ap);
    a->dtype = TMIX_F32;
    a->output = output;
    a->poisoned = poisoned;
    float *x = malloc(sizeof(float) * (size_t)numel(a));
    for (int64_t i = 0; i < numel(a); i++)
        x[i] = poisoned ? NAN : (float)(lo + (hi - lo) * uniform());
    a->host = x;
    return a;
}

#define IN(c, lo, hi, ndim, ...) add_f32(c, false, false, lo, hi, ndim, __VA_ARGS__)
#define OUT(c, ndim, ...) add_f32(c, true, true, 0, 0, ndim, __VA_ARGS__)
#define GRAD(c, ndim, ...) add_f32(c, true, false, -1, 1, ndim, __VA_ARGS__)

static void free_call(call *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->a[i].host);
    c->n = 0;
}

// A byte output's start: 0xa5 in the first run and 0x5a in the second, so that a byte
// either run leaves unwritten differs between them (with --cpu too).
static const void *poison_bytes(const arg *a, bool second)
{
    memset(a->host, second ? 0x5a : 0xa5, (size_t)numel(a));
    return a->host;
}

// Byte outputs are compared exactly.
static int compare_bytes(const char *what, int i, const uint8_t *ref, const uint8_t *got,
                         int64_t n)
{
    int64_t differ = 0, first = -1;
    for (int64_t k = 0; k < n; k++)
        if (ref[k] != got[k] && differ++ == 0)
            first = k;
    printf("%-4s %-44s output %d: %lld bytes, %lld differ", differ ? "FAIL" : "ok", what, i,
           (long long)n, (long long)differ);
    if (differ)
        printf(" (first at %lld: cpu 0x%02x, cuda 0x%02x)", (long long)first, ref[first],
               got[first]);
    printf("\n");
    return differ > 0;
}

// Runs fn on backend be with copies of c's tensors; downloads the outputs into out[i].
static int run_on(tmix_backend *be, const call *c, op_fn fn, void **out, bool second)
{
    tmix_tensor t[MAX_TENSORS];
    memset(t, 0, sizeof t);
    int rc = 0;
    for (int i = 0; i < c->n && rc == 0; i++) {
        const arg *a = &c->a[i];
        rc = tmix_tensor_alloc(be, &t[i], a->dtype, a->ndim, a->shape);
        if (rc == 0 && a->dtype == TMIX_U8 && a->poisoned) // bytes have no NaN: a poison of
            rc = tmix_tensor_upload(be, &t[i], poison_bytes(a, second)); // each run's own
        else if (rc == 0)
            rc = tmix_tensor_upload(be, &t[i], a->host);
    }
    if (rc == 0)
        rc = fn(be, t, c);
    for (int i = 0; i < c->n && rc == 0; i++)
        if (c->a[i].output) {
            out[i] = malloc(tmix_tensor_bytes(&t[i]));
            rc = tmix_tensor_download(be, out[i], &t[i]);
        }
    if (rc == 0)
        rc = tmix_synchronize(be);
    for (int i = 0; i < c->n; i++)
        tmix_tensor_free(be, &t[i]);
    return rc;
}

// Runs the call on both backends and compares every output.
static int twins(tmix_backend *gpu, const call *c, op_fn fn, const char *what)
{
    void *cpu_out[MAX_TENSORS] = {0}, *gpu_out[MAX_TENSORS] = {0};
    int rc = run_on(tmix_backend_cpu(), c, fn, cpu_out, false);
    if (rc < 0) {
        fprintf(stderr, "%s: cpu: %s\n", what, tmix_last_error());
        return 1;
    }
    rc = run_on(gpu, c, fn, gpu_out, true);
    if (rc < 0) {
        fprintf(stderr, "%s: cuda: %s\n", what, tmix_last_error());
        return 1;
    }
    int failed = 0;
    for (int i = 0; i < c->n; i++) {
        if (!c->a[i].output)
            continue;
        const int64_t n = numel(&c->a[i]);
        if (c->a[i].dtype == TMIX_U8) {
            failed += compare_bytes(what, i, cpu_out[i], gpu_out[i], n);
            continue;
        }
        const float *ref = cpu_out[i], *got = gpu_out[i];
        double scale = 0, err = 0;
        int64_t worst = 0, unwritten = 0;
        for (int64_t k = 0; k < n; k++)
            scale = fmax(scale, fabs(ref[k]));
        for (int64_t k = 0; k < n; k++) {
            if (isnan(got[k]) != isnan(ref[k])) {
                unwritten++;
                continue;
            }
            if (isnan(ref[k]))
                continue;
            const double e = fabs((double)got[k] - ref[k]) / fmax(fabs(ref[k]), 1e-3 * scale + 1e-30);
            if (e > err)
                err = e, worst = k;
        }
        if (norm_wise) {
            double diff = 0, size = 0;
            for (int64_t k = 0; k < n; k++) {
                diff += ((double)got[k] - ref[k]) * ((double)got[k] - ref[k]);
                size += (double)ref[k] * ref[k];
            }
            err = size > 0 ? sqrt(diff / size) : sqrt(diff);
        }
        const bool exact = at_floor && err < floor_err;
        const bool ok = unwritten == 0 && err <= tol && !exact;
        printf("%-4s %-44s output %d: %lld values, error %.3g (at %lld: cpu %.7g, cuda %.7g)%s%s\n",
               ok ? "ok" : "FAIL", what, i, (long long)n, err, (long long)worst, ref[worst],
               got[worst], unwritten ? " UNWRITTEN or NaN mismatch" : "",
               exact ? " below the precision's floor: it did not run" : "");
        failed += !ok;
    }
    for (int i = 0; i < MAX_TENSORS; i++) {
        free(cpu_out[i]);
        free(gpu_out[i]);
    }
    return failed ? 1 : 0;
}

// ---- the calls ----------------------------------------------------------------------------

#define T(i) (&t[i])
static int f_conv_fwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_conv2d_forward(be, T(0), T(1), T(2), c->no_bias ? NULL : T(3), c->conv);
}
static int f_conv_din(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_conv2d_backward_input(be, T(0), T(1), T(2), c->conv);
}
static int f_conv_dw(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_conv2d_backward_weight(be, T(0), T(1), T(2), c->conv);
}

static int64_t conv_out(int64_t in, int k, int s, int p, int d)
{
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

static int test_conv2d(tmix_backend *gpu)
{
    static const int cases[][9] = { // N, C, H, W, OC, K, stride, pad, dilation
        {2, 3, 9, 7, 4, 3, 1, 1, 1}, {3, 5, 13, 11, 6, 5, 2, 2, 1}, {1, 4, 8, 8, 3, 1, 1, 0, 1},
        {2, 2, 12, 10, 3, 3, 1, 2, 2}, {4, 16, 16, 16, 32, 3, 2, 1, 1},
        {2, 8, 14, 14, 16, 3, 1, 1, 1}};
    int failed = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *q = cases[k];
        const tmix_conv2d_params p = {q[6], q[6], q[7], q[7], q[8], q[8], false};
        const int64_t oh = conv_out(q[2], q[5], q[6], q[7], q[8]),
                      ow = conv_out(q[3], q[5], q[6], q[7], q[8]);
        char what[96];
        for (int v = 0; v < 4; v++) { // without and with bias, then with a ReLU after
            const bool bias = v % 2, relu = v >= 2;
            call c = {.conv = p, .no_bias = !bias};
            c.conv.relu = relu;
            OUT(&c, 4, (int64_t)q[0], (int64_t)q[4], oh, ow);
            IN(&c, -1, 1, 4, (int64_t)q[0], (int64_t)q[1], (int64_t)q[2], (int64_t)q[3]);
            IN(&c, -1, 1, 4, (int64_t)q[4], (int64_t)q[1], (int64_t)q[5], (int64_t)q[5]);
            IN(&c, -1, 1, 1, (int64_t)q[4]);
            snprintf(what, sizeof what, "conv2d forward case %zu%s%s", k, bias ? " bias" : "",
                     relu ? " relu" : "");
            at_floor = q[1] % 8 == 0 && q[4] % 8 == 0;
            failed += twins(gpu, &c, f_conv_fwd, what);
            at_floor = false;
            free_call(&c);
        }
        call c = {.conv = p};
        GRAD(&c, 4, (int64_t)q[0], (int64_t)q[1], (int64_t)q[2], (int64_t)q[3]);
        IN(&c, -1, 1, 4, (int64_t)q[0], (int64_t)q[4], oh, ow);
        IN(&c, -1, 1, 4, (int64_t)q[4], (int64_t)q[1], (int64_t)q[5], (int64_t)q[5]);
        snprintf(what, sizeof what, "conv2d grad_input case %zu", k);
        failed += twins(gpu, &c, f_conv_din, what);
        free_call(&c);
        GRAD(&c, 4, (int64_t)q[4], (int64_t)q[1], (int64_t)q[5], (int64_t)q[5]);
        IN(&c, -1, 1, 4, (int64_t)q[0], (int64_t)q[4], oh, ow);
        IN(&c, -1, 1, 4, (int64_t)q[0], (int64_t)q[1], (int64_t)q[2], (int64_t)q[3]);
        snprintf(what, sizeof what, "conv2d grad_weight case %zu", k);
        failed += twins(gpu, &c, f_conv_dw, what);
        free_call(&c);
    }
    return failed;
}

static int f_pool_fwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_maxpool2d_forward(be, T(0), T(1), c->pool);
}
static int f_pool_bwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_maxpool2d_backward(be, T(0), T(1), T(2), c->pool);
}

static int test_maxpool2d(tmix_backend *gpu)
{
    static const int cases[][7] = {{2, 3, 9, 9, 3, 2, 1}, {1, 2, 8, 7, 2, 2, 0}, {3, 4, 15, 13, 3, 1, 1}};
    int failed = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *q = cases[k];
        const tmix_pool2d_params p = {q[4], q[4], q[5], q[5], q[6], q[6]};
        const int64_t oh = conv_out(q[2], q[4], q[5], q[6], 1), ow = conv_out(q[3], q[4], q[5], q[6], 1);
        char what[96];
        call c = {.pool = p};
        OUT(&c, 4, (int64_t)q[0], (int64_t)q[1], oh, ow);
        arg *in = IN(&c, -1, 1, 4, (int64_t)q[0], (int64_t)q[1], (int64_t)q[2], (int64_t)q[3]);
        float *x = in->host;
        for (int64_t i = 0; i < numel(in); i += 7) // ties: the first maximum must win
            x[i] = 0.5f;
        snprintf(what, sizeof what, "maxpool2d forward case %zu", k);
        failed += twins(gpu, &c, f_pool_fwd, what);
        free_call(&c);
        GRAD(&c, 4, (int64_t)q[0], (int64_t)q[1], (int64_t)q[2], (int64_t)q[3]);
        IN(&c, -1, 1, 4, (int64_t)q[0], (int64_t)q[1], oh, ow);
        in = IN(&c, -1, 1, 4, (int64_t)q[0], (int64_t)q[1], (int64_t)q[2], (int64_t)q[3]);
        x = in->host;
        for (int64_t i = 0; i < numel(in); i += 7)
            x[i] = 0.5f;
        snprintf(what, sizeof what, "maxpool2d grad_input case %zu", k);
        failed += twins(gpu, &c, f_pool_bwd, what);
        free_call(&c);
    }
    return failed;
}

static int f_lin_fwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_linear_forward(be, T(0), T(1), T(2), c->no_bias ? NULL : T(3));
}
static int f_lin_din(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_linear_backward_input(be, T(0), T(1), T(2));
}
static int f_lin_dw(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_linear_backward_weight(be, T(0), T(1), T(2));
}
static int f_bias_bwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_bias_backward(be, T(0), T(1));
}

static int test_linear(tmix_backend *gpu)
{
    static const int64_t cases[][3] = {{5, 7, 3}, {128, 64, 10}, {1, 1, 1}, {33, 130, 65}};
    int failed = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int64_t b = cases[k][0], i = cases[k][1], o = cases[k][2];
        char what[96];
        for (int bias = 0; bias < 2; bias++) {
            call c = {.no_bias = !bias};
            OUT(&c, 2, b, o);
            IN(&c, -1, 1, 2, b, i);
            IN(&c, -1, 1, 2, o, i);
            IN(&c, -1, 1, 1, o);
            snprintf(what, sizeof what, "linear forward %lldx%lld->%lld%s", (long long)b,
                     (long long)i, (long long)o, bias ? " bias" : "");
            failed += twins(gpu, &c, f_lin_fwd, what);
            free_call(&c);
        }
        call c = {0};
        GRAD(&c, 2, b, i);
        IN(&c, -1, 1, 2, b, o);
        IN(&c, -1, 1, 2, o, i);
        snprintf(what, sizeof what, "linear grad_input %lld", (long long)k);
        failed += twins(gpu, &c, f_lin_din, what);
        free_call(&c);
        GRAD(&c, 2, o, i);
        IN(&c, -1, 1, 2, b, o);
        IN(&c, -1, 1, 2, b, i);
        snprintf(what, sizeof what, "linear grad_weight %lld", (long long)k);
        failed += twins(gpu, &c, f_lin_dw, what);
        free_call(&c);
        GRAD(&c, 1, o);
        IN(&c, -1, 1, 2, b, o);
        snprintf(what, sizeof what, "bias grad %lld", (long long)k);
        failed += twins(gpu, &c, f_bias_bwd, what);
        free_call(&c);
    }
    return failed;
}

static int f_grid_fwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_affine_grid_forward(be, T(0), T(1));
}
static int f_grid_bwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_affine_grid_backward(be, T(0), T(1));
}
static int f_sample_fwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_grid_sample_forward(be, T(0), T(1), T(2));
}
static int f_sample_bwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_grid_sample_backward(be, T(0), T(1), T(2), T(3), T(4));
}
static int f_resize(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_resize_bilinear_forward(be, T(0), T(1));
}

static int test_warp(tmix_backend *gpu)
{
    static const int64_t cases[][5] = {{2, 3, 9, 7, 0}, {3, 1, 16, 16, 0}, {1, 4, 5, 11, 0}};
    int failed = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int64_t n = cases[k][0], ch = cases[k][1], h = cases[k][2], w = cases[k][3];
        char what[96];
        call c = {0};
        OUT(&c, 4, n, h, w, (int64_t)2);
        IN(&c, -1.5, 1.5, 3, n, (int64_t)2, (int64_t)3); // warps that leave the image
        snprintf(what, sizeof what, "affine_grid forward %zu", k);
        failed += twins(gpu, &c, f_grid_fwd, what);
        free_call(&c);
        GRAD(&c, 3, n, (int64_t)2, (int64_t)3);
        IN(&c, -1, 1, 4, n, h, w, (int64_t)2);
        snprintf(what, sizeof what, "affine_grid grad_theta %zu", k);
        failed += twins(gpu, &c, f_grid_bwd, what);
        free_call(&c);
        const int64_t ho = h + 3, wo = w - 2;
        OUT(&c, 4, n, ch, ho, wo);
        IN(&c, -1, 1, 4, n, ch, h, w);
        IN(&c, -1.4, 1.4, 4, n, ho, wo, (int64_t)2);
        snprintf(what, sizeof what, "grid_sample forward %zu", k);
        failed += twins(gpu, &c, f_sample_fwd, what);
        free_call(&c);
        GRAD(&c, 4, n, ch, h, w);
        GRAD(&c, 4, n, ho, wo, (int64_t)2);
        IN(&c, -1, 1, 4, n, ch, ho, wo);
        IN(&c, -1, 1, 4, n, ch, h, w);
        IN(&c, -1.4, 1.4, 4, n, ho, wo, (int64_t)2);
        snprintf(what, sizeof what, "grid_sample grads %zu", k);
        failed += twins(gpu, &c, f_sample_bwd, what);
        free_call(&c);
        for (int up = 0; up < 2; up++) {
            OUT(&c, 4, n, ch, up ? 2 * h + 1 : h / 2 + 1, up ? w + 5 : w / 3 + 1);
            IN(&c, -1, 1, 4, n, ch, h, w);
            snprintf(what, sizeof what, "resize_bilinear %s %zu", up ? "up" : "down", k);
            failed += twins(gpu, &c, f_resize, what);
            free_call(&c);
        }
    }
    return failed;
}

static int f_add(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_add(be, T(0), T(1), T(2));
}
static int f_add_relu(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_add_relu(be, T(0), T(1), T(2));
}
static int f_concat_fwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_concat_channels_forward(be, T(0), T(1), c->c0);
}
static int f_concat_bwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_concat_channels_backward(be, T(0), T(1), c->c0);
}
static int f_fill(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_fill_channels(be, T(0), T(1), c->c0);
}
static int f_gather(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_gather(be, T(0), T(1), c->index);
}
static int f_cam(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_cam_forward(be, T(0), T(1), T(2), c->labels);
}
static int f_box(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_box_masks(be, T(0), c->boxes);
}

// Outputs written only in part (a channel slice) start from random values on both sides.
static int test_assemble(tmix_backend *gpu)
{
    int failed = 0;
    const int64_t n = 3, h = 7, w = 9;
    call c = {0};
    OUT(&c, 4, n, (int64_t)5, h, w);
    IN(&c, -1, 1, 4, n, (int64_t)5, h, w);
    IN(&c, -1, 1, 4, n, (int64_t)5, h, w);
    failed += twins(gpu, &c, f_add, "add");
    failed += twins(gpu, &c, f_add_relu, "add_relu");
    free_call(&c);
    c.c0 = 2;
    GRAD(&c, 4, n, (int64_t)6, h, w);
    IN(&c, -1, 1, 4, n, (int64_t)3, h, w);
    failed += twins(gpu, &c, f_concat_fwd, "concat_channels forward c0 2");
    free_call(&c);
    GRAD(&c, 4, n, (int64_t)3, h, w);
    IN(&c, -1, 1, 4, n, (int64_t)6, h, w);
    failed += twins(gpu, &c, f_concat_bwd, "concat_channels grad c0 2");
    free_call(&c);
    c.c0 = 4;
    GRAD(&c, 4, n, (int64_t)6, h, w);
    IN(&c, -1, 1, 2, n, (int64_t)2);
    failed += twins(gpu, &c, f_fill, "fill_channels c0 4");
    free_call(&c);
    const int64_t idx[] = {2, 0, 0, 1, 2};
    memcpy(c.index, idx, sizeof idx);
    OUT(&c, 4, (int64_t)5, (int64_t)2, h, w);
    IN(&c, -1, 1, 4, n, (int64_t)2, h, w);
    failed += twins(gpu, &c, f_gather, "gather 3 -> 5");
    free_call(&c);
    const int64_t labels[] = {4, 0, 2};
    memcpy(c.labels, labels, sizeof labels);
    OUT(&c, 4, n, (int64_t)1, h, w);
    IN(&c, -1, 1, 4, n, (int64_t)17, h, w);
    IN(&c, -1, 1, 2, (int64_t)5, (int64_t)17);
    failed += twins(gpu, &c, f_cam, "cam 17 channels, 5 classes");
    free_call(&c);
    const tmix_box boxes[] = {{1, 2, 5, 8}, {0, 0, 7, 9}, {3, 3, 3, 6}};
    memcpy(c.boxes, boxes, sizeof boxes);
    OUT(&c, 4, n, (int64_t)2, h, w);
    failed += twins(gpu, &c, f_box, "box_masks");
    free_call(&c);
    return failed;
}

static int f_ce_fwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_cross_entropy_forward(be, T(0), T(1), T(2));
}
static int f_ce_bwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_cross_entropy_backward(be, T(0), T(1), T(2));
}
static int f_sgd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_sgd_update(be, T(0), T(1), c->sgd.momentum > 0 ? T(2) : NULL, c->sgd, c->step);
}

static int test_loss_and_sgd(tmix_backend *gpu)
{
    int failed = 0;
    static const int64_t shapes[][2] = {{4, 10}, {128, 100}, {1, 3}};
    for (size_t k = 0; k < 3; k++) {
        const int64_t b = shapes[k][0], j = shapes[k][1];
        char what[96];
        call c = {0};
        OUT(&c, 1, (int64_t)1);
        IN(&c, -8, 8, 2, b, j);
        IN(&c, 0, 1, 2, b, j);
        snprintf(what, sizeof what, "cross_entropy forward %lldx%lld", (long long)b, (long long)j);
        failed += twins(gpu, &c, f_ce_fwd, what);
        free_call(&c);
        GRAD(&c, 2, b, j);
        IN(&c, -8, 8, 2, b, j);
        IN(&c, 0, 1, 2, b, j);
        snprintf(what, sizeof what, "cross_entropy grad %lldx%lld", (long long)b, (long long)j);
        failed += twins(gpu, &c, f_ce_bwd, what);
        free_call(&c);
    }
    static const tmix_sgd_params ps[] = {{0.1f, 0, 0, 0, 0}, {0.05f, 0.9f, 0.1f, 0.01f, 0},
                                         {0.05f, 0.9f, 0, 0.01f, 1}};
    for (int k = 0; k < 3; k++)
        for (int64_t step = 0; step < 2; step++) {
            call c = {.sgd = ps[k], .step = step};
            GRAD(&c, 2, (int64_t)7, (int64_t)13); // the parameter, updated in place
            IN(&c, -1, 1, 2, (int64_t)7, (int64_t)13);
            GRAD(&c, 2, (int64_t)7, (int64_t)13); // the momentum buffer
            char what[96];
            snprintf(what, sizeof what, "sgd params %d step %lld", k, (long long)step);
            failed += twins(gpu, &c, f_sgd, what);
            free_call(&c);
        }
    return failed;
}

static int f_pre(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_preprocess(be, T(0), T(1), c->crops, c->mean, c->std);
}

static int test_preprocess(tmix_backend *gpu)
{
    int failed = 0;
    for (int gray = 0; gray < 2; gray++) {
        call c = {.mean = {0.4f, 0.5f, 0.6f}, .std = {0.2f, 0.25f, 0.3f}};
        const int64_t b = 3, h = 11, w = 13, oh = 8, ow = 9, cs = gray ? 1 : 3;
        const tmix_crop crops[] = {{0, 0, 0}, {5, 6, 1}, {-2, 7, 1}}; // the last leaves the image
        memcpy(c.crops, crops, sizeof crops);
        OUT(&c, 4, b, (int64_t)3, oh, ow);
        arg *src = &c.a[c.n++];
        memset(src, 0, sizeof *src);
        src->ndim = 4;
        src->shape[0] = b, src->shape[1] = h, src->shape[2] = w, src->shape[3] = cs;
        src->dtype = TMIX_U8;
        uint8_t *px = malloc((size_t)numel(src));
        for (int64_t i = 0; i < numel(src); i++)
            px[i] = (uint8_t)(uniform() * 256);
        src->host = px;
        failed += twins(gpu, &c, f_pre, gray ? "preprocess gray -> rgb" : "preprocess rgb");
        free_call(&c);
    }
    return failed;
}

static int f_encode(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_encode_images(be, T(0), T(1), c->format, c->mean, c->std);
}

// Every format on random values and on the ones its rules single out: half's largest,
// overflow, subnormals and a tie, pixels past either end, NaN, -0.
static int test_encode(tmix_backend *gpu)
{
    static const float special[] = {65504.0f, 65520.0f, -70000.0f, 1e-7f, 2.98023224e-8f,
                                    1.00048828125f, -0.0f, NAN, 3.5f, -2.5f};
    static const int64_t shapes[][4] = {{3, 3, 7, 5}, {2, 1, 4, 9}};
    int failed = 0;
    for (int s = 0; s < 2; s++)
        for (int dtype = TMIX_IMAGE_F32; dtype <= TMIX_IMAGE_U8; dtype++)
            for (int nhwc = 0; nhwc < 2; nhwc++) {
                const int64_t *sh = shapes[s];
                call c = {.mean = {0.5f, 0.45f, 0.4f}, .std = {0.25f, 0.2f, 0.3f},
                          .format = {(tmix_image_dtype)dtype, nhwc}};
                const int64_t row = sh[1] * sh[2] * sh[3] *
                                    (int64_t)tmix_image_dtype_size((tmix_image_dtype)dtype);
                arg *out = &c.a[c.n++];
                memset(out, 0, sizeof *out);
                out->ndim = 2;
                out->shape[0] = sh[0], out->shape[1] = row;
                out->dtype = TMIX_U8;
                out->output = out->poisoned = true;
                out->host = malloc((size_t)numel(out));
                float *x = IN(&c, -3, 3, 4, sh[0], sh[1], sh[2], sh[3])->host;
                memcpy(x, special, sizeof special);
                char what[96];
                snprintf(what, sizeof what, "encode_images %s %s %lldx%lldx%lldx%lld",
                         dtype == TMIX_IMAGE_F32 ? "f32" : dtype == TMIX_IMAGE_F16 ? "f16" : "u8",
                         nhwc ? "nhwc" : "nchw", (long long)sh[0], (long long)sh[1],
                         (long long)sh[2], (long long)sh[3]);
                failed += twins(gpu, &c, f_encode, what);
                free_call(&c);
            }
    return failed;
}

static int f_relu_fwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_relu_forward(be, T(0), T(1));
}
static int f_blend_fwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_blend_forward(be, T(0), T(1), T(2));
}
static int f_blend_bwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_blend_backward(be, T(0), T(1), T(2), T(3), T(4));
}
static int f_softmax_fwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_softmax_channel_forward(be, T(0), T(1), T(2));
}
static int f_minmax(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_minmax_normalize_forward(be, T(0), T(1));
}

// The ops of the first CUDA milestone, on shapes their golden cases do not have.
static int test_early_ops(tmix_backend *gpu)
{
    int failed = 0;
    call c = {0};
    OUT(&c, 4, (int64_t)3, (int64_t)5, (int64_t)17, (int64_t)19);
    IN(&c, -1, 1, 4, (int64_t)3, (int64_t)5, (int64_t)17, (int64_t)19);
    failed += twins(gpu, &c, f_relu_fwd, "relu forward odd");
    free_call(&c);
    OUT(&c, 4, (int64_t)3, (int64_t)3, (int64_t)13, (int64_t)11);
    IN(&c, 0, 1, 4, (int64_t)3, (int64_t)2, (int64_t)13, (int64_t)11);
    IN(&c, -1, 1, 4, (int64_t)6, (int64_t)3, (int64_t)13, (int64_t)11);
    failed += twins(gpu, &c, f_blend_fwd, "blend forward K 2 odd");
    free_call(&c);
    GRAD(&c, 4, (int64_t)3, (int64_t)2, (int64_t)13, (int64_t)11);
    GRAD(&c, 4, (int64_t)6, (int64_t)3, (int64_t)13, (int64_t)11);
    IN(&c, -1, 1, 4, (int64_t)3, (int64_t)3, (int64_t)13, (int64_t)11);
    IN(&c, 0, 1, 4, (int64_t)3, (int64_t)2, (int64_t)13, (int64_t)11);
    IN(&c, -1, 1, 4, (int64_t)6, (int64_t)3, (int64_t)13, (int64_t)11);
    failed += twins(gpu, &c, f_blend_bwd, "blend grads K 2 odd");
    free_call(&c);
    OUT(&c, 4, (int64_t)2, (int64_t)3, (int64_t)15, (int64_t)9);
    IN(&c, -3, 3, 4, (int64_t)2, (int64_t)3, (int64_t)15, (int64_t)9);
    IN(&c, 0.3f, 2, 1, (int64_t)1);
    failed += twins(gpu, &c, f_softmax_fwd, "softmax_channel forward odd");
    free_call(&c);
    OUT(&c, 4, (int64_t)4, (int64_t)1, (int64_t)31, (int64_t)33);
    IN(&c, -3, 3, 4, (int64_t)4, (int64_t)1, (int64_t)31, (int64_t)33);
    failed += twins(gpu, &c, f_minmax, "minmax_normalize odd");
    free_call(&c);
    return failed;
}

static int f_bn_train_fwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    return tmix_batchnorm_train_forward(be, T(0), T(1), T(2), T(3), T(4), T(5), T(6), T(7), c->bn);
}
static int f_bn_train_bwd(tmix_backend *be, tmix_tensor *t, const call *c)
{
    (void)c;
    return tmix_batchnorm_train_backward(be, T(0), T(1), T(2), T(3), T(4), T(5), T(6), T(7));
}

// Batch norm in training form: channels of N*H*W = 2 up to 16384 values (several reduction
// slices on the GPU), 70 channels, and inputs near 50, where a variance summed in float
// around zero would lose its digits. The backward gets statistics that are not the batch's,
// which its formula allows, so every term of it counts.
static int test_batchnorm_train(tmix_backend *gpu)
{
    static const int64_t cases[][4] = {{2, 3, 5, 7},     {2, 3, 1, 1},     {1, 2, 1, 2},
                                       {16, 8, 32, 32}, {64, 4, 17, 19}, {3, 70, 3, 3}};
    int failed = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int64_t n = cases[k][0], ch = cases[k][1], h = cases[k][2], w = cases[k][3];
        const float lo = k == 4 ? 40 : -3, hi = k == 4 ? 60 : 3;
        char what[96];
        call c = {.bn = {.eps = 1e-5f, .momentum = k % 2 ? 0.1f : 0.7f}};
        OUT(&c, 4, n, ch, h, w);
        OUT(&c, 1, ch);                             // save_mean
        OUT(&c, 1, ch);                             // save_invstd
        GRAD(&c, 1, ch);                            // running_mean, updated in place
        add_f32(&c, true, false, 0.5f, 2, 1, ch);   // running_var, likewise
        IN(&c, lo, hi, 4, n, ch, h, w);
        IN(&c, 0.5f, 1.5f, 1, ch);
        IN(&c, -1, 1, 1, ch);
        snprintf(what, sizeof what, "batchnorm_train forward %lldx%lldx%lldx%lld",
                 (long long)n, (long long)ch, (long long)h, (long long)w);
        failed += twins(gpu, &c, f_bn_train_fwd, what);
        free_call(&c);
        GRAD(&c, 4, n, ch, h, w);
        GRAD(&c, 1, ch);
        GRAD(&c, 1, ch);
        IN(&c, -1, 1, 4, n, ch, h, w);
        IN(&c, lo, hi, 4, n, ch, h, w);
        IN(&c, 0.5f, 1.5f, 1, ch);
        IN(&c, lo, hi, 1, ch);
        IN(&c, 0.2f, 2, 1, ch);
        snprintf(what, sizeof what, "batchnorm_train grads %lldx%lldx%lldx%lld", (long long)n,
                 (long long)ch, (long long)h, (long long)w);
        failed += twins(gpu, &c, f_bn_train_bwd, what);
        free_call(&c);
    }
    return failed;
}

static const struct {
    const char *name;
    int (*fn)(tmix_backend *gpu);
    double tol;
    tmix_precision precision; // of the GPU's convolutions for the group
    double floor_err;         // on a GPU (floor_err above)
} groups[] = {
    {"twins.conv2d", test_conv2d, TOL_GEMM, TMIX_PRECISION_FP32, 0},
    {"twins.conv2d_tf32", test_conv2d, TOL_TF32, TMIX_PRECISION_TF32, 3e-5},
    {"twins.conv2d_bf16", test_conv2d, TOL_BF16, TMIX_PRECISION_BF16, 1e-3},
    {"twins.maxpool2d", test_maxpool2d, TOL, TMIX_PRECISION_FP32, 0},
    {"twins.linear", test_linear, TOL_GEMM, TMIX_PRECISION_FP32, 0},
    {"twins.warp", test_warp, TOL, TMIX_PRECISION_FP32, 0},
    {"twins.assemble", test_assemble, TOL, TMIX_PRECISION_FP32, 0},
    {"twins.loss_and_sgd", test_loss_and_sgd, TOL, TMIX_PRECISION_FP32, 0},
    {"twins.preprocess", test_preprocess, TOL, TMIX_PRECISION_FP32, 0},
    {"twins.encode_images", test_encode, TOL, TMIX_PRECISION_FP32, 0},
    {"twins.early_ops", test_early_ops, TOL, TMIX_PRECISION_FP32, 0},
    {"twins.batchnorm_train", test_batchnorm_train, TOL, TMIX_PRECISION_FP32, 0},
};

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
            printf("%s\n", groups[i].name);
        return 0;
    }
    const bool cpu_only = argc > 1 && strcmp(argv[1], "--cpu") == 0;
    if (cpu_only) {
        argc--;
        argv++;
    }
    tmix_backend *gpu = tmix_backend_cpu();
    const int rc = cpu_only ? 0 : open_gpu_or_skip(&gpu);
    if (rc)
        return rc;
    int failed = 0, ran = 0;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        if (argc > 1 && strcmp(argv[1], groups[i].name) != 0)
            continue;
        ran++;
        tol = groups[i].tol;
        floor_err = cpu_only ? 0 : groups[i].floor_err;
        norm_wise = groups[i].precision != TMIX_PRECISION_FP32;
        if (!cpu_only && tmix_backend_set_precision(gpu, groups[i].precision) < 0) {
            fprintf(stderr, "%s: %s\n", groups[i].name, tmix_last_error());
            failed++;
            continue;
        }
        const int f = groups[i].fn(gpu);
        printf("%s %s\n", f ? "FAIL" : "PASS", groups[i].name);
        failed += f;
    }
    if (!cpu_only)
        tmix_backend_close(gpu);
    if (!ran) {
        fprintf(stderr, "no test named '%s' (see --list)\n", argv[1]);
        return 2;
    }
    return failed ? 1 : 0;
}
