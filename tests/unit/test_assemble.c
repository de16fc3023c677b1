// Unit tests of the ops that assemble networks (add, concat_channels, fill_channels,
// gather, cam, box_masks) on the CPU backend: finite-difference gradient checks, add in
// place, bit-identical results across thread counts, and bad input (exact error codes, a
// message naming the op and the bad entry of a host array, outputs left untouched).
#include <omp.h>
#include <string.h>

#include "harness.h"
#include "ops.h"

// Expects the last error message to contain `what` (the bad entry it must name).
#define CHECK_NAMES(what)                                                        \
    do {                                                                         \
        if (!strstr(tmix_last_error(), what)) {                                  \
            fprintf(stderr, "%s:%d: message '%s' does not name '%s'\n", __FILE__, \
                    __LINE__, tmix_last_error(), what);                          \
            return 1;                                                            \
        }                                                                        \
    } while (0)

// ---- gradient checks ----------------------------------------------------------------------

typedef struct {
    test_loss loss;
    tmix_tensor out, a, b;
    int c0;
} asm_problem;

static int add_fwd(test_loss *self)
{
    asm_problem *p = (asm_problem *)self;
    return tmix_add(cpu(), &p->out, &p->a, &p->b);
}

static int concat_fwd(test_loss *self)
{
    asm_problem *p = (asm_problem *)self; // a: in
    return tmix_concat_channels_forward(cpu(), &p->out, &p->a, p->c0);
}

// L = <a + b, r>: the gradient of either input is r, summed in with add (din += dout is
// tmix_add(din, din, dout)) onto a gradient that already holds something.
static int test_add_grad_input(void)
{
    enum { N = 2, C = 3, H = 4, W = 5, NUM = N * C * H * W };
    float a[NUM], b[NUM], out[NUM], r[NUM], da[NUM], db[NUM], before[NUM];
    fill_uniform(a, NUM, 1, -1, 1);
    fill_uniform(b, NUM, 2, -1, 1);
    fill_uniform(r, NUM, 3, -1, 1);
    fill_uniform(before, NUM, 4, -1, 1);
    int64_t s[4] = {N, C, H, W};
    asm_problem p = {.loss = {.forward = add_fwd, .out = out, .r = r, .n = NUM},
                     .out = tmix_f32_view(out, 4, s), .a = tmix_f32_view(a, 4, s),
                     .b = tmix_f32_view(b, 4, s)};
    tmix_tensor rt = tmix_f32_view(r, 4, s), dat = tmix_f32_view(da, 4, s);
    tmix_tensor dbt = tmix_f32_view(db, 4, s);
    memset(da, 0, sizeof da);
    memcpy(db, before, sizeof db);
    CHECK_OK(tmix_add(cpu(), &dat, &dat, &rt));
    CHECK_OK(tmix_add(cpu(), &dbt, &rt, &dbt)); // out aliasing b this time
    CHECK(gradcheck_loss("add da", a, NUM, da, &p.loss, 1e-2, 1e-4, 1e-3) == 0);
    for (int i = 0; i < NUM; i++)
        db[i] -= before[i]; // what add summed in
    CHECK(gradcheck_loss("add db", b, NUM, db, &p.loss, 1e-2, 1e-4, 1e-3) == 0);
    return 0;
}

