// The CUDA emulator's cuDNN (include/cudnn.h): a CPU stand-in, so that the CUDA plugin's
// sources run in CI without a GPU. Device memory is host memory; a convolution is queued on
// the handle's stream (tmix_emu::enqueue), so a CUDA graph captures it. The convolutions
// are im2col and OpenBLAS's sgemm, with float sums as cuDNN's. What they do not support
// (other data types or formats, true convolution, mixed types) fails with
// CUDNN_STATUS_NOT_SUPPORTED rather than being computed wrong; descriptors whose shapes
// disagree fail with CUDNN_STATUS_BAD_PARAM, as in cuDNN.
//
// Each direction offers two deterministic algorithms: one without workspace and one that
// asks for WORKSPACE_BYTES (and scribbles over them, so that a workspace too small or shared
// with live data shows). The workspace one comes first for filters larger than 1x1, as
// im2col-like algorithms would, so that a caller that takes the first choice meets both.
//
// With TMIX_CUDAEMU_REFUSE_BF16_BACKWARD_DATA set, a bf16 gradient to the input is turned
// down at run time (NOT_SUPPORTED), as cuDNN may turn down an algorithm its heuristics
// offered: the way tests reach the CUDA backend's fallbacks.
#include <cudnn.h>

#include <cblas.h>
#include <cuda_bf16.h>

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cudnnContext {
    cudaStream_t stream;
};

struct cudnnTensorStruct {
    bool set;
    cudnnTensorFormat_t format;
    cudnnDataType_t type;
    int n, c, h, w;
};

struct cudnnFilterStruct {
    bool set;
    cudnnTensorFormat_t format;
    cudnnDataType_t type;
    int k, c, h, w;
};

struct cudnnConvolutionStruct {
    bool set;
    int pad_h, pad_w, stride_h, stride_w, dil_h, dil_w;
    cudnnMathType_t math;
};

enum { WORKSPACE_BYTES = 1 << 20 };

// ---- the handle -------------------------------------------------------------------------------

extern "C" const char *cudnnGetErrorString(cudnnStatus_t status)
{
    switch (status) {
    case CUDNN_STATUS_SUCCESS:
        return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED:
        return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_ALLOC_FAILED:
        return "CUDNN_STATUS_ALLOC_FAILED";
    case CUDNN_STATUS_BAD_PARAM:
        return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_INTERNAL_ERROR:
        return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_INVALID_VALUE:
        return "CUDNN_STATUS_INVALID_VALUE";
    case CUDNN_STATUS_ARCH_MISMATCH:
        return "CUDNN_STATUS_ARCH_MISMATCH";
    case CUDNN_STATUS_MAPPING_ERROR:
        return "CUDNN_STATUS_MAPPING_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED:
        return "CUDNN_STATUS_EXECUTION_FAILED";
    case CUDNN_STATUS_NOT_SUPPORTED:
        return "CUDNN_STATUS_NOT_SUPPORTED";
    }
    return "CUDNN_UNKNOWN_STATUS";
}

extern "C" cudnnStatus_t cudnnCreate(cudnnHandle_t *handle)
{
    if (!handle)
        return CUDNN_STATUS_BAD_PARAM;
    *handle = (cudnnHandle_t)calloc(1, sizeof **handle);
    return *handle ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_ALLOC_FAILED;
}

extern "C" cudnnStatus_t cudnnDestroy(cudnnHandle_t handle)
{
    if (!handle)
        return CUDNN_STATUS_BAD_PARAM;
    free(handle);
    return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream)
{
    if (!handle)
        return CUDNN_STATUS_BAD_PARAM;
    handle->stream = stream;
    return CUDNN_STATUS_SUCCESS;
}

// ---- descriptors ------------------------------------------------------------------------------

// Creating one that is not yet set is allowed; using one is not (BAD_PARAM).
template <typename Desc> static cudnnStatus_t create_desc(Desc **desc)
{
    if (!desc)
        return CUDNN_STATUS_BAD_PARAM;
    *desc = (Desc *)calloc(1, sizeof **desc);
    return *desc ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_ALLOC_FAILED;
}

