// tmixd's log: one line per message, `2026-11-30T20:50:01.123Z tmixd[PID] info: message`
// (UTC, milliseconds), written to stderr or appended to a file that SIGHUP reopens (log
// rotation). Under systemd, when stderr is the journal ($JOURNAL_STREAM), a line is
// `<6>info: message` instead: the syslog priority, which journald reads, and no time or pid,
// which it records itself. Safe from any thread: each line is built whole and written with
// one write(2).
#ifndef TMIXD_LOG_H
#define TMIXD_LOG_H

// The levels, least severe first, with the words the config and the log lines use.
#define TMIXD_LOG_LEVELS(W)                                                            \
    W(LOG_DEBUG, "debug") W(LOG_INFO, "info") W(LOG_WARN, "warn") W(LOG_ERROR, "error")

#define TMIXD_LOG_LEVEL_ENUM(id, word) TMIXD_##id,
typedef enum { TMIXD_LOG_LEVELS(TMIXD_LOG_LEVEL_ENUM) } tmixd_log_level;
#undef TMIXD_LOG_LEVEL_ENUM

// Messages below this level are dropped (before their arguments are formatted); info at start.
extern _Atomic tmixd_log_level tmixd_log_threshold;

void tmixd_log_set_level(tmixd_log_level l);

// "debug", "info", "warn", "error" ("?" for a value out of the enum).
const char *tmixd_log_level_name(tmixd_log_level l);

// Sends the log to path, opened for append and created with mode 0640 when missing; NULL or
// "" means stderr. A file that cannot be opened is TMIX_EIO naming it, and the log stays
// where it was.
int tmixd_log_open(const char *path);

// Opens the current log file again (after logrotate renamed it); a no-op for stderr. On
// failure (TMIX_EIO naming the file) the log keeps the old file.
int tmixd_log_reopen(void);

// Writes one line at level l; use tmixd_log, which skips the formatting of dropped lines.
// Newlines inside the message become spaces, so that every record is exactly one line.
void tmixd_log_write(tmixd_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define tmixd_log(l, ...)                                                              \
    do {                                                                               \
        if ((l) >= tmixd_log_threshold)                                                \
            tmixd_log_write((l), __VA_ARGS__);                                         \
    } while (0)

#endif
