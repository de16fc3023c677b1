// `test_infer`: every zoo architecture's teacher through tmix_teacher_infer on the GPU at bf16,
// where the network runs whole with bf16 NHWC activations (kernels/cuda/layers.cu), against
// the CPU computing the same roundings (emulated_precision.h): logits and CAMs, norm-wise.
// The teachers are written here from fresh classifiers (kaiming weights, random batch norms),
// so that every layer the zoo has is covered: the 7x7 stem and max pool (resnet18/34/50),
// bottlenecks with strided 1x1 shortcuts (resnet50), pre-activation batch norms and
// standalone ReLUs (preactresnet18, wrn28_10), option-A shortcuts and a one-channel input
// padded to 8 (cifar_resnet20). Inputs are small, odd and
// not square. Per architecture:
// - two batch sizes, each made ready anew, and the network must have run whole;
// - then a forward and backward, run whole too (the layers made anew to keep what the
//   backward reads): the logits, and dx, the gradient to the input of a fixed weighting of
//   the logits, against the CPU's; a second backward is refused, a forward and backward
//   again add the same dx bit for bit; an infer after them must give the first infer's
//   logits bit for bit (the buffers are reused, not mixed up);
// - recorded as a CUDA graph, the infer and CAMs replay other inputs bit for bit;
// - at fp32 the network is not run whole, and infer is the CPU's forward to 1e-4.
// The bounds: on the CUDA emulator (tests/cudaemu), whose sums run in another order, the
// errors are 3e-7 at most; a single rounding flipped where it matters (seen: a multiply-add
// rounded twice, not once) gave 2.3e-3; a convolution's bias dropped before a residual sum
// gives 4e-2. Against float32 the errors are 1e-2, too close to that to tell it. dx: up to
// 7e-3 on the emulator, rounding flips cascading back through the layers; a gradient sum
// dropped, a ReLU's mask or a batch norm's scale left out, or max pool's ties to the last
// maximum give 0.1 to 77; the bf16 bound, 2e-2, is the bound. Skips (77)
// without a GPU. `test_infer --cpu` (unit test gpu.teacher_infer_cpu) puts the emulation in
// the GPU's place, where infer runs op by op with only the CAM features kept: it must equal
// the forward exactly. `test_infer [--cpu] ARCH...` tests the architectures named.
#include <stdlib.h>
#include <unistd.h>

#include "classifier.h"
#include "emulated_precision.h"
#include "harness.h"
#include "ops.h"
#include "teacher.h"

#define TOL_LOGITS 5e-3
#define TOL_CAMS 2e-2
#define TOL_DX 2e-2
#define TOL_DX_OP_BY_OP 8e-2

typedef struct {
    const char *arch;
    int channels, h, w;
} model;

static const model models[] = {
    {"cifar_resnet20", 1, 13, 10}, {"cifar_resnet18", 3, 11, 14}, {"preactresnet18", 3, 12, 9},
    {"wrn28_10", 3, 9, 10},        {"resnet18", 3, 45, 38},       {"resnet34", 3, 37, 44},
    {"resnet50", 3, 41, 36},
};
enum { CLASSES = 10, MAX_B = 3 };
static const int batches[] = {MAX_B, 2};

typedef struct {
    float *logits, *cams;
    float *dx; // after a forward: the gradient to x of the logits' dot product with dlogits
} result;

static uint64_t rng = 0x2545f4914f6cdd1dull;

// The same for every run, so that the gradients compared start equal: -0.75 to 0.75.
static float dlogits[MAX_B * CLASSES];

static float uniform(float lo, float hi)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)(rng >> 40) / (float)(1ull << 24);
}

// The batch norms of a fresh classifier are the identity, which would fold into biases of 0:
// random statistics and affine parameters instead, so that every bias counts.
static void randomize_batch_norms(tmix_classifier *c)
{
    int count;
    const tmix_classifier_param *p = tmix_classifier_params(c, &count);
    for (int i = 0; i < count; i++) {
        if (p[i].value->ndim != 1)
            continue;
        const bool scale = strstr(p[i].name, ".weight") != NULL;
        float *v = tmix_f32(p[i].value);
        for (int64_t k = 0; k < p[i].value->shape[0]; k++)
            v[k] = scale ? uniform(0.5f, 1.5f) : uniform(-1.0f, 1.0f);
    }
    const tmix_classifier_buffer *b = tmix_classifier_buffers(c, &count);
    for (int i = 0; i < count; i++) {
        if (!b[i].value)
            continue;
        const bool var = strstr(b[i].name, "running_var") != NULL;
        float *v = tmix_f32(b[i].value);
        for (int64_t k = 0; k < b[i].value->shape[0]; k++)
            v[k] = var ? uniform(0.5f, 1.5f) : uniform(-0.3f, 0.3f);
    }
}

