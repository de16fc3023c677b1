// Checkpoint files of training commands (checkpoint.h).
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "ops.h"

#define STEP_KEY "train.step"

int tmixd_run_files_get(tmixd_run_files *f, const char *section, const char *out,
                        const char *checkpoint, const char *metrics, bool resume)
{
    if (!out[0])
        return tmix_fail(TMIX_EINVAL, "needs [%s] out, the file to write", section);
    snprintf(f->out, sizeof f->out, "%s", out);
    if (checkpoint[0])
        snprintf(f->checkpoint, sizeof f->checkpoint, "%s", checkpoint);
    else
        snprintf(f->checkpoint, sizeof f->checkpoint, "%s.ckpt", out);
    if (metrics[0])
        snprintf(f->metrics, sizeof f->metrics, "%s", metrics);
    else
        snprintf(f->metrics, sizeof f->metrics, "%s.metrics.jsonl", out);
    const bool exists = access(f->checkpoint, F_OK) == 0;
    if (!resume && exists)
        return tmix_fail(TMIX_EINVAL, "%s exists: --resume continues that run, or remove it",
                         f->checkpoint);
    if (resume && !exists)
        return tmix_fail(TMIX_ENOENT, "--resume: no checkpoint %s", f->checkpoint);
    return 0;
}

int tmixd_checkpoint_put_meta(tmix_st_writer *w, int64_t step, const tmixd_fingerprint *fp,
                              int n)
{
    char value[32];
    snprintf(value, sizeof value, "%lld", (long long)step);
    TMIX_TRY(tmix_st_writer_meta(w, STEP_KEY, value));
    for (int i = 0; i < n; i++)
        TMIX_TRY(tmix_st_writer_meta(w, fp[i].key, fp[i].value));
    return 0;
}

int tmixd_checkpoint_get_meta(const tmix_safetensors *st, int64_t *step,
                              const tmixd_fingerprint *fp, int n)
{
    const char *path = tmix_safetensors_path(st);
    const char *got = tmix_safetensors_meta(st, STEP_KEY);
    char *end = NULL;
    const long long s = got ? strtoll(got, &end, 10) : -1;
    if (!got || *end || s < 0)
        return tmix_fail(TMIX_EFORMAT, "%s: not a checkpoint (metadata %s is %s)", path,
                         STEP_KEY, got ? got : "missing");
    for (int i = 0; i < n; i++) {
        const char *have = tmix_safetensors_meta(st, fp[i].key);
        if (!have || strcmp(have, fp[i].value) != 0)
            return tmix_fail(TMIX_EINVAL, "%s was made with %s = %s, this run has %s", path,
                             fp[i].key, have ? have : "(none)", fp[i].value);
    }
    *step = s;
    return 0;
}

int tmixd_checkpoint_put_tensors(tmix_st_writer *w, tmix_backend *be, const char *prefix,
                                 const char *const *names, const tmix_tensor *tensors, int n)
{
    float *host = NULL;
    int rc = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        const tmix_tensor *t = &tensors[i];
        if (!t->data)
            continue;
        float *grown = realloc(host, tmix_tensor_bytes(t));
        if (!grown) {
            rc = tmix_fail(TMIX_ENOMEM, "checkpoint: %s%s", prefix, names[i]);
            break;
        }
        host = grown;
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, names[i]);
        rc = tmix_tensor_download(be, host, t);
        if (rc == 0)
            rc = tmix_st_writer_add(w, name, TMIX_ST_F32, t->ndim, t->shape, host);
    }
    free(host);
    return rc;
}

int tmixd_checkpoint_get_tensors(const tmix_safetensors *st, tmix_backend *be, const char *prefix,
                                 const char *const *names, tmix_tensor *tensors, int n,
                                 const char *why_missing)
{
    float *host = NULL;
    int rc = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        tmix_tensor *t = &tensors[i];
        if (!t->data)
            continue;
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, names[i]);
        const tmix_st_tensor *s = tmix_safetensors_find(st, name);
        if (!s || tmix_st_numel(s) != tmix_tensor_numel(t)) {
            rc = tmix_fail(TMIX_EFORMAT, "%s: no tensor '%s' of %lld values (%s)",
                           tmix_safetensors_path(st), name, (long long)tmix_tensor_numel(t),
                           why_missing);
            break;
        }
        float *grown = realloc(host, tmix_tensor_bytes(t));
        if (!grown) {
            rc = tmix_fail(TMIX_ENOMEM, "checkpoint: %s", name);
            break;
        }
        host = grown;
        rc = tmix_st_read_f32(st, s, host);
        if (rc == 0)
            rc = tmix_tensor_upload(be, t, host);
    }
    free(host);
    return rc;
}
