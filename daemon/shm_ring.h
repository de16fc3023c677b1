// A consumer group's ring of output slots in POSIX shared memory (SHM delivery): workers
// write a batch's images straight into a free slot, the trainers of the group map the whole
// object read-only once and read each batch in place, and the slot is given back when the
// group frees the batch (acknowledged by every member that needed it, or its lease expired
// and another member acknowledged it). Take and give are thread-safe.
#ifndef TMIXD_SHM_RING_H
#define TMIXD_SHM_RING_H

#include <stddef.h>

typedef struct tmixd_ring tmixd_ring;

// Creates /tmix-UID-PID-TAG-ID (TAG: this daemon's, see shm_ring.c) with `slots` slots of at least slot_bytes (rounded up to the page
// size), mode 0660 like the socket. The object is sparse: a slot's memory is reserved the
// first time it is taken, so a full /dev/shm is an error then, never a SIGBUS.
int tmixd_ring_new(tmixd_ring **out, int id, size_t slot_bytes, int slots);
// Unmaps and unlinks (trainers keep their own mappings). NULL: no-op.
void tmixd_ring_free(tmixd_ring *r);

// A free slot's memory and its index in *slot; NULL when every slot is taken or /dev/shm has
// no room for it (logged once), and the caller keeps the batch in its own memory.
void *tmixd_ring_take(tmixd_ring *r, int *slot);
void tmixd_ring_give(tmixd_ring *r, int slot);

const char *tmixd_ring_name(const tmixd_ring *r);
size_t tmixd_ring_slot_bytes(const tmixd_ring *r);
int tmixd_ring_slots(const tmixd_ring *r);
int tmixd_ring_used(tmixd_ring *r);

// Unlinks the rings that daemons of this user which no longer run left behind (killed before
// they could), an earlier daemon with this pid among them: returns how many.
int tmixd_ring_sweep(void);

#endif
