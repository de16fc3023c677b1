// The fake GPU's streams and graphs (fake.h). Each backend has a thread that runs its calls
// in order after they have returned to the caller, as a CUDA stream runs kernels; between
// capture_begin and capture_end the calls are recorded instead, and a graph launch queues
// them again.
//
// A queued call holds its arguments as a kernel launch does: tensors (pointer and shape)
// and parameters by value; a host array by address when it is pinned (tmix_host_alloc: read
// when the call runs, as the real plugin's copies from pinned memory are), else copied at
// once (the real plugin stages pageable memory before it returns). So a caller that reads a
// result before a synchronize, overwrites pinned memory that queued work still reads, or
// changes a host value that a graph baked in gets what it would get on a GPU: wrong batches
// (or, under ASan, a use after free).
//
// A call that fails leaves its error sticky, as a CUDA fault does: the calls queued after it
// do not run, and every later call and synchronize on that backend fails with it. Frees
// still run: a real context's memory goes back when the process tears it down.
//
// A CUDA IPC buffer's fill is queued too, and takes a while when it runs (SLOW_FILL_US), so
// that a batch sent before its slot is filled reads stale bytes in the tests; reads and
// frees of the buffer, from any stream, wait for its fills (its event, which counts them).
// With TMIX_FAKE_SLOW_READ_MS set, each read back from a buffer takes that much longer, as
// a copy from a busy GPU can, so that a test sees which thread waits for it.
//
// What a real capture cannot record fails here too and spoils the capture (capture_end then
// fails with the first reason): allocating or freeing device memory, synchronous copies,
// waiting for the device, IPC buffer work, host arrays not from tmix_host_alloc, and growing
// the scratch buffer. As the real plugin does, a graph is refused after the scratch buffer
// that it baked in was made anew (fake.h).
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "fake.h"
#include "golden.h"

enum { MAX_TENSORS = 9, MAX_HOST = 3, SLOW_FILL_US = 3000 };

typedef enum {
    OP_UPLOAD, OP_DOWNLOAD, OP_ZERO, OP_FREE, OP_MARK, OP_GRAPH, OP_IPC_FILL,
    OP_CONV2D_FORWARD, OP_CONV2D_BACKWARD_INPUT, OP_CONV2D_BACKWARD_WEIGHT, OP_BIAS_BACKWARD,
    OP_BATCHNORM_FORWARD, OP_BATCHNORM_BACKWARD_INPUT, OP_RELU_FORWARD, OP_RELU_BACKWARD,
    OP_MAXPOOL2D_FORWARD, OP_MAXPOOL2D_BACKWARD, OP_AVGPOOL_FORWARD, OP_AVGPOOL_BACKWARD,
    OP_LINEAR_FORWARD, OP_LINEAR_BACKWARD_INPUT, OP_LINEAR_BACKWARD_WEIGHT,
    OP_AFFINE_GRID_FORWARD, OP_AFFINE_GRID_BACKWARD, OP_GRID_SAMPLE_FORWARD,
    OP_GRID_SAMPLE_BACKWARD, OP_RESIZE_BILINEAR_FORWARD, OP_MINMAX_NORMALIZE_FORWARD,
    OP_SOFTMAX_CHANNEL_FORWARD, OP_SOFTMAX_CHANNEL_BACKWARD, OP_BLEND_FORWARD,
    OP_BLEND_BACKWARD, OP_ADD, OP_CONCAT_CHANNELS_FORWARD, OP_CONCAT_CHANNELS_BACKWARD,
    OP_FILL_CHANNELS, OP_GATHER, OP_CAM_FORWARD, OP_BOX_MASKS, OP_CROSS_ENTROPY_FORWARD,
    OP_CROSS_ENTROPY_BACKWARD, OP_SGD_UPDATE, OP_PREPROCESS, OP_ENCODE_IMAGES,
    OP_BATCHNORM_TRAIN_FORWARD, OP_BATCHNORM_TRAIN_BACKWARD,
} op_kind;

// One call, queued or recorded.
typedef struct {
    op_kind op;
    tmix_tensor t[MAX_TENSORS];
    bool null[MAX_TENSORS];       // an optional tensor passed as NULL (a bias)
    const void *host[MAX_HOST];   // host arrays it reads
    size_t host_bytes[MAX_HOST];
    void *staged[MAX_HOST];       // copies of pageable ones, freed once the call ran
    void *host_out;               // a download's destination
    bool waits;                   // the caller waits for it: its host arrays need no copies
    union {
        tmix_conv2d_params conv;
        tmix_pool2d_params pool;
        tmix_sgd_params sgd;
        tmix_batchnorm_train_params bn;
        tmix_image_format format;
        int c0;
        bool relu;
        double *mark;
        tmix_graph *graph;
        struct {
            tmix_ipc_buffer to; // its event counts the fill
            const void *src;    // device (or pinned) memory, read when the fill runs
            size_t bytes;
        } fill;
    } p;
    int64_t step;
} fake_call;

typedef struct {
    fake_call *calls;
    size_t n, cap;
} call_list;

struct fake_recording {
    call_list list;
    char spoiled[256]; // the first reason the capture cannot become a graph; "" if none
};

struct tmix_graph {
    call_list list;
    uint64_t scratch_generation;
};

