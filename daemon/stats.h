// What the serving loop can say about itself at one moment: gathered on the loop thread by
// server.c, then told two ways, as the Status reply (`tmixctl status`) and as the Prometheus
// text of the metrics endpoint (metrics.c).
#ifndef TMIXD_STATS_H
#define TMIXD_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "histogram.h"

enum { TMIXD_MAX_GROUPS = 256 };

typedef struct {
    const char *name;
    int mode; // proto GroupMode
    uint32_t members, batch_size;
    uint64_t epoch, batches_done, batches_per_epoch; // batches_done: of the current epoch
    uint64_t batches_served, images_served;
    int producing, ready; // the queue: with the producer, produced and not yet taken
    uint32_t node_rank, node_count;
    uint32_t shm_slots, shm_slots_used, cuda_slots, cuda_slots_used; // 0, 0 without a ring
} tmixd_group_stats;

typedef struct {
    const char *version, *backend, *dataset, *method;
    uint64_t dataset_size, uptime_s;
    uint32_t trainers;
    uint64_t batches_served, images_served;
    uint64_t bad_samples;         // distinct unreadable samples, each replaced
    int jobs;                     // with the producer: queued or running
    double longest_running_s;     // how long the batch running longest has run (0: none)
    double stall_timeout_s;       // [server] stall_timeout_s: tmixd exits past it
    size_t memory_bytes, max_memory; // produced batches held, and the budget
    bool has_gpu_memory;
    bool has_graphs;              // mixing on a GPU with [mix] graphs on
    uint64_t graph_batches;       // mixed by one CUDA graph launch
    size_t gpu_memory_used, gpu_memory_total;
    // Seconds per batch: waiting for a worker, reading (read, decode, augment), mixing
    // (normalise, mix, encode), and from a trainer's Next to the reply with its batch.
    const tmixd_histogram *queued, *read, *mix, *next;
    int ngroups;
    tmixd_group_stats groups[TMIXD_MAX_GROUPS];
} tmixd_server_stats;

#endif
