// The core: error table, tensors and memory, the fixture set, the CUDA loader without a GPU,
// and the protocol encoding. The safetensors reader and writer have test_safetensors.c.
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "golden.h"
#include "harness.h"
#include "ops.h"
#include "profile.h"
#include "tmix.pb-c.h"

// A message may wrap the last one: tmix_fail(rc, "%s: %s", path, tmix_last_error()).
static int test_error_wraps_last(void)
{
    CHECK(tmix_fail(TMIX_EIO, "inner %d", 7) == TMIX_EIO);
    CHECK(tmix_fail(TMIX_EFORMAT, "outer: %s", tmix_last_error()) == TMIX_EFORMAT);
    CHECK(strcmp(tmix_last_error(), "outer: inner 7") == 0);
    return 0;
}

static int test_error_table(void)
{
    const int codes[] = {
#define CODE(name, code, text) code,
        TMIX_ERRORS(CODE)
#undef CODE
    };
    int n = (int)COUNT(codes);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            CHECK(codes[i] != codes[j]);
            CHECK(strcmp(tmix_err_name(codes[i]), tmix_err_name(codes[j])) != 0);
        }
    CHECK(strcmp(tmix_strerror(TMIX_ESHAPE), "tensor shape mismatch") == 0);
    CHECK(strcmp(tmix_err_name(TMIX_ENODEV), "TMIX_ENODEV") == 0);
    CHECK(strcmp(tmix_strerror(12345), "unknown error") == 0);
    CHECK(tmix_fail(TMIX_EINVAL, "op: value %d", 7) == TMIX_EINVAL);
    CHECK(strcmp(tmix_last_error(), "op: value 7") == 0);
    return 0;
}

static int test_tensor_shape_str(void)
{
    float x[6];
    tmix_tensor t = V3(x, 1, 2, 3);
    char s[32];
    CHECK(strcmp(tmix_shape_str(&t, s, sizeof s), "(1,2,3)") == 0);
    CHECK(strcmp(tmix_shape_str(NULL, s, sizeof s), "NULL") == 0);
    CHECK(tmix_tensor_numel(&t) == 6 && tmix_tensor_bytes(&t) == 24);
    char tiny[4];
    tmix_shape_str(&t, tiny, sizeof tiny); // truncates, never overflows
    CHECK(strlen(tiny) == 3);
    return 0;
}

static int test_memory_alloc_zero_copy(void)
{
    tmix_backend *be = cpu();
    tmix_tensor t;
    CHECK_OK(tmix_tensor_alloc(be, &t, TMIX_F32, 2, (int64_t[]){3, 5}));
    CHECK(t.owned && t.data && t.device == TMIX_CPU && ((uintptr_t)t.data % 64) == 0);
    float src[15], back[15];
    fill_uniform(src, 15, 1, -1, 1);
    CHECK_OK(tmix_tensor_upload(be, &t, src));
    CHECK_OK(tmix_tensor_download(be, back, &t));
    CHECK(memcmp(src, back, sizeof src) == 0);
    CHECK_OK(tmix_tensor_zero(be, &t));
    CHECK_OK(tmix_tensor_download(be, back, &t));
    for (int i = 0; i < 15; i++)
        CHECK(back[i] == 0.0f);
    CHECK_OK(tmix_synchronize(be));
    tmix_tensor_free(be, &t);
    CHECK(t.data == NULL && !t.owned);
    tmix_tensor_free(be, &t); // freeing twice is harmless
    return 0;
}

static int test_memory_bad_input(void)
{
    tmix_backend *be = cpu();
    tmix_tensor t;
    CHECK_ERR(tmix_tensor_alloc(be, &t, TMIX_F32, 0, (int64_t[]){1}), TMIX_ESHAPE);
    CHECK_ERR(tmix_tensor_alloc(be, &t, TMIX_F32, 5, (int64_t[]){1, 1, 1, 1, 1}), TMIX_ESHAPE);
    CHECK_ERR(tmix_tensor_alloc(be, &t, TMIX_F32, 2, (int64_t[]){3, -1}), TMIX_ESHAPE);
    CHECK_ERR(tmix_tensor_alloc(be, &t, TMIX_F32, 2, (int64_t[]){INT64_MAX / 2, 4}), TMIX_ESHAPE);
    CHECK_ERR(tmix_tensor_alloc(NULL, &t, TMIX_F32, 1, (int64_t[]){1}), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "tensor_alloc") != NULL);
    float x[4];
    tmix_tensor v = V1(x, 4), gpu = on_cuda(v);
    const test_buf outs[] = {{x, COUNT(x)}};
    EXPECT_FAIL(tmix_tensor_upload(be, &v, NULL), TMIX_EINVAL, "tensor_upload", outs);
    EXPECT_FAIL(tmix_tensor_zero(be, &gpu), TMIX_EDEVICE, "cuda", outs);
    CHECK(strstr(tmix_last_error(), "tensor_zero") != NULL);
    return 0;
}

