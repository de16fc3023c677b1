// Unit tests of the mixing ops on the CPU backend: finite-difference gradient checks, a
// hand-computed SGD example, bit-identical results across thread counts, and bad input
// (exact error codes, a message naming the op, outputs left untouched).
#include <math.h>
#include <omp.h>
#include <string.h>

#include "harness.h"
#include "ops.h"

// ---- gradient checks ----------------------------------------------------------------------

// A gradcheck of an op with one output and two inputs: L = <out, r>.
typedef struct {
    test_loss loss;
    tmix_tensor out, a, b; // output and the two inputs of the op
} mix_problem;

static int softmax_fwd(test_loss *self)
{
    mix_problem *c = (mix_problem *)self; // a: in, b: tau
    return tmix_softmax_channel_forward(cpu(), &c->out, &c->a, &c->b);
}

static int blend_fwd(test_loss *self)
{
    mix_problem *c = (mix_problem *)self; // a: masks, b: x
    return tmix_blend_forward(cpu(), &c->out, &c->a, &c->b);
}

static int ce_fwd(test_loss *self)
{
    mix_problem *c = (mix_problem *)self; // out: loss, a: logits, b: targets
    return tmix_cross_entropy_forward(cpu(), &c->out, &c->a, &c->b);
}

enum { SN = 2, SK = 3, SH = 3, SW = 4, SNUM = SN * SK * SH * SW };

static int test_softmax_grad_input(void)
{
    float in[SNUM], out[SNUM], r[SNUM], din[SNUM], din2[SNUM], tau = 0.7f;
    int64_t shape[4] = {SN, SK, SH, SW};
    fill_uniform(in, SNUM, 1, -2, 2);
    fill_uniform(r, SNUM, 2, -1, 1);
    mix_problem c = {.loss = {.forward = softmax_fwd, .out = out, .r = r, .n = SNUM},
                     .out = tmix_f32_view(out, 4, shape), .a = tmix_f32_view(in, 4, shape),
                     .b = V1(&tau, 1)};
    tmix_tensor dg = tmix_f32_view(r, 4, shape), dh = tmix_f32_view(din, 4, shape);
    CHECK_OK(tmix_softmax_channel_forward(cpu(), &c.out, &c.a, &c.b));
    memset(din, 0, sizeof din);
    // dtau NULL: the input gradient alone.
    CHECK_OK(tmix_softmax_channel_backward(cpu(), &dh, NULL, &dg, &c.out, &c.a, &c.b));
    CHECK(gradcheck_loss("softmax_channel din", in, SNUM, din, &c.loss, 1e-2, 1e-3, 1e-2) == 0);
    // Backward accumulates: a second call doubles the gradient.
    memcpy(din2, din, sizeof din);
    CHECK_OK(tmix_softmax_channel_forward(cpu(), &c.out, &c.a, &c.b));
    CHECK_OK(tmix_softmax_channel_backward(cpu(), &dh, NULL, &dg, &c.out, &c.a, &c.b));
    for (int i = 0; i < SNUM; i++)
        CHECK(fabsf(din[i] - 2 * din2[i]) <= 1e-6f * fabsf(din2[i]));
    return 0;
}

static int test_softmax_grad_tau(void)
{
    enum { N = 2, K = 2, H = 5, W = 3, NUM = N * K * H * W };
    float in[NUM], out[NUM], r[NUM], din[NUM], tau = 0.8f, dtau = 0;
    int64_t shape[4] = {N, K, H, W};
    fill_uniform(in, NUM, 3, -2, 2);
    fill_uniform(r, NUM, 4, -1, 1);
    mix_problem c = {.loss = {.forward = softmax_fwd, .out = out, .r = r, .n = NUM},
                     .out = tmix_f32_view(out, 4, shape), .a = tmix_f32_view(in, 4, shape),
                     .b = V1(&tau, 1)};
    tmix_tensor dg = tmix_f32_view(r, 4, shape), dh = tmix_f32_view(din, 4, shape);
    tmix_tensor dt = V1(&dtau, 1);
    CHECK_OK(tmix_softmax_channel_forward(cpu(), &c.out, &c.a, &c.b));
    memset(din, 0, sizeof din);
    CHECK_OK(tmix_softmax_channel_backward(cpu(), &dh, &dt, &dg, &c.out, &c.a, &c.b));
    printf("  dtau = %.7g\n", dtau);
    CHECK(fabsf(dtau) > 0.05f); // large enough against atol for the check to mean something
    CHECK(gradcheck_loss("softmax_channel dtau", &tau, 1, &dtau, &c.loss, 3e-3, 1e-3, 1e-2)
          == 0);
    return 0;
}

enum { BB = 2, BK = 3, BC = 2, BH = 3, BW = 4 };
enum { BMASKS = BB * BK * BH * BW, BX = BB * BK * BC * BH * BW, BOUT = BB * BC * BH * BW };

