// Parameter structs of the ops (ops.h), shared by the entry points and every backend.
#ifndef TMIX_PARAMS_H
#define TMIX_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

// The output size along one axis of a window `span` elements wide (a pooling kernel, or a
// convolution's (K-1)*dilation+1) sliding by stride over in padded by pad on each side, in
// PyTorch's floor mode; 0 where the window does not fit, or for a stride below 1.
static inline int64_t tmix_window_out_size(int64_t in, int64_t span, int stride, int pad)
{
    const int64_t room = in + 2 * (int64_t)pad - span;
    return room < 0 || stride <= 0 ? 0 : room / stride + 1;
}

// Output size per axis: (H + 2*pad - dilation*(K-1) - 1) / stride + 1, as in PyTorch.
typedef struct {
    int stride_h, stride_w;
    int pad_h, pad_w;
    int dilation_h, dilation_w;
    // Forward only: a ReLU after the bias, max(0, ·) with a NaN kept (tmix_relu_forward), in
    // the same pass over out. The backward ops ignore it.
    bool relu;
} tmix_conv2d_params;

// PyTorch MaxPool2d semantics: floor mode, padding counts as -inf, a NaN wins, ties go to
// the first maximum in row-major window order. pad <= kernel / 2.
typedef struct {
    int kernel_h, kernel_w;
    int stride_h, stride_w;
    int pad_h, pad_w;
} tmix_pool2d_params;

// torch.optim.SGD: d = grad + weight_decay * param; with momentum, buf = momentum * buf +
// (1 - dampening) * d (buf = d at step 0) and d = nesterov ? d + momentum * buf : buf;
// then param -= lr * d.
typedef struct {
    float lr;
    float momentum;
    float dampening;
    float weight_decay;
    int nesterov;
} tmix_sgd_params;

// torch.nn.BatchNorm2d in train(): eps > 0 is added to the batch variance before the square
// root; momentum in [0, 1] is the weight of the batch's statistics in the running ones
// (PyTorch's defaults: 1e-5 and 0.1).
typedef struct {
    float eps;
    float momentum;
} tmix_batchnorm_train_params;

// Where sample b is cut from its source image, and whether the cut is mirrored left-right.
// The window [y, y + OH) x [x, x + OW) may leave the image (pad-crop): outside pixels are 0.
typedef struct {
    int y, x;
    int flip;
} tmix_crop;

// A CutMix box: rows [y0, y1) and columns [x0, x1).
typedef struct {
    int y0, x0, y1, x1;
} tmix_box;

// A trainer's image format (encode_images): the element type, and the order of a sample's
// values, channel planes (NCHW) or pixels of C values (NHWC).
typedef enum { TMIX_IMAGE_F32 = 0, TMIX_IMAGE_F16 = 1, TMIX_IMAGE_U8 = 2 } tmix_image_dtype;
typedef struct {
    tmix_image_dtype dtype;
    int nhwc;
} tmix_image_format;

// Arithmetic of the convolutions (tmix_backend_set_precision).
typedef enum {
    TMIX_PRECISION_FP32 = 0,
    TMIX_PRECISION_TF32 = 1,
    TMIX_PRECISION_BF16 = 2,
} tmix_precision;

#endif
