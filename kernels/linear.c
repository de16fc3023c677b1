// Fully connected layer (PyTorch Linear): three GEMMs on row-major matrices.
//   forward:          out (B, O)  = in (B, I) @ W^T (I, O)  (+ bias per row)
//   backward input:   din (B, I) += dout (B, O) @ W (O, I)
//   backward weight:  dW  (O, I) += dout^T (O, B) @ in (B, I)
// Threads: OpenBLAS runs single-threaded (blas.c); each GEMM's output is cut into fixed
// tiles that OpenMP shares out, so the bits do not depend on the thread count.
#include "check.h"
#include "cpu.h"
#include "ops.h"

#include <cblas.h>
#include <limits.h>

// The output tile: rows (the batch, or O for dW) by columns. Each tile is one GEMM over the
// whole inner dimension (which for dW is the batch, so its sum is never split), the same
// GEMM whichever thread runs it. Big enough to keep OpenBLAS's packing cheap beside the
// multiply, small enough that a batch of 128 gives several tiles.
enum { TILE_ROWS = 32, TILE_COLS = 128 };

// C (M, N) = op(A) (M, K) @ op(B) (K, N) + beta C, tile by tile. op(X) is X or X^T as
// cblas_sgemm's flags say; A, B and C row-major with leading dimensions lda, ldb, ldc.
static void gemm_tiled(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                       const float *a, int lda, const float *b, int ldb, float beta,
                       float *c, int ldc)
{
    const int tiles_m = (m + TILE_ROWS - 1) / TILE_ROWS, tiles_n = (n + TILE_COLS - 1) / TILE_COLS;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < (int64_t)tiles_m * tiles_n; t++) {
        const int i0 = (int)(t / tiles_n) * TILE_ROWS, j0 = (int)(t % tiles_n) * TILE_COLS;
        const int tm = m - i0 < TILE_ROWS ? m - i0 : TILE_ROWS;
        const int tn = n - j0 < TILE_COLS ? n - j0 : TILE_COLS;
        // Rows i0.. of op(A) and columns j0.. of op(B).
        const float *ai = ta == CblasNoTrans ? a + (int64_t)i0 * lda : a + i0;
        const float *bj = tb == CblasNoTrans ? b + j0 : b + (int64_t)j0 * ldb;
        cblas_sgemm(CblasRowMajor, ta, tb, tm, tn, k, 1.0f, ai, lda, bj, ldb, beta,
                    c + (int64_t)i0 * ldc + j0, ldc);
    }
}

// BLAS takes int sizes.
static int check_blas_sizes(const char *op, const tmix_tensor *a, const tmix_tensor *b)
{
    if (a->shape[0] <= INT_MAX && a->shape[1] <= INT_MAX && b->shape[0] <= INT_MAX &&
        b->shape[1] <= INT_MAX)
        return 0;
    char sa[96], sb[96];
    return tmix_fail(TMIX_EINVAL, "%s: %s and %s are too large for a BLAS GEMM", op,
                     tmix_shape_str(a, sa, sizeof sa), tmix_shape_str(b, sb, sizeof sb));
}

int tmix_linear_forward(tmix_backend *be,
                        tmix_tensor *out,          // (B, O)
                        const tmix_tensor *in,     // (B, I)
                        const tmix_tensor *weight, // (O, I)
                        const tmix_tensor *bias)   // (O) or NULL
{
    static const char op[] = "linear_forward";
    TMIX_CHECK_BACKEND(op, be, linear_forward);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 2));
    TMIX_TRY(tmix_check_shape(op, "weight", weight, be, TMIX_F32, 2,
                              (int64_t[]){-1, in->shape[1]}));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 2,
                              (int64_t[]){in->shape[0], weight->shape[0]}));
    if (bias)
        TMIX_TRY(tmix_check_shape(op, "bias", bias, be, TMIX_F32, 1, &weight->shape[0]));
    TMIX_TRY(check_blas_sizes(op, in, weight));
    return be->ops->linear_forward(be, out, in, weight, bias);
}