// A teacher file of m's architecture with fresh weights, at path.
static int write_teacher(const model *m, const char *path)
{
    tmix_classifier *c = NULL;
    CHECK_OK(tmix_classifier_new(&c, cpu(), m->arch, m->channels, CLASSES, 7));
    randomize_batch_norms(c);
    const int rc = tmix_classifier_save_teacher(c, path, NULL, NULL, NULL);
    tmix_classifier_free(c);
    CHECK_OK(rc);
    return 0;
}

// infer (or forward) and CAMs of t on be for the host batch x, downloaded into r. labels
// NULL: the CAMs are of each image's top class, written into top (a CAM of another class
// may be 0 everywhere, which would compare nothing).
static int run(tmix_backend *be, tmix_teacher *t, bool infer, const float *x, const int64_t *labels,
               int64_t *top, int64_t b, const model *m, result *r)
{
    tmix_tensor tx, tl, tc;
    CHECK_OK(tmix_tensor_alloc(be, &tx, TMIX_F32, 4, (int64_t[]){b, m->channels, m->h, m->w}));
    CHECK_OK(tmix_tensor_alloc(be, &tl, TMIX_F32, 2, (int64_t[]){b, CLASSES}));
    CHECK_OK(tmix_tensor_alloc(be, &tc, TMIX_F32, 4, (int64_t[]){b, 1, m->h, m->w}));
    CHECK_OK(tmix_tensor_upload(be, &tx, x));
    CHECK_OK(infer ? tmix_teacher_infer(t, &tl, &tx) : tmix_teacher_forward(t, &tl, &tx));
    CHECK_OK(tmix_tensor_download(be, r->logits, &tl));
    for (int64_t i = 0; !labels && i < b; i++) {
        top[i] = 0;
        for (int j = 1; j < CLASSES; j++)
            if (r->logits[i * CLASSES + j] > r->logits[i * CLASSES + top[i]])
                top[i] = j;
    }
    CHECK_OK(tmix_teacher_cams(t, &tc, labels ? labels : top));
    CHECK_OK(tmix_tensor_download(be, r->cams, &tc));
    if (!infer) { // a backward must follow a forward, and leave infer right after it
        tmix_tensor dx, dl;
        CHECK_OK(tmix_tensor_alloc(be, &dx, TMIX_F32, 4, tx.shape));
        CHECK_OK(tmix_tensor_alloc(be, &dl, TMIX_F32, 2, tl.shape));
        CHECK_OK(tmix_tensor_zero(be, &dx));
        CHECK_OK(tmix_tensor_upload(be, &dl, dlogits));
        CHECK_OK(tmix_teacher_backward(t, &dx, &dl));
        CHECK_OK(tmix_tensor_download(be, r->dx, &dx));
        tmix_tensor_free(be, &dx);
        tmix_tensor_free(be, &dl);
    }
    tmix_tensor_free(be, &tx);
    tmix_tensor_free(be, &tl);
    tmix_tensor_free(be, &tc);
    return 0;
}

