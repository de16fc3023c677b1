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
// Made with backward, the layers also give the gradient to the input (tmix_layers_backward),
// layer by layer in reverse, at bf16: a ReLU's mask and a scale are one pass with the sums of
// the gradients, and cuDNN's gradient to a convolution's input adds to what is there. It reads
// only the ReLUs' outputs and the max pools' inputs of the forward, which are kept for it.
// Layers' buffers, and their gradients', share memory where their lifetimes do not meet
// (plan_buffers). Every buffer is one allocation, made here with the algorithms chosen, so
// that a forward or a backward only queues kernels (and can be captured in a CUDA graph).
#include <math.h>
#include <new>

#include <cuda_bf16.h>

#include "bf16_layout.cuh"
#include "conv2d.cuh"
#include "ops.cuh"
#include "pixel_rules.h"

typedef __nv_bfloat16 bf16;

// Eight channels, the unit every kernel here reads and writes (channels are whole 8s).
struct alignas(16) bf16x8 {
    bf16 h[8];
};

// A buffer in the activations' memory: written at step `first`, last read at step `last`,
// and placed at `offset`; buffers whose steps do not meet share bytes. The steps: layer i's
// forward is step i, the outputs read are written out at step count, layer i's backward is
// step 2 * count - i (back_step), and the input's gradient is written out after that.
struct span {
    size_t bytes = 0; // 0: no buffer
    int first = 0, last = 0;
    size_t offset = 0;
};

struct layer_run {
    tmix_layer l;
    char *act;                  // the output: bf16 (N, H, W, C), or float32 (N, C) if 2-D
    int64_t c_store;            // channels stored per pixel (4-D)
    conv_setup *conv = nullptr; // conv: descriptors and algorithm
    bf16 *weight = nullptr;     // conv: (OC, KH, KW, c_store of the input)
    int fused_add = -1;         // conv: the add whose output its epilogue writes, or -1
    bool done_by_input = false; // an add a conv computed, or a ReLU its input applied
    span act_span;              // the output's buffer (none for a ReLU that is its input's)
    // With backward:
    conv_setup *conv_back = nullptr; // conv: the gradient to its input's algorithm
    bool has_grad = false;           // the last layer's output depends on this one's
    char *grad = nullptr;            // d(loss)/d(output), laid out as act
    span grad_span;
    bool accumulate[2] = {false, false}; // adds to its inputs' gradients: a later layer wrote
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
    bool backward;   // made for tmix_layers_backward
    bf16 *dx;        // backward: the input's gradient, laid out as x
    span dx_span;
    bool dx_written; // some layer writes dx (a network that ignores its input has none)
};

// A ReLU whose input applied it: its buffer, and its gradient, are its input's.
static bool is_alias(const layer_run *r)
{
    return r->l.kind == TMIX_LAYER_RELU && r->done_by_input;
}

static int back_step(const layers_impl *m, int i)
{
    return 2 * m->count - i;
}

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

// ---- the gradients' kernels ---------------------------------------------------------------

// g = dy, 0 where y is not > 0 when y is not NULL (the layer's ReLU: a NaN passes nothing), times
// scale[c] when scale is not NULL; then out0 = g, or out0 + g when acc0, and the same for out1
// when not NULL (an add's two inputs), over `vectors` runs of 8 channels. out0 may be dy.
static __global__ void grad_kernel(bf16x8 *out0, bool acc0, bf16x8 *out1, bool acc1,
                                   const bf16x8 *dy, const bf16x8 *y, const float *scale,
                                   int64_t vectors, int64_t vectors_per_pixel)
{
    TMIX_CUDA_LOOP(v, vectors) {
        const int64_t c0 = v % vectors_per_pixel * 8;
        const bf16x8 d = dy[v];
        bf16x8 m, a0, a1, r0, r1;
        if (y)
            m = y[v];
        if (acc0)
            a0 = out0[v];
        if (out1 && acc1)
            a1 = out1[v];
        for (int k = 0; k < 8; k++) {
            float g = __bfloat162float(d.h[k]);
            if (y && !(__bfloat162float(m.h[k]) > 0.0f))
                g = 0.0f;
            if (scale)
                g *= scale[c0 + k];
            r0.h[k] = __float2bfloat16_rn(acc0 ? __bfloat162float(a0.h[k]) + g : g);
            r1.h[k] = __float2bfloat16_rn(acc1 ? __bfloat162float(a1.h[k]) + g : g);
        }
        out0[v] = r0;
        if (out1)
            out1[v] = r1;
    }
}