// Blend gradients: which = 0 checks dmasks (dx NULL), 1 checks dx (dmasks NULL).
static int blend_gradcheck(int which)
{
    float masks[BMASKS], x[BX], out[BOUT], r[BOUT], dmasks[BMASKS] = {0}, dx[BX] = {0};
    fill_uniform(masks, BMASKS, 5, -0.5f, 1.5f);
    fill_uniform(x, BX, 6, -1, 1);
    fill_uniform(r, BOUT, 7, -1, 1);
    int64_t ms[4] = {BB, BK, BH, BW}, xs[4] = {BB * BK, BC, BH, BW}, os[4] = {BB, BC, BH, BW};
    mix_problem c = {.loss = {.forward = blend_fwd, .out = out, .r = r, .n = BOUT},
                     .out = tmix_f32_view(out, 4, os), .a = tmix_f32_view(masks, 4, ms),
                     .b = tmix_f32_view(x, 4, xs)};
    tmix_tensor dg = tmix_f32_view(r, 4, os), dm = tmix_f32_view(dmasks, 4, ms);
    tmix_tensor dxt = tmix_f32_view(dx, 4, xs);
    CHECK_OK(tmix_blend_backward(cpu(), which == 0 ? &dm : NULL, which == 1 ? &dxt : NULL, &dg,
                                 &c.a, &c.b));
    int rc = which == 0
                 ? gradcheck_loss("blend dmasks", masks, BMASKS, dmasks, &c.loss, 1e-2, 1e-4, 1e-3)
                 : gradcheck_loss("blend dx", x, BX, dx, &c.loss, 1e-2, 1e-4, 1e-3);
    CHECK(rc == 0);
    // The gradient left NULL was not computed into the other buffer.
    const float *other = which == 0 ? dx : dmasks;
    for (int i = 0; i < (which == 0 ? BX : BMASKS); i++)
        CHECK(other[i] == 0);
    return 0;
}

static int test_blend_grad_masks(void)
{
    return blend_gradcheck(0);
}

static int test_blend_grad_x(void)
{
    return blend_gradcheck(1);
}

static int test_cross_entropy_grad_logits(void)
{
    enum { B = 3, J = 5 };
    float z[B * J], y[B * J], dz[B * J] = {0}, loss, one = 1;
    fill_uniform(z, B * J, 8, -3, 3);
    // Soft targets that do not sum to 1, so the sum_j y_j factor is exercised.
    fill_uniform(y, B * J, 9, 0, 0.6f);
    int64_t s[2] = {B, J};
    // The loss is a scalar and the backward is the gradient of a loss of 1: L = loss * 1.
    mix_problem c = {.loss = {.forward = ce_fwd, .out = &loss, .r = &one, .n = 1},
                     .out = V1(&loss, 1), .a = tmix_f32_view(z, 2, s),
                     .b = tmix_f32_view(y, 2, s)};
    tmix_tensor dzt = tmix_f32_view(dz, 2, s);
    CHECK_OK(tmix_cross_entropy_backward(cpu(), &dzt, &c.a, &c.b));
    CHECK(gradcheck_loss("cross_entropy dlogits", z, B * J, dz, &c.loss, 1e-2, 1e-4, 1e-2)
          == 0);
    return 0;
}

// ---- sgd ----------------------------------------------------------------------------------

// Two steps from param [1, -2] with grads [0.5, 1] then [-1, 0.25] and lr 0.5, worked by
// hand (every number is a short binary fraction, so the results are exact):
//   momentum 0.5, dampening 0.5, weight_decay 0.25:
//     step 0: d = g + 0.25 p = [0.75, 0.5]; buf = d; p -= 0.5 buf -> [0.625, -2.25]
//     step 1: d = [-1 + 0.15625, 0.25 - 0.5625] = [-0.84375, -0.3125];
//             buf = 0.5 buf + 0.5 d = [-0.046875, 0.09375]; p -= 0.5 buf
//             -> [0.6484375, -2.296875]
//   nesterov, momentum 0.5, weight_decay 0.25:
//     step 0: d = [0.75, 0.5]; buf = d; d += 0.5 buf -> [1.125, 0.75]; p -> [0.4375, -2.375]
//     step 1: d = [-0.890625, -0.34375]; buf = 0.5 buf + d = [-0.515625, -0.09375];
//             d += 0.5 buf -> [-1.1484375, -0.390625]; p -> [1.01171875, -2.1796875]
//   plain (no momentum, no buffer): p -> [0.75, -2.5] -> [1.25, -2.625]
static int sgd_two_steps(tmix_sgd_params p, bool with_buf, const float *want_p,
                         const float *want_buf)
{
    tmix_backend *be = cpu();
    float w[2] = {1, -2}, g[2], buf[2] = {99, -99}; // step 0 must ignore the buffer's contents
    const float grads[2][2] = {{0.5f, 1}, {-1, 0.25f}};
    int64_t s[1] = {2};
    tmix_tensor wt = tmix_f32_view(w, 1, s), gt = tmix_f32_view(g, 1, s);
    tmix_tensor bt = tmix_f32_view(buf, 1, s);
    for (int step = 0; step < 2; step++) {
        memcpy(g, grads[step], sizeof g);
        CHECK_OK(tmix_sgd_update(be, &wt, &gt, with_buf ? &bt : NULL, p, step));
    }
    printf("  param [%.9g, %.9g] buf [%.9g, %.9g]\n", w[0], w[1], buf[0], buf[1]);
    CHECK(w[0] == want_p[0] && w[1] == want_p[1]);
    if (want_buf)
        CHECK(buf[0] == want_buf[0] && buf[1] == want_buf[1]);
    return 0;
}

