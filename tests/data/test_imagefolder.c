// The imagefolder reader on folders of JPEG and PNG files written here (libjpeg, libpng):
// torchvision's class and file order, every PNG colour type decoded to 8-bit RGB, JPEG
// colours and the DCT-scaled decode, the split rules, and broken files refused by name.
#include <png.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "decode.h"
#include "fixtures.h"
#include "harness.h"
#include "jpeg_write.h"

// Writes a JPEG of h x w from packed pixels of the given kind with options o.
static int write_jpeg_as(const char *rel, int h, int w, const uint8_t *pixels, jpeg_pixels kind,
                         jpeg_options o)
{
    unsigned char *jpeg;
    unsigned long size;
    char err[200];
    int rc = jpeg_write(pixels, h, w, kind, &o, &jpeg, &size, err, sizeof err);
    if (rc == 0)
        rc = fixture_write(rel, jpeg, size);
    else
        fprintf(stderr, "%s: %s\n", rel, err);
    free(jpeg);
    return rc;
}

// Unsubsampled (4:4:4), baseline.
static int write_jpeg(const char *rel, int h, int w, const uint8_t *pixels, jpeg_pixels kind,
                      int quality)
{
    return write_jpeg_as(rel, h, w, pixels, kind, (jpeg_options){.quality = quality});
}

// n bytes of noise from seed: long entropy-coded data, and every pixel differs.
static uint8_t *noise_bytes(size_t n, uint64_t seed)
{
    uint8_t *p = malloc(n);
    for (size_t k = 0; p && k < n; k++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[k] = (uint8_t)(seed >> 56);
    }
    return p;
}

static int write_solid_jpeg(const char *rel, int h, int w, const uint8_t rgb[3])
{
    uint8_t *p = malloc((size_t)h * w * 3);
    for (int k = 0; k < h * w; k++)
        memcpy(p + 3 * k, rgb, 3);
    const int rc = write_jpeg(rel, h, w, p, JPEG_RGB, 95);
    free(p);
    return rc;
}

// A PNG as written by libpng from packed rows of the given colour type and depth.
typedef struct {
    int w, h, color_type, bit_depth;
    bool interlaced;
    const uint8_t *rows; // h rows of png_get_rowbytes each, packed
    const png_color *palette;
    int palette_size;
    const uint8_t *trns; // palette alpha, palette_size entries, or NULL
} png_spec;

static int write_png(const char *rel, const png_spec *s)
{
    if (fixture_write(rel, "", 0) != 0) // makes the folders
        return -1;
    FILE *f = fopen(fixture_path(rel), "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)s->w, (png_uint_32)s->h, s->bit_depth, s->color_type,
                 s->interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (s->palette)
        png_set_PLTE(png, info, s->palette, s->palette_size);
    if (s->trns)
        png_set_tRNS(png, info, s->trns, s->palette_size, NULL);
    png_write_info(png, info);
    const size_t stride = png_get_rowbytes(png, info);
    png_bytep *rows = malloc((size_t)s->h * sizeof *rows);
    for (int y = 0; y < s->h; y++)
        rows[y] = (png_bytep)s->rows + (size_t)y * stride;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return fclose(f) == 0 ? 0 : -1;
}

// A 1x1 RGB PNG of colour (id, 0, 0): its file's place in the listing can be read back.
static int write_id_png(const char *rel, uint8_t id)
{
    const uint8_t px[3] = {id, 0, 0};
    return write_png(rel, &(png_spec){1, 1, PNG_COLOR_TYPE_RGB, 8, false, px, NULL, 0, NULL});
}

static int test_order(void)
{
    static const struct {
        const char *rel;
        int label;
    } files[] = {
        {"Zebra/z.png", 0}, {"ant/a.PNG", 1},   {"ant/b.png", 1},      {"cat/c.png", 2},
        {"dog/y.png", 3},   {"dog/s/s.png", 3}, {"dog/s-u/su.png", 3}, {"dog/s/t/deep.png", 3},
    };
    // Listed in the order written below: torchvision's sorted(os.walk(...)) visits dog,
    // dog/s, dog/s-u, dog/s/t ('-' sorts before '/').
    for (int k = 0; k < COUNT(files); k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "order/train/%s", files[k].rel);
        CHECK(write_id_png(rel, (uint8_t)k) == 0);
    }
    CHECK(fixture_write("order/train/cat/notes.txt", "not an image", 12) == 0);
    CHECK(fixture_write("order/train/cat/d.gif", "GIF89a", 6) == 0);
    CHECK(fixture_write("order/train/README", "stray file at the root", 22) == 0);

    tmixd_dataset *ds;
    CHECK_OK(tmixd_dataset_open(&ds, "imagefolder", fixture_path("order"), "train"));
    CHECK(tmixd_dataset_size(ds) == COUNT(files));
    CHECK(tmixd_dataset_classes(ds) == 4);
    CHECK(tmixd_dataset_channels(ds) == 3);
    int h, w;
    tmixd_dataset_image_size(ds, &h, &w);
    CHECK(h == 0 && w == 0);
    static const char *const names[] = {"Zebra", "ant", "cat", "dog"};
    for (int k = 0; k < 4; k++)
        CHECK(strcmp(tmixd_dataset_class_name(ds, k), names[k]) == 0);
    char describe[1100];
    snprintf(describe, sizeof describe, "imagefolder:%s (train)", fixture_path("order"));
    CHECK(strcmp(tmixd_dataset_describe(ds), describe) == 0);
    tmixd_image img = {0};
    for (int k = 0; k < COUNT(files); k++) {
        CHECK(tmixd_dataset_label(ds, k) == files[k].label);
        CHECK_OK(tmixd_dataset_read(ds, k, 0, 0, &img));
        CHECK(img.h == 1 && img.w == 1 && img.c == 3 && img.data[0] == k);
    }
    tmixd_image_free(&img);
    tmixd_dataset_close(ds);
    return 0;
}