// The infer and CAMs of a batch of b recorded as a CUDA graph, then launched on another
// batch written into the same input (and labels into the same host array): the logits and
// CAMs of that batch run op by op, bit for bit.
static int check_graph(tmix_backend *be, tmix_teacher *t, const model *m, int64_t b)
{
    const int64_t px = (int64_t)m->h * m->w, n = b * m->channels * px;
    tmix_tensor tx, tl, tc;
    int64_t *labels = NULL;
    static float x[MAX_B * 3 * 64 * 64], want[2][MAX_B * 64 * 64], got[2][MAX_B * 64 * 64];
    CHECK_OK(tmix_tensor_alloc(be, &tx, TMIX_F32, 4, (int64_t[]){b, m->channels, m->h, m->w}));
    CHECK_OK(tmix_tensor_alloc(be, &tl, TMIX_F32, 2, (int64_t[]){b, CLASSES}));
    CHECK_OK(tmix_tensor_alloc(be, &tc, TMIX_F32, 4, (int64_t[]){b, 1, m->h, m->w}));
    CHECK_OK(tmix_host_alloc(be, (size_t)b * sizeof *labels, (void **)&labels));
    tmix_graph *g = NULL;
    for (int round = 0; round < 2; round++) {
        for (int64_t i = 0; i < n; i++)
            x[i] = uniform(-2.0f, 2.0f);
        for (int64_t i = 0; i < b; i++)
            labels[i] = (i + 3 * round) % CLASSES;
        CHECK_OK(tmix_tensor_upload(be, &tx, x));
        CHECK_OK(tmix_teacher_infer(t, &tl, &tx)); // op by op (and, first, made ready)
        CHECK_OK(tmix_teacher_cams(t, &tc, labels));
        CHECK_OK(tmix_tensor_download(be, want[0], &tl));
        CHECK_OK(tmix_tensor_download(be, want[1], &tc));
        if (round == 0) {
            CHECK_OK(tmix_capture_begin(be));
            const int rc = tmix_teacher_infer(t, &tl, &tx);
            const int rc2 = rc ? rc : tmix_teacher_cams(t, &tc, labels);
            CHECK_OK(tmix_capture_end(be, &g));
            CHECK_OK(rc2);
            CHECK(g != NULL);
        }
        CHECK_OK(tmix_tensor_zero(be, &tl));
        CHECK_OK(tmix_tensor_zero(be, &tc));
        CHECK_OK(tmix_graph_launch(be, g));
        CHECK_OK(tmix_tensor_download(be, got[0], &tl));
        CHECK_OK(tmix_tensor_download(be, got[1], &tc));
        if (memcmp(want[0], got[0], (size_t)(b * CLASSES) * sizeof(float)) != 0 ||
            memcmp(want[1], got[1], (size_t)(b * px) * sizeof(float)) != 0) {
            fprintf(stderr, "FAIL %s B=%lld: the graph's logits or CAMs differ from the ops' "
                    "(batch %d)\n", m->arch, (long long)b, round);
            return 1;
        }
    }
    printf("%-15s B=%lld graph   replayed bit for bit\n", m->arch, (long long)b);
    tmix_graph_free(be, g);
    tmix_host_free(be, labels);
    tmix_tensor_free(be, &tx);
    tmix_tensor_free(be, &tl);
    tmix_tensor_free(be, &tc);
    return 0;
}

// After the forward and backward that run left on t (x, giving r->dx), run whole: a second
// backward is refused with dx unchanged (the first reused the memory of the activations it
// read); a forward again and a backward add the same gradient to dx again, bit for bit.
static int check_backward_again(tmix_backend *be, tmix_teacher *t, const float *x,
                                const result *r, const model *m, int64_t b)
{
    const int64_t n = b * m->channels * m->h * m->w;
    const size_t bytes = (size_t)n * sizeof(float);
    static float after[2][MAX_B * 3 * 64 * 64];
    tmix_tensor tx, dx, dl, tl;
    CHECK_OK(tmix_tensor_alloc(be, &tx, TMIX_F32, 4, (int64_t[]){b, m->channels, m->h, m->w}));
    CHECK_OK(tmix_tensor_alloc(be, &dx, TMIX_F32, 4, tx.shape));
    CHECK_OK(tmix_tensor_alloc(be, &dl, TMIX_F32, 2, (int64_t[]){b, CLASSES}));
    CHECK_OK(tmix_tensor_alloc(be, &tl, TMIX_F32, 2, dl.shape));
    CHECK_OK(tmix_tensor_upload(be, &tx, x));
    CHECK_OK(tmix_tensor_upload(be, &dx, r->dx));
    CHECK_OK(tmix_tensor_upload(be, &dl, dlogits));
    const int rc = tmix_teacher_backward(t, &dx, &dl);
    CHECK_OK(tmix_tensor_download(be, after[0], &dx));
    CHECK_OK(tmix_teacher_forward(t, &tl, &tx));
    CHECK_OK(tmix_teacher_backward(t, &dx, &dl));
    CHECK_OK(tmix_tensor_download(be, after[1], &dx));
    tmix_tensor_free(be, &tx);
    tmix_tensor_free(be, &dx);
    tmix_tensor_free(be, &dl);
    tmix_tensor_free(be, &tl);
    if (rc != TMIX_EINVAL || memcmp(after[0], r->dx, bytes) != 0) {
        fprintf(stderr, "FAIL %s B=%lld: a second backward answered %d, dx %s\n", m->arch,
                (long long)b, rc, memcmp(after[0], r->dx, bytes) ? "changed" : "unchanged");
        return 1;
    }
    for (int64_t i = 0; i < n; i++)
        if (after[1][i] != 2.0f * r->dx[i]) {
            fprintf(stderr, "FAIL %s B=%lld: a forward and backward again made dx[%lld] %g, "
                    "not 2 x %g\n", m->arch, (long long)b, (long long)i, after[1][i], r->dx[i]);
            return 1;
        }
    return 0;
}

