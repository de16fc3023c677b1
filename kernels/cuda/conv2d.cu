// 2-D convolution on the GPU (the twin of kernels/conv2d.c) through cuDNN's convolution
// routines. By precision (tmix_backend_set_precision):
// - fp32: plain FMA math; no TF32 tensor cores, whose 10-bit mantissas would put results 1e-3
//   away from the CPU's im2col + GEMM.
// - tf32: TF32 tensor cores where cuDNN has a deterministic algorithm, else fp32.
// - bf16: the forward pass on bf16 tensor cores with float32 sums: input and weight are
//   rounded to bf16 and laid out NHWC (bf16_layout.cu), the output comes back to float32 NCHW
//   with the bias and the ReLU (p.relu) on the way. Where cuDNN has no bf16 algorithm for a
//   shape, and for the two gradients, tf32.
// Each shape's algorithm is chosen once, by cuDNN's heuristics among its deterministic
// algorithms, and cached. In fp32 and tf32 the bias and the ReLU take one pass over the
// output after cuDNN's (epilogue).
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "bf16_layout.cuh"
#include "conv2d.cuh"
#include "ops.cuh"

// Which cuDNN routine an algorithm is chosen for.
enum conv_direction {
    CONV_FORWARD,
    CONV_BACKWARD_DATA,
    CONV_BACKWARD_FILTER,
    CONV_FORWARD_BF16,
    CONV_BACKWARD_DATA_BF16,
};

static const char *const op_names[] = {"conv2d_forward", "conv2d_backward_input",
                                       "conv2d_backward_weight", "conv2d_forward (bf16)",
                                       "conv2d_backward_input (bf16)"};

// Algorithms whose workspace is larger are passed over (FFT ones can ask for gigabytes); one
// without workspace always exists.
#define MAX_WORKSPACE ((size_t)512 << 20)

// ---- the algorithm cache ---------------------------------------------------------------------
// Keyed by the device (an algorithm suits a GPU model), the direction and every size and
// parameter of the convolution; the output size follows from those. A plan holds no cuDNN
// object, so an entry can be overwritten (round robin once the table is full) while another
// thread still runs the plan it copied out.

enum { KEY_LEN = 16, CACHE_ENTRIES = 128 };

struct plan_entry {
    bool used;
    int64_t key[KEY_LEN];
    conv_plan plan;
};

static plan_entry plan_cache[CACHE_ENTRIES];
static int plan_cache_next; // the entry the next insertion overwrites
static pthread_mutex_t plan_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void make_key(int64_t key[KEY_LEN], const tmix_cuda_state *st, conv_direction dir,
                     const tmix_tensor *image,  // (N, C, H, W)
                     const tmix_tensor *weight, // (OC, C, KH, KW)
                     tmix_conv2d_params p)
{
    const int64_t k[KEY_LEN] = {
        st->device, st->precision, dir, image->shape[0], image->shape[1], image->shape[2], image->shape[3],
        weight->shape[0], weight->shape[2], weight->shape[3], p.stride_h, p.stride_w,
        p.pad_h, p.pad_w, p.dilation_h, p.dilation_w,
    };
    memcpy(key, k, sizeof k);
}

// key's entry, or NULL; the caller holds plan_cache_lock.
static plan_entry *cache_entry(const int64_t key[KEY_LEN])
{
    for (int i = 0; i < CACHE_ENTRIES; i++)
        if (plan_cache[i].used && memcmp(plan_cache[i].key, key, KEY_LEN * sizeof *key) == 0)
            return &plan_cache[i];
    return nullptr;
}

static bool cache_find(const int64_t key[KEY_LEN], conv_plan *plan)
{
    pthread_mutex_lock(&plan_cache_lock);
    const plan_entry *e = cache_entry(key);
    if (e)
        *plan = e->plan;
    pthread_mutex_unlock(&plan_cache_lock);
    return e != nullptr;
}

