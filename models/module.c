// The mixing module's parameters: shapes, initialisation, load and save (see module.h).
#include "module.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ops.h"
#include "rng.h"
#include "safetensors.h"

#define TMIX_MODULE_NAME(id, name) name,
const char *const tmix_module_names[TMIX_MODULE_COUNT] = {TMIX_MODULE_TENSORS(TMIX_MODULE_NAME)};
#undef TMIX_MODULE_NAME

int tmix_module_stn_features(int stn_size)
{
    return ((stn_size - 6) / 2 - 4) / 2;
}

void tmix_module_shape(int n, int stn_size, int i, int *ndim, int64_t shape[4])
{
    const int64_t f = tmix_module_stn_features(stn_size);
    // {out, in, kh, kw} of each weight; a bias is {out}.
    const int64_t w[][4] = {
        [TMIX_STN_LOC0_W] = {8, 2 * n + 1, 7, 7}, [TMIX_STN_LOC3_W] = {10, 8, 5, 5},
        [TMIX_STN_FC0_W] = {32, 10 * f * f},      [TMIX_STN_FC2_W] = {6 * n, 32},
        [TMIX_MPN_NET0_W] = {32, 2 * n, 3, 3},    [TMIX_MPN_NET2_W] = {32, 32, 3, 3},
        [TMIX_MPN_NET4_W] = {32, 32, 3, 3},       [TMIX_MPN_NET6_W] = {n, 32, 1, 1},
    };
    memset(shape, 0, 4 * sizeof *shape);
    if (i == TMIX_MPN_LOG_TAU) {
        *ndim = 1;
        shape[0] = 1;
    } else if (i % 2 == 1) { // a bias: the out size of the weight before it
        *ndim = 1;
        shape[0] = w[i - 1][0];
    } else {
        *ndim = w[i][2] ? 4 : 2;
        memcpy(shape, w[i], 4 * sizeof *shape);
    }
}

static int check_sizes(const char *what, int n, int stn_size)
{
    if (n < 2 || n > TMIX_MODULE_MAX_N)
        return tmix_fail(TMIX_EINVAL, "%s: n = %d, expected 2 or 3", what, n);
    if (stn_size > 4096 || tmix_module_stn_features(stn_size) < 1)
        return tmix_fail(TMIX_EINVAL, "%s: stn_size = %d, expected 18 to 4096", what, stn_size);
    return 0;
}

static int alloc_all(tmix_module *m, tmix_backend *be)
{
    for (int i = 0; i < TMIX_MODULE_COUNT; i++) {
        int ndim;
        int64_t shape[4];
        tmix_module_shape(m->n, m->stn_size, i, &ndim, shape);
        int rc = tmix_tensor_alloc(be, &m->p[i], TMIX_F32, ndim, shape);
        if (rc < 0) {
            tmix_module_free(m, be);
            return rc;
        }
    }
    return 0;
}

// Writes host values into every parameter; frees the module on failure.
static int upload_all(tmix_module *m, tmix_backend *be, float *const host[TMIX_MODULE_COUNT])
{
    for (int i = 0; i < TMIX_MODULE_COUNT; i++) {
        int rc = tmix_tensor_upload(be, &m->p[i], host[i]);
        if (rc < 0) {
            tmix_module_free(m, be);
            return rc;
        }
    }
    return 0;
}

static void free_host(float *host[TMIX_MODULE_COUNT])
{
    for (int i = 0; i < TMIX_MODULE_COUNT; i++)
        free(host[i]);
}

static int alloc_host(const tmix_module *m, float *host[TMIX_MODULE_COUNT])
{
    memset(host, 0, TMIX_MODULE_COUNT * sizeof *host);
    for (int i = 0; i < TMIX_MODULE_COUNT; i++)
        if (!(host[i] = malloc(tmix_tensor_bytes(&m->p[i])))) {
            free_host(host);
            return tmix_fail(TMIX_ENOMEM, "mixing module: out of host memory");
        }
    return 0;
}