static int compare(const char *arch, const char *what, int64_t b, const float *ref, const float *got,
                   int64_t n, double tol)
{
    char name[96];
    snprintf(name, sizeof name, "%-15s B=%lld %-7s", arch, (long long)b, what);
    return norm_close(name, ref, got, n, tol);
}

static int test_model(tmix_backend *gpu, bool cpu_only, const model *m, const char *path)
{
    if (write_teacher(m, path) != 0)
        return 1;
    tmix_backend *emu = tmix_test_emulated_precision(TMIX_PRECISION_BF16, true);
    tmix_teacher *ref_t = NULL, *emu_t = NULL, *gpu_t = NULL;
    CHECK_OK(tmix_teacher_load(&ref_t, cpu(), path));
    CHECK_OK(tmix_teacher_load(&emu_t, emu, path));
    CHECK_OK(tmix_teacher_load(&gpu_t, cpu_only ? emu : gpu, path));
    gpu = cpu_only ? emu : gpu;
    const int64_t px = (int64_t)m->h * m->w;
    static float x[MAX_B * 3 * 64 * 64];
    static float buf[6][MAX_B * 64 * 64], dx[3][MAX_B * 3 * 64 * 64];
    result ref = {buf[0], buf[1], dx[0]}, got = {buf[2], buf[3], dx[1]},
           again = {buf[4], buf[5], dx[2]};
    const int64_t xn = m->channels * px;
    int failed = 0;
    for (size_t k = 0; k < sizeof batches / sizeof batches[0]; k++) {
        const int64_t b = batches[k];
        int64_t labels[MAX_B];
        for (int64_t i = 0; i < b * m->channels * px; i++)
            x[i] = uniform(-2.0f, 2.0f);
        if (!cpu_only)
            CHECK_OK(tmix_backend_set_precision(gpu, TMIX_PRECISION_BF16));
        const double tl = cpu_only ? 0 : TOL_LOGITS, tc = cpu_only ? 0 : TOL_CAMS;
        if (run(emu, emu_t, false, x, NULL, labels, b, m, &ref) ||
            run(gpu, gpu_t, true, x, labels, NULL, b, m, &got))
            return 1;
        failed |= compare(m->arch, "logits", b, ref.logits, got.logits, b * CLASSES, tl);
        failed |= compare(m->arch, "cams", b, ref.cams, got.cams, b * px, tc);
        const char *why = NULL;
        if (tmix_teacher_runs_whole(gpu_t, &why) == cpu_only) {
            fprintf(stderr, "FAIL %s: the network %s whole%s%s\n", m->arch,
                    cpu_only ? "ran" : "did not run", why ? ": " : "", why ? why : "");
            failed = 1;
        }
        // A forward and backward, run whole too (every activation the backward reads kept),
        // then an infer: the first infer's bits.
        if (run(gpu, gpu_t, false, x, labels, NULL, b, m, &again))
            return 1;
        failed |= compare(m->arch, "forward", b, ref.logits, again.logits, b * CLASSES, tl);
        failed |= compare(m->arch, "dx", b, ref.dx, again.dx, b * xn, cpu_only ? 0 : TOL_DX);
        if (tmix_teacher_runs_whole(gpu_t, &why) == cpu_only) {
            fprintf(stderr, "FAIL %s: the forward for a backward %s whole%s%s\n", m->arch,
                    cpu_only ? "ran" : "did not run", why ? ": " : "", why ? why : "");
            failed = 1;
        }
        if (!cpu_only && check_backward_again(gpu, gpu_t, x, &again, m, b) != 0)
            failed = 1;
        if (run(gpu, gpu_t, true, x, labels, NULL, b, m, &again))
            return 1;
        if (memcmp(again.logits, got.logits, (size_t)(b * CLASSES) * sizeof(float)) != 0 ||
            memcmp(again.cams, got.cams, (size_t)(b * px) * sizeof(float)) != 0) {
            fprintf(stderr, "FAIL %s B=%lld: an infer after a forward differs from the first\n",
                    m->arch, (long long)b);
            failed = 1;
        }
        if (cpu_only)
            continue;
        if (k == 0 && tmix_backend_has_graphs(gpu) && check_graph(gpu, gpu_t, m, b) != 0)
            failed = 1;
        // At fp32 the network is not run whole, and infer is the forward.
        CHECK_OK(tmix_backend_set_precision(gpu, TMIX_PRECISION_FP32));
        if (run(cpu(), ref_t, false, x, labels, NULL, b, m, &ref) ||
            run(gpu, gpu_t, true, x, labels, NULL, b, m, &again))
            return 1;
        failed |= compare(m->arch, "fp32", b, ref.logits, again.logits, b * CLASSES, 1e-4);
        if (tmix_teacher_runs_whole(gpu_t, &why) || !strstr(why, "no longer bf16")) {
            fprintf(stderr, "FAIL %s: at fp32, run whole or not for the precision: %s\n",
                    m->arch, why ? why : "");
            failed = 1;
        }
    }
    tmix_teacher_free(gpu_t);
    tmix_teacher_free(emu_t);
    tmix_teacher_free(ref_t);
    return failed;
}

