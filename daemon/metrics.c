#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

enum { WAIT_MS = 1000 }; // the longest a scrape waits for the loop

struct tmixd_metrics {
    struct MHD_Daemon *http;
    uv_async_t async; // a scrape wants numbers
    tmixd_metrics_collect collect;
    void *ctx;
    tmixd_server_stats *stats; // the loop's, reused
    pthread_mutex_t lock;      // guards what follows
    pthread_cond_t rendered_cond;
    char *text;                   // the last rendering
    uint64_t requested, rendered; // scrapes asked for, and answered by the loop
    bool stopping;
};

// ---- the text ---------------------------------------------------------------------------

typedef struct {
    char *p;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        const int k = t->failed ? 0 : vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (t->failed || k < 0)
            return;
        if ((size_t)k < t->cap - t->len) {
            t->len += (size_t)k;
            return;
        }
        const size_t cap = 2 * t->cap + (size_t)k + 1;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->failed = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

// A label value, escaped as the text format wants (\\, \", \n).
static void put_escaped(text *t, const char *s)
{
    for (; *s; s++)
        put(t, "%s",
            *s == '\\'   ? "\\\\"
            : *s == '"'  ? "\\\""
            : *s == '\n' ? "\\n"
                         : (char[]){*s, 0});
}

static void header(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(text *t, const char *name, const char *help, const tmixd_histogram *h)
{
    header(t, name, "histogram", help);
    uint64_t below = 0;
    for (int i = 0; i < TMIXD_HISTOGRAM_BOUNDS; i++) {
        below += h->counts[i];
        put(t, "%s_bucket{le=\"%g\"} %llu\n", name, tmixd_histogram_bounds[i],
            (unsigned long long)below);
    }
    put(t, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name,
        (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

// One per-group series: `name{group="g"} value` for every group, with its header.
#define PER_GROUP(t, st, metric, type, help, fmt, expr)                                            \
    do {                                                                                           \
        header(t, metric, type, help);                                                             \
        for (int i_ = 0; i_ < (st)->ngroups; i_++) {                                               \
            const tmixd_group_stats *g = &(st)->groups[i_];                                        \
            put(t, metric "{group=\"%s\"} " fmt "\n", g->name, expr);                              \
        }                                                                                          \
    } while (0)

char *tmixd_metrics_text(const tmixd_server_stats *st)
{
    text t = {0};
    header(&t, "tmix_info", "gauge", "The daemon: version, backend, data set and method.");
    put(&t, "tmix_info{version=\"");
    put_escaped(&t, st->version);
    put(&t, "\",backend=\"");
    put_escaped(&t, st->backend);
    put(&t, "\",dataset=\"");
    put_escaped(&t, st->dataset);
    put(&t, "\",method=\"");
    put_escaped(&t, st->method);
    put(&t, "\"} 1\n");
    header(&t, "tmix_uptime_seconds", "gauge", "Seconds since tmixd started serving.");
    put(&t, "tmix_uptime_seconds %llu\n", (unsigned long long)st->uptime_s);
    header(&t, "tmix_dataset_samples", "gauge", "Samples in the data set.");
    put(&t, "tmix_dataset_samples %llu\n", (unsigned long long)st->dataset_size);
    header(&t, "tmix_trainers", "gauge", "Trainers connected (sessions).");
    put(&t, "tmix_trainers %u\n", st->trainers);
    header(&t, "tmix_decode_errors_total", "counter",
           "Distinct samples found unreadable, each replaced by another.");
    put(&t, "tmix_decode_errors_total %llu\n", (unsigned long long)st->bad_samples);
    header(&t, "tmix_producer_jobs", "gauge", "Batches queued for or being made by the workers.");
    put(&t, "tmix_producer_jobs %d\n", st->jobs);
    header(&t, "tmix_batch_longest_running_seconds", "gauge",
           "How long the batch running longest has run; tmixd exits past [server] "
           "stall_timeout_s (tmix_stall_timeout_seconds).");
    put(&t, "tmix_batch_longest_running_seconds %.3f\n", st->longest_running_s);
    header(&t, "tmix_stall_timeout_seconds", "gauge", "[server] stall_timeout_s (0: never).");
    put(&t, "tmix_stall_timeout_seconds %g\n", st->stall_timeout_s);
    header(&t, "tmix_batch_memory_bytes", "gauge", "Memory of the produced batches held.");
    put(&t, "tmix_batch_memory_bytes %zu\n", st->memory_bytes);
    header(&t, "tmix_batch_memory_limit_bytes", "gauge", "[server] max_memory_mb, in bytes.");
    put(&t, "tmix_batch_memory_limit_bytes %zu\n", st->max_memory);
    if (st->has_gpu_memory) {
        header(&t, "tmix_gpu_memory_used_bytes", "gauge",
               "Memory in use on the daemon's GPU, by every process.");
        put(&t, "tmix_gpu_memory_used_bytes %zu\n", st->gpu_memory_used);
        header(&t, "tmix_gpu_memory_total_bytes", "gauge", "Memory of the daemon's GPU.");
        put(&t, "tmix_gpu_memory_total_bytes %zu\n", st->gpu_memory_total);
    }
    if (st->has_graphs) {
        header(&t, "tmix_graph_batches_total", "counter",
               "Batches mixed by one CUDA graph launch ([mix] graphs); the others run op by op.");
        put(&t, "tmix_graph_batches_total %llu\n", (unsigned long long)st->graph_batches);
    }
    PER_GROUP(&t, st, "tmix_batches_served_total", "counter",
              "Batches delivered to the group's trainers (a batch leased again counts again).",
              "%llu", (unsigned long long)g->batches_served);
    PER_GROUP(&t, st, "tmix_images_served_total", "counter",
              "Images delivered to the group's trainers.", "%llu",
              (unsigned long long)g->images_served);
    PER_GROUP(&t, st, "tmix_group_members", "gauge", "Trainers in the group.", "%u", g->members);
    PER_GROUP(&t, st, "tmix_group_epoch", "gauge", "The group's current epoch.", "%llu",
              (unsigned long long)g->epoch);
    PER_GROUP(&t, st, "tmix_group_epoch_progress", "gauge",
              "Share of the current epoch's batches done (shard: acknowledged).", "%.6g",
              g->batches_per_epoch ? (double)g->batches_done / (double)g->batches_per_epoch : 0.0);
    PER_GROUP(&t, st, "tmix_group_batches_ready", "gauge",
              "Batches produced for the group and not yet taken.", "%d", g->ready);
    PER_GROUP(&t, st, "tmix_group_batches_producing", "gauge",
              "Batches of the group with the workers.", "%d", g->producing);
    PER_GROUP(&t, st, "tmix_group_shm_slots", "gauge",
              "Slots of the group's shared-memory ring (0: none).", "%u", g->shm_slots);
    PER_GROUP(&t, st, "tmix_group_shm_slots_used", "gauge",
              "Slots of the group's shared-memory ring holding a batch.", "%u", g->shm_slots_used);
    PER_GROUP(&t, st, "tmix_group_cuda_slots", "gauge", "Slots of the group's GPU ring (0: none).",
              "%u", g->cuda_slots);
    PER_GROUP(&t, st, "tmix_group_cuda_slots_used", "gauge",
              "Slots of the group's GPU ring holding a batch.", "%u", g->cuda_slots_used);
    histogram(&t, "tmix_batch_queued_seconds", "Seconds a batch waited for a worker.", st->queued);
    histogram(&t, "tmix_batch_read_seconds", "Seconds to read, decode and augment a batch.",
              st->read);
    histogram(&t, "tmix_batch_mix_seconds",
              "Seconds to normalise, mix and encode a batch (a lane's wait included).", st->mix);
    histogram(&t, "tmix_next_seconds", "Seconds from a trainer's Next to the reply with its batch.",
              st->next);
    if (t.failed) {
        free(t.p);
        return NULL;
    }
    return t.p;
}

// ---- the loop's side -----------------------------------------------------------------------

static void on_wanted(uv_async_t *handle)
{
    tmixd_metrics *m = handle->data;
    pthread_mutex_lock(&m->lock);
    const uint64_t wanted = m->requested;
    pthread_mutex_unlock(&m->lock);
    m->collect(m->ctx, m->stats);
    char *fresh = tmixd_metrics_text(m->stats);
    pthread_mutex_lock(&m->lock);
    if (fresh) {
        free(m->text);
        m->text = fresh;
    }
    m->rendered = wanted;
    pthread_cond_broadcast(&m->rendered_cond);
    pthread_mutex_unlock(&m->lock);
}

// ---- the HTTP side -------------------------------------------------------------------------

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, char *body,
                              const char *type)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    const enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

// The numbers as fresh as the loop gives them within WAIT_MS, else the last ones.
static char *scrape(tmixd_metrics *m)
{
    pthread_mutex_lock(&m->lock);
    const uint64_t want = ++m->requested;
    pthread_mutex_unlock(&m->lock);
    uv_async_send(&m->async);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&m->lock);
    while (m->rendered < want && !m->stopping &&
           pthread_cond_timedwait(&m->rendered_cond, &m->lock, &until) == 0)
        ;
    char *body = strdup(m->text ? m->text : "");
    pthread_mutex_unlock(&m->lock);
    return body;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version, (void)upload_data, (void)upload_data_size, (void)con_cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, strdup("GET /metrics\n"), "text/plain");
    if (strcmp(url, "/metrics") != 0)
        return answer(c, MHD_HTTP_NOT_FOUND, strdup("not found: the metrics are at /metrics\n"),
                      "text/plain");
    char *body = scrape(cls);
    if (!body)
        return MHD_NO;
    return answer(c, MHD_HTTP_OK, body, "text/plain; version=0.0.4; charset=utf-8");
}

// The listening socket, made here so that a failure says why (libmicrohttpd's would not).
static int listen_on(int port, int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*fd < 0)
        return tmix_fail(TMIX_EIO, "metrics: socket: %s", strerror(errno));
    const int one = 1;
    setsockopt(*fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(*fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(*fd, 16) < 0) {
        const int err = errno;
        close(*fd);
        return tmix_fail(TMIX_EIO, "[server] metrics_port %d: 127.0.0.1:%d: %s", port, port,
                         strerror(err));
    }
    return 0;
}

int tmixd_metrics_start(tmixd_metrics **out, uv_loop_t *loop, int port,
                        tmixd_metrics_collect collect, void *ctx)
{
    *out = NULL;
    tmixd_metrics *m = calloc(1, sizeof *m);
    if (!m || !(m->stats = calloc(1, sizeof *m->stats))) {
        free(m);
        return tmix_fail(TMIX_ENOMEM, "metrics: out of memory");
    }
    m->collect = collect;
    m->ctx = ctx;
    pthread_mutex_init(&m->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&m->rendered_cond, &attr);
    pthread_condattr_destroy(&attr);
    int fd = -1;
    int rc = listen_on(port, &fd);
    if (rc < 0) {
        tmixd_metrics_free(m);
        return rc;
    }
    uv_async_init(loop, &m->async, on_wanted);
    m->async.data = m;
    m->http = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, m,
                               MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_TIMEOUT,
                               (unsigned)10, MHD_OPTION_END);
    if (!m->http) {
        close(fd);
        uv_close((uv_handle_t *)&m->async, NULL); // m is freed after the loop ends
        *out = m;
        return tmix_fail(TMIX_EIO, "[server] metrics_port %d: libmicrohttpd did not start", port);
    }
    tmixd_log(TMIXD_LOG_INFO, "metrics at http://127.0.0.1:%d/metrics", port);
    *out = m;
    return 0;
}

void tmixd_metrics_stop(tmixd_metrics *m)
{
    if (!m || !m->http)
        return;
    pthread_mutex_lock(&m->lock);
    m->stopping = true;
    pthread_cond_broadcast(&m->rendered_cond);
    pthread_mutex_unlock(&m->lock);
    MHD_stop_daemon(m->http); // waits for a scrape in progress, closes the socket
    m->http = NULL;
}

void tmixd_metrics_free(tmixd_metrics *m)
{
    if (!m)
        return;
    tmixd_metrics_stop(m);
    pthread_cond_destroy(&m->rendered_cond);
    pthread_mutex_destroy(&m->lock);
    free(m->text);
    free(m->stats);
    free(m);
}
