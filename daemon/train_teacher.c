// `tmixd train-teacher`: trains a classifier of the zoo from scratch on the configured data
// set (the readers and augmentation of serving, sampler.h), for users who have no teacher:
// SGD with momentum and weight decay, the learning rate annealed by a cosine over all
// epochs, batch norm in training mode; the test split's accuracy after every epoch; at the
// end a teacher file that [teacher] path loads. Step s trains on batch s % B of epoch s / B,
// so a checkpoint (weights, batch norm statistics, momentum, s) resumes exactly.
#include "train_teacher.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "classifier.h"
#include "error.h"
#include "log.h"
#include "ops.h"
#include "sampler.h"
#include "setup.h"
#include "trainloop.h"

#define MODEL_PREFIX "model."
#define MOMENTUM_PREFIX "optim.momentum."

enum { FINGERPRINTS = 5 };

typedef struct {
    tmixd_setup su;
    bool resume; // --resume: continue from the checkpoint
    tmixd_run_files files;
    tmix_classifier *net;
    int nparams;
    const tmix_classifier_param *params;
    const char **names;      // [nparams] the parameters' names
    tmix_tensor *momentum;   // [nparams]
    tmixd_dataset *test;     // the test split, for the accuracy after each epoch
    tmixd_sampler sampler, test_sampler;
    tmixd_epoch_order order;
    int64_t step, steps, batches_per_epoch, total_steps; // total: of every epoch (the schedule)
    // One step's buffers, for the largest batch.
    uint8_t *pixels;
    int64_t *ids; // ids, read ids, labels: 3 * batch
    float *targets;
    tmix_crop *crops;
    tmix_tensor src, x, logits, dlogits, onehot, loss;
} trainer;

static int fingerprint(const trainer *t, tmixd_fingerprint fp[FINGERPRINTS])
{
    const tmixd_config *cfg = &t->su.cfg;
    fp[0] = (tmixd_fingerprint){.key = "train.seed"};
    snprintf(fp[0].value, sizeof fp[0].value, "%llu", (unsigned long long)cfg->train_seed);
    fp[1] = (tmixd_fingerprint){.key = "train.batch_size"};
    snprintf(fp[1].value, sizeof fp[1].value, "%d", cfg->train_batch_size);
    fp[2] = (tmixd_fingerprint){.key = "train.samples"};
    snprintf(fp[2].value, sizeof fp[2].value, "%lld",
             (long long)tmixd_dataset_size(t->su.dataset));
    fp[3] = (tmixd_fingerprint){.key = "train.dataset"};
    snprintf(fp[3].value, sizeof fp[3].value, "%s", tmixd_dataset_describe(t->su.dataset));
    fp[4] = (tmixd_fingerprint){.key = "train.arch"};
    snprintf(fp[4].value, sizeof fp[4].value, "%s", cfg->train_arch);
    return FINGERPRINTS;
}

static int save_checkpoint(void *ctx)
{
    trainer *t = ctx;
    tmix_backend *be = t->su.backend;
    tmix_st_writer *w = NULL;
    tmixd_fingerprint fp[FINGERPRINTS];
    const int nfp = fingerprint(t, fp);
    int rc = tmix_st_writer_new(&w);
    if (rc == 0)
        rc = tmix_classifier_write_state(t->net, w, MODEL_PREFIX);
    if (rc == 0)
        rc = tmixd_checkpoint_put_tensors(w, be, MOMENTUM_PREFIX, t->names, t->momentum,
                                          t->nparams);
    if (rc == 0)
        rc = tmixd_checkpoint_put_meta(w, t->step, fp, nfp);
    if (rc == 0)
        rc = tmix_st_writer_save(w, t->files.checkpoint);
    tmix_st_writer_free(w);
    if (rc < 0)
        return tmix_fail(rc, "checkpoint %s: %s", t->files.checkpoint, tmix_last_error());
    return 0;
}

static int load_checkpoint(trainer *t)
{
    tmix_backend *be = t->su.backend;
    tmixd_fingerprint fp[FINGERPRINTS];
    const int nfp = fingerprint(t, fp);
    tmix_safetensors *st = NULL;
    int64_t step = 0;
    int rc = tmix_safetensors_open(&st, t->files.checkpoint);
    if (rc == 0)
        rc = tmixd_checkpoint_get_meta(st, &step, fp, nfp);
    if (rc == 0)
        rc = tmix_classifier_read_state(t->net, st, MODEL_PREFIX);
    if (rc == 0)
        rc = tmixd_checkpoint_get_tensors(st, be, MOMENTUM_PREFIX, t->names, t->momentum,
                                          t->nparams, "written with [train] momentum = 0?");
    tmix_safetensors_close(st);
    if (rc == 0)
        t->step = step;
    return rc;
}