template <typename Desc> static cudnnStatus_t destroy_desc(Desc *desc)
{
    free(desc); // cuDNN accepts NULL here
    return CUDNN_STATUS_SUCCESS;
}

// The emulated layouts and types; sizes must be positive and the tensor under 2^31 elements
// (cuDNN's 4-D descriptors hold int strides).
static cudnnStatus_t check_4d(cudnnTensorFormat_t format, cudnnDataType_t type, int a, int b, int c,
                              int d)
{
    if (a <= 0 || b <= 0 || c <= 0 || d <= 0)
        return CUDNN_STATUS_BAD_PARAM;
    if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC)
        return CUDNN_STATUS_NOT_SUPPORTED;
    if (type != CUDNN_DATA_FLOAT && type != CUDNN_DATA_BFLOAT16)
        return CUDNN_STATUS_NOT_SUPPORTED;
    if ((int64_t)a * b * c * d > INT_MAX)
        return CUDNN_STATUS_NOT_SUPPORTED;
    return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *desc)
{
    return create_desc(desc);
}

extern "C" cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t desc)
{
    return destroy_desc(desc);
}

extern "C" cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc,
                                                    cudnnTensorFormat_t format,
                                                    cudnnDataType_t type, int n, int c, int h,
                                                    int w)
{
    if (!desc)
        return CUDNN_STATUS_BAD_PARAM;
    const cudnnStatus_t e = check_4d(format, type, n, c, h, w);
    if (e != CUDNN_STATUS_SUCCESS)
        return e;
    *desc = {true, format, type, n, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *desc)
{
    return create_desc(desc);
}

extern "C" cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t desc)
{
    return destroy_desc(desc);
}

extern "C" cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc,
                                                    cudnnDataType_t type,
                                                    cudnnTensorFormat_t format, int k, int c, int h,
                                                    int w)
{
    if (!desc)
        return CUDNN_STATUS_BAD_PARAM;
    const cudnnStatus_t e = check_4d(format, type, k, c, h, w);
    if (e != CUDNN_STATUS_SUCCESS)
        return e;
    *desc = {true, format, type, k, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *desc)
{
    const cudnnStatus_t e = create_desc(desc);
    if (e == CUDNN_STATUS_SUCCESS)
        (*desc)->math = CUDNN_DEFAULT_MATH;
    return e;
}

extern "C" cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t desc)
{
    return destroy_desc(desc);
}

extern "C" cudnnStatus_t
cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h, int pad_w,
                                int stride_h, int stride_w, int dilation_h, int dilation_w,
                                cudnnConvolutionMode_t mode, cudnnDataType_t compute_type)
{
    if (!desc || pad_h < 0 || pad_w < 0 || stride_h <= 0 || stride_w <= 0 || dilation_h <= 0 ||
        dilation_w <= 0)
        return CUDNN_STATUS_BAD_PARAM;
    if (mode != CUDNN_CROSS_CORRELATION && mode != CUDNN_CONVOLUTION)
        return CUDNN_STATUS_BAD_PARAM;
    // True convolution (a flipped filter) is not emulated; sums are in float whatever the
    // compute type, so only float (what bf16 data needs too) is taken.
    if (mode != CUDNN_CROSS_CORRELATION || compute_type != CUDNN_DATA_FLOAT)
        return CUDNN_STATUS_NOT_SUPPORTED;
    desc->set = true;
    desc->pad_h = pad_h;
    desc->pad_w = pad_w;
    desc->stride_h = stride_h;
    desc->stride_w = stride_w;
    desc->dil_h = dilation_h;
    desc->dil_w = dilation_w;
    return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc,
                                                     cudnnMathType_t math)
{
    if (!desc)
        return CUDNN_STATUS_BAD_PARAM;
    switch (math) {
    case CUDNN_DEFAULT_MATH:
    case CUDNN_TENSOR_OP_MATH:
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION:
    case CUDNN_FMA_MATH:
        desc->math = math;
        return CUDNN_STATUS_SUCCESS;
    }
    return CUDNN_STATUS_BAD_PARAM;
}

