// encode_images: the mixed float planes in the format a trainer asked for (ops.h). The
// value rules (half rounding, pixels from values) are pixel_rules.h's, shared with the GPU.
#include "check.h"
#include "cpu.h"
#include "ops.h"
#include "pixel_rules.h"

#include <string.h>

size_t tmix_image_dtype_size(tmix_image_dtype dtype)
{
    return dtype == TMIX_IMAGE_F16 ? 2 : dtype == TMIX_IMAGE_U8 ? 1 : 4;
}

int tmix_encode_images(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                       tmix_image_format format, const float *mean, const float *std)
{
    static const char op[] = "encode_images";
    TMIX_CHECK_BACKEND(op, be, encode_images);
    if (format.dtype != TMIX_IMAGE_F32 && format.dtype != TMIX_IMAGE_F16 &&
        format.dtype != TMIX_IMAGE_U8)
        return tmix_fail(TMIX_EINVAL, "%s: image dtype %d (float32 0, float16 1 or uint8 2)", op,
                         (int)format.dtype);
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    const int64_t row = in->shape[1] * in->shape[2] * in->shape[3] *
                        (int64_t)tmix_image_dtype_size(format.dtype);
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_U8, 2, (int64_t[]){in->shape[0], row}));
    if (format.dtype == TMIX_IMAGE_U8) {
        if (!mean || !std)
            return tmix_fail(TMIX_EINVAL, "%s: uint8 output needs mean and std", op);
        for (int64_t c = 0; c < in->shape[1]; c++)
            if (!isfinite(mean[c]) || !isfinite(std[c]))
                return tmix_fail(TMIX_EINVAL, "%s: channel %lld has mean %g and std %g (finite "
                                 "needed)", op, (long long)c, mean[c], std[c]);
    }
    TMIX_CALL(op, be, encode_images, out, in, format, mean, std);
}

int tmix_cpu_encode_images(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                           tmix_image_format format, const float *mean, const float *std)
{
    (void)be;
    const int64_t B = in->shape[0], C = in->shape[1], P = in->shape[2] * in->shape[3];
    const float *x = tmix_f32(in);
    if (format.dtype == TMIX_IMAGE_F32 && !format.nhwc) { // the same bytes
        memcpy(out->data, x, (size_t)(B * C * P) * sizeof *x);
        return 0;
    }
    // Sample b's channel plane c goes to `at` onwards, a value every `step` elements.
    const int64_t step = format.nhwc ? C : 1;
#pragma omp parallel for schedule(static) if (B * C * P >= TMIX_CPU_PARALLEL_MIN)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            const float *src = x + (b * C + c) * P;
            const int64_t at = format.nhwc ? b * P * C + c : (b * C + c) * P;
            if (format.dtype == TMIX_IMAGE_F16) {
                uint16_t *dst = (uint16_t *)out->data + at;
                for (int64_t p = 0; p < P; p++)
                    dst[p * step] = tmix_half_from_float(src[p]);
            } else if (format.dtype == TMIX_IMAGE_U8) {
                uint8_t *dst = (uint8_t *)out->data + at;
                for (int64_t p = 0; p < P; p++)
                    dst[p * step] = tmix_pixel_from_value(src[p], mean[c], std[c]);
            } else {
                float *dst = (float *)out->data + at;
                for (int64_t p = 0; p < P; p++)
                    dst[p * step] = src[p];
            }
        }
    return 0;
}
