// The core: error table, tensors and memory, the safetensors reader on valid and malformed
// files, the fixture set, the CUDA loader without a GPU, and the protocol encoding.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "golden.h"
#include "harness.h"
#include "ops.h"
#include "safetensors.h"
#include "tmix.pb-c.h"

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

// ---- safetensors: files written byte by byte, so each fault is exactly the one named ----

static char tmpdir[64];

static const char *write_file(const char *name, const char *header, const void *data,
                              size_t data_len, uint64_t header_len_override)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    uint64_t n = header_len_override ? header_len_override : strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(n >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (data_len)
        fwrite(data, 1, data_len, f);
    fclose(f);
    return path;
}

static int make_tmpdir(void)
{
    if (tmpdir[0])
        return 0;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tmix-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : 1;
}

// Opens `path`, expects failure with `code` and a message naming the file and `fault`.
static int expect_reject(const char *path, int code, const char *fault)
{
    tmix_safetensors *st = (tmix_safetensors *)1;
    CHECK_ERR(tmix_safetensors_open(&st, path), code);
    CHECK(st == NULL);
    CHECK(strstr(tmix_last_error(), path) != NULL);
    if (!strstr(tmix_last_error(), fault)) {
        fprintf(stderr, "message '%s' does not mention '%s'\n", tmix_last_error(), fault);
        return 1;
    }
    unlink(path);
    return 0;
}

static int test_safetensors_valid(void)
{
    CHECK(make_tmpdir() == 0);
    float a[6] = {1, 2, 3, 4, 5, 6};
    unsigned char b[3] = {7, 8, 9};
    unsigned char data[27];
    memcpy(data, a, 24);
    memcpy(data + 24, b, 3);
    const char *p = write_file("ok.safetensors",
                               "{\"__metadata__\":{\"format\":\"pt\"},"
                               "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                               "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[24,27]}}",
                               data, sizeof data, 0);
    tmix_safetensors *st;
    CHECK_OK(tmix_safetensors_open(&st, p));
    CHECK(tmix_safetensors_count(st) == 2);
    const tmix_st_tensor *ta = tmix_safetensors_find(st, "a");
    CHECK(ta && ta->dtype == TMIX_ST_F32 && ta->ndim == 2 && ta->shape[1] == 3);
    float got[6];
    memcpy(got, ta->data, sizeof got);
    CHECK(got[5] == 6.0f);
    const tmix_st_tensor *tb = tmix_safetensors_at(st, 1);
    CHECK(tb && strcmp(tb->name, "b") == 0 && ((const unsigned char *)tb->data)[2] == 9);
    CHECK(tmix_safetensors_find(st, "c") == NULL);
    CHECK(strcmp(tmix_safetensors_meta(st, "format"), "pt") == 0);
    CHECK(tmix_safetensors_meta(st, "nope") == NULL);
    tmix_safetensors_close(st);
    unlink(p);
    return 0;
}

static int test_safetensors_truncated(void)
{
    CHECK(make_tmpdir() == 0);
    float a[2] = {1, 2};
    const char *p = write_file(
        "trunc.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
        a, sizeof a, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "truncated") == 0);
    // A header length that runs past the end of the file.
    p = write_file("trunc2.safetensors", "{}", NULL, 0, 4096);
    return expect_reject(p, TMIX_EFORMAT, "truncated");
}

static int test_safetensors_offsets_out_of_range(void)
{
    CHECK(make_tmpdir() == 0);
    float a[4] = {0};
    const char *p = write_file(
        "range.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}",
        a, sizeof a, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "out of range") == 0);
    p = write_file("neg.safetensors",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", a,
                   sizeof a, 0);
    return expect_reject(p, TMIX_EFORMAT, "out of range");
}

static int test_safetensors_overlap(void)
{
    CHECK(make_tmpdir() == 0);
    float a[3] = {0};
    const char *p =
        write_file("overlap.safetensors",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   a, sizeof a, 0);
    return expect_reject(p, TMIX_EFORMAT, "overlap");
}

static int test_safetensors_unknown_dtype(void)
{
    CHECK(make_tmpdir() == 0);
    float a[1] = {0};
    const char *p = write_file(
        "dtype.safetensors", "{\"a\":{\"dtype\":\"F8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
        a, sizeof a, 0);
    return expect_reject(p, TMIX_EFORMAT, "unknown dtype 'F8'");
}

static int test_safetensors_shape_mismatch(void)
{
    CHECK(make_tmpdir() == 0);
    float a[3] = {0};
    const char *p = write_file(
        "shape.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}",
        a, sizeof a, 0);
    return expect_reject(p, TMIX_EFORMAT, "needs 16");
}

static int test_safetensors_header_too_large(void)
{
    CHECK(make_tmpdir() == 0);
    const char *p = write_file("huge.safetensors", "{}", NULL, 0, (uint64_t)200 << 20);
    return expect_reject(p, TMIX_EFORMAT, "limit");
}

static int test_safetensors_not_json(void)
{
    CHECK(make_tmpdir() == 0);
    const char *p = write_file("json.safetensors", "[1, 2, 3", NULL, 0, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "not a JSON object") == 0);
    p = write_file("short.safetensors", "", NULL, 0, 0);
    // 8 bytes of length 0 then nothing: an empty header is not an object either.
    return expect_reject(p, TMIX_EFORMAT, "JSON");
}

static int test_safetensors_missing_file(void)
{
    tmix_safetensors *st;
    CHECK_ERR(tmix_safetensors_open(&st, "/nonexistent/w.safetensors"), TMIX_ENOENT);
    CHECK(strstr(tmix_last_error(), "/nonexistent/w.safetensors") != NULL);
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
    CHECK(suites == 16);
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
    {"tensor.shape_str", test_tensor_shape_str},
    {"memory.alloc_zero_copy", test_memory_alloc_zero_copy},
    {"memory.bad_input", test_memory_bad_input},
    {"safetensors.valid", test_safetensors_valid},
    {"safetensors.truncated", test_safetensors_truncated},
    {"safetensors.offsets_out_of_range", test_safetensors_offsets_out_of_range},
    {"safetensors.overlap", test_safetensors_overlap},
    {"safetensors.unknown_dtype", test_safetensors_unknown_dtype},
    {"safetensors.shape_mismatch", test_safetensors_shape_mismatch},
    {"safetensors.header_too_large", test_safetensors_header_too_large},
    {"safetensors.not_json", test_safetensors_not_json},
    {"safetensors.missing_file", test_safetensors_missing_file},
    {"golden.all_suites_have_fixtures", test_golden_all_suites_have_fixtures},
    {"cuda.absent_is_enodev", test_cuda_no_device},
    {"proto.roundtrip", test_proto_roundtrip},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    int rc = test_main(argc, argv, tests);
    if (tmpdir[0])
        rmdir(tmpdir);
    return rc;
}
