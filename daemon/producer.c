// Batch production: workers turn a stream position into a finished batch, from the inputs
// the sampler draws (sampler.h) through a mixing lane to the job's output format.
#include "producer.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "histogram.h"
#include "log.h"
#include "ops.h"

static tmixd_batch *batch_alloc(const tmixd_job *job, int b, int n, int ch, int h, int w)
{
    const size_t images = (size_t)b * ch * h * w * tmixd_dtype_bytes(job->dtype);
    const size_t ids = (size_t)b * sizeof(uint64_t), pairs = (size_t)b * n;
    int slot = -1;
    void *in_ring = job->ring ? tmixd_ring_take(job->ring, &slot) : NULL;
    // Arrays first (8-byte aligned), images last unless they go to the ring.
    const size_t meta = sizeof(tmixd_batch) + 2 * ids + pairs * sizeof(uint64_t) +
                        pairs * sizeof(uint32_t) + pairs * sizeof(float);
    tmixd_batch *bt = calloc(1, meta + (in_ring ? 0 : 8 + images));
    if (!bt) {
        if (in_ring)
            tmixd_ring_give(job->ring, slot);
        return NULL;
    }
    char *p = (char *)(bt + 1);
    bt->sample_ids = (uint64_t *)p, p += ids;
    bt->replaced_ids = (uint64_t *)p, p += ids;
    bt->sources = (uint64_t *)p, p += pairs * sizeof(uint64_t);
    bt->labels = (uint32_t *)p, p += pairs * sizeof(uint32_t);
    bt->weights = (float *)p, p += pairs * sizeof(float);
    bt->images = in_ring ? in_ring : (void *)(((uintptr_t)p + 7) & ~(uintptr_t)7);
    bt->images_bytes = images;
    bt->bytes = meta + images;
    bt->ring = in_ring ? job->ring : NULL;
    bt->slot = slot;
    bt->pos = job->pos;
    bt->epoch = job->pos / job->batches_per_epoch;
    bt->index = job->pos % job->batches_per_epoch;
    bt->size = (uint32_t)b;
    bt->mix_n = (uint32_t)n;
    bt->dtype = job->dtype;
    bt->layout = job->layout;
    const bool nhwc = job->layout == 2;
    bt->shape[0] = (uint32_t)b;
    bt->shape[1] = (uint32_t)(nhwc ? h : ch);
    bt->shape[2] = (uint32_t)(nhwc ? w : h);
    bt->shape[3] = (uint32_t)(nhwc ? ch : w);
    return bt;
}

void tmixd_batch_free(tmixd_batch *b)
{
    if (b && b->pool_jobs > 0) {
        b->free_after_jobs = true;
        return;
    }
    if (b && b->ring)
        tmixd_ring_give(b->ring, b->slot);
    if (b && b->dring)
        tmixd_device_ring_give(b->dring, b->dslot);
    free(b);
}

void tmixd_batch_job_ended(tmixd_batch *b)
{
    if (--b->pool_jobs == 0 && b->free_after_jobs)
        tmixd_batch_free(b);
}

// ---- the worker pool ----------------------------------------------------------------------

// A lane mixes one batch at a time: a backend (on a GPU, a stream and cuDNN handle of its
// own, so that lanes overlap one batch's copies with another's kernels), a teacher sharing
// the weights but with activations of its own, and a mixer. Workers decode and augment
// without one, then take a free lane for the part that needs it. On a GPU the lane keeps the
// batch's device copies, so that its mixer's CUDA graph finds the images where it expects.
typedef struct lane {
    tmix_backend *be;
    bool owns_be;          // a second stream on the GPU, opened here
    tmix_teacher *teacher; // shares c->teacher's weights; NULL without a teacher
    tmix_mixer *mixer;
    tmix_tensor pixels, images; // on a GPU: (B, H, W, Cs) uint8 and (B, C, H, W) float32
    tmix_tensor encoded; // on a GPU: bytes for the mixed images in a job's format, grown
    void *download;      // on a GPU: pinned host memory they come back through, grown
    size_t download_bytes;
    bool graph_error_logged;
    int batch; // the size of its last batch: its buffers' and its graph's
    struct lane *next_free;
} lane;

