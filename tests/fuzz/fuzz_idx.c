// The IDX reader: the input is cut at its first byte's position into an images file and a
// labels file (train-*); the data set is opened and every sample (up to 64) read.
#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const size_t cut = 1 + (size_t)data[0] * size / 256;
    const size_t images = cut <= size ? cut - 1 : size - 1;
    fuzz_file(0, "train-images-idx3-ubyte", data + 1, images);
    fuzz_file(1, "train-labels-idx1-ubyte", data + 1 + images, size - 1 - images);
    fuzz_read_dataset("idx");
    return 0;
}
