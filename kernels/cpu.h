// The CPU reference backend's op implementations (one kernels/<op>.c file per op holds the
// entry point of ops.h and its tmix_cpu_ twin). Called only through the backend table, after
// the entry point has checked every argument.
#ifndef TMIX_CPU_H
#define TMIX_CPU_H

#include "backend.h"

// The least work (elements touched, or multiply-adds for a GEMM) for which an op starts a
// parallel region (`#pragma omp parallel ... if (work >= TMIX_CPU_PARALLEL_MIN)`). Starting
// one costs microseconds on an idle machine but milliseconds on a busy one, where the other
// threads must wait to be scheduled; below this, one thread is done sooner. The bits of
// every result are the same either way.
enum { TMIX_CPU_PARALLEL_MIN = 1 << 18 };

// Pins OpenBLAS to one thread (see blas.c); called at the entry of every twin that uses BLAS.
void tmix_cpu_blas_init(void);
// C = alpha op(A) @ op(B) + beta C, row-major, as cblas_sgemm (op(X) is X^T where trans_x),
// done in fixed tiles of tile_m x tile_n of C shared out by an orphaned `omp for`: call it
// from every thread of a parallel region (it ends with that loop's barrier; alone, a
// `#pragma omp parallel` line before the call), or outside one to run all the tiles on the
// calling thread. The bits are the same for any thread count. The flags are bool, not
// CBLAS_TRANSPOSE, because cblas.h pulls in <complex.h>, whose macro `I` would then reach
// every file that includes this header.
void tmix_cpu_sgemm_tiled(bool trans_a, bool trans_b, int m, int n, int k,
                          float alpha, const float *a, int lda, const float *b, int ldb,
                          float beta, float *c, int ldc, int tile_m, int tile_n);

int tmix_cpu_conv2d_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                            const tmix_tensor *weight, const tmix_tensor *bias,
                            tmix_conv2d_params p);
int tmix_cpu_conv2d_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                   const tmix_tensor *weight, tmix_conv2d_params p);
int tmix_cpu_conv2d_backward_weight(tmix_backend *be, tmix_tensor *dweight, const tmix_tensor *dout,
                                    const tmix_tensor *in, tmix_conv2d_params p);
int tmix_cpu_bias_backward(tmix_backend *be, tmix_tensor *dbias, const tmix_tensor *dout);
int tmix_cpu_batchnorm_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                               const tmix_tensor *scale, const tmix_tensor *shift);
int tmix_cpu_batchnorm_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                      const tmix_tensor *scale);
int tmix_cpu_relu_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in);
int tmix_cpu_relu_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                           const tmix_tensor *out);
int tmix_cpu_maxpool2d_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                               tmix_pool2d_params p);
int tmix_cpu_maxpool2d_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                const tmix_tensor *in, tmix_pool2d_params p);
int tmix_cpu_avgpool_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in);
int tmix_cpu_avgpool_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout);
int tmix_cpu_linear_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                            const tmix_tensor *weight, const tmix_tensor *bias);
int tmix_cpu_linear_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                   const tmix_tensor *weight);
int tmix_cpu_linear_backward_weight(tmix_backend *be, tmix_tensor *dweight, const tmix_tensor *dout,
                                    const tmix_tensor *in);
int tmix_cpu_affine_grid_forward(tmix_backend *be, tmix_tensor *grid, const tmix_tensor *theta);
int tmix_cpu_affine_grid_backward(tmix_backend *be, tmix_tensor *dtheta, const tmix_tensor *dgrid);
int tmix_cpu_grid_sample_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                                 const tmix_tensor *grid);
int tmix_cpu_grid_sample_backward(tmix_backend *be, tmix_tensor *din, tmix_tensor *dgrid,
                                  const tmix_tensor *dout, const tmix_tensor *in,
                                  const tmix_tensor *grid);
int tmix_cpu_resize_bilinear_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in);
int tmix_cpu_minmax_normalize_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in);
int tmix_cpu_softmax_channel_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                                     const tmix_tensor *tau);
int tmix_cpu_softmax_channel_backward(tmix_backend *be, tmix_tensor *din, tmix_tensor *dtau,
                                      const tmix_tensor *dout, const tmix_tensor *out,
                                      const tmix_tensor *in, const tmix_tensor *tau);
int tmix_cpu_blend_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *masks,
                           const tmix_tensor *x);
int tmix_cpu_blend_backward(tmix_backend *be, tmix_tensor *dmasks, tmix_tensor *dx,
                            const tmix_tensor *dout, const tmix_tensor *masks,
                            const tmix_tensor *x);
int tmix_cpu_add(tmix_backend *be, tmix_tensor *out, const tmix_tensor *a, const tmix_tensor *b,
                 bool relu);
int tmix_cpu_concat_channels_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                                     int c0);
int tmix_cpu_concat_channels_backward(tmix_backend *be, tmix_tensor *din,
                                      const tmix_tensor *dout, int c0);
int tmix_cpu_fill_channels(tmix_backend *be, tmix_tensor *out, const tmix_tensor *values, int c0);
int tmix_cpu_gather(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                    const int64_t *index);
int tmix_cpu_cam_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *features,
                         const tmix_tensor *weight, const int64_t *labels);
int tmix_cpu_box_masks(tmix_backend *be, tmix_tensor *masks, const tmix_box *boxes);
int tmix_cpu_cross_entropy_forward(tmix_backend *be, tmix_tensor *loss, const tmix_tensor *logits,
                                   const tmix_tensor *targets);
int tmix_cpu_cross_entropy_backward(tmix_backend *be, tmix_tensor *dlogits,
                                    const tmix_tensor *logits, const tmix_tensor *targets);
int tmix_cpu_sgd_update(tmix_backend *be, tmix_tensor *param, const tmix_tensor *grad,
                        tmix_tensor *momentum_buf, tmix_sgd_params p, int64_t step);
int tmix_cpu_preprocess(tmix_backend *be, tmix_tensor *out, const tmix_tensor *src,
                        const tmix_crop *crops, const float *mean, const float *std);
int tmix_cpu_encode_images(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                           tmix_image_format format, const float *mean, const float *std);
int tmix_cpu_batchnorm_train_forward(tmix_backend *be, tmix_tensor *out, tmix_tensor *save_mean,
                                     tmix_tensor *save_invstd, tmix_tensor *running_mean,
                                     tmix_tensor *running_var, const tmix_tensor *in,
                                     const tmix_tensor *gamma, const tmix_tensor *beta,
                                     tmix_batchnorm_train_params p);
int tmix_cpu_batchnorm_train_backward(tmix_backend *be, tmix_tensor *din, tmix_tensor *dgamma,
                                      tmix_tensor *dbeta, const tmix_tensor *dout,
                                      const tmix_tensor *in, const tmix_tensor *gamma,
                                      const tmix_tensor *save_mean,
                                      const tmix_tensor *save_invstd);

#endif
