// One request and its reply over libtmix's nanomsg REQ socket: pack, send, wait, unpack,
// and turn whatever is not the expected answer into a TMIX_E* code and a sentence.
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

#include "internal.h"

// A request whose reply has not come within this long goes again, over a new socket
// (tmixi_conn says why not over the same one, as nanomsg's own resends do: a reply to the
// first would be dropped). Next and StatusRequest are idempotent and Hello costs an unused
// session at worst, so a resend is harmless. A trainer waiting across a daemon restart asks
// the new daemon within this long.
#define RESEND_IVL_MS 10000

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

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
        set_int(s, NN_REQ, NN_REQ_RESEND_IVL, INT_MAX) < 0 || // receive_reply resends
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
    free(conn->request);
    *conn = (tmixi_conn){.sock = -1};
}

// conn over a new socket, with the request it owes a reply, if any; the old socket is
// closed with that reply its own.
static int reopen(tmixi_conn *conn, const char *endpoint, int timeout_ms, char *err)
{
    tmixi_conn fresh;
    const int rc = tmixi_conn_open(&fresh, endpoint, timeout_ms, err);
    if (rc < 0)
        return rc;
    nn_close(conn->sock);
    conn->sock = fresh.sock;
    return 0;
}

// Sends conn->request; a failure is an error of `what` (and the request is not owed).
static int send_request(tmixi_conn *conn, const char *endpoint, int timeout_ms, bool now,
                        const char *what, char *err)
{
    int rc;
    do
        rc = nn_send(conn->sock, conn->request, conn->request_len, now ? NN_DONTWAIT : 0);
    while (rc < 0 && nn_errno() == EINTR);
    if (rc >= 0)
        return 0;
    const int e = nn_errno();
    free(conn->request);
    conn->request = NULL;
    if (e == ETIMEDOUT || (now && e == EAGAIN))
        return tmixi_fail(err, TMIX_ETIMEDOUT, "%s: could not send %s within %d ms", endpoint, what,
                          now ? 0 : timeout_ms);
    return tmixi_fail(err, TMIX_EIO, "%s: sending %s: %s", endpoint, what, nn_strerror(e));
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
    if (conn->request) { // sent over this socket, the request would cancel the one owed
        const int rc = reopen(conn, endpoint, timeout_ms, err);
        if (rc < 0)
            return rc;
        free(conn->request);
        conn->request = NULL;
    }
    req->version = TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION;
    const size_t len = tmix__envelope__get_packed_size(req);
    if (!(conn->request = malloc(len ? len : 1)))
        return tmixi_fail(err, TMIX_ENOMEM, "%s: no memory for a %zu-byte %s", endpoint, len, what);
    conn->request_len = len;
    tmix__envelope__pack(req, conn->request);
    return send_request(conn, endpoint, timeout_ms, now, what, err);
}

bool tmixi_reply_waiting(const tmixi_conn *conn)
{
    struct nn_pollfd p = {.fd = conn->sock, .events = NN_POLLIN};
    return nn_poll(&p, 1, 0) == 1 && (p.revents & NN_POLLIN);
}

// The reply, unpacked, or NULL with the code in *rc. Every RESEND_IVL_MS without it, the
// request goes again over a new socket.
static Tmix__Envelope *receive_reply(tmixi_conn *conn, const char *endpoint, int timeout_ms,
                                     const char *what, int *rc, char *err)
{
    const double deadline = now_s() + timeout_ms / 1e3; // timeout_ms 0: none
    void *msg = NULL;
    int len, e;
    for (;;) {
        const double left_ms = (deadline - now_s()) * 1e3;
        const bool last = timeout_ms > 0 && left_ms <= RESEND_IVL_MS; // the timeout comes first
        set_int(conn->sock, NN_SOL_SOCKET, NN_RCVTIMEO,
                !last ? RESEND_IVL_MS : left_ms > 1 ? (int)left_ms : 1);
        do
            len = nn_recv(conn->sock, &msg, NN_MSG, 0);
        while (len < 0 && nn_errno() == EINTR);
        e = nn_errno();
        if (len >= 0 || e != ETIMEDOUT || last || !conn->request)
            break;
        *rc = reopen(conn, endpoint, timeout_ms, err);
        if (*rc == 0)
            *rc = send_request(conn, endpoint, timeout_ms, false, what, err);
        if (*rc < 0)
            return NULL;
    }
    if (len < 0) {
        *rc = e == ETIMEDOUT
                  ? tmixi_fail(err, TMIX_ETIMEDOUT,
                               "%s: no reply to %s within %d ms (is tmixd serving there?)",
                               endpoint, what, timeout_ms)
                  : tmixi_fail(err, TMIX_EIO, "%s: waiting for the reply to %s: %s", endpoint, what,
                               nn_strerror(e));
        return NULL;
    }
    free(conn->request); // answered
    conn->request = NULL;
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
