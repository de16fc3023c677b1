// The backend interface (ggml style): each backend is a static table of function pointers.
// The entry points in ops.h check every argument and then call the table, so an
// implementation may assume valid dtypes, devices and shapes. An entry left NULL means the
// backend does not have that op (tmix_backend_supports tells; the entry point returns
// TMIX_ENOTSUP). Signatures and semantics are those of the ops.h entry points.
#ifndef TMIX_BACKEND_H
#define TMIX_BACKEND_H

#include <stdbool.h>

#include "params.h"
#include "tensor.h"

typedef struct tmix_backend tmix_backend;
typedef struct tmix_graph tmix_graph; // a recorded sequence of ops, replayed by one launch
typedef struct tmix_layers tmix_layers; // a frozen network made ready to run whole (ops.h)

// One layer of a frozen network, for tmix_layers_new (ops.h). Layers come in the order they
// are computed; each reads earlier ones.
typedef enum {
    TMIX_LAYER_CONV,    // conv2d(in, weight) + bias (or none)
    TMIX_LAYER_SCALE,   // in * weight[c] + bias[c]: a frozen batch norm
    TMIX_LAYER_RELU,    // max(0, in), a NaN kept
    TMIX_LAYER_MAXPOOL, // maxpool2d(in, pool)
    TMIX_LAYER_ADD,     // in[0] + in[1]
    TMIX_LAYER_AVGPOOL, // global: (N, C, H, W) -> (N, C)
    TMIX_LAYER_LINEAR,  // (N, I) -> (N, O): in weight^T + bias
} tmix_layer_kind;

typedef struct {
    tmix_layer_kind kind;
    int in[2];                  // earlier layers (in[1]: add's second), or -1: the input
    bool relu;                  // conv, scale and add: then max(0, ·), a NaN kept
    tmix_conv2d_params conv;    // conv (its relu is ignored: the field above says)
    tmix_pool2d_params pool;    // maxpool
    const tmix_tensor *weight;  // conv (OC, C, KH, KW); scale (C); linear (O, I)
    const tmix_tensor *bias;    // conv (OC) or NULL; scale (C); linear (O)
    int ndim;                   // the output's shape for the input the layers are made for:
    int64_t shape[4];           // (N, C, H, W), or (N, C) after avgpool and linear
    bool read;                  // tmix_layers_forward writes the output out in float32
} tmix_layer;

// Device memory and an event that other processes open by CUDA IPC (tmix_ipc_buffer_new).
typedef struct {
    void *device;                    // the memory, `bytes` long
    void *event;                     // recorded after each fill (cudaEvent_t, interprocess)
    size_t bytes;
    unsigned char mem_handle[64];    // cudaIpcMemHandle_t of device
    unsigned char event_handle[64];  // cudaIpcEventHandle_t of event
} tmix_ipc_buffer;

