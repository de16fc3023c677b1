// float32 NCHW <-> bfloat16 NHWC, the layout conversions of the bf16 convolutions (conv2d.cu).
#ifndef TMIX_CUDA_BF16_LAYOUT_CUH
#define TMIX_CUDA_BF16_LAYOUT_CUH

#include "common.cuh"

// The channels a bf16 NHWC tensor of c channels is stored with: whole 16-byte vectors of 8,
// which the tensor-core kernels read.
static inline int64_t tmix_cuda_bf16_channels(int64_t c)
{
    return (c + 7) / 8 * 8;
}

// dst (n, hw, c_pad) bf16 = src (n, c, hw) float32 transposed and rounded to nearest even;
// channels c..c_pad-1 are 0. Queued on st's stream.
int tmix_cuda_to_nhwc_bf16(tmix_cuda_state *st, void *dst, const float *src, int64_t n,
                           int64_t c, int64_t hw, int64_t c_pad);

// dst (n, c, hw) float32 = src (n, hw, c) bf16 transposed, plus bias[c] when bias is not
// NULL, then max(0, ·) with a NaN kept when relu. Queued on st's stream.
int tmix_cuda_from_nhwc_bf16(tmix_cuda_state *st, float *dst, const void *src, int64_t n,
                             int64_t c, int64_t hw, const float *bias, bool relu);

#endif
