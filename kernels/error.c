#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
    // Formatted aside first: callers wrap the last message, tmix_fail(rc, "%s: %s", path,
    // tmix_last_error()), and vsnprintf must not read the buffer it writes.
    char text[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(last_error, text, sizeof text);
    return err;
}

const char *tmix_last_error(void)
{
    return last_error;
}
