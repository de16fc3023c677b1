// 2-D convolution (PyTorch Conv2d without groups) by im2col + GEMM, one sample at a time.
// For sample n, col (C*KH*KW, OH*OW) holds the input pixel that each kernel tap sees at each
// output position (0 in the padding), so that
//   forward:          out[n] (OC, P)  = W (OC, K) @ col (K, P)        (+ bias per row)
//   backward input:   dcol   (K, P)   = W^T (K, OC) @ dout[n] (OC, P), then col2im adds it
//   backward weight:  dW     (OC, K) += dout[n] (OC, P) @ col^T (P, K), samples in order
// with K = C*KH*KW and P = OH*OW. A 1x1 kernel with stride 1 and no padding needs no col:
// the image itself is the (C, H*W) matrix.
//
// Threads: OpenBLAS runs single-threaded (blas.c) and OpenMP splits the work into pieces
// that do not depend on the thread count, so the bits of every result are the same for any
// number of threads. Forward and backward input: one sample per thread, each thread with its
// own col. Backward weight: see tmix_cpu_conv2d_backward_weight.
#include "check.h"
#include "cpu.h"
#include "ops.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// Every size of one convolution, taken from the tensors' shapes.
typedef struct {
    int64_t N, C, H, W;    // image
    int64_t OC, KH, KW;    // weight
    int64_t OH, OW;        // output
    int64_t K, P;          // GEMM sizes: C*KH*KW and OH*OW
} conv_geom;

static conv_geom geometry(const tmix_tensor *image,  // (N, C, H, W)
                          const tmix_tensor *weight, // (OC, C, KH, KW)
                          const tmix_tensor *output) // (N, OC, OH, OW)
{
    conv_geom g = {
        .N = image->shape[0], .C = image->shape[1], .H = image->shape[2],
        .W = image->shape[3], .OC = weight->shape[0], .KH = weight->shape[2],
        .KW = weight->shape[3], .OH = output->shape[2], .OW = output->shape[3],
    };
    g.K = g.C * g.KH * g.KW;
    g.P = g.OH * g.OW;
    return g;
}

static bool is_pointwise(const conv_geom *g, tmix_conv2d_params p)
{
    return g->KH == 1 && g->KW == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 &&
           p.pad_w == 0;
}

// ---- argument checks ---------------------------------------------------------------------

static int check_params(const char *op, tmix_conv2d_params p)
{
    if (p.stride_h <= 0 || p.stride_w <= 0)
        return tmix_fail(TMIX_EINVAL, "%s: stride (%d,%d) must be positive", op, p.stride_h,
                         p.stride_w);
    if (p.pad_h < 0 || p.pad_w < 0)
        return tmix_fail(TMIX_EINVAL, "%s: padding (%d,%d) must not be negative", op, p.pad_h,
                         p.pad_w);
    if (p.dilation_h <= 0 || p.dilation_w <= 0)
        return tmix_fail(TMIX_EINVAL, "%s: dilation (%d,%d) must be positive", op,
                         p.dilation_h, p.dilation_w);
    return 0;
}

// Checks that the image (already checked as 4-D) and the weight agree on channels and that
// the padded image holds the dilated kernel; gives the output size (N, OC, OH, OW).
static int check_geometry(const char *op, tmix_backend *be, const char *iname,
                          const tmix_tensor *image,  // (N, C, H, W)
                          const char *wname,
                          const tmix_tensor *weight, // (OC, C, KH, KW)
                          tmix_conv2d_params p, int64_t out_shape[4])
{
    char a[96], b[96];
    TMIX_TRY(tmix_check_tensor(op, wname, weight, be, TMIX_F32, 4));
    if (weight->shape[1] != image->shape[1])
        return tmix_fail(TMIX_ESHAPE, "%s: %s %s has %lld channels but %s %s expects %lld", op,
                         iname, tmix_shape_str(image, a, sizeof a),
                         (long long)image->shape[1], wname,
                         tmix_shape_str(weight, b, sizeof b), (long long)weight->shape[1]);
    int64_t span_h = (int64_t)p.dilation_h * (weight->shape[2] - 1) + 1;
    int64_t span_w = (int64_t)p.dilation_w * (weight->shape[3] - 1) + 1;
    int64_t room_h = image->shape[2] + 2 * (int64_t)p.pad_h;
    int64_t room_w = image->shape[3] + 2 * (int64_t)p.pad_w;
    if (room_h < span_h || room_w < span_w)
        return tmix_fail(TMIX_ESHAPE,
                         "%s: %s %s padded by (%d,%d) is smaller than the kernel of %s %s "
                         "dilated by (%d,%d)", op, iname, tmix_shape_str(image, a, sizeof a),
                         p.pad_h, p.pad_w, wname, tmix_shape_str(weight, b, sizeof b),
                         p.dilation_h, p.dilation_w);
    out_shape[0] = image->shape[0];
    out_shape[1] = weight->shape[0];
    out_shape[2] = (room_h - span_h) / p.stride_h + 1;
    out_shape[3] = (room_w - span_w) / p.stride_w + 1;
    // The GEMM sizes must fit BLAS's int.
    int64_t k = weight->shape[1] * weight->shape[2] * weight->shape[3];
    int64_t hw = image->shape[2] * image->shape[3];
    if (k > INT_MAX || out_shape[1] > INT_MAX || out_shape[2] * out_shape[3] > INT_MAX ||
        hw > INT_MAX)
        return tmix_fail(TMIX_EINVAL, "%s: %s %s with %s %s is too large for a BLAS GEMM", op,
                         iname, tmix_shape_str(image, a, sizeof a), wname,
                         tmix_shape_str(weight, b, sizeof b));
    return 0;
}

