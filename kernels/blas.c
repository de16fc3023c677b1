// OpenBLAS for the CPU backend: its thread control and the tiled GEMM the ops share.
//
// Debian's OpenBLAS (pthread build) splits a large GEMM over its own threads, and the bits
// of the result depend on how many it uses. The CPU backend promises the same bits for any
// thread count, so OpenBLAS runs on one thread (in the calling thread, which is safe from
// several threads at once) and the ops get their parallelism from OpenMP over partitions
// that do not depend on the thread count.
#include "cpu.h"

#include <cblas.h>
#include <stdint.h>

// Called at the entry of every CPU twin that calls BLAS, not once: anything else in the
// process (a library, a test) may have raised OpenBLAS's thread count since the last call.
// Both calls cost about 10 ns; the count is only written when it is wrong.
void tmix_cpu_blas_init(void)
{
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
}

// Each tile is one cblas_sgemm over the whole inner dimension K, so a sum over K is never
// split and a tile is the same GEMM, with the same bits, whichever thread runs it. The
// tiles are fixed by the sizes alone, never by the thread count.
void tmix_cpu_sgemm_tiled(bool trans_a, bool trans_b, int m, int n, int k,
                          float alpha,
                          const float *a, int lda, // op(A) (M, K)
                          const float *b, int ldb, // op(B) (K, N)
                          float beta,
                          float *c, int ldc,       // (M, N)
                          int tile_m, int tile_n)
{
    const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
    const int tiles_m = (m + tile_m - 1) / tile_m, tiles_n = (n + tile_n - 1) / tile_n;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < (int64_t)tiles_m * tiles_n; t++) {
        const int i0 = (int)(t / tiles_n) * tile_m, j0 = (int)(t % tiles_n) * tile_n;
        const int tm = m - i0 < tile_m ? m - i0 : tile_m;
        const int tn = n - j0 < tile_n ? n - j0 : tile_n;
        // Rows i0.. of op(A) and columns j0.. of op(B).
        const float *ai = trans_a ? a + i0 : a + (int64_t)i0 * lda;
        const float *bj = trans_b ? b + (int64_t)j0 * ldb : b + j0;
        cblas_sgemm(CblasRowMajor, ta, tb, tm, tn, k, alpha, ai, lda, bj, ldb, beta,
                    c + (int64_t)i0 * ldc + j0, ldc);
    }
}
