// The core's test helpers: error-code checks, CPU views, poisoned outputs, random data; the
// runner and CHECK are test_main.h's.
#ifndef TMIX_TEST_HARNESS_H
#define TMIX_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "error.h"
#include "test_main.h"

// Checks that expr returns exactly the error code `code`, and prints its message.
#define CHECK_ERR(expr, code)                                                    \
    do {                                                                         \
        if (check_err_((expr), (code), #expr, __FILE__, __LINE__) != 0)          \
            return 1;                                                            \
    } while (0)

// CHECK_ERR's body: 0 when rc is `code` (printing the message of a failure), else 1 after
// saying what expr (at file:line) returned instead.
int check_err_(int rc, int code, const char *expr, const char *file, int line);

#define CHECK_OK(expr)                                                           \
    do {                                                                         \
        if (check_err_((expr), 0, #expr, __FILE__, __LINE__) != 0)               \
            return 1;                                                            \
    } while (0)

// The number of elements of an array (not of a pointer).
#define COUNT(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))

// CPU float32 views of 1 to 4 dimensions: V4(x, N, C, H, W).
#define V1(d, a) tmix_f32_view(d, 1, (int64_t[]){a})
#define V2(d, a, b) tmix_f32_view(d, 2, (int64_t[]){a, b})
#define V3(d, a, b, c) tmix_f32_view(d, 3, (int64_t[]){a, b, c})
#define V4(d, a, b, c, e) tmix_f32_view(d, 4, (int64_t[]){a, b, c, e})

// The CPU backend (tmix_backend_cpu(), shorter).
tmix_backend *cpu(void);

// Opens GPU 0 into *out: 0; 77 (the test's exit status: skipped) saying why when there is
// no GPU or no CUDA backend; 1 after printing any other failure.
int open_gpu_or_skip(tmix_backend **out);

// The backend a gpu-suite test compares with the CPU: GPU 0 as open_gpu_or_skip opens it
// (same return values), or, when the only argument is --cpu, the CPU itself, so that the
// test's logic runs as a unit test anywhere (*cpu_only tells which).
int open_gpu_or_cpu_twin(int argc, char **argv, tmix_backend **out, bool *cpu_only);

// 0 when ||got - ref|| / ||ref|| <= tol (in double), every got is finite and ref is not all
// 0; prints "<what> norm-wise error E (bound T)", and why on a failure.
int norm_close(const char *what, const float *ref, const float *got, int64_t n, double tol);

// A CPU backend whose op table is empty: every op entry point must answer TMIX_ENOTSUP.
tmix_backend *empty_backend(void);

// t retagged as uint8 / as living on the GPU, for the wrong-dtype and wrong-device checks:
// the call must refuse it before reading a byte.
tmix_tensor as_u8(tmix_tensor t);
tmix_tensor on_cuda(tmix_tensor t);

// Sets the n floats of x to v / tells whether all n equal v.
void fill_const(float *x, int64_t n, float v);
bool all_const(const float *x, int64_t n, float v);

// What a failing call must not write: poured into its outputs before, looked for after.
#define SENTINEL 1234.5f

// The n floats at p: an output buffer of a call that must fail.
typedef struct {
    float *p;
    int64_t n;
} test_buf;

// Fills every buffer of outs[count] with SENTINEL / tells whether they all still hold it.
void poison(const test_buf *outs, int64_t count);
bool intact(const test_buf *outs, int64_t count);

// Expects expr to fail with exactly `code` and a message naming `op`, and to leave every
// buffer of the array `outs` (a test_buf array, filled with SENTINEL first) as it was.
#define EXPECT_FAIL(expr, code, op, outs)                                        \
    do {                                                                         \
        _Static_assert(sizeof(outs) >= sizeof(test_buf), "outs: an array");      \
        poison(outs, COUNT(outs));                                               \
        if (check_err_((expr), (code), #expr, __FILE__, __LINE__) != 0)          \
            return 1;                                                            \
        CHECK(strstr(tmix_last_error(), op) != NULL);                            \
        if (!intact(outs, COUNT(outs))) {                                        \
            fprintf(stderr, "%s:%d: %s wrote to an output of the failed call\n", \
                    __FILE__, __LINE__, #expr);                                  \
            return 1;                                                            \
        }                                                                        \
    } while (0)

// Files a test writes: tmp_path(name) is /tmp/tmix-test-XXXXXX/name in a static buffer (the
// directory is made on the first call after tmp_remove; NULL when it cannot be), and
// tmp_remove(path) removes that file and the directory.
const char *tmp_path(const char *name);
void tmp_remove(const char *path);

// Uniform floats in [lo, hi) from a 64-bit seed (splitmix64), the same on every machine.
void fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi);

// sum_i a[i] * b[i] in double: the scalar loss L = <out, r> whose gradient w.r.t. out is r.
double dot(const float *a, const float *b, int64_t n);

// Central finite differences of a scalar loss (evaluated in double by loss(ctx) from the
// current contents of x): for every coordinate of x (or 256 chosen from a fixed seed when x
// is larger) compares analytic[i] with (L(x + h e_i) - L(x - h e_i)) / 2h and requires
// |analytic - numeric| <= atol + rtol * |numeric| (a NaN on either side fails). Restores x.
// Prints the first mismatches and returns 0 when all pass, 1 otherwise.
int gradcheck(const char *what, float *x, int64_t n, const float *analytic,
              double (*loss)(void *ctx), void *ctx, double h, double atol, double rtol);

// The loss L = <out, r> of a gradcheck over the n floats at out. forward(self) recomputes
// out from the current inputs; a test's problem struct starts with its test_loss, so that
// forward can cast self back to it. A forward call that fails is recorded in `failed`.
typedef struct test_loss {
    int (*forward)(struct test_loss *self);
    const float *out, *r;
    int64_t n;
    bool failed;
} test_loss;

// gradcheck() of l's loss with respect to x, failing also when a forward call failed (its
// message is printed) instead of comparing against a loss that was never computed.
int gradcheck_loss(const char *what, float *x, int64_t n, const float *analytic,
                   test_loss *l, double h, double atol, double rtol);

#endif
