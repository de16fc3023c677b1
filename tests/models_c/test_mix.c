// The mixing methods, the module file and the random draws, on the committed fixture's
// cifar_resnet20 teacher (tests/golden/transformmix/teacher.safetensors, 10 classes, 3x32x32).
// Parity with PyTorch is tests/models/mix_parity.py; these are the properties each method
// must have whatever the weights.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mix.h"
#include "ops.h"
#include "safetensors.h"

#define TEACHER TMIX_SOURCE_GOLDEN_DIR "/transformmix/teacher.safetensors"
#define B 6
#define C 3
#define H 32
#define W 32

typedef struct {
    tmix_teacher *teacher;
    tmix_module module;
    float images[B * C * H * W];
    int64_t labels[B];
    tmix_draws draws;
} fixture;

static int setup(fixture *f, int n, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    CHECK_OK(tmix_teacher_load(&f->teacher, cpu(), TEACHER));
    CHECK_OK(tmix_module_init(&f->module, cpu(), n, 32, 1.0f, seed));
    // Smooth images (a few low-frequency waves per sample): the loss of a warp of white noise
    // changes slope at every pixel crossing, which no finite difference can follow.
    float phase[B * C * 2];
    fill_uniform(phase, COUNT(phase), seed, 0, 6.283f);
    for (int i = 0; i < B * C; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                f->images[(i * H + y) * W + x] =
                    sinf(0.3f * x + phase[2 * i]) + cosf(0.2f * y + phase[2 * i + 1]);
    for (int i = 0; i < B; i++)
        f->labels[i] = (i * 7 + 3) % 10;
    CHECK_OK(tmix_draws_alloc(&f->draws, B, n, 32));
    tmix_rng rng;
    tmix_rng_seed(&rng, seed);
    tmix_draws_sample(&f->draws, &rng, 1.0);
    return 0;
}

static void teardown(fixture *f)
{
    tmix_teacher_free(f->teacher);
    tmix_module_free(&f->module, cpu());
    tmix_draws_free(&f->draws);
}

// Runs `method` on the fixture; res points into *mx, which the caller frees.
static int run(fixture *f, tmix_method method, tmix_mixer **mx, tmix_mix_result *res)
{
    tmix_tensor images = V4(f->images, B, C, H, W);
    CHECK_OK(tmix_mixer_new(mx, cpu(), method));
    CHECK_OK(tmix_mix_forward(*mx, f->teacher, &f->module, &images, f->labels, &f->draws, true,
                              res));
    return 0;
}

// ---- rng ----------------------------------------------------------------------------------

static int test_rng_deterministic(void)
{
    tmix_rng a, b, c;
    tmix_rng_seed(&a, 42);
    tmix_rng_seed(&b, 42);
    tmix_rng_seed(&c, 43);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        const uint64_t x = tmix_rng_next(&a);
        CHECK(x == tmix_rng_next(&b));
        differ += x != tmix_rng_next(&c);
    }
    CHECK(differ > 990);
    // The first output of seed 0 is fixed forever: batches must not change across releases.
    tmix_rng_seed(&a, 0);
    CHECK(tmix_rng_next(&a) == 0x99ec5f36cb75f2b4ull);
    return 0;
}

static int test_rng_distributions(void)
{
    tmix_rng r;
    tmix_rng_seed(&r, 7);
    const int draws = 20000;
    double sum = 0, sq = 0, beta = 0, beta_sq = 0, dir[3] = {0};
    for (int i = 0; i < draws; i++) {
        const double z = tmix_rng_normal(&r);
        sum += z;
        sq += z * z;
        double l[3];
        tmix_rng_dirichlet(&r, 1.0, 2, l);
        CHECK(fabs(l[0] + l[1] - 1) < 1e-12 && l[0] >= 0 && l[1] >= 0);
        beta += l[0];
        beta_sq += l[0] * l[0];
        tmix_rng_dirichlet(&r, 0.4, 3, l);
        CHECK(fabs(l[0] + l[1] + l[2] - 1) < 1e-12);
        for (int k = 0; k < 3; k++)
            dir[k] += l[k];
    }
    // Bounds of about 5 standard errors, on a fixed seed.
    CHECK(fabs(sum / draws) < 0.04);
    CHECK(fabs(sq / draws - 1) < 0.05);
    CHECK(fabs(beta / draws - 0.5) < 0.012);                      // Beta(1,1): mean 1/2
    CHECK(fabs(beta_sq / draws - beta * beta / draws / draws - 1.0 / 12) < 0.005); // var 1/12
    for (int k = 0; k < 3; k++)
        CHECK(fabs(dir[k] / draws - 1.0 / 3) < 0.02);
    int64_t perm[50];
    tmix_rng_permutation(&r, 50, perm);
    int seen[50] = {0};
    for (int i = 0; i < 50; i++) {
        CHECK(perm[i] >= 0 && perm[i] < 50 && !seen[perm[i]]);
        seen[perm[i]] = 1;
    }
    return 0;
}

