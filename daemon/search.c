// `tmixd search`: trains the mixing module (STN + MPN + log τ) against the frozen teacher on
// the configured data set, with the readers, augmentation and draws of serving (sampler.h).
// Step s mixes batch s % B of epoch s / B (B batches per epoch) with_loss, backpropagates
// through the teacher into the module, and takes an SGD step. The checkpoint holds the
// module, the momentum buffers and s; everything else is a function of (seed, s), so a
// resumed run repeats the losses of an uninterrupted one.
#include "search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "error.h"
#include "log.h"
#include "ops.h"
#include "sampler.h"
#include "setup.h"
#include "trainloop.h"

#define MOMENTUM_PREFIX "search.momentum."

typedef struct {
    tmixd_setup su;
    bool resume; // --resume: continue from the checkpoint
    tmixd_run_files files;
    tmix_method method;
    tmix_module module;
    bool has_module;
    tmix_tensor grads[TMIX_MODULE_COUNT], momentum[TMIX_MODULE_COUNT];
    tmix_mixer *mixer;
    tmixd_sampler sampler;
    tmixd_epoch_order order;
    int64_t step, steps, batches_per_epoch;
    // One step's buffers, for the largest batch.
    uint8_t *pixels;
    int64_t *ids; // ids, read ids, labels: 3 * batch
    tmix_crop *crops;
    tmix_tensor src, x; // on the backend: (B, H, W, Cs) u8 and (B, C, H, W) f32
    bool told_whole;    // whether the teacher ran whole at bf16 has been logged
} search;

// The module tensors the method trains: the STN's, the MPN's (with log τ), or both.
static bool trains(const search *s, int i)
{
    return i < TMIX_MPN_NET0_W ? tmix_method_uses_stn(s->method) : tmix_method_uses_mpn(s->method);
}

static void on_bad(void *ctx, int64_t id)
{
    (void)ctx;
    tmixd_log(TMIXD_LOG_WARN, "sample %lld unreadable, replaced: %s", (long long)id,
              tmix_last_error());
}

// What must not change between a checkpoint and its resumption: the batches it was made of.
static int fingerprint(const search *s, tmixd_fingerprint fp[5])
{
    const tmixd_config *cfg = &s->su.cfg;
    fp[0] = (tmixd_fingerprint){.key = "search.seed"};
    snprintf(fp[0].value, sizeof fp[0].value, "%llu", (unsigned long long)cfg->search_seed);
    fp[1] = (tmixd_fingerprint){.key = "search.batch_size"};
    snprintf(fp[1].value, sizeof fp[1].value, "%d", cfg->search_batch_size);
    fp[2] = (tmixd_fingerprint){.key = "search.samples"};
    snprintf(fp[2].value, sizeof fp[2].value, "%lld",
             (long long)tmixd_dataset_size(s->su.dataset));
    fp[3] = (tmixd_fingerprint){.key = "search.dataset"};
    snprintf(fp[3].value, sizeof fp[3].value, "%s", tmixd_dataset_describe(s->su.dataset));
    fp[4] = (tmixd_fingerprint){.key = "search.method"};
    snprintf(fp[4].value, sizeof fp[4].value, "%s", tmix_method_name(s->method));
    return 5;
}

static int save_checkpoint(void *ctx)
{
    search *s = ctx;
    tmix_backend *be = s->su.backend;
    tmixd_fingerprint fp[5];
    const int nfp = fingerprint(s, fp);
    tmix_st_writer *w;
    TMIX_TRY(tmix_st_writer_new(&w));
    int rc = tmix_module_write(&s->module, be, w);
    if (rc == 0)
        rc = tmixd_checkpoint_put_tensors(w, be, MOMENTUM_PREFIX, tmix_module_names, s->momentum,
                                          TMIX_MODULE_COUNT);
    if (rc == 0)
        rc = tmixd_checkpoint_put_meta(w, s->step, fp, nfp);
    if (rc == 0)
        rc = tmix_st_writer_save(w, s->files.checkpoint);
    tmix_st_writer_free(w);
    if (rc < 0)
        return tmix_fail(rc, "checkpoint %s: %s", s->files.checkpoint, tmix_last_error());
    return 0;
}

