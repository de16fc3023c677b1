// The classifier's state in files: every parameter and buffer by its state_dict name, for
// checkpoints (write_state / read_state) and for the teacher file it ends as.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classifier_net.h"
#include "error.h"
#include "ops.h"

// The parameters, then the buffers: value is a F32 tensor, or count a counter.
typedef struct {
    const char *name;
    tmix_tensor *value;
    int64_t *count;
} entry;

static int entry_count(const tmix_classifier *c)
{
    return c->nparams + c->nbuffers;
}

static entry entry_at(const tmix_classifier *c, int i)
{
    if (i < c->nparams)
        return (entry){c->params[i].name, c->params[i].value, NULL};
    const tmix_classifier_buffer *b = &c->buffers[i - c->nparams];
    return (entry){b->name, b->value, b->count};
}

// "prefix" + name into buf.
static const char *full_name(char *buf, size_t size, const char *prefix, const char *name)
{
    snprintf(buf, size, "%s%s", prefix ? prefix : "", name);
    return buf;
}

int tmix_classifier_write_state(const tmix_classifier *c, tmix_st_writer *w, const char *prefix)
{
    if (!c || !w)
        return tmix_fail(TMIX_EINVAL, "classifier_write_state: classifier or writer is NULL");
    for (int i = 0; i < entry_count(c); i++) {
        entry e = entry_at(c, i);
        char name[160];
        full_name(name, sizeof name, prefix, e.name);
        if (e.count) {
            TMIX_TRY(tmix_st_writer_add(w, name, TMIX_ST_I64, 0, NULL, e.count));
            continue;
        }
        float *host = malloc(tmix_tensor_bytes(e.value));
        if (!host)
            return tmix_fail(TMIX_ENOMEM, "classifier_write_state: %s", name);
        int rc = tmix_tensor_download(c->net.be, host, e.value);
        if (rc == 0)
            rc = tmix_st_writer_add(w, name, TMIX_ST_F32, e.value->ndim, e.value->shape, host);
        free(host);
        TMIX_TRY(rc);
    }
    return 0;
}

// Finds tensor `name` in st and checks its dtype and shape against e.
static int find_checked(const tmix_safetensors *st, const char *name, entry e,
                        const tmix_st_tensor **out)
{
    const char *path = tmix_safetensors_path(st);
    const tmix_st_tensor *t = tmix_safetensors_find(st, name);
    if (!t)
        return tmix_fail(TMIX_EFORMAT, "%s: missing tensor '%s'", path, name);
    const tmix_st_dtype want = e.count ? TMIX_ST_I64 : TMIX_ST_F32;
    if (t->dtype != want)
        return tmix_fail(TMIX_EDTYPE, "%s: tensor '%s' is %s, expected %s", path, name,
                         tmix_st_dtype_name(t->dtype), tmix_st_dtype_name(want));
    const int ndim = e.count ? 0 : e.value->ndim;
    bool same = t->ndim == ndim;
    for (int k = 0; same && k < ndim; k++)
        same = t->shape[k] == e.value->shape[k];
    if (!same) {
        char got[160], want_s[96] = "()";
        size_t at = (size_t)snprintf(got, sizeof got, "(");
        for (int k = 0; k < t->ndim && at < sizeof got; k++)
            at += (size_t)snprintf(got + at, sizeof got - at, k ? ",%lld" : "%lld",
                                   (long long)t->shape[k]);
        if (at < sizeof got)
            snprintf(got + at, sizeof got - at, ")");
        if (!e.count)
            tmix_shape_str(e.value, want_s, sizeof want_s);
        return tmix_fail(TMIX_ESHAPE, "%s: tensor '%s' is %s, expected %s", path, name, got,
                         want_s);
    }
    *out = t;
    return 0;
}

// Reads tensor t of entry e into host (numel floats, or one int64 for a counter), checking
// the values.
static int read_checked(const tmix_safetensors *st, const tmix_st_tensor *t, entry e, void *host)
{
    const char *path = tmix_safetensors_path(st);
    if (e.count) {
        int64_t v;
        memcpy(&v, t->data, sizeof v);
        if (v < 0)
            return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s' is %lld, a count cannot be negative",
                             path, t->name, (long long)v);
        memcpy(host, &v, sizeof v);
        return 0;
    }
    float *f = host;
    TMIX_TRY(tmix_st_read_f32(st, t, f));
    const int64_t n = tmix_st_numel(t);
    const size_t len = strlen(t->name), k = strlen(".running_var");
    const bool var = len >= k && strcmp(t->name + len - k, ".running_var") == 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(f[i]))
            return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s' holds a non-finite value at %lld", path,
                             t->name, (long long)i);
        if (var && f[i] < 0)
            return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s' has a negative variance %g", path,
                             t->name, (double)f[i]);
    }
    return 0;
}

