// One batch of mixing (mix.h): every method as one pipeline whose stages switch on or off.
//
//   images, labels -> teacher -> cams           (every method)
//   gather by sources -> xs, cs                 (each sample's n inputs, sample-major)
//   STN(cs at S x S, λ, noise) -> θ -> warp     (stn-only, transformmix; identity otherwise)
//   MPN(warped cams, λ) -> softmax / τ -> masks (mpn-only, transformmix; fixed masks otherwise)
//   blend -> mixed; λ (or the mask shares) -> label weights
//
// The mixer owns every buffer, sized on first use and again when the batch shape changes.
// A forward is two halves: fill_host computes everything the host decides for the batch into
// the mixer's host arrays, then enqueue queues the device's work, which reads those arrays
// only through copies and op arguments. That is what lets a CUDA graph of enqueue replay any
// batch of the same shapes (tmix_mixer_use_graphs).
#include "mix.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ops.h"
#include "profile.h"

typedef struct {
    tmix_tensor stn_in, a1, r1, a2, r2, r3, theta; // STN, r = after max pool and ReLU
    tmix_tensor grid, warped, warped_cams;         // warp
    tmix_tensor mpn_in, m[3], h, masks;            // MPN, m = after ReLU
} forward_buffers;

typedef struct {
    tmix_tensor dlogits, dmixed, dmasks, dwarped, dh, dtau, da, db, dmpn_in, dwarped_cams,
        dgrid, dtheta, dr3, df1, dr2, dp2, da2, dr1, dp1, da1;
} backward_buffers;

// What the device reads from the host for one batch, in one block from tmix_host_alloc
// (pinned on a GPU: copied without a wait, and read anew by each launch of a graph).
typedef struct {
    int batch, n, stn_size;    // sized for
    int64_t *sources, *labels; // [B * n]: each sample's inputs and their labels
    int64_t *batch_labels;     // [B]: the caller's labels (the CAMs')
    tmix_box *boxes;           // [B]: CutMix
    float *weights, *lam;      // [B * n]: label weights (out), λ
    float *noise;              // [B * S * S]
    float *theta;              // [B * n * 6]: the identity warp
    float *tau;                // [1]
    void *block;
} host_arrays;

// What a graph was recorded for: replaying it is right only while all of this is the same.
typedef struct {
    const void *images, *teacher, *module, *params[TMIX_MODULE_COUNT];
    uint64_t mixer_generation, teacher_generation;
    int64_t shape[4];
    int n, stn_size;
} graph_key;

struct tmix_mixer {
    tmix_backend *be;
    tmix_method method;
    int batch, n, channels, height, width, stn_size, classes;
    const tmix_tensor *images;         // of the last forward
    tmix_tensor cams, xs, cs, cs_small, lam, noise, weights_t, tau, logits, targets, loss, shares;
    tmix_tensor mixed;
    forward_buffers f;
    backward_buffers g;
    host_arrays h;
    float *host; // host scratch of the loss's targets
    size_t host_size;
    float tau_value;
    bool has_loss; // the last forward ran the teacher on mixed (backward needs it)
    // CUDA graphs (tmix_mixer_use_graphs)
    uint64_t generation; // counts buffer allocations, which move buffers
    bool graphs, capturing;
    tmix_graph *graph;             // of graph_key's batches
    graph_key graph_key, last_key; // last_key: of the last forward run op by op
    int64_t launches;
    int capture_failures;
    char graph_error[256];
};

// Recording fails for reasons of its own (an op that cannot be recorded) but may also fail
// once for another thread's work on the device; graphs go off after this many failures.
enum { MAX_CAPTURE_FAILURES = 3 };

static const tmix_pool2d_params pool2 = {2, 2, 2, 2, 0, 0};
static const tmix_conv2d_params conv_valid = {1, 1, 0, 0, 1, 1, false};
static const tmix_conv2d_params conv_same3 = {1, 1, 1, 1, 1, 1, false};
static const tmix_conv2d_params conv_same3_relu = {1, 1, 1, 1, 1, 1, true};

// ---- buffers --------------------------------------------------------------------------------

// Makes t an owned F32 tensor of the given shape, keeping it when it already is one.
static int ensure(tmix_mixer *mx, tmix_tensor *t, int ndim, int64_t d0, int64_t d1, int64_t d2,
                  int64_t d3)
{
    const int64_t shape[4] = {d0, d1, d2, d3};
    if (t->data && t->ndim == ndim && memcmp(t->shape, shape, ndim * sizeof *shape) == 0)
        return 0;
    if (mx->capturing) // a graph cannot own the mixer's buffers
        return tmix_fail(TMIX_EINVAL, "mix: a buffer would be allocated while recording a graph");
    mx->generation++;
    tmix_tensor_free(mx->be, t);
    return tmix_tensor_alloc(mx->be, t, TMIX_F32, ndim, shape);
}

static int ensure_zero(tmix_mixer *mx, tmix_tensor *t, int ndim, int64_t d0, int64_t d1,
                       int64_t d2, int64_t d3)
{
    TMIX_TRY(ensure(mx, t, ndim, d0, d1, d2, d3));
    return tmix_tensor_zero(mx->be, t);
}

// A view of t's memory with another shape of the same size.
static tmix_tensor reshape(const tmix_tensor *t, int ndim, int64_t d0, int64_t d1, int64_t d2,
                           int64_t d3)
{
    return tmix_tensor_view(t->data, TMIX_F32, t->device, ndim, (int64_t[]){d0, d1, d2, d3});
}