// Staging memory on the CPU is plain host memory: usable, and freed by the same backend.
static int test_memory_host(void)
{
    void *p = NULL;
    CHECK_OK(tmix_host_alloc(cpu(), 1000, &p));
    CHECK(p != NULL);
    memset(p, 0xab, 1000);
    tmix_host_free(cpu(), p);
    tmix_host_free(cpu(), NULL);
    CHECK_OK(tmix_host_alloc(cpu(), 0, &p)); // an empty batch still gets a pointer
    CHECK(p != NULL);
    tmix_host_free(cpu(), p);
    CHECK_ERR(tmix_host_alloc(NULL, 8, &p), TMIX_EINVAL);
    CHECK(p == NULL && strstr(tmix_last_error(), "host_alloc") != NULL);
    CHECK_ERR(tmix_host_alloc(cpu(), 8, NULL), TMIX_EINVAL);
    return 0; // (no out-of-memory case: ASan aborts on an impossible malloc by design)
}

// Device memory is a GPU's: the CPU has no figure to give, and says so.
static int test_memory_info(void)
{
    size_t used = 1, total = 1;
    CHECK_ERR(tmix_memory_info(cpu(), &used, &total), TMIX_ENOTSUP);
    CHECK_ERR(tmix_memory_info(cpu(), NULL, &total), TMIX_EINVAL);
    return 0;
}

// The CPU has no graphs, and its async copies are its plain ones, checked the same way.
static int test_memory_async_and_graphs(void)
{
    float x[4] = {1, 2, 3, 4}, y[4] = {0};
    tmix_tensor v = V1(y, 4);
    CHECK_OK(tmix_tensor_upload_async(cpu(), &v, x));
    CHECK(memcmp(x, y, sizeof x) == 0);
    float back[4] = {0};
    CHECK_OK(tmix_tensor_download_async(cpu(), back, &v));
    CHECK(memcmp(back, x, sizeof x) == 0);
    CHECK_ERR(tmix_tensor_upload_async(cpu(), &v, NULL), TMIX_EINVAL);
    CHECK_ERR(tmix_tensor_download_async(cpu(), NULL, &v), TMIX_EINVAL);

    CHECK(!tmix_backend_has_graphs(cpu()) && !tmix_backend_has_graphs(NULL));
    CHECK_ERR(tmix_capture_begin(cpu()), TMIX_ENOTSUP);
    CHECK(strstr(tmix_last_error(), "capture_begin") != NULL);
    tmix_graph *g = (tmix_graph *)1;
    CHECK_ERR(tmix_capture_end(cpu(), &g), TMIX_ENOTSUP);
    CHECK(g == NULL);
    CHECK_ERR(tmix_capture_end(cpu(), NULL), TMIX_EINVAL);
    CHECK_ERR(tmix_graph_launch(cpu(), NULL), TMIX_ENOTSUP);
    tmix_graph_free(cpu(), NULL);

    // CUDA IPC buffers: the CPU has none, and says so by name.
    tmix_ipc_buffer b;
    CHECK_ERR(tmix_ipc_buffer_new(cpu(), 64, &b), TMIX_ENOTSUP);
    CHECK(strstr(tmix_last_error(), "ipc_buffer_new") != NULL && b.device == NULL);
    CHECK_ERR(tmix_ipc_buffer_fill(cpu(), &b, x, sizeof x), TMIX_ENOTSUP);
    CHECK_ERR(tmix_ipc_buffer_read(cpu(), &b, back, sizeof back), TMIX_ENOTSUP);
    CHECK(strstr(tmix_last_error(), "ipc_buffer_read") != NULL);
    tmix_ipc_buffer_free(cpu(), &b);
    char bus[32];
    CHECK_ERR(tmix_pci_bus_id(cpu(), bus, sizeof bus), TMIX_ENOTSUP);
    CHECK_ERR(tmix_pci_bus_id(cpu(), bus, 8), TMIX_EINVAL);
    return 0;
}

