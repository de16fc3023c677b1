// libtmix's error table (TMIX_CLIENT_ERRORS in tmix.h) and its error sentences.
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

const char *tmix_strerror(int err)
{
    switch (err) {
#define TMIX_CLIENT_ERR_TEXT(name, code, text)                                                     \
    case code:                                                                                     \
        return text;
        TMIX_CLIENT_ERRORS(TMIX_CLIENT_ERR_TEXT)
#undef TMIX_CLIENT_ERR_TEXT
    }
    return "unknown error";
}

const char *tmix_err_name(int err)
{
    switch (err) {
#define TMIX_CLIENT_ERR_NAME(name, code, text)                                                     \
    case code:                                                                                     \
        return "TMIX_" #name;
        TMIX_CLIENT_ERRORS(TMIX_CLIENT_ERR_NAME)
#undef TMIX_CLIENT_ERR_NAME
    }
    return "TMIX_E?";
}

int tmixi_fail(char *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, TMIXI_ERR_LEN, fmt, ap);
    va_end(ap);
    return code;
}

char *tmixi_thread_error(void)
{
    static _Thread_local char err[TMIXI_ERR_LEN];
    return err;
}