struct fake_stream {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t queued, ran; // a call was queued; the thread ran what it had taken
    call_list pending, running; // the queue, and what the thread runs now
    bool stop;
    int error;                  // sticky: the first failure of a queued call
    char message[512];
};

// The calls that do the work (the CPU's ops and fake_cuda.c's memory functions).
static tmix_backend_ops inner;

static fake_backend *fake(tmix_backend *be) { return (fake_backend *)be; }

static int append(tmix_backend *be, call_list *l, const fake_call *c)
{
    if (l->n == l->cap) {
        const size_t cap = l->cap ? 2 * l->cap : 64;
        fake_call *calls = realloc(l->calls, cap * sizeof *calls);
        if (!calls)
            return tmix_fail(TMIX_ENOMEM, "%s: no memory to queue a call", be->name);
        l->calls = calls;
        l->cap = cap;
    }
    l->calls[l->n++] = *c;
    return 0;
}

// ---- pinned host memory -------------------------------------------------------------------

static pthread_mutex_t pinned_lock = PTHREAD_MUTEX_INITIALIZER;
static struct block {
    const char *p;
    size_t bytes;
} *pinned;
static size_t npinned, cap_pinned;

static bool is_pinned(const void *p)
{
    bool found = false;
    pthread_mutex_lock(&pinned_lock);
    for (size_t i = 0; i < npinned && !found; i++)
        found = (const char *)p >= pinned[i].p && (const char *)p < pinned[i].p + pinned[i].bytes;
    pthread_mutex_unlock(&pinned_lock);
    return found;
}

static int host_alloc(tmix_backend *be, size_t bytes, void **out)
{
    void *p = malloc(bytes);
    pthread_mutex_lock(&pinned_lock);
    if (p && npinned == cap_pinned) {
        const size_t cap = cap_pinned ? 2 * cap_pinned : 64;
        struct block *b = realloc(pinned, cap * sizeof *b);
        if (b) {
            pinned = b;
            cap_pinned = cap;
        }
    }
    const bool kept = p && npinned < cap_pinned;
    if (kept)
        pinned[npinned++] = (struct block){p, bytes};
    pthread_mutex_unlock(&pinned_lock);
    if (!kept) {
        free(p);
        return tmix_fail(TMIX_ENOMEM, "%s: %zu bytes of pinned host memory", be->name, bytes);
    }
    *out = p;
    return 0;
}

static int wait_idle(tmix_backend *be);

// cudaFreeHost waits for the device first: queued copies may still read the memory.
static void host_free(tmix_backend *be, void *p)
{
    (void)wait_idle(be);
    pthread_mutex_lock(&pinned_lock);
    for (size_t i = 0; i < npinned; i++) {
        if (pinned[i].p == p) {
            pinned[i] = pinned[--npinned];
            break;
        }
    }
    pthread_mutex_unlock(&pinned_lock);
    free(p);
}

// ---- IPC buffers' events --------------------------------------------------------------------

// A buffer's event: its fills queued and not yet run, on whichever stream.
typedef struct {
    int pending;
} ipc_event;

static pthread_mutex_t ipc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ipc_done = PTHREAD_COND_INITIALIZER;

static void ipc_count(const tmix_ipc_buffer *b, int delta)
{
    pthread_mutex_lock(&ipc_lock);
    ((ipc_event *)b->event)->pending += delta;
    pthread_cond_broadcast(&ipc_done);
    pthread_mutex_unlock(&ipc_lock);
}

// Waits until b's fills have run (or been dropped after a failure).
static void ipc_wait(const tmix_ipc_buffer *b)
{
    pthread_mutex_lock(&ipc_lock);
    while (((ipc_event *)b->event)->pending)
        pthread_cond_wait(&ipc_done, &ipc_lock);
    pthread_mutex_unlock(&ipc_lock);
}

// ---- running calls ----------------------------------------------------------------------

#define T(i) (c->null[i] ? NULL : &c->t[i])