// ---- the problem a set of descriptors describes -----------------------------------------------

// One convolution: image (N, C, H, W), filter (K, C, R, S), output (N, K, P, Q).
struct conv_problem {
    int64_t n, c, h, w;
    int64_t k, r, s;
    int64_t p, q;
    int64_t pad_h, pad_w, stride_h, stride_w, dil_h, dil_w;
};

// The output size along one axis, or -1 when the dilated filter is wider than the padded
// image.
static int64_t output_size(int64_t in, int64_t filter, int64_t pad, int64_t stride, int64_t dil)
{
    const int64_t span = in + 2 * pad - dil * (filter - 1) - 1;
    return span < 0 ? -1 : span / stride + 1;
}

// BAD_PARAM when a descriptor is missing or unset or the shapes disagree (groups are 1, so
// the image and the filter have the same channels); NOT_SUPPORTED when the data types differ.
static cudnnStatus_t describe_problem(const cudnnTensorStruct *x, const cudnnFilterStruct *w,
                                      const cudnnConvolutionStruct *conv,
                                      const cudnnTensorStruct *y, conv_problem *pr)
{
    if (!x || !w || !conv || !y || !x->set || !w->set || !conv->set || !y->set)
        return CUDNN_STATUS_BAD_PARAM;
    pr->n = x->n, pr->c = x->c, pr->h = x->h, pr->w = x->w;
    pr->k = w->k, pr->r = w->h, pr->s = w->w;
    pr->p = y->h, pr->q = y->w;
    pr->pad_h = conv->pad_h, pr->pad_w = conv->pad_w;
    pr->stride_h = conv->stride_h, pr->stride_w = conv->stride_w;
    pr->dil_h = conv->dil_h, pr->dil_w = conv->dil_w;
    if (w->c != x->c || y->n != x->n || y->c != w->k)
        return CUDNN_STATUS_BAD_PARAM;
    if (output_size(pr->h, pr->r, pr->pad_h, pr->stride_h, pr->dil_h) != pr->p ||
        output_size(pr->w, pr->s, pr->pad_w, pr->stride_w, pr->dil_w) != pr->q)
        return CUDNN_STATUS_BAD_PARAM;
    if (x->type != w->type || y->type != x->type)
        return CUDNN_STATUS_NOT_SUPPORTED;
    return CUDNN_STATUS_SUCCESS;
}

// ---- algorithms -------------------------------------------------------------------------------

struct algo_info {
    int algo;
    size_t memory;
};

static const algo_info fwd_algos[2] = {
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, 0},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, WORKSPACE_BYTES},
};
static const algo_info bwd_data_algos[2] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, 0},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, WORKSPACE_BYTES},
};
static const algo_info bwd_filter_algos[2] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, 0},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, WORKSPACE_BYTES},
};

// algo's entry among the two, or NULL when it is not one of them.
static const algo_info *find_algo(const algo_info algos[2], int algo)
{
    for (int i = 0; i < 2; i++)
        if (algos[i].algo == algo)
            return &algos[i];
    return nullptr;
}