#define TMIX_CONST const tmix_tensor *
typedef struct tmix_backend_ops {
    // memory
    int (*alloc)(tmix_backend *be, tmix_tensor *t); // t->dtype/ndim/shape set; fills data
    void (*free)(tmix_backend *be, tmix_tensor *t);
    int (*zero)(tmix_backend *be, tmix_tensor *t);
    int (*upload)(tmix_backend *be, tmix_tensor *dst, const void *src);
    int (*download)(tmix_backend *be, void *dst, TMIX_CONST src);
    int (*synchronize)(tmix_backend *be);
    // Optional: host memory the device copies from and to at full speed (pinned); NULL
    // means plain malloc/free (the CPU).
    int (*host_alloc)(tmix_backend *be, size_t bytes, void **out);
    void (*host_free)(tmix_backend *be, void *p);
    void (*close)(tmix_backend *be); // releases the backend; NULL for the CPU singleton
    // Optional (CUDA): buffers for CUDA IPC delivery (see ops.h); NULL where there are none.
    int (*ipc_buffer_new)(tmix_backend *be, size_t bytes, tmix_ipc_buffer *out);
    int (*ipc_buffer_fill)(tmix_backend *be, tmix_ipc_buffer *b, const void *src, size_t bytes);
    int (*ipc_buffer_read)(tmix_backend *be, const tmix_ipc_buffer *b, void *dst, size_t bytes);
    int (*pci_bus_id)(tmix_backend *be, char *out, size_t size);
    void (*ipc_buffer_free)(tmix_backend *be, tmix_ipc_buffer *b);
    // Optional (CUDA): the device's memory in use (by every process) and in all.
    int (*memory_info)(tmix_backend *be, size_t *used, size_t *total);
    // Optional (CUDA): copies queued without waiting (see ops.h); NULL means upload/download.
    int (*upload_async)(tmix_backend *be, tmix_tensor *dst, const void *src);
    int (*download_async)(tmix_backend *be, void *dst, TMIX_CONST src);
    // Optional (CUDA): graphs of the work queued between capture_begin and capture_end.
    int (*capture_begin)(tmix_backend *be);
    int (*capture_end)(tmix_backend *be, tmix_graph **out);
    int (*graph_launch)(tmix_backend *be, tmix_graph *g);
    void (*graph_free)(tmix_backend *be, tmix_graph *g);
    // Optional (CUDA): timing marks queued on the backend's stream, for profiles (profile.h);
    // NULL where an op's work is done when it returns (the CPU: the host clock times it).
    // mark_elapsed_ms reads two recorded marks after a synchronize.
    int (*mark_new)(tmix_backend *be, void **out);
    int (*mark_record)(tmix_backend *be, void *mark);
    int (*mark_elapsed_ms)(tmix_backend *be, const void *from, const void *to, double *out);
    void (*mark_free)(tmix_backend *be, void *mark);

    // ops (see ops.h)
    int (*conv2d_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST in, TMIX_CONST weight,
                          TMIX_CONST bias, tmix_conv2d_params p);
    int (*conv2d_backward_input)(tmix_backend *, tmix_tensor *din, TMIX_CONST dout,
                                 TMIX_CONST weight, tmix_conv2d_params p);
    int (*conv2d_backward_weight)(tmix_backend *, tmix_tensor *dweight, TMIX_CONST dout,
                                  TMIX_CONST in, tmix_conv2d_params p);
    int (*bias_backward)(tmix_backend *, tmix_tensor *dbias, TMIX_CONST dout);
    int (*batchnorm_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST in, TMIX_CONST scale,
                             TMIX_CONST shift);
    int (*batchnorm_backward_input)(tmix_backend *, tmix_tensor *din, TMIX_CONST dout,
                                    TMIX_CONST scale);
    int (*relu_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST in);
    int (*relu_backward)(tmix_backend *, tmix_tensor *din, TMIX_CONST dout, TMIX_CONST out);
    int (*maxpool2d_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST in,
                             tmix_pool2d_params p);
    int (*maxpool2d_backward)(tmix_backend *, tmix_tensor *din, TMIX_CONST dout, TMIX_CONST in,
                              tmix_pool2d_params p);
    int (*avgpool_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST in);
    int (*avgpool_backward)(tmix_backend *, tmix_tensor *din, TMIX_CONST dout);
    int (*linear_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST in, TMIX_CONST weight,
                          TMIX_CONST bias);
    int (*linear_backward_input)(tmix_backend *, tmix_tensor *din, TMIX_CONST dout,
                                 TMIX_CONST weight);
    int (*linear_backward_weight)(tmix_backend *, tmix_tensor *dweight, TMIX_CONST dout,
                                  TMIX_CONST in);
    int (*affine_grid_forward)(tmix_backend *, tmix_tensor *grid, TMIX_CONST theta);
    int (*affine_grid_backward)(tmix_backend *, tmix_tensor *dtheta, TMIX_CONST dgrid);
    int (*grid_sample_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST in, TMIX_CONST grid);
    int (*grid_sample_backward)(tmix_backend *, tmix_tensor *din, tmix_tensor *dgrid,
                                TMIX_CONST dout, TMIX_CONST in, TMIX_CONST grid);
    int (*resize_bilinear_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST in);
    int (*minmax_normalize_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST in);
    int (*softmax_channel_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST in,
                                   TMIX_CONST tau);
    int (*softmax_channel_backward)(tmix_backend *, tmix_tensor *din, tmix_tensor *dtau,
                                    TMIX_CONST dout, TMIX_CONST out, TMIX_CONST in,
                                    TMIX_CONST tau);
    int (*blend_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST masks, TMIX_CONST x);
    int (*blend_backward)(tmix_backend *, tmix_tensor *dmasks, tmix_tensor *dx, TMIX_CONST dout,
                          TMIX_CONST masks, TMIX_CONST x);
    int (*add)(tmix_backend *, tmix_tensor *out, TMIX_CONST a, TMIX_CONST b, bool relu);
    int (*concat_channels_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST in, int c0);
    int (*concat_channels_backward)(tmix_backend *, tmix_tensor *din, TMIX_CONST dout, int c0);
    int (*fill_channels)(tmix_backend *, tmix_tensor *out, TMIX_CONST values, int c0);
    int (*gather)(tmix_backend *, tmix_tensor *out, TMIX_CONST in, const int64_t *index);
    int (*cam_forward)(tmix_backend *, tmix_tensor *out, TMIX_CONST features, TMIX_CONST weight,
                       const int64_t *labels);
    int (*box_masks)(tmix_backend *, tmix_tensor *masks, const tmix_box *boxes);
    int (*cross_entropy_forward)(tmix_backend *, tmix_tensor *loss, TMIX_CONST logits,
                                 TMIX_CONST targets);
    int (*cross_entropy_backward)(tmix_backend *, tmix_tensor *dlogits, TMIX_CONST logits,
                                  TMIX_CONST targets);
    int (*sgd_update)(tmix_backend *, tmix_tensor *param, TMIX_CONST grad,
                      tmix_tensor *momentum_buf, tmix_sgd_params p,
                      int64_t step);
    int (*preprocess)(tmix_backend *, tmix_tensor *out, TMIX_CONST src,
                      const tmix_crop *crops, const float *mean, const float *std);
    int (*encode_images)(tmix_backend *, tmix_tensor *out, TMIX_CONST in,
                         tmix_image_format format, const float *mean, const float *std);
    int (*batchnorm_train_forward)(tmix_backend *, tmix_tensor *out, tmix_tensor *save_mean,
                                   tmix_tensor *save_invstd, tmix_tensor *running_mean,
                                   tmix_tensor *running_var, TMIX_CONST in, TMIX_CONST gamma,
                                   TMIX_CONST beta, tmix_batchnorm_train_params p);
    int (*batchnorm_train_backward)(tmix_backend *, tmix_tensor *din, tmix_tensor *dgamma,
                                    tmix_tensor *dbeta, TMIX_CONST dout, TMIX_CONST in,
                                    TMIX_CONST gamma, TMIX_CONST save_mean,
                                    TMIX_CONST save_invstd);
    // Optional: NULL where every op is float32 only (the CPU).
    int (*set_precision)(tmix_backend *, tmix_precision p);
    // Optional (CUDA at bf16): a frozen network run whole (ops.h, tmix_layers_new); the
    // layers and x_shape are checked. layers_new answers TMIX_ENOTSUP for networks it does
    // not run whole; layers_forward gets one output per layer, NULL where not read;
    // layers_backward follows a layers_forward of layers made with backward.
    int (*layers_new)(tmix_backend *, const tmix_layer *layers, int count,
                      const int64_t x_shape[4], bool backward, void **out);
    int (*layers_forward)(tmix_backend *, void *layers, TMIX_CONST x, tmix_tensor *const *outs);
    int (*layers_backward)(tmix_backend *, void *layers, tmix_tensor *dx, TMIX_CONST dlast);
    void (*layers_free)(tmix_backend *, void *layers);
} tmix_backend_ops;
#undef TMIX_CONST