// in (N, C, H, W) placed at channel c0 of out (N, Co, H, W); the channels around it hold
// other values, which the loss sees too but which do not depend on in.
static int test_concat_grad_input(void)
{
    enum { N = 2, C = 2, Co = 5, H = 3, W = 4, C0 = 2, NIN = N * C * H * W };
    enum { NOUT = N * Co * H * W };
    float in[NIN], out[NOUT], r[NOUT], din[NIN], first[NIN];
    fill_uniform(in, NIN, 5, -1, 1);
    fill_uniform(out, NOUT, 6, -1, 1);
    fill_uniform(r, NOUT, 7, -1, 1);
    int64_t si[4] = {N, C, H, W}, so[4] = {N, Co, H, W};
    asm_problem p = {.loss = {.forward = concat_fwd, .out = out, .r = r, .n = NOUT},
                     .out = tmix_f32_view(out, 4, so), .a = tmix_f32_view(in, 4, si),
                     .c0 = C0};
    tmix_tensor rt = tmix_f32_view(r, 4, so), dt = tmix_f32_view(din, 4, si);
    memset(din, 0, sizeof din);
    CHECK_OK(tmix_concat_channels_backward(cpu(), &dt, &rt, C0));
    CHECK(gradcheck_loss("concat_channels din", in, NIN, din, &p.loss, 1e-2, 1e-4, 1e-3) == 0);
    // Backward accumulates: a second call doubles the gradient, exactly.
    memcpy(first, din, sizeof din);
    CHECK_OK(tmix_concat_channels_backward(cpu(), &dt, &rt, C0));
    for (int i = 0; i < NIN; i++)
        CHECK(din[i] == 2 * first[i]);
    return 0;
}

// out may be a or b: the same sums as into a separate buffer.
static int test_add_in_place(void)
{
    enum { NUM = 1000 };
    static float a[NUM], b[NUM], want[NUM], x[NUM];
    fill_uniform(a, NUM, 8, -5, 5);
    fill_uniform(b, NUM, 9, -5, 5);
    tmix_tensor at = V1(a, NUM), bt = V1(b, NUM), wt = V1(want, NUM), xt = V1(x, NUM);
    CHECK_OK(tmix_add(cpu(), &wt, &at, &bt));
    for (int i = 0; i < NUM; i++)
        CHECK(want[i] == a[i] + b[i]);
    memcpy(x, a, sizeof x);
    CHECK_OK(tmix_add(cpu(), &xt, &xt, &bt));
    CHECK(memcmp(x, want, sizeof x) == 0);
    memcpy(x, b, sizeof x);
    CHECK_OK(tmix_add(cpu(), &xt, &at, &xt));
    CHECK(memcmp(x, want, sizeof x) == 0);
    return 0;
}

// ---- threads ------------------------------------------------------------------------------

enum { TN = 7, TC = 24, TH = 9, TW = 11, TJ = 10, TM = 9 };
enum { TFEAT = TN * TC * TH * TW, TCAM = TN * TH * TW, TCAT = TN * (TC + 3) * TH * TW };

// cam, concat + fill, gather and box_masks with the given thread count.
static int run_threaded(int threads, float *cam, float *cat, float *gathered, float *masks)
{
    static float f[TFEAT], w[TJ * TC], v[TN * 3];
    fill_uniform(f, TFEAT, 10, 0, 2);
    fill_uniform(w, TJ * TC, 11, -1, 1);
    fill_uniform(v, TN * 3, 12, 0, 1);
    const int64_t labels[TN] = {3, 9, 0, 3, 5, 1, 7};
    const int64_t index[TM] = {6, 0, 1, 1, 5, 2, 3, 4, 0};
    tmix_box boxes[TN];
    for (int b = 0; b < TN; b++)
        boxes[b] = (tmix_box){.y0 = b % 3, .x0 = b, .y1 = TH - b % 2, .x1 = TW - 1};
    tmix_backend *be = cpu();
    tmix_tensor ft = V4(f, TN, TC, TH, TW), wt = V2(w, TJ, TC), vt = V2(v, TN, 3);
    tmix_tensor ct = V4(cam, TN, 1, TH, TW), cat_t = V4(cat, TN, TC + 3, TH, TW);
    tmix_tensor gt = V4(gathered, TM, TC, TH, TW), mt = V4(masks, TN, 2, TH, TW);
    omp_set_num_threads(threads);
    CHECK_OK(tmix_cam_forward(be, &ct, &ft, &wt, labels));
    CHECK_OK(tmix_concat_channels_forward(be, &cat_t, &ft, 0));
    CHECK_OK(tmix_fill_channels(be, &cat_t, &vt, TC));
    CHECK_OK(tmix_gather(be, &gt, &ft, index));
    CHECK_OK(tmix_box_masks(be, &mt, boxes));
    return 0;
}

