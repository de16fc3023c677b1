#include "golden.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "ops.h"
#include "safetensors.h"

#define MAX_CASES 64

struct tmix_golden {
    tmix_safetensors *st;
    int count;
    char *names[MAX_CASES];
    cJSON *params[MAX_CASES];
    // host copies handed out by tmix_golden_host, freed at close
    void **copies;
    int ncopies;
};

static const char *path_of(const tmix_golden *g)
{
    return tmix_safetensors_path(g->st);
}

int tmix_golden_open(tmix_golden **out, const char *path)
{
    *out = NULL;
    tmix_golden *g = calloc(1, sizeof *g);
    if (!g)
        return tmix_fail(TMIX_ENOMEM, "%s: opening golden file", path);
    int rc = tmix_safetensors_open(&g->st, path);
    if (rc < 0) {
        free(g);
        return rc;
    }
    const char *cases = tmix_safetensors_meta(g->st, "cases");
    if (!cases) {
        tmix_golden_close(g);
        return tmix_fail(TMIX_EFORMAT, "%s: no 'cases' in __metadata__", path);
    }
    const char *p = cases;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (g->count == MAX_CASES || len == 0) {
            tmix_golden_close(g);
            return tmix_fail(TMIX_EFORMAT, "%s: bad case list '%s' (at most %d cases)", path,
                             cases, MAX_CASES);
        }
        g->names[g->count] = strndup(p, len);
        const char *json = tmix_safetensors_meta(g->st, g->names[g->count]);
        g->params[g->count] = json ? cJSON_Parse(json) : NULL;
        if (!cJSON_IsObject(g->params[g->count])) {
            tmix_golden_close(g);
            return tmix_fail(TMIX_EFORMAT, "%s: case '%.*s' has no JSON parameters", path,
                             (int)len, p);
        }
        g->count++;
        p += len + (p[len] == ',');
    }
    *out = g;
    return 0;
}

void tmix_golden_close(tmix_golden *g)
{
    if (!g)
        return;
    for (int i = 0; i < MAX_CASES; i++) {
        free(g->names[i]);
        cJSON_Delete(g->params[i]);
    }
    for (int i = 0; i < g->ncopies; i++)
        free(g->copies[i]);
    free(g->copies);
    tmix_safetensors_close(g->st);
    free(g);
}

int tmix_golden_cases(const tmix_golden *g)
{
    return g->count;
}

const char *tmix_golden_case(const tmix_golden *g, int c)
{
    return g->names[c];
}

const char *tmix_golden_label(const tmix_golden *g, int c)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(g->params[c], "label");
    return cJSON_IsString(l) ? l->valuestring : g->names[c];
}

static const tmix_st_tensor *find(const tmix_golden *g, int c, const char *role)
{
    char name[256];
    snprintf(name, sizeof name, "%s/%s", g->names[c], role);
    return tmix_safetensors_find(g->st, name);
}

bool tmix_golden_has(const tmix_golden *g, int c, const char *role)
{
    return find(g, c, role) != NULL;
}

static int param(const tmix_golden *g, int c, const char *key, int index, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(g->params[c], key);
    if (index >= 0)
        v = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, index) : NULL;
    if (!cJSON_IsNumber(v))
        return tmix_fail(TMIX_EFORMAT, "%s: case %s has no numeric parameter %s[%d]",
                         path_of(g), g->names[c], key, index);
    *out = v->valuedouble;
    return 0;
}

int tmix_golden_int(const tmix_golden *g, int c, const char *key, int index, int *out)
{
    double v;
    TMIX_TRY(param(g, c, key, index, &v));
    *out = (int)v;
    return 0;
}

int tmix_golden_float(const tmix_golden *g, int c, const char *key, int index, float *out)
{
    double v;
    TMIX_TRY(param(g, c, key, index, &v));
    *out = (float)v;
    return 0;
}

int tmix_golden_host(tmix_golden *g, int c, const char *role, tmix_tensor *out)
{
    const tmix_st_tensor *t = find(g, c, role);
    if (!t)
        return tmix_fail(TMIX_EFORMAT, "%s: case %s has no tensor '%s'", path_of(g),
                         g->names[c], role);
    if ((t->dtype != TMIX_ST_F32 && t->dtype != TMIX_ST_U8) || t->ndim < 1 ||
        t->ndim > TMIX_MAX_DIMS)
        return tmix_fail(TMIX_EFORMAT, "%s: tensor %s/%s is %s with %d dimensions", path_of(g),
                         g->names[c], role, tmix_st_dtype_name(t->dtype), t->ndim);
    // A copy, because mapped data need not be aligned for float loads.
    void **copies = realloc(g->copies, (size_t)(g->ncopies + 1) * sizeof *copies);
    if (!copies)
        return tmix_fail(TMIX_ENOMEM, "%s: copying %s/%s", path_of(g), g->names[c], role);
    g->copies = copies;
    void *data = aligned_alloc(64, (t->bytes + 64) / 64 * 64);
    if (!data)
        return tmix_fail(TMIX_ENOMEM, "%s: copying %s/%s", path_of(g), g->names[c], role);
    memcpy(data, t->data, t->bytes);
    g->copies[g->ncopies++] = data;
    *out = tmix_tensor_view(data, t->dtype == TMIX_ST_U8 ? TMIX_U8 : TMIX_F32, TMIX_CPU,
                            t->ndim, t->shape);
    return 0;
}

