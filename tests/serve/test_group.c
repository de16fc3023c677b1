// Consumer-group bookkeeping without sockets or threads: members ask, a fake producer makes
// what the group wants, and the tests check who got which stream position.
#include <stdlib.h>

#include "group.h"
#include "harness.h"

enum { N = 1000, BATCH = 64, BPE = (N + BATCH - 1) / BATCH, PREFETCH = 3 };

static tmixd_group *new_group(int mode)
{
    const tmixd_group_params p = {.mode = mode, .batch_size = BATCH, .dtype = 1, .layout = 1};
    return tmixd_group_new("g", &p, N, PREFETCH);
}

// Produces everything the group wants now (a batch knows only its position).
static int produce(tmixd_group *g, bool may_prefetch)
{
    uint64_t pos[64];
    const int n = tmixd_group_wanted(g, may_prefetch, pos, 64);
    for (int i = 0; i < n; i++) {
        tmixd_batch *b = calloc(1, sizeof *b);
        if (!b)
            return -1;
        b->pos = pos[i];
        b->bytes = 1000;
        tmixd_group_produced(g, b);
    }
    return n;
}

// Asks for member id's batch seq, acknowledging its batches through ack, producing until it
// comes; returns its position.
static int64_t pull_acking(tmixd_group *g, uint64_t id, uint64_t seq, uint64_t ack)
{
    tmixd_batch *b;
    for (int round = 0; round < 10; round++) {
        const int rc = tmixd_group_next(g, id, seq, ack, &b);
        if (rc < 0)
            return rc;
        if (rc > 0)
            return (int64_t)b->pos;
        if (produce(g, true) < 0)
            return -1;
    }
    return -2; // never came
}

// pull_acking with everything before seq acknowledged.
static int64_t pull(tmixd_group *g, uint64_t id, uint64_t seq) { return pull_acking(g, id, seq, seq - 1); }

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

// Four members asking in a random interleaving get every position of two epochs exactly
// once, and in stream order.
static int test_shard_exactly_once(void)
{
    tmixd_group *g = new_group(TMIXD_SHARD);
    uint64_t seq[4] = {0}, state = 42;
    int delivered[2 * BPE] = {0};
    for (int i = 0; i < 4; i++)
        CHECK_OK(tmixd_group_join(g, 100 + i, 0));
    int64_t last = -1;
    for (int k = 0; k < 2 * BPE; k++) {
        const int m = (int)(rnd(&state) % 4);
        const int64_t pos = pull(g, 100 + m, ++seq[m]);
        CHECK(pos >= 0 && pos < 2 * BPE);
        CHECK(pos == last + 1);
        last = pos;
        delivered[pos]++;
    }
    for (int p = 0; p < 2 * BPE; p++)
        CHECK(delivered[p] == 1);
    CHECK(tmixd_group_served(g) == 2 * BPE);
    tmixd_group_free(g);
    return 0;
}

// A member that leaves holding a batch: the batch goes to the next member that asks.
static int test_shard_lease_returns(void)
{
    tmixd_group *g = new_group(TMIXD_SHARD);
    CHECK_OK(tmixd_group_join(g, 1, 0));
    CHECK_OK(tmixd_group_join(g, 2, 0));
    CHECK(pull(g, 1, 1) == 0);
    CHECK(pull(g, 2, 1) == 1);
    tmixd_group_leave(g, 1, 0); // never acknowledged position 0
    CHECK(tmixd_group_members(g) == 1);
    CHECK(pull(g, 2, 2) == 0);
    CHECK(pull(g, 2, 3) == 2);
    uint64_t through, done[8];
    // 1 and then 0 acknowledged (by asking for 2 and 3), 2 held.
    CHECK(tmixd_group_progress(g, &through, done, 8) == 0 && through == 2);
    tmixd_batch *b;
    CHECK(tmixd_group_next(g, 2, 4, 3, &b) >= 0);
    CHECK(tmixd_group_progress(g, &through, done, 8) == 0 && through == 3);
    tmixd_group_free(g);
    return 0;
}

// Asking again for a sequence gets the same batch; skipping ahead or asking for an
// acknowledged one is refused; a stranger is refused.
static int test_repeat_request(void)
{
    tmixd_group *g = new_group(TMIXD_SHARD);
    CHECK_OK(tmixd_group_join(g, 7, 0));
    CHECK_ERR(tmixd_group_join(g, 7, 0), TMIX_EINVAL);
    CHECK(pull(g, 7, 1) == 0);
    tmixd_batch *a, *b;
    CHECK(tmixd_group_next(g, 7, 1, 0, &a) == 1 && a->pos == 0);
    CHECK_ERR(tmixd_group_next(g, 7, 3, 0, &b), TMIX_EINVAL);
    CHECK(pull(g, 7, 2) == 1); // acknowledges 1
    CHECK_ERR(tmixd_group_next(g, 7, 1, 1, &b), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "acknowledged"));
    CHECK_ERR(tmixd_group_next(g, 8, 1, 0, &b), TMIX_ENOENT);
    tmixd_group_free(g);
    return 0;
}

