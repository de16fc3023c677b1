// tmixctl bench: K trainers (threads, each with its own client) in one consumer group pull
// and release batches for S seconds; prints the throughput and tmix_next's latency. With
// --touch each trainer also reads every byte of each batch, as a trainer that uses it would,
// and the bench prints what a batch costs the trainer beside what copying its images costs.
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "ctl_buf.h"

static const char usage[] =
    "usage: tmixctl bench --seconds S [-e ENDPOINT] [--trainers K] [--group G]\n"
    "                     [--mode shard|broadcast] [--batch-size B] [--dtype D] [--layout L]\n"
    "                     [--delivery inline|shm] [--node-rank R --node-count K] [--timeout S]\n"
    "                     [--touch] [--step-ms MS]\n"
    "\n"
    "  --seconds S    how long each trainer pulls\n"
    "  --trainers K   trainers (threads, one client each) in the group (default 1)\n"
    "  --group G      the consumer group (default \"bench\")\n"
    "  --mode, --batch-size, --dtype, --layout, --delivery, --node-rank, --node-count\n"
    "                 what to ask for in the Hello (default: the daemon's choice)\n"
    "  --timeout S    seconds to wait for each reply (default 60; 0: forever)\n"
    "  --touch        read every byte of each batch's images before releasing it, and add\n"
    "                 three columns, mean ms per batch: touch (the reading), trainer\n"
    "                 (tmix_next + touch: what the trainer spends per batch) and memcpy (a\n"
    "                 copy of the same bytes into a private buffer, for comparison); images\n"
    "                 in device memory (CUDA delivery) are not read\n"
    "  --step-ms MS   spend MS after each batch (read and released), as a training step\n"
    "                 would: with the daemon ahead, p50 is then the cost of receiving a\n"
    "                 ready batch\n";

// Copies of the last batch timed for the memcpy column.
enum { COPIES = 5 };

// Where the trainers wait until every one has connected (or failed to), so that connecting
// is not timed; `start` is set when `go` is.
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t arrived;
    bool go;
    double start;
} start_line;

typedef struct {
    const ctl_conn *conn;
    start_line *line;
    double seconds;
    bool touch;
    double step_ms;
    ctl_buf latencies_ms; // doubles, one per tmix_next
    uint64_t batches, images;
    double end;
    double touch_ms, busy_ms; // --touch: sums over the batches of the reading, of next + reading
    double copy_ms;           // --touch: mean of one memcpy of the last batch's images; 0: none
    uint64_t checksum;        // of the bytes read, kept so that the reading is not optimised out
    int rc;
    char err[512];
} trainer;

static void trainer_fail(trainer *t, int rc, const char *msg)
{
    t->rc = rc;
    snprintf(t->err, sizeof(t->err), "%s", msg);
}

// The sum of the 64-bit words of p[n] (and of the bytes after the last whole word): reads
// every byte at about the speed the memory gives.
static uint64_t checksum(const unsigned char *p, size_t n)
{
    uint64_t sum = 0, word;
    size_t i = 0;
    for (; i + sizeof(word) <= n; i += sizeof(word)) {
        memcpy(&word, p + i, sizeof(word));
        sum += word;
    }
    for (; i < n; i++)
        sum += p[i];
    return sum;
}

// Times COPIES copies of b's images into a private buffer whose pages are already mapped, as
// a trainer's reused buffer would be, into t->copy_ms.
static void time_copies(trainer *t, const tmix_batch *b)
{
    const size_t n = b->images_bytes;
    unsigned char *dst = malloc(n);
    if (!dst) {
        trainer_fail(t, -1, "out of memory for the copy of a batch");
        return;
    }
    memset(dst, 0, n);
    const double start = ctl_now();
    for (size_t r = 0; r < COPIES; r++) {
        memcpy(dst, b->images, n);
        t->checksum += dst[r * 7919 % n]; // reads the copy, so that it is not optimised out
    }
    t->copy_ms = (ctl_now() - start) * 1e3 / COPIES;
    free(dst);
}

