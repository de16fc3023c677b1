// The safetensors reader and writer: a round trip through the writer, the float conversions
// of tmix_st_read_f32, atomic saves, and the reader on malformed files written byte by byte
// (so each fault is exactly the one named), each refused with a message naming the file and
// the fault.
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "safetensors.h"

static char tmpdir[64];

static int make_tmpdir(void)
{
    if (tmpdir[0])
        return 0;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tmix-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : 1;
}

// tmpdir/name, in a static buffer.
static const char *in_tmp(const char *name)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return path;
}

// Writes tmpdir/name: the 8-byte length (of header, or header_len_override when nonzero),
// the header text, then data_len bytes of data.
static const char *write_file(const char *name, const char *header, const void *data,
                              size_t data_len, uint64_t header_len_override)
{
    const char *path = in_tmp(name);
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

// Opens `path`, expects failure with `code` and a message naming the file and `fault`.
static int expect_reject(const char *path, int code, const char *fault)
{
    CHECK(path != NULL);
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

static uint32_t bits_of(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

// ---- valid files ------------------------------------------------------------------------

static int test_valid(void)
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
                               "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[24,27]}}  ",
                               data, sizeof data, 0);
    tmix_safetensors *st;
    CHECK_OK(tmix_safetensors_open(&st, p));
    CHECK(tmix_safetensors_count(st) == 2);
    const tmix_st_tensor *ta = tmix_safetensors_find(st, "a");
    CHECK(ta && ta->dtype == TMIX_ST_F32 && ta->ndim == 2 && ta->shape[1] == 3);
    CHECK(tmix_st_numel(ta) == 6);
    float got[6];
    memcpy(got, ta->data, sizeof got);
    CHECK(got[5] == 6.0f);
    const tmix_st_tensor *tb = tmix_safetensors_at(st, 1);
    CHECK(tb && strcmp(tb->name, "b") == 0 && ((const unsigned char *)tb->data)[2] == 9);
    CHECK(tmix_safetensors_at(st, 2) == NULL && tmix_safetensors_at(st, -1) == NULL);
    CHECK(tmix_safetensors_find(st, "c") == NULL);
    CHECK(strcmp(tmix_safetensors_meta(st, "format"), "pt") == 0);
    CHECK(tmix_safetensors_meta(st, "nope") == NULL);
    tmix_safetensors_close(st);
    unlink(p);
    return 0;
}

// F32, F16, BF16, I64 and U8 tensors (a scalar and an empty one among them) and metadata
// through the writer and back, bit for bit, in the order added.
static int test_roundtrip(void)
{
    CHECK(make_tmpdir() == 0);
    float f32[6];
    fill_uniform(f32, 6, 7, -2, 2);
    const uint16_t f16[3] = {0x3c00, 0x0001, 0xfc00}, bf16[2] = {0x3f80, 0x7fc1};
    const int64_t i64[2] = {INT64_MIN, 1234567890123};
    const unsigned char u8[5] = {0, 1, 127, 128, 255};
    const float scalar = 0.5f;
    const struct {
        const char *name;
        tmix_st_dtype dtype;
        int ndim;
        int64_t shape[3];
        const void *data;
        size_t bytes;
    } ts[] = {
        {"conv.weight", TMIX_ST_F32, 3, {1, 2, 3}, f32, sizeof f32},
        {"half", TMIX_ST_F16, 1, {3}, f16, sizeof f16},
        {"brain", TMIX_ST_BF16, 2, {2, 1}, bf16, sizeof bf16},
        {"labels", TMIX_ST_I64, 1, {2}, i64, sizeof i64},
        {"image", TMIX_ST_U8, 2, {1, 5}, u8, sizeof u8},
        {"scalar", TMIX_ST_F32, 0, {0}, &scalar, sizeof scalar},
        {"empty", TMIX_ST_F32, 2, {0, 4}, NULL, 0},
    };
    tmix_st_writer *w;
    CHECK_OK(tmix_st_writer_new(&w));
    for (int i = 0; i < (int)COUNT(ts); i++)
        CHECK_OK(tmix_st_writer_add(w, ts[i].name, ts[i].dtype, ts[i].ndim, ts[i].shape,
                                    ts[i].data));
    CHECK_OK(tmix_st_writer_meta(w, "format", "tmix-module"));
    CHECK_OK(tmix_st_writer_meta(w, "mean", "[0.5, \"quoted\\\"\"]"));
    const char *p = in_tmp("round.safetensors");
    CHECK_OK(tmix_st_writer_save(w, p));
    tmix_st_writer_free(w);

    // The layout upstream writes: length, space-padded header starting with __metadata__,
    // then the data back to back.
    FILE *f = fopen(p, "rb");
    CHECK(f != NULL);
    unsigned char head[24];
    CHECK(fread(head, 1, sizeof head, f) == sizeof head);
    fclose(f);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | head[i];
    CHECK(hlen % 8 == 0 && memcmp(head + 8, "{\"__metadata__\"", 15) == 0);

    tmix_safetensors *st;
    CHECK_OK(tmix_safetensors_open(&st, p));
    CHECK(tmix_safetensors_count(st) == (int)COUNT(ts));
    const char *data0 = tmix_safetensors_at(st, 0)->data, *next = data0;
    for (int i = 0; i < (int)COUNT(ts); i++) {
        const tmix_st_tensor *t = tmix_safetensors_at(st, i);
        CHECK(strcmp(t->name, ts[i].name) == 0 && t->dtype == ts[i].dtype);
        CHECK(t->ndim == ts[i].ndim && t->bytes == ts[i].bytes);
        for (int d = 0; d < t->ndim; d++)
            CHECK(t->shape[d] == ts[i].shape[d]);
        CHECK((const char *)t->data == next); // contiguous, in the order added
        CHECK(t->bytes == 0 || memcmp(t->data, ts[i].data, t->bytes) == 0);
        next += t->bytes;
    }
    CHECK((uintptr_t)data0 % 8 == 0); // the padding keeps the data 8-byte aligned
    CHECK(tmix_st_numel(tmix_safetensors_find(st, "scalar")) == 1);
    CHECK(tmix_st_numel(tmix_safetensors_find(st, "empty")) == 0);
    CHECK(strcmp(tmix_safetensors_meta(st, "format"), "tmix-module") == 0);
    CHECK(strcmp(tmix_safetensors_meta(st, "mean"), "[0.5, \"quoted\\\"\"]") == 0);
    struct stat sb;
    CHECK(stat(p, &sb) == 0 && (uint64_t)sb.st_size == 8 + hlen + (uint64_t)(next - data0));
    tmix_safetensors_close(st);
    unlink(p);
    return 0;
}

// F16 and BF16 widen to float32 exactly: signed zeros, subnormals, the extremes, inf, NaN.
static int test_read_f32(void)
{
    CHECK(make_tmpdir() == 0);
    const uint16_t f16[] = {0x0000, 0x8000, 0x3c00, 0xc000, 0x3555, 0x0001, 0x83ff,
                            0x0400, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x7c01};
    const uint32_t f16_want[] = {
        0x00000000, 0x80000000, 0x3f800000, 0xc0000000, 0x3eaaa000, // 0, -0, 1, -2, ~1/3
        0x33800000, 0xb87fc000, // 2^-24 (smallest subnormal), -1023 * 2^-24
        0x38800000, 0x477fe000, // 2^-14 (smallest normal), 65504
        0x7f800000, 0xff800000, 0x7fc00000, 0x7f802000, // inf, -inf, NaN, NaN with its payload
    };
    const uint16_t bf16[] = {0x3f80, 0xc049, 0x0001, 0x8080, 0x7f7f, 0x7f80, 0xff80, 0x7fc1};
    const float f32[] = {1.5f, -0.0f, 1e-45f};
    tmix_st_writer *w;
    CHECK_OK(tmix_st_writer_new(&w));
    CHECK_OK(tmix_st_writer_add(w, "h", TMIX_ST_F16, 1, (int64_t[]){COUNT(f16)}, f16));
    CHECK_OK(tmix_st_writer_add(w, "b", TMIX_ST_BF16, 1, (int64_t[]){COUNT(bf16)}, bf16));
    CHECK_OK(tmix_st_writer_add(w, "f", TMIX_ST_F32, 1, (int64_t[]){COUNT(f32)}, f32));
    CHECK_OK(tmix_st_writer_add(w, "n", TMIX_ST_I64, 1, (int64_t[]){1}, (int64_t[]){3}));
    const char *p = in_tmp("halves.safetensors");
    CHECK_OK(tmix_st_writer_save(w, p));
    tmix_st_writer_free(w);

    tmix_safetensors *st;
    CHECK_OK(tmix_safetensors_open(&st, p));
    float got[16];
    CHECK_OK(tmix_st_read_f32(st, tmix_safetensors_find(st, "h"), got));
    for (int i = 0; i < (int)COUNT(f16); i++)
        if (bits_of(got[i]) != f16_want[i]) {
            fprintf(stderr, "F16 %04x -> %08x, want %08x\n", f16[i], bits_of(got[i]),
                    f16_want[i]);
            return 1;
        }
    CHECK(got[5] == ldexpf(1, -24) && got[8] == 65504.0f && isnan(got[11]));
    CHECK_OK(tmix_st_read_f32(st, tmix_safetensors_find(st, "b"), got));
    CHECK(got[0] == 1.0f && got[1] == -3.140625f);
    CHECK(got[2] == ldexpf(1, -133) && got[3] == -ldexpf(1, -126)); // subnormal, -min normal
    CHECK(bits_of(got[4]) == 0x7f7f0000 && got[5] == INFINITY && got[6] == -INFINITY);
    CHECK(bits_of(got[7]) == 0x7fc10000);
    CHECK_OK(tmix_st_read_f32(st, tmix_safetensors_find(st, "f"), got));
    CHECK(memcmp(got, f32, sizeof f32) == 0);
    // Integers are not silently converted.
    got[0] = SENTINEL;
    CHECK_ERR(tmix_st_read_f32(st, tmix_safetensors_find(st, "n"), got), TMIX_EDTYPE);
    CHECK(strstr(tmix_last_error(), p) && strstr(tmix_last_error(), "'n'"));
    CHECK(strstr(tmix_last_error(), "I64") && got[0] == SENTINEL);
    tmix_safetensors_close(st);
    unlink(p);
    return 0;
}

// A save replaces the old file in one rename and leaves no PATH.tmp behind.
static int test_atomic_save(void)
{
    CHECK(make_tmpdir() == 0);
    const char *p = in_tmp("atomic.safetensors");
    char path[128], tmp[140];
    snprintf(path, sizeof path, "%s", p);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(path, "wb");
    CHECK(f && fputs("old contents", f) >= 0 && fclose(f) == 0);
    f = fopen(tmp, "wb"); // a stale temporary from a crashed writer
    CHECK(f && fputs("stale stale stale stale", f) >= 0 && fclose(f) == 0);

    tmix_st_writer *w;
    CHECK_OK(tmix_st_writer_new(&w));
    CHECK_OK(tmix_st_writer_add(w, "x", TMIX_ST_U8, 1, (int64_t[]){2}, "ab"));
    CHECK_OK(tmix_st_writer_save(w, path));
    CHECK(!exists(tmp));
    tmix_safetensors *st;
    CHECK_OK(tmix_safetensors_open(&st, path));
    CHECK(tmix_safetensors_count(st) == 1 && tmix_safetensors_meta(st, "format") == NULL);
    CHECK(memcmp(tmix_safetensors_find(st, "x")->data, "ab", 2) == 0);
    tmix_safetensors_close(st);

    // Saving again (the writer is reusable) replaces the file once more.
    CHECK_OK(tmix_st_writer_add(w, "y", TMIX_ST_U8, 1, (int64_t[]){1}, "c"));
    CHECK_OK(tmix_st_writer_save(w, path));
    CHECK_OK(tmix_safetensors_open(&st, path));
    CHECK(tmix_safetensors_count(st) == 2 && !exists(tmp));
    tmix_safetensors_close(st);
    tmix_st_writer_free(w);
    unlink(path);
    return 0;
}

// A failed save names the path, leaves the old file as it was and no temporary behind.
static int test_save_errors(void)
{
    CHECK(make_tmpdir() == 0);
    tmix_st_writer *w;
    CHECK_OK(tmix_st_writer_new(&w));
    static unsigned char big[1 << 16];
    CHECK_OK(tmix_st_writer_add(w, "big", TMIX_ST_U8, 1, (int64_t[]){COUNT(big)}, big));

    const char *nodir = "/nonexistent-tmix-dir/w.safetensors";
    CHECK_ERR(tmix_st_writer_save(w, nodir), TMIX_ENOENT);
    CHECK(strstr(tmix_last_error(), nodir) != NULL);

    // A write that runs out of room (a file size limit stands in for a full disk: the same
    // short write, then an error).
    char path[128], tmp[140];
    snprintf(path, sizeof path, "%s", in_tmp("full.safetensors"));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(path, "wb");
    CHECK(f && fputs("old", f) >= 0 && fclose(f) == 0);
    struct rlimit keep, small;
    CHECK(getrlimit(RLIMIT_FSIZE, &keep) == 0);
    small = keep;
    small.rlim_cur = 4096;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    int rc = tmix_st_writer_save(w, path);
    setrlimit(RLIMIT_FSIZE, &keep);
    signal(SIGXFSZ, old_handler);
    CHECK_ERR(rc, TMIX_EIO);
    CHECK(strstr(tmix_last_error(), path) && strstr(tmix_last_error(), "writing"));
    CHECK(!exists(tmp));
    char back[8] = {0};
    f = fopen(path, "rb");
    CHECK(f && fread(back, 1, sizeof back, f) == 3 && fclose(f) == 0);
    CHECK(strcmp(back, "old") == 0);
    unlink(path);
    tmix_st_writer_free(w);
    return 0;
}

// The writer refuses what a reader would refuse, naming the tensor or key.
static int test_writer_bad_input(void)
{
    tmix_st_writer *w;
    CHECK_OK(tmix_st_writer_new(&w));
    float x[4] = {0};
    CHECK_OK(tmix_st_writer_add(w, "a", TMIX_ST_F32, 1, (int64_t[]){4}, x));
    CHECK_ERR(tmix_st_writer_add(w, "a", TMIX_ST_F32, 1, (int64_t[]){4}, x), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "'a'") && strstr(tmix_last_error(), "twice"));
    CHECK_ERR(tmix_st_writer_add(w, "b", TMIX_ST_F32, TMIX_ST_MAX_DIMS + 1,
                                 (int64_t[TMIX_ST_MAX_DIMS + 1]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x),
              TMIX_ESHAPE);
    CHECK(strstr(tmix_last_error(), "'b'") && strstr(tmix_last_error(), "9 dimensions"));
    CHECK_ERR(tmix_st_writer_add(w, "c", TMIX_ST_F32, -1, NULL, x), TMIX_ESHAPE);
    CHECK_ERR(tmix_st_writer_add(w, "d", TMIX_ST_F32, 2, (int64_t[]){2, -2}, x), TMIX_ESHAPE);
    CHECK(strstr(tmix_last_error(), "'d'") && strstr(tmix_last_error(), "-2"));
    CHECK_ERR(tmix_st_writer_add(w, "e", TMIX_ST_F32, 2, (int64_t[]){INT64_MAX, 2}, x),
              TMIX_ESHAPE);
    CHECK_ERR(tmix_st_writer_add(w, "f", (tmix_st_dtype)42, 1, (int64_t[]){1}, x), TMIX_EDTYPE);
    CHECK(strstr(tmix_last_error(), "'f'") != NULL);
    CHECK_ERR(tmix_st_writer_add(w, "g", TMIX_ST_F32, 1, (int64_t[]){1}, NULL), TMIX_EINVAL);
    CHECK_ERR(tmix_st_writer_add(w, "__metadata__", TMIX_ST_F32, 1, (int64_t[]){1}, x),
              TMIX_EINVAL);
    CHECK_ERR(tmix_st_writer_add(w, NULL, TMIX_ST_F32, 1, (int64_t[]){1}, x), TMIX_EINVAL);
    CHECK_OK(tmix_st_writer_meta(w, "k", "v"));
    CHECK_ERR(tmix_st_writer_meta(w, "k", "w"), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "'k'") != NULL);
    CHECK_ERR(tmix_st_writer_meta(w, "k2", NULL), TMIX_EINVAL);

    // Only the one good tensor and key were kept.
    CHECK(make_tmpdir() == 0);
    const char *p = in_tmp("refused.safetensors");
    CHECK_OK(tmix_st_writer_save(w, p));
    tmix_st_writer_free(w);
    tmix_safetensors *st;
    CHECK_OK(tmix_safetensors_open(&st, p));
    CHECK(tmix_safetensors_count(st) == 1 && strcmp(tmix_safetensors_meta(st, "k"), "v") == 0);
    tmix_safetensors_close(st);
    unlink(p);
    return 0;
}

