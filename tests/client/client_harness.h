// The checks of the libtmix tests, on libtmix alone (tmix.h and tmix's core,
// kernels/error.h, share names and never meet in one program); the runner is
// tests/unit/test_main.h's.
#ifndef TMIX_CLIENT_HARNESS_H
#define TMIX_CLIENT_HARNESS_H

#include <stdio.h>
#include <string.h>

#include "test_main.h"
#include "tmix.h"

// Checks that expr returns exactly `code`; prints c's error sentence (c NULL: the thread's).
#define CHECK_RC(expr, code, c)                                                                    \
    do {                                                                                           \
        if (check_rc_((expr), (code), (c), #expr, __FILE__, __LINE__) != 0)                        \
            return 1;                                                                              \
    } while (0)

int check_rc_(int rc, int code, const tmix_client *c, const char *expr, const char *file, int line);

// Checks that the sentence s contains `part`.
#define CHECK_SAYS(s, part)                                                                        \
    do {                                                                                           \
        if (!strstr((s), (part))) {                                                                \
            fprintf(stderr, "%s:%d: '%s' does not say '%s'\n", __FILE__, __LINE__, (s), (part));   \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#endif