static int run(tmix_backend *be, const fake_call *c)
{
    switch (c->op) {
    case OP_UPLOAD: return inner.upload(be, (tmix_tensor *)T(0), c->host[0]);
    case OP_DOWNLOAD: return inner.download(be, c->host_out, T(0));
    case OP_ZERO: return inner.zero(be, (tmix_tensor *)T(0));
    case OP_FREE: inner.free(be, (tmix_tensor *)T(0)); return 0;
    case OP_MARK: *c->p.mark = tmix_now_ms(); return 0;
    case OP_IPC_FILL:
        nanosleep(&(struct timespec){0, SLOW_FILL_US * 1000}, NULL);
        return inner.ipc_buffer_fill(be, (tmix_ipc_buffer *)&c->p.fill.to, c->p.fill.src,
                                     c->p.fill.bytes);
    case OP_GRAPH:
        for (size_t i = 0; i < c->p.graph->list.n; i++)
            TMIX_TRY(run(be, &c->p.graph->list.calls[i]));
        return 0;
    default: break;
    }
    tmix_tensor *o = (tmix_tensor *)T(0), *o2 = (tmix_tensor *)T(1);
    switch (c->op) {
    case OP_CONV2D_FORWARD: return inner.conv2d_forward(be, o, T(1), T(2), T(3), c->p.conv);
    case OP_CONV2D_BACKWARD_INPUT: return inner.conv2d_backward_input(be, o, T(1), T(2), c->p.conv);
    case OP_CONV2D_BACKWARD_WEIGHT:
        return inner.conv2d_backward_weight(be, o, T(1), T(2), c->p.conv);
    case OP_BIAS_BACKWARD: return inner.bias_backward(be, o, T(1));
    case OP_BATCHNORM_FORWARD: return inner.batchnorm_forward(be, o, T(1), T(2), T(3));
    case OP_BATCHNORM_BACKWARD_INPUT: return inner.batchnorm_backward_input(be, o, T(1), T(2));
    case OP_RELU_FORWARD: return inner.relu_forward(be, o, T(1));
    case OP_RELU_BACKWARD: return inner.relu_backward(be, o, T(1), T(2));
    case OP_MAXPOOL2D_FORWARD: return inner.maxpool2d_forward(be, o, T(1), c->p.pool);
    case OP_MAXPOOL2D_BACKWARD: return inner.maxpool2d_backward(be, o, T(1), T(2), c->p.pool);
    case OP_AVGPOOL_FORWARD: return inner.avgpool_forward(be, o, T(1));
    case OP_AVGPOOL_BACKWARD: return inner.avgpool_backward(be, o, T(1));
    case OP_LINEAR_FORWARD: return inner.linear_forward(be, o, T(1), T(2), T(3));
    case OP_LINEAR_BACKWARD_INPUT: return inner.linear_backward_input(be, o, T(1), T(2));
    case OP_LINEAR_BACKWARD_WEIGHT: return inner.linear_backward_weight(be, o, T(1), T(2));
    case OP_AFFINE_GRID_FORWARD: return inner.affine_grid_forward(be, o, T(1));
    case OP_AFFINE_GRID_BACKWARD: return inner.affine_grid_backward(be, o, T(1));
    case OP_GRID_SAMPLE_FORWARD: return inner.grid_sample_forward(be, o, T(1), T(2));
    case OP_GRID_SAMPLE_BACKWARD: return inner.grid_sample_backward(be, o, o2, T(2), T(3), T(4));
    case OP_RESIZE_BILINEAR_FORWARD: return inner.resize_bilinear_forward(be, o, T(1));
    case OP_MINMAX_NORMALIZE_FORWARD: return inner.minmax_normalize_forward(be, o, T(1));
    case OP_SOFTMAX_CHANNEL_FORWARD: return inner.softmax_channel_forward(be, o, T(1), T(2));
    case OP_SOFTMAX_CHANNEL_BACKWARD:
        return inner.softmax_channel_backward(be, o, o2, T(2), T(3), T(4), T(5));
    case OP_BLEND_FORWARD: return inner.blend_forward(be, o, T(1), T(2));
    case OP_BLEND_BACKWARD: return inner.blend_backward(be, o, o2, T(2), T(3), T(4));
    case OP_ADD: return inner.add(be, o, T(1), T(2), c->p.relu);
    case OP_CONCAT_CHANNELS_FORWARD: return inner.concat_channels_forward(be, o, T(1), c->p.c0);
    case OP_CONCAT_CHANNELS_BACKWARD: return inner.concat_channels_backward(be, o, T(1), c->p.c0);
    case OP_FILL_CHANNELS: return inner.fill_channels(be, o, T(1), c->p.c0);
    case OP_GATHER: return inner.gather(be, o, T(1), c->host[0]);
    case OP_CAM_FORWARD: return inner.cam_forward(be, o, T(1), T(2), c->host[0]);
    case OP_BOX_MASKS: return inner.box_masks(be, o, c->host[0]);
    case OP_CROSS_ENTROPY_FORWARD: return inner.cross_entropy_forward(be, o, T(1), T(2));
    case OP_CROSS_ENTROPY_BACKWARD: return inner.cross_entropy_backward(be, o, T(1), T(2));
    case OP_SGD_UPDATE:
        return inner.sgd_update(be, o, T(1), (tmix_tensor *)T(2), c->p.sgd, c->step);
    case OP_PREPROCESS: return inner.preprocess(be, o, T(1), c->host[0], c->host[1], c->host[2]);
    case OP_ENCODE_IMAGES:
        return inner.encode_images(be, o, T(1), c->p.format, c->host[0], c->host[1]);
    case OP_BATCHNORM_TRAIN_FORWARD:
        return inner.batchnorm_train_forward(be, o, o2, (tmix_tensor *)T(2), (tmix_tensor *)T(3),
                                             (tmix_tensor *)T(4), T(5), T(6), T(7), c->p.bn);
    case OP_BATCHNORM_TRAIN_BACKWARD:
        return inner.batchnorm_train_backward(be, o, o2, (tmix_tensor *)T(2), T(3), T(4), T(5),
                                              T(6), T(7));
    default:
        return tmix_fail(TMIX_EINVAL, "%s: unknown call %d", be->name, (int)c->op);
    }
}

static void drop_staged(fake_call *c)
{
    for (int i = 0; i < MAX_HOST; i++)
        free(c->staged[i]);
}