struct tmixd_producer {
    tmixd_producer_config c;
    tmixd_sampler sampler;
    uv_mutex_t lock;
    uv_cond_t wake;
    uv_cond_t lane_free; // a lane came back (under lock)
    lane *lanes, *free_lanes;
    int nlanes;
    tmixd_job *queue, *queue_tail, *results;
    int pending;
    bool stopping;
    uint64_t bad_samples;
    atomic_uint_least64_t graph_batches; // mixed by one CUDA graph launch
    uint8_t *bad_seen; // a bit per sample: unreadable, already logged and counted
    uv_async_t async;
    tmixd_job_done done;
    void *ctx;
    uv_thread_t *threads;
    double *busy_since; // [nthreads] under lock: when each worker took its job, or 0
    int nthreads;
    atomic_int started; // workers started: each one's index into busy_since
    int ended;          // workers that left their loop (under lock)
    uv_cond_t worker_ended;
};

// What a worker keeps between batches: the order of the epoch it is in, and its staging
// buffers, grown to the largest batch.
typedef struct {
    tmixd_epoch_order order;
    uint8_t *pixels; // (B, H, W, Cs) as augmented (pinned on a GPU: uploaded by DMA)
    float *images;   // on the CPU: (B, C, H, W) normalised, then mixed
    size_t pixels_bytes, images_bytes;
} worker_state;

static void worker_state_free(tmixd_producer *p, worker_state *w)
{
    tmix_host_free(p->c.backend, w->pixels);
    tmix_host_free(p->c.backend, w->images);
    tmixd_epoch_order_free(&w->order);
}

// Makes the staging buffer *buf (host memory of be's: pinned on a GPU) hold at least bytes.
static int staging(tmix_backend *be, void **buf, size_t *have, size_t bytes)
{
    if (*have >= bytes)
        return 0;
    tmix_host_free(be, *buf);
    *buf = NULL;
    *have = 0;
    TMIX_TRY(tmix_host_alloc(be, bytes, buf));
    *have = bytes;
    return 0;
}

// A free lane, one whose last batch had `batch` samples if there is one: another size moves
// its buffers, and on a GPU drops its graph (an epoch's short last batch, or groups of other
// batch sizes, would otherwise cost every lane its graph in turn).
static lane *lane_take(tmixd_producer *p, int batch)
{
    uv_mutex_lock(&p->lock);
    while (!p->free_lanes)
        uv_cond_wait(&p->lane_free, &p->lock);
    lane **at = &p->free_lanes;
    for (lane **q = &p->free_lanes; *q; q = &(*q)->next_free)
        if ((*q)->batch == batch) {
            at = q;
            break;
        }
    lane *l = *at;
    *at = l->next_free;
    uv_mutex_unlock(&p->lock);
    return l;
}

static void lane_give(tmixd_producer *p, lane *l)
{
    uv_mutex_lock(&p->lock);
    l->next_free = p->free_lanes;
    p->free_lanes = l;
    uv_cond_signal(&p->lane_free);
    uv_mutex_unlock(&p->lock);
}

static int lane_open(tmixd_producer *p, lane *l, bool first)
{
    const tmixd_producer_config *c = &p->c;
    l->be = c->backend;
    if (!first && c->backend != tmix_backend_cpu()) {
        TMIX_TRY(tmix_backend_open(c->backend->name, &l->be));
        l->owns_be = true;
        TMIX_TRY(tmix_backend_set_precision(l->be, c->precision));
    }
    if (c->teacher)
        TMIX_TRY(tmix_teacher_share(&l->teacher, c->teacher, l->be));
    TMIX_TRY(tmix_mixer_new(&l->mixer, l->be, c->method));
    tmix_mixer_use_graphs(l->mixer, c->graphs);
    return 0;
}

static void lane_close(lane *l)
{
    (void)tmix_synchronize(l->be); // a batch that failed may have left work queued
    tmix_tensor_free(l->be, &l->pixels);
    tmix_tensor_free(l->be, &l->images);
    tmix_tensor_free(l->be, &l->encoded);
    tmix_host_free(l->be, l->download);
    tmix_mixer_free(l->mixer);
    tmix_teacher_free(l->teacher);
    if (l->owns_be)
        tmix_backend_close(l->be);
}

