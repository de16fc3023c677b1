// CUDA graphs on the fake GPU (fake.h), as ops.h defines them: between capture_begin and
// capture_end the ops are recorded, not run, as a stream capture records kernels; a launch
// runs them again in order with the arguments they were recorded with: tensors (pointer and
// shape) and parameters by value, host arrays by address, read anew at each launch as the
// real plugin's copies from pinned memory are. So a caller that changes a host value a
// graph baked in, or frees a buffer a graph uses, gets what it would get on a GPU: stale
// batches, or (under ASan) a use after free.
//
// What a real capture cannot record fails here too and spoils the capture (capture_end
// then fails with the first reason): allocating or freeing device memory, synchronous
// copies, waiting for the device, IPC buffer work, host arrays not from tmix_host_alloc,
// and growing the scratch buffer. As the real plugin does, a graph is refused after the
// scratch buffer that it baked in was made anew (fake.h).
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "fake.h"

enum { MAX_TENSORS = 9, MAX_HOST = 3 };

typedef enum {
    OP_ZERO, OP_UPLOAD_ASYNC, OP_DOWNLOAD_ASYNC,
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

// One recorded call.
typedef struct {
    op_kind op;
    int ntensors;
    tmix_tensor t[MAX_TENSORS];
    bool null[MAX_TENSORS]; // an optional tensor passed as NULL (a bias)
    const void *host[MAX_HOST];
    void *host_out;
    union {
        tmix_conv2d_params conv;
        tmix_pool2d_params pool;
        tmix_sgd_params sgd;
        tmix_batchnorm_train_params bn;
        tmix_image_format format;
        int c0;
        bool relu;
    } p;
    int64_t step;
} fake_call;

struct fake_recording {
    fake_call *calls;
    size_t n, cap;
    char spoiled[256]; // the first reason the capture cannot become a graph; "" if none
};

struct tmix_graph {
    fake_call *calls;
    size_t n;
    uint64_t scratch_generation;
};

// The ops that do the work (the CPU's, and fake_cuda.c's memory functions).
static tmix_backend_ops inner;

static fake_recording *recording_of(tmix_backend *be) { return ((fake_backend *)be)->recording; }

// ---- pinned host memory -------------------------------------------------------------------

static pthread_mutex_t pinned_lock = PTHREAD_MUTEX_INITIALIZER;
static struct block {
    const char *p;
    size_t bytes;
} *pinned;
static size_t npinned, cap_pinned;

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

static void host_free(tmix_backend *be, void *p)
{
    (void)be;
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

static bool is_pinned(const void *p)
{
    bool found = false;
    pthread_mutex_lock(&pinned_lock);
    for (size_t i = 0; i < npinned && !found; i++)
        found = (const char *)p >= pinned[i].p && (const char *)p < pinned[i].p + pinned[i].bytes;
    pthread_mutex_unlock(&pinned_lock);
    return found;
}

// ---- recording ----------------------------------------------------------------------------

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
    fake_recording *r = recording_of(be);
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
    fake_backend *f = (fake_backend *)be;
    if (bytes <= f->scratch_bytes)
        return 0;
    TMIX_TRY(refused(be, "growing the scratch buffer"));
    f->scratch_bytes = bytes < 65536 ? 65536 : bytes;
    f->scratch_generation++;
    return 0;
}

// Starts the record of a call of op with its ntensors tensors (const tmix_tensor *, NULL
// for an absent optional one): 0 when be is not capturing (the caller runs the op), 1 with
// *out to fill in, or an error.
static int record(tmix_backend *be, op_kind op, fake_call **out, int ntensors, ...)
{
    fake_recording *r = recording_of(be);
    if (!r)
        return 0;
    if (r->n == r->cap) {
        const size_t cap = r->cap ? 2 * r->cap : 64;
        fake_call *c = realloc(r->calls, cap * sizeof *c);
        if (!c)
            return tmix_fail(TMIX_ENOMEM, "%s: no memory to record a call", be->name);
        r->calls = c;
        r->cap = cap;
    }
    fake_call *c = &r->calls[r->n++];
    *c = (fake_call){.op = op, .ntensors = ntensors};
    va_list ap;
    va_start(ap, ntensors);
    for (int i = 0; i < ntensors; i++) {
        const tmix_tensor *t = va_arg(ap, const tmix_tensor *);
        c->null[i] = !t;
        if (t)
            c->t[i] = *t;
    }
    va_end(ap);
    *out = c;
    return 1;
}

// Host array h (an op argument or a copy's end) of a recorded call c.
static void record_host(tmix_backend *be, fake_call *c, int i, const void *h)
{
    c->host[i] = h;
    if (h && !is_pinned(h))
        spoil(recording_of(be), "op %d reads host memory %p that is not from tmix_host_alloc",
              (int)c->op, h);
}

#define T(i) (c->null[i] ? NULL : &c->t[i])

// Runs `call` on the inner ops when be is not capturing, else records op with its tensors;
// the function then fills in the rest of c and returns 0.
#define RUN_OR_RECORD(call, op, ...)                                                            \
    fake_call *c;                                                                               \
    do {                                                                                        \
        const int r_ = record(be, op, &c, __VA_ARGS__);                                         \
        if (r_ <= 0)                                                                            \
            return r_ < 0 ? r_ : inner.call;                                                    \
    } while (0)

// ---- the calls a capture cannot record ----------------------------------------------------

static int alloc(tmix_backend *be, tmix_tensor *t)
{
    const int rc = refused(be, "alloc");
    return rc ? rc : inner.alloc(be, t);
}

static void free_tensor(tmix_backend *be, tmix_tensor *t)
{
    if (refused(be, "free") == 0)
        inner.free(be, t);
}

static int upload(tmix_backend *be, tmix_tensor *dst, const void *src)
{
    const int rc = refused(be, "upload (synchronous)");
    return rc ? rc : inner.upload(be, dst, src);
}

static int download(tmix_backend *be, void *dst, const tmix_tensor *src)
{
    const int rc = refused(be, "download (synchronous)");
    return rc ? rc : inner.download(be, dst, src);
}

static int synchronize(tmix_backend *be)
{
    const int rc = refused(be, "synchronize");
    return rc ? rc : inner.synchronize(be);
}

static int ipc_buffer_new(tmix_backend *be, size_t bytes, tmix_ipc_buffer *out)
{
    const int rc = refused(be, "ipc_buffer_new");
    return rc ? rc : inner.ipc_buffer_new(be, bytes, out);
}

static int ipc_buffer_fill(tmix_backend *be, tmix_ipc_buffer *b, const void *src, size_t bytes)
{
    const int rc = refused(be, "ipc_buffer_fill");
    return rc ? rc : inner.ipc_buffer_fill(be, b, src, bytes);
}

static int ipc_buffer_read(tmix_backend *be, const tmix_ipc_buffer *b, void *dst, size_t bytes)
{
    const int rc = refused(be, "ipc_buffer_read");
    return rc ? rc : inner.ipc_buffer_read(be, b, dst, bytes);
}

// ---- recorded calls -------------------------------------------------------------------------

static int zero(tmix_backend *be, tmix_tensor *t)
{
    RUN_OR_RECORD(zero(be, t), OP_ZERO, 1, t);
    return 0;
}

static int upload_async(tmix_backend *be, tmix_tensor *dst, const void *src)
{
    RUN_OR_RECORD(upload(be, dst, src), OP_UPLOAD_ASYNC, 1, dst);
    record_host(be, c, 0, src);
    return 0;
}

static int download_async(tmix_backend *be, void *dst, const tmix_tensor *src)
{
    RUN_OR_RECORD(download(be, dst, src), OP_DOWNLOAD_ASYNC, 1, src);
    record_host(be, c, 0, dst);
    c->host_out = dst;
    return 0;
}

static int conv2d_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                          const tmix_tensor *weight, const tmix_tensor *bias, tmix_conv2d_params p)
{
    RUN_OR_RECORD(conv2d_forward(be, out, in, weight, bias, p), OP_CONV2D_FORWARD, 4, out, in,
                  weight, bias);
    c->p.conv = p;
    return 0;
}

