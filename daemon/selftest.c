// `tmixd selftest`: replays every golden suite (PyTorch reference cases) and the whole
// TransformMix on each backend (the CPU and every GPU, or those named by --backend), then
// prints one table: a row per check, a group of columns (error, ms) per backend side by side,
// and a verdict that is ok only when every backend is within the tolerance. Exits 1 if any
// check fails.
#include "selftest.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "datadir.h"
#include "error.h"
#include "golden.h"
#include "mix_cmd.h"
#include "safetensors.h"

// ---- the table: results of every backend, merged row by row ------------------------------

// The result of one check on one backend.
typedef struct {
    bool present;        // the backend reported this check
    int rc;              // 0, TMIX_ENOTSUP, or the code the check failed with
    double err, tol, ms; // ms < 0: not timed on its own (TransformMix tensors after the first)
    char *error;         // owned: tmix_last_error() of a failed check, or NULL
} cell;

// One check of one case, with a cell per backend.
typedef struct {
    char suite[64], check[32], case_name[64], label[128];
    cell *cells; // [table.backends]
} row;

#define MAX_BACKENDS 64

typedef struct {
    int backends;
    char names[MAX_BACKENDS][32]; // column titles: the backends' names ("cpu", "cuda:0")
    row *rows;
    int count, cap;
    int failures_outside; // unusable fixtures, GPUs that would not open: no row to show them
} table;

typedef enum { VERDICT_OK, VERDICT_NA, VERDICT_FAIL } verdict;

static verdict judge(const cell *c)
{
    if (!c->present)
        return VERDICT_FAIL;
    if (c->rc == TMIX_ENOTSUP)
        return VERDICT_NA;
    return c->rc == 0 && c->err <= c->tol ? VERDICT_OK : VERDICT_FAIL;
}

// The cell of backend b for a check. A suite may report several rows with the same suite,
// check and case (one per output), always in the same order, so the k-th report of backend b
// goes to the first row of that key that b has not filled yet: the k-th row of every backend
// meets in one row. A check no earlier backend reported gets a new row (then shown as missing
// on those). NULL when out of memory (counted as a failure).
static cell *table_cell(table *t, int b, const char *suite, const char *check,
                        const char *case_name, const char *label)
{
    for (int i = 0; i < t->count; i++) {
        row *r = &t->rows[i];
        if (!r->cells[b].present && strcmp(r->suite, suite) == 0 &&
            strcmp(r->check, check) == 0 && strcmp(r->case_name, case_name) == 0)
            return &r->cells[b];
    }
    if (t->count == t->cap) {
        int cap = t->cap ? 2 * t->cap : 512;
        row *rows = realloc(t->rows, (size_t)cap * sizeof *rows);
        if (!rows) {
            t->failures_outside++;
            return NULL;
        }
        t->rows = rows;
        t->cap = cap;
    }
    row *r = &t->rows[t->count];
    *r = (row){.cells = calloc((size_t)t->backends, sizeof *r->cells)};
    if (!r->cells) {
        t->failures_outside++;
        return NULL;
    }
    snprintf(r->suite, sizeof r->suite, "%s", suite);
    snprintf(r->check, sizeof r->check, "%s", check);
    snprintf(r->case_name, sizeof r->case_name, "%s", case_name);
    snprintf(r->label, sizeof r->label, "%s", label);
    t->count++;
    return &r->cells[b];
}

// Records a result; `error` (copied) is the failure's text, or NULL.
static void table_put(table *t, int b, const char *suite, const char *check,
                      const char *case_name, const char *label, int rc, double err, double tol,
                      double ms, const char *error)
{
    cell *c = table_cell(t, b, suite, check, case_name, label);
    if (!c)
        return;
    *c = (cell){.present = true, .rc = rc, .err = err, .tol = tol, .ms = ms,
                .error = error ? strdup(error) : NULL};
}

