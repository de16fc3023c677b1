// Fully connected layer on the GPU (the twin of kernels/linear.c): the three GEMMs of
// forward, backward input and backward weight share one tiled shared-memory GEMM kernel with
// transpose flags. Each output is summed by one thread over k in increasing order, in double
// (no atomics, no split sums), so results are bitwise reproducible.
#include "ops.cuh"

// Output tile edge; a block of TILE x ROWS_PER_PASS threads computes TILE x TILE outputs,
// each thread TILE / ROWS_PER_PASS of them (one column, rows ty, ty + ROWS_PER_PASS, ...).
#define TILE 32
#define ROWS_PER_PASS 8
#define ROWS_PER_THREAD (TILE / ROWS_PER_PASS)

// c (m, n) = op(a) (m, k) @ op(b) (k, n), then plus the old c (accumulate), or plus bias[j]
// (bias not NULL), or nothing. op(x) is x or, with its flag set, x^T; all row-major.
struct gemm_args {
    bool trans_a, trans_b, accumulate;
    int m, n, k;
    const float *a; // op(a) (m, k): (m, lda) or, transposed, (k, lda)
    int64_t lda;
    const float *b; // op(b) (k, n): (k, ldb) or, transposed, (n, ldb)
    int64_t ldb;
    float *c; // (m, ldc)
    int64_t ldc;
    const float *bias; // (n) or NULL; only without accumulate
};

// Copies the TILE x TILE block of the row-major src (rows x cols, leading dimension ld) at
// (row0, col0) into tile, transposed when asked; outside src reads 0. Consecutive threads
// read consecutive columns of src, so global reads coalesce either way; the padded row of
// tile keeps the transposed stores free of bank conflicts.
static __device__ __forceinline__ void load_tile(float (*tile)[TILE + 1],
                                                 const float *src, // (rows, ld)
                                                 int64_t ld, int rows, int cols, int row0,
                                                 int col0, bool transpose)
{
    const int c = threadIdx.x, col = col0 + c;
    for (int r = threadIdx.y; r < TILE; r += ROWS_PER_PASS) {
        const int row = row0 + r;
        float v = row < rows && col < cols ? src[(int64_t)row * ld + col] : 0.0f;
        if (transpose)
            tile[c][r] = v;
        else
            tile[r][c] = v;
    }
}

// Launched with blocks of (TILE, ROWS_PER_PASS) threads; blocks stride over the output tiles
// (the grid is capped), so any size fits.
static __global__ void gemm_kernel(gemm_args g)
{
    __shared__ float a_tile[TILE][TILE + 1]; // op(a) rows i0.., columns k0..
    __shared__ float b_tile[TILE][TILE + 1]; // op(b) rows k0.., columns j0..
    const int tiles_m = (g.m + TILE - 1) / TILE, tiles_n = (g.n + TILE - 1) / TILE;
    const int tx = threadIdx.x, ty = threadIdx.y;
    for (int tm = blockIdx.y; tm < tiles_m; tm += gridDim.y) {
        for (int tn = blockIdx.x; tn < tiles_n; tn += gridDim.x) {
            const int i0 = tm * TILE, j0 = tn * TILE;
            double acc[ROWS_PER_THREAD] = {0.0};
            for (int k0 = 0; k0 < g.k; k0 += TILE) {
                // a is stored (m, k), or (k, m) when transposed; b is (k, n), or (n, k).
                if (g.trans_a)
                    load_tile(a_tile, g.a, g.lda, g.k, g.m, k0, i0, true);
                else
                    load_tile(a_tile, g.a, g.lda, g.m, g.k, i0, k0, false);
                if (g.trans_b)
                    load_tile(b_tile, g.b, g.ldb, g.n, g.k, j0, k0, true);
                else
                    load_tile(b_tile, g.b, g.ldb, g.k, g.n, k0, j0, false);
                __syncthreads();
                for (int kk = 0; kk < TILE; kk++) {
                    const double bv = b_tile[kk][tx];
                    for (int r = 0; r < ROWS_PER_THREAD; r++)
                        acc[r] += (double)a_tile[ty + r * ROWS_PER_PASS][kk] * bv;
                }
                __syncthreads(); // the next pass overwrites the tiles
            }
            const int j = j0 + tx;
            if (j >= g.n)
                continue;
            for (int r = 0; r < ROWS_PER_THREAD; r++) {
                const int i = i0 + ty + r * ROWS_PER_PASS;
                if (i >= g.m)
                    break;
                float *out = g.c + (int64_t)i * g.ldc + j;
                const double base = g.accumulate ? *out : g.bias ? g.bias[j] : 0.0f;
                *out = (float)(base + acc[r]);
            }
        }
    }
}

static int gemm(tmix_cuda_state *st, const gemm_args &g)
{
    const dim3 block(TILE, ROWS_PER_PASS);
    const dim3 grid(tmix_cuda_blocks(g.n, TILE), tmix_cuda_blocks(g.m, TILE));
    gemm_kernel<<<grid, block, 0, st->stream>>>(g);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

// The entry points have checked that every size fits an int (as BLAS needs on the CPU).
extern "C" int tmix_cuda_linear_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                                        const tmix_tensor *weight, const tmix_tensor *bias)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    const int nb = (int)in->shape[0], ni = (int)in->shape[1], no = (int)weight->shape[0];
    // out = in @ W^T + bias
    gemm_args g = {false, true, false, nb, no, ni, tmix_f32(in), ni, tmix_f32(weight), ni,
                   tmix_f32(out), no, bias ? tmix_f32(bias) : NULL};
    return gemm(st, g);
}

extern "C" int tmix_cuda_linear_backward_input(tmix_backend *be, tmix_tensor *din,
                                               const tmix_tensor *dout,
                                               const tmix_tensor *weight)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    const int nb = (int)din->shape[0], ni = (int)din->shape[1], no = (int)weight->shape[0];
    // din += dout @ W
    gemm_args g = {false, false, true, nb, ni, no, tmix_f32(dout), no, tmix_f32(weight), ni,
                   tmix_f32(din), ni, NULL};
    return gemm(st, g);
}

extern "C" int tmix_cuda_linear_backward_weight(tmix_backend *be, tmix_tensor *dweight,
                                                const tmix_tensor *dout, const tmix_tensor *in)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    const int nb = (int)in->shape[0], ni = (int)in->shape[1], no = (int)dweight->shape[0];
    // dW += dout^T @ in; the batch is the inner dimension, summed whole by each thread.
    gemm_args g = {true, false, true, no, ni, nb, tmix_f32(dout), no, tmix_f32(in), ni,
                   tmix_f32(dweight), ni, NULL};
    return gemm(st, g);
}
