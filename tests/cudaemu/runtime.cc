// The CUDA emulator's runtime (include/cuda_runtime.h): device memory from malloc, streams
// that run their work at once, graphs that record it and run it again, and kernels run
// thread by thread on the calling host thread. It is strict where CUDA is: a bad launch
// configuration, an unknown pointer freed, a synchronising call while the thread captures a
// graph, and a trapped kernel (sticky, as a broken context) are errors; a barrier some
// threads never reach and a shuffle with lanes missing stop the process with a message.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <setjmp.h>
#include <time.h>
#include <ucontext.h>

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#endif

uint3 tmix_emu_thread_idx, tmix_emu_block_idx;
dim3 tmix_emu_block_dim, tmix_emu_grid_dim;

[[noreturn]] static void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda emulator: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

// ---- errors --------------------------------------------------------------------------------

static thread_local cudaError_t last_error = cudaSuccess;
static std::atomic<int> sticky_error{cudaSuccess}; // a trapped kernel breaks the "context"

static cudaError_t fail(cudaError_t e)
{
    last_error = e;
    return e;
}

#define STICKY_CHECK()                                                                             \
    do {                                                                                           \
        if (sticky_error.load())                                                                   \
            return fail((cudaError_t)sticky_error.load());                                         \
    } while (0)

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
#define NAME(x)                                                                                    \
    case x:                                                                                        \
        return #x;
        NAME(cudaSuccess)
        NAME(cudaErrorInvalidValue)
        NAME(cudaErrorMemoryAllocation)
        NAME(cudaErrorInvalidConfiguration)
        NAME(cudaErrorInvalidDevice)
        NAME(cudaErrorInsufficientDriver)
        NAME(cudaErrorNoDevice)
        NAME(cudaErrorStubLibrary)
        NAME(cudaErrorDevicesUnavailable)
        NAME(cudaErrorSystemDriverMismatch)
        NAME(cudaErrorCompatNotSupportedOnDevice)
        NAME(cudaErrorNoKernelImageForDevice)
        NAME(cudaErrorInvalidDeviceFunction)
        NAME(cudaErrorInvalidResourceHandle)
        NAME(cudaErrorNotSupported)
        NAME(cudaErrorStreamCaptureUnsupported)
        NAME(cudaErrorStreamCaptureInvalidated)
        NAME(cudaErrorStreamCaptureWrongThread)
        NAME(cudaErrorIllegalState)
        NAME(cudaErrorLaunchFailure)
#undef NAME
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess:
        return "no error";
    case cudaErrorInvalidValue:
        return "invalid argument";
    case cudaErrorMemoryAllocation:
        return "out of memory";
    case cudaErrorInvalidConfiguration:
        return "invalid configuration argument";
    case cudaErrorStreamCaptureUnsupported:
        return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
        return "operation failed due to a previous error during capture";
    case cudaErrorLaunchFailure:
        return "unspecified launch failure";
    default:
        return cudaGetErrorName(e);
    }
}