// After c ran, or was dropped: its staged copies go, and a fill is counted done.
static void finish(fake_call *c)
{
    drop_staged(c);
    if (c->op == OP_IPC_FILL)
        ipc_count(&c->p.fill.to, -1);
}

// The stream's thread: takes what is queued, runs it in order (after a failure, only frees).
static void *stream_main(void *arg)
{
    tmix_backend *be = arg;
    fake_stream *s = fake(be)->stream;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->pending.n && !s->stop)
            pthread_cond_wait(&s->queued, &s->lock);
        if (!s->pending.n)
            break;
        const call_list take = s->pending;
        s->pending = s->running; // its buffer, emptied, is the next queue
        s->pending.n = 0;
        s->running = take;
        int error = s->error;
        pthread_mutex_unlock(&s->lock);
        char message[sizeof s->message] = "";
        for (size_t i = 0; i < take.n; i++) {
            if (error && take.calls[i].op == OP_FREE)
                run(be, &take.calls[i]);
            else if (!error && (error = run(be, &take.calls[i])) < 0)
                snprintf(message, sizeof message, "%s", tmix_last_error());
            finish(&take.calls[i]);
        }
        pthread_mutex_lock(&s->lock);
        if (error && !s->error) {
            s->error = error;
            memcpy(s->message, message, sizeof message);
        }
        s->running.n = 0;
        pthread_cond_broadcast(&s->ran);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

// The sticky error, in the caller's thread; s->lock held.
static int sticky(fake_stream *s)
{
    return s->error ? tmix_fail(s->error, "%s", s->message) : 0;
}

// Waits until every call queued on be has run: its sticky error, or 0.
static int wait_idle(tmix_backend *be)
{
    fake_stream *s = fake(be)->stream;
    pthread_mutex_lock(&s->lock);
    while (s->pending.n || s->running.n)
        pthread_cond_wait(&s->ran, &s->lock);
    const int rc = sticky(s);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int fake_stream_open(fake_backend *f)
{
    fake_stream *s = calloc(1, sizeof *s);
    if (!s)
        return tmix_fail(TMIX_ENOMEM, "%s: no memory for a stream", f->be.name);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->queued, NULL);
    pthread_cond_init(&s->ran, NULL);
    f->stream = s;
    if (pthread_create(&s->thread, NULL, stream_main, &f->be) != 0) {
        f->stream = NULL;
        free(s);
        return tmix_fail(TMIX_ENOMEM, "%s: cannot start the stream's thread", f->be.name);
    }
    return 0;
}

static void stream_close(fake_backend *f)
{
    fake_stream *s = f->stream;
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true; // after what is queued
    pthread_cond_signal(&s->queued);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    free(s->pending.calls);
    free(s->running.calls);
    free(s);
    f->stream = NULL;
}

// ---- queueing and recording ---------------------------------------------------------------

