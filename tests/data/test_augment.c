// Per-sample augmentation: the draws it makes (replayed here from the same seed), exact
// pixels of pad-crops, flips and same-size copies, PyTorch's bilinear values, and the
// random-resized-crop boxes over many draws.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "harness.h"

// An h x w x c image whose pixels are a fixed pseudo-random pattern.
static tmixd_image noise_image(int h, int w, int c, uint64_t seed)
{
    tmixd_image img = {0};
    if (tmixd_image_reserve(&img, h, w, c) != 0)
        return img;
    tmix_rng rng;
    tmix_rng_seed(&rng, seed);
    for (size_t k = 0; k < (size_t)h * w * c; k++)
        img.data[k] = (uint8_t)tmix_rng_below(&rng, 256);
    return img;
}

static const tmixd_augment_params imagenet = {
    .out_h = 24,
    .out_w = 20,
    .crop = TMIXD_CROP_RANDOM_RESIZED,
    .scale_min = 0.08f,
    .scale_max = 1.0f,
    .ratio_min = 3.0f / 4.0f,
    .ratio_max = 4.0f / 3.0f,
    .flip = true,
};

static int test_deterministic(void)
{
    tmixd_image in = noise_image(50, 60, 3, 1);
    uint8_t a[24 * 20 * 3], b[24 * 20 * 3];
    tmix_rng r1, r2;
    tmix_rng_seed(&r1, 7);
    tmix_rng_seed(&r2, 7);
    for (int k = 0; k < 20; k++) {
        CHECK_OK(tmixd_augment(&imagenet, &in, &r1, a));
        CHECK_OK(tmixd_augment(&imagenet, &in, &r2, b));
        CHECK(memcmp(a, b, sizeof a) == 0);
    }
    tmix_rng_seed(&r2, 8);
    CHECK_OK(tmixd_augment(&imagenet, &in, &r1, a));
    CHECK_OK(tmixd_augment(&imagenet, &in, &r2, b));
    CHECK(memcmp(a, b, sizeof a) != 0);
    tmixd_image_free(&in);
    return 0;
}

// PAD: the window offset is below(H + 2 pad - out + 1) - pad, rows first, and each pixel is
// the source pixel or a padding zero.
static int test_pad_window(void)
{
    enum { S = 32, PAD = 4, OUT = 30 };
    tmixd_image in = {0};
    CHECK_OK(tmixd_image_reserve(&in, S, S, 3));
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            uint8_t *p = in.data + (y * S + x) * 3;
            p[0] = (uint8_t)y;
            p[1] = (uint8_t)x;
            p[2] = 1; // 0 only in the padding
        }
    const tmixd_augment_params p = {.out_h = OUT, .out_w = OUT, .crop = TMIXD_CROP_PAD, .pad = PAD};
    tmix_rng rng, replay;
    tmix_rng_seed(&rng, 3);
    tmix_rng_seed(&replay, 3);
    bool seen_top[S + 2 * PAD - OUT + 1] = {false}, seen_left[S + 2 * PAD - OUT + 1] = {false};
    uint8_t out[OUT * OUT * 3];
    for (int k = 0; k < 300; k++) {
        CHECK_OK(tmixd_augment(&p, &in, &rng, out));
        const int top = (int)tmix_rng_below(&replay, S + 2 * PAD - OUT + 1) - PAD;
        const int left = (int)tmix_rng_below(&replay, S + 2 * PAD - OUT + 1) - PAD;
        CHECK(top >= -PAD && top <= S + PAD - OUT && left >= -PAD && left <= S + PAD - OUT);
        seen_top[top + PAD] = seen_left[left + PAD] = true;
        for (int y = 0; y < OUT; y++)
            for (int x = 0; x < OUT; x++) {
                const int sy = top + y, sx = left + x;
                const uint8_t *o = out + (y * OUT + x) * 3;
                if (sy < 0 || sy >= S || sx < 0 || sx >= S)
                    CHECK(o[0] == 0 && o[1] == 0 && o[2] == 0);
                else
                    CHECK(o[0] == sy && o[1] == sx && o[2] == 1);
            }
    }
    for (int k = 0; k < S + 2 * PAD - OUT + 1; k++)
        CHECK(seen_top[k] && seen_left[k]);
    CHECK(memcmp(&rng, &replay, sizeof rng) == 0); // no other draw
    tmixd_image_free(&in);
    return 0;
}