static int conv2d_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                 const tmix_tensor *weight, tmix_conv2d_params p)
{
    RUN_OR_RECORD(conv2d_backward_input(be, din, dout, weight, p), OP_CONV2D_BACKWARD_INPUT, 3,
                  din, dout, weight);
    c->p.conv = p;
    return 0;
}

static int conv2d_backward_weight(tmix_backend *be, tmix_tensor *dweight, const tmix_tensor *dout,
                                  const tmix_tensor *in, tmix_conv2d_params p)
{
    RUN_OR_RECORD(conv2d_backward_weight(be, dweight, dout, in, p), OP_CONV2D_BACKWARD_WEIGHT, 3,
                  dweight, dout, in);
    c->p.conv = p;
    return 0;
}

static int bias_backward(tmix_backend *be, tmix_tensor *dbias, const tmix_tensor *dout)
{
    RUN_OR_RECORD(bias_backward(be, dbias, dout), OP_BIAS_BACKWARD, 2, dbias, dout);
    return 0;
}

static int batchnorm_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                             const tmix_tensor *scale, const tmix_tensor *shift)
{
    RUN_OR_RECORD(batchnorm_forward(be, out, in, scale, shift), OP_BATCHNORM_FORWARD, 4, out, in,
                  scale, shift);
    return 0;
}

