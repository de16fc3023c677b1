// One request and its reply over libtmix's nanomsg REQ socket: pack, send, wait, unpack,
// and turn whatever is not the expected answer into a TMIX_E* code and a sentence.
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#include "internal.h"

// A reply that never came is resent after this long; Next and StatusRequest are idempotent
// and Hello costs an unused session at worst, so a resend is harmless. Not sooner: a Next
// resent while its reply is still on its way (a 77 MB inline batch behind others) makes the
// daemon send the batch again, and the REQ socket drops that second reply (tmixi_conn says
// what a dropped reply does to it). A trainer waiting across a daemon restart asks the new
// daemon within this long.
#define RESEND_IVL_MS 10000

static int set_int(int sock, int level, int option, int value)
{
    return nn_setsockopt(sock, level, option, &value, sizeof(value));
}

int tmixi_conn_open(tmixi_conn *conn, const char *endpoint, int timeout_ms, char *err)
{
    *conn = (tmixi_conn){.sock = -1};
    int s = nn_socket(AF_SP, NN_REQ);
    if (s < 0)
        return tmixi_fail(err, TMIX_EIO, "%s: cannot create a nanomsg REQ socket: %s", endpoint,
                          nn_strerror(nn_errno()));
    const int wait = timeout_ms > 0 ? timeout_ms : -1;
    if (set_int(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, -1) < 0 ||
        set_int(s, NN_REQ, NN_REQ_RESEND_IVL, RESEND_IVL_MS) < 0 ||
        set_int(s, NN_SOL_SOCKET, NN_RCVTIMEO, wait) < 0 ||
        set_int(s, NN_SOL_SOCKET, NN_SNDTIMEO, wait) < 0) {
        int e = nn_errno();
        nn_close(s);
        return tmixi_fail(err, TMIX_EIO, "%s: cannot set up the socket: %s", endpoint,
                          nn_strerror(e));
    }
    if (nn_connect(s, endpoint) < 0) {
        int e = nn_errno();
        nn_close(s);
        return tmixi_fail(err, TMIX_EINVAL,
                          "%s: not an endpoint to connect to (ipc://PATH or tcp://HOST:PORT): %s",
                          endpoint, nn_strerror(e));
    }
    conn->sock = s;
    return 0;
}

void tmixi_conn_close(tmixi_conn *conn)
{
    if (conn->sock >= 0)
        nn_close(conn->sock);
    *conn = (tmixi_conn){.sock = -1};
}

static const char *body_name(Tmix__Envelope__BodyCase body)
{
    switch (body) {
    case TMIX__ENVELOPE__BODY_HELLO:
        return "Hello";
    case TMIX__ENVELOPE__BODY_WELCOME:
        return "Welcome";
    case TMIX__ENVELOPE__BODY_NEXT:
        return "Next";
    case TMIX__ENVELOPE__BODY_BATCH:
        return "Batch";
    case TMIX__ENVELOPE__BODY_BYE:
        return "Bye";
    case TMIX__ENVELOPE__BODY_STATUS_REQUEST:
        return "StatusRequest";
    case TMIX__ENVELOPE__BODY_STATUS:
        return "Status";
    case TMIX__ENVELOPE__BODY_ERROR:
        return "Error";
    case TMIX__ENVELOPE__BODY_CONFIG_REQUEST:
        return "ConfigRequest";
    case TMIX__ENVELOPE__BODY_CONFIG:
        return "Config";
    case TMIX__ENVELOPE__BODY_PREVIEW_REQUEST:
        return "PreviewRequest";
    case TMIX__ENVELOPE__BODY_PREVIEW:
        return "Preview";
    default:
        return "no body";
    }
}

static int error_code(Tmix__Error__Code code)
{
    switch (code) {
    case TMIX__ERROR__CODE__VERSION_MISMATCH:
        return TMIX_EVERSION;
    case TMIX__ERROR__CODE__BAD_REQUEST:
        return TMIX_EBADREQ;
    case TMIX__ERROR__CODE__NOT_SUPPORTED:
        return TMIX_ENOTSUP;
    case TMIX__ERROR__CODE__BUSY:
        return TMIX_EBUSY;
    case TMIX__ERROR__CODE__UNKNOWN_SESSION:
        return TMIX_ESESSION;
    case TMIX__ERROR__CODE__TOO_LARGE:
        return TMIX_ETOOLARGE;
    case TMIX__ERROR__CODE__SHUTTING_DOWN:
        return TMIX_ESHUTDOWN;
    default:
        return TMIX_ESERVER;
    }
}

static const char *error_code_name(Tmix__Error__Code code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&tmix__error__code__descriptor, (int)code);
    return v ? v->name : "an unknown error code";
}