static void on_bad(void *ctx, int64_t id)
{
    (void)ctx;
    tmixd_log(TMIXD_LOG_WARN, "sample %lld unreadable, replaced: %s", (long long)id,
              tmix_last_error());
}

static int open_trainer(trainer *t, bool resume)
{
    const tmixd_config *cfg = &t->su.cfg;
    tmix_backend *be = t->su.backend;
    TMIX_TRY(tmix_classifier_new(&t->net, be, cfg->train_arch, t->su.channels,
                                 tmixd_dataset_classes(t->su.dataset), cfg->train_seed));
    TMIX_TRY(tmixd_run_files_get(&t->files, "train", cfg->train_out, cfg->train_checkpoint,
                                 cfg->train_metrics, resume));
    t->params = tmix_classifier_params(t->net, &t->nparams);
    t->names = calloc((size_t)t->nparams, sizeof *t->names);
    t->momentum = calloc((size_t)t->nparams, sizeof *t->momentum);
    if (!t->names || !t->momentum)
        return tmix_fail(TMIX_ENOMEM, "train-teacher: %d parameters", t->nparams);
    for (int i = 0; i < t->nparams; i++) {
        t->names[i] = t->params[i].name;
        const tmix_tensor *v = t->params[i].value;
        if (cfg->train_momentum > 0) {
            TMIX_TRY(tmix_tensor_alloc(be, &t->momentum[i], TMIX_F32, v->ndim, v->shape));
            TMIX_TRY(tmix_tensor_zero(be, &t->momentum[i]));
        }
    }
    if (resume)
        TMIX_TRY(load_checkpoint(t));
    TMIX_TRY(tmixd_setup_test_split(&t->su, &t->test, &t->test_sampler));
    const int64_t samples = tmixd_dataset_size(t->su.dataset), b = cfg->train_batch_size;
    t->batches_per_epoch = (samples + b - 1) / b;
    t->total_steps = t->steps = t->batches_per_epoch * cfg->train_epochs;
    if (cfg->train_steps > 0 && cfg->train_steps < t->steps)
        t->steps = cfg->train_steps;
    t->sampler = (tmixd_sampler){.dataset = t->su.dataset, .augment = t->su.augment,
                                 .seed = cfg->train_seed, .on_bad = on_bad};
    const int h = t->su.augment.out_h, w = t->su.augment.out_w;
    const int cs = tmixd_dataset_channels(t->su.dataset), J = tmixd_dataset_classes(t->su.dataset);
    t->pixels = malloc((size_t)b * h * w * cs);
    t->ids = malloc((size_t)b * 3 * sizeof *t->ids);
    t->targets = malloc((size_t)b * J * sizeof *t->targets);
    t->crops = calloc((size_t)b, sizeof *t->crops);
    if (!t->pixels || !t->ids || !t->targets || !t->crops)
        return tmix_fail(TMIX_ENOMEM, "train-teacher: buffers for a batch of %lld", (long long)b);
    return tmix_tensor_alloc(be, &t->loss, TMIX_F32, 1, (int64_t[]){1});
}

// The b images of `first` on in sampler s's epoch, normalised into t->x (reallocated to b).
static int load_batch(trainer *t, const tmixd_sampler *s, tmixd_epoch_order *order,
                      uint64_t epoch, int64_t first, int b, tmixd_batch_inputs *in)
{
    tmix_backend *be = t->su.backend;
    const int h = t->su.augment.out_h, w = t->su.augment.out_w, ch = t->su.channels;
    const int cs = tmixd_dataset_channels(s->dataset), J = tmixd_dataset_classes(t->su.dataset);
    *in = (tmixd_batch_inputs){.pixels = t->pixels, .ids = t->ids, .read_ids = t->ids + b,
                               .labels = t->ids + 2 * b};
    TMIX_TRY(tmixd_sample_batch(s, order, epoch, first, b, in));
    if (t->x.ndim == 0 || t->x.shape[0] != b) {
        tmix_tensor *all[] = {&t->src, &t->x, &t->logits, &t->dlogits, &t->onehot};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            tmix_tensor_free(be, all[i]);
        TMIX_TRY(tmix_tensor_alloc(be, &t->src, TMIX_U8, 4, (int64_t[]){b, h, w, cs}));
        TMIX_TRY(tmix_tensor_alloc(be, &t->x, TMIX_F32, 4, (int64_t[]){b, ch, h, w}));
        TMIX_TRY(tmix_tensor_alloc(be, &t->logits, TMIX_F32, 2, (int64_t[]){b, J}));
        TMIX_TRY(tmix_tensor_alloc(be, &t->dlogits, TMIX_F32, 2, (int64_t[]){b, J}));
        TMIX_TRY(tmix_tensor_alloc(be, &t->onehot, TMIX_F32, 2, (int64_t[]){b, J}));
    }
    TMIX_TRY(tmix_tensor_upload(be, &t->src, t->pixels));
    return tmix_preprocess(be, &t->x, &t->src, t->crops, t->su.mean, t->su.std);
}

