// Milliseconds per train step of a classifier on the CPU backend, as `tmixd train-teacher`
// runs it: zero the gradients, forward in train mode, soft-label cross-entropy, backward,
// tmix_sgd_update on every parameter. Prints the step time and images/s (median over the
// steps after one warm-up) and the CPU time the process used per step (on a machine shared
// with other work, wall time grows with the load and CPU time much less, though it counts
// the threads' spinning too), then the median milliseconds per step spent in each op.
//
//   bench_train [--arch cifar_resnet20] [--batch 128] [--size 32] [--channels 1]
//               [--steps 10]
//
// Inputs and labels are random. The ops are timed by a backend that forwards every call to
// the CPU's table with a clock around the ops a classifier calls.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "classifier.h"
#include "error.h"
#include "golden.h"
#include "ops.h"

// Milliseconds of CPU time used by all the threads of this process.
static double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

// ---- a CPU backend that times its ops -------------------------------------------------------

#define TIMED_OPS(X)                                                                           \
    X(conv2d_forward) X(conv2d_backward_input) X(conv2d_backward_weight) X(bias_backward)      \
    X(batchnorm_train_forward) X(batchnorm_train_backward) X(relu_forward) X(relu_backward)    \
    X(maxpool2d_forward) X(maxpool2d_backward) X(avgpool_forward) X(avgpool_backward)          \
    X(linear_forward) X(linear_backward_input) X(linear_backward_weight) X(add)                \
    X(cross_entropy_forward) X(cross_entropy_backward) X(sgd_update) X(zero)

enum {
#define AS_ENUM(name) OP_##name,
    TIMED_OPS(AS_ENUM)
#undef AS_ENUM
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
#define AS_NAME(name) #name,
    TIMED_OPS(AS_NAME)
#undef AS_NAME
};

static double op_ms[OP_COUNT], op_cpu[OP_COUNT]; // this step's wall and CPU ms per op
static const tmix_backend_ops *cpu_ops; // the table every call is forwarded to