// The first time sample id fails to read: logs it with its path and counts it.
static void note_bad(void *ctx, int64_t id)
{
    tmixd_producer *p = ctx;
    uv_mutex_lock(&p->lock);
    const bool first = !(p->bad_seen[id / 8] & (1u << (id % 8)));
    p->bad_seen[id / 8] |= (uint8_t)(1u << (id % 8));
    p->bad_samples += first;
    uv_mutex_unlock(&p->lock);
    if (first)
        tmixd_log(TMIXD_LOG_WARN, "unreadable, replaced wherever it is drawn: %s",
                  tmix_last_error());
}

// Makes t a tensor of l's of the given shape, keeping it when it already is one.
static int lane_tensor(lane *l, tmix_tensor *t, tmix_dtype dtype, int ndim, const int64_t *shape)
{
    if (t->data && t->dtype == dtype && t->ndim == ndim &&
        memcmp(t->shape, shape, (size_t)ndim * sizeof *shape) == 0)
        return 0;
    tmix_tensor_free(l->be, t);
    return tmix_tensor_alloc(l->be, t, dtype, ndim, shape);
}

// Queues the copy of the batch's encoded images (src: on be's GPU, or host memory) into a
// free slot of the job's CUDA delivery ring on be's stream, ahead of be's next work. With
// no slot free the batch goes inline.
static int fill_device_slot(tmix_backend *be, const tmixd_job *job, const void *src,
                            tmixd_batch *bt)
{
    const int got = tmixd_device_ring_fill(job->dring, be, src, bt->images_bytes, &bt->dslot);
    if (got > 0)
        bt->dring = job->dring;
    return got < 0 ? got : 0;
}

// The intermediates of a preview job, downloaded from wherever the mix ran.
static int keep_preview(tmix_backend *be, const tmix_tensor *x, const tmix_mix_result *res,
                        tmixd_preview *pv)
{
    const uint32_t b = (uint32_t)x->shape[0], n = (uint32_t)(res->masks->shape[1]);
    if (tmixd_preview_alloc(pv, b, n, (uint32_t)x->shape[1], (uint32_t)x->shape[2],
                            (uint32_t)x->shape[3], res->cams != NULL) < 0)
        return tmix_fail(TMIX_ENOMEM, "preview of %u samples: out of memory", b);
    TMIX_TRY(tmix_tensor_download(be, pv->inputs, x));
    if (res->cams)
        TMIX_TRY(tmix_tensor_download(be, pv->cams, res->cams));
    TMIX_TRY(tmix_tensor_download(be, pv->warped, res->warped));
    TMIX_TRY(tmix_tensor_download(be, pv->masks, res->masks));
    TMIX_TRY(tmix_tensor_download(be, pv->mixed, res->mixed));
    for (uint32_t i = 0; i < b * n; i++)
        pv->source_rows[i] = (uint32_t)res->sources[i];
    return 0;
}

