// Milliseconds per batch of the mixing pipeline on one backend: CAMs (the teacher on the
// clean batch), the whole TransformMix forward (CAMs + module + blend), and one search step
// (forward with the teacher's loss + backward into the module); where the backend has graphs
// (CUDA), also the whole forward replayed as one CUDA graph, as serving runs it. Prints a
// table. --ops adds, for one more whole mix and search step each, the time of every op
// (profile.h): where the time goes.
//
//   bench_mix TEACHER [--batch 128] [--size 32] [--n 2] [--repeat 5] [--backend cpu|cuda[:N]]
//             [--precision fp32|tf32|bf16] [--ops]
//
// Inputs are random; a fresh module is used (its weights do not change the cost). On the GPU
// every timed row ends with a synchronize, so it counts the work, not the queueing.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "golden.h"
#include "mix.h"
#include "ops.h"
#include "profile.h"

static int fail(const char *what)
{
    fprintf(stderr, "bench_mix: %s: %s\n", what, tmix_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_mix TEACHER [--batch B] [--size S] [--n N] [--repeat R] "
                        "[--backend cpu|cuda[:N]] [--precision fp32|tf32|bf16] [--ops]\n");
        return 2;
    }
    int batch = 128, size = 32, n = 2, repeat = 5;
    bool ops = false;
    tmix_backend *be = tmix_backend_cpu();
    static const char *const precisions[] = {"fp32", "tf32", "bf16"}; // by tmix_precision
    tmix_precision precision = TMIX_PRECISION_FP32;
    for (int i = 2; i < argc; i += 2) {
        if (strcmp(argv[i], "--ops") == 0) {
            ops = true;
            i--;
            continue;
        }
        if (i + 1 == argc) {
            fprintf(stderr, "bench_mix: %s needs a value\n", argv[i]);
            return 2;
        }
        if (strcmp(argv[i], "--precision") == 0) {
            int k = 0;
            while (k < 3 && strcmp(argv[i + 1], precisions[k]) != 0)
                k++;
            if (k == 3) {
                fprintf(stderr, "bench_mix: --precision is fp32, tf32 or bf16, not %s\n",
                        argv[i + 1]);
                return 2;
            }
            precision = (tmix_precision)k;
            continue;
        }
        if (strcmp(argv[i], "--backend") == 0) {
            if (tmix_backend_open(argv[i + 1], &be) < 0)
                return fail("--backend");
            continue;
        }
        int *v = strcmp(argv[i], "--batch") == 0 ? &batch : strcmp(argv[i], "--size") == 0 ? &size
                 : strcmp(argv[i], "--n") == 0   ? &n : strcmp(argv[i], "--repeat") == 0 ? &repeat
                                                 : NULL;
        if (!v || (*v = atoi(argv[i + 1])) <= 0) {
            fprintf(stderr, "bench_mix: bad option %s %s\n", argv[i], argv[i + 1]);
            return 2;
        }
    }
    if (tmix_backend_set_precision(be, precision) < 0)
        return fail("precision");
    tmix_teacher *teacher;
    if (tmix_teacher_load(&teacher, be, argv[1]) < 0)
        return fail("teacher");
    const tmix_teacher_info *info = tmix_teacher_info_get(teacher);
    tmix_module module;
    if (tmix_module_init(&module, be, n, 32, 1.0f, 1) < 0)
        return fail("module");
    const int64_t shape[4] = {batch, info->in_channels, size, size};
    tmix_tensor images, logits, cams, grads[TMIX_MODULE_COUNT];
    if (tmix_tensor_alloc(be, &images, TMIX_F32, 4, shape) < 0 ||
        tmix_tensor_alloc(be, &logits, TMIX_F32, 2, (int64_t[]){batch, info->num_classes}) < 0 ||
        tmix_tensor_alloc(be, &cams, TMIX_F32, 4, (int64_t[]){batch, 1, size, size}) < 0 ||
        tmix_module_alloc_like(&module, be, grads) < 0)
        return fail("buffers");
    float *x = malloc(tmix_tensor_bytes(&images));
    uint64_t s = 1;
    for (int64_t i = 0; i < tmix_tensor_numel(&images); i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 40) / (double)(1 << 24)) * 4 - 2;
    }
    if (tmix_tensor_upload(be, &images, x) < 0)
        return fail("images");
    free(x);
    int64_t *labels = malloc(sizeof *labels * batch);
    for (int i = 0; i < batch; i++)
        labels[i] = i % info->num_classes;
    tmix_draws draws;
    tmix_rng rng;
    tmix_rng_seed(&rng, 1);
    if (tmix_draws_alloc(&draws, batch, n, 32) < 0)
        return fail("draws");
    tmix_draws_sample(&draws, &rng, 1.0);
    tmix_mixer *mx, *gmx; // op by op; with graphs
    if (tmix_mixer_new(&mx, be, TMIX_MIX_TRANSFORMMIX) < 0 ||
        tmix_mixer_new(&gmx, be, TMIX_MIX_TRANSFORMMIX) < 0)
        return fail("mixer");
    const bool graphs = tmix_backend_has_graphs(be);
    tmix_mixer_use_graphs(gmx, graphs);
    // A search step first: it grows the backend's scratch buffer to its largest, which a graph
    // recorded before would see move (and record again in the timed runs).
    tmix_mix_result warm;
    if (tmix_mix_forward(mx, teacher, &module, &images, labels, &draws, true, &warm) < 0 ||
        tmix_mix_backward(mx, teacher, &module, grads, NULL) < 0)
        return fail("search step");
    for (int r = 0; graphs && r < 2; r++) { // the first runs op by op, the second records
        if (tmix_mix_forward(gmx, teacher, &module, &images, labels, &draws, false, &warm) < 0)
            return fail("graph");
    }

    // Best of `repeat` after one warm-up run of each row.
    enum { ROWS = 4 };
    double best[ROWS] = {1e30, 1e30, 1e30, 1e30};
    for (int r = 0; r <= repeat; r++) {
        tmix_mix_result res;
        double t0 = tmix_now_ms();
        if (tmix_teacher_forward(teacher, &logits, &images) < 0 ||
            tmix_teacher_cams(teacher, &cams, labels) < 0 || tmix_synchronize(be) < 0)
            return fail("cams");
        double t1 = tmix_now_ms();
        if (tmix_mix_forward(mx, teacher, &module, &images, labels, &draws, false, &res) < 0 ||
            tmix_synchronize(be) < 0)
            return fail("mix");
        double t2 = tmix_now_ms();
        if (tmix_mix_forward(mx, teacher, &module, &images, labels, &draws, true, &res) < 0 ||
            tmix_mix_backward(mx, teacher, &module, grads, NULL) < 0 || tmix_synchronize(be) < 0)
            return fail("search step");
        double t3 = tmix_now_ms();
        if (graphs &&
            (tmix_mix_forward(gmx, teacher, &module, &images, labels, &draws, false, &res) < 0 ||
             tmix_synchronize(be) < 0))
            return fail("graph");
        double t4 = tmix_now_ms();
        if (r == 0)
            continue;
        const double ms[ROWS] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
        for (int k = 0; k < ROWS; k++)
            best[k] = ms[k] < best[k] ? ms[k] : best[k];
    }
    printf("backend %s (%s), teacher %s, batch %d of %dx%dx%d, n = %d, best of %d\n", be->name,
           precisions[precision], info->arch, batch,
           info->in_channels, size, size, n, repeat);
    printf("%-44s %10s %12s\n", "stage", "ms/batch", "images/s");
    const char *rows[ROWS] = {"CAMs (teacher forward + CAM)",
                              "whole mix (CAMs + STN + MPN + blend)",
                              "search step (mix + teacher loss + backward)",
                              "whole mix, one CUDA graph launch"};
    for (int k = 0; k < (graphs ? ROWS : ROWS - 1); k++)
        printf("%-44s %10.2f %12.0f\n", rows[k], best[k], batch / best[k] * 1e3);
    if (graphs && tmix_mixer_graph_error(gmx))
        printf("(graphs were turned off, so the last row ran op by op: %s)\n",
               tmix_mixer_graph_error(gmx));
    else if (graphs && tmix_mixer_graph_launches(gmx) != repeat + 2)
        printf("(only %lld of the %d graph forwards after recording were launches)\n",
               (long long)tmix_mixer_graph_launches(gmx) - 1, repeat + 1);
    if (ops) {
        tmix_profile whole, step;
        tmix_mix_result res;
        if (tmix_profile_begin(be) < 0 ||
            tmix_mix_forward(mx, teacher, &module, &images, labels, &draws, false, &res) < 0 ||
            tmix_profile_end(&whole) < 0)
            return fail("profiled mix");
        if (tmix_profile_begin(be) < 0 ||
            tmix_mix_forward(mx, teacher, &module, &images, labels, &draws, true, &res) < 0 ||
            tmix_mix_backward(mx, teacher, &module, grads, NULL) < 0 ||
            tmix_profile_end(&step) < 0)
            return fail("profiled search step");
        printf("\n");
        tmix_profile_print(&whole, "ops of one whole mix, op by op, each timed", stdout);
        printf("\n");
        tmix_profile_print(&step, "ops of one search step, op by op, each timed", stdout);
        tmix_profile_free(&whole);
        tmix_profile_free(&step);
    }
    tmix_mixer_free(gmx);
    tmix_mixer_free(mx);
    tmix_draws_free(&draws);
    free(labels);
    for (int i = 0; i < TMIX_MODULE_COUNT; i++)
        tmix_tensor_free(be, &grads[i]);
    tmix_tensor_free(be, &images);
    tmix_tensor_free(be, &logits);
    tmix_tensor_free(be, &cams);
    tmix_module_free(&module, be);
    tmix_teacher_free(teacher);
    if (be != tmix_backend_cpu())
        tmix_backend_close(be);
    return 0;
}
