// libtmix's insides (prefix tmixi_): error sentences, the socket and one request/reply
// exchange, and reading a Batch message into a tmix_batch. Not installed.
#ifndef TMIX_CLIENT_INTERNAL_H
#define TMIX_CLIENT_INTERNAL_H

#include <stdbool.h>

#include "tmix.h"
#include "tmix.pb-c.h"

// Room for one error sentence; each client has one, and each thread one for calls without
// a client (tmix_connect, tmix_status).
#define TMIXI_ERR_LEN 512

// Writes the sentence (printf-style) into err[TMIXI_ERR_LEN] and returns code, so that
// failing paths read `return tmixi_fail(err, TMIX_EPROTO, "%s: ...", endpoint, ...);`.
int tmixi_fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// The calling thread's error buffer (what tmix_client_error(NULL) returns).
char *tmixi_thread_error(void);

// The allocator every reply is unpacked with (blocks.c: large blocks, the images of inline
// batches, are kept for reuse when freed); tmixi_envelope_free frees a reply with it.
extern ProtobufCAllocator tmixi_allocator;
void tmixi_envelope_free(Tmix__Envelope *env);
// For tests: how many large blocks are kept now; give them all back.
int tmixi_blocks_kept(void);
void tmixi_blocks_drop(void);

// libtmix's connection: a nanomsg REQ socket, and the request sent over it that still waits
// for its reply. nanomsg 1.1.5's REQ socket frees a reply it drops (one to a request that a
// newer request cancelled, or a second reply to a request it resent) but keeps pointing at
// it, and frees it again when it is closed: trainers crashed in nn_req_term when a batch
// asked for ahead came after their Bye. So a request never cancels another, and nanomsg
// never resends: while a reply is owed, the next request, or the same one again after
// RESEND_IVL_MS (wire.c), goes over a new socket, and the old one is closed with that reply
// still its own.
typedef struct {
    int sock;           // -1: none
    void *request;      // packed, owed a reply; NULL: none
    size_t request_len;
} tmixi_conn;

// A connection to endpoint, as libtmix uses it: replies of any size, sends that give up
// after timeout_ms (0: never). TMIX_EINVAL for an endpoint nanomsg cannot connect to.
int tmixi_conn_open(tmixi_conn *conn, const char *endpoint, int timeout_ms, char *err);

// Closes conn's socket, if any, and forgets the request it owes.
void tmixi_conn_close(tmixi_conn *conn);

// Sends req (its version set here); now: only if it can go at once (else TMIX_ETIMEDOUT),
// without waiting for the daemon to be reachable. Over a new socket when conn still owes a
// reply.
int tmixi_send(tmixi_conn *conn, const char *endpoint, int timeout_ms, bool now,
               Tmix__Envelope *req, char *err);

// Whether the reply to the request sent last is already here (tmixi_receive will not wait).
bool tmixi_reply_waiting(const tmixi_conn *conn);

// Waits up to timeout_ms (0: forever) for the reply to the request of body `asked` sent
// last, sending it again every RESEND_IVL_MS without one; checked as tmixi_exchange's.
int tmixi_receive(tmixi_conn *conn, const char *endpoint, int timeout_ms,
                  Tmix__Envelope__BodyCase asked, Tmix__Envelope__BodyCase want,
                  Tmix__Envelope **reply, char *err);

// Sends req (its version set here) and waits for the reply. The reply must be an Envelope of
// this protocol version whose body is `want`, stored in *reply (freed with
// tmixi_envelope_free); an Error body returns its code mapped to a TMIX_E* code
// (UNKNOWN_SESSION: TMIX_ESESSION) with the daemon's message in err.
int tmixi_exchange(tmixi_conn *conn, const char *endpoint, int timeout_ms, Tmix__Envelope *req,
                   Tmix__Envelope__BodyCase want, Tmix__Envelope **reply, char *err);

// One request on a connection of its own, for the calls without a session (tmix_status,
// tmix_config_get/set): tmixi_conn_open, tmixi_exchange, close.
int tmixi_request(const char *endpoint, int timeout_ms, Tmix__Envelope *req,
                  Tmix__Envelope__BodyCase want, Tmix__Envelope **reply, char *err);

// A group's shared-memory ring as the client mapped it (SHM delivery).
typedef struct tmixi_ring {
    char *name;
    const char *base; // read-only mapping of slots x slot_bytes
    size_t slot_bytes;
    uint32_t slots;
    struct tmixi_ring *next;
} tmixi_ring;

// Checks that m is the batch `sequence` asked for and agrees with itself and with the
// Welcome (info): dtype, layout, shape, the payload size (inline, or within a slot of ring)
// and the N and N x n arrays, and fills *out with pointers into m or the ring. TMIX_EPROTO,
// naming the contradiction, otherwise.
int tmixi_batch_read(tmix_batch *out, const Tmix__Batch *m, uint64_t sequence,
                     const tmix_info *info, const tmixi_ring *ring, const char *endpoint,
                     char *err);

#endif
