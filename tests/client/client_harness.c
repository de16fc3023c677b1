#include "client_harness.h"

int check_rc_(int rc, int code, const tmix_client *c, const char *expr, const char *file, int line)
{
    if (rc != code) {
        fprintf(stderr, "%s:%d: %s returned %s (%s), expected %s\n", file, line, expr,
                tmix_err_name(rc), tmix_client_error(c), tmix_err_name(code));
        return 1;
    }
    if (rc < 0)
        printf("  %s -> %s: %s\n", expr, tmix_err_name(rc), tmix_client_error(c));
    return 0;
}