static int batchnorm_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                    const tmix_tensor *scale)
{
    RUN_OR_RECORD(batchnorm_backward_input(be, din, dout, scale), OP_BATCHNORM_BACKWARD_INPUT, 3,
                  din, dout, scale);
    return 0;
}

static int relu_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in)
{
    RUN_OR_RECORD(relu_forward(be, out, in), OP_RELU_FORWARD, 2, out, in);
    return 0;
}

static int relu_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                         const tmix_tensor *out)
{
    RUN_OR_RECORD(relu_backward(be, din, dout, out), OP_RELU_BACKWARD, 3, din, dout, out);
    return 0;
}

static int maxpool2d_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                             tmix_pool2d_params p)
{
    RUN_OR_RECORD(maxpool2d_forward(be, out, in, p), OP_MAXPOOL2D_FORWARD, 2, out, in);
    c->p.pool = p;
    return 0;
}

static int maxpool2d_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                              const tmix_tensor *in, tmix_pool2d_params p)
{
    RUN_OR_RECORD(maxpool2d_backward(be, din, dout, in, p), OP_MAXPOOL2D_BACKWARD, 3, din, dout,
                  in);
    c->p.pool = p;
    return 0;
}

static int avgpool_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in)
{
    RUN_OR_RECORD(avgpool_forward(be, out, in), OP_AVGPOOL_FORWARD, 2, out, in);
    return 0;
}

static int avgpool_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout)
{
    RUN_OR_RECORD(avgpool_backward(be, din, dout), OP_AVGPOOL_BACKWARD, 2, din, dout);
    return 0;
}

static int linear_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                          const tmix_tensor *weight, const tmix_tensor *bias)
{
    RUN_OR_RECORD(linear_forward(be, out, in, weight, bias), OP_LINEAR_FORWARD, 4, out, in,
                  weight, bias);
    return 0;
}

static int linear_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                 const tmix_tensor *weight)
{
    RUN_OR_RECORD(linear_backward_input(be, din, dout, weight), OP_LINEAR_BACKWARD_INPUT, 3, din,
                  dout, weight);
    return 0;
}

static int linear_backward_weight(tmix_backend *be, tmix_tensor *dweight, const tmix_tensor *dout,
                                  const tmix_tensor *in)
{
    RUN_OR_RECORD(linear_backward_weight(be, dweight, dout, in), OP_LINEAR_BACKWARD_WEIGHT, 3,
                  dweight, dout, in);
    return 0;
}

static int affine_grid_forward(tmix_backend *be, tmix_tensor *grid, const tmix_tensor *theta)
{
    RUN_OR_RECORD(affine_grid_forward(be, grid, theta), OP_AFFINE_GRID_FORWARD, 2, grid, theta);
    return 0;
}

