// Consumer-group bookkeeping. The group keeps one entry per stream position it is working on,
// sorted by position: a handful (leases plus prefetch), so lookups are linear scans.
#include "group.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef enum {
    NEW,       // shard: to be produced (restored progress left a gap here)
    PRODUCING, // handed to the producer
    READY,     // produced; shard: not leased
    LEASED,    // shard: delivered, not yet acknowledged
    DONE,      // shard: acknowledged, above done_through
} entry_state;

typedef struct {
    uint64_t pos;
    entry_state state;
    tmixd_batch *batch;
} entry;

typedef struct {
    uint64_t seq, pos;
} lease;

typedef struct {
    uint64_t id;
    uint64_t last_seq; // the highest sequence delivered
    bool waiting;      // asked for last_seq + 1, not delivered yet
    // shard: delivered, unacknowledged batches
    lease *leases;
    int nleases, cap_leases;
    // broadcast: seq s is position start + s - 1; batches up to acked are acknowledged, and
    // so are those in released (sorted, all above acked)
    uint64_t start, acked;
    uint64_t *released;
    int nreleased, cap_released;
} member;

struct tmixd_group {
    char *name;
    tmixd_group_params p;
    uint64_t batches_per_epoch;
    uint64_t shard_start, shard_len; // of each epoch's order (tmixd_shard_range)
    int prefetch;
    entry *entries;
    int nentries, cap_entries;
    member *members;
    int nmembers, cap_members;
    uint64_t done_through; // shard: every position below is acknowledged
    uint64_t head;         // shard: the next position never produced
    uint64_t served, images_served;
};

static bool grow(void **array, int *cap, int need, size_t item)
{
    if (need <= *cap)
        return true;
    int c = *cap ? 2 * *cap : 8;
    while (c < need)
        c *= 2;
    void *a = realloc(*array, (size_t)c * item);
    if (!a)
        return false;
    *array = a;
    *cap = c;
    return true;
}

tmixd_group *tmixd_group_new(const char *name, const tmixd_group_params *p, uint64_t dataset_size,
                             int prefetch)
{
    tmixd_group *g = calloc(1, sizeof *g);
    if (!g || !(g->name = strdup(name))) {
        free(g);
        return NULL;
    }
    g->p = *p;
    if (g->p.node_count == 0)
        g->p.node_count = 1;
    tmixd_shard_range(dataset_size, g->p.node_rank, g->p.node_count, &g->shard_start,
                      &g->shard_len);
    g->batches_per_epoch = (g->shard_len + p->batch_size - 1) / p->batch_size;
    g->prefetch = prefetch;
    return g;
}

void tmixd_group_free(tmixd_group *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->nentries; i++)
        tmixd_batch_free(g->entries[i].batch);
    for (int i = 0; i < g->nmembers; i++) {
        free(g->members[i].leases);
        free(g->members[i].released);
    }
    free(g->entries);
    free(g->members);
    free(g->name);
    free(g);
}

const char *tmixd_group_name(const tmixd_group *g) { return g->name; }
const tmixd_group_params *tmixd_group_params_get(const tmixd_group *g) { return &g->p; }
uint64_t tmixd_group_batches_per_epoch(const tmixd_group *g) { return g->batches_per_epoch; }

void tmixd_group_shard(const tmixd_group *g, uint64_t *start, uint64_t *len)
{
    *start = g->shard_start;
    *len = g->shard_len;
}

void tmixd_shard_range(uint64_t n, uint32_t rank, uint32_t count, uint64_t *start,
                       uint64_t *len)
{
    // n * rank fits 64 bits for any data set and node count there is (n < 2^40, count < 2^24).
    *start = n * rank / count;
    *len = n * (rank + 1) / count - *start;
}
int tmixd_group_members(const tmixd_group *g) { return g->nmembers; }
uint64_t tmixd_group_served(const tmixd_group *g) { return g->served; }
uint64_t tmixd_group_images_served(const tmixd_group *g) { return g->images_served; }

void tmixd_group_queue(const tmixd_group *g, int *producing, int *ready)
{
    *producing = *ready = 0;
    for (int i = 0; i < g->nentries; i++) {
        *producing += g->entries[i].state == PRODUCING;
        *ready += g->entries[i].state == READY;
    }
}

// ---- entries ------------------------------------------------------------------------------

static entry *find_entry(tmixd_group *g, uint64_t pos)
{
    for (int i = 0; i < g->nentries; i++)
        if (g->entries[i].pos == pos)
            return &g->entries[i];
    return NULL;
}