// The module, momentum and step of the checkpoint, which must be of this search.
static int load_checkpoint(search *s)
{
    const tmixd_config *cfg = &s->su.cfg;
    tmix_backend *be = s->su.backend;
    tmixd_fingerprint fp[5];
    const int nfp = fingerprint(s, fp);
    tmix_safetensors *st;
    TMIX_TRY(tmix_safetensors_open(&st, s->files.checkpoint));
    int64_t step = 0;
    int rc = tmixd_checkpoint_get_meta(st, &step, fp, nfp);
    if (rc == 0 && (rc = tmix_module_read(&s->module, be, st, MOMENTUM_PREFIX)) == 0)
        s->has_module = true;
    if (rc == 0 && s->module.n != cfg->mix_n)
        rc = tmix_fail(TMIX_EINVAL, "%s mixes n = %d images; [mix] n = %d", s->files.checkpoint,
                       s->module.n, cfg->mix_n);
    if (rc == 0 && s->module.stn_size != cfg->search_stn_size)
        rc = tmix_fail(TMIX_EINVAL, "%s has stn_size %d; [search] stn_size = %d",
                       s->files.checkpoint, s->module.stn_size, cfg->search_stn_size);
    if (rc == 0)
        rc = tmixd_checkpoint_get_tensors(st, be, MOMENTUM_PREFIX, tmix_module_names, s->momentum,
                                          TMIX_MODULE_COUNT,
                                          "written with [search] momentum = 0?");
    tmix_safetensors_close(st);
    if (rc == 0)
        s->step = step;
    return rc;
}

static int open_search(search *s, bool resume)
{
    const tmixd_config *cfg = &s->su.cfg;
    tmix_backend *be = s->su.backend;
    s->method = cfg->mix_method;
    if (!tmix_method_uses_stn(s->method) && !tmix_method_uses_mpn(s->method))
        return tmix_fail(TMIX_EINVAL, "search trains the module of [mix] method = stn-only, "
                         "mpn-only or transformmix, not %s", tmix_method_name(s->method));
    TMIX_TRY(tmixd_run_files_get(&s->files, "search", cfg->search_out, cfg->search_checkpoint,
                                 cfg->search_metrics, resume));
    const int64_t samples = tmixd_dataset_size(s->su.dataset), b = cfg->search_batch_size;
    s->batches_per_epoch = (samples + b - 1) / b;
    s->steps = s->batches_per_epoch * cfg->search_epochs;
    if (cfg->search_steps > 0 && cfg->search_steps < s->steps)
        s->steps = cfg->search_steps;
    s->sampler = (tmixd_sampler){.dataset = s->su.dataset, .augment = s->su.augment,
                                 .seed = cfg->search_seed, .alpha = cfg->mix_alpha,
                                 .on_bad = on_bad};
    const tmix_teacher_info *ti = tmix_teacher_info_get(s->su.teacher);
    tmix_module shape; // the shapes of the momentum buffers, before a checkpoint is read
    TMIX_TRY(tmix_module_init(&shape, be, cfg->mix_n, cfg->search_stn_size,
                              (float)cfg->mix_alpha, cfg->search_seed));
    int rc = 0;
    for (int i = 0; rc == 0 && i < TMIX_MODULE_COUNT; i++)
        if (cfg->search_momentum > 0 && trains(s, i)) {
            rc = tmix_tensor_alloc(be, &s->momentum[i], TMIX_F32, shape.p[i].ndim, shape.p[i].shape);
            if (rc == 0)
                rc = tmix_tensor_zero(be, &s->momentum[i]);
        }
    if (rc == 0 && resume) {
        tmix_module_free(&shape, be);
        rc = load_checkpoint(s);
    } else if (rc == 0) {
        s->module = shape;
        s->has_module = true;
        snprintf(s->module.dataset, sizeof s->module.dataset, "%s", ti->dataset[0] ? ti->dataset
                 : tmixd_dataset_describe(s->su.dataset));
        snprintf(s->module.teacher_arch, sizeof s->module.teacher_arch, "%s", ti->arch);
    } else {
        tmix_module_free(&shape, be);
    }
    TMIX_TRY(rc);
    TMIX_TRY(tmix_module_alloc_like(&s->module, be, s->grads));
    TMIX_TRY(tmix_mixer_new(&s->mixer, be, s->method));
    const int h = s->su.augment.out_h, w = s->su.augment.out_w;
    const int cs = tmixd_dataset_channels(s->su.dataset);
    s->pixels = malloc((size_t)b * h * w * cs);
    s->ids = malloc((size_t)b * 3 * sizeof *s->ids);
    s->crops = calloc((size_t)b, sizeof *s->crops);
    if (!s->pixels || !s->ids || !s->crops)
        return tmix_fail(TMIX_ENOMEM, "search: buffers for a batch of %lld", (long long)b);
    return 0;
}