static int test_sgd_matches_formula(void)
{
    tmix_sgd_params damp = {.lr = 0.5f, .momentum = 0.5f, .dampening = 0.5f,
                            .weight_decay = 0.25f};
    CHECK(sgd_two_steps(damp, true, (const float[]){0.6484375f, -2.296875f},
                        (const float[]){-0.046875f, 0.09375f}) == 0);
    tmix_sgd_params nest = {.lr = 0.5f, .momentum = 0.5f, .weight_decay = 0.25f,
                            .nesterov = 1};
    CHECK(sgd_two_steps(nest, true, (const float[]){1.01171875f, -2.1796875f},
                        (const float[]){-0.515625f, -0.09375f}) == 0);
    tmix_sgd_params plain = {.lr = 0.5f};
    CHECK(sgd_two_steps(plain, false, (const float[]){1.25f, -2.625f}, NULL) == 0);
    // momentum 0 with a buffer given: the buffer is left alone.
    float keep[2] = {99, -99};
    CHECK(sgd_two_steps(plain, true, (const float[]){1.25f, -2.625f}, keep) == 0);
    return 0;
}

// ---- threads ------------------------------------------------------------------------------

// Runs softmax_channel forward and backward (with dtau, a reduction over the batch) and
// cross_entropy forward (a batch mean) with the given thread count.
static int run_threaded(int threads, float *m, float *din, float *dtau, float *loss)
{
    enum { N = 7, K = 3, H = 9, W = 5, NUM = N * K * H * W, B = 13, J = 10 };
    static float in[NUM], g[NUM], z[B * J], y[B * J];
    float tau = 0.45f;
    fill_uniform(in, NUM, 10, -4, 4);
    fill_uniform(g, NUM, 11, -1, 1);
    fill_uniform(z, B * J, 12, -5, 5);
    fill_uniform(y, B * J, 13, 0, 0.3f);
    int64_t s[4] = {N, K, H, W}, ls[2] = {B, J};
    tmix_backend *be = cpu();
    tmix_tensor it = tmix_f32_view(in, 4, s), gt = tmix_f32_view(g, 4, s);
    tmix_tensor mt = tmix_f32_view(m, 4, s), dt = tmix_f32_view(din, 4, s);
    tmix_tensor taut = V1(&tau, 1);
    tmix_tensor dtaut = V1(dtau, 1);
    tmix_tensor zt = tmix_f32_view(z, 2, ls), yt = tmix_f32_view(y, 2, ls);
    tmix_tensor losst = V1(loss, 1);
    memset(din, 0, NUM * sizeof *din);
    *dtau = 0;
    omp_set_num_threads(threads);
    CHECK_OK(tmix_softmax_channel_forward(be, &mt, &it, &taut));
    CHECK_OK(tmix_softmax_channel_backward(be, &dt, &dtaut, &gt, &mt, &it, &taut));
    CHECK_OK(tmix_cross_entropy_forward(be, &losst, &zt, &yt));
    return 0;
}

static int test_threads_softmax_channel(void)
{
    enum { NUM = 7 * 3 * 9 * 5 };
    static float m1[NUM], m2[NUM], d1[NUM], d2[NUM];
    float t1, t2, l1, l2;
    CHECK(run_threaded(1, m1, d1, &t1, &l1) == 0);
    CHECK(run_threaded(2, m2, d2, &t2, &l2) == 0);
    CHECK(memcmp(m1, m2, sizeof m1) == 0);
    CHECK(memcmp(d1, d2, sizeof d1) == 0);
    CHECK(memcmp(&t1, &t2, sizeof t1) == 0);
    CHECK(memcmp(&l1, &l2, sizeof l1) == 0);
    return 0;
}

// ---- bad input ----------------------------------------------------------------------------

