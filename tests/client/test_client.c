// libtmix against a scripted fake daemon (fake_daemon.h): the Hello and the Welcome, Next
// with the acknowledgements of released batches, the batch the caller sees, a new Hello after
// UNKNOWN_SESSION, the daemon's errors, replies that break the protocol, timeouts, status.
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "client_harness.h"
#include "fake_daemon.h"

// The default options with a timeout short enough for a test.
static tmix_options options(int timeout_ms)
{
    tmix_options o;
    tmix_options_init(&o);
    o.timeout_ms = timeout_ms;
    return o;
}

// A client of f with the default options and a 2 s timeout.
static int connect_fake(tmix_client **c, const fake_daemon *f)
{
    tmix_options o = options(2000);
    return tmix_connect(c, f->url, &o);
}

static const Tmix__Next *next_of(const fake_daemon *f, int i)
{
    return i < f->count && f->requests[i]->body_case == TMIX__ENVELOPE__BODY_NEXT
               ? f->requests[i]->next
               : NULL;
}

// The Next that request i must be: session, sequence, ack_through.
static int check_next(const fake_daemon *f, int i, uint64_t session, uint64_t seq, uint64_t ack)
{
    const Tmix__Next *n = next_of(f, i);
    if (!n || n->session_id != session || n->sequence != seq || n->ack_through != ack) {
        fprintf(stderr, "request %d: expected Next{session %llu, sequence %llu, ack %llu}", i,
                (unsigned long long)session, (unsigned long long)seq, (unsigned long long)ack);
        if (n)
            fprintf(stderr, ", got {%llu, %llu, %llu}", (unsigned long long)n->session_id,
                    (unsigned long long)n->sequence, (unsigned long long)n->ack_through);
        fputc('\n', stderr);
        return 1;
    }
    return 0;
}

// Batch 1 of every script is batch 0 of epoch 0, and so on: sequence s is index s - 1.
static void welcome_then_batches(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    if (i == 0)
        reply_welcome(f, r, 7);
    else
        reply_batch(f, r, req->next->sequence, 0, req->next->sequence - 1, FAKE_BATCH);
}

static int connect_welcome(void)
{
    fake_daemon f = {0};
    CHECK(fake_start(&f, welcome_then_batches, 1) == 0);
    tmix_client *c;
    tmix_options o = options(2000);
    o.group = "run-3.a_b";
    o.mode = TMIX_MODE_SHARD;
    o.batch_size = FAKE_BATCH;
    o.dtype = TMIX_DTYPE_FLOAT32;
    o.layout = TMIX_LAYOUT_NCHW;
    CHECK_RC(tmix_connect(&c, f.url, &o), 0, NULL);
    CHECK(fake_stop(&f) == 0);
    const Tmix__Envelope *req = f.requests[0];
    CHECK(req->version == TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION);
    CHECK(req->body_case == TMIX__ENVELOPE__BODY_HELLO);
    const Tmix__Hello *h = req->hello;
    CHECK(strcmp(h->group, "run-3.a_b") == 0);
    CHECK(h->mode == TMIX__GROUP_MODE__SHARD && h->batch_size == FAKE_BATCH);
    CHECK(h->dtype == TMIX__DTYPE__FLOAT32 && h->layout == TMIX__LAYOUT__NCHW);
    CHECK(h->delivery == TMIX__DELIVERY__INLINE);

    const tmix_info *i = tmix_get_info(c);
    CHECK(i->session_id == 7);
    CHECK(i->channels == FAKE_C && i->height == FAKE_H && i->width == FAKE_W);
    CHECK(i->classes == FAKE_CLASSES && i->mix_n == FAKE_N && i->batch_size == FAKE_BATCH);
    CHECK(i->epoch_size == FAKE_EPOCH_SIZE && i->batches_per_epoch == FAKE_BATCHES);
    CHECK(i->mode == TMIX_MODE_SHARD && i->dtype == TMIX_DTYPE_FLOAT32);
    CHECK(i->layout == TMIX_LAYOUT_NCHW);
    CHECK(i->mean[0] == 0.5f && i->mean[1] == 0.25f && i->mean[2] == 0.125f);
    CHECK(i->std[0] == 1.0f && i->std[1] == 0.5f && i->std[2] == 2.0f);
    CHECK(strcmp(i->method, "mixup") == 0);
    CHECK(strcmp(tmix_client_error(c), "") == 0);
    tmix_close(c);
    fake_free(&f);
    return 0;
}

static int default_hello(void)
{
    fake_daemon f = {0};
    CHECK(fake_start(&f, welcome_then_batches, 1) == 0);
    tmix_client *c;
    CHECK_RC(tmix_connect(&c, f.url, NULL), 0, NULL);
    CHECK(fake_stop(&f) == 0);
    const Tmix__Hello *h = f.requests[0]->hello;
    CHECK(strcmp(h->group, "default") == 0);
    CHECK(h->mode == 0 && h->batch_size == 0 && h->dtype == 0 && h->layout == 0);
    tmix_close(c);
    fake_free(&f);
    return 0;
}

