// The serving loop. Everything here runs on the libuv loop thread, except the producer's
// workers, which hand results back through their async handle, and on libuv's thread pool
// what can take long: the progress saves (save_progress), the reads of images from device
// slots (images_ready) and the packing of images into replies (reply_batch).
#include "server_impl.h"

#include <errno.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdarg.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "fault.h"
#include "log.h"
#include "notify.h"
#include "progress.h"

uint64_t server_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

// ---- replies ------------------------------------------------------------------------------

// env packed into a nanomsg message, or NULL (logged). Any thread.
static void *pack_reply(Tmix__Envelope *env)
{
    env->version = TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION;
    const size_t n = tmix__envelope__get_packed_size(env);
    void *msg = nn_allocmsg(n ? n : 1, 0);
    if (!msg) {
        tmixd_log(TMIXD_LOG_ERROR, "reply of %zu bytes: %s", n, nn_strerror(nn_errno()));
        return NULL;
    }
    tmix__envelope__pack(env, msg);
    return msg;
}

// Sends msg (from pack_reply; NULL: none) as the reply to the request whose routing header
// is control. Both are consumed.
static void send_reply(server *s, void *control, void *msg)
{
    if (!msg) {
        nn_freemsg(control);
        return;
    }
    struct nn_iovec iov = {&msg, NN_MSG};
    struct nn_msghdr hdr = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                            .msg_controllen = NN_MSG};
    if (nn_sendmsg(s->sock, &hdr, NN_DONTWAIT) < 0) {
        // The trainer is gone or not reading: its REQ socket resends, and gets the same reply.
        tmixd_log(TMIXD_LOG_DEBUG, "reply dropped: %s", nn_strerror(nn_errno()));
        nn_freemsg(msg);
        nn_freemsg(control);
    }
}

// Sends env as the reply to the request whose routing header is control (consumed).
void server_reply(server *s, void *control, Tmix__Envelope *env)
{
    send_reply(s, control, pack_reply(env));
}

void server_reply_error(server *s, void *control, Tmix__Error__Code code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    Tmix__Error err = TMIX__ERROR__INIT;
    err.code = code;
    err.message = text;
    Tmix__Envelope env = TMIX__ENVELOPE__INIT;
    env.body_case = TMIX__ENVELOPE__BODY_ERROR;
    env.error = &err;
    server_reply(s, control, &env);
}

static void stop(server *s);

// A CUDA or cuDNN failure while making a batch leaves the GPU's context unusable (a fault
// in a kernel is sticky): tmixd saves the progress and exits with an error rather than fail
// every batch from now on, and its supervisor starts it again on a fresh context.
static bool device_fault(int rc) { return rc == TMIX_ECUDA || rc == TMIX_ECUDNN; }

// Stops the daemon for a GPU that cannot be trusted any more (why: the failure's text).
static void gpu_fault(server *s, const char *why)
{
    if (!s->producer) // stopping already
        return;
    tmixd_log(TMIXD_LOG_ERROR, "the GPU cannot be trusted after this: saving progress and "
              "exiting");
    snprintf(s->fault, sizeof s->fault, "%s", why);
    stop(s);
}

static void serve_waiting(server *s, tmixd_group *g);

// ---- images read back from a device slot ---------------------------------------------------
// A batch made while all of its group's members took cuda delivery has its images only in
// its device slot; a member that takes it by shm or inline (one that joined since, or took
// the batch over) needs them in host memory. The copy runs on libuv's thread pool, not on
// the loop that every trainer waits on: the requests for the batch wait meanwhile and are
// answered when it ends. A copy that fails means a broken GPU context: the daemon stops, as
// for a batch that failed on the GPU. The batch stays while its copy runs (b->pool_jobs),
// and the loop runs until every copy has ended.
typedef struct {
    uv_work_t work;
    server *s;
    tmixd_group *g;
    tmixd_batch *b;
    int rc;
    char error[256];
} slot_read;

static void read_slot(uv_work_t *work) // on a thread of the pool
{
    slot_read *r = work->data;
    const tmixd_batch *b = r->b;
    r->rc = tmixd_device_ring_read(b->dring, b->dslot, b->images, b->images_bytes);
    if (r->rc < 0)
        snprintf(r->error, sizeof r->error, "%s", tmix_last_error());
}

static void slot_read_done(uv_work_t *work, int status)
{
    slot_read *r = work->data;
    tmixd_batch *b = r->b;
    b->reading = false;
    if (r->rc == 0 && status < 0) // never cancelled, so not expected
        snprintf(r->error, sizeof r->error, "uv_queue_work: %s", uv_strerror(status));
    if (r->rc == 0 && status == 0) {
        b->host_images = true;
    } else {
        b->read_failed = true;
        tmixd_log(TMIXD_LOG_ERROR, "batch %llu from its device slot: %s",
                  (unsigned long long)b->pos, r->error);
        gpu_fault(r->s, r->error);
    }
    tmixd_batch_job_ended(b);
    serve_waiting(r->s, r->g);
    free(r);
}

// Whether batch b can go to session ss now: 1 yes; 0 when its images are on their way from
// the device slot (the request waits); a negative code when they cannot be had.
static int images_ready(server *s, const session *ss, tmixd_batch *b)
{
    if (b->host_images || (ss->delivery == TMIX__DELIVERY__CUDA && b->dring))
        return 1;
    if (b->read_failed)
        return tmix_fail(TMIX_ECUDA, "batch %llu: its images could not be read from the GPU",
                         (unsigned long long)b->pos);
    if (b->reading)
        return 0;
    slot_read *r = calloc(1, sizeof *r);
    if (!r)
        return tmix_fail(TMIX_ENOMEM, "batch %llu: no memory to read its images from the GPU",
                         (unsigned long long)b->pos);
    *r = (slot_read){.work.data = r, .s = s, .g = ss->group, .b = b};
    const int rc = uv_queue_work(&s->loop, &r->work, read_slot, slot_read_done);
    if (rc < 0) {
        free(r);
        return tmix_fail(TMIX_EIO, "batch %llu: uv_queue_work: %s", (unsigned long long)b->pos,
                         uv_strerror(rc));
    }
    b->reading = true;
    b->pool_jobs++;
    return 0;
}

