// 2-D convolution (PyTorch Conv2d without groups) by im2col + GEMM. For sample n, col
// (C*KH*KW, OH*OW) holds the input pixel that each kernel tap sees at each output position
// (0 in the padding), so that
//   forward:          out[n] (OC, P)  = W (OC, K) @ col (K, P)        (+ bias per row)
//   backward input:   dcol   (K, P)   = W^T (K, OC) @ dout[n] (OC, P), then col2im adds it
//   backward weight:  dW     (OC, K) += dout[n] (OC, P) @ col^T (P, K), summed over chunks
// with K = C*KH*KW and P = OH*OW. Each GEMM takes a group of consecutive samples side by
// side (see group_size), so small outputs still make GEMMs wide enough. A 1x1 kernel with
// stride 1 and no padding needs no col: the image itself is the (C, H*W) matrix.
//
// Threads: OpenBLAS runs single-threaded (blas.c) and OpenMP splits the work into pieces
// that do not depend on the thread count, so the bits of every result are the same for any
// number of threads. Each op is one parallel region. Forward and backward input: a group is
// a piece, each thread with its own work area; pieces are handed out dynamically (a group's
// bits do not depend on which thread does it), so a thread that the busy machine delays does
// not keep the others waiting. Backward weight: see tmix_cpu_conv2d_backward_weight.
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

// The outputs i in [0, count) whose input position start + i * step lies in [0, size): a
// range [*lo, *hi), empty when *lo == *hi. It spares the copy loops a bounds check per pixel.
static void inside(int64_t start, int64_t step, int64_t size, int64_t count, int64_t *lo,
                   int64_t *hi)
{
    *lo = start >= 0 ? 0 : (-start + step - 1) / step;
    *hi = start > size - 1 ? 0 : (size - 1 - start) / step + 1;
    *lo = *lo < count ? *lo : count;
    *hi = *hi < *lo ? *lo : *hi < count ? *hi : count;
}

// The KH*KW rows of col that channel c of one sample feeds: col[r, oh * OW + ow] =
// img[c, ih, iw] for row r = (c * KH + kh) * KW + kw, or 0 in the padding. Rows are `ld`
// floats apart (a group's samples sit side by side).
static void im2col_channel(float *col,       // (K, ld), this sample's P columns
                           int64_t ld,
                           const float *img, // (C, H, W)
                           const conv_geom *g, tmix_conv2d_params p, int64_t c)
{
    const float *src = img + c * g->H * g->W;
    for (int64_t kh = 0; kh < g->KH; kh++) {
        for (int64_t kw = 0; kw < g->KW; kw++) {
            float *dst = col + ((c * g->KH + kh) * g->KW + kw) * ld;
            const int64_t ih0 = kh * p.dilation_h - p.pad_h, iw0 = kw * p.dilation_w - p.pad_w;
            int64_t lo, hi;
            inside(iw0, p.stride_w, g->W, g->OW, &lo, &hi);
            for (int64_t oh = 0; oh < g->OH; oh++) {
                const int64_t ih = ih0 + oh * p.stride_h;
                float *row = dst + oh * g->OW;
                if (ih < 0 || ih >= g->H) {
                    for (int64_t ow = 0; ow < g->OW; ow++)
                        row[ow] = 0.0f;
                    continue;
                }
                // Loops, not memcpy/memset: rows are a few dozen floats, calls cost more.
                const float *in = src + ih * g->W + iw0; // in[ow * stride_w] for ow in [lo, hi)
                for (int64_t ow = 0; ow < lo; ow++)
                    row[ow] = 0.0f;
                if (p.stride_w == 1) {
#pragma omp simd
                    for (int64_t ow = lo; ow < hi; ow++)
                        row[ow] = in[ow];
                } else {
                    for (int64_t ow = lo; ow < hi; ow++)
                        row[ow] = in[ow * p.stride_w];
                }
                for (int64_t ow = hi; ow < g->OW; ow++)
                    row[ow] = 0.0f;
            }
        }
    }
}

static void im2col(float *col,       // (K, ld)
                   int64_t ld,
                   const float *img, // (C, H, W)
                   const conv_geom *g, tmix_conv2d_params p)
{
    for (int64_t c = 0; c < g->C; c++)
        im2col_channel(col, ld, img, g, p, c);
}

