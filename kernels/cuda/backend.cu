// The CUDA backend plugin (libtmix-cuda.so): the three symbols the core's loader looks up
// (cuda_plugin.h), the backend's memory operations and its op table. The core dlopens this
// file's library, so a machine without a driver or a GPU still runs tmix on the CPU; every
// failure here becomes a TMIX_* code with a sentence in tmix_last_error().
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "ops.cuh"

extern "C" {
#include "cuda_plugin.h"
}

#define TMIX_CUDA_EXPORT extern "C" __attribute__((visibility("default")))

// The backend and its state in one allocation, freed by close.
struct cuda_backend {
    tmix_backend be;
    tmix_cuda_state st;
};

int tmix_cuda_error(int code, const char *stmt, const char *func, const char *file, int line,
                    const char *why)
{
    int device = -1;
    if (cudaGetDevice(&device) != cudaSuccess)
        device = -1;
    (void)cudaGetLastError(); // also resets the error of cudaGetDevice, if any
    const char *slash = strrchr(file, '/');
    return tmix_fail(code, "cuda:%d: %s failed in %s (%s:%d): %s", device, stmt, func,
                     slash ? slash + 1 : file, line, why);
}

// Errors that mean "there is no GPU to use here" rather than "the GPU misbehaved".
static bool means_no_device(cudaError_t e)
{
    switch (e) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorStubLibrary:
    case cudaErrorDevicesUnavailable:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
        return true;
    default:
        return false;
    }
}

// Says in words why cudaGetDeviceCount failed: the runtime's own text for a missing driver
// ("driver version is insufficient") misleads on machines that have no driver at all.
static void explain(cudaError_t e, char *buf, size_t size)
{
    int driver = 0;
    if (e == cudaErrorInsufficientDriver && cudaDriverGetVersion(&driver) == cudaSuccess) {
        if (driver == 0)
            snprintf(buf, size, "no NVIDIA driver is installed (libcuda.so.1 not found)");
        else
            snprintf(buf, size, "the NVIDIA driver supports CUDA %d.%d, this build needs %d.%d",
                     driver / 1000, driver % 1000 / 10, CUDART_VERSION / 1000,
                     CUDART_VERSION % 1000 / 10);
    } else {
        snprintf(buf, size, "%s", means_no_device(e) ? "no usable GPU" : "cannot list the GPUs");
    }
    (void)cudaGetLastError();
}

static size_t tensor_bytes(const tmix_tensor *t)
{
    return (size_t)tmix_cuda_numel(t) * (t->dtype == TMIX_U8 ? 1 : 4);
}

static const char *shape_str(const tmix_tensor *t, char *buf, size_t size)
{
    size_t at = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < t->ndim && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? ",%lld" : "%lld",
                               (long long)t->shape[i]);
    if (at < size)
        snprintf(buf + at, size - at, ")");
    return buf;
}

// cudaMalloc for memory outside the stream-ordered pool (scratch, CUDA IPC slots). The pool
// keeps what the tensors freed (open sets no release threshold), so when the device looks full
// the pool gives back what it holds unused and the allocation is tried once more.
static cudaError_t device_malloc(tmix_cuda_state *st, void **p, size_t bytes)
{
    cudaError_t e = cudaMalloc(p, bytes);
    cudaMemPool_t pool;
    if (e == cudaErrorMemoryAllocation &&
        cudaDeviceGetDefaultMemPool(&pool, st->device) == cudaSuccess &&
        cudaMemPoolTrimTo(pool, 0) == cudaSuccess) {
        (void)cudaGetLastError();
        e = cudaMalloc(p, bytes);
    }
    if (e != cudaSuccess)
        *p = NULL;
    return e;
}

int tmix_cuda_scratch(tmix_cuda_state *st, size_t bytes, void **out)
{
    if (bytes > st->scratch_bytes) {
        CUDA_CHECK(cudaStreamSynchronize(st->stream));
        CUDA_CHECK(cudaFree(st->scratch));
        st->scratch = NULL;
        st->scratch_bytes = 0;
        size_t want = bytes < 65536 ? 65536 : bytes; // grow rarely
        cudaError_t e = device_malloc(st, &st->scratch, want);
        if (e == cudaErrorMemoryAllocation) {
            (void)cudaGetLastError();
            return tmix_fail(TMIX_ENOMEM, "%s: %zu bytes of scratch memory: %s", st->name,
                             want, cudaGetErrorString(e));
        }
        CUDA_CHECK(e);
        st->scratch_bytes = want;
        st->scratch_generation++;
    }
    *out = st->scratch;
    return 0;
}