// ---- batch replies ---------------------------------------------------------------------
// A batch whose images travel inside its reply (inline delivery, or a ring that was full
// when it was made) is copied into the message: 25.7 MB for 128 float32 images of 224x224,
// milliseconds in which the loop would answer no other trainer. That packing runs on libuv's
// thread pool and the loop only sends the packed message; the batch stays meanwhile
// (b->pool_jobs). A reply that names a slot, or carries under PACK_ON_LOOP_MAX of images, is
// packed on the loop, at once: handing it to a thread and back costs more than the copy
// (inline 28x28 batches of 128 float32 images, 401 KB, at one trainer: 268k images/s packed
// on the loop, 229k on the pool; `tmixctl bench --delivery inline` on 2 cores).
enum { PACK_ON_LOOP_MAX = 1 << 20 };

typedef struct {
    uv_work_t work;
    server *s;
    void *control; // the request's routing header
    tmixd_batch *b;
    double asked; // when the request came (the Next latency)
    Tmix__Batch m;
    Tmix__Envelope env;
    void *msg; // packed, or NULL when that failed
} batch_reply;

// m for b as session ss's batch seq, its images where ss reads them (images_ready).
static void batch_message(Tmix__Batch *m, const session *ss, uint64_t seq, tmixd_batch *b)
{
    const Tmix__Batch init = TMIX__BATCH__INIT;
    *m = init;
    const size_t pairs = (size_t)b->size * b->mix_n;
    m->sequence = seq;
    m->epoch = b->epoch;
    m->index = b->index;
    m->n_shape = 4;
    m->shape = (uint32_t *)b->shape;
    m->dtype = b->dtype;
    m->layout = b->layout;
    if (ss->delivery == TMIX__DELIVERY__SHM && b->ring) {
        m->in_slot = true;
        m->slot = (uint32_t)b->slot;
    } else if (ss->delivery == TMIX__DELIVERY__CUDA && b->dring) {
        const tmix_ipc_buffer *buf = tmixd_device_ring_slot(b->dring, b->dslot);
        m->in_slot = true;
        m->slot = (uint32_t)b->dslot;
        m->cuda_mem = (ProtobufCBinaryData){sizeof buf->mem_handle, (uint8_t *)buf->mem_handle};
        m->cuda_event =
            (ProtobufCBinaryData){sizeof buf->event_handle, (uint8_t *)buf->event_handle};
    } else { // inline, or every slot of the ring was taken when the batch was made
        m->images = (ProtobufCBinaryData){b->images_bytes, b->images};
    }
    m->n_sample_ids = b->size;
    m->sample_ids = b->sample_ids;
    m->n_sources = m->n_labels = m->n_weights = pairs;
    m->sources = b->sources;
    m->labels = b->labels;
    m->weights = b->weights;
    m->mix_n = b->mix_n;
    m->n_replaced_ids = b->replaced_count;
    m->replaced_ids = b->replaced_ids;
}

static void pack_batch(uv_work_t *work) // on a thread of the pool, or on the loop
{
    batch_reply *r = work->data;
    if (r->m.images.len > 0)
        tmixd_fault_delay("TMIXD_FAULT_SLOW_PACK_MS");
    r->msg = pack_reply(&r->env);
}

static void send_batch(uv_work_t *work, int status) // status: 0, as packings are never cancelled
{
    batch_reply *r = work->data;
    server *s = r->s;
    (void)status;
    send_reply(s, r->control, r->msg);
    s->served++;
    s->images_served += r->b->size;
    tmixd_histogram_observe(&s->next, tmixd_seconds() - r->asked);
    tmixd_batch_job_ended(r->b);
    free(r);
}

// Sends b as session ss's batch seq, its images where ss reads them (images_ready).
static void reply_batch(server *s, void *control, const session *ss, uint64_t seq,
                        tmixd_batch *b)
{
    batch_reply *r = malloc(sizeof *r);
    if (!r)
        return server_reply_error(s, control, TMIX__ERROR__CODE__INTERNAL,
                                  "batch %llu: no memory for its reply",
                                  (unsigned long long)b->pos);
    const Tmix__Envelope init = TMIX__ENVELOPE__INIT;
    *r = (batch_reply){.work.data = r, .s = s, .control = control, .b = b, .asked = ss->asked,
                       .env = init};
    batch_message(&r->m, ss, seq, b);
    r->env.body_case = TMIX__ENVELOPE__BODY_BATCH;
    r->env.batch = &r->m;
    b->pool_jobs++; // until send_batch, wherever the packing runs
    const bool big = r->m.images.len >= PACK_ON_LOOP_MAX;
    if (!big || uv_queue_work(&s->loop, &r->work, pack_batch, send_batch) < 0) {
        pack_batch(&r->work);
        send_batch(&r->work, 0);
    }
}

// ---- sessions and groups ------------------------------------------------------------------

static session *find_session(server *s, uint64_t id)
{
    for (int i = 0; i < s->nsessions; i++)
        if (s->sessions[i].id == id)
            return &s->sessions[i];
    return NULL;
}

// groups[i] of group name, or -1.
static int find_group(server *s, const char *name)
{
    for (int i = 0; i < s->ngroups; i++)
        if (strcmp(tmixd_group_name(s->groups[i]), name) == 0)
            return i;
    return -1;
}