cudaError_t cudaGetLastError(void)
{
    const int sticky = sticky_error.load();
    if (sticky)
        return (cudaError_t)sticky;
    const cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

// ---- the device ----------------------------------------------------------------------------

static int device_count(void)
{
    const char *n = getenv("TMIX_EMU_DEVICES"); // how many GPUs to pretend (default 1)
    return n && *n ? atoi(n) : 1;
}

static thread_local int current_device = 0;

cudaError_t cudaDriverGetVersion(int *version)
{
    *version = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = device_count();
    return *count > 0 ? cudaSuccess : fail(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device)
{
    STICKY_CHECK();
    if (device < 0 || device >= device_count())
        return fail(cudaErrorInvalidDevice);
    current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device)
{
    *device = current_device;
    return cudaSuccess;
}

// The device memory the emulator pretends to have: TMIX_EMU_MEMORY_BYTES, 16 GiB by default.
static size_t memory_total(void)
{
    const char *n = getenv("TMIX_EMU_MEMORY_BYTES");
    return n && *n ? (size_t)strtoull(n, NULL, 10) : (size_t)16 << 30;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
    if (device < 0 || device >= device_count())
        return fail(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "tmix CUDA emulator");
    prop->totalGlobalMem = memory_total();
    prop->major = 9;
    prop->multiProcessorCount = 1;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device)
{
    (void)attr;
    if (device < 0 || device >= device_count())
        return fail(cudaErrorInvalidDevice);
    *value = 0; // no IPC: memory handles cannot leave this process
    return cudaSuccess;
}

cudaError_t cudaDeviceGetPCIBusId(char *out, int len, int device)
{
    if (device < 0 || device >= device_count())
        return fail(cudaErrorInvalidDevice);
    snprintf(out, (size_t)len, "0000:%02x:00.0", 0xe0 + device);
    return cudaSuccess;
}

cudaError_t tmix_emu_func_attributes(cudaFuncAttributes *attr)
{
    STICKY_CHECK();
    attr->maxThreadsPerBlock = 1024;
    attr->numRegs = 32;
    return cudaSuccess;
}

// ---- streams, graphs and capture -----------------------------------------------------------

typedef std::function<void()> work;

struct CUgraph_st {
    std::vector<work> nodes;
    std::vector<void *> owned; // allocated while captured: freed with the graph
};
struct CUgraphExec_st {
    std::vector<work> nodes;
    std::vector<void *> owned;
};
struct CUstream_st {
    CUgraph_st *capture; // the graph being captured, else NULL
    bool invalidated;    // a call the capture forbids was made: EndCapture fails
};
struct CUevent_st {
    double ms; // host time of its last record, in milliseconds
};

static CUstream_st legacy_stream;           // stream 0
static thread_local CUstream_st *capturing; // the stream this thread captures, if any

static CUstream_st *stream_of(cudaStream_t s)
{
    return s ? s : &legacy_stream;
}

// A call a thread-local capture forbids on its thread (one that synchronises): it fails and
// spoils the capture, as in CUDA.
static bool forbidden_while_capturing(void)
{
    if (!capturing)
        return false;
    capturing->invalidated = true;
    fail(cudaErrorStreamCaptureUnsupported);
    return true;
}

static void free_owned(std::vector<void *> &owned); // (memory, below)

void tmix_emu::enqueue(cudaStream_t s, std::function<void()> w)
{
    CUstream_st *st = stream_of(s);
    if (st->capture)
        st->capture->nodes.push_back(std::move(w));
    else
        w();
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags)
{
    (void)flags;
    STICKY_CHECK();
    *s = new CUstream_st{};
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    if (s && s->capture)
        delete s->capture;
    delete s;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    STICKY_CHECK();
    if (forbidden_while_capturing())
        return cudaErrorStreamCaptureUnsupported;
    if (stream_of(s)->capture) { // captured by another thread
        stream_of(s)->invalidated = true;
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    return cudaSuccess; // its work ran when it was queued
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode)
{
    (void)mode; // thread-local semantics, the mode the plugin uses
    STICKY_CHECK();
    if (!s || s->capture || capturing)
        return fail(cudaErrorIllegalState);
    s->capture = new CUgraph_st{};
    s->invalidated = false;
    capturing = s;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph)
{
    *graph = NULL;
    if (!s || !s->capture)
        return fail(cudaErrorIllegalState);
    if (capturing != s)
        return fail(cudaErrorStreamCaptureWrongThread);
    CUgraph_st *g = s->capture;
    s->capture = NULL;
    capturing = NULL;
    if (s->invalidated) {
        free_owned(g->owned);
        delete g;
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    *graph = g;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags)
{
    (void)flags;
    STICKY_CHECK();
    // The executable graph takes the nodes and the memory they use; the graph keeps nothing.
    *exec = new CUgraphExec_st{std::move(graph->nodes), std::move(graph->owned)};
    graph->nodes.clear();
    graph->owned.clear();
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s)
{
    STICKY_CHECK();
    if (!exec)
        return fail(cudaErrorInvalidResourceHandle);
    tmix_emu::enqueue(s, [exec]() {
        for (const work &w : exec->nodes)
            w();
    });
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    if (graph)
        free_owned(graph->owned);
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
    if (exec)
        free_owned(exec->owned);
    delete exec;
    return cudaSuccess;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

cudaError_t cudaEventCreate(cudaEvent_t *e)
{
    return cudaEventCreateWithFlags(e, 0);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags)
{
    (void)flags;
    STICKY_CHECK();
    *e = new CUevent_st{now_ms()};
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    STICKY_CHECK();
    if (!e)
        return fail(cudaErrorInvalidResourceHandle);
    tmix_emu::enqueue(s, [e]() { e->ms = now_ms(); });
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    STICKY_CHECK();
    if (!e)
        return fail(cudaErrorInvalidResourceHandle);
    if (forbidden_while_capturing())
        return cudaErrorStreamCaptureUnsupported;
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t from, cudaEvent_t to)
{
    STICKY_CHECK();
    if (!from || !to)
        return fail(cudaErrorInvalidResourceHandle);
    *ms = (float)(to->ms - from->ms);
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    delete e;
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags)
{
    (void)s;
    (void)flags;
    STICKY_CHECK();
    return e ? cudaSuccess : fail(cudaErrorInvalidResourceHandle); // one timeline: it has run
}

cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t *h, void *p)
{
    (void)h;
    (void)p;
    return fail(cudaErrorNotSupported);
}

cudaError_t cudaIpcGetEventHandle(cudaIpcEventHandle_t *h, cudaEvent_t e)
{
    (void)h;
    (void)e;
    return fail(cudaErrorNotSupported);
}

// ---- memory --------------------------------------------------------------------------------

static std::mutex memory_lock;
// What cudaFree may be given. Never destroyed: device memory a process leaves behind (as
// tmixd does after a GPU fault) goes with the process, as a GPU's does, and stays reachable
// for LeakSanitizer through this map.
static auto &device_blocks = *new std::unordered_map<void *, size_t>;
static size_t device_bytes;

static cudaError_t device_alloc(void **p, size_t bytes)
{
    *p = NULL;
    std::lock_guard<std::mutex> hold(memory_lock);
    if (bytes > memory_total() - device_bytes)
        return fail(cudaErrorMemoryAllocation);
    // Aligned as cudaMalloc's, and exactly `bytes` long, so that ASan sees a kernel that
    // reads or writes even one element past a tensor.
    void *q = NULL;
    if (posix_memalign(&q, 256, bytes ? bytes : 1) != 0)
        return fail(cudaErrorMemoryAllocation);
    device_blocks[q] = bytes;
    device_bytes += bytes;
    *p = q;
    return cudaSuccess;
}

static cudaError_t device_free(void *p)
{
    if (!p)
        return cudaSuccess;
    std::lock_guard<std::mutex> hold(memory_lock);
    auto it = device_blocks.find(p);
    if (it == device_blocks.end())
        return fail(cudaErrorInvalidValue); // not device memory, or freed already
    device_bytes -= it->second;
    device_blocks.erase(it);
    free(p);
    return cudaSuccess;
}

static void free_owned(std::vector<void *> &owned)
{
    for (void *p : owned)
        (void)device_free(p);
    owned.clear();
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    STICKY_CHECK();
    if (forbidden_while_capturing())
        return cudaErrorStreamCaptureUnsupported;
    return device_alloc(p, bytes);
}

cudaError_t cudaFree(void *p)
{
    STICKY_CHECK();
    if (forbidden_while_capturing())
        return cudaErrorStreamCaptureUnsupported;
    return device_free(p);
}

// Memory allocated while a stream captures stays at its address for every replay: it is
// allocated now, and if the capture also frees it, it is freed with the graph.
cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t s)
{
    STICKY_CHECK();
    const cudaError_t e = device_alloc(p, bytes);
    CUstream_st *st = stream_of(s);
    if (e == cudaSuccess && st->capture)
        st->capture->owned.push_back(*p);
    return e;
}

cudaError_t cudaFreeAsync(void *p, cudaStream_t s)
{
    STICKY_CHECK();
    CUstream_st *st = stream_of(s);
    if (st->capture) {
        for (void *q : st->capture->owned)
            if (q == p)
                return cudaSuccess; // freed with the graph
        // Freed by every replay, as a free node of a CUDA graph is.
        st->capture->nodes.push_back([p]() { (void)device_free(p); });
        return cudaSuccess;
    }
    return device_free(p);
}

cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned flags)
{
    (void)flags;
    STICKY_CHECK();
    *p = aligned_alloc(4096, (bytes + 4095) / 4096 * 4096 + 4096 * !bytes);
    return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void *p)
{
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total)
{
    STICKY_CHECK();
    std::lock_guard<std::mutex> hold(memory_lock);
    *total = memory_total();
    *free_bytes = *total - device_bytes;
    return cudaSuccess;
}

static struct CUmemPool_st {
} default_pool;

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int device)
{
    if (device < 0 || device >= device_count())
        return fail(cudaErrorInvalidDevice);
    *pool = &default_pool;
    return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void *value)
{
    (void)attr;
    (void)value;
    return pool ? cudaSuccess : fail(cudaErrorInvalidValue);
}

cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t keep)
{
    (void)keep;
    return pool ? cudaSuccess : fail(cudaErrorInvalidValue);
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    (void)kind;
    STICKY_CHECK();
    if (forbidden_while_capturing())
        return cudaErrorStreamCaptureUnsupported;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s)
{
    (void)kind;
    STICKY_CHECK();
    tmix_emu::enqueue(s, [dst, src, bytes]() { memmove(dst, src, bytes); });
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s)
{
    STICKY_CHECK();
    tmix_emu::enqueue(s, [p, value, bytes]() { memset(p, value, bytes); });
    return cudaSuccess;
}