// Normalises the batch's pixels (w->pixels, (B, H, W, Cs)) and mixes them on lane l, then
// fills bt: the mixed images in the job's format (on a GPU encoded there, so that only
// those bytes come back, and a CUDA delivery slot is filled from device memory), and the
// sources, labels and weights.
static int mix_batch(tmixd_producer *p, worker_state *w, lane *l, const tmixd_job *job,
                     const tmix_crop *crops, const int64_t *labels, const int64_t *read_ids,
                     const tmix_draws *d, tmixd_batch *bt)
{
    const tmixd_producer_config *c = &p->c;
    tmix_backend *be = l->be;
    const bool gpu = be != tmix_backend_cpu();
    const int b = d->batch, n = d->n, ch = c->channels, h = c->augment.out_h;
    const int wd = c->augment.out_w, cs = tmixd_dataset_channels(c->dataset);
    tmix_tensor src = tmix_tensor_view(w->pixels, TMIX_U8, TMIX_CPU, 4, (int64_t[]){b, h, wd, cs});
    tmix_tensor x = tmix_tensor_view(w->images, TMIX_F32, TMIX_CPU, 4, (int64_t[]){b, ch, h, wd});
    tmix_tensor *dsrc = &l->pixels, *dx = &l->images; // their copies on a GPU
    tmix_mix_result res;
    int rc = 0;
    if (gpu) {
        rc = lane_tensor(l, dsrc, TMIX_U8, 4, src.shape);
        if (rc == 0)
            rc = tmix_tensor_upload(be, dsrc, w->pixels);
        if (rc == 0)
            rc = lane_tensor(l, dx, TMIX_F32, 4, x.shape);
    }
    if (rc == 0)
        rc = tmix_preprocess(be, gpu ? dx : &x, gpu ? dsrc : &src, crops, c->mean, c->std);
    const int64_t launches = tmix_mixer_graph_launches(l->mixer);
    if (rc == 0)
        rc = tmix_mix_forward(l->mixer, l->teacher, c->module, gpu ? dx : &x, labels, d, false,
                              &res);
    if (rc == 0 && tmix_mixer_graph_launches(l->mixer) > launches)
        atomic_fetch_add(&p->graph_batches, 1);
    const char *graph_error = tmix_mixer_graph_error(l->mixer);
    if (graph_error && !l->graph_error_logged) {
        tmixd_log(TMIXD_LOG_WARN, "%s: CUDA graphs off, batches run op by op: %s", be->name,
                  graph_error);
        l->graph_error_logged = true;
    }
    if (rc == 0 && job->preview) // before the inputs' buffer takes the mixed images
        rc = keep_preview(be, gpu ? dx : &x, &res, job->preview);
    const tmix_image_format format = tmixd_image_format(job->dtype, job->layout);
    const int64_t rows[2] = {b, (int64_t)bt->images_bytes / b};
    const int64_t bytes = (int64_t)bt->images_bytes;
    if (rc == 0 && gpu && (!l->encoded.data || tmix_tensor_numel(&l->encoded) < bytes))
        rc = lane_tensor(l, &l->encoded, TMIX_U8, 1, &bytes);
    tmix_tensor out = gpu ? tmix_tensor_view(l->encoded.data, TMIX_U8, TMIX_CUDA, 2, rows)
                          : tmix_tensor_view(bt->images, TMIX_U8, TMIX_CPU, 2, rows);
    if (rc == 0)
        rc = tmix_encode_images(be, &out, res.mixed, format, c->mean, c->std);
    if (rc == 0 && job->dring) // queued on this lane's stream
        rc = fill_device_slot(be, job, out.data, bt);
    // On a GPU they come back through the lane's pinned buffer, unless the members all read
    // the device slot. Either way the batch goes out only once the GPU has made it: a fault
    // fails this batch, not the next one, and no trainer's stream waits on the event of a
    // copy that a faulted (or exiting) daemon never finishes. The other lanes keep the GPU
    // busy meanwhile.
    bt->host_images = !gpu || !(bt->dring && job->device_only);
    if (rc == 0 && gpu && bt->host_images) {
        rc = staging(be, &l->download, &l->download_bytes, bt->images_bytes);
        if (rc == 0)
            rc = tmix_tensor_download(be, l->download, &out);
        if (rc == 0)
            memcpy(bt->images, l->download, bt->images_bytes);
    } else if (rc == 0 && gpu) {
        rc = tmix_synchronize(be);
    }
    if (rc == 0) {
        for (int i = 0; i < b * n; i++) {
            bt->sources[i] = (uint64_t)read_ids[res.sources[i]];
            bt->labels[i] = (uint32_t)res.labels[i];
            bt->weights[i] = res.weights[i];
        }
    }
    return rc;
}

