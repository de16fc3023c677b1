// The tensor: a dtype, a device tag, up to four dimensions (NCHW for images) and a pointer
// that the tensor either owns (allocated by a backend) or borrows (a view of someone else's
// memory). Tensors are always contiguous, row-major.
#ifndef TMIX_TENSOR_H
#define TMIX_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TMIX_MAX_DIMS 4

typedef enum { TMIX_F32 = 0, TMIX_U8 = 1 } tmix_dtype;
typedef enum { TMIX_CPU = 0, TMIX_CUDA = 1 } tmix_device;

typedef struct tmix_tensor {
    void *data;
    tmix_dtype dtype;
    tmix_device device;
    int ndim;
    int64_t shape[TMIX_MAX_DIMS];
    bool owned;
} tmix_tensor;

// A borrowed view of `data` with the given shape. Never fails; an invalid shape is caught
// by the op that receives the tensor.
tmix_tensor tmix_tensor_view(void *data, tmix_dtype dtype, tmix_device device, int ndim,
                             const int64_t *shape);

// Shorthand for CPU float32 views: tmix_f32_view(ptr, 4, (int64_t[]){N, C, H, W}).
static inline tmix_tensor tmix_f32_view(float *data, int ndim, const int64_t *shape)
{
    return tmix_tensor_view(data, TMIX_F32, TMIX_CPU, ndim, shape);
}

int64_t tmix_tensor_numel(const tmix_tensor *t);
size_t tmix_dtype_size(tmix_dtype dtype);
size_t tmix_tensor_bytes(const tmix_tensor *t);
bool tmix_tensor_same_shape(const tmix_tensor *a, const tmix_tensor *b);
const char *tmix_dtype_name(tmix_dtype dtype);
const char *tmix_device_name(tmix_device device);

// Writes "(2,3,5,5)" into buf and returns buf; "NULL" for a null tensor.
char *tmix_shape_str(const tmix_tensor *t, char *buf, size_t size);

static inline float *tmix_f32(const tmix_tensor *t)
{
    return (float *)t->data;
}

#endif