static void spoil(fake_recording *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void spoil(fake_recording *r, const char *fmt, ...)
{
    if (r->spoiled[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->spoiled, sizeof r->spoiled, fmt, ap);
    va_end(ap);
}

// What a capture cannot record: 0 when be is not capturing, else the capture is spoiled
// and the call fails, as cudaErrorStreamCaptureUnsupported fails it.
static int refused(tmix_backend *be, const char *what)
{
    fake_recording *r = fake(be)->recording;
    if (!r)
        return 0;
    spoil(r, "%s while capturing a graph", what);
    return tmix_fail(TMIX_ECUDA, "%s: %s: operation not permitted when stream is capturing",
                     be->name, what);
}

// The real plugin's scratch buffer, for host arrays of `bytes` (see fake.h): made anew when
// too small, which a capture cannot record.
static int scratch_need(tmix_backend *be, size_t bytes)
{
    fake_backend *f = fake(be);
    if (bytes <= f->scratch_bytes)
        return 0;
    TMIX_TRY(refused(be, "growing the scratch buffer"));
    f->scratch_bytes = bytes < 65536 ? 65536 : bytes;
    f->scratch_generation++;
    return 0;
}

// A call of op with its n tensors (const tmix_tensor *, NULL for an absent optional one).
static fake_call call(op_kind op, int n, ...)
{
    fake_call c = {.op = op};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const tmix_tensor *t = va_arg(ap, const tmix_tensor *);
        c.null[i] = !t;
        if (t)
            c.t[i] = *t;
    }
    va_end(ap);
    return c;
}

static void host_array(fake_call *c, int i, const void *h, size_t bytes)
{
    c->host[i] = h;
    c->host_bytes[i] = bytes;
}

// Records c while be captures, else queues it on be's stream: its pageable host arrays are
// copied now (a capture cannot hold them). Returns the stream's sticky error, if any.
static int submit(tmix_backend *be, fake_call *c)
{
    fake_backend *f = fake(be);
    fake_recording *r = f->recording;
    for (int i = 0; i < MAX_HOST; i++) {
        if (!c->host[i] || c->waits || is_pinned(c->host[i]))
            continue;
        if (r) {
            spoil(r, "call %d reads host memory %p that is not from tmix_host_alloc", (int)c->op,
                  c->host[i]);
        } else if ((c->staged[i] = malloc(c->host_bytes[i] ? c->host_bytes[i] : 1))) {
            memcpy(c->staged[i], c->host[i], c->host_bytes[i]);
            c->host[i] = c->staged[i];
        } else {
            drop_staged(c);
            return tmix_fail(TMIX_ENOMEM, "%s: no memory to stage %zu bytes", be->name,
                             c->host_bytes[i]);
        }
    }
    if (r)
        return append(be, &r->list, c);
    fake_stream *s = f->stream;
    pthread_mutex_lock(&s->lock);
    int rc = sticky(s);
    if (rc == 0 && (rc = append(be, &s->pending, c)) == 0)
        pthread_cond_signal(&s->queued);
    pthread_mutex_unlock(&s->lock);
    if (rc < 0)
        drop_staged(c);
    return rc;
}

// ---- memory, copies, marks: what a capture cannot record, and what waits ------------------

static int alloc(tmix_backend *be, tmix_tensor *t)
{
    const int rc = refused(be, "alloc");
    return rc ? rc : inner.alloc(be, t);
}

// Stream-ordered, as cudaFreeAsync: work queued before it still reads the memory.
static void free_tensor(tmix_backend *be, tmix_tensor *t)
{
    if (refused(be, "free") == 0) {
        fake_call c = call(OP_FREE, 1, t);
        if (submit(be, &c) < 0) // a broken stream: free it now, nothing runs after a failure
            inner.free(be, t);
    }
}

static int upload(tmix_backend *be, tmix_tensor *dst, const void *src)
{
    TMIX_TRY(refused(be, "upload (synchronous)"));
    fake_call c = call(OP_UPLOAD, 1, dst);
    c.host[0] = src;
    c.waits = true;
    TMIX_TRY(submit(be, &c));
    return wait_idle(be);
}

static int download(tmix_backend *be, void *dst, const tmix_tensor *src)
{
    TMIX_TRY(refused(be, "download (synchronous)"));
    fake_call c = call(OP_DOWNLOAD, 1, src);
    c.host_out = dst;
    TMIX_TRY(submit(be, &c));
    return wait_idle(be);
}

static int synchronize(tmix_backend *be)
{
    TMIX_TRY(refused(be, "synchronize"));
    return wait_idle(be);
}

static int upload_async(tmix_backend *be, tmix_tensor *dst, const void *src)
{
    fake_call c = call(OP_UPLOAD, 1, dst);
    host_array(&c, 0, src, tmix_tensor_bytes(dst));
    return submit(be, &c);
}

// Into pageable memory the copy is synchronous, as cudaMemcpyAsync's is.
static int download_async(tmix_backend *be, void *dst, const tmix_tensor *src)
{
    if (!is_pinned(dst))
        return download(be, dst, src);
    fake_call c = call(OP_DOWNLOAD, 1, src);
    c.host_out = dst;
    return submit(be, &c);
}

// IPC buffers. A fill reads src when it runs: tmixd passes device memory, which queued work
// may still be writing (pageable host memory, which the real plugin reads at once, is not
// told apart).
static int ipc_buffer_fill(tmix_backend *be, tmix_ipc_buffer *b, const void *src, size_t bytes)
{
    TMIX_TRY(refused(be, "ipc_buffer_fill"));
    fake_call c = {.op = OP_IPC_FILL, .p.fill = {*b, src, bytes}};
    ipc_count(b, 1);
    const int rc = submit(be, &c);
    if (rc < 0)
        ipc_count(b, -1);
    return rc;
}

static int ipc_buffer_read(tmix_backend *be, const tmix_ipc_buffer *b, void *dst, size_t bytes)
{
    TMIX_TRY(refused(be, "ipc_buffer_read"));
    ipc_wait(b);
    const char *slow = getenv("TMIX_FAKE_SLOW_READ_MS");
    const long ms = slow ? atol(slow) : 0;
    if (ms > 0)
        nanosleep(&(struct timespec){ms / 1000, ms % 1000 * 1000000}, NULL);
    return inner.ipc_buffer_read(be, b, dst, bytes);
}

static int ipc_buffer_new(tmix_backend *be, size_t bytes, tmix_ipc_buffer *out)
{
    TMIX_TRY(refused(be, "ipc_buffer_new"));
    ipc_event *e = calloc(1, sizeof *e);
    if (!e)
        return tmix_fail(TMIX_ENOMEM, "%s: no memory for an IPC event", be->name);
    const int rc = inner.ipc_buffer_new(be, bytes, out);
    if (rc < 0) {
        free(e);
        return rc;
    }
    out->event = e;
    return 0;
}

static void ipc_buffer_free(tmix_backend *be, tmix_ipc_buffer *b)
{
    if (!b->event)
        return;
    ipc_wait(b);
    free(b->event);
    inner.ipc_buffer_free(be, b);
}

// A mark holds the host's clock when the stream reaches it.
static int mark_new(tmix_backend *be, void **out)
{
    *out = calloc(1, sizeof(double));
    return *out ? 0 : tmix_fail(TMIX_ENOMEM, "%s: no memory for a timing mark", be->name);
}

static int mark_record(tmix_backend *be, void *mark)
{
    fake_call c = {.op = OP_MARK, .p.mark = mark};
    return submit(be, &c);
}

static int mark_elapsed_ms(tmix_backend *be, const void *from, const void *to, double *out)
{
    (void)be;
    *out = *(const double *)to - *(const double *)from;
    return 0;
}

static void mark_free(tmix_backend *be, void *mark)
{
    (void)be;
    free(mark);
}

static void close_backend(tmix_backend *be)
{
    stream_close(fake(be));
    inner.close(be);
}

// ---- ops ------------------------------------------------------------------------------------

// An op whose arguments are no (1_k) or two (2_k) outputs, then k inputs.
#define OP_1_1(name, OP)                                                                        \
    static int name(tmix_backend *be, tmix_tensor *o, const tmix_tensor *a)                     \
    {                                                                                           \
        fake_call c = call(OP, 2, o, a);                                                        \
        return submit(be, &c);                                                                  \
    }
#define OP_1_2(name, OP)                                                                        \
    static int name(tmix_backend *be, tmix_tensor *o, const tmix_tensor *a, const tmix_tensor *b) \
    {                                                                                           \
        fake_call c = call(OP, 3, o, a, b);                                                     \
        return submit(be, &c);                                                                  \
    }
#define OP_1_3(name, OP)                                                                        \
    static int name(tmix_backend *be, tmix_tensor *o, const tmix_tensor *a,                     \
                    const tmix_tensor *b, const tmix_tensor *d)                                 \
    {                                                                                           \
        fake_call c = call(OP, 4, o, a, b, d);                                                  \
        return submit(be, &c);                                                                  \
    }
#define OP_2_3(name, OP)                                                                        \
    static int name(tmix_backend *be, tmix_tensor *o, tmix_tensor *o2, const tmix_tensor *a,    \
                    const tmix_tensor *b, const tmix_tensor *d)                                 \
    {                                                                                           \
        fake_call c = call(OP, 5, o, o2, a, b, d);                                              \
        return submit(be, &c);                                                                  \
    }

OP_1_1(bias_backward, OP_BIAS_BACKWARD)
OP_1_1(relu_forward, OP_RELU_FORWARD)
OP_1_1(avgpool_forward, OP_AVGPOOL_FORWARD)
OP_1_1(avgpool_backward, OP_AVGPOOL_BACKWARD)
OP_1_1(affine_grid_forward, OP_AFFINE_GRID_FORWARD)
OP_1_1(affine_grid_backward, OP_AFFINE_GRID_BACKWARD)
OP_1_1(resize_bilinear_forward, OP_RESIZE_BILINEAR_FORWARD)
OP_1_1(minmax_normalize_forward, OP_MINMAX_NORMALIZE_FORWARD)
OP_1_2(batchnorm_backward_input, OP_BATCHNORM_BACKWARD_INPUT)
OP_1_2(relu_backward, OP_RELU_BACKWARD)
OP_1_2(linear_backward_input, OP_LINEAR_BACKWARD_INPUT)
OP_1_2(linear_backward_weight, OP_LINEAR_BACKWARD_WEIGHT)
OP_1_2(grid_sample_forward, OP_GRID_SAMPLE_FORWARD)
OP_1_2(softmax_channel_forward, OP_SOFTMAX_CHANNEL_FORWARD)
OP_1_2(blend_forward, OP_BLEND_FORWARD)
OP_1_2(cross_entropy_forward, OP_CROSS_ENTROPY_FORWARD)
OP_1_2(cross_entropy_backward, OP_CROSS_ENTROPY_BACKWARD)
OP_1_3(batchnorm_forward, OP_BATCHNORM_FORWARD)
OP_1_3(linear_forward, OP_LINEAR_FORWARD)
OP_2_3(grid_sample_backward, OP_GRID_SAMPLE_BACKWARD)
OP_2_3(blend_backward, OP_BLEND_BACKWARD)

static int zero(tmix_backend *be, tmix_tensor *t)
{
    fake_call c = call(OP_ZERO, 1, t);
    return submit(be, &c);
}

static int softmax_channel_backward(tmix_backend *be, tmix_tensor *din, tmix_tensor *dtau,
                                    const tmix_tensor *dout, const tmix_tensor *out,
                                    const tmix_tensor *in, const tmix_tensor *tau)
{
    fake_call c = call(OP_SOFTMAX_CHANNEL_BACKWARD, 6, din, dtau, dout, out, in, tau);
    return submit(be, &c);
}

static int conv2d_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                          const tmix_tensor *weight, const tmix_tensor *bias, tmix_conv2d_params p)
{
    fake_call c = call(OP_CONV2D_FORWARD, 4, out, in, weight, bias);
    c.p.conv = p;
    return submit(be, &c);
}