// ack_through is the highest n with batches 1..n all released, whatever the release order;
// a batch released above it goes once in `released`. tmix_next sends the Next for the batch
// after the one it returns before returning it, so each Next says what was released before
// the tmix_next ahead of it: Next s + 1 leaves as batch s is handed out.
static int next_release_acks(void)
{
    fake_daemon f = {0};
    CHECK(fake_start(&f, welcome_then_batches, 7) == 0);
    tmix_client *c;
    CHECK_RC(connect_fake(&c, &f), 0, NULL);
    tmix_batch *b[6];
#define NEXT(s)                                                                                    \
    CHECK_RC(tmix_next(c, &b[s]), 0, c);                                                           \
    CHECK(b[s]->sequence == (uint64_t)(s))
    NEXT(1);
    NEXT(2);
    CHECK_RC(tmix_release(c, b[2]), 0, c);
    NEXT(3); // Next 4: 1 is still held, nothing acknowledged through, 2 on its own
    CHECK_RC(tmix_release(c, b[1]), 0, c);
    NEXT(4); // Next 5: 1, 2 released, 3 held
    CHECK_RC(tmix_release(c, b[3]), 0, c);
    CHECK_RC(tmix_release(c, b[4]), 0, c);
    CHECK_RC(tmix_release(c, b[4]), TMIX_EINVAL, c); // twice (before NEXT may reuse its memory)
    CHECK_SAYS(tmix_client_error(c), "not a batch this client holds");
    NEXT(5); // Next 6: all four released
#undef NEXT
    CHECK(fake_stop(&f) == 0);
    CHECK(check_next(&f, 1, 7, 1, 0) == 0);
    CHECK(check_next(&f, 2, 7, 2, 0) == 0);
    CHECK(check_next(&f, 3, 7, 3, 0) == 0);
    CHECK(check_next(&f, 4, 7, 4, 0) == 0);
    CHECK(check_next(&f, 5, 7, 5, 2) == 0);
    CHECK(check_next(&f, 6, 7, 6, 4) == 0);
    for (int i = 1; i <= 6; i++) {
        const Tmix__Next *n = next_of(&f, i);
        CHECK(i == 4 ? n->n_released == 1 && n->released[0] == 2 : n->n_released == 0);
    }
    tmix_close(c); // frees b[5], still held
    fake_free(&f);
    return 0;
}

// A lease of 200 ms: the batch asked for ahead, answered at once, is trusted within 100 ms;
// past that the Next goes again (same sequence) and the second answer is the batch.
static void short_lease(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    welcome_then_batches(f, i, req, r);
    if (i == 0)
        r->welcome.lease_timeout_ms = 200;
    else if (i == 3) // the repeated Next 2: another batch than the first answer, index 1
        reply_batch(f, r, req->next->sequence, 0, 2, FAKE_BATCH);
}

static int stale_answer_asked_again(void)
{
    fake_daemon f = {0};
    CHECK(fake_start(&f, short_lease, 6) == 0);
    tmix_client *c;
    CHECK_RC(connect_fake(&c, &f), 0, NULL);
    tmix_batch *b;
    CHECK_RC(tmix_next(c, &b), 0, c);
    CHECK_RC(tmix_release(c, b), 0, c);
    nanosleep(&(struct timespec){0, 150 * 1000000}, NULL); // Next 2's answer waits 150 ms
    CHECK_RC(tmix_next(c, &b), 0, c);
    CHECK(b->sequence == 2 && b->index == 2); // the second answer's
    CHECK_RC(tmix_release(c, b), 0, c);
    CHECK_RC(tmix_next(c, &b), 0, c); // at once: the answer is trusted
    CHECK(b->sequence == 3 && b->index == 2);
    CHECK(fake_stop(&f) == 0);
    CHECK(check_next(&f, 1, 7, 1, 0) == 0);
    CHECK(check_next(&f, 2, 7, 2, 0) == 0); // ahead, as batch 1 is handed out
    CHECK(check_next(&f, 3, 7, 2, 1) == 0); // again, batch 1 released meanwhile
    CHECK(check_next(&f, 4, 7, 3, 1) == 0);
    CHECK(check_next(&f, 5, 7, 4, 2) == 0);
    tmix_close(c);
    fake_free(&f);
    return 0;
}

// The Next asked for ahead is answered late: only after the Bye that tmix_close sends
// once it has waited 500 ms for that answer. Had the Bye gone over the same socket, it would
// have cancelled the Next, and nanomsg 1.1.5's REQ socket would drop the late answer and
// free it twice on closing (SIGSEGV in nn_req_term, 7 closes in 15 with 77 MB batches).
// The Bye goes over a new socket, answered; the late answer finds its socket closed. Five
// rounds, as the crash needed the late answer in before the close.
// welcome_then_batches, and the Bye answered.
static void batches_and_bye(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    if (req->body_case == TMIX__ENVELOPE__BODY_BYE)
        reply_bye(r, req->bye->session_id);
    else
        welcome_then_batches(f, i, req, r);
}