// A wrapper with the slot's own signature: `params` is its parameter list, `args` the call.
#define TIMED(name, params, args)                                                              \
    static int timed_##name params                                                            \
    {                                                                                          \
        const double t0 = tmix_now_ms(), c0 = cpu_ms();                                        \
        const int rc = cpu_ops->name args;                                                     \
        op_ms[OP_##name] += tmix_now_ms() - t0;                                                \
        op_cpu[OP_##name] += cpu_ms() - c0;                                                    \
        return rc;                                                                             \
    }

#define T const tmix_tensor *
TIMED(conv2d_forward, (tmix_backend *be, tmix_tensor *o, T i, T w, T b, tmix_conv2d_params p),
      (be, o, i, w, b, p))
TIMED(conv2d_backward_input, (tmix_backend *be, tmix_tensor *d, T g, T w, tmix_conv2d_params p),
      (be, d, g, w, p))
TIMED(conv2d_backward_weight, (tmix_backend *be, tmix_tensor *d, T g, T i, tmix_conv2d_params p),
      (be, d, g, i, p))
TIMED(bias_backward, (tmix_backend *be, tmix_tensor *d, T g), (be, d, g))
TIMED(batchnorm_train_forward, (tmix_backend *be, tmix_tensor *o, tmix_tensor *sm,
      tmix_tensor *si, tmix_tensor *rm, tmix_tensor *rv, T i, T g, T b,
      tmix_batchnorm_train_params p), (be, o, sm, si, rm, rv, i, g, b, p))
TIMED(batchnorm_train_backward, (tmix_backend *be, tmix_tensor *d, tmix_tensor *dg,
      tmix_tensor *db, T g, T i, T gamma, T sm, T si), (be, d, dg, db, g, i, gamma, sm, si))
TIMED(relu_forward, (tmix_backend *be, tmix_tensor *o, T i), (be, o, i))
TIMED(relu_backward, (tmix_backend *be, tmix_tensor *d, T g, T o), (be, d, g, o))
TIMED(maxpool2d_forward, (tmix_backend *be, tmix_tensor *o, T i, tmix_pool2d_params p),
      (be, o, i, p))
TIMED(maxpool2d_backward, (tmix_backend *be, tmix_tensor *d, T g, T i, tmix_pool2d_params p),
      (be, d, g, i, p))
TIMED(avgpool_forward, (tmix_backend *be, tmix_tensor *o, T i), (be, o, i))
TIMED(avgpool_backward, (tmix_backend *be, tmix_tensor *d, T g), (be, d, g))
TIMED(linear_forward, (tmix_backend *be, tmix_tensor *o, T i, T w, T b), (be, o, i, w, b))
TIMED(linear_backward_input, (tmix_backend *be, tmix_tensor *d, T g, T w), (be, d, g, w))
TIMED(linear_backward_weight, (tmix_backend *be, tmix_tensor *d, T g, T i), (be, d, g, i))
TIMED(add, (tmix_backend *be, tmix_tensor *o, T a, T b), (be, o, a, b))
TIMED(cross_entropy_forward, (tmix_backend *be, tmix_tensor *l, T z, T y), (be, l, z, y))
TIMED(cross_entropy_backward, (tmix_backend *be, tmix_tensor *d, T z, T y), (be, d, z, y))
TIMED(sgd_update, (tmix_backend *be, tmix_tensor *w, T g, tmix_tensor *m, tmix_sgd_params p,
      int64_t step), (be, w, g, m, p, step))
TIMED(zero, (tmix_backend *be, tmix_tensor *t), (be, t))
#undef T

static tmix_backend_ops timed_ops;
static tmix_backend timed_backend = {.name = "cpu (timed)", .device = TMIX_CPU, .ops = &timed_ops};

static tmix_backend *timed_cpu(void)
{
    cpu_ops = tmix_backend_cpu()->ops;
    timed_ops = *cpu_ops;
#define SET_SLOT(name) timed_ops.name = timed_##name;
    TIMED_OPS(SET_SLOT)
#undef SET_SLOT
    return &timed_backend;
}

// ---- the bench --------------------------------------------------------------------------------

static int fail(const char *what)
{
    fprintf(stderr, "bench_train: %s: %s\n", what, tmix_last_error());
    return 1;
}

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Uniform floats in [lo, hi) from a 64-bit LCG, the same every run.
static void fill_random(float *x, int64_t n, float lo, float hi, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = lo + (hi - lo) * (float)((seed >> 40) / (double)(1 << 24));
    }
}

typedef struct {
    const char *arch;
    int batch, size, channels, steps;
} bench_args;

static int parse_args(int argc, char **argv, bench_args *a)
{
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_train: %s needs a value\n", argv[i]);
            return -1;
        }
        if (strcmp(argv[i], "--arch") == 0) {
            a->arch = argv[++i];
            continue;
        }
        int *v = strcmp(argv[i], "--batch") == 0      ? &a->batch
                 : strcmp(argv[i], "--size") == 0     ? &a->size
                 : strcmp(argv[i], "--channels") == 0 ? &a->channels
                 : strcmp(argv[i], "--steps") == 0    ? &a->steps
                                                      : NULL;
        if (!v || (*v = atoi(argv[i + 1])) <= 0) {
            fprintf(stderr, "bench_train: bad option %s %s\n", argv[i], argv[i + 1]);
            return -1;
        }
        i++;
    }
    return 0;
}

// One step as train-teacher takes it; momentum[i] is parameter i's SGD buffer.
static int train_step(tmix_backend *be, tmix_classifier *c, tmix_tensor *logits,
                      tmix_tensor *dlogits, tmix_tensor *loss, const tmix_tensor *x,
                      const tmix_tensor *targets, tmix_tensor *momentum, int64_t step)
{
    const tmix_sgd_params sgd = {.lr = 0.1f, .momentum = 0.9f, .weight_decay = 5e-4f};
    int count;
    const tmix_classifier_param *params = tmix_classifier_params(c, &count);
    TMIX_TRY(tmix_classifier_zero_grad(c));
    TMIX_TRY(tmix_classifier_forward(c, logits, x, true));
    TMIX_TRY(tmix_cross_entropy_forward(be, loss, logits, targets));
    TMIX_TRY(tmix_tensor_zero(be, dlogits));
    TMIX_TRY(tmix_cross_entropy_backward(be, dlogits, logits, targets));
    TMIX_TRY(tmix_classifier_backward(c, dlogits));
    for (int i = 0; i < count; i++)
        TMIX_TRY(tmix_sgd_update(be, params[i].value, params[i].grad, &momentum[i], sgd, step));
    return 0;
}

