// The cifar reader: the binary versions of CIFAR-10 (data_batch_1..5.bin, test_batch.bin;
// records of 1 label byte + 3072 pixel bytes) and CIFAR-100 (train.bin, test.bin; records
// of a coarse and a fine label byte + 3072 pixel bytes). Pixels are stored per record as
// three 32x32 planes (CHW); they are loaded into memory as HWC.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset_impl.h"
#include "error.h"

enum { CIFAR_SIDE = 32, CIFAR_PIXELS = 3 * 32 * 32, CIFAR_MAX_FILES = 5 };

typedef struct {
    const char *name;
    int label_bytes; // the label used is the last of these (CIFAR-100: the fine one)
    int classes;
    const char *train[CIFAR_MAX_FILES + 1], *test[2]; // NULL-terminated
} cifar_variant;

static const cifar_variant variants[] = {
    // clang-format off
    {"CIFAR-10", 1, 10,
     {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
      "data_batch_5.bin", NULL},
     {"test_batch.bin", NULL}},
    {"CIFAR-100", 2, 100, {"train.bin", NULL}, {"test.bin", NULL}},
    // clang-format on
};

static bool exists_in(const char *dir, const char *name)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

// The variant whose first train or test file is in dir, or NULL.
static const cifar_variant *detect(const char *dir)
{
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++)
        if (exists_in(dir, variants[v].train[0]) || exists_in(dir, variants[v].test[0]))
            return &variants[v];
    return NULL;
}

// The record count of each file (NULL-terminated names) into counts; all must exist, be
// whole records and hold at least one.
static int count_records(const char *dir, const char *const *names, size_t record, int64_t *counts)
{
    for (int f = 0; names[f]; f++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[f]);
        if (stat(path, &st) != 0)
            return tmix_fail(errno == ENOENT ? TMIX_ENOENT : TMIX_EIO, "cifar: %s: %s", path,
                             strerror(errno));
        if (st.st_size == 0 || (size_t)st.st_size % record != 0)
            return tmix_fail(TMIX_EFORMAT,
                             "cifar: %s holds %lld bytes, not a whole number of %zu-byte records",
                             path, (long long)st.st_size, record);
        counts[f] = (int64_t)((size_t)st.st_size / record);
    }
    return 0;
}

// Reads count records of one file into ds from sample `first` on, checking every label.
static int read_records(tmixd_dataset *ds, const cifar_variant *v, const char *path, int64_t first,
                        int64_t count)
{
    const size_t record = (size_t)v->label_bytes + CIFAR_PIXELS;
    uint8_t buf[2 + CIFAR_PIXELS];
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return tmix_fail(TMIX_EIO, "cifar: cannot open %s: %s", path, strerror(errno));
    for (int64_t r = 0; r < count; r++) {
        if (fread(buf, 1, record, fp) != record) {
            fclose(fp);
            return tmix_fail(TMIX_EIO, "cifar: %s: cannot read record %lld of %lld", path,
                             (long long)r, (long long)count);
        }
        const int label = buf[v->label_bytes - 1];
        if (label >= v->classes) {
            fclose(fp);
            return tmix_fail(TMIX_EFORMAT, "cifar: %s: record %lld has label %d (%s has %d)", path,
                             (long long)r, label, v->name, v->classes);
        }
        ds->labels[first + r] = label;
        const uint8_t *chw = buf + v->label_bytes;
        uint8_t *hwc = ds->pixels + (size_t)(first + r) * CIFAR_PIXELS;
        for (int p = 0; p < CIFAR_SIDE * CIFAR_SIDE; p++)
            for (int c = 0; c < 3; c++)
                hwc[3 * p + c] = chw[c * CIFAR_SIDE * CIFAR_SIDE + p];
    }
    fclose(fp);
    return 0;
}

int tmixd_cifar_load(tmixd_dataset *ds, const char *path, bool train)
{
    if (strlen(path) > 4000) // file names are built in 4096-byte buffers
        return tmix_fail(TMIX_EINVAL, "cifar: path of %zu bytes is too long", strlen(path));
    const cifar_variant *v = detect(path);
    if (!v)
        return tmix_fail(TMIX_ENOENT,
                         "cifar: %s holds neither CIFAR-10 binary batches (data_batch_1.bin, "
                         "test_batch.bin) nor CIFAR-100 ones (train.bin, test.bin)",
                         path);
    const char *const *names = train ? v->train : v->test;
    const size_t record = (size_t)v->label_bytes + CIFAR_PIXELS;
    int64_t counts[CIFAR_MAX_FILES] = {0};
    TMIX_TRY(count_records(path, names, record, counts));
    for (int f = 0; names[f]; f++)
        ds->n += counts[f];
    ds->h = ds->w = CIFAR_SIDE;
    ds->channels = 3;
    ds->pixels = malloc((size_t)ds->n * CIFAR_PIXELS);
    ds->labels = malloc((size_t)ds->n * sizeof *ds->labels);
    if (!ds->pixels || !ds->labels)
        return tmix_fail(TMIX_ENOMEM, "cifar: cannot allocate %lld images of %s", (long long)ds->n,
                         path);
    int64_t first = 0;
    for (int f = 0; names[f]; f++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, names[f]);
        TMIX_TRY(read_records(ds, v, file, first, counts[f]));
        first += counts[f];
    }
    return tmixd_number_classes(ds, v->classes);
}
