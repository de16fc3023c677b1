// The numeric ops of tmix, one entry point each. Every entry point checks its arguments
// (dtype, device, shapes, parameters) the same way for every backend, then calls the
// backend's implementation. A failed check returns a negative TMIX_* code and leaves a
// message naming the op and the shapes in tmix_last_error(); nothing is written.
//
// Conventions (as in llm.c): outputs first, then inputs, then parameters. Shapes are given
// in the comment beside each pointer. Forward ops overwrite their outputs; backward ops
// ACCUMULATE (+=) into their gradient outputs, so zero those first (tmix_tensor_zero).
// Gradients carry a `d` prefix. A backward output given as NULL is skipped, where the
// comment says NULL is allowed. All float tensors are TMIX_F32 and must live on be's device.
// Host arrays given to an op (indices, labels, boxes, crops) may be reused as soon as it
// returns, except those from tmix_host_alloc: a GPU reads those when the op runs, so they
// stay as they are until the backend has synchronized.
#ifndef TMIX_OPS_H
#define TMIX_OPS_H

#include "backend.h"
#include "params.h"
#include "tensor.h"

// ---- memory ----------------------------------------------------------------------------
// Allocates an owned tensor of the given dtype and shape on be's device (contents undefined).
int tmix_tensor_alloc(tmix_backend *be, tmix_tensor *t, tmix_dtype dtype, int ndim,
                      const int64_t *shape);
// Frees an owned tensor and clears it; a borrowed or empty tensor is only cleared.
void tmix_tensor_free(tmix_backend *be, tmix_tensor *t);
int tmix_tensor_zero(tmix_backend *be, tmix_tensor *t);
// Copies tmix_tensor_bytes(t) bytes between host memory and the tensor.
int tmix_tensor_upload(tmix_backend *be, tmix_tensor *dst, const void *src);
int tmix_tensor_download(tmix_backend *be, void *dst, const tmix_tensor *src);
// Waits until all work queued on be is done (a no-op on the CPU).
int tmix_synchronize(tmix_backend *be);
// The same copies, queued without waiting where the backend can (a GPU): the host memory
// must come from tmix_host_alloc and stay untouched until the backend has synchronized (a
// download's data is there only then). Elsewhere they are tmix_tensor_upload / _download.
int tmix_tensor_upload_async(tmix_backend *be, tmix_tensor *dst, const void *src);
int tmix_tensor_download_async(tmix_backend *be, void *dst, const tmix_tensor *src);
// Host memory for the staging buffers of uploads and downloads: pinned (page-locked) where
// the backend's copies are faster from it, else malloc'd. Free it with tmix_host_free on the
// same backend.
int tmix_host_alloc(tmix_backend *be, size_t bytes, void **out);
void tmix_host_free(tmix_backend *be, void *p);
// A buffer of `bytes` device memory and an event that another process on the machine opens
// with cudaIpcOpenMemHandle / cudaIpcOpenEventHandle (the handles in *out): CUDA delivery's
// slots. TMIX_ENOTSUP on a backend or a GPU without CUDA IPC (the CPU; MIG); TMIX_ENOMEM
// naming the size when the device has no room.
int tmix_ipc_buffer_new(tmix_backend *be, size_t bytes, tmix_ipc_buffer *out);
// Queues the copy of src[bytes] (bytes <= b->bytes) into b on be's stream, after b's last copy
// (on whatever stream), and records b's event after it: a process that waits for the event
// reads the new bytes. src is memory on
// be's device (queued work on be's stream may still be writing it) or host memory: from
// pageable (malloc'd) memory the copy has read src when the call returns; pinned memory must
// stay as it is until the event completes. b may have been made on another backend of the
// same device.
int tmix_ipc_buffer_fill(tmix_backend *be, tmix_ipc_buffer *b, const void *src, size_t bytes);
// Copies the first `bytes` of b into host memory dst once b's last copy is done, and waits.
int tmix_ipc_buffer_read(tmix_backend *be, const tmix_ipc_buffer *b, void *dst, size_t bytes);
// Frees what tmix_ipc_buffer_new made, once its last copy is done. Processes that opened it
// must have closed it: their mapping is not valid after (CUDA leaves that undefined). An
// empty buffer: no-op.
void tmix_ipc_buffer_free(tmix_backend *be, tmix_ipc_buffer *b);
// The GPU's PCI bus id ("0000:65:00.0"), which names it alike in every process (ordinals
// follow each one's CUDA_VISIBLE_DEVICES). TMIX_ENOTSUP on the CPU.
int tmix_pci_bus_id(tmix_backend *be, char *out, size_t size);
// The device memory in use (by every process on the device) and in all, in bytes: the
// metrics' GPU memory. TMIX_ENOTSUP on the CPU.
int tmix_memory_info(tmix_backend *be, size_t *used, size_t *total);