// The heuristics' answer: both algorithms, best predicted first (see the top of the file),
// each with `status` (NOT_SUPPORTED for a configuration this emulator does not compute).
template <typename Perf, typename Algo>
static cudnnStatus_t report_algos(const algo_info algos[2], const conv_problem *pr,
                                  cudnnStatus_t status, cudnnMathType_t math, int requested,
                                  int *returned, Perf *perf)
{
    if (requested <= 0 || !returned || !perf)
        return CUDNN_STATUS_BAD_PARAM;
    const bool workspace_first = pr->r * pr->s > 1;
    int count = 0;
    for (int i = 0; i < 2 && count < requested; i++, count++) {
        const algo_info *a = &algos[workspace_first ? 1 - i : i];
        Perf *out = &perf[count];
        memset(out, 0, sizeof *out);
        out->algo = (Algo)a->algo;
        out->status = status;
        out->time = status == CUDNN_STATUS_SUCCESS ? 1.0f + (float)i : -1.0f;
        out->memory = a->memory;
        out->determinism = CUDNN_DETERMINISTIC;
        out->mathType = math;
    }
    *returned = count;
    return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t workspace_size(const algo_info algos[2], int algo, cudnnStatus_t problem,
                                    size_t *bytes)
{
    if (!bytes)
        return CUDNN_STATUS_BAD_PARAM;
    if (problem != CUDNN_STATUS_SUCCESS)
        return problem;
    const algo_info *a = find_algo(algos, algo);
    if (!a)
        return CUDNN_STATUS_NOT_SUPPORTED;
    *bytes = a->memory;
    return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t
cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t handle, const cudnnTensorDescriptor_t x_desc,
                                       const cudnnFilterDescriptor_t w_desc,
                                       const cudnnConvolutionDescriptor_t conv_desc,
                                       const cudnnTensorDescriptor_t y_desc, const int requested,
                                       int *returned, cudnnConvolutionFwdAlgoPerf_t *perf)
{
    conv_problem pr;
    const cudnnStatus_t e = describe_problem(x_desc, w_desc, conv_desc, y_desc, &pr);
    if (!handle || e == CUDNN_STATUS_BAD_PARAM)
        return CUDNN_STATUS_BAD_PARAM;
    return report_algos<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
        fwd_algos, &pr, e, conv_desc->math, requested, returned, perf);
}

extern "C" cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t w_desc,
    const cudnnTensorDescriptor_t dy_desc, const cudnnConvolutionDescriptor_t conv_desc,
    const cudnnTensorDescriptor_t dx_desc, const int requested, int *returned,
    cudnnConvolutionBwdDataAlgoPerf_t *perf)
{
    conv_problem pr;
    const cudnnStatus_t e = describe_problem(dx_desc, w_desc, conv_desc, dy_desc, &pr);
    if (!handle || e == CUDNN_STATUS_BAD_PARAM)
        return CUDNN_STATUS_BAD_PARAM;
    return report_algos<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
        bwd_data_algos, &pr, e, conv_desc->math, requested, returned, perf);
}

extern "C" cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x_desc,
    const cudnnTensorDescriptor_t dy_desc, const cudnnConvolutionDescriptor_t conv_desc,
    const cudnnFilterDescriptor_t dw_desc, const int requested, int *returned,
    cudnnConvolutionBwdFilterAlgoPerf_t *perf)
{
    conv_problem pr;
    const cudnnStatus_t e = describe_problem(x_desc, dw_desc, conv_desc, dy_desc, &pr);
    if (!handle || e == CUDNN_STATUS_BAD_PARAM)
        return CUDNN_STATUS_BAD_PARAM;
    return report_algos<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
        bwd_filter_algos, &pr, e, conv_desc->math, requested, returned, perf);
}

extern "C" cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x_desc,
    const cudnnFilterDescriptor_t w_desc, const cudnnConvolutionDescriptor_t conv_desc,
    const cudnnTensorDescriptor_t y_desc, cudnnConvolutionFwdAlgo_t algo, size_t *bytes)
{
    conv_problem pr;
    if (!handle)
        return CUDNN_STATUS_BAD_PARAM;
    return workspace_size(fwd_algos, algo, describe_problem(x_desc, w_desc, conv_desc, y_desc, &pr),
                          bytes);
}

extern "C" cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t w_desc,
    const cudnnTensorDescriptor_t dy_desc, const cudnnConvolutionDescriptor_t conv_desc,
    const cudnnTensorDescriptor_t dx_desc, cudnnConvolutionBwdDataAlgo_t algo, size_t *bytes)
{
    conv_problem pr;
    if (!handle)
        return CUDNN_STATUS_BAD_PARAM;
    return workspace_size(bwd_data_algos, algo,
                          describe_problem(dx_desc, w_desc, conv_desc, dy_desc, &pr), bytes);
}

extern "C" cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x_desc,
    const cudnnTensorDescriptor_t dy_desc, const cudnnConvolutionDescriptor_t conv_desc,
    const cudnnFilterDescriptor_t dw_desc, cudnnConvolutionBwdFilterAlgo_t algo, size_t *bytes)
{
    conv_problem pr;
    if (!handle)
        return CUDNN_STATUS_BAD_PARAM;
    return workspace_size(bwd_filter_algos, algo,
                          describe_problem(x_desc, dw_desc, conv_desc, dy_desc, &pr), bytes);
}