static int test_golden_all_suites_have_fixtures(void)
{
    int suites = 0;
    for (const tmix_golden_suite *s = tmix_golden_suites; s->name; s++, suites++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.safetensors", TMIX_SOURCE_GOLDEN_DIR, s->name);
        tmix_golden *g;
        if (tmix_golden_open(&g, path) < 0) {
            fprintf(stderr, "%s\n", tmix_last_error());
            return 1;
        }
        printf("  %-18s %d cases\n", s->name, tmix_golden_cases(g));
        CHECK(tmix_golden_cases(g) >= 3);
        tmix_golden_close(g);
    }
    CHECK(suites == 22);
    return 0;
}

static int test_cuda_no_device(void)
{
    if (tmix_cuda_device_count() > 0) {
        printf("  a GPU is present; this test covers machines without one\n");
        return 77;
    }
    tmix_backend *be = (tmix_backend *)1;
    CHECK_ERR(tmix_backend_cuda_open(&be, 0), TMIX_ENODEV);
    CHECK(be == NULL && strlen(tmix_last_error()) > 6);
    return 0;
}

// The CPU computes fp32 only: tf32 and bf16 are refused saying so, an unknown precision is a
// bad argument.
static int test_cpu_precision(void)
{
    CHECK_OK(tmix_backend_set_precision(cpu(), TMIX_PRECISION_FP32));
    CHECK_ERR(tmix_backend_set_precision(cpu(), TMIX_PRECISION_TF32), TMIX_ENOTSUP);
    CHECK_ERR(tmix_backend_set_precision(cpu(), TMIX_PRECISION_BF16), TMIX_ENOTSUP);
    CHECK(strstr(tmix_last_error(), "cpu computes in fp32 only") != NULL);
    CHECK_ERR(tmix_backend_set_precision(cpu(), (tmix_precision)3), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "not fp32, tf32 or bf16") != NULL);
    return 0;
}

static const tmix_profile_row *profile_row(const tmix_profile *p, const char *op)
{
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->rows[i].op, op) == 0)
            return &p->rows[i];
    return NULL;
}