// ---- im2col and col2im ----------------------------------------------------------------------

// The KH*KW rows of col that channel c feeds: col[r, oh * OW + ow] = img[c, ih, iw] for row
// r = (c * KH + kh) * KW + kw, or 0 in the padding.
static void im2col_channel(float *col,       // (K, P)
                           const float *img, // (C, H, W)
                           const conv_geom *g, tmix_conv2d_params p, int64_t c)
{
    const float *src = img + c * g->H * g->W;
    for (int64_t kh = 0; kh < g->KH; kh++) {
        for (int64_t kw = 0; kw < g->KW; kw++) {
            float *dst = col + ((c * g->KH + kh) * g->KW + kw) * g->P;
            for (int64_t oh = 0; oh < g->OH; oh++) {
                const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
                float *row = dst + oh * g->OW;
                if (ih < 0 || ih >= g->H) {
                    memset(row, 0, (size_t)g->OW * sizeof *row);
                    continue;
                }
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
                    row[ow] = iw >= 0 && iw < g->W ? src[ih * g->W + iw] : 0.0f;
                }
            }
        }
    }
}

static void im2col(float *col,       // (K, P)
                   const float *img, // (C, H, W)
                   const conv_geom *g, tmix_conv2d_params p)
{
    for (int64_t c = 0; c < g->C; c++)
        im2col_channel(col, img, g, p, c);
}

// img[c, ih, iw] += col[r, oh * OW + ow], the transpose of im2col, taps in a fixed order.
static void col2im_add(float *img,       // (C, H, W)
                       const float *col, // (K, P)
                       const conv_geom *g, tmix_conv2d_params p)
{
    for (int64_t c = 0; c < g->C; c++) {
        float *dst = img + c * g->H * g->W;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            for (int64_t kw = 0; kw < g->KW; kw++) {
                const float *src = col + ((c * g->KH + kh) * g->KW + kw) * g->P;
                for (int64_t oh = 0; oh < g->OH; oh++) {
                    const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
                    if (ih < 0 || ih >= g->H)
                        continue;
                    for (int64_t ow = 0; ow < g->OW; ow++) {
                        const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
                        if (iw >= 0 && iw < g->W)
                            dst[ih * g->W + iw] += src[oh * g->OW + ow];
                    }
                }
            }
        }
    }
}

// Threads for a loop over the n samples: no more than there are samples.
static int team_size(int64_t n)
{
    const int t = omp_get_max_threads();
    return n < t ? (int)n : t;
}

// `count` col matrices (K, P) in one allocation, `*stride` floats apart. Each starts on a
// 64-byte boundary, so that whichever thread does a sample, its GEMM sees the same
// alignment. Allocated before the parallel region: an error is reported on the caller's
// thread (the message is thread-local) and nothing is written to the outputs.
static float *workspace(const char *op, const conv_geom *g, int count, size_t *stride)
{
    const size_t floats = (size_t)g->K * (size_t)g->P;
    *stride = (floats + 15) / 16 * 16;
    if (*stride > SIZE_MAX / sizeof(float) / (size_t)count) {
        tmix_fail(TMIX_ENOMEM, "%s: %d im2col workspaces of %lld x %lld floats overflow size_t",
                  op, count, (long long)g->K, (long long)g->P);
        return NULL;
    }
    const size_t bytes = *stride * sizeof(float) * (size_t)count;
    float *col = aligned_alloc(64, bytes);
    if (!col)
        tmix_fail(TMIX_ENOMEM, "%s: %zu bytes of im2col workspace (%d x %lld x %lld)", op,
                  bytes, count, (long long)g->K, (long long)g->P);
    return col;
}

