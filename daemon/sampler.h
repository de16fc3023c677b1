// The inputs of batch k of epoch e, shared by serving and search: the epoch's order, each
// sample read (or, when unreadable, a deterministic replacement), augmented, and the mixing
// draws. Every random choice comes from a generator seeded by (seed, what it is for, epoch,
// sample or batch), so any thread, in any order, on any run, makes the same batch.
#ifndef TMIXD_SAMPLER_H
#define TMIXD_SAMPLER_H

#include <stdint.h>

#include "augment.h"
#include "dataset.h"
#include "mix.h"

// Called the first time a sample fails to read (tmix_last_error() says why); may be called
// from several threads at once.
typedef void (*tmixd_bad_sample_fn)(void *ctx, int64_t id);

typedef struct {
    const tmixd_dataset *dataset;
    tmixd_augment_params augment;
    uint64_t seed;
    double alpha;             // of the mixing weights
    tmixd_bad_sample_fn on_bad; // NULL: not told
    void *ctx;
} tmixd_sampler;

// What a thread keeps between batches: the order of the epoch it is in.
typedef struct {
    int64_t *order;
    uint64_t epoch;
    bool valid;
} tmixd_epoch_order;

void tmixd_epoch_order_free(tmixd_epoch_order *o);

// The inputs of the b samples from position `first` of the epoch's order.
typedef struct {
    uint8_t *pixels;   // (b, H, W, Cs): the data set's channels, augmented
    int64_t *ids;      // [b] the samples drawn
    int64_t *read_ids; // [b] the samples read: ids[i], or its replacement
    int64_t *labels;   // [b] of read_ids
} tmixd_batch_inputs;

// Fills in (arrays of at least b) for samples first .. first + b - 1 of epoch's order.
// TMIX_EIO when a sample and all its replacements fail to read.
int tmixd_sample_batch(const tmixd_sampler *s, tmixd_epoch_order *o, uint64_t epoch,
                       int64_t first, int b, tmixd_batch_inputs *in);

// The generator of the augmentation of sample id in epoch (tmixd_augment's draws, in order);
// a replacement read in its place is cut with the same one.
void tmixd_sample_rng(const tmixd_sampler *s, uint64_t epoch, int64_t id, tmix_rng *rng);

// The mixing draws (pairs, λ, noise, CutMix centres) of batch `index` of epoch; d allocated
// by tmix_draws_alloc.
void tmixd_sample_draws(const tmixd_sampler *s, uint64_t epoch, uint64_t index, tmix_draws *d);

#endif
