// A small test harness (libuv style): each test program has a table of {name, fn}; meson
// runs one process per test name (`prog NAME`), `prog` alone runs all, `prog --list` lists.
// A test returns 0 to pass, 77 to skip, anything else to fail; CHECK prints the failing
// expression with file and line and fails the test.
#ifndef TMIX_TEST_HARNESS_H
#define TMIX_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>

#include "error.h"

typedef struct {
    const char *name;
    int (*fn)(void);
} test_case;

int test_main(int argc, char **argv, const test_case *tests);

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                            \
        }                                                                        \
    } while (0)

// Checks that expr returns exactly the error code `code`, and prints its message.
#define CHECK_ERR(expr, code)                                                    \
    do {                                                                         \
        int check_rc_ = (expr);                                                  \
        if (check_rc_ != (code)) {                                               \
            fprintf(stderr, "%s:%d: %s returned %s (%s), expected %s\n", __FILE__, \
                    __LINE__, #expr, tmix_err_name(check_rc_), tmix_last_error(),  \
                    tmix_err_name(code));                                        \
            return 1;                                                            \
        }                                                                        \
        if (check_rc_ < 0)                                                       \
            printf("  %s -> %s: %s\n", #expr, tmix_err_name(check_rc_), tmix_last_error()); \
    } while (0)

#define CHECK_OK(expr) CHECK_ERR(expr, 0)

// Uniform floats in [lo, hi) from a 64-bit seed (splitmix64), the same on every machine.
void fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi);

// sum_i a[i] * b[i] in double: the scalar loss L = <out, r> whose gradient w.r.t. out is r.
double dot(const float *a, const float *b, int64_t n);

// Central finite differences of a scalar loss (evaluated in double by loss(ctx) from the
// current contents of x): for every coordinate of x (or 256 chosen from a fixed seed when x
// is larger) compares analytic[i] with (L(x + h e_i) - L(x - h e_i)) / 2h and requires
// |analytic - numeric| <= atol + rtol * |numeric|. Restores x. Prints the first mismatches
// and returns 0 when all pass, 1 otherwise.
int gradcheck(const char *what, float *x, int64_t n, const float *analytic,
              double (*loss)(void *ctx), void *ctx, double h, double atol, double rtol);

#endif