// ---- memory ------------------------------------------------------------------------------

static int cuda_alloc(tmix_backend *be, tmix_tensor *t)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    size_t bytes = tensor_bytes(t);
    // From the device's stream-ordered pool, which keeps what is freed (open sets its release
    // threshold to the maximum): after the first batches, allocating is a lookup, not a call
    // into the driver, and memory freed on the stream is reused in stream order.
    cudaError_t e = cudaMallocAsync(&t->data, bytes, st->stream);
    if (e == cudaSuccess)
        return 0;
    t->data = NULL;
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        char s[96];
        return tmix_fail(TMIX_ENOMEM, "tensor_alloc: %zu bytes for %s on %s: %s", bytes,
                         shape_str(t, s, sizeof s), st->name, cudaGetErrorString(e));
    }
    return tmix_cuda_error(TMIX_ECUDA, "cudaMallocAsync(&t->data, bytes)", __func__, __FILE__,
                           __LINE__, cudaGetErrorString(e));
}

static void cuda_free(tmix_backend *be, tmix_tensor *t)
{
    // Nothing to report through a void call: a failing cudaFree means the context is already
    // broken, and the next checked call says so.
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    if (tmix_cuda_use(st) != cudaSuccess || cudaFreeAsync(t->data, st->stream) != cudaSuccess)
        (void)cudaGetLastError(); // not to be taken by the next launch's check for its own
}

static int cuda_set_precision(tmix_backend *be, tmix_precision p)
{
    // Chosen convolution algorithms are cached per precision, so a change takes effect at once.
    tmix_cuda_state_of(be)->precision = p;
    return 0;
}

static int cuda_zero(tmix_backend *be, tmix_tensor *t)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaMemsetAsync(t->data, 0, tensor_bytes(t), st->stream));
    return 0;
}

// Copies are queued behind the ops already on the stream and waited for, so the host buffer
// may be reused (or read) as soon as the call returns.
static int cuda_upload(tmix_backend *be, tmix_tensor *dst, const void *src)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaMemcpyAsync(dst->data, src, tensor_bytes(dst), cudaMemcpyHostToDevice,
                               st->stream));
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    return 0;
}

static int cuda_download(tmix_backend *be, void *dst, const tmix_tensor *src)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaMemcpyAsync(dst, src->data, tensor_bytes(src), cudaMemcpyDeviceToHost,
                               st->stream));
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    return 0;
}

// The same copies without the wait: the caller's host memory is pinned (tmix_host_alloc) and
// left alone until the next synchronize. Inside a capture they become the graph's copy nodes.
static int cuda_upload_async(tmix_backend *be, tmix_tensor *dst, const void *src)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaMemcpyAsync(dst->data, src, tensor_bytes(dst), cudaMemcpyHostToDevice,
                               st->stream));
    return 0;
}

static int cuda_download_async(tmix_backend *be, void *dst, const tmix_tensor *src)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaMemcpyAsync(dst, src->data, tensor_bytes(src), cudaMemcpyDeviceToHost,
                               st->stream));
    return 0;
}

// Pinned and portable: any stream of any backend on any GPU copies from it by DMA, which is
// what lets one batch's upload run while another batch computes.
static int cuda_host_alloc(tmix_backend *be, size_t bytes, void **out)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    cudaError_t e = cudaHostAlloc(out, bytes, cudaHostAllocPortable);
    if (e == cudaSuccess)
        return 0;
    *out = NULL;
    (void)cudaGetLastError();
    if (e == cudaErrorMemoryAllocation)
        return tmix_fail(TMIX_ENOMEM, "host_alloc: %zu bytes of pinned host memory for %s: %s",
                         bytes, st->name, cudaGetErrorString(e));
    return tmix_cuda_error(TMIX_ECUDA, "cudaHostAlloc(out, bytes, cudaHostAllocPortable)",
                           __func__, __FILE__, __LINE__, cudaGetErrorString(e));
}

static void cuda_host_free(tmix_backend *be, void *p)
{
    (void)be;
    (void)cudaFreeHost(p); // waits for copies still reading it; no error to report
    (void)cudaGetLastError();
}

// CUDA delivery's slots: cudaMalloc'd (IPC handles cannot name pool memory) and an event
// with interprocess sharing (which requires disabling timing).
static_assert(sizeof(cudaIpcMemHandle_t) == 64 && sizeof(cudaIpcEventHandle_t) == 64,
              "tmix_ipc_buffer's handles are 64 bytes");