int tmix_golden_input(tmix_golden *g, int c, const char *role, tmix_backend *be,
                      tmix_tensor *dev)
{
    tmix_tensor host;
    TMIX_TRY(tmix_golden_host(g, c, role, &host));
    TMIX_TRY(tmix_tensor_alloc(be, dev, host.dtype, host.ndim, host.shape));
    int rc = tmix_tensor_upload(be, dev, host.data);
    if (rc < 0)
        tmix_tensor_free(be, dev);
    return rc;
}

int tmix_golden_output(tmix_golden *g, int c, const char *role, tmix_backend *be,
                       tmix_tensor *dev)
{
    tmix_tensor host;
    TMIX_TRY(tmix_golden_host(g, c, role, &host));
    TMIX_TRY(tmix_tensor_alloc(be, dev, host.dtype, host.ndim, host.shape));
    int rc = tmix_tensor_zero(be, dev);
    if (rc < 0)
        tmix_tensor_free(be, dev);
    return rc;
}

void tmix_golden_free(tmix_backend *be, tmix_tensor *t, int n)
{
    for (int i = 0; i < n; i++)
        tmix_tensor_free(be, &t[i]);
}

double tmix_rel_error(const float *got, const float *ref, int64_t n)
{
    double scale = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(ref[i]) && fabs(ref[i]) > scale)
            scale = fabs(ref[i]);
    double floor = scale > 0 ? 1e-3 * scale : 1e-30, err = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isfinite(got[i]) != isfinite(ref[i]))
            return INFINITY;
        if (!isfinite(ref[i]))
            continue;
        double d = fabs((double)got[i] - ref[i]) / fmax(fabs(ref[i]), floor);
        if (d > err)
            err = d;
    }
    return err;
}

static void report_row(tmix_golden *g, int c, tmix_backend *be, const char *check, double err,
                       double tol, double ms, int rc, tmix_golden_report report, void *ctx)
{
    // The suite name is the file name without directory and extension.
    const char *path = path_of(g), *slash = strrchr(path, '/');
    static _Thread_local char suite[64];
    snprintf(suite, sizeof suite, "%s", slash ? slash + 1 : path);
    char *dot = strstr(suite, ".safetensors");
    if (dot)
        *dot = 0;
    tmix_golden_row row = {
        .suite = suite, .check = check, .case_name = g->names[c],
        .label = tmix_golden_label(g, c), .backend = be->name,
        .err = err, .tol = tol, .ms = ms, .rc = rc,
    };
    report(ctx, &row);
}

int tmix_golden_check(tmix_golden *g, int c, tmix_backend *be, const char *check, int op_rc,
                      const char *role, const tmix_tensor *got, double tol, double ms,
                      tmix_golden_report report, void *ctx)
{
    if (op_rc < 0) { // nothing to compare: the row carries the op's code
        report_row(g, c, be, check, INFINITY, 0, 0, op_rc, report, ctx);
        return op_rc;
    }
    tmix_tensor ref;
    int rc = tmix_golden_host(g, c, role, &ref);
    if (rc == 0 && (!tmix_tensor_same_shape(&ref, got) || ref.dtype != TMIX_F32)) {
        char a[96], b[96];
        rc = tmix_fail(TMIX_ESHAPE, "%s: %s/%s is %s but the op produced %s", path_of(g),
                       g->names[c], role, tmix_shape_str(&ref, a, sizeof a),
                       tmix_shape_str(got, b, sizeof b));
    }
    double err = INFINITY;
    if (rc == 0) {
        float *host = malloc(tmix_tensor_bytes(got));
        rc = host ? tmix_tensor_download(be, host, got)
                  : tmix_fail(TMIX_ENOMEM, "golden: %zu bytes", tmix_tensor_bytes(got));
        if (rc == 0)
            err = tmix_rel_error(host, tmix_f32(&ref), tmix_tensor_numel(&ref));
        free(host);
    }
    report_row(g, c, be, check, err, tol, ms, rc, report, ctx);
    return rc;
}

double tmix_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double tmix_golden_elapsed(tmix_backend *be, int *rc, double t0)
{
    if (*rc == 0)
        *rc = tmix_synchronize(be);
    return tmix_now_ms() - t0;
}