// ---- element access ---------------------------------------------------------------------------

// Where a tensor's or filter's elements lie: the strides of its four logical axes (N, C, H, W
// or K, C, R, S) for its format, and its type.
struct layout4 {
    int64_t dim[4];
    int64_t stride[4];
    cudnnDataType_t type;
};

static layout4 make_layout(cudnnTensorFormat_t format, cudnnDataType_t type, int64_t a, int64_t b,
                           int64_t c, int64_t d)
{
    layout4 l = {{a, b, c, d}, {b * c * d, c * d, d, 1}, type};
    if (format == CUDNN_TENSOR_NHWC) { // memory order a, c, d, b: channels innermost
        l.stride[0] = c * d * b;
        l.stride[1] = 1;
        l.stride[2] = d * b;
        l.stride[3] = b;
    }
    return l;
}

static layout4 tensor_layout(const cudnnTensorStruct *t)
{
    return make_layout(t->format, t->type, t->n, t->c, t->h, t->w);
}

static layout4 filter_layout(const cudnnFilterStruct *f)
{
    return make_layout(f->format, f->type, f->k, f->c, f->h, f->w);
}

static int64_t count_of(const layout4 *l)
{
    return l->dim[0] * l->dim[1] * l->dim[2] * l->dim[3];
}

static float read_element(const void *mem, cudnnDataType_t type, int64_t i)
{
    if (type == CUDNN_DATA_BFLOAT16)
        return __bfloat162float(((const __nv_bfloat16 *)mem)[i]);
    return ((const float *)mem)[i];
}

static void write_element(void *mem, cudnnDataType_t type, int64_t i, double v)
{
    if (type == CUDNN_DATA_BFLOAT16)
        ((__nv_bfloat16 *)mem)[i] = __float2bfloat16_rn((float)v); // as cuDNN: from a float
    else
        ((float *)mem)[i] = (float)v;
}

// mem's elements widened to float in the logical order (a, b, c, d); NULL when out of memory.
static float *load(const layout4 *l, const void *mem)
{
    float *out = (float *)malloc((size_t)count_of(l) * sizeof *out);
    if (!out)
        return nullptr;
    float *o = out;
    for (int64_t a = 0; a < l->dim[0]; a++)
        for (int64_t b = 0; b < l->dim[1]; b++)
            for (int64_t c = 0; c < l->dim[2]; c++) {
                const int64_t row = a * l->stride[0] + b * l->stride[1] + c * l->stride[2];
                for (int64_t d = 0; d < l->dim[3]; d++)
                    *o++ = read_element(mem, l->type, row + d * l->stride[3]);
            }
    return out;
}

// mem = alpha * sums + beta * mem, sums in the logical order; mem is not read when beta is 0
// (it may hold anything, NaN included).
static void store(const layout4 *l, const double *sums, double alpha, double beta, void *mem)
{
    const double *s = sums;
    for (int64_t a = 0; a < l->dim[0]; a++)
        for (int64_t b = 0; b < l->dim[1]; b++)
            for (int64_t c = 0; c < l->dim[2]; c++) {
                const int64_t row = a * l->stride[0] + b * l->stride[1] + c * l->stride[2];
                for (int64_t d = 0; d < l->dim[3]; d++, s++) {
                    const int64_t i = row + d * l->stride[3];
                    double v = alpha * *s;
                    if (beta != 0.0)
                        v += beta * read_element(mem, l->type, i);
                    write_element(mem, l->type, i, v);
                }
            }
}

// ---- the arithmetic --------------------------------------------------------------------------
// On logical NCHW / KCRS float copies, through im2col and OpenBLAS's sgemm, with float sums
// as cuDNN's. An image's columns hold its input patches: C*R*S rows of P*Q output positions.

[[noreturn]] static void out_of_memory(void)
{
    fprintf(stderr, "cuda emulator: cudnn: no host memory for a convolution's copies\n");
    abort();
}

