// What the fuzz targets share: the readers take paths, so each input is written to files in
// a directory of the process's own (in /dev/shm when there is one, as fast as memory).
#ifndef TMIX_FUZZ_SCRATCH_H
#define TMIX_FUZZ_SCRATCH_H

#include <stddef.h>
#include <stdint.h>

// The process's scratch directory, made on first use ("/dev/shm/tmix-fuzz-PID").
const char *fuzz_dir(void);

// Writes data[size] to fuzz_dir()/name (replacing it) and returns the path (static storage,
// one per name slot: slot 0..3).
const char *fuzz_file(int slot, const char *name, const uint8_t *data, size_t size);

// Opens the data set of `format` in fuzz_dir() (split train) and reads every sample, up to
// 64, and its label; failures are expected, crashes are not.
void fuzz_read_dataset(const char *format);

#endif