// groups[i] of group g.
static int index_of(const server *s, const tmixd_group *g)
{
    int i = 0;
    while (s->groups[i] != g)
        i++;
    return i;
}

// Slots for a ring of groups[i]: one per batch the memory budget lets exist, plus three per
// trainer (the batch it trains on, the one it released, acknowledged only by its next
// request, and the one libtmix asked for ahead), so that only a trainer holding many
// batches at once ever gets one inline.
static size_t slot_bytes(const server *s, int i)
{
    const tmixd_group_params *p = tmixd_group_params_get(s->groups[i]);
    const tmixd_augment_params *a = &s->c->producer.augment;
    return (size_t)p->batch_size * (size_t)s->c->producer.channels * (size_t)a->out_h *
           (size_t)a->out_w * tmixd_dtype_bytes(p->dtype);
}

static int ring_slots(const server *s, int i)
{
    const size_t slots = s->c->max_memory / slot_bytes(s, i) + 3 * (size_t)s->c->max_trainers;
    return slots < 65536 ? (int)slots : 65536;
}

// Makes the ring groups[i]'s members of this delivery read from, unless it has one.
static int ensure_ring(server *s, int i, int delivery)
{
    if (delivery == TMIX__DELIVERY__SHM && !s->rings[i])
        return tmixd_ring_new(&s->rings[i], i, slot_bytes(s, i), ring_slots(s, i));
    if (delivery == TMIX__DELIVERY__CUDA && !s->drings[i])
        return tmixd_device_ring_new(&s->drings[i], s->c->producer.backend, slot_bytes(s, i),
                                     ring_slots(s, i));
    return 0;
}

size_t server_memory_in_use(const server *s)
{
    size_t bytes = 0;
    for (int i = 0; i < s->ngroups; i++)
        bytes += tmixd_group_bytes(s->groups[i]);
    return bytes;
}

// Whether group g has members and all take cuda delivery: its batches then need no host copy.
static bool device_only(const server *s, const tmixd_group *g)
{
    int members = 0;
    for (int i = 0; i < s->nsessions; i++) {
        if (s->sessions[i].group != g)
            continue;
        if (s->sessions[i].delivery != TMIX__DELIVERY__CUDA)
            return false;
        members++;
    }
    return members > 0;
}

// Starts production of what group g wants now.
static void pump(server *s, tmixd_group *g)
{
    if (!s->producer) // stopping (after a GPU fault, say): nothing more is made
        return;
    uint64_t positions[WANTED_PER_PUMP];
    const bool room = server_memory_in_use(s) < s->c->max_memory;
    const int count = tmixd_group_wanted(g, room, positions, WANTED_PER_PUMP);
    const tmixd_group_params *p = tmixd_group_params_get(g);
    const int gi = index_of(s, g);
    uint64_t shard_start, shard_len;
    tmixd_group_shard(g, &shard_start, &shard_len);
    const bool on_device = s->drings[gi] && device_only(s, g);
    for (int i = 0; i < count; i++) {
        tmixd_job *job = calloc(1, sizeof *job);
        if (!job) {
            tmixd_group_failed(g, positions[i]);
            continue;
        }
        *job = (tmixd_job){.owner = g, .pos = positions[i],
                           .batches_per_epoch = tmixd_group_batches_per_epoch(g),
                           .shard_start = shard_start, .shard_len = shard_len,
                           .batch_size = p->batch_size, .dtype = p->dtype, .layout = p->layout,
                           .ring = s->rings[gi], .dring = s->drings[gi],
                           .device_only = on_device};
        tmixd_producer_submit(s->producer, job);
    }
}

// Whether session i, which asked at t, comes after session j, which asked at u.
static bool asked_later(double t, int i, double u, int j) { return t > u || (t == u && i > j); }

// The session of group g with a request waiting that asked first after session `after`
// (-1: first of all), or -1.
static int next_waiting(const server *s, const tmixd_group *g, int after)
{
    int next = -1;
    for (int i = 0; i < s->nsessions; i++) {
        const session *ss = &s->sessions[i];
        if (ss->group != g || !ss->pending ||
            (after >= 0 && !asked_later(ss->asked, i, s->sessions[after].asked, after)))
            continue;
        if (next < 0 || asked_later(s->sessions[next].asked, next, ss->asked, i))
            next = i;
    }
    return next;
}

// Answers session ss's waiting request (ss->pending) if it can be answered now: with its
// batch, or with the error that stops it; else it goes on waiting.
static void answer(server *s, session *ss)
{
    tmixd_batch *b;
    int rc = tmixd_group_next(ss->group, ss->id, ss->pending_seq, ss->pending_ack, &b);
    Tmix__Error__Code code = TMIX__ERROR__CODE__BAD_REQUEST;
    if (rc > 0) {
        rc = images_ready(s, ss, b);
        code = TMIX__ERROR__CODE__INTERNAL;
    }
    if (rc == 0)
        return;
    void *control = ss->pending;
    ss->pending = NULL;
    if (rc > 0)
        reply_batch(s, control, ss, ss->pending_seq, b);
    else
        server_reply_error(s, control, code, "%s", tmix_last_error());
}

// Answers the waiting requests of group g's members that can be answered now, the oldest
// request first: a trainer asks again as soon as it has a batch (libtmix asks ahead), so
// answering in session order gave each new batch to the first sessions while the last
// waited (Next's p99 at 4 trainers on 2 cores: 350 ms).
static void serve_waiting(server *s, tmixd_group *g)
{
    for (int i = next_waiting(s, g, -1); i >= 0; i = next_waiting(s, g, i))
        answer(s, &s->sessions[i]);
    pump(s, g);
}