static int conv2d_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                 const tmix_tensor *weight, tmix_conv2d_params p)
{
    fake_call c = call(OP_CONV2D_BACKWARD_INPUT, 3, din, dout, weight);
    c.p.conv = p;
    return submit(be, &c);
}

static int conv2d_backward_weight(tmix_backend *be, tmix_tensor *dweight, const tmix_tensor *dout,
                                  const tmix_tensor *in, tmix_conv2d_params p)
{
    fake_call c = call(OP_CONV2D_BACKWARD_WEIGHT, 3, dweight, dout, in);
    c.p.conv = p;
    return submit(be, &c);
}

static int maxpool2d_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                             tmix_pool2d_params p)
{
    fake_call c = call(OP_MAXPOOL2D_FORWARD, 2, out, in);
    c.p.pool = p;
    return submit(be, &c);
}

static int maxpool2d_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                              const tmix_tensor *in, tmix_pool2d_params p)
{
    fake_call c = call(OP_MAXPOOL2D_BACKWARD, 3, din, dout, in);
    c.p.pool = p;
    return submit(be, &c);
}

static int add(tmix_backend *be, tmix_tensor *out, const tmix_tensor *a, const tmix_tensor *b,
               bool relu)
{
    fake_call c = call(OP_ADD, 3, out, a, b);
    c.p.relu = relu;
    return submit(be, &c);
}