// ---- graphs ----------------------------------------------------------------------------
// Where the backend has them (CUDA graphs), the work queued on be between
// tmix_capture_begin and tmix_capture_end is recorded instead of run, and tmix_graph_launch
// runs all of it again as one launch: the same kernels on the same device memory, reading
// the host memory of async copies and of host-array arguments anew each time (which is why
// that memory must come from tmix_host_alloc). While capturing, nothing may allocate device
// memory, wait for the device, or copy synchronously.
bool tmix_backend_has_graphs(const tmix_backend *be);
// TMIX_ENOTSUP where the backend has no graphs.
int tmix_capture_begin(tmix_backend *be);
// Ends the capture. *out is the graph, or NULL with the reason when the work queued could
// not be recorded; the backend runs ops again either way.
int tmix_capture_end(tmix_backend *be, tmix_graph **out);
int tmix_graph_launch(tmix_backend *be, tmix_graph *g);
void tmix_graph_free(tmix_backend *be, tmix_graph *g); // NULL: no-op

// ---- frozen networks run whole ---------------------------------------------------------
// A backend may run a frozen network (the teacher's forward for CAMs, models/net_run.c) as
// one computation rather than op by op. The CUDA backend does at bf16 precision: activations
// stay bf16 NHWC from layer to layer, and each convolution's bias, residual sum and ReLU
// take one pass (kernels/cuda/layers.cu). The results are the ops' at that precision with
// every activation rounded to bf16 in between.
//
// Makes the layers (backend.h, tmix_layer) ready for inputs of x_shape: weights converted,
// device memory allocated, algorithms chosen; with backward, also for tmix_layers_backward
// (the activations it reads are kept, and its gradients have memory). Every shape and
// parameter is checked; the layers' tensors are borrowed and must outlive *out. TMIX_ENOTSUP,
// *out NULL, where the backend does not run this network whole (the CPU; a precision other
// than bf16; a layer it cannot store): run it op by op.
bool tmix_backend_has_layers(const tmix_backend *be);
int tmix_layers_new(tmix_backend *be, const tmix_layer *layers, int count,
                    const int64_t x_shape[4], bool backward, tmix_layers **out);
// Runs the layers on x (x_shape): outs[i] receives layer i's output, float32 of its shape,
// for every layer marked read (others' entries are ignored). TMIX_ENOTSUP, with nothing
// written, when the backend turns a layer down at run time: free the layers and run the
// network op by op.
int tmix_layers_forward(tmix_layers *l, const tmix_tensor *x, tmix_tensor *const *outs);
// dx += d(loss)/dx, from dlast = d(loss)/d(the last layer's output), of the last
// tmix_layers_forward (layers made with backward). The gradients between layers are bf16
// too. One backward per forward: it reuses the memory of the activations it has read, and a
// second is refused (TMIX_EINVAL). TMIX_ENOTSUP as tmix_layers_forward, with dx unchanged.
int tmix_layers_backward(tmix_layers *l, tmix_tensor *dx, const tmix_tensor *dlast);
void tmix_layers_free(tmix_layers *l); // NULL: no-op