static int affine_grid_backward(tmix_backend *be, tmix_tensor *dtheta, const tmix_tensor *dgrid)
{
    RUN_OR_RECORD(affine_grid_backward(be, dtheta, dgrid), OP_AFFINE_GRID_BACKWARD, 2, dtheta,
                  dgrid);
    return 0;
}

static int grid_sample_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                               const tmix_tensor *grid)
{
    RUN_OR_RECORD(grid_sample_forward(be, out, in, grid), OP_GRID_SAMPLE_FORWARD, 3, out, in,
                  grid);
    return 0;
}

static int grid_sample_backward(tmix_backend *be, tmix_tensor *din, tmix_tensor *dgrid,
                                const tmix_tensor *dout, const tmix_tensor *in,
                                const tmix_tensor *grid)
{
    RUN_OR_RECORD(grid_sample_backward(be, din, dgrid, dout, in, grid), OP_GRID_SAMPLE_BACKWARD,
                  5, din, dgrid, dout, in, grid);
    return 0;
}

static int resize_bilinear_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in)
{
    RUN_OR_RECORD(resize_bilinear_forward(be, out, in), OP_RESIZE_BILINEAR_FORWARD, 2, out, in);
    return 0;
}

static int minmax_normalize_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in)
{
    RUN_OR_RECORD(minmax_normalize_forward(be, out, in), OP_MINMAX_NORMALIZE_FORWARD, 2, out, in);
    return 0;
}

static int softmax_channel_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                                   const tmix_tensor *tau)
{
    RUN_OR_RECORD(softmax_channel_forward(be, out, in, tau), OP_SOFTMAX_CHANNEL_FORWARD, 3, out,
                  in, tau);
    return 0;
}

static int softmax_channel_backward(tmix_backend *be, tmix_tensor *din, tmix_tensor *dtau,
                                    const tmix_tensor *dout, const tmix_tensor *out,
                                    const tmix_tensor *in, const tmix_tensor *tau)
{
    RUN_OR_RECORD(softmax_channel_backward(be, din, dtau, dout, out, in, tau),
                  OP_SOFTMAX_CHANNEL_BACKWARD, 6, din, dtau, dout, out, in, tau);
    return 0;
}

static int blend_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *masks,
                         const tmix_tensor *x)
{
    RUN_OR_RECORD(blend_forward(be, out, masks, x), OP_BLEND_FORWARD, 3, out, masks, x);
    return 0;
}

static int blend_backward(tmix_backend *be, tmix_tensor *dmasks, tmix_tensor *dx,
                          const tmix_tensor *dout, const tmix_tensor *masks, const tmix_tensor *x)
{
    RUN_OR_RECORD(blend_backward(be, dmasks, dx, dout, masks, x), OP_BLEND_BACKWARD, 5, dmasks,
                  dx, dout, masks, x);
    return 0;
}

static int add(tmix_backend *be, tmix_tensor *out, const tmix_tensor *a, const tmix_tensor *b,
               bool relu)
{
    RUN_OR_RECORD(add(be, out, a, b, relu), OP_ADD, 3, out, a, b);
    c->p.relu = relu;
    return 0;
}

static int concat_channels_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                                   int c0)
{
    RUN_OR_RECORD(concat_channels_forward(be, out, in, c0), OP_CONCAT_CHANNELS_FORWARD, 2, out,
                  in);
    c->p.c0 = c0;
    return 0;
}

static int concat_channels_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                    int c0)
{
    RUN_OR_RECORD(concat_channels_backward(be, din, dout, c0), OP_CONCAT_CHANNELS_BACKWARD, 2,
                  din, dout);
    c->p.c0 = c0;
    return 0;
}

static int fill_channels(tmix_backend *be, tmix_tensor *out, const tmix_tensor *values, int c0)
{
    RUN_OR_RECORD(fill_channels(be, out, values, c0), OP_FILL_CHANNELS, 2, out, values);
    c->p.c0 = c0;
    return 0;
}

static int gather(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in, const int64_t *index)
{
    TMIX_TRY(scratch_need(be, (size_t)out->shape[0] * sizeof *index));
    RUN_OR_RECORD(gather(be, out, in, index), OP_GATHER, 2, out, in);
    record_host(be, c, 0, index);
    return 0;
}

