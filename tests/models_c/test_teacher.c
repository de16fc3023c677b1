// The teacher on the CPU backend, from cifar_resnet20 files written here with random weights:
// loading and every kind of bad file (asserting the code and that the message names the file
// and the tensor or key), F32/F16/BF16 weights, the input gradient against finite
// differences, CAMs, and changing batch shapes. Parity with PyTorch for every architecture is
// tests/models/zoo_parity.py.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "ops.h"
#include "safetensors.h"
#include "teacher.h"

// ---- writing cifar_resnet20 teacher files --------------------------------------------------

typedef struct {
    int in_channels, classes;
    tmix_st_dtype dtype; // of the weights: F32, F16, BF16 or I64 (truncated)
    const char *drop;    // a tensor left out
    const char *extra;   // an extra tensor, shape (4)
    const char *reshape; // a tensor written with its first dimension one larger
    const char *poison;  // a tensor whose first value is replaced by poison_value
    float poison_value;
    const char *meta[16]; // metadata: key, value pairs up to a NULL key
    bool no_arch;         // write no arch (else cifar_resnet20 unless meta has one)
} spec;

typedef struct {
    tmix_st_writer *w;
    const spec *s;
    uint64_t seed;
    int rc;
} file_writer;

// The bits of f as a F16 / BF16: exact for the values put() writes (few significant bits).
static uint16_t half_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    uint16_t sign = (uint16_t)((b >> 16) & 0x8000);
    if ((b & 0x7fffffff) == 0)
        return sign;
    int e = (int)((b >> 23) & 0xff) - 127 + 15;
    return (uint16_t)(sign | (unsigned)e << 10 | ((b >> 13) & 0x3ff));
}

static uint16_t bf16_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return (uint16_t)(b >> 16);
}

// Writes tensor `name` with values k * unit, k drawn uniformly from [lo, hi]: with |k| <= 24
// and unit a power of two, F16 and BF16 hold them exactly.
static void put(file_writer *f, const char *name, int ndim, const int64_t *shape, int lo, int hi,
                float unit)
{
    if (f->rc < 0 || (f->s->drop && strcmp(f->s->drop, name) == 0))
        return;
    int64_t dims[4];
    memcpy(dims, shape, (size_t)ndim * sizeof *dims);
    if (f->s->reshape && strcmp(f->s->reshape, name) == 0)
        dims[0]++;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= dims[i];
    float *v = malloc((size_t)n * sizeof *v);
    uint16_t *h = malloc((size_t)n * sizeof *h);
    int64_t *q = malloc((size_t)n * sizeof *q);
    fill_uniform(v, n, ++f->seed, 0, 1);
    for (int64_t i = 0; i < n; i++) {
        int k = lo + (int)(v[i] * (float)(hi - lo + 1));
        v[i] = (float)(k > hi ? hi : k) * unit;
    }
    if (f->s->poison && strcmp(f->s->poison, name) == 0)
        v[0] = f->s->poison_value;
    const void *data = v;
    if (f->s->dtype == TMIX_ST_F16 || f->s->dtype == TMIX_ST_BF16) {
        for (int64_t i = 0; i < n; i++)
            h[i] = f->s->dtype == TMIX_ST_F16 ? half_bits(v[i]) : bf16_bits(v[i]);
        data = h;
    } else if (f->s->dtype == TMIX_ST_I64) {
        for (int64_t i = 0; i < n; i++)
            q[i] = (int64_t)v[i];
        data = q;
    }
    f->rc = tmix_st_writer_add(f->w, name, f->s->dtype, ndim, dims, data);
    free(v);
    free(h);
    free(q);
}

// Weights uniform in about ±sqrt(3 / fan_in), so that activations stay near 1 in size.
static void put_conv(file_writer *f, const char *name, int oc, int ic)
{
    float unit = sqrtf(3.0f / (float)(ic * 9)) / 8;
    unit = exp2f(roundf(log2f(unit))); // a power of two: k * unit stays exact
    put(f, name, 4, (int64_t[]){oc, ic, 3, 3}, -8, 8, unit);
}