enum { PW = 13, PH = 9 }; // odd sizes, so Adam7's passes are uneven

static uint8_t pat(int y, int x, int c)
{
    return (uint8_t)(c == 0 ? x * 17 + y : c == 1 ? y * 25 + 3 : (x + y) * 11);
}

// One PNG of each kind, as PH x PW files in png/train/all, and the RGB each must decode to.
static int test_png_kinds(void)
{
    static uint8_t rgb8[PH][PW][3], rgba8[PH][PW][4], gray8[PH][PW], ga8[PH][PW][2];
    static uint8_t gray16[PH][PW][2], rgb16[PH][PW][6], pal8[PH][PW], bits1[PH][2];
    static const png_color palette[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {9, 99, 199}};
    static const uint8_t trns[4] = {0, 128, 255, 7};
    for (int y = 0; y < PH; y++) {
        for (int x = 0; x < PW; x++) {
            for (int c = 0; c < 3; c++) {
                rgb8[y][x][c] = rgba8[y][x][c] = pat(y, x, c);
                rgb16[y][x][2 * c] = pat(y, x, c);
                rgb16[y][x][2 * c + 1] = (uint8_t)(255 - c); // the low byte, dropped
            }
            rgba8[y][x][3] = ga8[y][x][1] = (uint8_t)(x * 19); // alpha, dropped
            gray8[y][x] = ga8[y][x][0] = gray16[y][x][0] = pat(y, x, 0);
            gray16[y][x][1] = 200;
            pal8[y][x] = (uint8_t)((x + y) % 4);
        }
        bits1[y][0] = (uint8_t)(y % 2 ? 0xaa : 0x55); // 1-bit gray, first 8 pixels, MSB first
        bits1[y][1] = 0xf0;                           // then 4 of the last 5 set
    }
    const png_spec specs[] = {
        {PW, PH, PNG_COLOR_TYPE_RGB, 8, false, &rgb8[0][0][0], NULL, 0, NULL},
        {PW, PH, PNG_COLOR_TYPE_RGB, 8, true, &rgb8[0][0][0], NULL, 0, NULL},
        {PW, PH, PNG_COLOR_TYPE_RGBA, 8, false, &rgba8[0][0][0], NULL, 0, NULL},
        {PW, PH, PNG_COLOR_TYPE_RGB, 16, false, &rgb16[0][0][0], NULL, 0, NULL},
        {PW, PH, PNG_COLOR_TYPE_GRAY, 8, false, &gray8[0][0], NULL, 0, NULL},
        {PW, PH, PNG_COLOR_TYPE_GRAY_ALPHA, 8, false, &ga8[0][0][0], NULL, 0, NULL},
        {PW, PH, PNG_COLOR_TYPE_GRAY, 16, false, &gray16[0][0][0], NULL, 0, NULL},
        {PW, PH, PNG_COLOR_TYPE_PALETTE, 8, false, &pal8[0][0], palette, 4, trns},
        {PW, PH, PNG_COLOR_TYPE_GRAY, 1, false, &bits1[0][0], NULL, 0, NULL},
    };
    for (int k = 0; k < COUNT(specs); k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "png/train/all/%02d.png", k);
        CHECK(write_png(rel, &specs[k]) == 0);
    }
    tmixd_dataset *ds;
    CHECK_OK(tmixd_dataset_open(&ds, "imagefolder", fixture_path("png"), "train"));
    CHECK(tmixd_dataset_size(ds) == COUNT(specs));
    tmixd_image img = {0};
    for (int k = 0; k < COUNT(specs); k++) {
        CHECK_OK(tmixd_dataset_read(ds, k, 4, 4, &img)); // a size hint does not scale PNGs
        CHECK(img.h == PH && img.w == PW && img.c == 3);
        for (int y = 0; y < PH; y++)
            for (int x = 0; x < PW; x++) {
                const uint8_t *got = img.data + (y * PW + x) * 3;
                uint8_t want[3];
                for (int c = 0; c < 3; c++)
                    want[c] = k <= 3 ? pat(y, x, c) : pat(y, x, 0); // RGB kinds, then grays
                if (k == 7)
                    memcpy(want, &palette[(x + y) % 4], 3);
                if (k == 8)
                    want[0] = want[1] = want[2] = x < 8    ? ((bits1[y][0] >> (7 - x)) & 1) * 255
                                                  : x < 12 ? 255
                                                           : 0;
                if (memcmp(got, want, 3) != 0) {
                    fprintf(stderr, "png %d at (%d, %d): got %d %d %d, want %d %d %d\n", k, y, x,
                            got[0], got[1], got[2], want[0], want[1], want[2]);
                    return 1;
                }
            }
    }
    tmixd_image_free(&img);
    tmixd_dataset_close(ds);
    return 0;
}

