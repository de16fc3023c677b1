// CutMix box masks on the GPU (the twin of kernels/box_masks.c): masks[b, 1] = 1 inside
// boxes[b] and 0 outside, masks[b, 0] = 1 - masks[b, 1]. The checked host boxes are copied to
// scratch first; one thread per pixel writes both masks.
#include "host_args.cuh"
#include "ops.cuh"

static __global__ void box_masks_kernel(float *masks,           // (B, 2, H, W)
                                        const tmix_box *boxes,  // [B], device
                                        int64_t B, int64_t H, int64_t W)
{
    const int64_t HW = H * W;
    TMIX_CUDA_LOOP_Y(b, B) {
        const tmix_box r = boxes[b];
        float *m0 = masks + b * 2 * HW, *m1 = m0 + HW; // (H, W) each
        TMIX_CUDA_LOOP(p, HW) {
            int64_t i = p / W, j = p % W;
            bool inside = i >= r.y0 && i < r.y1 && j >= r.x0 && j < r.x1;
            m1[p] = inside ? 1.0f : 0.0f;
            m0[p] = inside ? 0.0f : 1.0f;
        }
    }
}

extern "C" int tmix_cuda_box_masks(tmix_backend *be, tmix_tensor *masks, const tmix_box *boxes)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t B = masks->shape[0], H = masks->shape[2], W = masks->shape[3];
    void *dboxes;
    TMIX_TRY(tmix_cuda_host_args(st, boxes, (size_t)B * sizeof *boxes, &dboxes));
    tmix_cuda_plan2d g = tmix_cuda_plan(H * W, B);
    box_masks_kernel<<<g.grid, g.block, 0, st->stream>>>(tmix_f32(masks),
                                                         (const tmix_box *)dboxes, B, H, W);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
