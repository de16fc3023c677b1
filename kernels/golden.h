// Golden fixtures: op cases computed by PyTorch (tests/golden/make_golden.py: float64 math on
// float32-representable inputs, stored as float32) and the runner that replays them on a
// backend. One file per suite, <suite>.safetensors, holding tensors "<case>/<role>" and
// metadata "cases" (the case names, comma-separated, in order) and "<case>" (a JSON object of
// the case's parameters, with a human "label" such as "in 2x3x5x7 k3 s2 p1").
//
// The unit tests replay every suite on the CPU backend, the gpu tests on the CUDA backend,
// and `tmixd selftest` on every backend present, all through tmix_golden_suites.
#ifndef TMIX_GOLDEN_H
#define TMIX_GOLDEN_H

#include "backend.h"
#include "tensor.h"

typedef struct tmix_golden tmix_golden;

int tmix_golden_open(tmix_golden **out, const char *path);
void tmix_golden_close(tmix_golden *g);
int tmix_golden_cases(const tmix_golden *g);
const char *tmix_golden_case(const tmix_golden *g, int c);
const char *tmix_golden_label(const tmix_golden *g, int c);
bool tmix_golden_has(const tmix_golden *g, int c, const char *role);

// Parameters of case c: element `index` of the JSON array `key`, or the scalar `key` when
// index < 0. A missing or non-numeric parameter is a TMIX_EFORMAT error naming the file.
int tmix_golden_int(const tmix_golden *g, int c, const char *key, int index, int *out);
int tmix_golden_float(const tmix_golden *g, int c, const char *key, int index, float *out);

// A host copy of tensor "<case>/<role>" as a CPU tensor owned by g (valid until close):
// float32 roles as TMIX_F32, uint8 roles as TMIX_U8.
int tmix_golden_host(tmix_golden *g, int c, const char *role, tmix_tensor *out);
// Allocates `dev` on be and uploads "<case>/<role>" into it (free with tmix_tensor_free).
int tmix_golden_input(tmix_golden *g, int c, const char *role, tmix_backend *be,
                      tmix_tensor *dev);
// Allocates `dev` on be with the shape of "<case>/<role>", zero-filled: the buffer an op
// writes (forward) or accumulates (backward) its result into.
int tmix_golden_output(tmix_golden *g, int c, const char *role, tmix_backend *be,
                       tmix_tensor *dev);

// The error measure of every comparison: max_i |got_i - ref_i| / max(|ref_i|, 1e-3 * max|ref|),
// relative per element with a floor a thousand times below the tensor's scale, so values
// that cancel to almost nothing are judged against the tensor's size. NaN or Inf where the
// reference has a finite value (or the reverse) gives +Inf.
double tmix_rel_error(const float *got, const float *ref, int64_t n);

typedef struct {
    const char *suite;     // "conv2d"
    const char *check;     // "forward", "grad_input", ...
    const char *case_name; // "c0"
    const char *label;     // "in 2x3x5x7 k3 s2 p1"
    const char *backend;   // "cpu"
    double err, tol;
    double ms;             // time of the op call(s) that produced the result
    int rc;                // 0, or the code the op (or the comparison) failed with
} tmix_golden_row;

typedef void (*tmix_golden_report)(void *ctx, const tmix_golden_row *row);

// Reports one row for `check` of case c, given op_rc, the status of the op call(s) that
// produced `got`: when op_rc < 0, the op's failure (TMIX_ENOTSUP means "not supported") and
// nothing is compared; else downloads `got` from be and compares it with "<case>/<role>".
// Returns op_rc when < 0, else the comparison's rc.
int tmix_golden_check(tmix_golden *g, int c, tmix_backend *be, const char *check, int op_rc,
                      const char *role, const tmix_tensor *got, double tol, double ms,
                      tmix_golden_report report, void *ctx);

// tmix_tensor_free on t[0..n-1]: one call frees a case's buffers, the never-allocated
// (zero-initialised) ones included.
void tmix_golden_free(tmix_backend *be, tmix_tensor *t, int n);

// Milliseconds on a monotonic clock, for the ms column.
double tmix_now_ms(void);
// Ends op calls started at t0 (a tmix_now_ms() value) that returned *rc: when *rc is 0, waits
// for be so that queued work is timed too, and stores that status in *rc. Returns ms since t0.
double tmix_golden_elapsed(tmix_backend *be, int *rc, double t0);

// One suite: replays every case of its fixture file on be and reports a row per check.
// Returns 0, or a negative code when the fixture itself is unusable (missing roles...).
typedef int (*tmix_golden_run)(tmix_backend *be, tmix_golden *g, tmix_golden_report report,
                               void *ctx);

typedef struct {
    const char *name; // fixture file <name>.safetensors
    tmix_golden_run run;
} tmix_golden_suite;

extern const tmix_golden_suite tmix_golden_suites[]; // ends with {NULL, NULL}

// Tolerances of the issue: 1e-5 for element-wise ops, 1e-4 for GEMM-based ones.
#define TMIX_TOL_ELEMENTWISE 1e-5
#define TMIX_TOL_GEMM 1e-4

#endif