// Whether every pixel of img is within tol of rgb.
static bool near_solid(const tmixd_image *img, const uint8_t rgb[3], int tol)
{
    for (int k = 0; k < img->h * img->w; k++)
        for (int c = 0; c < 3; c++)
            if (abs(img->data[3 * k + c] - rgb[c]) > tol) {
                fprintf(stderr, "pixel %d channel %d: %d, expected %d +- %d\n", k, c,
                        img->data[3 * k + c], rgb[c], tol);
                return false;
            }
    return true;
}

static int test_jpeg(void)
{
    static const uint8_t colour[3] = {200, 30, 90}, gray[3] = {123, 123, 123};
    CHECK(write_solid_jpeg("jpeg/train/c/a_colour.jpg", 30, 40, colour) == 0);
    uint8_t plane[16 * 24];
    memset(plane, 123, sizeof plane);
    CHECK(write_jpeg("jpeg/train/c/b_gray.jpeg", 16, 24, plane, JPEG_GRAY, 95) == 0);
    // CMYK as Adobe stores it (inverted): R = C K / 255 = 10 * 200 / 255 -> 8, and so on.
    static const uint8_t cmyk_rgb[3] = {8, 157, 78};
    uint8_t cmyk[8 * 8 * 4];
    for (int k = 0; k < 64; k++)
        memcpy(cmyk + 4 * k, (const uint8_t[]){10, 200, 100, 200}, 4);
    CHECK(write_jpeg("jpeg/train/c/c_cmyk.jpg", 8, 8, cmyk, JPEG_CMYK, 95) == 0);
    tmixd_dataset *ds;
    tmixd_image img = {0};
    CHECK_OK(tmixd_dataset_open(&ds, "imagefolder", fixture_path("jpeg"), "train"));
    CHECK_OK(tmixd_dataset_read(ds, 0, 0, 0, &img));
    CHECK(img.h == 30 && img.w == 40 && img.c == 3);
    CHECK(near_solid(&img, colour, 3));
    CHECK_OK(tmixd_dataset_read(ds, 1, 0, 0, &img));
    CHECK(img.h == 16 && img.w == 24 && img.c == 3);
    CHECK(near_solid(&img, gray, 1));
    CHECK_OK(tmixd_dataset_read(ds, 2, 0, 0, &img));
    CHECK(img.h == 8 && img.w == 8 && img.c == 3);
    CHECK(near_solid(&img, cmyk_rgb, 3));
    tmixd_image_free(&img);
    tmixd_dataset_close(ds);
    return 0;
}

static bool same_box(tmixd_crop_box a, tmixd_crop_box b)
{
    return a.top == b.top && a.left == b.left && a.h == b.h && a.w == b.w;
}