// Broadcast: members that join at different times each get the whole stream from its start
// (or from where they ask to start), and the group frees what no member needs.
static int test_broadcast_identical(void)
{
    tmixd_group *g = new_group(TMIXD_BROADCAST);
    CHECK_OK(tmixd_group_join(g, 1, 0));
    for (uint64_t s = 1; s <= 10; s++)
        CHECK(pull(g, 1, s) == (int64_t)s - 1);
    CHECK_OK(tmixd_group_join(g, 2, 0));
    CHECK_OK(tmixd_group_join(g, 3, 5));
    for (uint64_t s = 1; s <= 10; s++) {
        CHECK(pull(g, 2, s) == (int64_t)s - 1);
        CHECK(pull(g, 3, s) == (int64_t)s + 4);
        // Held: each member's unacknowledged batch and its prefetch, no more.
        CHECK(tmixd_group_bytes(g) <= 3 * (PREFETCH + 1) * 1000);
    }
    tmixd_group_leave(g, 2, 10);
    tmixd_group_leave(g, 3, 10);
    tmixd_batch *b;
    CHECK(tmixd_group_next(g, 1, 11, 10, &b) >= 0);
    CHECK(tmixd_group_bytes(g) <= (PREFETCH + 1) * 1000);
    tmixd_group_free(g);
    return 0;
}

// Saved progress: a restarted group delivers the positions not yet acknowledged, first the
// gaps, and nothing acknowledged twice.
static int test_restore(void)
{
    tmixd_group *g = new_group(TMIXD_SHARD);
    const uint64_t done[] = {7, 9};
    CHECK_OK(tmixd_group_restore(g, 5, done, 2));
    CHECK_OK(tmixd_group_join(g, 1, 0));
    const int64_t want[] = {5, 6, 8, 10, 11};
    for (int s = 0; s < 5; s++)
        CHECK(pull(g, 1, (uint64_t)s + 1) == want[s]);
    CHECK_ERR(tmixd_group_restore(g, 0, NULL, 0), TMIX_EINVAL); // not a fresh group
    tmixd_group_free(g);
    return 0;
}

// Without room for prefetch, only what a waiting member needs is produced.
static int test_demand_only(void)
{
    tmixd_group *g = new_group(TMIXD_SHARD);
    CHECK_OK(tmixd_group_join(g, 1, 0));
    uint64_t pos[8];
    CHECK(tmixd_group_wanted(g, false, pos, 8) == 0);
    tmixd_batch *b;
    CHECK(tmixd_group_next(g, 1, 1, 0, &b) == 0); // waits
    CHECK(tmixd_group_wanted(g, false, pos, 8) == 1 && pos[0] == 0);
    CHECK(tmixd_group_wanted(g, false, pos, 8) == 0); // already in production
    tmixd_group_failed(g, 0);                          // failed: wanted again
    CHECK(tmixd_group_wanted(g, false, pos, 8) == 1 && pos[0] == 0);
    CHECK(tmixd_group_wanted(g, true, pos, 8) == PREFETCH);
    tmixd_group_free(g);
    return 0;
}