// ---- forward --------------------------------------------------------------------------------

int tmix_conv2d_forward(tmix_backend *be,
                        tmix_tensor *out,          // (N, OC, OH, OW)
                        const tmix_tensor *in,     // (N, C, H, W)
                        const tmix_tensor *weight, // (OC, C, KH, KW)
                        const tmix_tensor *bias,   // (OC) or NULL
                        tmix_conv2d_params p)
{
    static const char op[] = "conv2d_forward";
    TMIX_CHECK_BACKEND(op, be, conv2d_forward);
    TMIX_TRY(check_params(op, p));
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    int64_t shape[4];
    TMIX_TRY(check_geometry(op, be, "in", in, "weight", weight, p, shape));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4, shape));
    if (bias)
        TMIX_TRY(tmix_check_shape(op, "bias", bias, be, TMIX_F32, 1, &shape[1]));
    return be->ops->conv2d_forward(be, out, in, weight, bias, p);
}

int tmix_cpu_conv2d_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in, const
    tmix_tensor *weight, const tmix_tensor *bias, tmix_conv2d_params p)
{
    (void)be;
    tmix_cpu_blas_init();
    const conv_geom g = geometry(in, weight, out);
    const bool pointwise = is_pointwise(&g, p);
    const int team = team_size(g.N);
    size_t stride = 0;
    float *cols = NULL;
    if (!pointwise && !(cols = workspace("conv2d_forward", &g, team, &stride)))
        return TMIX_ENOMEM;
    const float *w = tmix_f32(weight);
    const float *b = bias ? tmix_f32(bias) : NULL;
#pragma omp parallel num_threads(team)
    {
        float *col = pointwise ? NULL : cols + (size_t)omp_get_thread_num() * stride;
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g.N; n++) {
            const float *x = tmix_f32(in) + n * g.C * g.H * g.W;
            float *y = tmix_f32(out) + n * g.OC * g.P;
            if (!pointwise)
                im2col(col, x, &g, p);
            // With a bias, each output row starts from it and the GEMM adds onto it (beta 1).
            float beta = 0.0f;
            if (b) {
                for (int64_t oc = 0; oc < g.OC; oc++)
                    for (int64_t i = 0; i < g.P; i++)
                        y[oc * g.P + i] = b[oc];
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g.OC, (int)g.P,
                        (int)g.K, 1.0f, w, (int)g.K, pointwise ? x : col, (int)g.P, beta, y,
                        (int)g.P);
        }
    }
    free(cols);
    return 0;
}

// ---- backward: input ----------------------------------------------------------------------------

int tmix_conv2d_backward_input(tmix_backend *be,
                               tmix_tensor *din,          // (N, C, H, W)
                               const tmix_tensor *dout,   // (N, OC, OH, OW)
                               const tmix_tensor *weight, // (OC, C, KH, KW)
                               tmix_conv2d_params p)
{
    static const char op[] = "conv2d_backward_input";
    TMIX_CHECK_BACKEND(op, be, conv2d_backward_input);
    TMIX_TRY(check_params(op, p));
    TMIX_TRY(tmix_check_tensor(op, "din", din, be, TMIX_F32, 4));
    int64_t shape[4];
    TMIX_TRY(check_geometry(op, be, "din", din, "weight", weight, p, shape));
    TMIX_TRY(tmix_check_shape(op, "dout", dout, be, TMIX_F32, 4, shape));
    return be->ops->conv2d_backward_input(be, din, dout, weight, p);
}