// A 512 x 384 (w x h) JPEG decodes at the smallest of 1/2, 1/4, 1/8 still >= the hint.
static int test_dct_scaling(void)
{
    static const uint8_t colour[3] = {40, 160, 220};
    CHECK(write_solid_jpeg("scale/train/c/big.jpg", 384, 512, colour) == 0);
    tmixd_dataset *ds;
    tmixd_image img = {0};
    CHECK_OK(tmixd_dataset_open(&ds, "imagefolder", fixture_path("scale"), "train"));
    static const struct {
        int min_h, min_w, h, w;
    } cases[] = {
        {0, 0, 384, 512},     {64, 64, 96, 128},    {48, 64, 48, 64},
        {49, 64, 96, 128},    {100, 100, 192, 256}, {192, 256, 192, 256},
        {200, 200, 384, 512}, {64, 0, 384, 512},    {400, 600, 384, 512},
    };
    for (int k = 0; k < COUNT(cases); k++) {
        CHECK_OK(tmixd_dataset_read(ds, 0, cases[k].min_h, cases[k].min_w, &img));
        if (img.h != cases[k].h || img.w != cases[k].w) {
            fprintf(stderr, "hint %dx%d: decoded %dx%d, expected %dx%d\n", cases[k].min_h,
                    cases[k].min_w, img.h, img.w, cases[k].h, cases[k].w);
            return 1;
        }
        CHECK(near_solid(&img, colour, 3));
    }
    tmixd_image_free(&img);
    tmixd_dataset_close(ds);
    return 0;
}

// The scale for a window: the largest that keeps the window >= the hint, never one that
// enlarges a crop the full-size image would shrink.
static int test_window_scale(void)
{
    static const struct {
        int h, w;
        tmixd_crop_box window;
        int min_h, min_w, scale;
        tmixd_crop_box scaled;
    } cases[] = {
        // The whole image: its sides round up, as libjpeg's scaled sizes (33 / 8 -> 5).
        {33, 70, {0, 0, 33, 70}, 4, 4, 8, {0, 0, 5, 9}},
        {33, 70, {0, 0, 33, 70}, 5, 10, 4, {0, 0, 9, 18}},
        {384, 512, {0, 0, 384, 512}, 200, 200, 1, {0, 0, 384, 512}},
        // An 8% crop of a 512 x 384 image to 32 x 32: 1/2 (53 x 71), where the whole
        // image's scale (1/8) would leave 13 x 18 pixels to enlarge. Inner edges round to
        // the nearest pixel: (100 + 1) / 2 = 50, (206 + 1) / 2 = 103.
        {384, 512, {100, 150, 106, 141}, 32, 32, 2, {50, 75, 53, 71}},
        // A crop reaching the far corner keeps the scaled image's edge: ceil(375 / 8) = 47.
        {375, 500, {100, 200, 275, 300}, 32, 32, 8, {13, 25, 34, 38}},
        // Just too narrow for 1/8: 255 rows round to 32 there, but 247 columns to 31.
        {384, 512, {0, 0, 255, 247}, 32, 32, 4, {0, 0, 64, 62}},
        // No hint, a window that leaves the image (a padded crop), an empty window.
        {384, 512, {10, 10, 100, 100}, 0, 32, 1, {10, 10, 100, 100}},
        {384, 512, {-4, 0, 300, 300}, 32, 32, 1, {-4, 0, 300, 300}},
        {384, 512, {300, 400, 100, 100}, 32, 32, 1, {300, 400, 100, 100}},
        {384, 512, {3, 3, 0, 0}, 1, 1, 1, {3, 3, 0, 0}},
    };
    for (int k = 0; k < COUNT(cases); k++) {
        tmixd_crop_box scaled;
        const int s = tmixd_jpeg_scale(cases[k].h, cases[k].w, cases[k].window, cases[k].min_h,
                                       cases[k].min_w, &scaled);
        if (s != cases[k].scale || !same_box(scaled, cases[k].scaled)) {
            fprintf(stderr, "case %d: scale %d, window %d,%d %dx%d\n", k, s, scaled.top,
                    scaled.left, scaled.h, scaled.w);
            return 1;
        }
    }
    return 0;
}

static uint8_t *slurp(const char *rel, size_t *n);

// What a window read was asked and answered.
typedef struct {
    tmixd_crop_box box; // relative to the image's size: see window_case_box
    int calls, h, w;    // the calls and the size they were given
} window_case;

// Boxes from the image's size: inside, the whole image, a pixel in each corner, partly
// and wholly outside it (a padded crop), and wider than it.
enum { WINDOW_BOXES = 9 };
static tmixd_crop_box window_case_box(int k, int h, int w)
{
    switch (k) {
    case 0: return (tmixd_crop_box){h / 3, w / 4, h / 3, w / 2};
    case 1: return (tmixd_crop_box){0, 0, h, w};
    case 2: return (tmixd_crop_box){0, 0, 1, 1};
    case 3: return (tmixd_crop_box){h - 1, w - 1, 1, 1};
    case 4: return (tmixd_crop_box){h / 2, 17, 1, 1};
    case 5: return (tmixd_crop_box){-4, -4, 20, 20};
    case 6: return (tmixd_crop_box){h - 6, w - 9, 20, 20};
    case 7: return (tmixd_crop_box){-30, w + 5, 10, 10};
    default: return (tmixd_crop_box){5, -3, h - 10, w + 6};
    }
}