// Makes the batch of one job on the calling worker, mixing on lane l, or on the first free
// lane when l is NULL; seconds[0] and [1] get the reading and mixing times (seconds may be
// NULL).
static int produce(tmixd_producer *p, worker_state *w, lane *l, const tmixd_job *job,
                   tmixd_batch **out, double seconds[2])
{
    const double start = tmixd_seconds();
    const tmixd_producer_config *c = &p->c;
    *out = NULL;
    const int64_t end = (int64_t)(job->shard_start + job->shard_len);
    const uint64_t epoch = job->pos / job->batches_per_epoch;
    const int64_t first = (int64_t)job->shard_start +
                          (int64_t)(job->pos % job->batches_per_epoch) * job->batch_size;
    const int b = (int)(end - first < job->batch_size ? end - first : job->batch_size);
    const int n = c->mix_n, h = c->augment.out_h, wd = c->augment.out_w, ch = c->channels;
    const int cs = tmixd_dataset_channels(c->dataset);
    int64_t *ids = malloc((size_t)b * 3 * sizeof *ids);
    tmix_crop *crops = calloc((size_t)b, sizeof *crops);
    tmix_draws draws = {0};
    tmixd_batch *bt = batch_alloc(job, b, n, ch, h, wd);
    int rc = 0;
    const bool on_cpu = c->backend == tmix_backend_cpu();
    if ((rc = staging(c->backend, (void **)&w->pixels, &w->pixels_bytes,
                      (size_t)b * h * wd * cs)) < 0 ||
        (on_cpu && (rc = staging(c->backend, (void **)&w->images, &w->images_bytes,
                                 (size_t)b * ch * h * wd * sizeof(float))) < 0))
        goto done;
    if (!ids || !crops || !bt) {
        rc = tmix_fail(TMIX_ENOMEM, "batch %llu: %d images of %dx%dx%d", (unsigned long long)job->pos,
                       b, ch, h, wd);
        goto done;
    }
    tmixd_batch_inputs in = {.pixels = w->pixels, .ids = ids, .read_ids = ids + b,
                             .labels = ids + 2 * b};
    if ((rc = tmixd_sample_batch(&p->sampler, &w->order, epoch, first, b, &in)) < 0)
        goto done;
    for (int i = 0; i < b; i++) {
        bt->sample_ids[i] = (uint64_t)in.ids[i];
        if (in.read_ids[i] != in.ids[i])
            bt->replaced_ids[bt->replaced_count++] = (uint64_t)in.ids[i];
    }
    const int stn = tmix_method_uses_stn(c->method) ? c->module->stn_size : 0; // noise only there
    if ((rc = tmix_draws_alloc(&draws, b, n, stn)) < 0)
        goto done;
    // Keyed by shard start + batch index: the batch index alone on one node, and on several
    // keys that no other node's batch of the epoch has (its index < its part's length).
    tmixd_sample_draws(&p->sampler, epoch, job->shard_start + job->pos % job->batches_per_epoch,
                       &draws);
    const double read = tmixd_seconds();
    if (seconds)
        seconds[0] = read - start;
    lane *use = l ? l : lane_take(p, b);
    use->batch = b; // (its own until given back)
    rc = mix_batch(p, w, use, job, crops, in.labels, in.read_ids, &draws, bt);
    if (!l)
        lane_give(p, use);
    if (seconds)
        seconds[1] = tmixd_seconds() - read;
done:
    if (rc < 0)
        tmixd_batch_free(bt);
    else
        *out = bt;
    tmix_draws_free(&draws);
    free(ids);
    free(crops);
    return rc;
}

int tmixd_producer_warm_up(tmixd_producer *p, uint32_t batch_size, int dtype, int layout)
{
    const uint64_t n = (uint64_t)tmixd_dataset_size(p->c.dataset);
    const tmixd_job job = {.pos = 0, .batches_per_epoch = (n + batch_size - 1) / batch_size,
                           .shard_len = n, .batch_size = batch_size, .dtype = dtype,
                           .layout = layout};
    worker_state w = {0};
    int rc = 0;
    // Every GPU stream chooses its convolution algorithms and fills the pool, and with graphs
    // a second batch records its graph (a recording that fails says so in the log now, not
    // while serving); CPU lanes differ only in their buffers.
    for (int i = 0; i < p->nlanes && rc == 0; i++) {
        if (i > 0 && !p->lanes[i].owns_be)
            break;
        const int batches = p->c.graphs && tmix_backend_has_graphs(p->lanes[i].be) ? 2 : 1;
        for (int k = 0; k < batches && rc == 0; k++) {
            tmixd_batch *b = NULL;
            rc = produce(p, &w, &p->lanes[i], &job, &b, NULL);
            tmixd_batch_free(b);
        }
        if (rc < 0)
            rc = tmix_fail(rc, "a first batch of %u on %s: %s", batch_size, p->lanes[i].be->name,
                           tmix_last_error());
        const char *why = NULL;
        if (rc == 0 && i == 0 && p->lanes[0].teacher && p->c.precision == TMIX_PRECISION_BF16 &&
            p->lanes[0].be != tmix_backend_cpu()) {
            if (tmix_teacher_runs_whole(p->lanes[0].teacher, &why))
                tmixd_log(TMIXD_LOG_INFO, "%s: the teacher runs whole, its activations bf16 "
                          "NHWC", p->lanes[0].be->name);
            else
                tmixd_log(TMIXD_LOG_WARN, "%s: the teacher runs op by op at bf16: %s",
                          p->lanes[0].be->name, why);
        }
        const tmix_mixer *mx = p->lanes[i].mixer; // (graphs off for good: mix_batch said why)
        if (rc == 0 && batches == 2 && !tmix_mixer_graph_launches(mx) &&
            !tmix_mixer_graph_error(mx))
            tmixd_log(TMIXD_LOG_WARN, "%s: a first batch could not be recorded as a CUDA graph; "
                      "tried again when serving", p->lanes[i].be->name);
    }
    worker_state_free(p, &w);
    return rc;
}