static int test_badinput_softmax_channel(void)
{
    enum { NUM = 2 * 3 * 4 * 5 };
    static float in[NUM], out[NUM], g[NUM], din[NUM];
    float tau = 0.5f, tau2[2] = {1, 1}, dtau;
    fill_uniform(in, NUM, 14, -1, 1);
    fill_uniform(g, NUM, 15, -1, 1);
    tmix_backend *be = cpu();
    int64_t s[4] = {2, 3, 4, 5};
    tmix_tensor it = tmix_f32_view(in, 4, s), ot = tmix_f32_view(out, 4, s);
    tmix_tensor gt = tmix_f32_view(g, 4, s), dt = tmix_f32_view(din, 4, s);
    tmix_tensor taut = V1(&tau, 1);
    tmix_tensor tau2t = V1(tau2, 2);
    tmix_tensor dtaut = V1(&dtau, 1);
    tmix_tensor in3 = V3(in, 2, 3, 20);
    tmix_tensor out_small = V4(out, 2, 3, 4, 4);
    tmix_tensor in_zero = V4(in, 2, 0, 4, 5);

    {
        const char *op = "softmax_channel_forward";
        const test_buf outs[] = {{out, NUM}};
        EXPECT_FAIL(tmix_softmax_channel_forward(NULL, &ot, &it, &taut), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_forward(be, NULL, &it, &taut), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_forward(be, &ot, NULL, &taut), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_forward(be, &ot, &it, NULL), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_forward(be, &ot, &in3, &taut), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_forward(be, &ot, &in_zero, &taut), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_forward(be, &out_small, &it, &taut), TMIX_ESHAPE, op,
                    outs);
        EXPECT_FAIL(tmix_softmax_channel_forward(be, &ot, &it, &tau2t), TMIX_ESHAPE, op, outs);
        tmix_tensor bad = as_u8(it);
        EXPECT_FAIL(tmix_softmax_channel_forward(be, &ot, &bad, &taut), TMIX_EDTYPE, op, outs);
        bad = as_u8(taut);
        EXPECT_FAIL(tmix_softmax_channel_forward(be, &ot, &it, &bad), TMIX_EDTYPE, op, outs);
        bad = on_cuda(ot);
        EXPECT_FAIL(tmix_softmax_channel_forward(be, &bad, &it, &taut), TMIX_EDEVICE, op, outs);
        // tau lives on the backend, so the CPU twin checks its value.
        const float bad_taus[] = {0, -1, NAN, INFINITY};
        for (int i = 0; i < 4; i++) {
            tau = bad_taus[i];
            EXPECT_FAIL(tmix_softmax_channel_forward(be, &ot, &it, &taut), TMIX_EINVAL, op, outs);
        }
        tau = 0.5f;
        CHECK_OK(tmix_softmax_channel_forward(be, &ot, &it, &taut));
        CHECK(out[0] != SENTINEL);
    }
    {
        const char *op = "softmax_channel_backward";
        const test_buf outs[] = {{din, NUM}, {&dtau, 1}};
        EXPECT_FAIL(tmix_softmax_channel_backward(NULL, &dt, &dtaut, &gt, &ot, &it, &taut),
                    TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_backward(be, NULL, &dtaut, &gt, &ot, &it, &taut),
                    TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_backward(be, &dt, &dtaut, NULL, &ot, &it, &taut),
                    TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_backward(be, &dt, &dtaut, &gt, NULL, &it, &taut),
                    TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_backward(be, &dt, &dtaut, &gt, &ot, NULL, &taut),
                    TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_backward(be, &dt, &dtaut, &gt, &ot, &it, NULL),
                    TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_backward(be, &dt, &dtaut, &gt, &ot, &in3, &taut),
                    TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_backward(be, &dt, &tau2t, &gt, &ot, &it, &taut),
                    TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_softmax_channel_backward(be, &dt, &dtaut, &gt, &out_small, &it, &taut),
                    TMIX_ESHAPE, op, outs);
        tmix_tensor bad = as_u8(gt);
        EXPECT_FAIL(tmix_softmax_channel_backward(be, &dt, &dtaut, &bad, &ot, &it, &taut),
                    TMIX_EDTYPE, op, outs);
        bad = on_cuda(dtaut);
        EXPECT_FAIL(tmix_softmax_channel_backward(be, &dt, &bad, &gt, &ot, &it, &taut),
                    TMIX_EDEVICE, op, outs);
        bad = on_cuda(taut);
        EXPECT_FAIL(tmix_softmax_channel_backward(be, &dt, &dtaut, &gt, &ot, &it, &bad),
                    TMIX_EDEVICE, op, outs);
        tau = -0.5f;
        EXPECT_FAIL(tmix_softmax_channel_backward(be, &dt, &dtaut, &gt, &ot, &it, &taut),
                    TMIX_EINVAL, op, outs);
        tau = 0.5f;
        memset(din, 0, sizeof din);
        dtau = 0;
        CHECK_OK(tmix_softmax_channel_backward(be, &dt, &dtaut, &gt, &ot, &it, &taut));
        CHECK(dtau != 0);
    }
    return 0;
}

