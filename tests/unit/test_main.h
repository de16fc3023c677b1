// The runner of every test program (libuv style): a table of {name, fn}; meson runs one
// process per test name (`prog NAME`), `prog` alone runs all, `prog --list` lists them. A
// test returns 0 to pass, 77 to skip, anything else to fail. No tmix header is included, so
// that libtmix's tests (tmix.h) and the core's (kernels/error.h) can both use it.
#ifndef TMIX_TEST_MAIN_H
#define TMIX_TEST_MAIN_H

#include <stdio.h>

typedef struct {
    const char *name;
    int (*fn)(void);
} test_case;

// Runs the test named argv[1] (all of them without one); 0 when all pass, 77 when all skip.
int test_main(int argc, char **argv, const test_case *tests);

// Fails the test, printing the expression with file and line, unless cond holds.
#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                            \
        }                                                                        \
    } while (0)

#endif