static void put_bn(file_writer *f, const char *prefix, int c)
{
    char name[96];
    const int64_t shape[1] = {c};
    snprintf(name, sizeof name, "%s.weight", prefix);
    put(f, name, 1, shape, 8, 24, 1.0f / 16); // gamma in [0.5, 1.5]
    snprintf(name, sizeof name, "%s.bias", prefix);
    put(f, name, 1, shape, -8, 8, 1.0f / 64);
    snprintf(name, sizeof name, "%s.running_mean", prefix);
    put(f, name, 1, shape, -8, 8, 1.0f / 64);
    snprintf(name, sizeof name, "%s.running_var", prefix);
    put(f, name, 1, shape, 8, 24, 1.0f / 16);
    // PyTorch saves this counter; teachers ignore it.
    snprintf(name, sizeof name, "%s.num_batches_tracked", prefix);
    const int64_t count = 7;
    if (f->rc == 0)
        f->rc = tmix_st_writer_add(f->w, name, TMIX_ST_I64, 0, NULL, &count);
}

// Writes the state_dict of akamaster's resnet20 as the spec says, with metadata arch
// cifar_resnet20 unless the spec's metadata says otherwise.
static int write_teacher(const char *path, const spec *s)
{
    file_writer f = {.s = s, .seed = 1000};
    if (!path || tmix_st_writer_new(&f.w) < 0)
        return 1;
    put_conv(&f, "conv1.weight", 16, s->in_channels);
    put_bn(&f, "bn1", 16);
    int in = 16;
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < 3; i++) {
            char name[96];
            int planes = 16 << l;
            snprintf(name, sizeof name, "layer%d.%d.conv1.weight", l + 1, i);
            put_conv(&f, name, planes, in);
            snprintf(name, sizeof name, "layer%d.%d.bn1", l + 1, i);
            put_bn(&f, name, planes);
            snprintf(name, sizeof name, "layer%d.%d.conv2.weight", l + 1, i);
            put_conv(&f, name, planes, planes);
            snprintf(name, sizeof name, "layer%d.%d.bn2", l + 1, i);
            put_bn(&f, name, planes);
            in = planes;
        }
    put(&f, "linear.weight", 2, (int64_t[]){s->classes, 64}, -8, 8, 1.0f / 32);
    put(&f, "linear.bias", 1, (int64_t[]){s->classes}, -8, 8, 1.0f / 64);
    if (s->extra)
        put(&f, s->extra, 1, (int64_t[]){4}, -8, 8, 1.0f / 64);
    bool has_arch = false;
    for (int i = 0; s->meta[i] && f.rc == 0; i += 2) {
        has_arch |= strcmp(s->meta[i], "arch") == 0;
        f.rc = tmix_st_writer_meta(f.w, s->meta[i], s->meta[i + 1]);
    }
    if (!has_arch && !s->no_arch && f.rc == 0)
        f.rc = tmix_st_writer_meta(f.w, "arch", "cifar_resnet20");
    if (f.rc == 0)
        f.rc = tmix_st_writer_save(f.w, path);
    tmix_st_writer_free(f.w);
    if (f.rc < 0)
        fprintf(stderr, "writing %s: %s\n", path, tmix_last_error());
    return f.rc < 0;
}

static spec plain(void)
{
    return (spec){.in_channels = 3, .classes = 10, .dtype = TMIX_ST_F32};
}

// Loading the file of spec s must fail with code, and the message must name the file and
// hold `what` (the tensor or key).
static int expect_load_error(const spec *s, int code, const char *what)
{
    const char *path = tmp_path("bad.safetensors");
    CHECK(write_teacher(path, s) == 0);
    tmix_teacher *t = (tmix_teacher *)&t; // must be cleared on failure
    int rc = check_err_(tmix_teacher_load(&t, cpu(), path), code, "tmix_teacher_load", __FILE__,
                        __LINE__);
    const char *msg = tmix_last_error();
    bool named = strstr(msg, path) && strstr(msg, what);
    tmp_remove(path);
    CHECK(rc == 0);
    CHECK(t == NULL);
    if (!named) {
        fprintf(stderr, "message '%s' does not name the file and '%s'\n", msg, what);
        return 1;
    }
    return 0;
}

// ---- running a teacher ---------------------------------------------------------------------

enum { MAXB = 4, MAXC = 3, MAXHW = 16 * 16, MAXJ = 10 };

typedef struct {
    test_loss loss;
    tmix_teacher *t;
    tmix_tensor x, logits, dlogits, dx, cams;
    float xs[MAXB * MAXC * MAXHW], y[MAXB * MAXJ], r[MAXB * MAXJ], dxs[MAXB * MAXC * MAXHW];
    float cm[MAXB * MAXHW];
} run;