// The learning rate of step s: the peak annealed to 0 by a half cosine over every epoch.
static double lr_at(const trainer *t, int64_t s)
{
    return t->su.cfg.train_lr * 0.5 * (1 + cos(3.14159265358979323846 * (double)s / (double)t->total_steps));
}

static int step(void *ctx, float *loss, int *images, char *fields, size_t size)
{
    trainer *t = ctx;
    const tmixd_config *cfg = &t->su.cfg;
    tmix_backend *be = t->su.backend;
    const int64_t samples = tmixd_dataset_size(t->su.dataset), B = cfg->train_batch_size;
    const uint64_t epoch = (uint64_t)(t->step / t->batches_per_epoch);
    const int64_t index = t->step % t->batches_per_epoch, first = index * B;
    // A last batch of one image cannot be batch-normalised: it joins no step.
    int b = (int)(samples - first < B ? samples - first : B);
    const int J = tmixd_dataset_classes(t->su.dataset);
    tmixd_batch_inputs in;
    const double lr = lr_at(t, t->step);
    int rc = b < 2 ? 0 : load_batch(t, &t->sampler, &t->order, epoch, first, b, &in);
    if (b >= 2) {
        for (int i = 0; i < b; i++)
            for (int j = 0; j < J; j++)
                t->targets[(size_t)i * J + j] = in.labels[i] == j;
        if (rc == 0)
            rc = tmix_tensor_upload(be, &t->onehot, t->targets);
        if (rc == 0)
            rc = tmix_classifier_forward(t->net, &t->logits, &t->x, true);
        if (rc == 0)
            rc = tmix_cross_entropy_forward(be, &t->loss, &t->logits, &t->onehot);
        if (rc == 0)
            rc = tmix_tensor_zero(be, &t->dlogits);
        if (rc == 0)
            rc = tmix_cross_entropy_backward(be, &t->dlogits, &t->logits, &t->onehot);
        if (rc == 0)
            rc = tmix_classifier_zero_grad(t->net);
        if (rc == 0)
            rc = tmix_classifier_backward(t->net, &t->dlogits);
        const tmix_sgd_params p = {.lr = (float)lr, .momentum = (float)cfg->train_momentum,
                                   .weight_decay = (float)cfg->train_weight_decay};
        for (int i = 0; rc == 0 && i < t->nparams; i++)
            rc = tmix_sgd_update(be, t->params[i].value, t->params[i].grad,
                                 t->momentum[i].data ? &t->momentum[i] : NULL, p, t->step);
        if (rc == 0)
            rc = tmix_tensor_download(be, loss, &t->loss);
    } else {
        b = 0;
        *loss = 0;
    }
    if (rc < 0)
        return tmix_fail(rc, "step %lld (epoch %llu, batch %lld): %s", (long long)t->step,
                         (unsigned long long)epoch, (long long)index, tmix_last_error());
    if (!isfinite(*loss))
        return tmix_fail(TMIX_EINVAL, "step %lld (epoch %llu, batch %lld): the loss is %g; "
                         "lower [train] lr", (long long)t->step, (unsigned long long)epoch,
                         (long long)index, *loss);
    snprintf(fields, size, "\"lr\": %.6g", lr);
    *images = b;
    t->step++;
    return 0;
}

// Top-1 accuracy on the test split (eval mode: the running statistics).
static int test_accuracy(trainer *t, double *accuracy)
{
    const int64_t samples = tmixd_dataset_size(t->test), B = t->su.cfg.train_batch_size;
    const int J = tmixd_dataset_classes(t->su.dataset);
    float *logits = malloc((size_t)B * J * sizeof *logits);
    tmixd_epoch_order order = {0};
    int64_t right = 0;
    int rc = logits ? 0 : tmix_fail(TMIX_ENOMEM, "test accuracy");
    for (int64_t first = 0; rc == 0 && first < samples; first += B) {
        const int b = (int)(samples - first < B ? samples - first : B);
        tmixd_batch_inputs in;
        rc = load_batch(t, &t->test_sampler, &order, 0, first, b, &in);
        if (rc == 0)
            rc = tmix_classifier_forward(t->net, &t->logits, &t->x, false);
        if (rc == 0)
            rc = tmix_tensor_download(t->su.backend, logits, &t->logits);
        for (int i = 0; rc == 0 && i < b; i++) {
            int best = 0;
            for (int j = 1; j < J; j++)
                if (logits[(size_t)i * J + j] > logits[(size_t)i * J + best])
                    best = j;
            right += best == in.labels[i];
        }
    }
    free(logits);
    tmixd_epoch_order_free(&order);
    *accuracy = samples ? (double)right / (double)samples : 0;
    return rc;
}