// ---- convolution -----------------------------------------------------------------------
// out = conv(in, weight) + bias, then max(0, ·) when p.relu.
int tmix_conv2d_forward(tmix_backend *be,
                        tmix_tensor *out,          // (N, OC, OH, OW)
                        const tmix_tensor *in,     // (N, C, H, W)
                        const tmix_tensor *weight, // (OC, C, KH, KW)
                        const tmix_tensor *bias,   // (OC) or NULL
                        tmix_conv2d_params p);
int tmix_conv2d_backward_input(tmix_backend *be,
                               tmix_tensor *din,          // (N, C, H, W)
                               const tmix_tensor *dout,   // (N, OC, OH, OW)
                               const tmix_tensor *weight, // (OC, C, KH, KW)
                               tmix_conv2d_params p);
int tmix_conv2d_backward_weight(tmix_backend *be,
                                tmix_tensor *dweight,    // (OC, C, KH, KW)
                                const tmix_tensor *dout, // (N, OC, OH, OW)
                                const tmix_tensor *in,   // (N, C, H, W)
                                tmix_conv2d_params p);
// Gradient of a per-channel bias, for conv2d and linear alike: the sum of dout over every
// dimension but dimension 1.
int tmix_bias_backward(tmix_backend *be,
                       tmix_tensor *dbias,       // (C)
                       const tmix_tensor *dout); // (N, C) or (N, C, H, W)

// ---- batch norm (inference form) ---------------------------------------------------------
// out = in * scale[c] + shift[c]. out may be in (in place).
int tmix_batchnorm_forward(tmix_backend *be,
                           tmix_tensor *out,         // (N, C, H, W)
                           const tmix_tensor *in,    // (N, C, H, W)
                           const tmix_tensor *scale, // (C)
                           const tmix_tensor *shift);// (C)
int tmix_batchnorm_backward_input(tmix_backend *be,
                                  tmix_tensor *din,         // (N, C, H, W)
                                  const tmix_tensor *dout,  // (N, C, H, W)
                                  const tmix_tensor *scale);// (C)
// Host helper: scale = gamma / sqrt(var + eps), shift = beta - mean * scale.
void tmix_batchnorm_fold(float *scale, float *shift, const float *gamma, const float *beta,
                         const float *mean, const float *var, float eps, int channels);

// ---- batch norm (training form) ----------------------------------------------------------
// torch.nn.BatchNorm2d in train(). Per channel c, over the n = N*H*W values of the batch
// (n >= 2): the mean m and biased variance v, invstd = 1 / sqrt(v + eps), and
//   out = (in - m) * invstd * gamma[c] + beta[c],   save_mean[c] = m,  save_invstd[c] = invstd,
//   running_mean[c] = (1 - momentum) * running_mean[c] + momentum * m,
//   running_var[c]  = (1 - momentum) * running_var[c]  + momentum * v * n / (n - 1)
// (the running variance is unbiased, as in PyTorch). A NULL running tensor is not updated.
// out may be in.
int tmix_batchnorm_train_forward(tmix_backend *be,
                                 tmix_tensor *out,          // (N, C, H, W)
                                 tmix_tensor *save_mean,    // (C)
                                 tmix_tensor *save_invstd,  // (C)
                                 tmix_tensor *running_mean, // (C) or NULL, updated in place
                                 tmix_tensor *running_var,  // (C) or NULL, updated in place
                                 const tmix_tensor *in,     // (N, C, H, W)
                                 const tmix_tensor *gamma,  // (C)
                                 const tmix_tensor *beta,   // (C)
                                 tmix_batchnorm_train_params p);
