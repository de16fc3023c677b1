// What conv2d.cu shares with layers.cu: a convolution's cuDNN descriptors and algorithm, and
// the bf16 NHWC forward pass and gradient to the input on tensors already in that layout.
#ifndef TMIX_CUDA_CONV2D_CUH
#define TMIX_CUDA_CONV2D_CUH

#include "common.cuh"

// The algorithm for one convolution and the workspace it needs.
struct conv_plan {
    int algo; // a cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t, by direction; for
              // the bf16 forward, -1 when cuDNN has none for the shape
    size_t workspace_bytes;
    cudnnMathType_t math; // the algorithm's: FMA for fp32; tensor ops for tf32 and bf16
};

// The cuDNN descriptors of one convolution, destroyed with it: when a call returns (early
// returns included), or with the layers that keep it (layers.cu).
struct conv_setup {
    cudnnTensorDescriptor_t image = nullptr;  // (N, C, H, W)
    cudnnFilterDescriptor_t filter = nullptr; // (OC, C, KH, KW)
    cudnnTensorDescriptor_t output = nullptr; // (N, OC, OH, OW)
    cudnnConvolutionDescriptor_t conv = nullptr;
    conv_plan plan = {0, 0, CUDNN_FMA_MATH};
    void *workspace = nullptr; // plan.workspace_bytes of scratch, or NULL

    conv_setup() = default;
    conv_setup(const conv_setup &) = delete;
    conv_setup &operator=(const conv_setup &) = delete;
    ~conv_setup()
    {
        if (conv)
            (void)cudnnDestroyConvolutionDescriptor(conv);
        if (output)
            (void)cudnnDestroyTensorDescriptor(output);
        if (filter)
            (void)cudnnDestroyFilterDescriptor(filter);
        if (image)
            (void)cudnnDestroyTensorDescriptor(image);
    }
};

// Describes the bf16 convolution of an image shaped like `image` (N, C, H, W) but stored NHWC
// with c_pad channels, by a weight (OC, KH, KW, c_pad), into an output (N, OH, OW, OC), and
// finds the algorithm of its forward pass, or of its gradient to the image when
// backward_data (chosen once per shape and cached). s->plan.algo is -1 when cuDNN has no
// bf16 algorithm for it.
int tmix_cuda_conv_bf16_prepare(tmix_cuda_state *st, conv_setup *s,
                                const tmix_tensor *image,  // (N, C, H, W): the shape only
                                const tmix_tensor *weight, // (OC, C, KH, KW): the shape only
                                const tmix_tensor *output, // (N, OC, OH, OW): the shape only
                                tmix_conv2d_params p, int64_t c_pad, bool backward_data);

// y = conv(x, w) in bf16 as prepared, queued on st's stream; workspace holds
// s->plan.workspace_bytes. *refused is true, with nothing queued, when cuDNN turns the
// algorithm down at run time (the plan is then cached as -1).
int tmix_cuda_conv_bf16_run(tmix_cuda_state *st, const conv_setup *s, const tmix_tensor *image,
                            const tmix_tensor *weight, tmix_conv2d_params p, const void *x,
                            const void *w, void *y, void *workspace, bool *refused);

// dx (=, or += when accumulate) the gradient to the image of conv(x, w) from dy, in bf16 as
// prepared with backward_data; otherwise as tmix_cuda_conv_bf16_run.
int tmix_cuda_conv_bf16_backward_data(tmix_cuda_state *st, const conv_setup *s,
                                      const tmix_tensor *image, const tmix_tensor *weight,
                                      tmix_conv2d_params p, const void *dy, const void *w,
                                      void *dx, bool accumulate, void *workspace, bool *refused);

#endif