static float *host_scratch(tmix_mixer *mx, size_t count)
{
    if (count > mx->host_size) {
        float *p = realloc(mx->host, count * sizeof *p);
        if (!p)
            return NULL;
        mx->host = p;
        mx->host_size = count;
    }
    return mx->host;
}

static void free_tensors(tmix_backend *be, tmix_tensor *t, size_t count)
{
    for (size_t i = 0; i < count; i++)
        tmix_tensor_free(be, &t[i]);
}
#define FREE_STRUCT(be, s) free_tensors(be, (tmix_tensor *)&(s), sizeof(s) / sizeof(tmix_tensor))

int tmix_mixer_new(tmix_mixer **out, tmix_backend *be, tmix_method method)
{
    tmix_mixer *mx = calloc(1, sizeof *mx);
    if (!mx)
        return tmix_fail(TMIX_ENOMEM, "mixer: out of memory");
    mx->be = be;
    mx->method = method;
    *out = mx;
    return 0;
}

void tmix_mixer_free(tmix_mixer *mx)
{
    if (!mx)
        return;
    tmix_backend *be = mx->be;
    tmix_tensor *own[] = {&mx->cams, &mx->xs, &mx->cs, &mx->cs_small, &mx->lam, &mx->noise,
                          &mx->weights_t, &mx->tau, &mx->logits, &mx->targets, &mx->loss,
                          &mx->shares, &mx->mixed};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        tmix_tensor_free(be, own[i]);
    FREE_STRUCT(be, mx->f);
    FREE_STRUCT(be, mx->g);
    tmix_graph_free(be, mx->graph);
    tmix_host_free(be, mx->h.block);
    free(mx->host);
    free(mx);
}

void tmix_mixer_use_graphs(tmix_mixer *mx, bool on)
{
    mx->graphs = on && tmix_backend_has_graphs(mx->be);
    if (!mx->graphs) {
        tmix_graph_free(mx->be, mx->graph);
        mx->graph = NULL;
    }
}

int64_t tmix_mixer_graph_launches(const tmix_mixer *mx)
{
    return mx->launches;
}

const char *tmix_mixer_graph_error(const tmix_mixer *mx)
{
    return mx->graph_error[0] ? mx->graph_error : NULL;
}

// Sizes the host arrays for a batch of b samples of n inputs at STN size s, in one block:
// the 8-byte arrays first, so that every array is aligned.
static int size_host(tmix_mixer *mx, int b, int n, int s)
{
    host_arrays *h = &mx->h;
    if (h->block && h->batch == b && h->n == n && h->stn_size == s)
        return 0;
    const size_t bn = (size_t)b * n, i64 = (2 * bn + b) * sizeof(int64_t),
                 boxes = (size_t)b * sizeof(tmix_box),
                 floats = (2 * bn + (size_t)b * s * s + 6 * bn + 1) * sizeof(float);
    tmix_host_free(mx->be, h->block); // the forward has waited for the copies that read it
    memset(h, 0, sizeof *h);
    TMIX_TRY(tmix_host_alloc(mx->be, i64 + boxes + floats, &h->block));
    mx->generation++;
    h->batch = b;
    h->n = n;
    h->stn_size = s;
    h->sources = h->block;
    h->labels = h->sources + bn;
    h->batch_labels = h->labels + bn;
    h->boxes = (tmix_box *)(h->batch_labels + b);
    h->weights = (float *)(h->boxes + b);
    h->lam = h->weights + bn;
    h->noise = h->lam + bn;
    h->theta = h->noise + (size_t)b * s * s;
    h->tau = h->theta + 6 * bn;
    for (size_t i = 0; i < bn; i++)
        memcpy(h->theta + 6 * i, (const float[6]){1, 0, 0, 0, 1, 0}, 6 * sizeof(float));
    return 0;
}

// ---- checks ---------------------------------------------------------------------------------

static int check_inputs(const tmix_mixer *mx, const tmix_teacher *teacher,
                        const tmix_module *module, const tmix_tensor *images,
                        const int64_t *labels, const tmix_draws *d, bool with_loss)
{
    const char *method = tmix_method_name(mx->method);
    if (!images || images->dtype != TMIX_F32 || images->ndim != 4 ||
        images->device != mx->be->device)
        return tmix_fail(TMIX_EINVAL, "mix: images must be a float32 (B, C, H, W) tensor on %s",
                         mx->be->name);
    const int64_t b = images->shape[0];
    if (d->batch != b)
        return tmix_fail(TMIX_ESHAPE, "mix: draws are for a batch of %d, images for %lld",
                         d->batch, (long long)b);
    if (!teacher && (tmix_method_uses_cams(mx->method) || with_loss))
        return tmix_fail(TMIX_EINVAL, "mix: method %s%s needs a teacher", method,
                         with_loss ? " with the loss" : "");
    for (int64_t i = 0; i < b; i++)
        if (labels[i] < 0)
            return tmix_fail(TMIX_EINVAL, "mix: label %lld of sample %lld is negative",
                             (long long)labels[i], (long long)i);
    if (teacher) {
        const tmix_teacher_info *ti = tmix_teacher_info_get(teacher);
        if (images->shape[1] != ti->in_channels)
            return tmix_fail(TMIX_ESHAPE, "mix: images have %lld channels, the %s teacher takes %d",
                             (long long)images->shape[1], ti->arch, ti->in_channels);
        for (int64_t i = 0; i < b; i++)
            if (labels[i] >= ti->num_classes)
                return tmix_fail(TMIX_EINVAL, "mix: label %lld of sample %lld is outside [0, %d)",
                                 (long long)labels[i], (long long)i, ti->num_classes);
    }
    if (mx->method == TMIX_MIX_CUTMIX && d->n != 2)
        return tmix_fail(TMIX_EINVAL, "mix: cutmix mixes 2 images, not n = %d", d->n);
    const bool needs_module = tmix_method_uses_stn(mx->method) || tmix_method_uses_mpn(mx->method);
    if (needs_module && !module)
        return tmix_fail(TMIX_EINVAL, "mix: method %s needs a mixing module", method);
    if (needs_module && (module->n != d->n || module->stn_size != d->stn_size))
        return tmix_fail(TMIX_EINVAL, "mix: the module mixes n = %d at STN size %d, the draws "
                         "are for n = %d, size %d", module->n, module->stn_size, d->n,
                         d->stn_size);
    return 0;
}