static int cuda_ipc_buffer_new(tmix_backend *be, size_t bytes, tmix_ipc_buffer *out)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int events = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&events, cudaDevAttrIpcEventSupport, st->device));
    if (!events)
        return tmix_fail(TMIX_ENOTSUP, "ipc_buffer_new: %s has no CUDA IPC events (as under MIG "
                         "or confidential computing)", st->name);
    cudaError_t e = device_malloc(st, &out->device, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return tmix_fail(e == cudaErrorMemoryAllocation ? TMIX_ENOMEM : TMIX_ECUDA,
                         "ipc_buffer_new: %zu bytes of device memory on %s: %s", bytes, st->name,
                         cudaGetErrorString(e));
    }
    out->bytes = bytes;
    cudaEvent_t ev = NULL;
    cudaIpcMemHandle_t mh;
    cudaIpcEventHandle_t eh;
    if ((e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming | cudaEventInterprocess)) !=
            cudaSuccess ||
        (e = cudaIpcGetMemHandle(&mh, out->device)) != cudaSuccess ||
        (e = cudaIpcGetEventHandle(&eh, ev)) != cudaSuccess) {
        if (ev)
            (void)cudaEventDestroy(ev);
        (void)cudaFree(out->device);
        (void)cudaGetLastError();
        memset(out, 0, sizeof *out);
        // Refused by the platform, not a fault: a broken context shows at the next op anyway.
        return tmix_fail(TMIX_ENOTSUP, "ipc_buffer_new: CUDA IPC handles on %s: %s", st->name,
                         cudaGetErrorString(e));
    }
    out->event = ev;
    memcpy(out->mem_handle, &mh, sizeof mh);
    memcpy(out->event_handle, &eh, sizeof eh);
    return 0;
}

// cudaMemcpyDefault: unified addressing tells a device source from a host one. The copy waits
// for the buffer's last one, which may still run on another stream (a batch freed unsent gives
// its slot back as soon as its copy is queued).
static int cuda_ipc_buffer_fill(tmix_backend *be, tmix_ipc_buffer *b, const void *src,
                                size_t bytes)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaStreamWaitEvent(st->stream, (cudaEvent_t)b->event, 0));
    CUDA_CHECK(cudaMemcpyAsync(b->device, src, bytes, cudaMemcpyDefault, st->stream));
    CUDA_CHECK(cudaEventRecord((cudaEvent_t)b->event, st->stream));
    return 0;
}

// On the calling thread's legacy stream, after the event: a rare copy (tmixd's loop, for a
// trainer that takes by shm or inline a batch made for cuda delivery only).
static int cuda_ipc_buffer_read(tmix_backend *be, const tmix_ipc_buffer *b, void *dst,
                                size_t bytes)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)b->event));
    CUDA_CHECK(cudaMemcpy(dst, b->device, bytes, cudaMemcpyDeviceToHost));
    return 0;
}

static void cuda_ipc_buffer_free(tmix_backend *be, tmix_ipc_buffer *b)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    if (tmix_cuda_use(st) == cudaSuccess) {
        (void)cudaEventSynchronize((cudaEvent_t)b->event); // its last copy, on any stream
        (void)cudaEventDestroy((cudaEvent_t)b->event);
        (void)cudaFree(b->device);
    }
    (void)cudaGetLastError();
}

static int cuda_pci_bus_id(tmix_backend *be, char *out, size_t size)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(cudaDeviceGetPCIBusId(out, (int)size, st->device));
    return 0;
}

static int cuda_memory_info(tmix_backend *be, size_t *used, size_t *total)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    size_t free_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, total));
    *used = *total - free_bytes;
    return 0;
}

static int cuda_synchronize(tmix_backend *be)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    return 0;
}

// Timing marks for profiles: events on the backend's stream.
static int cuda_mark_new(tmix_backend *be, void **out)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    cudaEvent_t ev;
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaEventCreate(&ev));
    *out = ev;
    return 0;
}

static int cuda_mark_record(tmix_backend *be, void *mark)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaEventRecord((cudaEvent_t)mark, st->stream));
    return 0;
}

static int cuda_mark_elapsed_ms(tmix_backend *be, const void *from, const void *to,
                                double *out)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    float ms;
    CUDA_CHECK(tmix_cuda_use(st));
    CUDA_CHECK(cudaEventElapsedTime(&ms, (cudaEvent_t)from, (cudaEvent_t)to));
    *out = ms;
    return 0;
}

static void cuda_mark_free(tmix_backend *be, void *mark)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    if (tmix_cuda_use(st) != cudaSuccess || cudaEventDestroy((cudaEvent_t)mark) != cudaSuccess)
        (void)cudaGetLastError(); // not the next op's error
}

