// A trainer's session with tmixd: Hello -> Welcome, then Next -> Batch for sequence 1, 2, ...
// with the acknowledgements of released batches, and a new Hello when the daemon has
// forgotten the session.
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define GROUP_MAX 64
// Released sequences sent in one request at most (the rest go with the next one).
#define RELEASED_PER_REQUEST 1024
// Bounds that keep a Welcome's products (batch bytes, N x n) far from overflow.
#define MIX_N_MAX       64
#define BATCH_BYTES_MAX ((double)(1ull << 48))

// A PCI bus id and its NUL ("0000:65:00.0" is 12 characters): tmix_info's field.
#define BUS_ID_MAX ((int)sizeof(((tmix_info *)0)->cuda_pci_bus_id))

// A batch the caller holds; the caller's pointer is &pub.
typedef struct held_batch {
    tmix_batch pub;
    Tmix__Envelope *env;     // owns every array pub points into
    uint64_t session;        // the Hello (counted from 1) the batch was asked in
    struct held_batch *next; // the client's unreleased batches, newest first
} held_batch;

struct tmix_client {
    tmixi_conn conn;
    char *endpoint;
    tmix_options opts;
    char group[GROUP_MAX + 1];
    char cuda_pci_bus_id[BUS_ID_MAX]; // the options', copied
    tmix_info info;
    char *method;
    uint64_t session;  // Hellos said so far
    uint64_t next_seq; // the sequence the next Next asks for
    uint64_t resume;   // broadcast: the stream position after the last batch received
    tmixi_ring *ring;  // SHM: the session's ring; older ones (a daemon restarted) after it,
                       // kept mapped for the batches still held from them
    held_batch *held;
    // Sequences of this session released above ack_through (an older batch is still held)
    // that no request the daemon answered has carried yet.
    uint64_t *released;
    size_t nreleased, cap_released;
    // tmix_next asks for the batch after the one it returns before returning it (when
    // ask_ahead, the caller's choice), so that the answer waits here while the trainer
    // trains: a Next for next_seq is then in flight (ahead).
    bool ask_ahead, ahead;
    double ahead_sent;     // when it was sent (CLOCK_MONOTONIC seconds)
    size_t ahead_released; // how many of released it carried
    double lease_s;        // the Welcome's: a session silent this long is dropped
    char err[TMIXI_ERR_LEN];
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void tmix_options_init(tmix_options *o)
{
    *o = (tmix_options){.group = "default", .timeout_ms = 60000};
}

static bool group_name_ok(const char *g)
{
    size_t len = strlen(g);
    if (len < 1 || len > GROUP_MAX)
        return false;
    for (const char *p = g; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

static int check_options(const tmix_options *o, const char *endpoint, char *err)
{
    const char *g = o->group ? o->group : "default";
    if (!group_name_ok(g))
        return tmixi_fail(err, TMIX_EINVAL, "%s: group '%s': expected 1 to %d of A-Z a-z 0-9 . _ -",
                          endpoint, g, GROUP_MAX);
    if (o->mode < TMIX_MODE_DEFAULT || o->mode > TMIX_MODE_BROADCAST)
        return tmixi_fail(err, TMIX_EINVAL, "%s: mode %d: expected TMIX_MODE_*", endpoint, o->mode);
    if (o->dtype < TMIX_DTYPE_DEFAULT || o->dtype > TMIX_DTYPE_UINT8)
        return tmixi_fail(err, TMIX_EINVAL, "%s: dtype %d: expected TMIX_DTYPE_*", endpoint,
                          o->dtype);
    if (o->layout < TMIX_LAYOUT_DEFAULT || o->layout > TMIX_LAYOUT_NHWC)
        return tmixi_fail(err, TMIX_EINVAL, "%s: layout %d: expected TMIX_LAYOUT_*", endpoint,
                          o->layout);
    if (o->node_count ? o->node_rank >= o->node_count : o->node_rank != 0)
        return tmixi_fail(err, TMIX_EINVAL, "%s: node %u of %u: the rank must be below the count",
                          endpoint, o->node_rank, o->node_count);
    if (o->delivery < TMIX_DELIVERY_DEFAULT || o->delivery > TMIX_DELIVERY_CUDA)
        return tmixi_fail(err, TMIX_EINVAL, "%s: delivery %d: expected TMIX_DELIVERY_*", endpoint,
                          o->delivery);
    if (o->timeout_ms < 0)
        return tmixi_fail(err, TMIX_EINVAL, "%s: timeout_ms %d: expected 0 (forever) or more",
                          endpoint, o->timeout_ms);
    if (o->cuda_pci_bus_id && strlen(o->cuda_pci_bus_id) >= BUS_ID_MAX)
        return tmixi_fail(err, TMIX_EINVAL, "%s: cuda_pci_bus_id '%.40s...': expected at most "
                          "%d characters", endpoint, o->cuda_pci_bus_id, BUS_ID_MAX - 1);
    return 0;
}

// A choice of the Hello that the Welcome must echo unless the Hello left it to the daemon.
static bool resolved(long long asked, long long got, long long lo, long long hi)
{
    return got >= lo && got <= hi && (asked == 0 || asked == got);
}

// Bytes of the images of one full batch of the group the Welcome describes.
static double welcome_batch_bytes(const Tmix__Welcome *w)
{
    const uint32_t *s = w->image_shape;
    return (double)s[0] * s[1] * s[2] * w->batch_size * tmix_dtype_size(w->dtype);
}

static int check_welcome(const tmix_client *c, const Tmix__Welcome *w, char *err)
{
    const tmix_options *o = &c->opts;
    const char *e = c->endpoint;
    const int delivery = o->delivery ? o->delivery : TMIX_DELIVERY_INLINE;
    if ((int)w->delivery != delivery)
        return tmixi_fail(err, TMIX_EPROTO, "%s: asked for %s delivery; the Welcome says %s", e,
                          tmix_delivery_name(delivery), tmix_delivery_name(w->delivery));
    if (delivery == TMIX_DELIVERY_SHM &&
        (!w->shm_name[0] || !w->shm_slots || !w->shm_slot_bytes ||
         (double)w->shm_slot_bytes * w->shm_slots > BATCH_BYTES_MAX))
        return tmixi_fail(err, TMIX_EPROTO,
                          "%s: the Welcome's shared-memory ring '%s' of %u slots of %" PRIu64
                          " bytes is empty or absurd",
                          e, w->shm_name, w->shm_slots, w->shm_slot_bytes);
    // By bus id when both say one (a daemon older than it says none: by ordinal then).
    const bool by_bus = o->cuda_pci_bus_id && o->cuda_pci_bus_id[0] && w->cuda_pci_bus_id[0];
    if (delivery == TMIX_DELIVERY_CUDA &&
        (!w->cuda_slots || (by_bus ? strcasecmp(w->cuda_pci_bus_id, o->cuda_pci_bus_id) != 0
                                   : w->cuda_device != o->cuda_device)))
        return tmixi_fail(err, TMIX_EPROTO,
                          "%s: asked for cuda delivery on GPU %d (PCI %s); the Welcome says GPU "
                          "%d (PCI %.32s) with %u slots", e, o->cuda_device,
                          by_bus ? o->cuda_pci_bus_id : "not given", w->cuda_device,
                          w->cuda_pci_bus_id, w->cuda_slots);
    if (!resolved(o->mode, w->mode, TMIX_MODE_SHARD, TMIX_MODE_BROADCAST) ||
        !resolved(o->dtype, w->dtype, TMIX_DTYPE_FLOAT32, TMIX_DTYPE_UINT8) ||
        !resolved(o->layout, w->layout, TMIX_LAYOUT_NCHW, TMIX_LAYOUT_NHWC) ||
        !resolved(o->batch_size, w->batch_size, 1, UINT32_MAX))
        return tmixi_fail(err, TMIX_EPROTO,
                          "%s: asked for mode %s, dtype %s, layout %s, batch size %u; the "
                          "Welcome says %s, %s, %s, %u",
                          e, tmix_mode_name(o->mode), tmix_dtype_name(o->dtype),
                          tmix_layout_name(o->layout), o->batch_size, tmix_mode_name(w->mode),
                          tmix_dtype_name(w->dtype), tmix_layout_name(w->layout), w->batch_size);
    if (w->n_image_shape != 3)
        return tmixi_fail(err, TMIX_EPROTO,
                          "%s: the Welcome's image shape has %zu dimensions, expected 3", e,
                          w->n_image_shape);
    const uint32_t *s = w->image_shape;
    if (!s[0] || !s[1] || !s[2] || welcome_batch_bytes(w) > BATCH_BYTES_MAX)
        return tmixi_fail(err, TMIX_EPROTO,
                          "%s: the Welcome's image shape (%u,%u,%u) with batch size %u is "
                          "empty or absurd",
                          e, s[0], s[1], s[2], w->batch_size);
    if (w->n_mean != s[0] || w->n_std != s[0] || s[0] > 3)
        return tmixi_fail(err, TMIX_EPROTO,
                          "%s: the Welcome gives %zu means and %zu stds for %u channels "
                          "(at most 3)", e, w->n_mean, w->n_std, s[0]);
    for (size_t k = 0; k < w->n_std; k++)
        if (!(w->std[k] > 0))
            return tmixi_fail(err, TMIX_EPROTO, "%s: the Welcome's std[%zu] = %g is not > 0",
                              e, k, w->std[k]);
    if (w->mix_n < 1 || w->mix_n > MIX_N_MAX || w->classes < 1)
        return tmixi_fail(err, TMIX_EPROTO,
                          "%s: the Welcome's n = %u (expected 1 to %d) or "
                          "classes = %u (expected 1 or more) is wrong",
                          e, w->mix_n, MIX_N_MAX, w->classes);
    return 0;
}

static void ring_free(tmixi_ring *r)
{
    munmap((void *)r->base, r->slot_bytes * r->slots);
    free(r->name);
    free(r);
}

// Makes the Welcome's ring the session's, mapping it read-only unless it is mapped already
// (the same daemon, a new session).
static int ring_map(tmix_client *c, const Tmix__Welcome *w, char *err)
{
    for (tmixi_ring **p = &c->ring; *p; p = &(*p)->next) {
        tmixi_ring *r = *p;
        if (strcmp(r->name, w->shm_name) == 0 && r->slots == w->shm_slots &&
            r->slot_bytes == w->shm_slot_bytes) {
            *p = r->next; // to the front
            r->next = c->ring;
            c->ring = r;
            return 0;
        }
    }
    const size_t bytes = (size_t)w->shm_slot_bytes * w->shm_slots;
    tmixi_ring *r = calloc(1, sizeof *r);
    if (!r || !(r->name = strdup(w->shm_name))) {
        free(r);
        return tmixi_fail(err, TMIX_ENOMEM, "%s: no memory for a ring", c->endpoint);
    }
    const int fd = shm_open(w->shm_name, O_RDONLY, 0);
    struct stat st;
    void *base = MAP_FAILED;
    int rc = 0;
    if (fd < 0)
        rc = tmixi_fail(err, TMIX_ESHM, "%s: shm_open %s: %s", c->endpoint, w->shm_name,
                        strerror(errno));
    else if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < bytes)
        rc = tmixi_fail(err, TMIX_ESHM, "%s: %s holds %lld bytes, the Welcome says %u slots of "
                        "%" PRIu64, c->endpoint, w->shm_name, (long long)st.st_size,
                        w->shm_slots, w->shm_slot_bytes);
    else if ((base = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0)) == MAP_FAILED)
        rc = tmixi_fail(err, TMIX_ESHM, "%s: mapping %zu bytes of %s: %s", c->endpoint, bytes,
                        w->shm_name, strerror(errno));
    if (fd >= 0)
        close(fd); // the mapping stays
    if (rc < 0) {
        free(r->name);
        free(r);
        return rc;
    }
    r->base = base;
    r->slot_bytes = (size_t)w->shm_slot_bytes;
    r->slots = w->shm_slots;
    r->next = c->ring;
    c->ring = r;
    return 0;
}

// Says Hello with the client's options and, on Welcome, starts a new session at sequence 1.
static int hello(tmix_client *c, char *err)
{
    Tmix__Hello h = TMIX__HELLO__INIT;
    h.group = c->group;
    h.mode = (Tmix__GroupMode)c->opts.mode;
    h.batch_size = c->opts.batch_size;
    h.dtype = (Tmix__DType)c->opts.dtype;
    h.layout = (Tmix__Layout)c->opts.layout;
    h.delivery = c->opts.delivery ? (Tmix__Delivery)c->opts.delivery : TMIX__DELIVERY__INLINE;
    h.start = c->session ? c->resume : c->opts.start;
    h.cuda_device = c->opts.cuda_device;
    h.cuda_pci_bus_id = (char *)c->cuda_pci_bus_id;
    h.node_rank = c->opts.node_rank;
    h.node_count = c->opts.node_count;
    Tmix__Envelope req = TMIX__ENVELOPE__INIT;
    req.body_case = TMIX__ENVELOPE__BODY_HELLO;
    req.hello = &h;
    Tmix__Envelope *rep;
    int rc = tmixi_exchange(&c->conn, c->endpoint, c->opts.timeout_ms, &req,
                            TMIX__ENVELOPE__BODY_WELCOME, &rep, err);
    if (rc < 0)
        return rc;
    const Tmix__Welcome *w = rep->welcome;
    char *method = NULL;
    rc = check_welcome(c, w, err);
    if (rc == 0 && w->delivery == TMIX__DELIVERY__SHM)
        rc = ring_map(c, w, err);
    if (rc == 0 && !(method = strdup(w->method)))
        rc = tmixi_fail(err, TMIX_ENOMEM, "%s: no memory for the Welcome", c->endpoint);
    if (rc == 0) {
        free(c->method);
        c->method = method;
        c->info = (tmix_info){
            .session_id = w->session_id,
            .channels = w->image_shape[0],
            .height = w->image_shape[1],
            .width = w->image_shape[2],
            .classes = w->classes,
            .mix_n = w->mix_n,
            .batch_size = w->batch_size,
            .epoch_size = w->epoch_size,
            .batches_per_epoch = w->batches_per_epoch,
            .mode = w->mode,
            .dtype = w->dtype,
            .layout = w->layout,
            .method = method,
            .delivery = w->delivery,
            .shm_name = w->delivery == TMIX__DELIVERY__SHM ? c->ring->name : "",
            .shm_base = w->delivery == TMIX__DELIVERY__SHM ? c->ring->base : NULL,
            .shm_bytes = w->delivery == TMIX__DELIVERY__SHM ? c->ring->slot_bytes * c->ring->slots
                                                             : 0,
            .cuda_device = w->cuda_device,
            .cuda_slots = w->cuda_slots,
        };
        snprintf(c->info.cuda_pci_bus_id, sizeof c->info.cuda_pci_bus_id, "%s",
                 w->cuda_pci_bus_id);
        memcpy(c->info.mean, w->mean, w->n_mean * sizeof(float));
        memcpy(c->info.std, w->std, w->n_std * sizeof(float));
        c->lease_s = w->lease_timeout_ms / 1000.0;
        c->session++;
        c->next_seq = 1;
        c->nreleased = 0; // the old session's are of no use to the new one
    }
    tmixi_envelope_free(rep);
    return rc;
}

int tmix_connect(tmix_client **out, const char *endpoint, const tmix_options *o)
{
    char *err = tmixi_thread_error();
    if (!out || !endpoint)
        return tmixi_fail(err, TMIX_EINVAL, "tmix_connect: %s is NULL", out ? "endpoint" : "out");
    *out = NULL;
    tmix_options defaults;
    tmix_options_init(&defaults);
    if (!o)
        o = &defaults;
    int rc = check_options(o, endpoint, err);
    if (rc < 0)
        return rc;
    tmix_client *c = calloc(1, sizeof(*c));
    if (!c || !(c->endpoint = strdup(endpoint))) {
        free(c);
        return tmixi_fail(err, TMIX_ENOMEM, "%s: no memory for a client", endpoint);
    }
    c->opts = *o;
    c->ask_ahead = true;
    strcpy(c->group, o->group ? o->group : "default");
    c->opts.group = c->group;
    snprintf(c->cuda_pci_bus_id, sizeof c->cuda_pci_bus_id, "%s",
             o->cuda_pci_bus_id ? o->cuda_pci_bus_id : "");
    c->opts.cuda_pci_bus_id = c->cuda_pci_bus_id;
    rc = tmixi_conn_open(&c->conn, endpoint, o->timeout_ms, err);
    if (rc < 0) {
        free(c->endpoint);
        free(c);
        return rc;
    }
    rc = hello(c, err);
    if (rc < 0) {
        tmix_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

const tmix_info *tmix_get_info(const tmix_client *c)
{
    return c ? &c->info : NULL;
}

// Every batch of the session through this sequence is released: the oldest one still held,
// less one, or everything received when none is held.
static uint64_t ack_through(const tmix_client *c)
{
    uint64_t ack = c->next_seq - 1;
    for (const held_batch *h = c->held; h; h = h->next)
        if (h->session == c->session && h->pub.sequence <= ack)
            ack = h->pub.sequence - 1;
    return ack;
}

// Drops the released sequences that ack (cumulative) covers, and returns how many of the
// rest (the first ones) the next request carries.
static size_t released_to_send(tmix_client *c, uint64_t ack)
{
    size_t kept = 0;
    for (size_t i = 0; i < c->nreleased; i++)
        if (c->released[i] > ack)
            c->released[kept++] = c->released[i];
    c->nreleased = kept;
    return kept < RELEASED_PER_REQUEST ? kept : RELEASED_PER_REQUEST;
}

// The daemon answered a request that carried the first `sent` released sequences.
static void released_sent(tmix_client *c, size_t sent)
{
    if (!sent) // (released may be NULL)
        return;
    memmove(c->released, c->released + sent, (c->nreleased - sent) * sizeof(uint64_t));
    c->nreleased -= sent;
}

// Whether the daemon answered (a reply, or its Error), so that it saw the request.
static bool answered(int rc)
{
    return rc != TMIX_ETIMEDOUT && rc != TMIX_EIO && rc != TMIX_EPROTO && rc != TMIX_ENOMEM;
}

// Sends the Next for next_seq, with the acknowledgements; ahead: only if it goes at once,
// and a failure is not the caller's error (the next tmix_next asks instead).
static int send_next(tmix_client *c, bool ahead)
{
    char scratch[TMIXI_ERR_LEN];
    Tmix__Next next = TMIX__NEXT__INIT;
    next.session_id = c->info.session_id;
    next.sequence = c->next_seq;
    next.ack_through = ack_through(c);
    next.n_released = released_to_send(c, next.ack_through);
    next.released = c->released;
    Tmix__Envelope req = TMIX__ENVELOPE__INIT;
    req.body_case = TMIX__ENVELOPE__BODY_NEXT;
    req.next = &next;
    c->ahead_released = next.n_released;
    return tmixi_send(&c->conn, c->endpoint, c->opts.timeout_ms, ahead, &req,
                      ahead ? scratch : c->err);
}

static int receive_batch(tmix_client *c, Tmix__Envelope **rep)
{
    const int rc = tmixi_receive(&c->conn, c->endpoint, c->opts.timeout_ms,
                                 TMIX__ENVELOPE__BODY_NEXT, TMIX__ENVELOPE__BODY_BATCH, rep, c->err);
    if (answered(rc))
        released_sent(c, c->ahead_released);
    return rc;
}

static int ask_next(tmix_client *c, Tmix__Envelope **rep)
{
    const int rc = send_next(c, false);
    return rc < 0 ? rc : receive_batch(c, rep);
}

// The answer to the Next sent ahead. One that was already here may be older than the
// session: the daemon drops a session silent for lease_s, and gives its batches to others.
// Within half of that the session still held the batch; past it, the same Next is asked
// again, and the daemon answers it with the batch if the session still holds it, else with
// UNKNOWN_SESSION.
static int take_ahead(tmix_client *c, Tmix__Envelope **rep)
{
    c->ahead = false;
    const bool waited = tmixi_reply_waiting(&c->conn);
    const double silent = now_s() - c->ahead_sent;
    int rc = receive_batch(c, rep);
    if (rc == 0 && waited && silent > c->lease_s / 2) {
        tmixi_envelope_free(*rep);
        rc = ask_next(c, rep);
    }
    return rc;
}

int tmix_next(tmix_client *c, tmix_batch **out)
{
    if (!c)
        return tmixi_fail(tmixi_thread_error(), TMIX_EINVAL, "tmix_next: the client is NULL");
    if (!out)
        return tmixi_fail(c->err, TMIX_EINVAL, "%s: tmix_next: out is NULL", c->endpoint);
    *out = NULL;
    Tmix__Envelope *rep;
    int rc = c->ahead ? take_ahead(c, &rep) : ask_next(c, &rep);
    if (rc == TMIX_ESESSION) {
        // The daemon restarted or expired the session: a new one, from sequence 1. Acks of
        // the old session are lost; its batches come again to someone (at-least-once).
        rc = hello(c, c->err);
        if (rc == 0)
            rc = ask_next(c, &rep);
    }
    if (rc < 0)
        return rc;
    held_batch *h = calloc(1, sizeof(*h));
    if (!h)
        rc = tmixi_fail(c->err, TMIX_ENOMEM, "%s: no memory for a batch", c->endpoint);
    if (rc == 0)
        rc = tmixi_batch_read(&h->pub, rep->batch, c->next_seq, &c->info,
                              c->info.delivery == TMIX_DELIVERY_SHM ? c->ring : NULL, c->endpoint,
                              c->err);
    if (rc < 0) {
        free(h);
        tmixi_envelope_free(rep);
        return rc;
    }
    h->env = rep;
    h->session = c->session;
    h->next = c->held;
    c->held = h;
    c->next_seq++;
    c->resume = h->pub.epoch * c->info.batches_per_epoch + h->pub.index + 1;
    *out = &h->pub;
    // The next batch, asked for now; if the request cannot go at once, the next call asks.
    c->ahead_sent = now_s();
    c->ahead = c->ask_ahead && send_next(c, true) == 0;
    return 0;
}

int tmix_set_ahead(tmix_client *c, int ahead)
{
    if (!c)
        return tmixi_fail(tmixi_thread_error(), TMIX_EINVAL, "tmix_set_ahead: the client is NULL");
    c->ask_ahead = ahead != 0;
    return 0;
}

static void held_free(held_batch *h)
{
    tmixi_envelope_free(h->env);
    free(h);
}

int tmix_release(tmix_client *c, tmix_batch *b)
{
    if (!c)
        return tmixi_fail(tmixi_thread_error(), TMIX_EINVAL, "tmix_release: the client is NULL");
    for (held_batch **p = &c->held; *p; p = &(*p)->next) {
        if (&(*p)->pub == b) {
            held_batch *h = *p;
            if (h->session == c->session && c->nreleased == c->cap_released) {
                const size_t cap = c->cap_released ? 2 * c->cap_released : 64;
                uint64_t *a = realloc(c->released, cap * sizeof *a);
                if (!a)
                    return tmixi_fail(c->err, TMIX_ENOMEM, "%s: tmix_release: no memory",
                                      c->endpoint);
                c->released = a;
                c->cap_released = cap;
            }
            if (h->session == c->session)
                c->released[c->nreleased++] = h->pub.sequence;
            *p = h->next;
            held_free(h);
            return 0;
        }
    }
    return tmixi_fail(c->err, TMIX_EINVAL,
                      "%s: tmix_release: not a batch this client holds (released already?)",
                      c->endpoint);
}

// Says Bye, so that the daemon counts what was released and gives what was not to the
// other members at once. Best effort: a daemon that is gone needs no goodbye.
static void bye(tmix_client *c)
{
    enum { BYE_TIMEOUT_MS = 500 };
    Tmix__Bye b = TMIX__BYE__INIT;
    b.session_id = c->info.session_id;
    b.ack_through = ack_through(c);
    b.n_released = released_to_send(c, b.ack_through);
    b.released = c->released;
    Tmix__Envelope req = TMIX__ENVELOPE__INIT;
    req.body_case = TMIX__ENVELOPE__BODY_BYE;
    req.bye = &b;
    Tmix__Envelope *rep = NULL;
    const int timeout = c->opts.timeout_ms > 0 && c->opts.timeout_ms < BYE_TIMEOUT_MS
                            ? c->opts.timeout_ms : BYE_TIMEOUT_MS;
    // The batch asked for ahead is not acknowledged: the Bye gives it back with the rest.
    // Its answer is taken first if it comes soon; if not, the Bye goes over a new socket
    // (tmixi_send), never cancelling the Next (tmixi_conn says why).
    if (c->ahead && tmixi_receive(&c->conn, c->endpoint, timeout, TMIX__ENVELOPE__BODY_NEXT,
                                  TMIX__ENVELOPE__BODY_BATCH, &rep, c->err) == 0)
        tmixi_envelope_free(rep);
    c->ahead = false;
    if (tmixi_exchange(&c->conn, c->endpoint, timeout, &req, TMIX__ENVELOPE__BODY_BYE, &rep,
                       c->err) == 0)
        tmixi_envelope_free(rep);
}

void tmix_close(tmix_client *c)
{
    if (!c)
        return;
    if (c->info.session_id)
        bye(c);
    while (c->held) {
        held_batch *h = c->held;
        c->held = h->next;
        held_free(h);
    }
    while (c->ring) {
        tmixi_ring *r = c->ring;
        c->ring = r->next;
        ring_free(r);
    }
    tmixi_conn_close(&c->conn);
    free(c->released);
    free(c->method);
    free(c->endpoint);
    free(c);
}

const char *tmix_client_error(const tmix_client *c)
{
    return c ? c->err : tmixi_thread_error();
}