// --refused-backward, on the CUDA emulator turning down bf16 gradients to a convolution's
// input at run time (TMIX_CUDAEMU_REFUSE_BF16_BACKWARD_DATA): the forward runs whole, its
// backward is turned down, and the teacher runs both again op by op. The network no longer
// runs whole for a backward, saying why; a forward and backward again, op by op from the
// start, give the same dx bit for bit; and dx is near the CPU's emulation of the bf16 run op
// by op (whole = false): 1e-2 seen for cifar_resnet20, 2.3e-2 for resnet50, the tf32
// gradients emulated another way; the bound is test_precision's for bf16 (its 8.1e-2 is a
// trained teacher against float32), and a dx run whole instead is 0.26 away. Once turned
// down, the convolution's shape is known to the plan cache: one architecture per run.
static int test_refused_backward(tmix_backend *gpu, const model *m, const char *path)
{
    if (write_teacher(m, path) != 0)
        return 1;
    tmix_backend *emu = tmix_test_emulated_precision(TMIX_PRECISION_BF16, false);
    tmix_teacher *emu_t = NULL, *gpu_t = NULL;
    CHECK_OK(tmix_teacher_load(&emu_t, emu, path));
    CHECK_OK(tmix_teacher_load(&gpu_t, gpu, path));
    CHECK_OK(tmix_backend_set_precision(gpu, TMIX_PRECISION_BF16));
    const int64_t b = MAX_B, n = b * m->channels * m->h * m->w;
    static float x[MAX_B * 3 * 64 * 64], buf[4][MAX_B * 64 * 64], dx[3][MAX_B * 3 * 64 * 64];
    result ref = {buf[0], buf[1], dx[0]}, got = {buf[2], buf[3], dx[1]}, again = got;
    again.dx = dx[2];
    int64_t labels[MAX_B];
    for (int64_t i = 0; i < n; i++)
        x[i] = uniform(-2.0f, 2.0f);
    if (run(emu, emu_t, false, x, NULL, labels, b, m, &ref) ||
        run(gpu, gpu_t, false, x, labels, NULL, b, m, &got))
        return 1;
    int failed = compare(m->arch, "dx", b, ref.dx, got.dx, n, TOL_DX_OP_BY_OP);
    const char *why = NULL;
    if (tmix_teacher_runs_whole(gpu_t, &why) || !strstr(why, "turned down the bf16 gradient")) {
        fprintf(stderr, "FAIL %s: the backward turned down, the teacher %s: %s\n", m->arch,
                why ? "still says why not" : "ran whole", why ? why : "");
        failed = 1;
    }
    if (run(gpu, gpu_t, false, x, labels, NULL, b, m, &again))
        return 1;
    if (memcmp(again.dx, got.dx, (size_t)n * sizeof(float)) != 0) {
        fprintf(stderr, "FAIL %s: a forward and backward op by op again gave another dx\n",
                m->arch);
        failed = 1;
    }
    tmix_teacher_free(gpu_t);
    tmix_teacher_free(emu_t);
    return failed;
}

int main(int argc, char **argv)
{
    const bool cpu_only = argc > 1 && strcmp(argv[1], "--cpu") == 0;
    const bool refused = argc > 1 && strcmp(argv[1], "--refused-backward") == 0;
    char *const *only = argv + 1 + (cpu_only || refused); // the architectures named, or all
    const int named = argc - 1 - (cpu_only || refused);
    for (int i = 0; i < MAX_B * CLASSES; i++)
        dlogits[i] = (float)(i % 7 - 3) / 4.0f;
    tmix_backend *gpu = cpu();
    const int rc = cpu_only ? 0 : open_gpu_or_skip(&gpu);
    if (rc)
        return rc;
    char path[] = "/tmp/tmix-test-infer-XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        return 1;
    }
    close(fd);
    int failed = 0;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        bool wanted = named == 0;
        for (int k = 0; k < named; k++)
            wanted |= strcmp(only[k], models[i].arch) == 0;
        if (wanted)
            failed |= refused ? test_refused_backward(gpu, &models[i], path)
                              : test_model(gpu, cpu_only, &models[i], path);
    }
    unlink(path);
    if (gpu != cpu())
        tmix_backend_close(gpu);
    return failed;
}
