// The protocol: the input unpacked as an Envelope (what tmixd and libtmix do with every
// message), and then run as requests against a consumer group (the group's bookkeeping is
// all the daemon does with a request's numbers): each 10-byte op is (kind, member, then a
// 64-bit value): join (broadcast start), next (sequence, ack through), release (a
// sequence), leave (ack through), produce what is wanted (prefetching or not), fail a
// position in production. Sequences, starts and acks are the trainer's, so anything goes.
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "tmix.pb-c.h"

enum { MEMBERS = 4, MAX_PRODUCING = 256 };

static uint64_t u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Tmix__Envelope *env = tmix__envelope__unpack(NULL, size, data);
    tmix__envelope__free_unpacked(env, NULL);
    if (size < 2)
        return 0;
    const tmixd_group_params p = {.mode = data[0] & 1 ? TMIXD_BROADCAST : TMIXD_SHARD,
                                  .batch_size = 1 + data[1] % 8,
                                  .dtype = 1,
                                  .layout = 1,
                                  .node_rank = 0,
                                  .node_count = 1};
    tmixd_group *g = tmixd_group_new("fuzz", &p, 1 + data[0] / 2, 1 + data[1] / 64);
    uint64_t producing[MAX_PRODUCING];
    int nproducing = 0;
    bool joined[MEMBERS] = {0};
    for (size_t at = 2; at + 10 <= size; at += 10) {
        const uint8_t kind = data[at] % 6, member = data[at + 1] % MEMBERS;
        const uint64_t v = u64(data + at + 2), session = member + 1;
        const tmixd_batch *b;
        switch (kind) {
        case 0:
            if (!joined[member] && tmixd_group_join(g, session, v % 1000) == 0)
                joined[member] = true;
            break;
        case 1:
            if (joined[member] && tmixd_group_next(g, session, v & 0xff, v >> 56, &b) == 1 && !b)
                abort();
            break;
        case 2:
            if (joined[member])
                tmixd_group_release(g, session, &v, 1);
            break;
        case 3:
            if (joined[member]) {
                tmixd_group_leave(g, session, v & 0xff);
                joined[member] = false;
            }
            break;
        case 4: {
            uint64_t pos[16];
            const int n = tmixd_group_wanted(g, v & 1, pos, 16);
            for (int i = 0; i < n && nproducing < MAX_PRODUCING; i++)
                producing[nproducing++] = pos[i];
            while (nproducing > 0 && (v >> 1) % 2) { // hand the batches over, newest first
                tmixd_batch *made = calloc(1, sizeof *made);
                if (!made)
                    abort();
                made->pos = producing[--nproducing];
                made->size = p.batch_size;
                made->bytes = 100;
                tmixd_group_produced(g, made);
            }
            break;
        }
        case 5:
            if (nproducing > 0)
                tmixd_group_failed(g, producing[--nproducing]);
            break;
        }
    }
    tmixd_group_free(g);
    return 0;
}
