// tmixctl preview: one batch mixed by the daemon with its intermediates, drawn as a PNG grid.
// A row per mixed sample; columns: its n sources, their CAMs over them (a heat map; only with
// a teacher), the sources warped, their masks, the mixed image; under the row each source's
// label and weight.
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const char usage[] =
    "usage: tmixctl preview -o FILE.png [-e ENDPOINT] [--n N] [--timeout S]\n"
    "\n"
    "  -o, --out FILE  the PNG to write: a row per mixed sample; columns: its sources, their\n"
    "                  CAMs over them (with a teacher), the sources warped, their masks, the\n"
    "                  mixed image; under each row, every source's label:weight\n"
    "  --n N           mixed samples, 1 to 32 (default 8)\n"
    "  --timeout S     seconds to wait for the answer (default 60; 0: forever)\n";

enum { GAP = 2, GROUP_GAP = 8, MIN_TILE = 64, TEXT_SCALE = 2, BACKGROUND = 24 };

// A 3x5 font for what the label line needs: "0".."9", '.', ':', '+' and ' '.
static const char glyph_chars[] = "0123456789.:+ ";
static const unsigned char glyphs[][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
    {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7},
    {0, 0, 0, 0, 2}, {0, 2, 0, 2, 0}, {0, 2, 7, 2, 0}, {0, 0, 0, 0, 0}};

typedef struct {
    unsigned char *rgb; // width x height x 3
    int width, height;
} canvas;

static void put(canvas *c, int x, int y, const float rgb[3])
{
    unsigned char *p = c->rgb + ((size_t)y * c->width + x) * 3;
    for (int k = 0; k < 3; k++)
        p[k] = (unsigned char)lrintf(fminf(fmaxf(rgb[k], 0.0f), 1.0f) * 255.0f);
}

static void text(canvas *c, int x, int y, const char *s)
{
    static const float white[3] = {1, 1, 1};
    for (; *s; s++, x += 4 * TEXT_SCALE) {
        const char *at = strchr(glyph_chars, *s);
        const unsigned char *g = glyphs[at ? at - glyph_chars : 13];
        for (int r = 0; r < 5 * TEXT_SCALE; r++)
            for (int col = 0; col < 3 * TEXT_SCALE; col++)
                if (g[r / TEXT_SCALE] >> (2 - col / TEXT_SCALE) & 1)
                    put(c, x + col, y + r, white);
    }
}

// Pixel (i, j) of an image as RGB in [0, 1]: un-normalised, gray repeated.
static void pixel(const tmix_preview *p, const float *image, size_t i, size_t j, float rgb[3])
{
    const size_t plane = (size_t)p->height * p->width;
    for (int k = 0; k < 3; k++) {
        const uint32_t ch = p->channels == 3 ? (uint32_t)k : 0;
        rgb[k] = image[ch * plane + i * p->width + j] * p->std[ch] + p->mean[ch];
    }
}

// The jet colour map at t in [0, 1].
static void jet(float t, float rgb[3])
{
    for (int k = 0; k < 3; k++)
        rgb[k] = fminf(fmaxf(1.5f - fabsf(4.0f * t - (3.0f - (float)k)), 0.0f), 1.0f);
}

typedef enum { TILE_IMAGE, TILE_HEAT, TILE_GRAY } tile_kind;

// Draws a tile at (x, y), each source pixel scale x scale: an image, a heat map `plane` over
// image, or `plane` in gray.
static void tile(canvas *c, const tmix_preview *p, int x, int y, int scale, tile_kind kind,
                 const float *image, const float *plane)
{
    for (int i = 0; i < (int)p->height * scale; i++)
        for (int j = 0; j < (int)p->width * scale; j++) {
            const size_t si = (size_t)(i / scale), sj = (size_t)(j / scale);
            float rgb[3], heat[3];
            if (kind != TILE_GRAY)
                pixel(p, image, si, sj, rgb);
            if (kind != TILE_IMAGE) {
                const float v = plane[si * p->width + sj];
                if (kind == TILE_GRAY) {
                    rgb[0] = rgb[1] = rgb[2] = v;
                } else {
                    jet(v, heat);
                    for (int k = 0; k < 3; k++)
                        rgb[k] = 0.5f * rgb[k] + 0.5f * heat[k];
                }
            }
            put(c, x + j, y + i, rgb);
        }
}

