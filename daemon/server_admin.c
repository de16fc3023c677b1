// The requests that need no session (proto/README.md 4 to 6): Status, the daemon's state
// for tmixctl status (and, through server_collect_stats, the metrics); Config, its settings
// read and the reloadable ones changed; Preview, one batch mixed with its intermediates.
#include <nanomsg/nn.h>
#include <stdlib.h>
#include <string.h>

#include "config_table.h"
#include "error.h"
#include "log.h"
#include "ops.h"
#include "server_impl.h"

// ---- previews (tmixctl preview) ----------------------------------------------------------

enum { PREVIEW_MAX_SAMPLES = 32 };

// One batch of `samples`, mixed like any other (position k of epoch 0 for the k-th preview,
// so that each shows other images) with its intermediates kept; answered in on_job_done.
void server_on_preview(server *s, void *control, const Tmix__PreviewRequest *r)
{
    const uint32_t samples = r->samples ? r->samples : 8;
    const uint64_t n = (uint64_t)tmixd_dataset_size(s->c->producer.dataset);
    if (samples > PREVIEW_MAX_SAMPLES || samples > n)
        return server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST,
                                  "preview: %u samples; at most %d (and the data set's %llu)",
                                  samples, PREVIEW_MAX_SAMPLES, (unsigned long long)n);
    tmixd_job *job = calloc(1, sizeof *job);
    tmixd_preview *pv = calloc(1, sizeof *pv);
    if (!job || !pv) {
        free(job);
        free(pv);
        return server_reply_error(s, control, TMIX__ERROR__CODE__INTERNAL,
                                  "preview: out of memory");
    }
    const uint64_t bpe = (n + samples - 1) / samples;
    pv->reply_to = control;
    *job = (tmixd_job){.pos = s->previews++ % bpe,
                       .batches_per_epoch = bpe,
                       .shard_len = n,
                       .batch_size = samples,
                       .dtype = TMIX__DTYPE__FLOAT32,
                       .layout = TMIX__LAYOUT__NCHW,
                       .preview = pv};
    tmixd_producer_submit(s->producer, job);
}

static void reply_preview(server *s, const tmixd_job *job)
{
    const tmixd_preview *pv = job->preview;
    const tmixd_batch *b = job->batch;
    const size_t rows = pv->samples, pairs = rows * pv->n;
    const size_t image = (size_t)pv->channels * pv->height * pv->width;
    const size_t plane = (size_t)pv->height * pv->width;
    uint32_t shape[3] = {pv->channels, pv->height, pv->width};
    Tmix__Preview m = TMIX__PREVIEW__INIT;
    m.samples = pv->samples;
    m.mix_n = pv->n;
    m.n_image_shape = 3;
    m.image_shape = shape;
    m.method = (char *)tmix_method_name(s->c->producer.method);
    m.n_inputs = rows * image;
    m.inputs = pv->inputs;
    m.n_cams = pv->cams ? rows * plane : 0;
    m.cams = pv->cams;
    m.n_warped = pairs * image;
    m.warped = pv->warped;
    m.n_masks = pairs * plane;
    m.masks = pv->masks;
    m.n_mixed = rows * image;
    m.mixed = pv->mixed;
    m.n_source_rows = m.n_labels = m.n_weights = pairs;
    m.source_rows = pv->source_rows;
    m.labels = b->labels;
    m.weights = b->weights;
    m.n_mean = m.n_std = (size_t)s->c->producer.channels;
    m.mean = (float *)s->c->producer.mean;
    m.std = (float *)s->c->producer.std;
    Tmix__Envelope env = TMIX__ENVELOPE__INIT;
    env.body_case = TMIX__ENVELOPE__BODY_PREVIEW;
    env.preview = &m;
    server_reply(s, pv->reply_to, &env);
}

// A preview's batch is made: answer, or say why not; nothing of it stays.
void server_preview_done(server *s, tmixd_job *job)
{
    if (!s->producer)
        nn_freemsg(job->preview->reply_to);
    else if (job->batch)
        reply_preview(s, job);
    else
        server_reply_error(s, job->preview->reply_to, TMIX__ERROR__CODE__INTERNAL, "preview: %s",
                           job->error);
    tmixd_batch_free(job->batch);
    tmixd_preview_free(job->preview);
    free(job);
}