static int test_badinput_blend(void)
{
    enum { B = 2, K = 3, C = 2, NM = B * K * 4 * 5, NX = B * K * C * 4 * 5, NO = B * C * 4 * 5 };
    static float masks[NM], x[NX], out[NO], g[NO], dm[NM], dx[NX];
    fill_uniform(masks, NM, 16, 0, 1);
    fill_uniform(x, NX, 17, -1, 1);
    fill_uniform(g, NO, 18, -1, 1);
    tmix_backend *be = cpu();
    int64_t ms[4] = {B, K, 4, 5}, xs[4] = {B * K, C, 4, 5}, os[4] = {B, C, 4, 5};
    tmix_tensor mt = tmix_f32_view(masks, 4, ms), xt = tmix_f32_view(x, 4, xs);
    tmix_tensor ot = tmix_f32_view(out, 4, os), gt = tmix_f32_view(g, 4, os);
    tmix_tensor dmt = tmix_f32_view(dm, 4, ms), dxt = tmix_f32_view(dx, 4, xs);
    tmix_tensor m3 = V3(masks, B, K, 20);
    tmix_tensor x_batch = V4(x, B * K - 1, C, 4, 5);
    tmix_tensor x_size = V4(x, B * K, C, 5, 4);
    tmix_tensor o_chan = V4(out, B, C - 1, 4, 5);
    tmix_tensor dm_bad = V4(dm, B, K - 1, 4, 5);
    tmix_tensor dx_bad = V4(dx, B * K, C - 1, 4, 5);
    {
        const char *op = "blend_forward";
        const test_buf outs[] = {{out, NO}};
        EXPECT_FAIL(tmix_blend_forward(NULL, &ot, &mt, &xt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_blend_forward(be, NULL, &mt, &xt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_blend_forward(be, &ot, NULL, &xt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_blend_forward(be, &ot, &mt, NULL), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_blend_forward(be, &ot, &m3, &xt), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_blend_forward(be, &ot, &mt, &x_batch), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_blend_forward(be, &ot, &mt, &x_size), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_blend_forward(be, &o_chan, &mt, &xt), TMIX_ESHAPE, op, outs);
        tmix_tensor bad = as_u8(xt);
        EXPECT_FAIL(tmix_blend_forward(be, &ot, &mt, &bad), TMIX_EDTYPE, op, outs);
        bad = as_u8(ot);
        EXPECT_FAIL(tmix_blend_forward(be, &bad, &mt, &xt), TMIX_EDTYPE, op, outs);
        bad = on_cuda(mt);
        EXPECT_FAIL(tmix_blend_forward(be, &ot, &bad, &xt), TMIX_EDEVICE, op, outs);
        CHECK_OK(tmix_blend_forward(be, &ot, &mt, &xt));
        CHECK(out[0] != SENTINEL);
    }
    {
        const char *op = "blend_backward";
        const test_buf outs[] = {{dm, NM}, {dx, NX}};
        EXPECT_FAIL(tmix_blend_backward(NULL, &dmt, &dxt, &gt, &mt, &xt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_blend_backward(be, &dmt, &dxt, NULL, &mt, &xt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_blend_backward(be, &dmt, &dxt, &gt, NULL, &xt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_blend_backward(be, &dmt, &dxt, &gt, &mt, NULL), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_blend_backward(be, &dm_bad, &dxt, &gt, &mt, &xt), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_blend_backward(be, &dmt, &dx_bad, &gt, &mt, &xt), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_blend_backward(be, &dmt, &dxt, &o_chan, &mt, &xt), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_blend_backward(be, &dmt, &dxt, &gt, &mt, &x_batch), TMIX_ESHAPE, op, outs);
        tmix_tensor bad = as_u8(gt);
        EXPECT_FAIL(tmix_blend_backward(be, &dmt, &dxt, &bad, &mt, &xt), TMIX_EDTYPE, op, outs);
        bad = on_cuda(dxt);
        EXPECT_FAIL(tmix_blend_backward(be, &dmt, &bad, &gt, &mt, &xt), TMIX_EDEVICE, op, outs);
        bad = on_cuda(dmt);
        EXPECT_FAIL(tmix_blend_backward(be, &bad, NULL, &gt, &mt, &xt), TMIX_EDEVICE, op, outs);
        memset(dm, 0, sizeof dm);
        memset(dx, 0, sizeof dx);
        CHECK_OK(tmix_blend_backward(be, &dmt, &dxt, &gt, &mt, &xt));
        CHECK(dm[0] != 0 && dx[0] != 0);
    }
    return 0;
}

static int test_badinput_cross_entropy(void)
{
    enum { B = 4, J = 5 };
    float z[B * J], y[B * J], dz[B * J], loss, loss2[2];
    fill_uniform(z, B * J, 19, -2, 2);
    fill_uniform(y, B * J, 20, 0, 0.4f);
    tmix_backend *be = cpu();
    int64_t s[2] = {B, J};
    tmix_tensor zt = tmix_f32_view(z, 2, s), yt = tmix_f32_view(y, 2, s);
    tmix_tensor dzt = tmix_f32_view(dz, 2, s);
    tmix_tensor lt = V1(&loss, 1);
    tmix_tensor l2t = V1(loss2, 2);
    tmix_tensor z3 = V3(z, B, J, 1);
    tmix_tensor y_bad = V2(y, B, J - 1);
    tmix_tensor dz_bad = V2(dz, J, B);
    {
        const char *op = "cross_entropy_forward";
        const test_buf outs[] = {{&loss, 1}};
        EXPECT_FAIL(tmix_cross_entropy_forward(NULL, &lt, &zt, &yt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_forward(be, NULL, &zt, &yt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_forward(be, &lt, NULL, &yt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_forward(be, &lt, &zt, NULL), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_forward(be, &l2t, &zt, &yt), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_forward(be, &lt, &z3, &yt), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_forward(be, &lt, &zt, &y_bad), TMIX_ESHAPE, op, outs);
        tmix_tensor bad = as_u8(yt);
        EXPECT_FAIL(tmix_cross_entropy_forward(be, &lt, &zt, &bad), TMIX_EDTYPE, op, outs);
        bad = as_u8(lt);
        EXPECT_FAIL(tmix_cross_entropy_forward(be, &bad, &zt, &yt), TMIX_EDTYPE, op, outs);
        bad = on_cuda(zt);
        EXPECT_FAIL(tmix_cross_entropy_forward(be, &lt, &bad, &yt), TMIX_EDEVICE, op, outs);
        CHECK_OK(tmix_cross_entropy_forward(be, &lt, &zt, &yt));
        CHECK(loss != SENTINEL && loss > 0);
    }
    {
        const char *op = "cross_entropy_backward";
        const test_buf outs[] = {{dz, B * J}};
        EXPECT_FAIL(tmix_cross_entropy_backward(NULL, &dzt, &zt, &yt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_backward(be, NULL, &zt, &yt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_backward(be, &dzt, NULL, &yt), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_backward(be, &dzt, &zt, NULL), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_backward(be, &dz_bad, &zt, &yt), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_backward(be, &dzt, &z3, &yt), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_cross_entropy_backward(be, &dzt, &zt, &y_bad), TMIX_ESHAPE, op, outs);
        tmix_tensor bad = as_u8(zt);
        EXPECT_FAIL(tmix_cross_entropy_backward(be, &dzt, &bad, &yt), TMIX_EDTYPE, op, outs);
        bad = on_cuda(dzt);
        EXPECT_FAIL(tmix_cross_entropy_backward(be, &bad, &zt, &yt), TMIX_EDEVICE, op, outs);
        memset(dz, 0, sizeof dz);
        CHECK_OK(tmix_cross_entropy_backward(be, &dzt, &zt, &yt));
        CHECK(dz[0] != 0);
    }
    return 0;
}

static int test_badinput_sgd(void)
{
    const char *op = "sgd_update";
    float w[12], g[12], buf[12];
    fill_uniform(g, 12, 21, -1, 1);
    tmix_backend *be = cpu();
    int64_t s[2] = {3, 4};
    tmix_tensor wt = tmix_f32_view(w, 2, s), gt = tmix_f32_view(g, 2, s);
    tmix_tensor bt = tmix_f32_view(buf, 2, s);
    tmix_tensor g_bad = V2(g, 4, 3);
    tmix_tensor b_bad = V1(buf, 12);
    tmix_tensor w_zero = V2(w, 3, 0);
    tmix_sgd_params ok = {.lr = 0.1f, .momentum = 0.9f, .dampening = 0.1f,
                          .weight_decay = 1e-4f};
    const test_buf outs[] = {{w, 12}, {buf, 12}};
    EXPECT_FAIL(tmix_sgd_update(NULL, &wt, &gt, &bt, ok, 0), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_sgd_update(be, NULL, &gt, &bt, ok, 0), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_sgd_update(be, &wt, NULL, &bt, ok, 0), TMIX_EINVAL, op, outs);
    // momentum needs a buffer
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &gt, NULL, ok, 0), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &g_bad, &bt, ok, 0), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &gt, &b_bad, ok, 0), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_sgd_update(be, &w_zero, &gt, &bt, ok, 0), TMIX_ESHAPE, op, outs);
    tmix_tensor bad = as_u8(gt);
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &bad, &bt, ok, 0), TMIX_EDTYPE, op, outs);
    bad = as_u8(bt);
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &gt, &bad, ok, 0), TMIX_EDTYPE, op, outs);
    bad = on_cuda(wt);
    EXPECT_FAIL(tmix_sgd_update(be, &bad, &gt, &bt, ok, 0), TMIX_EDEVICE, op, outs);
    tmix_sgd_params p = ok;
    p.lr = -0.1f;
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &gt, &bt, p, 0), TMIX_EINVAL, op, outs);
    p.lr = NAN;
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &gt, &bt, p, 0), TMIX_EINVAL, op, outs);
    p = ok;
    p.momentum = -0.9f;
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &gt, &bt, p, 0), TMIX_EINVAL, op, outs);
    p = ok;
    p.weight_decay = -1;
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &gt, &bt, p, 0), TMIX_EINVAL, op, outs);
    p = ok;
    p.dampening = INFINITY;
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &gt, &bt, p, 0), TMIX_EINVAL, op, outs);
    p = ok;
    p.nesterov = 1; // with dampening 0.1: torch refuses it too
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &gt, &bt, p, 0), TMIX_EINVAL, op, outs);
    p = (tmix_sgd_params){.lr = 0.1f, .nesterov = 1}; // nesterov without momentum
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &gt, &bt, p, 0), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_sgd_update(be, &wt, &gt, &bt, ok, -1), TMIX_EINVAL, op, outs);
    poison(outs, COUNT(outs));
    CHECK_OK(tmix_sgd_update(be, &wt, &gt, &bt, ok, 0));
    CHECK(w[0] != SENTINEL && buf[0] != SENTINEL);
    return 0;
}

