// Memory entry points of ops.h: checked, then dispatched to the tensor's backend.
#include "check.h"
#include "ops.h"

#include <stdlib.h>
#include <string.h>

int tmix_tensor_alloc(tmix_backend *be, tmix_tensor *t, tmix_dtype dtype, int ndim,
                      const int64_t *shape)
{
    static const char op[] = "tensor_alloc";
    TMIX_CHECK_BACKEND(op, be, alloc);
    if (!t || !shape)
        return tmix_fail(TMIX_EINVAL, "%s: tensor or shape is NULL", op);
    if (ndim < 1 || ndim > TMIX_MAX_DIMS)
        return tmix_fail(TMIX_ESHAPE, "%s: %d dimensions (1 to %d allowed)", op, ndim,
                         TMIX_MAX_DIMS);
    *t = tmix_tensor_view(NULL, dtype, be->device, ndim, shape);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0 || numel > INT64_MAX / 8 / shape[i])
            return tmix_fail(TMIX_ESHAPE, "%s: dimension %d is %lld", op, i,
                             (long long)shape[i]);
        numel *= shape[i];
    }
    TMIX_TRY(be->ops->alloc(be, t));
    t->owned = true;
    return 0;
}

void tmix_tensor_free(tmix_backend *be, tmix_tensor *t)
{
    if (!t)
        return;
    if (t->owned && t->data && be && be->ops->free)
        be->ops->free(be, t);
    memset(t, 0, sizeof *t);
}

int tmix_tensor_zero(tmix_backend *be, tmix_tensor *t)
{
    static const char op[] = "tensor_zero";
    TMIX_CHECK_BACKEND(op, be, zero);
    TMIX_TRY(tmix_check_tensor(op, "t", t, be, t ? t->dtype : TMIX_F32, -1));
    TMIX_CALL(op, be, zero, t);
}

int tmix_tensor_upload(tmix_backend *be, tmix_tensor *dst, const void *src)
{
    static const char op[] = "tensor_upload";
    TMIX_CHECK_BACKEND(op, be, upload);
    TMIX_TRY(tmix_check_tensor(op, "dst", dst, be, dst ? dst->dtype : TMIX_F32, -1));
    if (!src)
        return tmix_fail(TMIX_EINVAL, "%s: src is NULL", op);
    TMIX_CALL(op, be, upload, dst, src);
}

int tmix_tensor_download(tmix_backend *be, void *dst, const tmix_tensor *src)
{
    static const char op[] = "tensor_download";
    TMIX_CHECK_BACKEND(op, be, download);
    TMIX_TRY(tmix_check_tensor(op, "src", src, be, src ? src->dtype : TMIX_F32, -1));
    if (!dst)
        return tmix_fail(TMIX_EINVAL, "%s: dst is NULL", op);
    TMIX_CALL(op, be, download, dst, src);
}

int tmix_tensor_upload_async(tmix_backend *be, tmix_tensor *dst, const void *src)
{
    static const char op[] = "tensor_upload_async";
    if (!be || !be->ops->upload_async)
        return tmix_tensor_upload(be, dst, src);
    TMIX_TRY(tmix_check_tensor(op, "dst", dst, be, dst ? dst->dtype : TMIX_F32, -1));
    if (!src)
        return tmix_fail(TMIX_EINVAL, "%s: src is NULL", op);
    TMIX_CALL(op, be, upload_async, dst, src);
}

int tmix_tensor_download_async(tmix_backend *be, void *dst, const tmix_tensor *src)
{
    static const char op[] = "tensor_download_async";
    if (!be || !be->ops->download_async)
        return tmix_tensor_download(be, dst, src);
    TMIX_TRY(tmix_check_tensor(op, "src", src, be, src ? src->dtype : TMIX_F32, -1));
    if (!dst)
        return tmix_fail(TMIX_EINVAL, "%s: dst is NULL", op);
    TMIX_CALL(op, be, download_async, dst, src);
}

int tmix_synchronize(tmix_backend *be)
{
    TMIX_CHECK_BACKEND("synchronize", be, synchronize);
    return be->ops->synchronize(be);
}

int tmix_host_alloc(tmix_backend *be, size_t bytes, void **out)
{
    static const char op[] = "host_alloc";
    if (!out)
        return tmix_fail(TMIX_EINVAL, "%s: out is NULL", op);
    *out = NULL;
    if (!be)
        return tmix_fail(TMIX_EINVAL, "%s: backend is NULL", op);
    if (be->ops->host_alloc)
        return be->ops->host_alloc(be, bytes ? bytes : 1, out);
    *out = malloc(bytes ? bytes : 1);
    return *out ? 0 : tmix_fail(TMIX_ENOMEM, "%s: %zu bytes of host memory", op, bytes);
}