// Everything the Status reply and the metrics say, as of now.
void server_collect_stats(void *ctx, tmixd_server_stats *st)
{
    server *s = ctx;
    *st = (tmixd_server_stats){
        .version = TMIX_VERSION,
        .backend = s->c->backend,
        .dataset = s->c->dataset,
        .method = tmix_method_name(s->c->producer.method),
        .dataset_size = (uint64_t)tmixd_dataset_size(s->c->producer.dataset),
        .uptime_s = (server_now_ms() - s->started_ms) / 1000,
        .trainers = (uint32_t)s->nsessions,
        .batches_served = s->served,
        .images_served = s->images_served,
        .bad_samples = s->producer ? tmixd_producer_bad_samples(s->producer) : 0,
        .jobs = s->producer ? tmixd_producer_pending(s->producer) : 0,
        .longest_running_s = s->producer ? tmixd_producer_longest_s(s->producer) : 0,
        .stall_timeout_s = s->c->config->server_stall_timeout_s,
        .memory_bytes = server_memory_in_use(s),
        .max_memory = s->c->max_memory,
        .queued = &s->queued,
        .read = &s->read,
        .mix = &s->mix,
        .next = &s->next,
        .ngroups = s->ngroups,
    };
    st->has_graphs = s->producer && s->c->producer.graphs &&
                     tmix_backend_has_graphs(s->c->producer.backend);
    st->graph_batches = st->has_graphs ? tmixd_producer_graph_batches(s->producer) : 0;
    st->has_gpu_memory =
        s->c->producer.backend != tmix_backend_cpu() &&
        tmix_memory_info(s->c->producer.backend, &st->gpu_memory_used, &st->gpu_memory_total) == 0;
    for (int i = 0; i < s->ngroups; i++) {
        const tmixd_group *g = s->groups[i];
        const tmixd_group_params *p = tmixd_group_params_get(g);
        uint64_t through, done[64];
        const int ndone = tmixd_group_progress(g, &through, done, 64);
        const uint64_t bpe = tmixd_group_batches_per_epoch(g), epoch = through / bpe;
        uint64_t in_epoch = through % bpe;
        for (int k = 0; k < ndone; k++)
            in_epoch += done[k] / bpe == epoch;
        tmixd_group_stats *gs = &st->groups[i];
        *gs = (tmixd_group_stats){
            .name = tmixd_group_name(g),
            .mode = p->mode,
            .members = (uint32_t)tmixd_group_members(g),
            .batch_size = p->batch_size,
            .epoch = epoch,
            .batches_done = in_epoch,
            .batches_per_epoch = bpe,
            .batches_served = tmixd_group_served(g),
            .images_served = tmixd_group_images_served(g),
            .node_rank = p->node_rank,
            .node_count = p->node_count,
        };
        tmixd_group_queue(g, &gs->producing, &gs->ready);
        if (s->rings[i]) {
            gs->shm_slots = (uint32_t)tmixd_ring_slots(s->rings[i]);
            gs->shm_slots_used = (uint32_t)tmixd_ring_used(s->rings[i]);
        }
        if (s->drings[i]) {
            gs->cuda_slots = (uint32_t)tmixd_device_ring_slots(s->drings[i]);
            gs->cuda_slots_used = (uint32_t)tmixd_device_ring_used(s->drings[i]);
        }
    }
}

// ---- settings (tmixctl config) ------------------------------------------------------------

// What changes while tmixd runs, made to follow the config. The lease and stall timeouts are
// read from it at each tick; the log level is a global of its own.
static void apply_reloadable(const tmixd_config *cfg)
{
    tmixd_log_set_level(cfg->server_log_level);
}

static void reply_config(server *s, void *control, const char *key)
{
    enum { NAME_MAX_ = 128, VALUE_MAX = 4096 };
    const tmixd_config *cfg = s->c->config;
    const size_t count = (size_t)tmixd_setting_count;
    Tmix__Setting *entries = calloc(count, sizeof *entries);
    Tmix__Setting **list = calloc(count, sizeof *list);
    char *text = malloc(count * (NAME_MAX_ + VALUE_MAX));
    if (!entries || !list || !text) {
        server_reply_error(s, control, TMIX__ERROR__CODE__INTERNAL, "config: out of memory");
        goto done;
    }
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        const tmixd_setting *t = &tmixd_settings[i];
        char *name = text + n * (NAME_MAX_ + VALUE_MAX), *value = name + NAME_MAX_;
        snprintf(name, NAME_MAX_, "%s.%s", t->section, t->key);
        if (key[0] && strcmp(key, name) != 0)
            continue;
        if (tmixd_config_get(cfg, name, value, VALUE_MAX) < 0) {
            server_reply_error(s, control, TMIX__ERROR__CODE__INTERNAL, "%s", tmix_last_error());
            goto done;
        }
        tmix__setting__init(&entries[n]);
        entries[n].key = name;
        entries[n].value = value;
        entries[n].reloadable = t->reloadable;
        list[n] = &entries[n];
        n++;
    }
    Tmix__Config c = TMIX__CONFIG__INIT;
    c.n_settings = n;
    c.settings = list;
    Tmix__Envelope env = TMIX__ENVELOPE__INIT;
    env.body_case = TMIX__ENVELOPE__BODY_CONFIG;
    env.config = &c;
    server_reply(s, control, &env);
