#include "tensor.h"

#include <stdio.h>
#include <string.h>

tmix_tensor tmix_tensor_view(void *data, tmix_dtype dtype, tmix_device device, int ndim,
                             const int64_t *shape)
{
    tmix_tensor t = {.data = data, .dtype = dtype, .device = device, .ndim = ndim};
    for (int i = 0; i < ndim && i < TMIX_MAX_DIMS; i++)
        t.shape[i] = shape[i];
    return t;
}

int64_t tmix_tensor_numel(const tmix_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t tmix_dtype_size(tmix_dtype dtype)
{
    return dtype == TMIX_U8 ? 1 : 4;
}

size_t tmix_tensor_bytes(const tmix_tensor *t)
{
    return (size_t)tmix_tensor_numel(t) * tmix_dtype_size(t->dtype);
}

bool tmix_tensor_same_shape(const tmix_tensor *a, const tmix_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

const char *tmix_dtype_name(tmix_dtype dtype)
{
    return dtype == TMIX_U8 ? "u8" : dtype == TMIX_F32 ? "f32" : "?";
}

const char *tmix_device_name(tmix_device device)
{
    return device == TMIX_CUDA ? "cuda" : device == TMIX_CPU ? "cpu" : "?";
}

char *tmix_shape_str(const tmix_tensor *t, char *buf, size_t size)
{
    if (!t) {
        snprintf(buf, size, "NULL");
        return buf;
    }
    size_t at = 0;
    at += (size_t)snprintf(buf + at, size - at, "(");
    for (int i = 0; i < t->ndim && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (at < size)
        snprintf(buf + at, size - at, ")");
    return buf;
}
