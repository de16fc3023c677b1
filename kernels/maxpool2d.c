// 2-D max pooling with PyTorch's MaxPool2d semantics (params.h): floor mode, padding never
// wins (it counts as -inf), a NaN wins, ties go to the first maximum in row-major window
// order. The backward pass finds the same argmax again instead of keeping indices.
#include "check.h"
#include "cpu.h"
#include "ops.h"
#include "pixel_rules.h"

#include <math.h>

static int check_params(const char *op, tmix_pool2d_params p)
{
    if (p.kernel_h <= 0 || p.kernel_w <= 0)
        return tmix_fail(TMIX_EINVAL, "%s: kernel (%d,%d) must be positive", op, p.kernel_h,
                         p.kernel_w);
    if (p.stride_h <= 0 || p.stride_w <= 0)
        return tmix_fail(TMIX_EINVAL, "%s: stride (%d,%d) must be positive", op, p.stride_h,
                         p.stride_w);
    // As in PyTorch: with more padding a window could lie wholly in the padding.
    if (p.pad_h < 0 || p.pad_w < 0 || p.pad_h > p.kernel_h / 2 || p.pad_w > p.kernel_w / 2)
        return tmix_fail(TMIX_EINVAL, "%s: padding (%d,%d) must be between 0 and half the "
                         "kernel (%d,%d)", op, p.pad_h, p.pad_w, p.kernel_h, p.kernel_w);
    return 0;
}

// The output shape (N, C, OH, OW) for in (already checked as 4-D).
static int out_shape(const char *op, const char *name, const tmix_tensor *in,
                     tmix_pool2d_params p, int64_t shape[4])
{
    const int64_t room_h = in->shape[2] + 2 * (int64_t)p.pad_h;
    const int64_t room_w = in->shape[3] + 2 * (int64_t)p.pad_w;
    if (room_h < p.kernel_h || room_w < p.kernel_w) {
        char s[96];
        return tmix_fail(TMIX_ESHAPE, "%s: %s %s padded by (%d,%d) is smaller than the kernel "
                         "(%d,%d)", op, name, tmix_shape_str(in, s, sizeof s), p.pad_h, p.pad_w,
                         p.kernel_h, p.kernel_w);
    }
    shape[0] = in->shape[0];
    shape[1] = in->shape[1];
    shape[2] = (room_h - p.kernel_h) / p.stride_h + 1;
    shape[3] = (room_w - p.kernel_w) / p.stride_w + 1;
    return 0;
}

int tmix_maxpool2d_forward(tmix_backend *be,
                           tmix_tensor *out,      // (N, C, OH, OW)
                           const tmix_tensor *in, // (N, C, H, W)
                           tmix_pool2d_params p)
{
    static const char op[] = "maxpool2d_forward";
    TMIX_CHECK_BACKEND(op, be, maxpool2d_forward);
    TMIX_TRY(check_params(op, p));
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    int64_t shape[4];
    TMIX_TRY(out_shape(op, "in", in, p, shape));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4, shape));
    TMIX_CALL(op, be, maxpool2d_forward, out, in, p);
}

int tmix_cpu_maxpool2d_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
    tmix_pool2d_params p)
{
    (void)be;
    const int64_t NC = in->shape[0] * in->shape[1], H = in->shape[2], W = in->shape[3];
    const int64_t OH = out->shape[2], OW = out->shape[3];
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC; nc++) {
        const float *x = tmix_f32(in) + nc * H * W;
        float *y = tmix_f32(out) + nc * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++)
                y[oh * OW + ow] = x[tmix_window_argmax(x, H, W, oh, ow, p)];
    }
    return 0;
}

int tmix_maxpool2d_backward(tmix_backend *be,
                            tmix_tensor *din,        // (N, C, H, W)
                            const tmix_tensor *dout, // (N, C, OH, OW)
                            const tmix_tensor *in,   // (N, C, H, W)
                            tmix_pool2d_params p)
{
    static const char op[] = "maxpool2d_backward";
    TMIX_CHECK_BACKEND(op, be, maxpool2d_backward);
    TMIX_TRY(check_params(op, p));
    TMIX_TRY(tmix_check_tensor(op, "in", in, be, TMIX_F32, 4));
    TMIX_TRY(tmix_check_shape(op, "din", din, be, TMIX_F32, 4, in->shape));
    int64_t shape[4];
    TMIX_TRY(out_shape(op, "in", in, p, shape));
    TMIX_TRY(tmix_check_shape(op, "dout", dout, be, TMIX_F32, 4, shape));
    TMIX_CALL(op, be, maxpool2d_backward, din, dout, in, p);
}

int tmix_cpu_maxpool2d_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout, const
    tmix_tensor *in, tmix_pool2d_params p)
{
    (void)be;
    const int64_t NC = in->shape[0] * in->shape[1], H = in->shape[2], W = in->shape[3];
    const int64_t OH = dout->shape[2], OW = dout->shape[3];
    // One thread per (n, c) plane scatters that plane's gradient in output order.
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < NC; nc++) {
        const float *x = tmix_f32(in) + nc * H * W;
        const float *dy = tmix_f32(dout) + nc * OH * OW;
        float *dx = tmix_f32(din) + nc * H * W;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++)
                dx[tmix_window_argmax(x, H, W, oh, ow, p)] += dy[oh * OW + ow];
    }
    return 0;
}
