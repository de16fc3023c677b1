// Op-by-op profiles (profile.h): each timed call keeps its host time and, on backends with
// timing marks, the two marks around it, read once the backend has synchronized.
#include "profile.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "golden.h"
#include "ops.h"

bool tmix_profile_on;

typedef struct {
    const char *op; // NULL for a call that failed: it is not counted
    void *begin, *end; // device marks; NULL on backends without
    double host_ms, cpu_ms;
} timed_call;

static struct {
    tmix_backend *be;
    bool marks;
    void *first, *last; // device marks at begin and end
    timed_call *calls;
    int count, cap;
    int depth;    // entry points inside an entry point are the outer one's time
    int failure;  // the first failure of the profile's own work (a mark), reported by end
    char why[256]; // its message, which the ops after it would overwrite
    double t0;
} prof;

// The process's CPU time (tmix_now_ms is the wall clock's).
static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void keep_failure(int rc)
{
    if (!prof.failure) {
        prof.failure = rc;
        snprintf(prof.why, sizeof prof.why, "%s", tmix_last_error());
    }
}

// A new mark, recorded now on the stream; NULL (and the failure kept) if that failed.
static void *mark(void)
{
    void *m = NULL;
    int rc = prof.be->ops->mark_new(prof.be, &m);
    if (rc == 0 && (rc = prof.be->ops->mark_record(prof.be, m)) < 0)
        prof.be->ops->mark_free(prof.be, m);
    if (rc < 0) {
        keep_failure(rc);
        return NULL;
    }
    return m;
}

static void free_mark(void *m)
{
    if (m)
        prof.be->ops->mark_free(prof.be, m);
}

int tmix_profile_begin(tmix_backend *be)
{
    if (!be)
        return tmix_fail(TMIX_EINVAL, "profile_begin: backend is NULL");
    if (tmix_profile_on)
        return tmix_fail(TMIX_EINVAL, "profile_begin: a profile of %s is already on",
                         prof.be->name);
    const tmix_backend_ops *o = be->ops;
    memset(&prof, 0, sizeof prof);
    prof.be = be;
    prof.marks = o->mark_new && o->mark_record && o->mark_elapsed_ms && o->mark_free;
    if (prof.marks)
        TMIX_TRY(tmix_synchronize(be)); // earlier work is not the profile's
    // The wall clock starts first, so that it spans the marks' time wherever they run.
    prof.t0 = tmix_now_ms();
    if (prof.marks && !(prof.first = mark()))
        return prof.failure;
    tmix_profile_on = true;
    return 0;
}

int tmix_profile_enter(tmix_backend *be)
{
    if (prof.depth++ > 0 || be != prof.be)
        return -1;
    if (prof.count == prof.cap) {
        int cap = prof.cap ? 2 * prof.cap : 256;
        timed_call *grown = realloc(prof.calls, sizeof *grown * (size_t)cap);
        if (!grown) {
            keep_failure(tmix_fail(TMIX_ENOMEM, "profile: out of host memory"));
            return -1;
        }
        prof.calls = grown;
        prof.cap = cap;
    }
    timed_call *c = &prof.calls[prof.count];
    memset(c, 0, sizeof *c);
    if (prof.marks && !(c->begin = mark()))
        return -1;
    c->cpu_ms = cpu_ms();
    c->host_ms = tmix_now_ms();
    return prof.count++;
}

void tmix_profile_leave(const char *op, int call, int rc)
{
    prof.depth--;
    if (call < 0)
        return;
    timed_call *c = &prof.calls[call];
    c->host_ms = tmix_now_ms() - c->host_ms;
    c->cpu_ms = cpu_ms() - c->cpu_ms;
    // A failed op keeps its error message: no mark is made after it.
    if (rc < 0 || (prof.marks && !(c->end = mark())))
        return;
    c->op = op;
}

static int by_device_ms(const void *a, const void *b)
{
    const tmix_profile_row *x = a, *y = b;
    return (x->device_ms < y->device_ms) - (x->device_ms > y->device_ms);
}

