// The network layers on the CPU backend: finite-difference gradient checks of every backward
// pass (loss L = <out, r> for a random r, so dL/dout = r), argument checks of every entry
// point, and conv2d and linear giving bitwise the same results on 1, 2 and 3 threads.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <string.h>

#include "backend.h"
#include "harness.h"
#include "ops.h"

// ---- gradient checks ---------------------------------------------------------------------

enum { MAXN = 1024 };

// conv2d: in (N, C, H, W), weight (OC, C, KH, KW), bias (OC) -> out (N, OC, OH, OW).
typedef struct {
    int64_t n, c, h, w, oc, kh, kw;
    tmix_conv2d_params p;
} conv_cfg;

typedef struct {
    test_loss loss;
    conv_cfg cfg;
    tmix_tensor in, weight, bias, out, r, din, dweight, dbias;
    float x[MAXN], wt[MAXN], b[64], y[MAXN], rr[MAXN], dx[MAXN], dw[MAXN], db[64];
} conv_problem;

static const conv_cfg conv_cfgs[] = {
    // stride (2,1), pad (1,1), dilation (1,2) on a 3x2 kernel: every axis differs
    {2, 3, 7, 6, 4, 3, 2, {.stride_h = 2, .stride_w = 1, .pad_h = 1, .pad_w = 1,
                           .dilation_h = 1, .dilation_w = 2}},
    // pointwise: the path without im2col
    {2, 5, 4, 3, 3, 1, 1, {.stride_h = 1, .stride_w = 1, .dilation_h = 1, .dilation_w = 1}},
};

static int conv_forward(test_loss *self)
{
    conv_problem *c = (conv_problem *)self;
    return tmix_conv2d_forward(cpu(), &c->out, &c->in, &c->weight, &c->bias, c->cfg.p);
}

static void conv_setup(conv_problem *c, const conv_cfg *cfg, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    const tmix_conv2d_params p = cfg->p;
    int64_t oh = (cfg->h + 2 * p.pad_h - p.dilation_h * (cfg->kh - 1) - 1) / p.stride_h + 1;
    int64_t ow = (cfg->w + 2 * p.pad_w - p.dilation_w * (cfg->kw - 1) - 1) / p.stride_w + 1;
    c->in = V4(c->x, cfg->n, cfg->c, cfg->h, cfg->w);
    c->din = V4(c->dx, cfg->n, cfg->c, cfg->h, cfg->w);
    c->weight = V4(c->wt, cfg->oc, cfg->c, cfg->kh, cfg->kw);
    c->dweight = V4(c->dw, cfg->oc, cfg->c, cfg->kh, cfg->kw);
    c->bias = V1(c->b, cfg->oc);
    c->dbias = V1(c->db, cfg->oc);
    c->out = V4(c->y, cfg->n, cfg->oc, oh, ow);
    c->r = V4(c->rr, cfg->n, cfg->oc, oh, ow);
    fill_uniform(c->x, tmix_tensor_numel(&c->in), seed, -1, 1);
    fill_uniform(c->wt, tmix_tensor_numel(&c->weight), seed + 1, -0.5f, 0.5f);
    fill_uniform(c->b, cfg->oc, seed + 2, -0.5f, 0.5f);
    fill_uniform(c->rr, tmix_tensor_numel(&c->r), seed + 3, -1, 1);
    c->loss = (test_loss){conv_forward, c->y, c->rr, tmix_tensor_numel(&c->out), false};
}

static conv_problem conv;

static int test_gradcheck_conv2d_grad_input(void)
{
    for (int i = 0; i < (int)COUNT(conv_cfgs); i++) {
        conv_setup(&conv, &conv_cfgs[i], 100 + 10 * (uint64_t)i);
        CHECK_OK(tmix_conv2d_backward_input(cpu(), &conv.din, &conv.r, &conv.weight,
                                            conv.cfg.p));
        CHECK(gradcheck_loss("conv2d din", conv.x, tmix_tensor_numel(&conv.in), conv.dx, &conv.loss,
                             1e-2, 1e-3, 1e-2) == 0);
    }
    return 0;
}

static int test_gradcheck_conv2d_grad_weight(void)
{
    for (int i = 0; i < (int)COUNT(conv_cfgs); i++) {
        conv_setup(&conv, &conv_cfgs[i], 200 + 10 * (uint64_t)i);
        CHECK_OK(tmix_conv2d_backward_weight(cpu(), &conv.dweight, &conv.r, &conv.in,
                                             conv.cfg.p));
        CHECK(gradcheck_loss("conv2d dweight", conv.wt, tmix_tensor_numel(&conv.weight), conv.dw,
                             &conv.loss, 1e-2, 1e-3, 1e-2) == 0);
    }
    return 0;
}

static int test_gradcheck_conv2d_grad_bias(void)
{
    for (int i = 0; i < (int)COUNT(conv_cfgs); i++) {
        conv_setup(&conv, &conv_cfgs[i], 300 + 10 * (uint64_t)i);
        CHECK_OK(tmix_bias_backward(cpu(), &conv.dbias, &conv.r));
        CHECK(gradcheck_loss("conv2d dbias", conv.b, conv.cfg.oc, conv.db, &conv.loss, 1e-2, 1e-3,
                             1e-2) == 0);
    }
    return 0;
}

// Element-wise layers and pools: one input x, one output, parameters alongside.
typedef struct {
    test_loss loss;
    tmix_tensor in, out, r, din, scale, shift;
    tmix_pool2d_params pool;
    float x[MAXN], y[MAXN], rr[MAXN], dx[MAXN], sc[16], sh[16];
} unary_problem;

static unary_problem un;

static void unary_setup(unary_problem *u, tmix_tensor in, tmix_tensor out, uint64_t seed)
{
    u->in = in;
    u->din = in;
    u->din.data = u->dx;
    u->out = out;
    u->r = out;
    u->r.data = u->rr;
    memset(u->dx, 0, sizeof u->dx);
    fill_uniform(u->rr, tmix_tensor_numel(&out), seed, -1, 1);
    u->loss = (test_loss){NULL, u->y, u->rr, tmix_tensor_numel(&out), false};
}

static int batchnorm_forward(test_loss *self)
{
    unary_problem *u = (unary_problem *)self;
    return tmix_batchnorm_forward(cpu(), &u->out, &u->in, &u->scale, &u->shift);
}

static int test_gradcheck_batchnorm_grad_input(void)
{
    memset(&un, 0, sizeof un);
    unary_setup(&un, V4(un.x, 2, 3, 4, 5), V4(un.y, 2, 3, 4, 5), 400);
    fill_uniform(un.x, 120, 401, -2, 2);
    fill_uniform(un.sc, 3, 402, 0.5f, 2);
    fill_uniform(un.sh, 3, 403, -1, 1);
    un.scale = V1(un.sc, 3);
    un.shift = V1(un.sh, 3);
    un.loss.forward = batchnorm_forward;
    CHECK_OK(tmix_batchnorm_backward_input(cpu(), &un.din, &un.r, &un.scale));
    CHECK(gradcheck_loss("batchnorm din", un.x, 120, un.dx, &un.loss, 1e-2, 1e-3, 1e-2) == 0);
    return 0;
}

// batchnorm_train: in (N, C, H, W), gamma and beta (C) -> out, through the batch statistics,
// so the finite differences see how every input moves the mean and variance too.
enum { BN_N = 2, BN_C = 3, BN_H = 4, BN_W = 5, BN_SIZE = BN_N * BN_C * BN_H * BN_W };

typedef struct {
    test_loss loss;
    tmix_tensor in, gamma, beta, out, save_mean, save_invstd, r, din, dgamma, dbeta;
    float x[BN_SIZE], g[BN_C], b[BN_C], y[BN_SIZE], sm[BN_C], si[BN_C], rr[BN_SIZE];
    float dx[BN_SIZE], dg[BN_C], db[BN_C];
} bn_train_problem;

static bn_train_problem bnt;
static const tmix_batchnorm_train_params bn_params = {.eps = 1e-5f, .momentum = 0.1f};

static int bn_train_forward(test_loss *self)
{
    bn_train_problem *u = (bn_train_problem *)self;
    return tmix_batchnorm_train_forward(cpu(), &u->out, &u->save_mean, &u->save_invstd, NULL,
                                        NULL, &u->in, &u->gamma, &u->beta, bn_params);
}

// Random inputs, one forward, then all three gradients of L = <out, r> from the backward.
static int bn_train_setup(void)
{
    bn_train_problem *u = &bnt;
    memset(u, 0, sizeof *u);
    u->in = V4(u->x, BN_N, BN_C, BN_H, BN_W);
    u->out = V4(u->y, BN_N, BN_C, BN_H, BN_W);
    u->r = V4(u->rr, BN_N, BN_C, BN_H, BN_W);
    u->din = V4(u->dx, BN_N, BN_C, BN_H, BN_W);
    u->gamma = V1(u->g, BN_C);
    u->beta = V1(u->b, BN_C);
    u->save_mean = V1(u->sm, BN_C);
    u->save_invstd = V1(u->si, BN_C);
    u->dgamma = V1(u->dg, BN_C);
    u->dbeta = V1(u->db, BN_C);
    fill_uniform(u->x, BN_SIZE, 450, -2, 2);
    fill_uniform(u->g, BN_C, 451, 0.5f, 2);
    fill_uniform(u->b, BN_C, 452, -1, 1);
    fill_uniform(u->rr, BN_SIZE, 453, -1, 1);
    u->loss = (test_loss){bn_train_forward, u->y, u->rr, BN_SIZE, false};
    CHECK_OK(bn_train_forward(&u->loss));
    CHECK_OK(tmix_batchnorm_train_backward(cpu(), &u->din, &u->dgamma, &u->dbeta, &u->r, &u->in,
                                           &u->gamma, &u->save_mean, &u->save_invstd));
    return 0;
}

// gradcheck of one of the three inputs x (n floats) against its analytic gradient.
static int bn_train_gradcheck(const char *what, float *x, int64_t n, const float *analytic)
{
    return gradcheck_loss(what, x, n, analytic, &bnt.loss, 1e-2, 1e-3, 1e-2);
}

