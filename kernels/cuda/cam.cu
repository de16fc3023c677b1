// Class activation maps on the GPU (the twin of kernels/cam.c): out[n, 0, p] =
// sum_c weight[labels[n], c] * features[n, c, p], no ReLU, no normalisation, no resizing.
// One thread per output pixel sums the channels in order in double, as the CPU twin does, so
// both round once from the same exact sum.
#include "host_args.cuh"
#include "ops.cuh"

static __global__ void cam_forward_kernel(float *out,            // (N, 1, h, w)
                                          const float *features, // (N, C, h, w)
                                          const float *weight,   // (J, C)
                                          const int64_t *labels, // [N], device
                                          int64_t N, int64_t C, int64_t HW)
{
    TMIX_CUDA_LOOP_Y(n, N) {
        const float *wn = weight + labels[n] * C; // (C)
        const float *xn = features + n * C * HW;  // (C, HW)
        TMIX_CUDA_LOOP(p, HW) {
            double acc = 0.0;
            for (int64_t c = 0; c < C; c++)
                acc += (double)wn[c] * xn[c * HW + p];
            out[n * HW + p] = (float)acc;
        }
    }
}

extern "C" int tmix_cuda_cam_forward(tmix_backend *be, tmix_tensor *out,
                                     const tmix_tensor *features, const tmix_tensor *weight,
                                     const int64_t *labels)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t N = features->shape[0], C = features->shape[1];
    int64_t HW = features->shape[2] * features->shape[3];
    void *dlabels;
    TMIX_TRY(tmix_cuda_host_args(st, labels, (size_t)N * sizeof *labels, &dlabels));
    tmix_cuda_plan2d g = tmix_cuda_plan(HW, N);
    cam_forward_kernel<<<g.grid, g.block, 0, st->stream>>>(
        tmix_f32(out), tmix_f32(features), tmix_f32(weight), (const int64_t *)dlabels, N, C, HW);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
