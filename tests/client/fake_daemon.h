// A scripted stand-in for tmixd in the libtmix and tmixctl tests: a thread with a raw
// NN_REP socket (AF_SP_RAW, as the daemon's) bound to ipc://<temp dir>/tmixd.sock, that
// answers each request as the test's script says and keeps every request for the test.
#ifndef TMIX_FAKE_DAEMON_H
#define TMIX_FAKE_DAEMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tmix.pb-c.h"

// The fake's data: images of C x H x W = 3 x 2 x 2, 10 classes, n = 2, batches of at most 4,
// epochs of 10 samples in 3 batches, method "mixup".
enum { FAKE_C = 3, FAKE_H = 2, FAKE_W = 2, FAKE_CLASSES = 10, FAKE_N = 2, FAKE_BATCH = 4 };
enum { FAKE_EPOCH_SIZE = 10, FAKE_BATCHES = 3, FAKE_PARTNER = 53, FAKE_MAX_REQUESTS = 16 };
#define FAKE_IMAGE_ELEMS (FAKE_C * FAKE_H * FAKE_W)

// One answer. The script fills env (with the reply_* helpers, which point it into the
// storage below), or sets silent or raw.
typedef struct {
    bool silent;     // answer nothing: the client times out
    bool late;       // answer only after the answer to the Bye: the client has moved on
    const void *raw; // answer these raw_len bytes instead of an Envelope
    size_t raw_len;
    Tmix__Envelope env; // version PROTOCOL_VERSION unless the script changes it
    Tmix__Welcome welcome;
    uint32_t image_shape[3];
    Tmix__Batch batch;
    uint32_t shape[4];
    uint8_t images[FAKE_BATCH * FAKE_IMAGE_ELEMS * 4];
    uint64_t sample_ids[FAKE_BATCH], sources[FAKE_BATCH * FAKE_N], replaced[1];
    uint32_t labels[FAKE_BATCH * FAKE_N];
    float weights[FAKE_BATCH * FAKE_N];
    Tmix__Error error;
    Tmix__Bye bye;
    Tmix__Status status;
    Tmix__GroupStatus groups[2], *group_list[2];
} fake_reply;

typedef struct fake_daemon fake_daemon;

// Fills *r, the answer to request number i (0, 1, ...), req.
typedef void (*fake_script)(fake_daemon *f, int i, const Tmix__Envelope *req, fake_reply *r);

struct fake_daemon {
    char dir[64];            // a temp dir, removed by fake_free
    char url[128];           // ipc://<dir>/tmixd.sock
    int mode, dtype, layout; // of its Welcome and batches: set before fake_start
    int quiet_ms;            // if set (before fake_start): serve until this long quiet
    int wait_ms;             // if set (before fake_start): wait this long for each request
    int count;               // requests received (the first FAKE_MAX_REQUESTS kept)
    Tmix__Envelope *requests[FAKE_MAX_REQUESTS];
    char failure[256]; // what went wrong in the thread, "" if nothing
    // Private.
    int sock, expect;
    fake_script script;
    pthread_t thread;
};

// Binds f's socket in a new temp dir and starts the thread, which serves `expect` requests
// (waiting up to wait_ms, default 5 s, for each) and ends, or with quiet_ms set serves any number until none
// comes for quiet_ms. mode, dtype and layout default to SHARD, FLOAT32, NCHW. 0 or -1 (with a
// message on stderr).
int fake_start(fake_daemon *f, fake_script script, int expect);

// Waits for the thread; 0 when it served exactly `expect` requests (any number with
// quiet_ms), else -1 with a message.
int fake_stop(fake_daemon *f);

// Closes the socket, frees the requests and removes the temp dir.
void fake_free(fake_daemon *f);

// Answers: a Welcome of f's world; batch `sequence` = batch `index` of `epoch` with
// `samples` samples (see fake_sample_id, fake_image_byte); an Error; a Bye; a Status of two
// groups.
void reply_welcome(const fake_daemon *f, fake_reply *r, uint64_t session);
void reply_batch(const fake_daemon *f, fake_reply *r, uint64_t sequence, uint64_t epoch,
                 uint64_t index, uint32_t samples);
void reply_error(fake_reply *r, Tmix__Error__Code code, const char *message);
void reply_bye(fake_reply *r, uint64_t session);
void reply_status(fake_reply *r);

// Sample i of batch `index` of `epoch` is 100 * epoch + FAKE_BATCH * index + i; its partner
// (source 1) is that + FAKE_PARTNER; labels are ids mod 10, weights 0.75 and 0.25.
uint64_t fake_sample_id(uint64_t epoch, uint64_t index, uint32_t i);

// Byte j of the images of batch `sequence`.
uint8_t fake_image_byte(uint64_t sequence, size_t j);

#endif
