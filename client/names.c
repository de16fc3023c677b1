// Names and element sizes of the protocol's enums, as tmix.h exposes them.
#include "internal.h"

// tmix.h promises the proto's values; a renumbered proto must fail to build here.
_Static_assert(TMIX_MODE_SHARD == (int)TMIX__GROUP_MODE__SHARD &&
                   TMIX_MODE_BROADCAST == (int)TMIX__GROUP_MODE__BROADCAST,
               "tmix.h modes differ from proto GroupMode");
_Static_assert(TMIX_DTYPE_FLOAT32 == (int)TMIX__DTYPE__FLOAT32 &&
                   TMIX_DTYPE_FLOAT16 == (int)TMIX__DTYPE__FLOAT16 &&
                   TMIX_DTYPE_UINT8 == (int)TMIX__DTYPE__UINT8,
               "tmix.h dtypes differ from proto DType");
_Static_assert(TMIX_LAYOUT_NCHW == (int)TMIX__LAYOUT__NCHW &&
                   TMIX_LAYOUT_NHWC == (int)TMIX__LAYOUT__NHWC,
               "tmix.h layouts differ from proto Layout");
_Static_assert(TMIX_DELIVERY_INLINE == (int)TMIX__DELIVERY__INLINE &&
                   TMIX_DELIVERY_SHM == (int)TMIX__DELIVERY__SHM &&
                   TMIX_DELIVERY_CUDA == (int)TMIX__DELIVERY__CUDA,
               "tmix.h deliveries differ from proto Delivery");

static const char *pick(const char *const *names, int count, int v)
{
    return v >= 0 && v < count ? names[v] : "?";
}

const char *tmix_mode_name(int mode)
{
    static const char *const names[] = {"default", "shard", "broadcast"};
    return pick(names, 3, mode);
}

const char *tmix_dtype_name(int dtype)
{
    static const char *const names[] = {"default", "float32", "float16", "uint8"};
    return pick(names, 4, dtype);
}

const char *tmix_layout_name(int layout)
{
    static const char *const names[] = {"default", "nchw", "nhwc"};
    return pick(names, 3, layout);
}

const char *tmix_delivery_name(int delivery)
{
    static const char *const names[] = {"default", "inline", "shm", "cuda"};
    return pick(names, 4, delivery);
}

size_t tmix_dtype_size(int dtype)
{
    switch (dtype) {
    case TMIX_DTYPE_FLOAT32:
        return 4;
    case TMIX_DTYPE_FLOAT16:
        return 2;
    case TMIX_DTYPE_UINT8:
        return 1;
    }
    return 0;
}
