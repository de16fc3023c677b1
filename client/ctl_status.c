// tmixctl status: the daemon's answer to a StatusRequest as a table.
#include <inttypes.h>
#include <stdio.h>

#include "ctl.h"

static const char usage[] =
    "usage: tmixctl status [-e ENDPOINT] [--timeout S]\n"
    "\n"
    "  -e, --endpoint E  the daemon's endpoint (ipc://PATH or tcp://HOST:PORT)\n"
    "  --timeout S       seconds to wait for the answer (default 5; 0: forever)\n";

static void print_duration(uint64_t s)
{
    if (s >= 86400)
        printf("%" PRIu64 "d ", s / 86400);
    printf("%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 "\n", s / 3600 % 24, s / 60 % 60, s % 60);
}

static void print_status(const char *endpoint, const tmix_server_status *s)
{
    printf("tmixd %s at %s\n", s->version, endpoint);
    printf("  uptime          ");
    print_duration(s->uptime_s);
    printf("  backend         %s\n", s->backend);
    printf("  data set        %s, %" PRIu64 " samples\n", s->dataset, s->dataset_size);
    printf("  method          %s\n", s->method);
    printf("  trainers        %u\n", s->trainers);
    printf("  batches served  %" PRIu64 "\n", s->batches_served);
    printf("  bad samples     %" PRIu64 "\n", s->bad_samples);
    printf("  batch memory    %.1f of %.1f MiB\n", (double)s->memory_bytes / (1 << 20),
           (double)s->max_memory_bytes / (1 << 20));
    if (s->gpu_memory_total)
        printf("  GPU memory      %.1f of %.1f GiB in use\n", (double)s->gpu_memory_used / (1 << 30),
               (double)s->gpu_memory_total / (1 << 30));
    printf("  workers' queue  %u batches\n", s->producer_jobs);
    printf("  per batch       read %.1f ms, mix %.1f ms (means); Next to batch p50 <= %g ms, "
           "p99 <= %g ms\n", s->read_mean_s * 1e3, s->mix_mean_s * 1e3, s->next_p50_s * 1e3,
           s->next_p99_s * 1e3);
    if (!s->group_count) {
        printf("\nno consumer groups\n");
        return;
    }
    printf("\n%-24s %-9s %5s %7s %6s %7s %17s %14s %14s %11s %12s\n", "group", "mode", "node",
           "members", "batch", "epoch", "done/per epoch", "served", "images", "ready/made",
           "slots used");
    for (size_t i = 0; i < s->group_count; i++) {
        const tmix_group_status *g = &s->groups[i];
        char progress[48];
        snprintf(progress, sizeof(progress), "%" PRIu64 "/%" PRIu64, g->batches_done,
                 g->batches_per_epoch);
        char slots[64] = "-";
        if (g->shm_slots || g->cuda_slots)
            snprintf(slots, sizeof slots, "%u/%u", g->shm_slots_used + g->cuda_slots_used,
                     g->shm_slots + g->cuda_slots);
        char node[24] = "-", queue[32];
        if (g->node_count > 1)
            snprintf(node, sizeof node, "%u/%u", g->node_rank, g->node_count);
        snprintf(queue, sizeof queue, "%u/%u", g->batches_ready, g->batches_producing);
        printf("%-24s %-9s %5s %7u %6u %7" PRIu64 " %17s %14" PRIu64 " %14" PRIu64 " %11s %12s\n",
               g->name, tmix_mode_name(g->mode), node, g->members, g->batch_size, g->epoch,
               progress, g->batches_served, g->images_served, queue, slots);
    }
}

int ctl_status_main(int argc, char **argv)
{
    ctl_conn conn;
    ctl_opt opts[CTL_MAX_OPTS] = {0};
    int n = 0;
    ctl_conn_opts(&conn, 5, false, opts, &n);
    int rc = ctl_parse("tmixctl status", usage, opts, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    ctl_conn_finish(&conn);
    tmix_server_status *s;
    rc = tmix_status(conn.endpoint, conn.o.timeout_ms, &s);
    if (rc < 0)
        return ctl_fail(rc, tmix_client_error(NULL));
    print_status(conn.endpoint, s);
    tmix_status_free(s);
    return 0;
}
