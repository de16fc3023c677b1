// Batch production: a pool of worker threads that turn a stream position into a finished
// batch (the epoch's order, read and decode, augment, normalise, mix, encode), each a pure
// function of (seed, position, batch size, output format). Decoding and augmenting run on
// every worker at once; normalising and mixing run on the configured backend in `lanes`
// (a batch at a time each: on a GPU a stream each, so that one batch's copies overlap
// another's kernels). Results come back on the event loop through a uv_async handle.
#ifndef TMIXD_PRODUCER_H
#define TMIXD_PRODUCER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "augment.h"
#include "batch.h"
#include "dataset.h"
#include "mix.h"
#include "preview.h"
#include "sampler.h"

typedef struct {
    tmix_backend *backend;       // where batches are normalised and mixed (a GPU, or the CPU)
    const tmixd_dataset *dataset;
    tmixd_augment_params augment;
    int channels;                // output channels (the teacher's when there is one)
    float mean[3], std[3];       // per output channel
    tmix_method method;
    int mix_n;
    double alpha;
    tmix_teacher *teacher;       // on backend; NULL when the method needs none
    const tmix_module *module;   // on backend; NULL when the method needs none
    uint64_t seed;
    int workers;
    int lanes;                   // batches mixed at once (>= 1)
    tmix_precision precision;    // of the convolutions on every GPU lane
    bool graphs;                 // each GPU lane replays its mix as a CUDA graph
} tmixd_producer_config;

// A unit of work: produce position pos for a group with these output settings.
typedef struct tmixd_job {
    void *owner;                 // the caller's (the group)
    uint64_t pos, batches_per_epoch;
    uint64_t shard_start, shard_len; // the group's part of each epoch's order
    uint32_t batch_size;
    int dtype, layout;
    tmixd_ring *ring;            // where the images go when it has a free slot, or NULL
    tmixd_device_ring *dring;    // where they are copied too when it has a free slot, or NULL
    bool device_only;            // every member takes cuda delivery: no host copy of a batch
                                 // that got a device slot
    tmixd_preview *preview;      // also keep the intermediates here (tmixctl preview), or NULL
    tmixd_batch *batch;          // the result, or NULL with rc and error set
    int rc;                      // why it failed (a TMIX_* code)
    char error[256];
    // Seconds spent, set by the producer: queued (submit to a worker taking it), reading
    // (read, decode, augment) and mixing (waiting for a lane, normalise, mix, encode).
    double queued_s, read_s, mix_s;
    double submitted; // private: tmixd_seconds() at submit
    struct tmixd_job *next;
} tmixd_job;

typedef struct tmixd_producer tmixd_producer;
typedef void (*tmixd_job_done)(void *ctx, tmixd_job *job); // on the loop thread; owns job

int tmixd_producer_new(tmixd_producer **out, const tmixd_producer_config *c, uv_loop_t *loop,
                       tmixd_job_done done, void *ctx);
// Queues a job (taking ownership); its result arrives through done.
void tmixd_producer_submit(tmixd_producer *p, tmixd_job *job);
// Makes one batch (position 0, these output settings) on each lane, on the calling thread,
// and drops them: the GPU's memory pool, kernels and convolution algorithms are set up, and a batch that
// cannot be made at all (out of device memory, say) fails here, before serving, with an
// error naming the batch and the backend.
int tmixd_producer_warm_up(tmixd_producer *p, uint32_t batch_size, int dtype, int layout);
// Jobs queued or running.
int tmixd_producer_pending(const tmixd_producer *p);
// How long the batch that has been running longest has run so far, in seconds; 0 when
// none runs. A batch that never ends (a GPU or a data read that hangs) shows here.
double tmixd_producer_longest_s(tmixd_producer *p);
// Distinct samples found unreadable (and replaced) so far.
uint64_t tmixd_producer_bad_samples(const tmixd_producer *p);
// Batches mixed by one CUDA graph launch so far ([mix] graphs), warm-up batches included.
uint64_t tmixd_producer_graph_batches(tmixd_producer *p);
// Stops the workers after the jobs they are running (queued ones are dropped, unreported)
// and closes the async handle; frees p once the loop has closed it. false, with p left as it
// is for the process to exit, when a job still runs after limit_s seconds (> 0; else no
// limit): it never ends.
bool tmixd_producer_stop(tmixd_producer *p, double limit_s);

#endif