// The gradients of the forward with the batch statistics it saved (PyTorch's autograd):
//   dbeta += sum(dout),  dgamma += sum(dout * xhat) with xhat = (in - save_mean) * save_invstd,
//   din += gamma * save_invstd * (dout - sum(dout) / n - xhat * sum(dout * xhat) / n),
// sums over the n = N*H*W values of each channel.
int tmix_batchnorm_train_backward(tmix_backend *be,
                                  tmix_tensor *din,                // (N, C, H, W) or NULL
                                  tmix_tensor *dgamma,             // (C) or NULL
                                  tmix_tensor *dbeta,              // (C) or NULL
                                  const tmix_tensor *dout,         // (N, C, H, W)
                                  const tmix_tensor *in,           // (N, C, H, W)
                                  const tmix_tensor *gamma,        // (C)
                                  const tmix_tensor *save_mean,    // (C)
                                  const tmix_tensor *save_invstd); // (C)

// ---- activations and pooling -------------------------------------------------------------
// out = max(in, 0); out may be in.
int tmix_relu_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in); // any shape
// din += dout * (out > 0)
int tmix_relu_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                       const tmix_tensor *out);


int tmix_maxpool2d_forward(tmix_backend *be,
                           tmix_tensor *out,      // (N, C, OH, OW)
                           const tmix_tensor *in, // (N, C, H, W)
                           tmix_pool2d_params p);
// Recomputes the argmax from `in`, so no index buffer is kept between the passes.
int tmix_maxpool2d_backward(tmix_backend *be,
                            tmix_tensor *din,        // (N, C, H, W)
                            const tmix_tensor *dout, // (N, C, OH, OW)
                            const tmix_tensor *in,   // (N, C, H, W)
                            tmix_pool2d_params p);

// Global average pool: out[n, c] = mean over (h, w) of in[n, c].
int tmix_avgpool_forward(tmix_backend *be,
                         tmix_tensor *out,       // (N, C)
                         const tmix_tensor *in); // (N, C, H, W)
int tmix_avgpool_backward(tmix_backend *be,
                          tmix_tensor *din,        // (N, C, H, W)
                          const tmix_tensor *dout);// (N, C)

// ---- linear -------------------------------------------------------------------------------
// out = in @ weight^T + bias
int tmix_linear_forward(tmix_backend *be,
                        tmix_tensor *out,          // (B, O)
                        const tmix_tensor *in,     // (B, I)
                        const tmix_tensor *weight, // (O, I)
                        const tmix_tensor *bias);  // (O) or NULL
int tmix_linear_backward_input(tmix_backend *be,
                               tmix_tensor *din,          // (B, I)
                               const tmix_tensor *dout,   // (B, O)
                               const tmix_tensor *weight);// (O, I)
int tmix_linear_backward_weight(tmix_backend *be,
                                tmix_tensor *dweight,    // (O, I)
                                const tmix_tensor *dout, // (B, O)
                                const tmix_tensor *in);  // (B, I)

// ---- warp: PyTorch affine_grid + grid_sample, bilinear, zero padding, align_corners=False --
// grid[n, i, j] = theta[n] @ (x_j, y_i, 1) with x_j = (2j + 1) / W - 1, y_i = (2i + 1) / H - 1;
// grid[..., 0] is x (width), grid[..., 1] is y (height).
int tmix_affine_grid_forward(tmix_backend *be,
                             tmix_tensor *grid,         // (N, H, W, 2)
                             const tmix_tensor *theta); // (N, 2, 3)
int tmix_affine_grid_backward(tmix_backend *be,
                              tmix_tensor *dtheta,       // (N, 2, 3)
                              const tmix_tensor *dgrid); // (N, H, W, 2)
// Samples `in` at grid points in [-1, 1] (pixel x = ((gx + 1) * W - 1) / 2); points outside
// the image read zeros.
int tmix_grid_sample_forward(tmix_backend *be,
                             tmix_tensor *out,        // (N, C, Ho, Wo)
                             const tmix_tensor *in,   // (N, C, H, W)
                             const tmix_tensor *grid);// (N, Ho, Wo, 2)
