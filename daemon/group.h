// A consumer group: which batch of its stream each member gets, leases and acknowledgements
// (proto/README.md "Groups, leases and acknowledgement"). Pure bookkeeping, no I/O and no
// clock: the server feeds it requests, produced batches and departures, and asks it what to
// produce. Stream position p is batch p % batches_per_epoch of epoch p / batches_per_epoch.
#ifndef TMIXD_GROUP_H
#define TMIXD_GROUP_H

#include <stdbool.h>
#include <stdint.h>

#include "batch.h"

enum { TMIXD_SHARD = 1, TMIXD_BROADCAST = 2 }; // proto GroupMode values

typedef struct {
    int mode;
    uint32_t batch_size;
    int dtype, layout; // proto DType / Layout values
    // The group serves node node_rank's part of each epoch (tmixd_shard_range) of node_count
    // (at least 1): daemons on several machines, one per node, split every epoch.
    uint32_t node_rank, node_count;
} tmixd_group_params;

// Node `rank` of `count` gets samples [*start, *start + *len) of each epoch's order of n
// samples: contiguous parts, whose sizes differ by at most one, that cover the epoch.
void tmixd_shard_range(uint64_t n, uint32_t rank, uint32_t count, uint64_t *start,
                       uint64_t *len);

typedef struct tmixd_group tmixd_group;

// prefetch: batches produced ahead (shard: for the group; broadcast: for each member).
tmixd_group *tmixd_group_new(const char *name, const tmixd_group_params *p, uint64_t dataset_size,
                             int prefetch);
void tmixd_group_free(tmixd_group *g);

const char *tmixd_group_name(const tmixd_group *g);
const tmixd_group_params *tmixd_group_params_get(const tmixd_group *g);
uint64_t tmixd_group_batches_per_epoch(const tmixd_group *g);
// The group's part of each epoch's order: samples [*start, *start + *len).
void tmixd_group_shard(const tmixd_group *g, uint64_t *start, uint64_t *len);
int tmixd_group_members(const tmixd_group *g);

// Adds member `session`; start: broadcast stream position to begin at (ignored for shard).
int tmixd_group_join(tmixd_group *g, uint64_t session, uint64_t start);
// Acknowledges a member's batches seqs[n] one by one (those above its ack_through that it
// released while it keeps an older one); unknown or acknowledged ones are ignored.
void tmixd_group_release(tmixd_group *g, uint64_t session, const uint64_t *seqs, size_t n);
// Removes a member; a shard member's unacknowledged batches go back to the group. Its
// batches up to ack_through are acknowledged first (0: none).
void tmixd_group_leave(tmixd_group *g, uint64_t session, uint64_t ack_through);

// A Next from a member: acknowledges its batches up to ack_through, then looks for its batch
// number seq. Returns 1 with *out (owned by the group, valid until the next call that
// acknowledges or frees it; the caller may fill in its host images) when the batch is ready,
// 0 when the member must wait (call again after tmixd_group_produced or a departure), or a
// negative code with tmix_last_error().
int tmixd_group_next(tmixd_group *g, uint64_t session, uint64_t seq, uint64_t ack_through,
                     tmixd_batch **out);

// Positions to produce now, at most max, marked as in production. Batches a waiting member
// needs come first and are always returned; prefetch ones only when may_prefetch (the
// server's memory budget has room).
int tmixd_group_wanted(tmixd_group *g, bool may_prefetch, uint64_t *positions, int max);
// Hands over a produced batch (the group owns it; freed at once when no longer wanted).
void tmixd_group_produced(tmixd_group *g, tmixd_batch *b);
// A production failed: the position is produced again on the next tmixd_group_wanted.
void tmixd_group_failed(tmixd_group *g, uint64_t pos);
size_t tmixd_group_bytes(const tmixd_group *g);

// Shard progress: every position below *done_through is acknowledged, and so are the
// positions written to done[] (at most max; returns how many). Broadcast groups: 0, 0.
int tmixd_group_progress(const tmixd_group *g, uint64_t *done_through, uint64_t *done, int max);
// Restores saved progress into a group with no members (shard only).
int tmixd_group_restore(tmixd_group *g, uint64_t done_through, const uint64_t *done, int count);
// Batches and images delivered so far (a batch leased again counts again).
uint64_t tmixd_group_served(const tmixd_group *g);
uint64_t tmixd_group_images_served(const tmixd_group *g);
// The group's queue: positions with the producer, and batches produced and not yet taken
// (shard: not leased; broadcast: not yet delivered to every member).
void tmixd_group_queue(const tmixd_group *g, int *producing, int *ready);

#endif
