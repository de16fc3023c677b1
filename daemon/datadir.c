// Run-time data directories (datadir.h).
#include "datadir.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"

static const struct {
    const char *env, *name, *installed, *source;
} kinds[] = {
    [TMIXD_DATA_GOLDEN] = {"TMIX_GOLDEN_DIR", "golden", TMIX_DATADIR "/golden",
                           TMIX_SOURCE_ROOT "/tests/golden"},
    [TMIXD_DATA_ZOO] = {"TMIX_ZOO_DIR", "zoo", TMIX_DATADIR "/zoo", TMIX_SOURCE_ROOT "/models/zoo"},
};

// share/tmix/NAME beside the executable, into buf ("" when /proc/self/exe cannot be read).
static void beside_exe(const char *name, char *buf, size_t n)
{
    char exe[PATH_MAX];
    buf[0] = 0;
    const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return;
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return;
    *slash = 0;
    snprintf(buf, n, "%s/../share/tmix/%s", exe, name);
}

const char *tmixd_data_dir(tmixd_data_kind kind, char *buf, size_t n)
{
    const char *env = getenv(kinds[kind].env);
    if (env && *env) {
        snprintf(buf, n, "%s", env);
        return buf;
    }
    beside_exe(kinds[kind].name, buf, n);
    if (buf[0] && access(buf, R_OK) == 0)
        return buf;
    const char *dir = access(kinds[kind].installed, R_OK) == 0 ? kinds[kind].installed
                                                               : kinds[kind].source;
    snprintf(buf, n, "%s", dir);
    return buf;
}

int tmixd_data_resolve(const char *value, char *buf, size_t n)
{
    if (strncmp(value, "zoo:", 4) != 0) {
        snprintf(buf, n, "%s", value);
        return 0;
    }
    char dir[PATH_MAX];
    tmixd_data_dir(TMIXD_DATA_ZOO, dir, sizeof dir);
    snprintf(buf, n, "%s/%s", dir, value + 4);
    if (access(buf, R_OK) != 0)
        return tmix_fail(TMIX_ENOENT, "%s: no %s (set $TMIX_ZOO_DIR, or install tmix's zoo)",
                         value, buf);
    return 0;
}