int tmixi_send(tmixi_conn *conn, const char *endpoint, int timeout_ms, bool now,
               Tmix__Envelope *req, char *err)
{
    const char *what = body_name(req->body_case);
    if (conn->waiting) { // sent over this socket, the request would cancel the one owed
        tmixi_conn fresh;
        const int rc = tmixi_conn_open(&fresh, endpoint, timeout_ms, err);
        if (rc < 0)
            return rc;
        tmixi_conn_close(conn);
        *conn = fresh;
    }
    req->version = TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION;
    size_t len = tmix__envelope__get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return tmixi_fail(err, TMIX_ENOMEM, "%s: no memory for a %zu-byte %s", endpoint, len, what);
    tmix__envelope__pack(req, buf);
    int rc;
    do
        rc = nn_send(conn->sock, buf, len, now ? NN_DONTWAIT : 0);
    while (rc < 0 && nn_errno() == EINTR);
    int e = nn_errno();
    free(buf);
    if (rc >= 0) {
        conn->waiting = true;
        return 0;
    }
    if (e == ETIMEDOUT || (now && e == EAGAIN))
        return tmixi_fail(err, TMIX_ETIMEDOUT, "%s: could not send %s within %d ms", endpoint, what,
                          now ? 0 : timeout_ms);
    return tmixi_fail(err, TMIX_EIO, "%s: sending %s: %s", endpoint, what, nn_strerror(e));
}

bool tmixi_reply_waiting(const tmixi_conn *conn)
{
    struct nn_pollfd p = {.fd = conn->sock, .events = NN_POLLIN};
    return nn_poll(&p, 1, 0) == 1 && (p.revents & NN_POLLIN);
}

// The reply, unpacked, or NULL with the code in *rc.
static Tmix__Envelope *receive_reply(tmixi_conn *conn, const char *endpoint, int timeout_ms,
                                     const char *what, int *rc, char *err)
{
    void *msg = NULL;
    int len;
    do
        len = nn_recv(conn->sock, &msg, NN_MSG, 0);
    while (len < 0 && nn_errno() == EINTR);
    if (len >= 0)
        conn->waiting = false;
    if (len < 0) {
        int e = nn_errno();
        *rc = e == ETIMEDOUT
                  ? tmixi_fail(err, TMIX_ETIMEDOUT,
                               "%s: no reply to %s within %d ms (is tmixd serving there?)",
                               endpoint, what, timeout_ms)
                  : tmixi_fail(err, TMIX_EIO, "%s: waiting for the reply to %s: %s", endpoint, what,
                               nn_strerror(e));
        return NULL;
    }
    Tmix__Envelope *env = tmix__envelope__unpack(&tmixi_allocator, (size_t)len, msg);
    nn_freemsg(msg);
    if (!env)
        *rc = tmixi_fail(err, TMIX_EPROTO, "%s: the reply to %s (%d bytes) is not a tmix Envelope",
                         endpoint, what, len);
    return env;
}

int tmixi_receive(tmixi_conn *conn, const char *endpoint, int timeout_ms,
                  Tmix__Envelope__BodyCase asked, Tmix__Envelope__BodyCase want,
                  Tmix__Envelope **reply, char *err)
{
    const char *what = body_name(asked);
    *reply = NULL;
    int rc = 0;
    Tmix__Envelope *env = receive_reply(conn, endpoint, timeout_ms, what, &rc, err);
    if (!env)
        return rc;
    const bool is_error = env->body_case == TMIX__ENVELOPE__BODY_ERROR && env->error;
    if (env->version != TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION)
        rc = tmixi_fail(
            err, TMIX_EPROTO, "%s: the reply to %s speaks protocol version %d, this client %d%s%s",
            endpoint, what, (int)env->version, (int)TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION,
            is_error ? "; the daemon said: " : "", is_error ? env->error->message : "");
    else if (is_error)
        rc = tmixi_fail(err, error_code(env->error->code), "%s: %s: the daemon answered %s: %s",
                        endpoint, what, error_code_name(env->error->code), env->error->message);
    else if (env->body_case != want)
        rc = tmixi_fail(err, TMIX_EPROTO, "%s: the reply to %s is a %s, expected a %s", endpoint,
                        what, body_name(env->body_case), body_name(want));
    if (rc < 0) {
        tmixi_envelope_free(env);
        return rc;
    }
    *reply = env;
    return 0;
}

int tmixi_exchange(tmixi_conn *conn, const char *endpoint, int timeout_ms, Tmix__Envelope *req,
                   Tmix__Envelope__BodyCase want, Tmix__Envelope **reply, char *err)
{
    *reply = NULL;
    const int rc = tmixi_send(conn, endpoint, timeout_ms, false, req, err);
    return rc < 0 ? rc
                  : tmixi_receive(conn, endpoint, timeout_ms, req->body_case, want, reply, err);
}

int tmixi_request(const char *endpoint, int timeout_ms, Tmix__Envelope *req,
                  Tmix__Envelope__BodyCase want, Tmix__Envelope **reply, char *err)
{
    if (timeout_ms < 0)
        return tmixi_fail(err, TMIX_EINVAL, "%s: timeout_ms %d: expected 0 (forever) or more",
                          endpoint, timeout_ms);
    tmixi_conn conn;
    const int rc = tmixi_conn_open(&conn, endpoint, timeout_ms, err);
    if (rc < 0)
        return rc;
    const int got = tmixi_exchange(&conn, endpoint, timeout_ms, req, want, reply, err);
    tmixi_conn_close(&conn);
    return got;
}
