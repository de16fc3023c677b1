// Progress and metrics of training commands (trainlog.h).
#include "trainlog.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

enum { TTY_EVERY_MS = 200, LOG_EVERY_MS = 10000 };

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Keeps the lines of path whose "step" is <= last (the steps a checkpoint holds): the
// lines a killed run wrote after its last checkpoint are done again by the resumed one.
static int cut_metrics(const char *path, int64_t last)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return errno == ENOENT ? 0 : tmix_fail(TMIX_EIO, "%s: %s", path, strerror(errno));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return tmix_fail(TMIX_EIO, "%s: %s", tmp, strerror(errno));
    }
    char line[4096];
    long long step;
    while (fgets(line, sizeof line, in))
        if (sscanf(line, "{\"step\": %lld", &step) == 1 && step <= last)
            fputs(line, out);
    const bool bad = ferror(in) || fflush(out) || fsync(fileno(out));
    fclose(in);
    if (fclose(out) || bad || rename(tmp, path)) {
        remove(tmp);
        return tmix_fail(TMIX_EIO, "%s: cannot cut back to step %lld: %s", path, (long long)last,
                         strerror(errno));
    }
    return 0;
}

int tmixd_trainlog_open(tmixd_trainlog *t, const char *what, const char *path,
                        int64_t resume_step, int64_t total_steps)
{
    memset(t, 0, sizeof *t);
    t->what = what;
    t->total_steps = total_steps;
    t->first_step = resume_step < 0 ? 0 : resume_step;
    t->started_ms = t->shown_ms = now_ms();
    t->tty = isatty(STDERR_FILENO);
    snprintf(t->metrics_path, sizeof t->metrics_path, "%s", path);
    if (resume_step >= 0)
        TMIX_TRY(cut_metrics(path, resume_step));
    t->metrics = fopen(path, resume_step < 0 ? "w" : "a");
    if (!t->metrics)
        return tmix_fail(TMIX_EIO, "metrics file %s: %s", path, strerror(errno));
    return 0;
}

static void duration(char *buf, size_t size, double s)
{
    const long v = s > 0 && s < 1e9 ? (long)s : 0;
    snprintf(buf, size, "%02ld:%02ld:%02ld", v / 3600, v / 60 % 60, v % 60);
}

int tmixd_trainlog_step(tmixd_trainlog *t, int64_t step, int64_t epoch, int64_t images,
                        float loss, const char *fields)
{
    const double now = now_ms(), secs = (now - t->started_ms) / 1e3;
    const double rate = secs > 0 ? images / secs : 0;
    if (fprintf(t->metrics, "{\"step\": %lld, \"epoch\": %lld, \"loss\": %.9g, %s, "
                            "\"images_per_s\": %.1f}\n",
                (long long)step, (long long)epoch, loss, fields, rate) < 0 ||
        fflush(t->metrics))
        return tmix_fail(TMIX_EIO, "metrics file %s: %s", t->metrics_path, strerror(errno));
    const bool last = step == t->total_steps;
    if (!last && now - t->shown_ms < (t->tty ? TTY_EVERY_MS : LOG_EVERY_MS))
        return 0;
    t->shown_ms = now;
    const double per_step = (step - t->first_step) > 0 ? secs / (step - t->first_step) : 0;
    char eta[32];
    duration(eta, sizeof eta, per_step * (t->total_steps - step));
    if (t->tty)
        fprintf(stderr, "\r%s: epoch %lld step %lld/%lld loss %.4f %.0f img/s ETA %s  ", t->what,
                (long long)epoch, (long long)step, (long long)t->total_steps, loss, rate, eta);
    else
        tmixd_log(TMIXD_LOG_INFO, "%s: epoch %lld step %lld/%lld loss %.4f %.0f img/s ETA %s",
                  t->what, (long long)epoch, (long long)step, (long long)t->total_steps, loss,
                  rate, eta);
    return 0;
}

void tmixd_trainlog_note(tmixd_trainlog *t, const char *fmt, ...)
{
    if (t->tty)
        fputc('\n', stderr);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tmixd_log(TMIXD_LOG_INFO, "%s: %s", t->what, msg);
}

int tmixd_trainlog_close(tmixd_trainlog *t)
{
    if (!t->metrics)
        return 0;
    const int bad = fclose(t->metrics);
    t->metrics = NULL;
    return bad ? tmix_fail(TMIX_EIO, "metrics file %s: %s", t->metrics_path, strerror(errno)) : 0;
}