// ---- stages ---------------------------------------------------------------------------------

// theta (B * n, 2, 3) from the STN: input = n CAMs at S x S, n λ maps, the noise map.
static int stn_forward(tmix_mixer *mx, const tmix_module *mod)
{
    tmix_backend *be = mx->be;
    forward_buffers *f = &mx->f;
    const int64_t b = mx->batch, n = mx->n, s = mx->stn_size, c1 = s - 6, p1 = c1 / 2,
                  c2 = p1 - 4, p2 = c2 / 2;
    const tmix_tensor *w = mod->p;
    TMIX_TRY(ensure(mx, &mx->cs_small, 4, b, n, s, s));
    tmix_tensor cs4 = reshape(&mx->cs, 4, b, n, mx->height, mx->width);
    TMIX_TRY(tmix_resize_bilinear_forward(be, &mx->cs_small, &cs4));
    TMIX_TRY(ensure(mx, &f->stn_in, 4, b, 2 * n + 1, s, s));
    TMIX_TRY(tmix_concat_channels_forward(be, &f->stn_in, &mx->cs_small, 0));
    TMIX_TRY(tmix_fill_channels(be, &f->stn_in, &mx->lam, (int)n));
    TMIX_TRY(tmix_concat_channels_forward(be, &f->stn_in, &mx->noise, (int)(2 * n)));

    TMIX_TRY(ensure(mx, &f->a1, 4, b, 8, c1, c1));
    TMIX_TRY(tmix_conv2d_forward(be, &f->a1, &f->stn_in, &w[TMIX_STN_LOC0_W],
                                 &w[TMIX_STN_LOC0_B], conv_valid));
    TMIX_TRY(ensure(mx, &f->r1, 4, b, 8, p1, p1));
    TMIX_TRY(tmix_maxpool2d_forward(be, &f->r1, &f->a1, pool2));
    TMIX_TRY(tmix_relu_forward(be, &f->r1, &f->r1));
    TMIX_TRY(ensure(mx, &f->a2, 4, b, 10, c2, c2));
    TMIX_TRY(tmix_conv2d_forward(be, &f->a2, &f->r1, &w[TMIX_STN_LOC3_W], &w[TMIX_STN_LOC3_B],
                                 conv_valid));
    TMIX_TRY(ensure(mx, &f->r2, 4, b, 10, p2, p2));
    TMIX_TRY(tmix_maxpool2d_forward(be, &f->r2, &f->a2, pool2));
    TMIX_TRY(tmix_relu_forward(be, &f->r2, &f->r2));
    tmix_tensor flat = reshape(&f->r2, 2, b, 10 * p2 * p2, 0, 0);
    TMIX_TRY(ensure(mx, &f->r3, 2, b, 32, 0, 0));
    TMIX_TRY(tmix_linear_forward(be, &f->r3, &flat, &w[TMIX_STN_FC0_W], &w[TMIX_STN_FC0_B]));
    TMIX_TRY(tmix_relu_forward(be, &f->r3, &f->r3));
    TMIX_TRY(ensure(mx, &f->theta, 3, b * n, 2, 3, 0));
    tmix_tensor theta2 = reshape(&f->theta, 2, b, 6 * n, 0, 0);
    return tmix_linear_forward(be, &theta2, &f->r3, &w[TMIX_STN_FC2_W], &w[TMIX_STN_FC2_B]);
}

static int identity_theta(tmix_mixer *mx)
{
    TMIX_TRY(ensure(mx, &mx->f.theta, 3, (int64_t)mx->batch * mx->n, 2, 3, 0));
    return tmix_tensor_upload_async(mx->be, &mx->f.theta, mx->h.theta);
}

static int warp_forward(tmix_mixer *mx)
{
    tmix_tensor *warped = &mx->f.warped, *warped_cams = &mx->f.warped_cams;
    tmix_backend *be = mx->be;
    const int64_t rows = (int64_t)mx->batch * mx->n, h = mx->height, w = mx->width;
    TMIX_TRY(ensure(mx, &mx->f.grid, 4, rows, h, w, 2));
    TMIX_TRY(tmix_affine_grid_forward(be, &mx->f.grid, &mx->f.theta));
    TMIX_TRY(ensure(mx, warped, 4, rows, mx->channels, h, w));
    TMIX_TRY(tmix_grid_sample_forward(be, warped, &mx->xs, &mx->f.grid));
    TMIX_TRY(ensure(mx, warped_cams, 4, rows, 1, h, w));
    return tmix_grid_sample_forward(be, warped_cams, &mx->cs, &mx->f.grid);
}