static int epoch_end(void *ctx, int64_t epoch, char *note, size_t size)
{
    (void)epoch;
    trainer *t = ctx;
    double accuracy;
    TMIX_TRY(test_accuracy(t, &accuracy));
    snprintf(note, size, ", test accuracy %.2f%% (%s)", 100 * accuracy,
             tmixd_dataset_describe(t->test));
    return 0;
}

static int run(void *ctx)
{
    trainer *t = ctx;
    const bool resume = t->resume;
    TMIX_TRY(open_trainer(t, resume));
    const tmixd_config *cfg = &t->su.cfg;
    tmix_backend *be = t->su.backend;
    if (resume)
        tmixd_log(TMIXD_LOG_INFO, "train-teacher: resuming %s at step %lld of %lld",
                  t->files.checkpoint, (long long)t->step, (long long)t->steps);
    tmixd_log(TMIXD_LOG_INFO, "train-teacher: %s on %s, %dx%dx%d, on %s%s, %lld steps of %d "
              "(%lld per epoch), lr %g cosine, momentum %g, weight decay %g; writes %s",
              cfg->train_arch, tmixd_dataset_describe(t->su.dataset), t->su.channels,
              t->su.augment.out_h, t->su.augment.out_w, be->name, t->su.backend_note,
              (long long)t->steps, cfg->train_batch_size, (long long)t->batches_per_epoch,
              cfg->train_lr, cfg->train_momentum, cfg->train_weight_decay, t->files.out);
    tmixd_trainlog log;
    TMIX_TRY(tmixd_trainlog_open(&log, "train-teacher", t->files.metrics,
                                 resume ? t->step : -1, t->steps));
    const tmixd_train_plan plan = {.step = &t->step, .steps = t->steps,
                                   .steps_per_epoch = t->batches_per_epoch,
                                   .checkpoint_every = cfg->train_checkpoint_every,
                                   .checkpoint = t->files.checkpoint};
    const tmixd_train_ops ops = {.step = step, .epoch_end = epoch_end,
                                 .save_checkpoint = save_checkpoint};
    bool done;
    int rc = tmixd_train_loop(&log, &plan, &ops, t, &done);
    double accuracy = 0;
    if (rc == 0 && done)
        rc = test_accuracy(t, &accuracy);
    if (rc == 0 && done)
        rc = tmix_classifier_save_teacher(t->net, t->files.out,
                                          tmixd_dataset_describe(t->su.dataset), t->su.mean,
                                          t->su.std);
    if (rc == 0 && done)
        tmixd_trainlog_note(&log, "done: %lld steps, test accuracy %.2f%%; teacher %s",
                            (long long)t->step, 100 * accuracy, t->files.out);
    const int closed = tmixd_trainlog_close(&log);
    return rc < 0 ? rc : closed;
}

static void close_trainer(trainer *t)
{
    tmix_backend *be = t->su.backend;
    tmix_tensor *all[] = {&t->src, &t->x, &t->logits, &t->dlogits, &t->onehot, &t->loss};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tmix_tensor_free(be, all[i]);
    for (int i = 0; t->momentum && i < t->nparams; i++)
        tmix_tensor_free(be, &t->momentum[i]);
    free(t->momentum);
    free(t->names);
    tmix_classifier_free(t->net);
    tmixd_dataset_close(t->test);
    tmixd_epoch_order_free(&t->order);
    free(t->pixels);
    free(t->ids);
    free(t->targets);
    free(t->crops);
    tmixd_setup_close(&t->su);
}

int tmixd_train_teacher_main(int argc, char **argv)
{
    const bool resume = tmixd_take_flag(&argc, argv, "--resume");
    trainer *t = calloc(1, sizeof *t);
    if (!t) {
        fprintf(stderr, "tmixd train-teacher: out of memory\n");
        return 1;
    }
    t->resume = resume;
    const int code = tmixd_setup_run("train-teacher", &t->su, TMIXD_SETUP_TRAIN, argc, argv, run, t);
    close_trainer(t);
    free(t);
    return code;
}