// ---- kernels -------------------------------------------------------------------------------

struct trapped {
}; // thrown by __trap out of a kernel run without fibers

static std::mutex kernel_lock;    // held by the thread that runs a kernel
static struct block_run *running; // the block whose fibers run, if any

// A sleeping kernel lets others run meanwhile, as a GPU's other streams go on beside a
// kernel that waits (or hangs); its indices are put back when it wakes.
void tmix_emu_nanosleep(unsigned ns)
{
    const uint3 thread = tmix_emu_thread_idx, block = tmix_emu_block_idx;
    const dim3 block_dim = tmix_emu_block_dim, grid_dim = tmix_emu_grid_dim;
    struct block_run *fibers = running;
    kernel_lock.unlock();
    struct timespec t = {0, (long)ns};
    nanosleep(&t, NULL);
    kernel_lock.lock();
    tmix_emu_thread_idx = thread;
    tmix_emu_block_idx = block;
    tmix_emu_block_dim = block_dim;
    tmix_emu_grid_dim = grid_dim;
    running = fibers;
}

// One block's threads as fibers, and its barriers. A barrier counts the threads still
// running, as a GPU counts the threads that have not exited.
enum { RUNNING, AT_BLOCK_BARRIER, AT_WARP_BARRIER, EXITED };