// img[c, ih, iw] += col[r, oh * OW + ow], the transpose of im2col, taps in a fixed order.
static void col2im_add(float *img,       // (C, H, W)
                       const float *col, // (K, ld), this sample's P columns
                       int64_t ld,
                       const conv_geom *g, tmix_conv2d_params p)
{
    for (int64_t c = 0; c < g->C; c++) {
        float *dst = img + c * g->H * g->W;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            for (int64_t kw = 0; kw < g->KW; kw++) {
                const float *src = col + ((c * g->KH + kh) * g->KW + kw) * ld;
                const int64_t ih0 = kh * p.dilation_h - p.pad_h;
                const int64_t iw0 = kw * p.dilation_w - p.pad_w;
                int64_t lo, hi;
                inside(iw0, p.stride_w, g->W, g->OW, &lo, &hi);
                for (int64_t oh = 0; oh < g->OH; oh++) {
                    const int64_t ih = ih0 + oh * p.stride_h;
                    if (ih < 0 || ih >= g->H)
                        continue;
                    float *out = dst + ih * g->W + iw0; // out[ow * stride_w], ow in [lo, hi)
                    const float *row = src + oh * g->OW;
                    if (p.stride_w == 1) {
#pragma omp simd
                        for (int64_t ow = lo; ow < hi; ow++)
                            out[ow] += row[ow];
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++)
                            out[ow * p.stride_w] += row[ow];
                    }
                }
            }
        }
    }
}

// ---- groups of samples ------------------------------------------------------------------------

// The GEMMs take a group of consecutive samples at once, their columns side by side: col
// (K, S*P), and dout or out as (OC, S*P). OpenBLAS packs the weights once per call, so a
// call with few columns (P = 64 at 8x8) spends much of its time packing; groups of at least
// GROUP_COLS columns keep that small. The group size depends on the sizes alone, so the
// bits do not depend on the thread count. A pointwise conv reads the image in place and
// takes one sample at a time.
enum { GROUP_COLS = 512 };

static int64_t group_size(const conv_geom *g, bool pointwise)
{
    const int64_t s = pointwise ? 1 : (GROUP_COLS + g->P - 1) / g->P;
    return s < g->N ? s : g->N;
}

// Samples [n0, n0 + count) of a (N, OC, P) tensor side by side: mat (OC, count * P).
static void gather_group(float *mat, const float *t, int64_t n0, int64_t count,
                         const conv_geom *g)
{
    for (int64_t s = 0; s < count; s++)
        for (int64_t oc = 0; oc < g->OC; oc++)
            memcpy(mat + (oc * count + s) * g->P, t + ((n0 + s) * g->OC + oc) * g->P,
                   (size_t)g->P * sizeof *mat);
}

// The transpose of gather_group, adding the bias (OC, or NULL) and applying the ReLU on the
// way, while the group is in cache. mat may be the group's own place in t when count is 1.
static void scatter_group(float *t, const float *mat, int64_t n0, int64_t count,
                          const float *bias, bool relu, const conv_geom *g)
{
    for (int64_t s = 0; s < count; s++)
        for (int64_t oc = 0; oc < g->OC; oc++) {
            float *dst = t + ((n0 + s) * g->OC + oc) * g->P;
            const float *src = mat + (oc * count + s) * g->P;
            const float b = bias ? bias[oc] : 0.0f;
            if (!bias && !relu && dst == src)
                continue;
            if (!relu) {
#pragma omp simd
                for (int64_t i = 0; i < g->P; i++)
                    dst[i] = src[i] + b;
                continue;
            }
#pragma omp simd
            for (int64_t i = 0; i < g->P; i++) {
                const float v = src[i] + b;
                dst[i] = v < 0.0f ? 0.0f : v; // as tmix_cpu_relu_forward
            }
        }
}

// Threads for a loop over n pieces of work: no more than there are pieces.
static int team_size(int64_t n)
{
    const int t = omp_get_max_threads();
    return n < t ? (int)n : t;
}

// Each thread's work area: col (K, S*P) unless pointwise, then mat (OC, S*P) when S > 1.
// One allocation for the team, each area starting on a 64-byte boundary, so that whichever
// thread takes a group, its GEMMs see the same alignment. Allocated before the parallel
// region: an error is reported on the caller's thread (the message is thread-local) and
// nothing is written to the outputs.
typedef struct {
    float *block;
    size_t stride, mat_offset; // floats between areas, and from an area's col to its mat
} work_areas;

static size_t round16(size_t floats)
{
    return (floats + 15) / 16 * 16;
}