// Stores key's plan, replacing the one it had (two threads may choose the same plan at once;
// a plan that failed at its first run is replaced by its fallback).
static void cache_insert(const int64_t key[KEY_LEN], conv_plan plan)
{
    pthread_mutex_lock(&plan_cache_lock);
    plan_entry *e = cache_entry(key);
    if (!e) {
        e = &plan_cache[plan_cache_next];
        plan_cache_next = (plan_cache_next + 1) % CACHE_ENTRIES;
    }
    e->used = true;
    memcpy(e->key, key, KEY_LEN * sizeof *key);
    e->plan = plan;
    pthread_mutex_unlock(&plan_cache_lock);
}

// ---- descriptors ------------------------------------------------------------------------------

// A 4-D tensor of t's shape with `channels` channels, in the given layout and type.
static int describe_tensor(cudnnTensorDescriptor_t *desc, const tmix_tensor *t, int64_t channels,
                           cudnnTensorFormat_t format, cudnnDataType_t type)
{
    CUDNN_CHECK(cudnnCreateTensorDescriptor(desc));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(*desc, format, type, (int)t->shape[0], (int)channels,
                                           (int)t->shape[2], (int)t->shape[3]));
    return 0;
}

static int describe_conv(conv_setup *s, tmix_conv2d_params p, cudnnMathType_t math)
{
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&s->conv));
    // Cross-correlation is what PyTorch (and the CPU twin) call convolution; sums in float32.
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(s->conv, p.pad_h, p.pad_w, p.stride_h,
                                                p.stride_w, p.dilation_h, p.dilation_w,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    // The heuristics offer tensor-core algorithms only when the descriptor allows them.
    CUDNN_CHECK(cudnnSetConvolutionMathType(s->conv, math));
    return 0;
}

// The entry point has checked that every size but the batch fits an int (its GEMMs need
// that); cuDNN's descriptors take ints, so the batch is checked here.
static int describe(conv_setup *s, conv_direction dir, bool tf32,
                    const tmix_tensor *image,  // (N, C, H, W)
                    const tmix_tensor *weight, // (OC, C, KH, KW)
                    const tmix_tensor *output, // (N, OC, OH, OW)
                    tmix_conv2d_params p)
{
    if (image->shape[0] > INT_MAX)
        return tmix_fail(TMIX_EINVAL, "%s: a batch of %lld images is more than cuDNN takes",
                         op_names[dir], (long long)image->shape[0]);
    const int64_t c = image->shape[1];
    TMIX_TRY(describe_tensor(&s->image, image, c, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT));
    TMIX_TRY(describe_tensor(&s->output, output, output->shape[1], CUDNN_TENSOR_NCHW,
                             CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&s->filter));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(s->filter, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                           (int)weight->shape[0], (int)c, (int)weight->shape[2],
                                           (int)weight->shape[3]));
    return describe_conv(s, p, tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH);
}

// The same convolution on bf16 NHWC tensors whose channels are padded to c_pad.
static int describe_bf16(conv_setup *s,
                         const tmix_tensor *image,  // (N, C, H, W)
                         const tmix_tensor *weight, // (OC, C, KH, KW)
                         const tmix_tensor *output, // (N, OC, OH, OW)
                         tmix_conv2d_params p, int64_t c_pad)
{
    if (image->shape[0] > INT_MAX)
        return tmix_fail(TMIX_EINVAL, "%s: a batch of %lld images is more than cuDNN takes",
                         "conv2d (bf16)", (long long)image->shape[0]);
    TMIX_TRY(describe_tensor(&s->image, image, c_pad, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16));
    TMIX_TRY(describe_tensor(&s->output, output, output->shape[1], CUDNN_TENSOR_NHWC,
                             CUDNN_DATA_BFLOAT16));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&s->filter));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(s->filter, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NHWC,
                                           (int)weight->shape[0], (int)c_pad,
                                           (int)weight->shape[2], (int)weight->shape[3]));
    return describe_conv(s, p, CUDNN_TENSOR_OP_MATH);
}

