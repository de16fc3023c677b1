// `test_mix_graph`: a GPU mixer that replays its forward as a CUDA graph gives, batch after
// batch, what the CPU computes for that batch. Every method runs eight batches with the
// shipped teacher and mixing module (models/zoo), each with fresh images (written into the
// same device tensor, as a serving lane does), labels and draws; the batch size drops from
// 8 to 4 and comes back, which must record the graph again. A value baked into the graph
// instead of read at launch (a label, a pair, λ, noise, a box, τ) shows as a batch that
// disagrees with the CPU. The launches are counted, so a mixer that quietly fell back to
// running op by op fails too. Between batches 2 and 3 an unrelated op on the same backend
// grows its scratch buffer (cuDNN workspaces and op arguments that a graph bakes in): the
// graph must not be replayed on the freed buffer. Last, a profile (profile.h) of a few
// forwards: the ops timed on the GPU's stream, and no graph recorded or launched while it is
// on. Skips (77) without a GPU. `test_mix_graph --cpu` puts a second CPU mixer in the GPU's
// place (no graphs there, so no launches): the unit test gpu.mix_graph_cpu, which keeps the
// test itself right anywhere. $TMIX_ZOO_DIR, when set,
// replaces the zoo directory of the source tree (on a box the tree is elsewhere).
#include <math.h>
#include <stdlib.h>

#include "harness.h"
#include "mix.h"
#include "ops.h"
#include "profile.h"

enum { C = 1, H = 28, W = 28, N = 2, S = 32, BATCHES = 8, MAX_B = 8 };
static const int sizes[BATCHES] = {8, 8, 8, 8, 4, 4, 4, 8};
// Per method: 8 op by op, record + launch, 1 launch; the scratch grows; 8 refused and run op by
// op; 4 op by op, record + launch, 1 launch; 8 op by op (its buffers moved when the size
// changed).
enum { LAUNCHES = 4, GROW_AFTER = 2 };

typedef struct {
    tmix_backend *be;
    tmix_teacher *teacher;
    tmix_module module;
    tmix_tensor images[2]; // for 8 and for 4 samples, each reused by its batches
} side;

static int open_side(side *sd, tmix_backend *be)
{
    sd->be = be;
    const char *zoo = getenv("TMIX_ZOO_DIR") ? getenv("TMIX_ZOO_DIR") : TMIX_ZOO_DIR;
    char teacher[4096], module[4096];
    snprintf(teacher, sizeof teacher, "%s/fashion_mnist_resnet20.safetensors", zoo);
    snprintf(module, sizeof module, "%s/fashion_mnist_transformmix.safetensors", zoo);
    if (tmix_teacher_load(&sd->teacher, be, teacher) < 0 ||
        tmix_module_load(&sd->module, be, module) < 0) {
        fprintf(stderr, "%s: %s\n", be->name, tmix_last_error());
        return 1;
    }
    for (int k = 0; k < 2; k++)
        CHECK_OK(tmix_tensor_alloc(be, &sd->images[k], TMIX_F32, 4,
                                   (int64_t[]){k ? 4 : 8, C, H, W}));
    return 0;
}

static void close_side(side *sd)
{
    for (int k = 0; k < 2; k++)
        tmix_tensor_free(sd->be, &sd->images[k]);
    tmix_module_free(&sd->module, sd->be);
    tmix_teacher_free(sd->teacher);
}

// Runs an op whose arguments need a scratch buffer far bigger than a mix of these sizes (a
// gather of 16 Mi rows: 128 MiB of indices, staged on the device as a graph's are), and
// bigger at each call, so that the buffer grows for every method: the scratch buffer
// belongs to the backend, which all the methods share.
static int grow_scratch(tmix_backend *be, int call)
{
    const int64_t rows = (16 << 20) + (int64_t)call * 1024;
    int64_t *index = calloc((size_t)rows, sizeof *index); // every row from row 0
    tmix_tensor in = {0}, out = {0};
    CHECK(index != NULL);
    CHECK_OK(tmix_tensor_alloc(be, &in, TMIX_F32, 2, (int64_t[]){1, 1}));
    CHECK_OK(tmix_tensor_alloc(be, &out, TMIX_F32, 2, (int64_t[]){rows, 1}));
    CHECK_OK(tmix_tensor_zero(be, &in));
    CHECK_OK(tmix_gather(be, &out, &in, index));
    CHECK_OK(tmix_synchronize(be));
    tmix_tensor_free(be, &in);
    tmix_tensor_free(be, &out);
    free(index);
    return 0;
}

