// Channel concatenation on the GPU (the twin of kernels/concat_channels.c): a part is copied
// into, or its gradient read back from, channels c0.. of a wider (N, Co, H, W) tensor, and
// fill_channels broadcasts per-sample constants over whole channels. Each sample's slice is
// one contiguous run, so x walks the run and y walks the samples (or the filled channels);
// every element is written by one thread.
#include "ops.cuh"

// dst run n = (or +=) src run n, for N runs of len floats spaced by the strides: the run of
// sample n is its C*HW floats in the part and channels c0.. of it in the whole.
static __global__ void runs_kernel(float *dst, int64_t dst_stride,
                                   const float *src, int64_t src_stride,
                                   int64_t N, int64_t len, bool accumulate)
{
    TMIX_CUDA_LOOP_Y(n, N) {
        float *d = dst + n * dst_stride;      // (len)
        const float *x = src + n * src_stride; // (len)
        TMIX_CUDA_LOOP(i, len)
            d[i] = accumulate ? d[i] + x[i] : x[i];
    }
}

// Copies (forward) or adds (backward) the N runs between part (N, C, H, W) and channels
// c0.. of whole (N, Co, H, W).
static int part_runs(tmix_backend *be, const tmix_tensor *part, const tmix_tensor *whole,
                     int c0, bool backward)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t N = part->shape[0], HW = part->shape[2] * part->shape[3];
    int64_t CHW = part->shape[1] * HW, CoHW = whole->shape[1] * HW;
    float *p = tmix_f32(part), *w = tmix_f32(whole) + c0 * HW;
    tmix_cuda_plan2d g = tmix_cuda_plan(CHW, N);
    if (backward)
        runs_kernel<<<g.grid, g.block, 0, st->stream>>>(p, CHW, w, CoHW, N, CHW, true);
    else
        runs_kernel<<<g.grid, g.block, 0, st->stream>>>(w, CoHW, p, CHW, N, CHW, false);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

// out[n, c0 + k, p] = values[n, k] for every pixel p.
static __global__ void fill_channels_kernel(float *out,          // (N, Co, H, W)
                                            const float *values, // (N, K)
                                            int64_t N, int64_t K, int64_t Co, int64_t c0,
                                            int64_t HW)
{
    TMIX_CUDA_LOOP_Y(nk, N * K) {
        int64_t n = nk / K, k = nk % K;
        float v = values[nk];
        float *y = out + (n * Co + c0 + k) * HW;
        TMIX_CUDA_LOOP(p, HW)
            y[p] = v;
    }
}

extern "C" int tmix_cuda_concat_channels_forward(tmix_backend *be, tmix_tensor *out,
                                                 const tmix_tensor *in, int c0)
{
    return part_runs(be, in, out, c0, false);
}

// din += the slice of dout, as the CPU twin accumulates.
extern "C" int tmix_cuda_concat_channels_backward(tmix_backend *be, tmix_tensor *din,
                                                  const tmix_tensor *dout, int c0)
{
    return part_runs(be, din, dout, c0, true);
}

extern "C" int tmix_cuda_fill_channels(tmix_backend *be, tmix_tensor *out,
                                       const tmix_tensor *values, int c0)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t N = values->shape[0], K = values->shape[1], Co = out->shape[1];
    int64_t HW = out->shape[2] * out->shape[3];
    tmix_cuda_plan2d g = tmix_cuda_plan(HW, N * K);
    fill_channels_kernel<<<g.grid, g.block, 0, st->stream>>>(tmix_f32(out), tmix_f32(values),
                                                             N, K, Co, c0, HW);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
