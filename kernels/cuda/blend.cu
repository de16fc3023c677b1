// Mask blending on the GPU (the twin of kernels/blend.c): sample b of the output mixes the K
// images x[b*K .. b*K+K-1] with the K masks of b, each mask broadcast over the C channels.
// Every output element is written by one thread summing in index order (no atomics).
#include "ops.cuh"

// out[b, c, p] = sum_k masks[b, k, p] * x[b*K + k, c, p], summed in double.
static __global__ void blend_forward_kernel(float *out,         // (B, C, H, W)
                                            const float *masks, // (B, K, H, W)
                                            const float *x,     // (B * K, C, H, W)
                                            int64_t B, int64_t K, int64_t C, int64_t HW)
{
    TMIX_CUDA_LOOP_Y(bc, B * C) {
        int64_t b = bc / C, c = bc % C;
        const float *m = masks + b * K * HW;
        const float *xs = x + (b * K * C + c) * HW;
        TMIX_CUDA_LOOP(p, HW) {
            double s = 0.0;
            for (int64_t k = 0; k < K; k++)
                s += (double)m[k * HW + p] * xs[k * C * HW + p];
            out[bc * HW + p] = (float)s;
        }
    }
}

// dmasks[b, k, p] += sum_c dout[b, c, p] * x[b*K + k, c, p], summed in double.
static __global__ void blend_backward_masks_kernel(float *dmasks,      // (B, K, H, W)
                                                   const float *dout,  // (B, C, H, W)
                                                   const float *x,     // (B * K, C, H, W)
                                                   int64_t B, int64_t K, int64_t C,
                                                   int64_t HW)
{
    TMIX_CUDA_LOOP_Y(bk, B * K) {
        const float *g = dout + bk / K * C * HW;
        const float *xs = x + bk * C * HW;
        TMIX_CUDA_LOOP(p, HW) {
            double s = 0.0;
            for (int64_t c = 0; c < C; c++)
                s += (double)g[c * HW + p] * xs[c * HW + p];
            float *d = dmasks + bk * HW + p;
            *d = (float)(*d + s);
        }
    }
}

// dx[b*K + k, c, p] += masks[b, k, p] * dout[b, c, p]
static __global__ void blend_backward_x_kernel(float *dx,          // (B * K, C, H, W)
                                               const float *dout,  // (B, C, H, W)
                                               const float *masks, // (B, K, H, W)
                                               int64_t B, int64_t K, int64_t C, int64_t HW)
{
    TMIX_CUDA_LOOP_Y(bkc, B * K * C) {
        int64_t bk = bkc / C, c = bkc % C;
        const float *m = masks + bk * HW;
        const float *g = dout + (bk / K * C + c) * HW;
        float *d = dx + bkc * HW;
        TMIX_CUDA_LOOP(p, HW)
            d[p] = fmaf(m[p], g[p], d[p]);
    }
}

extern "C" int tmix_cuda_blend_forward(tmix_backend *be, tmix_tensor *out,
                                       const tmix_tensor *masks, const tmix_tensor *x)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t B = masks->shape[0], K = masks->shape[1], C = x->shape[1];
    int64_t HW = masks->shape[2] * masks->shape[3];
    tmix_cuda_plan2d g = tmix_cuda_plan(HW, B * C);
    blend_forward_kernel<<<g.grid, g.block, 0, st->stream>>>(tmix_f32(out), tmix_f32(masks),
                                                             tmix_f32(x), B, K, C, HW);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int tmix_cuda_blend_backward(tmix_backend *be, tmix_tensor *dmasks, tmix_tensor *dx,
                                        const tmix_tensor *dout, const tmix_tensor *masks,
                                        const tmix_tensor *x)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t B = masks->shape[0], K = masks->shape[1], C = x->shape[1];
    int64_t HW = masks->shape[2] * masks->shape[3];
    if (dmasks) {
        tmix_cuda_plan2d g = tmix_cuda_plan(HW, B * K);
        blend_backward_masks_kernel<<<g.grid, g.block, 0, st->stream>>>(
            tmix_f32(dmasks), tmix_f32(dout), tmix_f32(x), B, K, C, HW);
        CUDA_CHECK(cudaGetLastError());
    }
    if (dx) {
        tmix_cuda_plan2d g = tmix_cuda_plan(HW, B * K * C);
        blend_backward_x_kernel<<<g.grid, g.block, 0, st->stream>>>(
            tmix_f32(dx), tmix_f32(dout), tmix_f32(masks), B, K, C, HW);
        CUDA_CHECK(cudaGetLastError());
    }
    return 0;
}
