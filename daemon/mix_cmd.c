// `tmixd mix`: reads a batch, mixes it with the teacher (and module), writes every
// intermediate. The draws the input file does not give come from --seed.
#include "mix_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "mix.h"
#include "ops.h"
#include "safetensors.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tmixd mix --teacher T [--module M] [--method NAME] [--n N] [--alpha A]\n"
            "                 [--seed S] [--grads] [--backend cpu|cuda[:N]]\n"
            "                 --in IN.safetensors --out OUT.safetensors\n"
            "\n"
            "Mixes the batch in IN (images float32 NCHW normalised, labels int64; optional\n"
            "perm, lam, noise) and writes every intermediate to OUT. Methods: none, mixup,\n"
            "cutmix, softmax-cam, stn-only, mpn-only, transformmix (the default with a module,\n"
            "mixup without). --grads adds the loss gradients of the mixed images and the module.\n"
            "--backend runs it on a GPU (default: the CPU reference backend).\n");
}

// ---- input ----------------------------------------------------------------------------------

// Looks up tensor `name` of IN with the given dtype and shape (-1 = any); NULL with
// *rc = 0 when absent and optional.
static const tmix_st_tensor *input_tensor(const tmix_safetensors *st, const char *name,
                                          bool required, tmix_st_dtype dtype, int ndim,
                                          const int64_t *shape, int *rc)
{
    const char *path = tmix_safetensors_path(st);
    const tmix_st_tensor *t = tmix_safetensors_find(st, name);
    *rc = 0;
    if (!t) {
        if (required)
            *rc = tmix_fail(TMIX_EFORMAT, "%s: missing tensor '%s'", path, name);
        return NULL;
    }
    bool ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = shape[d] < 0 || t->shape[d] == shape[d];
    if (!ok) {
        char want[96] = "", got[96] = "";
        for (int d = 0; d < ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%" PRId64,
                     d ? "," : "", shape[d]);
        for (int d = 0; d < t->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%" PRId64, d ? "," : "",
                     t->shape[d]);
        *rc = tmix_fail(TMIX_ESHAPE, "%s: tensor '%s' has shape (%s), expected (%s) (-1: any)",
                        path, name, got, want);
        return NULL;
    }
    const bool float_ok = dtype == TMIX_ST_F32 && (t->dtype == TMIX_ST_F16 ||
                                                   t->dtype == TMIX_ST_BF16);
    if (t->dtype != dtype && !float_ok) {
        *rc = tmix_fail(TMIX_EDTYPE, "%s: tensor '%s' is %s, expected %s", path, name,
                        tmix_st_dtype_name(t->dtype), tmix_st_dtype_name(dtype));
        return NULL;
    }
    return t;
}

typedef struct {
    tmix_tensor images; // on the CPU backend
    int64_t *labels;
    tmix_draws draws;
} batch;

static void batch_free(batch *b)
{
    tmix_tensor_free(tmix_backend_cpu(), &b->images);
    free(b->labels);
    tmix_draws_free(&b->draws);
}

