// `tmixd eval`: how the configured teacher sees each mixing method on the test split. For
// every batch the draws (pairs, λ, noise, CutMix centres) are made once and given to every
// method, so the methods differ only in how they mix. Per method: the teacher's
// cross-entropy on the mixed images against the soft labels, and the share of mixed images
// whose top-n classes hold the labels of all n sources (where they differ). Plus the
// teacher's accuracy on the clean images.
#include "eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "ops.h"
#include "sampler.h"
#include "setup.h"

typedef struct {
    double loss;        // summed over images
    int64_t all_in_top; // images whose top-n classes hold every source's label
    int64_t images;
    bool skipped;       // needs a module and none is configured
} method_score;

typedef struct {
    tmixd_setup su;
    tmixd_dataset *test;
    tmixd_sampler sampler;
    tmixd_epoch_order order;
    tmix_mixer *mixers[TMIX_MIX_METHOD_COUNT];
    method_score score[TMIX_MIX_METHOD_COUNT];
    int64_t clean_right, clean_images;
    uint8_t *pixels;
    int64_t *ids;
    float *logits; // host (B, J)
    tmix_crop *crops;
    tmix_tensor src, x, clean_logits;
} evaluation;

// The methods eval compares (DESIGN.md's baselines and TransformMix), in table order.
static const tmix_method methods[] = {TMIX_MIX_MIXUP,    TMIX_MIX_CUTMIX,   TMIX_MIX_SOFTMAX_CAM,
                                      TMIX_MIX_STN_ONLY, TMIX_MIX_MPN_ONLY, TMIX_MIX_TRANSFORMMIX};
enum { METHODS = sizeof methods / sizeof methods[0] };

static bool needs_module(tmix_method m) { return tmix_method_uses_stn(m) || tmix_method_uses_mpn(m); }

// Whether the n labels of image i are all among its n highest logits (a label drawn twice
// counts once, and then fewer classes need to be there).
static bool all_in_top(const float *logits, int J, const int64_t *labels, int n)
{
    for (int k = 0; k < n; k++) {
        const float v = logits[labels[k]];
        int above = 0; // classes strictly above the label's logit
        for (int j = 0; j < J; j++)
            above += logits[j] > v;
        if (above >= n)
            return false;
    }
    return true;
}

static int open_eval(evaluation *e)
{
    const tmixd_config *cfg = &e->su.cfg;
    tmix_backend *be = e->su.backend;
    TMIX_TRY(tmixd_setup_test_split(&e->su, &e->test, &e->sampler));
    if (tmixd_dataset_classes(e->test) != tmixd_dataset_classes(e->su.dataset))
        return tmix_fail(TMIX_EFORMAT, "%s has %d classes, its train split %d",
                         tmixd_dataset_describe(e->test), tmixd_dataset_classes(e->test),
                         tmixd_dataset_classes(e->su.dataset));
    for (int m = 0; m < METHODS; m++) {
        e->score[m].skipped = needs_module(methods[m]) && !e->su.has_module;
        if (!e->score[m].skipped)
            TMIX_TRY(tmix_mixer_new(&e->mixers[m], be, methods[m]));
    }
    const int64_t B = cfg->eval_batch_size;
    const int h = e->su.augment.out_h, w = e->su.augment.out_w;
    const int cs = tmixd_dataset_channels(e->test), J = tmixd_dataset_classes(e->test);
    e->pixels = malloc((size_t)B * h * w * cs);
    e->ids = malloc((size_t)B * 3 * sizeof *e->ids);
    e->logits = malloc((size_t)B * J * sizeof *e->logits);
    e->crops = calloc((size_t)B, sizeof *e->crops);
    if (!e->pixels || !e->ids || !e->logits || !e->crops)
        return tmix_fail(TMIX_ENOMEM, "eval: buffers for a batch of %lld", (long long)B);
    return 0;
}

