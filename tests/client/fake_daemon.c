// The fake tmixd of fake_daemon.h.
#include "fake_daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#define WAIT_MS 5000

uint64_t fake_sample_id(uint64_t epoch, uint64_t index, uint32_t i)
{
    return 100 * epoch + FAKE_BATCH * index + i;
}

uint8_t fake_image_byte(uint64_t sequence, size_t j)
{
    return (uint8_t)(sequence * 31 + j);
}

void reply_welcome(const fake_daemon *f, fake_reply *r, uint64_t session)
{
    tmix__welcome__init(&r->welcome);
    Tmix__Welcome *w = &r->welcome;
    r->image_shape[0] = FAKE_C, r->image_shape[1] = FAKE_H, r->image_shape[2] = FAKE_W;
    w->session_id = session;
    w->n_image_shape = 3;
    w->image_shape = r->image_shape;
    w->classes = FAKE_CLASSES;
    w->epoch_size = FAKE_EPOCH_SIZE;
    w->method = "mixup";
    w->mix_n = FAKE_N;
    w->batch_size = FAKE_BATCH;
    w->batches_per_epoch = FAKE_BATCHES;
    w->mode = f->mode;
    w->dtype = f->dtype;
    w->layout = f->layout;
    w->delivery = TMIX__DELIVERY__INLINE;
    static float mean[FAKE_C] = {0.5f, 0.25f, 0.125f}, std[FAKE_C] = {1.0f, 0.5f, 2.0f};
    w->n_mean = w->n_std = FAKE_C;
    w->mean = mean;
    w->std = std;
    w->lease_timeout_ms = 60000; // a client trusts an answer it asked for ahead within 30 s
    r->env.body_case = TMIX__ENVELOPE__BODY_WELCOME;
    r->env.welcome = w;
}

static size_t dtype_size(int dtype)
{
    return dtype == TMIX__DTYPE__FLOAT32 ? 4 : dtype == TMIX__DTYPE__FLOAT16 ? 2 : 1;
}

void reply_batch(const fake_daemon *f, fake_reply *r, uint64_t sequence, uint64_t epoch,
                 uint64_t index, uint32_t samples)
{
    tmix__batch__init(&r->batch);
    Tmix__Batch *b = &r->batch;
    const bool nhwc = f->layout == TMIX__LAYOUT__NHWC;
    r->shape[0] = samples;
    r->shape[1] = nhwc ? FAKE_H : FAKE_C;
    r->shape[2] = nhwc ? FAKE_W : FAKE_H;
    r->shape[3] = nhwc ? FAKE_C : FAKE_W;
    b->sequence = sequence;
    b->epoch = epoch;
    b->index = index;
    b->n_shape = 4;
    b->shape = r->shape;
    b->dtype = f->dtype;
    b->layout = f->layout;
    b->images.len = samples * FAKE_IMAGE_ELEMS * dtype_size(f->dtype);
    b->images.data = r->images;
    for (size_t j = 0; j < b->images.len; j++)
        r->images[j] = fake_image_byte(sequence, j);
    for (uint32_t i = 0; i < samples; i++) {
        const uint64_t id = fake_sample_id(epoch, index, i);
        r->sample_ids[i] = id;
        r->sources[i * FAKE_N] = id;
        r->sources[i * FAKE_N + 1] = id + FAKE_PARTNER;
        r->labels[i * FAKE_N] = (uint32_t)(id % 10);
        r->labels[i * FAKE_N + 1] = (uint32_t)((id + FAKE_PARTNER) % 10);
        r->weights[i * FAKE_N] = 0.75f;
        r->weights[i * FAKE_N + 1] = 0.25f;
    }
    b->n_sample_ids = samples;
    b->sample_ids = r->sample_ids;
    b->n_sources = b->n_labels = b->n_weights = (size_t)samples * FAKE_N;
    b->sources = r->sources;
    b->labels = r->labels;
    b->weights = r->weights;
    b->mix_n = FAKE_N;
    r->env.body_case = TMIX__ENVELOPE__BODY_BATCH;
    r->env.batch = b;
}