static int cam_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *features,
                       const tmix_tensor *weight, const int64_t *labels)
{
    TMIX_TRY(scratch_need(be, (size_t)features->shape[0] * sizeof *labels));
    RUN_OR_RECORD(cam_forward(be, out, features, weight, labels), OP_CAM_FORWARD, 3, out,
                  features, weight);
    record_host(be, c, 0, labels);
    return 0;
}

static int box_masks(tmix_backend *be, tmix_tensor *masks, const tmix_box *boxes)
{
    TMIX_TRY(scratch_need(be, (size_t)masks->shape[0] * sizeof *boxes));
    RUN_OR_RECORD(box_masks(be, masks, boxes), OP_BOX_MASKS, 1, masks);
    record_host(be, c, 0, boxes);
    return 0;
}

static int cross_entropy_forward(tmix_backend *be, tmix_tensor *loss, const tmix_tensor *logits,
                                 const tmix_tensor *targets)
{
    RUN_OR_RECORD(cross_entropy_forward(be, loss, logits, targets), OP_CROSS_ENTROPY_FORWARD, 3,
                  loss, logits, targets);
    return 0;
}

static int cross_entropy_backward(tmix_backend *be, tmix_tensor *dlogits,
                                  const tmix_tensor *logits, const tmix_tensor *targets)
{
    RUN_OR_RECORD(cross_entropy_backward(be, dlogits, logits, targets), OP_CROSS_ENTROPY_BACKWARD,
                  3, dlogits, logits, targets);
    return 0;
}

static int sgd_update(tmix_backend *be, tmix_tensor *param, const tmix_tensor *grad,
                      tmix_tensor *momentum_buf, tmix_sgd_params p, int64_t step)
{
    RUN_OR_RECORD(sgd_update(be, param, grad, momentum_buf, p, step), OP_SGD_UPDATE, 3, param,
                  grad, momentum_buf);
    c->p.sgd = p;
    c->step = step;
    return 0;
}

static int preprocess(tmix_backend *be, tmix_tensor *out, const tmix_tensor *src,
                      const tmix_crop *crops, const float *mean, const float *std)
{
    TMIX_TRY(scratch_need(be, (size_t)out->shape[0] * sizeof *crops +
                                  2 * (size_t)out->shape[1] * sizeof *mean));
    RUN_OR_RECORD(preprocess(be, out, src, crops, mean, std), OP_PREPROCESS, 2, out, src);
    record_host(be, c, 0, crops);
    record_host(be, c, 1, mean);
    record_host(be, c, 2, std);
    return 0;
}

static int encode_images(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                         tmix_image_format format, const float *mean, const float *std)
{
    TMIX_TRY(scratch_need(be, 2 * (size_t)in->shape[1] * sizeof *mean));
    RUN_OR_RECORD(encode_images(be, out, in, format, mean, std), OP_ENCODE_IMAGES, 2, out, in);
    c->p.format = format;
    record_host(be, c, 0, mean);
    record_host(be, c, 1, std);
    return 0;
}

static int batchnorm_train_forward(tmix_backend *be, tmix_tensor *out, tmix_tensor *save_mean,
                                   tmix_tensor *save_invstd, tmix_tensor *running_mean,
                                   tmix_tensor *running_var, const tmix_tensor *in,
                                   const tmix_tensor *gamma, const tmix_tensor *beta,
                                   tmix_batchnorm_train_params p)
{
    RUN_OR_RECORD(batchnorm_train_forward(be, out, save_mean, save_invstd, running_mean,
                                          running_var, in, gamma, beta, p),
                  OP_BATCHNORM_TRAIN_FORWARD, 8, out, save_mean, save_invstd, running_mean,
                  running_var, in, gamma, beta);
    c->p.bn = p;
    return 0;
}