static int test_threads_assemble(void)
{
    static float c1[TCAM], c2[TCAM], k1[TCAT], k2[TCAT];
    static float g1[TM * TC * TH * TW], g2[TM * TC * TH * TW], m1[TN * 2 * TH * TW],
        m2[TN * 2 * TH * TW];
    CHECK(run_threaded(1, c1, k1, g1, m1) == 0);
    CHECK(run_threaded(2, c2, k2, g2, m2) == 0);
    CHECK(memcmp(c1, c2, sizeof c1) == 0);
    CHECK(memcmp(k1, k2, sizeof k1) == 0);
    CHECK(memcmp(g1, g2, sizeof g1) == 0);
    CHECK(memcmp(m1, m2, sizeof m1) == 0);
    return 0;
}

// ---- bad input ----------------------------------------------------------------------------

static int test_badinput_add(void)
{
    const char *op = "add";
    enum { NUM = 2 * 3 * 4 };
    float a[NUM], b[NUM], out[NUM], big[2 * NUM];
    fill_uniform(a, NUM, 13, -1, 1);
    fill_uniform(b, NUM, 14, -1, 1);
    tmix_backend *be = cpu();
    tmix_tensor at = V3(a, 2, 3, 4), bt = V3(b, 2, 3, 4), ot = V3(out, 2, 3, 4);
    tmix_tensor b_flat = V1(b, NUM), b_perm = V3(b, 2, 4, 3), o_small = V3(out, 2, 3, 3);
    tmix_tensor a_zero = V3(a, 2, 0, 4);
    const test_buf outs[] = {{out, NUM}};
    EXPECT_FAIL(tmix_add(NULL, &ot, &at, &bt), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_add(empty_backend(), &ot, &at, &bt), TMIX_ENOTSUP, op, outs);
    EXPECT_FAIL(tmix_add(be, NULL, &at, &bt), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_add(be, &ot, NULL, &bt), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_add(be, &ot, &at, NULL), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_add(be, &ot, &at, &b_flat), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_add(be, &ot, &at, &b_perm), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_add(be, &o_small, &at, &bt), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_add(be, &ot, &a_zero, &bt), TMIX_ESHAPE, op, outs);
    tmix_tensor bad = as_u8(bt);
    EXPECT_FAIL(tmix_add(be, &ot, &at, &bad), TMIX_EDTYPE, op, outs);
    bad = on_cuda(ot);
    EXPECT_FAIL(tmix_add(be, &bad, &at, &bt), TMIX_EDEVICE, op, outs);
    // out overlapping an input without being it
    const test_buf bigs[] = {{big, 2 * NUM}};
    tmix_tensor lo = V3(big, 2, 3, 4), hi = V3(big + 5, 2, 3, 4);
    EXPECT_FAIL(tmix_add(be, &hi, &lo, &bt), TMIX_EINVAL, op, bigs);
    CHECK_NAMES("overlaps a");
    EXPECT_FAIL(tmix_add(be, &lo, &at, &hi), TMIX_EINVAL, op, bigs);
    CHECK_NAMES("overlaps b");
    CHECK_OK(tmix_add(be, &ot, &at, &bt));
    CHECK(out[NUM - 1] == a[NUM - 1] + b[NUM - 1]);
    return 0;
}