// ---- choosing the algorithm --------------------------------------------------------------------

// The first of cuDNN's candidates (best predicted first) that works, is deterministic (no
// atomics: the same bits on every run), runs in fp32 FMA math (or tensor-core math when
// tensor_ops: TF32 on float32 data, bf16 on bf16 data; never a conversion to half) and fits
// MAX_WORKSPACE; -1 if none does. The heuristics
// are used rather than timing every algorithm (cudnnFind*), so that the choice, and with it
// every bit of the results, is the same from run to run.
template <typename Perf>
static int first_usable(const Perf *perf, int count, bool tensor_ops)
{
    for (int i = 0; i < count; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC &&
            (tensor_ops || perf[i].mathType != CUDNN_TENSOR_OP_MATH) &&
            perf[i].mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
            perf[i].memory <= MAX_WORKSPACE)
            return i;
    return -1;
}

static int no_algorithm(conv_direction dir, const tmix_tensor *image,
                        const tmix_tensor *weight)
{
    return tmix_fail(TMIX_ENOTSUP,
                     "%s: cuDNN offers no deterministic algorithm within %zu MiB of "
                     "workspace for an image (%lld,%lld,%lld,%lld) and a weight "
                     "(%lld,%lld,%lld,%lld)", op_names[dir], MAX_WORKSPACE >> 20,
                     (long long)image->shape[0], (long long)image->shape[1],
                     (long long)image->shape[2], (long long)image->shape[3],
                     (long long)weight->shape[0], (long long)weight->shape[1],
                     (long long)weight->shape[2], (long long)weight->shape[3]);
}

static int choose_with(tmix_cuda_state *st, conv_setup *s, conv_direction dir,
                       const tmix_tensor *image, const tmix_tensor *weight, bool tensor_ops)
{
    int n = 0, i = -1;
    switch (dir) {
    case CONV_FORWARD:
    case CONV_FORWARD_BF16: {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(
            st->cudnn, s->image, s->filter, s->conv, s->output,
            CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
        if ((i = first_usable(perf, n, tensor_ops)) < 0)
            return no_algorithm(dir, image, weight);
        s->plan.algo = perf[i].algo;
        s->plan.math = perf[i].mathType;
        CUDNN_CHECK(cudnnSetConvolutionMathType(s->conv, s->plan.math));
        CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(
            st->cudnn, s->image, s->filter, s->conv, s->output, perf[i].algo,
            &s->plan.workspace_bytes));
        break;
    }
    case CONV_BACKWARD_DATA:
    case CONV_BACKWARD_DATA_BF16: {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
            st->cudnn, s->filter, s->output, s->conv, s->image,
            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
        if ((i = first_usable(perf, n, tensor_ops)) < 0)
            return no_algorithm(dir, image, weight);
        s->plan.algo = perf[i].algo;
        s->plan.math = perf[i].mathType;
        CUDNN_CHECK(cudnnSetConvolutionMathType(s->conv, s->plan.math));
        CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
            st->cudnn, s->filter, s->output, s->conv, s->image, perf[i].algo,
            &s->plan.workspace_bytes));
        break;
    }
    case CONV_BACKWARD_FILTER: {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
            st->cudnn, s->image, s->output, s->conv, s->filter,
            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
        if ((i = first_usable(perf, n, tensor_ops)) < 0)
            return no_algorithm(dir, image, weight);
        s->plan.algo = perf[i].algo;
        s->plan.math = perf[i].mathType;
        CUDNN_CHECK(cudnnSetConvolutionMathType(s->conv, s->plan.math));
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
            st->cudnn, s->image, s->output, s->conv, s->filter, perf[i].algo,
            &s->plan.workspace_bytes));
        break;
    }
    }
    return 0;
}

