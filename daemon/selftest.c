// `tmixd selftest`: replays every golden suite (PyTorch reference cases) on the CPU backend,
// and on each GPU when the CUDA backend is present, and prints one row per check: backend,
// op, check, case, error against the reference, tolerance and time. Exits 1 if any row fails.
#include "selftest.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "error.h"
#include "golden.h"
#include "mix_cmd.h"
#include "safetensors.h"

typedef struct {
    int rows, failed, unsupported;
} tally;

static void print_row(void *ctx, const tmix_golden_row *r)
{
    tally *t = ctx;
    t->rows++;
    const char *verdict = "ok";
    if (r->rc == TMIX_ENOTSUP) {
        t->unsupported++;
        verdict = "n/a";
    } else if (r->rc < 0 || !(r->err <= r->tol)) {
        t->failed++;
        verdict = "FAIL";
    }
    if (r->rc < 0 && r->rc != TMIX_ENOTSUP)
        printf("%-7s %-17s %-12s %-34.34s %10s %8s %9s  %s (%s)\n", r->backend, r->suite,
               r->check, r->label, "-", "-", "-", verdict, tmix_last_error());
    else if (r->rc == TMIX_ENOTSUP)
        printf("%-7s %-17s %-12s %-34.34s %10s %8s %9s  %s\n", r->backend, r->suite, r->check,
               r->label, "-", "-", "-", verdict);
    else
        printf("%-7s %-17s %-12s %-34.34s %10.2e %8.0e %9.3f  %s\n", r->backend, r->suite,
               r->check, r->label, r->err, r->tol, r->ms, verdict);
}

// The fixture directory: $TMIX_GOLDEN_DIR, then share/tmix/golden beside the executable
// (install and bundle layout), then the configured data directory, then the source tree.
static const char *golden_dir(char *buf, size_t size)
{
    const char *env = getenv("TMIX_GOLDEN_DIR");
    if (env && *env)
        return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, size, "%s/../share/tmix/golden", exe);
            if (access(buf, R_OK) == 0)
                return buf;
        }
    }
    if (access(TMIX_GOLDEN_INSTALLED, R_OK) == 0)
        return TMIX_GOLDEN_INSTALLED;
    return TMIX_GOLDEN_SOURCE;
}

static void ignore_row(void *ctx, const tmix_golden_row *r)
{
    (void)ctx;
    (void)r;
}

static int run_backend(tmix_backend *be, const char *dir, tally *t)
{
    // One untimed pass of the first suite first: thread pools start (and OpenBLAS's own
    // threads, idle since we run it single-threaded, spin down) and CUDA modules load, so
    // the time column shows the ops, not the start-up of the process.
    char warm[PATH_MAX + 64];
    snprintf(warm, sizeof warm, "%s/%s.safetensors", dir, tmix_golden_suites[0].name);
    tmix_golden *wg;
    if (tmix_golden_open(&wg, warm) == 0) {
        tmix_golden_suites[0].run(be, wg, ignore_row, NULL);
        tmix_golden_close(wg);
    }
    for (const tmix_golden_suite *s = tmix_golden_suites; s->name; s++) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, s->name);
        tmix_golden *g;
        if (tmix_golden_open(&g, path) < 0) {
            fprintf(stderr, "selftest: %s\n", tmix_last_error());
            return 1;
        }
        int rc = s->run(be, g, print_row, t);
        tmix_golden_close(g);
        if (rc < 0) {
            fprintf(stderr, "selftest: suite %s on %s: %s\n", s->name, be->name,
                    tmix_last_error());
            t->failed++;
        }
    }
    return 0;
}

// ||got - ref|| / ||ref|| over n floats (0 when both are zero).
static double norm_error(const float *got, const float *ref, int64_t n)
{
    double diff = 0, size = 0;
    for (int64_t i = 0; i < n; i++) {
        diff += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        size += (double)ref[i] * ref[i];
    }
    if (!isfinite(diff))
        return INFINITY;
    return size > 0 ? sqrt(diff / size) : sqrt(diff);
}

