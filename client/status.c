// tmix_status: one StatusRequest on a socket of its own, answered without a session.
#include <stdlib.h>

#include "internal.h"

// The caller's pointer is &pub; the strings point into env.
typedef struct {
    tmix_server_status pub;
    tmix_group_status *groups;
    Tmix__Envelope *env;
} status_reply;

static int status_from(const char *endpoint, Tmix__Envelope *env, tmix_server_status **out,
                       char *err)
{
    const Tmix__Status *s = env->status;
    status_reply *r = calloc(1, sizeof(*r));
    tmix_group_status *groups = calloc(s->n_groups ? s->n_groups : 1, sizeof(*groups));
    if (!r || !groups) {
        free(r);
        free(groups);
        return tmixi_fail(err, TMIX_ENOMEM, "%s: no memory for the status", endpoint);
    }
    for (size_t i = 0; i < s->n_groups; i++) {
        const Tmix__GroupStatus *g = s->groups[i];
        groups[i] = (tmix_group_status){
            .name = g->name,
            .mode = g->mode,
            .members = g->members,
            .batch_size = g->batch_size,
            .epoch = g->epoch,
            .batches_done = g->batches_done,
            .batches_per_epoch = g->batches_per_epoch,
            .batches_served = g->batches_served,
            .shm_slots = g->shm_slots,
            .shm_slots_used = g->shm_slots_used,
            .cuda_slots = g->cuda_slots,
            .cuda_slots_used = g->cuda_slots_used,
            .images_served = g->images_served,
            .batches_ready = g->batches_ready,
            .batches_producing = g->batches_producing,
            .node_rank = g->node_rank,
            .node_count = g->node_count ? g->node_count : 1,
        };
    }
    r->groups = groups;
    r->env = env;
    r->pub = (tmix_server_status){
        .version = s->version,
        .uptime_s = s->uptime_s,
        .trainers = s->trainers,
        .batches_served = s->batches_served,
        .backend = s->backend,
        .dataset = s->dataset,
        .dataset_size = s->dataset_size,
        .method = s->method,
        .bad_samples = s->bad_samples,
        .memory_bytes = s->memory_bytes,
        .group_count = s->n_groups,
        .groups = groups,
        .max_memory_bytes = s->max_memory_bytes,
        .producer_jobs = s->producer_jobs,
        .gpu_memory_used = s->gpu_memory_used,
        .gpu_memory_total = s->gpu_memory_total,
        .next_p50_s = s->next_p50_s,
        .next_p99_s = s->next_p99_s,
        .read_mean_s = s->read_mean_s,
        .mix_mean_s = s->mix_mean_s,
    };
    *out = &r->pub;
    return 0;
}

int tmix_status(const char *endpoint, int timeout_ms, tmix_server_status **out)
{
    char *err = tmixi_thread_error();
    if (!out || !endpoint)
        return tmixi_fail(err, TMIX_EINVAL, "tmix_status: %s is NULL", out ? "endpoint" : "out");
    *out = NULL;
    Tmix__StatusRequest sr = TMIX__STATUS_REQUEST__INIT;
    Tmix__Envelope req = TMIX__ENVELOPE__INIT;
    req.body_case = TMIX__ENVELOPE__BODY_STATUS_REQUEST;
    req.status_request = &sr;
    Tmix__Envelope *rep;
    int rc = tmixi_request(endpoint, timeout_ms, &req, TMIX__ENVELOPE__BODY_STATUS, &rep, err);
    if (rc == 0) {
        rc = status_from(endpoint, rep, out, err);
        if (rc < 0)
            tmixi_envelope_free(rep);
    }
    return rc;
}

void tmix_status_free(tmix_server_status *s)
{
    if (!s)
        return;
    status_reply *r = (status_reply *)s;
    tmixi_envelope_free(r->env);
    free(r->groups);
    free(r);
}