int main(int argc, char **argv)
{
    bench_args a = {.arch = "cifar_resnet20", .batch = 128, .size = 32, .channels = 1,
                    .steps = 10};
    if (parse_args(argc, argv, &a) < 0) {
        fprintf(stderr, "usage: bench_train [--arch A] [--batch B] [--size S] [--channels 1|3] "
                        "[--steps N]\n");
        return 2;
    }
    tmix_backend *be = timed_cpu();
    const int classes = 10;
    tmix_classifier *c;
    if (tmix_classifier_new(&c, be, a.arch, a.channels, classes, 1) < 0)
        return fail("classifier");
    int count;
    const tmix_classifier_param *params = tmix_classifier_params(c, &count);
    tmix_tensor *momentum = calloc((size_t)count, sizeof *momentum);
    for (int i = 0; i < count; i++)
        if (tmix_tensor_alloc(be, &momentum[i], TMIX_F32, params[i].value->ndim,
                              params[i].value->shape) < 0)
            return fail("momentum buffers");
    tmix_tensor x, targets, logits, dlogits, loss;
    const int64_t img[4] = {a.batch, a.channels, a.size, a.size}, bj[2] = {a.batch, classes};
    if (tmix_tensor_alloc(be, &x, TMIX_F32, 4, img) < 0 ||
        tmix_tensor_alloc(be, &targets, TMIX_F32, 2, bj) < 0 ||
        tmix_tensor_alloc(be, &logits, TMIX_F32, 2, bj) < 0 ||
        tmix_tensor_alloc(be, &dlogits, TMIX_F32, 2, bj) < 0 ||
        tmix_tensor_alloc(be, &loss, TMIX_F32, 1, (int64_t[]){1}) < 0)
        return fail("buffers");
    fill_random(tmix_f32(&x), tmix_tensor_numel(&x), -2.0f, 2.0f, 1);
    float *y = tmix_f32(&targets);
    for (int b = 0; b < a.batch; b++)
        for (int j = 0; j < classes; j++)
            y[b * classes + j] = j == b * 7 % classes ? 1.0f : 0.0f;

    // Step 0 is the warm-up (activations are allocated there); steps 1..steps are timed.
    double *step_ms = malloc(sizeof *step_ms * (size_t)a.steps);
    double *step_cpu = malloc(sizeof *step_cpu * (size_t)a.steps);
    double *per_op = malloc(sizeof *per_op * (size_t)a.steps * OP_COUNT); // [op][step]
    double *per_op_cpu = malloc(sizeof *per_op_cpu * (size_t)a.steps * OP_COUNT);
    for (int s = 0; s <= a.steps; s++) {
        memset(op_ms, 0, sizeof op_ms);
        memset(op_cpu, 0, sizeof op_cpu);
        const double t0 = tmix_now_ms(), c0 = cpu_ms();
        if (train_step(be, c, &logits, &dlogits, &loss, &x, &targets, momentum, s) < 0)
            return fail("train step");
        const double ms = tmix_now_ms() - t0;
        if (s == 0)
            continue;
        step_ms[s - 1] = ms;
        step_cpu[s - 1] = cpu_ms() - c0;
        for (int k = 0; k < OP_COUNT; k++) {
            per_op[k * a.steps + s - 1] = op_ms[k];
            per_op_cpu[k * a.steps + s - 1] = op_cpu[k];
        }
    }
    const double step = median(step_ms, a.steps);
    printf("%s, batch %d of %dx%dx%d, median of %d steps (loss %.4f at the last)\n", a.arch,
           a.batch, a.channels, a.size, a.size, a.steps, tmix_f32(&loss)[0]);
    printf("%-28s %10s %10s %12s\n", "", "ms/step", "images/s", "cpu ms/step");
    printf("%-28s %10.1f %10.0f %12.1f\n", "train step", step, a.batch / step * 1e3,
           median(step_cpu, a.steps));
    for (int k = 0; k < OP_COUNT; k++) {
        const double ms = median(per_op + k * a.steps, a.steps);
        if (ms >= 0.05)
            printf("  %-26s %10.1f %10s %12.1f\n", op_names[k], ms, "",
                   median(per_op_cpu + k * a.steps, a.steps));
    }
    free(per_op);
    free(per_op_cpu);
    free(step_ms);
    free(step_cpu);
    for (int i = 0; i < count; i++)
        tmix_tensor_free(be, &momentum[i]);
    free(momentum);
    tmix_tensor_free(be, &x);
    tmix_tensor_free(be, &targets);
    tmix_tensor_free(be, &logits);
    tmix_tensor_free(be, &dlogits);
    tmix_tensor_free(be, &loss);
    tmix_classifier_free(c);
    return 0;
}