// masks (B, n, H, W) = softmax(MPN(warped cams, λ maps) / τ).
static int mpn_forward(tmix_mixer *mx, const tmix_module *mod, const tmix_tensor *warped_cams)
{
    tmix_backend *be = mx->be;
    forward_buffers *f = &mx->f;
    const int64_t b = mx->batch, n = mx->n, h = mx->height, w = mx->width;
    const tmix_tensor *p = mod->p;
    TMIX_TRY(ensure(mx, &f->mpn_in, 4, b, 2 * n, h, w));
    tmix_tensor wc = reshape(warped_cams, 4, b, n, h, w);
    TMIX_TRY(tmix_concat_channels_forward(be, &f->mpn_in, &wc, 0));
    TMIX_TRY(tmix_fill_channels(be, &f->mpn_in, &mx->lam, (int)n));
    const tmix_tensor *in = &f->mpn_in;
    for (int l = 0; l < 3; l++) {
        TMIX_TRY(ensure(mx, &f->m[l], 4, b, 32, h, w));
        TMIX_TRY(tmix_conv2d_forward(be, &f->m[l], in, &p[TMIX_MPN_NET0_W + 2 * l],
                                     &p[TMIX_MPN_NET0_B + 2 * l], conv_same3_relu));
        in = &f->m[l];
    }
    TMIX_TRY(ensure(mx, &f->h, 4, b, n, h, w));
    TMIX_TRY(tmix_conv2d_forward(be, &f->h, in, &p[TMIX_MPN_NET6_W], &p[TMIX_MPN_NET6_B],
                                 conv_valid));
    TMIX_TRY(tmix_tensor_upload_async(be, &mx->tau, mx->h.tau));
    return tmix_softmax_channel_forward(be, &f->masks, &f->h, &mx->tau);
}

// τ = exp(the module's log τ), read from the device before the batch's work is queued.
static int read_tau(tmix_mixer *mx, const tmix_module *mod)
{
    float log_tau;
    TMIX_TRY(tmix_tensor_download(mx->be, &log_tau, &mod->p[TMIX_MPN_LOG_TAU]));
    mx->tau_value = expf(log_tau);
    if (!(mx->tau_value > 0) || !isfinite(mx->tau_value))
        return tmix_fail(TMIX_EINVAL, "mix: the module's log_tau = %g gives no usable "
                         "temperature", log_tau);
    mx->h.tau[0] = mx->tau_value;
    return 0;
}

// CutMix: the box of source 2 pasted into source 1, sized from λ and clipped to the image;
// the weights follow the clipped area.
static void cutmix_boxes(tmix_mixer *mx, const tmix_draws *d)
{
    const int b = mx->batch, h = mx->height, w = mx->width;
    tmix_box *boxes = mx->h.boxes;
    for (int i = 0; i < b; i++) {
        const double cut = sqrt(1.0 - d->lam[2 * i]);
        const int cut_h = (int)(h * cut), cut_w = (int)(w * cut);
        const int cy = (int)fmin(d->centre[2 * i] * h, h - 1);
        const int cx = (int)fmin(d->centre[2 * i + 1] * w, w - 1);
        tmix_box *box = &boxes[i];
        box->y0 = cy - cut_h / 2 < 0 ? 0 : cy - cut_h / 2;
        box->y1 = cy + cut_h / 2 > h ? h : cy + cut_h / 2;
        box->x0 = cx - cut_w / 2 < 0 ? 0 : cx - cut_w / 2;
        box->x1 = cx + cut_w / 2 > w ? w : cx + cut_w / 2;
        const double area = (double)(box->y1 - box->y0) * (box->x1 - box->x0) / ((double)h * w);
        mx->h.weights[2 * i] = (float)(1.0 - area);
        mx->h.weights[2 * i + 1] = (float)area;
    }
}

// Fixed masks: each weight broadcast over the image (none, mixup, stn-only).
static int constant_masks(tmix_mixer *mx)
{
    TMIX_TRY(ensure(mx, &mx->weights_t, 2, mx->batch, mx->n, 0, 0));
    TMIX_TRY(tmix_tensor_upload_async(mx->be, &mx->weights_t, mx->h.weights));
    return tmix_fill_channels(mx->be, &mx->f.masks, &mx->weights_t, 0);
}

// softmax-cam: masks = softmax over the n (unwarped) CAMs; weights = each mask's mean, on
// the host once the backend has synchronized.
static int softmax_cam_masks(tmix_mixer *mx)
{
    tmix_backend *be = mx->be;
    TMIX_TRY(tmix_tensor_upload_async(be, &mx->tau, mx->h.tau));
    tmix_tensor cs4 = reshape(&mx->cs, 4, mx->batch, mx->n, mx->height, mx->width);
    TMIX_TRY(tmix_softmax_channel_forward(be, &mx->f.masks, &cs4, &mx->tau));
    TMIX_TRY(ensure(mx, &mx->shares, 2, mx->batch, mx->n, 0, 0));
    TMIX_TRY(tmix_avgpool_forward(be, &mx->shares, &mx->f.masks));
    return tmix_tensor_download_async(be, mx->h.weights, &mx->shares);
}