static void late_ahead(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    batches_and_bye(f, i, req, r);
    r->late = i == 2; // Next 2, asked ahead as batch 1 is handed out
}

static int close_before_ahead_answer(void)
{
    for (int round = 0; round < 5; round++) {
        fake_daemon f = {0};
        CHECK(fake_start(&f, late_ahead, 4) == 0); // Hello, Next 1, Next 2, Bye
        tmix_client *c;
        CHECK_RC(connect_fake(&c, &f), 0, NULL);
        tmix_batch *b;
        CHECK_RC(tmix_next(c, &b), 0, c);
        CHECK(b->sequence == 1);
        tmix_close(c);
        CHECK(fake_stop(&f) == 0);
        CHECK(check_next(&f, 2, 7, 2, 0) == 0);
        CHECK(f.requests[3]->body_case == TMIX__ENVELOPE__BODY_BYE &&
              f.requests[3]->bye->session_id == 7);
        fake_free(&f);
    }
    return 0;
}

// The first Next is answered late, only after the Bye: after RESEND_IVL_MS (10 s) the client
// asks again, over a new socket, and gets that answer; the late one finds its socket
// closed. Resent over the same socket (nanomsg's resends, as before), the late answer was a
// second reply to the same request, which the REQ socket drops and frees twice on closing.
static void late_first_next(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    batches_and_bye(f, i, req, r);
    r->late = i == 1;
}

static int resent_over_new_socket(void)
{
    fake_daemon f = {.wait_ms = 15000};
    CHECK(fake_start(&f, late_first_next, 5) == 0); // Hello, Next 1 twice, Next 2 (ahead), Bye
    tmix_options o = options(15000);
    tmix_client *c;
    CHECK_RC(tmix_connect(&c, f.url, &o), 0, NULL);
    tmix_batch *b;
    CHECK_RC(tmix_next(c, &b), 0, c);
    CHECK(b->sequence == 1 && b->index == 0);
    tmix_close(c);
    CHECK(fake_stop(&f) == 0);
    CHECK(check_next(&f, 1, 7, 1, 0) == 0 && check_next(&f, 2, 7, 1, 0) == 0);
    CHECK(check_next(&f, 3, 7, 2, 0) == 0);
    CHECK(f.requests[4]->body_case == TMIX__ENVELOPE__BODY_BYE);
    fake_free(&f);
    return 0;
}

// Inline batches above 4 MiB (the Welcome's batch size; the batches served are a smaller
// last one) are asked for ahead as any other: Hello, Next 1, Next 2 and, ahead, Next 3.
static void big_inline(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    welcome_then_batches(f, i, req, r);
    if (i == 0)
        r->welcome.batch_size = 1 << 20; // 48 MiB of float32 3x2x2 images
}

static int big_inline_ahead(void)
{
    fake_daemon f = {.quiet_ms = 300};
    CHECK(fake_start(&f, big_inline, 0) == 0);
    tmix_client *c;
    CHECK_RC(connect_fake(&c, &f), 0, NULL);
    tmix_batch *b;
    for (int s = 1; s <= 2; s++) {
        CHECK_RC(tmix_next(c, &b), 0, c);
        CHECK(b->sequence == (uint64_t)s);
        CHECK_RC(tmix_release(c, b), 0, c);
    }
    CHECK(fake_stop(&f) == 0);
    CHECK(f.count == 4 && check_next(&f, 3, 7, 3, 1) == 0);
    tmix_close(c);
    fake_free(&f);
    return 0;
}

// Every byte and array of a batch, as laid out (NHWC here, so the shape order shows).
static int batch_view(void)
{
    fake_daemon f = {.layout = TMIX__LAYOUT__NHWC, .dtype = TMIX__DTYPE__UINT8};
    CHECK(fake_start(&f, welcome_then_batches, 3) == 0);
    tmix_client *c;
    CHECK_RC(connect_fake(&c, &f), 0, NULL);
    tmix_batch *b1, *b2;
    CHECK_RC(tmix_next(c, &b1), 0, c);
    CHECK_RC(tmix_next(c, &b2), 0, c);
    CHECK(fake_stop(&f) == 0);
    CHECK(tmix_get_info(c)->layout == TMIX_LAYOUT_NHWC);
    CHECK(b2->sequence == 2 && b2->epoch == 0 && b2->index == 1);
    CHECK(b2->dtype == TMIX_DTYPE_UINT8 && b2->layout == TMIX_LAYOUT_NHWC);
    CHECK(b2->ndim == 4);
    CHECK(b2->shape[0] == FAKE_BATCH && b2->shape[1] == FAKE_H && b2->shape[2] == FAKE_W &&
          b2->shape[3] == FAKE_C);
    CHECK(b2->size == FAKE_BATCH && b2->mix_n == FAKE_N);
    CHECK(b2->images_bytes == FAKE_BATCH * FAKE_IMAGE_ELEMS);
    const uint8_t *px = b2->images;
    for (size_t j = 0; j < b2->images_bytes; j++)
        CHECK(px[j] == fake_image_byte(2, j));
    for (uint32_t i = 0; i < b2->size; i++) {
        const uint64_t id = fake_sample_id(0, 1, i);
        CHECK(b2->sample_ids[i] == id);
        CHECK(b2->sources[i * 2] == id && b2->sources[i * 2 + 1] == id + FAKE_PARTNER);
        CHECK(b2->labels[i * 2] == id % 10 && b2->labels[i * 2 + 1] == (id + FAKE_PARTNER) % 10);
        CHECK(b2->weights[i * 2] == 0.75f && b2->weights[i * 2 + 1] == 0.25f);
    }
    CHECK(b2->replaced_count == 0);
    // The first batch is untouched by the second.
    CHECK(b1->sample_ids[0] == fake_sample_id(0, 0, 0) &&
          *(const uint8_t *)b1->images == fake_image_byte(1, 0));
    CHECK(tmix_dtype_size(b2->dtype) == 1 && strcmp(tmix_dtype_name(b2->dtype), "uint8") == 0);
    tmix_close(c);
    fake_free(&f);
    return 0;
}