// A member that keeps its first batch and releases the next ones one by one: those are done
// at once (shard: never leased again; broadcast: freed), and the first one still holds.
static int test_release_one_by_one(void)
{
    tmixd_group *g = new_group(TMIXD_SHARD);
    CHECK_OK(tmixd_group_join(g, 1, 0));
    for (uint64_t seq = 1; seq <= 4; seq++)
        CHECK(pull_acking(g, 1, seq, 0) == (int64_t)seq - 1);
    const size_t bytes = tmixd_group_bytes(g);
    tmixd_group_release(g, 1, (uint64_t[]){2, 3}, 2);
    CHECK(tmixd_group_bytes(g) == bytes - 2000);
    tmixd_group_release(g, 1, (uint64_t[]){2, 3, 99}, 3); // again, and unknown: no change
    CHECK(tmixd_group_bytes(g) == bytes - 2000);
    uint64_t through, done[4];
    CHECK(tmixd_group_progress(g, &through, done, 4) == 2 && through == 0);
    tmixd_group_leave(g, 1, 0); // positions 0 and 3 go back
    CHECK_OK(tmixd_group_join(g, 2, 0));
    CHECK(pull_acking(g, 2, 1, 0) == 0 && pull_acking(g, 2, 2, 0) == 3);
    tmixd_group_free(g);

    g = new_group(TMIXD_BROADCAST);
    CHECK_OK(tmixd_group_join(g, 1, 0));
    for (uint64_t seq = 1; seq <= 5; seq++)
        CHECK(pull_acking(g, 1, seq, 0) == (int64_t)seq - 1);
    const size_t held = tmixd_group_bytes(g);
    tmixd_group_release(g, 1, (uint64_t[]){5, 3, 2, 4}, 4); // any order
    CHECK(tmixd_group_bytes(g) == held - 4000);
    tmixd_batch *b;
    CHECK(tmixd_group_next(g, 1, 5, 0, &b) < 0); // released: not given again
    CHECK(pull_acking(g, 1, 6, 1) == 5);           // 1 acknowledged: 1..5 are
    CHECK(tmixd_group_next(g, 1, 2, 0, &b) < 0);
    CHECK(tmixd_group_bytes(g) == 1000); // only position 5's batch, the one just given
    tmixd_group_free(g);
    return 0;
}

// Nodes split every epoch into contiguous parts that cover it, sizes within one of each
// other; a group of node r of K has the batches of its part only.
static int test_node_shards(void)
{
    static const uint64_t sizes[] = {1000, 7, 10, 1};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const uint64_t n = sizes[k];
        for (uint32_t count = 1; count <= 7 && count <= n; count++) {
            uint64_t next = 0, smallest = n, largest = 0;
            for (uint32_t rank = 0; rank < count; rank++) {
                uint64_t start, len;
                tmixd_shard_range(n, rank, count, &start, &len);
                CHECK(start == next && len >= 1);
                next = start + len;
                smallest = len < smallest ? len : smallest;
                largest = len > largest ? len : largest;
                const tmixd_group_params p = {.mode = TMIXD_SHARD, .batch_size = 3, .dtype = 1,
                                              .layout = 1, .node_rank = rank, .node_count = count};
                tmixd_group *g = tmixd_group_new("g", &p, n, PREFETCH);
                uint64_t gstart, glen;
                tmixd_group_shard(g, &gstart, &glen);
                CHECK(gstart == start && glen == len);
                CHECK(tmixd_group_batches_per_epoch(g) == (len + 2) / 3);
                tmixd_group_free(g);
            }
            CHECK(next == n && largest - smallest <= 1);
        }
    }
    // node_count 0 is one node: the whole set.
    const tmixd_group_params p = {.mode = TMIXD_SHARD, .batch_size = BATCH, .dtype = 1,
                                  .layout = 1};
    tmixd_group *g = tmixd_group_new("g", &p, N, PREFETCH);
    CHECK(tmixd_group_params_get(g)->node_count == 1 && tmixd_group_batches_per_epoch(g) == BPE);
    tmixd_group_free(g);
    return 0;
}

// A batch the group lets go while a job on the thread pool still packs or reads it (server.c)
// stays until that job ends, and is freed then (AddressSanitizer sees a use after free or a
// leak otherwise).
static int test_batch_outlives_free(void)
{
    tmixd_group *g = new_group(TMIXD_SHARD);
    CHECK_OK(tmixd_group_join(g, 1, 0));
    tmixd_batch *b;
    CHECK(pull(g, 1, 1) == 0);
    CHECK(tmixd_group_next(g, 1, 1, 0, &b) > 0); // asked again: the same batch
    b->pool_jobs += 2;                           // two trainers' replies being packed
    CHECK(pull(g, 1, 2) == 1);                   // acknowledges the first: the group frees it
    CHECK(b->free_after_jobs && b->pos == 0);
    tmixd_batch_job_ended(b);
    CHECK(b->pool_jobs == 1 && b->pos == 0);
    tmixd_batch_job_ended(b); // freed here
    tmixd_group_free(g);
    return 0;
}

int main(int argc, char **argv)
{
    static const test_case tests[] = {
        {"group.shard_exactly_once", test_shard_exactly_once},
        {"group.shard_lease_returns", test_shard_lease_returns},
        {"group.repeat_request", test_repeat_request},
        {"group.broadcast_identical", test_broadcast_identical},
        {"group.restore", test_restore},
        {"group.demand_only", test_demand_only},
        {"group.release_one_by_one", test_release_one_by_one},
        {"group.node_shards", test_node_shards},
        {"group.batch_outlives_free", test_batch_outlives_free},
        {NULL, NULL},
    };
    return test_main(argc, argv, tests);
}