static void table_free(table *t)
{
    for (int i = 0; i < t->count; i++) {
        for (int b = 0; b < t->backends; b++)
            free(t->rows[i].cells[b].error);
        free(t->rows[i].cells);
    }
    free(t->rows);
}

// ---- printing ------------------------------------------------------------------------------

// Row layout: the check's columns, then per backend " %10s %8s" (error, ms), then the verdict.
#define CHECK_COLUMNS "%-17s %-12s %-34.34s %5s"
#define GROUP_WIDTH 19 // "%10s %8s"
#define RULE "-------------------" // GROUP_WIDTH dashes

static void print_header(const table *t)
{
    // Above each group, its backend's name centred in a rule: "-------- cpu -------".
    printf(CHECK_COLUMNS, "", "", "", "");
    for (int b = 0; b < t->backends; b++) {
        const int len = (int)strlen(t->names[b]) + 2,
                  left = len < GROUP_WIDTH ? (GROUP_WIDTH - len) / 2 : 0,
                  right = len < GROUP_WIDTH ? GROUP_WIDTH - len - left : 0;
        printf(" %.*s %s %.*s", left, RULE, t->names[b], right, RULE);
    }
    printf("\n" CHECK_COLUMNS, "op", "check", "case", "tol");
    for (int b = 0; b < t->backends; b++)
        printf(" %10s %8s", "error", "ms");
    printf("  verdict\n");
}

// Prints the backends whose cells of r judge `v`, comma-separated, after `word`.
static void print_verdict(const table *t, const row *r, verdict v, const char *word)
{
    printf("  %s ", word);
    const char *sep = "";
    for (int b = 0; b < t->backends; b++)
        if (judge(&r->cells[b]) == v) {
            printf("%s%s", sep, t->names[b]);
            sep = ",";
        }
}

static void print_row(const table *t, const row *r)
{
    double tol = NAN;
    verdict worst = VERDICT_OK;
    for (int b = 0; b < t->backends; b++) {
        const cell *c = &r->cells[b];
        if (c->present && isnan(tol))
            tol = c->tol;
        const verdict v = judge(c);
        worst = v > worst ? v : worst;
    }
    char tol_text[16];
    snprintf(tol_text, sizeof tol_text, "%.0e", tol);
    printf(CHECK_COLUMNS, r->suite, r->check, r->label, tol_text);
    for (int b = 0; b < t->backends; b++) {
        const cell *c = &r->cells[b];
        if (!c->present || c->rc < 0)
            printf(" %10s %8s", !c->present ? "missing" : c->rc == TMIX_ENOTSUP ? "n/a" : "failed",
                   "-");
        else if (c->ms < 0)
            printf(" %10.2e %8s", c->err, "");
        else
            printf(" %10.2e %8.3f", c->err, c->ms);
    }
    if (worst == VERDICT_OK)
        printf("  ok");
    else
        print_verdict(t, r, worst, worst == VERDICT_FAIL ? "FAIL" : "n/a");
    printf("\n");
}

// Below the table, so that it stays aligned: the text of each failure and each missing
// result, in table order.
static void print_notes(const table *t)
{
    bool first = true;
    for (int i = 0; i < t->count; i++)
        for (int b = 0; b < t->backends; b++) {
            const row *r = &t->rows[i];
            const cell *c = &r->cells[b];
            if (c->present && !c->error)
                continue;
            printf("%s", first ? "\n" : "");
            first = false;
            if (c->present)
                printf("%s %s %s %s: %s\n", t->names[b], r->suite, r->check, r->label, c->error);
            else
                printf("MISSING: %s reported no %s %s for case %s (%s), which another backend "
                       "did: the backends ran different cases\n",
                       t->names[b], r->suite, r->check, r->case_name, r->label);
        }
}

// ---- running the golden suites -------------------------------------------------------------

typedef struct {
    table *t;
    int b;
} sink;

