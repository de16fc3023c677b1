// The serving loop: one raw nanomsg REP socket polled by libuv, the sessions and consumer
// groups of proto/README.md, the producer's workers, the lease timer, the progress file and
// the signals (SIGTERM/SIGINT drain and exit 0, SIGHUP reopens the log).
#ifndef TMIXD_SERVER_H
#define TMIXD_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "producer.h"

typedef struct {
    const char *endpoint;          // ipc:// or tcp://
    const char *state_file;        // progress of the shard groups ("" = not saved)
    size_t max_memory;             // bytes of produced batches before prefetch stops
    int prefetch;
    int max_trainers;
    int max_batch_size;            // of a Hello
    size_t max_request;
    int metrics_port;              // of http://127.0.0.1:PORT/metrics; 0 = none
    // Defaults of a Hello's zero fields, and what Welcome reports.
    uint32_t batch_size;
    int dtype, layout;             // proto values
    int classes;
    const char *dataset;           // tmixd_dataset_describe
    const char *backend;           // "cpu", "cuda:0"
    const char *backend_note;      // why not a GPU, for the log ("" when none to say)
    tmixd_producer_config producer;
    // The settings tmixd runs with: `tmixctl config get` reads them, `config set` changes
    // the reloadable ones (the server applies them at once).
    tmixd_config *config;
} tmixd_server_config;

// Binds, serves until SIGTERM or SIGINT, saves progress and returns 0; or returns a negative
// code with tmix_last_error() when it cannot start (endpoint in use, unreadable state file).
int tmixd_server_run(const tmixd_server_config *c);

#endif