static void drop_session(server *s, session *ss, uint64_t ack_through)
{
    tmixd_group *g = ss->group;
    tmixd_group_leave(g, ss->id, ack_through);
    if (ss->pending)
        nn_freemsg(ss->pending);
    *ss = s->sessions[--s->nsessions];
    s->dirty = true;
    serve_waiting(s, g); // the batches it held go to the others
}

static void on_job_done(void *ctx, tmixd_job *job)
{
    server *s = ctx;
    tmixd_group *g = job->owner;
    if (job->preview) { // a preview's fault is the GPU's as much as a batch's
        char why[sizeof job->error];
        const bool fault = !job->batch && device_fault(job->rc);
        snprintf(why, sizeof why, "%s", job->error);
        server_preview_done(s, job);
        if (fault)
            gpu_fault(s, why);
        return;
    }
    if (!s->producer) { // stopping: what was still running is dropped
        tmixd_batch_free(job->batch);
        free(job);
        return;
    }
    if (job->batch) {
        tmixd_histogram_observe(&s->queued, job->queued_s);
        tmixd_histogram_observe(&s->read, job->read_s);
        tmixd_histogram_observe(&s->mix, job->mix_s);
        tmixd_group_produced(g, job->batch);
    } else {
        tmixd_log(TMIXD_LOG_ERROR, "group %s: batch %llu failed: %s", tmixd_group_name(g),
                  (unsigned long long)job->pos, job->error);
        tmixd_group_failed(g, job->pos);
        if (device_fault(job->rc)) {
            gpu_fault(s, job->error);
            free(job);
            return;
        }
    }
    free(job);
    serve_waiting(s, g);
}

// ---- requests -----------------------------------------------------------------------------

static bool valid_group_name(const char *name)
{
    const size_t n = strlen(name);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(name[i] >= 'a' && name[i] <= 'z') && !(name[i] >= 'A' && name[i] <= 'Z') &&
            !(name[i] >= '0' && name[i] <= '9') && !strchr("._-", name[i]))
            return false;
    return true;
}

// Whether a Hello for cuda delivery must be refused (why says so): tmixd must mix on a GPU,
// and the trainer be on that GPU, by PCI bus id when the Hello names one (ordinals follow
// each process's CUDA_VISIBLE_DEVICES), else by ordinal. bus gets tmixd's GPU's bus id.
static bool cuda_refused(const server *s, const Tmix__Hello *h, char *bus, size_t bus_size,
                         char *why, size_t why_size)
{
    const char *backend = s->c->backend, *colon = strchr(backend, ':');
    if (strncmp(backend, "cuda", 4) != 0) {
        snprintf(why, why_size, "cuda delivery needs tmixd on a GPU; it mixes on %s: ask for "
                 "shm or inline", backend);
        return true;
    }
    if (tmix_pci_bus_id(s->c->producer.backend, bus, bus_size) < 0) {
        snprintf(why, why_size, "cuda delivery: %s", tmix_last_error());
        return true;
    }
    if (h->cuda_pci_bus_id && h->cuda_pci_bus_id[0]) {
        if (strcasecmp(h->cuda_pci_bus_id, bus) == 0)
            return false;
        snprintf(why, why_size, "cuda delivery from %s (PCI %s) to a trainer on PCI %.32s: the "
                 "trainer must be on tmixd's GPU", backend, bus, h->cuda_pci_bus_id);
        return true;
    }
    if (h->cuda_device == (colon ? atoi(colon + 1) : 0))
        return false;
    snprintf(why, why_size, "cuda delivery from %s to a trainer on GPU %d: the trainer must be "
             "on tmixd's GPU", backend, (int)h->cuda_device);
    return true;
}

