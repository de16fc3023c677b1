// `tmixd serve`, the life of the process: defaults, config file, command-line overrides;
// log; data set, teacher and module; the endpoint and state directories; then the loop.
#include "serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "server.h"
#include "setup.h"

// mkdir -p with mode for every directory it creates.
static int make_dirs(const char *path, mode_t mode)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return tmix_fail(TMIX_EINVAL, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        const bool end = *p == 0;
        if (*p == '/' || end) {
            *p = 0;
            if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return tmix_fail(TMIX_EIO, "%s: %s", buf, strerror(errno));
            if (end)
                return 0;
            *p = '/';
        }
    }
}

static int parent_dir(const char *path, char *buf, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path || (size_t)(slash - path) >= n)
        return 0;
    memcpy(buf, path, (size_t)(slash - path));
    buf[slash - path] = 0;
    return 1;
}

static int run(void *ctx)
{
    tmixd_setup *su = ctx;
    const tmixd_config *cfg = &su->cfg;
    tmixd_server_config sc = {
        .max_memory = (size_t)cfg->server_max_memory_mb << 20,
        .max_trainers = cfg->server_max_trainers,
        .max_batch_size = cfg->server_max_batch_size,
        .max_request = (size_t)cfg->server_max_request_bytes,
        .metrics_port = cfg->server_metrics_port,
        .batch_size = (uint32_t)cfg->output_batch_size,
        .dtype = (int)cfg->output_dtype + 1,   // proto FLOAT32 = 1, ...
        .layout = (int)cfg->output_layout + 1, // proto NCHW = 1, NHWC = 2
        .classes = tmixd_dataset_classes(su->dataset),
        .dataset = tmixd_dataset_describe(su->dataset),
        .backend = su->backend->name,
        .backend_note = su->backend_note,
        .config = &su->cfg,
    };
    tmixd_producer_config *p = &sc.producer;
    p->backend = su->backend;
    p->dataset = su->dataset;
    p->augment = su->augment;
    p->channels = su->channels;
    memcpy(p->mean, su->mean, sizeof p->mean);
    memcpy(p->std, su->std, sizeof p->std);
    p->method = cfg->mix_method;
    p->mix_n = cfg->mix_n;
    p->alpha = cfg->mix_alpha;
    p->teacher = su->teacher;
    p->module = su->has_module ? &su->module : NULL;
    p->seed = cfg->server_seed;
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    p->workers = cfg->server_workers > 0 ? cfg->server_workers : cores > 0 ? (int)cores : 1;
    sc.prefetch = cfg->server_prefetch > 0 ? cfg->server_prefetch : p->workers + 2;
    p->precision = (tmix_precision)cfg->mix_precision;
    p->graphs = cfg->mix_graphs;
    // A GPU lane costs a stream and a set of activations; two keep the GPU busy while one
    // batch's copies run. On the CPU a teacher's activations are large and it computes on
    // the worker's core anyway: one lane with a teacher, else a lane per worker (no waiting).
    p->lanes = cfg->mix_lanes > 0                  ? cfg->mix_lanes
               : su->backend != tmix_backend_cpu() ? 2
               : su->teacher                       ? 1
                                                   : p->workers;

    char endpoint[4096], state_dir[4096], dir[4096], state_file[4200];
    if (cfg->server_endpoint[0])
        snprintf(endpoint, sizeof endpoint, "%s", cfg->server_endpoint);
    else
        TMIX_TRY(tmixd_default_endpoint(endpoint, sizeof endpoint));
    if (strncmp(endpoint, "ipc://", 6) == 0 && parent_dir(endpoint + 6, dir, sizeof dir))
        TMIX_TRY(make_dirs(dir, 0750));
    if (cfg->server_state_dir[0])
        snprintf(state_dir, sizeof state_dir, "%s", cfg->server_state_dir);
    else
        TMIX_TRY(tmixd_default_state_dir(state_dir, sizeof state_dir));
    TMIX_TRY(make_dirs(state_dir, 0750));
    snprintf(state_file, sizeof state_file, "%s/progress.json", state_dir);
    sc.endpoint = endpoint;
    sc.state_file = state_file;
    return tmixd_server_run(&sc);
}

int tmixd_serve_main(int argc, char **argv)
{
    tmixd_setup su;
    const int code = tmixd_setup_run("serve", &su, TMIXD_SETUP_SERVE, argc, argv, run, &su);
    tmixd_setup_close(&su);
    return code;
}
