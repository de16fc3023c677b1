// The metrics endpoint: Prometheus text at http://127.0.0.1:PORT/metrics (libmicrohttpd, on
// a thread of its own). Each scrape asks the event loop for fresh numbers through an async
// handle, waits for them (up to a second, then serves the last ones) and answers.
#ifndef TMIXD_METRICS_H
#define TMIXD_METRICS_H

#include <uv.h>

#include "stats.h"

typedef struct tmixd_metrics tmixd_metrics;

// Fills *st on the loop thread (server.c's gathering).
typedef void (*tmixd_metrics_collect)(void *ctx, tmixd_server_stats *st);

// Listens on 127.0.0.1:port. TMIX_EIO naming the address when it cannot (in use, say).
int tmixd_metrics_start(tmixd_metrics **out, uv_loop_t *loop, int port,
                        tmixd_metrics_collect collect, void *ctx);

// Stops answering (a scrape in progress gets the last numbers); the async handle is closed
// with the loop's other handles, and tmixd_metrics_free frees m after the loop has ended.
void tmixd_metrics_stop(tmixd_metrics *m);
void tmixd_metrics_free(tmixd_metrics *m);

// The Prometheus text of st, malloc'd (NULL when out of memory).
char *tmixd_metrics_text(const tmixd_server_stats *st);

#endif
