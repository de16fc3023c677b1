// `tmixd serve`, the life of the process: defaults, config file, command-line overrides;
// log; data set, teacher and module; the endpoint and state directories; then the loop.
#include "serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "server.h"

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

// Mean and std per output channel: the config's, else the teacher's, else 0.5 (which maps
// pixels in [0, 1] to [-1, 1]).
static int normalisation(const tmixd_config *cfg, const tmix_teacher *teacher, int channels,
                         float *mean, float *std)
{
    const tmixd_floats *lists[2] = {&cfg->augment_mean, &cfg->augment_std};
    float *out[2] = {mean, std};
    const char *names[2] = {"mean", "std"};
    const tmix_teacher_info *ti = teacher ? tmix_teacher_info_get(teacher) : NULL;
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < channels; c++) {
            const tmixd_floats *l = lists[k];
            if (l->count == 1 || l->count == channels)
                out[k][c] = l->values[l->count == 1 ? 0 : c];
            else if (l->count != 0)
                return tmix_fail(TMIX_EINVAL, "[augment] %s has %d values for %d channels",
                                 names[k], l->count, channels);
            else if (ti && ti->has_norm)
                out[k][c] = k ? ti->std[c] : ti->mean[c];
            else
                out[k][c] = 0.5f;
        }
    return 0;
}

typedef struct {
    tmixd_config cfg;
    tmix_backend *backend; // the CPU's, or a GPU opened here
    tmixd_dataset *dataset;
    tmix_teacher *teacher;
    tmix_module module;
    bool has_module;
} resources;

// [server] device: auto takes the first GPU and falls back to the CPU, saying why in note
// (the serving line of the log carries it); cuda or cuda:N must open, or tmixd stops.
static int open_backend(const char *device, tmix_backend **be, char *note, size_t size)
{
    note[0] = 0;
    if (strcmp(device, "auto") != 0) {
        const int rc = tmix_backend_open(device, be);
        if (rc == TMIX_EINVAL)
            return tmix_fail(rc, "[server] device = '%s': expected auto, cpu, cuda or cuda:N",
                             device);
        return rc;
    }
    if (tmix_backend_cuda_open(be, 0) < 0) {
        snprintf(note, size, " (no GPU: %s)", tmix_last_error());
        *be = tmix_backend_cpu();
    }
    return 0;
}

static int open_models(resources *r, tmixd_producer_config *p)
{
    const tmixd_config *cfg = &r->cfg;
    const bool needs_teacher = tmix_method_uses_cams(cfg->mix_method);
    const bool needs_module =
        tmix_method_uses_stn(cfg->mix_method) || tmix_method_uses_mpn(cfg->mix_method);
    const char *method = tmix_method_name(cfg->mix_method);
    if (needs_teacher && !cfg->teacher_path[0])
        return tmix_fail(TMIX_EINVAL, "[mix] method = %s needs [teacher] path", method);
    if (needs_module && !cfg->mix_module[0])
        return tmix_fail(TMIX_EINVAL, "[mix] method = %s needs [mix] module", method);
    if (cfg->teacher_path[0])
        TMIX_TRY(tmix_teacher_load(&r->teacher, r->backend, cfg->teacher_path));
    if (needs_module) {
        TMIX_TRY(tmix_module_load(&r->module, r->backend, cfg->mix_module));
        r->has_module = true;
        if (r->module.n != cfg->mix_n)
            return tmix_fail(TMIX_EINVAL, "%s mixes n = %d images; [mix] n = %d",
                             cfg->mix_module, r->module.n, cfg->mix_n);
    }
    const int data_channels = tmixd_dataset_channels(r->dataset);
    p->channels = data_channels;
    if (r->teacher) {
        const tmix_teacher_info *ti = tmix_teacher_info_get(r->teacher);
        if (ti->num_classes != tmixd_dataset_classes(r->dataset))
            return tmix_fail(TMIX_EINVAL, "%s classifies %d classes; %s has %d",
                             cfg->teacher_path, ti->num_classes, tmixd_dataset_describe(r->dataset),
                             tmixd_dataset_classes(r->dataset));
        if (ti->in_channels < data_channels)
            return tmix_fail(TMIX_EINVAL, "%s takes %d channel(s); %s has %d", cfg->teacher_path,
                             ti->in_channels, tmixd_dataset_describe(r->dataset), data_channels);
        p->channels = ti->in_channels; // gray images are replicated for an RGB teacher
    }
    p->teacher = r->teacher;
    p->module = r->has_module ? &r->module : NULL;
    return normalisation(cfg, r->teacher, p->channels, p->mean, p->std);
}

// [augment] crop's words are listed in the order of tmixd_crop_kind.
_Static_assert((int)TMIXD_AUGMENT_CROP_NONE == (int)TMIXD_CROP_NONE &&
                   (int)TMIXD_AUGMENT_CROP_PAD == (int)TMIXD_CROP_PAD &&
                   (int)TMIXD_AUGMENT_CROP_RANDOM_RESIZED == (int)TMIXD_CROP_RANDOM_RESIZED,
               "config crop words and augment crop kinds differ");