int tmix_ipc_buffer_new(tmix_backend *be, size_t bytes, tmix_ipc_buffer *out)
{
    static const char op[] = "ipc_buffer_new";
    if (!out)
        return tmix_fail(TMIX_EINVAL, "%s: out is NULL", op);
    memset(out, 0, sizeof *out);
    TMIX_CHECK_BACKEND(op, be, ipc_buffer_new);
    if (!bytes)
        return tmix_fail(TMIX_EINVAL, "%s: 0 bytes", op);
    return be->ops->ipc_buffer_new(be, bytes, out);
}

int tmix_pci_bus_id(tmix_backend *be, char *out, size_t size)
{
    static const char op[] = "pci_bus_id";
    if (!out || size < 16)
        return tmix_fail(TMIX_EINVAL, "%s: a buffer of %zu bytes (at least 16)", op, size);
    TMIX_CHECK_BACKEND(op, be, pci_bus_id);
    return be->ops->pci_bus_id(be, out, size);
}

int tmix_memory_info(tmix_backend *be, size_t *used, size_t *total)
{
    static const char op[] = "memory_info";
    if (!used || !total)
        return tmix_fail(TMIX_EINVAL, "%s: a NULL output", op);
    TMIX_CHECK_BACKEND(op, be, memory_info);
    return be->ops->memory_info(be, used, total);
}

// The arguments of a copy of `bytes` between IPC buffer b and host memory p.
static int check_ipc_copy(const char *op, const tmix_ipc_buffer *b, const void *p, size_t bytes)
{
    if (!b || !b->device || !p || bytes > b->bytes)
        return tmix_fail(TMIX_EINVAL, "%s: %zu bytes with a buffer of %zu%s", op, bytes,
                         b ? b->bytes : 0, !b || !b->device || !p ? " (or a NULL pointer)" : "");
    return 0;
}

int tmix_ipc_buffer_fill(tmix_backend *be, tmix_ipc_buffer *b, const void *src, size_t bytes)
{
    static const char op[] = "ipc_buffer_fill";
    TMIX_CHECK_BACKEND(op, be, ipc_buffer_fill);
    TMIX_TRY(check_ipc_copy(op, b, src, bytes));
    return be->ops->ipc_buffer_fill(be, b, src, bytes);
}

int tmix_ipc_buffer_read(tmix_backend *be, const tmix_ipc_buffer *b, void *dst, size_t bytes)
{
    static const char op[] = "ipc_buffer_read";
    TMIX_CHECK_BACKEND(op, be, ipc_buffer_read);
    TMIX_TRY(check_ipc_copy(op, b, dst, bytes));
    return be->ops->ipc_buffer_read(be, b, dst, bytes);
}

void tmix_ipc_buffer_free(tmix_backend *be, tmix_ipc_buffer *b)
{
    if (!be || !b || !b->device || !be->ops->ipc_buffer_free)
        return;
    be->ops->ipc_buffer_free(be, b);
    memset(b, 0, sizeof *b);
}

void tmix_host_free(tmix_backend *be, void *p)
{
    if (!p || !be)
        return;
    if (be->ops->host_free)
        be->ops->host_free(be, p);
    else
        free(p);
}

bool tmix_backend_has_graphs(const tmix_backend *be)
{
    return be && be->ops->capture_begin && be->ops->capture_end && be->ops->graph_launch &&
           be->ops->graph_free;
}

int tmix_capture_begin(tmix_backend *be)
{
    static const char op[] = "capture_begin";
    TMIX_CHECK_BACKEND(op, be, capture_begin);
    if (tmix_profile_on) // its marks would be recorded into the graph
        return tmix_fail(TMIX_EINVAL, "%s on %s: a profile is on; graphs are not recorded "
                         "while ops are timed", op, be->name);
    return be->ops->capture_begin(be);
}

int tmix_capture_end(tmix_backend *be, tmix_graph **out)
{
    static const char op[] = "capture_end";
    if (!out)
        return tmix_fail(TMIX_EINVAL, "%s: out is NULL", op);
    *out = NULL;
    TMIX_CHECK_BACKEND(op, be, capture_end);
    return be->ops->capture_end(be, out);
}

int tmix_graph_launch(tmix_backend *be, tmix_graph *g)
{
    static const char op[] = "graph_launch";
    TMIX_CHECK_BACKEND(op, be, graph_launch);
    if (!g)
        return tmix_fail(TMIX_EINVAL, "%s: graph is NULL", op);
    return be->ops->graph_launch(be, g);
}

void tmix_graph_free(tmix_backend *be, tmix_graph *g)
{
    if (g && be && be->ops->graph_free)
        be->ops->graph_free(be, g);
}
