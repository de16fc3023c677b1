// The teacher: a zoo network (zoo.c) built from a teacher file (models/README.md, "Teacher
// files") by graph.c and run by net_run.c, plus its class activation maps.
#include "teacher.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "graph.h"
#include "ops.h"
#include "safetensors.h"
#include "zoo.h"

struct tmix_teacher {
    tmix_net g;
    tmix_teacher_info info;
    int feature;       // the node whose activation the CAMs weigh
    bool have_forward; // the CAM features hold a forward pass of g.x_shape
    bool can_backward; // and it was tmix_teacher_forward, which kept every activation
    tmix_tensor cam;   // (B, 1, h, w): the CAM at the features' size
};

// The integer metadata value `key`, which must be `want` when given.
static int check_meta_int(const tmix_safetensors *st, const char *key, int want, const char *tensor,
                          const char *what)
{
    const char *v = tmix_safetensors_meta(st, key);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n <= 0)
        return tmix_fail(TMIX_EFORMAT, "%s: metadata %s '%s' is not a positive integer",
                         tmix_safetensors_path(st), key, v);
    if (n != want)
        return tmix_fail(TMIX_EFORMAT, "%s: metadata %s=%ld but tensor '%s' has %d %s",
                         tmix_safetensors_path(st), key, n, tensor, want, what);
    return 0;
}

// Metadata `key` as a JSON array of C numbers (positive ones when positive) into out.
static int meta_floats(const tmix_safetensors *st, const char *key, int C, bool positive,
                       float *out)
{
    const char *v = tmix_safetensors_meta(st, key);
    cJSON *a = cJSON_Parse(v);
    bool ok = cJSON_IsArray(a) && cJSON_GetArraySize(a) == C;
    for (int c = 0; ok && c < C; c++) {
        const cJSON *e = cJSON_GetArrayItem(a, c);
        ok = cJSON_IsNumber(e) && isfinite(e->valuedouble) && (!positive || e->valuedouble > 0);
        if (ok)
            out[c] = (float)e->valuedouble;
    }
    cJSON_Delete(a);
    if (!ok)
        return tmix_fail(TMIX_EFORMAT, "%s: metadata %s '%s' is not a JSON array of %d%s numbers",
                         tmix_safetensors_path(st), key, v, C, positive ? " positive" : "");
    return 0;
}

// in_channels, num_classes and the normalisation, from the stem, the classifier and the
// metadata, which must agree.
static int read_info(tmix_teacher_info *info, const tmix_safetensors *st, const tmix_zoo_arch *za)
{
    const char *path = tmix_safetensors_path(st);
    char cls[64];
    snprintf(cls, sizeof cls, "%s.weight", za->classifier);
    const tmix_st_tensor *stem = tmix_safetensors_find(st, "conv1.weight");
    const tmix_st_tensor *fc = tmix_safetensors_find(st, cls);
    if (!stem || !fc)
        return tmix_fail(TMIX_EFORMAT, "%s: missing tensor '%s' for arch %s", path,
                         stem ? cls : "conv1.weight", za->name);
    if (stem->ndim != 4 || (stem->shape[1] != 1 && stem->shape[1] != 3))
        return tmix_fail(TMIX_ESHAPE,
                         "%s: tensor 'conv1.weight' must be (out, in, kh, kw) with 1 or 3 input "
                         "channels for arch %s",
                         path, za->name);
    if (fc->ndim != 2 || fc->shape[0] < 1 || fc->shape[0] > 1000000)
        return tmix_fail(TMIX_ESHAPE,
                         "%s: tensor '%s' must be (classes, features) with 1 to 1000000 classes "
                         "for arch %s",
                         path, cls, za->name);
    snprintf(info->arch, sizeof info->arch, "%s", za->name);
    info->in_channels = (int)stem->shape[1];
    info->num_classes = (int)fc->shape[0];
    TMIX_TRY(
        check_meta_int(st, "in_channels", info->in_channels, "conv1.weight", "input channels"));
    TMIX_TRY(check_meta_int(st, "num_classes", info->num_classes, cls, "rows"));

    const bool has_mean = tmix_safetensors_meta(st, "mean") != NULL;
    const bool has_std = tmix_safetensors_meta(st, "std") != NULL;
    if (has_mean != has_std)
        return tmix_fail(TMIX_EFORMAT, "%s: metadata has '%s' but no '%s'", path,
                         has_mean ? "mean" : "std", has_mean ? "std" : "mean");
    if (has_mean) {
        TMIX_TRY(meta_floats(st, "mean", info->in_channels, false, info->mean));
        TMIX_TRY(meta_floats(st, "std", info->in_channels, true, info->std));
        info->has_norm = true;
    }
    const char *dataset = tmix_safetensors_meta(st, "dataset");
    snprintf(info->dataset, sizeof info->dataset, "%s", dataset ? dataset : "");
    return 0;
}