// Pulls and releases batches until the deadline, and sets t->end. With --touch the last batch
// is kept until t->end is taken, to time the copies of its images.
static void pull_until_deadline(trainer *t, tmix_client *c)
{
    const double deadline = t->line->start + t->seconds;
    tmix_batch *last = NULL;
    for (double now = ctl_now(); now < deadline;) {
        tmix_batch *b;
        int rc = tmix_next(c, &b);
        if (rc < 0) {
            trainer_fail(t, rc, tmix_client_error(c));
            break;
        }
        const double got = ctl_now(), ms = (got - now) * 1e3;
        if (ctl_buf_append(&t->latencies_ms, &ms, sizeof(ms)) < 0) {
            trainer_fail(t, -1, "out of memory for the latencies");
            break;
        }
        t->batches++;
        t->images += b->size;
        double done = got; // the release is timed with the next tmix_next
        if (t->touch && b->images) { // NULL: in device memory (CUDA), not read here
            t->checksum += checksum(b->images, b->images_bytes);
            done = ctl_now();
            t->touch_ms += (done - got) * 1e3;
            t->busy_ms += (done - now) * 1e3;
            if (done + t->step_ms / 1e3 >= deadline) { // the last: kept to time its copies
                last = b;
                break;
            }
        }
        tmix_release(c, b);
        now = done;
        if (t->step_ms > 0) { // a training step: not part of the next batch's latency
            const long long ns = (long long)(t->step_ms * 1e6);
            nanosleep(&(struct timespec){(time_t)(ns / 1000000000), (long)(ns % 1000000000)}, NULL);
            now = ctl_now();
        }
    }
    t->end = ctl_now();
    if (last) {
        time_copies(t, last);
        tmix_release(c, last);
    }
}

