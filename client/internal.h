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

// A REQ socket connected to endpoint, as libtmix uses it: replies of any size, requests
// resent every second until answered, sends and receives that give up after timeout_ms
// (0: never). TMIX_EINVAL for an endpoint nanomsg cannot connect to.
int tmixi_socket_open(int *sock, const char *endpoint, int timeout_ms, char *err);

// Sends req (its version set here); now: only if it can go at once (else TMIX_ETIMEDOUT),
// without waiting for the daemon to be reachable.
int tmixi_send(int sock, const char *endpoint, int timeout_ms, bool now, Tmix__Envelope *req,
               char *err);

// Whether the reply to the request sent last is already here (tmixi_receive will not wait).
bool tmixi_reply_waiting(int sock);

// Waits for the reply to the request of body `asked` sent last, checked as tmixi_exchange's.
int tmixi_receive(int sock, const char *endpoint, int timeout_ms, Tmix__Envelope__BodyCase asked,
                  Tmix__Envelope__BodyCase want, Tmix__Envelope **reply, char *err);

// Sends req (its version set here) and waits for the reply. The reply must be an Envelope of
// this protocol version whose body is `want`, stored in *reply (freed with
// tmix__envelope__free_unpacked); an Error body returns its code mapped to a TMIX_E* code
// (UNKNOWN_SESSION: TMIX_ESESSION) with the daemon's message in err.
int tmixi_exchange(int sock, const char *endpoint, int timeout_ms, Tmix__Envelope *req,
                   Tmix__Envelope__BodyCase want, Tmix__Envelope **reply, char *err);

// One request on a socket of its own, for the calls without a session (tmix_status,
// tmix_config_get/set): tmixi_socket_open, tmixi_exchange, close.
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