static void worker(void *arg)
{
    tmixd_producer *p = arg;
    const int me = atomic_fetch_add(&p->started, 1);
    worker_state w = {0};
    for (;;) {
        uv_mutex_lock(&p->lock);
        while (!p->queue && !p->stopping)
            uv_cond_wait(&p->wake, &p->lock);
        if (p->stopping) {
            uv_mutex_unlock(&p->lock);
            break;
        }
        tmixd_job *job = p->queue;
        p->queue = job->next;
        if (!p->queue)
            p->queue_tail = NULL;
        p->busy_since[me] = tmixd_seconds();
        uv_mutex_unlock(&p->lock);

        job->queued_s = tmixd_seconds() - job->submitted;
        double seconds[2] = {0, 0};
        if ((job->rc = produce(p, &w, NULL, job, &job->batch, seconds)) < 0)
            snprintf(job->error, sizeof job->error, "%s", tmix_last_error());
        job->read_s = seconds[0];
        job->mix_s = seconds[1];

        uv_mutex_lock(&p->lock);
        p->busy_since[me] = 0;
        job->next = p->results;
        p->results = job;
        uv_mutex_unlock(&p->lock);
        uv_async_send(&p->async);
    }
    worker_state_free(p, &w);
    uv_mutex_lock(&p->lock);
    p->ended++;
    uv_cond_signal(&p->worker_ended);
    uv_mutex_unlock(&p->lock);
}

static void on_results(uv_async_t *handle)
{
    tmixd_producer *p = handle->data;
    uv_mutex_lock(&p->lock);
    tmixd_job *job = p->results;
    p->results = NULL;
    uv_mutex_unlock(&p->lock);
    while (job) {
        tmixd_job *next = job->next;
        uv_mutex_lock(&p->lock);
        p->pending--;
        uv_mutex_unlock(&p->lock);
        p->done(p->ctx, job);
        job = next;
    }
}

int tmixd_producer_new(tmixd_producer **out, const tmixd_producer_config *c, uv_loop_t *loop,
                       tmixd_job_done done, void *ctx)
{
    tmixd_producer *p = calloc(1, sizeof *p);
    if (!p)
        return tmix_fail(TMIX_ENOMEM, "producer");
    p->c = *c;
    p->sampler = (tmixd_sampler){.dataset = c->dataset, .augment = c->augment, .seed = c->seed,
                                 .alpha = c->alpha, .on_bad = note_bad, .ctx = p};
    p->done = done;
    p->ctx = ctx;
    p->nthreads = c->workers > 0 ? c->workers : 1;
    p->nlanes = c->lanes > 0 ? c->lanes : 1;
    p->threads = calloc((size_t)p->nthreads, sizeof *p->threads);
    p->busy_since = calloc((size_t)p->nthreads, sizeof *p->busy_since);
    p->lanes = calloc((size_t)p->nlanes, sizeof *p->lanes);
    p->bad_seen = calloc((size_t)tmixd_dataset_size(c->dataset) / 8 + 1, 1);
    if (!p->threads || !p->busy_since || !p->lanes || !p->bad_seen || uv_mutex_init(&p->lock) ||
        uv_cond_init(&p->wake) || uv_cond_init(&p->lane_free) || uv_cond_init(&p->worker_ended) ||
        uv_async_init(loop, &p->async, on_results)) {
        free(p->threads);
        free(p->busy_since);
        free(p->lanes);
        free(p->bad_seen);
        free(p);
        return tmix_fail(TMIX_ENOMEM, "producer: threads and locks");
    }
    p->async.data = p;
    for (int i = 0; i < p->nlanes; i++) {
        const int rc = lane_open(p, &p->lanes[i], i == 0);
        if (rc < 0) {
            const int r = tmix_fail(rc, "mixing lane %d of %d on %s: %s", i + 1, p->nlanes,
                                    c->backend->name, tmix_last_error());
            p->nthreads = 0;
            tmixd_producer_stop(p, 0);
            return r;
        }
        lane_give(p, &p->lanes[i]);
    }
    for (int i = 0; i < p->nthreads; i++)
        if (uv_thread_create(&p->threads[i], worker, p)) {
            p->nthreads = i;
            tmixd_producer_stop(p, 0);
            return tmix_fail(TMIX_ENOMEM, "producer: cannot start worker thread %d", i);
        }
    *out = p;
    return 0;
}

