// One table of error codes for all of tmix (libuv style): the enum, tmix_strerror and
// tmix_err_name all come from TMIX_ERRORS. Every failing call also leaves a sentence in a
// thread-local buffer (tmix_last_error) that names the operation and the offending input,
// e.g. "conv2d_forward: in (2,3,5,5) has 3 channels but weight (4,2,3,3) expects 2".
#ifndef TMIX_ERROR_H
#define TMIX_ERROR_H

#define TMIX_ERRORS(X)                                                   \
    X(OK,      0,  "success")                                             \
    X(EINVAL,  -1, "invalid argument")                                    \
    X(ESHAPE,  -2, "tensor shape mismatch")                               \
    X(EDTYPE,  -3, "unsupported tensor dtype")                            \
    X(EDEVICE, -4, "tensor on the wrong device")                          \
    X(ENOMEM,  -5, "out of memory")                                       \
    X(EIO,     -6, "input/output error")                                  \
    X(EFORMAT, -7, "malformed file")                                      \
    X(ENOTSUP, -8, "operation not supported by this backend")             \
    X(ENODEV,  -9, "no GPU device available")                             \
    X(ECUDA,   -10, "CUDA error")                                         \
    X(ECUDNN,  -11, "cuDNN error")                                        \
    X(ENOENT,  -12, "not found")

typedef enum {
#define TMIX_ERR_ENUM(name, code, text) TMIX_##name = code,
    TMIX_ERRORS(TMIX_ERR_ENUM)
#undef TMIX_ERR_ENUM
} tmix_err;

const char *tmix_strerror(int err);
const char *tmix_err_name(int err);

// Records a detail message (printf-style) for the calling thread and returns err, so that
// failing paths read `return tmix_fail(TMIX_ESHAPE, "op: ...", ...);`.
int tmix_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// The detail message of the last failure on this thread ("" when none).
const char *tmix_last_error(void);

// Propagates a failure: evaluates expr once and returns its code when negative.
#define TMIX_TRY(expr)              \
    do {                            \
        int tmix_try_rc_ = (expr);  \
        if (tmix_try_rc_ < 0)       \
            return tmix_try_rc_;    \
    } while (0)

#endif
