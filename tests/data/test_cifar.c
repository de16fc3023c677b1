// The cifar reader on small CIFAR-10 and CIFAR-100 binary sets written here: record counts
// across batch files, the label byte used, CHW records turned into HWC images, and the
// broken cases (partial record, bad label, missing batch) named in the error.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "fixtures.h"
#include "harness.h"

enum { PLANE = 32 * 32, PIXELS = 3 * PLANE };

// The pixel (y, x, c) of sample r: distinct across samples, channels and positions.
static uint8_t pattern(int r, int y, int x, int c)
{
    return (uint8_t)(r * 7 + c * 50 + y * 3 + x);
}

// Writes rel with records of samples first..first+count-1: `label_bytes` label bytes (the last
// one is labels(r), a coarse one before it is r) then the CHW pixels.
static int write_batch(const char *rel, int label_bytes, int first, int count, int (*labels)(int))
{
    const size_t record = (size_t)label_bytes + PIXELS;
    uint8_t *buf = malloc(record * (size_t)count);
    for (int k = 0; k < count; k++) {
        const int r = first + k;
        uint8_t *rec = buf + record * (size_t)k;
        rec[0] = (uint8_t)r;
        rec[label_bytes - 1] = (uint8_t)labels(r);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    rec[label_bytes + c * PLANE + y * 32 + x] = pattern(r, y, x, c);
    }
    const int rc = fixture_write(rel, buf, record * (size_t)count);
    free(buf);
    return rc;
}

static int cifar10_label(int r)
{
    return r % 10;
}

static int cifar100_label(int r)
{
    return 90 + r;
}

// Every sample of ds: label labels(first + i) and the pattern of sample first + i, in HWC.
static int check_samples(tmixd_dataset *ds, int first, int (*labels)(int))
{
    tmixd_image img = {0};
    for (int64_t i = 0; i < tmixd_dataset_size(ds); i++) {
        const int r = first + (int)i;
        CHECK(tmixd_dataset_label(ds, i) == labels(r));
        CHECK_OK(tmixd_dataset_read(ds, i, 0, 0, &img));
        CHECK(img.h == 32 && img.w == 32 && img.c == 3);
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++)
                for (int c = 0; c < 3; c++)
                    CHECK(img.data[(y * 32 + x) * 3 + c] == pattern(r, y, x, c));
    }
    tmixd_image_free(&img);
    return 0;
}

// Five train batches of 2, 3, 1, 2, 2 records and a test batch of 3.
static int write_cifar10(const char *dir)
{
    static const int counts[5] = {2, 3, 1, 2, 2};
    int first = 0, rc = 0;
    for (int b = 0; b < 5; b++) {
        char rel[128];
        snprintf(rel, sizeof rel, "%s/data_batch_%d.bin", dir, b + 1);
        rc |= write_batch(rel, 1, first, counts[b], cifar10_label);
        first += counts[b];
    }
    char rel[128];
    snprintf(rel, sizeof rel, "%s/test_batch.bin", dir);
    return rc | write_batch(rel, 1, 100, 3, cifar10_label);
}

static int test_cifar10(void)
{
    CHECK(write_cifar10("c10") == 0);
    tmixd_dataset *ds;
    CHECK_OK(tmixd_dataset_open(&ds, "cifar", fixture_path("c10"), "train"));
    CHECK(tmixd_dataset_size(ds) == 10);
    CHECK(tmixd_dataset_classes(ds) == 10);
    CHECK(tmixd_dataset_channels(ds) == 3);
    int h, w;
    tmixd_dataset_image_size(ds, &h, &w);
    CHECK(h == 32 && w == 32);
    CHECK(strcmp(tmixd_dataset_class_name(ds, 3), "3") == 0);
    CHECK(check_samples(ds, 0, cifar10_label) == 0);
    tmixd_dataset_close(ds);

    CHECK_OK(tmixd_dataset_open(&ds, "cifar", fixture_path("c10"), "test"));
    CHECK(tmixd_dataset_size(ds) == 3);
    CHECK(check_samples(ds, 100, cifar10_label) == 0);
    tmixd_dataset_close(ds);
    return 0;
}

static int test_cifar100(void)
{
    CHECK(write_batch("c100/train.bin", 2, 0, 4, cifar100_label) == 0);
    CHECK(write_batch("c100/test.bin", 2, 5, 2, cifar100_label) == 0);
    tmixd_dataset *ds;
    CHECK_OK(tmixd_dataset_open(&ds, "cifar", fixture_path("c100"), "train"));
    CHECK(tmixd_dataset_size(ds) == 4);
    CHECK(tmixd_dataset_classes(ds) == 100);
    CHECK(strcmp(tmixd_dataset_class_name(ds, 99), "99") == 0);
    CHECK(check_samples(ds, 0, cifar100_label) == 0); // the fine label, not the coarse one
    tmixd_dataset_close(ds);
    CHECK_OK(tmixd_dataset_open(&ds, "cifar", fixture_path("c100"), "test"));
    CHECK(tmixd_dataset_size(ds) == 2);
    CHECK(check_samples(ds, 5, cifar100_label) == 0);
    tmixd_dataset_close(ds);
    return 0;
}

static int expect_open_error(const char *dir, const char *split, int code, const char *file)
{
    tmixd_dataset *ds;
    CHECK_ERR(tmixd_dataset_open(&ds, "cifar", fixture_path(dir), split), code);
    CHECK(error_mentions(fixture_path(file)));
    return 0;
}

static int test_partial_record(void)
{
    CHECK(write_cifar10("partial") == 0);
    CHECK(fixture_truncate("partial/data_batch_2.bin", 2 * (1 + PIXELS) + 100) == 0);
    CHECK(expect_open_error("partial", "train", TMIX_EFORMAT, "partial/data_batch_2.bin") == 0);
    CHECK(fixture_truncate("partial/test_batch.bin", 0) == 0);
    return expect_open_error("partial", "test", TMIX_EFORMAT, "partial/test_batch.bin");
}

static int label_out_of_range(int r)
{
    return r == 1 ? 10 : 0;
}

static int test_bad_label(void)
{
    CHECK(write_cifar10("label") == 0);
    CHECK(write_batch("label/test_batch.bin", 1, 0, 3, label_out_of_range) == 0);
    CHECK(expect_open_error("label", "test", TMIX_EFORMAT, "label/test_batch.bin") == 0);
    CHECK(error_mentions("record 1"));
    return 0;
}

static int test_missing_files(void)
{
    CHECK(write_cifar10("gap") == 0);
    CHECK(unlink(fixture_path("gap/data_batch_3.bin")) == 0);
    CHECK(expect_open_error("gap", "train", TMIX_ENOENT, "gap/data_batch_3.bin") == 0);
    CHECK(fixture_mkdir("none") == 0);
    CHECK(expect_open_error("none", "train", TMIX_ENOENT, "none") == 0);
    CHECK(write_batch("only_test/test.bin", 2, 0, 1, cifar100_label) == 0);
    return expect_open_error("only_test", "train", TMIX_ENOENT, "only_test/train.bin");
}

static const test_case tests[] = {
    {"cifar.cifar10", test_cifar10},
    {"cifar.cifar100", test_cifar100},
    {"cifar.partial_record", test_partial_record},
    {"cifar.bad_label", test_bad_label},
    {"cifar.missing_files", test_missing_files},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return fixture_test_main(argc, argv, tests);
}