static int window_case_fn(void *ctx, int h, int w, tmixd_crop_box *box)
{
    window_case *c = ctx;
    c->calls++;
    c->h = h;
    c->w = w;
    *box = window_case_box((int)c->box.top, h, w); // box.top carries the case's number
    return 0;
}

// Reading only a window (tmixd_dataset_read_window: libjpeg's crop and skip) gives, over
// every pixel of the window inside the image, exactly the value of a whole decode at the
// scale the window allows (tmixd_jpeg_scale), and places the window in it: for each chroma
// subsampling, grayscale, progressive and CMYK files, at full size and DCT-scaled, for
// windows inside, at the corners, partly or wholly outside and wider than the image.
static int test_windows(void)
{
    enum { H = 75, W = 101 };
    uint8_t *rgb = noise_bytes(H * W * 4, 99);
    CHECK(rgb != NULL);
    static const struct {
        const char *name;
        jpeg_pixels kind;
        jpeg_subsampling subsampling;
        bool progressive;
    } kinds[] = {
        {"a_444", JPEG_RGB, JPEG_444, false},  {"b_422", JPEG_RGB, JPEG_422, false},
        {"c_420", JPEG_RGB, JPEG_420, false},  {"d_440", JPEG_RGB, JPEG_440, false},
        {"e_gray", JPEG_GRAY, JPEG_444, false}, {"f_cmyk", JPEG_CMYK, JPEG_420, false},
        {"g_prog", JPEG_RGB, JPEG_420, true},
    };
    for (int k = 0; k < COUNT(kinds); k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "win/train/c/%s.jpg", kinds[k].name);
        CHECK(write_jpeg_as(rel, H, W, rgb, kinds[k].kind,
                            (jpeg_options){.quality = 90, .subsampling = kinds[k].subsampling,
                                           .progressive = kinds[k].progressive}) == 0);
    }
    free(rgb);
    tmixd_dataset *ds;
    tmixd_image whole = {0}, part = {0};
    CHECK_OK(tmixd_dataset_open(&ds, "imagefolder", fixture_path("win"), "train"));
    // Full size; 1/2 for the whole image only; 1/2 for box 0 (12 x 25 of 75 x 101), 1/8
    // for the whole image (10 x 13).
    static const int hints[][2] = {{0, 0}, {30, 40}, {10, 12}};
    for (int k = 0; k < COUNT(kinds); k++)
        for (int s = 0; s < COUNT(hints); s++)
            for (int b = 0; b < WINDOW_BOXES; b++) {
                window_case c = {.box = {.top = b}};
                CHECK_OK(tmixd_dataset_read_window(ds, k, hints[s][0], hints[s][1],
                                                   window_case_fn, &c, &part));
                CHECK(c.calls == 1 && c.h == H && c.w == W);
                tmixd_crop_box box;
                const int scale = tmixd_jpeg_scale(H, W, window_case_box(b, H, W), hints[s][0],
                                                   hints[s][1], &box);
                CHECK(same_box(part.window, box));
                CHECK(fixture_read_scaled(ds, k, H, W, scale, &whole) == 0);
                int mismatches = 0;
                for (int y = box.top; y < box.top + box.h; y++)
                    for (int x = box.left; x < box.left + box.w; x++) {
                        if (y < 0 || y >= whole.h || x < 0 || x >= whole.w)
                            continue;
                        const int py = y - part.top, px = x - part.left;
                        if (py < 0 || py >= part.h || px < 0 || px >= part.w ||
                            memcmp(part.data + ((size_t)py * part.w + px) * 3,
                                   whole.data + ((size_t)y * whole.w + x) * 3, 3) != 0)
                            mismatches++;
                    }
                if (mismatches)
                    fprintf(stderr, "%s, hint %dx%d, box %d (%d,%d %dx%d at 1/%d): %d pixels "
                            "differ or are missing from the part (%d,%d %dx%d)\n",
                            kinds[k].name, hints[s][0], hints[s][1], b, box.top, box.left,
                            box.h, box.w, scale, mismatches, part.top, part.left, part.h,
                            part.w);
                CHECK(mismatches == 0);
            }
    tmixd_image_free(&whole);
    tmixd_image_free(&part);
    tmixd_dataset_close(ds);
    return 0;
}