// Compares every tensor of `expected` with the same tensor of `got`: float tensors by the
// relative error of their norms, integer tensors exactly. Prints a row per tensor. (The whole
// pipeline in float32 against a float64 reference: the warp multiplies the last-bit error
// of θ by the image gradient, and a ReLU input within rounding of zero may route a weight
// gradient differently, so single elements may move by more than the tensor does.
// tests/models/mix_parity.py checks each step element by element.)
static void compare_outputs(const char *backend, const tmix_safetensors *got,
                            const tmix_safetensors *expected, double ms, tally *t)
{
    for (int i = 0; i < tmix_safetensors_count(expected); i++) {
        const tmix_st_tensor *e = tmix_safetensors_at(expected, i);
        const tmix_st_tensor *g = tmix_safetensors_find(got, e->name);
        double err = INFINITY;
        if (g && g->bytes == e->bytes && g->dtype == e->dtype) {
            if (e->dtype == TMIX_ST_F32) {
                float *a = malloc(e->bytes), *b = malloc(e->bytes);
                if (a && b && tmix_st_read_f32(got, g, a) == 0 &&
                    tmix_st_read_f32(expected, e, b) == 0)
                    err = norm_error(a, b, tmix_st_numel(e));
                free(a);
                free(b);
            } else {
                err = memcmp(g->data, e->data, e->bytes) ? INFINITY : 0;
            }
        }
        const bool ok = err <= TMIX_TOL_GEMM;
        t->rows++;
        t->failed += !ok;
        printf("%-7s %-17s %-12s %-34.34s %10.2e %8.0e %9.3f  %s\n", backend, "transformmix",
               i == 0 ? "fwd+bwd" : "", e->name, err, TMIX_TOL_GEMM, i == 0 ? ms : 0.0,
               ok ? "ok" : g ? "FAIL" : "FAIL (missing)");
    }
}

// The whole TransformMix forward and backward (tmixd mix --grads) on `backend` ("cpu",
// "cuda:N"), on the PyTorch fixture of tests/golden/transformmix/ (a cifar_resnet20
// teacher, an n = 2 module).
static void run_transformmix(const char *dir, const char *backend, tally *t)
{
    char teacher[2 * PATH_MAX], module[2 * PATH_MAX], in[2 * PATH_MAX],
        expected[2 * PATH_MAX], out[PATH_MAX];
    const char *tmp = getenv("TMPDIR");
    snprintf(out, sizeof out, "%s/tmix-selftest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    snprintf(teacher, sizeof teacher, "%s/transformmix/teacher.safetensors", dir);
    snprintf(module, sizeof module, "%s/transformmix/module.safetensors", dir);
    snprintf(in, sizeof in, "%s/transformmix/in.safetensors", dir);
    snprintf(expected, sizeof expected, "%s/transformmix/expected.safetensors", dir);
    int fd = mkstemp(out);
    if (fd < 0) {
        fprintf(stderr, "selftest: cannot create %s: %s\n", out, strerror(errno));
        t->failed++;
        return;
    }
    close(fd);
    tmixd_mix_args args = {.teacher = teacher, .module = module, .in = in, .out = out,
                           .grads = true, .backend = backend};
    const double t0 = tmix_now_ms();
    tmix_safetensors *got = NULL, *want = NULL;
    int rc = tmixd_mix_run(&args);
    const double ms = tmix_now_ms() - t0;
    if (rc == 0)
        rc = tmix_safetensors_open(&got, out);
    if (rc == 0)
        rc = tmix_safetensors_open(&want, expected);
    if (rc == 0)
        compare_outputs(backend, got, want, ms, t);
    else {
        printf("%-7s %-17s %-12s %-34s %10s %8s %9s  FAIL (%s)\n", backend, "transformmix",
               "fwd+bwd", "-", "-", "-", "-", tmix_last_error());
        t->rows++;
        t->failed++;
    }
    tmix_safetensors_close(got);
    tmix_safetensors_close(want);
    unlink(out);
}

int tmixd_selftest(void)
{
    char buf[PATH_MAX + 64];
    const char *dir = golden_dir(buf, sizeof buf);
    printf("tmix selftest: every op against PyTorch reference cases in %s\n", dir);
    printf("error = max |got - ref| / max(|ref|, 1e-3 max|ref|), and for the whole "
           "TransformMix\n||got - ref|| / ||ref|| per tensor; time in ms for the op call\n\n");
    printf("%-7s %-17s %-12s %-34s %10s %8s %9s  %s\n", "backend", "op", "check", "case",
           "error", "tol", "ms", "verdict");
    tally t = {0};
    if (run_backend(tmix_backend_cpu(), dir, &t))
        return 1;
    run_transformmix(dir, "cpu", &t);
    int gpus = tmix_cuda_device_count();
    for (int d = 0; d < gpus; d++) {
        tmix_backend *be;
        if (tmix_backend_cuda_open(&be, d) < 0) {
            fprintf(stderr, "selftest: GPU %d: %s\n", d, tmix_last_error());
            t.failed++;
            continue;
        }
        run_backend(be, dir, &t);
        tmix_backend_close(be);
        char name[16];
        snprintf(name, sizeof name, "cuda:%d", d);
        run_transformmix(dir, name, &t);
    }
    if (gpus == 0) {
        tmix_backend *be;
        tmix_backend_cuda_open(&be, 0);
        printf("\nGPU: none used (%s)\n", tmix_last_error());
    }
    printf("\n%d checks: %d passed, %d failed, %d not supported by their backend\n", t.rows,
           t.rows - t.failed - t.unsupported, t.failed, t.unsupported);
    return t.failed ? 1 : 0;
}