static void on_hello(server *s, void *control, const Tmix__Hello *h)
{
    const tmixd_server_config *c = s->c;
    const char *name = h->group && h->group[0] ? h->group : "default";
    if (!valid_group_name(name))
        return server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST,
                           "group name '%.80s' must be 1 to 64 of [A-Za-z0-9._-]", name);
    const int delivery = h->delivery ? (int)h->delivery : TMIX__DELIVERY__INLINE;
    char bus[32] = "", why[256];
    if (delivery == TMIX__DELIVERY__CUDA && cuda_refused(s, h, bus, sizeof bus, why, sizeof why))
        return server_reply_error(s, control, TMIX__ERROR__CODE__NOT_SUPPORTED, "%s", why);
    if (delivery != TMIX__DELIVERY__INLINE && strncmp(c->endpoint, "ipc://", 6) != 0)
        return server_reply_error(s, control, TMIX__ERROR__CODE__NOT_SUPPORTED,
                           "%s delivery needs an ipc:// endpoint (the trainer on this "
                           "machine); %s is not one: ask for inline",
                           delivery == TMIX__DELIVERY__SHM ? "shm" : "cuda", c->endpoint);
    if (s->nsessions >= c->max_trainers)
        return server_reply_error(s, control, TMIX__ERROR__CODE__BUSY,
                           "%d trainers are connected ([server] max_trainers)", s->nsessions);
    if (h->mode > TMIX__GROUP_MODE__BROADCAST || h->dtype > TMIX__DTYPE__UINT8 ||
        h->layout > TMIX__LAYOUT__NHWC || delivery > TMIX__DELIVERY__CUDA)
        return server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST,
                           "hello: mode %d, dtype %d, layout %d or delivery %d out of range",
                           (int)h->mode, (int)h->dtype, (int)h->layout, delivery);
    if (h->batch_size > (uint32_t)c->max_batch_size)
        return server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST,
                           "hello: batch size %u is above the limit of %d ([server] "
                           "max_batch_size)", h->batch_size, c->max_batch_size);
    const uint64_t dataset_size = (uint64_t)tmixd_dataset_size(c->producer.dataset);
    const uint32_t node_count = h->node_count ? h->node_count : 1;
    if (h->node_rank >= node_count || node_count > dataset_size)
        return server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST,
                           "hello: node %u of %u: the rank must be below the count, and the "
                           "count at most the %llu samples", h->node_rank, node_count,
                           (unsigned long long)dataset_size);
    const tmixd_group_params want = {
        .mode = h->mode ? (int)h->mode : TMIXD_SHARD,
        .batch_size = h->batch_size ? h->batch_size : c->batch_size,
        .dtype = h->dtype ? (int)h->dtype : c->dtype,
        .layout = h->layout ? (int)h->layout : c->layout,
        .node_rank = h->node_rank,
        .node_count = node_count,
    };
    int gi = find_group(s, name);
    tmixd_group *g = gi >= 0 ? s->groups[gi] : NULL;
    if (g) {
        const tmixd_group_params *p = tmixd_group_params_get(g);
        if (p->mode != want.mode || p->batch_size != want.batch_size || p->dtype != want.dtype ||
            p->layout != want.layout || p->node_rank != want.node_rank ||
            p->node_count != want.node_count)
            return server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST,
                               "group %s is %s with batch size %u, dtype %d, layout %d, node %u "
                               "of %u; this hello asks for %s, %u, %d, %d, node %u of %u", name,
                               p->mode == TMIXD_SHARD ? "shard" : "broadcast", p->batch_size,
                               p->dtype, p->layout, p->node_rank, p->node_count,
                               want.mode == TMIXD_SHARD ? "shard" : "broadcast", want.batch_size,
                               want.dtype, want.layout, want.node_rank, want.node_count);
    } else {
        if (s->ngroups == MAX_GROUPS)
            return server_reply_error(s, control, TMIX__ERROR__CODE__BUSY, "%d groups exist",
                               MAX_GROUPS);
        g = tmixd_group_new(name, &want, dataset_size, c->prefetch);
        if (!g)
            return server_reply_error(s, control, TMIX__ERROR__CODE__INTERNAL, "out of memory");
        gi = s->ngroups++;
        s->groups[gi] = g;
    }
    const int made = ensure_ring(s, gi, delivery);
    if (made < 0) {
        tmixd_log(TMIXD_LOG_ERROR, "group %s: %s", name, tmix_last_error());
        return server_reply_error(s, control, made == TMIX_ENOTSUP
                                  ? TMIX__ERROR__CODE__NOT_SUPPORTED : TMIX__ERROR__CODE__INTERNAL,
                           "group %s: no ring for %s delivery: %s", name,
                           delivery == TMIX__DELIVERY__SHM ? "shm" : "cuda", tmix_last_error());
    }
    if (s->nsessions == s->cap_sessions) {
        const int cap = s->cap_sessions ? 2 * s->cap_sessions : 16;
        session *a = realloc(s->sessions, (size_t)cap * sizeof *a);
        if (!a)
            return server_reply_error(s, control, TMIX__ERROR__CODE__INTERNAL, "out of memory");
        s->sessions = a;
        s->cap_sessions = cap;
    }
    const uint64_t id = tmix_rng_next(&s->ids) | 1; // never 0, the unset value
    if (tmixd_group_join(g, id, h->start) < 0)
        return server_reply_error(s, control, TMIX__ERROR__CODE__INTERNAL, "%s", tmix_last_error());
    s->sessions[s->nsessions++] =
        (session){.id = id, .group = g, .last_seen_ms = server_now_ms(), .delivery = delivery};

    const tmixd_group_params *p = tmixd_group_params_get(g);
    const tmixd_augment_params *a = &c->producer.augment;
    uint32_t shape[3] = {(uint32_t)c->producer.channels, (uint32_t)a->out_h, (uint32_t)a->out_w};
    Tmix__Welcome w = TMIX__WELCOME__INIT;
    w.session_id = id;
    w.n_image_shape = 3;
    w.image_shape = shape;
    w.classes = (uint32_t)c->classes;
    uint64_t shard_start;
    tmixd_group_shard(g, &shard_start, &w.epoch_size); // this node's part of each epoch
    w.method = (char *)tmix_method_name(c->producer.method);
    w.mix_n = (uint32_t)c->producer.mix_n;
    w.batch_size = p->batch_size;
    w.batches_per_epoch = tmixd_group_batches_per_epoch(g);
    w.mode = p->mode;
    w.dtype = p->dtype;
    w.layout = p->layout;
    w.delivery = delivery;
    w.n_mean = w.n_std = (size_t)c->producer.channels;
    w.mean = (float *)c->producer.mean;
    w.std = (float *)c->producer.std;
    w.lease_timeout_ms = (uint32_t)(c->config->server_lease_timeout_s * 1000); // reloadable
    const tmixd_ring *ring = s->rings[gi];
    if (delivery == TMIX__DELIVERY__SHM) {
        w.shm_name = (char *)tmixd_ring_name(ring);
        w.shm_slot_bytes = tmixd_ring_slot_bytes(ring);
        w.shm_slots = (uint32_t)tmixd_ring_slots(ring);
    } else if (delivery == TMIX__DELIVERY__CUDA) {
        w.cuda_device = tmixd_device_ring_device(s->drings[gi]);
        w.cuda_slots = (uint32_t)tmixd_device_ring_slots(s->drings[gi]);
        w.cuda_pci_bus_id = bus;
    }
    Tmix__Envelope env = TMIX__ENVELOPE__INIT;
    env.body_case = TMIX__ENVELOPE__BODY_WELCOME;
    env.welcome = &w;
    server_reply(s, control, &env);
    tmixd_log(TMIXD_LOG_INFO, "session %016llx joined group %s (%d members)",
              (unsigned long long)id, name, tmixd_group_members(g));
    pump(s, g);
}

