// JPEG and PNG files through tmixd_decode_file (the format from the first bytes), at full
// size and with a DCT downscale: any input decodes or fails with an error, never crashes.
#include "decode.h"
#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tmixd_decoder *d;
    if (!d)
        d = tmixd_decoder_new();
    const char *path = fuzz_file(0, "image", data, size);
    tmixd_image img = {0};
    if (tmixd_decode_file(d, path, 0, 0, 0, &img) == 0)
        (void)tmixd_decode_file(d, path, 0, 8, 8, &img);
    tmixd_image_free(&img);
    return 0;
}