static int test_gradcheck_batchnorm_train_grad_input(void)
{
    CHECK(bn_train_setup() == 0);
    CHECK(bn_train_gradcheck("batchnorm_train din", bnt.x, BN_SIZE, bnt.dx) == 0);
    return 0;
}

static int test_gradcheck_batchnorm_train_grad_gamma(void)
{
    CHECK(bn_train_setup() == 0);
    CHECK(bn_train_gradcheck("batchnorm_train dgamma", bnt.g, BN_C, bnt.dg) == 0);
    return 0;
}

static int test_gradcheck_batchnorm_train_grad_beta(void)
{
    CHECK(bn_train_setup() == 0);
    CHECK(bn_train_gradcheck("batchnorm_train dbeta", bnt.b, BN_C, bnt.db) == 0);
    return 0;
}

// The backward adds to its outputs (a second call doubles them, exactly: g + round(g) rounds
// to 2 round(g)) and skips a NULL one without changing the others.
static int test_batchnorm_train_accumulates(void)
{
    static float dx2[BN_SIZE], dg2[BN_C], db2[BN_C];
    CHECK(bn_train_setup() == 0);
    bn_train_problem *u = &bnt;
    memcpy(dx2, u->dx, sizeof dx2);
    memcpy(dg2, u->dg, sizeof dg2);
    memcpy(db2, u->db, sizeof db2);
    CHECK_OK(tmix_batchnorm_train_backward(cpu(), &u->din, &u->dgamma, &u->dbeta, &u->r, &u->in,
                                           &u->gamma, &u->save_mean, &u->save_invstd));
    for (int i = 0; i < BN_SIZE; i++)
        CHECK(u->dx[i] == 2 * dx2[i]);
    for (int c = 0; c < BN_C; c++)
        CHECK(u->dg[c] == 2 * dg2[c] && u->db[c] == 2 * db2[c]);

    memset(u->dx, 0, sizeof u->dx);
    memset(u->dg, 0, sizeof u->dg);
    CHECK_OK(tmix_batchnorm_train_backward(cpu(), &u->din, NULL, NULL, &u->r, &u->in, &u->gamma,
                                           &u->save_mean, &u->save_invstd));
    CHECK_OK(tmix_batchnorm_train_backward(cpu(), NULL, &u->dgamma, NULL, &u->r, &u->in,
                                           &u->gamma, &u->save_mean, &u->save_invstd));
    CHECK(memcmp(u->dx, dx2, sizeof dx2) == 0 && memcmp(u->dg, dg2, sizeof dg2) == 0);
    for (int c = 0; c < BN_C; c++)
        CHECK(u->db[c] == 2 * db2[c]); // untouched by both calls
    return 0;
}

static int relu_forward(test_loss *self)
{
    unary_problem *u = (unary_problem *)self;
    return tmix_relu_forward(cpu(), &u->out, &u->in);
}

static int test_gradcheck_relu_grad_input(void)
{
    memset(&un, 0, sizeof un);
    unary_setup(&un, V3(un.x, 3, 5, 7), V3(un.y, 3, 5, 7), 500);
    // |x| >= 0.1, far from the kink at 0 compared with the step h = 1e-2.
    fill_uniform(un.x, 105, 501, -1, 1);
    int positive = 0;
    for (int i = 0; i < 105; i++) {
        un.x[i] = un.x[i] < 0 ? un.x[i] - 0.1f : un.x[i] + 0.1f;
        positive += un.x[i] > 0;
    }
    CHECK(positive > 20 && positive < 85); // both sides of the kink are exercised
    un.loss.forward = relu_forward;
    CHECK_OK(relu_forward(&un.loss));
    CHECK_OK(tmix_relu_backward(cpu(), &un.din, &un.r, &un.out));
    CHECK(gradcheck_loss("relu din", un.x, 105, un.dx, &un.loss, 1e-2, 1e-3, 1e-2) == 0);
    return 0;
}

static int maxpool_forward(test_loss *self)
{
    unary_problem *u = (unary_problem *)self;
    return tmix_maxpool2d_forward(cpu(), &u->out, &u->in, u->pool);
}

static int test_gradcheck_maxpool2d_grad_input(void)
{
    static const struct {
        tmix_pool2d_params p;
        int64_t oh, ow;
    } cfgs[] = {
        {{.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1},
         4, 3},
        {{.kernel_h = 2, .kernel_w = 3, .stride_h = 1, .stride_w = 2, .pad_h = 1, .pad_w = 1},
         8, 3},
    };
    for (int k = 0; k < (int)COUNT(cfgs); k++) {
        memset(&un, 0, sizeof un);
        unary_setup(&un, V4(un.x, 2, 2, 7, 6), V4(un.y, 2, 2, cfgs[k].oh, cfgs[k].ow),
                    600 + (uint64_t)k);
        // Distinct values 0.01 apart in a shuffled order: a step of h = 1e-3 never changes
        // which element is a window's maximum.
        const int n = 2 * 2 * 7 * 6;
        float key[2 * 2 * 7 * 6];
        fill_uniform(key, n, 610 + (uint64_t)k, 0, 1);
        for (int i = 0; i < n; i++) {
            int rank = 0;
            for (int j = 0; j < n; j++)
                rank += key[j] < key[i] || (key[j] == key[i] && j < i);
            un.x[i] = 0.01f * (float)rank - 0.8f;
        }
        un.pool = cfgs[k].p;
        un.loss.forward = maxpool_forward;
        CHECK_OK(tmix_maxpool2d_backward(cpu(), &un.din, &un.r, &un.in, un.pool));
        CHECK(gradcheck_loss("maxpool2d din", un.x, n, un.dx, &un.loss, 1e-3, 1e-3, 1e-2) == 0);
    }
    return 0;
}

static int avgpool_forward(test_loss *self)
{
    unary_problem *u = (unary_problem *)self;
    return tmix_avgpool_forward(cpu(), &u->out, &u->in);
}

static int test_gradcheck_avgpool_grad_input(void)
{
    memset(&un, 0, sizeof un);
    unary_setup(&un, V4(un.x, 2, 3, 5, 4), V2(un.y, 2, 3), 700);
    fill_uniform(un.x, 120, 701, -1, 1);
    un.loss.forward = avgpool_forward;
    CHECK_OK(tmix_avgpool_backward(cpu(), &un.din, &un.r));
    CHECK(gradcheck_loss("avgpool din", un.x, 120, un.dx, &un.loss, 1e-2, 1e-4, 1e-2) == 0);
    return 0;
}

// linear: in (B, I), weight (O, I), bias (O) -> out (B, O).
typedef struct {
    test_loss loss;
    tmix_tensor in, weight, bias, out, r, din, dweight, dbias;
    float x[3 * 7], wt[5 * 7], b[5], y[3 * 5], rr[3 * 5], dx[3 * 7], dw[5 * 7], db[5];
} linear_problem;

static linear_problem lin;

static int linear_forward(test_loss *self)
{
    linear_problem *l = (linear_problem *)self;
    return tmix_linear_forward(cpu(), &l->out, &l->in, &l->weight, &l->bias);
}

static void linear_setup(linear_problem *l, uint64_t seed)
{
    memset(l, 0, sizeof *l);
    l->in = V2(l->x, 3, 7);
    l->din = V2(l->dx, 3, 7);
    l->weight = V2(l->wt, 5, 7);
    l->dweight = V2(l->dw, 5, 7);
    l->bias = V1(l->b, 5);
    l->dbias = V1(l->db, 5);
    l->out = V2(l->y, 3, 5);
    l->r = V2(l->rr, 3, 5);
    fill_uniform(l->x, 21, seed, -1, 1);
    fill_uniform(l->wt, 35, seed + 1, -0.5f, 0.5f);
    fill_uniform(l->b, 5, seed + 2, -0.5f, 0.5f);
    fill_uniform(l->rr, 15, seed + 3, -1, 1);
    l->loss = (test_loss){linear_forward, l->y, l->rr, 15, false};
}

static int test_gradcheck_linear_grad_input(void)
{
    linear_setup(&lin, 800);
    CHECK_OK(tmix_linear_backward_input(cpu(), &lin.din, &lin.r, &lin.weight));
    CHECK(gradcheck_loss("linear din", lin.x, 21, lin.dx, &lin.loss, 1e-2, 1e-3, 1e-2) == 0);
    return 0;
}

static int test_gradcheck_linear_grad_weight(void)
{
    linear_setup(&lin, 810);
    CHECK_OK(tmix_linear_backward_weight(cpu(), &lin.dweight, &lin.r, &lin.in));
    CHECK(gradcheck_loss("linear dweight", lin.wt, 35, lin.dw, &lin.loss, 1e-2, 1e-3, 1e-2) == 0);
    return 0;
}

static int test_gradcheck_linear_grad_bias(void)
{
    linear_setup(&lin, 820);
    CHECK_OK(tmix_bias_backward(cpu(), &lin.dbias, &lin.r));
    CHECK(gradcheck_loss("linear dbias", lin.b, 5, lin.db, &lin.loss, 1e-2, 1e-3, 1e-2) == 0);
    return 0;
}

// ---- bad input ---------------------------------------------------------------------------

