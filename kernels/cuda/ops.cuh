// The op launchers of the CUDA backend, one .cu file per op, as backend.cu's table sees them.
// Signatures and semantics are those of the ops.h entry points (which have checked every
// argument); each queues its kernels on the backend's stream and returns without waiting.
#ifndef TMIX_CUDA_OPS_CUH
#define TMIX_CUDA_OPS_CUH

#include "common.cuh"

extern "C" {

// relu.cu
int tmix_cuda_relu_forward(tmix_backend *be,
                           tmix_tensor *out,       // any shape
                           const tmix_tensor *in); // same shape
int tmix_cuda_relu_backward(tmix_backend *be,
                            tmix_tensor *din,        // any shape
                            const tmix_tensor *dout, // same shape
                            const tmix_tensor *out); // same shape

// batchnorm.cu
int tmix_cuda_batchnorm_forward(tmix_backend *be,
                                tmix_tensor *out,          // (N, C, H, W)
                                const tmix_tensor *in,     // (N, C, H, W)
                                const tmix_tensor *scale,  // (C)
                                const tmix_tensor *shift); // (C)
int tmix_cuda_batchnorm_backward_input(tmix_backend *be,
                                       tmix_tensor *din,          // (N, C, H, W)
                                       const tmix_tensor *dout,   // (N, C, H, W)
                                       const tmix_tensor *scale); // (C)

// avgpool.cu
int tmix_cuda_avgpool_forward(tmix_backend *be,
                              tmix_tensor *out,       // (N, C)
                              const tmix_tensor *in); // (N, C, H, W)
int tmix_cuda_avgpool_backward(tmix_backend *be,
                               tmix_tensor *din,         // (N, C, H, W)
                               const tmix_tensor *dout); // (N, C)

// blend.cu
int tmix_cuda_blend_forward(tmix_backend *be,
                            tmix_tensor *out,         // (B, C, H, W)
                            const tmix_tensor *masks, // (B, K, H, W)
                            const tmix_tensor *x);    // (B * K, C, H, W)
int tmix_cuda_blend_backward(tmix_backend *be,
                             tmix_tensor *dmasks,      // (B, K, H, W) or NULL
                             tmix_tensor *dx,          // (B * K, C, H, W) or NULL
                             const tmix_tensor *dout,  // (B, C, H, W)
                             const tmix_tensor *masks, // (B, K, H, W)
                             const tmix_tensor *x);    // (B * K, C, H, W)

// softmax_channel.cu
int tmix_cuda_softmax_channel_forward(tmix_backend *be,
                                      tmix_tensor *out,        // (N, K, H, W)
                                      const tmix_tensor *in,   // (N, K, H, W)
                                      const tmix_tensor *tau); // (1)
int tmix_cuda_softmax_channel_backward(tmix_backend *be,
                                       tmix_tensor *din,        // (N, K, H, W)
                                       tmix_tensor *dtau,       // (1) or NULL
                                       const tmix_tensor *dout, // (N, K, H, W)
                                       const tmix_tensor *out,  // (N, K, H, W)
                                       const tmix_tensor *in,   // (N, K, H, W)
                                       const tmix_tensor *tau); // (1)

// minmax_normalize.cu
int tmix_cuda_minmax_normalize_forward(tmix_backend *be,
                                       tmix_tensor *out,       // (N, ...)
                                       const tmix_tensor *in); // (N, ...)

// bias.cu
int tmix_cuda_bias_backward(tmix_backend *be,
                            tmix_tensor *dbias,       // (C)
                            const tmix_tensor *dout); // (N, C) or (N, C, H, W)

} // extern "C"

#endif