static int load(tmix_teacher *t, tmix_backend *be, const tmix_safetensors *st, bool *used)
{
    const char *path = tmix_safetensors_path(st);
    const char *format = tmix_safetensors_meta(st, "format");
    if (format && strcmp(format, "tmix-teacher") != 0)
        return tmix_fail(TMIX_EFORMAT, "%s: metadata format is '%s', expected 'tmix-teacher'", path,
                         format);
    const char *arch = tmix_safetensors_meta(st, "arch");
    char known[256];
    if (!arch)
        return tmix_fail(TMIX_EFORMAT, "%s: metadata has no 'arch' (one of %s)", path,
                         tmix_zoo_names(known, sizeof known));
    const tmix_zoo_arch *za = tmix_zoo_find(arch);
    if (!za)
        return tmix_fail(TMIX_EFORMAT, "%s: unknown arch '%s' (known: %s)", path, arch,
                         tmix_zoo_names(known, sizeof known));
    TMIX_TRY(read_info(&t->info, st, za));

    t->g.be = be;
    t->g.in_channels = t->info.in_channels;
    t->g.num_classes = t->info.num_classes;
    tmix_graph_loader l = tmix_graph_loader_init(&t->g, za->name, st, used);
    t->feature = za->build(&l.b);
    if (t->feature < 0)
        return t->feature;
    // Anything left over means the file is not the architecture it claims to be.
    static const char ignored[] = ".num_batches_tracked";
    for (int i = 0; i < tmix_safetensors_count(st); i++) {
        const char *name = tmix_safetensors_at(st, i)->name;
        size_t n = strlen(name), k = sizeof ignored - 1;
        if (!used[i] && !(n >= k && strcmp(name + n - k, ignored) == 0))
            return tmix_fail(TMIX_EFORMAT, "%s: unexpected tensor '%s' for arch %s", path, name,
                             za->name);
    }
    tmix_net_finish(&t->g, t->feature);
    t->info.feature_channels = t->g.nodes[t->feature].channels;
    return 0;
}