static int test_badinput_conv2d(void)
{
    static float x[2 * 3 * 6 * 5], w[4 * 3 * 3 * 3], b[4], y[2 * 4 * 4 * 3], dy[2 * 4 * 4 * 3];
    static float dx[2 * 3 * 6 * 5], dw[4 * 3 * 3 * 3], db[4];
    tmix_backend *be = cpu();
    const tmix_conv2d_params p = {.stride_h = 1, .stride_w = 1, .dilation_h = 1,
                                  .dilation_w = 1};
    tmix_tensor in = V4(x, 2, 3, 6, 5), wt = V4(w, 4, 3, 3, 3), bias = V1(b, 4);
    tmix_tensor out = V4(y, 2, 4, 4, 3), dout = V4(dy, 2, 4, 4, 3);
    tmix_tensor din = V4(dx, 2, 3, 6, 5), dwt = V4(dw, 4, 3, 3, 3), dbias = V1(db, 4);
    fill_uniform(x, COUNT(x), 1, -1, 1);
    fill_uniform(w, COUNT(w), 2, -1, 1);
    fill_uniform(dy, COUNT(dy), 3, -1, 1);
    // The valid calls succeed, so each failure below is due to its one defect.
    CHECK_OK(tmix_conv2d_forward(be, &out, &in, &wt, &bias, p));
    CHECK_OK(tmix_conv2d_forward(be, &out, &in, &wt, NULL, p));
    CHECK_OK(tmix_conv2d_backward_input(be, &din, &dout, &wt, p));
    CHECK_OK(tmix_conv2d_backward_weight(be, &dwt, &dout, &in, p));
    CHECK_OK(tmix_bias_backward(be, &dbias, &dout));

    const test_buf y_out[] = {{y, COUNT(y)}}, dx_out[] = {{dx, COUNT(dx)}};
    const test_buf dw_out[] = {{dw, COUNT(dw)}}, db_out[] = {{db, COUNT(db)}};
    const char *op = "conv2d_forward";
    tmix_tensor in3 = V3(x, 3, 6, 5), wt_c2 = V4(w, 4, 2, 3, 3), out_w4 = V4(y, 2, 4, 4, 4);
    tmix_tensor out_oc5 = V4(y, 2, 5, 4, 3), bias5 = V1(b, 5), bias2d = V2(b, 1, 4);
    tmix_tensor in_u8 = as_u8(in), wt_u8 = as_u8(wt), out_u8 = as_u8(out);
    tmix_tensor bias_u8 = as_u8(bias), in_gpu = on_cuda(in), wt_gpu = on_cuda(wt);
    tmix_tensor out_gpu = on_cuda(out), bias_gpu = on_cuda(bias);
    tmix_tensor in_empty = in;
    in_empty.data = NULL;
    tmix_conv2d_params stride0 = p, pad_neg = p, dil0 = p, dil3 = p;
    stride0.stride_w = 0;
    pad_neg.pad_h = -1;
    dil0.dilation_h = 0;
    dil3.dilation_h = 3; // a 7-row kernel on a 6-row image
    EXPECT_FAIL(tmix_conv2d_forward(NULL, &out, &in, &wt, &bias, p), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(empty_backend(), &out, &in, &wt, &bias, p), TMIX_ENOTSUP, op,
                y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, NULL, &in, &wt, &bias, p), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, NULL, &wt, &bias, p), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, NULL, &bias, p), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in_empty, &wt, &bias, p), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in3, &wt, &bias, p), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, &wt_c2, &bias, p), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out_w4, &in, &wt, &bias, p), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out_oc5, &in, &wt, &bias, p), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, &wt, &bias5, p), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, &wt, &bias2d, p), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in_u8, &wt, &bias, p), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, &wt_u8, &bias, p), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out_u8, &in, &wt, &bias, p), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, &wt, &bias_u8, p), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in_gpu, &wt, &bias, p), TMIX_EDEVICE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, &wt_gpu, &bias, p), TMIX_EDEVICE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out_gpu, &in, &wt, &bias, p), TMIX_EDEVICE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, &wt, &bias_gpu, p), TMIX_EDEVICE, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, &wt, &bias, stride0), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, &wt, &bias, pad_neg), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, &wt, &bias, dil0), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_conv2d_forward(be, &out, &in, &wt, &bias, dil3), TMIX_ESHAPE, op, y_out);

    op = "conv2d_backward_input";
    tmix_tensor dout_h3 = V4(dy, 2, 4, 3, 3), dout_n1 = V4(dy, 1, 4, 4, 3);
    tmix_tensor din3 = V3(dx, 3, 6, 5), din_u8 = as_u8(din), dout_gpu = on_cuda(dout);
    EXPECT_FAIL(tmix_conv2d_backward_input(NULL, &din, &dout, &wt, p), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(empty_backend(), &din, &dout, &wt, p), TMIX_ENOTSUP, op,
                dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(be, NULL, &dout, &wt, p), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(be, &din, NULL, &wt, p), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(be, &din, &dout, NULL, p), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(be, &din3, &dout, &wt, p), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(be, &din, &dout_h3, &wt, p), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(be, &din, &dout_n1, &wt, p), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(be, &din, &dout, &wt_c2, p), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(be, &din_u8, &dout, &wt, p), TMIX_EDTYPE, op, dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(be, &din, &dout_gpu, &wt, p), TMIX_EDEVICE, op, dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(be, &din, &dout, &wt, stride0), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_conv2d_backward_input(be, &din, &dout, &wt, dil3), TMIX_ESHAPE, op, dx_out);

    op = "conv2d_backward_weight";
    tmix_tensor dwt_c2 = V4(dw, 4, 2, 3, 3), dwt_oc3 = V4(dw, 3, 3, 3, 3);
    tmix_tensor dwt_u8 = as_u8(dwt), dwt_gpu = on_cuda(dwt), dout_u8 = as_u8(dout);
    EXPECT_FAIL(tmix_conv2d_backward_weight(NULL, &dwt, &dout, &in, p), TMIX_EINVAL, op, dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(empty_backend(), &dwt, &dout, &in, p), TMIX_ENOTSUP, op,
                dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(be, NULL, &dout, &in, p), TMIX_EINVAL, op, dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(be, &dwt, NULL, &in, p), TMIX_EINVAL, op, dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(be, &dwt, &dout, NULL, p), TMIX_EINVAL, op, dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(be, &dwt_c2, &dout, &in, p), TMIX_ESHAPE, op, dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(be, &dwt_oc3, &dout, &in, p), TMIX_ESHAPE, op, dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(be, &dwt, &dout_h3, &in, p), TMIX_ESHAPE, op, dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(be, &dwt, &dout, &in3, p), TMIX_ESHAPE, op, dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(be, &dwt_u8, &dout, &in, p), TMIX_EDTYPE, op, dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(be, &dwt, &dout_u8, &in, p), TMIX_EDTYPE, op, dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(be, &dwt_gpu, &dout, &in, p), TMIX_EDEVICE, op, dw_out);
    EXPECT_FAIL(tmix_conv2d_backward_weight(be, &dwt, &dout, &in, pad_neg), TMIX_EINVAL, op,
                dw_out);

    op = "bias_backward";
    tmix_tensor dout3 = V3(dy, 2, 4, 12), dbias5 = V1(db, 5), dbias_u8 = as_u8(dbias);
    tmix_tensor dbias_gpu = on_cuda(dbias), dbias2d = V2(db, 1, 4);
    EXPECT_FAIL(tmix_bias_backward(NULL, &dbias, &dout), TMIX_EINVAL, op, db_out);
    EXPECT_FAIL(tmix_bias_backward(empty_backend(), &dbias, &dout), TMIX_ENOTSUP, op, db_out);
    EXPECT_FAIL(tmix_bias_backward(be, NULL, &dout), TMIX_EINVAL, op, db_out);
    EXPECT_FAIL(tmix_bias_backward(be, &dbias, NULL), TMIX_EINVAL, op, db_out);
    EXPECT_FAIL(tmix_bias_backward(be, &dbias, &dout3), TMIX_ESHAPE, op, db_out);
    EXPECT_FAIL(tmix_bias_backward(be, &dbias5, &dout), TMIX_ESHAPE, op, db_out);
    EXPECT_FAIL(tmix_bias_backward(be, &dbias2d, &dout), TMIX_ESHAPE, op, db_out);
    EXPECT_FAIL(tmix_bias_backward(be, &dbias_u8, &dout), TMIX_EDTYPE, op, db_out);
    EXPECT_FAIL(tmix_bias_backward(be, &dbias, &dout_u8), TMIX_EDTYPE, op, db_out);
    EXPECT_FAIL(tmix_bias_backward(be, &dbias_gpu, &dout), TMIX_EDEVICE, op, db_out);
    EXPECT_FAIL(tmix_bias_backward(be, &dbias, &dout_gpu), TMIX_EDEVICE, op, db_out);
    return 0;
}

static int test_badinput_batchnorm(void)
{
    static float x[2 * 3 * 4 * 5], y[2 * 3 * 4 * 5], s[4], t[4], dx[2 * 3 * 4 * 5];
    tmix_backend *be = cpu();
    tmix_tensor in = V4(x, 2, 3, 4, 5), out = V4(y, 2, 3, 4, 5), scale = V1(s, 3);
    tmix_tensor shift = V1(t, 3), din = V4(dx, 2, 3, 4, 5), dout = in;
    fill_uniform(x, COUNT(x), 1, -1, 1);
    fill_uniform(s, 4, 2, -1, 1);
    fill_uniform(t, 4, 3, -1, 1);
    CHECK_OK(tmix_batchnorm_forward(be, &out, &in, &scale, &shift));
    CHECK_OK(tmix_batchnorm_backward_input(be, &din, &dout, &scale));

    const test_buf y_out[] = {{y, COUNT(y)}}, dx_out[] = {{dx, COUNT(dx)}};
    const char *op = "batchnorm_forward";
    tmix_tensor in3 = V3(x, 6, 4, 5), out_c4 = V4(y, 2, 4, 4, 5), out3 = V3(y, 6, 4, 5);
    tmix_tensor scale4 = V1(s, 4), shift4 = V1(t, 4), scale2d = V2(s, 1, 3);
    tmix_tensor in_u8 = as_u8(in), shift_u8 = as_u8(shift), out_gpu = on_cuda(out);
    tmix_tensor scale_gpu = on_cuda(scale);
    EXPECT_FAIL(tmix_batchnorm_forward(NULL, &out, &in, &scale, &shift), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(empty_backend(), &out, &in, &scale, &shift), TMIX_ENOTSUP,
                op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, NULL, &in, &scale, &shift), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out, NULL, &scale, &shift), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out, &in, NULL, &shift), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out, &in, &scale, NULL), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out, &in3, &scale, &shift), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out3, &in, &scale, &shift), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out_c4, &in, &scale, &shift), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out, &in, &scale4, &shift), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out, &in, &scale, &shift4), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out, &in, &scale2d, &shift), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out, &in_u8, &scale, &shift), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out, &in, &scale, &shift_u8), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out_gpu, &in, &scale, &shift), TMIX_EDEVICE, op, y_out);
    EXPECT_FAIL(tmix_batchnorm_forward(be, &out, &in, &scale_gpu, &shift), TMIX_EDEVICE, op, y_out);

    op = "batchnorm_backward_input";
    tmix_tensor din_c4 = V4(dx, 2, 4, 4, 5), dout3 = in3, din_u8 = as_u8(din);
    tmix_tensor dout_gpu = on_cuda(dout);
    EXPECT_FAIL(tmix_batchnorm_backward_input(NULL, &din, &dout, &scale), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_batchnorm_backward_input(empty_backend(), &din, &dout, &scale), TMIX_ENOTSUP,
                op, dx_out);
    EXPECT_FAIL(tmix_batchnorm_backward_input(be, NULL, &dout, &scale), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_batchnorm_backward_input(be, &din, NULL, &scale), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_batchnorm_backward_input(be, &din, &dout, NULL), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_batchnorm_backward_input(be, &din, &dout3, &scale), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_batchnorm_backward_input(be, &din_c4, &dout, &scale), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_batchnorm_backward_input(be, &din, &dout, &scale4), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_batchnorm_backward_input(be, &din_u8, &dout, &scale), TMIX_EDTYPE, op, dx_out);
    EXPECT_FAIL(tmix_batchnorm_backward_input(be, &din, &dout_gpu, &scale), TMIX_EDEVICE, op,
                dx_out);
    return 0;
}

