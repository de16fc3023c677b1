// Elementwise addition on the GPU (the twin of kernels/add.c): any shape is one flat array,
// one thread per element in a grid-stride loop.
#include "ops.cuh"

// out = a + b, then max(0, ·) with a NaN kept when relu (as relu.cu); out may be a or b
// exactly (element i is read before it is written), so no __restrict__.
static __global__ void add_kernel(float *out,     // (n)
                                  const float *a, // (n)
                                  const float *b, // (n)
                                  int64_t n, bool relu)
{
    TMIX_CUDA_LOOP(i, n) {
        const float v = a[i] + b[i];
        out[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

extern "C" int tmix_cuda_add(tmix_backend *be, tmix_tensor *out, const tmix_tensor *a,
                             const tmix_tensor *b, bool relu)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t n = tmix_cuda_numel(a);
    add_kernel<<<tmix_cuda_blocks(n, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0, st->stream>>>(
        tmix_f32(out), tmix_f32(a), tmix_f32(b), n, relu);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