// One SGD step on batch s->step of the search (tmixd_train_ops.step).
static int step(void *ctx, float *loss, int *images, char *fields, size_t size)
{
    search *s = ctx;
    const tmixd_config *cfg = &s->su.cfg;
    tmix_backend *be = s->su.backend;
    const int64_t samples = tmixd_dataset_size(s->su.dataset), B = cfg->search_batch_size;
    const uint64_t epoch = (uint64_t)(s->step / s->batches_per_epoch);
    const int64_t index = s->step % s->batches_per_epoch, first = index * B;
    const int b = (int)(samples - first < B ? samples - first : B);
    const int h = s->su.augment.out_h, w = s->su.augment.out_w, ch = s->su.channels;
    const int cs = tmixd_dataset_channels(s->su.dataset);
    tmixd_batch_inputs in = {.pixels = s->pixels, .ids = s->ids, .read_ids = s->ids + B,
                             .labels = s->ids + 2 * B};
    TMIX_TRY(tmixd_sample_batch(&s->sampler, &s->order, epoch, first, b, &in));
    tmix_draws d = {0};
    TMIX_TRY(tmix_draws_alloc(&d, b, cfg->mix_n, s->module.stn_size));
    tmixd_sample_draws(&s->sampler, epoch, (uint64_t)index, &d);
    // The batch tensors are sized per step: the last batch of an epoch may be smaller.
    tmix_tensor_free(be, &s->src);
    tmix_tensor_free(be, &s->x);
    int rc = tmix_tensor_alloc(be, &s->src, TMIX_U8, 4, (int64_t[]){b, h, w, cs});
    if (rc == 0)
        rc = tmix_tensor_upload(be, &s->src, s->pixels);
    if (rc == 0)
        rc = tmix_tensor_alloc(be, &s->x, TMIX_F32, 4, (int64_t[]){b, ch, h, w});
    if (rc == 0)
        rc = tmix_preprocess(be, &s->x, &s->src, s->crops, s->su.mean, s->su.std);
    tmix_mix_result res;
    if (rc == 0)
        rc = tmix_mix_forward(s->mixer, s->su.teacher, &s->module, &s->x, in.labels, &d, true,
                              &res);
    for (int i = 0; rc == 0 && i < TMIX_MODULE_COUNT; i++)
        rc = tmix_tensor_zero(be, &s->grads[i]);
    if (rc == 0)
        rc = tmix_mix_backward(s->mixer, s->su.teacher, &s->module, s->grads, NULL);
    const tmix_sgd_params p = {.lr = (float)cfg->search_lr,
                               .momentum = (float)cfg->search_momentum,
                               .weight_decay = (float)cfg->search_weight_decay};
    for (int i = 0; rc == 0 && i < TMIX_MODULE_COUNT; i++)
        if (trains(s, i))
            rc = tmix_sgd_update(be, &s->module.p[i], &s->grads[i],
                                 s->momentum[i].data ? &s->momentum[i] : NULL, p, s->step);
    tmix_draws_free(&d);
    if (rc < 0)
        return tmix_fail(rc, "step %lld (epoch %llu, batch %lld): %s", (long long)s->step,
                         (unsigned long long)epoch, (long long)index, tmix_last_error());
    if (!isfinite(res.loss))
        return tmix_fail(TMIX_EINVAL, "step %lld (epoch %llu, batch %lld): the loss is %g; "
                         "lower [search] lr", (long long)s->step, (unsigned long long)epoch,
                         (long long)index, res.loss);
    float log_tau = 0;
    TMIX_TRY(tmix_tensor_download(be, &log_tau, &s->module.p[TMIX_MPN_LOG_TAU]));
    snprintf(fields, size, "\"lr\": %g, \"tau\": %.6g", cfg->search_lr, exp(log_tau));
    *loss = res.loss;
    *images = b;
    s->step++;
    const char *why = NULL;
    if (!s->told_whole && s->su.teacher && be != tmix_backend_cpu() &&
        cfg->mix_precision == TMIXD_PRECISION_BF16) {
        s->told_whole = true;
        if (tmix_teacher_runs_whole(s->su.teacher, &why))
            tmixd_log(TMIXD_LOG_INFO, "search: the teacher runs whole at bf16, forward and "
                      "backward");
        else
            tmixd_log(TMIXD_LOG_WARN, "search: the teacher runs op by op at bf16: %s", why);
    }
    return 0;
}