// A window read that stops above a cut still refuses the truncated file (it has no end
// marker); bytes after a whole file's end marker are accepted, as by a whole decode.
static int test_window_truncated(void)
{
    enum { N = 64 };
    uint8_t *noise = noise_bytes(N * N * 3, 7);
    CHECK(noise && write_jpeg("cut/train/x/a_cut.jpg", N, N, noise, JPEG_RGB, 90) == 0);
    CHECK(write_jpeg("cut/train/x/b_tail.jpg", N, N, noise, JPEG_RGB, 90) == 0);
    free(noise);
    size_t n;
    uint8_t *jpeg = slurp("cut/train/x/a_cut.jpg", &n);
    CHECK(jpeg != NULL);
    CHECK(fixture_truncate("cut/train/x/a_cut.jpg", n * 3 / 4) == 0);
    uint8_t *tail = realloc(jpeg, n + 100);
    CHECK(tail != NULL);
    memset(tail + n, 0x5a, 100);
    CHECK(fixture_write("cut/train/x/b_tail.jpg", tail, n + 100) == 0);
    free(tail);
    tmixd_dataset *ds;
    tmixd_image img = {0};
    CHECK_OK(tmixd_dataset_open(&ds, "imagefolder", fixture_path("cut"), "train"));
    window_case top_rows = {.box = {.top = 2}}; // one pixel in the first row
    CHECK_ERR(tmixd_dataset_read_window(ds, 0, 0, 0, window_case_fn, &top_rows, &img),
              TMIX_EFORMAT);
    CHECK(error_mentions("truncated") && error_mentions("sample 0"));
    CHECK_ERR(tmixd_dataset_read(ds, 0, 0, 0, &img), TMIX_EFORMAT);
    CHECK_OK(tmixd_dataset_read_window(ds, 1, 0, 0, window_case_fn, &top_rows, &img));
    CHECK_OK(tmixd_dataset_read(ds, 1, 0, 0, &img));
    tmixd_image_free(&img);
    tmixd_dataset_close(ds);
    return 0;
}

// Broken files are refused, naming the file and the sample, and the reader goes on.
static int test_corrupt_files(void)
{
    // Noise makes the entropy-coded data long, so half the file ends mid-scan.
    enum { N = 64 };
    uint8_t *noise = noise_bytes(N * N * 3, 12345);
    CHECK(noise && write_jpeg("bad/train/x/a_half.jpg", N, N, noise, JPEG_RGB, 90) == 0);
    free(noise);
    FILE *f = fopen(fixture_path("bad/train/x/a_half.jpg"), "rb");
    CHECK(f && fseek(f, 0, SEEK_END) == 0);
    const long jpeg_size = ftell(f);
    fclose(f);
    CHECK(fixture_truncate("bad/train/x/a_half.jpg", (size_t)jpeg_size / 2) == 0);
    CHECK(fixture_write("bad/train/x/b_text.jpg", "hello, I am text\n", 17) == 0);
    uint8_t rgb[4 * 4 * 3] = {0};
    const png_spec good = {4, 4, PNG_COLOR_TYPE_RGB, 8, false, rgb, NULL, 0, NULL};
    CHECK(write_png("bad/train/x/c_cut.png", &good) == 0);
    CHECK(fixture_truncate("bad/train/x/c_cut.png", 40) == 0);
    CHECK(fixture_write("bad/train/x/d_empty.png", "", 0) == 0);
    CHECK(fixture_write("bad/train/x/e_garbage.png", "\x89PNG\r\n\x1a\nIHDRgarbage", 19) == 0);
    const uint8_t jpeg_magic_only[] = {0xff, 0xd8, 0xff, 0xe0, 0, 16};
    CHECK(fixture_write("bad/train/x/f_stub.jpg", jpeg_magic_only, sizeof jpeg_magic_only) == 0);
    CHECK(write_png("bad/train/x/g_good.png", &good) == 0);

    static const char *const names[] = {"a_half.jpg",  "b_text.jpg",    "c_cut.png",
                                        "d_empty.png", "e_garbage.png", "f_stub.jpg"};
    tmixd_dataset *ds;
    tmixd_image img = {0};
    CHECK_OK(tmixd_dataset_open(&ds, "imagefolder", fixture_path("bad"), "train"));
    CHECK(tmixd_dataset_size(ds) == COUNT(names) + 1);
    for (int round = 0; round < 2; round++) // decoders that failed are reused
        for (int k = 0; k < COUNT(names); k++) {
            char rel[64], sample[32];
            snprintf(rel, sizeof rel, "bad/train/x/%s", names[k]);
            snprintf(sample, sizeof sample, "sample %d", k);
            CHECK_ERR(tmixd_dataset_read(ds, k, 16, 16, &img), TMIX_EFORMAT);
            CHECK(error_mentions(fixture_path(rel)));
            CHECK(error_mentions(sample));
        }
    CHECK_OK(tmixd_dataset_read(ds, COUNT(names), 0, 0, &img));
    CHECK(img.h == 4 && img.w == 4);
    // A file gone since open is an I/O error, named too.
    CHECK(unlink(fixture_path("bad/train/x/g_good.png")) == 0);
    CHECK_ERR(tmixd_dataset_read(ds, COUNT(names), 0, 0, &img), TMIX_EIO);
    CHECK(error_mentions(fixture_path("bad/train/x/g_good.png")));
    tmixd_image_free(&img);
    tmixd_dataset_close(ds);
    return 0;
}

