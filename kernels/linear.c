// Fully connected layer (PyTorch Linear): three GEMMs on row-major matrices.
//   forward:          out (B, O)  = in (B, I) @ W^T (I, O)  (+ bias per row)
//   backward input:   din (B, I) += dout (B, O) @ W (O, I)
//   backward weight:  dW  (O, I) += dout^T (O, B) @ in (B, I)
// Threads: OpenBLAS runs single-threaded and each GEMM's output is cut into fixed tiles that
// OpenMP shares out (tmix_cpu_sgemm_tiled, blas.c), so the bits do not depend on the thread
// count.
#include "check.h"
#include "cpu.h"
#include "ops.h"

#include <limits.h>

// The output tile of each GEMM (tmix_cpu_sgemm_tiled): rows (the batch, or O for dW) by
// columns. Each tile is one GEMM over the whole inner dimension (which for dW is the batch, so
// its sum is never split). Big enough to keep OpenBLAS's packing cheap beside the multiply,
// small enough that a batch of 128 gives several tiles.
enum { TILE_ROWS = 32, TILE_COLS = 128 };

// The multiply-adds of each of the three GEMMs.
static int64_t macs(int nb, int ni, int no)
{
    return (int64_t)nb * ni * no;
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
    TMIX_CALL(op, be, linear_forward, out, in, weight, bias);
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
    // out = in @ W^T (+ out)
#pragma omp parallel if (macs(nb, ni, no) >= TMIX_CPU_PARALLEL_MIN)
    tmix_cpu_sgemm_tiled(false, true, nb, no, ni, 1.0f, tmix_f32(in), ni,
                         tmix_f32(weight), ni, beta, y, no, TILE_ROWS, TILE_COLS);
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
    TMIX_CALL(op, be, linear_backward_input, din, dout, weight);
}

int tmix_cpu_linear_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
    const tmix_tensor *weight)
{
    (void)be;
    tmix_cpu_blas_init();
    const int nb = (int)din->shape[0], ni = (int)din->shape[1], no = (int)weight->shape[0];
    // din += dout @ W
#pragma omp parallel if (macs(nb, ni, no) >= TMIX_CPU_PARALLEL_MIN)
    tmix_cpu_sgemm_tiled(false, false, nb, ni, no, 1.0f, tmix_f32(dout), no,
                         tmix_f32(weight), ni, 1.0f, tmix_f32(din), ni, TILE_ROWS, TILE_COLS);
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
    TMIX_CALL(op, be, linear_backward_weight, dweight, dout, in);
}

int tmix_cpu_linear_backward_weight(tmix_backend *be, tmix_tensor *dweight, const tmix_tensor *dout,
    const tmix_tensor *in)
{
    (void)be;
    tmix_cpu_blas_init();
    const int nb = (int)in->shape[0], ni = (int)in->shape[1], no = (int)dweight->shape[0];
    // dW += dout^T @ in. The batch is the inner dimension: one GEMM per tile sums all of it.
#pragma omp parallel if (macs(nb, ni, no) >= TMIX_CPU_PARALLEL_MIN)
    tmix_cpu_sgemm_tiled(true, false, no, ni, nb, 1.0f, tmix_f32(dout), no,
                         tmix_f32(in), ni, 1.0f, tmix_f32(dweight), ni, TILE_ROWS, TILE_COLS);
    return 0;
}