static entry *add_entry(tmixd_group *g, uint64_t pos, entry_state state)
{
    if (!grow((void **)&g->entries, &g->cap_entries, g->nentries + 1, sizeof(entry)))
        return NULL;
    int i = g->nentries;
    while (i > 0 && g->entries[i - 1].pos > pos)
        i--;
    memmove(&g->entries[i + 1], &g->entries[i], (size_t)(g->nentries - i) * sizeof(entry));
    g->entries[i] = (entry){pos, state, NULL};
    g->nentries++;
    if (pos >= g->head)
        g->head = pos + 1;
    return &g->entries[i];
}

static void remove_entry(tmixd_group *g, entry *e)
{
    tmixd_batch_free(e->batch);
    int i = (int)(e - g->entries);
    memmove(e, e + 1, (size_t)(g->nentries - i - 1) * sizeof(entry));
    g->nentries--;
}

size_t tmixd_group_bytes(const tmixd_group *g)
{
    size_t bytes = 0;
    for (int i = 0; i < g->nentries; i++)
        bytes += g->entries[i].batch ? g->entries[i].batch->bytes : 0;
    return bytes;
}

// ---- members ------------------------------------------------------------------------------

static member *find_member(tmixd_group *g, uint64_t id)
{
    for (int i = 0; i < g->nmembers; i++)
        if (g->members[i].id == id)
            return &g->members[i];
    return NULL;
}

int tmixd_group_join(tmixd_group *g, uint64_t session, uint64_t start)
{
    if (find_member(g, session))
        return tmix_fail(TMIX_EINVAL, "group %s: session %llu is already a member", g->name,
                         (unsigned long long)session);
    if (!grow((void **)&g->members, &g->cap_members, g->nmembers + 1, sizeof(member)))
        return tmix_fail(TMIX_ENOMEM, "group %s: member table", g->name);
    g->members[g->nmembers++] = (member){.id = session, .start = start};
    return 0;
}

// Broadcast: whether some member still needs position pos (delivered and unacknowledged,
// asked for, or within its prefetch).
static bool released_by(const member *m, uint64_t seq)
{
    for (int i = 0; i < m->nreleased; i++)
        if (m->released[i] == seq)
            return true;
    return false;
}

static bool broadcast_needed(const tmixd_group *g, uint64_t pos)
{
    for (int i = 0; i < g->nmembers; i++) {
        const member *m = &g->members[i];
        if (pos >= m->start + m->acked && pos < m->start + m->last_seq + 1 + (uint64_t)g->prefetch &&
            !released_by(m, pos - m->start + 1))
            return true;
    }
    return false;
}

// Broadcast: m has acknowledged everything through `through` (at most its last batch); the
// released sequences that continue the acknowledged run join it. The caller prunes.
static void broadcast_ack(member *m, uint64_t through)
{
    if (through > m->last_seq)
        through = m->last_seq;
    if (through > m->acked)
        m->acked = through;
    int k = 0;
    while (k < m->nreleased && m->released[k] <= m->acked + 1) {
        if (m->released[k] == m->acked + 1)
            m->acked++;
        k++;
    }
    if (k == 0) // (released may be NULL)
        return;
    memmove(m->released, m->released + k, (size_t)(m->nreleased - k) * sizeof(uint64_t));
    m->nreleased -= k;
}

static void broadcast_prune(tmixd_group *g)
{
    for (int i = 0; i < g->nentries;) {
        entry *e = &g->entries[i];
        if (e->state == READY && !broadcast_needed(g, e->pos))
            remove_entry(g, e);
        else
            i++;
    }
}

// Shard: drops the acknowledged entries at the bottom of the window.
static void shard_advance(tmixd_group *g)
{
    while (g->nentries > 0 && g->entries[0].state == DONE && g->entries[0].pos == g->done_through) {
        remove_entry(g, &g->entries[0]);
        g->done_through++;
    }
}

static void shard_ack(tmixd_group *g, member *m, uint64_t ack_through);
static void lease_done(tmixd_group *g, member *m, int i);

void tmixd_group_release(tmixd_group *g, uint64_t session, const uint64_t *seqs, size_t n)
{
    member *m = find_member(g, session);
    if (!m || !n)
        return;
    if (g->p.mode == TMIXD_SHARD) {
        for (int i = 0; i < m->nleases;) {
            bool listed = false;
            for (size_t k = 0; k < n && !listed; k++)
                listed = seqs[k] == m->leases[i].seq;
            if (listed)
                lease_done(g, m, i); // the last lease moves to i
            else
                i++;
        }
        shard_advance(g);
        return;
    }
    for (size_t k = 0; k < n; k++) {
        const uint64_t s = seqs[k];
        if (s <= m->acked || s > m->last_seq || released_by(m, s) ||
            !grow((void **)&m->released, &m->cap_released, m->nreleased + 1, sizeof(uint64_t)))
            continue;
        int i = m->nreleased++;
        while (i > 0 && m->released[i - 1] > s) {
            m->released[i] = m->released[i - 1];
            i--;
        }
        m->released[i] = s;
    }
    broadcast_ack(m, m->acked);
    broadcast_prune(g);
}

