// JPEG and PNG decoding into 8-bit RGB; see decode.h.
#include "decode.h"

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h> // after stdio.h, which it needs

#include "error.h"

// libjpeg's error manager, with where its errors jump back to and their text.
typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_failure;

struct tmixd_decoder {
    struct jpeg_decompress_struct jpeg; // reused: aborted after each file
    jpeg_failure failure;
    struct jpeg_progress_mgr progress;
    uint8_t *file; // the bytes of the file being decoded
    size_t file_cap;
    png_bytep *rows; // row pointers into the image libpng writes
    size_t rows_cap;
    uint8_t *cmyk; // a CMYK JPEG's row before conversion to RGB
    size_t cmyk_cap;
    // libpng's reader state and error text live here, not in locals of the function that
    // calls setjmp, so they stay valid after its longjmp.
    const uint8_t *png_at;
    size_t png_left;
    char png_error[200];
};

static void jpeg_on_error(j_common_ptr c)
{
    jpeg_failure *f = (jpeg_failure *)c->err;
    c->err->format_message(c, f->message);
    longjmp(f->jump, 1);
}

// A warning (a truncated file's premature end, corrupt data) fails the decode too: libjpeg
// would go on with made-up pixels. Levels >= 0 are traces.
static void jpeg_on_message(j_common_ptr c, int level)
{
    if (level < 0)
        jpeg_on_error(c);
}

// Progressive files with absurd scan counts take minutes to decode; TurboJPEG's limit.
enum { MAX_SCANS = 500 };
static void jpeg_on_progress(j_common_ptr c)
{
    if (c->is_decompressor && ((j_decompress_ptr)c)->input_scan_number > MAX_SCANS) {
        jpeg_failure *f = (jpeg_failure *)c->err;
        snprintf(f->message, sizeof f->message, "a progressive JPEG of more than %d scans",
                 MAX_SCANS);
        longjmp(f->jump, 1);
    }
}

// Sets up d's decompressor: false when libjpeg ran out of memory.
static bool jpeg_init(tmixd_decoder *d)
{
    d->jpeg.err = jpeg_std_error(&d->failure.mgr);
    d->failure.mgr.error_exit = jpeg_on_error;
    d->failure.mgr.emit_message = jpeg_on_message;
    if (setjmp(d->failure.jump)) {
        jpeg_destroy_decompress(&d->jpeg);
        return false;
    }
    jpeg_create_decompress(&d->jpeg);
    d->progress.progress_monitor = jpeg_on_progress;
    d->jpeg.progress = &d->progress;
    return true;
}

tmixd_decoder *tmixd_decoder_new(void)
{
    tmixd_decoder *d = calloc(1, sizeof *d);
    if (d && !jpeg_init(d)) {
        free(d);
        return NULL;
    }
    return d;
}