static int read_batch(batch *b, const char *path, int n, int stn_size, double alpha,
                      uint64_t seed)
{
    memset(b, 0, sizeof *b);
    tmix_safetensors *st;
    TMIX_TRY(tmix_safetensors_open(&st, path));
    int rc;
    const tmix_st_tensor *images =
        input_tensor(st, "images", true, TMIX_ST_F32, 4, (int64_t[]){-1, -1, -1, -1}, &rc);
    const int64_t bsz = images ? images->shape[0] : 0;
    const tmix_st_tensor *labels =
        rc ? NULL : input_tensor(st, "labels", true, TMIX_ST_I64, 1, (int64_t[]){bsz}, &rc);
    const tmix_st_tensor *perm = rc ? NULL :
        input_tensor(st, "perm", false, TMIX_ST_I64, 2, (int64_t[]){n - 1, bsz}, &rc);
    const tmix_st_tensor *lam =
        rc ? NULL : input_tensor(st, "lam", false, TMIX_ST_F32, 2, (int64_t[]){bsz, n}, &rc);
    const tmix_st_tensor *noise = rc ? NULL :
        input_tensor(st, "noise", false, TMIX_ST_F32, 4, (int64_t[]){bsz, 1, stn_size, stn_size},
                     &rc);
    if (rc == 0 && bsz > INT32_MAX)
        rc = tmix_fail(TMIX_EINVAL, "%s: batch of %" PRId64 " is too large", path, bsz);
    if (rc == 0)
        rc = tmix_tensor_alloc(tmix_backend_cpu(), &b->images, TMIX_F32, 4, images->shape);
    if (rc == 0)
        rc = tmix_st_read_f32(st, images, tmix_f32(&b->images));
    if (rc == 0 && !(b->labels = malloc(labels->bytes)))
        rc = tmix_fail(TMIX_ENOMEM, "%s: out of memory", path);
    if (rc == 0) {
        memcpy(b->labels, labels->data, labels->bytes);
        rc = tmix_draws_alloc(&b->draws, (int)bsz, n, stn_size);
    }
    if (rc == 0) {
        // Draw everything first, so that giving one draw leaves the others unchanged.
        tmix_rng rng;
        tmix_rng_seed(&rng, seed);
        tmix_draws_sample(&b->draws, &rng, alpha);
        if (perm)
            memcpy(b->draws.perm, perm->data, perm->bytes);
        if (lam)
            rc = tmix_st_read_f32(st, lam, b->draws.lam);
        if (rc == 0 && noise)
            rc = tmix_st_read_f32(st, noise, b->draws.noise);
    }
    if (rc == 0 && (rc = tmix_draws_check(&b->draws)) < 0)
        rc = tmix_fail(rc, "%s: %s", path, tmix_last_error());
    tmix_safetensors_close(st);
    if (rc < 0)
        batch_free(b);
    return rc;
}

// ---- output ---------------------------------------------------------------------------------

// Adds a backend tensor to the writer under `name`, with `shape` (ndim <= 8; NULL: its own).
static int add_tensor(tmix_st_writer *w, tmix_backend *be, const char *name,
                      const tmix_tensor *t, int ndim, const int64_t *shape)
{
    void *host = malloc(tmix_tensor_bytes(t));
    if (!host)
        return tmix_fail(TMIX_ENOMEM, "mix: out of memory writing '%s'", name);
    int rc = tmix_tensor_download(be, host, t);
    if (rc == 0)
        rc = tmix_st_writer_add(w, name, TMIX_ST_F32, shape ? ndim : t->ndim,
                                shape ? shape : t->shape, host);
    free(host);
    return rc;
}