// Reads fixture file rel into a new buffer; *n gets its size.
static uint8_t *slurp(const char *rel, size_t *n)
{
    FILE *f = fopen(fixture_path(rel), "rb");
    uint8_t *buf = malloc(1 << 20);
    *n = f && buf ? fread(buf, 1, 1 << 20, f) : 0;
    if (f)
        fclose(f);
    return buf;
}

// Mutants of a valid JPEG and a valid PNG (cut at a random length, or 1 to 4 random bytes
// overwritten) each decode or fail with TMIX_EFORMAT, never crash or overrun (the ASan build
// watches); every cut file fails.
static int test_mutants(void)
{
    enum { N = 32, MUTANTS = 150 };
    uint8_t pixels[N * N * 3];
    for (int k = 0; k < N * N * 3; k++)
        pixels[k] = (uint8_t)(k * 7 + (k / 97) * 13);
    CHECK(write_jpeg("mutant_src/a.jpg", N, N, pixels, JPEG_RGB, 90) == 0);
    CHECK(write_png("mutant_src/b.png",
                    &(png_spec){N, N, PNG_COLOR_TYPE_RGB, 8, true, pixels, NULL, 0, NULL}) == 0);
    static const char *const sources[] = {"a.jpg", "b.png"};
    uint64_t s = 99;
    bool cut[2 * MUTANTS];
    for (int f = 0; f < 2; f++) {
        char rel[64];
        snprintf(rel, sizeof rel, "mutant_src/%s", sources[f]);
        size_t n;
        uint8_t *src = slurp(rel, &n), *buf = malloc(n);
        CHECK(src && buf && n > 100);
        for (int m = 0; m < MUTANTS; m++) {
            memcpy(buf, src, n);
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t len = n;
            cut[f * MUTANTS + m] = m % 3 == 0;
            if (cut[f * MUTANTS + m]) {
                len = (size_t)(s >> 33) % n;
            } else {
                for (int b = 0; b <= (int)(s >> 62); b++) {
                    s = s * 6364136223846793005ull + 1442695040888963407ull;
                    buf[(s >> 33) % n] = (uint8_t)(s >> 11);
                }
            }
            snprintf(rel, sizeof rel, "mutants/x/%d%03d_%s", f, m, sources[f]);
            CHECK(fixture_write(rel, buf, len) == 0);
        }
        free(src);
        free(buf);
    }
    tmixd_dataset *ds;
    tmixd_image img = {0};
    CHECK_OK(tmixd_dataset_open(&ds, "imagefolder", fixture_path("mutants"), "train"));
    CHECK(tmixd_dataset_size(ds) == 2 * MUTANTS);
    int failed = 0;
    for (int64_t i = 0; i < 2 * MUTANTS; i++) {
        const int rc = tmixd_dataset_read(ds, i, i % 2 ? 8 : 0, i % 2 ? 8 : 0, &img);
        if (rc != 0 && rc != TMIX_EFORMAT) {
            fprintf(stderr, "mutant %lld: %s: %s\n", (long long)i, tmix_err_name(rc),
                    tmix_last_error());
            return 1;
        }
        if (cut[i] && rc == 0) {
            fprintf(stderr, "mutant %lld was cut short but decoded\n", (long long)i);
            return 1;
        }
        CHECK(rc != 0 || (img.h > 0 && img.w > 0 && img.c == 3));
        failed += rc != 0;
    }
    printf("%d of %d mutants refused\n", failed, 2 * MUTANTS);
    tmixd_image_free(&img);
    tmixd_dataset_close(ds);
    return 0;
}