// The row-major index in the (H, W) plane of the maximum of output window (oh, ow) of channel
// plane x (stride C between pixels): tmix_window_argmax's rule on NHWC (the first maximum,
// padding never, a NaN always), so the gradient goes where the CPU's does.
static __device__ int64_t window_argmax_nhwc(const bf16 *x, int64_t H, int64_t W, int64_t C,
                                             int64_t oh, int64_t ow, tmix_pool2d_params p)
{
    const tmix_window win = tmix_window_at(H, W, oh, ow, p);
    int64_t best = win.hs * W + win.ws;
    float max = -INFINITY;
    for (int64_t h = win.hs; h < win.he; h++)
        for (int64_t w = win.ws; w < win.we; w++) {
            const float v = __bfloat162float(x[(h * W + w) * C]);
            if (v > max || isnan(v)) {
                max = v;
                best = h * W + w;
            }
        }
    return best;
}

// din (=, or += when acc) the max pool's gradient, gathered: one thread per input element
// sums the gradients of the windows whose maximum it is.
static __global__ void maxpool_backward_kernel(bf16 *din, bool acc, const bf16 *dy,
                                               const bf16 *x, int64_t count, int64_t H,
                                               int64_t W, int64_t C, int64_t OH, int64_t OW,
                                               tmix_pool2d_params p)
{
    TMIX_CUDA_LOOP(i, count) {
        const int64_t c = i % C, w = i / C % W, h = i / C / W % H, n = i / C / W / H;
        // The windows that hold (h, w): oh * stride - pad <= h < oh * stride - pad + kernel.
        const int64_t hh = h + p.pad_h, ww = w + p.pad_w;
        const int64_t oh0 = hh < p.kernel_h ? 0 : (hh - p.kernel_h) / p.stride_h + 1;
        const int64_t ow0 = ww < p.kernel_w ? 0 : (ww - p.kernel_w) / p.stride_w + 1;
        const int64_t oh1 = hh / p.stride_h < OH - 1 ? hh / p.stride_h : OH - 1;
        const int64_t ow1 = ww / p.stride_w < OW - 1 ? ww / p.stride_w : OW - 1;
        const bf16 *plane = x + n * H * W * C + c;
        float g = 0.0f;
        for (int64_t oh = oh0; oh <= oh1; oh++)
            for (int64_t ow = ow0; ow <= ow1; ow++)
                if (window_argmax_nhwc(plane, H, W, C, oh, ow, p) == h * W + w)
                    g += __bfloat162float(dy[((n * OH + oh) * OW + ow) * C + c]);
        din[i] = __float2bfloat16_rn(acc ? __bfloat162float(din[i]) + g : g);
    }
}

// din (N, HW, C) (=, or += when acc) dy (N, C) float32 / HW.
static __global__ void avgpool_backward_kernel(bf16 *din, bool acc, const float *dy,
                                               int64_t count, int64_t HW, int64_t C)
{
    TMIX_CUDA_LOOP(i, count) {
        const float g = (float)((double)dy[i / (HW * C) * C + i % C] / (double)HW);
        din[i] = __float2bfloat16_rn(acc ? __bfloat162float(din[i]) + g : g);
    }
}

