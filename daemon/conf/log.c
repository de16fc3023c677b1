#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

_Atomic tmixd_log_level tmixd_log_threshold = TMIXD_LOG_INFO;

// The destination: fd 2, or a file opened from path. The lock is held while a line is
// written and while the file is swapped, so no line goes to a file being closed.
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = STDERR_FILENO;
static char *log_path; // NULL for stderr

void tmixd_log_set_level(tmixd_log_level l)
{
    tmixd_log_threshold = l;
}

const char *tmixd_log_level_name(tmixd_log_level l)
{
#define TMIXD_LOG_LEVEL_CASE(id, word)                                                 \
    case TMIXD_##id:                                                                   \
        return word;
    switch (l) {
        TMIXD_LOG_LEVELS(TMIXD_LOG_LEVEL_CASE)
    }
#undef TMIXD_LOG_LEVEL_CASE
    return "?";
}

// Makes fd (owned, or fd 2) and path (owned, or NULL) the destination, closing the old file.
static void swap_destination(int fd, char *path)
{
    pthread_mutex_lock(&log_lock);
    int old_fd = log_fd;
    char *old_path = log_path;
    log_fd = fd;
    log_path = path;
    pthread_mutex_unlock(&log_lock);
    if (old_fd != STDERR_FILENO)
        close(old_fd);
    free(old_path);
}

// Makes the file at path (opened for append, created when missing) the destination.
static int switch_to(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return tmix_fail(TMIX_ENOMEM, "log file %s: out of memory", path);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        int err = errno;
        free(copy);
        return tmix_fail(TMIX_EIO, "log file %s: %s", path, strerror(err));
    }
    swap_destination(fd, copy);
    return 0;
}

int tmixd_log_open(const char *path)
{
    if (path == NULL || path[0] == '\0') {
        swap_destination(STDERR_FILENO, NULL);
        return 0;
    }
    return switch_to(path);
}

int tmixd_log_reopen(void)
{
    pthread_mutex_lock(&log_lock);
    bool to_file = log_path != NULL;
    char *path = to_file ? strdup(log_path) : NULL;
    pthread_mutex_unlock(&log_lock);
    if (!to_file)
        return 0;
    if (path == NULL)
        return tmix_fail(TMIX_ENOMEM, "log reopen: out of memory");
    int rc = switch_to(path);
    free(path);
    return rc;
}

// Whether fd 2 is systemd's journal stream: $JOURNAL_STREAM names its device and inode
// (systemd.exec(5)). Then lines carry a syslog priority, <6>info: ..., and no time or pid,
// which the journal records itself. Decided once (a child keeps the answer of its parent,
// and so does a redirect done later, which only tests do).
static bool stderr_is_journal(void)
{
    static _Atomic int answer = -1;
    if (answer < 0) {
        const char *env = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        answer = env && sscanf(env, "%llu:%llu", &dev, &ino) == 2 &&
                 fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
                 (unsigned long long)st.st_ino == ino;
    }
    return answer;
}

// sd-daemon(3)'s priority of each level.
static int journal_priority(tmixd_log_level l)
{
    return l == TMIXD_LOG_DEBUG ? 7 : l == TMIXD_LOG_INFO ? 6 : l == TMIXD_LOG_WARN ? 4 : 3;
}

// Writes all n bytes, going on after a signal or a partial write; a failing log has
// nowhere to report to, so other errors drop the line.
static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

void tmixd_log_write(tmixd_log_level l, const char *fmt, ...)
{
    int saved_errno = errno; // callers log strerror(errno) and then test errno again
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm utc;
    gmtime_r(&now.tv_sec, &utc);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);

    char small[1024];
    char *line = small;
    pthread_mutex_lock(&log_lock);
    const bool journal = log_fd == STDERR_FILENO && stderr_is_journal();
    pthread_mutex_unlock(&log_lock);
    int head = journal ? snprintf(small, sizeof small, "<%d>%s: ", journal_priority(l),
                                  tmixd_log_level_name(l))
                       : snprintf(small, sizeof small, "%s.%03ldZ tmixd[%ld] %s: ", stamp,
                                  now.tv_nsec / 1000000, (long)getpid(),
                                  tmixd_log_level_name(l));
    va_list ap;
    va_start(ap, fmt);
    int body = vsnprintf(small + head, sizeof small - (size_t)head, fmt, ap);
    va_end(ap);
    if (body < 0)
        body = 0;
    size_t len = (size_t)head + (size_t)body;
    if (len + 2 > sizeof small) {
        // A long message: format it again into a buffer of the right size.
        line = malloc(len + 2);
        if (line == NULL) {
            line = small;
            len = sizeof small - 2;
        } else {
            memcpy(line, small, (size_t)head);
            va_start(ap, fmt);
            vsnprintf(line + head, len + 2 - (size_t)head, fmt, ap);
            va_end(ap);
        }
    }
    for (size_t i = (size_t)head; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len] = '\n';

    pthread_mutex_lock(&log_lock);
    write_all(log_fd, line, len + 1);
    pthread_mutex_unlock(&log_lock);
    if (line != small)
        free(line);
    errno = saved_errno;
}