static float *floats(int64_t count)
{
    float *p = (float *)calloc((size_t)count, sizeof *p);
    if (!p)
        out_of_memory();
    return p;
}

// The input position of output position o under filter tap t, or -1 when it is padding.
static int64_t source(int64_t o, int64_t t, int64_t stride, int64_t dil, int64_t pad, int64_t in)
{
    const int64_t i = o * stride + t * dil - pad;
    return i >= 0 && i < in ? i : -1;
}

// Between one image (C, H, W) and its columns (C*R*S, P*Q): gathered from it, or added back
// to it (the gradient of the gather).
template <bool Gather>
static void columns(const conv_problem *pr, const float *image, float *col, double *dimage)
{
    const int64_t hw = pr->h * pr->w, pq = pr->p * pr->q;
    for (int64_t c = 0; c < pr->c; c++)
        for (int64_t r = 0; r < pr->r; r++)
            for (int64_t s = 0; s < pr->s; s++) {
                float *row = col + ((c * pr->r + r) * pr->s + s) * pq;
                for (int64_t p = 0; p < pr->p; p++) {
                    const int64_t ih = source(p, r, pr->stride_h, pr->dil_h, pr->pad_h, pr->h);
                    for (int64_t q = 0; q < pr->q; q++) {
                        const int64_t iw = source(q, s, pr->stride_w, pr->dil_w, pr->pad_w, pr->w);
                        const bool inside = ih >= 0 && iw >= 0;
                        const int64_t at = c * hw + ih * pr->w + iw;
                        if (Gather)
                            row[p * pr->q + q] = inside ? image[at] : 0.0f;
                        else if (inside)
                            dimage[at] += row[p * pr->q + q];
                    }
                }
            }
}

// y[n] (K, P*Q) = w (K, C*R*S) x columns of x[n]
static void forward_gemm(const conv_problem *pr, const float *x, const float *w, double *y)
{
    const int64_t crs = pr->c * pr->r * pr->s, pq = pr->p * pr->q;
    float *col = floats(crs * pq), *out = floats(pr->k * pq);
    for (int64_t n = 0; n < pr->n; n++) {
        columns<true>(pr, x + n * pr->c * pr->h * pr->w, col, nullptr);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)pr->k, (int)pq, (int)crs, 1.0f,
                    w, (int)crs, col, (int)pq, 0.0f, out, (int)pq);
        for (int64_t i = 0; i < pr->k * pq; i++)
            y[n * pr->k * pq + i] = out[i];
    }
    free(out);
    free(col);
}

// columns of dx[n] = w^T (C*R*S, K) x dy[n] (K, P*Q), added back into dx[n]
static void backward_data_gemm(const conv_problem *pr, const float *w, const float *dy, double *dx)
{
    const int64_t crs = pr->c * pr->r * pr->s, pq = pr->p * pr->q, chw = pr->c * pr->h * pr->w;
    float *col = floats(crs * pq);
    for (int64_t n = 0; n < pr->n; n++) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)crs, (int)pq, (int)pr->k, 1.0f, w,
                    (int)crs, dy + n * pr->k * pq, (int)pq, 0.0f, col, (int)pq);
        columns<false>(pr, nullptr, col, dx + n * chw);
    }
    free(col);
}

// dw (K, C*R*S) = sum over n of dy[n] (K, P*Q) x (columns of x[n])^T
static void backward_filter_gemm(const conv_problem *pr, const float *x, const float *dy,
                                 double *dw)
{
    const int64_t crs = pr->c * pr->r * pr->s, pq = pr->p * pr->q;
    float *col = floats(crs * pq), *sum = floats(pr->k * crs);
    for (int64_t n = 0; n < pr->n; n++) {
        columns<true>(pr, x + n * pr->c * pr->h * pr->w, col, nullptr);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)pr->k, (int)crs, (int)pq, 1.0f,
                    dy + n * pr->k * pq, (int)pq, col, (int)pq, 1.0f, sum, (int)crs);
    }
    for (int64_t i = 0; i < pr->k * crs; i++)
        dw[i] = sum[i];
    free(sum);
    free(col);
}

