// A stand-in for the CUDA backend plugin (kernels/cuda_plugin.h), for tests on machines
// without a GPU: `TMIX_CUDA_PLUGIN=.../libtmix-fakecuda.so tmixd serve --server.device=cuda`
// takes tmixd's GPU paths (mixing lanes, device-side encoding, CUDA delivery's device ring,
// groups whose members all read device slots) with the CPU's ops doing the work.
//
// Fake rules: one device, cuda:0, PCI bus id FAKE_PCI_BUS_ID; device memory is host memory;
// tf32 and bf16 are accepted and computed in fp32; each backend has a stream, a thread that
// runs its ops after they return, and graphs that record and replay them (fake_stream.c).
// A CUDA IPC buffer is a POSIX shared memory object: its memory handle holds the object's
// name (NUL-terminated), its event handle the bytes "fake event" (the event in this process
// counts the queued fills: fake_stream.c), and a trainer never waits for it, so a batch must
// be sent once its slot is filled (as tmixd does). Real CUDA memory goes with its process, a
// shared memory object does not: the first open removes those of processes that are gone
// (a tmixd killed by a test). With TMIX_CUDA_FAULT_AFTER=N in the environment every
// preprocess after the N-th fails as a GPU fault would, and so do uploads, downloads,
// synchronizes and slot fills from then on (the real plugin's fault is sticky too). With
// TMIX_CUDA_HANG_AFTER=N every preprocess after the N-th never ends, as a stuck kernel.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cpu.h"
#include "cuda_plugin.h"
#include "error.h"
#include "fake.h"

#define FAKE_PCI_BUS_ID "0000:FA:CE.0"
#define SHM_PREFIX "tmix-fakecuda-"
#define FAKE_EVENT "fake event"

#define EXPORT __attribute__((visibility("default")))

static tmix_backend_ops fake_ops;
static atomic_uint buffers_made;
static atomic_bool faulted;

static int fault(const char *op)
{
    return tmix_fail(TMIX_ECUDA, "cuda:0: %s: fake GPU fault (TMIX_CUDA_FAULT_AFTER)", op);
}

// Whether this is a call after the N-th of those counted by calls, where the environment
// variable var says N.
static bool after_nth(atomic_long *calls, const char *var)
{
    const char *n = getenv(var);
    return n && *n && atomic_fetch_add(calls, 1) + 1 > atol(n);
}

static int fake_preprocess(tmix_backend *be, tmix_tensor *out, const tmix_tensor *src,
                           const tmix_crop *crops, const float *mean, const float *std)
{
    static atomic_long calls, hang_calls;
    if (after_nth(&calls, "TMIX_CUDA_FAULT_AFTER"))
        atomic_store(&faulted, true);
    if (after_nth(&hang_calls, "TMIX_CUDA_HANG_AFTER"))
        for (;;)
            nanosleep(&(struct timespec){1, 0}, NULL);
    if (atomic_load(&faulted))
        return fault("preprocess");
    return tmix_cpu_preprocess(be, out, src, crops, mean, std);
}

static int fake_upload(tmix_backend *be, tmix_tensor *dst, const void *src)
{
    (void)be;
    if (atomic_load(&faulted))
        return fault("upload");
    memcpy(dst->data, src, tmix_tensor_bytes(dst));
    return 0;
}

static int fake_download(tmix_backend *be, void *dst, const tmix_tensor *src)
{
    (void)be;
    if (atomic_load(&faulted))
        return fault("download");
    memcpy(dst, src->data, tmix_tensor_bytes(src));
    return 0;
}

static int fake_synchronize(tmix_backend *be)
{
    (void)be;
    return atomic_load(&faulted) ? fault("synchronize") : 0;
}