static int concat_channels_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                                   int c0)
{
    fake_call c = call(OP_CONCAT_CHANNELS_FORWARD, 2, out, in);
    c.p.c0 = c0;
    return submit(be, &c);
}

static int concat_channels_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                    int c0)
{
    fake_call c = call(OP_CONCAT_CHANNELS_BACKWARD, 2, din, dout);
    c.p.c0 = c0;
    return submit(be, &c);
}

static int fill_channels(tmix_backend *be, tmix_tensor *out, const tmix_tensor *values, int c0)
{
    fake_call c = call(OP_FILL_CHANNELS, 2, out, values);
    c.p.c0 = c0;
    return submit(be, &c);
}

// The ops with host arrays stage them in the real plugin's scratch buffer.
static int gather(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in, const int64_t *index)
{
    const size_t bytes = (size_t)out->shape[0] * sizeof *index;
    TMIX_TRY(scratch_need(be, bytes));
    fake_call c = call(OP_GATHER, 2, out, in);
    host_array(&c, 0, index, bytes);
    return submit(be, &c);
}

static int cam_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *features,
                       const tmix_tensor *weight, const int64_t *labels)
{
    const size_t bytes = (size_t)features->shape[0] * sizeof *labels;
    TMIX_TRY(scratch_need(be, bytes));
    fake_call c = call(OP_CAM_FORWARD, 3, out, features, weight);
    host_array(&c, 0, labels, bytes);
    return submit(be, &c);
}

static int box_masks(tmix_backend *be, tmix_tensor *masks, const tmix_box *boxes)
{
    const size_t bytes = (size_t)masks->shape[0] * sizeof *boxes;
    TMIX_TRY(scratch_need(be, bytes));
    fake_call c = call(OP_BOX_MASKS, 1, masks);
    host_array(&c, 0, boxes, bytes);
    return submit(be, &c);
}

static int preprocess(tmix_backend *be, tmix_tensor *out, const tmix_tensor *src,
                      const tmix_crop *crops, const float *mean, const float *std)
{
    const size_t crop_bytes = (size_t)out->shape[0] * sizeof *crops;
    const size_t stat_bytes = (size_t)out->shape[1] * sizeof *mean;
    TMIX_TRY(scratch_need(be, crop_bytes + 2 * stat_bytes));
    fake_call c = call(OP_PREPROCESS, 2, out, src);
    host_array(&c, 0, crops, crop_bytes);
    host_array(&c, 1, mean, stat_bytes);
    host_array(&c, 2, std, stat_bytes);
    return submit(be, &c);
}

static int encode_images(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                         tmix_image_format format, const float *mean, const float *std)
{
    const size_t stat_bytes = (size_t)in->shape[1] * sizeof *mean;
    TMIX_TRY(scratch_need(be, 2 * stat_bytes));
    fake_call c = call(OP_ENCODE_IMAGES, 2, out, in);
    c.p.format = format;
    host_array(&c, 0, mean, stat_bytes);
    host_array(&c, 1, std, stat_bytes);
    return submit(be, &c);
}

static int sgd_update(tmix_backend *be, tmix_tensor *param, const tmix_tensor *grad,
                      tmix_tensor *momentum_buf, tmix_sgd_params p, int64_t step)
{
    fake_call c = call(OP_SGD_UPDATE, 3, param, grad, momentum_buf);
    c.p.sgd = p;
    c.step = step;
    return submit(be, &c);
}

static int batchnorm_train_forward(tmix_backend *be, tmix_tensor *out, tmix_tensor *save_mean,
                                   tmix_tensor *save_invstd, tmix_tensor *running_mean,
                                   tmix_tensor *running_var, const tmix_tensor *in,
                                   const tmix_tensor *gamma, const tmix_tensor *beta,
                                   tmix_batchnorm_train_params p)
{
    fake_call c = call(OP_BATCHNORM_TRAIN_FORWARD, 8, out, save_mean, save_invstd, running_mean,
                       running_var, in, gamma, beta);
    c.p.bn = p;
    return submit(be, &c);
}

static int batchnorm_train_backward(tmix_backend *be, tmix_tensor *din, tmix_tensor *dgamma,
                                    tmix_tensor *dbeta, const tmix_tensor *dout,
                                    const tmix_tensor *in, const tmix_tensor *gamma,
                                    const tmix_tensor *save_mean, const tmix_tensor *save_invstd)
{
    fake_call c = call(OP_BATCHNORM_TRAIN_BACKWARD, 8, din, dgamma, dbeta, dout, in, gamma,
                       save_mean, save_invstd);
    return submit(be, &c);
}