static int test_badinput_batchnorm_train(void)
{
    static float x[BN_SIZE], y[BN_SIZE], g[4], b[4], sm[4], si[4], rm[4], rv[4];
    static float dx[BN_SIZE], dg[4], db[4];
    tmix_backend *be = cpu();
    tmix_tensor in = V4(x, BN_N, BN_C, BN_H, BN_W), out = V4(y, BN_N, BN_C, BN_H, BN_W);
    tmix_tensor gamma = V1(g, BN_C), beta = V1(b, BN_C), mean = V1(sm, BN_C);
    tmix_tensor invstd = V1(si, BN_C), run_mean = V1(rm, BN_C), run_var = V1(rv, BN_C);
    tmix_tensor din = V4(dx, BN_N, BN_C, BN_H, BN_W), dgamma = V1(dg, BN_C), dbeta = V1(db, BN_C);
    tmix_tensor dout = out;
    tmix_batchnorm_train_params p = bn_params;
    fill_uniform(x, BN_SIZE, 1, -1, 1);
    fill_uniform(g, 4, 2, 0.5f, 2);
    fill_uniform(b, 4, 3, -1, 1);
    fill_const(rv, 4, 1);
    // The bounds themselves are valid: momentum 0 and 1, and no running statistics.
    for (p.momentum = 0; p.momentum <= 1; p.momentum++)
        CHECK_OK(tmix_batchnorm_train_forward(be, &out, &mean, &invstd, &run_mean, &run_var, &in,
                                              &gamma, &beta, p));
    CHECK_OK(tmix_batchnorm_train_forward(be, &out, &mean, &invstd, NULL, NULL, &in, &gamma,
                                          &beta, bn_params));
    CHECK_OK(tmix_batchnorm_train_backward(be, &din, &dgamma, &dbeta, &dout, &in, &gamma, &mean,
                                           &invstd));
    CHECK_OK(tmix_batchnorm_train_backward(be, NULL, NULL, NULL, &dout, &in, &gamma, &mean,
                                           &invstd));

    const test_buf fwd_out[] = {{y, BN_SIZE}, {sm, 4}, {si, 4}, {rm, 4}, {rv, 4}};
    const char *op = "batchnorm_train_forward";
    tmix_tensor in3 = V3(x, BN_N * BN_C, BN_H, BN_W), out_c4 = V4(y, BN_N, 4, BN_H, BN_W);
    tmix_tensor c4 = V1(sm, 4), c2d = V2(si, 1, BN_C), in_u8 = as_u8(in), gamma_u8 = as_u8(gamma);
    tmix_tensor var_u8 = as_u8(run_var), out_gpu = on_cuda(out), invstd_gpu = on_cuda(invstd);
    tmix_tensor in1 = V4(x, 1, BN_C, 1, 1), out1 = V4(y, 1, BN_C, 1, 1);
#define FWD(be_, out_, mean_, invstd_, rmean_, rvar_, in_, gamma_, beta_, p_, code)             \
    EXPECT_FAIL(tmix_batchnorm_train_forward(be_, out_, mean_, invstd_, rmean_, rvar_, in_,     \
                                             gamma_, beta_, p_),                                \
                code, op, fwd_out)
    FWD(NULL, &out, &mean, &invstd, &run_mean, &run_var, &in, &gamma, &beta, p, TMIX_EINVAL);
    FWD(empty_backend(), &out, &mean, &invstd, &run_mean, &run_var, &in, &gamma, &beta, p,
        TMIX_ENOTSUP);
    FWD(be, NULL, &mean, &invstd, &run_mean, &run_var, &in, &gamma, &beta, p, TMIX_EINVAL);
    FWD(be, &out, NULL, &invstd, &run_mean, &run_var, &in, &gamma, &beta, p, TMIX_EINVAL);
    FWD(be, &out, &mean, NULL, &run_mean, &run_var, &in, &gamma, &beta, p, TMIX_EINVAL);
    FWD(be, &out, &mean, &invstd, &run_mean, &run_var, NULL, &gamma, &beta, p, TMIX_EINVAL);
    FWD(be, &out, &mean, &invstd, &run_mean, &run_var, &in, NULL, &beta, p, TMIX_EINVAL);
    FWD(be, &out, &mean, &invstd, &run_mean, &run_var, &in, &gamma, NULL, p, TMIX_EINVAL);
    FWD(be, &out, &mean, &invstd, &run_mean, &run_var, &in3, &gamma, &beta, p, TMIX_ESHAPE);
    FWD(be, &out_c4, &mean, &invstd, &run_mean, &run_var, &in, &gamma, &beta, p, TMIX_ESHAPE);
    FWD(be, &out, &c4, &invstd, &run_mean, &run_var, &in, &gamma, &beta, p, TMIX_ESHAPE);
    FWD(be, &out, &mean, &c2d, &run_mean, &run_var, &in, &gamma, &beta, p, TMIX_ESHAPE);
    FWD(be, &out, &mean, &invstd, &c4, &run_var, &in, &gamma, &beta, p, TMIX_ESHAPE);
    FWD(be, &out, &mean, &invstd, &run_mean, &c4, &in, &gamma, &beta, p, TMIX_ESHAPE);
    FWD(be, &out, &mean, &invstd, &run_mean, &run_var, &in, &c4, &beta, p, TMIX_ESHAPE);
    FWD(be, &out, &mean, &invstd, &run_mean, &run_var, &in, &gamma, &c4, p, TMIX_ESHAPE);
    FWD(be, &out1, &mean, &invstd, &run_mean, &run_var, &in1, &gamma, &beta, p, TMIX_ESHAPE);
    FWD(be, &out, &mean, &invstd, &run_mean, &run_var, &in_u8, &gamma, &beta, p, TMIX_EDTYPE);
    FWD(be, &out, &mean, &invstd, &run_mean, &run_var, &in, &gamma_u8, &beta, p, TMIX_EDTYPE);
    FWD(be, &out, &mean, &invstd, &run_mean, &var_u8, &in, &gamma, &beta, p, TMIX_EDTYPE);
    FWD(be, &out_gpu, &mean, &invstd, &run_mean, &run_var, &in, &gamma, &beta, p, TMIX_EDEVICE);
    FWD(be, &out, &mean, &invstd_gpu, &run_mean, &run_var, &in, &gamma, &beta, p, TMIX_EDEVICE);
    static const float bad_eps[] = {0, -1e-5f, NAN, INFINITY};
    for (int k = 0; k < (int)COUNT(bad_eps); k++) {
        p = (tmix_batchnorm_train_params){.eps = bad_eps[k], .momentum = 0.1f};
        FWD(be, &out, &mean, &invstd, &run_mean, &run_var, &in, &gamma, &beta, p, TMIX_EINVAL);
        CHECK(strstr(tmix_last_error(), "eps") != NULL);
    }
    static const float bad_momentum[] = {-0.1f, 1.5f, NAN, INFINITY};
    for (int k = 0; k < (int)COUNT(bad_momentum); k++) {
        p = (tmix_batchnorm_train_params){.eps = 1e-5f, .momentum = bad_momentum[k]};
        FWD(be, &out, &mean, &invstd, &run_mean, &run_var, &in, &gamma, &beta, p, TMIX_EINVAL);
        CHECK(strstr(tmix_last_error(), "momentum") != NULL);
    }
#undef FWD

    const test_buf bwd_out[] = {{dx, BN_SIZE}, {dg, 4}, {db, 4}};
    op = "batchnorm_train_backward";
    tmix_tensor din_c4 = V4(dx, BN_N, 4, BN_H, BN_W), dout3 = in3, din_u8 = as_u8(din);
    tmix_tensor in_c4 = V4(x, BN_N, 4, BN_H, BN_W), dg4 = V1(dg, 4), db2d = V2(db, 1, BN_C);
    tmix_tensor invstd_u8 = as_u8(invstd), dgamma_gpu = on_cuda(dgamma), in_gpu = on_cuda(in);
#define BWD(be_, din_, dgamma_, dbeta_, dout_, in_, gamma_, mean_, invstd_, code)                \
    EXPECT_FAIL(tmix_batchnorm_train_backward(be_, din_, dgamma_, dbeta_, dout_, in_, gamma_,   \
                                              mean_, invstd_),                                  \
                code, op, bwd_out)
    BWD(NULL, &din, &dgamma, &dbeta, &dout, &in, &gamma, &mean, &invstd, TMIX_EINVAL);
    BWD(empty_backend(), &din, &dgamma, &dbeta, &dout, &in, &gamma, &mean, &invstd,
        TMIX_ENOTSUP);
    BWD(be, &din, &dgamma, &dbeta, NULL, &in, &gamma, &mean, &invstd, TMIX_EINVAL);
    BWD(be, &din, &dgamma, &dbeta, &dout, NULL, &gamma, &mean, &invstd, TMIX_EINVAL);
    BWD(be, &din, &dgamma, &dbeta, &dout, &in, NULL, &mean, &invstd, TMIX_EINVAL);
    BWD(be, &din, &dgamma, &dbeta, &dout, &in, &gamma, NULL, &invstd, TMIX_EINVAL);
    BWD(be, &din, &dgamma, &dbeta, &dout, &in, &gamma, &mean, NULL, TMIX_EINVAL);
    BWD(be, &din, &dgamma, &dbeta, &dout3, &in, &gamma, &mean, &invstd, TMIX_ESHAPE);
    BWD(be, &din_c4, &dgamma, &dbeta, &dout, &in, &gamma, &mean, &invstd, TMIX_ESHAPE);
    BWD(be, &din, &dg4, &dbeta, &dout, &in, &gamma, &mean, &invstd, TMIX_ESHAPE);
    BWD(be, &din, &dgamma, &db2d, &dout, &in, &gamma, &mean, &invstd, TMIX_ESHAPE);
    BWD(be, &din, &dgamma, &dbeta, &dout, &in_c4, &gamma, &mean, &invstd, TMIX_ESHAPE);
    BWD(be, &din, &dgamma, &dbeta, &dout, &in, &c4, &mean, &invstd, TMIX_ESHAPE);
    BWD(be, &din, &dgamma, &dbeta, &dout, &in, &gamma, &c4, &invstd, TMIX_ESHAPE);
    BWD(be, &din, &dgamma, &dbeta, &dout, &in, &gamma, &mean, &c2d, TMIX_ESHAPE);
    BWD(be, &din_u8, &dgamma, &dbeta, &dout, &in, &gamma, &mean, &invstd, TMIX_EDTYPE);
    BWD(be, &din, &dgamma, &dbeta, &dout, &in, &gamma, &mean, &invstd_u8, TMIX_EDTYPE);
    BWD(be, &din, &dgamma_gpu, &dbeta, &dout, &in, &gamma, &mean, &invstd, TMIX_EDEVICE);
    BWD(be, &din, &dgamma, &dbeta, &dout, &in_gpu, &gamma, &mean, &invstd, TMIX_EDEVICE);
#undef BWD
    return 0;
}