static int download(tmix_backend *be, const tmix_tensor *t, float *out)
{
    CHECK_OK(tmix_tensor_download(be, out, t));
    return 0;
}

// One batch of `method` on both sides, compared.
static int compare_batch(const char *method, int batch, tmix_mixer *ref_mx, side *ref,
                         tmix_mixer *mx, side *sd, bool needs_module)
{
    const int b = sizes[batch];
    static float x[MAX_B * C * H * W], ref_out[MAX_B * N * H * W], got_out[MAX_B * N * H * W];
    int64_t labels[MAX_B];
    fill_uniform(x, (int64_t)b * C * H * W, 1000 + batch, -2, 2);
    for (int i = 0; i < b; i++)
        labels[i] = (i * 7 + batch * 3) % 10;
    tmix_draws d;
    tmix_rng rng;
    tmix_rng_seed(&rng, 77 + batch);
    CHECK_OK(tmix_draws_alloc(&d, b, N, S));
    tmix_draws_sample(&d, &rng, 1.0);
    const int k = b == 8 ? 0 : 1;
    CHECK_OK(tmix_tensor_upload(ref->be, &ref->images[k], x));
    CHECK_OK(tmix_tensor_upload(sd->be, &sd->images[k], x));
    tmix_mix_result want, got;
    CHECK_OK(tmix_mix_forward(ref_mx, ref->teacher, needs_module ? &ref->module : NULL,
                              &ref->images[k], labels, &d, false, &want));
    CHECK_OK(tmix_mix_forward(mx, sd->teacher, needs_module ? &sd->module : NULL,
                              &sd->images[k], labels, &d, false, &got));
    // Read at once, before anything else waits for the device: the forward must have.
    float got_weights[MAX_B * N];
    memcpy(got_weights, got.weights, (size_t)b * N * sizeof *got_weights);
    tmix_draws_free(&d);
    char what[96];
    int failed = 0;
    const struct {
        const char *name;
        const tmix_tensor *ref, *got;
        int64_t n;
    } outputs[] = {{"mixed", want.mixed, got.mixed, (int64_t)b * C * H * W},
                   {"masks", want.masks, got.masks, (int64_t)b * N * H * W}};
    for (size_t o = 0; o < sizeof outputs / sizeof outputs[0]; o++) {
        if (download(ref->be, outputs[o].ref, ref_out) || download(sd->be, outputs[o].got, got_out))
            return 1;
        snprintf(what, sizeof what, "%-12s batch %d (of %2d) %-5s", method, batch, b, outputs[o].name);
        failed += norm_close(what, ref_out, got_out, outputs[o].n, 1e-4);
    }
    for (int i = 0; i < b * N; i++)
        if (want.sources[i] != got.sources[i] || want.labels[i] != got.labels[i] ||
            fabsf(want.weights[i] - got_weights[i]) > 1e-4f) {
            fprintf(stderr, "%s batch %d: pair %d is source %lld, label %lld, weight %g; the CPU "
                    "says %lld, %lld, %g\n", method, batch, i, (long long)got.sources[i],
                    (long long)got.labels[i], got_weights[i], (long long)want.sources[i],
                    (long long)want.labels[i], want.weights[i]);
            failed++;
            break;
        }
    if (tmix_mixer_graph_error(mx)) {
        fprintf(stderr, "%s batch %d: graphs turned off: %s\n", method, batch,
                tmix_mixer_graph_error(mx));
        failed++;
    }
    return failed;
}