// The algorithm for this convolution: with TF32 allowed, a deterministic tensor-core one when
// cuDNN has one, else (some shapes, e.g. the 1x1 stride-2 backward data of resnet50 on the
// H200) the fp32 one, so that tf32 never fails where fp32 works.
static int choose(tmix_cuda_state *st, conv_setup *s, conv_direction dir,
                  const tmix_tensor *image, const tmix_tensor *weight)
{
    const bool tf32 = st->precision != TMIX_PRECISION_FP32;
    int rc = choose_with(st, s, dir, image, weight, tf32);
    if (rc == TMIX_ENOTSUP && tf32) {
        CUDNN_CHECK(cudnnSetConvolutionMathType(s->conv, CUDNN_FMA_MATH));
        rc = choose_with(st, s, dir, image, weight, false);
    }
    return rc;
}

// Everything a call needs before its cuDNN routine: descriptors, the plan (cached or chosen
// now) and its workspace.
static int prepare(tmix_cuda_state *st, conv_setup *s, conv_direction dir,
                   const tmix_tensor *image,  // (N, C, H, W)
                   const tmix_tensor *weight, // (OC, C, KH, KW)
                   const tmix_tensor *output, // (N, OC, OH, OW)
                   tmix_conv2d_params p)
{
    TMIX_TRY(describe(s, dir, st->precision != TMIX_PRECISION_FP32, image, weight, output, p));
    int64_t key[KEY_LEN];
    make_key(key, st, dir, image, weight, p);
    if (!cache_find(key, &s->plan)) {
        TMIX_TRY(choose(st, s, dir, image, weight));
        cache_insert(key, s->plan);
    }
    CUDNN_CHECK(cudnnSetConvolutionMathType(s->conv, s->plan.math));
    if (s->plan.workspace_bytes > 0)
        TMIX_TRY(tmix_cuda_scratch(st, s->plan.workspace_bytes, &s->workspace));
    return 0;
}

// ---- the ops -----------------------------------------------------------------------------------

