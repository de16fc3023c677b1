// The CIFAR reader: the input is a CIFAR-100 train.bin (with an empty test.bin beside it);
// the data set is opened and every sample (up to 64) read.
#include "dataset.h"
#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file(0, "train.bin", data, size);
    fuzz_file(1, "test.bin", data, 0);
    tmixd_dataset *ds;
    if (tmixd_dataset_open(&ds, "cifar", fuzz_dir(), "train") == 0) {
        tmixd_image img = {0};
        const int64_t n = tmixd_dataset_size(ds);
        for (int64_t i = 0; i < n && i < 64; i++) {
            (void)tmixd_dataset_label(ds, i);
            (void)tmixd_dataset_read(ds, i, 0, 0, &img);
        }
        tmixd_image_free(&img);
        tmixd_dataset_close(ds);
    }
    return 0;
}
