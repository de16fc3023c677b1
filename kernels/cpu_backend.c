// The CPU backend: the reference every other backend is compared with. Runs everywhere.
// Ops parallelise over the batch with OpenMP, each sample computed by one thread in a fixed
// order, so results do not depend on the thread count; GEMMs go to OpenBLAS.
#include "cpu.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

static int cpu_alloc(tmix_backend *be, tmix_tensor *t)
{
    (void)be;
    size_t bytes = tmix_tensor_bytes(t);
    // 64-byte alignment for SIMD loads; aligned_alloc wants a multiple of the alignment.
    t->data = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!t->data) {
        char s[96];
        return tmix_fail(TMIX_ENOMEM, "tensor_alloc: %zu bytes for %s on the CPU", bytes,
                         tmix_shape_str(t, s, sizeof s));
    }
    return 0;
}

static void cpu_free(tmix_backend *be, tmix_tensor *t)
{
    (void)be;
    free(t->data);
}

static int cpu_zero(tmix_backend *be, tmix_tensor *t)
{
    (void)be;
    memset(t->data, 0, tmix_tensor_bytes(t));
    return 0;
}

static int cpu_upload(tmix_backend *be, tmix_tensor *dst, const void *src)
{
    (void)be;
    memmove(dst->data, src, tmix_tensor_bytes(dst));
    return 0;
}

static int cpu_download(tmix_backend *be, void *dst, const tmix_tensor *src)
{
    (void)be;
    memmove(dst, src->data, tmix_tensor_bytes(src));
    return 0;
}

static int cpu_synchronize(tmix_backend *be)
{
    (void)be;
    return 0;
}

static const tmix_backend_ops cpu_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .upload = cpu_upload,
    .download = cpu_download,
    .synchronize = cpu_synchronize,
    .conv2d_forward = tmix_cpu_conv2d_forward,
    .conv2d_backward_input = tmix_cpu_conv2d_backward_input,
    .conv2d_backward_weight = tmix_cpu_conv2d_backward_weight,
    .bias_backward = tmix_cpu_bias_backward,
    .batchnorm_forward = tmix_cpu_batchnorm_forward,
    .batchnorm_backward_input = tmix_cpu_batchnorm_backward_input,
    .relu_forward = tmix_cpu_relu_forward,
    .relu_backward = tmix_cpu_relu_backward,
    .maxpool2d_forward = tmix_cpu_maxpool2d_forward,
    .maxpool2d_backward = tmix_cpu_maxpool2d_backward,
    .avgpool_forward = tmix_cpu_avgpool_forward,
    .avgpool_backward = tmix_cpu_avgpool_backward,
    .linear_forward = tmix_cpu_linear_forward,
    .linear_backward_input = tmix_cpu_linear_backward_input,
    .linear_backward_weight = tmix_cpu_linear_backward_weight,
    .affine_grid_forward = tmix_cpu_affine_grid_forward,
    .affine_grid_backward = tmix_cpu_affine_grid_backward,
    .grid_sample_forward = tmix_cpu_grid_sample_forward,
    .grid_sample_backward = tmix_cpu_grid_sample_backward,
    .resize_bilinear_forward = tmix_cpu_resize_bilinear_forward,
    .minmax_normalize_forward = tmix_cpu_minmax_normalize_forward,
    .softmax_channel_forward = tmix_cpu_softmax_channel_forward,
    .softmax_channel_backward = tmix_cpu_softmax_channel_backward,
    .blend_forward = tmix_cpu_blend_forward,
    .blend_backward = tmix_cpu_blend_backward,
    .add = tmix_cpu_add,
    .concat_channels_forward = tmix_cpu_concat_channels_forward,
    .concat_channels_backward = tmix_cpu_concat_channels_backward,
    .fill_channels = tmix_cpu_fill_channels,
    .gather = tmix_cpu_gather,
    .cam_forward = tmix_cpu_cam_forward,
    .box_masks = tmix_cpu_box_masks,
    .cross_entropy_forward = tmix_cpu_cross_entropy_forward,
    .cross_entropy_backward = tmix_cpu_cross_entropy_backward,
    .sgd_update = tmix_cpu_sgd_update,
    .preprocess = tmix_cpu_preprocess,
    .encode_images = tmix_cpu_encode_images,
    .batchnorm_train_forward = tmix_cpu_batchnorm_train_forward,
    .batchnorm_train_backward = tmix_cpu_batchnorm_train_backward,
};

static tmix_backend cpu_backend = {.name = "cpu", .device = TMIX_CPU, .ops = &cpu_ops};

tmix_backend *tmix_backend_cpu(void)
{
    return &cpu_backend;
}