int tmix_cpu_linear_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in, const
    tmix_tensor *weight, const tmix_tensor *bias)
{
    (void)be;
    tmix_cpu_blas_init();
    // batch, in features, out features (BLAS takes int)
    const int nb = (int)in->shape[0], ni = (int)in->shape[1], no = (int)weight->shape[0];
    float *y = tmix_f32(out);
    // With a bias, each output row starts from it and the GEMM adds onto it (beta = 1).
    float beta = 0.0f;
    if (bias) {
        const float *b = tmix_f32(bias);
        for (int r = 0; r < nb; r++)
            for (int o = 0; o < no; o++)
                y[(int64_t)r * no + o] = b[o];
        beta = 1.0f;
    }
    gemm_tiled(CblasNoTrans, CblasTrans, nb, no, ni, tmix_f32(in), ni, tmix_f32(weight), ni,
               beta, y, no);
    return 0;
}

int tmix_linear_backward_input(tmix_backend *be,
                               tmix_tensor *din,          // (B, I)
                               const tmix_tensor *dout,   // (B, O)
                               const tmix_tensor *weight) // (O, I)
{
    static const char op[] = "linear_backward_input";
    TMIX_CHECK_BACKEND(op, be, linear_backward_input);
    TMIX_TRY(tmix_check_tensor(op, "din", din, be, TMIX_F32, 2));
    TMIX_TRY(tmix_check_shape(op, "weight", weight, be, TMIX_F32, 2,
                              (int64_t[]){-1, din->shape[1]}));
    TMIX_TRY(tmix_check_shape(op, "dout", dout, be, TMIX_F32, 2,
                              (int64_t[]){din->shape[0], weight->shape[0]}));
    TMIX_TRY(check_blas_sizes(op, din, weight));
    return be->ops->linear_backward_input(be, din, dout, weight);
}

int tmix_cpu_linear_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
    const tmix_tensor *weight)
{
    (void)be;
    tmix_cpu_blas_init();
    const int nb = (int)din->shape[0], ni = (int)din->shape[1], no = (int)weight->shape[0];
    gemm_tiled(CblasNoTrans, CblasNoTrans, nb, ni, no, tmix_f32(dout), no, tmix_f32(weight), ni,
               1.0f, tmix_f32(din), ni);
    return 0;
}

int tmix_linear_backward_weight(tmix_backend *be,
                                tmix_tensor *dweight,    // (O, I)
                                const tmix_tensor *dout, // (B, O)
                                const tmix_tensor *in)   // (B, I)
{
    static const char op[] = "linear_backward_weight";
    TMIX_CHECK_BACKEND(op, be, linear_backward_weight);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 2));
    TMIX_TRY(tmix_check_shape(op, "dweight", dweight, be, TMIX_F32, 2,
                              (int64_t[]){-1, in->shape[1]}));
    TMIX_TRY(tmix_check_shape(op, "dout", dout, be, TMIX_F32, 2,
                              (int64_t[]){in->shape[0], dweight->shape[0]}));
    TMIX_TRY(check_blas_sizes(op, in, dweight));
    return be->ops->linear_backward_weight(be, dweight, dout, in);
}

int tmix_cpu_linear_backward_weight(tmix_backend *be, tmix_tensor *dweight, const tmix_tensor *dout,
    const tmix_tensor *in)
{
    (void)be;
    tmix_cpu_blas_init();
    const int nb = (int)in->shape[0], ni = (int)in->shape[1], no = (int)dweight->shape[0];
    // The batch is the inner dimension: each tile sums all of it in one GEMM.
    gemm_tiled(CblasTrans, CblasNoTrans, no, ni, nb, tmix_f32(dout), no, tmix_f32(in), ni,
               1.0f, tmix_f32(dweight), ni);
    return 0;
}
