// tmixctl pull: receives batches as a trainer would, releasing each, and prints them (or
// only their sample ids), optionally saving everything received as one safetensors file.
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "ctl.h"
#include "ctl_buf.h"
#include "st_write.h"

static const char usage[] =
    "usage: tmixctl pull --batches N [-e ENDPOINT] [--group G] [--mode shard|broadcast]\n"
    "                    [--batch-size B] [--dtype float32|float16|uint8] [--layout nchw|nhwc]\n"
    "                    [--delivery inline|shm] [--node-rank R --node-count K] [--print-ids]\n"
    "                    [--out FILE] [--hold-ms MS] [--timeout S]\n"
    "\n"
    "  --batches N       how many batches to pull\n"
    "  --group G         the consumer group to join (default \"default\")\n"
    "  --mode, --batch-size, --dtype, --layout, --delivery\n"
    "                    what to ask for in the Hello (default: the daemon's choice)\n"
    "  --node-rank R, --node-count K\n"
    "                    a daemon on each of K machines: this one serves part R of every epoch\n"
    "  --print-ids       print only `epoch E batch K ids I1 I2 ...`, one line per batch\n"
    "  --out FILE        save what was received as safetensors: images, sample_ids, sources,\n"
    "                    labels, weights, epoch, index (kept in memory until the end)\n"
    "  --hold-ms MS      keep each batch MS milliseconds before releasing it, as a trainer\n"
    "                    that computes would (for tests and demos of leases)\n"
    "  --timeout S       seconds to wait for each reply (default 60; 0: forever)\n";

// Batch lines of the human summary: the first ones, then a count of the rest.
#define SUMMARY_LINES 10

// Everything received, as the tensors of --out: images (total, ...), sample_ids (total),
// sources, labels, weights (total, n), epoch and index (batches).
typedef struct {
    ctl_buf images, sample_ids, sources, labels, weights, epoch, index;
    uint64_t samples, batches;
} received;

static int append_u32_as_i64(ctl_buf *b, const uint32_t *src, size_t count)
{
    int64_t *dst = ctl_buf_reserve(b, count * sizeof(int64_t));
    if (!dst)
        return -1;
    for (size_t i = 0; i < count; i++)
        dst[i] = src[i];
    b->len += count * sizeof(int64_t);
    return 0;
}

// Appends b to r; the uint64 ids are stored as they are (I64: ids stay below 2^63).
static int keep(received *r, const tmix_batch *b)
{
    const size_t cells = (size_t)b->size * b->mix_n;
    const int64_t pos[2] = {(int64_t)b->epoch, (int64_t)b->index};
    if (ctl_buf_append(&r->images, b->images, b->images_bytes) ||
        ctl_buf_append(&r->sample_ids, b->sample_ids, b->size * sizeof(uint64_t)) ||
        ctl_buf_append(&r->sources, b->sources, cells * sizeof(uint64_t)) ||
        append_u32_as_i64(&r->labels, b->labels, cells) ||
        ctl_buf_append(&r->weights, b->weights, cells * sizeof(float)) ||
        ctl_buf_append(&r->epoch, &pos[0], sizeof(int64_t)) ||
        ctl_buf_append(&r->index, &pos[1], sizeof(int64_t)))
        return -1;
    r->samples += b->size;
    r->batches++;
    return 0;
}

static void received_free(received *r)
{
    ctl_buf *all[] = {&r->images,  &r->sample_ids, &r->sources, &r->labels,
                      &r->weights, &r->epoch,      &r->index};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        ctl_buf_free(all[i]);
}

static int save(const char *path, const received *r, const tmix_info *info, const char *group,
                char *err, size_t errlen)
{
    static const char *const st_dtypes[] = {"?", "F32", "F16", "U8"};
    const int64_t total = (int64_t)r->samples, n = info->mix_n;
    st_tensor t[] = {
        {.name = "images",
         .dtype = st_dtypes[info->dtype],
         .ndim = 4,
         .data = r->images.data,
         .shape = {total, info->channels, info->height, info->width}},
        {.name = "sample_ids",
         .dtype = "I64",
         .ndim = 1,
         .shape = {total},
         .data = r->sample_ids.data},
        {.name = "sources",
         .dtype = "I64",
         .ndim = 2,
         .shape = {total, n},
         .data = r->sources.data},
        {.name = "labels", .dtype = "I64", .ndim = 2, .shape = {total, n}, .data = r->labels.data},
        {.name = "weights",
         .dtype = "F32",
         .ndim = 2,
         .shape = {total, n},
         .data = r->weights.data},
        {.name = "epoch",
         .dtype = "I64",
         .ndim = 1,
         .shape = {(int64_t)r->batches},
         .data = r->epoch.data},
        {.name = "index",
         .dtype = "I64",
         .ndim = 1,
         .shape = {(int64_t)r->batches},
         .data = r->index.data},
    };
    if (info->layout == TMIX_LAYOUT_NHWC) {
        t[0].shape[1] = info->height, t[0].shape[2] = info->width;
        t[0].shape[3] = info->channels;
    }
    char n_text[16];
    snprintf(n_text, sizeof(n_text), "%u", info->mix_n);
    const char *meta[] = {"format", "tmix-batches", "method", info->method,
                          "n",      n_text,         "layout", tmix_layout_name(info->layout),
                          "group",  group,          NULL};
    return st_write(path, t, (int)(sizeof(t) / sizeof(t[0])), meta, err, errlen);
}

