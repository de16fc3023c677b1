// The idx reader on Debian's Fashion-MNIST and on small IDX sets written here, plain and
// gzip, including each kind of broken file (refused with a message naming the file).
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "fixtures.h"
#include "harness.h"

#define FASHION_MNIST "/usr/share/datasets/fashion-mnist"

static int64_t pixel_sum(const tmixd_image *img)
{
    int64_t s = 0;
    for (size_t k = 0; k < (size_t)img->h * img->w * img->c; k++)
        s += img->data[k];
    return s;
}

// Fashion-MNIST's first images and labels, as read by python3's gzip module: train labels
// start 9 0 0 3 0 2 7 2 5 5, test labels 9 2 1 1 6 1 4 6 5 7; the first train image sums to
// 76247, the first test image to 33456.
static int check_fashion_mnist(const char *split, int64_t size, const int *first_labels,
                               int64_t first_sum)
{
    struct stat st;
    if (stat(FASHION_MNIST, &st) != 0)
        return 77;
    tmixd_dataset *ds;
    CHECK_OK(tmixd_dataset_open(&ds, "idx", FASHION_MNIST, split));
    CHECK(tmixd_dataset_size(ds) == size);
    CHECK(tmixd_dataset_classes(ds) == 10);
    CHECK(tmixd_dataset_channels(ds) == 1);
    int h, w;
    tmixd_dataset_image_size(ds, &h, &w);
    CHECK(h == 28 && w == 28);
    CHECK(strcmp(tmixd_dataset_class_name(ds, 9), "9") == 0);
    CHECK(tmixd_dataset_class_name(ds, 10) == NULL);
    char describe[128];
    snprintf(describe, sizeof describe, "idx:%s (%s)", FASHION_MNIST, split);
    CHECK(strcmp(tmixd_dataset_describe(ds), describe) == 0);
    for (int i = 0; i < 10; i++)
        CHECK(tmixd_dataset_label(ds, i) == first_labels[i]);
    tmixd_image img = {0};
    CHECK_OK(tmixd_dataset_read(ds, 0, 0, 0, &img));
    CHECK(img.h == 28 && img.w == 28 && img.c == 1);
    CHECK(pixel_sum(&img) == first_sum);
    CHECK_OK(tmixd_dataset_read(ds, size - 1, 0, 0, &img));
    CHECK_ERR(tmixd_dataset_read(ds, size, 0, 0, &img), TMIX_EINVAL);
    CHECK(error_mentions(FASHION_MNIST));
    CHECK_ERR(tmixd_dataset_read(ds, -1, 0, 0, &img), TMIX_EINVAL);
    tmixd_image_free(&img);
    tmixd_dataset_close(ds);
    return 0;
}