int tmix_grid_sample_backward(tmix_backend *be,
                              tmix_tensor *din,        // (N, C, H, W) or NULL
                              tmix_tensor *dgrid,      // (N, Ho, Wo, 2) or NULL
                              const tmix_tensor *dout, // (N, C, Ho, Wo)
                              const tmix_tensor *in,   // (N, C, H, W)
                              const tmix_tensor *grid);// (N, Ho, Wo, 2)

// ---- resize and normalise ------------------------------------------------------------------
// PyTorch F.interpolate(mode="bilinear", align_corners=False, antialias=False).
int tmix_resize_bilinear_forward(tmix_backend *be,
                                 tmix_tensor *out,       // (N, C, Ho, Wo)
                                 const tmix_tensor *in); // (N, C, H, W)
// Per sample n: out = (in - min) / max(max - min, 1e-12) over all of in[n]. out may be in.
int tmix_minmax_normalize_forward(tmix_backend *be,
                                  tmix_tensor *out,       // (N, ...)
                                  const tmix_tensor *in); // (N, ...)

// ---- masks and mixing --------------------------------------------------------------------
// out = softmax(in / tau) over dimension 1; tau is a 1-element tensor (> 0).
int tmix_softmax_channel_forward(tmix_backend *be,
                                 tmix_tensor *out,       // (N, K, H, W)
                                 const tmix_tensor *in,  // (N, K, H, W)
                                 const tmix_tensor *tau);// (1)
int tmix_softmax_channel_backward(tmix_backend *be,
                                  tmix_tensor *din,        // (N, K, H, W)
                                  tmix_tensor *dtau,       // (1) or NULL
                                  const tmix_tensor *dout, // (N, K, H, W)
                                  const tmix_tensor *out,  // (N, K, H, W), the forward output
                                  const tmix_tensor *in,   // (N, K, H, W)
                                  const tmix_tensor *tau); // (1)
// out[b] = sum_k masks[b, k] * x[b * K + k] (the mask broadcast over channels).
int tmix_blend_forward(tmix_backend *be,
                       tmix_tensor *out,          // (B, C, H, W)
                       const tmix_tensor *masks,  // (B, K, H, W)
                       const tmix_tensor *x);     // (B * K, C, H, W)
int tmix_blend_backward(tmix_backend *be,
                        tmix_tensor *dmasks,       // (B, K, H, W) or NULL
                        tmix_tensor *dx,           // (B * K, C, H, W) or NULL
                        const tmix_tensor *dout,   // (B, C, H, W)
                        const tmix_tensor *masks,  // (B, K, H, W)
                        const tmix_tensor *x);     // (B * K, C, H, W)

// ---- assembling networks ----------------------------------------------------------------
// out = a + b (residual connections; din += dout is tmix_add(be, din, din, dout)). out may be
// a or b.
int tmix_add(tmix_backend *be, tmix_tensor *out, const tmix_tensor *a, const tmix_tensor *b);
// out = max(0, a + b) (a NaN kept, as tmix_relu_forward): a residual connection and the ReLU
// after it in one pass.
int tmix_add_relu(tmix_backend *be, tmix_tensor *out, const tmix_tensor *a,
                  const tmix_tensor *b);
// out[:, c0 : c0 + C] = in: copies in as channels c0.. of out (concatenation along dim 1).
int tmix_concat_channels_forward(tmix_backend *be,
                                 tmix_tensor *out,      // (N, Co, H, W), c0 + C <= Co
                                 const tmix_tensor *in, // (N, C, H, W)
                                 int c0);
// din += dout[:, c0 : c0 + C]
int tmix_concat_channels_backward(tmix_backend *be,
                                  tmix_tensor *din,        // (N, C, H, W)
                                  const tmix_tensor *dout, // (N, Co, H, W)
                                  int c0);
