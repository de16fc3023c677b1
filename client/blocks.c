// The allocator replies are unpacked with. The images of an inline batch are unpacked into a
// block of their size, one per batch, and a fresh block is slow: on a 2-core VM a copy of
// 77 MB (a batch of 128 float32 images of 3x224x224) into memory from malloc took 43 ms, 32
// of them page faults, against 11 ms into memory used before. So blocks of BLOCK_MIN bytes
// and more are kept when freed (their batch released), up to KEPT of them, the oldest given
// back first, and a request of a size one holds takes it.
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

enum { BLOCK_MIN = 1 << 20, KEPT = 4 };

// Every allocation starts with its header, so that a free knows its size. 16 bytes: the
// caller's memory keeps malloc's alignment.
typedef struct {
    size_t size; // usable bytes after the header
    size_t unused;
} header;

static struct {
    pthread_mutex_t lock;
    header *blocks[KEPT]; // oldest first
    int n;
} kept = {.lock = PTHREAD_MUTEX_INITIALIZER};

// A kept block of `size` bytes or up to twice that, taken out of `kept`, or NULL.
static header *take_kept(size_t size)
{
    header *h = NULL;
    pthread_mutex_lock(&kept.lock);
    for (int i = 0; i < kept.n && !h; i++) {
        if (kept.blocks[i]->size < size || kept.blocks[i]->size / 2 > size)
            continue;
        h = kept.blocks[i];
        for (int j = i + 1; j < kept.n; j++)
            kept.blocks[j - 1] = kept.blocks[j];
        kept.n--;
    }
    pthread_mutex_unlock(&kept.lock);
    return h;
}

static void *block_alloc(void *unused, size_t size)
{
    (void)unused;
    header *h = size >= BLOCK_MIN ? take_kept(size) : NULL;
    if (!h) {
        if (size > SIZE_MAX - sizeof *h || !(h = malloc(sizeof *h + size)))
            return NULL;
        h->size = size;
    }
    return h + 1;
}

static void block_free(void *unused, void *p)
{
    (void)unused;
    if (!p)
        return;
    header *h = (header *)p - 1, *evicted = h;
    if (h->size >= BLOCK_MIN) {
        pthread_mutex_lock(&kept.lock);
        evicted = kept.n == KEPT ? kept.blocks[0] : NULL;
        if (evicted) {
            for (int j = 1; j < KEPT; j++)
                kept.blocks[j - 1] = kept.blocks[j];
            kept.n--;
        }
        kept.blocks[kept.n++] = h;
        pthread_mutex_unlock(&kept.lock);
    }
    free(evicted);
}

ProtobufCAllocator tmixi_allocator = {.alloc = block_alloc, .free = block_free};

void tmixi_envelope_free(Tmix__Envelope *env)
{
    tmix__envelope__free_unpacked(env, &tmixi_allocator);
}

int tmixi_blocks_kept(void)
{
    pthread_mutex_lock(&kept.lock);
    const int n = kept.n;
    pthread_mutex_unlock(&kept.lock);
    return n;
}

void tmixi_blocks_drop(void)
{
    pthread_mutex_lock(&kept.lock);
    while (kept.n > 0)
        free(kept.blocks[--kept.n]);
    pthread_mutex_unlock(&kept.lock);
}
