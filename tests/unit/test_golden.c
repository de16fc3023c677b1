// `test_golden SUITE CHECK`: replays the PyTorch fixture tests/golden/SUITE.safetensors on
// the CPU backend and passes when every case has a row for CHECK within its tolerance.
// With TMIX_TEST_BACKEND=cuda it replays on the GPU instead (the gpu suite), skipping (77)
// when no GPU is present and for checks the CUDA backend does not have yet.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"
#include "golden.h"
#include "harness.h"

typedef struct {
    const char *check;
    int rows, failed, unsupported;
} tally;

static void on_row(void *ctx, const tmix_golden_row *r)
{
    tally *t = ctx;
    if (strcmp(r->check, t->check) != 0)
        return;
    t->rows++;
    bool ok = r->rc == 0 && r->err <= r->tol;
    t->unsupported += r->rc == TMIX_ENOTSUP;
    t->failed += !ok && r->rc != TMIX_ENOTSUP;
    printf("%-4s %-8s %-16s %-12s %-4s %-40s err %.3g (tol %.0e) %s\n", ok ? "ok" : "FAIL",
           r->backend, r->suite, r->check, r->case_name, r->label, r->err, r->tol,
           r->rc ? tmix_err_name(r->rc) : "");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s SUITE CHECK\n", argv[0]);
        return 2;
    }
    const char *suite = argv[1];
    const tmix_golden_suite *s = tmix_golden_suites;
    while (s->name && strcmp(s->name, suite) != 0)
        s++;
    if (!s->name) {
        fprintf(stderr, "no golden suite '%s'\n", suite);
        return 2;
    }

    tmix_backend *be = tmix_backend_cpu();
    const char *want = getenv("TMIX_TEST_BACKEND");
    if (want && strcmp(want, "cuda") == 0) {
        const int rc = open_gpu_or_skip(&be);
        if (rc)
            return rc;
    }

    char path[4096];
    snprintf(path, sizeof path, "%s/%s.safetensors", TMIX_SOURCE_GOLDEN_DIR, suite);
    tmix_golden *g;
    if (tmix_golden_open(&g, path) < 0) {
        fprintf(stderr, "%s\n", tmix_last_error());
        return 1;
    }
    tally t = {.check = argv[2]};
    int rc = s->run(be, g, on_row, &t);
    tmix_golden_close(g);
    if (be != tmix_backend_cpu())
        tmix_backend_close(be);
    if (rc < 0) {
        fprintf(stderr, "suite %s: %s\n", suite, tmix_last_error());
        return 1;
    }
    if (t.rows == 0) {
        fprintf(stderr, "suite %s has no case checking '%s'\n", suite, argv[2]);
        return 1;
    }
    if (t.failed)
        return 1;
    return t.unsupported == t.rows ? 77 : 0;
}