static int test_badinput_relu(void)
{
    static float x[60], y[60], dy[60], dx[60];
    tmix_backend *be = cpu();
    tmix_tensor in = V3(x, 3, 4, 5), out = V3(y, 3, 4, 5), dout = V3(dy, 3, 4, 5);
    tmix_tensor din = V3(dx, 3, 4, 5);
    fill_uniform(x, 60, 1, -1, 1);
    fill_uniform(dy, 60, 2, -1, 1);
    CHECK_OK(tmix_relu_forward(be, &out, &in));
    CHECK_OK(tmix_relu_backward(be, &din, &dout, &out));

    const test_buf y_out[] = {{y, COUNT(y)}}, dx_out[] = {{dx, COUNT(dx)}};
    const char *op = "relu_forward";
    tmix_tensor out_flat = V1(y, 60), out_w4 = V3(y, 3, 5, 4), in0 = in;
    in0.ndim = 0;
    tmix_tensor in5 = in;
    in5.ndim = 5;
    tmix_tensor in_zero = V3(x, 3, 0, 5), in_u8 = as_u8(in), out_u8 = as_u8(out);
    tmix_tensor in_gpu = on_cuda(in), out_gpu = on_cuda(out);
    EXPECT_FAIL(tmix_relu_forward(NULL, &out, &in), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(empty_backend(), &out, &in), TMIX_ENOTSUP, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(be, NULL, &in), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(be, &out, NULL), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(be, &out_flat, &in), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(be, &out_w4, &in), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(be, &out, &in0), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(be, &out, &in5), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(be, &out, &in_zero), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(be, &out, &in_u8), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(be, &out_u8, &in), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(be, &out, &in_gpu), TMIX_EDEVICE, op, y_out);
    EXPECT_FAIL(tmix_relu_forward(be, &out_gpu, &in), TMIX_EDEVICE, op, y_out);

    op = "relu_backward";
    tmix_tensor dout_w4 = V3(dy, 3, 5, 4), din_flat = V1(dx, 60), din_u8 = as_u8(din);
    tmix_tensor dout_gpu = on_cuda(dout), out_u8b = as_u8(out);
    EXPECT_FAIL(tmix_relu_backward(NULL, &din, &dout, &out), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_relu_backward(empty_backend(), &din, &dout, &out), TMIX_ENOTSUP, op, dx_out);
    EXPECT_FAIL(tmix_relu_backward(be, NULL, &dout, &out), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_relu_backward(be, &din, NULL, &out), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_relu_backward(be, &din, &dout, NULL), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_relu_backward(be, &din, &dout_w4, &out), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_relu_backward(be, &din_flat, &dout, &out), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_relu_backward(be, &din_u8, &dout, &out), TMIX_EDTYPE, op, dx_out);
    EXPECT_FAIL(tmix_relu_backward(be, &din, &dout, &out_u8b), TMIX_EDTYPE, op, dx_out);
    EXPECT_FAIL(tmix_relu_backward(be, &din, &dout_gpu, &out), TMIX_EDEVICE, op, dx_out);
    return 0;
}

static int test_badinput_maxpool2d(void)
{
    static float x[2 * 3 * 7 * 6], y[2 * 3 * 4 * 3], dy[2 * 3 * 4 * 3], dx[2 * 3 * 7 * 6];
    tmix_backend *be = cpu();
    const tmix_pool2d_params p = {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2,
                                  .pad_h = 1, .pad_w = 1};
    tmix_tensor in = V4(x, 2, 3, 7, 6), out = V4(y, 2, 3, 4, 3), dout = V4(dy, 2, 3, 4, 3);
    tmix_tensor din = V4(dx, 2, 3, 7, 6);
    fill_uniform(x, COUNT(x), 1, -1, 1);
    fill_uniform(dy, COUNT(dy), 2, -1, 1);
    CHECK_OK(tmix_maxpool2d_forward(be, &out, &in, p));
    CHECK_OK(tmix_maxpool2d_backward(be, &din, &dout, &in, p));

    tmix_pool2d_params k0 = p, s0 = p, pad_big = p, pad_neg = p, k_huge = p;
    k0.kernel_w = 0;
    s0.stride_h = 0;
    pad_big.pad_h = 2; // more than half of the 3-row kernel
    pad_neg.pad_w = -1;
    k_huge.kernel_h = 8; // taller than the 7-row image, with no padding
    k_huge.pad_h = 0;
    const test_buf y_out[] = {{y, COUNT(y)}}, dx_out[] = {{dx, COUNT(dx)}};
    const char *op = "maxpool2d_forward";
    tmix_tensor in3 = V3(x, 6, 7, 6), out_w4 = V4(y, 2, 3, 4, 4), out_c2 = V4(y, 2, 2, 4, 3);
    tmix_tensor in_u8 = as_u8(in), out_u8 = as_u8(out), in_gpu = on_cuda(in);
    tmix_tensor out_gpu = on_cuda(out);
    EXPECT_FAIL(tmix_maxpool2d_forward(NULL, &out, &in, p), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(empty_backend(), &out, &in, p), TMIX_ENOTSUP, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, NULL, &in, p), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out, NULL, p), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out, &in3, p), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out_w4, &in, p), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out_c2, &in, p), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out, &in_u8, p), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out_u8, &in, p), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out, &in_gpu, p), TMIX_EDEVICE, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out_gpu, &in, p), TMIX_EDEVICE, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out, &in, k0), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out, &in, s0), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out, &in, pad_big), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out, &in, pad_neg), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_maxpool2d_forward(be, &out, &in, k_huge), TMIX_ESHAPE, op, y_out);

    op = "maxpool2d_backward";
    tmix_tensor din_h6 = V4(dx, 2, 3, 6, 6), dout_w4 = V4(dy, 2, 3, 4, 4);
    tmix_tensor din_u8 = as_u8(din), dout_gpu = on_cuda(dout);
    EXPECT_FAIL(tmix_maxpool2d_backward(NULL, &din, &dout, &in, p), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_maxpool2d_backward(empty_backend(), &din, &dout, &in, p), TMIX_ENOTSUP, op,
                dx_out);
    EXPECT_FAIL(tmix_maxpool2d_backward(be, NULL, &dout, &in, p), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_maxpool2d_backward(be, &din, NULL, &in, p), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_maxpool2d_backward(be, &din, &dout, NULL, p), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_maxpool2d_backward(be, &din_h6, &dout, &in, p), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_maxpool2d_backward(be, &din, &dout_w4, &in, p), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_maxpool2d_backward(be, &din, &dout, &in3, p), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_maxpool2d_backward(be, &din_u8, &dout, &in, p), TMIX_EDTYPE, op, dx_out);
    EXPECT_FAIL(tmix_maxpool2d_backward(be, &din, &dout_gpu, &in, p), TMIX_EDEVICE, op, dx_out);
    EXPECT_FAIL(tmix_maxpool2d_backward(be, &din, &dout, &in, pad_big), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_maxpool2d_backward(be, &din, &dout, &in, s0), TMIX_EINVAL, op, dx_out);
    return 0;
}

