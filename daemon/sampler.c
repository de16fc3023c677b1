// Batch inputs from seeded draws (sampler.h).
#include "sampler.h"

#include <stdlib.h>

#include "error.h"

// What a generator is for: part of its seed, so that the streams never overlap.
enum { SEED_ORDER = 1, SEED_SAMPLE, SEED_REPLACE, SEED_MIX };

enum { MAX_REPLACEMENTS = 8 };

static uint64_t mix64(uint64_t x) // splitmix64's finaliser
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void seed_for(tmix_rng *r, uint64_t seed, uint64_t what, uint64_t a, uint64_t b)
{
    tmix_rng_seed(r, mix64(mix64(mix64(seed ^ mix64(what)) ^ a) ^ b));
}

void tmixd_epoch_order_free(tmixd_epoch_order *o)
{
    free(o->order);
    o->order = NULL;
    o->valid = false;
}

// The epoch's order of the data set: a permutation drawn from (seed, epoch).
static int epoch_order(const tmixd_sampler *s, tmixd_epoch_order *o, uint64_t epoch)
{
    const int64_t n = tmixd_dataset_size(s->dataset);
    if (!o->order && !(o->order = malloc((size_t)n * sizeof *o->order)))
        return tmix_fail(TMIX_ENOMEM, "the order of an epoch of %lld samples", (long long)n);
    if (!o->valid || o->epoch != epoch) {
        tmix_rng r;
        seed_for(&r, s->seed, SEED_ORDER, epoch, 0);
        tmix_rng_permutation(&r, n, o->order);
        o->epoch = epoch;
        o->valid = true;
    }
    return 0;
}

// The draws of one sample's augmentation, from a generator seeded by (epoch, id); the
// window is drawn while the image is read, once its size is known, so that only the part
// of it inside the window is decoded (and a JPEG at the scale the window allows).
typedef struct {
    const tmixd_sampler *s;
    uint64_t epoch;
    int64_t id;
    tmix_rng rng;
} sample_draws;

// Called by each read that succeeds: the generator starts anew for every image tried, so a
// replacement is cut as the sample itself would have been.
static int draw_window(void *ctx, int h, int w, tmixd_crop_box *window)
{
    sample_draws *d = ctx;
    tmixd_sample_rng(d->s, d->epoch, d->id, &d->rng);
    return tmixd_augment_window(&d->s->augment, h, w, &d->rng, window);
}

// Reads sample d->id, or in its place a deterministic other one when it cannot be read.
// Returns the id read.
static int64_t read_sample(sample_draws *d, tmixd_image *img)
{
    const tmixd_sampler *s = d->s;
    const int64_t n = tmixd_dataset_size(s->dataset);
    int64_t cur = d->id;
    for (int attempt = 0; attempt <= MAX_REPLACEMENTS; attempt++) {
        if (tmixd_dataset_read_window(s->dataset, cur, s->augment.out_h, s->augment.out_w,
                                      draw_window, d, img) == 0)
            return cur;
        if (s->on_bad)
            s->on_bad(s->ctx, cur);
        tmix_rng r;
        seed_for(&r, s->seed, SEED_REPLACE, (uint64_t)d->id, (uint64_t)attempt);
        cur = (int64_t)tmix_rng_below(&r, (uint64_t)n);
    }
    return tmix_fail(TMIX_EIO, "sample %lld and %d replacements could not be read",
                     (long long)d->id, MAX_REPLACEMENTS);
}

void tmixd_sample_rng(const tmixd_sampler *s, uint64_t epoch, int64_t id, tmix_rng *rng)
{
    seed_for(rng, s->seed, SEED_SAMPLE, epoch, (uint64_t)id);
}

int tmixd_sample_batch(const tmixd_sampler *s, tmixd_epoch_order *o, uint64_t epoch,
                       int64_t first, int b, tmixd_batch_inputs *in)
{
    TMIX_TRY(epoch_order(s, o, epoch));
    const size_t image = (size_t)s->augment.out_h * s->augment.out_w *
                         (size_t)tmixd_dataset_channels(s->dataset);
    tmixd_image img = {0};
    int rc = 0;
    for (int i = 0; i < b && rc == 0; i++) {
        sample_draws d = {.s = s, .epoch = epoch, .id = o->order[first + i]};
        const int64_t got = read_sample(&d, &img);
        if (got < 0) {
            rc = (int)got;
            break;
        }
        in->ids[i] = d.id;
        in->read_ids[i] = got;
        in->labels[i] = tmixd_dataset_label(s->dataset, got);
        rc = tmixd_augment_apply(&s->augment, &img, img.window, &d.rng,
                                 in->pixels + (size_t)i * image);
    }
    tmixd_image_free(&img);
    return rc;
}

void tmixd_sample_draws(const tmixd_sampler *s, uint64_t epoch, uint64_t index, tmix_draws *d)
{
    tmix_rng r;
    seed_for(&r, s->seed, SEED_MIX, epoch, index);
    tmix_draws_sample(d, &r, s->alpha);
}