static int run_forward(test_loss *self)
{
    run *p = (run *)self;
    return tmix_teacher_forward(p->t, &p->logits, &p->x);
}

// Views for a batch of B images of size hw x hw of the teacher's channels, random x and r.
static void run_setup(run *p, tmix_teacher *t, int64_t B, int64_t hw, uint64_t seed)
{
    const tmix_teacher_info *info = tmix_teacher_info_get(t);
    const int64_t C = info->in_channels, J = info->num_classes;
    memset(p, 0, sizeof *p);
    p->t = t;
    p->x = V4(p->xs, B, C, hw, hw);
    p->dx = V4(p->dxs, B, C, hw, hw);
    p->logits = V2(p->y, B, J);
    p->dlogits = V2(p->r, B, J);
    p->cams = V4(p->cm, B, 1, hw, hw);
    fill_uniform(p->xs, B * C * hw * hw, seed, -1, 1);
    fill_uniform(p->r, B * J, seed + 1, -1, 1);
    p->loss = (test_loss){run_forward, p->y, p->r, B * J, false};
}

static run r1, r2;

static int load_plain(tmix_teacher **t, const spec *s)
{
    const char *path = tmp_path("teacher.safetensors");
    CHECK(write_teacher(path, s) == 0);
    int rc = tmix_teacher_load(t, cpu(), path);
    if (rc < 0)
        fprintf(stderr, "load: %s\n", tmix_last_error());
    tmp_remove(path);
    return rc < 0;
}

// ---- tests ---------------------------------------------------------------------------------

static int test_load_ok(void)
{
    spec s = plain();
    const char *meta[] = {
        "format", "tmix-teacher",       "num_classes", "10",          "in_channels", "3",
        "mean",   "[0.5, 0.25, 0.125]", "std",         "[2, 1, 0.5]", "dataset",     "cifar10",
        NULL};
    _Static_assert(sizeof meta <= sizeof s.meta, "spec.meta holds them");
    memcpy(s.meta, meta, sizeof meta);
    tmix_teacher *t;
    CHECK(load_plain(&t, &s) == 0);
    const tmix_teacher_info *info = tmix_teacher_info_get(t);
    CHECK(strcmp(info->arch, "cifar_resnet20") == 0);
    CHECK(info->num_classes == 10 && info->in_channels == 3 && info->feature_channels == 64);
    CHECK(info->has_norm && info->mean[0] == 0.5f && info->mean[2] == 0.125f);
    CHECK(info->std[0] == 2.0f && info->std[2] == 0.5f);
    CHECK(strcmp(info->dataset, "cifar10") == 0);
    run_setup(&r1, t, 2, 8, 7);
    CHECK_OK(tmix_teacher_forward(t, &r1.logits, &r1.x));
    for (int i = 0; i < 20; i++)
        CHECK(isfinite(r1.y[i]));
    CHECK(r1.y[0] != r1.y[1] && r1.y[0] != r1.y[10]);
    tmix_teacher_free(t);

    // One input channel, no optional metadata.
    s = plain();
    s.in_channels = 1;
    s.classes = 3;
    CHECK(load_plain(&t, &s) == 0);
    info = tmix_teacher_info_get(t);
    CHECK(info->in_channels == 1 && info->num_classes == 3 && !info->has_norm);
    CHECK(info->dataset[0] == '\0');
    run_setup(&r1, t, 2, 8, 7);
    CHECK_OK(tmix_teacher_forward(t, &r1.logits, &r1.x));
    tmix_teacher_free(t);

    int n = 0;
    while (tmix_teacher_archs[n])
        n++;
    CHECK(n == 7 && strcmp(tmix_teacher_archs[6], "cifar_resnet20") == 0);
    return 0;
}

static int test_missing_tensor(void)
{
    spec s = plain();
    s.drop = "layer2.1.bn2.running_var";
    CHECK(expect_load_error(&s, TMIX_EFORMAT, "missing tensor 'layer2.1.bn2.running_var'") == 0);
    s.drop = "linear.weight"; // read before the build, to size it
    CHECK(expect_load_error(&s, TMIX_EFORMAT, "missing tensor 'linear.weight'") == 0);
    s.drop = "conv1.weight";
    CHECK(expect_load_error(&s, TMIX_EFORMAT, "missing tensor 'conv1.weight'") == 0);
    return 0;
}