static int test_badinput_concat_channels(void)
{
    enum { N = 2, C = 3, Co = 5, H = 4, W = 3, NIN = N * C * H * W, NOUT = N * Co * H * W };
    float in[NIN], out[NOUT], din[NIN], dout[NOUT];
    fill_uniform(in, NIN, 15, -1, 1);
    fill_uniform(dout, NOUT, 16, -1, 1);
    tmix_backend *be = cpu();
    tmix_tensor it = V4(in, N, C, H, W), ot = V4(out, N, Co, H, W);
    tmix_tensor dit = V4(din, N, C, H, W), dot_ = V4(dout, N, Co, H, W);
    tmix_tensor in3 = V3(in, N, C, H * W);
    tmix_tensor o_batch = V4(out, N + 1, Co - 2, H, W), o_size = V4(out, N, Co, W, H);
    tmix_tensor o_narrow = V4(out, N, 2, H, W), din_batch = V4(din, 1, C, H, W);
    {
        const char *op = "concat_channels_forward";
        const test_buf outs[] = {{out, NOUT}};
        EXPECT_FAIL(tmix_concat_channels_forward(NULL, &ot, &it, 0), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_concat_channels_forward(empty_backend(), &ot, &it, 0), TMIX_ENOTSUP,
                    op, outs);
        EXPECT_FAIL(tmix_concat_channels_forward(be, NULL, &it, 0), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_concat_channels_forward(be, &ot, NULL, 0), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_concat_channels_forward(be, &ot, &in3, 0), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_concat_channels_forward(be, &o_batch, &it, 0), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_concat_channels_forward(be, &o_size, &it, 0), TMIX_ESHAPE, op, outs);
        // in wider than out: no c0 fits
        EXPECT_FAIL(tmix_concat_channels_forward(be, &o_narrow, &it, 0), TMIX_ESHAPE, op, outs);
        // c0 out of range
        EXPECT_FAIL(tmix_concat_channels_forward(be, &ot, &it, -1), TMIX_EINVAL, op, outs);
        CHECK_NAMES("c0 is -1");
        EXPECT_FAIL(tmix_concat_channels_forward(be, &ot, &it, Co - C + 1), TMIX_EINVAL, op,
                    outs);
        CHECK_NAMES("c0 is 3");
        tmix_tensor bad = as_u8(it);
        EXPECT_FAIL(tmix_concat_channels_forward(be, &ot, &bad, 0), TMIX_EDTYPE, op, outs);
        bad = on_cuda(ot);
        EXPECT_FAIL(tmix_concat_channels_forward(be, &bad, &it, 0), TMIX_EDEVICE, op, outs);
        CHECK_OK(tmix_concat_channels_forward(be, &ot, &it, Co - C));
        // channels 0 and 1 left alone, 2..4 copied
        CHECK(out[0] == SENTINEL && out[2 * H * W] == in[0]);
    }
    {
        const char *op = "concat_channels_backward";
        const test_buf outs[] = {{din, NIN}};
        EXPECT_FAIL(tmix_concat_channels_backward(NULL, &dit, &dot_, 0), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_concat_channels_backward(empty_backend(), &dit, &dot_, 0),
                    TMIX_ENOTSUP, op, outs);
        EXPECT_FAIL(tmix_concat_channels_backward(be, NULL, &dot_, 0), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_concat_channels_backward(be, &dit, NULL, 0), TMIX_EINVAL, op, outs);
        EXPECT_FAIL(tmix_concat_channels_backward(be, &din_batch, &dot_, 0), TMIX_ESHAPE, op,
                    outs);
        EXPECT_FAIL(tmix_concat_channels_backward(be, &dit, &o_size, 0), TMIX_ESHAPE, op, outs);
        EXPECT_FAIL(tmix_concat_channels_backward(be, &dit, &o_narrow, 0), TMIX_ESHAPE, op,
                    outs);
        EXPECT_FAIL(tmix_concat_channels_backward(be, &dit, &dot_, 3), TMIX_EINVAL, op, outs);
        CHECK_NAMES("c0 is 3");
        EXPECT_FAIL(tmix_concat_channels_backward(be, &dit, &dot_, -2), TMIX_EINVAL, op, outs);
        tmix_tensor bad = as_u8(dot_);
        EXPECT_FAIL(tmix_concat_channels_backward(be, &dit, &bad, 0), TMIX_EDTYPE, op, outs);
        bad = on_cuda(dit);
        EXPECT_FAIL(tmix_concat_channels_backward(be, &bad, &dot_, 0), TMIX_EDEVICE, op, outs);
        memset(din, 0, sizeof din);
        CHECK_OK(tmix_concat_channels_backward(be, &dit, &dot_, 1));
        CHECK(din[0] == dout[H * W]);
    }
    return 0;
}

