// The op launchers of the CUDA backend, one .cu file per op, as backend.cu's table sees them.
// Signatures and semantics are those of the ops.h entry points (which have checked every
// argument); each queues its kernels on the backend's stream and returns without waiting.
#ifndef TMIX_CUDA_OPS_CUH
#define TMIX_CUDA_OPS_CUH

#include "common.cuh"

extern "C" {

// graph.cu: CUDA graphs of the stream's work (ops.h "graphs")
int tmix_cuda_capture_begin(tmix_backend *be);
int tmix_cuda_capture_end(tmix_backend *be, tmix_graph **out);
int tmix_cuda_graph_launch(tmix_backend *be, tmix_graph *g);
void tmix_cuda_graph_free(tmix_backend *be, tmix_graph *g);

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

// conv2d.cu
int tmix_cuda_conv2d_forward(tmix_backend *be,
                             tmix_tensor *out,          // (N, OC, OH, OW)
                             const tmix_tensor *in,     // (N, C, H, W)
                             const tmix_tensor *weight, // (OC, C, KH, KW)
                             const tmix_tensor *bias,   // (OC) or NULL
                             tmix_conv2d_params p);
int tmix_cuda_conv2d_backward_input(tmix_backend *be,
                                    tmix_tensor *din,          // (N, C, H, W)
                                    const tmix_tensor *dout,   // (N, OC, OH, OW)
                                    const tmix_tensor *weight, // (OC, C, KH, KW)
                                    tmix_conv2d_params p);
int tmix_cuda_conv2d_backward_weight(tmix_backend *be,
                                     tmix_tensor *dweight,    // (OC, C, KH, KW)
                                     const tmix_tensor *dout, // (N, OC, OH, OW)
                                     const tmix_tensor *in,   // (N, C, H, W)
                                     tmix_conv2d_params p);

// layers.cu: frozen networks run whole at bf16 (ops.h, "frozen networks")
int tmix_cuda_layers_new(tmix_backend *be, const tmix_layer *layers, int count,
                         const int64_t x_shape[4], bool backward, void **out);
int tmix_cuda_layers_forward(tmix_backend *be, void *layers, const tmix_tensor *x,
                             tmix_tensor *const *outs);
int tmix_cuda_layers_backward(tmix_backend *be, void *layers, tmix_tensor *dx,
                              const tmix_tensor *dlast);
void tmix_cuda_layers_free(tmix_backend *be, void *layers);

// maxpool2d.cu
int tmix_cuda_maxpool2d_forward(tmix_backend *be,
                                tmix_tensor *out,      // (N, C, OH, OW)
                                const tmix_tensor *in, // (N, C, H, W)
                                tmix_pool2d_params p);
int tmix_cuda_maxpool2d_backward(tmix_backend *be,
                                 tmix_tensor *din,        // (N, C, H, W)
                                 const tmix_tensor *dout, // (N, C, OH, OW)
                                 const tmix_tensor *in,   // (N, C, H, W)
                                 tmix_pool2d_params p);

// linear.cu
int tmix_cuda_linear_forward(tmix_backend *be,
                             tmix_tensor *out,          // (B, O)
                             const tmix_tensor *in,     // (B, I)
                             const tmix_tensor *weight, // (O, I)
                             const tmix_tensor *bias);  // (O) or NULL
int tmix_cuda_linear_backward_input(tmix_backend *be,
                                    tmix_tensor *din,          // (B, I)
                                    const tmix_tensor *dout,   // (B, O)
                                    const tmix_tensor *weight);// (O, I)
int tmix_cuda_linear_backward_weight(tmix_backend *be,
                                     tmix_tensor *dweight,    // (O, I)
                                     const tmix_tensor *dout, // (B, O)
                                     const tmix_tensor *in);  // (B, I)

// cross_entropy.cu
int tmix_cuda_cross_entropy_forward(tmix_backend *be,
                                    tmix_tensor *loss,          // (1)
                                    const tmix_tensor *logits,  // (B, J)
                                    const tmix_tensor *targets);// (B, J)
int tmix_cuda_cross_entropy_backward(tmix_backend *be,
                                     tmix_tensor *dlogits,       // (B, J)
                                     const tmix_tensor *logits,  // (B, J)
                                     const tmix_tensor *targets);// (B, J)

// sgd.cu
int tmix_cuda_sgd_update(tmix_backend *be,
                         tmix_tensor *param,        // any shape
                         const tmix_tensor *grad,   // same shape
                         tmix_tensor *momentum_buf, // same shape, or NULL when momentum == 0
                         tmix_sgd_params p,
                         int64_t step);             // 0 for the first update

// affine_grid.cu
int tmix_cuda_affine_grid_forward(tmix_backend *be,
                                  tmix_tensor *grid,         // (N, H, W, 2)
                                  const tmix_tensor *theta); // (N, 2, 3)
int tmix_cuda_affine_grid_backward(tmix_backend *be,
                                   tmix_tensor *dtheta,       // (N, 2, 3)
                                   const tmix_tensor *dgrid); // (N, H, W, 2)

// grid_sample.cu
int tmix_cuda_grid_sample_forward(tmix_backend *be,
                                  tmix_tensor *out,        // (N, C, Ho, Wo)
                                  const tmix_tensor *in,   // (N, C, H, W)
                                  const tmix_tensor *grid);// (N, Ho, Wo, 2)
int tmix_cuda_grid_sample_backward(tmix_backend *be,
                                   tmix_tensor *din,        // (N, C, H, W) or NULL
                                   tmix_tensor *dgrid,      // (N, Ho, Wo, 2) or NULL
                                   const tmix_tensor *dout, // (N, C, Ho, Wo)
                                   const tmix_tensor *in,   // (N, C, H, W)
                                   const tmix_tensor *grid);// (N, Ho, Wo, 2)

// resize_bilinear.cu
int tmix_cuda_resize_bilinear_forward(tmix_backend *be,
                                      tmix_tensor *out,       // (N, C, Ho, Wo)
                                      const tmix_tensor *in); // (N, C, H, W)

// preprocess.cu
int tmix_cuda_preprocess(tmix_backend *be,
                         tmix_tensor *out,       // (B, C, OH, OW) f32
                         const tmix_tensor *src, // (B, H, W, Cs) u8, Cs == C or Cs == 1
                         const tmix_crop *crops, // [B]
                         const float *mean,      // [C]
                         const float *std);      // [C]

// encode_images.cu
int tmix_cuda_encode_images(tmix_backend *be,
                            tmix_tensor *out,      // (B, C * H * W * element bytes) u8
                            const tmix_tensor *in, // (B, C, H, W) f32
                            tmix_image_format format,
                            const float *mean,     // [C]
                            const float *std);     // [C]

// add.cu
int tmix_cuda_add(tmix_backend *be, tmix_tensor *out, const tmix_tensor *a, const tmix_tensor *b,
                  bool relu);

// concat_channels.cu
int tmix_cuda_concat_channels_forward(tmix_backend *be,
                                      tmix_tensor *out,      // (N, Co, H, W), c0 + C <= Co
                                      const tmix_tensor *in, // (N, C, H, W)
                                      int c0);
int tmix_cuda_concat_channels_backward(tmix_backend *be,
                                       tmix_tensor *din,        // (N, C, H, W)
                                       const tmix_tensor *dout, // (N, Co, H, W)
                                       int c0);
int tmix_cuda_fill_channels(tmix_backend *be,
                            tmix_tensor *out,          // (N, Co, H, W), c0 + K <= Co
                            const tmix_tensor *values, // (N, K)
                            int c0);

// gather.cu
int tmix_cuda_gather(tmix_backend *be,
                     tmix_tensor *out,      // (M, ...)
                     const tmix_tensor *in, // (N, ...), same trailing shape
                     const int64_t *index); // [M], host

// cam.cu
int tmix_cuda_cam_forward(tmix_backend *be,
                          tmix_tensor *out,            // (N, 1, h, w)
                          const tmix_tensor *features, // (N, C, h, w)
                          const tmix_tensor *weight,   // (J, C)
                          const int64_t *labels);      // [N], host

// box_masks.cu
int tmix_cuda_box_masks(tmix_backend *be,
                        tmix_tensor *masks,       // (B, 2, H, W)
                        const tmix_box *boxes);   // [B], host

// batchnorm_train.cu
int tmix_cuda_batchnorm_train_forward(tmix_backend *be,
                                      tmix_tensor *out,          // (N, C, H, W)
                                      tmix_tensor *save_mean,    // (C)
                                      tmix_tensor *save_invstd,  // (C)
                                      tmix_tensor *running_mean, // (C) or NULL
                                      tmix_tensor *running_var,  // (C) or NULL
                                      const tmix_tensor *in,     // (N, C, H, W)
                                      const tmix_tensor *gamma,  // (C)
                                      const tmix_tensor *beta,   // (C)
                                      tmix_batchnorm_train_params p);
int tmix_cuda_batchnorm_train_backward(tmix_backend *be,
                                       tmix_tensor *din,                // (N, C, H, W) or NULL
                                       tmix_tensor *dgamma,             // (C) or NULL
                                       tmix_tensor *dbeta,              // (C) or NULL
                                       const tmix_tensor *dout,         // (N, C, H, W)
                                       const tmix_tensor *in,           // (N, C, H, W)
                                       const tmix_tensor *gamma,        // (C)
                                       const tmix_tensor *save_mean,    // (C)
                                       const tmix_tensor *save_invstd); // (C)
} // extern "C"

#endif
