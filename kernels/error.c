#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

const char *tmix_strerror(int err)
{
    switch (err) {
#define TMIX_ERR_TEXT(name, code, text) case code: return text;
        TMIX_ERRORS(TMIX_ERR_TEXT)
#undef TMIX_ERR_TEXT
    }
    return "unknown error";
}

const char *tmix_err_name(int err)
{
    switch (err) {
#define TMIX_ERR_NAME(name, code, text) case code: return "TMIX_" #name;
        TMIX_ERRORS(TMIX_ERR_NAME)
#undef TMIX_ERR_NAME
    }
    return "TMIX_UNKNOWN";
}

int tmix_fail(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return err;
}

const char *tmix_last_error(void)
{
    return last_error;
}
