// Device rings: slot buffers made on first use and the free list of slots.h, whose lock
// covers taking a slot and making its buffer; the copy into a taken slot is queued after.
#include "device_ring.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "ops.h"
#include "slots.h"

struct tmixd_device_ring {
    tmix_backend *be; // the producer's on the GPU (borrowed): makes and frees the slots' memory
    int device;
    size_t slot_bytes;
    tmixd_slots free;
    tmix_ipc_buffer *buffers; // [slots]; device NULL until first used
    bool warned;
    // A new slot found no room: none is tried again until a slot comes back (each try may
    // trim the lanes' memory pool).
    atomic_bool no_room;
};

int tmixd_device_ring_new(tmixd_device_ring **out, tmix_backend *be, size_t slot_bytes,
                          int slots)
{
    *out = NULL;
    if (strncmp(be->name, "cuda", 4) != 0)
        return tmix_fail(TMIX_ENOTSUP, "cuda delivery needs tmixd on a GPU; it mixes on %s",
                         be->name);
    tmixd_device_ring *r = calloc(1, sizeof *r);
    if (!r || !(r->buffers = calloc((size_t)slots, sizeof *r->buffers)) ||
        tmixd_slots_init(&r->free, slots) < 0) {
        if (r)
            free(r->buffers);
        free(r);
        return tmix_fail(TMIX_ENOMEM, "device ring of %d slots", slots);
    }
    r->be = be;
    r->slot_bytes = slot_bytes;
    const char *colon = strchr(be->name, ':');
    r->device = colon ? atoi(colon + 1) : 0;
    const int rc = tmix_ipc_buffer_new(be, slot_bytes, &r->buffers[0]);
    if (rc < 0) {
        tmixd_device_ring_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void tmixd_device_ring_free(tmixd_device_ring *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->free.count; i++)
        tmix_ipc_buffer_free(r->be, &r->buffers[i]);
    tmixd_slots_destroy(&r->free);
    free(r->buffers);
    free(r);
}

int tmixd_device_ring_fill(tmixd_device_ring *r, tmix_backend *be, const void *src, size_t bytes,
                           int *slot)
{
    pthread_mutex_lock(&r->free.lock);
    int rc = 0;
    const int s = tmixd_slots_peek(&r->free);
    if (s >= 0) {
        tmix_ipc_buffer *b = &r->buffers[s];
        if (!b->device && atomic_load(&r->no_room)) {
            rc = 0;
        } else if (!b->device &&
                   ((rc = tmix_ipc_buffer_new(r->be, r->slot_bytes, b)) == TMIX_ENOMEM ||
                    rc == TMIX_ENOTSUP)) {
            if (!r->warned)
                tmixd_log(TMIXD_LOG_WARN, "cuda delivery: %s: batches go inline while slots "
                          "are short", tmix_last_error());
            r->warned = true;
            atomic_store(&r->no_room, true);
            rc = 0;
        } else if (rc == 0) {
            tmixd_slots_pop(&r->free);
            rc = 1;
        }
    }
    pthread_mutex_unlock(&r->free.lock);
    // The copy is queued outside the lock, so that the loop thread (slot counts, gives) never
    // waits for a GPU call; the slot is this caller's until given.
    if (rc == 1) {
        const int copied = tmix_ipc_buffer_fill(be, &r->buffers[s], src, bytes);
        if (copied < 0) {
            tmixd_slots_give(&r->free, s);
            return copied;
        }
        *slot = s;
    }
    return rc;
}

void tmixd_device_ring_give(tmixd_device_ring *r, int slot)
{
    tmixd_slots_give(&r->free, slot);
    atomic_store(&r->no_room, false);
}

int tmixd_device_ring_read(const tmixd_device_ring *r, int slot, void *dst, size_t bytes)
{
    return tmix_ipc_buffer_read(r->be, &r->buffers[slot], dst, bytes);
}

const tmix_ipc_buffer *tmixd_device_ring_slot(const tmixd_device_ring *r, int slot)
{
    return &r->buffers[slot];
}

int tmixd_device_ring_device(const tmixd_device_ring *r) { return r->device; }
int tmixd_device_ring_slots(const tmixd_device_ring *r) { return r->free.count; }
int tmixd_device_ring_used(tmixd_device_ring *r) { return tmixd_slots_used(&r->free); }
