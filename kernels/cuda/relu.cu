// ReLU on the GPU: the twin of kernels/relu.c. Elementwise, so any shape is one flat array.
#include "ops.cuh"

// out = max(in, 0), a NaN kept as in PyTorch (and the CPU twin); out may be in.
static __global__ void relu_forward_kernel(float *out,      // (n)
                                           const float *in, // (n)
                                           int64_t n)
{
    TMIX_CUDA_LOOP(i, n) {
        float v = in[i];
        out[i] = v < 0.0f ? 0.0f : v;
    }
}

// din += dout where the forward output was positive.
static __global__ void relu_backward_kernel(float *din,        // (n)
                                            const float *dout, // (n)
                                            const float *out,  // (n)
                                            int64_t n)
{
    TMIX_CUDA_LOOP(i, n) {
        if (out[i] > 0.0f)
            din[i] += dout[i];
    }
}

extern "C" int tmix_cuda_relu_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t n = tmix_cuda_numel(in);
    relu_forward_kernel<<<tmix_cuda_blocks(n, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0,
                          st->stream>>>(tmix_f32(out), tmix_f32(in), n);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int tmix_cuda_relu_backward(tmix_backend *be, tmix_tensor *din,
                                       const tmix_tensor *dout, const tmix_tensor *out)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t n = tmix_cuda_numel(din);
    relu_backward_kernel<<<tmix_cuda_blocks(n, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0,
                           st->stream>>>(tmix_f32(din), tmix_f32(dout), tmix_f32(out), n);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