static int test_extra_tensor(void)
{
    spec s = plain();
    s.extra = "layer2.0.shortcut.0.weight"; // option B's shortcut in an option A network
    CHECK(expect_load_error(&s, TMIX_EFORMAT,
                            "unexpected tensor 'layer2.0.shortcut.0.weight' for arch "
                            "cifar_resnet20") == 0);
    return 0;
}

static int test_wrong_shape(void)
{
    spec s = plain();
    s.reshape = "layer3.2.conv2.weight";
    CHECK(expect_load_error(
              &s, TMIX_ESHAPE,
              "tensor 'layer3.2.conv2.weight' is (65,64,3,3), expected (64,64,3,3)") == 0);
    s.reshape = "linear.bias";
    CHECK(expect_load_error(&s, TMIX_ESHAPE, "tensor 'linear.bias' is (11), expected (10)") == 0);
    s = plain();
    s.in_channels = 2;
    CHECK(expect_load_error(&s, TMIX_ESHAPE, "'conv1.weight'") == 0);
    return 0;
}

static int test_unknown_arch(void)
{
    spec s = plain();
    s.meta[0] = "arch";
    s.meta[1] = "resnet19";
    CHECK(expect_load_error(&s, TMIX_EFORMAT, "unknown arch 'resnet19'") == 0);
    CHECK(strstr(tmix_last_error(), "cifar_resnet20")); // the message lists the zoo
    s.meta[1] = "resnet18";                             // a zoo arch, but not this file's
    CHECK(expect_load_error(&s, TMIX_EFORMAT, "missing tensor 'fc.weight' for arch resnet18") == 0);
    s.meta[0] = "format";
    s.meta[1] = "tmix-module";
    CHECK(expect_load_error(&s, TMIX_EFORMAT, "format is 'tmix-module'") == 0);
    s = plain();
    s.no_arch = true;
    CHECK(expect_load_error(&s, TMIX_EFORMAT, "metadata has no 'arch'") == 0);
    return 0;
}

static int test_metadata(void)
{
    static const struct {
        const char *key, *value, *what;
    } cases[] = {
        {"num_classes", "100", "num_classes=100 but tensor 'linear.weight' has 10 rows"},
        {"num_classes", "ten", "num_classes 'ten'"},
        {"in_channels", "1", "in_channels=1 but tensor 'conv1.weight' has 3"},
        {"mean", "[0.5, 0.5]", "mean"}, // std is missing as well: either is named
        {"mean", "[0.5, 0.5, 0.5]", "no 'std'"},
        {"std", "[1, 1, 1]", "no 'mean'"},
    };
    for (int i = 0; i < (int)COUNT(cases); i++) {
        spec s = plain();
        s.meta[0] = cases[i].key;
        s.meta[1] = cases[i].value;
        CHECK(expect_load_error(&s, TMIX_EFORMAT, cases[i].what) == 0);
    }
    spec s = plain();
    const char *bad_std[] = {"mean", "[0, 0, 0]", "std", "[1, 0, 1]", NULL};
    _Static_assert(sizeof bad_std <= sizeof s.meta, "spec.meta holds them");
    memcpy(s.meta, bad_std, sizeof bad_std);
    CHECK(expect_load_error(&s, TMIX_EFORMAT, "std '[1, 0, 1]'") == 0);
    return 0;
}

static int test_bad_values(void)
{
    spec s = plain();
    s.poison = "layer1.0.conv2.weight";
    s.poison_value = NAN;
    CHECK(expect_load_error(&s, TMIX_EFORMAT, "'layer1.0.conv2.weight' holds a non-finite") == 0);
    s.poison = "layer2.2.bn1.running_var";
    s.poison_value = -1;
    CHECK(expect_load_error(&s, TMIX_EFORMAT, "'layer2.2.bn1.running_var' has a negative") == 0);
    s = plain();
    s.dtype = TMIX_ST_I64;
    CHECK(expect_load_error(&s, TMIX_EDTYPE, "'conv1.weight'") == 0);
    return 0;
}

static int test_missing_file(void)
{
    tmix_teacher *t;
    CHECK_ERR(tmix_teacher_load(&t, cpu(), "/nonexistent/teacher.safetensors"), TMIX_ENOENT);
    CHECK(strstr(tmix_last_error(), "/nonexistent/teacher.safetensors"));
    return 0;
}

