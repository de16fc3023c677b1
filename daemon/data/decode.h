// Decoding one image file (JPEG through libjpeg-turbo, PNG through libpng) into 8-bit RGB.
// A decoder holds the reusable state of one thread (a libjpeg decompressor and buffers); it
// is not thread-safe, so each decode thread takes its own.
#ifndef TMIXD_DECODE_H
#define TMIXD_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

// Images above this many pixels are refused (a decompression bomb, or a mistake).
#define TMIXD_DECODE_MAX_PIXELS ((int64_t)1 << 26)
// Files above this many bytes are refused.
#define TMIXD_DECODE_MAX_FILE ((size_t)256 << 20)

typedef struct tmixd_decoder tmixd_decoder;

// A new decoder, or NULL when out of memory.
tmixd_decoder *tmixd_decoder_new(void);
void tmixd_decoder_free(tmixd_decoder *d);

// Reads the file at path and decodes it into img (h x w x 3). The format comes from the
// file's first bytes, not its name. min_h, min_w: see tmixd_jpeg_scaled_size. With a window
// function (NULL: the whole image), a JPEG is decoded only over the window it chooses and
// WINDOW_MARGIN pixels around it (img->top, img->left place that part; its pixels are those
// of a whole decode), and below the part the file is not read, but checked for its end
// marker. Failures (TMIX_EIO unreadable, TMIX_EFORMAT truncated / corrupt / not a JPEG or
// PNG / too large, or the window function's) name path and `sample`, the data set index.
int tmixd_decode_file(tmixd_decoder *d, const char *path, int64_t sample, int min_h, int min_w,
                      tmixd_window_fn window, void *ctx, tmixd_image *img);

// The size a JPEG of h x w is decoded at for a caller that crops to min_h x min_w: the
// smallest of the DCT scales 1/2, 1/4, 1/8 (sides rounded up, as libjpeg does) whose
// result is still >= min_h x min_w, else full size; full size too when min_h or min_w <= 0.
void tmixd_jpeg_scaled_size(int h, int w, int min_h, int min_w, int *out_h, int *out_w);

#endif