// ---- malformed files ----------------------------------------------------------------------

static int test_truncated(void)
{
    CHECK(make_tmpdir() == 0);
    float a[2] = {1, 2};
    const char *p = write_file(
        "trunc.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
        a, sizeof a, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "truncated") == 0);
    // A header length that runs past the end of the file.
    p = write_file("trunc2.safetensors", "{}", NULL, 0, 4096);
    CHECK(expect_reject(p, TMIX_EFORMAT, "truncated") == 0);
    // Not even the 8 bytes of the length.
    p = in_tmp("trunc3.safetensors");
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite("\x02\0\0", 1, 3, f) == 3 && fclose(f) == 0);
    return expect_reject(p, TMIX_EFORMAT, "too short");
}

static int test_offsets_out_of_range(void)
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
    CHECK(expect_reject(p, TMIX_EFORMAT, "out of range") == 0);
    p = write_file("frac.safetensors",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4.5]}}", a,
                   sizeof a, 0);
    return expect_reject(p, TMIX_EFORMAT, "out of range");
}

static int test_overlap(void)
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

static int test_unknown_dtype(void)
{
    CHECK(make_tmpdir() == 0);
    float a[1] = {0};
    const char *p = write_file(
        "dtype.safetensors", "{\"a\":{\"dtype\":\"F8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
        a, sizeof a, 0);
    return expect_reject(p, TMIX_EFORMAT, "unknown dtype 'F8'");
}