// ---- the convolutions -------------------------------------------------------------------------

enum conv_direction { FORWARD, BACKWARD_DATA, BACKWARD_FILTER };

// Checks a run's arguments: the algorithm is one of the direction's two (an unknown value is
// BAD_PARAM, a known one not offered NOT_SUPPORTED) and has the workspace it asked for: how
// much of it the run scribbles over (used).
static cudnnStatus_t check_run(const void *alpha, const void *beta, const algo_info algos[2],
                               int algo, int algo_count, void *workspace, size_t workspace_bytes,
                               size_t *used)
{
    if (!alpha || !beta || algo < 0 || algo >= algo_count)
        return CUDNN_STATUS_BAD_PARAM;
    const algo_info *a = find_algo(algos, algo);
    if (!a)
        return CUDNN_STATUS_NOT_SUPPORTED;
    if (a->memory > 0 && (!workspace || workspace_bytes < a->memory))
        return CUDNN_STATUS_BAD_PARAM;
    *used = a->memory;
    return CUDNN_STATUS_SUCCESS;
}

// What a tensor core reads of a float under CUDNN_TENSOR_OP_MATH: TF32, 10 bits of mantissa,
// rounded to nearest with ties away from zero (cvt.rna.tf32.f32).
static void round_to_tf32(float *v, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        if ((u & 0x7f800000u) != 0x7f800000u) // inf and NaN stay
            u = (u + 0x1000u) & ~0x1fffu;
        memcpy(&v[i], &u, sizeof u);
    }
}

// One convolution as queued on the handle's stream: everything it needs, copied at the
// call, as a kernel's arguments are (descriptors may be destroyed before it runs).
struct conv_call {
    conv_direction dir;
    conv_problem pr;
    layout4 a_layout, b_layout, result_layout; // the operands: x and w, w and dy, or x and dy
    const void *a, *b;
    void *result;
    double alpha, beta;
    cudnnMathType_t math;
    void *workspace;
    size_t workspace_used; // scribbled over, as an algorithm using it would
};

// The operands go to logical copies, the arithmetic sums into a zeroed double array of the
// result's logical shape, and that is scaled into the result.
static void compute(const conv_call *c)
{
    if (c->workspace_used)
        memset(c->workspace, 0xa5, c->workspace_used);
    float *a_copy = load(&c->a_layout, c->a);
    float *b_copy = load(&c->b_layout, c->b);
    double *sums = (double *)calloc((size_t)count_of(&c->result_layout), sizeof *sums);
    if (!a_copy || !b_copy || !sums)
        out_of_memory();
    if (c->math == CUDNN_TENSOR_OP_MATH && c->a_layout.type == CUDNN_DATA_FLOAT) {
        round_to_tf32(a_copy, count_of(&c->a_layout));
        round_to_tf32(b_copy, count_of(&c->b_layout));
    }
    switch (c->dir) {
    case FORWARD:
        forward_gemm(&c->pr, a_copy, b_copy, sums);
        break;
    case BACKWARD_DATA:
        backward_data_gemm(&c->pr, a_copy, b_copy, sums);
        break;
    case BACKWARD_FILTER:
        backward_filter_gemm(&c->pr, a_copy, b_copy, sums);
        break;
    }
    store(&c->result_layout, sums, c->alpha, c->beta, c->result);
    free(sums);
    free(b_copy);
    free(a_copy);
}

// Queues the convolution on the handle's stream: it runs now, or at each replay of the graph
// the stream is capturing.
static cudnnStatus_t run(cudnnHandle_t handle, conv_call c, const void *alpha, const void *beta)
{
    if (!c.a || !c.b || !c.result)
        return CUDNN_STATUS_BAD_PARAM;
    c.alpha = *(const float *)alpha;
    c.beta = *(const float *)beta;
    tmix_emu::enqueue(handle->stream, [c]() { compute(&c); });
    return CUDNN_STATUS_SUCCESS;
}