static int test_badinput_fill_channels(void)
{
    const char *op = "fill_channels";
    enum { N = 3, K = 2, Co = 4, H = 2, W = 5, NOUT = N * Co * H * W };
    float values[N * K], out[NOUT];
    fill_uniform(values, N * K, 17, 0, 1);
    tmix_backend *be = cpu();
    tmix_tensor vt = V2(values, N, K), ot = V4(out, N, Co, H, W);
    tmix_tensor v1 = V1(values, N * K), v_batch = V2(values, K, N);
    tmix_tensor o3 = V3(out, N, Co, H * W), o_narrow = V4(out, N, 1, H, W);
    const test_buf outs[] = {{out, NOUT}};
    EXPECT_FAIL(tmix_fill_channels(NULL, &ot, &vt, 0), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_fill_channels(empty_backend(), &ot, &vt, 0), TMIX_ENOTSUP, op, outs);
    EXPECT_FAIL(tmix_fill_channels(be, NULL, &vt, 0), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_fill_channels(be, &ot, NULL, 0), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_fill_channels(be, &ot, &v1, 0), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_fill_channels(be, &ot, &v_batch, 0), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_fill_channels(be, &o3, &vt, 0), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_fill_channels(be, &o_narrow, &vt, 0), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_fill_channels(be, &ot, &vt, 3), TMIX_EINVAL, op, outs);
    CHECK_NAMES("c0 is 3");
    EXPECT_FAIL(tmix_fill_channels(be, &ot, &vt, -1), TMIX_EINVAL, op, outs);
    tmix_tensor bad = as_u8(vt);
    EXPECT_FAIL(tmix_fill_channels(be, &ot, &bad, 0), TMIX_EDTYPE, op, outs);
    bad = on_cuda(vt);
    EXPECT_FAIL(tmix_fill_channels(be, &ot, &bad, 0), TMIX_EDEVICE, op, outs);
    CHECK_OK(tmix_fill_channels(be, &ot, &vt, 2));
    // sample 1: channels 0, 1 untouched, 2 and 3 constant
    const float *s1 = out + Co * H * W;
    CHECK(s1[0] == SENTINEL && s1[2 * H * W] == values[K] && s1[4 * H * W - 1] == values[K + 1]);
    return 0;
}

