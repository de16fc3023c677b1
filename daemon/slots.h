// The free list of a ring of output slots (shared-memory and device rings alike): LIFO, so
// that the slots in use stay few and their memory warm; thread-safe.
#ifndef TMIXD_SLOTS_H
#define TMIXD_SLOTS_H

#include <pthread.h>

typedef struct {
    pthread_mutex_t lock; // held by take and give; a ring may hold it around its own work
    int *free_slots;      // stack of free indices, slot 0 on top at start
    int count, nfree;
} tmixd_slots;

int tmixd_slots_init(tmixd_slots *s, int count); // TMIX_ENOMEM
void tmixd_slots_destroy(tmixd_slots *s);
// With the lock held: the slot on top of the stack, or -1 when none is free; pop takes it.
int tmixd_slots_peek(const tmixd_slots *s);
void tmixd_slots_pop(tmixd_slots *s);
// Takes the lock itself.
void tmixd_slots_give(tmixd_slots *s, int slot);
int tmixd_slots_used(tmixd_slots *s);

#endif
