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
// file's first bytes, not its name. min_h, min_w: the size the caller resizes the window to
// (tmixd_jpeg_scale). With a window function (NULL: the whole image is the window), a JPEG is
// decoded only over the window it chooses and WINDOW_MARGIN pixels around it (img->top,
// img->left place that part; its pixels are those of a whole decode at the same scale), and
// below the part the file is not read, but checked for its end marker. img->window is the
// window in img's coordinates. Failures (TMIX_EIO unreadable, TMIX_EFORMAT truncated /
// corrupt / not a JPEG or PNG / too large, or the window function's) name path and
// `sample`, the data set index.
int tmixd_decode_file(tmixd_decoder *d, const char *path, int64_t sample, int min_h, int min_w,
                      tmixd_window_fn window, void *ctx, tmixd_image *img);

// The DCT scale 1/s (s = 1, 2, 4 or 8) a JPEG of h x w is decoded at for a caller that
// resizes `window` of it to min_h x min_w: the largest s whose scaled window, *scaled, still
// measures >= min_h x min_w, so that a crop is never enlarged where the full image would
// have shrunk it; 1 when min_h or min_w <= 0 or the window leaves the image. The scaled
// window's edges round to the nearest pixel; the image's own far edges go to the scaled
// image's, whose sides libjpeg rounds up (ceil(h / s) x ceil(w / s)).
int tmixd_jpeg_scale(int h, int w, tmixd_crop_box window, int min_h, int min_w,
                     tmixd_crop_box *scaled);

#endif