// The same weights stored as F32, F16 and BF16 give bitwise the same logits.
static int test_dtypes(void)
{
    static const tmix_st_dtype dtypes[] = {TMIX_ST_F32, TMIX_ST_F16, TMIX_ST_BF16};
    float logits[3][2 * 10];
    for (int i = 0; i < 3; i++) {
        spec s = plain();
        s.dtype = dtypes[i];
        tmix_teacher *t;
        CHECK(load_plain(&t, &s) == 0);
        run_setup(&r1, t, 2, 8, 11);
        CHECK_OK(tmix_teacher_forward(t, &r1.logits, &r1.x));
        memcpy(logits[i], r1.y, sizeof logits[i]);
        tmix_teacher_free(t);
    }
    CHECK(memcmp(logits[0], logits[1], sizeof logits[0]) == 0);
    CHECK(memcmp(logits[0], logits[2], sizeof logits[0]) == 0);
    return 0;
}

// The input gradient along K random directions: x = x0 + sum_k c[k] v[k], so that
// dL/dc[k] = <dx, v[k]>. The network is piecewise linear: a step must be small enough to
// cross few ReLU kinks, yet the float32 forward's rounding (about 1e-6 of the loss) divided
// by the step must stay below the tolerance. Directions, each summing many pixels, and one
// 4x4 image (few ReLUs to cross) leave room between the two at h = 1e-4.
enum { K = 16, GN = 1 * 3 * 4 * 4 };

typedef struct {
    run r;
    float x0[GN], v[K][GN], c[K], dc[K];
} directions;

static directions dirs;

static int directions_forward(test_loss *self)
{
    directions *d = (directions *)self;
    for (int i = 0; i < GN; i++) {
        double x = d->x0[i];
        for (int k = 0; k < K; k++)
            x += (double)d->c[k] * d->v[k][i];
        d->r.xs[i] = (float)x;
    }
    return run_forward(self);
}

static int test_gradcheck(void)
{
    spec s = plain();
    tmix_teacher *t;
    CHECK(load_plain(&t, &s) == 0);
    run_setup(&dirs.r, t, 1, 4, 21);
    dirs.r.loss.forward = directions_forward;
    memcpy(dirs.x0, dirs.r.xs, sizeof dirs.x0);
    fill_uniform(&dirs.v[0][0], K * GN, 22, -1, 1);
    memset(dirs.c, 0, sizeof dirs.c);
    CHECK_OK(directions_forward(&dirs.r.loss));
    CHECK_OK(tmix_teacher_backward(t, &dirs.r.dx, &dirs.r.dlogits));
    for (int k = 0; k < K; k++)
        dirs.dc[k] = (float)dot(dirs.r.dxs, dirs.v[k], GN);
    int rc = gradcheck_loss("teacher dx along directions", dirs.c, K, dirs.dc, &dirs.r.loss, 1e-4,
                            5e-3, 2e-2);

    // Backward accumulates into dx: a second pass adds the same again.
    float once[GN];
    memcpy(once, dirs.r.dxs, sizeof once);
    CHECK_OK(directions_forward(&dirs.r.loss));
    CHECK_OK(tmix_teacher_backward(t, &dirs.r.dx, &dirs.r.dlogits));
    float scale = 0;
    for (int i = 0; i < GN; i++)
        scale = fmaxf(scale, fabsf(once[i]));
    for (int i = 0; i < GN; i++)
        CHECK(fabsf(dirs.r.dxs[i] - 2 * once[i]) <= 1e-5f * scale);
    tmix_teacher_free(t);
    CHECK(rc == 0);
    return 0;
}

