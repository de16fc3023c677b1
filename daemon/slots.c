#include "slots.h"

#include <stdlib.h>

#include "error.h"

int tmixd_slots_init(tmixd_slots *s, int count)
{
    s->free_slots = malloc((size_t)count * sizeof *s->free_slots);
    if (!s->free_slots)
        return tmix_fail(TMIX_ENOMEM, "a ring of %d slots", count);
    for (int i = 0; i < count; i++)
        s->free_slots[i] = count - 1 - i;
    s->count = s->nfree = count;
    pthread_mutex_init(&s->lock, NULL);
    return 0;
}

void tmixd_slots_destroy(tmixd_slots *s)
{
    if (!s->free_slots)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s->free_slots);
    s->free_slots = NULL;
}

int tmixd_slots_peek(const tmixd_slots *s) { return s->nfree ? s->free_slots[s->nfree - 1] : -1; }
void tmixd_slots_pop(tmixd_slots *s) { s->nfree--; }

void tmixd_slots_give(tmixd_slots *s, int slot)
{
    pthread_mutex_lock(&s->lock);
    s->free_slots[s->nfree++] = slot;
    pthread_mutex_unlock(&s->lock);
}

int tmixd_slots_used(tmixd_slots *s)
{
    pthread_mutex_lock(&s->lock);
    const int used = s->count - s->nfree;
    pthread_mutex_unlock(&s->lock);
    return used;
}
