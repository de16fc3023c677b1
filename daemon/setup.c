// The shared start of serve and search (setup.h).
#include "setup.h"

#include <stdio.h>
#include <string.h>

#include "datadir.h"
#include "error.h"
#include "log.h"

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

bool tmixd_take_flag(int *argc, char **argv, const char *flag)
{
    bool found = false;
    for (int i = 0; i < *argc; i++)
        if (strcmp(argv[i], flag) == 0) {
            found = true;
            memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i - 1) * sizeof *argv);
            (*argc)--;
            i--;
        }
    return found;
}

int tmixd_setup_config(tmixd_setup *s, int argc, char **argv, bool *printed)
{
    memset(s, 0, sizeof *s);
    // --print-config: the config in use, as INI, instead of running.
    *printed = tmixd_take_flag(&argc, argv, "--print-config");
    TMIX_TRY(tmixd_config_from_args(&s->cfg, argc, argv));
    if (*printed) {
        tmixd_config_write(&s->cfg, stdout);
        return 0;
    }
    tmixd_log_set_level(s->cfg.server_log_level);
    return tmixd_log_open(s->cfg.server_log_file);
}

// The teacher (and the module) the method needs, checked against the data set and [mix].
static int open_models(tmixd_setup *s, tmixd_setup_for what)
{
    const tmixd_config *cfg = &s->cfg;
    const int data_channels = tmixd_dataset_channels(s->dataset);
    s->channels = data_channels;
    if (what == TMIXD_SETUP_TRAIN)
        return normalisation(cfg, NULL, s->channels, s->mean, s->std);
    const bool search = what == TMIXD_SETUP_SEARCH, eval = what == TMIXD_SETUP_EVAL;
    const bool needs_teacher = search || eval || tmix_method_uses_cams(cfg->mix_method);
    const bool needs_module = !search && !eval && (tmix_method_uses_stn(cfg->mix_method) ||
                                                   tmix_method_uses_mpn(cfg->mix_method));
    const char *method = tmix_method_name(cfg->mix_method);
    if (needs_teacher && !cfg->teacher_path[0])
        return tmix_fail(TMIX_EINVAL, "%s needs [teacher] path",
                         search ? "search" : eval ? "eval" : "[mix] method");
    if (needs_module && !cfg->mix_module[0])
        return tmix_fail(TMIX_EINVAL, "[mix] method = %s needs [mix] module", method);
    TMIX_TRY(tmixd_data_resolve(cfg->teacher_path, s->teacher_file, sizeof s->teacher_file));
    if (s->teacher_file[0])
        TMIX_TRY(tmix_teacher_load(&s->teacher, s->backend, s->teacher_file));
    if (needs_module || (eval && cfg->mix_module[0])) { // search makes its module
        TMIX_TRY(tmixd_data_resolve(cfg->mix_module, s->module_file, sizeof s->module_file));
        TMIX_TRY(tmix_module_load(&s->module, s->backend, s->module_file));
        s->has_module = true;
        if (s->module.n != cfg->mix_n)
            return tmix_fail(TMIX_EINVAL, "%s mixes n = %d images; [mix] n = %d",
                             s->module_file, s->module.n, cfg->mix_n);
    }
    if (s->teacher) {
        const tmix_teacher_info *ti = tmix_teacher_info_get(s->teacher);
        if (ti->num_classes != tmixd_dataset_classes(s->dataset))
            return tmix_fail(TMIX_EINVAL, "%s classifies %d classes; %s has %d",
                             s->teacher_file, ti->num_classes, tmixd_dataset_describe(s->dataset),
                             tmixd_dataset_classes(s->dataset));
        if (ti->in_channels < data_channels)
            return tmix_fail(TMIX_EINVAL, "%s takes %d channel(s); %s has %d", s->teacher_file,
                             ti->in_channels, tmixd_dataset_describe(s->dataset), data_channels);
        s->channels = ti->in_channels; // gray images are replicated for an RGB teacher
    }
    return normalisation(cfg, s->teacher, s->channels, s->mean, s->std);
}

int tmixd_setup_open(tmixd_setup *s, tmixd_setup_for what)
{
    tmixd_config *cfg = &s->cfg;
    char format[32], split[16];
    TMIX_TRY(tmixd_config_get(cfg, "dataset.format", format, sizeof format));
    TMIX_TRY(tmixd_config_get(cfg, "dataset.split", split, sizeof split));
    TMIX_TRY(tmixd_dataset_open(&s->dataset, format, cfg->dataset_path, split));
    TMIX_TRY(augment_params(cfg, s->dataset, &s->augment));
    char *note = s->backend_note;
    const size_t size = sizeof s->backend_note;
    TMIX_TRY(open_backend(cfg->server_device, &s->backend, note, size));
    _Static_assert((int)TMIXD_PRECISION_TF32 == (int)TMIX_PRECISION_TF32 &&
                       (int)TMIXD_PRECISION_BF16 == (int)TMIX_PRECISION_BF16,
                   "precision words");
    if (s->backend != tmix_backend_cpu())
        TMIX_TRY(tmix_backend_set_precision(s->backend, (tmix_precision)cfg->mix_precision));
    else if (cfg->mix_precision != TMIXD_PRECISION_FP32) {
        char precision[8];
        TMIX_TRY(tmixd_config_get(cfg, "mix.precision", precision, sizeof precision));
        snprintf(note + strlen(note), size - strlen(note), " (fp32: %s needs a GPU)", precision);
    }
    return open_models(s, what);
}

void tmixd_setup_close(tmixd_setup *s)
{
    if (s->has_module)
        tmix_module_free(&s->module, s->backend);
    tmix_teacher_free(s->teacher);
    if (s->backend && s->backend != tmix_backend_cpu())
        tmix_backend_close(s->backend);
    tmixd_dataset_close(s->dataset);
    tmixd_config_free(&s->cfg);
}

int tmixd_setup_test_split(const tmixd_setup *s, tmixd_dataset **test, tmixd_sampler *sampler)
{
    char format[32];
    TMIX_TRY(tmixd_config_get(&s->cfg, "dataset.format", format, sizeof format));
    TMIX_TRY(tmixd_dataset_open(test, format, s->cfg.dataset_path, "test"));
    tmixd_augment_params a = s->augment;
    int h, w;
    tmixd_dataset_image_size(*test, &h, &w);
    const bool pad = a.crop == TMIXD_CROP_PAD && h > 0 && a.out_h >= h &&
                     a.out_h - h == a.out_w - w && (a.out_h - h) % 2 == 0;
    a.crop = pad ? TMIXD_CROP_PAD : TMIXD_CROP_NONE;
    a.pad = pad ? (a.out_h - h) / 2 : 0;
    a.flip = false;
    *sampler = (tmixd_sampler){.dataset = *test, .augment = a, .seed = s->cfg.server_seed,
                               .alpha = s->cfg.mix_alpha};
    return 0;
}

int tmixd_setup_run(const char *name, tmixd_setup *s, tmixd_setup_for what, int argc,
                    char **argv, int (*run)(void *ctx), void *ctx)
{
    bool printed = false;
    int rc = tmixd_setup_config(s, argc, argv, &printed);
    if (rc == 0 && !printed)
        rc = tmixd_setup_open(s, what);
    if (rc == 0 && !printed)
        rc = run(ctx);
    if (rc < 0)
        fprintf(stderr, "tmixd %s: %s\n", name, tmix_last_error());
    return rc < 0 ? 1 : 0;
}