static int test_badinput_avgpool(void)
{
    static float x[2 * 3 * 5 * 4], y[2 * 3], dx[2 * 3 * 5 * 4];
    tmix_backend *be = cpu();
    tmix_tensor in = V4(x, 2, 3, 5, 4), out = V2(y, 2, 3), din = V4(dx, 2, 3, 5, 4);
    fill_uniform(x, COUNT(x), 1, -1, 1);
    CHECK_OK(tmix_avgpool_forward(be, &out, &in));
    tmix_tensor dout = out;
    CHECK_OK(tmix_avgpool_backward(be, &din, &dout));

    const test_buf y_out[] = {{y, COUNT(y)}}, dx_out[] = {{dx, COUNT(dx)}};
    const char *op = "avgpool_forward";
    tmix_tensor in2 = V2(x, 6, 20), out_c4 = V2(y, 2, 4), out_n1 = V2(y, 1, 3);
    tmix_tensor out4 = V4(y, 2, 3, 1, 1), in_u8 = as_u8(in), out_u8 = as_u8(out);
    tmix_tensor in_gpu = on_cuda(in), out_gpu = on_cuda(out);
    EXPECT_FAIL(tmix_avgpool_forward(NULL, &out, &in), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_avgpool_forward(empty_backend(), &out, &in), TMIX_ENOTSUP, op, y_out);
    EXPECT_FAIL(tmix_avgpool_forward(be, NULL, &in), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_avgpool_forward(be, &out, NULL), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_avgpool_forward(be, &out, &in2), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_avgpool_forward(be, &out_c4, &in), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_avgpool_forward(be, &out_n1, &in), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_avgpool_forward(be, &out4, &in), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_avgpool_forward(be, &out, &in_u8), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_avgpool_forward(be, &out_u8, &in), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_avgpool_forward(be, &out, &in_gpu), TMIX_EDEVICE, op, y_out);
    EXPECT_FAIL(tmix_avgpool_forward(be, &out_gpu, &in), TMIX_EDEVICE, op, y_out);

    op = "avgpool_backward";
    tmix_tensor din2 = V2(dx, 6, 20), dout_c4 = out_c4, dout_u8 = as_u8(dout);
    tmix_tensor din_gpu = on_cuda(din);
    EXPECT_FAIL(tmix_avgpool_backward(NULL, &din, &dout), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_avgpool_backward(empty_backend(), &din, &dout), TMIX_ENOTSUP, op, dx_out);
    EXPECT_FAIL(tmix_avgpool_backward(be, NULL, &dout), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_avgpool_backward(be, &din, NULL), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_avgpool_backward(be, &din2, &dout), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_avgpool_backward(be, &din, &dout_c4), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_avgpool_backward(be, &din, &dout_u8), TMIX_EDTYPE, op, dx_out);
    EXPECT_FAIL(tmix_avgpool_backward(be, &din_gpu, &dout), TMIX_EDEVICE, op, dx_out);
    return 0;
}

static int test_badinput_linear(void)
{
    static float x[3 * 7], w[5 * 7], b[6], y[3 * 5], dy[3 * 5], dx[3 * 7], dw[5 * 7], db[6];
    tmix_backend *be = cpu();
    tmix_tensor in = V2(x, 3, 7), wt = V2(w, 5, 7), bias = V1(b, 5), out = V2(y, 3, 5);
    tmix_tensor dout = V2(dy, 3, 5), din = V2(dx, 3, 7), dwt = V2(dw, 5, 7);
    tmix_tensor dbias = V1(db, 5);
    fill_uniform(x, COUNT(x), 1, -1, 1);
    fill_uniform(w, COUNT(w), 2, -1, 1);
    fill_uniform(dy, COUNT(dy), 3, -1, 1);
    CHECK_OK(tmix_linear_forward(be, &out, &in, &wt, &bias));
    CHECK_OK(tmix_linear_forward(be, &out, &in, &wt, NULL));
    CHECK_OK(tmix_linear_backward_input(be, &din, &dout, &wt));
    CHECK_OK(tmix_linear_backward_weight(be, &dwt, &dout, &in));
    CHECK_OK(tmix_bias_backward(be, &dbias, &dout));

    const test_buf y_out[] = {{y, COUNT(y)}}, dx_out[] = {{dx, COUNT(dx)}};
    const test_buf dw_out[] = {{dw, COUNT(dw)}}, db_out[] = {{db, COUNT(db)}};
    const char *op = "linear_forward";
    tmix_tensor in3 = V3(x, 3, 7, 1), in_i6 = V2(x, 3, 6), wt_i6 = V2(w, 5, 6);
    tmix_tensor out_o4 = V2(y, 3, 4), out_b2 = V2(y, 2, 5), bias6 = V1(b, 6);
    tmix_tensor in_u8 = as_u8(in), wt_u8 = as_u8(wt), bias_u8 = as_u8(bias);
    tmix_tensor in_gpu = on_cuda(in), out_gpu = on_cuda(out), bias_gpu = on_cuda(bias);
    EXPECT_FAIL(tmix_linear_forward(NULL, &out, &in, &wt, &bias), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(empty_backend(), &out, &in, &wt, &bias), TMIX_ENOTSUP, op,
                y_out);
    EXPECT_FAIL(tmix_linear_forward(be, NULL, &in, &wt, &bias), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out, NULL, &wt, &bias), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out, &in, NULL, &bias), TMIX_EINVAL, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out, &in3, &wt, &bias), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out, &in_i6, &wt, &bias), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out, &in, &wt_i6, &bias), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out_o4, &in, &wt, &bias), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out_b2, &in, &wt, &bias), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out, &in, &wt, &bias6), TMIX_ESHAPE, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out, &in_u8, &wt, &bias), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out, &in, &wt_u8, &bias), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out, &in, &wt, &bias_u8), TMIX_EDTYPE, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out, &in_gpu, &wt, &bias), TMIX_EDEVICE, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out_gpu, &in, &wt, &bias), TMIX_EDEVICE, op, y_out);
    EXPECT_FAIL(tmix_linear_forward(be, &out, &in, &wt, &bias_gpu), TMIX_EDEVICE, op, y_out);

    op = "linear_backward_input";
    tmix_tensor din_i6 = V2(dx, 3, 6), dout_o4 = V2(dy, 3, 4), dout_b2 = V2(dy, 2, 5);
    tmix_tensor din3 = V3(dx, 3, 7, 1), din_u8 = as_u8(din), dout_gpu = on_cuda(dout);
    EXPECT_FAIL(tmix_linear_backward_input(NULL, &din, &dout, &wt), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_linear_backward_input(empty_backend(), &din, &dout, &wt), TMIX_ENOTSUP, op,
                dx_out);
    EXPECT_FAIL(tmix_linear_backward_input(be, NULL, &dout, &wt), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_linear_backward_input(be, &din, NULL, &wt), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_linear_backward_input(be, &din, &dout, NULL), TMIX_EINVAL, op, dx_out);
    EXPECT_FAIL(tmix_linear_backward_input(be, &din3, &dout, &wt), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_linear_backward_input(be, &din_i6, &dout, &wt), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_linear_backward_input(be, &din, &dout_o4, &wt), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_linear_backward_input(be, &din, &dout_b2, &wt), TMIX_ESHAPE, op, dx_out);
    EXPECT_FAIL(tmix_linear_backward_input(be, &din_u8, &dout, &wt), TMIX_EDTYPE, op, dx_out);
    EXPECT_FAIL(tmix_linear_backward_input(be, &din, &dout_gpu, &wt), TMIX_EDEVICE, op, dx_out);

    op = "linear_backward_weight";
    tmix_tensor dwt_i6 = V2(dw, 5, 6), dwt_o4 = V2(dw, 4, 7), dwt_u8 = as_u8(dwt);
    tmix_tensor dwt_gpu = on_cuda(dwt), dout_u8 = as_u8(dout);
    EXPECT_FAIL(tmix_linear_backward_weight(NULL, &dwt, &dout, &in), TMIX_EINVAL, op, dw_out);
    EXPECT_FAIL(tmix_linear_backward_weight(empty_backend(), &dwt, &dout, &in), TMIX_ENOTSUP, op,
                dw_out);
    EXPECT_FAIL(tmix_linear_backward_weight(be, NULL, &dout, &in), TMIX_EINVAL, op, dw_out);
    EXPECT_FAIL(tmix_linear_backward_weight(be, &dwt, NULL, &in), TMIX_EINVAL, op, dw_out);
    EXPECT_FAIL(tmix_linear_backward_weight(be, &dwt, &dout, NULL), TMIX_EINVAL, op, dw_out);
    EXPECT_FAIL(tmix_linear_backward_weight(be, &dwt_i6, &dout, &in), TMIX_ESHAPE, op, dw_out);
    EXPECT_FAIL(tmix_linear_backward_weight(be, &dwt_o4, &dout, &in), TMIX_ESHAPE, op, dw_out);
    EXPECT_FAIL(tmix_linear_backward_weight(be, &dwt, &dout_b2, &in), TMIX_ESHAPE, op, dw_out);
    EXPECT_FAIL(tmix_linear_backward_weight(be, &dwt, &dout, &in3), TMIX_ESHAPE, op, dw_out);
    EXPECT_FAIL(tmix_linear_backward_weight(be, &dwt_u8, &dout, &in), TMIX_EDTYPE, op, dw_out);
    EXPECT_FAIL(tmix_linear_backward_weight(be, &dwt, &dout_u8, &in), TMIX_EDTYPE, op, dw_out);
    EXPECT_FAIL(tmix_linear_backward_weight(be, &dwt_gpu, &dout, &in), TMIX_EDEVICE, op, dw_out);

    op = "bias_backward";
    tmix_tensor dbias6 = V1(db, 6), dout1 = V1(dy, 15);
    EXPECT_FAIL(tmix_bias_backward(be, &dbias6, &dout), TMIX_ESHAPE, op, db_out);
    EXPECT_FAIL(tmix_bias_backward(be, &dbias, &dout1), TMIX_ESHAPE, op, db_out);
    return 0;
}

// ---- conv2d against a direct sum -------------------------------------------------------------

// The CPU conv2d takes the batch in groups of samples side by side (their size picked from
// OH*OW) and sums dweight in chunks of groups. These configs give a partial last group and
// chunk (19 samples of 8x8: groups 8, 8, 3), one group of the whole batch, groups of one
// (24x24) written in place, rows and columns wholly in the padding, strides and dilations
// that differ per axis, and the pointwise path with two chunks.
static const conv_cfg group_cfgs[] = {
    {19, 3, 8, 8, 5, 3, 3, {.stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
                            .dilation_h = 1, .dilation_w = 1}},
    {19, 2, 9, 7, 3, 3, 2, {.stride_h = 2, .stride_w = 3, .pad_h = 2, .pad_w = 1,
                            .dilation_h = 2, .dilation_w = 1}},
    {3, 2, 24, 24, 4, 3, 3, {.stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
                             .dilation_h = 1, .dilation_w = 1}},
    {10, 2, 3, 4, 3, 2, 2, {.stride_h = 1, .stride_w = 1, .pad_h = 3, .pad_w = 2,
                            .dilation_h = 1, .dilation_w = 1}},
    {11, 4, 5, 6, 3, 1, 1, {.stride_h = 1, .stride_w = 1, .dilation_h = 1, .dilation_w = 1}},
};