// Releases whatever part of the backend exists (open calls it on its failure paths too).
static void destroy(cuda_backend *cb)
{
    tmix_cuda_state *st = &cb->st;
    if (st->device >= 0 && tmix_cuda_use(st) == cudaSuccess) {
        if (st->cudnn)
            (void)cudnnDestroy(st->cudnn);
        if (st->stream) {
            (void)cudaStreamSynchronize(st->stream);
            (void)cudaStreamDestroy(st->stream);
        }
        if (st->scratch)
            (void)cudaFree(st->scratch);
    }
    (void)cudaGetLastError();
    free(cb);
}

static void cuda_close(tmix_backend *be)
{
    destroy((cuda_backend *)((char *)be - offsetof(cuda_backend, be)));
}

// ---- the op table ------------------------------------------------------------------------
// Entries left NULL are ops this backend does not have yet: their entry points answer
// TMIX_ENOTSUP.
static tmix_backend_ops make_ops(void)
{
    tmix_backend_ops o;
    memset(&o, 0, sizeof o);
    o.alloc = cuda_alloc;
    o.free = cuda_free;
    o.zero = cuda_zero;
    o.upload = cuda_upload;
    o.download = cuda_download;
    o.synchronize = cuda_synchronize;
    o.host_alloc = cuda_host_alloc;
    o.host_free = cuda_host_free;
    o.ipc_buffer_new = cuda_ipc_buffer_new;
    o.ipc_buffer_fill = cuda_ipc_buffer_fill;
    o.ipc_buffer_read = cuda_ipc_buffer_read;
    o.pci_bus_id = cuda_pci_bus_id;
    o.ipc_buffer_free = cuda_ipc_buffer_free;
    o.memory_info = cuda_memory_info;
    o.upload_async = cuda_upload_async;
    o.download_async = cuda_download_async;
    o.capture_begin = tmix_cuda_capture_begin;
    o.capture_end = tmix_cuda_capture_end;
    o.graph_launch = tmix_cuda_graph_launch;
    o.graph_free = tmix_cuda_graph_free;
    o.mark_new = cuda_mark_new;
    o.mark_record = cuda_mark_record;
    o.mark_elapsed_ms = cuda_mark_elapsed_ms;
    o.mark_free = cuda_mark_free;
    o.close = cuda_close;
    o.set_precision = cuda_set_precision;
    o.layers_new = tmix_cuda_layers_new;
    o.layers_forward = tmix_cuda_layers_forward;
    o.layers_backward = tmix_cuda_layers_backward;
    o.layers_free = tmix_cuda_layers_free;

    o.bias_backward = tmix_cuda_bias_backward;
    o.batchnorm_forward = tmix_cuda_batchnorm_forward;
    o.batchnorm_backward_input = tmix_cuda_batchnorm_backward_input;
    o.relu_forward = tmix_cuda_relu_forward;
    o.relu_backward = tmix_cuda_relu_backward;
    o.avgpool_forward = tmix_cuda_avgpool_forward;
    o.avgpool_backward = tmix_cuda_avgpool_backward;
    o.minmax_normalize_forward = tmix_cuda_minmax_normalize_forward;
    o.softmax_channel_forward = tmix_cuda_softmax_channel_forward;
    o.softmax_channel_backward = tmix_cuda_softmax_channel_backward;
    o.blend_forward = tmix_cuda_blend_forward;
    o.blend_backward = tmix_cuda_blend_backward;
    o.conv2d_forward = tmix_cuda_conv2d_forward;
    o.conv2d_backward_input = tmix_cuda_conv2d_backward_input;
    o.conv2d_backward_weight = tmix_cuda_conv2d_backward_weight;
    o.maxpool2d_forward = tmix_cuda_maxpool2d_forward;
    o.maxpool2d_backward = tmix_cuda_maxpool2d_backward;
    o.linear_forward = tmix_cuda_linear_forward;
    o.linear_backward_input = tmix_cuda_linear_backward_input;
    o.linear_backward_weight = tmix_cuda_linear_backward_weight;
    o.cross_entropy_forward = tmix_cuda_cross_entropy_forward;
    o.cross_entropy_backward = tmix_cuda_cross_entropy_backward;
    o.sgd_update = tmix_cuda_sgd_update;
    o.affine_grid_forward = tmix_cuda_affine_grid_forward;
    o.affine_grid_backward = tmix_cuda_affine_grid_backward;
    o.grid_sample_forward = tmix_cuda_grid_sample_forward;
    o.grid_sample_backward = tmix_cuda_grid_sample_backward;
    o.resize_bilinear_forward = tmix_cuda_resize_bilinear_forward;
    o.preprocess = tmix_cuda_preprocess;
    o.encode_images = tmix_cuda_encode_images;
    o.add = tmix_cuda_add;
    o.concat_channels_forward = tmix_cuda_concat_channels_forward;
    o.concat_channels_backward = tmix_cuda_concat_channels_backward;
    o.fill_channels = tmix_cuda_fill_channels;
    o.gather = tmix_cuda_gather;
    o.cam_forward = tmix_cuda_cam_forward;
    o.box_masks = tmix_cuda_box_masks;
    o.batchnorm_train_forward = tmix_cuda_batchnorm_train_forward;
    o.batchnorm_train_backward = tmix_cuda_batchnorm_train_backward;
    return o;
}