static int test_fashion_mnist_train(void)
{
    return check_fashion_mnist("train", 60000, (const int[]){9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, 76247);
}

static int test_fashion_mnist_test(void)
{
    return check_fashion_mnist("test", 10000, (const int[]){9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, 33456);
}

// An IDX header: magic then dims big-endian into out; returns its length.
static size_t idx_header(uint8_t *out, uint32_t magic, int dims, const uint32_t *v)
{
    uint32_t all[4] = {magic, v[0], dims > 1 ? v[1] : 0, dims > 2 ? v[2] : 0};
    for (int k = 0; k <= dims; k++)
        for (int b = 0; b < 4; b++)
            out[4 * k + b] = (uint8_t)(all[k] >> (24 - 8 * b));
    return 4 + 4 * (size_t)dims;
}

// A set of n images of rows x cols, pixel (i, y, x) = 10 i + cols y + x + seed, and labels
// 0, 4, 2, 4, 2, ... in folder `dir` as prefix-images-idx3-ubyte / prefix-labels-idx1-ubyte
// (with ".gz" when gz). `magic` / `label_count` other than 0 replace the true ones.
static int write_idx(const char *dir, const char *prefix, bool gz, int n, int rows, int cols,
                     int seed, uint32_t magic, uint32_t label_count)
{
    uint8_t *buf = malloc(16 + (size_t)n * rows * cols + 8 + (size_t)n);
    size_t len = idx_header(buf, magic ? magic : 0x803, 3,
                            (const uint32_t[]){(uint32_t)n, (uint32_t)rows, (uint32_t)cols});
    for (int i = 0; i < n; i++)
        for (int p = 0; p < rows * cols; p++)
            buf[len++] = (uint8_t)(10 * i + p + seed);
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s-images-idx3-ubyte%s", dir, prefix, gz ? ".gz" : "");
    int rc = gz ? fixture_write_gz(rel, buf, len) : fixture_write(rel, buf, len);
    len = idx_header(buf, 0x801, 1, (const uint32_t[]){label_count ? label_count : (uint32_t)n});
    for (int i = 0; i < n; i++)
        buf[len++] = (uint8_t)(i == 0 ? 0 : i % 2 ? 4 : 2);
    snprintf(rel, sizeof rel, "%s/%s-labels-idx1-ubyte%s", dir, prefix, gz ? ".gz" : "");
    rc |= gz ? fixture_write_gz(rel, buf, len) : fixture_write(rel, buf, len);
    free(buf);
    return rc;
}

// Plain files for train, gzip for test; the plain file wins over a .gz beside it.
static int test_plain_and_gz(void)
{
    CHECK(write_idx("set", "train", false, 3, 2, 3, 0, 0, 0) == 0);
    CHECK(write_idx("set", "train", true, 5, 2, 3, 100, 0, 0) == 0); // shadowed
    CHECK(write_idx("set", "t10k", true, 4, 3, 2, 1, 0, 0) == 0);
    tmixd_dataset *ds;
    tmixd_image img = {0};
    CHECK_OK(tmixd_dataset_open(&ds, "idx", fixture_path("set"), "train"));
    CHECK(tmixd_dataset_size(ds) == 3);
    CHECK(tmixd_dataset_classes(ds) == 5); // labels 0, 4, 2: max + 1
    CHECK(tmixd_dataset_label(ds, 0) == 0 && tmixd_dataset_label(ds, 1) == 4 &&
          tmixd_dataset_label(ds, 2) == 2);
    CHECK_OK(tmixd_dataset_read(ds, 2, 0, 0, &img));
    CHECK(img.h == 2 && img.w == 3 && img.c == 1);
    for (int p = 0; p < 6; p++)
        CHECK(img.data[p] == 20 + p);
    tmixd_dataset_close(ds);

    CHECK_OK(tmixd_dataset_open(&ds, "idx", fixture_path("set"), "test"));
    CHECK(tmixd_dataset_size(ds) == 4);
    int h, w;
    tmixd_dataset_image_size(ds, &h, &w);
    CHECK(h == 3 && w == 2);
    CHECK_OK(tmixd_dataset_read(ds, 3, 0, 0, &img));
    for (int p = 0; p < 6; p++)
        CHECK(img.data[p] == 31 + p);
    tmixd_dataset_close(ds);
    tmixd_image_free(&img);
    return 0;
}

// Opening split of the set in dir fails with code, naming `file` (relative to the fixtures).
static int expect_open_error(const char *dir, const char *split, int code, const char *file)
{
    tmixd_dataset *ds = (tmixd_dataset *)1;
    CHECK_ERR(tmixd_dataset_open(&ds, "idx", fixture_path(dir), split), code);
    CHECK(ds == NULL);
    CHECK(error_mentions(fixture_path(file)));
    return 0;
}

static int test_truncated(void)
{
    CHECK(write_idx("cut", "train", false, 3, 4, 4, 0, 0, 0) == 0);
    CHECK(fixture_truncate("cut/train-images-idx3-ubyte", 16 + 2 * 16 + 5) == 0);
    CHECK(expect_open_error("cut", "train", TMIX_EFORMAT, "cut/train-images-idx3-ubyte") == 0);
    CHECK(error_mentions("truncated"));
    CHECK(fixture_truncate("cut/train-images-idx3-ubyte", 10) == 0); // inside the header
    CHECK(expect_open_error("cut", "train", TMIX_EFORMAT, "cut/train-images-idx3-ubyte") == 0);
    return 0;
}

static int test_truncated_gz(void)
{
    CHECK(write_idx("cutgz", "t10k", true, 50, 28, 28, 0, 0, 0) == 0);
    struct stat st;
    CHECK(stat(fixture_path("cutgz/t10k-images-idx3-ubyte.gz"), &st) == 0);
    CHECK(fixture_truncate("cutgz/t10k-images-idx3-ubyte.gz", (size_t)st.st_size / 2) == 0);
    CHECK(expect_open_error("cutgz", "test", TMIX_EFORMAT, "cutgz/t10k-images-idx3-ubyte.gz") == 0);
    CHECK(error_mentions("truncated"));
    return 0;
}

static int test_trailing_data(void)
{
    CHECK(write_idx("long", "train", false, 2, 2, 2, 0, 0, 0) == 0);
    const uint8_t header[] = {0, 0, 8, 1, 0, 0, 0, 2, 0, 1, 9};
    CHECK(fixture_write("long/train-labels-idx1-ubyte", header, sizeof header) == 0);
    return expect_open_error("long", "train", TMIX_EFORMAT, "long/train-labels-idx1-ubyte");
}

static int test_wrong_magic(void)
{
    CHECK(write_idx("magic", "train", false, 2, 2, 2, 0, 0x0801, 0) == 0);
    CHECK(expect_open_error("magic", "train", TMIX_EFORMAT, "magic/train-images-idx3-ubyte") == 0);
    CHECK(error_mentions("0x00000801"));
    return 0;
}

static int test_bad_dims(void)
{
    uint8_t buf[16];
    idx_header(buf, 0x803, 3, (const uint32_t[]){2, 0, 5});
    CHECK(write_idx("dims", "train", false, 2, 2, 2, 0, 0, 0) == 0);
    CHECK(fixture_write("dims/train-images-idx3-ubyte", buf, sizeof buf) == 0);
    return expect_open_error("dims", "train", TMIX_EFORMAT, "dims/train-images-idx3-ubyte");
}

static int test_count_mismatch(void)
{
    CHECK(write_idx("count", "train", true, 3, 2, 2, 0, 0, 2) == 0);
    CHECK(expect_open_error("count", "train", TMIX_EFORMAT, "count/train-labels-idx1-ubyte.gz") ==
          0);
    CHECK(error_mentions(fixture_path("count/train-images-idx3-ubyte.gz")));
    return 0;
}

static int test_missing_file(void)
{
    CHECK(write_idx("missing", "train", false, 2, 2, 2, 0, 0, 0) == 0);
    CHECK(expect_open_error("missing", "test", TMIX_ENOENT, "missing/t10k-images-idx3-ubyte") == 0);
    CHECK(unlink(fixture_path("missing/train-labels-idx1-ubyte")) == 0);
    return expect_open_error("missing", "train", TMIX_ENOENT, "missing/train-labels-idx1-ubyte.gz");
}

static int test_bad_arguments(void)
{
    tmixd_dataset *ds;
    CHECK_ERR(tmixd_dataset_open(&ds, "idx", "/nonexistent", "validation"), TMIX_EINVAL);
    CHECK(error_mentions("validation"));
    CHECK_ERR(tmixd_dataset_open(&ds, "tfrecord", "/nonexistent", "train"), TMIX_EINVAL);
    CHECK(error_mentions("tfrecord"));
    CHECK_ERR(tmixd_dataset_open(&ds, "idx", "/nonexistent", "train"), TMIX_ENOENT);
    CHECK(error_mentions("/nonexistent/train-images-idx3-ubyte"));
    return 0;
}

static const test_case tests[] = {
    {"idx.fashion_mnist_train", test_fashion_mnist_train},
    {"idx.fashion_mnist_test", test_fashion_mnist_test},
    {"idx.plain_and_gz", test_plain_and_gz},
    {"idx.truncated", test_truncated},
    {"idx.truncated_gz", test_truncated_gz},
    {"idx.trailing_data", test_trailing_data},
    {"idx.wrong_magic", test_wrong_magic},
    {"idx.bad_dims", test_bad_dims},
    {"idx.count_mismatch", test_count_mismatch},
    {"idx.missing_file", test_missing_file},
    {"dataset.bad_arguments", test_bad_arguments},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return fixture_test_main(argc, argv, tests);
}