struct tmix_backend {
    const char *name;            // "cpu", "cuda:0"
    tmix_device device;
    const tmix_backend_ops *ops;
    void *state;                 // backend-private (streams, handles, workspaces)
};

// The CPU reference backend: a process-wide singleton, always available.
tmix_backend *tmix_backend_cpu(void);

// Opens the CUDA backend on GPU `device`. Returns TMIX_ENODEV (with a message saying why)
// when tmix was built without CUDA or no usable GPU is present.
int tmix_backend_cuda_open(tmix_backend **out, int device);
void tmix_backend_close(tmix_backend *be);

// Opens a backend by name: "cpu" (the singleton), "cuda" (GPU 0) or "cuda:N". *out is the
// CPU's after a failure; a bad name is TMIX_EINVAL naming it.
int tmix_backend_open(const char *name, tmix_backend **out);

// The arithmetic of the convolutions of `be` from now on (the teacher's cost): FP32; TF32
// tensor cores (10-bit mantissa products, float32 sums); or BF16, forward passes on bf16
// tensor cores (inputs and weights rounded to 8-bit mantissas, float32 sums, the output
// rounded to bf16) and gradients in TF32. Every other op, and every tensor between ops, stays
// float32. FP32 always succeeds; TF32 and BF16 are TMIX_ENOTSUP on the CPU.
int tmix_backend_set_precision(tmix_backend *be, tmix_precision p);

// Number of usable CUDA devices (0 when built without CUDA or when the driver has none).
int tmix_cuda_device_count(void);

#endif