// Three forwards under a profile, then two without: the ops are timed (on the GPU, between
// marks on its stream, which add up to no more than the stream's whole time), graphs wait
// for the profile to end, and the mixer records and launches one right after.
static int profile_forwards(side *sd, bool cpu_only)
{
    static float x[MAX_B * C * H * W];
    int64_t labels[MAX_B];
    fill_uniform(x, MAX_B * C * H * W, 5, -2, 2);
    for (int i = 0; i < MAX_B; i++)
        labels[i] = i % 10;
    CHECK_OK(tmix_tensor_upload(sd->be, &sd->images[0], x));
    tmix_draws d;
    tmix_rng rng;
    tmix_rng_seed(&rng, 5);
    CHECK_OK(tmix_draws_alloc(&d, MAX_B, N, S));
    tmix_draws_sample(&d, &rng, 1.0);
    tmix_mixer *mx;
    CHECK_OK(tmix_mixer_new(&mx, sd->be, TMIX_MIX_TRANSFORMMIX));
    tmix_mixer_use_graphs(mx, true);
    tmix_mix_result res;
    tmix_profile p;
    CHECK_OK(tmix_profile_begin(sd->be));
    CHECK_ERR(tmix_capture_begin(sd->be), cpu_only ? TMIX_ENOTSUP : TMIX_EINVAL);
    for (int r = 0; r < 3; r++)
        CHECK_OK(tmix_mix_forward(mx, sd->teacher, &sd->module, &sd->images[0], labels, &d,
                                  false, &res));
    CHECK_OK(tmix_profile_end(&p));
    CHECK(tmix_mixer_graph_launches(mx) == 0 && !tmix_mixer_graph_error(mx));
    for (int r = 0; r < 2; r++)
        CHECK_OK(tmix_mix_forward(mx, sd->teacher, &sd->module, &sd->images[0], labels, &d,
                                  false, &res));
    CHECK(tmix_mixer_graph_launches(mx) == (cpu_only ? 0 : 1));
    tmix_profile_print(&p, "ops of 3 forwards of 8, profiled", stdout);
    CHECK(p.device_marks == !cpu_only);
    double sum = 0;
    bool conv = false;
    for (int i = 0; i < p.count; i++) {
        CHECK(p.rows[i].device_ms >= 0 && p.rows[i].host_ms >= 0);
        sum += p.rows[i].device_ms;
        if (strcmp(p.rows[i].op, "conv2d_forward") == 0)
            conv = p.rows[i].calls % 3 == 0 && p.rows[i].device_ms > 0;
    }
    CHECK(conv);
    CHECK(sum <= p.device_span_ms * 1.01 + 0.01 && p.device_span_ms <= p.wall_ms + 0.01);
    tmix_profile_free(&p);
    tmix_mixer_free(mx);
    tmix_draws_free(&d);
    return 0;
}

int main(int argc, char **argv)
{
    tmix_backend *gpu;
    bool cpu_only;
    const int rc = open_gpu_or_cpu_twin(argc, argv, &gpu, &cpu_only);
    if (rc)
        return rc;
    side ref = {0}, sd = {0};
    if (open_side(&ref, cpu()) || open_side(&sd, gpu))
        return 1;
    int failed = 0;
    for (int m = 0; m < TMIX_MIX_METHOD_COUNT; m++) {
        const char *name = tmix_method_name((tmix_method)m);
        const bool needs_module = tmix_method_uses_stn((tmix_method)m) ||
                                  tmix_method_uses_mpn((tmix_method)m);
        tmix_mixer *ref_mx, *mx;
        CHECK_OK(tmix_mixer_new(&ref_mx, cpu(), (tmix_method)m));
        CHECK_OK(tmix_mixer_new(&mx, gpu, (tmix_method)m));
        tmix_mixer_use_graphs(mx, true);
        int method_failed = 0;
        for (int batch = 0; batch < BATCHES; batch++) {
            method_failed += compare_batch(name, batch, ref_mx, &ref, mx, &sd, needs_module);
            if (batch == GROW_AFTER && grow_scratch(gpu, m))
                return 1;
        }
        const int64_t launches = tmix_mixer_graph_launches(mx), want = cpu_only ? 0 : LAUNCHES;
        if (launches != want) {
            fprintf(stderr, "%s: %lld graph launches, expected %lld\n", name,
                    (long long)launches, (long long)want);
            method_failed++;
        }
        printf("%-4s %-13s %d batches, %lld graph launches\n", method_failed ? "FAIL" : "ok",
               name, BATCHES, (long long)launches);
        failed += method_failed;
        tmix_mixer_free(mx);
        tmix_mixer_free(ref_mx);
    }
    if (profile_forwards(&sd, cpu_only)) {
        fprintf(stderr, "FAIL profile\n");
        failed++;
    }
    close_side(&sd);
    close_side(&ref);
    if (!cpu_only)
        tmix_backend_close(gpu);
    return failed ? 1 : 0;
}