static int write_result(const char *path, tmix_backend *be, const char *method,
                        const tmix_mix_result *r, const tmix_draws *d, const tmix_tensor *images,
                        const tmix_tensor *grads, const tmix_tensor *dmixed)
{
    const int64_t b = d->batch, n = d->n, c = images->shape[1], h = images->shape[2],
                  w = images->shape[3];
    tmix_st_writer *wr;
    TMIX_TRY(tmix_st_writer_new(&wr));
    int rc = add_tensor(wr, be, "cams", r->cams, 0, NULL);
    if (rc == 0)
        rc = add_tensor(wr, be, "theta", r->theta, 4, (int64_t[]){b, n, 2, 3});
    if (rc == 0)
        rc = add_tensor(wr, be, "warped", r->warped, 5, (int64_t[]){b, n, c, h, w});
    if (rc == 0)
        rc = add_tensor(wr, be, "warped_cams", r->warped_cams, 5, (int64_t[]){b, n, 1, h, w});
    if (rc == 0)
        rc = add_tensor(wr, be, "masks", r->masks, 0, NULL);
    if (rc == 0)
        rc = add_tensor(wr, be, "mixed", r->mixed, 0, NULL);
    if (rc == 0)
        rc = tmix_st_writer_add(wr, "weights", TMIX_ST_F32, 2, (int64_t[]){b, n}, r->weights);
    if (rc == 0)
        rc = tmix_st_writer_add(wr, "sources", TMIX_ST_I64, 2, (int64_t[]){b, n}, r->sources);
    if (rc == 0)
        rc = tmix_st_writer_add(wr, "labels", TMIX_ST_I64, 2, (int64_t[]){b, n}, r->labels);
    if (rc == 0)
        rc = add_tensor(wr, be, "logits", r->logits, 0, NULL);
    if (rc == 0)
        rc = tmix_st_writer_add(wr, "loss", TMIX_ST_F32, 1, (int64_t[]){1}, &r->loss);
    if (rc == 0 && dmixed)
        rc = add_tensor(wr, be, "grad.mixed", dmixed, 0, NULL);
    for (int i = 0; rc == 0 && grads && i < TMIX_MODULE_COUNT; i++) {
        char name[96];
        snprintf(name, sizeof name, "grad.%s", tmix_module_names[i]);
        rc = add_tensor(wr, be, name, &grads[i], 0, NULL);
    }
    if (rc == 0)
        rc = tmix_st_writer_meta(wr, "method", method);
    if (rc == 0)
        rc = tmix_st_writer_save(wr, path);
    tmix_st_writer_free(wr);
    return rc;
}

// ---- the command ----------------------------------------------------------------------------

int tmixd_mix_run(const tmixd_mix_args *a)
{
    tmix_method method = a->module ? TMIX_MIX_TRANSFORMMIX : TMIX_MIX_MIXUP;
    if (a->method)
        TMIX_TRY(tmix_method_parse(a->method, &method));
    const bool uses_module = tmix_method_uses_stn(method) || tmix_method_uses_mpn(method);
    if (uses_module && !a->module)
        return tmix_fail(TMIX_EINVAL, "method %s needs --module", tmix_method_name(method));
    if (a->grads && !uses_module)
        return tmix_fail(TMIX_EINVAL, "--grads needs a method with a learned part "
                         "(stn-only, mpn-only, transformmix), not %s", tmix_method_name(method));
    tmix_backend *be;
    int brc = tmix_backend_open(a->backend ? a->backend : "cpu", &be);
    if (brc == TMIX_EINVAL) // name the option: "--backend 'x': expected ..."
        return tmix_fail(brc, "--%s", tmix_last_error());
    TMIX_TRY(brc);

    tmix_teacher *teacher = NULL;
    tmix_module module = {0};
    bool have_module = false;
    tmix_mixer *mx = NULL;
    batch in = {0};
    bool have_batch = false;
    tmix_tensor grads[TMIX_MODULE_COUNT] = {0}, dmixed = {0}, images = {0};
    int rc = tmix_teacher_load(&teacher, be, a->teacher);
    if (rc == 0 && a->module) {
        rc = tmix_module_load(&module, be, a->module);
        have_module = rc == 0;
        if (rc == 0 && a->n && a->n != module.n)
            rc = tmix_fail(TMIX_EINVAL, "--n %d disagrees with the module's n = %d (%s)", a->n,
                           module.n, a->module);
    }
    const int n = have_module ? module.n : a->n ? a->n : 2;
    const int stn_size = have_module ? module.stn_size : 32;
    const double alpha = a->alpha > 0 ? a->alpha : have_module ? module.alpha : 1.0;
    if (rc == 0 && (n < 2 || n > TMIX_MODULE_MAX_N))
        rc = tmix_fail(TMIX_EINVAL, "--n %d: expected 2 or 3", n);
    if (rc == 0)
        rc = read_batch(&in, a->in, n, stn_size, alpha, a->seed);
    have_batch = rc == 0;
    if (rc == 0) // the images on the backend (a copy on a GPU)
        rc = tmix_tensor_alloc(be, &images, TMIX_F32, 4, in.images.shape);
    if (rc == 0)
        rc = tmix_tensor_upload(be, &images, tmix_f32(&in.images));
    if (rc == 0)
        rc = tmix_mixer_new(&mx, be, method);
    tmix_mix_result res;
    if (rc == 0)
        rc = tmix_mix_forward(mx, teacher, have_module ? &module : NULL, &images, in.labels,
                              &in.draws, true, &res);
    if (rc == 0 && a->grads) {
        rc = tmix_module_alloc_like(&module, be, grads);
        if (rc == 0)
            rc = tmix_tensor_alloc(be, &dmixed, TMIX_F32, 4, in.images.shape);
        if (rc == 0)
            rc = tmix_tensor_zero(be, &dmixed);
        if (rc == 0)
            rc = tmix_mix_backward(mx, teacher, &module, grads, &dmixed);
    }
    if (rc == 0)
        rc = write_result(a->out, be, tmix_method_name(method), &res, &in.draws, &images,
                          a->grads ? grads : NULL, a->grads ? &dmixed : NULL);
    for (int i = 0; i < TMIX_MODULE_COUNT; i++)
        tmix_tensor_free(be, &grads[i]);
    tmix_tensor_free(be, &dmixed);
    tmix_tensor_free(be, &images);
    tmix_mixer_free(mx);
    if (have_batch)
        batch_free(&in);
    if (have_module)
        tmix_module_free(&module, be);
    tmix_teacher_free(teacher);
    if (be != tmix_backend_cpu())
        tmix_backend_close(be);
    return rc;
}