int tmix_cpu_conv2d_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
    const tmix_tensor *weight, tmix_conv2d_params p)
{
    (void)be;
    tmix_cpu_blas_init();
    const conv_geom g = geometry(din, weight, dout);
    const bool pointwise = is_pointwise(&g, p);
    const int team = team_size(g.N);
    size_t stride = 0;
    float *cols = NULL;
    if (!pointwise && !(cols = workspace("conv2d_backward_input", &g, team, &stride)))
        return TMIX_ENOMEM;
    const float *w = tmix_f32(weight);
#pragma omp parallel num_threads(team)
    {
        float *col = pointwise ? NULL : cols + (size_t)omp_get_thread_num() * stride;
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g.N; n++) {
            float *dx = tmix_f32(din) + n * g.C * g.H * g.W;
            const float *dy = tmix_f32(dout) + n * g.OC * g.P;
            // Pointwise: col2im is the identity, so the GEMM accumulates straight into din.
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g.K, (int)g.P,
                        (int)g.OC, 1.0f, w, (int)g.K, dy, (int)g.P, pointwise ? 1.0f : 0.0f,
                        pointwise ? dx : col, (int)g.P);
            if (!pointwise)
                col2im_add(dx, col, &g, p);
        }
    }
    free(cols);
    return 0;
}

// ---- backward: weight ---------------------------------------------------------------------------

int tmix_conv2d_backward_weight(tmix_backend *be,
                                tmix_tensor *dweight,    // (OC, C, KH, KW)
                                const tmix_tensor *dout, // (N, OC, OH, OW)
                                const tmix_tensor *in,   // (N, C, H, W)
                                tmix_conv2d_params p)
{
    static const char op[] = "conv2d_backward_weight";
    TMIX_CHECK_BACKEND(op, be, conv2d_backward_weight);
    TMIX_TRY(check_params(op, p));
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    int64_t shape[4];
    TMIX_TRY(check_geometry(op, be, "in", in, "dweight", dweight, p, shape));
    TMIX_TRY(tmix_check_shape(op, "dout", dout, be, TMIX_F32, 4, shape));
    return be->ops->conv2d_backward_weight(be, dweight, dout, in, p);
}

// dW (OC, K) += sum over n of dout[n] (OC, P) @ col_n^T (P, K) is a sum across the batch,
// so no sample can have a thread of its own. Instead the samples are taken one after the
// other, in index order, by the whole team: first the team builds col_n (its channels shared
// out), then it updates dW in fixed tiles of DW_TILE_OC x DW_TILE_K, one GEMM with beta 1
// per tile and sample (tmix_cpu_sgemm_tiled, whose `omp for` binds to this region). A tile
// is always the same GEMM whichever thread runs it, and each element of dW gets its samples
// added in index order, so the bits do not depend on the thread count; col is built once
// per sample and memory is one col, as on one thread.
// Tile size, measured on a 64 -> 64 3x3 conv of (32,64,32,32): 64 x 64 costs 3-7% over one
// whole GEMM per sample on one thread and gives 9 tiles per sample to share out; tiles of
// 16 or 32 rows cost 15-35% on one thread (OpenBLAS repacks each operand once per tile).
enum { DW_TILE_OC = 64, DW_TILE_K = 64 };

int tmix_cpu_conv2d_backward_weight(tmix_backend *be, tmix_tensor *dweight, const tmix_tensor *dout,
    const tmix_tensor *in, tmix_conv2d_params p)
{
    (void)be;
    tmix_cpu_blas_init();
    const conv_geom g = geometry(in, dweight, dout);
    const bool pointwise = is_pointwise(&g, p);
    size_t stride = 0;
    float *col = NULL;
    if (!pointwise && !(col = workspace("conv2d_backward_weight", &g, 1, &stride)))
        return TMIX_ENOMEM;
    float *dw = tmix_f32(dweight);
#pragma omp parallel
    for (int64_t n = 0; n < g.N; n++) {
        const float *x = tmix_f32(in) + n * g.C * g.H * g.W;
        const float *dy = tmix_f32(dout) + n * g.OC * g.P;
        // Every thread takes the same branch, as a worksharing loop requires.
        if (!pointwise) {
#pragma omp for schedule(static)
            for (int64_t c = 0; c < g.C; c++)
                im2col_channel(col, x, &g, p, c);
        } // implied barrier: col_n is complete before any tile reads it
        // dW += dout[n] @ col_n^T
        tmix_cpu_sgemm_tiled(false, true, (int)g.OC, (int)g.K, (int)g.P, 1.0f,
                             dy, (int)g.P, pointwise ? x : col, (int)g.P, 1.0f, dw, (int)g.K,
                             DW_TILE_OC, DW_TILE_K);
        // Its loop ends with a barrier: no thread builds col_{n+1} while a tile reads col_n.
    }
    free(col);
    return 0;
}