static int work_alloc(work_areas *w, const char *op, const conv_geom *g, bool pointwise,
                      int64_t group, int team)
{
    const size_t cols = (size_t)(group * g->P);
    w->mat_offset = pointwise ? 0 : round16((size_t)g->K * cols);
    w->stride = w->mat_offset + (group > 1 ? round16((size_t)g->OC * cols) : 0);
    w->stride = w->stride ? w->stride : 16;
    if (w->stride > SIZE_MAX / sizeof(float) / (size_t)team)
        return tmix_fail(TMIX_ENOMEM, "%s: %d work areas of %zu floats overflow size_t", op,
                         team, w->stride);
    const size_t bytes = w->stride * sizeof(float) * (size_t)team;
    if (!(w->block = aligned_alloc(64, bytes)))
        return tmix_fail(TMIX_ENOMEM, "%s: %zu bytes of work areas (%d threads, im2col of "
                         "%lld x %zu)", op, bytes, team, (long long)g->K, cols);
    return 0;
}

static float *work_col(const work_areas *w)
{
    return w->block + (size_t)omp_get_thread_num() * w->stride;
}

static float *work_mat(const work_areas *w)
{
    return work_col(w) + w->mat_offset;
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
    TMIX_CALL(op, be, conv2d_forward, out, in, weight, bias, p);
}

int tmix_cpu_conv2d_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in, const
    tmix_tensor *weight, const tmix_tensor *bias, tmix_conv2d_params p)
{
    (void)be;
    tmix_cpu_blas_init();
    const conv_geom g = geometry(in, weight, out);
    const bool pointwise = is_pointwise(&g, p);
    const int64_t group = group_size(&g, pointwise), groups = (g.N + group - 1) / group;
    const int team = team_size(groups);
    work_areas w;
    TMIX_TRY(work_alloc(&w, "conv2d_forward", &g, pointwise, group, team));
    const float *wt = tmix_f32(weight), *x = tmix_f32(in);
    const float *b = bias ? tmix_f32(bias) : NULL;
    float *y = tmix_f32(out);
#pragma omp parallel num_threads(team)
    {
        float *col = work_col(&w), *mat = work_mat(&w);
#pragma omp for schedule(dynamic)
        for (int64_t k = 0; k < groups; k++) {
            const int64_t n0 = k * group, count = g.N - n0 < group ? g.N - n0 : group;
            const int64_t cols = count * g.P;
            for (int64_t s = 0; s < count && !pointwise; s++)
                im2col(col + s * g.P, cols, x + (n0 + s) * g.C * g.H * g.W, &g, p);
            // A group of one is written in place; a larger one through mat (OC, S*P).
            float *dst = count == 1 ? y + n0 * g.OC * g.P : mat;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g.OC, (int)cols,
                        (int)g.K, 1.0f, wt, (int)g.K,
                        pointwise ? x + n0 * g.C * g.P : col, (int)cols, 0.0f, dst, (int)cols);
            scatter_group(y, dst, n0, count, b, p.relu, &g);
        }
    }
    free(w.block);
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
    TMIX_CALL(op, be, conv2d_backward_input, din, dout, weight, p);
}

int tmix_cpu_conv2d_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
    const tmix_tensor *weight, tmix_conv2d_params p)
{
    (void)be;
    tmix_cpu_blas_init();
    const conv_geom g = geometry(din, weight, dout);
    const bool pointwise = is_pointwise(&g, p);
    const int64_t group = group_size(&g, pointwise), groups = (g.N + group - 1) / group;
    const int team = team_size(groups);
    work_areas w;
    TMIX_TRY(work_alloc(&w, "conv2d_backward_input", &g, pointwise, group, team));
    const float *wt = tmix_f32(weight), *dy = tmix_f32(dout);
    float *dx = tmix_f32(din);
#pragma omp parallel num_threads(team)
    {
        float *col = work_col(&w), *mat = work_mat(&w);
#pragma omp for schedule(dynamic)
        for (int64_t k = 0; k < groups; k++) {
            const int64_t n0 = k * group, count = g.N - n0 < group ? g.N - n0 : group;
            const int64_t cols = count * g.P;
            const float *src = dy + n0 * g.OC * g.P; // (OC, cols)
            if (count > 1) {
                gather_group(mat, dy, n0, count, &g);
                src = mat;
            }
            // Pointwise: col2im is the identity, so the GEMM accumulates straight into din.
            float *dxn = dx + n0 * g.C * g.H * g.W;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g.K, (int)cols,
                        (int)g.OC, 1.0f, wt, (int)g.K, src, (int)cols, pointwise ? 1.0f : 0.0f,
                        pointwise ? dxn : col, (int)cols);
            for (int64_t s = 0; s < count && !pointwise; s++)
                col2im_add(dxn + s * g.C * g.H * g.W, col + s * g.P, cols, &g, p);
        }
    }
    free(w.block);
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
    TMIX_CALL(op, be, conv2d_backward_weight, dweight, dout, in, p);
}