struct barrier {
    unsigned live, arrived;
    uint64_t generation;
};

// A fiber runs one thread after another: made once (its context starts fiber_main on its own
// stack), it then loops, and every switch after the first is a sigsetjmp/siglongjmp that
// keeps the signal mask, which makes no system call (swapcontext saves and restores the signal mask at each switch: most
// of a block's time when it waits at barriers).
struct fiber {
    ucontext_t start; // fiber_main at the top of its stack; only read (setcontext) once made
    sigjmp_buf waits; // where it stopped, while started
    bool made, started;
    uint3 idx;
    unsigned linear;
    int state;
    uint64_t waits_for; // the generation it waits to see pass
#ifdef EMU_ASAN
    void *fake_stack;
#endif
};

struct block_run {
    const tmix_emu::kernel_run *run;
    sigjmp_buf scheduler;
    fiber *fibers;
    unsigned count;
    fiber *current;
    barrier block;
    barrier warps[32];
    unsigned warp_size[32];
    uint64_t exchange[1024]; // shuffled values, by linear thread index
    bool trapped;            // a thread called __trap: the block (and kernel) ends there
#ifdef EMU_ASAN
    void *scheduler_fake_stack;
    const void *scheduler_stack;
    size_t scheduler_stack_size;
#endif
};

// A kernel thread's frames are small; the stacks lie side by side, and the smaller, the fewer
// pages and cache lines a block's thousand switches touch. ASan's redzones need more.
#ifdef EMU_ASAN
enum { FIBER_STACK = 128 * 1024 };
#else
enum { FIBER_STACK = 16 * 1024 };
#endif
static char *stacks;
static size_t stacks_count;