static int test_draws_check(void)
{
    tmix_draws d;
    CHECK_OK(tmix_draws_alloc(&d, 4, 2, 32));
    tmix_rng r;
    tmix_rng_seed(&r, 1);
    tmix_draws_sample(&d, &r, 1.0);
    CHECK_OK(tmix_draws_check(&d));
    d.perm[2] = d.perm[1];
    CHECK_ERR(tmix_draws_check(&d), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "not a permutation"));
    tmix_rng_permutation(&r, 4, d.perm);
    d.lam[0] += 0.1f;
    CHECK_ERR(tmix_draws_check(&d), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "lam[0] sums to"));
    tmix_draws_free(&d);
    tmix_method m;
    CHECK_ERR(tmix_method_parse("puzzlemix", &m), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "'puzzlemix'") && strstr(tmix_last_error(), "transformmix"));
    CHECK_OK(tmix_method_parse("softmax-cam", &m));
    CHECK(m == TMIX_MIX_SOFTMAX_CAM);
    return 0;
}

// ---- module file --------------------------------------------------------------------------

static int test_module_roundtrip(void)
{
    char dir[] = "/tmp/tmix-module-XXXXXX", path[64];
    CHECK(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    tmix_module a, b;
    CHECK_OK(tmix_module_init(&a, cpu(), 3, 40, 0.5f, 9));
    snprintf(a.dataset, sizeof a.dataset, "fashion-mnist");
    snprintf(a.teacher_arch, sizeof a.teacher_arch, "cifar_resnet20");
    CHECK_OK(tmix_module_save(&a, cpu(), path));
    CHECK_OK(tmix_module_load(&b, cpu(), path));
    CHECK(b.n == 3 && b.stn_size == 40 && b.alpha == 0.5f);
    CHECK(strcmp(b.dataset, "fashion-mnist") == 0 && strcmp(b.teacher_arch, "cifar_resnet20") == 0);
    for (int i = 0; i < TMIX_MODULE_COUNT; i++)
        CHECK(memcmp(a.p[i].data, b.p[i].data, tmix_tensor_bytes(&a.p[i])) == 0);
    // Identity regressor, log τ = 0, STN input of 2n + 1 channels, fc.0 of 10 * 6 * 6 inputs.
    const float *bias = tmix_f32(&b.p[TMIX_STN_FC2_B]);
    CHECK(bias[0] == 1 && bias[4] == 1 && bias[6] == 1 && bias[1] == 0 && bias[17] == 0);
    CHECK(all_const(tmix_f32(&b.p[TMIX_STN_FC2_W]), 18 * 32, 0));
    CHECK(tmix_f32(&b.p[TMIX_MPN_LOG_TAU])[0] == 0);
    CHECK(b.p[TMIX_STN_LOC0_W].shape[1] == 7 && b.p[TMIX_STN_FC0_W].shape[1] == 360);
    tmix_module_free(&b, cpu());

    // A file lacking a tensor, and one with a stranger, are refused by name.
    tmix_st_writer *w;
    CHECK_OK(tmix_st_writer_new(&w));
    CHECK_OK(tmix_st_writer_meta(w, "format", "tmix-module"));
    CHECK_OK(tmix_st_writer_meta(w, "n", "3"));
    CHECK_OK(tmix_st_writer_meta(w, "stn_size", "40"));
    for (int i = 0; i < TMIX_MODULE_COUNT - 1; i++)
        CHECK_OK(tmix_st_writer_add(w, tmix_module_names[i], TMIX_ST_F32, a.p[i].ndim,
                                    a.p[i].shape, a.p[i].data));
    CHECK_OK(tmix_st_writer_save(w, path));
    CHECK_ERR(tmix_module_load(&b, cpu(), path), TMIX_EFORMAT);
    CHECK(strstr(tmix_last_error(), path) && strstr(tmix_last_error(), "'mpn.log_tau'"));
    const int i = TMIX_MPN_LOG_TAU;
    CHECK_OK(tmix_st_writer_add(w, tmix_module_names[i], TMIX_ST_F32, 1, a.p[i].shape,
                                a.p[i].data));
    CHECK_OK(tmix_st_writer_add(w, "mpn.extra", TMIX_ST_F32, 1, a.p[i].shape, a.p[i].data));
    CHECK_OK(tmix_st_writer_save(w, path));
    CHECK_ERR(tmix_module_load(&b, cpu(), path), TMIX_EFORMAT);
    CHECK(strstr(tmix_last_error(), "unexpected tensor 'mpn.extra'"));
    tmix_st_writer_free(w);

    // A module for n = 2 read as the metadata's n = 3 has the wrong shapes.
    CHECK_OK(tmix_st_writer_new(&w));
    CHECK_OK(tmix_st_writer_meta(w, "format", "tmix-module"));
    CHECK_OK(tmix_st_writer_meta(w, "n", "2"));
    CHECK_OK(tmix_st_writer_meta(w, "stn_size", "40"));
    for (int k = 0; k < TMIX_MODULE_COUNT; k++)
        CHECK_OK(tmix_st_writer_add(w, tmix_module_names[k], TMIX_ST_F32, a.p[k].ndim,
                                    a.p[k].shape, a.p[k].data));
    CHECK_OK(tmix_st_writer_save(w, path));
    CHECK_ERR(tmix_module_load(&b, cpu(), path), TMIX_ESHAPE);
    CHECK(strstr(tmix_last_error(), "'stn.loc.0.weight'"));
    tmix_st_writer_free(w);

    tmix_module_free(&a, cpu());
    unlink(path);
    rmdir(dir);
    return 0;
}

// ---- methods ------------------------------------------------------------------------------

// Label weights are a distribution, the sources start with the sample itself, and labels
// follow the sources.
static int check_labels(const fixture *f, const tmix_mix_result *r, int n)
{
    for (int i = 0; i < B; i++) {
        double sum = 0;
        for (int k = 0; k < n; k++) {
            CHECK(r->weights[i * n + k] >= 0);
            sum += r->weights[i * n + k];
            CHECK(r->labels[i * n + k] == f->labels[r->sources[i * n + k]]);
        }
        CHECK(fabs(sum - 1) < 1e-5);
        CHECK(r->sources[i * n] == i);
    }
    return 0;
}

static int test_weights_sum_to_one(void)
{
    const tmix_method methods[] = {TMIX_MIX_NONE, TMIX_MIX_MIXUP, TMIX_MIX_CUTMIX,
                                   TMIX_MIX_SOFTMAX_CAM, TMIX_MIX_STN_ONLY, TMIX_MIX_MPN_ONLY,
                                   TMIX_MIX_TRANSFORMMIX};
    for (int n = 2; n <= 3; n++)
        for (int m = 0; m < COUNT(methods); m++) {
            if (methods[m] == TMIX_MIX_CUTMIX && n == 3)
                continue;
            fixture f;
            tmix_mixer *mx;
            tmix_mix_result r;
            if (setup(&f, n, 100 + m) || run(&f, methods[m], &mx, &r) || check_labels(&f, &r, n)) {
                fprintf(stderr, "method %s, n = %d\n", tmix_method_name(methods[m]), n);
                return 1;
            }
            // The masks are a partition of unity at every pixel.
            const float *masks = tmix_f32(r.masks);
            for (int64_t p = 0; p < (int64_t)B * H * W; p++) {
                const int64_t i = p / (H * W), px = p % (H * W);
                double s = 0;
                for (int k = 0; k < n; k++)
                    s += masks[(i * n + k) * H * W + px];
                CHECK(fabs(s - 1) < 1e-5);
            }
            CHECK(isfinite(r.loss) && r.loss > 0);
            tmix_mixer_free(mx);
            teardown(&f);
        }
    return 0;
}

static int test_cutmix_box(void)
{
    fixture f;
    tmix_mixer *mx;
    tmix_mix_result r;
    CHECK(setup(&f, 2, 5) == 0);
    f.draws.lam[0] = 0.3f, f.draws.lam[1] = 0.7f;    // a large box...
    f.draws.centre[0] = 0.99f, f.draws.centre[1] = 0; // ...clipped at a corner
    CHECK(run(&f, TMIX_MIX_CUTMIX, &mx, &r) == 0);
    const float *masks = tmix_f32(r.masks), *mixed = tmix_f32(r.mixed);
    const float *warped = tmix_f32(r.warped);
    int clipped = 0;
    for (int i = 0; i < B; i++) {
        double inside = 0;
        for (int p = 0; p < H * W; p++) {
            const float m = masks[(i * 2 + 1) * H * W + p];
            CHECK(m == 0 || m == 1);
            CHECK(masks[i * 2 * H * W + p] == 1 - m);
            inside += m;
            // Inside the box the pixel is the partner's, outside the sample's own.
            for (int c = 0; c < C; c++)
                CHECK(mixed[(i * C + c) * H * W + p] ==
                      warped[((i * 2 + (m == 1)) * C + c) * H * W + p]);
        }
        CHECK(fabs(inside / (H * W) - r.weights[i * 2 + 1]) < 1e-6);
        const double unclipped = 1 - f.draws.lam[i * 2];
        clipped += r.weights[i * 2 + 1] < unclipped - 0.05;
    }
    CHECK(clipped >= 1); // sample 0's corner box lost area, and its weight says so
    tmix_mixer_free(mx);
    teardown(&f);
    return 0;
}

// With identity θ (a fresh module) and λ = (1, 0), stn-only gives back the first image.
static int test_identity_warp(void)
{
    fixture f;
    tmix_mixer *mx;
    tmix_mix_result r;
    CHECK(setup(&f, 2, 6) == 0);
    for (int i = 0; i < B; i++)
        f.draws.lam[2 * i] = 1, f.draws.lam[2 * i + 1] = 0;
    CHECK(run(&f, TMIX_MIX_STN_ONLY, &mx, &r) == 0);
    const float *theta = tmix_f32(r.theta);
    for (int i = 0; i < B * 2; i++)
        CHECK(theta[6 * i] == 1 && theta[6 * i + 1] == 0 && theta[6 * i + 4] == 1);
    const float *mixed = tmix_f32(r.mixed);
    double err = 0;
    for (int64_t i = 0; i < COUNT(f.images); i++)
        err = fmax(err, fabs(mixed[i] - f.images[i]));
    CHECK(err < 1e-5);
    tmix_mixer_free(mx);
    teardown(&f);
    return 0;
}

// As τ -> 0 the MPN's masks become one-hot.
static int test_cold_masks(void)
{
    fixture f;
    tmix_mixer *mx;
    tmix_mix_result r;
    CHECK(setup(&f, 3, 8) == 0);
    tmix_f32(&f.module.p[TMIX_MPN_LOG_TAU])[0] = -30;
    CHECK(run(&f, TMIX_MIX_TRANSFORMMIX, &mx, &r) == 0);
    const float *masks = tmix_f32(r.masks);
    for (int64_t i = 0; i < (int64_t)B * 3 * H * W; i++)
        CHECK(masks[i] < 1e-6 || masks[i] > 1 - 1e-6);
    tmix_mixer_free(mx);
    teardown(&f);
    return 0;
}

// The same draws give the same bits, and the gradient of log τ matches a central difference
// of the loss. (Every gradient is checked against PyTorch's autograd in
// tests/models/mix_parity.py; finite differences of a float32 loss through a 20-layer teacher
// are only steady for a parameter as smooth as the temperature.)
static int test_gradients(void)
{
    fixture f;
    tmix_mixer *mx;
    tmix_mix_result r;
    CHECK(setup(&f, 2, 11) == 0);
    float *log_tau = tmix_f32(&f.module.p[TMIX_MPN_LOG_TAU]);
    log_tau[0] = -0.5f;
    CHECK(run(&f, TMIX_MIX_TRANSFORMMIX, &mx, &r) == 0);
    const float loss = r.loss;
    tmix_tensor grads[TMIX_MODULE_COUNT];
    CHECK_OK(tmix_module_alloc_like(&f.module, cpu(), grads));
    CHECK_OK(tmix_mix_backward(mx, f.teacher, &f.module, grads, NULL));
    const double analytic = tmix_f32(&grads[TMIX_MPN_LOG_TAU])[0];
    tmix_tensor images = V4(f.images, B, C, H, W);
    const float h = 1e-2f;
    double side[2];
    for (int s = 0; s < 2; s++) {
        log_tau[0] = -0.5f + (s ? -h : h);
        CHECK_OK(tmix_mix_forward(mx, f.teacher, &f.module, &images, f.labels, &f.draws, true,
                                  &r));
        side[s] = r.loss;
    }
    const double numeric = (side[0] - side[1]) / (2 * h);
    fprintf(stderr, "d loss / d log_tau: analytic %.6g, numeric %.6g\n", analytic, numeric);
    CHECK(fabs(analytic - numeric) <= 1e-4 + 5e-2 * fabs(numeric));
    CHECK(fabs(analytic) > 1e-3); // a gradient that vanished would pass the line above
    log_tau[0] = -0.5f;
    CHECK_OK(tmix_mix_forward(mx, f.teacher, &f.module, &images, f.labels, &f.draws, true, &r));
    CHECK(r.loss == loss);
    for (int i = 0; i < TMIX_MODULE_COUNT; i++)
        tmix_tensor_free(cpu(), &grads[i]);
    tmix_mixer_free(mx);
    teardown(&f);
    return 0;
}

// none, mixup and cutmix need no teacher: without one they give the same bits; a method that
// needs CAMs, or the loss, is refused.
static int test_without_teacher(void)
{
    const tmix_method methods[] = {TMIX_MIX_NONE, TMIX_MIX_MIXUP, TMIX_MIX_CUTMIX};
    for (int m = 0; m < COUNT(methods); m++) {
        fixture f;
        tmix_mixer *with, *without;
        tmix_mix_result a, b;
        CHECK(setup(&f, 2, 200 + m) == 0);
        CHECK(run(&f, methods[m], &with, &a) == 0);
        tmix_tensor images = V4(f.images, B, C, H, W);
        CHECK_OK(tmix_mixer_new(&without, cpu(), methods[m]));
        CHECK_OK(tmix_mix_forward(without, NULL, NULL, &images, f.labels, &f.draws, false, &b));
        CHECK(b.cams == NULL && b.warped_cams == NULL);
        CHECK(memcmp(tmix_f32(a.mixed), tmix_f32(b.mixed), sizeof(float) * B * C * H * W) == 0);
        CHECK(memcmp(a.weights, b.weights, sizeof(float) * B * 2) == 0);
        CHECK_ERR(tmix_mix_forward(without, NULL, NULL, &images, f.labels, &f.draws, true, &b),
                  TMIX_EINVAL);
        CHECK(strstr(tmix_last_error(), "needs a teacher"));
        tmix_mixer_free(with);
        tmix_mixer_free(without);
        teardown(&f);
    }
    fixture f;
    tmix_mixer *mx;
    tmix_mix_result r;
    CHECK(setup(&f, 2, 210) == 0);
    tmix_tensor images = V4(f.images, B, C, H, W);
    CHECK_OK(tmix_mixer_new(&mx, cpu(), TMIX_MIX_SOFTMAX_CAM));
    CHECK_ERR(tmix_mix_forward(mx, NULL, NULL, &images, f.labels, &f.draws, false, &r),
              TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "softmax-cam needs a teacher"));
    tmix_mixer_free(mx);
    teardown(&f);
    return 0;
}