// dx (N, C, HW) float32 += src (N, HW, c_store) bf16, one thread per element of dx.
static __global__ void input_grad_kernel(float *dx, const bf16 *src, int64_t count, int64_t C,
                                         int64_t HW, int64_t c_store)
{
    TMIX_CUDA_LOOP(i, count) {
        const int64_t p = i % HW, c = i / HW % C, n = i / HW / C;
        dx[i] += __bfloat162float(src[(n * HW + p) * c_store + c]);
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
    for (int i = 0; m->L && i < m->count; i++) {
        delete m->L[i].conv;
        delete m->L[i].conv_back;
    }
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
    if (is_alias(r))
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
    while (i >= 0 && is_alias(&m->L[i]))
        i = m->L[i].l.in[0];
    return i;
}

// Whether two buffers live at a common step. Inclusive: at a layer's step its input is
// still read while its output is written, so the two must not share bytes.
static bool steps_meet(const span *a, const span *b)
{
    return a->first <= b->last && b->first <= a->last;
}

// Which layers the loss depends on, and which of their gradient writes add to what an earlier
// write (by a later layer) left. The writes into one gradient come in reverse layer order.
static int plan_gradients(layers_impl *m)
{
    const int n = m->count;
    if (m->L[n - 1].l.ndim != 2)
        return tmix_fail(TMIX_ENOTSUP, "layers_new: the gradient is taken from a 2-D last "
                         "layer only");
    bool *written = new (std::nothrow) bool[n + 1](); // [0]: the input's; [i + 1]: layer i's
    if (!written)
        return tmix_fail(TMIX_ENOMEM, "layers_new: %d layers", n);
    m->L[n - 1].has_grad = true;
    for (int j = n - 1; j >= 0; j--) {
        layer_run *r = &m->L[j];
        if (!r->has_grad || is_alias(r))
            continue;
        const int arity = r->l.kind == TMIX_LAYER_ADD ? 2 : 1;
        if (arity == 2 && owner(m, r->l.in[0]) == owner(m, r->l.in[1])) {
            delete[] written;
            return tmix_fail(TMIX_ENOTSUP, "layers_new: layer %d adds an output to itself", j);
        }
        for (int k = 0; k < arity; k++) {
            const int o = owner(m, r->l.in[k]);
            r->accumulate[k] = written[o + 1];
            written[o + 1] = true;
            span *g = o < 0 ? &m->dx_span : &m->L[o].grad_span;
            if (!r->accumulate[k]) // the first write: the gradient lives from here
                g->first = back_step(m, j);
            if (o < 0)
                continue;
            m->L[o].has_grad = true;
            if (m->L[o].l.ndim == 2 && r->accumulate[k]) {
                delete[] written;
                return tmix_fail(TMIX_ENOTSUP, "layers_new: layer %d's 2-D output is read "
                                 "twice", o);
            }
        }
    }
    m->dx_written = written[0];
    delete[] written;
    return 0;
}

// The lifetimes of the buffers: the activations', and with backward the gradients'.
static void plan_lifetimes(layers_impl *m)
{
    const int n = m->count;
    for (int i = 0; i < n; i++) {
        span *a = &m->L[i].act_span;
        a->bytes = act_bytes(&m->L[i]);
        a->first = a->last = i;
    }
    for (int i = 0; i < n; i++)
        if (m->L[i].fused_add >= 0)
            m->L[m->L[i].fused_add].act_span.first = i; // the add's buffer: its conv's step
    for (int i = 0; i < n; i++) {
        const layer_run *r = &m->L[i];
        if (is_alias(r))
            continue; // reads nothing: it is its input's buffer
        // A fused add reads at its convolution's step.
        const int step = r->l.kind == TMIX_LAYER_ADD ? r->act_span.first : i;
        for (int k = 0; k < (r->l.kind == TMIX_LAYER_ADD ? 2 : 1); k++) {
            const int o = owner(m, r->l.in[k]);
            if (o >= 0 && m->L[o].act_span.last < step)
                m->L[o].act_span.last = step;
        }
    }
    for (int i = 0; i < n; i++)
        if (m->L[i].l.read)
            m->L[owner(m, i)].act_span.last = n; // written out after the last layer
    if (!m->backward)
        return;
    // The backward reads a ReLU's output (its mask) and a max pool's input.
    for (int i = 0; i < n; i++) {
        const layer_run *r = &m->L[i];
        if (!r->has_grad || is_alias(r))
            continue;
        int o = -1;
        if (r->l.relu || r->l.kind == TMIX_LAYER_RELU)
            o = i;
        else if (r->l.kind == TMIX_LAYER_MAXPOOL)
            o = owner(m, r->l.in[0]);
        if (o >= 0 && m->L[o].act_span.last < back_step(m, i))
            m->L[o].act_span.last = back_step(m, i);
    }
    // A gradient lives from its first write (plan_gradients) to its layer's backward; the
    // last layer's is the caller's dlast.
    for (int i = 0; i < n - 1; i++) {
        layer_run *r = &m->L[i];
        if (r->has_grad && !is_alias(r)) {
            r->grad_span.bytes = r->act_span.bytes;
            r->grad_span.last = back_step(m, i);
        }
    }
    if (m->dx_written) {
        const int64_t *xs = m->x_shape;
        m->dx_span.bytes = tmix_cuda_align256((size_t)(xs[0] * xs[2] * xs[3] * m->x_c_store) *
                                              sizeof(bf16));
        m->dx_span.last = back_step(m, 0) + 1; // then written out
    }
}

// Places the buffers in the activations' memory, largest first, each at the lowest offset
// clear of every placed buffer whose steps meet its own. For resnet50 at 224x224, batch 128,
// the forward's buffers take 668 MB, the most bytes live at any step, where a buffer per layer
// took 4.31 GB (and layer order, not size, 873 MB).
static int plan_buffers(layers_impl *m)
{
    plan_lifetimes(m);
    const int n = m->count;
    span **all = new (std::nothrow) span *[2 * n + 1];
    if (!all)
        return tmix_fail(TMIX_ENOMEM, "layers_new: %d layers", n);
    int count = 0;
    for (int i = 0; i < n; i++)
        for (span *b : {&m->L[i].act_span, &m->L[i].grad_span})
            if (b->bytes)
                all[count++] = b;
    if (m->dx_span.bytes)
        all[count++] = &m->dx_span;
    const size_t unplaced = SIZE_MAX;
    for (int i = 0; i < count; i++)
        all[i]->offset = unplaced;
    m->activation_bytes = 0;
    for (;;) {
        span *r = nullptr;
        for (int i = 0; i < count; i++)
            if (all[i]->offset == unplaced && (!r || all[i]->bytes > r->bytes))
                r = all[i];
        if (!r)
            break;
        r->offset = 0;
        for (bool moved = true; moved;) { // past each placed buffer it meets in time and memory
            moved = false;
            for (int j = 0; j < count; j++) {
                const span *p = all[j];
                if (p != r && p->offset != unplaced && steps_meet(r, p) &&
                    r->offset < p->offset + p->bytes && p->offset < r->offset + r->bytes) {
                    r->offset = p->offset + p->bytes;
                    moved = true;
                }
            }
        }
        if (r->offset + r->bytes > m->activation_bytes)
            m->activation_bytes = r->offset + r->bytes;
    }
    delete[] all;
    return 0;
}

// *setup: the descriptors and algorithm of layer r's convolution (i), forward or its
// gradient to the input; *workspace grows to what it needs.
static int describe_conv(layers_impl *m, const layer_run *r, int i, bool backward_data,
                         conv_setup **setup, size_t *workspace)
{
    *setup = new (std::nothrow) conv_setup;
    if (!*setup)
        return tmix_fail(TMIX_ENOMEM, "layers_new: layer %d", i);
    const tmix_tensor image = input_view(m, &r->l);
    const tmix_tensor out = tmix_tensor_view(nullptr, TMIX_F32, TMIX_CUDA, 4, r->l.shape);
    tmix_conv2d_params p = r->l.conv;
    p.relu = false;
    TMIX_TRY(tmix_cuda_conv_bf16_prepare(tmix_cuda_state_of(m->be), *setup, &image,
                                         r->l.weight, &out, p, input_channels(m, r),
                                         backward_data));
    if ((*setup)->plan.algo < 0)
        return tmix_fail(TMIX_ENOTSUP, "layers_new: cuDNN has no bf16 algorithm for layer %d's "
                         "convolution%s", i, backward_data ? "'s gradient to its input" : "");
    if ((*setup)->plan.workspace_bytes > *workspace)
        *workspace = (*setup)->plan.workspace_bytes;
    return 0;
}

static int describe_layers(layers_impl *m, size_t *workspace)
{
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
        TMIX_TRY(describe_conv(m, r, i, false, &r->conv, workspace));
        if (m->backward)
            TMIX_TRY(describe_conv(m, r, i, true, &r->conv_back, workspace));
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
    m->dx = activations && m->dx_span.bytes ? (bf16 *)(activations + m->dx_span.offset) : nullptr;
    for (int i = 0; i < m->count; i++) {
        layer_run *r = &m->L[i];
        r->act = !base ? nullptr
                 : r->act_span.bytes ? activations + r->act_span.offset
                                     : m->L[r->l.in[0]].act;
        r->grad = activations && r->grad_span.bytes ? activations + r->grad_span.offset
                                                     : nullptr;
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
        return tmix_fail(TMIX_ENOMEM, "layers_new: %zu bytes of bf16 activations%s and "
                         "weights for a batch of %lld on %s: %s", total,
                         m->backward ? ", gradients" : "", (long long)m->x_shape[0], st->name,
                         cudaGetErrorString(e));
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
                                    const int64_t x_shape[4], bool backward, void **out)
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
    m->backward = backward;
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
        if (backward)
            rc = plan_gradients(m);
        if (rc == 0)
            rc = plan_buffers(m);
        if (rc == 0)
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

// ---- the gradient to the input -------------------------------------------------------------

// The gradient that layer r's input k receives: its owner's, or the input's.
static char *input_grad(layers_impl *m, const layer_run *r, int k)
{
    const int o = owner(m, r->l.in[k]);
    return o < 0 ? (char *)m->dx : m->L[o].grad;
}

static int grad_pointwise(tmix_cuda_state *st, const layer_run *r, void *out0, bool acc0,
                          void *out1, bool acc1, const void *dy, const void *y,
                          const tmix_tensor *scale)
{
    const int64_t *s = r->l.shape;
    const int64_t vectors = s[0] * s[2] * s[3] * r->c_store / 8;
    grad_kernel<<<tmix_cuda_blocks(vectors, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0, st->stream>>>(
        (bf16x8 *)out0, acc0, (bf16x8 *)out1, acc1, (const bf16x8 *)dy, (const bf16x8 *)y,
        scale ? tmix_f32(scale) : nullptr, vectors, r->c_store / 8);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

// Layer i's backward: its inputs' gradients from its own, dy (complete: every later layer's
// backward has run).
static int back_layer(layers_impl *m, int i, void *dy, bool *refused)
{
    tmix_cuda_state *st = tmix_cuda_state_of(m->be);
    layer_run *r = &m->L[i];
    const tmix_layer *l = &r->l;
    const layer_run *a = l->in[0] >= 0 ? &m->L[l->in[0]] : nullptr;
    char *din = input_grad(m, r, 0);
    const bool acc = r->accumulate[0];
    // The ReLU the layer applied passes the gradient where its output is positive.
    const void *mask = l->relu || l->kind == TMIX_LAYER_RELU ? r->act : nullptr;
    switch (l->kind) {
    case TMIX_LAYER_CONV: {
        if (mask) // in place: dy is this layer's alone
            TMIX_TRY(grad_pointwise(st, r, dy, false, nullptr, false, dy, mask, nullptr));
        const tmix_tensor image = input_view(m, l);
        tmix_conv2d_params p = l->conv;
        p.relu = false;
        return tmix_cuda_conv_bf16_backward_data(st, r->conv_back, &image, l->weight, p, dy,
                                                 r->weight, din, acc, m->workspace, refused);
    }
    case TMIX_LAYER_SCALE:
        return grad_pointwise(st, r, din, acc, nullptr, false, dy, mask, l->weight);
    case TMIX_LAYER_RELU:
        return grad_pointwise(st, r, din, acc, nullptr, false, dy, mask, nullptr);
    case TMIX_LAYER_ADD:
        return grad_pointwise(st, r, din, acc, input_grad(m, r, 1), r->accumulate[1], dy, mask,
                              nullptr);
    case TMIX_LAYER_MAXPOOL: {
        const int64_t *s = l->shape, *in = a->l.shape;
        const int64_t count = in[0] * in[2] * in[3] * a->c_store;
        maxpool_backward_kernel<<<tmix_cuda_blocks(count, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0,
                                  st->stream>>>((bf16 *)din, acc, (const bf16 *)dy,
                                                (const bf16 *)a->act, count, in[2], in[3],
                                                a->c_store, s[2], s[3], l->pool);
        CUDA_CHECK(cudaGetLastError());
        return 0;
    }
    case TMIX_LAYER_AVGPOOL: {
        const int64_t *in = a->l.shape;
        const int64_t count = in[0] * in[2] * in[3] * a->c_store;
        avgpool_backward_kernel<<<tmix_cuda_blocks(count, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0,
                                  st->stream>>>((bf16 *)din, acc, (const float *)dy, count,
                                                in[2] * in[3], a->c_store);
        CUDA_CHECK(cudaGetLastError());
        return 0;
    }
    case TMIX_LAYER_LINEAR: {
        // Its input is 2-D, read by it alone (plan_gradients): written, never added to.
        tmix_tensor d_in = tmix_tensor_view(din, TMIX_F32, TMIX_CUDA, 2, a->l.shape);
        const tmix_tensor d_out = tmix_tensor_view(dy, TMIX_F32, TMIX_CUDA, 2, l->shape);
        CUDA_CHECK(cudaMemsetAsync(din, 0, tmix_tensor_bytes(&d_in), st->stream));
        return tmix_cuda_linear_backward_input(m->be, &d_in, &d_out, l->weight);
    }
    }
    return tmix_fail(TMIX_EINVAL, "layers_backward: layer %d of unknown kind %d", i,
                     (int)l->kind);
}

extern "C" int tmix_cuda_layers_backward(tmix_backend *be, void *layers, tmix_tensor *dx,
                                         const tmix_tensor *dlast)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    layers_impl *m = (layers_impl *)layers;
    if (st->precision != TMIX_PRECISION_BF16)
        return tmix_fail(TMIX_ENOTSUP, "layers_backward: %s's precision is no longer bf16",
                         st->name);
    for (int i = m->count - 1; i >= 0; i--) {
        layer_run *r = &m->L[i];
        if (!r->has_grad || is_alias(r))
            continue;
        bool refused = false;
        TMIX_TRY(back_layer(m, i, i == m->count - 1 ? (void *)dlast->data : r->grad, &refused));
        if (refused)
            return tmix_fail(TMIX_ENOTSUP, "layers_backward: cuDNN turned down the bf16 "
                             "gradient to layer %d's input at run time", i);
    }
    if (!m->dx_written)
        return 0;
    // Only once every layer has run: dx is unchanged when a convolution is turned down.
    const int64_t *xs = m->x_shape;
    const int64_t count = xs[0] * xs[1] * xs[2] * xs[3];
    input_grad_kernel<<<tmix_cuda_blocks(count, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0,
                        st->stream>>>(tmix_f32(dx), m->dx, count, xs[1], xs[2] * xs[3],
                                      m->x_c_store);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" void tmix_cuda_layers_free(tmix_backend *be, void *layers)
{
    (void)be;
    impl_free((layers_impl *)layers);
}