enum { GMAX = 8192 };

// One config's tensors: inputs from fixed seeds; din and dweight start from nonzero values
// (the passes accumulate).
typedef struct {
    conv_cfg cfg;
    int64_t oh, ow;
    float x[GMAX], w[GMAX], b[64], dy[GMAX], y[GMAX], dx[GMAX], dw[GMAX];
} conv_group_case;

static void group_case_setup(conv_group_case *t, const conv_cfg *cfg)
{
    const tmix_conv2d_params p = cfg->p;
    t->cfg = *cfg;
    t->oh = (cfg->h + 2 * p.pad_h - p.dilation_h * (cfg->kh - 1) - 1) / p.stride_h + 1;
    t->ow = (cfg->w + 2 * p.pad_w - p.dilation_w * (cfg->kw - 1) - 1) / p.stride_w + 1;
    fill_uniform(t->x, GMAX, 11, -1, 1);
    fill_uniform(t->w, GMAX, 12, -1, 1);
    fill_uniform(t->b, 64, 13, -1, 1);
    fill_uniform(t->dy, GMAX, 14, -1, 1);
    fill_uniform(t->y, GMAX, 15, -1, 1); // overwritten by the forward
    fill_uniform(t->dx, GMAX, 16, -1, 1);
    fill_uniform(t->dw, GMAX, 17, -1, 1);
}

// out, then din and dweight accumulated, with `threads` OpenMP threads.
static int group_case_run(conv_group_case *t, int threads)
{
    const conv_cfg *c = &t->cfg;
    omp_set_num_threads(threads);
    tmix_backend *be = cpu();
    tmix_tensor in = V4(t->x, c->n, c->c, c->h, c->w), din = V4(t->dx, c->n, c->c, c->h, c->w);
    tmix_tensor wt = V4(t->w, c->oc, c->c, c->kh, c->kw);
    tmix_tensor dwt = V4(t->dw, c->oc, c->c, c->kh, c->kw), bias = V1(t->b, c->oc);
    tmix_tensor out = V4(t->y, c->n, c->oc, t->oh, t->ow);
    tmix_tensor dout = V4(t->dy, c->n, c->oc, t->oh, t->ow);
    CHECK_OK(tmix_conv2d_forward(be, &out, &in, &wt, &bias, c->p));
    CHECK_OK(tmix_conv2d_backward_input(be, &din, &dout, &wt, c->p));
    CHECK_OK(tmix_conv2d_backward_weight(be, &dwt, &dout, &in, c->p));
    return 0;
}

static int close_to(const char *what, int k, const float *got, const double *want, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-4 * (1 + fabs(want[i])))) {
            fprintf(stderr, "config %d: %s[%lld] is %.7g, the direct sum gives %.7g\n", k, what,
                    (long long)i, got[i], want[i]);
            return 1;
        }
    return 0;
}

// Every pass against the definition, tap by tap in double.
static int test_conv2d_matches_direct(void)
{
    static conv_group_case t;
    static double y[GMAX], dx[GMAX], dw[GMAX];
    for (int k = 0; k < (int)COUNT(group_cfgs); k++) {
        const conv_cfg *c = &group_cfgs[k];
        const tmix_conv2d_params p = c->p;
        group_case_setup(&t, c);
        const int64_t nx = c->n * c->c * c->h * c->w, nw = c->oc * c->c * c->kh * c->kw;
        const int64_t ny = c->n * c->oc * t.oh * t.ow;
        CHECK(nx <= GMAX && nw <= GMAX && ny <= GMAX);
        for (int64_t i = 0; i < nx; i++)
            dx[i] = t.dx[i];
        for (int64_t i = 0; i < nw; i++)
            dw[i] = t.dw[i];
        for (int64_t n = 0; n < c->n; n++)
            for (int64_t o = 0; o < c->oc; o++)
                for (int64_t oh = 0; oh < t.oh; oh++)
                    for (int64_t ow = 0; ow < t.ow; ow++) {
                        const int64_t yi = ((n * c->oc + o) * t.oh + oh) * t.ow + ow;
                        double sum = t.b[o];
                        for (int64_t ci = 0; ci < c->c; ci++)
                            for (int64_t kh = 0; kh < c->kh; kh++)
                                for (int64_t kw = 0; kw < c->kw; kw++) {
                                    const int64_t ih = oh * p.stride_h - p.pad_h +
                                                       kh * p.dilation_h;
                                    const int64_t iw = ow * p.stride_w - p.pad_w +
                                                       kw * p.dilation_w;
                                    if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w)
                                        continue;
                                    const int64_t xi = ((n * c->c + ci) * c->h + ih) * c->w + iw;
                                    const int64_t wi = ((o * c->c + ci) * c->kh + kh) * c->kw + kw;
                                    sum += (double)t.w[wi] * t.x[xi];
                                    dx[xi] += (double)t.w[wi] * t.dy[yi];
                                    dw[wi] += (double)t.x[xi] * t.dy[yi];
                                }
                        y[yi] = sum;
                    }
        const int keep = omp_get_max_threads();
        const int rc = group_case_run(&t, 2);
        omp_set_num_threads(keep);
        CHECK_OK(rc);
        if (close_to("out", k, t.y, y, ny) || close_to("din", k, t.dx, dx, nx) ||
            close_to("dweight", k, t.dw, dw, nw))
            return 1;
    }
    return 0;
}

// A ReLU fused into the convolution (p.relu) or into the residual add (tmix_add_relu) gives
// the values of the op followed by tmix_relu_forward: for every group config, with and
// without bias (and then a NaN in the input, which the ReLU keeps).
static int test_fused_relu(void)
{
    static conv_group_case t;
    static float want[GMAX], got[GMAX];
    for (int k = 0; k < (int)COUNT(group_cfgs); k++) {
        group_case_setup(&t, &group_cfgs[k]);
        const conv_cfg *c = &t.cfg;
        tmix_tensor in = V4(t.x, c->n, c->c, c->h, c->w), wt = V4(t.w, c->oc, c->c, c->kh, c->kw);
        tmix_tensor bias = V1(t.b, c->oc);
        tmix_tensor ref = V4(want, c->n, c->oc, t.oh, t.ow), out = V4(got, c->n, c->oc, t.oh, t.ow);
        const int64_t n = tmix_tensor_numel(&out);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            t.x[0] = with_bias ? NAN : t.x[1]; // a NaN that some outputs see
            tmix_conv2d_params p = c->p;
            CHECK_OK(tmix_conv2d_forward(cpu(), &ref, &in, &wt, with_bias ? &bias : NULL, p));
            CHECK_OK(tmix_relu_forward(cpu(), &ref, &ref));
            p.relu = true;
            fill_const(got, n, SENTINEL);
            CHECK_OK(tmix_conv2d_forward(cpu(), &out, &in, &wt, with_bias ? &bias : NULL, p));
            int zeros = 0, nans = 0;
            for (int64_t i = 0; i < n; i++) {
                CHECK(got[i] == want[i] || (isnan(got[i]) && isnan(want[i])));
                zeros += got[i] == 0.0f;
                nans += isnan(got[i]);
            }
            CHECK(zeros > 0 && zeros < n); // the ReLU cut some values, not all
            CHECK(with_bias ? nans > 0 : nans == 0);
        }
    }
    float a[6] = {1.0f, -2.0f, 0.5f, NAN, -0.25f, 3.0f};
    float b[6] = {-3.0f, 1.0f, 0.5f, 1.0f, 0.0f, -3.5f}, y[6];
    tmix_tensor ta = V1(a, 6), tb = V1(b, 6), ty = V1(y, 6);
    CHECK_OK(tmix_add_relu(cpu(), &ty, &ta, &tb));
    const float expect[6] = {0.0f, 0.0f, 1.0f, NAN, 0.0f, 0.0f};
    for (int i = 0; i < 6; i++)
        CHECK(i == 3 ? isnan(y[i]) : y[i] == expect[i]);
    CHECK_OK(tmix_add_relu(cpu(), &ta, &ta, &tb)); // out may be a
    CHECK(a[0] == 0.0f && a[2] == 1.0f && isnan(a[3]));
    return 0;
}

// ---- threads -----------------------------------------------------------------------------

// The thread counts compared: one, two, and three (which does not divide the batches or
// tiles evenly).
static const int thread_counts[] = {1, 2, 3};

// Before each op call OpenBLAS is given a thread count of its own: one in the one-thread
// run, two in the others. The op must pin it to one (kernels/blas.c): a two-thread OpenBLAS
// gives different bits for GEMMs above its threading threshold (M*N*K > 262144), and every
// pass of linear and of the first conv2d config has GEMMs above it, so an op that does not
// pin shows up as a mismatch (checked by making tmix_cpu_blas_init a no-op).
static void tempt_blas(int threads)
{
    openblas_set_num_threads(threads > 1 ? 2 : 1);
}

// The group configs give the same bits on 1, 2 and 3 threads: groups and dweight chunks
// handed out dynamically, partials added in chunk order.
static int threads_conv2d_groups(void)
{
    static conv_group_case one, many;
    const int keep = omp_get_max_threads();
    int rc = 0;
    for (int k = 0; k < (int)COUNT(group_cfgs) && rc == 0; k++) {
        group_case_setup(&one, &group_cfgs[k]);
        rc = group_case_run(&one, 1);
        for (int t = 1; t < (int)COUNT(thread_counts) && rc == 0; t++) {
            group_case_setup(&many, &group_cfgs[k]);
            rc = group_case_run(&many, thread_counts[t]);
            if (rc == 0 && memcmp(&one, &many, sizeof one) != 0) {
                fprintf(stderr, "conv2d group config %d: 1 and %d threads differ (out %d din "
                        "%d dw %d)\n", k, thread_counts[t],
                        memcmp(one.y, many.y, sizeof one.y) != 0,
                        memcmp(one.dx, many.dx, sizeof one.dx) != 0,
                        memcmp(one.dw, many.dw, sizeof one.dw) != 0);
                rc = 1;
            }
        }
    }
    omp_set_num_threads(keep);
    return rc;
}

