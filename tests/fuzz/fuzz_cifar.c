// The CIFAR reader: the input is a CIFAR-100 train.bin (with an empty test.bin beside it);
// the data set is opened and every sample (up to 64) read.
#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file(0, "train.bin", data, size);
    fuzz_file(1, "test.bin", data, 0);
    fuzz_read_dataset("cifar");
    return 0;
}
