// 2-D max pooling on the GPU (the twin of kernels/maxpool2d.c), with PyTorch's MaxPool2d
// rules: floor mode, padding never wins, a NaN wins, ties go to the first maximum in
// row-major window order. Own kernels rather than cuDNN's pooling, which promises neither
// the NaN rule nor the tie rule. Forward: one thread per output scans its window.
#include "ops.cuh"
#include "pixel_rules.h"

// The outputs o (rows or columns, 0 <= o < count) whose window, start o * stride - pad and
// `kernel` long, holds input position i: o * stride <= i + pad < o * stride + kernel.
static __device__ void covering(int64_t i, int stride, int pad, int kernel, int64_t count,
                                int64_t *first, int64_t *last)
{
    const int64_t t = i + pad - kernel; // o * stride must exceed it
    *first = t < 0 ? 0 : t / stride + 1;
    const int64_t l = (i + pad) / stride;
    *last = l < count - 1 ? l : count - 1;
}

static __global__ void maxpool2d_forward_kernel(float *out,      // (N, C, OH, OW)
                                                const float *in, // (N, C, H, W)
                                                int64_t planes, int64_t H, int64_t W,
                                                int64_t OH, int64_t OW, tmix_pool2d_params p)
{
    TMIX_CUDA_LOOP_Y(plane, planes) {
        const float *x = in + plane * H * W;
        float *y = out + plane * OH * OW;
        TMIX_CUDA_LOOP(o, OH * OW)
            y[o] = x[tmix_window_argmax(x, H, W, o / OW, o % OW, p)];
    }
}

// din += the gradient, one thread per input element: it visits the outputs whose window
// holds it in row-major order, finds each window's argmax again and adds that output's
// gradient where the argmax is this element. Gathering instead of scattering needs no
// atomics and no scratch for argmax indices (which would be as large as the output), and
// adds the terms one by one in float, in the order the CPU twin does: bitwise its result.
// Recomputing costs ceil(k / s)^2 window scans per input, 4 for the usual 3x3 stride 2.
static __global__ void maxpool2d_backward_kernel(float *din,        // (N, C, H, W)
                                                 const float *dout, // (N, C, OH, OW)
                                                 const float *in,   // (N, C, H, W)
                                                 int64_t planes, int64_t H, int64_t W,
                                                 int64_t OH, int64_t OW, tmix_pool2d_params p)
{
    TMIX_CUDA_LOOP_Y(plane, planes) {
        const float *x = in + plane * H * W;
        const float *dy = dout + plane * OH * OW;
        float *dx = din + plane * H * W;
        TMIX_CUDA_LOOP(i, H * W) {
            int64_t oh0, oh1, ow0, ow1;
            covering(i / W, p.stride_h, p.pad_h, p.kernel_h, OH, &oh0, &oh1);
            covering(i % W, p.stride_w, p.pad_w, p.kernel_w, OW, &ow0, &ow1);
            float d = dx[i];
            for (int64_t oh = oh0; oh <= oh1; oh++)
                for (int64_t ow = ow0; ow <= ow1; ow++)
                    if (tmix_window_argmax(x, H, W, oh, ow, p) == i)
                        d += dy[oh * OW + ow];
            dx[i] = d;
        }
    }
}

extern "C" int tmix_cuda_maxpool2d_forward(tmix_backend *be, tmix_tensor *out,
                                           const tmix_tensor *in, tmix_pool2d_params p)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    const int64_t planes = in->shape[0] * in->shape[1], H = in->shape[2], W = in->shape[3];
    const int64_t OH = out->shape[2], OW = out->shape[3];
    tmix_cuda_plan2d g = tmix_cuda_plan(OH * OW, planes);
    maxpool2d_forward_kernel<<<g.grid, g.block, 0, st->stream>>>(tmix_f32(out), tmix_f32(in),
                                                                 planes, H, W, OH, OW, p);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int tmix_cuda_maxpool2d_backward(tmix_backend *be, tmix_tensor *din,
                                            const tmix_tensor *dout, const tmix_tensor *in,
                                            tmix_pool2d_params p)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    const int64_t planes = in->shape[0] * in->shape[1], H = in->shape[2], W = in->shape[3];
    const int64_t OH = dout->shape[2], OW = dout->shape[3];
    tmix_cuda_plan2d g = tmix_cuda_plan(H * W, planes);
    maxpool2d_backward_kernel<<<g.grid, g.block, 0, st->stream>>>(
        tmix_f32(din), tmix_f32(dout), tmix_f32(in), planes, H, W, OH, OW, p);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