static void on_next(server *s, void *control, const Tmix__Next *n)
{
    session *ss = find_session(s, n->session_id);
    if (!ss)
        return server_reply_error(s, control, TMIX__ERROR__CODE__UNKNOWN_SESSION,
                           "session %016llx is unknown (expired, or the daemon restarted): say "
                           "hello again", (unsigned long long)n->session_id);
    ss->last_seen_ms = server_now_ms();
    ss->asked = tmixd_seconds();
    if (ss->pending) // a resent request: the new routing header replaces the old one
        nn_freemsg(ss->pending);
    ss->pending = control;
    ss->pending_seq = n->sequence;
    ss->pending_ack = n->ack_through;
    tmixd_group_release(ss->group, ss->id, n->released, n->n_released);
    answer(s, ss);
    s->dirty = true;
    pump(s, ss->group);
}

static void on_bye(server *s, void *control, const Tmix__Bye *b)
{
    session *ss = find_session(s, b->session_id);
    if (ss) {
        tmixd_log(TMIXD_LOG_INFO, "session %016llx left group %s", (unsigned long long)ss->id,
                  tmixd_group_name(ss->group));
        tmixd_group_release(ss->group, ss->id, b->released, b->n_released);
        drop_session(s, ss, b->ack_through);
    }
    Tmix__Bye m = TMIX__BYE__INIT; // answered even for an unknown session: it is gone
    m.session_id = b->session_id;
    Tmix__Envelope env = TMIX__ENVELOPE__INIT;
    env.body_case = TMIX__ENVELOPE__BODY_BYE;
    env.bye = &m;
    server_reply(s, control, &env);
}

static void on_request(server *s, const void *data, size_t size, void *control)
{
    if (size > s->c->max_request)
        return server_reply_error(s, control, TMIX__ERROR__CODE__TOO_LARGE,
                           "request of %zu bytes; the limit is %zu ([server] max_request_bytes)",
                           size, s->c->max_request);
    Tmix__Envelope *env = tmix__envelope__unpack(NULL, size, data);
    if (!env)
        return server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST,
                           "request of %zu bytes is not a tmix.Envelope", size);
    if (env->version != TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION) {
        server_reply_error(s, control, TMIX__ERROR__CODE__VERSION_MISMATCH,
                    "protocol version %d; this daemon speaks version %d (tmixd %s)",
                    (int)env->version, TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION, TMIX_VERSION);
    } else {
        switch (env->body_case) {
        case TMIX__ENVELOPE__BODY_HELLO:
            on_hello(s, control, env->hello);
            break;
        case TMIX__ENVELOPE__BODY_NEXT:
            on_next(s, control, env->next);
            break;
        case TMIX__ENVELOPE__BODY_BYE:
            on_bye(s, control, env->bye);
            break;
        case TMIX__ENVELOPE__BODY_STATUS_REQUEST:
            server_on_status(s, control);
            break;
        case TMIX__ENVELOPE__BODY_CONFIG_REQUEST:
            server_on_config(s, control, env->config_request);
            break;
        case TMIX__ENVELOPE__BODY_PREVIEW_REQUEST:
            server_on_preview(s, control, env->preview_request);
            break;
        default:
            server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST,
                        "message %d is not a request (hello, next, bye or status_request)",
                        (int)env->body_case);
        }
    }
    tmix__envelope__free_unpacked(env, NULL);
}

static void on_readable(uv_poll_t *handle, int status, int events)
{
    server *s = handle->data;
    (void)status;
    (void)events;
    for (;;) {
        void *body = NULL, *control = NULL;
        struct nn_iovec iov = {&body, NN_MSG};
        struct nn_msghdr hdr = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                .msg_controllen = NN_MSG};
        const int n = nn_recvmsg(s->sock, &hdr, NN_DONTWAIT);
        if (n < 0) {
            if (nn_errno() != EAGAIN)
                tmixd_log(TMIXD_LOG_ERROR, "receive: %s", nn_strerror(nn_errno()));
            return;
        }
        on_request(s, body, (size_t)n, control);
        nn_freemsg(body);
    }
}

// ---- housekeeping -------------------------------------------------------------------------

// The progress is saved on libuv's thread pool: the write and its two fsyncs can take long on
// a busy disk (a trainer writing a checkpoint beside it), and every trainer waits on the
// loop. One save at a time, of the groups as they are when it starts. A failing save (a full
// disk) keeps the previous file, is said once, and is retried every SAVE_EVERY_MS until it
// succeeds, which is said too; serving goes on meanwhile.
static void save_progress(server *s);

static void save_ended(server *s, int rc, const char *why)
{
    if (rc < 0) {
        if (!s->save_failing)
            tmixd_log(TMIXD_LOG_ERROR, "progress not saved (the last saved file stays; "
                      "retrying every %d ms): %s", SAVE_EVERY_MS, why);
        s->save_failing = true;
        s->dirty = true;
        return;
    }
    if (s->save_failing)
        tmixd_log(TMIXD_LOG_INFO, "progress saved again");
    s->save_failing = false;
}

static void write_progress(uv_work_t *work) // on a thread of the pool
{
    server *s = work->data;
    s->save_rc = tmixd_progress_write(s->c->state_file, s->save_text);
    if (s->save_rc < 0)
        snprintf(s->save_error, sizeof s->save_error, "%s", tmix_last_error());
}

