// affine_grid on the GPU (the twin of kernels/affine_grid.c): F.affine_grid with
// align_corners=False. The forward writes one grid point per thread, rounded exactly as the
// CPU twin rounds it; the backward reduces every grid point of a sample into each of its six
// theta entries, one block per (sample, entry), in double with a fixed tree (no atomics).
#include "ops.cuh"

// Normalised coordinate of pixel centre i on an axis of n pixels: (2i + 1) / n - 1, each
// step rounded as in the CPU twin (the _rn intrinsics keep nvcc from fusing anything).
static __device__ __forceinline__ double base_coord(int64_t i, int64_t n)
{
    return __dsub_rn(__ddiv_rn((double)(2 * i + 1), (double)n), 1.0);
}

// grid[n, i, j] = theta[n] (x_j, y_i, 1): (t0 * x + t1 * y) + t2 in double, without fused
// multiply-adds, rounded once to float. grid_sample sees the last bit of a grid point (the
// warp suite's fixtures are made with this exact rounding), so it must match the CPU's.
static __global__ void affine_grid_forward_kernel(float *grid,        // (N, H, W, 2)
                                                  const float *theta, // (N, 2, 3)
                                                  int64_t N, int64_t H, int64_t W)
{
    TMIX_CUDA_LOOP_Y(row, N * H) {
        const float *t = theta + row / H * 6;
        double y = base_coord(row % H, H);
        float *g = grid + row * W * 2;
        TMIX_CUDA_LOOP(j, W) {
            double x = base_coord(j, W);
            for (int k = 0; k < 2; k++) {
                const float *tk = t + 3 * k;
                double v = __dadd_rn(__dadd_rn(__dmul_rn(tk[0], x), __dmul_rn(tk[1], y)), tk[2]);
                g[2 * j + k] = (float)v;
            }
        }
    }
}

// dtheta[n, r, c] += sum over (i, j) of dgrid[n, i, j, r] * (x_j, y_i, 1)[c]. Block b owns
// entry b of the flattened (N, 2, 3) dtheta; its threads stride over the H*W points in double,
// then the block reduction adds their partial sums in a fixed order.
static __global__ void affine_grid_backward_kernel(float *dtheta,      // (N, 2, 3)
                                                   const float *dgrid, // (N, H, W, 2)
                                                   int64_t N, int64_t H, int64_t W)
{
    for (int64_t e = blockIdx.x; e < N * 6; e += gridDim.x) {
        const int64_t n = e / 6, r = e % 6 / 3, c = e % 3;
        const float *d = dgrid + n * H * W * 2 + r;
        double acc = 0.0;
        for (int64_t p = threadIdx.x; p < H * W; p += blockDim.x) {
            double f = c == 0 ? base_coord(p % W, W) : c == 1 ? base_coord(p / W, H) : 1.0;
            acc += (double)d[p * 2] * f;
        }
        acc = tmix_block_reduce(acc, tmix_cuda_sum(), 0.0);
        if (threadIdx.x == 0)
            dtheta[e] = (float)(dtheta[e] + acc);
    }
}

extern "C" int tmix_cuda_affine_grid_forward(tmix_backend *be, tmix_tensor *grid,
                                             const tmix_tensor *theta)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t N = grid->shape[0], H = grid->shape[1], W = grid->shape[2];
    tmix_cuda_plan2d g = tmix_cuda_plan(W, N * H);
    affine_grid_forward_kernel<<<g.grid, g.block, 0, st->stream>>>(tmix_f32(grid),
                                                                   tmix_f32(theta), N, H, W);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int tmix_cuda_affine_grid_backward(tmix_backend *be, tmix_tensor *dtheta,
                                              const tmix_tensor *dgrid)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t N = dgrid->shape[0], H = dgrid->shape[1], W = dgrid->shape[2];
    affine_grid_backward_kernel<<<tmix_cuda_blocks(N * 6, 1), TMIX_CUDA_BLOCK, 0, st->stream>>>(
        tmix_f32(dtheta), tmix_f32(dgrid), N, H, W);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