static int test_badinput_preprocess(void)
{
    const char *op = "preprocess";
    enum { B = 2, H = 6, W = 7, C = 3, OH = 4, OW = 5, NO = B * C * OH * OW };
    static uint8_t src[B * H * W * C];
    static float out[NO];
    for (int i = 0; i < B * H * W * C; i++)
        src[i] = (uint8_t)(i * 37);
    tmix_crop crops[B] = {{-1, 2, 0}, {3, -2, 1}};
    float mean[C] = {0.5f, 0.4f, 0.3f}, std[C] = {0.2f, 0.25f, 0.3f};
    tmix_backend *be = cpu();
    tmix_tensor st = tmix_tensor_view(src, TMIX_U8, TMIX_CPU, 4, (int64_t[]){B, H, W, C});
    tmix_tensor gray = tmix_tensor_view(src, TMIX_U8, TMIX_CPU, 4, (int64_t[]){B, H, W, 1});
    tmix_tensor two = tmix_tensor_view(src, TMIX_U8, TMIX_CPU, 4, (int64_t[]){B, H, W, 2});
    tmix_tensor s3 = tmix_tensor_view(src, TMIX_U8, TMIX_CPU, 3, (int64_t[]){B, H, W * C});
    tmix_tensor ot = V4(out, B, C, OH, OW);
    tmix_tensor o_batch = V4(out, B - 1, C, OH, OW);
    tmix_tensor o_two = V4(out, B, 2, OH, OW);
    const test_buf outs[] = {{out, NO}};
    EXPECT_FAIL(tmix_preprocess(NULL, &ot, &st, crops, mean, std), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_preprocess(be, NULL, &st, crops, mean, std), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_preprocess(be, &ot, NULL, crops, mean, std), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_preprocess(be, &ot, &s3, crops, mean, std), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_preprocess(be, &o_batch, &st, crops, mean, std), TMIX_ESHAPE, op, outs);
    // 2 -> 3 channels, then 1 -> 2
    EXPECT_FAIL(tmix_preprocess(be, &ot, &two, crops, mean, std), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_preprocess(be, &o_two, &gray, crops, mean, std), TMIX_ESHAPE, op, outs);
    tmix_tensor bad = st;
    bad.dtype = TMIX_F32; // a float source
    EXPECT_FAIL(tmix_preprocess(be, &ot, &bad, crops, mean, std), TMIX_EDTYPE, op, outs);
    bad = as_u8(ot);
    EXPECT_FAIL(tmix_preprocess(be, &bad, &st, crops, mean, std), TMIX_EDTYPE, op, outs);
    bad = on_cuda(st);
    EXPECT_FAIL(tmix_preprocess(be, &ot, &bad, crops, mean, std), TMIX_EDEVICE, op, outs);
    EXPECT_FAIL(tmix_preprocess(be, &ot, &st, NULL, mean, std), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_preprocess(be, &ot, &st, crops, NULL, std), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_preprocess(be, &ot, &st, crops, mean, NULL), TMIX_EINVAL, op, outs);
    std[1] = 0;
    EXPECT_FAIL(tmix_preprocess(be, &ot, &st, crops, mean, std), TMIX_EINVAL, op, outs);
    std[1] = 0.25f;
    mean[2] = NAN;
    EXPECT_FAIL(tmix_preprocess(be, &ot, &st, crops, mean, std), TMIX_EINVAL, op, outs);
    mean[2] = 0.3f;
    CHECK_OK(tmix_preprocess(be, &ot, &st, crops, mean, std));
    // Sample 0 row 0 is y = -1, outside the image: it reads 0, normalised.
    CHECK(out[0] == (float)((0.0 - mean[0]) / std[0]));
    CHECK_OK(tmix_preprocess(be, &ot, &gray, crops, mean, std)); // gray replicated to 3
    return 0;
}