static int draw(const tmix_preview *p, canvas *c)
{
    const int n = (int)p->mix_n, side = (int)(p->height > p->width ? p->height : p->width);
    const int scale = side >= MIN_TILE ? 1 : (MIN_TILE + side - 1) / side;
    const int tw = (int)p->width * scale, th = (int)p->height * scale;
    const int groups = p->cams ? 4 : 3; // sources, [CAMs], warped, masks; then the mixed one
    const int text_h = 5 * TEXT_SCALE + 2 * GAP, row_h = th + text_h + GAP;
    c->width = groups * (n * tw + (n - 1) * GAP + GROUP_GAP) + tw;
    c->height = (int)p->samples * row_h;
    c->rgb = malloc((size_t)c->width * c->height * 3);
    if (!c->rgb)
        return -1;
    memset(c->rgb, BACKGROUND, (size_t)c->width * c->height * 3);
    const size_t image = (size_t)p->channels * p->height * p->width;
    const size_t plane = (size_t)p->height * p->width;
    for (uint32_t r = 0; r < p->samples; r++) {
        const int y = (int)r * row_h;
        int x = 0;
        for (int group = 0; group < groups; group++) {
            const bool heat = p->cams && group == 1;
            const bool warped = group == groups - 2, mask = group == groups - 1;
            for (int k = 0; k < n; k++, x += tw + GAP) {
                const size_t src = p->source_rows[r * n + k], pair = (size_t)r * n + k;
                if (mask)
                    tile(c, p, x, y, scale, TILE_GRAY, NULL, p->masks + pair * plane);
                else if (warped)
                    tile(c, p, x, y, scale, TILE_IMAGE, p->warped + pair * image, NULL);
                else
                    tile(c, p, x, y, scale, heat ? TILE_HEAT : TILE_IMAGE, p->inputs + src * image,
                         heat ? p->cams + src * plane : NULL);
            }
            x += GROUP_GAP - GAP;
        }
        tile(c, p, x, y, scale, TILE_IMAGE, p->mixed + r * image, NULL);
        char line[256] = "";
        for (int k = 0; k < n; k++)
            snprintf(line + strlen(line), sizeof line - strlen(line), "%s%u:%.2f", k ? " + " : "",
                     p->labels[r * n + k], p->weights[r * n + k]);
        text(c, GAP, y + th + GAP, line);
    }
    return 0;
}

int ctl_preview_main(int argc, char **argv)
{
    ctl_conn conn;
    ctl_opt opts[CTL_MAX_OPTS] = {0};
    int n = 0;
    const char *out = NULL;
    uint32_t samples = 8;
    ctl_conn_opts(&conn, 60, false, opts, &n);
    opts[n++] =
        (ctl_opt){.name = "--out", .alias = "-o", .kind = CTL_TEXT, .dest = &out, .required = true};
    opts[n++] = (ctl_opt){.name = "--n", .kind = CTL_COUNT, .dest = &samples, .lo = 1, .hi = 32};
    int rc = ctl_parse("tmixctl preview", usage, opts, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    ctl_conn_finish(&conn);
    tmix_preview *p;
    rc = tmix_preview_get(conn.endpoint, samples, conn.o.timeout_ms, &p);
    if (rc < 0)
        return ctl_fail(rc, tmix_client_error(NULL));
    canvas c = {0};
    if (draw(p, &c) < 0) {
        tmix_preview_free(p);
        fprintf(stderr, "tmixctl preview: out of memory for the picture\n");
        return 1;
    }
    png_image img = {.version = PNG_IMAGE_VERSION,
                     .width = (png_uint_32)c.width,
                     .height = (png_uint_32)c.height,
                     .format = PNG_FORMAT_RGB};
    rc = png_image_write_to_file(&img, out, 0, c.rgb, 0, NULL) ? 0 : 1;
    if (rc)
        fprintf(stderr, "tmixctl preview: %s: %s\n", out, img.message);
    else
        printf("%s: %d x %d, %u mixed samples of %s, n = %u\n", out, c.width, c.height, p->samples,
               p->method, p->mix_n);
    free(c.rgb);
    tmix_preview_free(p);
    return rc;
}