static int batchnorm_train_backward(tmix_backend *be, tmix_tensor *din, tmix_tensor *dgamma,
                                    tmix_tensor *dbeta, const tmix_tensor *dout,
                                    const tmix_tensor *in, const tmix_tensor *gamma,
                                    const tmix_tensor *save_mean, const tmix_tensor *save_invstd)
{
    RUN_OR_RECORD(batchnorm_train_backward(be, din, dgamma, dbeta, dout, in, gamma, save_mean,
                                           save_invstd),
                  OP_BATCHNORM_TRAIN_BACKWARD, 8, din, dgamma, dbeta, dout, in, gamma, save_mean,
                  save_invstd);
    return 0;
}

// ---- replay ---------------------------------------------------------------------------------

static int replay(tmix_backend *be, fake_call *c)
{
    switch (c->op) {
    case OP_ZERO: return inner.zero(be, T(0));
    case OP_UPLOAD_ASYNC: return inner.upload(be, T(0), c->host[0]);
    case OP_DOWNLOAD_ASYNC: return inner.download(be, c->host_out, T(0));
    case OP_CONV2D_FORWARD: return inner.conv2d_forward(be, T(0), T(1), T(2), T(3), c->p.conv);
    case OP_CONV2D_BACKWARD_INPUT:
        return inner.conv2d_backward_input(be, T(0), T(1), T(2), c->p.conv);
    case OP_CONV2D_BACKWARD_WEIGHT:
        return inner.conv2d_backward_weight(be, T(0), T(1), T(2), c->p.conv);
    case OP_BIAS_BACKWARD: return inner.bias_backward(be, T(0), T(1));
    case OP_BATCHNORM_FORWARD: return inner.batchnorm_forward(be, T(0), T(1), T(2), T(3));
    case OP_BATCHNORM_BACKWARD_INPUT: return inner.batchnorm_backward_input(be, T(0), T(1), T(2));
    case OP_RELU_FORWARD: return inner.relu_forward(be, T(0), T(1));
    case OP_RELU_BACKWARD: return inner.relu_backward(be, T(0), T(1), T(2));
    case OP_MAXPOOL2D_FORWARD: return inner.maxpool2d_forward(be, T(0), T(1), c->p.pool);
    case OP_MAXPOOL2D_BACKWARD: return inner.maxpool2d_backward(be, T(0), T(1), T(2), c->p.pool);
    case OP_AVGPOOL_FORWARD: return inner.avgpool_forward(be, T(0), T(1));
    case OP_AVGPOOL_BACKWARD: return inner.avgpool_backward(be, T(0), T(1));
    case OP_LINEAR_FORWARD: return inner.linear_forward(be, T(0), T(1), T(2), T(3));
    case OP_LINEAR_BACKWARD_INPUT: return inner.linear_backward_input(be, T(0), T(1), T(2));
    case OP_LINEAR_BACKWARD_WEIGHT: return inner.linear_backward_weight(be, T(0), T(1), T(2));
    case OP_AFFINE_GRID_FORWARD: return inner.affine_grid_forward(be, T(0), T(1));
    case OP_AFFINE_GRID_BACKWARD: return inner.affine_grid_backward(be, T(0), T(1));
    case OP_GRID_SAMPLE_FORWARD: return inner.grid_sample_forward(be, T(0), T(1), T(2));
    case OP_GRID_SAMPLE_BACKWARD:
        return inner.grid_sample_backward(be, T(0), T(1), T(2), T(3), T(4));
    case OP_RESIZE_BILINEAR_FORWARD: return inner.resize_bilinear_forward(be, T(0), T(1));
    case OP_MINMAX_NORMALIZE_FORWARD: return inner.minmax_normalize_forward(be, T(0), T(1));
    case OP_SOFTMAX_CHANNEL_FORWARD: return inner.softmax_channel_forward(be, T(0), T(1), T(2));
    case OP_SOFTMAX_CHANNEL_BACKWARD:
        return inner.softmax_channel_backward(be, T(0), T(1), T(2), T(3), T(4), T(5));
    case OP_BLEND_FORWARD: return inner.blend_forward(be, T(0), T(1), T(2));
    case OP_BLEND_BACKWARD: return inner.blend_backward(be, T(0), T(1), T(2), T(3), T(4));
    case OP_ADD: return inner.add(be, T(0), T(1), T(2), c->p.relu);
    case OP_CONCAT_CHANNELS_FORWARD:
        return inner.concat_channels_forward(be, T(0), T(1), c->p.c0);
    case OP_CONCAT_CHANNELS_BACKWARD:
        return inner.concat_channels_backward(be, T(0), T(1), c->p.c0);
    case OP_FILL_CHANNELS: return inner.fill_channels(be, T(0), T(1), c->p.c0);
    case OP_GATHER: return inner.gather(be, T(0), T(1), c->host[0]);
    case OP_CAM_FORWARD: return inner.cam_forward(be, T(0), T(1), T(2), c->host[0]);
    case OP_BOX_MASKS: return inner.box_masks(be, T(0), c->host[0]);
    case OP_CROSS_ENTROPY_FORWARD: return inner.cross_entropy_forward(be, T(0), T(1), T(2));
    case OP_CROSS_ENTROPY_BACKWARD: return inner.cross_entropy_backward(be, T(0), T(1), T(2));
    case OP_SGD_UPDATE: return inner.sgd_update(be, T(0), T(1), T(2), c->p.sgd, c->step);
    case OP_PREPROCESS:
        return inner.preprocess(be, T(0), T(1), c->host[0], c->host[1], c->host[2]);
    case OP_ENCODE_IMAGES:
        return inner.encode_images(be, T(0), T(1), c->p.format, c->host[0], c->host[1]);
    case OP_BATCHNORM_TRAIN_FORWARD:
        return inner.batchnorm_train_forward(be, T(0), T(1), T(2), T(3), T(4), T(5), T(6), T(7),
                                             c->p.bn);
    case OP_BATCHNORM_TRAIN_BACKWARD:
        return inner.batchnorm_train_backward(be, T(0), T(1), T(2), T(3), T(4), T(5), T(6), T(7));
    }
    return tmix_fail(TMIX_EINVAL, "%s: graph_launch: unknown recorded op %d", be->name, (int)c->op);
}

