#include "paths.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "error.h"

static int format_path(char *buf, size_t n, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int format_path(char *buf, size_t n, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= n)
        return tmix_fail(TMIX_EINVAL, "default %s: longer than %zu bytes", what, n - 1);
    return 0;
}

// XDG base directories must be absolute; a relative one is ignored, as the spec says.
static bool usable(const char *dir)
{
    return dir != NULL && dir[0] == '/';
}

int tmixd_endpoint_for(unsigned uid, const char *runtime_dir, char *buf, size_t n)
{
    if (uid == 0)
        return format_path(buf, n, "endpoint", "ipc:///run/tmix/tmixd.sock");
    if (usable(runtime_dir))
        return format_path(buf, n, "endpoint", "ipc://%s/tmix/tmixd.sock", runtime_dir);
    return format_path(buf, n, "endpoint", "ipc:///tmp/tmix-%u/tmixd.sock", uid);
}

int tmixd_state_dir_for(unsigned uid, const char *state_home, const char *home, char *buf,
                        size_t n)
{
    if (uid == 0)
        return format_path(buf, n, "state directory", "/var/lib/tmix");
    if (usable(state_home))
        return format_path(buf, n, "state directory", "%s/tmix", state_home);
    if (usable(home))
        return format_path(buf, n, "state directory", "%s/.local/state/tmix", home);
    return tmix_fail(TMIX_EINVAL, "default state directory: neither XDG_STATE_HOME nor HOME is "
                     "set; set [server] state_dir");
}

int tmixd_default_endpoint(char *buf, size_t n)
{
    return tmixd_endpoint_for((unsigned)geteuid(), getenv("XDG_RUNTIME_DIR"), buf, n);
}

int tmixd_default_state_dir(char *buf, size_t n)
{
    return tmixd_state_dir_for((unsigned)geteuid(), getenv("XDG_STATE_HOME"), getenv("HOME"),
                               buf, n);
}
