#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "log.h"

// A failed notification is logged once: the service manager then restarts or times us out,
// and the log says why, but a socket that went away must not flood the log.
static void notify(const char *message)
{
    static int warned;
    const int rc = sd_notify(0, message);
    if (rc < 0 && !warned) {
        warned = 1;
        tmixd_log(TMIXD_LOG_WARN, "sd_notify: error %d; systemd hears no more from tmixd", -rc);
    }
}

void tmixd_notify_ready(const char *status)
{
    char line[512];
    snprintf(line, sizeof line, "READY=1\nSTATUS=%s", status);
    notify(line);
}

void tmixd_notify_status(const char *fmt, ...)
{
    char line[512] = "STATUS=";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + 7, sizeof line - 7, fmt, ap);
    va_end(ap);
    notify(line);
}

void tmixd_notify_stopping(void)
{
    notify("STOPPING=1\nSTATUS=draining");
}

uint64_t tmixd_notify_watchdog_every_ms(void)
{
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec / 2000 : 0;
}

void tmixd_notify_watchdog(void)
{
    notify("WATCHDOG=1");
}
