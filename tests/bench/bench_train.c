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
// Inputs and labels are random. The ops are timed by a profile of each step (profile.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "classifier.h"
#include "error.h"
#include "golden.h"
#include "ops.h"
#include "profile.h"

// Milliseconds of CPU time used by all the threads of this process.
static double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

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
    tmix_backend *be = tmix_backend_cpu();
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

    // Step 0 is the warm-up (activations are allocated there); steps 1..steps are timed, each
    // with a profile of its own.
    double *step_ms = malloc(sizeof *step_ms * (size_t)a.steps);
    double *step_cpu = malloc(sizeof *step_cpu * (size_t)a.steps);
    tmix_profile *profiles = calloc((size_t)a.steps, sizeof *profiles);
    for (int s = 0; s <= a.steps; s++) {
        const double t0 = tmix_now_ms(), c0 = cpu_ms();
        if ((s > 0 && tmix_profile_begin(be) < 0) ||
            train_step(be, c, &logits, &dlogits, &loss, &x, &targets, momentum, s) < 0 ||
            (s > 0 && tmix_profile_end(&profiles[s - 1]) < 0))
            return fail("train step");
        if (s == 0)
            continue;
        step_ms[s - 1] = tmix_now_ms() - t0;
        step_cpu[s - 1] = cpu_ms() - c0;
    }
    const double step = median(step_ms, a.steps);
    printf("%s, batch %d of %dx%dx%d, median of %d steps (loss %.4f at the last)\n", a.arch,
           a.batch, a.channels, a.size, a.size, a.steps, tmix_f32(&loss)[0]);
    printf("%-28s %10s %10s %12s\n", "", "ms/step", "images/s", "cpu ms/step");
    printf("%-28s %10.1f %10.0f %12.1f\n", "train step", step, a.batch / step * 1e3,
           median(step_cpu, a.steps));
    // Each op of the first timed step (largest first): its median over the steps.
    double *ms = malloc(sizeof *ms * (size_t)a.steps), *cpu = malloc(sizeof *cpu * (size_t)a.steps);
    for (int k = 0; k < profiles[0].count; k++) {
        const char *op = profiles[0].rows[k].op;
        for (int s = 0; s < a.steps; s++) {
            ms[s] = cpu[s] = 0;
            for (int i = 0; i < profiles[s].count; i++)
                if (strcmp(profiles[s].rows[i].op, op) == 0) {
                    ms[s] = profiles[s].rows[i].device_ms;
                    cpu[s] = profiles[s].rows[i].cpu_ms;
                }
        }
        const double op_ms = median(ms, a.steps);
        if (op_ms >= 0.05)
            printf("  %-26s %10.1f %10s %12.1f\n", op, op_ms, "", median(cpu, a.steps));
    }
    free(ms);
    free(cpu);
    for (int s = 0; s < a.steps; s++)
        tmix_profile_free(&profiles[s]);
    free(profiles);
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