// Runs every conv2d pass (and the bias gradient) with `threads` OpenMP threads into res: out,
// then din, dweight and dbias accumulated onto fixed nonzero starting values. A batch of 3
// gives one thread two samples at 2 threads; 16 output channels by 8*3*3 = 72 columns make
// two dweight tiles (64 + 8).
enum { TN = 3, TC = 8, TH = 18, TW = 17, TOC = 16 };

typedef struct {
    float out[TN * TOC * 18 * 19], din[TN * TC * TH * TW], dw[TOC * TC * 3 * 3], db[TOC];
} conv_results;

static int conv_all_passes(int threads, const float *x, const float *w, const float *b,
                           const float *dy, tmix_conv2d_params p, int64_t kh, int64_t kw,
                           int64_t oh, int64_t ow, conv_results *res)
{
    omp_set_num_threads(threads);
    tmix_backend *be = cpu();
    tmix_tensor in = V4((float *)x, TN, TC, TH, TW), wt = V4((float *)w, TOC, TC, kh, kw);
    tmix_tensor bias = V1((float *)b, TOC), dout = V4((float *)dy, TN, TOC, oh, ow);
    tmix_tensor out = V4(res->out, TN, TOC, oh, ow), din = V4(res->din, TN, TC, TH, TW);
    tmix_tensor dwt = V4(res->dw, TOC, TC, kh, kw), dbias = V1(res->db, TOC);
    fill_uniform(res->din, tmix_tensor_numel(&din), 5, -1, 1);
    fill_uniform(res->dw, tmix_tensor_numel(&dwt), 6, -1, 1);
    fill_uniform(res->db, TOC, 7, -1, 1);
    tempt_blas(threads);
    CHECK_OK(tmix_conv2d_forward(be, &out, &in, &wt, &bias, p));
    tempt_blas(threads);
    CHECK_OK(tmix_conv2d_backward_input(be, &din, &dout, &wt, p));
    tempt_blas(threads);
    CHECK_OK(tmix_conv2d_backward_weight(be, &dwt, &dout, &in, p));
    CHECK_OK(tmix_bias_backward(be, &dbias, &dout));
    return 0;
}

static int test_threads_conv2d(void)
{
    static float x[TN * TC * TH * TW], w[TOC * TC * 3 * 3], b[TOC], dy[TN * TOC * 18 * 19];
    static conv_results one, many;
    static const struct {
        tmix_conv2d_params p;
        int64_t kh, kw, oh, ow;
    } cfgs[] = {
        {{.stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 0, .dilation_h = 1,
          .dilation_w = 1}, 3, 3, 18, 15},
        {{.stride_h = 2, .stride_w = 1, .pad_h = 0, .pad_w = 2, .dilation_h = 1,
          .dilation_w = 2}, 3, 2, 8, 19},
        {{.stride_h = 1, .stride_w = 1, .dilation_h = 1, .dilation_w = 1}, 1, 1, 18, 17},
    };
    fill_uniform(x, COUNT(x), 1, -1, 1);
    fill_uniform(w, COUNT(w), 2, -1, 1);
    fill_uniform(b, COUNT(b), 3, -1, 1);
    fill_uniform(dy, COUNT(dy), 4, -1, 1);
    const int keep = omp_get_max_threads(), keep_blas = openblas_get_num_threads();
    int rc = 0;
    for (int k = 0; k < (int)COUNT(cfgs) && rc == 0; k++) {
        memset(&one, 0, sizeof one);
        rc = conv_all_passes(1, x, w, b, dy, cfgs[k].p, cfgs[k].kh, cfgs[k].kw, cfgs[k].oh,
                             cfgs[k].ow, &one);
        for (int t = 1; t < (int)COUNT(thread_counts) && rc == 0; t++) {
            memset(&many, 0, sizeof many);
            rc = conv_all_passes(thread_counts[t], x, w, b, dy, cfgs[k].p, cfgs[k].kh,
                                 cfgs[k].kw, cfgs[k].oh, cfgs[k].ow, &many);
            if (rc == 0 && memcmp(&one, &many, sizeof one) != 0) {
                fprintf(stderr, "conv2d config %d: 1 and %d threads differ (out %d din %d "
                        "dw %d db %d)\n", k, thread_counts[t],
                        memcmp(one.out, many.out, sizeof one.out) != 0,
                        memcmp(one.din, many.din, sizeof one.din) != 0,
                        memcmp(one.dw, many.dw, sizeof one.dw) != 0,
                        memcmp(one.db, many.db, sizeof one.db) != 0);
                rc = 1;
            }
        }
    }
    omp_set_num_threads(keep);
    openblas_set_num_threads(keep_blas);
    return rc ? rc : threads_conv2d_groups();
}

// Every linear pass (and the bias gradient) with `threads` OpenMP threads, as for conv2d.
// A batch of 72 makes 3 x 2 tiles (rows 32, 32, 8) of out (72, 140) and din (72, 150);
// dweight (140, 150) has 5 x 2 tiles, each summing the whole batch in one GEMM.
enum { LB = 72, LI = 150, LO = 140 };

typedef struct {
    float out[LB * LO], din[LB * LI], dw[LO * LI], db[LO];
} linear_results;

static int linear_all_passes(int threads, const float *x, const float *w, const float *b,
                             const float *dy, linear_results *res)
{
    omp_set_num_threads(threads);
    tmix_backend *be = cpu();
    tmix_tensor in = V2((float *)x, LB, LI), wt = V2((float *)w, LO, LI);
    tmix_tensor bias = V1((float *)b, LO), dout = V2((float *)dy, LB, LO);
    tmix_tensor out = V2(res->out, LB, LO), din = V2(res->din, LB, LI);
    tmix_tensor dwt = V2(res->dw, LO, LI), dbias = V1(res->db, LO);
    fill_uniform(res->din, LB * LI, 15, -1, 1);
    fill_uniform(res->dw, LO * LI, 16, -1, 1);
    fill_uniform(res->db, LO, 17, -1, 1);
    tempt_blas(threads);
    CHECK_OK(tmix_linear_forward(be, &out, &in, &wt, &bias));
    tempt_blas(threads);
    CHECK_OK(tmix_linear_backward_input(be, &din, &dout, &wt));
    tempt_blas(threads);
    CHECK_OK(tmix_linear_backward_weight(be, &dwt, &dout, &in));
    CHECK_OK(tmix_bias_backward(be, &dbias, &dout));
    return 0;
}

static int test_threads_linear(void)
{
    static float x[LB * LI], w[LO * LI], b[LO], dy[LB * LO];
    static linear_results one, many;
    fill_uniform(x, COUNT(x), 11, -1, 1);
    fill_uniform(w, COUNT(w), 12, -1, 1);
    fill_uniform(b, COUNT(b), 13, -1, 1);
    fill_uniform(dy, COUNT(dy), 14, -1, 1);
    const int keep = omp_get_max_threads(), keep_blas = openblas_get_num_threads();
    int rc = linear_all_passes(1, x, w, b, dy, &one);
    for (int t = 1; t < (int)COUNT(thread_counts) && rc == 0; t++) {
        memset(&many, 0, sizeof many);
        rc = linear_all_passes(thread_counts[t], x, w, b, dy, &many);
        if (rc == 0 && memcmp(&one, &many, sizeof one) != 0) {
            fprintf(stderr, "linear: 1 and %d threads differ (out %d din %d dw %d db %d)\n",
                    thread_counts[t], memcmp(one.out, many.out, sizeof one.out) != 0,
                    memcmp(one.din, many.din, sizeof one.din) != 0,
                    memcmp(one.dw, many.dw, sizeof one.dw) != 0,
                    memcmp(one.db, many.db, sizeof one.db) != 0);
            rc = 1;
        }
    }
    omp_set_num_threads(keep);
    openblas_set_num_threads(keep_blas);
    return rc;
}

static const test_case tests[] = {
    {"gradcheck.conv2d.grad_input", test_gradcheck_conv2d_grad_input},
    {"gradcheck.conv2d.grad_weight", test_gradcheck_conv2d_grad_weight},
    {"gradcheck.conv2d.grad_bias", test_gradcheck_conv2d_grad_bias},
    {"gradcheck.batchnorm.grad_input", test_gradcheck_batchnorm_grad_input},
    {"gradcheck.batchnorm_train.grad_input", test_gradcheck_batchnorm_train_grad_input},
    {"gradcheck.batchnorm_train.grad_gamma", test_gradcheck_batchnorm_train_grad_gamma},
    {"gradcheck.batchnorm_train.grad_beta", test_gradcheck_batchnorm_train_grad_beta},
    {"batchnorm_train.accumulates", test_batchnorm_train_accumulates},
    {"gradcheck.relu.grad_input", test_gradcheck_relu_grad_input},
    {"gradcheck.maxpool2d.grad_input", test_gradcheck_maxpool2d_grad_input},
    {"gradcheck.avgpool.grad_input", test_gradcheck_avgpool_grad_input},
    {"gradcheck.linear.grad_input", test_gradcheck_linear_grad_input},
    {"gradcheck.linear.grad_weight", test_gradcheck_linear_grad_weight},
    {"gradcheck.linear.grad_bias", test_gradcheck_linear_grad_bias},
    {"badinput.conv2d", test_badinput_conv2d},
    {"badinput.batchnorm", test_badinput_batchnorm},
    {"badinput.batchnorm_train", test_badinput_batchnorm_train},
    {"badinput.relu", test_badinput_relu},
    {"badinput.maxpool2d", test_badinput_maxpool2d},
    {"badinput.avgpool", test_badinput_avgpool},
    {"badinput.linear", test_badinput_linear},
    {"threads.conv2d", test_threads_conv2d},
    {"conv2d.matches_direct", test_conv2d_matches_direct},
    {"fused_relu", test_fused_relu},
    {"threads.linear", test_threads_linear},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