// out[n, oc] += bias[oc] (when bias is not NULL), then max(0, ·) with a NaN kept when relu
// (as relu.cu): x walks a plane of P pixels, y the N*OC planes.
static __global__ void epilogue_kernel(float *out,        // (N, OC, P)
                                       const float *bias, // (OC) or NULL
                                       int64_t planes, int64_t oc, int64_t P, bool relu)
{
    TMIX_CUDA_LOOP_Y(j, planes) {
        const float b = bias ? bias[j % oc] : 0.0f;
        float *plane = out + j * P;
        TMIX_CUDA_LOOP(i, P) {
            const float v = plane[i] + b;
            plane[i] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

static int epilogue(tmix_cuda_state *st,
                    tmix_tensor *out,         // (N, OC, OH, OW)
                    const tmix_tensor *bias,  // (OC) or NULL
                    bool relu)
{
    const int64_t oc = out->shape[1], planes = out->shape[0] * oc;
    const int64_t P = out->shape[2] * out->shape[3];
    const tmix_cuda_plan2d g = tmix_cuda_plan(P, planes);
    epilogue_kernel<<<g.grid, g.block, 0, st->stream>>>(
        tmix_f32(out), bias ? tmix_f32(bias) : nullptr, planes, oc, P, relu);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

int tmix_cuda_conv_bf16_prepare(tmix_cuda_state *st, conv_setup *s, const tmix_tensor *image,
                                const tmix_tensor *weight, const tmix_tensor *output,
                                tmix_conv2d_params p, int64_t c_pad, bool backward_data)
{
    const conv_direction dir = backward_data ? CONV_BACKWARD_DATA_BF16 : CONV_FORWARD_BF16;
    TMIX_TRY(describe_bf16(s, image, weight, output, p, c_pad));
    int64_t key[KEY_LEN];
    make_key(key, st, dir, image, weight, p);
    if (!cache_find(key, &s->plan)) {
        const int rc = choose_with(st, s, dir, image, weight, true);
        if (rc < 0 && rc != TMIX_ENOTSUP)
            return rc;
        if (rc == TMIX_ENOTSUP)
            s->plan.algo = -1;
        cache_insert(key, s->plan);
    }
    if (s->plan.algo >= 0)
        CUDNN_CHECK(cudnnSetConvolutionMathType(s->conv, s->plan.math));
    return 0;
}

// After a bf16 cuDNN call: *refused when cuDNN turned the algorithm down at run time (an
// algorithm the heuristics offered but that refuses the shape, e.g. odd channel counts in
// NHWC), which is then cached as -1 so that this convolution goes TF32 from now on.
static int bf16_status(tmix_cuda_state *st, conv_direction dir, const conv_setup *s,
                       const tmix_tensor *image, const tmix_tensor *weight, tmix_conv2d_params p,
                       cudnnStatus_t e, const char *call, bool *refused)
{
    *refused = e == CUDNN_STATUS_NOT_SUPPORTED || e == CUDNN_STATUS_BAD_PARAM;
    if (*refused) {
        int64_t key[KEY_LEN];
        make_key(key, st, dir, image, weight, p);
        conv_plan none = s->plan;
        none.algo = -1;
        cache_insert(key, none);
        return 0;
    }
    if (e != CUDNN_STATUS_SUCCESS)
        return tmix_cuda_error(TMIX_ECUDNN, call, __func__, __FILE__, __LINE__,
                               cudnnGetErrorString(e));
    return 0;
}

int tmix_cuda_conv_bf16_run(tmix_cuda_state *st, const conv_setup *s, const tmix_tensor *image,
                            const tmix_tensor *weight, tmix_conv2d_params p, const void *x,
                            const void *w, void *y, void *workspace, bool *refused)
{
    const float one = 1.0f, zero = 0.0f;
    const cudnnStatus_t e = cudnnConvolutionForward(
        st->cudnn, &one, s->image, x, s->filter, w, s->conv,
        (cudnnConvolutionFwdAlgo_t)s->plan.algo, workspace, s->plan.workspace_bytes, &zero,
        s->output, y);
    return bf16_status(st, CONV_FORWARD_BF16, s, image, weight, p, e,
                       "cudnnConvolutionForward (bf16)", refused);
}

int tmix_cuda_conv_bf16_backward_data(tmix_cuda_state *st, const conv_setup *s,
                                      const tmix_tensor *image, const tmix_tensor *weight,
                                      tmix_conv2d_params p, const void *dy, const void *w,
                                      void *dx, bool accumulate, void *workspace, bool *refused)
{
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    const cudnnStatus_t e = cudnnConvolutionBackwardData(
        st->cudnn, &one, s->filter, w, s->output, dy, s->conv,
        (cudnnConvolutionBwdDataAlgo_t)s->plan.algo, workspace, s->plan.workspace_bytes, &beta,
        s->image, dx);
    return bf16_status(st, CONV_BACKWARD_DATA_BF16, s, image, weight, p, e,
                       "cudnnConvolutionBackwardData (bf16)", refused);
}

// The forward pass in bf16 (see the top of the file). *done is false, with nothing queued
// but conversions into scratch, when cuDNN has no bf16 algorithm for the shape.
static int forward_bf16(tmix_cuda_state *st, tmix_tensor *out, const tmix_tensor *in,
                        const tmix_tensor *weight, const tmix_tensor *bias,
                        tmix_conv2d_params p, bool *done)
{
    *done = false;
    const int64_t n = in->shape[0], c = in->shape[1], hw = in->shape[2] * in->shape[3];
    const int64_t oc = weight->shape[0], khw = weight->shape[2] * weight->shape[3];
    const int64_t ohw = out->shape[2] * out->shape[3];
    const int64_t c_pad = tmix_cuda_bf16_channels(c);
    conv_setup s;
    TMIX_TRY(tmix_cuda_conv_bf16_prepare(st, &s, in, weight, out, p, c_pad, false));
    if (s.plan.algo < 0)
        return 0;
    // One scratch buffer holds the workspace and the three bf16 tensors.
    const size_t ws = tmix_cuda_align256(s.plan.workspace_bytes);
    const size_t xb = tmix_cuda_align256((size_t)(n * hw * c_pad) * 2);
    const size_t wb = tmix_cuda_align256((size_t)(oc * khw * c_pad) * 2);
    char *base = nullptr;
    TMIX_TRY(tmix_cuda_scratch(st, ws + xb + wb + (size_t)(n * ohw * oc) * 2, (void **)&base));
    char *x = base + ws, *w = x + xb, *y = w + wb;
    TMIX_TRY(tmix_cuda_to_nhwc_bf16(st, x, tmix_f32(in), n, c, hw, c_pad));
    TMIX_TRY(tmix_cuda_to_nhwc_bf16(st, w, tmix_f32(weight), oc, c, khw, c_pad));
    bool refused = false;
    TMIX_TRY(tmix_cuda_conv_bf16_run(st, &s, in, weight, p, x, w, y, ws ? base : nullptr,
                                     &refused));
    if (refused) // the conversions queued only wrote scratch
        return 0;
    TMIX_TRY(tmix_cuda_from_nhwc_bf16(st, tmix_f32(out), y, n, oc, ohw,
                                      bias ? tmix_f32(bias) : nullptr, p.relu));
    *done = true;
    return 0;
}

extern "C" int tmix_cuda_conv2d_forward(tmix_backend *be, tmix_tensor *out,
                                        const tmix_tensor *in, const tmix_tensor *weight,
                                        const tmix_tensor *bias, tmix_conv2d_params p)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    if (st->precision == TMIX_PRECISION_BF16) {
        bool done = false;
        TMIX_TRY(forward_bf16(st, out, in, weight, bias, p, &done));
        if (done)
            return 0;
    }
    conv_setup s;
    TMIX_TRY(prepare(st, &s, CONV_FORWARD, in, weight, out, p));
    const float one = 1.0f, zero = 0.0f; // out = conv(in, weight), overwritten
    CUDNN_CHECK(cudnnConvolutionForward(st->cudnn, &one, s.image, tmix_f32(in), s.filter,
                                        tmix_f32(weight), s.conv,
                                        (cudnnConvolutionFwdAlgo_t)s.plan.algo, s.workspace,
                                        s.plan.workspace_bytes, &zero, s.output,
                                        tmix_f32(out)));
    if (bias || p.relu)
        TMIX_TRY(epilogue(st, out, bias, p.relu));
    return 0;
}

extern "C" int tmix_cuda_conv2d_backward_input(tmix_backend *be, tmix_tensor *din,
                                               const tmix_tensor *dout,
                                               const tmix_tensor *weight, tmix_conv2d_params p)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    conv_setup s;
    TMIX_TRY(prepare(st, &s, CONV_BACKWARD_DATA, din, weight, dout, p));
    const float one = 1.0f; // beta 1: din += the gradient
    CUDNN_CHECK(cudnnConvolutionBackwardData(st->cudnn, &one, s.filter, tmix_f32(weight),
                                             s.output, tmix_f32(dout), s.conv,
                                             (cudnnConvolutionBwdDataAlgo_t)s.plan.algo,
                                             s.workspace, s.plan.workspace_bytes, &one,
                                             s.image, tmix_f32(din)));
    return 0;
}

extern "C" int tmix_cuda_conv2d_backward_weight(tmix_backend *be, tmix_tensor *dweight,
                                                const tmix_tensor *dout,
                                                const tmix_tensor *in, tmix_conv2d_params p)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    conv_setup s;
    TMIX_TRY(prepare(st, &s, CONV_BACKWARD_FILTER, in, dweight, dout, p));
    const float one = 1.0f; // beta 1: dweight += the gradient
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(st->cudnn, &one, s.image, tmix_f32(in),
                                               s.output, tmix_f32(dout), s.conv,
                                               (cudnnConvolutionBwdFilterAlgo_t)s.plan.algo,
                                               s.workspace, s.plan.workspace_bytes, &one,
                                               s.filter, tmix_f32(dweight)));
    return 0;
}