static int test_badinput_gather(void)
{
    const char *op = "gather";
    enum { N = 4, M = 3, R = 6 };
    float in[N * R], out[M * R];
    fill_uniform(in, N * R, 18, -1, 1);
    tmix_backend *be = cpu();
    tmix_tensor it = V3(in, N, 2, 3), ot = V3(out, M, 2, 3);
    tmix_tensor o_trail = V3(out, M, 3, 2), o2 = V2(out, M, R);
    int64_t index[M] = {3, 0, 2};
    const test_buf outs[] = {{out, M * R}};
    EXPECT_FAIL(tmix_gather(NULL, &ot, &it, index), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_gather(empty_backend(), &ot, &it, index), TMIX_ENOTSUP, op, outs);
    EXPECT_FAIL(tmix_gather(be, NULL, &it, index), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_gather(be, &ot, NULL, index), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_gather(be, &ot, &it, NULL), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_gather(be, &o_trail, &it, index), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_gather(be, &o2, &it, index), TMIX_ESHAPE, op, outs);
    tmix_tensor bad = as_u8(it);
    EXPECT_FAIL(tmix_gather(be, &ot, &bad, index), TMIX_EDTYPE, op, outs);
    bad = on_cuda(ot);
    EXPECT_FAIL(tmix_gather(be, &bad, &it, index), TMIX_EDEVICE, op, outs);
    // Every entry is checked, the first bad one named.
    index[2] = N;
    EXPECT_FAIL(tmix_gather(be, &ot, &it, index), TMIX_EINVAL, op, outs);
    CHECK_NAMES("index[2] is 4");
    index[1] = -1;
    EXPECT_FAIL(tmix_gather(be, &ot, &it, index), TMIX_EINVAL, op, outs);
    CHECK_NAMES("index[1] is -1");
    index[1] = 0;
    index[2] = 2;
    CHECK_OK(tmix_gather(be, &ot, &it, index));
    CHECK(memcmp(out, in + 3 * R, R * sizeof *out) == 0);
    CHECK(memcmp(out + 2 * R, in + 2 * R, R * sizeof *out) == 0);
    return 0;
}

static int test_badinput_cam(void)
{
    const char *op = "cam_forward";
    enum { N = 3, C = 4, H = 2, W = 3, J = 5 };
    float f[N * C * H * W], w[J * C], out[N * H * W];
    fill_uniform(f, N * C * H * W, 19, 0, 1);
    fill_uniform(w, J * C, 20, -1, 1);
    tmix_backend *be = cpu();
    tmix_tensor ft = V4(f, N, C, H, W), wt = V2(w, J, C), ot = V4(out, N, 1, H, W);
    tmix_tensor f3 = V3(f, N, C, H * W), w_chan = V2(w, C, J), w3 = V3(w, J, C, 1);
    tmix_tensor o_two = V4(out, N, 2, H, W - 1), o_batch = V4(out, 1, 1, H, W);
    int64_t labels[N] = {4, 0, 2};
    const test_buf outs[] = {{out, N * H * W}};
    EXPECT_FAIL(tmix_cam_forward(NULL, &ot, &ft, &wt, labels), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_cam_forward(empty_backend(), &ot, &ft, &wt, labels), TMIX_ENOTSUP, op,
                outs);
    EXPECT_FAIL(tmix_cam_forward(be, NULL, &ft, &wt, labels), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_cam_forward(be, &ot, NULL, &wt, labels), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_cam_forward(be, &ot, &ft, NULL, labels), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_cam_forward(be, &ot, &ft, &wt, NULL), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_cam_forward(be, &ot, &f3, &wt, labels), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_cam_forward(be, &ot, &ft, &w_chan, labels), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_cam_forward(be, &ot, &ft, &w3, labels), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_cam_forward(be, &o_two, &ft, &wt, labels), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_cam_forward(be, &o_batch, &ft, &wt, labels), TMIX_ESHAPE, op, outs);
    tmix_tensor bad = as_u8(wt);
    EXPECT_FAIL(tmix_cam_forward(be, &ot, &ft, &bad, labels), TMIX_EDTYPE, op, outs);
    bad = on_cuda(ft);
    EXPECT_FAIL(tmix_cam_forward(be, &ot, &bad, &wt, labels), TMIX_EDEVICE, op, outs);
    labels[2] = J;
    EXPECT_FAIL(tmix_cam_forward(be, &ot, &ft, &wt, labels), TMIX_EINVAL, op, outs);
    CHECK_NAMES("labels[2] is 5");
    labels[2] = 2;
    labels[1] = -3;
    EXPECT_FAIL(tmix_cam_forward(be, &ot, &ft, &wt, labels), TMIX_EINVAL, op, outs);
    CHECK_NAMES("labels[1] is -3");
    labels[1] = 0;
    CHECK_OK(tmix_cam_forward(be, &ot, &ft, &wt, labels));
    // sample 0, pixel 0: the dot product of class 4's weights with the channels there
    double want = 0;
    for (int c = 0; c < C; c++)
        want += (double)w[4 * C + c] * f[c * H * W];
    CHECK(out[0] == (float)want);
    return 0;
}