static void record_row(void *ctx, const tmix_golden_row *r)
{
    const sink *s = ctx;
    const bool failed = r->rc < 0 && r->rc != TMIX_ENOTSUP;
    table_put(s->t, s->b, r->suite, r->check, r->case_name, r->label, r->rc, r->err, r->tol,
              r->ms, failed ? tmix_last_error() : NULL);
}

static void ignore_row(void *ctx, const tmix_golden_row *r)
{
    (void)ctx;
    (void)r;
}

// Every golden suite on be, as column b. Returns 1 when a fixture file cannot be opened.
static int run_backend(tmix_backend *be, const char *dir, table *t, int b)
{
    // One untimed pass of the first suite first: thread pools start (and OpenBLAS's own
    // threads, idle since we run it single-threaded, spin down) and CUDA modules load, so
    // the time column shows the ops, not the start-up of the process.
    char warm[2 * PATH_MAX];
    snprintf(warm, sizeof warm, "%s/%s.safetensors", dir, tmix_golden_suites[0].name);
    tmix_golden *wg;
    if (tmix_golden_open(&wg, warm) == 0) {
        tmix_golden_suites[0].run(be, wg, ignore_row, NULL);
        tmix_golden_close(wg);
    }
    sink s = {t, b};
    for (const tmix_golden_suite *suite = tmix_golden_suites; suite->name; suite++) {
        char path[2 * PATH_MAX];
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, suite->name);
        tmix_golden *g;
        if (tmix_golden_open(&g, path) < 0) {
            fprintf(stderr, "selftest: %s\n", tmix_last_error());
            return 1;
        }
        int rc = suite->run(be, g, record_row, &s);
        tmix_golden_close(g);
        if (rc < 0) {
            fprintf(stderr, "selftest: suite %s on %s: %s\n", suite->name, be->name,
                    tmix_last_error());
            t->failures_outside++;
        }
    }
    return 0;
}

// ---- the whole TransformMix ----------------------------------------------------------------

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

// The error of tensor e of `expected` in `got` (see compare_outputs), or a failure naming it
// when `got` lacks it or holds it with another dtype or size.
static int tensor_error(const tmix_safetensors *got, const tmix_safetensors *expected,
                        const tmix_st_tensor *e, double *err)
{
    const tmix_st_tensor *g = tmix_safetensors_find(got, e->name);
    if (!g)
        return tmix_fail(TMIX_ENOENT, "%s has no tensor '%s'", tmix_safetensors_path(got),
                         e->name);
    if (g->bytes != e->bytes || g->dtype != e->dtype)
        return tmix_fail(TMIX_ESHAPE, "'%s' is %zu bytes of %s, the reference %zu bytes of %s",
                         e->name, g->bytes, tmix_st_dtype_name(g->dtype), e->bytes,
                         tmix_st_dtype_name(e->dtype));
    if (e->dtype != TMIX_ST_F32) {
        *err = memcmp(g->data, e->data, e->bytes) ? INFINITY : 0;
        return 0;
    }
    float *a = malloc(e->bytes), *b = malloc(e->bytes);
    int rc = a && b ? 0 : tmix_fail(TMIX_ENOMEM, "no memory to compare '%s'", e->name);
    if (rc == 0)
        rc = tmix_st_read_f32(got, g, a);
    if (rc == 0)
        rc = tmix_st_read_f32(expected, e, b);
    if (rc == 0)
        *err = norm_error(a, b, tmix_st_numel(e));
    free(a);
    free(b);
    return rc;
}