void tmixd_group_leave(tmixd_group *g, uint64_t session, uint64_t ack_through)
{
    member *m = find_member(g, session);
    if (!m)
        return;
    if (g->p.mode == TMIXD_SHARD)
        shard_ack(g, m, ack_through);
    for (int i = 0; i < m->nleases; i++) {
        entry *e = find_entry(g, m->leases[i].pos);
        if (e && e->state == LEASED)
            e->state = READY;
    }
    free(m->leases);
    free(m->released);
    int i = (int)(m - g->members);
    memmove(m, m + 1, (size_t)(g->nmembers - i - 1) * sizeof(member));
    g->nmembers--;
    if (g->p.mode == TMIXD_BROADCAST)
        broadcast_prune(g);
}

// ---- requests -----------------------------------------------------------------------------

// Gives e to m as its batch seq.
static int deliver(tmixd_group *g, member *m, uint64_t seq, const entry *e,
                   tmixd_batch **out)
{
    m->last_seq = seq;
    m->waiting = false;
    g->served++;
    g->images_served += e->batch->size;
    *out = e->batch;
    return 1;
}

// m's lease i is acknowledged: its batch is done (and freed); the last lease moves to i.
static void lease_done(tmixd_group *g, member *m, int i)
{
    entry *e = find_entry(g, m->leases[i].pos);
    if (e && e->state == LEASED) {
        e->state = DONE;
        tmixd_batch_free(e->batch);
        e->batch = NULL;
    }
    m->leases[i] = m->leases[--m->nleases];
}

// Marks m's batches up to ack_through done.
static void shard_ack(tmixd_group *g, member *m, uint64_t ack_through)
{
    for (int i = 0; i < m->nleases;) {
        if (m->leases[i].seq <= ack_through)
            lease_done(g, m, i);
        else
            i++;
    }
    shard_advance(g);
}

static int shard_next(tmixd_group *g, member *m, uint64_t seq, uint64_t ack_through,
                      tmixd_batch **out)
{
    shard_ack(g, m, ack_through);
    if (seq <= m->last_seq) { // a repeated request: the same batch again
        for (int i = 0; i < m->nleases; i++)
            if (m->leases[i].seq == seq) {
                *out = find_entry(g, m->leases[i].pos)->batch;
                return 1;
            }
        return tmix_fail(TMIX_EINVAL, "group %s: batch %llu of this session is acknowledged",
                         g->name, (unsigned long long)seq);
    }
    // The lowest position nobody holds, so that batches go out in stream order (one trainer
    // gets exactly batches 0, 1, 2, ...): wait for it rather than pass it by.
    for (int i = 0; i < g->nentries; i++) {
        entry *e = &g->entries[i];
        if (e->state == LEASED || e->state == DONE)
            continue;
        if (e->state != READY)
            break;
        if (!grow((void **)&m->leases, &m->cap_leases, m->nleases + 1, sizeof(lease)))
            return tmix_fail(TMIX_ENOMEM, "group %s: lease table", g->name);
        m->leases[m->nleases++] = (lease){seq, e->pos};
        e->state = LEASED;
        return deliver(g, m, seq, e, out);
    }
    m->waiting = true;
    return 0;
}

static int broadcast_next(tmixd_group *g, member *m, uint64_t seq, uint64_t ack_through,
                          tmixd_batch **out)
{
    const uint64_t acked = m->acked;
    broadcast_ack(m, ack_through);
    if (m->acked != acked)
        broadcast_prune(g);
    entry *e = find_entry(g, m->start + seq - 1);
    if (seq <= m->last_seq) {
        if (e && e->state == READY) {
            *out = e->batch;
            return 1;
        }
        return tmix_fail(TMIX_EINVAL, "group %s: batch %llu of this session is acknowledged",
                         g->name, (unsigned long long)seq);
    }
    if (e && e->state == READY)
        return deliver(g, m, seq, e, out);
    m->waiting = true;
    return 0;
}

