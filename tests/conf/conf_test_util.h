// What the conf tests share: a scratch directory, small file helpers and exact-message checks.
#ifndef TMIXD_CONF_TEST_UTIL_H
#define TMIXD_CONF_TEST_UTIL_H

#include "harness.h"

// A fresh directory under $TMPDIR (or /tmp) for this test, and a path inside it (a static
// buffer, valid until the next call).
const char *scratch_dir(void);
const char *scratch_path(const char *name);

// Writes text to path / reads the whole file (malloc'd, NULL when unreadable).
int write_text(const char *path, const char *text);
char *read_text(const char *path);

// 0 when rc is `code` and tmix_last_error() equals want exactly; else prints both, 1.
int check_message_(int rc, int code, const char *want, const char *expr, const char *file,
                   int line);
#define CHECK_MSG(expr, code, want)                                                        \
    do {                                                                                   \
        if (check_message_((expr), (code), (want), #expr, __FILE__, __LINE__) != 0)        \
            return 1;                                                                      \
    } while (0)

#endif