static int parse_number(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "tmixd mix: %s '%s': expected a number from %g to %g\n", opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int tmixd_mix_main(int argc, char **argv)
{
    tmixd_mix_args a = {0};
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(opt, "--grads") == 0) {
            a.grads = true;
            continue;
        }
        const char **text = strcmp(opt, "--teacher") == 0  ? &a.teacher
                            : strcmp(opt, "--module") == 0 ? &a.module
                            : strcmp(opt, "--method") == 0 ? &a.method
                            : strcmp(opt, "--in") == 0     ? &a.in
                            : strcmp(opt, "--out") == 0    ? &a.out
                            : strcmp(opt, "--backend") == 0 ? &a.backend
                                                           : NULL;
        const bool numeric = !text && (strcmp(opt, "--n") == 0 || strcmp(opt, "--alpha") == 0 ||
                                       strcmp(opt, "--seed") == 0);
        if (!text && !numeric) {
            fprintf(stderr, "tmixd mix: unknown option '%s'\n\n", opt);
            usage(stderr);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "tmixd mix: %s needs a value\n", opt);
            return 2;
        }
        const char *value = argv[++i];
        double v;
        if (text)
            *text = value;
        else if (strcmp(opt, "--n") == 0) {
            if (parse_number(opt, value, 2, TMIX_MODULE_MAX_N, &v) || v != (int)v)
                return 2;
            a.n = (int)v;
        } else if (strcmp(opt, "--alpha") == 0) {
            if (parse_number(opt, value, 1e-6, 1e6, &v))
                return 2;
            a.alpha = v;
        } else {
            char *end;
            errno = 0;
            a.seed = strtoull(value, &end, 10);
            if (errno || end == value || *end || *value == '-') {
                fprintf(stderr, "tmixd mix: --seed '%s': expected an unsigned integer\n", value);
                return 2;
            }
        }
    }
    const char *missing = !a.teacher ? "--teacher" : !a.in ? "--in" : !a.out ? "--out" : NULL;
    if (missing) {
        fprintf(stderr, "tmixd mix: %s is required\n\n", missing);
        usage(stderr);
        return 2;
    }
    if (tmixd_mix_run(&a) < 0) {
        fprintf(stderr, "tmixd mix: %s\n", tmix_last_error());
        return 1;
    }
    return 0;
}