int tmixd_group_next(tmixd_group *g, uint64_t session, uint64_t seq, uint64_t ack_through,
                     tmixd_batch **out)
{
    member *m = find_member(g, session);
    if (!m)
        return tmix_fail(TMIX_ENOENT, "group %s: session %llu is not a member", g->name,
                         (unsigned long long)session);
    if (seq == 0 || seq > m->last_seq + 1)
        return tmix_fail(TMIX_EINVAL, "group %s: asked for batch %llu, the next is %llu", g->name,
                         (unsigned long long)seq, (unsigned long long)(m->last_seq + 1));
    return g->p.mode == TMIXD_SHARD ? shard_next(g, m, seq, ack_through, out)
                                    : broadcast_next(g, m, seq, ack_through, out);
}

// ---- production ---------------------------------------------------------------------------

static int shard_wanted(tmixd_group *g, bool may_prefetch, uint64_t *positions, int max)
{
    int waiting = 0, coming = 0;
    for (int i = 0; i < g->nmembers; i++)
        waiting += g->members[i].waiting;
    for (int i = 0; i < g->nentries; i++)
        coming += g->entries[i].state == READY || g->entries[i].state == PRODUCING;
    int need = waiting + (may_prefetch ? g->prefetch : 0) - coming;
    int count = 0;
    while (count < need && count < max) {
        entry *e = NULL;
        for (int i = 0; i < g->nentries && !e; i++)
            if (g->entries[i].state == NEW)
                e = &g->entries[i];
        if (!e && !(e = add_entry(g, g->head, PRODUCING)))
            break;
        e->state = PRODUCING;
        positions[count++] = e->pos;
    }
    return count;
}

static int broadcast_wanted(tmixd_group *g, bool may_prefetch, uint64_t *positions, int max)
{
    int count = 0;
    for (int i = 0; i < g->nmembers; i++) {
        const member *m = &g->members[i];
        const int ahead = may_prefetch ? g->prefetch : m->waiting ? 1 : 0;
        for (int k = 0; k < ahead && count < max; k++) {
            const uint64_t pos = m->start + m->last_seq + (uint64_t)k;
            if (find_entry(g, pos))
                continue;
            if (!add_entry(g, pos, PRODUCING))
                return count;
            positions[count++] = pos;
        }
    }
    return count;
}

int tmixd_group_wanted(tmixd_group *g, bool may_prefetch, uint64_t *positions, int max)
{
    return g->p.mode == TMIXD_SHARD ? shard_wanted(g, may_prefetch, positions, max)
                                    : broadcast_wanted(g, may_prefetch, positions, max);
}

void tmixd_group_produced(tmixd_group *g, tmixd_batch *b)
{
    entry *e = find_entry(g, b->pos);
    if (!e || e->state != PRODUCING) {
        tmixd_batch_free(b);
        return;
    }
    e->state = READY;
    e->batch = b;
    if (g->p.mode == TMIXD_BROADCAST && !broadcast_needed(g, b->pos))
        remove_entry(g, e);
}

void tmixd_group_failed(tmixd_group *g, uint64_t pos)
{
    entry *e = find_entry(g, pos);
    if (!e || e->state != PRODUCING)
        return;
    if (g->p.mode == TMIXD_SHARD)
        e->state = NEW;
    else
        remove_entry(g, e);
}

// ---- progress -----------------------------------------------------------------------------

int tmixd_group_progress(const tmixd_group *g, uint64_t *done_through, uint64_t *done, int max)
{
    *done_through = g->p.mode == TMIXD_SHARD ? g->done_through : 0;
    int count = 0;
    for (int i = 0; i < g->nentries && count < max; i++)
        if (g->entries[i].state == DONE)
            done[count++] = g->entries[i].pos;
    return count;
}

int tmixd_group_restore(tmixd_group *g, uint64_t done_through, const uint64_t *done, int count)
{
    if (g->p.mode != TMIXD_SHARD || g->nmembers > 0 || g->nentries > 0)
        return tmix_fail(TMIX_EINVAL, "group %s: progress can only be restored into a fresh "
                         "shard group", g->name);
    g->done_through = g->head = done_through;
    uint64_t top = done_through;
    for (int i = 0; i < count; i++)
        if (done[i] >= top)
            top = done[i] + 1;
    for (uint64_t pos = done_through; pos < top; pos++) {
        bool is_done = false;
        for (int i = 0; i < count && !is_done; i++)
            is_done = done[i] == pos;
        if (!add_entry(g, pos, is_done ? DONE : NEW))
            return tmix_fail(TMIX_ENOMEM, "group %s: restoring progress", g->name);
    }
    shard_advance(g);
    return 0;
}