// Soft targets from the sources' labels and weights, and the teacher's loss on mixed.
static int teacher_loss(tmix_mixer *mx, tmix_teacher *teacher, tmix_mix_result *res)
{
    tmix_backend *be = mx->be;
    const int b = mx->batch, n = mx->n, j = mx->classes;
    TMIX_TRY(tmix_teacher_forward(teacher, &mx->logits, &mx->mixed));
    float *targets = host_scratch(mx, (size_t)b * j);
    if (!targets)
        return tmix_fail(TMIX_ENOMEM, "mix: out of host memory");
    memset(targets, 0, sizeof *targets * (size_t)b * j);
    for (int i = 0; i < b; i++)
        for (int k = 0; k < n; k++)
            targets[i * j + mx->h.labels[i * n + k]] += mx->h.weights[i * n + k];
    TMIX_TRY(ensure(mx, &mx->targets, 2, b, j, 0, 0));
    TMIX_TRY(tmix_tensor_upload(be, &mx->targets, targets));
    TMIX_TRY(ensure(mx, &mx->loss, 1, 1, 0, 0, 0));
    TMIX_TRY(tmix_cross_entropy_forward(be, &mx->loss, &mx->logits, &mx->targets));
    TMIX_TRY(tmix_tensor_download(be, &res->loss, &mx->loss));
    res->logits = &mx->logits;
    return 0;
}

// ---- forward --------------------------------------------------------------------------------

// Everything the host decides for the batch, into the host arrays: each sample's inputs,
// their labels and weights, λ, the noise, CutMix's boxes, τ.
static int fill_host(tmix_mixer *mx, const tmix_module *module, const int64_t *labels,
                     const tmix_draws *d)
{
    host_arrays *h = &mx->h;
    const int b = mx->batch, n = mx->n, s = mx->stn_size;
    memcpy(h->batch_labels, labels, sizeof *labels * (size_t)b);
    for (int i = 0; i < b; i++)
        for (int k = 0; k < n; k++) { // itself, then its partners
            const int64_t src = k == 0 ? i : d->perm[(size_t)(k - 1) * b + i];
            h->sources[i * n + k] = src;
            h->labels[i * n + k] = labels[src];
            h->weights[i * n + k] = d->lam[i * n + k];
        }
    memcpy(h->lam, d->lam, sizeof *h->lam * (size_t)b * n);
    if (tmix_method_uses_stn(mx->method))
        memcpy(h->noise, d->noise, sizeof *h->noise * (size_t)b * s * s);
    switch (mx->method) {
    case TMIX_MIX_NONE:
        for (int i = 0; i < b * n; i++)
            h->weights[i] = i % n == 0;
        return 0;
    case TMIX_MIX_CUTMIX:
        cutmix_boxes(mx, d);
        return 0;
    case TMIX_MIX_SOFTMAX_CAM:
        mx->tau_value = h->tau[0] = 1.0f;
        return 0;
    case TMIX_MIX_MPN_ONLY:
    case TMIX_MIX_TRANSFORMMIX:
        return read_tau(mx, module);
    default:
        return 0;
    }
}

// The device's work of one forward, in order, reading the host only through the host arrays.
static int enqueue(tmix_mixer *mx, tmix_teacher *teacher, const tmix_module *module,
                   const tmix_tensor *images)
{
    tmix_backend *be = mx->be;
    const int64_t b = mx->batch, n = mx->n, c = mx->channels, h = mx->height, w = mx->width,
                  s = mx->stn_size;

    // CAMs of every sample for its own label.
    if (teacher) {
        TMIX_TRY(ensure(mx, &mx->logits, 2, b, mx->classes, 0, 0));
        TMIX_TRY(tmix_teacher_infer(teacher, &mx->logits, images));
        TMIX_TRY(ensure(mx, &mx->cams, 4, b, 1, h, w));
        TMIX_TRY(tmix_teacher_cams(teacher, &mx->cams, mx->h.batch_labels));
    }

    // Each sample's n inputs, sample-major.
    TMIX_TRY(ensure(mx, &mx->xs, 4, b * n, c, h, w));
    TMIX_TRY(tmix_gather(be, &mx->xs, images, mx->h.sources));
    if (teacher) {
        TMIX_TRY(ensure(mx, &mx->cs, 4, b * n, 1, h, w));
        TMIX_TRY(tmix_gather(be, &mx->cs, &mx->cams, mx->h.sources));
    }
    TMIX_TRY(ensure(mx, &mx->lam, 2, b, n, 0, 0));
    TMIX_TRY(tmix_tensor_upload_async(be, &mx->lam, mx->h.lam));
    TMIX_TRY(ensure(mx, &mx->tau, 1, 1, 0, 0, 0));

    // Warp: learned, or the identity (then the inputs are used as they are).
    const tmix_tensor *warped = &mx->xs, *warped_cams = &mx->cs;
    if (tmix_method_uses_stn(mx->method)) {
        TMIX_TRY(ensure(mx, &mx->noise, 4, b, 1, s, s));
        TMIX_TRY(tmix_tensor_upload_async(be, &mx->noise, mx->h.noise));
        TMIX_TRY(stn_forward(mx, module));
        TMIX_TRY(warp_forward(mx));
        warped = &mx->f.warped;
        warped_cams = &mx->f.warped_cams;
    } else {
        TMIX_TRY(identity_theta(mx));
    }

    // Masks (and, for softmax-cam, the label weights).
    TMIX_TRY(ensure(mx, &mx->f.masks, 4, b, n, h, w));
    switch (mx->method) {
    case TMIX_MIX_NONE:
    case TMIX_MIX_MIXUP:
    case TMIX_MIX_STN_ONLY:
        TMIX_TRY(constant_masks(mx));
        break;
    case TMIX_MIX_CUTMIX:
        TMIX_TRY(tmix_box_masks(be, &mx->f.masks, mx->h.boxes));
        break;
    case TMIX_MIX_SOFTMAX_CAM:
        TMIX_TRY(softmax_cam_masks(mx));
        break;
    case TMIX_MIX_MPN_ONLY:
    case TMIX_MIX_TRANSFORMMIX:
        TMIX_TRY(mpn_forward(mx, module, warped_cams));
        break;
    default:
        return tmix_fail(TMIX_EINVAL, "mix: unknown method %d", (int)mx->method);
    }
    TMIX_TRY(ensure(mx, &mx->mixed, 4, b, c, h, w));
    return tmix_blend_forward(be, &mx->mixed, &mx->f.masks, warped);
}