// dW (OC, K) += sum over n of dout[n] (OC, P) @ col_n^T (P, K) is a sum across the batch,
// so no sample can have a thread of its own. The batch is cut into fixed chunks of whole
// groups (their size depends on the sizes alone, never on the thread count); each chunk is
// one piece of work that sums its groups in index order into a partial of its own (one GEMM
// per group, beta 0 then 1), and then dW gets the partials added in chunk order, element by
// element. Every sum is thus in a fixed order whichever thread does a chunk, and a thread
// builds each col once, with no barrier between groups.
// DW_CHUNK: 8 samples give a batch of 128 16 chunks to share out while the partials stay a
// few times the size of dW; DW_PARTIALS_MAX caps their memory for large kernels (the chunks
// grow instead).
enum { DW_CHUNK = 8, DW_PARTIALS_MAX = 1 << 22 };

// Samples per chunk of the batch of g: a multiple of the group size.
static int64_t dw_chunk(const conv_geom *g, int64_t group)
{
    const int64_t max_chunks = DW_PARTIALS_MAX / (g->OC * g->K);
    int64_t chunk = DW_CHUNK > group ? DW_CHUNK : group;
    if ((g->N + chunk - 1) / chunk > max_chunks)
        chunk = max_chunks > 1 ? (g->N + max_chunks - 1) / max_chunks : g->N;
    return (chunk + group - 1) / group * group;
}

int tmix_cpu_conv2d_backward_weight(tmix_backend *be, tmix_tensor *dweight, const tmix_tensor *dout,
    const tmix_tensor *in, tmix_conv2d_params p)
{
    static const char op[] = "conv2d_backward_weight";
    (void)be;
    tmix_cpu_blas_init();
    const conv_geom g = geometry(in, dweight, dout);
    const bool pointwise = is_pointwise(&g, p);
    const int64_t group = group_size(&g, pointwise), chunk = dw_chunk(&g, group);
    const int64_t chunks = (g.N + chunk - 1) / chunk;
    const size_t part_stride = round16((size_t)(g.OC * g.K));
    const int team = team_size(chunks);
    if (part_stride > SIZE_MAX / sizeof(float) / (size_t)chunks)
        return tmix_fail(TMIX_ENOMEM, "%s: %lld partials of %zu floats overflow size_t", op,
                         (long long)chunks, part_stride);
    float *parts = aligned_alloc(64, part_stride * sizeof(float) * (size_t)chunks);
    if (!parts)
        return tmix_fail(TMIX_ENOMEM, "%s: %lld partials of dweight (%lld x %lld)", op,
                         (long long)chunks, (long long)g.OC, (long long)g.K);
    work_areas w;
    if (work_alloc(&w, op, &g, pointwise, group, team) < 0) {
        free(parts);
        return TMIX_ENOMEM;
    }
    const float *x = tmix_f32(in), *dy = tmix_f32(dout);
    float *dw = tmix_f32(dweight);
#pragma omp parallel num_threads(team)
    {
        float *col = work_col(&w), *mat = work_mat(&w);
#pragma omp for schedule(dynamic)
        for (int64_t k = 0; k < chunks; k++) {
            float *part = parts + (size_t)k * part_stride; // (OC, K)
            const int64_t end = (k + 1) * chunk < g.N ? (k + 1) * chunk : g.N;
            for (int64_t n0 = k * chunk; n0 < end; n0 += group) {
                const int64_t count = end - n0 < group ? end - n0 : group;
                const int64_t cols = count * g.P;
                const float *src = dy + n0 * g.OC * g.P; // (OC, cols)
                if (count > 1) {
                    gather_group(mat, dy, n0, count, &g);
                    src = mat;
                }
                for (int64_t s = 0; s < count && !pointwise; s++)
                    im2col(col + s * g.P, cols, x + (n0 + s) * g.C * g.H * g.W, &g, p);
                // part (+)= dout[group] (OC, cols) @ col[group]^T (cols, K)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g.OC, (int)g.K,
                            (int)cols, 1.0f, src, (int)cols,
                            pointwise ? x + n0 * g.C * g.P : col, (int)cols,
                            n0 == k * chunk ? 0.0f : 1.0f, part, (int)g.K);
            }
        } // implied barrier: every partial is complete
#pragma omp for schedule(static)
        for (int64_t i = 0; i < g.OC * g.K; i++) {
            float sum = dw[i];
            for (int64_t k = 0; k < chunks; k++)
                sum += parts[(size_t)k * part_stride + (size_t)i];
            dw[i] = sum;
        }
    }
    free(w.block);
    free(parts);
    return 0;
}
