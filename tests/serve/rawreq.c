// Sends one hand-made request to a daemon and prints its reply, for the tests of bad
// messages: `rawreq ENDPOINT KIND [ARG]` with KIND
//   garbage          bytes that are no protobuf message
//   oversized BYTES  a Hello whose group name makes the request BYTES long
//   version V        a StatusRequest with protocol version V
//   reply            a message that is not a request (a Welcome)
//   next SESSION     a Next for that session id (decimal)
//   delivery D       a Hello asking for delivery D (proto Delivery value)
//   group NAME       a Hello for the consumer group NAME, as given
// Prints `error CODE_NAME: message`, or `ok BODY_NAME`; exits 1 when no reply comes in 5 s.
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmix.pb-c.h"

static size_t pack(Tmix__Envelope *env, uint8_t **out)
{
    const size_t n = tmix__envelope__get_packed_size(env);
    *out = malloc(n ? n : 1);
    tmix__envelope__pack(env, *out);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: rawreq ENDPOINT garbage|oversized N|version V|reply|next ID|"
                        "delivery D|group NAME\n");
        return 2;
    }
    const char *kind = argv[2], *arg = argc > 3 ? argv[3] : "0";
    Tmix__Envelope env = TMIX__ENVELOPE__INIT;
    env.version = TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION;
    Tmix__StatusRequest status = TMIX__STATUS_REQUEST__INIT;
    Tmix__Hello hello = TMIX__HELLO__INIT;
    Tmix__Welcome welcome = TMIX__WELCOME__INIT;
    Tmix__Next next = TMIX__NEXT__INIT;
    uint8_t *msg = NULL;
    size_t size = 0;
    if (strcmp(kind, "garbage") == 0) {
        size = 64;
        msg = malloc(size);
        memset(msg, 0xff, size);
    } else if (strcmp(kind, "oversized") == 0) {
        const size_t n = strtoull(arg, NULL, 10);
        char *name = malloc(n + 1);
        memset(name, 'a', n);
        name[n] = 0;
        hello.group = name;
        env.body_case = TMIX__ENVELOPE__BODY_HELLO;
        env.hello = &hello;
        size = pack(&env, &msg);
        free(name);
    } else if (strcmp(kind, "version") == 0) {
        env.version = atoi(arg);
        env.body_case = TMIX__ENVELOPE__BODY_STATUS_REQUEST;
        env.status_request = &status;
        size = pack(&env, &msg);
    } else if (strcmp(kind, "reply") == 0) {
        env.body_case = TMIX__ENVELOPE__BODY_WELCOME;
        env.welcome = &welcome;
        size = pack(&env, &msg);
    } else if (strcmp(kind, "next") == 0) {
        next.session_id = strtoull(arg, NULL, 10);
        next.sequence = 1;
        env.body_case = TMIX__ENVELOPE__BODY_NEXT;
        env.next = &next;
        size = pack(&env, &msg);
    } else if (strcmp(kind, "delivery") == 0) {
        hello.delivery = atoi(arg);
        env.body_case = TMIX__ENVELOPE__BODY_HELLO;
        env.hello = &hello;
        size = pack(&env, &msg);
    } else if (strcmp(kind, "group") == 0) {
        hello.group = (char *)arg;
        env.body_case = TMIX__ENVELOPE__BODY_HELLO;
        env.hello = &hello;
        size = pack(&env, &msg);
    } else {
        fprintf(stderr, "rawreq: unknown kind '%s'\n", kind);
        return 2;
    }
    const int sock = nn_socket(AF_SP, NN_REQ);
    const int timeout = 5000, unlimited = -1;
    nn_setsockopt(sock, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout, sizeof timeout);
    nn_setsockopt(sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &unlimited, sizeof unlimited);
    if (nn_connect(sock, argv[1]) < 0 || nn_send(sock, msg, size, 0) < 0) {
        fprintf(stderr, "rawreq: %s: %s\n", argv[1], nn_strerror(nn_errno()));
        return 1;
    }
    free(msg);
    void *buf = NULL;
    const int n = nn_recv(sock, &buf, NN_MSG, 0);
    if (n < 0) {
        fprintf(stderr, "rawreq: no reply: %s\n", nn_strerror(nn_errno()));
        return 1;
    }
    Tmix__Envelope *r = tmix__envelope__unpack(NULL, (size_t)n, buf);
    if (!r) {
        printf("unparseable reply of %d bytes\n", n);
    } else if (r->body_case == TMIX__ENVELOPE__BODY_ERROR) {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&tmix__error__code__descriptor, r->error->code);
        printf("error %s: %s\n", v ? v->name : "?", r->error->message);
    } else {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(&tmix__envelope__descriptor, r->body_case);
        printf("ok %s\n", f ? f->name : "?");
    }
    tmix__envelope__free_unpacked(r, NULL);
    nn_freemsg(buf);
    nn_close(sock);
    return 0;
}
