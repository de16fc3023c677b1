// A frozen network run whole at bf16 precision (ops.h, "frozen networks"). Op by op, each bf16
// convolution converts its float32 NCHW input and its weight to bf16 NHWC and its output
// back (conv2d.cu), and the ReLUs, sums and pools between run in float32: for resnet50 at
// 224x224 most of the batch's time is that traffic. Here the activations stay bf16 NHWC from
// layer to layer, the weights are converted once, and each convolution's bias, residual sum
// and ReLU are applied in one pass over its output:
// - the input is converted once (its channels padded to a multiple of 8); every other
//   layer's channels must be a multiple of 8 already (TMIX_ENOTSUP otherwise);
// - a convolution writes its own buffer; its epilogue adds the bias and, when an add is its
//   only reader, the add's other input, then the add's ReLU, into the add's buffer;
// - a ReLU whose input applied one already is that input's buffer;
// - average pooling writes float32 (N, C), and the linear layers run in float32.
// Layers' buffers share memory where their lifetimes do not meet (plan_buffers). Every
// buffer is one allocation, made here with the algorithms chosen, so that a forward only
// queues kernels (and can be captured in a CUDA graph).
#include <math.h>
#include <new>

#include <cuda_bf16.h>

#include "bf16_layout.cuh"
#include "conv2d.cuh"
#include "ops.cuh"

typedef __nv_bfloat16 bf16;

// Eight channels, the unit every kernel here reads and writes (channels are whole 8s).
struct alignas(16) bf16x8 {
    bf16 h[8];
};

struct layer_run {
    tmix_layer l;
    char *act;                  // the output: bf16 (N, H, W, C), or float32 (N, C) if 2-D
    int64_t c_store;            // channels stored per pixel (4-D)
    conv_setup *conv = nullptr; // conv: descriptors and algorithm
    bf16 *weight = nullptr;     // conv: (OC, KH, KW, c_store of the input)
    int fused_add = -1;         // conv: the add whose output its epilogue writes, or -1
    bool done_by_input = false; // an add a conv computed, or a ReLU its input applied
    // Its buffer (none for a ReLU that is its input's): written at step `first` (the layer's
    // index, or a fused add's convolution's), last read at step `last`, and placed at
    // `offset` in the activations' memory, which buffers whose steps do not meet share.
    int first = 0, last = 0;
    size_t offset = 0;
};

struct layers_impl {
    tmix_backend *be;
    int count;
    layer_run *L;
    int64_t x_shape[4], x_c_store;
    bf16 *x;         // the input, bf16 (N, H, W, x_c_store)
    void *workspace; // the largest of the convolutions'
    size_t activation_bytes; // the activations' memory, shared by buffers (plan_buffers)
    void *block;     // every buffer above
};

static __device__ __forceinline__ float relu_kept_nan(float v) { return v < 0.0f ? 0.0f : v; }

// out = round(in * scale[c] + shift[c]) + res, then max(0, ·) when relu, over `vectors` runs
// of 8 channels of a tensor of C channels per pixel; scale, shift and res may each be NULL.
// The rounding to bf16 before the sum is what the layers run op by op would do (the
// convolution's output is an activation of its own there): it costs no traffic, and keeps
// the results those of the ops.
static __global__ void pointwise_kernel(bf16x8 *out, const bf16x8 *in, const float *scale,
                                        const float *shift, const bf16x8 *res, int64_t vectors,
                                        int64_t vectors_per_pixel, bool relu)
{
    TMIX_CUDA_LOOP(v, vectors) {
        const int64_t c0 = v % vectors_per_pixel * 8;
        const bf16x8 a = in[v];
        bf16x8 b, y;
        if (res)
            b = res[v];
        for (int k = 0; k < 8; k++) {
            float x = __bfloat162float(a.h[k]);
            if (scale) // one rounding, as the batch norm op's multiply-add
                x = fmaf(x, scale[c0 + k], shift ? shift[c0 + k] : 0.0f);
            else if (shift)
                x += shift[c0 + k];
            if (res)
                x = __bfloat162float(__float2bfloat16_rn(x)) + __bfloat162float(b.h[k]);
            y.h[k] = __float2bfloat16_rn(relu ? relu_kept_nan(x) : x);
        }
        out[v] = y;
    }
}