static char *fiber_stack(unsigned i)
{
    if (!stacks) {
        stacks_count = 1024;
        void *m = mmap(NULL, stacks_count * FIBER_STACK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
            fatal("no memory for fiber stacks");
        stacks = (char *)m;
    }
    return stacks + (size_t)i * FIBER_STACK;
}

// From fiber f back to the block's scheduler; returns when the scheduler resumes f. exiting:
// f never is (a trap), so ASan may drop its fake stack.
static void switch_to_scheduler(fiber *f, bool exiting)
{
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(exiting ? NULL : &f->fake_stack, running->scheduler_stack,
                                   running->scheduler_stack_size);
#else
    (void)exiting;
#endif
    if (sigsetjmp(f->waits, 0) == 0)
        siglongjmp(running->scheduler, 1);
#ifdef EMU_ASAN
    // running: resumed by a later block's scheduler, maybe on another thread's stack
    __sanitizer_finish_switch_fiber(f->fake_stack, &running->scheduler_stack,
                                    &running->scheduler_stack_size);
#endif
}

// Lets every thread waiting at b go on once all the threads still running have arrived.
static bool release_if_complete(barrier *b)
{
    if (b->arrived == 0 || b->arrived < b->live)
        return false;
    b->arrived = 0;
    b->generation++;
    return true;
}

static void wait_at(barrier *b, int state)
{
    fiber *f = running->current;
    b->arrived++;
    if (release_if_complete(b))
        return;
    f->state = state;
    f->waits_for = b->generation;
    switch_to_scheduler(f, false);
    f->state = RUNNING;
}

void tmix_emu_syncthreads(void)
{
    if (!running)
        fatal("__syncthreads in a kernel run without fibers: cu2cc.py must see that its "
              "file waits at barriers");
    wait_at(&running->block, AT_BLOCK_BARRIER);
}

uint64_t tmix_emu_shfl_down(uint64_t bits, unsigned delta)
{
    if (!running)
        fatal("a shuffle in a kernel run without fibers: cu2cc.py must see that its file "
              "shuffles");
    block_run *b = running;
    const unsigned linear = b->current->linear, warp = linear / 32, lane = linear % 32;
    barrier *w = &b->warps[warp];
    if (b->warp_size[warp] != 32 || w->live != 32)
        fatal("%s: a full-warp shuffle in warp %u, which has %u of 32 threads running",
              b->run->name, warp, w->live);
    b->exchange[linear] = bits;
    wait_at(w, AT_WARP_BARRIER);
    const uint64_t got = lane + delta < 32 ? b->exchange[linear + delta] : bits;
    wait_at(w, AT_WARP_BARRIER); // every lane has read before any writes again
    return got;
}

void tmix_emu_trap(void)
{
    if (!running)
        throw trapped{};
    running->trapped = true; // the fiber is never resumed
    switch_to_scheduler(running->current, true);
    fatal("a trapped fiber was resumed");
}

static void fiber_main(void)
{
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, &running->scheduler_stack,
                                    &running->scheduler_stack_size);
#endif
    for (;;) { // a thread of the block that resumed it, then wait for the next block's
        block_run *b = running;
        fiber *f = b->current;
        b->run->thread();
        f->state = EXITED;
        b->block.live--;
        b->warps[f->linear / 32].live--;
        release_if_complete(&b->block);
        release_if_complete(&b->warps[f->linear / 32]);
        switch_to_scheduler(f, false);
    }
}

static bool may_run(const block_run *b, const fiber *f)
{
    switch (f->state) {
    case RUNNING:
        return true;
    case AT_BLOCK_BARRIER:
        return b->block.generation != f->waits_for;
    case AT_WARP_BARRIER:
        return b->warps[f->linear / 32].generation != f->waits_for;
    default:
        return false;
    }
}

static void set_thread_idx(const dim3 &block, unsigned linear)
{
    tmix_emu_thread_idx = {linear % block.x, linear / block.x % block.y,
                           linear / (block.x * block.y)};
}

// Fiber i, made on first use, set to run thread i of a new block.
static void fiber_init(fiber *f, const dim3 &block, unsigned i)
{
    if (!f->made) {
        getcontext(&f->start);
        f->start.uc_stack.ss_sp = fiber_stack(i);
        f->start.uc_stack.ss_size = FIBER_STACK;
        f->start.uc_link = NULL;
        makecontext(&f->start, fiber_main, 0);
        f->made = true;
    }
    f->linear = i;
    set_thread_idx(block, i);
    f->idx = tmix_emu_thread_idx;
    f->state = RUNNING;
    f->waits_for = 0;
}