static void *trainer_run(void *arg)
{
    trainer *t = arg;
    tmix_client *c = NULL;
    int rc = tmix_connect(&c, t->conn->endpoint, &t->conn->o);
    if (rc < 0)
        trainer_fail(t, rc, tmix_client_error(NULL));
    start_line *l = t->line;
    pthread_mutex_lock(&l->mu);
    l->arrived++;
    pthread_cond_broadcast(&l->cv);
    while (!l->go)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
    if (c)
        pull_until_deadline(t, c);
    else
        t->end = ctl_now();
    tmix_close(c);
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The p-quantile (0..1) of sorted[n] by nearest rank.
static double quantile(const double *sorted, size_t n, double p)
{
    if (!n)
        return 0;
    size_t rank = (size_t)(p * (double)n + 0.999999);
    return sorted[rank ? rank - 1 : 0];
}

// Where the checksums go, so that no compiler drops the reading (--touch).
static volatile uint64_t checksum_sink;

static int report(trainer *ts, uint32_t k, double start, bool touch)
{
    ctl_buf all = {0};
    uint64_t batches = 0, images = 0;
    double end = start, touch_ms = 0, busy_ms = 0, copy_ms = 0;
    uint32_t copied = 0;
    for (uint32_t i = 0; i < k; i++) {
        if (ctl_buf_append(&all, ts[i].latencies_ms.data, ts[i].latencies_ms.len) < 0) {
            ctl_buf_free(&all);
            return ctl_fail(1, "out of memory for the latencies");
        }
        batches += ts[i].batches;
        images += ts[i].images;
        end = ts[i].end > end ? ts[i].end : end;
        touch_ms += ts[i].touch_ms;
        busy_ms += ts[i].busy_ms;
        copy_ms += ts[i].copy_ms;
        copied += ts[i].copy_ms > 0;
        checksum_sink ^= ts[i].checksum;
    }
    // Fairness: the fewest batches a trainer got, over an equal share of them.
    uint64_t fewest = batches;
    for (uint32_t i = 0; i < k; i++)
        fewest = ts[i].batches < fewest ? ts[i].batches : fewest;
    const double least_share = batches ? (double)fewest * k / (double)batches : 0.0;
    double *lat = (double *)all.data;
    const size_t n = all.len / sizeof(double);
    if (n)
        qsort(lat, n, sizeof(double), by_value);
    const double seconds = end - start;
    printf("%8s %10s %12s %12s %9s %9s", "trainers", "batches", "images", "images/s", "p50 ms",
           "p99 ms");
    if (touch)
        printf(" %9s %10s %10s", "touch ms", "trainer ms", "memcpy ms");
    printf(" %11s", "least share");
    printf("\n%8u %10llu %12llu %12.1f %9.2f %9.2f", k, (unsigned long long)batches,
           (unsigned long long)images, seconds > 0 ? (double)images / seconds : 0.0,
           quantile(lat, n, 0.5), quantile(lat, n, 0.99));
    if (touch) {
        const double per = batches ? 1.0 / (double)batches : 0.0;
        printf(" %9.3f %10.3f %10.3f", touch_ms * per, busy_ms * per,
               copied ? copy_ms / copied : 0.0);
    }
    printf(" %11.2f\n", least_share);
    ctl_buf_free(&all);
    return 0;
}

int ctl_bench_main(int argc, char **argv)
{
    ctl_conn conn;
    ctl_opt opts[CTL_MAX_OPTS] = {0};
    int n = 0;
    double seconds = 0;
    uint32_t k = 1;
    bool touch = false;
    double step_ms = 0;
    ctl_conn_opts(&conn, 60, true, opts, &n);
    conn.o.group = "bench";
    opts[n++] = (ctl_opt){.name = "--seconds",
                          .kind = CTL_SECONDS,
                          .dest = &seconds,
                          .lo = 0.001,
                          .hi = 1e6,
                          .required = true};
    opts[n++] = (ctl_opt){.name = "--trainers", .kind = CTL_COUNT, .dest = &k, .lo = 1, .hi = 1024};
    opts[n++] = (ctl_opt){.name = "--touch", .kind = CTL_FLAG, .dest = &touch};
    opts[n++] = (ctl_opt){
        .name = "--step-ms", .kind = CTL_SECONDS, .dest = &step_ms, .lo = 0, .hi = 1e6};
    int rc = ctl_parse("tmixctl bench", usage, opts, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    ctl_conn_finish(&conn);

    trainer *ts = calloc(k, sizeof(*ts));
    pthread_t *threads = calloc(k, sizeof(*threads));
    if (!ts || !threads) {
        free(ts);
        free(threads);
        return ctl_fail(1, "out of memory for the trainers");
    }
    start_line line = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    uint32_t started = 0;
    for (; started < k; started++) {
        ts[started] = (trainer){.conn = &conn, .line = &line, .seconds = seconds, .touch = touch,
                                .step_ms = step_ms};
        if (pthread_create(&threads[started], NULL, trainer_run, &ts[started]) != 0)
            break;
    }
    for (uint32_t i = started; i < k; i++)
        trainer_fail(&ts[i], -1, "cannot start a trainer thread");
    pthread_mutex_lock(&line.mu);
    while (line.arrived < started)
        pthread_cond_wait(&line.cv, &line.mu);
    line.start = ctl_now();
    line.go = true;
    pthread_cond_broadcast(&line.cv);
    pthread_mutex_unlock(&line.mu);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    rc = 0;
    for (uint32_t i = 0; i < k && rc == 0; i++)
        if (ts[i].rc)
            rc = ctl_fail(ts[i].rc, ts[i].err);
    if (rc == 0)
        rc = report(ts, k, line.start, touch);
    for (uint32_t i = 0; i < k; i++)
        ctl_buf_free(&ts[i].latencies_ms);
    free(ts);
    free(threads);
    return rc;
}