// ---- graphs -----------------------------------------------------------------------------------

static int capture_begin(tmix_backend *be)
{
    fake_backend *f = fake(be);
    if (f->recording)
        return tmix_fail(TMIX_ECUDA, "%s: capture_begin: the stream is capturing already",
                         be->name);
    f->recording = calloc(1, sizeof *f->recording);
    return f->recording ? 0 : tmix_fail(TMIX_ENOMEM, "%s: capture_begin: out of memory", be->name);
}

static int capture_end(tmix_backend *be, tmix_graph **out)
{
    fake_backend *f = fake(be);
    fake_recording *r = f->recording;
    *out = NULL;
    if (!r)
        return tmix_fail(TMIX_ECUDA, "%s: capture_end: the stream is not capturing", be->name);
    f->recording = NULL; // out of capture mode whatever comes of it
    int rc = 0;
    tmix_graph *g = NULL;
    if (r->spoiled[0])
        rc = tmix_fail(TMIX_ECUDA, "%s: capture_end: %s", be->name, r->spoiled);
    else if (!(g = malloc(sizeof *g)))
        rc = tmix_fail(TMIX_ENOMEM, "%s: capture_end: out of memory", be->name);
    if (rc == 0) {
        *g = (tmix_graph){.list = r->list, .scratch_generation = f->scratch_generation};
        r->list.calls = NULL;
    }
    free(r->list.calls);
    free(r);
    *out = g;
    return rc;
}

static int graph_launch(tmix_backend *be, tmix_graph *g)
{
    if (g->scratch_generation != fake(be)->scratch_generation)
        return tmix_fail(TMIX_EINVAL, "graph_launch on %s: the graph was recorded with a "
                         "scratch buffer since made anew; record it again", be->name);
    fake_call c = {.op = OP_GRAPH, .p.graph = g};
    return submit(be, &c);
}

// A launch in flight still completes, as with cudaGraphExecDestroy.
static void graph_free(tmix_backend *be, tmix_graph *g)
{
    (void)wait_idle(be);
    free(g->list.calls);
    free(g);
}

void fake_stream_install(tmix_backend_ops *ops)
{
    inner = *ops;
    ops->alloc = alloc;
    ops->free = free_tensor;
    ops->zero = zero;
    ops->upload = upload;
    ops->download = download;
    ops->synchronize = synchronize;
    ops->host_alloc = host_alloc;
    ops->host_free = host_free;
    ops->close = close_backend;
    ops->ipc_buffer_new = ipc_buffer_new;
    ops->ipc_buffer_fill = ipc_buffer_fill;
    ops->ipc_buffer_read = ipc_buffer_read;
    ops->ipc_buffer_free = ipc_buffer_free;
    ops->upload_async = upload_async;
    ops->download_async = download_async;
    ops->capture_begin = capture_begin;
    ops->capture_end = capture_end;
    ops->graph_launch = graph_launch;
    ops->graph_free = graph_free;
    ops->mark_new = mark_new;
    ops->mark_record = mark_record;
    ops->mark_elapsed_ms = mark_elapsed_ms;
    ops->mark_free = mark_free;
    ops->conv2d_forward = conv2d_forward;
    ops->conv2d_backward_input = conv2d_backward_input;
    ops->conv2d_backward_weight = conv2d_backward_weight;
    ops->bias_backward = bias_backward;
    ops->batchnorm_forward = batchnorm_forward;
    ops->batchnorm_backward_input = batchnorm_backward_input;
    ops->relu_forward = relu_forward;
    ops->relu_backward = relu_backward;
    ops->maxpool2d_forward = maxpool2d_forward;
    ops->maxpool2d_backward = maxpool2d_backward;
    ops->avgpool_forward = avgpool_forward;
    ops->avgpool_backward = avgpool_backward;
    ops->linear_forward = linear_forward;
    ops->linear_backward_input = linear_backward_input;
    ops->linear_backward_weight = linear_backward_weight;
    ops->affine_grid_forward = affine_grid_forward;
    ops->affine_grid_backward = affine_grid_backward;
    ops->grid_sample_forward = grid_sample_forward;
    ops->grid_sample_backward = grid_sample_backward;
    ops->resize_bilinear_forward = resize_bilinear_forward;
    ops->minmax_normalize_forward = minmax_normalize_forward;
    ops->softmax_channel_forward = softmax_channel_forward;
    ops->softmax_channel_backward = softmax_channel_backward;
    ops->blend_forward = blend_forward;
    ops->blend_backward = blend_backward;
    ops->add = add;
    ops->concat_channels_forward = concat_channels_forward;
    ops->concat_channels_backward = concat_channels_backward;
    ops->fill_channels = fill_channels;
    ops->gather = gather;
    ops->cam_forward = cam_forward;
    ops->box_masks = box_masks;
    ops->cross_entropy_forward = cross_entropy_forward;
    ops->cross_entropy_backward = cross_entropy_backward;
    ops->sgd_update = sgd_update;
    ops->preprocess = preprocess;
    ops->encode_images = encode_images;
    ops->batchnorm_train_forward = batchnorm_train_forward;
    ops->batchnorm_train_backward = batchnorm_train_backward;
}