extern "C" cudnnStatus_t cudnnConvolutionForward(
    cudnnHandle_t handle, const void *alpha, const cudnnTensorDescriptor_t x_desc, const void *x,
    const cudnnFilterDescriptor_t w_desc, const void *w,
    const cudnnConvolutionDescriptor_t conv_desc, cudnnConvolutionFwdAlgo_t algo, void *workspace,
    size_t workspace_bytes, const void *beta, const cudnnTensorDescriptor_t y_desc, void *y)
{
    if (!handle)
        return CUDNN_STATUS_BAD_PARAM;
    conv_problem pr;
    size_t used = 0;
    cudnnStatus_t e = describe_problem(x_desc, w_desc, conv_desc, y_desc, &pr);
    if (e != CUDNN_STATUS_SUCCESS)
        return e;
    e = check_run(alpha, beta, fwd_algos, algo, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, workspace,
                  workspace_bytes, &used);
    if (e != CUDNN_STATUS_SUCCESS)
        return e;
    const layout4 xl = tensor_layout(x_desc), wl = filter_layout(w_desc),
                  yl = tensor_layout(y_desc);
    return run(handle, {FORWARD, pr, xl, wl, yl, x, w, y, 0, 0, conv_desc->math, workspace, used},
               alpha, beta);
}

extern "C" cudnnStatus_t cudnnConvolutionBackwardData(
    cudnnHandle_t handle, const void *alpha, const cudnnFilterDescriptor_t w_desc, const void *w,
    const cudnnTensorDescriptor_t dy_desc, const void *dy,
    const cudnnConvolutionDescriptor_t conv_desc, cudnnConvolutionBwdDataAlgo_t algo,
    void *workspace, size_t workspace_bytes, const void *beta,
    const cudnnTensorDescriptor_t dx_desc, void *dx)
{
    if (!handle)
        return CUDNN_STATUS_BAD_PARAM;
    conv_problem pr;
    size_t used = 0;
    cudnnStatus_t e = describe_problem(dx_desc, w_desc, conv_desc, dy_desc, &pr);
    if (e != CUDNN_STATUS_SUCCESS)
        return e;
    e = check_run(alpha, beta, bwd_data_algos, algo, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                  workspace, workspace_bytes, &used);
    if (e != CUDNN_STATUS_SUCCESS)
        return e;
    const layout4 wl = filter_layout(w_desc), dyl = tensor_layout(dy_desc),
                  dxl = tensor_layout(dx_desc);
    if (dyl.type == CUDNN_DATA_BFLOAT16 && getenv("TMIX_CUDAEMU_REFUSE_BF16_BACKWARD_DATA"))
        return CUDNN_STATUS_NOT_SUPPORTED;
    return run(handle,
               {BACKWARD_DATA, pr, wl, dyl, dxl, w, dy, dx, 0, 0, conv_desc->math, workspace, used},
               alpha, beta);
}

extern "C" cudnnStatus_t cudnnConvolutionBackwardFilter(
    cudnnHandle_t handle, const void *alpha, const cudnnTensorDescriptor_t x_desc, const void *x,
    const cudnnTensorDescriptor_t dy_desc, const void *dy,
    const cudnnConvolutionDescriptor_t conv_desc, cudnnConvolutionBwdFilterAlgo_t algo,
    void *workspace, size_t workspace_bytes, const void *beta,
    const cudnnFilterDescriptor_t dw_desc, void *dw)
{
    if (!handle)
        return CUDNN_STATUS_BAD_PARAM;
    conv_problem pr;
    size_t used = 0;
    cudnnStatus_t e = describe_problem(x_desc, dw_desc, conv_desc, dy_desc, &pr);
    if (e != CUDNN_STATUS_SUCCESS)
        return e;
    e = check_run(alpha, beta, bwd_filter_algos, algo, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                  workspace, workspace_bytes, &used);
    if (e != CUDNN_STATUS_SUCCESS)
        return e;
    const layout4 xl = tensor_layout(x_desc), dyl = tensor_layout(dy_desc),
                  dwl = filter_layout(dw_desc);
    return run(
        handle,
        {BACKWARD_FILTER, pr, xl, dyl, dwl, x, dy, dw, 0, 0, conv_desc->math, workspace, used},
        alpha, beta);
}
