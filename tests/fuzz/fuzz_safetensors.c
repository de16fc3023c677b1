// The safetensors reader: open, every tensor read as float32 (when small enough to hold),
// the metadata looked up.
#include <stdlib.h>

#include "safetensors.h"
#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tmix_safetensors *st;
    if (tmix_safetensors_open(&st, fuzz_file(0, "x.safetensors", data, size)) < 0)
        return 0;
    for (int i = 0; i < tmix_safetensors_count(st); i++) {
        const tmix_st_tensor *t = tmix_safetensors_at(st, i);
        const int64_t n = tmix_st_numel(t);
        if (n < 0 || n > (1 << 20))
            continue;
        float *dst = malloc((size_t)(n ? n : 1) * sizeof *dst);
        if (dst)
            (void)tmix_st_read_f32(st, t, dst);
        free(dst);
    }
    (void)tmix_safetensors_meta(st, "arch");
    (void)tmix_safetensors_find(st, "fc.weight");
    tmix_safetensors_close(st);
    return 0;
}