void reply_error(fake_reply *r, Tmix__Error__Code code, const char *message)
{
    tmix__error__init(&r->error);
    r->error.code = code;
    r->error.message = (char *)message;
    r->env.body_case = TMIX__ENVELOPE__BODY_ERROR;
    r->env.error = &r->error;
}

void reply_status(fake_reply *r)
{
    Tmix__Status *s = &r->status;
    tmix__status__init(s);
    s->version = "0.1.0";
    s->uptime_s = 3723;
    s->trainers = 3;
    s->batches_served = 1234;
    s->backend = "cpu";
    s->dataset = "idx:/data/fashion-mnist (train)";
    s->dataset_size = 60000;
    s->method = "mixup";
    s->bad_samples = 2;
    s->memory_bytes = 5u << 20;
    s->max_memory_bytes = 1024u << 20;
    s->producer_jobs = 3;
    s->gpu_memory_used = 3ull << 30;
    s->gpu_memory_total = 80ull << 30;
    s->next_p50_s = 0.001;
    s->next_p99_s = 0.025;
    s->read_mean_s = 0.0125;
    s->mix_mean_s = 0.0025;
    static const char *const names[2] = {"alpha", "beta"};
    for (int g = 0; g < 2; g++) {
        Tmix__GroupStatus *gs = &r->groups[g];
        tmix__group_status__init(gs);
        gs->name = (char *)names[g];
        gs->mode = g ? TMIX__GROUP_MODE__BROADCAST : TMIX__GROUP_MODE__SHARD;
        gs->members = 2 - g;
        gs->batch_size = 128;
        gs->epoch = 4 + g;
        gs->batches_done = 17;
        gs->batches_per_epoch = 469;
        gs->batches_served = 1000 + g;
        gs->images_served = 128000 + 128 * g;
        gs->batches_ready = 2;
        gs->batches_producing = 1 + g;
        gs->node_rank = g ? 0 : 1; // alpha is node 1 of 2; beta says nothing (one node)
        gs->node_count = g ? 0 : 2;
        r->group_list[g] = gs;
    }
    s->n_groups = 2;
    s->groups = r->group_list;
    r->env.body_case = TMIX__ENVELOPE__BODY_STATUS;
    r->env.status = s;
}

void reply_bye(fake_reply *r, uint64_t session)
{
    tmix__bye__init(&r->bye);
    r->bye.session_id = session;
    r->env.body_case = TMIX__ENVELOPE__BODY_BYE;
    r->env.bye = &r->bye;
}

static void answer(fake_daemon *f, void *control, const fake_reply *r)
{
    if (r->silent) {
        nn_freemsg(control);
        return;
    }
    size_t len = r->raw ? r->raw_len : tmix__envelope__get_packed_size(&r->env);
    void *msg = nn_allocmsg(len ? len : 1, 0);
    if (r->raw)
        memcpy(msg, r->raw, len);
    else
        tmix__envelope__pack(&r->env, msg);
    struct nn_iovec iov = {.iov_base = &msg, .iov_len = NN_MSG};
    struct nn_msghdr hdr = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = NN_MSG};
    if (nn_sendmsg(f->sock, &hdr, 0) < 0)
        snprintf(f->failure, sizeof(f->failure), "reply %d: %s", f->count - 1,
                 nn_strerror(nn_errno()));
}

