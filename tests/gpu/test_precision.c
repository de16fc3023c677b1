// `test_precision`: the shipped Fashion-MNIST teacher (models/zoo, cifar_resnet20) on the
// GPU at each precision of its convolutions against the CPU in float32: logits, CAMs and the
// input gradient of one batch, compared norm-wise (||gpu - cpu|| / ||cpu||). Where the op
// twins check each convolution alone, this checks the errors of twenty layers together,
// through the folded batch norms, the residual sums, the one-channel stem (padded to 8
// channels for bf16) and the CAM's min-max. The bounds are about 3x what the CPU gives with
// each precision's rounding emulated (below): tf32 logits 3.1e-3, CAMs 4.8e-3, input
// gradient 5.6e-2; bf16 6.0e-3, 1.7e-2, 8.1e-2. The input gradient's are wide: wherever
// rounding moves a ReLU's input across zero its gradient jumps, and twenty layers add up.
// Skips (77) without a GPU. `test_precision --cpu` (the unit test gpu.teacher_precision_cpu,
// anywhere) puts CPU backends in the GPU's place: plain for fp32, with the rounding emulated
// for tf32 and bf16, so that the bounds are checked against the emulation in CI.
// $TMIX_ZOO_DIR, when set, replaces the zoo directory of the source tree.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "emulated_precision.h"
#include "harness.h"
#include "ops.h"
#include "teacher.h"

enum { B = 16, H = 28, W = 28 };

typedef struct {
    float logits[B * 10], cams[B * H * W], dx[B * H * W];
} outputs;

static float x[B * H * W], dlogits[B * 10];
static int64_t labels[B];

static void make_inputs(void)
{
    uint32_t s = 12345;
    for (int64_t i = 0; i < B * H * W; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / (float)(1u << 24) * 4.0f - 2.0f;
    }
    for (int64_t i = 0; i < B * 10; i++) {
        s = s * 1664525u + 1013904223u;
        dlogits[i] = (float)(s >> 8) / (float)(1u << 24) - 0.5f;
    }
    for (int b = 0; b < B; b++)
        labels[b] = (b * 7) % 10;
}

// One forward, CAMs and backward of the teacher on be; every output downloaded into out.
static int run(tmix_backend *be, tmix_teacher *t, outputs *out)
{
    tmix_tensor tx, tlogits, tcams, tdx, tdl;
    CHECK_OK(tmix_tensor_alloc(be, &tx, TMIX_F32, 4, (int64_t[]){B, 1, H, W}));
    CHECK_OK(tmix_tensor_alloc(be, &tdx, TMIX_F32, 4, (int64_t[]){B, 1, H, W}));
    CHECK_OK(tmix_tensor_alloc(be, &tcams, TMIX_F32, 4, (int64_t[]){B, 1, H, W}));
    CHECK_OK(tmix_tensor_alloc(be, &tlogits, TMIX_F32, 2, (int64_t[]){B, 10}));
    CHECK_OK(tmix_tensor_alloc(be, &tdl, TMIX_F32, 2, (int64_t[]){B, 10}));
    CHECK_OK(tmix_tensor_upload(be, &tx, x));
    CHECK_OK(tmix_tensor_upload(be, &tdl, dlogits));
    CHECK_OK(tmix_tensor_zero(be, &tdx)); // the backward adds into it
    CHECK_OK(tmix_teacher_forward(t, &tlogits, &tx));
    CHECK_OK(tmix_teacher_cams(t, &tcams, labels));
    CHECK_OK(tmix_teacher_backward(t, &tdx, &tdl));
    CHECK_OK(tmix_tensor_download(be, out->logits, &tlogits));
    CHECK_OK(tmix_tensor_download(be, out->cams, &tcams));
    CHECK_OK(tmix_tensor_download(be, out->dx, &tdx));
    tmix_tensor *all[] = {&tx, &tdx, &tcams, &tlogits, &tdl};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tmix_tensor_free(be, all[i]);
    return 0;
}

// norm_close of one output at one precision.
static int close_enough(const char *precision, const char *what, const float *ref, const float *got,
                        int64_t n, double tol)
{
    char name[64];
    snprintf(name, sizeof name, "%-5s %-7s", precision, what);
    return norm_close(name, ref, got, n, tol);
}

int main(int argc, char **argv)
{
    tmix_backend *gpu;
    bool cpu_only;
    const int rc = open_gpu_or_cpu_twin(argc, argv, &gpu, &cpu_only);
    if (rc)
        return rc;
    make_inputs();
    char path[4096];
    snprintf(path, sizeof path, "%s/fashion_mnist_resnet20.safetensors",
             getenv("TMIX_ZOO_DIR") ? getenv("TMIX_ZOO_DIR") : TMIX_ZOO_DIR);
    tmix_teacher *on_cpu = NULL, *on_gpu = NULL;
    static outputs ref, got;
    if (tmix_teacher_load(&on_cpu, cpu(), path) < 0 || tmix_teacher_load(&on_gpu, gpu, path) < 0 ||
        run(cpu(), on_cpu, &ref) != 0) {
        fprintf(stderr, "%s: %s\n", path, tmix_last_error());
        return 1;
    }
    static const struct {
        const char *name;
        tmix_precision precision;
        double logits, cams, dx; // the bounds
    } cases[] = {{"fp32", TMIX_PRECISION_FP32, 1e-4, 1e-4, 1e-3},
                 {"tf32", TMIX_PRECISION_TF32, 1e-2, 2e-2, 2e-1},
                 {"bf16", TMIX_PRECISION_BF16, 2e-2, 5e-2, 3e-1}};
    int failed = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tmix_teacher *emulating = NULL;
        int bad;
        if (cpu_only && cases[k].precision != TMIX_PRECISION_FP32) {
            tmix_backend *emu = tmix_test_emulated_precision(cases[k].precision, false);
            bad = tmix_teacher_load(&emulating, emu, path) < 0 || run(emu, emulating, &got);
            tmix_teacher_free(emulating);
        } else {
            bad = tmix_backend_set_precision(gpu, cases[k].precision) < 0 ||
                  run(gpu, on_gpu, &got);
        }
        if (bad) {
            fprintf(stderr, "%s: %s\n", cases[k].name, tmix_last_error());
            failed++;
            continue;
        }
        failed += close_enough(cases[k].name, "logits", ref.logits, got.logits, B * 10,
                               cases[k].logits);
        failed += close_enough(cases[k].name, "cams", ref.cams, got.cams, B * H * W,
                               cases[k].cams);
        failed += close_enough(cases[k].name, "dx", ref.dx, got.dx, B * H * W, cases[k].dx);
    }
    size_t used = 0, total = 0; // the metrics' GPU memory, while the teacher is loaded
    if (!cpu_only && (tmix_memory_info(gpu, &used, &total) < 0 || !(used > 0 && used <= total))) {
        fprintf(stderr, "memory_info: %zu of %zu bytes in use: %s\n", used, total,
                tmix_last_error());
        failed++;
    }
    tmix_teacher_free(on_gpu);
    tmix_teacher_free(on_cpu);
    if (!cpu_only)
        tmix_backend_close(gpu);
    return failed ? 1 : 0;
}