// Per image: every value in [0, 1]; min 0 and max 1 when the features are 2x2 and the image
// 8x8 (bilinear upsampling then keeps the four feature values at the corners).
static int test_cams(void)
{
    spec s = plain();
    tmix_teacher *t;
    CHECK(load_plain(&t, &s) == 0);
    const int64_t labels[4] = {0, 3, 9, 3};
    for (int hw = 8; hw <= 16; hw += 8) {
        run_setup(&r1, t, 4, hw, 31);
        CHECK_OK(tmix_teacher_forward(t, &r1.logits, &r1.x));
        CHECK_OK(tmix_teacher_cams(t, &r1.cams, labels));
        for (int b = 0; b < 4; b++) {
            float lo = INFINITY, hi = -INFINITY;
            for (int i = 0; i < hw * hw; i++) {
                float v = r1.cm[b * hw * hw + i];
                lo = fminf(lo, v);
                hi = fmaxf(hi, v);
            }
            CHECK(lo >= 0 && hi <= 1);
            if (hw == 8)
                CHECK(lo == 0 && hi == 1);
        }
    }
    // Another label gives another map.
    float first[4 * 64];
    run_setup(&r1, t, 4, 8, 31);
    CHECK_OK(tmix_teacher_forward(t, &r1.logits, &r1.x));
    CHECK_OK(tmix_teacher_cams(t, &r1.cams, labels));
    memcpy(first, r1.cm, sizeof first);
    CHECK_OK(tmix_teacher_cams(t, &r1.cams, (const int64_t[]){1, 3, 9, 3}));
    CHECK(memcmp(first, r1.cm, 64 * sizeof(float)) != 0);
    CHECK(memcmp(first + 64, r1.cm + 64, 3 * 64 * sizeof(float)) == 0);
    tmix_teacher_free(t);
    return 0;
}

// A shared teacher computes what its source does, interleaved with it (activations of its
// own, weights borrowed), and freeing it leaves the source's weights alone.
static int test_share(void)
{
    spec s = plain();
    tmix_teacher *t, *u;
    CHECK(load_plain(&t, &s) == 0);
    CHECK_OK(tmix_teacher_share(&u, t, cpu()));
    const int64_t labels[4] = {2, 7, 0, 5};
    run_setup(&r1, t, 4, 8, 41);
    run_setup(&r2, u, 4, 8, 43);
    memcpy(r2.xs, r1.xs, sizeof r1.xs);
    CHECK_OK(tmix_teacher_forward(t, &r1.logits, &r1.x));
    CHECK_OK(tmix_teacher_forward(u, &r2.logits, &r2.x));
    CHECK_OK(tmix_teacher_cams(u, &r2.cams, labels));
    CHECK_OK(tmix_teacher_cams(t, &r1.cams, labels)); // t's activations survived u's forward
    CHECK_OK(tmix_teacher_backward(u, &r2.dx, &r2.dlogits));
    memcpy(r1.r, r2.r, sizeof r1.r);
    CHECK_OK(tmix_teacher_backward(t, &r1.dx, &r1.dlogits));
    CHECK(memcmp(r1.y, r2.y, 4 * 10 * sizeof(float)) == 0);
    CHECK(memcmp(r1.cm, r2.cm, 4 * 64 * sizeof(float)) == 0);
    CHECK(memcmp(r1.dxs, r2.dxs, 4 * 3 * 64 * sizeof(float)) == 0);
    CHECK(tmix_teacher_info_get(u)->num_classes == 10);
    tmix_teacher_free(u);
    CHECK_OK(tmix_teacher_forward(t, &r1.logits, &r1.x)); // the weights are still there
    CHECK(memcmp(r1.y, r2.y, 4 * 10 * sizeof(float)) == 0);
    CHECK_ERR(tmix_teacher_share(NULL, t, cpu()), TMIX_EINVAL);
    tmix_teacher_free(t);
    return 0;
}

// Changing the batch shape reallocates the activations: the results match a teacher that
// only ever saw the new shape, and going back gives the first results again.
static int test_batch_shapes(void)
{
    spec s = plain();
    tmix_teacher *t, *fresh;
    CHECK(load_plain(&t, &s) == 0);
    CHECK(load_plain(&fresh, &s) == 0);
    run_setup(&r1, t, 2, 8, 41);
    CHECK_OK(tmix_teacher_forward(t, &r1.logits, &r1.x));
    CHECK_OK(tmix_teacher_backward(t, &r1.dx, &r1.dlogits));
    float y8[20], dx8[2 * 3 * 64];
    memcpy(y8, r1.y, sizeof y8);
    memcpy(dx8, r1.dxs, sizeof dx8);

    run_setup(&r1, t, 3, 16, 42);
    run_setup(&r2, fresh, 3, 16, 42);
    CHECK_OK(tmix_teacher_forward(t, &r1.logits, &r1.x));
    CHECK_OK(tmix_teacher_backward(t, &r1.dx, &r1.dlogits));
    CHECK_OK(tmix_teacher_forward(fresh, &r2.logits, &r2.x));
    CHECK_OK(tmix_teacher_backward(fresh, &r2.dx, &r2.dlogits));
    CHECK(memcmp(r1.y, r2.y, 30 * sizeof(float)) == 0);
    CHECK(memcmp(r1.dxs, r2.dxs, 3 * 3 * 256 * sizeof(float)) == 0);

    run_setup(&r1, t, 2, 8, 41);
    CHECK_OK(tmix_teacher_forward(t, &r1.logits, &r1.x));
    CHECK_OK(tmix_teacher_backward(t, &r1.dx, &r1.dlogits));
    CHECK(memcmp(r1.y, y8, sizeof y8) == 0 && memcmp(r1.dxs, dx8, sizeof dx8) == 0);
    tmix_teacher_free(t);
    tmix_teacher_free(fresh);
    return 0;
}