static int augment_params(const tmixd_config *cfg, const tmixd_dataset *ds,
                          tmixd_augment_params *a)
{
    int h, w;
    tmixd_dataset_image_size(ds, &h, &w);
    if (cfg->augment_size > 0)
        h = w = cfg->augment_size;
    if (h <= 0 || w <= 0)
        return tmix_fail(TMIX_EINVAL, "%s: images vary in size: set [augment] size",
                         tmixd_dataset_describe(ds));
    *a = (tmixd_augment_params){
        .out_h = h, .out_w = w, .crop = (tmixd_crop_kind)cfg->augment_crop,
        .pad = cfg->augment_pad, .scale_min = (float)cfg->augment_scale_min,
        .scale_max = (float)cfg->augment_scale_max, .ratio_min = 3.0f / 4.0f,
        .ratio_max = 4.0f / 3.0f, .flip = cfg->augment_flip};
    return 0;
}

static int run(resources *r, int argc, char **argv)
{
    tmixd_config *cfg = &r->cfg;
    // --print-config: the config in use, as INI, instead of serving.
    bool print = false;
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--print-config") == 0) {
            print = true;
            memmove(&argv[i], &argv[i + 1], (size_t)(argc - i - 1) * sizeof *argv);
            argc--;
            i--;
        }
    TMIX_TRY(tmixd_config_from_args(cfg, argc, argv));
    if (print) {
        tmixd_config_write(cfg, stdout);
        return 0;
    }
    tmixd_log_set_level(cfg->server_log_level);
    TMIX_TRY(tmixd_log_open(cfg->server_log_file));

    char format[32], split[16];
    TMIX_TRY(tmixd_config_get(cfg, "dataset.format", format, sizeof format));
    TMIX_TRY(tmixd_config_get(cfg, "dataset.split", split, sizeof split));
    TMIX_TRY(tmixd_dataset_open(&r->dataset, format, cfg->dataset_path, split));
    tmixd_server_config sc = {
        .max_memory = (size_t)cfg->server_max_memory_mb << 20,
        .lease_timeout_s = cfg->server_lease_timeout_s,
        .max_trainers = cfg->server_max_trainers,
        .max_request = (size_t)cfg->server_max_request_bytes,
        .batch_size = (uint32_t)cfg->output_batch_size,
        .dtype = (int)cfg->output_dtype + 1,   // proto FLOAT32 = 1, ...
        .layout = (int)cfg->output_layout + 1, // proto NCHW = 1, NHWC = 2
        .classes = tmixd_dataset_classes(r->dataset),
        .dataset = tmixd_dataset_describe(r->dataset),
    };
    char note[512];
    TMIX_TRY(open_backend(cfg->server_device, &r->backend, note, sizeof note));
    _Static_assert((int)TMIXD_PRECISION_TF32 == (int)TMIX_PRECISION_TF32, "precision words");
    if (r->backend != tmix_backend_cpu())
        TMIX_TRY(tmix_backend_set_precision(r->backend, (tmix_precision)cfg->mix_precision));
    else if (cfg->mix_precision != TMIXD_PRECISION_FP32)
        snprintf(note + strlen(note), sizeof note - strlen(note), " (fp32: tf32 needs a GPU)");
    sc.backend = r->backend->name;
    sc.backend_note = note;
    tmixd_producer_config *p = &sc.producer;
    p->backend = r->backend;
    p->dataset = r->dataset;
    p->method = cfg->mix_method;
    p->mix_n = cfg->mix_n;
    p->alpha = cfg->mix_alpha;
    p->seed = cfg->server_seed;
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    p->workers = cfg->server_workers > 0 ? cfg->server_workers : cores > 0 ? (int)cores : 1;
    sc.prefetch = cfg->server_prefetch > 0 ? cfg->server_prefetch : p->workers + 2;
    TMIX_TRY(augment_params(cfg, r->dataset, &p->augment));
    TMIX_TRY(open_models(r, p));
    p->precision = (tmix_precision)cfg->mix_precision;
    // A GPU lane costs a stream and a set of activations; two keep the GPU busy while one
    // batch's copies run. On the CPU a teacher's activations are large and it computes on
    // the worker's core anyway: one lane with a teacher, else a lane per worker (no waiting).
    p->lanes = cfg->mix_lanes > 0                  ? cfg->mix_lanes
               : r->backend != tmix_backend_cpu() ? 2
               : r->teacher                        ? 1
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
    resources r = {0};
    const int rc = run(&r, argc, argv);
    if (rc < 0)
        fprintf(stderr, "tmixd: %s\n", tmix_last_error());
    if (r.has_module)
        tmix_module_free(&r.module, r.backend);
    tmix_teacher_free(r.teacher);
    if (r.backend && r.backend != tmix_backend_cpu())
        tmix_backend_close(r.backend);
    tmixd_dataset_close(r.dataset);
    tmixd_config_free(&r.cfg);
    return rc < 0 ? 1 : 0;
}