// A profile counts each op's calls by name, largest time first; a failed op is not counted,
// an op inside an op is the outer one's, and another backend's ops are not this profile's.
static int test_profile_cpu(void)
{
    float x[2 * 3 * 4 * 4], y[2 * 3 * 4 * 4], w[3 * 3 * 3 * 3], bad[5];
    fill_const(x, COUNT(x), -1.0f);
    fill_const(w, COUNT(w), 0.5f);
    tmix_tensor tx = V4(x, 2, 3, 4, 4), ty = V4(y, 2, 3, 4, 4), tw = V4(w, 3, 3, 3, 3);
    tmix_tensor tbad = V1(bad, 5);
    tmix_profile p;
    CHECK_ERR(tmix_profile_end(&p), TMIX_EINVAL);
    CHECK(p.rows == NULL && p.count == 0);
    CHECK_OK(tmix_profile_begin(cpu()));
    CHECK_ERR(tmix_profile_begin(cpu()), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "already on") != NULL);
    CHECK_OK(tmix_relu_forward(cpu(), &ty, &tx));
    CHECK_OK(tmix_relu_forward(cpu(), &ty, &tx));
    CHECK_OK(tmix_conv2d_forward(cpu(), &ty, &tx, &tw, NULL,
                                 (tmix_conv2d_params){1, 1, 1, 1, 1, 1, false}));
    CHECK_ERR(tmix_relu_forward(cpu(), &tbad, &tx), TMIX_ESHAPE); // refused by its checks
    CHECK(strstr(tmix_last_error(), "relu_forward") != NULL); // the op's message is kept
    // Each entry point's call: numbered when timed, -1 inside another or on another backend.
    const int outer = tmix_profile_enter(cpu());
    CHECK(outer >= 0 && tmix_profile_enter(cpu()) == -1);
    tmix_profile_leave("inner", -1, 0);
    tmix_profile_leave("outer", outer, 0);
    CHECK(tmix_profile_enter(empty_backend()) == -1);
    tmix_profile_leave("elsewhere", -1, 0);
    const int failed = tmix_profile_enter(cpu());
    tmix_profile_leave("failed", failed, TMIX_EINVAL);
    CHECK(tmix_profile_on);
    CHECK_OK(tmix_profile_end(&p));
    CHECK(!tmix_profile_on && !p.device_marks);
    CHECK(p.count == 3);
    const tmix_profile_row *relu = profile_row(&p, "relu_forward");
    const tmix_profile_row *conv = profile_row(&p, "conv2d_forward");
    const tmix_profile_row *o = profile_row(&p, "outer");
    CHECK(relu && relu->calls == 2 && conv && conv->calls == 1 && o && o->calls == 1);
    CHECK(!profile_row(&p, "inner") && !profile_row(&p, "failed"));
    double sum = 0;
    for (int i = 0; i < p.count; i++) {
        CHECK(p.rows[i].host_ms >= 0 && p.rows[i].device_ms == p.rows[i].host_ms);
        CHECK(p.rows[i].cpu_ms >= 0);
        CHECK(i == 0 || p.rows[i].device_ms <= p.rows[i - 1].device_ms);
        sum += p.rows[i].device_ms;
    }
    CHECK(p.wall_ms >= sum && p.device_span_ms == p.wall_ms);
    CHECK(all_const(y, COUNT(y), 0.0f) == false); // the convolution ran: -1 * 0.5 sums
    char text[2048];
    FILE *f = fmemopen(text, sizeof text, "w");
    CHECK(f);
    tmix_profile_print(&p, "ops of the test", f);
    fclose(f);
    CHECK(strstr(text, "ops of the test\n") == text);
    CHECK(strstr(text, "relu_forward") && strstr(text, "(outside ops)") && strstr(text, "total"));
    CHECK(strstr(text, "cpu ms") && !strstr(text, "host ms")); // no device clock on the CPU
    tmix_profile_free(&p);
    CHECK(p.rows == NULL);
    // Off again: ops are not timed, and a new profile starts empty.
    CHECK_OK(tmix_relu_forward(cpu(), &ty, &tx));
    CHECK_OK(tmix_profile_begin(cpu()));
    CHECK_OK(tmix_profile_end(&p));
    CHECK(p.count == 0);
    tmix_profile_free(&p);
    CHECK_ERR(tmix_profile_begin(NULL), TMIX_EINVAL);
    return 0;
}

static int test_proto_roundtrip(void)
{
    Tmix__Hello hello = TMIX__HELLO__INIT;
    hello.group = "sweep-a";
    hello.mode = TMIX__GROUP_MODE__BROADCAST;
    hello.batch_size = 128;
    hello.dtype = TMIX__DTYPE__FLOAT16;
    Tmix__Envelope env = TMIX__ENVELOPE__INIT;
    env.version = TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION;
    env.body_case = TMIX__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    size_t n = tmix__envelope__get_packed_size(&env);
    uint8_t buf[256];
    CHECK(n > 0 && n < sizeof buf);
    CHECK(tmix__envelope__pack(&env, buf) == n);
    Tmix__Envelope *back = tmix__envelope__unpack(NULL, n, buf);
    CHECK(back && back->body_case == TMIX__ENVELOPE__BODY_HELLO);
    CHECK(back->version == TMIX__PROTOCOL_VERSION__PROTOCOL_VERSION);
    CHECK(strcmp(back->hello->group, "sweep-a") == 0 && back->hello->batch_size == 128);
    CHECK(back->hello->mode == TMIX__GROUP_MODE__BROADCAST);
    tmix__envelope__free_unpacked(back, NULL);
    // A truncated message is refused, not half-read.
    CHECK(tmix__envelope__unpack(NULL, n - 3, buf) == NULL);
    return 0;
}

static const test_case tests[] = {
    {"error.table", test_error_table},
    {"error.wraps_last", test_error_wraps_last},
    {"tensor.shape_str", test_tensor_shape_str},
    {"memory.alloc_zero_copy", test_memory_alloc_zero_copy},
    {"memory.bad_input", test_memory_bad_input},
    {"memory.host", test_memory_host},
    {"memory.info", test_memory_info},
    {"memory.async_and_graphs", test_memory_async_and_graphs},
    {"golden.all_suites_have_fixtures", test_golden_all_suites_have_fixtures},
    {"cuda.absent_is_enodev", test_cuda_no_device},
    {"cpu.precision", test_cpu_precision},
    {"proto.roundtrip", test_proto_roundtrip},
    {"profile.cpu", test_profile_cpu},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