// Welcome (session 7), batches 1 and 2, then the daemon forgets the session: the client says
// Hello again (session 8) and asks for batch 1 of the new session.
static void forgetful(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    if (i == 0 || i == 4)
        reply_welcome(f, r, i == 0 ? 7 : 8);
    else if (i == 3)
        reply_error(r, TMIX__ERROR__CODE__UNKNOWN_SESSION, "session 7 expired");
    else
        reply_batch(f, r, req->next->sequence, 0, i == 5 ? 2 : req->next->sequence - 1, 3);
}

static int unknown_session_rehello(void)
{
    fake_daemon f = {.mode = TMIX__GROUP_MODE__BROADCAST};
    CHECK(fake_start(&f, forgetful, 6) == 0);
    tmix_client *c;
    tmix_options o = options(2000);
    o.group = "g";
    o.mode = TMIX_MODE_BROADCAST;
    CHECK_RC(tmix_connect(&c, f.url, &o), 0, NULL);
    tmix_batch *b1, *b2, *b3;
    CHECK_RC(tmix_next(c, &b1), 0, c);
    CHECK_RC(tmix_release(c, b1), 0, c);
    CHECK_RC(tmix_next(c, &b2), 0, c);
    CHECK_RC(tmix_next(c, &b3), 0, c);
    CHECK(fake_stop(&f) == 0);
    CHECK(check_next(&f, 3, 7, 3, 1) == 0);
    CHECK(f.requests[4]->body_case == TMIX__ENVELOPE__BODY_HELLO);
    CHECK(strcmp(f.requests[4]->hello->group, "g") == 0);
    CHECK(f.requests[4]->hello->mode == TMIX__GROUP_MODE__BROADCAST);
    // Broadcast resumes the stream after the last batch received (index 1 of epoch 0).
    CHECK(f.requests[0]->hello->start == 0 && f.requests[4]->hello->start == 2);
    CHECK(check_next(&f, 5, 8, 1, 0) == 0);
    CHECK(tmix_get_info(c)->session_id == 8);
    CHECK(b3->sequence == 1 && b3->index == 2);
    // The old session's batch is still the caller's, intact, until released.
    CHECK(b2->sequence == 2 && b2->sample_ids[2] == fake_sample_id(0, 1, 2));
    CHECK_RC(tmix_release(c, b2), 0, c);
    CHECK_RC(tmix_release(c, b3), 0, c);
    tmix_close(c);
    fake_free(&f);
    return 0;
}

static void always_forgets(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    if (req->body_case == TMIX__ENVELOPE__BODY_HELLO)
        reply_welcome(f, r, 7 + i);
    else
        reply_error(r, TMIX__ERROR__CODE__UNKNOWN_SESSION, "no such session");
}

// One new Hello per tmix_next, not a loop: the second UNKNOWN_SESSION is the caller's.
static int unknown_session_twice(void)
{
    fake_daemon f = {0};
    CHECK(fake_start(&f, always_forgets, 4) == 0);
    tmix_client *c;
    CHECK_RC(connect_fake(&c, &f), 0, NULL);
    tmix_batch *b;
    CHECK_RC(tmix_next(c, &b), TMIX_ESESSION, c);
    CHECK(b == NULL);
    CHECK_SAYS(tmix_client_error(c), "UNKNOWN_SESSION: no such session");
    CHECK(fake_stop(&f) == 0);
    CHECK(check_next(&f, 1, 7, 1, 0) == 0);
    CHECK(f.requests[2]->body_case == TMIX__ENVELOPE__BODY_HELLO);
    CHECK(check_next(&f, 3, 9, 1, 0) == 0);
    tmix_close(c);
    fake_free(&f);
    return 0;
}

static void busy(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    reply_error(r, TMIX__ERROR__CODE__BUSY, "4 trainers already ([server] max_trainers)");
}