static int test_shape_mismatch(void)
{
    CHECK(make_tmpdir() == 0);
    float a[3] = {0};
    const char *p = write_file(
        "shape.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}",
        a, sizeof a, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "shape needs 16") == 0);
    p = write_file("negshape.safetensors",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,3],\"data_offsets\":[0,12]}}", a,
                   sizeof a, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "invalid shape") == 0);
    p = write_file("dims.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                   "\"data_offsets\":[0,1]}}",
                   a, sizeof a, 0);
    return expect_reject(p, TMIX_EFORMAT, "9 dimensions");
}

static int test_header_too_large(void)
{
    CHECK(make_tmpdir() == 0);
    const char *p = write_file("huge.safetensors", "{}", NULL, 0, (uint64_t)200 << 20);
    return expect_reject(p, TMIX_EFORMAT, "limit");
}

static int test_not_json(void)
{
    CHECK(make_tmpdir() == 0);
    const char *p = write_file("json.safetensors", "[1, 2, 3", NULL, 0, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "not valid JSON") == 0);
    p = write_file("array.safetensors", "[1, 2, 3]", NULL, 0, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "not a JSON object") == 0);
    p = write_file("trailing.safetensors", "{}  }", NULL, 0, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "after its JSON object") == 0);
    // 8 bytes of length 0 then nothing: an empty header is not JSON either.
    p = write_file("short.safetensors", "", NULL, 0, 0);
    return expect_reject(p, TMIX_EFORMAT, "JSON");
}

