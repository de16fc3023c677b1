// JPEG and PNG files through tmixd_decode_file (the format from the first bytes), at full
// size, with a DCT downscale, and over a window (a JPEG's crop and skip): any input decodes
// or fails with an error, never crashes.
#include "decode.h"
#include "scratch.h"

// The middle of the image, a quarter of each side, the window a crop might take.
static int middle(void *ctx, int h, int w, tmixd_crop_box *window)
{
    (void)ctx;
    *window = (tmixd_crop_box){h / 3, w / 3, h / 4 + 1, w / 4 + 1};
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tmixd_decoder *d;
    if (!d)
        d = tmixd_decoder_new();
    const char *path = fuzz_file(0, "image", data, size);
    tmixd_image img = {0};
    if (tmixd_decode_file(d, path, 0, 0, 0, NULL, NULL, &img) == 0)
        (void)tmixd_decode_file(d, path, 0, 8, 8, NULL, NULL, &img);
    (void)tmixd_decode_file(d, path, 0, 4, 4, middle, NULL, &img);
    tmixd_image_free(&img);
    return 0;
}