// Every entry's values from st into host[i] (all checked), then onto the classifier.
static int read_all(tmix_classifier *c, const tmix_safetensors *st, const char *prefix, void **host)
{
    for (int i = 0; i < entry_count(c); i++) {
        entry e = entry_at(c, i);
        char name[160];
        const tmix_st_tensor *t = NULL;
        TMIX_TRY(find_checked(st, full_name(name, sizeof name, prefix, e.name), e, &t));
        host[i] = malloc(e.count ? sizeof(int64_t) : tmix_tensor_bytes(e.value));
        if (!host[i])
            return tmix_fail(TMIX_ENOMEM, "classifier_read_state: %s", name);
        TMIX_TRY(read_checked(st, t, e, host[i]));
    }
    for (int i = 0; i < entry_count(c); i++) {
        entry e = entry_at(c, i);
        if (e.count)
            memcpy(e.count, host[i], sizeof *e.count);
        else
            TMIX_TRY(tmix_tensor_upload(c->net.be, e.value, host[i]));
    }
    return 0;
}

int tmix_classifier_read_state(tmix_classifier *c, const tmix_safetensors *st, const char *prefix)
{
    if (!c || !st)
        return tmix_fail(TMIX_EINVAL, "classifier_read_state: classifier or file is NULL");
    void **host = calloc((size_t)entry_count(c), sizeof *host);
    if (!host)
        return tmix_fail(TMIX_ENOMEM, "classifier_read_state: %d tensors", entry_count(c));
    int rc = read_all(c, st, prefix, host);
    for (int i = 0; i < entry_count(c); i++)
        free(host[i]);
    free(host);
    return rc;
}

// ---- teacher files -------------------------------------------------------------------------

// "[v0, v1, v2]" with enough digits to give the same floats back.
static const char *json_floats(char *buf, size_t size, const float *v, int n)
{
    size_t at = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < n && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%.9g", i ? ", " : "", (double)v[i]);
    if (at < size)
        snprintf(buf + at, size - at, "]");
    return buf;
}

static int check_norm(const char *op, const float *mean, const float *std, int C)
{
    if (!mean != !std)
        return tmix_fail(TMIX_EINVAL, "%s: %s is given without %s", op, mean ? "mean" : "std",
                         mean ? "std" : "mean");
    for (int i = 0; mean && i < C; i++) {
        if (!isfinite(mean[i]))
            return tmix_fail(TMIX_EINVAL, "%s: mean[%d] is %g", op, i, (double)mean[i]);
        if (!isfinite(std[i]) || !(std[i] > 0))
            return tmix_fail(TMIX_EINVAL, "%s: std[%d] is %g, it must be finite and > 0", op, i,
                             (double)std[i]);
    }
    return 0;
}

static int write_teacher(const tmix_classifier *c, tmix_st_writer *w, const char *path,
                         const char *dataset, const float *mean, const float *std)
{
    const tmix_classifier_info *info = &c->info;
    char buf[128];
    TMIX_TRY(tmix_classifier_write_state(c, w, NULL));
    TMIX_TRY(tmix_st_writer_meta(w, "format", "tmix-teacher"));
    TMIX_TRY(tmix_st_writer_meta(w, "arch", info->arch));
    snprintf(buf, sizeof buf, "%d", info->num_classes);
    TMIX_TRY(tmix_st_writer_meta(w, "num_classes", buf));
    snprintf(buf, sizeof buf, "%d", info->in_channels);
    TMIX_TRY(tmix_st_writer_meta(w, "in_channels", buf));
    if (dataset)
        TMIX_TRY(tmix_st_writer_meta(w, "dataset", dataset));
    if (mean) {
        TMIX_TRY(
            tmix_st_writer_meta(w, "mean", json_floats(buf, sizeof buf, mean, info->in_channels)));
        TMIX_TRY(
            tmix_st_writer_meta(w, "std", json_floats(buf, sizeof buf, std, info->in_channels)));
    }
    return tmix_st_writer_save(w, path);
}

int tmix_classifier_save_teacher(const tmix_classifier *c, const char *path, const char *dataset,
                                 const float *mean, const float *std)
{
    static const char op[] = "classifier_save_teacher";
    if (!c || !path)
        return tmix_fail(TMIX_EINVAL, "%s: classifier or path is NULL", op);
    TMIX_TRY(check_norm(op, mean, std, c->info.in_channels));
    tmix_st_writer *w;
    TMIX_TRY(tmix_st_writer_new(&w));
    int rc = write_teacher(c, w, path, dataset, mean, std);
    tmix_st_writer_free(w);
    return rc;
}