// encode_images on values whose encodings are known: half rounding (ties to even, overflow,
// a subnormal tie, -0, NaN) and pixels (a tie, both clamps, NaN), in both layouts.
static int test_encode_images_values(void)
{
    enum { C = 2, P = 4 };
    static float in[C * P] = {1.0f, 65520.0f, -0.0f, 1.00146484375f,  // 1 + 3 * 2^-11
                              1.00048828125f, 0x1p-25f, NAN, 65504.0f}; // 1 + 2^-11
    static const uint16_t half[C * P] = {0x3c00, 0x7c00, 0x8000, 0x3c02,
                                         0x3c00, 0x0000, 0x7e00, 0x7bff};
    static float out[C * P]; // room for the float32 encoding, and a float test_buf
    const float mean[C] = {0.5f, 0.5f}, std[C] = {0.25f, 0.25f};
    tmix_backend *be = cpu();
    const tmix_tensor it = V4(in, 1, C, 1, P);
    for (int nhwc = 0; nhwc < 2; nhwc++) {
        tmix_tensor ot = tmix_tensor_view(out, TMIX_U8, TMIX_CPU, 2, (int64_t[]){1, C * P * 2});
        CHECK_OK(tmix_encode_images(be, &ot, &it, (tmix_image_format){TMIX_IMAGE_F16, nhwc},
                                    NULL, NULL));
        const uint16_t *h = (const uint16_t *)out;
        for (int c = 0; c < C; c++)
            for (int p = 0; p < P; p++)
                CHECK(h[nhwc ? p * C + c : c * P + p] == half[c * P + p]);
        ot.shape[1] = C * P * 4;
        CHECK_OK(tmix_encode_images(be, &ot, &it, (tmix_image_format){TMIX_IMAGE_F32, nhwc},
                                    NULL, NULL));
        for (int c = 0; c < C; c++)
            for (int p = 0; p < P; p++)
                CHECK(memcmp(&out[nhwc ? p * C + c : c * P + p], &in[c * P + p], 4) == 0);
    }
    // Pixels: v * 63.75 + 127.5 for 0 (a tie, to 128), 1, -3 and 3 (clamped), NaN (0).
    static float px_in[5] = {0.0f, 1.0f, -3.0f, 3.0f, NAN};
    const uint8_t want[5] = {128, 191, 0, 255, 0};
    tmix_tensor pt = tmix_tensor_view(out, TMIX_U8, TMIX_CPU, 2, (int64_t[]){1, 5});
    const tmix_tensor pit = V4(px_in, 1, 1, 1, 5);
    CHECK_OK(tmix_encode_images(be, &pt, &pit,
                                (tmix_image_format){TMIX_IMAGE_U8, 0}, mean, std));
    CHECK(memcmp(out, want, sizeof want) == 0);
    return 0;
}