static void progress_written(uv_work_t *work, int status)
{
    server *s = work->data;
    free(s->save_text);
    s->save_text = NULL;
    if (status < 0) // never cancelled, so not expected
        save_ended(s, TMIX_EIO, uv_strerror(status));
    else
        save_ended(s, s->save_rc, s->save_error);
    if (s->save_at_end) {
        s->save_at_end = false;
        save_progress(s);
    }
}

// Whether a save runs: its text is set from its start to its end.
static bool saving(const server *s) { return s->save_text != NULL; }

// Starts a save, unless one is running (stop() then asks for one more after it).
static void save_progress(server *s)
{
    if (!s->c->state_file[0] || saving(s))
        return;
    s->last_save_ms = server_now_ms();
    s->dirty = false;
    s->save.data = s;
    s->save_text = tmixd_progress_text(s->groups, s->ngroups);
    const int rc = s->save_text ? uv_queue_work(&s->loop, &s->save, write_progress,
                                                progress_written)
                                : TMIX_ENOMEM;
    if (rc < 0 && s->save_text) {
        tmix_fail(TMIX_EIO, "uv_queue_work: %s", uv_strerror(rc));
        free(s->save_text);
        s->save_text = NULL;
    }
    if (rc < 0)
        save_ended(s, rc, tmix_last_error());
}

// A batch that never ends (a GPU that never finishes a kernel, a read from a network file
// system that died): its thread cannot be stopped, so a drain would hang as well. tmixd says
// why, saves the progress (unless a save is running: that one stays, a second behind at
// most) and exits 1 at once, for its supervisor to start it again.
_Noreturn static void stalled(server *s, const char *why)
{
    tmixd_log(TMIXD_LOG_ERROR, "%s: a GPU or a data read hangs; saving progress and exiting",
              why);
    tmixd_notify_stopping();
    if (s->c->state_file[0] && !saving(s)) {
        char *text = tmixd_progress_text(s->groups, s->ngroups);
        if (!text || tmixd_progress_write(s->c->state_file, text) < 0)
            tmixd_log(TMIXD_LOG_ERROR, "progress not saved: %s", tmix_last_error());
        free(text);
    }
    _exit(EXIT_FAILURE);
}

static void on_tick(uv_timer_t *t)
{
    server *s = t->data;
    const double stall_s = s->c->config->server_stall_timeout_s; // reloadable
    const double running_s = s->producer ? tmixd_producer_longest_s(s->producer) : 0;
    if (stall_s > 0 && running_s > stall_s) {
        char why[128];
        snprintf(why, sizeof why, "a batch has run %.1f s, more than [server] stall_timeout_s "
                 "= %g", running_s, stall_s);
        stalled(s, why);
    }
    const double lease_s = s->c->config->server_lease_timeout_s; // reloadable
    const uint64_t now = server_now_ms(), lease_ms = (uint64_t)(lease_s * 1000);
    for (int i = 0; i < s->nsessions;) {
        session *ss = &s->sessions[i];
        if (now - ss->last_seen_ms <= lease_ms) {
            i++;
            continue;
        }
        tmixd_log(TMIXD_LOG_WARN, "session %016llx of group %s expired after %.1f s of silence",
                  (unsigned long long)ss->id, tmixd_group_name(ss->group), lease_s);
        drop_session(s, ss, 0);
    }
    if (s->dirty && !saving(s) && now - s->last_save_ms >= SAVE_EVERY_MS)
        save_progress(s);
    // A save that does not end (a state directory on a disk that hangs) leaves serving as it
    // is, but nothing is saved any more: said once, as a failing save is.
    if (saving(s) && !s->save_failing && stall_s > 0 && now - s->last_save_ms > stall_s * 1000) {
        tmixd_log(TMIXD_LOG_ERROR, "a progress save has run more than [server] stall_timeout_s "
                  "= %g: the state directory's disk hangs; serving goes on unsaved", stall_s);
        s->save_failing = true;
    }
    if (now - s->status_ms >= STATUS_EVERY_MS) {
        const double rate = (double)(s->images_served - s->status_images) * 1000.0 /
                            (double)(now - s->status_ms);
        tmixd_notify_status("%d trainer%s in %d group%s, %.0f images/s, %llu batches served",
                            s->nsessions, s->nsessions == 1 ? "" : "s", s->ngroups,
                            s->ngroups == 1 ? "" : "s", rate, (unsigned long long)s->served);
        s->status_ms = now;
        s->status_images = s->images_served;
    }
}

// WATCHDOG=1 from the loop itself: a loop that hangs stops the keep-alives, and systemd
// restarts the service.
static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    tmixd_notify_watchdog();
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

// Lets the running batches finish, saves the progress and closes every handle: the loop ends
// once the last save (and any read of a device slot) has ended.
static void stop(server *s)
{
    tmixd_notify_stopping();
    tmixd_metrics_stop(s->metrics); // before its async handle closes with the others
    // Running batches finish (the async handle closes), unless one never does.
    const double stall_s = s->c->config->server_stall_timeout_s;
    if (!tmixd_producer_stop(s->producer, stall_s)) {
        char why[128];
        snprintf(why, sizeof why, "draining: a batch still runs after [server] stall_timeout_s "
                 "= %g", stall_s);
        stalled(s, why);
    }
    s->producer = NULL;
    s->save_at_end = saving(s); // the save running took the groups as they were before
    save_progress(s);
    uv_walk(&s->loop, close_handle, NULL);
}