static int open_size(const char *rel, const char *split, int64_t *size)
{
    tmixd_dataset *ds;
    TMIX_TRY(tmixd_dataset_open(&ds, "imagefolder", fixture_path(rel), split));
    *size = tmixd_dataset_size(ds);
    tmixd_dataset_close(ds);
    return 0;
}

static int test_splits(void)
{
    int64_t n;
    // No train/ folder: train reads the path itself; test needs test/ or val/.
    CHECK(write_id_png("flat/a/1.png", 1) == 0);
    CHECK_OK(open_size("flat", "train", &n));
    CHECK(n == 1);
    CHECK_ERR(open_size("flat", "test", &n), TMIX_ENOENT);
    CHECK(error_mentions(fixture_path("flat/test")) && error_mentions(fixture_path("flat/val")));
    // val/ serves the test split; test/ wins over it.
    CHECK(write_id_png("split/train/a/1.png", 1) == 0);
    CHECK(write_id_png("split/val/a/1.png", 1) == 0);
    CHECK(write_id_png("split/val/b/2.png", 1) == 0);
    CHECK_OK(open_size("split", "test", &n));
    CHECK(n == 2);
    CHECK(write_id_png("split/test/a/1.png", 1) == 0);
    CHECK_OK(open_size("split", "test", &n));
    CHECK(n == 1);
    CHECK_OK(open_size("split", "train", &n));
    CHECK(n == 1);
    CHECK_ERR(open_size("absent", "train", &n), TMIX_ENOENT);
    CHECK(error_mentions(fixture_path("absent")));
    return 0;
}

static int test_empty(void)
{
    int64_t n;
    CHECK(fixture_mkdir("empty") == 0);
    CHECK_ERR(open_size("empty", "train", &n), TMIX_EFORMAT);
    CHECK(error_mentions(fixture_path("empty")));
    CHECK(write_id_png("noimages/train/a/1.png", 1) == 0);
    CHECK(fixture_write("noimages/train/b/readme.txt", "x", 1) == 0);
    CHECK_ERR(open_size("noimages", "train", &n), TMIX_EFORMAT);
    CHECK(error_mentions(fixture_path("noimages/train/b")));
    return 0;
}

// Many threads reading one data set at once get what one thread gets.
typedef struct {
    const tmixd_dataset *ds;
    uint64_t sum;
    int failures;
} reader;

static void *read_all(void *arg)
{
    reader *r = arg;
    tmixd_image img = {0};
    for (int round = 0; round < 20; round++)
        for (int64_t i = 0; i < tmixd_dataset_size(r->ds); i++) {
            if (tmixd_dataset_read(r->ds, i, 8, 8, &img) != 0) {
                r->failures++;
                continue;
            }
            for (size_t k = 0; k < (size_t)img.h * img.w * 3; k++)
                r->sum += img.data[k] * (k + 1);
        }
    tmixd_image_free(&img);
    return NULL;
}

static int test_threads(void)
{
    static const uint8_t colour[3] = {10, 20, 30};
    CHECK(write_solid_jpeg("threads/train/a/1.jpg", 64, 48, colour) == 0);
    CHECK(write_solid_jpeg("threads/train/b/2.jpg", 32, 32, colour) == 0);
    CHECK(write_id_png("threads/train/b/3.png", 7) == 0);
    tmixd_dataset *ds;
    CHECK_OK(tmixd_dataset_open(&ds, "imagefolder", fixture_path("threads"), "train"));
    reader one = {ds, 0, 0}, many[4];
    read_all(&one);
    CHECK(one.failures == 0 && one.sum > 0);
    pthread_t threads[4];
    for (int t = 0; t < 4; t++) {
        many[t] = (reader){ds, 0, 0};
        CHECK(pthread_create(&threads[t], NULL, read_all, &many[t]) == 0);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(threads[t], NULL);
    for (int t = 0; t < 4; t++)
        CHECK(many[t].failures == 0 && many[t].sum == one.sum);
    tmixd_dataset_close(ds);
    return 0;
}

static const test_case tests[] = {
    {"imagefolder.order", test_order},
    {"imagefolder.png_kinds", test_png_kinds},
    {"imagefolder.jpeg", test_jpeg},
    {"imagefolder.dct_scaling", test_dct_scaling},
    {"imagefolder.window_scale", test_window_scale},
    {"imagefolder.windows", test_windows},
    {"imagefolder.window_truncated", test_window_truncated},
    {"imagefolder.corrupt_files", test_corrupt_files},
    {"imagefolder.mutants", test_mutants},
    {"imagefolder.splits", test_splits},
    {"imagefolder.empty", test_empty},
    {"imagefolder.threads", test_threads},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return fixture_test_main(argc, argv, tests);
}