static int test_badinput_encode_images(void)
{
    const char *op = "encode_images";
    enum { B = 2, C = 3, H = 2, W = 3, N = B * C * H * W };
    static float in[N], out[N];
    const float mean[C] = {0.5f, 0.4f, 0.3f}, std[C] = {0.2f, 0.25f, 0.3f};
    const float bad_mean[C] = {0.5f, INFINITY, 0.3f};
    tmix_backend *be = cpu();
    const tmix_tensor it = V4(in, B, C, H, W);
    const tmix_image_format half = {TMIX_IMAGE_F16, 0}, px = {TMIX_IMAGE_U8, 1};
    tmix_tensor ot = tmix_tensor_view(out, TMIX_U8, TMIX_CPU, 2, (int64_t[]){B, C * H * W * 2});
    tmix_tensor o_f32 = ot, o_batch = ot, o_3d = ot;
    o_f32.shape[1] = C * H * W * 4 + 4; // a row too long by one float
    o_batch.shape[0] = B - 1;
    o_3d = tmix_tensor_view(out, TMIX_U8, TMIX_CPU, 3, (int64_t[]){B, C, H * W * 2});
    const test_buf outs[] = {{out, N}};
    EXPECT_FAIL(tmix_encode_images(NULL, &ot, &it, half, NULL, NULL), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_encode_images(be, NULL, &it, half, NULL, NULL), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_encode_images(be, &ot, NULL, half, NULL, NULL), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_encode_images(be, &ot, &it, (tmix_image_format){7, 0}, NULL, NULL),
                TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_encode_images(be, &o_f32, &it, (tmix_image_format){TMIX_IMAGE_F32, 0},
                                   NULL, NULL), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_encode_images(be, &o_batch, &it, half, NULL, NULL), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_encode_images(be, &o_3d, &it, half, NULL, NULL), TMIX_ESHAPE, op, outs);
    tmix_tensor bad = as_u8(it); // a byte input
    EXPECT_FAIL(tmix_encode_images(be, &ot, &bad, half, NULL, NULL), TMIX_EDTYPE, op, outs);
    bad = V4(out, B, C, H, W); // a float output
    bad.ndim = 2, bad.shape[1] = C * H * W / 2;
    EXPECT_FAIL(tmix_encode_images(be, &bad, &it, half, NULL, NULL), TMIX_EDTYPE, op, outs);
    bad = on_cuda(it);
    EXPECT_FAIL(tmix_encode_images(be, &ot, &bad, half, NULL, NULL), TMIX_EDEVICE, op, outs);
    tmix_tensor o_px = ot;
    o_px.shape[1] = C * H * W;
    EXPECT_FAIL(tmix_encode_images(be, &o_px, &it, px, NULL, std), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_encode_images(be, &o_px, &it, px, mean, NULL), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_encode_images(be, &o_px, &it, px, bad_mean, std), TMIX_EINVAL, op, outs);
    CHECK_OK(tmix_encode_images(be, &o_px, &it, px, mean, std));
    return 0;
}

static const test_case tests[] = {
    {"gradcheck.softmax_channel.grad_input", test_softmax_grad_input},
    {"gradcheck.softmax_channel.grad_tau", test_softmax_grad_tau},
    {"gradcheck.blend.grad_masks", test_blend_grad_masks},
    {"gradcheck.blend.grad_x", test_blend_grad_x},
    {"gradcheck.cross_entropy.grad_logits", test_cross_entropy_grad_logits},
    {"sgd.matches_formula", test_sgd_matches_formula},
    {"threads.softmax_channel", test_threads_softmax_channel},
    {"badinput.softmax_channel", test_badinput_softmax_channel},
    {"badinput.blend", test_badinput_blend},
    {"badinput.cross_entropy", test_badinput_cross_entropy},
    {"badinput.sgd", test_badinput_sgd},
    {"badinput.preprocess", test_badinput_preprocess},
    {"encode_images.values", test_encode_images_values},
    {"badinput.encode_images", test_badinput_encode_images},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