static void make_key(graph_key *k, const tmix_mixer *mx, const tmix_teacher *teacher,
                     const tmix_module *module, const tmix_tensor *images)
{
    memset(k, 0, sizeof *k); // padding too: keys are compared with memcmp
    k->images = images->data;
    memcpy(k->shape, images->shape, sizeof k->shape);
    k->n = mx->n;
    k->stn_size = mx->stn_size;
    k->teacher = teacher;
    k->teacher_generation = teacher ? tmix_teacher_generation(teacher) : 0;
    k->module = module;
    for (int i = 0; module && i < TMIX_MODULE_COUNT; i++)
        k->params[i] = module->p[i].data;
    k->mixer_generation = mx->generation;
}

// Records enqueue into a graph (mx->graph). A failure is tried again at the next batch of the
// shape, up to MAX_CAPTURE_FAILURES: then graphs are off for this mixer, and the reason kept.
static void capture(tmix_mixer *mx, tmix_teacher *teacher, const tmix_module *module,
                   const tmix_tensor *images, const graph_key *key)
{
    int rc = tmix_capture_begin(mx->be);
    if (rc == 0) {
        mx->capturing = true;
        rc = enqueue(mx, teacher, module, images);
        mx->capturing = false;
        char why[sizeof mx->graph_error];
        snprintf(why, sizeof why, "%s", rc < 0 ? tmix_last_error() : "");
        const int end = tmix_capture_end(mx->be, &mx->graph);
        if (rc < 0) // the first failure says why; the capture's end only follows from it
            tmix_fail(rc, "%s", why);
        else
            rc = end;
    }
    if (rc < 0) {
        tmix_graph_free(mx->be, mx->graph);
        mx->graph = NULL;
        if (++mx->capture_failures == MAX_CAPTURE_FAILURES) {
            snprintf(mx->graph_error, sizeof mx->graph_error, "%s", tmix_last_error());
            mx->graphs = false;
        }
        return;
    }
    mx->graph_key = *key;
}

// enqueue, or with graphs its replay: the first forward of a batch shape runs op by op (and
// allocates, chooses convolution algorithms, sizes scratch), the second records a graph, and
// the rest launch it. Anything that moves a buffer changes the key and drops the graph.
static int run_device(tmix_mixer *mx, tmix_teacher *teacher, const tmix_module *module,
                      const tmix_tensor *images)
{
    if (!mx->graphs || tmix_profile_on) // a profile times the ops one by one
        return enqueue(mx, teacher, module, images);
    graph_key key;
    make_key(&key, mx, teacher, module, images);
    if (!mx->graph || memcmp(&key, &mx->graph_key, sizeof key) != 0) {
        tmix_graph_free(mx->be, mx->graph);
        mx->graph = NULL;
        if (memcmp(&key, &mx->last_key, sizeof key) == 0)
            capture(mx, teacher, module, images, &key);
    }
    // The graph may be refused (the backend moved its scratch buffer since): this batch then
    // runs op by op and the next one records it again. A fault fails the op by op run too.
    if (mx->graph && tmix_graph_launch(mx->be, mx->graph) == 0) {
        mx->launches++;
        return 0;
    }
    tmix_graph_free(mx->be, mx->graph);
    mx->graph = NULL;
    TMIX_TRY(enqueue(mx, teacher, module, images));
    make_key(&mx->last_key, mx, teacher, module, images);
    return 0;
}

int tmix_mix_forward(tmix_mixer *mx, tmix_teacher *teacher, const tmix_module *module,
                     const tmix_tensor *images, const int64_t *labels, const tmix_draws *d,
                     bool with_loss, tmix_mix_result *res)
{
    TMIX_TRY(check_inputs(mx, teacher, module, images, labels, d, with_loss));
    tmix_backend *be = mx->be;
    const int b = d->batch, n = d->n, s = d->stn_size;
    TMIX_TRY(tmix_synchronize(be)); // the last batch's copies may still read the host arrays
    TMIX_TRY(size_host(mx, b, n, s));
    mx->batch = b;
    mx->n = n;
    mx->channels = (int)images->shape[1];
    mx->height = (int)images->shape[2];
    mx->width = (int)images->shape[3];
    mx->stn_size = s;
    mx->classes = teacher ? tmix_teacher_info_get(teacher)->num_classes : 0;
    mx->images = images;
    mx->has_loss = false;
    memset(res, 0, sizeof *res);
    TMIX_TRY(fill_host(mx, module, labels, d));
    TMIX_TRY(with_loss ? enqueue(mx, teacher, module, images)
                       : run_device(mx, teacher, module, images));
    if (mx->method == TMIX_MIX_SOFTMAX_CAM) // its weights come back from the device
        TMIX_TRY(tmix_synchronize(be));

    const bool stn = tmix_method_uses_stn(mx->method);
    res->cams = teacher ? &mx->cams : NULL;
    res->theta = &mx->f.theta;
    res->warped = stn ? &mx->f.warped : &mx->xs;
    res->warped_cams = !teacher ? NULL : stn ? &mx->f.warped_cams : &mx->cs;
    res->masks = &mx->f.masks;
    res->mixed = &mx->mixed;
    res->sources = mx->h.sources;
    res->labels = mx->h.labels;
    res->weights = mx->h.weights;
    if (with_loss) {
        TMIX_TRY(teacher_loss(mx, teacher, res));
        mx->has_loss = true;
    }
    return 0;
}

