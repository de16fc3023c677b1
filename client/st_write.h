// A minimal safetensors writer for tmixctl pull --out (tmixctl does not link tmix's core,
// whose writer works on its tensors): an 8-byte little-endian header length, the JSON header
// padded with spaces to a multiple of 8, then the tensors back to back.
#ifndef TMIXCTL_ST_WRITE_H
#define TMIXCTL_ST_WRITE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;
    const char *dtype; // "F32", "F16", "U8", "I64"
    int ndim;          // 1 to 4
    int64_t shape[4];
    const void *data; // product(shape) elements of dtype
} st_tensor;

// Writes tensors[count] and the string pairs meta[0..2k) (key, value; NULL-ended, may be
// NULL) as __metadata__ to path.tmp, syncs it and renames it onto path. The data are laid
// out by decreasing element size, so every tensor starts aligned to its element. Returns 0,
// or -1 with a sentence naming the file in err[errlen].
int st_write(const char *path, const st_tensor *tensors, int count, const char *const *meta,
             char *err, size_t errlen);

#endif