void tmixd_producer_submit(tmixd_producer *p, tmixd_job *job)
{
    job->next = NULL;
    job->batch = NULL;
    job->rc = 0;
    job->error[0] = 0;
    job->submitted = tmixd_seconds();
    uv_mutex_lock(&p->lock);
    if (p->queue_tail)
        p->queue_tail->next = job;
    else
        p->queue = job;
    p->queue_tail = job;
    p->pending++;
    uv_cond_signal(&p->wake);
    uv_mutex_unlock(&p->lock);
}

int tmixd_producer_pending(const tmixd_producer *p) { return p->pending; }

double tmixd_producer_longest_s(tmixd_producer *p)
{
    const double now = tmixd_seconds();
    double longest = 0;
    uv_mutex_lock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        if (p->busy_since[i] > 0 && now - p->busy_since[i] > longest)
            longest = now - p->busy_since[i];
    uv_mutex_unlock(&p->lock);
    return longest;
}

uint64_t tmixd_producer_bad_samples(const tmixd_producer *p) { return p->bad_samples; }

uint64_t tmixd_producer_graph_batches(tmixd_producer *p) { return atomic_load(&p->graph_batches); }

static void free_jobs(tmixd_job *job)
{
    while (job) {
        tmixd_job *next = job->next;
        tmixd_batch_free(job->batch);
        tmixd_preview_free(job->preview); // its request goes unanswered: tmixd is stopping
        free(job);
        job = next;
    }
}

static void on_closed(uv_handle_t *handle)
{
    tmixd_producer *p = handle->data;
    free_jobs(p->queue);
    free_jobs(p->results);
    for (int i = 0; i < p->nlanes; i++)
        lane_close(&p->lanes[i]);
    free(p->lanes);
    uv_mutex_destroy(&p->lock);
    uv_cond_destroy(&p->wake);
    uv_cond_destroy(&p->lane_free);
    uv_cond_destroy(&p->worker_ended);
    free(p->threads);
    free(p->busy_since);
    free(p->bad_seen);
    free(p);
}

bool tmixd_producer_stop(tmixd_producer *p, double limit_s)
{
    const uint64_t deadline = uv_hrtime() + (uint64_t)(limit_s * 1e9);
    bool ended = true;
    uv_mutex_lock(&p->lock);
    p->stopping = true;
    uv_cond_broadcast(&p->wake);
    while (ended && p->ended < p->nthreads) {
        const uint64_t now = uv_hrtime();
        if (limit_s <= 0)
            uv_cond_wait(&p->worker_ended, &p->lock);
        else
            ended = now < deadline && uv_cond_timedwait(&p->worker_ended, &p->lock,
                                                        deadline - now) != UV_ETIMEDOUT;
    }
    uv_mutex_unlock(&p->lock);
    if (!ended) // a worker that never ends cannot be joined, nor what it holds freed
        return false;
    for (int i = 0; i < p->nthreads; i++)
        uv_thread_join(&p->threads[i]);
    uv_close((uv_handle_t *)&p->async, on_closed);
    return true;
}