static int run(void *ctx)
{
    search *s = ctx;
    const bool resume = s->resume;
    TMIX_TRY(open_search(s, resume));
    const tmixd_config *cfg = &s->su.cfg;
    tmix_backend *be = s->su.backend;
    if (resume)
        tmixd_log(TMIXD_LOG_INFO, "search: resuming %s at step %lld of %lld", s->files.checkpoint,
                  (long long)s->step, (long long)s->steps);
    tmixd_log(TMIXD_LOG_INFO, "search: %s, %s on %s%s, teacher %s, %lld steps of %d (%lld per "
              "epoch), lr %g, momentum %g, weight decay %g; writes %s", tmix_method_name(s->method),
              tmixd_dataset_describe(s->su.dataset), be->name, s->su.backend_note,
              cfg->teacher_path, (long long)s->steps, cfg->search_batch_size,
              (long long)s->batches_per_epoch, cfg->search_lr, cfg->search_momentum,
              cfg->search_weight_decay, s->files.out);
    tmixd_trainlog log;
    TMIX_TRY(tmixd_trainlog_open(&log, "search", s->files.metrics, resume ? s->step : -1,
                                 s->steps));
    const tmixd_train_plan plan = {.step = &s->step, .steps = s->steps,
                                   .steps_per_epoch = s->batches_per_epoch,
                                   .checkpoint_every = cfg->search_checkpoint_every,
                                   .checkpoint = s->files.checkpoint};
    const tmixd_train_ops ops = {.step = step, .save_checkpoint = save_checkpoint};
    bool done;
    int rc = tmixd_train_loop(&log, &plan, &ops, s, &done);
    if (rc == 0 && done) {
        rc = tmix_module_save(&s->module, be, s->files.out);
        if (rc == 0)
            tmixd_trainlog_note(&log, "done: %lld steps; module %s", (long long)s->step,
                                s->files.out);
    }
    const int closed = tmixd_trainlog_close(&log);
    return rc < 0 ? rc : closed;
}

static void close_search(search *s)
{
    tmix_backend *be = s->su.backend;
    tmix_mixer_free(s->mixer);
    for (int i = 0; i < TMIX_MODULE_COUNT; i++) {
        tmix_tensor_free(be, &s->grads[i]);
        tmix_tensor_free(be, &s->momentum[i]);
    }
    if (s->has_module)
        tmix_module_free(&s->module, be);
    tmix_tensor_free(be, &s->src);
    tmix_tensor_free(be, &s->x);
    tmixd_epoch_order_free(&s->order);
    free(s->pixels);
    free(s->ids);
    free(s->crops);
    tmixd_setup_close(&s->su);
}

int tmixd_search_main(int argc, char **argv)
{
    const bool resume = tmixd_take_flag(&argc, argv, "--resume");
    search *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "tmixd search: out of memory\n");
        return 1;
    }
    s->resume = resume;
    const int code = tmixd_setup_run("search", &s->su, TMIXD_SETUP_SEARCH, argc, argv, run, s);
    close_search(s);
    free(s);
    return code;
}