int tmix_module_init(tmix_module *m, tmix_backend *be, int n, int stn_size, float alpha,
                     uint64_t seed)
{
    memset(m, 0, sizeof *m);
    TMIX_TRY(check_sizes("mixing module", n, stn_size));
    m->n = n;
    m->stn_size = stn_size;
    m->alpha = alpha;
    TMIX_TRY(alloc_all(m, be));
    float *host[TMIX_MODULE_COUNT];
    int rc = alloc_host(m, host);
    if (rc < 0) {
        tmix_module_free(m, be);
        return rc;
    }
    // PyTorch's Conv2d/Linear default: weight and bias uniform in +-1/sqrt(fan_in).
    tmix_rng rng;
    tmix_rng_seed(&rng, seed);
    for (int i = 0; i < TMIX_MPN_LOG_TAU; i += 2) {
        const tmix_tensor *w = &m->p[i];
        const int64_t fan_in = tmix_tensor_numel(w) / w->shape[0];
        const double bound = 1.0 / sqrt((double)fan_in);
        for (int j = i; j <= i + 1; j++)
            for (int64_t k = 0; k < tmix_tensor_numel(&m->p[j]); k++)
                host[j][k] = (float)((2.0 * tmix_rng_uniform(&rng) - 1.0) * bound);
    }
    // The regressor starts at the identity warp for every input.
    memset(host[TMIX_STN_FC2_W], 0, tmix_tensor_bytes(&m->p[TMIX_STN_FC2_W]));
    for (int k = 0; k < n; k++)
        memcpy(host[TMIX_STN_FC2_B] + 6 * k, (const float[6]){1, 0, 0, 0, 1, 0}, 6 * sizeof(float));
    host[TMIX_MPN_LOG_TAU][0] = 0.0f;
    rc = upload_all(m, be, host);
    free_host(host);
    return rc;
}

// Parses a whole-string integer of metadata key `key`.
static int meta_int(const tmix_safetensors *st, const char *key, int *out)
{
    const char *s = tmix_safetensors_meta(st, key);
    if (!s)
        return tmix_fail(TMIX_EFORMAT, "%s: metadata has no '%s'", tmix_safetensors_path(st), key);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1 << 20)
        return tmix_fail(TMIX_EFORMAT, "%s: metadata '%s' = '%s' is not an integer",
                         tmix_safetensors_path(st), key, s);
    *out = (int)v;
    return 0;
}

static void meta_copy(const tmix_safetensors *st, const char *key, char *dst, size_t size)
{
    const char *s = tmix_safetensors_meta(st, key);
    snprintf(dst, size, "%s", s ? s : "");
}

static int load_tensors(tmix_module *m, const tmix_safetensors *st, float *host[],
                        const char *others)
{
    const char *path = tmix_safetensors_path(st);
    for (int i = 0; i < TMIX_MODULE_COUNT; i++) {
        const tmix_st_tensor *t = tmix_safetensors_find(st, tmix_module_names[i]);
        if (!t)
            return tmix_fail(TMIX_EFORMAT, "%s: missing tensor '%s'", path, tmix_module_names[i]);
        const tmix_tensor *p = &m->p[i];
        bool ok = t->ndim == p->ndim;
        for (int d = 0; ok && d < p->ndim; d++)
            ok = t->shape[d] == p->shape[d];
        if (i == TMIX_MPN_LOG_TAU && t->ndim == 0) // a 0-d scalar, as torch.tensor(0.) saves
            ok = true;
        if (!ok) {
            char want[64];
            return tmix_fail(TMIX_ESHAPE, "%s: tensor '%s' has %d dimensions (first %lld), "
                             "expected %s for n = %d, stn_size = %d", path,
                             tmix_module_names[i], t->ndim, (long long)(t->ndim ? t->shape[0] : 0),
                             tmix_shape_str(p, want, sizeof want), m->n, m->stn_size);
        }
        TMIX_TRY(tmix_st_read_f32(st, t, host[i]));
    }
    for (int i = 0; i < tmix_safetensors_count(st); i++) {
        const char *name = tmix_safetensors_at(st, i)->name;
        bool known = others && strncmp(name, others, strlen(others)) == 0;
        for (int j = 0; j < TMIX_MODULE_COUNT && !known; j++)
            known = strcmp(name, tmix_module_names[j]) == 0;
        if (!known)
            return tmix_fail(TMIX_EFORMAT, "%s: unexpected tensor '%s' in a mixing module", path,
                             name);
    }
    return 0;
}

int tmix_module_load(tmix_module *m, tmix_backend *be, const char *path)
{
    memset(m, 0, sizeof *m);
    tmix_safetensors *st;
    TMIX_TRY(tmix_safetensors_open(&st, path));
    const int rc = tmix_module_read(m, be, st, NULL);
    tmix_safetensors_close(st);
    return rc;
}

