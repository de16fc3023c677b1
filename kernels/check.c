#include "check.h"

#include <stdio.h>

int tmix_check_backend(const char *op, const tmix_backend *be, bool has_op)
{
    if (!be)
        return tmix_fail(TMIX_EINVAL, "%s: backend is NULL", op);
    if (!has_op)
        return tmix_fail(TMIX_ENOTSUP, "%s: not implemented by the %s backend", op, be->name);
    return 0;
}

int tmix_check_tensor(const char *op, const char *name, const tmix_tensor *t,
                      const tmix_backend *be, tmix_dtype dtype, int ndim)
{
    char s[96];
    if (!t)
        return tmix_fail(TMIX_EINVAL, "%s: %s is NULL", op, name);
    if (t->ndim < 1 || t->ndim > TMIX_MAX_DIMS)
        return tmix_fail(TMIX_ESHAPE, "%s: %s has %d dimensions (1 to %d allowed)", op, name,
                         t->ndim, TMIX_MAX_DIMS);
    if (ndim >= 0 && t->ndim != ndim)
        return tmix_fail(TMIX_ESHAPE, "%s: %s is %s, expected %d dimensions", op, name,
                         tmix_shape_str(t, s, sizeof s), ndim);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] <= 0)
            return tmix_fail(TMIX_ESHAPE, "%s: %s is %s, every dimension must be positive", op,
                             name, tmix_shape_str(t, s, sizeof s));
    if (t->dtype != dtype)
        return tmix_fail(TMIX_EDTYPE, "%s: %s is %s, expected %s", op, name,
                         tmix_dtype_name(t->dtype), tmix_dtype_name(dtype));
    if (t->device != be->device)
        return tmix_fail(TMIX_EDEVICE, "%s: %s is on %s, the backend is %s", op, name,
                         tmix_device_name(t->device), be->name);
    if (!t->data)
        return tmix_fail(TMIX_EINVAL, "%s: %s %s has no data", op, name,
                         tmix_shape_str(t, s, sizeof s));
    return 0;
}

int tmix_check_shape(const char *op, const char *name, const tmix_tensor *t,
                     const tmix_backend *be, tmix_dtype dtype, int ndim, const int64_t *expect)
{
    TMIX_TRY(tmix_check_tensor(op, name, t, be, dtype, ndim));
    for (int i = 0; i < ndim; i++) {
        if (expect[i] >= 0 && t->shape[i] != expect[i]) {
            char s[96], e[96];
            size_t at = 0;
            at += (size_t)snprintf(e + at, sizeof e - at, "(");
            for (int j = 0; j < ndim && at < sizeof e; j++) {
                if (expect[j] < 0)
                    at += (size_t)snprintf(e + at, sizeof e - at, j ? ",*" : "*");
                else
                    at += (size_t)snprintf(e + at, sizeof e - at, j ? ",%lld" : "%lld",
                                           (long long)expect[j]);
            }
            if (at < sizeof e)
                snprintf(e + at, sizeof e - at, ")");
            return tmix_fail(TMIX_ESHAPE, "%s: %s is %s, expected %s", op, name,
                             tmix_shape_str(t, s, sizeof s), e);
        }
    }
    return 0;
}

int tmix_check_same_shape(const char *op, const char *aname, const tmix_tensor *a,
                          const char *bname, const tmix_tensor *b)
{
    if (tmix_tensor_same_shape(a, b))
        return 0;
    char sa[96], sb[96];
    return tmix_fail(TMIX_ESHAPE, "%s: %s is %s but %s is %s; they must match", op, bname,
                     tmix_shape_str(b, sb, sizeof sb), aname, tmix_shape_str(a, sa, sizeof sa));
}
