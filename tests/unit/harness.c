#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int check_err_(int rc, int code, const char *expr, const char *file, int line)
{
    if (rc != code) {
        fprintf(stderr, "%s:%d: %s returned %s (%s), expected %s\n", file, line, expr,
                tmix_err_name(rc), tmix_last_error(), tmix_err_name(code));
        return 1;
    }
    if (rc < 0)
        printf("  %s -> %s: %s\n", expr, tmix_err_name(rc), tmix_last_error());
    return 0;
}

tmix_backend *cpu(void)
{
    return tmix_backend_cpu();
}

tmix_backend *empty_backend(void)
{
    static const tmix_backend_ops none;
    static tmix_backend be = {.name = "empty", .device = TMIX_CPU, .ops = &none};
    return &be;
}

tmix_tensor as_u8(tmix_tensor t)
{
    t.dtype = TMIX_U8;
    return t;
}

tmix_tensor on_cuda(tmix_tensor t)
{
    t.device = TMIX_CUDA;
    return t;
}

void fill_const(float *x, int64_t n, float v)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = v;
}

bool all_const(const float *x, int64_t n, float v)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] != v)
            return false;
    return true;
}

void poison(const test_buf *outs, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        fill_const(outs[i].p, outs[i].n, SENTINEL);
}

bool intact(const test_buf *outs, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        if (!all_const(outs[i].p, outs[i].n, SENTINEL))
            return false;
    return true;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static char tmpdir[64];

const char *tmp_path(const char *name)
{
    static char path[128];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/tmix-test-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            tmpdir[0] = '\0';
            return NULL;
        }
    }
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return path;
}

void tmp_remove(const char *path)
{
    unlink(path);
    rmdir(tmpdir);
    tmpdir[0] = '\0';
}

void fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * (float)((splitmix64(&seed) >> 40) / 16777216.0);
}

double dot(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

int gradcheck(const char *what, float *x, int64_t n, const float *analytic,
              double (*loss)(void *ctx), void *ctx, double h, double atol, double rtol)
{
    int64_t samples = n <= 256 ? n : 256, bad = 0;
    uint64_t seed = 12345;
    double worst = 0;
    for (int64_t s = 0; s < samples; s++) {
        int64_t i = n <= 256 ? s : (int64_t)(splitmix64(&seed) % (uint64_t)n);
        float keep = x[i];
        x[i] = (float)(keep + h);
        double hi = loss(ctx);
        x[i] = (float)(keep - h);
        double lo = loss(ctx);
        // The step actually taken in float32, not the one asked for.
        double step = (double)(float)(keep + h) - (double)(float)(keep - h);
        x[i] = keep;
        double numeric = (hi - lo) / step, diff = fabs(analytic[i] - numeric);
        double excess = diff / (atol + rtol * fabs(numeric));
        if (isnan(excess))
            excess = INFINITY; // a NaN loss or gradient is a mismatch, not a pass
        if (excess > worst)
            worst = excess;
        if (excess > 1 && bad++ < 5)
            fprintf(stderr, "  %s[%lld]: analytic %.7g numeric %.7g\n", what, (long long)i,
                    analytic[i], numeric);
    }
    printf("  gradcheck %s: %lld coordinates, worst %.3g of tolerance, %lld over\n", what,
           (long long)samples, worst, (long long)bad);
    return bad ? 1 : 0;
}

static double test_loss_eval(void *ctx)
{
    test_loss *l = ctx;
    if (l->forward(l) != 0) {
        if (!l->failed)
            fprintf(stderr, "  forward failed: %s\n", tmix_last_error());
        l->failed = true;
        return NAN;
    }
    return dot(l->out, l->r, l->n);
}

int gradcheck_loss(const char *what, float *x, int64_t n, const float *analytic,
                   test_loss *l, double h, double atol, double rtol)
{
    int rc = gradcheck(what, x, n, analytic, test_loss_eval, l, h, atol, rtol);
    return rc != 0 || l->failed ? 1 : 0;
}

int open_gpu_or_cpu_twin(int argc, char **argv, tmix_backend **out, bool *cpu_only)
{
    *cpu_only = argc == 2 && strcmp(argv[1], "--cpu") == 0;
    *out = cpu();
    return *cpu_only ? 0 : open_gpu_or_skip(out);
}

int norm_close(const char *what, const float *ref, const float *got, int64_t n, double tol)
{
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            fprintf(stderr, "%s: element %lld is %g\n", what, (long long)i, got[i]);
            return 1;
        }
        d += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    if (r == 0) {
        fprintf(stderr, "%s: the reference is all 0, nothing to compare\n", what);
        return 1;
    }
    const double err = sqrt(d) / sqrt(r);
    printf("%s%s norm-wise error %.2e (bound %.0e)\n", err <= tol ? "" : "FAIL ", what, err, tol);
    return err <= tol ? 0 : 1;
}

int open_gpu_or_skip(tmix_backend **out)
{
    const int rc = tmix_backend_cuda_open(out, 0);
    if (rc == TMIX_ENODEV) {
        printf("SKIP: %s\n", tmix_last_error());
        return 77;
    }
    if (rc < 0) {
        fprintf(stderr, "cuda backend: %s\n", tmix_last_error());
        return 1;
    }
    return 0;
}