// NONE at the input's size copies it exactly and draws nothing; with flip it draws one
// uniform, and u < 0.5 mirrors.
static int test_copy_and_flip(void)
{
    enum { H = 7, W = 9, C = 2 };
    tmixd_image in = noise_image(H, W, C, 5);
    tmixd_augment_params p = {.out_h = H, .out_w = W, .crop = TMIXD_CROP_NONE};
    uint8_t out[H * W * C];
    tmix_rng rng, replay;
    tmix_rng_seed(&rng, 11);
    replay = rng;
    CHECK_OK(tmixd_augment(&p, &in, &rng, out));
    CHECK(memcmp(out, in.data, sizeof out) == 0);
    CHECK(memcmp(&rng, &replay, sizeof rng) == 0);
    p.flip = true;
    int flipped = 0;
    for (int k = 0; k < 100; k++) {
        CHECK_OK(tmixd_augment(&p, &in, &rng, out));
        const bool flip = tmix_rng_uniform(&replay) < 0.5;
        flipped += flip;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                CHECK(memcmp(out + (y * W + x) * C, in.data + (y * W + (flip ? W - 1 - x : x)) * C,
                             C) == 0);
    }
    CHECK(flipped > 30 && flipped < 70);
    CHECK(memcmp(&rng, &replay, sizeof rng) == 0);
    tmixd_image_free(&in);
    return 0;
}

// PyTorch's values: interpolate([0, 100], size=4) = [0, 25, 75, 100];
// interpolate([0, 40, 80, 120], size=2) = [20, 100] (align_corners=False, no antialias).
static int test_bilinear_values(void)
{
    tmix_rng rng;
    tmix_rng_seed(&rng, 1);
    tmixd_image in = {0};
    CHECK_OK(tmixd_image_reserve(&in, 1, 2, 1));
    in.data[0] = 0;
    in.data[1] = 100;
    uint8_t out[4];
    tmixd_augment_params p = {.out_h = 1, .out_w = 4, .crop = TMIXD_CROP_NONE};
    CHECK_OK(tmixd_augment(&p, &in, &rng, out));
    CHECK(out[0] == 0 && out[1] == 25 && out[2] == 75 && out[3] == 100);
    CHECK_OK(tmixd_image_reserve(&in, 4, 1, 1)); // the same along rows
    memcpy(in.data, (const uint8_t[]){0, 40, 80, 120}, 4);
    p = (tmixd_augment_params){.out_h = 2, .out_w = 1, .crop = TMIXD_CROP_NONE};
    CHECK_OK(tmixd_augment(&p, &in, &rng, out));
    CHECK(out[0] == 20 && out[1] == 100);
    tmixd_image_free(&in);
    return 0;
}

// One output value of the documented resize, computed on its own: the taps of each axis
// (source = (d + 0.5) n / out - 0.5, clamped below at 0), the row lerps, then the column
// lerp, in float, rounded.
static uint8_t formula_value(const tmixd_image *in, int oh, int ow, int y, int x, int k)
{
    int i[2][2];
    float l[2];
    const int n[2] = {in->h, in->w}, out[2] = {oh, ow}, d[2] = {y, x};
    for (int a = 0; a < 2; a++) {
        double src = ((double)d[a] + 0.5) * n[a] / out[a] - 0.5;
        src = src < 0 ? 0 : src;
        i[a][0] = (int)src < n[a] - 1 ? (int)src : n[a] - 1;
        i[a][1] = i[a][0] < n[a] - 1 ? i[a][0] + 1 : i[a][0];
        l[a] = (float)fmin(src - i[a][0], 1.0);
    }
    float row[2];
    for (int r = 0; r < 2; r++) {
        const uint8_t *p = in->data + (size_t)i[0][r] * in->w * in->c + k;
        const int a = p[i[1][0] * in->c], e = p[i[1][1] * in->c];
        row[r] = a + l[1] * (float)(e - a);
    }
    return (uint8_t)(row[0] + l[0] * (row[1] - row[0]) + 0.5f);
}

