// Shared-memory rings: one POSIX shm object per group and the free list of its slots
// (slots.h).
#include "shm_ring.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "slots.h"

#define NAME_PREFIX "tmix-"

// This daemon's tag in its rings' names, beside its pid: a daemon that restarts with the same
// pid (PID 1 in a container) makes other names, so that no trainer maps a ring of the last
// one by mistake, and the sweep can tell that one's rings from its own.
static char instance[17];
static pthread_once_t instance_once = PTHREAD_ONCE_INIT;

static void make_instance(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    const unsigned long long ns = (unsigned long long)t.tv_sec * 1000000000ull +
                                  (unsigned long long)t.tv_nsec;
    const unsigned long long x = ns ^ ((unsigned long long)getpid() << 40);
    snprintf(instance, sizeof instance, "%016llx", x);
}

static const char *instance_tag(void)
{
    pthread_once(&instance_once, make_instance);
    return instance;
}

struct tmixd_ring {
    char name[64];
    int fd;
    char *base;
    size_t slot_bytes;
    tmixd_slots free;
    bool *reserved;    // [slots]: the slot's pages are allocated in /dev/shm
    bool warned;       // "no room in /dev/shm" said once
};

int tmixd_ring_new(tmixd_ring **out, int id, size_t slot_bytes, int slots)
{
    *out = NULL;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    slot_bytes = (slot_bytes + page - 1) / page * page;
    tmixd_ring *r = calloc(1, sizeof *r);
    if (!r || !(r->reserved = calloc((size_t)slots, sizeof *r->reserved)) ||
        tmixd_slots_init(&r->free, slots) < 0) {
        if (r)
            free(r->reserved);
        free(r);
        return tmix_fail(TMIX_ENOMEM, "shm ring of %d slots", slots);
    }
    snprintf(r->name, sizeof r->name, "/" NAME_PREFIX "%u-%ld-%s-%d", (unsigned)getuid(),
             (long)getpid(), instance_tag(), id);
    r->slot_bytes = slot_bytes;
    r->base = MAP_FAILED;
    const size_t bytes = slot_bytes * (size_t)slots;
    int rc = 0;
    // O_EXCL: a name left by an earlier daemon with our pid is stale; replace it.
    shm_unlink(r->name);
    r->fd = shm_open(r->name, O_RDWR | O_CREAT | O_EXCL, 0660);
    if (r->fd < 0)
        rc = tmix_fail(TMIX_EIO, "shm_open %s: %s", r->name, strerror(errno));
    else if (fchmod(r->fd, 0660) < 0 || ftruncate(r->fd, (off_t)bytes) < 0)
        rc = tmix_fail(TMIX_EIO, "%s: sizing to %zu bytes: %s", r->name, bytes, strerror(errno));
    else if ((r->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0)) ==
             MAP_FAILED)
        rc = tmix_fail(TMIX_ENOMEM, "%s: mapping %zu bytes: %s", r->name, bytes, strerror(errno));
    if (rc < 0) {
        tmixd_ring_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void tmixd_ring_free(tmixd_ring *r)
{
    if (!r)
        return;
    if (r->base != MAP_FAILED)
        munmap(r->base, r->slot_bytes * (size_t)r->free.count);
    if (r->fd >= 0) {
        close(r->fd);
        shm_unlink(r->name);
    }
    tmixd_slots_destroy(&r->free);
    free(r->reserved);
    free(r);
}

void *tmixd_ring_take(tmixd_ring *r, int *slot)
{
    pthread_mutex_lock(&r->free.lock);
    void *p = NULL;
    const int s = tmixd_slots_peek(&r->free);
    if (s >= 0) {
        // Reserve the pages now: writing to a sparse tmpfs page with /dev/shm full is SIGBUS.
        int err = r->reserved[s] ? 0
                                 : posix_fallocate(r->fd, (off_t)(r->slot_bytes * (size_t)s),
                                                   (off_t)r->slot_bytes);
        if (err == 0) {
            r->reserved[s] = true;
            tmixd_slots_pop(&r->free);
            *slot = s;
            p = r->base + r->slot_bytes * (size_t)s;
        } else if (!r->warned) {
            r->warned = true;
            tmixd_log(TMIXD_LOG_WARN, "%s: no room for a slot of %zu bytes in /dev/shm (%s): "
                      "batches go inline until there is", r->name, r->slot_bytes, strerror(err));
        }
    }
    pthread_mutex_unlock(&r->free.lock);
    return p;
}

void tmixd_ring_give(tmixd_ring *r, int slot) { tmixd_slots_give(&r->free, slot); }

const char *tmixd_ring_name(const tmixd_ring *r) { return r->name; }
size_t tmixd_ring_slot_bytes(const tmixd_ring *r) { return r->slot_bytes; }
int tmixd_ring_slots(const tmixd_ring *r) { return r->free.count; }
int tmixd_ring_used(tmixd_ring *r) { return tmixd_slots_used(&r->free); }

int tmixd_ring_sweep(void)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return 0;
    char mine[32];
    snprintf(mine, sizeof mine, NAME_PREFIX "%u-", (unsigned)getuid());
    int removed = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, mine, strlen(mine)) != 0)
            continue;
        char *rest;
        const long pid = strtol(e->d_name + strlen(mine), &rest, 10);
        const bool ours = pid == (long)getpid();
        if (pid <= 0 || *rest != '-' ||
            (ours ? strncmp(rest + 1, instance_tag(), 16) == 0 // this daemon's own
                  : kill((pid_t)pid, 0) == 0 || errno != ESRCH)) // alive, or not ours to tell
            continue;
        char name[300];
        snprintf(name, sizeof name, "/%s", e->d_name);
        if (shm_unlink(name) == 0) {
            tmixd_log(TMIXD_LOG_INFO, "removed %s, left by tmixd %ld", name, pid);
            removed++;
        }
    }
    closedir(d);
    return removed;
}