static int test_badinput_box_masks(void)
{
    const char *op = "box_masks";
    enum { B = 3, H = 4, W = 6, NUM = B * 2 * H * W };
    float masks[NUM];
    tmix_backend *be = cpu();
    tmix_tensor mt = V4(masks, B, 2, H, W), m3 = V4(masks, B, 3, H, W - 2);
    tmix_tensor m_flat = V3(masks, B, 2, H * W);
    tmix_box boxes[B] = {{0, 0, 4, 6}, {1, 2, 3, 5}, {2, 2, 2, 2}};
    const test_buf outs[] = {{masks, NUM}};
    EXPECT_FAIL(tmix_box_masks(NULL, &mt, boxes), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_box_masks(empty_backend(), &mt, boxes), TMIX_ENOTSUP, op, outs);
    EXPECT_FAIL(tmix_box_masks(be, NULL, boxes), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_box_masks(be, &mt, NULL), TMIX_EINVAL, op, outs);
    EXPECT_FAIL(tmix_box_masks(be, &m3, boxes), TMIX_ESHAPE, op, outs);
    EXPECT_FAIL(tmix_box_masks(be, &m_flat, boxes), TMIX_ESHAPE, op, outs);
    tmix_tensor bad = as_u8(mt);
    EXPECT_FAIL(tmix_box_masks(be, &bad, boxes), TMIX_EDTYPE, op, outs);
    bad = on_cuda(mt);
    EXPECT_FAIL(tmix_box_masks(be, &bad, boxes), TMIX_EDEVICE, op, outs);
    // Each way out of bounds, always in box 1 or 2 so that box 0 is seen to pass.
    const tmix_box faults[] = {
        {-1, 0, 2, 2}, // y0 < 0
        {0, -1, 2, 2}, // x0 < 0
        {0, 0, 5, 2},  // y1 > H
        {0, 0, 2, 7},  // x1 > W
        {3, 0, 2, 2},  // y0 > y1
        {0, 3, 2, 2},  // x0 > x1
    };
    for (int i = 0; i < (int)COUNT(faults); i++) {
        int at = 1 + i % 2;
        tmix_box keep = boxes[at];
        boxes[at] = faults[i];
        EXPECT_FAIL(tmix_box_masks(be, &mt, boxes), TMIX_EINVAL, op, outs);
        CHECK_NAMES(at == 1 ? "boxes[1]" : "boxes[2]");
        boxes[at] = keep;
    }
    CHECK_OK(tmix_box_masks(be, &mt, boxes));
    // box 1 covers rows 1, 2 and columns 2..4; box 2 is empty
    const float *b1 = masks + 2 * H * W;
    CHECK(b1[H * W + 1 * W + 2] == 1 && b1[1 * W + 2] == 0);
    CHECK(b1[H * W + 2 * W + 5] == 0 && b1[2 * W + 5] == 1);
    const float *b2 = masks + 4 * H * W;
    CHECK(all_const(b2, H * W, 1) && all_const(b2 + H * W, H * W, 0));
    return 0;
}

static const test_case tests[] = {
    {"gradcheck.add.grad_input", test_add_grad_input},
    {"gradcheck.concat_channels.grad_input", test_concat_grad_input},
    {"add.in_place", test_add_in_place},
    {"threads.assemble", test_threads_assemble},
    {"badinput.add", test_badinput_add},
    {"badinput.concat_channels", test_badinput_concat_channels},
    {"badinput.fill_channels", test_badinput_fill_channels},
    {"badinput.gather", test_badinput_gather},
    {"badinput.cam", test_badinput_cam},
    {"badinput.box_masks", test_badinput_box_masks},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