// The resize (kept rows, a pass per axis) gives exactly the formula's values, enlarging,
// shrinking and both at once, with 1 and 3 channels.
static int test_resize_formula(void)
{
    tmix_rng rng;
    tmix_rng_seed(&rng, 3);
    uint8_t *out = malloc(90 * 90 * 3);
    for (int t = 0; t < 300; t++) {
        const int c = t % 3 == 0 ? 1 : 3;
        const int h = 1 + (int)tmix_rng_below(&rng, 90), w = 1 + (int)tmix_rng_below(&rng, 90);
        tmixd_augment_params p = {.out_h = 1 + (int)tmix_rng_below(&rng, 90),
                                  .out_w = 1 + (int)tmix_rng_below(&rng, 90),
                                  .crop = TMIXD_CROP_NONE};
        tmixd_image in = noise_image(h, w, c, (uint64_t)t);
        CHECK_OK(tmixd_augment(&p, &in, &rng, out));
        for (int y = 0; y < p.out_h; y++)
            for (int x = 0; x < p.out_w; x++)
                for (int k = 0; k < c; k++)
                    CHECK(out[((size_t)y * p.out_w + x) * c + k] ==
                          formula_value(&in, p.out_h, p.out_w, y, x, k));
        tmixd_image_free(&in);
    }
    free(out);
    return 0;
}

static int test_resize_constant(void)
{
    enum { H = 37, W = 23 };
    static const uint8_t colour[3] = {17, 200, 255};
    tmixd_image in = {0};
    CHECK_OK(tmixd_image_reserve(&in, H, W, 3));
    for (int k = 0; k < H * W; k++)
        memcpy(in.data + 3 * k, colour, 3);
    static const int sizes[][2] = {{64, 48}, {10, 7}, {1, 1}, {37, 100}};
    tmix_rng rng;
    tmix_rng_seed(&rng, 2);
    uint8_t *out = malloc(100 * 100 * 3);
    for (int s = 0; s < COUNT(sizes); s++)
        for (int crop = TMIXD_CROP_NONE; crop <= TMIXD_CROP_RANDOM_RESIZED; crop += 2) {
            tmixd_augment_params p = imagenet;
            p.crop = (tmixd_crop_kind)crop;
            p.out_h = sizes[s][0];
            p.out_w = sizes[s][1];
            CHECK_OK(tmixd_augment(&p, &in, &rng, out));
            for (int k = 0; k < p.out_h * p.out_w; k++)
                CHECK(memcmp(out + 3 * k, colour, 3) == 0);
        }
    free(out);
    tmixd_image_free(&in);
    return 0;
}

// Boxes always lie inside the image with the area and ratio asked for (up to rounding);
// an image too wide for any try falls back to the central crop after exactly 10 tries.
static int test_random_resized_boxes(void)
{
    enum { H = 100, W = 70 };
    tmix_rng rng;
    tmix_rng_seed(&rng, 9);
    double min_frac = 1, max_frac = 0;
    for (int k = 0; k < 5000; k++) {
        const tmixd_crop_box b = tmixd_random_resized_box(&imagenet, H, W, &rng);
        CHECK(b.h >= 1 && b.w >= 1 && b.top >= 0 && b.left >= 0);
        CHECK(b.top + b.h <= H && b.left + b.w <= W);
        const double frac = (double)b.h * b.w / (H * W);
        const double ratio = (double)b.w / b.h;
        min_frac = fmin(min_frac, frac);
        max_frac = fmax(max_frac, frac);
        // Rounding each side by up to 1/2 moves the ratio by at most this much.
        const double slack = 0.5 / b.h + 0.5 * ratio / b.h;
        CHECK(ratio >= 0.75 * (1 - slack) - 1e-9 && ratio <= 4.0 / 3.0 * (1 + slack) + 1e-9);
    }
    CHECK(min_frac < 0.1 && min_frac > 0.06 && max_frac > 0.9);

    tmixd_augment_params wide = imagenet;
    wide.scale_min = wide.scale_max = 1.0f;
    tmix_rng replay = rng;
    const tmixd_crop_box b = tmixd_random_resized_box(&wide, 10, 100, &rng);
    CHECK(b.top == 0 && b.h == 10 && b.w == 13 && b.left == 43); // round(10 * 4/3), centred
    for (int k = 0; k < 20; k++)
        tmix_rng_uniform(&replay);
    CHECK(memcmp(&rng, &replay, sizeof rng) == 0);
    return 0;
}