void tmixd_decoder_free(tmixd_decoder *d)
{
    if (!d)
        return;
    jpeg_destroy_decompress(&d->jpeg);
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

// Edge x of [0, n] at scale 1/s: n to the scaled image's edge, others to the nearest pixel.
static int scale_edge(int x, int n, int s)
{
    return x == n ? (n + s - 1) / s : (x + s / 2) / s;
}

int tmixd_jpeg_scale(int h, int w, tmixd_crop_box b, int min_h, int min_w,
                     tmixd_crop_box *scaled)
{
    *scaled = b;
    if (min_h <= 0 || min_w <= 0 || b.top < 0 || b.left < 0 || b.h > h - b.top ||
        b.w > w - b.left)
        return 1;
    for (int s = 8; s >= 2; s /= 2) {
        const int top = scale_edge(b.top, h, s), left = scale_edge(b.left, w, s);
        const int bottom = scale_edge(b.top + b.h, h, s), right = scale_edge(b.left + b.w, w, s);
        if (bottom - top >= min_h && right - left >= min_w) {
            *scaled = (tmixd_crop_box){top, left, bottom - top, right - left};
            return s;
        }
    }
    return 1;
}

// Pixels decoded around a window, so that libjpeg's smoothing of subsampled chroma at the
// part's edges reads the same neighbours as in the whole image: the window's pixels are then
// exactly those of a whole decode.
enum { WINDOW_MARGIN = 2 };

// The part [lo, hi) of [0, n) that covers [start, start + len) and WINDOW_MARGIN around it.
static void window_span(int start, int len, int n, int *lo, int *hi)
{
    const int64_t a = (int64_t)start - WINDOW_MARGIN, b = (int64_t)start + len + WINDOW_MARGIN;
    *lo = a < 0 ? 0 : a > n ? n : (int)a;
    *hi = b < 0 ? 0 : b > n ? n : (int)b;
}

// Whether the file has an end-of-image marker after the first scan's data begins: a decode
// that stops at its window's last row (and so does not read the rest) still refuses a
// truncated file. Bytes after the marker are allowed, as libjpeg allows them.
static bool has_end_marker(const uint8_t *file, size_t size, size_t scan_start)
{
    for (size_t k = size; k >= scan_start + 2; k--)
        if (file[k - 2] == 0xff && file[k - 1] == 0xd9)
            return true;
    return false;
}

// A window function's failure (the image cannot be cut as asked), named like the others.
static int window_refused(int rc, const char *path, int64_t sample)
{
    char why[256];
    snprintf(why, sizeof why, "%s", tmix_last_error());
    return tmix_fail(rc, "%s (sample %lld): %s", path, (long long)sample, why);
}

// Decodes d->file (size bytes) into img: at the DCT scale for min_h x min_w, and with a
// window function only the rows and columns the window needs. CMYK and YCCK come out as CMYK
// and are converted as Adobe stores them (inverted): R = C K / 255, as PIL converts them.
// Every return after setjmp aborts the decompression, so that the reused decompressor is
// ready for the next file; the error path reads only d and what libjpeg kept.
static int decode_jpeg(tmixd_decoder *d, const char *path, int64_t sample, size_t size, int min_h,
                       int min_w, tmixd_window_fn window, void *ctx, tmixd_image *img)
{
    struct jpeg_decompress_struct *j = &d->jpeg;
    if (setjmp(d->failure.jump)) {
        jpeg_abort_decompress(j);
        return tmix_fail(TMIX_EFORMAT, "%s (sample %lld): corrupt JPEG: %s", path,
                         (long long)sample, d->failure.message);
    }
    jpeg_mem_src(j, d->file, (unsigned long)size);
    jpeg_read_header(j, TRUE);
    const int h = (int)j->image_height, w = (int)j->image_width;
    int rc = 0;
    if ((int64_t)w * h > TMIXD_DECODE_MAX_PIXELS)
        rc = tmix_fail(TMIX_EFORMAT, "%s (sample %lld): JPEG of %dx%d has more than %lld pixels",
                       path, (long long)sample, w, h, (long long)TMIXD_DECODE_MAX_PIXELS);
    const bool cmyk = j->jpeg_color_space == JCS_CMYK || j->jpeg_color_space == JCS_YCCK;
    j->out_color_space = cmyk ? JCS_CMYK : JCS_RGB; // grayscale expanded by libjpeg
    tmixd_crop_box b = {0, 0, h, w}, sb = b; // the window, at full size and scaled
    if (rc == 0 && window && (rc = window(ctx, h, w, &b)) < 0)
        rc = window_refused(rc, path, sample);
    j->scale_num = 1;
    j->scale_denom = rc == 0 ? (unsigned)tmixd_jpeg_scale(h, w, b, min_h, min_w, &sb) : 1;
    if (rc == 0)
        jpeg_calc_output_dimensions(j);
    const int sh = (int)j->output_height, sw = (int)j->output_width;
    int top = 0, bottom = sh, left = 0, right = sw;
    if (window) {
        window_span(sb.top, sb.h, sh, &top, &bottom);
        window_span(sb.left, sb.w, sw, &left, &right);
        if (top == bottom || left == right) { // a padded crop wholly outside: any pixel will do
            top = left = 0;
            bottom = right = 1;
        }
    }
    if (rc < 0) {
        jpeg_abort_decompress(j);
        return rc;
    }
    jpeg_start_decompress(j);
    JDIMENSION x = (JDIMENSION)left, width = (JDIMENSION)(right - left);
    if (width < (JDIMENSION)sw)
        jpeg_crop_scanline(j, &x, &width); // x down to an iMCU's edge, width up to cover it
    if (bottom < sh && !jpeg_input_complete(j) &&
        !has_end_marker(d->file, size, size - j->src->bytes_in_buffer)) {
        snprintf(d->failure.message, sizeof d->failure.message,
                 "no end-of-image marker: the file is truncated");
        longjmp(d->failure.jump, 1);
    }
    if ((rc = tmixd_image_reserve(img, bottom - top, (int)width, 3)) == 0 && cmyk &&
        (size_t)width * 4 > d->cmyk_cap) {
        uint8_t *p = realloc(d->cmyk, (size_t)width * 4);
        if (p) {
            d->cmyk = p;
            d->cmyk_cap = (size_t)width * 4;
        } else {
            rc = tmix_fail(TMIX_ENOMEM, "%s (sample %lld): out of memory", path,
                           (long long)sample);
        }
    }
    if (rc < 0) {
        jpeg_abort_decompress(j);
        return rc;
    }
    img->top = top;
    img->left = (int)x;
    img->window = sb;
    if (top > 0)
        jpeg_skip_scanlines(j, (JDIMENSION)top);
    for (int y = 0; y < bottom - top; y++) {
        uint8_t *out = img->data + (size_t)y * width * 3;
        JSAMPROW row = cmyk ? d->cmyk : out;
        jpeg_read_scanlines(j, &row, 1);
        for (JDIMENSION k = 0; cmyk && k < width; k++) {
            const unsigned key = d->cmyk[4 * k + 3];
            for (int c = 0; c < 3; c++)
                out[3 * k + c] = (uint8_t)((d->cmyk[4 * k + c] * key + 127) / 255);
        }
    }
    if (bottom == sh)
        jpeg_finish_decompress(j); // reads to the end: a file cut after the pixels fails too
    else
        jpeg_abort_decompress(j);
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
                      tmixd_window_fn window, void *ctx, tmixd_image *img)
{
    size_t size = 0;
    TMIX_TRY(read_file(d, path, sample, &size));
    static const uint8_t jpeg_magic[3] = {0xff, 0xd8, 0xff};
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= sizeof jpeg_magic && memcmp(d->file, jpeg_magic, sizeof jpeg_magic) == 0)
        return decode_jpeg(d, path, sample, size, min_h, min_w, window, ctx, img);
    if (size >= sizeof png_magic && memcmp(d->file, png_magic, sizeof png_magic) == 0) {
        TMIX_TRY(decode_png(d, path, sample, size, img));
        // The whole image is decoded: the window only has to be chosen.
        const int rc = window ? window(ctx, img->h, img->w, &img->window) : 0;
        return rc < 0 ? window_refused(rc, path, sample) : 0;
    }
    return tmix_fail(TMIX_EFORMAT, "%s (sample %lld): not a JPEG or PNG file (%zu bytes)", path,
                     (long long)sample, size);
}