static void on_stop_signal(uv_signal_t *sig, int signum)
{
    server *s = sig->data;
    tmixd_log(TMIXD_LOG_INFO, "%s: draining", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    stop(s);
}

static void on_sighup(uv_signal_t *sig, int signum)
{
    (void)sig;
    (void)signum;
    if (tmixd_log_reopen() < 0)
        tmixd_log(TMIXD_LOG_ERROR, "SIGHUP: %s", tmix_last_error());
    else
        tmixd_log(TMIXD_LOG_INFO, "SIGHUP: log reopened");
}

// ---- start and stop -----------------------------------------------------------------------

// Binds the raw REP socket. nanomsg refuses an ipc path a live daemon holds (EADDRINUSE)
// and replaces a stale socket file; it creates the file with the umask's mode: tighten it.
static int bind_endpoint(server *s, const char *endpoint)
{
    s->sock = nn_socket(AF_SP_RAW, NN_REP);
    if (s->sock < 0)
        return tmix_fail(TMIX_EIO, "nn_socket: %s", nn_strerror(nn_errno()));
    const int maxsize = 16 << 20; // bigger requests are dropped unread; up to here, TOO_LARGE
    nn_setsockopt(s->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsize, sizeof maxsize);
    if (nn_bind(s->sock, endpoint) < 0)
        return tmix_fail(TMIX_EIO, "%s: %s", endpoint, nn_strerror(nn_errno()));
    const char *path = strncmp(endpoint, "ipc://", 6) == 0 ? endpoint + 6 : NULL;
    if (path && chmod(path, 0660) < 0)
        return tmix_fail(TMIX_EIO, "%s: chmod 0660: %s", path, strerror(errno));
    return 0;
}

static void free_server(server *s)
{
    for (int i = 0; i < s->nsessions; i++)
        if (s->sessions[i].pending)
            nn_freemsg(s->sessions[i].pending);
    free(s->sessions);
    for (int i = 0; i < s->ngroups; i++) // the batches first: they give their slots back
        tmixd_group_free(s->groups[i]);
    for (int i = 0; i < s->ngroups; i++) {
        tmixd_ring_free(s->rings[i]);
        tmixd_device_ring_free(s->drings[i]);
    }
    if (s->sock >= 0)
        nn_close(s->sock);
    tmixd_metrics_free(s->metrics);
    free(s->stats);
}

int tmixd_server_run(const tmixd_server_config *c)
{
    server s = {.c = c, .sock = -1};
    tmix_rng_seed(&s.ids, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ server_now_ms());
    tmixd_ring_sweep();
    if (!(s.stats = malloc(sizeof *s.stats)))
        return tmix_fail(TMIX_ENOMEM, "server: out of memory");
    int rc = uv_loop_init(&s.loop);
    if (rc < 0) {
        free(s.stats);
        return tmix_fail(TMIX_EIO, "uv_loop_init: %s", uv_strerror(rc));
    }
    if (c->state_file[0] &&
        (rc = tmixd_progress_load(c->state_file, (uint64_t)tmixd_dataset_size(c->producer.dataset),
                                  c->prefetch, s.groups, &s.ngroups, MAX_GROUPS)) < 0)
        goto fail;
    if ((rc = tmixd_producer_new(&s.producer, &c->producer, &s.loop, on_job_done, &s)) < 0 ||
        (rc = tmixd_producer_warm_up(s.producer, c->batch_size, c->dtype, c->layout)) < 0 ||
        (rc = bind_endpoint(&s, c->endpoint)) < 0 ||
        (c->metrics_port &&
         (rc = tmixd_metrics_start(&s.metrics, &s.loop, c->metrics_port, server_collect_stats, &s)) < 0))
        goto fail;
    int fd;
    size_t fdsize = sizeof fd;
    if (nn_getsockopt(s.sock, NN_SOL_SOCKET, NN_RCVFD, &fd, &fdsize) < 0) {
        rc = tmix_fail(TMIX_EIO, "NN_RCVFD: %s", nn_strerror(nn_errno()));
        goto fail;
    }
    uv_poll_init(&s.loop, &s.poll, fd);
    uv_timer_init(&s.loop, &s.tick);
    uv_timer_init(&s.loop, &s.watchdog);
    uv_signal_init(&s.loop, &s.sigterm);
    uv_signal_init(&s.loop, &s.sigint);
    uv_signal_init(&s.loop, &s.sighup);
    s.poll.data = s.tick.data = s.sigterm.data = s.sigint.data = s.sighup.data = &s;
    uv_poll_start(&s.poll, UV_READABLE, on_readable);
    uv_timer_start(&s.tick, on_tick, TICK_MS, TICK_MS);
    const uint64_t watchdog_ms = tmixd_notify_watchdog_every_ms();
    if (watchdog_ms)
        uv_timer_start(&s.watchdog, on_watchdog, 0, watchdog_ms);
    uv_signal_start(&s.sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&s.sigint, on_stop_signal, SIGINT);
    uv_signal_start(&s.sighup, on_sighup, SIGHUP);
    s.started_ms = s.last_save_ms = s.status_ms = server_now_ms();
    tmixd_log(TMIXD_LOG_INFO,
              "serving %s on %s: %s%s, %d classes, method %s, %d workers, %d mixing lane%s",
              c->dataset, c->endpoint, c->backend, c->backend_note, c->classes,
              tmix_method_name(c->producer.method), c->producer.workers, c->producer.lanes,
              c->producer.lanes == 1 ? "" : "s");
    char ready[256];
    snprintf(ready, sizeof ready, "serving %s on %s", c->dataset, c->endpoint);
    tmixd_notify_ready(ready);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
    free_server(&s);
    if (s.fault[0])
        return tmix_fail(TMIX_ECUDA, "stopped after a GPU fault: %s", s.fault);
    tmixd_log(TMIXD_LOG_INFO, "stopped");
    return 0;
fail:
    if (s.producer) { // its workers end and its async handle closes
        tmixd_producer_stop(s.producer, 0);
        uv_run(&s.loop, UV_RUN_DEFAULT);
    }
    free_server(&s);
    uv_loop_close(&s.loop);
    return rc;
}