int tmix_module_read(tmix_module *m, tmix_backend *be, const tmix_safetensors *st,
                     const char *others)
{
    memset(m, 0, sizeof *m);
    const char *path = tmix_safetensors_path(st);
    const char *format = tmix_safetensors_meta(st, "format");
    int rc = 0;
    if (!format || strcmp(format, "tmix-module") != 0)
        rc = tmix_fail(TMIX_EFORMAT, "%s: metadata 'format' is '%s', expected 'tmix-module'",
                       path, format ? format : "(missing)");
    if (rc == 0)
        rc = meta_int(st, "n", &m->n);
    if (rc == 0)
        rc = meta_int(st, "stn_size", &m->stn_size);
    if (rc == 0)
        rc = check_sizes(path, m->n, m->stn_size);
    m->alpha = 1.0f;
    const char *alpha = tmix_safetensors_meta(st, "alpha");
    if (rc == 0 && alpha) {
        char *end;
        m->alpha = strtof(alpha, &end);
        if (end == alpha || *end || !(m->alpha > 0) || !isfinite(m->alpha))
            rc = tmix_fail(TMIX_EFORMAT, "%s: metadata 'alpha' = '%s' is not a positive number",
                           path, alpha);
    }
    meta_copy(st, "dataset", m->dataset, sizeof m->dataset);
    meta_copy(st, "teacher_arch", m->teacher_arch, sizeof m->teacher_arch);
    if (rc == 0)
        rc = alloc_all(m, be);
    float *host[TMIX_MODULE_COUNT];
    if (rc == 0 && (rc = alloc_host(m, host)) < 0)
        tmix_module_free(m, be);
    if (rc == 0) {
        rc = load_tensors(m, st, host, others);
        if (rc == 0)
            rc = upload_all(m, be, host);
        if (rc < 0)
            tmix_module_free(m, be);
        free_host(host);
    }
    return rc;
}

int tmix_module_save(const tmix_module *m, tmix_backend *be, const char *path)
{
    tmix_st_writer *w = NULL;
    int rc = tmix_st_writer_new(&w);
    if (rc == 0)
        rc = tmix_module_write(m, be, w);
    if (rc == 0)
        rc = tmix_st_writer_save(w, path);
    tmix_st_writer_free(w);
    return rc;
}

int tmix_module_write(const tmix_module *m, tmix_backend *be, tmix_st_writer *w)
{
    float *host[TMIX_MODULE_COUNT];
    TMIX_TRY(alloc_host(m, host));
    int rc = 0;
    for (int i = 0; rc == 0 && i < TMIX_MODULE_COUNT; i++) {
        rc = tmix_tensor_download(be, host[i], &m->p[i]);
        if (rc == 0)
            rc = tmix_st_writer_add(w, tmix_module_names[i], TMIX_ST_F32, m->p[i].ndim,
                                    m->p[i].shape, host[i]);
    }
    char n[16], size[16], alpha[32];
    snprintf(n, sizeof n, "%d", m->n);
    snprintf(size, sizeof size, "%d", m->stn_size);
    snprintf(alpha, sizeof alpha, "%.9g", m->alpha);
    const char *meta[][2] = {{"format", "tmix-module"}, {"n", n}, {"stn_size", size},
                             {"alpha", alpha}, {"dataset", m->dataset},
                             {"teacher_arch", m->teacher_arch}};
    for (size_t i = 0; rc == 0 && i < sizeof meta / sizeof meta[0]; i++)
        rc = tmix_st_writer_meta(w, meta[i][0], meta[i][1]);
    free_host(host);
    return rc;
}

void tmix_module_free(tmix_module *m, tmix_backend *be)
{
    for (int i = 0; i < TMIX_MODULE_COUNT; i++)
        tmix_tensor_free(be, &m->p[i]);
}

int tmix_module_alloc_like(const tmix_module *m, tmix_backend *be,
                           tmix_tensor out[TMIX_MODULE_COUNT])
{
    memset(out, 0, TMIX_MODULE_COUNT * sizeof *out);
    for (int i = 0; i < TMIX_MODULE_COUNT; i++) {
        int rc = tmix_tensor_alloc(be, &out[i], TMIX_F32, m->p[i].ndim, m->p[i].shape);
        if (rc == 0)
            rc = tmix_tensor_zero(be, &out[i]);
        if (rc < 0) {
            for (int j = 0; j <= i; j++)
                tmix_tensor_free(be, &out[j]);
            return rc;
        }
    }
    return 0;
}
