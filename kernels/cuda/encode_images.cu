// encode_images on the GPU (the twin of kernels/encode_images.c): the mixed float planes in
// a trainer's format, so that the device copies out only the bytes the trainer receives (or
// none, for CUDA delivery). One thread per value; the value rules are pixel_rules.h's.
#include "ops.cuh"
#include "pixel_rules.h"

// Value (b, c, p) of in (B, C, P) goes to element (b, c, p) of NCHW or (b, p, c) of NHWC.
template <typename T>
static __global__ void encode_kernel(T *out, const float *in, const float *mean,
                                     const float *std, int64_t C, int64_t P, int64_t planes,
                                     bool nhwc)
{
    TMIX_CUDA_LOOP_Y(plane, planes) {
        const int64_t b = plane / C, c = plane % C;
        const float *src = in + plane * P;
        TMIX_CUDA_LOOP(p, P) {
            const float v = src[p];
            T *dst = out + (nhwc ? (b * P + p) * C + c : plane * P + p);
            if constexpr (sizeof(T) == 2)
                *dst = tmix_half_from_float(v);
            else if constexpr (sizeof(T) == 1)
                *dst = tmix_pixel_from_value(v, mean[c], std[c]);
            else
                *dst = v;
        }
    }
}

extern "C" int tmix_cuda_encode_images(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                                       tmix_image_format format, const float *mean,
                                       const float *std)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    const int64_t B = in->shape[0], C = in->shape[1], P = in->shape[2] * in->shape[3];
    const float *x = tmix_f32(in);
    if (format.dtype == TMIX_IMAGE_F32 && !format.nhwc) { // the same bytes
        CUDA_CHECK(cudaMemcpyAsync(out->data, x, (size_t)(B * C * P) * sizeof(float),
                                   cudaMemcpyDeviceToDevice, st->stream));
        return 0;
    }
    const tmix_cuda_plan2d g = tmix_cuda_plan(P, B * C);
    if (format.dtype == TMIX_IMAGE_F16) {
        encode_kernel<uint16_t><<<g.grid, g.block, 0, st->stream>>>(
            (uint16_t *)out->data, x, NULL, NULL, C, P, B * C, format.nhwc);
    } else if (format.dtype == TMIX_IMAGE_U8) {
        // mean[C] then std[C] on the device; from pageable memory each copy has read its
        // source when it returns.
        const size_t stat_bytes = (size_t)C * sizeof(float);
        void *scratch;
        TMIX_TRY(tmix_cuda_scratch(st, 2 * stat_bytes, &scratch));
        float *dmean = (float *)scratch, *dstd = dmean + C;
        CUDA_CHECK(cudaMemcpyAsync(dmean, mean, stat_bytes, cudaMemcpyHostToDevice, st->stream));
        CUDA_CHECK(cudaMemcpyAsync(dstd, std, stat_bytes, cudaMemcpyHostToDevice, st->stream));
        encode_kernel<uint8_t><<<g.grid, g.block, 0, st->stream>>>(
            (uint8_t *)out->data, x, dmean, dstd, C, P, B * C, format.nhwc);
    } else {
        encode_kernel<float><<<g.grid, g.block, 0, st->stream>>>(
            tmix_f32(out), x, NULL, NULL, C, P, B * C, format.nhwc);
    }
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