static void print_welcome(const char *endpoint, const char *group, const tmix_info *i)
{
    printf("connected to %s: session %016" PRIx64 ", group %s (%s), batch size %u\n", endpoint,
           i->session_id, group, tmix_mode_name(i->mode), i->batch_size);
    printf("images %ux%ux%u %s %s, %u classes, method %s, n = %u, epoch of %" PRIu64
           " samples (%" PRIu64 " batches)\n",
           i->channels, i->height, i->width, tmix_dtype_name(i->dtype), tmix_layout_name(i->layout),
           i->classes, i->method, i->mix_n, i->epoch_size, i->batches_per_epoch);
    if (i->delivery == TMIX_DELIVERY_SHM)
        printf("delivery shm: %s, %zu bytes mapped read-only\n", i->shm_name, i->shm_bytes);
}

// "epoch E batch K ids I1 I2 ..." (--print-ids) or a short line with the first two samples'
// labels and weights.
static void print_batch(const tmix_batch *b, bool ids_only)
{
    printf("epoch %" PRIu64 " batch %" PRIu64, b->epoch, b->index);
    if (ids_only) {
        fputs(" ids", stdout);
        for (uint32_t i = 0; i < b->size; i++)
            printf(" %" PRIu64, b->sample_ids[i]);
        putchar('\n');
        return;
    }
    printf(": %u samples;", b->size);
    for (uint32_t i = 0; i < b->size && i < 2; i++) {
        printf(" %s", i ? "| " : "");
        for (uint32_t k = 0; k < b->mix_n; k++)
            printf("%s%u (%.2f)", k ? " + " : "", b->labels[i * b->mix_n + k],
                   b->weights[i * b->mix_n + k]);
    }
    puts(b->size > 2 ? " | ..." : "");
}

int ctl_pull_main(int argc, char **argv)
{
    ctl_conn conn;
    ctl_opt opts[CTL_MAX_OPTS] = {0};
    int n = 0;
    uint32_t batches = 0, hold_ms = 0;
    bool print_ids = false;
    const char *out = NULL;
    ctl_conn_opts(&conn, 60, true, opts, &n);
    opts[n++] = (ctl_opt){.name = "--batches",
                          .kind = CTL_COUNT,
                          .dest = &batches,
                          .lo = 1,
                          .hi = 1e9,
                          .required = true};
    opts[n++] = (ctl_opt){.name = "--print-ids", .kind = CTL_FLAG, .dest = &print_ids};
    opts[n++] = (ctl_opt){.name = "--hold-ms", .kind = CTL_COUNT, .dest = &hold_ms, .lo = 0,
                          .hi = 3600000};
    opts[n++] = (ctl_opt){.name = "--out", .kind = CTL_TEXT, .dest = &out};
    int rc = ctl_parse("tmixctl pull", usage, opts, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    ctl_conn_finish(&conn);

    tmix_client *c;
    rc = tmix_connect(&c, conn.endpoint, &conn.o);
    if (rc < 0)
        return ctl_fail(rc, tmix_client_error(NULL));
    const tmix_info *info = tmix_get_info(c);
    if (!print_ids)
        print_welcome(conn.endpoint, conn.o.group, info);
    received r = {0};
    uint64_t images = 0;
    const double start = ctl_now();
    for (uint32_t k = 0; k < batches && rc == 0; k++) {
        tmix_batch *b;
        if (k + 1 == batches) // the last: no batch asked for ahead waits leased to us
            tmix_set_ahead(c, 0);
        int got = tmix_next(c, &b);
        if (got < 0) {
            rc = ctl_fail(got, tmix_client_error(c));
            break;
        }
        images += b->size;
        if (print_ids || k < SUMMARY_LINES) {
            print_batch(b, print_ids);
            fflush(stdout); // a test may kill this trainer: what it got is on record
        }
        if (hold_ms)
            nanosleep(&(struct timespec){hold_ms / 1000, (long)(hold_ms % 1000) * 1000000}, NULL);
        if (out && keep(&r, b) < 0)
            rc = ctl_fail(1, "out of memory keeping the batches for --out");
        tmix_release(c, b);
    }
    const double seconds = ctl_now() - start;
    char err[600];
    if (rc == 0 && out && save(out, &r, info, conn.o.group, err, sizeof(err)) < 0)
        rc = ctl_fail(1, err);
    if (rc == 0 && !print_ids) {
        if (batches > SUMMARY_LINES)
            printf("... %u more batches\n", batches - SUMMARY_LINES);
        printf("pulled %u batches, %" PRIu64 " images in %.2f s: %.0f images/s\n", batches, images,
               seconds, seconds > 0 ? (double)images / seconds : 0.0);
        if (out)
            printf("wrote %s\n", out);
    }
    received_free(&r);
    tmix_close(c);
    return rc;
}