static int test_bad_calls(void)
{
    spec s = plain();
    tmix_teacher *t;
    CHECK(load_plain(&t, &s) == 0);
    run_setup(&r1, t, 2, 8, 51);
    CHECK_ERR(tmix_teacher_backward(t, &r1.dx, &r1.dlogits), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "teacher_backward: no successful teacher_forward"));
    CHECK_ERR(tmix_teacher_cams(t, &r1.cams, (const int64_t[]){0, 0}), TMIX_EINVAL);

    tmix_tensor gray = V4(r1.xs, 2, 1, 8, 8);
    CHECK_ERR(tmix_teacher_forward(t, &r1.logits, &gray), TMIX_ESHAPE);
    CHECK(strstr(tmix_last_error(), "teacher_forward: x is (2,1,8,8), expected (*,3,*,*)"));
    tmix_tensor few = V2(r1.y, 2, 9);
    CHECK_ERR(tmix_teacher_forward(t, &few, &r1.x), TMIX_ESHAPE);
    CHECK(strstr(tmix_last_error(), "teacher_forward: logits"));
    tmix_tensor u8 = as_u8(r1.x);
    CHECK_ERR(tmix_teacher_forward(t, &r1.logits, &u8), TMIX_EDTYPE);
    // A failed forward leaves nothing to differentiate.
    CHECK_ERR(tmix_teacher_backward(t, &r1.dx, &r1.dlogits), TMIX_EINVAL);

    CHECK_OK(tmix_teacher_forward(t, &r1.logits, &r1.x));
    CHECK_ERR(tmix_teacher_cams(t, &r1.cams, (const int64_t[]){0, 10}), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "labels[1] is 10"));
    CHECK_ERR(tmix_teacher_cams(t, &r1.cams, NULL), TMIX_EINVAL);
    tmix_tensor small = V4(r1.cm, 2, 1, 4, 4);
    CHECK_ERR(tmix_teacher_cams(t, &small, (const int64_t[]){0, 1}), TMIX_ESHAPE);
    tmix_tensor dx3 = V4(r1.dxs, 3, 3, 8, 8);
    CHECK_ERR(tmix_teacher_backward(t, &dx3, &r1.dlogits), TMIX_ESHAPE);
    CHECK(strstr(tmix_last_error(), "teacher_backward: dx"));
    CHECK_OK(tmix_teacher_backward(t, &r1.dx, &r1.dlogits));
    tmix_teacher_free(t);
    tmix_teacher_free(NULL);
    CHECK_ERR(tmix_teacher_forward(NULL, &r1.logits, &r1.x), TMIX_EINVAL);
    CHECK_ERR(tmix_teacher_load(NULL, cpu(), "x"), TMIX_EINVAL);
    return 0;
}

static const test_case tests[] = {
    {"teacher.load_ok", test_load_ok},
    {"teacher.missing_tensor", test_missing_tensor},
    {"teacher.extra_tensor", test_extra_tensor},
    {"teacher.wrong_shape", test_wrong_shape},
    {"teacher.unknown_arch", test_unknown_arch},
    {"teacher.metadata", test_metadata},
    {"teacher.bad_values", test_bad_values},
    {"teacher.missing_file", test_missing_file},
    {"teacher.dtypes", test_dtypes},
    {"teacher.gradcheck", test_gradcheck},
    {"teacher.cams", test_cams},
    {"teacher.share", test_share},
    {"teacher.batch_shapes", test_batch_shapes},
    {"teacher.bad_calls", test_bad_calls},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
