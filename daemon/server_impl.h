// The serving loop's state and replies, shared by server.c (the loop, sessions and their
// requests) and server_admin.c (the requests without a session: Status, Config, Preview).
// Private to those two files.
#ifndef TMIXD_SERVER_IMPL_H
#define TMIXD_SERVER_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "device_ring.h"
#include "group.h"
#include "histogram.h"
#include "metrics.h"
#include "rng.h"
#include "server.h"
#include "shm_ring.h"
#include "stats.h"
#include "tmix.pb-c.h"

enum {
    MAX_GROUPS = TMIXD_MAX_GROUPS,
    WANTED_PER_PUMP = 16,
    TICK_MS = 100,
    SAVE_EVERY_MS = 1000,
    STATUS_EVERY_MS = 5000, // the throughput systemd shows is over this window
};

typedef struct {
    uint64_t id;
    tmixd_group *group;
    uint64_t last_seen_ms;
    void *pending;           // nanomsg control header of a request not answered yet, or NULL
    uint64_t pending_seq, pending_ack;
    int delivery;            // proto Delivery, as resolved
    double asked;            // tmixd_seconds() at its last Next
} session;

typedef struct {
    const tmixd_server_config *c;
    uv_loop_t loop;
    int sock;
    uv_poll_t poll;
    uv_timer_t tick, watchdog;
    uv_signal_t sigterm, sigint, sighup;
    tmixd_producer *producer; // NULL once stopping
    char fault[256];          // the GPU failure that stopped tmixd, or ""
    tmixd_group *groups[MAX_GROUPS];
    tmixd_ring *rings[MAX_GROUPS]; // groups[i]'s, made when its first SHM member joins
    tmixd_device_ring *drings[MAX_GROUPS]; // and when its first CUDA member joins
    int ngroups;
    session *sessions;
    int nsessions, cap_sessions;
    uint64_t started_ms, last_save_ms, served;
    uint64_t images_served;                   // in every batch sent
    uint64_t status_ms, status_images;        // the last STATUS to systemd, and the count then
    uint64_t previews;                        // asked for so far
    bool save_failing;                        // the last progress save failed
    bool save_at_end;                         // stop() wants a save after the running one
    uv_work_t save;                           // the save running (server.c save_progress)
    char *save_text;                          // what it writes; NULL: no save runs
    int save_rc;                              // how it ended, and why
    char save_error[256];
    tmixd_histogram queued, read, mix, next;  // seconds per batch (stats.h)
    tmixd_metrics *metrics;                   // NULL without [server] metrics_port
    tmixd_server_stats *stats;                // gathered for a Status reply
    bool dirty;
    tmix_rng ids;
} server;

// Milliseconds on the monotonic clock.
uint64_t server_now_ms(void);

// Sends env as the reply to the request whose routing header is control (consumed).
void server_reply(server *s, void *control, Tmix__Envelope *env);
// Replies with an Error of this code and the formatted message.
void server_reply_error(server *s, void *control, Tmix__Error__Code code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// Bytes of the batches held by every group (against [server] max_memory_mb).
size_t server_memory_in_use(const server *s);

// server_admin.c: the requests without a session.
void server_on_status(server *s, void *control);
void server_on_config(server *s, void *control, const Tmix__ConfigRequest *r);
void server_on_preview(server *s, void *control, const Tmix__PreviewRequest *r);
// A preview's batch is made (or failed): answers it; frees job.
void server_preview_done(server *s, tmixd_job *job);
// Everything the Status reply and the metrics say, as of now (ctx: the server).
void server_collect_stats(void *ctx, tmixd_server_stats *st);

#endif