// Batch `index` (b images from `first`): the clean accuracy, then every method on the same
// draws.
static int eval_batch(evaluation *e, int64_t index, int64_t first, int b)
{
    const tmixd_config *cfg = &e->su.cfg;
    tmix_backend *be = e->su.backend;
    const int h = e->su.augment.out_h, w = e->su.augment.out_w, ch = e->su.channels;
    const int cs = tmixd_dataset_channels(e->test), J = tmixd_dataset_classes(e->test);
    const int n = cfg->mix_n;
    tmixd_batch_inputs in = {.pixels = e->pixels, .ids = e->ids, .read_ids = e->ids + b,
                             .labels = e->ids + 2 * b};
    TMIX_TRY(tmixd_sample_batch(&e->sampler, &e->order, 0, first, b, &in));
    tmix_tensor_free(be, &e->src);
    tmix_tensor_free(be, &e->x);
    tmix_tensor_free(be, &e->clean_logits);
    TMIX_TRY(tmix_tensor_alloc(be, &e->src, TMIX_U8, 4, (int64_t[]){b, h, w, cs}));
    TMIX_TRY(tmix_tensor_alloc(be, &e->x, TMIX_F32, 4, (int64_t[]){b, ch, h, w}));
    TMIX_TRY(tmix_tensor_alloc(be, &e->clean_logits, TMIX_F32, 2, (int64_t[]){b, J}));
    TMIX_TRY(tmix_tensor_upload(be, &e->src, e->pixels));
    TMIX_TRY(tmix_preprocess(be, &e->x, &e->src, e->crops, e->su.mean, e->su.std));
    TMIX_TRY(tmix_teacher_infer(e->su.teacher, &e->clean_logits, &e->x));
    TMIX_TRY(tmix_tensor_download(be, e->logits, &e->clean_logits));
    for (int i = 0; i < b; i++)
        e->clean_right += all_in_top(e->logits + (size_t)i * J, J, &in.labels[i], 1);
    e->clean_images += b;

    const int stn = e->su.has_module ? e->su.module.stn_size : 32;
    tmix_draws d = {0};
    TMIX_TRY(tmix_draws_alloc(&d, b, n, stn));
    tmixd_sample_draws(&e->sampler, 0, (uint64_t)index, &d);
    int rc = 0;
    for (int m = 0; rc == 0 && m < METHODS; m++) {
        method_score *sc = &e->score[m];
        if (sc->skipped)
            continue;
        tmix_mix_result res;
        rc = tmix_mix_forward(e->mixers[m], e->su.teacher, e->su.has_module ? &e->su.module : NULL,
                              &e->x, in.labels, &d, true, &res);
        if (rc == 0)
            rc = tmix_tensor_download(be, e->logits, res.logits);
        if (rc < 0)
            break;
        sc->loss += (double)res.loss * b;
        sc->images += b;
        for (int i = 0; i < b; i++)
            sc->all_in_top += all_in_top(e->logits + (size_t)i * J, J, res.labels + (size_t)i * n, n);
    }
    tmix_draws_free(&d);
    return rc;
}

static void print_table(const evaluation *e)
{
    const tmixd_config *cfg = &e->su.cfg;
    printf("teacher %s on %s: clean accuracy %.2f%% (%lld images)\n", cfg->teacher_path,
           tmixd_dataset_describe(e->test), 100.0 * e->clean_right / e->clean_images,
           (long long)e->clean_images);
    printf("mixed images: n = %d, alpha = %g, the same draws for every method; module %s\n\n",
           cfg->mix_n, cfg->mix_alpha, e->su.has_module ? cfg->mix_module : "(none)");
    printf("%-13s %12s %16s\n", "method", "mixed loss", "labels in top-n");
    for (int m = 0; m < METHODS; m++) {
        const method_score *sc = &e->score[m];
        if (sc->skipped)
            printf("%-13s %12s %16s  (needs [mix] module)\n", tmix_method_name(methods[m]), "-",
                   "-");
        else
            printf("%-13s %12.4f %15.2f%%\n", tmix_method_name(methods[m]),
                   sc->loss / sc->images, 100.0 * sc->all_in_top / sc->images);
    }
}

static int run(void *ctx)
{
    evaluation *e = ctx;
    TMIX_TRY(open_eval(e));
    const tmixd_config *cfg = &e->su.cfg;
    int64_t samples = tmixd_dataset_size(e->test);
    if (cfg->eval_samples > 0 && cfg->eval_samples < samples)
        samples = cfg->eval_samples;
    const int64_t B = cfg->eval_batch_size;
    tmixd_log(TMIXD_LOG_INFO, "eval: %lld images of %s in batches of %lld on %s%s",
              (long long)samples, tmixd_dataset_describe(e->test), (long long)B,
              e->su.backend->name, e->su.backend_note);
    for (int64_t index = 0; index * B < samples; index++) {
        const int64_t first = index * B;
        // A last batch of one image: nothing to pair it with but itself, so it is left out.
        const int b = (int)(samples - first < B ? samples - first : B);
        if (b < 2)
            break;
        TMIX_TRY(eval_batch(e, index, first, b));
    }
    print_table(e);
    return 0;
}

static void close_eval(evaluation *e)
{
    tmix_backend *be = e->su.backend;
    for (int m = 0; m < METHODS; m++)
        tmix_mixer_free(e->mixers[m]);
    tmix_tensor_free(be, &e->src);
    tmix_tensor_free(be, &e->x);
    tmix_tensor_free(be, &e->clean_logits);
    tmixd_epoch_order_free(&e->order);
    tmixd_dataset_close(e->test);
    free(e->pixels);
    free(e->ids);
    free(e->logits);
    free(e->crops);
    tmixd_setup_close(&e->su);
}

int tmixd_eval_main(int argc, char **argv)
{
    evaluation *e = calloc(1, sizeof *e);
    if (!e) {
        fprintf(stderr, "tmixd eval: out of memory\n");
        return 1;
    }
    const int code = tmixd_setup_run("eval", &e->su, TMIXD_SETUP_EVAL, argc, argv, run, e);
    close_eval(e);
    free(e);
    return code;
}
