// JPEG and PNG decoding into 8-bit RGB; see decode.h.
#include "decode.h"

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "error.h"

struct tmixd_decoder {
    tjhandle tj;
    uint8_t *file; // the bytes of the file being decoded
    size_t file_cap;
    png_bytep *rows; // row pointers into the image libpng writes
    size_t rows_cap;
    uint8_t *cmyk; // a CMYK JPEG's pixels before conversion to RGB
    size_t cmyk_cap;
    // libpng's reader state and error text live here, not in locals of the function that
    // calls setjmp, so they stay valid after its longjmp.
    const uint8_t *png_at;
    size_t png_left;
    char png_error[200];
};

tmixd_decoder *tmixd_decoder_new(void)
{
    tmixd_decoder *d = calloc(1, sizeof *d);
    if (d && !(d->tj = tjInitDecompress())) {
        free(d);
        return NULL;
    }
    return d;
}

void tmixd_decoder_free(tmixd_decoder *d)
{
    if (!d)
        return;
    tjDestroy(d->tj);
    free(d->file);
    free(d->rows);
    free(d->cmyk);
    free(d);
}

// Reads the whole file into d->file; *size gets its length.
static int read_file(tmixd_decoder *d, const char *path, int64_t sample, size_t *size)
{
    const int fd = open(path, O_RDONLY);
    if (fd < 0)
        return tmix_fail(TMIX_EIO, "%s (sample %lld): cannot open: %s", path, (long long)sample,
                         strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = tmix_fail(TMIX_EIO, "%s (sample %lld): not a readable regular file", path,
                       (long long)sample);
    else if ((size_t)st.st_size > TMIXD_DECODE_MAX_FILE)
        rc = tmix_fail(TMIX_EFORMAT, "%s (sample %lld): %lld bytes, above the %zu-byte limit", path,
                       (long long)sample, (long long)st.st_size, TMIXD_DECODE_MAX_FILE);
    else if ((size_t)st.st_size > d->file_cap) {
        uint8_t *p = realloc(d->file, (size_t)st.st_size);
        if (p) {
            d->file = p;
            d->file_cap = (size_t)st.st_size;
        } else {
            rc = tmix_fail(TMIX_ENOMEM, "%s (sample %lld): cannot allocate %lld bytes", path,
                           (long long)sample, (long long)st.st_size);
        }
    }
    size_t got = 0;
    while (rc == 0 && got < (size_t)st.st_size) {
        const ssize_t r = read(fd, d->file + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = tmix_fail(TMIX_EIO, "%s (sample %lld): read %zu of %lld bytes: %s", path,
                           (long long)sample, got, (long long)st.st_size,
                           r < 0 ? strerror(errno) : "the file shrank");
        else
            got += (size_t)r;
    }
    close(fd);
    *size = got;
    return rc;
}

void tmixd_jpeg_scaled_size(int h, int w, int min_h, int min_w, int *out_h, int *out_w)
{
    *out_h = h;
    *out_w = w;
    if (min_h <= 0 || min_w <= 0)
        return;
    for (int denom = 8; denom >= 2; denom /= 2) {
        const tjscalingfactor sf = {1, denom};
        if (TJSCALED(h, sf) >= min_h && TJSCALED(w, sf) >= min_w) {
            *out_h = TJSCALED(h, sf);
            *out_w = TJSCALED(w, sf);
            return;
        }
    }
}

// A truncated file decodes with only a warning ("premature end of data"); TurboJPEG fails
// the call on warnings too, and STOPONWARNING makes it fail at once. LIMITSCANS refuses
// progressive files with absurd scan counts, which take minutes to decode.
enum { JPEG_FLAGS = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS };

// TurboJPEG 2.1 cannot convert CMYK to RGB, so a CMYK (or YCCK) JPEG is decoded as CMYK and
// converted here. Such files come from Adobe software, which stores the values inverted:
// R = C K / 255 on the stored values, as PIL converts them.
static int decode_cmyk(tmixd_decoder *d, const char *path, int64_t sample, size_t size,
                       tmixd_image *img)
{
    const size_t pixels = (size_t)img->h * img->w;
    if (pixels * 4 > d->cmyk_cap) {
        uint8_t *p = realloc(d->cmyk, pixels * 4);
        if (!p)
            return tmix_fail(TMIX_ENOMEM, "%s (sample %lld): out of memory", path,
                             (long long)sample);
        d->cmyk = p;
        d->cmyk_cap = pixels * 4;
    }
    if (tjDecompress2(d->tj, d->file, size, d->cmyk, img->w, 0, img->h, TJPF_CMYK, JPEG_FLAGS) != 0)
        return tmix_fail(TMIX_EFORMAT, "%s (sample %lld): corrupt CMYK JPEG: %s", path,
                         (long long)sample, tjGetErrorStr2(d->tj));
    for (size_t k = 0; k < pixels; k++) {
        const unsigned key = d->cmyk[4 * k + 3];
        for (int c = 0; c < 3; c++)
            img->data[3 * k + c] = (uint8_t)((d->cmyk[4 * k + c] * key + 127) / 255);
    }
    return 0;
}

static int decode_jpeg(tmixd_decoder *d, const char *path, int64_t sample, size_t size, int min_h,
                       int min_w, tmixd_image *img)
{
    int w, h, subsamp, colorspace;
    if (tjDecompressHeader3(d->tj, d->file, size, &w, &h, &subsamp, &colorspace) != 0)
        return tmix_fail(TMIX_EFORMAT, "%s (sample %lld): bad JPEG header: %s", path,
                         (long long)sample, tjGetErrorStr2(d->tj));
    // A header cut short reads "successfully" with no frame, hence no size.
    if (w <= 0 || h <= 0)
        return tmix_fail(TMIX_EFORMAT,
                         "%s (sample %lld): JPEG header without an image size (truncated?)", path,
                         (long long)sample);
    if ((int64_t)w * h > TMIXD_DECODE_MAX_PIXELS)
        return tmix_fail(TMIX_EFORMAT, "%s (sample %lld): JPEG of %dx%d has more than %lld pixels",
                         path, (long long)sample, w, h, (long long)TMIXD_DECODE_MAX_PIXELS);
    int sh, sw;
    tmixd_jpeg_scaled_size(h, w, min_h, min_w, &sh, &sw);
    TMIX_TRY(tmixd_image_reserve(img, sh, sw, 3));
    if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK)
        return decode_cmyk(d, path, sample, size, img);
    if (tjDecompress2(d->tj, d->file, size, img->data, sw, 0, sh, TJPF_RGB, JPEG_FLAGS) != 0)
        return tmix_fail(TMIX_EFORMAT, "%s (sample %lld): corrupt JPEG: %s", path,
                         (long long)sample, tjGetErrorStr2(d->tj));
    return 0;
}

static void png_read_memory(png_structp png, png_bytep out, size_t n)
{
    tmixd_decoder *d = png_get_io_ptr(png);
    if (n > d->png_left)
        png_error(png, "the file is truncated");
    memcpy(out, d->png_at, n);
    d->png_at += n;
    d->png_left -= n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    tmixd_decoder *d = png_get_error_ptr(png);
    snprintf(d->png_error, sizeof d->png_error, "%s", msg);
    png_longjmp(png, 1);
}

// Warnings (an odd colour profile, say) leave a usable image; say nothing.
static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

// Decodes the PNG in d->file; libpng reports errors by longjmp back here, so everything the
// error path needs is either set before setjmp or reached through d.
static int decode_png(tmixd_decoder *d, const char *path, int64_t sample, size_t size,
                      tmixd_image *img)
{
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, d, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return tmix_fail(TMIX_ENOMEM, "%s (sample %lld): out of memory", path, (long long)sample);
    }
    d->png_at = d->file;
    d->png_left = size;
    d->png_error[0] = '\0';
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        if (!d->png_error[0]) // a failed allocation of ours, already reported
            return TMIX_ENOMEM;
        return tmix_fail(TMIX_EFORMAT, "%s (sample %lld): bad PNG: %s", path, (long long)sample,
                         d->png_error);
    }
    png_set_read_fn(png, d, png_read_memory);
    png_read_info(png, info);
    const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if ((int64_t)w * h > TMIXD_DECODE_MAX_PIXELS)
        png_error(png, "too many pixels");
    // Whatever the colour type and depth: 8-bit RGB, alpha dropped (as PIL's convert("RGB")).
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_strip_alpha(png);
    png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3)
        png_error(png, "unexpected row layout after conversion to RGB");
    if (tmixd_image_reserve(img, (int)h, (int)w, 3) < 0)
        png_longjmp(png, 1);
    if (h > d->rows_cap) {
        png_bytep *rows = realloc(d->rows, h * sizeof *rows);
        if (!rows) {
            tmix_fail(TMIX_ENOMEM, "%s (sample %lld): out of memory", path, (long long)sample);
            png_longjmp(png, 1);
        }
        d->rows = rows;
        d->rows_cap = h;
    }
    for (png_uint_32 y = 0; y < h; y++)
        d->rows[y] = img->data + (size_t)y * w * 3;
    png_read_image(png, d->rows);
    png_read_end(png, NULL); // reads to IEND, so a file cut after the pixels is caught too
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

int tmixd_decode_file(tmixd_decoder *d, const char *path, int64_t sample, int min_h, int min_w,
                      tmixd_image *img)
{
    size_t size = 0;
    TMIX_TRY(read_file(d, path, sample, &size));
    static const uint8_t jpeg_magic[3] = {0xff, 0xd8, 0xff};
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= sizeof jpeg_magic && memcmp(d->file, jpeg_magic, sizeof jpeg_magic) == 0)
        return decode_jpeg(d, path, sample, size, min_h, min_w, img);
    if (size >= sizeof png_magic && memcmp(d->file, png_magic, sizeof png_magic) == 0)
        return decode_png(d, path, sample, size, img);
    return tmix_fail(TMIX_EFORMAT, "%s (sample %lld): not a JPEG or PNG file (%zu bytes)", path,
                     (long long)sample, size);
}
