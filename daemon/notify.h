// tmixd's word to systemd (sd_notify(3), Type=notify): READY once the socket is bound,
// STATUS with the throughput, WATCHDOG keep-alives, STOPPING on a drain. Every call is a
// no-op when tmixd was not started by a service manager that listens ($NOTIFY_SOCKET unset).
#ifndef TMIXD_NOTIFY_H
#define TMIXD_NOTIFY_H

#include <stdint.h>

// READY=1 with the first STATUS line.
void tmixd_notify_ready(const char *status);

// STATUS=<the formatted line>, what `systemctl status tmixd` shows.
void tmixd_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void tmixd_notify_stopping(void);

// How often systemd wants WATCHDOG=1 (WatchdogSec=, as $WATCHDOG_USEC) in milliseconds: half
// the timeout, so one late tick is not fatal; 0 when it wants none.
uint64_t tmixd_notify_watchdog_every_ms(void);

void tmixd_notify_watchdog(void);

#endif