// PyTorch's MaxPool2d on (N, H, W, C): padding never wins, a NaN does; one thread per output.
static __global__ void maxpool_kernel(bf16 *out, const bf16 *in, int64_t count, int64_t H,
                                      int64_t W, int64_t C, int64_t OH, int64_t OW,
                                      tmix_pool2d_params p)
{
    TMIX_CUDA_LOOP(o, count) {
        const int64_t c = o % C, ow = o / C % OW, oh = o / C / OW % OH, n = o / C / OW / OH;
        const int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
        float m = -INFINITY;
        for (int64_t h = h0; h < h0 + p.kernel_h; h++)
            for (int64_t w = w0; w < w0 + p.kernel_w; w++) {
                if (h < 0 || h >= H || w < 0 || w >= W || isnan(m))
                    continue;
                const float v = __bfloat162float(in[((n * H + h) * W + w) * C + c]);
                if (v > m || isnan(v))
                    m = v;
            }
        out[o] = __float2bfloat16_rn(m);
    }
}

// out (N, C) float32 = the mean over the HW pixels of in (N, HW, C); one thread per (n, c),
// summing in double in pixel order.
static __global__ void avgpool_kernel(float *out, const bf16 *in, int64_t count, int64_t HW,
                                      int64_t C)
{
    TMIX_CUDA_LOOP(o, count) {
        const bf16 *x = in + o / C * HW * C + o % C;
        double s = 0.0;
        for (int64_t p = 0; p < HW; p++)
            s += __bfloat162float(x[p * C]);
        out[o] = (float)(s / (double)HW);
    }
}