// Adds call c to its op's row (rows has room for one row per call).
static void add(tmix_profile *p, const timed_call *c, double device_ms)
{
    int i = 0;
    while (i < p->count && strcmp(p->rows[i].op, c->op) != 0)
        i++;
    if (i == p->count)
        p->rows[p->count++] = (tmix_profile_row){.op = c->op};
    p->rows[i].calls++;
    p->rows[i].host_ms += c->host_ms;
    p->rows[i].device_ms += device_ms;
    p->rows[i].cpu_ms += c->cpu_ms;
}

int tmix_profile_end(tmix_profile *out)
{
    memset(out, 0, sizeof *out);
    if (!tmix_profile_on)
        return tmix_fail(TMIX_EINVAL, "profile_end: no profile is on");
    tmix_profile_on = false;
    if (prof.marks && !prof.failure)
        prof.last = mark();
    int rc = prof.failure ? tmix_fail(prof.failure, "profile of %s: %s", prof.be->name, prof.why)
                          : 0;
    if (rc == 0)
        rc = tmix_synchronize(prof.be);
    out->wall_ms = tmix_now_ms() - prof.t0;
    out->device_marks = prof.marks;
    out->device_span_ms = out->wall_ms;
    out->rows = calloc((size_t)prof.count + 1, sizeof *out->rows);
    if (rc == 0 && !out->rows)
        rc = tmix_fail(TMIX_ENOMEM, "profile_end: out of host memory");
    if (rc == 0 && prof.marks)
        rc = prof.be->ops->mark_elapsed_ms(prof.be, prof.first, prof.last,
                                           &out->device_span_ms);
    for (int i = 0; i < prof.count; i++) {
        timed_call *c = &prof.calls[i];
        double device_ms = c->host_ms;
        if (rc == 0 && c->op && prof.marks)
            rc = prof.be->ops->mark_elapsed_ms(prof.be, c->begin, c->end, &device_ms);
        if (rc == 0 && c->op)
            add(out, c, device_ms);
        free_mark(c->begin);
        free_mark(c->end);
    }
    free_mark(prof.first);
    free_mark(prof.last);
    free(prof.calls);
    memset(&prof, 0, sizeof prof);
    if (rc < 0) {
        tmix_profile_free(out);
        return rc;
    }
    qsort(out->rows, (size_t)out->count, sizeof *out->rows, by_device_ms);
    return 0;
}

void tmix_profile_free(tmix_profile *p)
{
    if (p) {
        free(p->rows);
        memset(p, 0, sizeof *p);
    }
}

void tmix_profile_print(const tmix_profile *p, const char *title, FILE *f)
{
    // With marks: the device's time, then the host's; without, the time, then the CPU's.
    const bool gpu = p->device_marks;
    fprintf(f, "%s\n%-28s %6s %10s %7s %10s\n", title, "op", "calls",
            gpu ? "device ms" : "ms", "share", gpu ? "host ms" : "cpu ms");
    double ops_ms = 0, other_ms = 0;
    for (int i = 0; i < p->count; i++) {
        const tmix_profile_row *r = &p->rows[i];
        const double other = gpu ? r->host_ms : r->cpu_ms;
        fprintf(f, "%-28s %6lld %10.3f %6.1f%% %10.3f\n", r->op, (long long)r->calls,
                r->device_ms, 100 * r->device_ms / p->device_span_ms, other);
        ops_ms += r->device_ms;
        other_ms += other;
    }
    const double idle = p->device_span_ms - ops_ms;
    fprintf(f, "%-28s %6s %10.3f %6.1f%%\n",
            gpu ? "(device idle between ops)" : "(outside ops)", "", idle,
            100 * idle / p->device_span_ms);
    fprintf(f, "%-28s %6s %10.3f %7s %10.3f\n", "total", "", p->device_span_ms, "", other_ms);
}