// Runs fiber i of b until it waits or exits.
static void resume(block_run *b, fiber *f, unsigned i)
{
    b->current = f;
    tmix_emu_thread_idx = f->idx;
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(&b->scheduler_fake_stack, fiber_stack(i), FIBER_STACK);
#else
    (void)i;
#endif
    if (sigsetjmp(b->scheduler, 0) == 0) {
        if (f->started)
            siglongjmp(f->waits, 1);
        f->started = true;
        setcontext(&f->start);
    }
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(b->scheduler_fake_stack, NULL, NULL);
#endif
}

// Runs one block's threads as fibers; false when one trapped.
static bool run_block_fibers(const tmix_emu::kernel_run &run, unsigned count)
{
    static fiber fibers[1024];
    block_run b;
    memset((void *)&b, 0, sizeof b);
    b.run = &run;
    b.fibers = fibers;
    b.count = count;
    b.block.live = count;
    for (unsigned w = 0; w * 32 < count; w++)
        b.warps[w].live = b.warp_size[w] = count - w * 32 < 32 ? count - w * 32 : 32;
    running = &b;
    for (unsigned i = 0; i < count; i++)
        fiber_init(&fibers[i], run.block, i);
    unsigned exited = 0;
    while (exited < count) {
        bool progress = false;
        for (unsigned i = 0; i < count; i++) {
            fiber *f = &fibers[i];
            if (!may_run(&b, f))
                continue;
            progress = true;
            resume(&b, f, i);
            if (b.trapped) { // the block's fibers stopped mid-thread start afresh next time
                for (unsigned k = 0; k < count; k++)
                    fibers[k].started = false;
                running = NULL;
                return false;
            }
            exited += f->state == EXITED;
        }
        if (!progress)
            fatal("%s: block (%u,%u,%u) is stuck: threads wait at a barrier that the others "
                  "never reach",
                  run.name, tmix_emu_block_idx.x, tmix_emu_block_idx.y, tmix_emu_block_idx.z);
    }
    running = NULL;
    return true;
}

// Runs every block of the kernel, one after another; false when it trapped.
static bool run_kernel(const tmix_emu::kernel_run &run)
{
    const dim3 g = run.grid, bd = run.block;
    const unsigned count = bd.x * bd.y * bd.z;
    tmix_emu_grid_dim = g;
    tmix_emu_block_dim = bd;
    try {
        for (unsigned z = 0; z < g.z; z++)
            for (unsigned y = 0; y < g.y; y++)
                for (unsigned x = 0; x < g.x; x++) {
                    tmix_emu_block_idx = {x, y, z};
                    if (run.fibers) {
                        if (!run_block_fibers(run, count))
                            return false;
                        continue;
                    }
                    for (unsigned i = 0; i < count; i++) {
                        set_thread_idx(bd, i);
                        run.thread();
                    }
                }
    } catch (trapped &) {
        return false;
    }
    return true;
}

static bool config_ok(const dim3 &g, const dim3 &b, size_t shmem)
{
    const uint64_t threads = (uint64_t)b.x * b.y * b.z;
    return g.x >= 1 && g.y >= 1 && g.z >= 1 && b.x >= 1 && b.y >= 1 && b.z >= 1 &&
           g.x <= 0x7fffffffu && g.y <= 65535 && g.z <= 65535 && b.x <= 1024 && b.y <= 1024 &&
           b.z <= 64 && threads <= 1024 && shmem <= 48 * 1024;
}

void tmix_emu::submit(kernel_run run, size_t shmem, cudaStream_t s)
{
    if (sticky_error.load()) {
        fail((cudaError_t)sticky_error.load());
        return;
    }
    if (!config_ok(run.grid, run.block, shmem)) {
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    tmix_emu::enqueue(s, [run]() {
        std::lock_guard<std::mutex> hold(kernel_lock);
        if (!run_kernel(run))
            sticky_error.store(cudaErrorLaunchFailure);
    });
}