// RANDOM_RESIZED is the box of tmixd_random_resized_box resized like NONE resizes a crop,
// then the flip draw.
static int test_random_resized_composition(void)
{
    tmixd_image in = noise_image(50, 60, 3, 4), crop = {0};
    uint8_t got[24 * 20 * 3], want[24 * 20 * 3];
    tmix_rng rng, replay;
    tmix_rng_seed(&rng, 21);
    replay = rng;
    for (int k = 0; k < 50; k++) {
        CHECK_OK(tmixd_augment(&imagenet, &in, &rng, got));
        const tmixd_crop_box b = tmixd_random_resized_box(&imagenet, in.h, in.w, &replay);
        CHECK_OK(tmixd_image_reserve(&crop, b.h, b.w, 3));
        for (int y = 0; y < b.h; y++)
            memcpy(crop.data + (size_t)y * b.w * 3,
                   in.data + ((size_t)(b.top + y) * in.w + b.left) * 3, (size_t)b.w * 3);
        tmixd_augment_params none = imagenet;
        none.crop = TMIXD_CROP_NONE;
        CHECK_OK(tmixd_augment(&none, &crop, &replay, want)); // makes the flip draw too
        CHECK(memcmp(got, want, sizeof got) == 0);
    }
    CHECK(memcmp(&rng, &replay, sizeof rng) == 0);
    tmixd_image_free(&in);
    tmixd_image_free(&crop);
    return 0;
}

static int test_bad_params(void)
{
    tmixd_image in = noise_image(8, 8, 3, 1), empty = {0};
    uint8_t out[16 * 16 * 3];
    tmix_rng rng;
    tmix_rng_seed(&rng, 1);
    tmixd_augment_params p = imagenet;
    p.out_h = 0;
    CHECK_ERR(tmixd_augment(&p, &in, &rng, out), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "output size"));
    CHECK_ERR(tmixd_augment(&imagenet, &empty, &rng, out), TMIX_EINVAL);
    p = (tmixd_augment_params){.out_h = 16, .out_w = 16, .crop = TMIXD_CROP_PAD, .pad = 3};
    CHECK_ERR(tmixd_augment(&p, &in, &rng, out), TMIX_EINVAL); // 8 + 6 < 16
    CHECK(strstr(tmix_last_error(), "padded by 3"));
    p.pad = 4;
    CHECK_OK(tmixd_augment(&p, &in, &rng, out));
    p.pad = -1;
    CHECK_ERR(tmixd_augment(&p, &in, &rng, out), TMIX_EINVAL);
    p = imagenet;
    p.scale_min = 0;
    CHECK_ERR(tmixd_augment(&p, &in, &rng, out), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "scale"));
    p = imagenet;
    p.ratio_min = 2;
    CHECK_ERR(tmixd_augment(&p, &in, &rng, out), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "ratio"));
    p = imagenet;
    p.ratio_max = NAN;
    CHECK_ERR(tmixd_augment(&p, &in, &rng, out), TMIX_EINVAL);
    p = imagenet;
    p.crop = (tmixd_crop_kind)7;
    CHECK_ERR(tmixd_augment(&p, &in, &rng, out), TMIX_EINVAL);
    CHECK(strstr(tmix_last_error(), "crop kind 7"));
    tmixd_image_free(&in);
    return 0;
}

static const test_case tests[] = {
    {"augment.deterministic", test_deterministic},
    {"augment.pad_window", test_pad_window},
    {"augment.copy_and_flip", test_copy_and_flip},
    {"augment.bilinear_values", test_bilinear_values},
    {"augment.resize_formula", test_resize_formula},
    {"augment.resize_constant", test_resize_constant},
    {"augment.random_resized_boxes", test_random_resized_boxes},
    {"augment.random_resized_composition", test_random_resized_composition},
    {"augment.bad_params", test_bad_params},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