static void refuses_next(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    if (i == 0)
        reply_welcome(f, r, 7);
    else
        reply_error(r, TMIX__ERROR__CODE__BAD_REQUEST, "sequence 1 skips ahead");
}

static int daemon_error(void)
{
    fake_daemon f = {0};
    CHECK(fake_start(&f, busy, 1) == 0);
    tmix_client *c = (tmix_client *)&f; // must be reset to NULL
    CHECK_RC(connect_fake(&c, &f), TMIX_EBUSY, NULL);
    CHECK(c == NULL);
    CHECK_SAYS(tmix_client_error(NULL), f.url);
    CHECK_SAYS(tmix_client_error(NULL), "BUSY: 4 trainers already ([server] max_trainers)");
    CHECK(fake_stop(&f) == 0);
    fake_free(&f);

    fake_daemon g = {0};
    CHECK(fake_start(&g, refuses_next, 2) == 0);
    CHECK_RC(connect_fake(&c, &g), 0, NULL);
    tmix_batch *b;
    CHECK_RC(tmix_next(c, &b), TMIX_EBADREQ, c);
    CHECK_SAYS(tmix_client_error(c), "Next: the daemon answered BAD_REQUEST: sequence 1 skips");
    CHECK(fake_stop(&g) == 0);
    tmix_close(c);
    fake_free(&g);
    return 0;
}

static void speaks_v2(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    reply_welcome(f, r, 7);
    r->env.version = 2;
}

static void garbage(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    static const char bytes[] = "\xff\xff\xff not an Envelope";
    r->raw = bytes;
    r->raw_len = sizeof(bytes) - 1;
}

static void status_script(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    reply_status(r);
}

// A Welcome that did not resolve what the Hello asked for.
static void float32_for_uint8(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    reply_welcome(f, r, 7); // f's dtype: FLOAT32
}

// A Welcome whose normalisation would divide by zero.
static void zero_std(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    static float std[FAKE_C] = {1.0f, 0.0f, 1.0f};
    reply_welcome(f, r, 7);
    r->welcome.std = std;
}