static int test_bad_input(void)
{
    fixture f;
    tmix_mixer *mx;
    tmix_mix_result r;
    CHECK(setup(&f, 3, 12) == 0);
    tmix_tensor images = V4(f.images, B, C, H, W);
    CHECK_OK(tmix_mixer_new(&mx, cpu(), TMIX_MIX_CUTMIX));
    CHECK_ERR(tmix_mix_forward(mx, f.teacher, NULL, &images, f.labels, &f.draws, false, &r),
              TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "cutmix mixes 2 images"));
    tmix_mixer_free(mx);
    CHECK_OK(tmix_mixer_new(&mx, cpu(), TMIX_MIX_TRANSFORMMIX));
    CHECK_ERR(tmix_mix_forward(mx, f.teacher, NULL, &images, f.labels, &f.draws, false, &r),
              TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "needs a mixing module"));
    f.labels[2] = 10;
    CHECK_ERR(tmix_mix_forward(mx, f.teacher, &f.module, &images, f.labels, &f.draws, false, &r),
              TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "label 10 of sample 2"));
    f.labels[2] = 1;
    tmix_tensor gray = V4(f.images, B, 1, H, W);
    CHECK_ERR(tmix_mix_forward(mx, f.teacher, &f.module, &gray, f.labels, &f.draws, false, &r),
              TMIX_ESHAPE);
    CHECK(strstr(tmix_last_error(), "1 channels"));
    CHECK_ERR(tmix_mix_backward(mx, f.teacher, &f.module, NULL, NULL), TMIX_EINVAL);
    tmix_mixer_free(mx);
    teardown(&f);
    return 0;
}

int main(int argc, char **argv)
{
    static const test_case tests[] = {
        {"rng.deterministic", test_rng_deterministic},
        {"rng.distributions", test_rng_distributions},
        {"draws.check", test_draws_check},
        {"module.roundtrip", test_module_roundtrip},
        {"mix.weights_sum_to_one", test_weights_sum_to_one},
        {"mix.cutmix_box", test_cutmix_box},
        {"mix.identity_warp", test_identity_warp},
        {"mix.cold_masks", test_cold_masks},
        {"mix.gradients", test_gradients},
        {"mix.without_teacher", test_without_teacher},
        {"mix.bad_input", test_bad_input},
        {NULL, NULL},
    };
    return test_main(argc, argv, tests);
}