static int pointwise(tmix_cuda_state *st, const layer_run *r, void *out, const void *in,
                     const tmix_tensor *scale, const tmix_tensor *shift, const void *res,
                     bool relu)
{
    const int64_t *s = r->l.shape;
    const int64_t vectors = s[0] * s[2] * s[3] * r->c_store / 8;
    pointwise_kernel<<<tmix_cuda_blocks(vectors, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0,
                       st->stream>>>((bf16x8 *)out, (const bf16x8 *)in,
                                     scale ? tmix_f32(scale) : nullptr,
                                     shift ? tmix_f32(shift) : nullptr, (const bf16x8 *)res,
                                     vectors, r->c_store / 8, relu);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

// ---- making the layers ready -------------------------------------------------------------

static void impl_free(layers_impl *m)
{
    if (!m)
        return;
    if (m->block) {
        tmix_cuda_state *st = tmix_cuda_state_of(m->be);
        (void)tmix_cuda_use(st);
        (void)cudaFreeAsync(m->block, st->stream);
    }
    for (int i = 0; m->L && i < m->count; i++)
        delete m->L[i].conv;
    delete[] m->L;
    delete m;
}

// Which layers need no work of their own, and which convolutions compute the add after them.
static void plan_fusions(layers_impl *m)
{
    int *readers = new (std::nothrow) int[m->count]();
    if (!readers)
        return; // nothing fused: slower, the same values
    for (int i = 0; i < m->count; i++)
        for (int k = 0; k < (m->L[i].l.kind == TMIX_LAYER_ADD ? 2 : 1); k++)
            if (m->L[i].l.in[k] >= 0)
                readers[m->L[i].l.in[k]]++;
    for (int i = 0; i < m->count; i++) {
        layer_run *r = &m->L[i];
        if (r->l.kind == TMIX_LAYER_RELU && r->l.in[0] >= 0 && m->L[r->l.in[0]].l.relu)
            r->done_by_input = true;
        if (r->l.kind != TMIX_LAYER_ADD || r->l.in[0] < 0 || r->l.in[1] < 0)
            continue;
        // The later input: the other is computed by the time its epilogue runs.
        const int j = r->l.in[0] > r->l.in[1] ? r->l.in[0] : r->l.in[1];
        layer_run *c = &m->L[j];
        if (c->l.kind == TMIX_LAYER_CONV && !c->l.relu && !c->l.read && readers[j] == 1) {
            c->fused_add = i;
            r->done_by_input = true;
        }
    }
    delete[] readers;
}

// The bytes of layer i's buffer (0 for a ReLU that is its input's).
static size_t act_bytes(const layer_run *r)
{
    if (r->l.kind == TMIX_LAYER_RELU && r->done_by_input)
        return 0;
    if (r->l.ndim == 2)
        return tmix_cuda_align256((size_t)(r->l.shape[0] * r->l.shape[1]) * sizeof(float));
    const int64_t *s = r->l.shape;
    return tmix_cuda_align256((size_t)(s[0] * s[2] * s[3] * r->c_store) * sizeof(bf16));
}

// The shape of what layer i reads (its first input), for descriptors.
static tmix_tensor input_view(const layers_impl *m, const tmix_layer *l)
{
    const int64_t *s = l->in[0] < 0 ? m->x_shape : m->L[l->in[0]].l.shape;
    return tmix_tensor_view(nullptr, TMIX_F32, TMIX_CUDA, 4, s);
}

// The channels per pixel that layer r (a convolution) reads.
static int64_t input_channels(const layers_impl *m, const layer_run *r)
{
    return r->l.in[0] < 0 ? m->x_c_store : m->L[r->l.in[0]].c_store;
}

// The layer whose buffer holds layer i's output: itself, or for a ReLU its input applied,
// its input's.
static int owner(const layers_impl *m, int i)
{
    while (i >= 0 && m->L[i].l.kind == TMIX_LAYER_RELU && m->L[i].done_by_input)
        i = m->L[i].l.in[0];
    return i;
}

// Whether two buffers live at a common step. Inclusive: at a layer's step its input is
// still read while its output is written, so the two must not share bytes.
static bool steps_meet(const layer_run *a, const layer_run *b)
{
    return a->first <= b->last && b->first <= a->last;
}

// Places the buffers in the activations' memory, where a buffer lives from the step that
// writes it to the last that reads it, and buffers that never live at once share bytes.
static void plan_buffers(layers_impl *m)
{
    for (int i = 0; i < m->count; i++)
        m->L[i].first = m->L[i].last = i;
    for (int i = 0; i < m->count; i++)
        if (m->L[i].fused_add >= 0)
            m->L[m->L[i].fused_add].first = i; // the add's buffer: written at its conv's step
    for (int i = 0; i < m->count; i++) {
        const layer_run *r = &m->L[i];
        if (r->l.kind == TMIX_LAYER_RELU && r->done_by_input)
            continue; // reads nothing: it is its input's buffer
        const int step = r->l.kind == TMIX_LAYER_ADD ? r->first : i; // a fused add, its conv's
        for (int k = 0; k < (r->l.kind == TMIX_LAYER_ADD ? 2 : 1); k++) {
            const int o = owner(m, r->l.in[k]);
            if (o >= 0 && m->L[o].last < step)
                m->L[o].last = step;
        }
    }
    for (int i = 0; i < m->count; i++)
        if (m->L[i].l.read)
            m->L[owner(m, i)].last = m->count; // written out after the last layer
    // Largest first, each at the lowest offset clear of every placed buffer whose steps meet
    // its own. For resnet50 at 224x224, batch 128, that is 668 MB, the most bytes live at any
    // step, where a buffer per layer took 4.31 GB (and layer order, not size, 873 MB).
    const size_t unplaced = SIZE_MAX;
    for (int i = 0; i < m->count; i++)
        m->L[i].offset = unplaced;
    m->activation_bytes = 0;
    for (;;) {
        layer_run *r = nullptr;
        for (int i = 0; i < m->count; i++)
            if (m->L[i].offset == unplaced && act_bytes(&m->L[i]) &&
                (!r || act_bytes(&m->L[i]) > act_bytes(r)))
                r = &m->L[i];
        if (!r)
            break;
        const size_t bytes = act_bytes(r);
        r->offset = 0;
        for (bool moved = true; moved;) { // past each placed buffer it meets in time and memory
            moved = false;
            for (int j = 0; j < m->count; j++) {
                const layer_run *p = &m->L[j];
                if (p != r && p->offset != unplaced && act_bytes(p) && steps_meet(r, p) &&
                    r->offset < p->offset + act_bytes(p) && p->offset < r->offset + bytes) {
                    r->offset = p->offset + act_bytes(p);
                    moved = true;
                }
            }
        }
        if (r->offset + bytes > m->activation_bytes)
            m->activation_bytes = r->offset + bytes;
    }
}

static int describe_layers(layers_impl *m, size_t *workspace)
{
    tmix_cuda_state *st = tmix_cuda_state_of(m->be);
    *workspace = 0;
    for (int i = 0; i < m->count; i++) {
        layer_run *r = &m->L[i];
        const tmix_layer *l = &r->l;
        if (l->ndim == 4) {
            if (l->shape[1] % 8 != 0)
                return tmix_fail(TMIX_ENOTSUP, "layers_new: layer %d has %lld channels, not a "
                                 "multiple of 8", i, (long long)l->shape[1]);
            r->c_store = l->shape[1];
        }
        if (l->in[0] < 0 && l->kind != TMIX_LAYER_CONV)
            return tmix_fail(TMIX_ENOTSUP, "layers_new: layer %d reads the input and is not a "
                             "convolution", i);
        if (l->kind != TMIX_LAYER_CONV)
            continue;
        r->conv = new (std::nothrow) conv_setup;
        if (!r->conv)
            return tmix_fail(TMIX_ENOMEM, "layers_new: layer %d", i);
        const tmix_tensor image = input_view(m, l);
        const tmix_tensor out = tmix_tensor_view(nullptr, TMIX_F32, TMIX_CUDA, 4, l->shape);
        tmix_conv2d_params p = l->conv;
        p.relu = false;
        TMIX_TRY(tmix_cuda_conv_bf16_prepare(st, r->conv, &image, l->weight, &out, p,
                                             input_channels(m, r)));
        if (r->conv->plan.algo < 0)
            return tmix_fail(TMIX_ENOTSUP, "layers_new: cuDNN has no bf16 algorithm for layer "
                             "%d's convolution", i);
        if (r->conv->plan.workspace_bytes > *workspace)
            *workspace = r->conv->plan.workspace_bytes;
    }
    return 0;
}

// Places the input, the workspace, the activations and the converted weights one after the
// other from base, each on a 256-byte line, and returns the bytes they take. With base NULL
// it only counts (the pointers stay NULL).
static size_t lay_out(layers_impl *m, char *base, size_t workspace)
{
    size_t at = 0;
    auto place = [&](size_t bytes) {
        char *p = base && bytes ? base + at : nullptr;
        at += tmix_cuda_align256(bytes);
        return p;
    };
    const int64_t *xs = m->x_shape;
    m->x = (bf16 *)place((size_t)(xs[0] * xs[2] * xs[3] * m->x_c_store) * sizeof(bf16));
    m->workspace = place(workspace);
    char *activations = place(m->activation_bytes);
    for (int i = 0; i < m->count; i++) {
        layer_run *r = &m->L[i];
        r->act = !base ? nullptr
                 : act_bytes(r) ? activations + r->offset
                                : m->L[r->l.in[0]].act;
        if (r->conv) {
            const int64_t *w = r->l.weight->shape;
            r->weight = (bf16 *)place((size_t)(w[0] * w[2] * w[3] * input_channels(m, r)) *
                                      sizeof(bf16));
        }
    }
    return at;
}

// One allocation for everything lay_out places; the weights converted into it.
static int allocate(layers_impl *m, size_t workspace)
{
    tmix_cuda_state *st = tmix_cuda_state_of(m->be);
    const size_t total = lay_out(m, nullptr, workspace);
    const cudaError_t e = cudaMallocAsync(&m->block, total, st->stream);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        m->block = nullptr;
        return tmix_fail(TMIX_ENOMEM, "layers_new: %zu bytes of bf16 activations and weights "
                         "for a batch of %lld on %s: %s", total, (long long)m->x_shape[0],
                         st->name, cudaGetErrorString(e));
    }
    CUDA_CHECK(e);
    lay_out(m, (char *)m->block, workspace);
    for (int i = 0; i < m->count; i++) {
        const layer_run *r = &m->L[i];
        if (!r->conv)
            continue;
        const int64_t *w = r->l.weight->shape;
        TMIX_TRY(tmix_cuda_to_nhwc_bf16(st, r->weight, tmix_f32(r->l.weight), w[0], w[1],
                                        w[2] * w[3], input_channels(m, r)));
    }
    return 0;
}

extern "C" int tmix_cuda_layers_new(tmix_backend *be, const tmix_layer *layers, int count,
                                    const int64_t x_shape[4], void **out)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    *out = nullptr;
    if (st->precision != TMIX_PRECISION_BF16)
        return tmix_fail(TMIX_ENOTSUP, "layers_new: %s runs networks whole at bf16 only",
                         st->name);
    CUDA_CHECK(tmix_cuda_use(st));
    layers_impl *m = new (std::nothrow) layers_impl();
    layer_run *L = new (std::nothrow) layer_run[count];
    if (!m || !L) {
        delete m;
        delete[] L;
        return tmix_fail(TMIX_ENOMEM, "layers_new: %d layers", count);
    }
    m->be = be;
    m->count = count;
    m->L = L;
    memcpy(m->x_shape, x_shape, sizeof m->x_shape);
    m->x_c_store = tmix_cuda_bf16_channels(x_shape[1]);
    for (int i = 0; i < count; i++)
        L[i].l = layers[i];
    size_t workspace = 0;
    int rc = describe_layers(m, &workspace);
    if (rc == 0) {
        plan_fusions(m);
        plan_buffers(m);
        rc = allocate(m, workspace);
    }
    if (rc < 0) {
        impl_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

// ---- running them ------------------------------------------------------------------------

static int run_conv(layers_impl *m, layer_run *r, bool *refused)
{
    tmix_cuda_state *st = tmix_cuda_state_of(m->be);
    const tmix_layer *l = &r->l;
    const void *x = l->in[0] < 0 ? (const void *)m->x : m->L[l->in[0]].act;
    const tmix_tensor image = input_view(m, l);
    tmix_conv2d_params p = l->conv;
    p.relu = false;
    TMIX_TRY(tmix_cuda_conv_bf16_run(st, r->conv, &image, l->weight, p, x, r->weight, r->act,
                                     m->workspace, refused));
    if (*refused)
        return 0;
    if (r->fused_add >= 0) {
        const layer_run *add = &m->L[r->fused_add];
        const int self = (int)(r - m->L);
        const int res = add->l.in[0] == self ? add->l.in[1] : add->l.in[0];
        return pointwise(st, add, add->act, r->act, nullptr, l->bias, m->L[res].act,
                         add->l.relu);
    }
    if (l->bias || l->relu)
        return pointwise(st, r, r->act, r->act, nullptr, l->bias, nullptr, l->relu);
    return 0;
}

static int run_layer(layers_impl *m, int i, bool *refused)
{
    tmix_cuda_state *st = tmix_cuda_state_of(m->be);
    layer_run *r = &m->L[i];
    const tmix_layer *l = &r->l;
    const layer_run *a = l->in[0] >= 0 ? &m->L[l->in[0]] : nullptr;
    if (r->done_by_input)
        return 0;
    switch (l->kind) {
    case TMIX_LAYER_CONV:
        return run_conv(m, r, refused);
    case TMIX_LAYER_SCALE:
        return pointwise(st, r, r->act, a->act, l->weight, l->bias, nullptr, l->relu);
    case TMIX_LAYER_RELU:
        return pointwise(st, r, r->act, a->act, nullptr, nullptr, nullptr, true);
    case TMIX_LAYER_ADD:
        return pointwise(st, r, r->act, a->act, nullptr, nullptr, m->L[l->in[1]].act, l->relu);
    case TMIX_LAYER_MAXPOOL: {
        const int64_t *s = l->shape, *in = a->l.shape;
        const int64_t count = s[0] * s[1] * s[2] * s[3];
        maxpool_kernel<<<tmix_cuda_blocks(count, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0,
                         st->stream>>>((bf16 *)r->act, (const bf16 *)a->act, count, in[2], in[3],
                                       r->c_store, s[2], s[3], l->pool);
        CUDA_CHECK(cudaGetLastError());
        return 0;
    }
    case TMIX_LAYER_AVGPOOL: {
        const int64_t *in = a->l.shape;
        const int64_t count = in[0] * in[1];
        avgpool_kernel<<<tmix_cuda_blocks(count, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0,
                         st->stream>>>((float *)r->act, (const bf16 *)a->act, count,
                                       in[2] * in[3], a->c_store);
        CUDA_CHECK(cudaGetLastError());
        return 0;
    }
    case TMIX_LAYER_LINEAR: {
        const tmix_tensor in = tmix_tensor_view(a->act, TMIX_F32, TMIX_CUDA, 2, a->l.shape);
        tmix_tensor out = tmix_tensor_view(r->act, TMIX_F32, TMIX_CUDA, 2, l->shape);
        return tmix_cuda_linear_forward(m->be, &out, &in, l->weight, l->bias);
    }
    }
    return tmix_fail(TMIX_EINVAL, "layers_forward: layer %d of unknown kind %d", i, (int)l->kind);
}

// outs[i] = layer i's output in float32 (N, C, H, W) or (N, C).
static int write_out(layers_impl *m, const layer_run *r, tmix_tensor *out)
{
    tmix_cuda_state *st = tmix_cuda_state_of(m->be);
    const int64_t *s = r->l.shape;
    if (r->l.ndim == 2) {
        CUDA_CHECK(cudaMemcpyAsync(out->data, r->act, (size_t)(s[0] * s[1]) * sizeof(float),
                                   cudaMemcpyDeviceToDevice, st->stream));
        return 0;
    }
    return tmix_cuda_from_nhwc_bf16(st, tmix_f32(out), r->act, s[0], s[1], s[2] * s[3], nullptr,
                                    false);
}

extern "C" int tmix_cuda_layers_forward(tmix_backend *be, void *layers, const tmix_tensor *x,
                                        tmix_tensor *const *outs)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    layers_impl *m = (layers_impl *)layers;
    if (st->precision != TMIX_PRECISION_BF16)
        return tmix_fail(TMIX_ENOTSUP, "layers_forward: %s's precision is no longer bf16",
                         st->name);
    const int64_t *xs = m->x_shape;
    TMIX_TRY(tmix_cuda_to_nhwc_bf16(st, m->x, tmix_f32(x), xs[0], xs[1], xs[2] * xs[3],
                                    m->x_c_store));
    for (int i = 0; i < m->count; i++) {
        bool refused = false;
        TMIX_TRY(run_layer(m, i, &refused));
        if (refused)
            return tmix_fail(TMIX_ENOTSUP, "layers_forward: cuDNN turned down layer %d's bf16 "
                             "convolution at run time", i);
    }
    // Only once every layer has run: a convolution turned down leaves the outputs unwritten.
    for (int i = 0; i < m->count; i++)
        if (m->L[i].l.read)
            TMIX_TRY(write_out(m, &m->L[i], outs[i]));
    return 0;
}

extern "C" void tmix_cuda_layers_free(tmix_backend *be, void *layers)
{
    (void)be;
    impl_free((layers_impl *)layers);
}