static int protocol_violations(void)
{
    struct {
        fake_script script;
        const char *says;
    } cases[] = {
        {speaks_v2, "speaks protocol version 2, this client 1"},
        {garbage, "is not a tmix Envelope"},
        {status_script, "the reply to Hello is a Status, expected a Welcome"},
        {float32_for_uint8, "the Welcome says shard, float32"},
        {zero_std, "the Welcome's std[1] = 0 is not > 0"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        fake_daemon f = {0};
        CHECK(fake_start(&f, cases[k].script, 1) == 0);
        tmix_client *c;
        tmix_options o = options(2000);
        o.dtype = cases[k].script == float32_for_uint8 ? TMIX_DTYPE_UINT8 : 0;
        CHECK_RC(tmix_connect(&c, f.url, &o), TMIX_EPROTO, NULL);
        CHECK_SAYS(tmix_client_error(NULL), cases[k].says);
        CHECK(fake_stop(&f) == 0);
        fake_free(&f);
    }
    return 0;
}

// SHM delivery against a ring the test makes: a batch in slot 1 is read in place, one that
// names a slot past the ring is refused, one sent inline (the daemon's ring was full) is read
// from the message; a ring that does not exist is TMIX_ESHM naming it.
enum { SHM_SLOT = 4096, SHM_SLOTS = 2 };
static char shm_name[64];

// The batch asked for by req; requests 1, 2 and 4 get it in `slot` (no images inline),
// request 3 inline, as when the daemon's ring was full.
static void reply_maybe_in_slot(fake_daemon *f, fake_reply *r, int i, const Tmix__Envelope *req,
                                uint32_t slot)
{
    const uint64_t seq = req->next->sequence;
    reply_batch(f, r, seq, 0, seq - 1, FAKE_BATCH);
    if (i == 3)
        return;
    r->batch.images.len = 0;
    r->batch.in_slot = true;
    r->batch.slot = slot;
}

static void shm_script(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    if (i == 0) {
        reply_welcome(f, r, 7);
        r->welcome.delivery = TMIX__DELIVERY__SHM;
        r->welcome.shm_name = shm_name;
        r->welcome.shm_slot_bytes = SHM_SLOT;
        r->welcome.shm_slots = SHM_SLOTS;
        return;
    }
    reply_maybe_in_slot(f, r, i, req, i == 1 ? 1 : SHM_SLOTS);
}

static int shm_delivery(void)
{
    snprintf(shm_name, sizeof shm_name, "/tmix-test-%ld", (long)getpid());
    const int fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0 && ftruncate(fd, SHM_SLOT * SHM_SLOTS) == 0);
    uint8_t *ring = mmap(NULL, SHM_SLOT * SHM_SLOTS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(ring != MAP_FAILED);
    close(fd);
    for (int j = 0; j < SHM_SLOT; j++)
        ring[SHM_SLOT + j] = fake_image_byte(99, (size_t)j);

    fake_daemon f = {0};
    CHECK(fake_start(&f, shm_script, 4) == 0);
    tmix_client *c;
    tmix_options o = options(2000);
    o.delivery = TMIX_DELIVERY_SHM;
    CHECK_RC(tmix_connect(&c, f.url, &o), 0, NULL);
    const tmix_info *info = tmix_get_info(c);
    CHECK(info->delivery == TMIX_DELIVERY_SHM && strcmp(info->shm_name, shm_name) == 0);
    CHECK(info->shm_bytes == SHM_SLOT * SHM_SLOTS);
    CHECK(f.requests[0]->hello->delivery == TMIX__DELIVERY__SHM);
    tmix_batch *b;
    CHECK_RC(tmix_next(c, &b), 0, c);
    CHECK((const uint8_t *)b->images == (const uint8_t *)info->shm_base + SHM_SLOT);
    CHECK(b->images_bytes == FAKE_BATCH * FAKE_IMAGE_ELEMS * 4);
    CHECK(memcmp(b->images, ring + SHM_SLOT, b->images_bytes) == 0);
    CHECK_RC(tmix_next(c, &b), TMIX_EPROTO, c);
    CHECK_SAYS(tmix_client_error(c), "in slot 2: the ring");
    CHECK_RC(tmix_next(c, &b), 0, c); // the same sequence, now inline
    CHECK(b->images != NULL && ((const uint8_t *)b->images < (const uint8_t *)info->shm_base ||
                                (const uint8_t *)b->images >=
                                    (const uint8_t *)info->shm_base + info->shm_bytes));
    CHECK(((const uint8_t *)b->images)[1] == fake_image_byte(b->sequence, 1));
    tmix_close(c);
    CHECK(fake_stop(&f) == 0);
    fake_free(&f);
    munmap(ring, SHM_SLOT * SHM_SLOTS);

    shm_unlink(shm_name); // now the Welcome names a ring that is not there
    fake_daemon g = {0};
    CHECK(fake_start(&g, shm_script, 1) == 0);
    CHECK_RC(tmix_connect(&c, g.url, &o), TMIX_ESHM, NULL);
    CHECK_SAYS(tmix_client_error(NULL), shm_name);
    CHECK(fake_stop(&g) == 0);
    fake_free(&g);
    return 0;
}

// CUDA delivery: the Hello names the GPU; a batch in GPU slot 2 comes with its two IPC
// handles and no images; one with a short handle is refused; one sent inline is read as such.
static unsigned char cuda_handle[64];

static void cuda_script(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    if (i == 0) {
        reply_welcome(f, r, 7);
        r->welcome.delivery = TMIX__DELIVERY__CUDA;
        r->welcome.cuda_device = 1;
        r->welcome.cuda_slots = 4;
        return;
    }
    reply_maybe_in_slot(f, r, i, req, 2);
    if (!r->batch.in_slot)
        return;
    r->batch.cuda_mem = (ProtobufCBinaryData){64, cuda_handle};
    r->batch.cuda_event = (ProtobufCBinaryData){i == 1 ? 64 : 63, cuda_handle};
}

static int cuda_delivery(void)
{
    for (int j = 0; j < 64; j++)
        cuda_handle[j] = (unsigned char)(j * 7 + 1);
    fake_daemon f = {0};
    CHECK(fake_start(&f, cuda_script, 4) == 0);
    tmix_client *c;
    tmix_options o = options(2000);
    o.delivery = TMIX_DELIVERY_CUDA;
    o.cuda_device = 1;
    CHECK_RC(tmix_connect(&c, f.url, &o), 0, NULL);
    CHECK(f.requests[0]->hello->delivery == TMIX__DELIVERY__CUDA);
    CHECK(f.requests[0]->hello->cuda_device == 1);
    const tmix_info *info = tmix_get_info(c);
    CHECK(info->delivery == TMIX_DELIVERY_CUDA && info->cuda_device == 1 && info->cuda_slots == 4);
    tmix_batch *b;
    CHECK_RC(tmix_next(c, &b), 0, c);
    CHECK(b->cuda_in_slot && b->cuda_slot == 2 && b->images == NULL);
    CHECK(memcmp(b->cuda_mem, cuda_handle, 64) == 0 && memcmp(b->cuda_event, cuda_handle, 64) == 0);
    CHECK(b->images_bytes == FAKE_BATCH * FAKE_IMAGE_ELEMS * 4);
    CHECK_RC(tmix_next(c, &b), TMIX_EPROTO, c);
    CHECK_SAYS(tmix_client_error(c), "handles of 64 and 63 bytes");
    CHECK_RC(tmix_next(c, &b), 0, c); // the same sequence, now inline
    CHECK(!b->cuda_in_slot && b->images != NULL);
    CHECK(((const uint8_t *)b->images)[1] == fake_image_byte(b->sequence, 1));
    tmix_close(c);
    CHECK(fake_stop(&f) == 0);
    fake_free(&f);
    return 0;
}

// Batches that contradict themselves, each refused; asking again asks for the same sequence.
static void inconsistent(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    if (i == 0) {
        reply_welcome(f, r, 7);
        return;
    }
    reply_batch(f, r, req->next->sequence, 0, 0, 3);
    Tmix__Batch *b = &r->batch;
    switch (i) {
    case 1:
        b->images.len--;
        break;
    case 2:
        b->n_labels--;
        break;
    case 3:
        b->sequence = 2;
        break;
    case 4:
        r->shape[1] = 1; // one channel, the Welcome said 3
        break;
    case 5:
        b->mix_n = 3; // the Welcome said 2
        break;
    case 6:
        r->labels[5] = FAKE_CLASSES;
        break;
    }
}

static int inconsistent_batch(void)
{
    static const char *const says[] = {
        "carries 143 bytes of images, its shape and dtype need 144",
        "has 3 sample ids, 6 sources, 5 labels, 6 weights",
        "asked for batch 1, got batch 2",
        "has shape (3,1,2,2) nchw; the Welcome said C,H,W = 3,2,2",
        "mixes 3 sources, the Welcome said 2",
        "label 10 at 5 is not below the 10 classes",
    };
    fake_daemon f = {0};
    CHECK(fake_start(&f, inconsistent, 8) == 0);
    tmix_client *c;
    CHECK_RC(connect_fake(&c, &f), 0, NULL);
    tmix_batch *b;
    for (int k = 0; k < 6; k++) {
        CHECK_RC(tmix_next(c, &b), TMIX_EPROTO, c);
        CHECK_SAYS(tmix_client_error(c), says[k]);
    }
    CHECK_RC(tmix_next(c, &b), 0, c);
    CHECK(fake_stop(&f) == 0);
    for (int i = 1; i <= 7; i++)
        CHECK(check_next(&f, i, 7, 1, 0) == 0);
    tmix_close(c);
    fake_free(&f);
    return 0;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (t.tv_nsec - t0->tv_nsec) * 1e-9;
}

// Nothing listens: ETIMEDOUT naming the endpoint and the wait, well before a 3 s bound
// (generous: the point is that it does not hang).
static int timeout_nothing_listening(void)
{
    fake_daemon f = {0}; // only for its temp dir: nothing is bound there
    strcpy(f.dir, "/tmp/tmix-none-XXXXXX");
    CHECK(mkdtemp(f.dir) != NULL);
    char url[128];
    snprintf(url, sizeof(url), "ipc://%s/tmixd.sock", f.dir);
    tmix_options o = options(200);
    tmix_client *c;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_RC(tmix_connect(&c, url, &o), TMIX_ETIMEDOUT, NULL);
    CHECK(seconds_since(&t0) < 3);
    CHECK_SAYS(tmix_client_error(NULL), url);
    CHECK_SAYS(tmix_client_error(NULL), "no reply to Hello within 200 ms");
    tmix_server_status *s;
    CHECK_RC(tmix_status(url, 200, &s), TMIX_ETIMEDOUT, NULL);
    CHECK(s == NULL);
    CHECK_SAYS(tmix_client_error(NULL), "no reply to StatusRequest within 200 ms");
    rmdir(f.dir);
    return 0;
}

static void silent_on_next(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r)
{
    if (i == 0)
        reply_welcome(f, r, 7);
    else
        r->silent = true;
}

static int timeout_next(void)
{
    fake_daemon f = {0};
    CHECK(fake_start(&f, silent_on_next, 2) == 0);
    tmix_client *c;
    tmix_options o = options(200);
    CHECK_RC(tmix_connect(&c, f.url, &o), 0, NULL);
    tmix_batch *b;
    CHECK_RC(tmix_next(c, &b), TMIX_ETIMEDOUT, c);
    CHECK_SAYS(tmix_client_error(c), "no reply to Next within 200 ms");
    CHECK(fake_stop(&f) == 0);
    tmix_close(c);
    fake_free(&f);
    return 0;
}

static int status(void)
{
    fake_daemon f = {0};
    CHECK(fake_start(&f, status_script, 1) == 0);
    tmix_server_status *s;
    CHECK_RC(tmix_status(f.url, 2000, &s), 0, NULL);
    CHECK(fake_stop(&f) == 0);
    CHECK(f.requests[0]->body_case == TMIX__ENVELOPE__BODY_STATUS_REQUEST);
    CHECK(strcmp(s->version, "0.1.0") == 0 && s->uptime_s == 3723 && s->trainers == 3);
    CHECK(s->batches_served == 1234 && strcmp(s->backend, "cpu") == 0);
    CHECK(strcmp(s->dataset, "idx:/data/fashion-mnist (train)") == 0);
    CHECK(s->dataset_size == 60000 && strcmp(s->method, "mixup") == 0);
    CHECK(s->bad_samples == 2 && s->memory_bytes == 5u << 20);
    CHECK(s->group_count == 2);
    const tmix_group_status *g = s->groups;
    CHECK(strcmp(g[0].name, "alpha") == 0 && g[0].mode == TMIX_MODE_SHARD);
    CHECK(g[0].members == 2 && g[0].batch_size == 128 && g[0].epoch == 4);
    CHECK(g[0].batches_done == 17 && g[0].batches_per_epoch == 469);
    CHECK(g[0].batches_served == 1000);
    CHECK(strcmp(g[1].name, "beta") == 0 && g[1].mode == TMIX_MODE_BROADCAST);
    CHECK(g[1].members == 1 && g[1].batches_served == 1001);
    tmix_status_free(s);
    tmix_status_free(NULL);
    fake_free(&f);
    return 0;
}

// Arguments refused before anything is sent.
static int bad_arguments(void)
{
    tmix_client *c;
    CHECK_RC(tmix_connect(&c, "carrier-pigeon://roof", NULL), TMIX_EINVAL, NULL);
    CHECK_SAYS(tmix_client_error(NULL), "carrier-pigeon://roof: not an endpoint");
    CHECK_RC(tmix_connect(&c, "ipc:///tmp/x.sock", &(tmix_options){.group = "a b"}), TMIX_EINVAL,
             NULL);
    CHECK_SAYS(tmix_client_error(NULL), "group 'a b'");
    CHECK_RC(tmix_connect(&c, "ipc:///tmp/x.sock", &(tmix_options){.dtype = 9}), TMIX_EINVAL, NULL);
    CHECK_SAYS(tmix_client_error(NULL), "dtype 9");
    CHECK_RC(tmix_connect(&c, "ipc:///tmp/x.sock", &(tmix_options){.timeout_ms = -1}), TMIX_EINVAL,
             NULL);
    CHECK_RC(tmix_connect(&c, NULL, NULL), TMIX_EINVAL, NULL);
    tmix_server_status *s;
    CHECK_RC(tmix_status("tcp://", 100, &s), TMIX_EINVAL, NULL);
    tmix_config *cfg = (tmix_config *)1;
    CHECK_RC(tmix_config_get("ipc:///tmp/x.sock", NULL, -1, &cfg), TMIX_EINVAL, NULL);
    CHECK(cfg == NULL);
    CHECK_SAYS(tmix_client_error(NULL), "timeout_ms -1");
    CHECK_RC(tmix_config_set("ipc:///tmp/x.sock", NULL, "1", 100), TMIX_EINVAL, NULL);
    CHECK_SAYS(tmix_client_error(NULL), "key is NULL");
    CHECK_RC(tmix_connect(&c, "ipc:///tmp/x.sock", &(tmix_options){.node_rank = 2, .node_count = 2}),
             TMIX_EINVAL, NULL);
    CHECK_SAYS(tmix_client_error(NULL), "node 2 of 2: the rank must be below the count");
    CHECK_RC(tmix_next(NULL, NULL), TMIX_EINVAL, NULL);
    tmix_close(NULL);
    return 0;
}

static int error_table(void)
{
    CHECK(strcmp(tmix_err_name(TMIX_ETIMEDOUT), "TMIX_ETIMEDOUT") == 0);
    CHECK(strcmp(tmix_strerror(TMIX_EPROTO), "malformed or unexpected reply from the daemon") == 0);
    CHECK(strcmp(tmix_strerror(0), "success") == 0);
    CHECK(strcmp(tmix_err_name(-999), "TMIX_E?") == 0);
    CHECK(strcmp(tmix_strerror(-999), "unknown error") == 0);
    // The codes the core also has keep its numbers.
    CHECK(TMIX_EINVAL == -1 && TMIX_ENOMEM == -5 && TMIX_EIO == -6 && TMIX_ENOTSUP == -8);
    CHECK(strcmp(tmix_mode_name(TMIX_MODE_BROADCAST), "broadcast") == 0);
    CHECK(strcmp(tmix_layout_name(TMIX_LAYOUT_NHWC), "nhwc") == 0);
    CHECK(strcmp(tmix_dtype_name(7), "?") == 0 && tmix_dtype_size(0) == 0);
    return 0;
}

int main(int argc, char **argv)
{
    static const test_case tests[] = {
        {"client.connect_welcome", connect_welcome},
        {"client.default_hello", default_hello},
        {"client.next_release_acks", next_release_acks},
        {"client.stale_answer_asked_again", stale_answer_asked_again},
        {"client.big_inline_ahead", big_inline_ahead},
        {"client.close_before_ahead_answer", close_before_ahead_answer},
        {"client.resent_over_new_socket", resent_over_new_socket},
        {"client.batch_view", batch_view},
        {"client.unknown_session_rehello", unknown_session_rehello},
        {"client.unknown_session_twice", unknown_session_twice},
        {"client.daemon_error", daemon_error},
        {"client.protocol_violations", protocol_violations},
        {"client.inconsistent_batch", inconsistent_batch},
        {"client.shm_delivery", shm_delivery},
        {"client.cuda_delivery", cuda_delivery},
        {"client.timeout_nothing_listening", timeout_nothing_listening},
        {"client.timeout_next", timeout_next},
        {"client.status", status},
        {"client.bad_arguments", bad_arguments},
        {"client.error_table", error_table},
        {NULL, NULL},
    };
    return test_main(argc, argv, tests);
}