// ---- backward -------------------------------------------------------------------------------

// grads[i] += dW, dbias for layer i (weight i, bias i + 1) of a convolution, skipping empty
// gradient tensors.
static int conv_grads(tmix_backend *be, tmix_tensor *grads, int i, const tmix_tensor *dout,
                      const tmix_tensor *in, tmix_conv2d_params p)
{
    if (grads[i].data)
        TMIX_TRY(tmix_conv2d_backward_weight(be, &grads[i], dout, in, p));
    if (grads[i + 1].data)
        TMIX_TRY(tmix_bias_backward(be, &grads[i + 1], dout));
    return 0;
}

static int linear_grads(tmix_backend *be, tmix_tensor *grads, int i, const tmix_tensor *dout,
                        const tmix_tensor *in)
{
    if (grads[i].data)
        TMIX_TRY(tmix_linear_backward_weight(be, &grads[i], dout, in));
    if (grads[i + 1].data)
        TMIX_TRY(tmix_bias_backward(be, &grads[i + 1], dout));
    return 0;
}

// From dmasks to the MPN's parameters, log τ, and (for the STN) the warped CAMs.
static int mpn_backward(tmix_mixer *mx, const tmix_module *mod, tmix_tensor *grads)
{
    tmix_backend *be = mx->be;
    forward_buffers *f = &mx->f;
    backward_buffers *g = &mx->g;
    const int64_t b = mx->batch, n = mx->n, h = mx->height, w = mx->width;
    const tmix_tensor *p = mod->p;
    TMIX_TRY(ensure_zero(mx, &g->dh, 4, b, n, h, w));
    TMIX_TRY(ensure_zero(mx, &g->dtau, 1, 1, 0, 0, 0));
    TMIX_TRY(tmix_softmax_channel_backward(be, &g->dh, &g->dtau, &g->dmasks, &f->masks, &f->h,
                                           &mx->tau));
    if (grads[TMIX_MPN_LOG_TAU].data) { // d/dlog τ = τ d/dτ; a 1-element update on the host
        float dtau, acc;
        TMIX_TRY(tmix_tensor_download(be, &dtau, &g->dtau));
        TMIX_TRY(tmix_tensor_download(be, &acc, &grads[TMIX_MPN_LOG_TAU]));
        acc += dtau * mx->tau_value;
        TMIX_TRY(tmix_tensor_upload(be, &grads[TMIX_MPN_LOG_TAU], &acc));
    }
    // 1x1 conv, then three (conv 3x3 + ReLU) layers back to the MPN input. g->da is the
    // gradient at a layer's output before its ReLU, g->db after it.
    TMIX_TRY(conv_grads(be, grads, TMIX_MPN_NET6_W, &g->dh, &f->m[2], conv_valid));
    TMIX_TRY(ensure_zero(mx, &g->db, 4, b, 32, h, w));
    TMIX_TRY(tmix_conv2d_backward_input(be, &g->db, &g->dh, &p[TMIX_MPN_NET6_W], conv_valid));
    for (int l = 2; l >= 0; l--) {
        TMIX_TRY(ensure_zero(mx, &g->da, 4, b, 32, h, w));
        TMIX_TRY(tmix_relu_backward(be, &g->da, &g->db, &f->m[l]));
        const tmix_tensor *in = l > 0 ? &f->m[l - 1] : &f->mpn_in;
        TMIX_TRY(conv_grads(be, grads, TMIX_MPN_NET0_W + 2 * l, &g->da, in, conv_same3));
        if (l > 0) {
            TMIX_TRY(tmix_tensor_zero(be, &g->db));
            TMIX_TRY(tmix_conv2d_backward_input(be, &g->db, &g->da, &p[TMIX_MPN_NET0_W + 2 * l],
                                                conv_same3));
        }
    }
    if (!tmix_method_uses_stn(mx->method))
        return 0; // the CAMs are constants: nothing flows further
    TMIX_TRY(ensure_zero(mx, &g->dmpn_in, 4, b, 2 * n, h, w));
    TMIX_TRY(tmix_conv2d_backward_input(be, &g->dmpn_in, &g->da, &p[TMIX_MPN_NET0_W],
                                        conv_same3));
    TMIX_TRY(ensure_zero(mx, &g->dwarped_cams, 4, b * n, 1, h, w));
    tmix_tensor dwc = reshape(&g->dwarped_cams, 4, b, n, h, w);
    return tmix_concat_channels_backward(be, &dwc, &g->dmpn_in, 0);
}