static void *serve(void *arg)
{
    fake_daemon *f = arg;
    fake_reply *late = NULL; // a late answer, and where it goes
    void *late_control = NULL;
    while ((f->quiet_ms || f->count < f->expect) && !f->failure[0]) {
        void *body = NULL, *control = NULL;
        struct nn_iovec iov = {.iov_base = &body, .iov_len = NN_MSG};
        struct nn_msghdr hdr = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = NN_MSG};
        int len = nn_recvmsg(f->sock, &hdr, 0);
        if (len < 0 && f->quiet_ms && nn_errno() == ETIMEDOUT)
            break;
        if (len < 0) {
            snprintf(f->failure, sizeof(f->failure), "request %d of %d never came: %s", f->count,
                     f->expect, nn_strerror(nn_errno()));
            break;
        }
        Tmix__Envelope *req = tmix__envelope__unpack(NULL, (size_t)len, body);
        nn_freemsg(body);
        if (!req) {
            snprintf(f->failure, sizeof(f->failure), "request %d does not parse", f->count);
            nn_freemsg(control);
            break;
        }
        fake_reply *r = calloc(1, sizeof(*r));
        tmix__envelope__init(&r->env);
        r->env.version = TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION;
        f->script(f, f->count, req, r);
        // Kept before the answer goes: the test reads f->requests as soon as it has it.
        if (f->count < FAKE_MAX_REQUESTS)
            f->requests[f->count] = req;
        else
            tmix__envelope__free_unpacked(req, NULL);
        f->count++;
        if (r->late && !late) {
            late = r;
            late_control = control;
            continue;
        }
        const bool bye = r->env.body_case == TMIX__ENVELOPE__BODY_BYE;
        answer(f, control, r);
        free(r);
        if (late && bye) {
            answer(f, late_control, late);
            free(late);
            late = NULL;
        }
    }
    if (late) {
        nn_freemsg(late_control);
        free(late);
    }
    return NULL;
}

int fake_start(fake_daemon *f, fake_script script, int expect)
{
    int mode = f->mode ? f->mode : TMIX__GROUP_MODE__SHARD;
    int dtype = f->dtype ? f->dtype : TMIX__DTYPE__FLOAT32;
    int layout = f->layout ? f->layout : TMIX__LAYOUT__NCHW;
    *f = (fake_daemon){.mode = mode,
                       .dtype = dtype,
                       .layout = layout,
                       .quiet_ms = f->quiet_ms,
                       .wait_ms = f->wait_ms,
                       .script = script,
                       .sock = -1,
                       .expect = expect};
    strcpy(f->dir, "/tmp/tmix-fake-XXXXXX");
    if (!mkdtemp(f->dir)) {
        fprintf(stderr, "fake daemon: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    snprintf(f->url, sizeof(f->url), "ipc://%s/tmixd.sock", f->dir);
    int wait = f->quiet_ms ? f->quiet_ms : f->wait_ms ? f->wait_ms : WAIT_MS;
    f->sock = nn_socket(AF_SP_RAW, NN_REP);
    if (f->sock < 0 ||
        nn_setsockopt(f->sock, NN_SOL_SOCKET, NN_RCVTIMEO, &wait, sizeof(wait)) < 0 ||
        nn_bind(f->sock, f->url) < 0 || pthread_create(&f->thread, NULL, serve, f) != 0) {
        fprintf(stderr, "fake daemon: %s: %s\n", f->url, nn_strerror(nn_errno()));
        return -1;
    }
    return 0;
}

int fake_stop(fake_daemon *f)
{
    pthread_join(f->thread, NULL);
    if (!f->failure[0] && !f->quiet_ms && f->count != f->expect)
        snprintf(f->failure, sizeof(f->failure), "served %d requests, expected %d", f->count,
                 f->expect);
    if (f->failure[0]) {
        fprintf(stderr, "fake daemon: %s\n", f->failure);
        return -1;
    }
    return 0;
}

void fake_free(fake_daemon *f)
{
    if (f->sock >= 0)
        nn_close(f->sock);
    for (int i = 0; i < f->count && i < FAKE_MAX_REQUESTS; i++)
        tmix__envelope__free_unpacked(f->requests[i], NULL);
    char path[160];
    snprintf(path, sizeof(path), "%s/tmixd.sock", f->dir);
    unlink(path);
    rmdir(f->dir);
}