// A row per tensor of `expected`: float tensors compared by the relative error of their
// norms, integer tensors exactly; when the run itself failed (run_rc < 0, its text in
// tmix_last_error()), every tensor fails and the first carries the text. (The whole
// pipeline in float32 against a float64 reference: the warp multiplies the last-bit error
// of θ by the image gradient, and a ReLU input within rounding of zero may route a weight
// gradient differently, so single elements may move by more than the tensor does.
// tests/models/mix_parity.py checks each step element by element.)
static void compare_outputs(table *t, int b, int run_rc, const tmix_safetensors *got,
                            const tmix_safetensors *expected, double ms)
{
    for (int i = 0; i < tmix_safetensors_count(expected); i++) {
        const tmix_st_tensor *e = tmix_safetensors_at(expected, i);
        double err = INFINITY;
        const int rc = run_rc < 0 ? run_rc : tensor_error(got, expected, e, &err);
        const bool explain = rc < 0 && (run_rc == 0 || i == 0);
        table_put(t, b, "transformmix", i == 0 ? "fwd+bwd" : "", e->name, e->name, rc, err,
                  TMIX_TOL_GEMM, i == 0 ? ms : -1, explain ? tmix_last_error() : NULL);
    }
}

// The whole TransformMix forward and backward (tmixd mix --grads) on backend b ("cpu",
// "cuda:N"), on the PyTorch fixture of tests/golden/transformmix/ (a cifar_resnet20
// teacher, an n = 2 module).
static void run_transformmix(const char *dir, table *t, int b)
{
    char teacher[2 * PATH_MAX], module[2 * PATH_MAX], in[2 * PATH_MAX],
        expected[2 * PATH_MAX], out[PATH_MAX];
    const char *tmp = getenv("TMPDIR");
    snprintf(out, sizeof out, "%s/tmix-selftest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    snprintf(teacher, sizeof teacher, "%s/transformmix/teacher.safetensors", dir);
    snprintf(module, sizeof module, "%s/transformmix/module.safetensors", dir);
    snprintf(in, sizeof in, "%s/transformmix/in.safetensors", dir);
    snprintf(expected, sizeof expected, "%s/transformmix/expected.safetensors", dir);
    tmix_safetensors *got = NULL, *want = NULL;
    if (tmix_safetensors_open(&want, expected) < 0) {
        table_put(t, b, "transformmix", "fwd+bwd", "-", "-", TMIX_EIO, INFINITY, TMIX_TOL_GEMM,
                  -1, tmix_last_error());
        return;
    }
    int fd = mkstemp(out);
    int rc = fd < 0 ? tmix_fail(TMIX_EIO, "cannot create %s: %s", out, strerror(errno)) : 0;
    if (fd >= 0)
        close(fd);
    tmixd_mix_args args = {.teacher = teacher, .module = module, .in = in, .out = out,
                           .grads = true, .backend = t->names[b]};
    const double t0 = tmix_now_ms();
    if (rc == 0)
        rc = tmixd_mix_run(&args);
    const double ms = tmix_now_ms() - t0;
    if (rc == 0)
        rc = tmix_safetensors_open(&got, out);
    compare_outputs(t, b, rc, got, want, ms);
    tmix_safetensors_close(got);
    tmix_safetensors_close(want);
    if (fd >= 0)
        unlink(out);
}

// ---- the command ---------------------------------------------------------------------------

// Opens the named backends, or by default the CPU and every GPU that opens (one that does
// not is reported and counted as a failure), into be[] and the columns of t. Returns 0, or
// the exit status: 2 for a bad name, 1 for a named backend that cannot be used.
static int open_backends(const char *const *names, int count, tmix_backend **be, table *t)
{
    if (count > MAX_BACKENDS) {
        fprintf(stderr, "tmixd selftest: %d --backend options; at most %d\n", count,
                MAX_BACKENDS);
        return 2;
    }
    if (count == 0) {
        be[t->backends++] = tmix_backend_cpu();
        const int gpus = tmix_cuda_device_count();
        for (int d = 0; d < gpus && t->backends < MAX_BACKENDS; d++) {
            if (tmix_backend_cuda_open(&be[t->backends], d) == 0)
                t->backends++;
            else {
                fprintf(stderr, "selftest: GPU %d: %s\n", d, tmix_last_error());
                t->failures_outside++;
            }
        }
    }
    for (int i = 0; i < count; i++) {
        const int rc = tmix_backend_open(names[i], &be[t->backends]);
        if (rc < 0) {
            // "--backend 'x': expected cpu, cuda or cuda:N" names the option.
            fprintf(stderr, "tmixd selftest: %s%s\n", rc == TMIX_EINVAL ? "--" : "",
                    tmix_last_error());
            return rc == TMIX_EINVAL ? 2 : 1;
        }
        t->backends++;
    }
    for (int b = 0; b < t->backends; b++)
        snprintf(t->names[b], sizeof t->names[b], "%s", be[b]->name);
    return 0;
}

// Why no GPU column: the CUDA backend's own explanation (not built, no driver, no device).
static void print_no_gpu(void)
{
    tmix_backend *be;
    if (tmix_backend_cuda_open(&be, 0) == 0)
        tmix_backend_close(be);
    else
        printf("\nGPU: none used (%s)\n", tmix_last_error());
}

static int selftest(const char *const *names, int count)
{
    tmix_backend *be[MAX_BACKENDS];
    table t = {0};
    int status = open_backends(names, count, be, &t);
    char buf[PATH_MAX + 64];
    const char *dir = tmixd_data_dir(TMIXD_DATA_GOLDEN, buf, sizeof buf);
    if (status == 0) {
        printf("tmix selftest: every op against PyTorch reference cases in %s\n", dir);
        printf("error = max |got - ref| / max(|ref|, 1e-3 max|ref|), and for the whole "
               "TransformMix\n||got - ref|| / ||ref|| per tensor; time in ms for the op call\n"
               "a column group (error, ms) per backend; a row is ok when every backend is "
               "within tol\n\n");
        fflush(stdout); // the header shows while the backends run
    }
    // Each backend's suites, then its TransformMix, which opens its own instance by name:
    // this one is closed first, so one set of GPU buffers exists at a time.
    for (int b = 0; b < t.backends; b++) {
        if (status == 0)
            status = run_backend(be[b], dir, &t, b);
        tmix_backend_close(be[b]);
        if (status == 0)
            run_transformmix(dir, &t, b);
    }
    if (status == 0) {
        print_header(&t);
        int checks = 0, failed = t.failures_outside, unsupported = 0;
        for (int i = 0; i < t.count; i++) {
            print_row(&t, &t.rows[i]);
            for (int b = 0; b < t.backends; b++) {
                const verdict v = judge(&t.rows[i].cells[b]);
                checks++;
                failed += v == VERDICT_FAIL;
                unsupported += v == VERDICT_NA;
            }
        }
        print_notes(&t);
        if (count == 0 && t.backends == 1)
            print_no_gpu();
        printf("\n%d checks: %d passed, %d failed, %d not supported by their backend\n",
               checks, checks - failed - unsupported, failed, unsupported);
        status = failed ? 1 : 0;
    }
    table_free(&t);
    return status;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: tmixd selftest [--backend NAME]...\n"
               "  --backend NAME  a column of the table: cpu, cuda (GPU 0) or cuda:N; repeat it\n"
               "                  for more (default: cpu and every GPU)\n");
}

int tmixd_selftest_main(int argc, char **argv)
{
    // Each --backend takes two arguments, so argc bounds the names.
    const char **names = calloc((size_t)argc + 1, sizeof *names);
    if (!names) {
        fprintf(stderr, "tmixd selftest: out of memory\n");
        return 1;
    }
    int count = 0, status = -1;
    for (int i = 0; i < argc && status < 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            status = 0;
        } else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            names[count++] = argv[++i];
        } else if (strncmp(argv[i], "--backend=", 10) == 0) {
            names[count++] = argv[i] + 10;
        } else {
            if (strcmp(argv[i], "--backend") == 0)
                fprintf(stderr, "tmixd selftest: --backend needs a value\n");
            else
                fprintf(stderr, "tmixd selftest: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            status = 2;
        }
    }
    if (status < 0)
        status = selftest(names, count);
    free(names);
    return status;
}