// From the warped images and CAMs to θ and the STN's parameters.
static int stn_backward(tmix_mixer *mx, const tmix_module *mod, tmix_tensor *grads)
{
    tmix_backend *be = mx->be;
    forward_buffers *f = &mx->f;
    backward_buffers *g = &mx->g;
    const int64_t b = mx->batch, n = mx->n, rows = b * n, s = mx->stn_size, c1 = s - 6,
                  p1 = c1 / 2, c2 = p1 - 4, p2 = c2 / 2;
    const tmix_tensor *p = mod->p;
    TMIX_TRY(ensure_zero(mx, &g->dgrid, 4, rows, mx->height, mx->width, 2));
    TMIX_TRY(tmix_grid_sample_backward(be, NULL, &g->dgrid, &g->dwarped, &mx->xs, &f->grid));
    if (tmix_method_uses_mpn(mx->method))
        TMIX_TRY(tmix_grid_sample_backward(be, NULL, &g->dgrid, &g->dwarped_cams, &mx->cs,
                                           &f->grid));
    TMIX_TRY(ensure_zero(mx, &g->dtheta, 3, rows, 2, 3, 0));
    TMIX_TRY(tmix_affine_grid_backward(be, &g->dtheta, &g->dgrid));

    tmix_tensor dtheta2 = reshape(&g->dtheta, 2, b, 6 * n, 0, 0);
    TMIX_TRY(linear_grads(be, grads, TMIX_STN_FC2_W, &dtheta2, &f->r3));
    TMIX_TRY(ensure_zero(mx, &g->dr3, 2, b, 32, 0, 0));
    TMIX_TRY(tmix_linear_backward_input(be, &g->dr3, &dtheta2, &p[TMIX_STN_FC2_W]));
    TMIX_TRY(ensure_zero(mx, &g->df1, 2, b, 32, 0, 0));
    TMIX_TRY(tmix_relu_backward(be, &g->df1, &g->dr3, &f->r3));
    tmix_tensor flat = reshape(&f->r2, 2, b, 10 * p2 * p2, 0, 0);
    TMIX_TRY(linear_grads(be, grads, TMIX_STN_FC0_W, &g->df1, &flat));
    TMIX_TRY(ensure_zero(mx, &g->dr2, 4, b, 10, p2, p2));
    tmix_tensor dflat = reshape(&g->dr2, 2, b, 10 * p2 * p2, 0, 0);
    TMIX_TRY(tmix_linear_backward_input(be, &dflat, &g->df1, &p[TMIX_STN_FC0_W]));

    TMIX_TRY(ensure_zero(mx, &g->dp2, 4, b, 10, p2, p2));
    TMIX_TRY(tmix_relu_backward(be, &g->dp2, &g->dr2, &f->r2));
    TMIX_TRY(ensure_zero(mx, &g->da2, 4, b, 10, c2, c2));
    TMIX_TRY(tmix_maxpool2d_backward(be, &g->da2, &g->dp2, &f->a2, pool2));
    TMIX_TRY(conv_grads(be, grads, TMIX_STN_LOC3_W, &g->da2, &f->r1, conv_valid));
    TMIX_TRY(ensure_zero(mx, &g->dr1, 4, b, 8, p1, p1));
    TMIX_TRY(tmix_conv2d_backward_input(be, &g->dr1, &g->da2, &p[TMIX_STN_LOC3_W], conv_valid));
    TMIX_TRY(ensure_zero(mx, &g->dp1, 4, b, 8, p1, p1));
    TMIX_TRY(tmix_relu_backward(be, &g->dp1, &g->dr1, &f->r1));
    TMIX_TRY(ensure_zero(mx, &g->da1, 4, b, 8, c1, c1));
    TMIX_TRY(tmix_maxpool2d_backward(be, &g->da1, &g->dp1, &f->a1, pool2));
    return conv_grads(be, grads, TMIX_STN_LOC0_W, &g->da1, &f->stn_in, conv_valid);
}

int tmix_mix_backward(tmix_mixer *mx, tmix_teacher *teacher, const tmix_module *module,
                      tmix_tensor *grads, tmix_tensor *dmixed)
{
    if (!mx->has_loss)
        return tmix_fail(TMIX_EINVAL, "mix backward: the last forward ran without the loss");
    tmix_backend *be = mx->be;
    backward_buffers *g = &mx->g;
    const tmix_method method = mx->method;
    const bool stn = tmix_method_uses_stn(method), mpn = tmix_method_uses_mpn(method);
    if ((stn || mpn) && (!module || !grads))
        return tmix_fail(TMIX_EINVAL, "mix backward: method %s needs the module and its "
                         "gradients", tmix_method_name(method));
    const int64_t b = mx->batch, n = mx->n, c = mx->channels, h = mx->height, w = mx->width;

    TMIX_TRY(ensure_zero(mx, &g->dlogits, 2, b, mx->classes, 0, 0));
    TMIX_TRY(tmix_cross_entropy_backward(be, &g->dlogits, &mx->logits, &mx->targets));
    TMIX_TRY(ensure_zero(mx, &g->dmixed, 4, b, c, h, w));
    TMIX_TRY(tmix_teacher_backward(teacher, &g->dmixed, &g->dlogits));
    if (dmixed)
        TMIX_TRY(tmix_add(be, dmixed, dmixed, &g->dmixed));
    if (!stn && !mpn)
        return 0;

    const tmix_tensor *warped = stn ? &mx->f.warped : &mx->xs;
    if (mpn)
        TMIX_TRY(ensure_zero(mx, &g->dmasks, 4, b, n, h, w));
    if (stn)
        TMIX_TRY(ensure_zero(mx, &g->dwarped, 4, b * n, c, h, w));
    TMIX_TRY(tmix_blend_backward(be, mpn ? &g->dmasks : NULL, stn ? &g->dwarped : NULL,
                                 &g->dmixed, &mx->f.masks, warped));
    if (mpn)
        TMIX_TRY(mpn_backward(mx, module, grads));
    if (stn)
        TMIX_TRY(stn_backward(mx, module, grads));
    return 0;
}