static int fake_ipc_buffer_new(tmix_backend *be, size_t bytes, tmix_ipc_buffer *out)
{
    (void)be;
    memset(out, 0, sizeof *out);
    char name[64];
    snprintf(name, sizeof name, "/" SHM_PREFIX "%ld-%u", (long)getpid(),
             atomic_fetch_add(&buffers_made, 1));
    const int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return tmix_fail(TMIX_EIO, "fake ipc_buffer_new: shm_open %s: %s", name, strerror(errno));
    void *p = ftruncate(fd, (off_t)bytes) == 0
                  ? mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                  : MAP_FAILED;
    close(fd);
    if (p == MAP_FAILED) {
        shm_unlink(name);
        return tmix_fail(TMIX_ENOMEM, "fake ipc_buffer_new: %zu bytes in %s", bytes, name);
    }
    out->device = p;
    out->event = out; // fake_stream.c puts its event here
    out->bytes = bytes;
    memcpy(out->mem_handle, name, strlen(name) + 1);
    memcpy(out->event_handle, FAKE_EVENT, sizeof FAKE_EVENT);
    return 0;
}

static int fake_ipc_buffer_fill(tmix_backend *be, tmix_ipc_buffer *b, const void *src,
                                size_t bytes)
{
    (void)be;
    if (atomic_load(&faulted))
        return fault("ipc_buffer_fill");
    memcpy(b->device, src, bytes);
    return 0;
}

static int fake_ipc_buffer_read(tmix_backend *be, const tmix_ipc_buffer *b, void *dst,
                                size_t bytes)
{
    (void)be;
    memcpy(dst, b->device, bytes);
    return 0;
}

static void fake_ipc_buffer_free(tmix_backend *be, tmix_ipc_buffer *b)
{
    (void)be;
    munmap(b->device, b->bytes);
    shm_unlink((const char *)b->mem_handle); // a trainer's mapping lives on until it unmaps
    memset(b, 0, sizeof *b);
}

static int fake_pci_bus_id(tmix_backend *be, char *out, size_t size)
{
    (void)be;
    snprintf(out, size, "%s", FAKE_PCI_BUS_ID);
    return 0;
}

static int fake_set_precision(tmix_backend *be, tmix_precision p)
{
    (void)be;
    (void)p; // checked by the entry point; the CPU's ops compute fp32 whatever it is
    return 0;
}

static void fake_close(tmix_backend *be)
{
    free(be);
}

EXPORT int tmix_cuda_plugin_abi(void)
{
    return TMIX_CUDA_PLUGIN_ABI;
}

EXPORT int tmix_cuda_plugin_device_count(void)
{
    return 1;
}

// Removes the slots of fake GPUs whose process is gone.
static void remove_stale_slots(void)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        long pid;
        if (strncmp(e->d_name, SHM_PREFIX, strlen(SHM_PREFIX)) != 0 ||
            sscanf(e->d_name + strlen(SHM_PREFIX), "%ld-", &pid) != 1 || pid <= 0)
            continue;
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
            char name[300];
            snprintf(name, sizeof name, "/%s", e->d_name);
            shm_unlink(name);
        }
    }
    closedir(d);
}

static void make_ops(void)
{
    remove_stale_slots();
    fake_ops = *tmix_backend_cpu()->ops;
    fake_ops.upload = fake_upload;
    fake_ops.download = fake_download;
    fake_ops.synchronize = fake_synchronize;
    fake_ops.preprocess = fake_preprocess;
    fake_ops.ipc_buffer_new = fake_ipc_buffer_new;
    fake_ops.ipc_buffer_fill = fake_ipc_buffer_fill;
    fake_ops.ipc_buffer_read = fake_ipc_buffer_read;
    fake_ops.ipc_buffer_free = fake_ipc_buffer_free;
    fake_ops.pci_bus_id = fake_pci_bus_id;
    fake_ops.set_precision = fake_set_precision;
    fake_ops.close = fake_close;
    fake_stream_install(&fake_ops);
}

// A backend of its own per open, as the real plugin's (each with its stream there).
EXPORT int tmix_cuda_plugin_open(tmix_backend **out, int device)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    *out = NULL;
    if (device != 0)
        return tmix_fail(TMIX_ENODEV, "cuda:%d: the fake CUDA plugin has cuda:0 only", device);
    pthread_once(&once, make_ops);
    fake_backend *f = malloc(sizeof *f);
    if (!f)
        return tmix_fail(TMIX_ENOMEM, "cuda:0: the fake CUDA plugin is out of memory");
    *f = (fake_backend){.be = {.name = "cuda:0", .device = TMIX_CUDA, .ops = &fake_ops}};
    const int rc = fake_stream_open(f);
    if (rc < 0) {
        free(f);
        return rc;
    }
    *out = &f->be;
    return 0;
}