// ---- capture and launch ---------------------------------------------------------------------

static int capture_begin(tmix_backend *be)
{
    fake_backend *f = (fake_backend *)be;
    if (f->recording)
        return tmix_fail(TMIX_ECUDA, "%s: capture_begin: the stream is capturing already",
                         be->name);
    f->recording = calloc(1, sizeof *f->recording);
    return f->recording ? 0 : tmix_fail(TMIX_ENOMEM, "%s: capture_begin: out of memory", be->name);
}

static int capture_end(tmix_backend *be, tmix_graph **out)
{
    fake_backend *f = (fake_backend *)be;
    fake_recording *r = f->recording;
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
        *g = (tmix_graph){.calls = r->calls, .n = r->n, .scratch_generation = f->scratch_generation};
        r->calls = NULL;
    }
    free(r->calls);
    free(r);
    *out = g;
    return rc;
}

static int graph_launch(tmix_backend *be, tmix_graph *g)
{
    if (g->scratch_generation != ((fake_backend *)be)->scratch_generation)
        return tmix_fail(TMIX_EINVAL, "graph_launch on %s: the graph was recorded with a "
                         "scratch buffer since made anew; record it again", be->name);
    for (size_t i = 0; i < g->n; i++)
        TMIX_TRY(replay(be, &g->calls[i]));
    return 0;
}

static void graph_free(tmix_backend *be, tmix_graph *g)
{
    (void)be;
    free(g->calls);
    free(g);
}

void fake_graph_install(tmix_backend_ops *ops)
{
    inner = *ops;
    ops->alloc = alloc;
    ops->free = free_tensor;
    ops->upload = upload;
    ops->download = download;
    ops->synchronize = synchronize;
    ops->host_alloc = host_alloc;
    ops->host_free = host_free;
    ops->ipc_buffer_new = ipc_buffer_new;
    ops->ipc_buffer_fill = ipc_buffer_fill;
    ops->ipc_buffer_read = ipc_buffer_read;
    ops->upload_async = upload_async;
    ops->download_async = download_async;
    ops->capture_begin = capture_begin;
    ops->capture_end = capture_end;
    ops->graph_launch = graph_launch;
    ops->graph_free = graph_free;
    ops->zero = zero;
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