static const tmix_backend_ops cuda_ops = make_ops();

// ---- opening a device --------------------------------------------------------------------

// An empty kernel: asking for its attributes tells whether this build has code the device
// can run (an sm_XX image, or PTX it can compile).
static __global__ void probe_kernel(void) {}

static int open_device(cuda_backend *cb, int device)
{
    tmix_cuda_state *st = &cb->st;
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return tmix_fail(means_no_device(e) ? TMIX_ENODEV : TMIX_ECUDA,
                         "%s: cannot use the GPU: %s (%s from cudaSetDevice)", st->name,
                         cudaGetErrorString(e), cudaGetErrorName(e));
    }
    st->device = device;

    cudaFuncAttributes attr;
    e = cudaFuncGetAttributes(&attr, probe_kernel);
    if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction) {
        (void)cudaGetLastError();
        cudaDeviceProp prop;
        int major = 0, minor = 0;
        if (cudaGetDeviceProperties(&prop, device) == cudaSuccess) {
            major = prop.major;
            minor = prop.minor;
        }
        (void)cudaGetLastError();
        return tmix_fail(TMIX_ENODEV,
                         "%s: this build has no code for the GPU's architecture sm_%d%d "
                         "(rebuild with -Dgpu_arch=...,%d%d): %s",
                         st->name, major, minor, major, minor, cudaGetErrorString(e));
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return tmix_fail(means_no_device(e) ? TMIX_ENODEV : TMIX_ECUDA,
                         "%s: cannot start the GPU: %s (%s)", st->name, cudaGetErrorString(e),
                         cudaGetErrorName(e));
    }

    cudaMemPool_t pool;
    uint64_t keep = UINT64_MAX;
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    CUDA_CHECK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking));
    CUDNN_CHECK(cudnnCreate(&st->cudnn));
    CUDNN_CHECK(cudnnSetStream(st->cudnn, st->stream));
    return 0;
}

// ---- the plugin interface (cuda_plugin.h) ------------------------------------------------

TMIX_CUDA_EXPORT int tmix_cuda_plugin_abi(void)
{
    return TMIX_CUDA_PLUGIN_ABI;
}

// A failing query (no driver, no device) counts as no device at all.
TMIX_CUDA_EXPORT int tmix_cuda_plugin_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

TMIX_CUDA_EXPORT int tmix_cuda_plugin_open(tmix_backend **out, int device)
{
    *out = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        char why[128];
        explain(e, why, sizeof why);
        return tmix_fail(means_no_device(e) ? TMIX_ENODEV : TMIX_ECUDA,
                         "cuda:%d: %s: %s (%s from cudaGetDeviceCount)", device, why,
                         cudaGetErrorString(e), cudaGetErrorName(e));
    }
    if (count == 0)
        return tmix_fail(TMIX_ENODEV, "cuda:%d: the driver sees no GPU", device);
    if (device < 0 || device >= count)
        return tmix_fail(TMIX_ENODEV, "cuda:%d: no such GPU (%d visible, numbered from 0)",
                         device, count);

    cuda_backend *cb = (cuda_backend *)calloc(1, sizeof *cb);
    if (!cb)
        return tmix_fail(TMIX_ENOMEM, "cuda:%d: no host memory for the backend", device);
    cb->st.device = -1; // nothing on the device yet, for destroy
    snprintf(cb->st.name, sizeof cb->st.name, "cuda:%d", device);
    int rc = open_device(cb, device);
    if (rc < 0) {
        destroy(cb);
        return rc;
    }
    cb->be.name = cb->st.name;
    cb->be.device = TMIX_CUDA;
    cb->be.ops = &cuda_ops;
    cb->be.state = &cb->st;
    *out = &cb->be;
    return 0;
}