int tmix_teacher_load(tmix_teacher **out, tmix_backend *be, const char *path)
{
    if (!out || !be || !path)
        return tmix_fail(TMIX_EINVAL, "teacher_load: out, backend or path is NULL");
    *out = NULL;
    tmix_safetensors *st;
    TMIX_TRY(tmix_safetensors_open(&st, path));
    tmix_teacher *t = calloc(1, sizeof *t);
    bool *used = calloc((size_t)tmix_safetensors_count(st) + 1, sizeof *used);
    int rc = t && used ? load(t, be, st, used) : tmix_fail(TMIX_ENOMEM, "%s: loading", path);
    free(used);
    tmix_safetensors_close(st);
    if (rc < 0) {
        tmix_teacher_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tmix_teacher_share(tmix_teacher **out, const tmix_teacher *src, tmix_backend *be)
{
    if (!out || !src || !be)
        return tmix_fail(TMIX_EINVAL, "teacher_share: out, teacher or backend is NULL");
    *out = NULL;
    if (strcmp(be->name, src->g.be->name) != 0)
        return tmix_fail(TMIX_EINVAL, "teacher_share: the teacher is on %s, not %s",
                         src->g.be->name, be->name);
    tmix_teacher *t = calloc(1, sizeof *t);
    if (!t)
        return tmix_fail(TMIX_ENOMEM, "teacher_share");
    t->info = src->info;
    t->feature = src->feature;
    const int rc = tmix_graph_share(&t->g, &src->g, be);
    if (rc < 0) {
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tmix_teacher_free(tmix_teacher *t)
{
    if (!t)
        return;
    tmix_tensor_free(t->g.be, &t->cam);
    tmix_net_free(&t->g);
    free(t);
}

const tmix_teacher_info *tmix_teacher_info_get(const tmix_teacher *t)
{
    return &t->info;
}

uint64_t tmix_teacher_generation(const tmix_teacher *t)
{
    return t->g.generation;
}

bool tmix_teacher_runs_whole(const tmix_teacher *t, const char **why)
{
    const bool whole = t && (t->can_backward ? t->g.whole_forward : t->g.layers != NULL);
    if (why)
        *why = whole ? NULL : !t ? "no teacher" : t->g.layers_why[0] ? t->g.layers_why
                                                                      : "no infer yet";
    return whole;
}

// The arguments of a forward or an infer.
static int check_input(const tmix_teacher *t, const char *op, const tmix_tensor *logits,
                       const tmix_tensor *x)
{
    if (!t)
        return tmix_fail(TMIX_EINVAL, "%s: teacher is NULL", op);
    const tmix_backend *be = t->g.be;
    TMIX_TRY(tmix_check_shape(op, "x", x, be, TMIX_F32, 4,
                              (int64_t[]){-1, t->info.in_channels, -1, -1}));
    return tmix_check_shape(op, "logits", logits, be, TMIX_F32, 2,
                            (int64_t[]){x->shape[0], t->info.num_classes});
}

int tmix_teacher_forward(tmix_teacher *t, tmix_tensor *logits, const tmix_tensor *x)
{
    static const char op[] = "teacher_forward";
    TMIX_TRY(check_input(t, op, logits, x));
    t->have_forward = t->can_backward = false;
    TMIX_TRY(tmix_net_forward(&t->g, logits, x, false));
    t->have_forward = t->can_backward = true;
    return 0;
}

int tmix_teacher_infer(tmix_teacher *t, tmix_tensor *logits, const tmix_tensor *x)
{
    static const char op[] = "teacher_infer";
    TMIX_TRY(check_input(t, op, logits, x));
    t->have_forward = t->can_backward = false;
    TMIX_TRY(tmix_net_infer(&t->g, logits, x));
    t->have_forward = true;
    return 0;
}

// CAMs and backward follow a forward pass.
static int check_forward(const tmix_teacher *t, const char *op)
{
    if (!t)
        return tmix_fail(TMIX_EINVAL, "%s: teacher is NULL", op);
    if (!t->have_forward)
        return tmix_fail(TMIX_EINVAL, "%s: no successful teacher_forward or teacher_infer to follow", op);
    return 0;
}

int tmix_teacher_cams(tmix_teacher *t, tmix_tensor *cams, const int64_t *labels)
{
    static const char op[] = "teacher_cams";
    TMIX_TRY(check_forward(t, op));
    const int64_t *xs = t->g.x_shape; // (B, C, H, W)
    tmix_backend *be = t->g.be;
    TMIX_TRY(
        tmix_check_shape(op, "cams", cams, be, TMIX_F32, 4, (int64_t[]){xs[0], 1, xs[2], xs[3]}));
    if (!labels)
        return tmix_fail(TMIX_EINVAL, "%s: labels is NULL", op);
    const tmix_node *f = &t->g.nodes[t->feature];
    const int64_t shape[4] = {xs[0], 1, f->out.shape[2], f->out.shape[3]};
    if (memcmp(t->cam.shape, shape, sizeof shape) != 0) {
        tmix_tensor_free(be, &t->cam);
        t->g.generation++;
        int rc = tmix_tensor_alloc(be, &t->cam, TMIX_F32, 4, shape);
        if (rc < 0) {
            tmix_tensor_free(be, &t->cam); // forget the shape, so the next call retries
            return rc;
        }
    }
    const tmix_node *classifier = &t->g.nodes[t->g.count - 1];
    TMIX_TRY(tmix_cam_forward(be, &t->cam, &f->out, &classifier->weight, labels));
    TMIX_TRY(tmix_relu_forward(be, &t->cam, &t->cam));
    TMIX_TRY(tmix_minmax_normalize_forward(be, &t->cam, &t->cam));
    return tmix_resize_bilinear_forward(be, cams, &t->cam);
}

int tmix_teacher_backward(tmix_teacher *t, tmix_tensor *dx, const tmix_tensor *dlogits)
{
    static const char op[] = "teacher_backward";
    TMIX_TRY(check_forward(t, op));
    if (!t->can_backward)
        return tmix_fail(TMIX_EINVAL, "%s: the last pass was teacher_infer, which keeps no "
                         "activations; run teacher_forward", op);
    const int64_t *xs = t->g.x_shape; // (B, C, H, W)
    tmix_backend *be = t->g.be;
    TMIX_TRY(tmix_check_shape(op, "dlogits", dlogits, be, TMIX_F32, 2,
                              (int64_t[]){xs[0], t->info.num_classes}));
    TMIX_TRY(tmix_check_shape(op, "dx", dx, be, TMIX_F32, 4, xs));
    return tmix_net_backward(&t->g, dx, dlogits);
}