done:
    free(entries);
    free(list);
    free(text);
}

void server_on_config(server *s, void *control, const Tmix__ConfigRequest *r)
{
    const char *key = r->key ? r->key : "";
    const tmixd_setting *t = key[0] ? tmixd_setting_named(key) : NULL;
    if (key[0] && !t)
        return server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST,
                                  "config: no setting '%s' (tmixctl config get lists them)", key);
    if (r->set) {
        if (!t)
            return server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST,
                                      "config set: which setting? (a key is needed)");
        if (!t->reloadable)
            return server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST,
                                      "config set %s: fixed while tmixd runs; set it in the config "
                                      "file or as --%s=VALUE and restart tmixd",
                                      key, key);
        if (strncmp(s->c->endpoint, "ipc://", 6) != 0)
            return server_reply_error(
                s, control, TMIX__ERROR__CODE__NOT_SUPPORTED,
                "config set: only over the ipc:// endpoint (its file mode says "
                "who may); %s is not one",
                s->c->endpoint);
        if (tmixd_config_set(s->c->config, key, r->value ? r->value : "", "tmixctl config set") < 0)
            return server_reply_error(s, control, TMIX__ERROR__CODE__BAD_REQUEST, "%s",
                                      tmix_last_error());
        apply_reloadable(s->c->config);
        tmixd_log(TMIXD_LOG_INFO, "config: %s = %s (tmixctl config set)", key,
                  r->value ? r->value : "");
    }
    reply_config(s, control, key);
}

void server_on_status(server *s, void *control)
{
    tmixd_server_stats *st = s->stats;
    server_collect_stats(s, st);
    Tmix__GroupStatus gs[MAX_GROUPS], *gp[MAX_GROUPS];
    for (int i = 0; i < st->ngroups; i++) {
        const tmixd_group_stats *g = &st->groups[i];
        tmix__group_status__init(&gs[i]);
        gs[i].name = (char *)g->name;
        gs[i].mode = g->mode;
        gs[i].members = g->members;
        gs[i].batch_size = g->batch_size;
        gs[i].epoch = g->epoch;
        gs[i].batches_done = g->batches_done;
        gs[i].batches_per_epoch = g->batches_per_epoch;
        gs[i].batches_served = g->batches_served;
        gs[i].shm_slots = g->shm_slots;
        gs[i].shm_slots_used = g->shm_slots_used;
        gs[i].cuda_slots = g->cuda_slots;
        gs[i].cuda_slots_used = g->cuda_slots_used;
        gs[i].images_served = g->images_served;
        gs[i].batches_ready = (uint32_t)g->ready;
        gs[i].batches_producing = (uint32_t)g->producing;
        gs[i].node_rank = g->node_rank;
        gs[i].node_count = g->node_count;
        gp[i] = &gs[i];
    }
    Tmix__Status reply_st = TMIX__STATUS__INIT;
    reply_st.version = (char *)st->version;
    reply_st.uptime_s = st->uptime_s;
    reply_st.trainers = st->trainers;
    reply_st.batches_served = st->batches_served;
    reply_st.backend = (char *)st->backend;
    reply_st.dataset = (char *)st->dataset;
    reply_st.dataset_size = st->dataset_size;
    reply_st.method = (char *)st->method;
    reply_st.n_groups = (size_t)st->ngroups;
    reply_st.groups = gp;
    reply_st.bad_samples = st->bad_samples;
    reply_st.memory_bytes = st->memory_bytes;
    reply_st.max_memory_bytes = st->max_memory;
    reply_st.producer_jobs = (uint32_t)st->jobs;
    reply_st.gpu_memory_used = st->has_gpu_memory ? st->gpu_memory_used : 0;
    reply_st.gpu_memory_total = st->has_gpu_memory ? st->gpu_memory_total : 0;
    reply_st.next_p50_s = tmixd_histogram_quantile(st->next, 0.5);
    reply_st.next_p99_s = tmixd_histogram_quantile(st->next, 0.99);
    reply_st.read_mean_s = st->read->count ? st->read->sum / (double)st->read->count : 0;
    reply_st.mix_mean_s = st->mix->count ? st->mix->sum / (double)st->mix->count : 0;
    Tmix__Envelope env = TMIX__ENVELOPE__INIT;
    env.body_case = TMIX__ENVELOPE__BODY_STATUS;
    env.status = &reply_st;
    server_reply(s, control, &env);
}
