// JPEG files in memory for the tests and make_imagefolder, written with libjpeg (the library
// tmixd decodes with).
#ifndef TMIX_TEST_DATA_JPEG_WRITE_H
#define TMIX_TEST_DATA_JPEG_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// The pixels given: packed RGB, one gray byte, or CMYK (stored as Adobe does: YCCK, inverted).
typedef enum { JPEG_RGB, JPEG_GRAY, JPEG_CMYK } jpeg_pixels;

// Chroma subsampling, as horizontal x vertical factors of the first component.
typedef enum { JPEG_444, JPEG_422, JPEG_420, JPEG_440 } jpeg_subsampling;

typedef struct {
    int quality; // 1..100
    jpeg_subsampling subsampling;
    bool progressive;
} jpeg_options;

// Compresses h x w pixels into *out (*size bytes, to be freed with free()). 0 on success, or
// -1 with libjpeg's message in err[err_size].
int jpeg_write(const uint8_t *pixels, int h, int w, jpeg_pixels kind, const jpeg_options *o,
               unsigned char **out, unsigned long *size, char *err, size_t err_size);

#endif