static int test_bad_metadata(void)
{
    CHECK(make_tmpdir() == 0);
    const char *p = write_file("meta1.safetensors", "{\"__metadata__\":{\"n\":2}}", NULL, 0, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "value 'n' is not a string") == 0);
    p = write_file("meta2.safetensors", "{\"__metadata__\":[\"a\"]}", NULL, 0, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "__metadata__ is not an object") == 0);
    p = write_file("meta3.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", NULL, 0, 0);
    return expect_reject(p, TMIX_EFORMAT, "__metadata__ appears twice");
}

static int test_bad_entry(void)
{
    CHECK(make_tmpdir() == 0);
    float a[1] = {0};
    const char *p = write_file("entry.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}",
                               a, sizeof a, 0);
    CHECK(expect_reject(p, TMIX_EFORMAT, "'a' needs dtype, shape and two data_offsets") == 0);
    p = write_file("twice.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                   "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                   "xy", 2, 0);
    return expect_reject(p, TMIX_EFORMAT, "'a' appears twice");
}

static int test_missing_file(void)
{
    tmix_safetensors *st;
    CHECK_ERR(tmix_safetensors_open(&st, "/nonexistent/w.safetensors"), TMIX_ENOENT);
    CHECK(strstr(tmix_last_error(), "/nonexistent/w.safetensors") != NULL);
    return 0;
}

static const test_case tests[] = {
    {"safetensors.valid", test_valid},
    {"safetensors.roundtrip", test_roundtrip},
    {"safetensors.read_f32", test_read_f32},
    {"safetensors.atomic_save", test_atomic_save},
    {"safetensors.save_errors", test_save_errors},
    {"safetensors.writer_bad_input", test_writer_bad_input},
    {"safetensors.truncated", test_truncated},
    {"safetensors.offsets_out_of_range", test_offsets_out_of_range},
    {"safetensors.overlap", test_overlap},
    {"safetensors.unknown_dtype", test_unknown_dtype},
    {"safetensors.shape_mismatch", test_shape_mismatch},
    {"safetensors.header_too_large", test_header_too_large},
    {"safetensors.not_json", test_not_json},
    {"safetensors.bad_metadata", test_bad_metadata},
    {"safetensors.bad_entry", test_bad_entry},
    {"safetensors.missing_file", test_missing_file},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    int rc = test_main(argc, argv, tests);
    if (tmpdir[0])
        rmdir(tmpdir);
    return rc;
}
