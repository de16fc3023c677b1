// Argument checks shared by every op entry point. Each returns 0, or a negative TMIX_* code
// after recording a message that starts with the op name and names the argument and its
// shape, e.g. "conv2d_forward: out is (2,4,3,3), expected (2,4,2,2)".
#ifndef TMIX_CHECK_H
#define TMIX_CHECK_H

#include "backend.h"
#include "error.h"
#include "profile.h"
#include "tensor.h"

// be is non-null and has the op (has_op is `be->ops->entry != NULL`).
int tmix_check_backend(const char *op, const tmix_backend *be, bool has_op);
#define TMIX_CHECK_BACKEND(op, be, entry) \
    TMIX_TRY(tmix_check_backend(op, be, (be) && (be)->ops->entry))

// Hands the checked call to the backend, `return be->ops->entry(be, ...)`, timed while a
// profile is on (profile.h).
#define TMIX_CALL(op, be, entry, ...)                                                      \
    do {                                                                                   \
        if (!tmix_profile_on)                                                              \
            return (be)->ops->entry((be), __VA_ARGS__);                                    \
        const int call_ = tmix_profile_enter(be);                                          \
        const int rc_ = (be)->ops->entry((be), __VA_ARGS__);                               \
        tmix_profile_leave(op, call_, rc_);                                                \
        return rc_;                                                                        \
    } while (0)

// t is non-null, of the dtype, on be's device, with ndim dimensions (any ndim from 1 to
// TMIX_MAX_DIMS when ndim < 0), every dimension > 0, and data non-null.
int tmix_check_tensor(const char *op, const char *name, const tmix_tensor *t,
                      const tmix_backend *be, tmix_dtype dtype, int ndim);

// tmix_check_tensor, then each dimension against expect[i] (-1 accepts any size).
int tmix_check_shape(const char *op, const char *name, const tmix_tensor *t,
                     const tmix_backend *be, tmix_dtype dtype, int ndim, const int64_t *expect);

// b has exactly a's shape (both already checked).
int tmix_check_same_shape(const char *op, const char *aname, const tmix_tensor *a,
                          const char *bname, const tmix_tensor *b);

#endif