// out[n, c0 + k, :, :] = values[n, k]: per-sample constants broadcast to whole channels
// (the λ maps of the mixing module, constant masks).
int tmix_fill_channels(tmix_backend *be,
                       tmix_tensor *out,          // (N, Co, H, W), c0 + K <= Co
                       const tmix_tensor *values, // (N, K)
                       int c0);
// out[m] = in[index[m]] along dimension 0; index is a host array of out->shape[0] entries,
// each in [0, N).
int tmix_gather(tmix_backend *be,
                tmix_tensor *out,      // (M, ...)
                const tmix_tensor *in, // (N, ...), same trailing shape
                const int64_t *index); // [M], host
// Class activation map before normalisation: out[n, 0] = sum_c weight[labels[n], c] *
// features[n, c]. labels is a host array of N entries, each in [0, J).
int tmix_cam_forward(tmix_backend *be,
                     tmix_tensor *out,            // (N, 1, h, w)
                     const tmix_tensor *features, // (N, C, h, w)
                     const tmix_tensor *weight,   // (J, C)
                     const int64_t *labels);      // [N], host
// CutMix masks: masks[b, 1] = 1 inside boxes[b] and 0 outside, masks[b, 0] = 1 - masks[b, 1].
// boxes is a host array of B boxes with 0 <= y0 <= y1 <= H and 0 <= x0 <= x1 <= W.
int tmix_box_masks(tmix_backend *be,
                   tmix_tensor *masks,       // (B, 2, H, W)
                   const tmix_box *boxes);   // [B], host

// ---- loss and optimiser ------------------------------------------------------------------
// loss = mean over b of -sum_j targets[b, j] * log_softmax(logits[b])[j] (soft labels).
int tmix_cross_entropy_forward(tmix_backend *be,
                               tmix_tensor *loss,          // (1)
                               const tmix_tensor *logits,  // (B, J)
                               const tmix_tensor *targets);// (B, J)
// dlogits += (softmax(logits) * sum_j targets - targets) / B, the gradient of a loss of 1.
int tmix_cross_entropy_backward(tmix_backend *be,
                                tmix_tensor *dlogits,       // (B, J)
                                const tmix_tensor *logits,  // (B, J)
                                const tmix_tensor *targets);// (B, J)


int tmix_sgd_update(tmix_backend *be,
                    tmix_tensor *param,        // any shape
                    const tmix_tensor *grad,   // same shape
                    tmix_tensor *momentum_buf, // same shape, or NULL when momentum == 0
                    tmix_sgd_params p,
                    int64_t step);             // 0 for the first update


// out[b, c, i, j] = (src[b, y + i, x + jj, c'] / 255 - mean[c]) / std[c], with
// jj = flip ? OW - 1 - j : j, and c' = c, or 0 when src has 1 channel and out has 3
// (grayscale replicated). crops, mean and std are host arrays (B, C and C entries).
// ---- input pipeline -----------------------------------------------------------------------
int tmix_preprocess(tmix_backend *be,
                    tmix_tensor *out,       // (B, C, OH, OW) f32
                    const tmix_tensor *src, // (B, H, W, Cs) u8, Cs == C or Cs == 1
                    const tmix_crop *crops, // [B]
                    const float *mean,      // [C]
                    const float *std);      // [C]

// The mixed images in a trainer's format, a row of bytes per sample: float32, or IEEE half
// rounded to nearest even (tmix_half_from_float), in NCHW or NHWC order; or uint8 pixels,
// the normalisation undone (v * 255 std[c] + 255 mean[c], rounded, clamped to [0, 255]).
// mean and std are host arrays, read only for TMIX_IMAGE_U8.
int tmix_encode_images(tmix_backend *be,
                       tmix_tensor *out,      // (B, C * H * W * element bytes) u8
                       const tmix_tensor *in, // (B, C, H, W) f32
                       tmix_image_format format,
                       const float *mean,     // [C]
                       const float *std);     // [C]
// The bytes of one element of the format: 4, 2 or 1.
size_t tmix_image_dtype_size(tmix_image_dtype dtype);

#endif
