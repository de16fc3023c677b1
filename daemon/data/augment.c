// Crops, bilinear resize and flip of one uint8 HWC image; see augment.h.
#include "augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

// Where output index d of an axis reads from when n_in pixels are resized to n_out: the
// taps i0 <= i1 and the weight of i1. PyTorch's rule for align_corners=False: source =
// (d + 0.5) n_in / n_out - 0.5, clamped below at 0; i1 = i0 + 1 except at the last pixel.
typedef struct {
    int i0, i1;
    float l1;
} axis_tap;

static axis_tap source_tap(int d, int n_in, int n_out)
{
    double src = ((double)d + 0.5) * n_in / n_out - 0.5;
    if (src < 0)
        src = 0;
    axis_tap t;
    t.i0 = (int)src;
    if (t.i0 > n_in - 1)
        t.i0 = n_in - 1;
    t.i1 = t.i0 < n_in - 1 ? t.i0 + 1 : t.i0;
    t.l1 = (float)fmin(src - t.i0, 1.0);
    return t;
}

// Row y of the window resized to out_w columns: each value interpolated between its two
// taps in float, as the second (vertical) pass expects. c is a constant where inlined.
static inline void resize_row(const uint8_t *r, const axis_tap *xs, int out_w, int c, float *o)
{
    for (int x = 0; x < out_w; x++) {
        const uint8_t *a = r + (size_t)xs[x].i0 * c, *e = r + (size_t)xs[x].i1 * c;
        const float l1 = xs[x].l1;
        for (int k = 0; k < c; k++)
            o[x * c + k] = a[k] + l1 * (float)(e[k] - a[k]);
    }
}

// Resizes the window b of in (inside the image) to out_h x out_w into out. Rows first, then
// columns, the rows kept for the next output row (an enlarged window reads each row for
// several): out = top + l1y (bottom - top), top and bottom the resized rows, rounded.
static int resize_window(const tmixd_image *in, tmixd_crop_box b, int out_h, int out_w,
                         uint8_t *out) // (out_h, out_w, in->c)
{
    const int c = in->c;
    const size_t row = (size_t)in->w * c, width = (size_t)out_w * c;
    if (b.h == out_h && b.w == out_w) {
        for (int y = 0; y < out_h; y++)
            memcpy(out + (size_t)y * width,
                   in->data + (size_t)(b.top + y) * row + (size_t)b.left * c, width);
        return 0;
    }
    axis_tap *xs = malloc((size_t)out_w * sizeof *xs + 2 * width * sizeof(float));
    if (!xs)
        return tmix_fail(TMIX_ENOMEM, "augment: out of memory for a %d-wide resize", out_w);
    float *rows[2] = {(float *)(xs + out_w), (float *)(xs + out_w) + width};
    int held[2] = {-1, -1}; // the window row each of rows holds
    for (int x = 0; x < out_w; x++)
        xs[x] = source_tap(x, b.w, out_w);
    for (int y = 0; y < out_h; y++) {
        const axis_tap ty = source_tap(y, b.h, out_h);
        const int want[2] = {ty.i0, ty.i1};
        int at[2];
        for (int t = 0; t < 2; t++) {
            at[t] = held[0] == want[t] ? 0 : held[1] == want[t] ? 1 : -1;
            if (at[t] >= 0)
                continue;
            at[t] = t == 1 ? 1 - at[0] : held[0] == want[1] ? 1 : 0; // keep the other tap's
            const uint8_t *r = in->data + (size_t)(b.top + want[t]) * row + (size_t)b.left * c;
            if (c == 3)
                resize_row(r, xs, out_w, 3, rows[at[t]]);
            else
                resize_row(r, xs, out_w, c, rows[at[t]]);
            held[at[t]] = want[t];
        }
        const float *top = rows[at[0]], *bottom = rows[at[1]];
        uint8_t *o = out + (size_t)y * width;
        for (size_t i = 0; i < width; i++)
            o[i] = (uint8_t)(top[i] + ty.l1 * (bottom[i] - top[i]) + 0.5f);
    }
    free(xs);
    return 0;
}

// Copies the out_h x out_w window at b (in padded coordinates) of in, zeros outside it.
static void pad_window(const tmixd_image *in, tmixd_crop_box b, uint8_t *out)
{
    const int c = in->c;
    for (int y = 0; y < b.h; y++) {
        uint8_t *o = out + (size_t)y * b.w * c;
        const int sy = b.top + y;
        memset(o, 0, (size_t)b.w * c);
        if (sy < 0 || sy >= in->h)
            continue;
        const int x0 = b.left < 0 ? -b.left : 0;
        const int x1 = in->w - b.left < b.w ? in->w - b.left : b.w; // exclusive
        if (x1 > x0)
            memcpy(o + (size_t)x0 * c, in->data + ((size_t)sy * in->w + b.left + x0) * c,
                   (size_t)(x1 - x0) * c);
    }
}

static void flip_rows(uint8_t *img, int h, int w, int c)
{
    for (int y = 0; y < h; y++) {
        uint8_t *r = img + (size_t)y * w * c;
        for (int x = 0; x < w / 2; x++)
            for (int k = 0; k < c; k++) {
                const uint8_t t = r[(size_t)x * c + k];
                r[(size_t)x * c + k] = r[(size_t)(w - 1 - x) * c + k];
                r[(size_t)(w - 1 - x) * c + k] = t;
            }
    }
}

tmixd_crop_box tmixd_random_resized_box(const tmixd_augment_params *p, int h, int w, tmix_rng *rng)
{
    const double area = (double)h * w;
    const double log_lo = log(p->ratio_min), log_hi = log(p->ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        const double target =
            area * (p->scale_min + (p->scale_max - p->scale_min) * tmix_rng_uniform(rng));
        const double ratio = exp(log_lo + (log_hi - log_lo) * tmix_rng_uniform(rng));
        const double cw = nearbyint(sqrt(target * ratio)), ch = nearbyint(sqrt(target / ratio));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            tmixd_crop_box b = {0, 0, (int)ch, (int)cw};
            b.top = (int)tmix_rng_below(rng, (uint64_t)(h - b.h + 1));
            b.left = (int)tmix_rng_below(rng, (uint64_t)(w - b.w + 1));
            return b;
        }
    }
    // No try fitted: the central crop, narrowed to the nearest allowed aspect ratio.
    tmixd_crop_box b = {0, 0, h, w};
    const double in_ratio = (double)w / h;
    if (in_ratio < p->ratio_min)
        b.h = (int)nearbyint(w / (double)p->ratio_min);
    else if (in_ratio > p->ratio_max)
        b.w = (int)nearbyint(h * (double)p->ratio_max);
    b.h = b.h < 1 ? 1 : b.h > h ? h : b.h;
    b.w = b.w < 1 ? 1 : b.w > w ? w : b.w;
    b.top = (h - b.h) / 2;
    b.left = (w - b.w) / 2;
    return b;
}

static int check_params(const tmixd_augment_params *p, int h, int w)
{
    if (p->out_h <= 0 || p->out_w <= 0)
        return tmix_fail(TMIX_EINVAL, "augment: output size %dx%d is not positive", p->out_h,
                         p->out_w);
    if (h <= 0 || w <= 0)
        return tmix_fail(TMIX_EINVAL, "augment: input image %dx%d is empty", h, w);
    switch (p->crop) {
    case TMIXD_CROP_NONE:
        return 0;
    case TMIXD_CROP_PAD:
        if (p->pad < 0 || p->pad > 1 << 16)
            return tmix_fail(TMIX_EINVAL, "augment: pad %d is outside [0, 65536]", p->pad);
        if (h + 2 * p->pad < p->out_h || w + 2 * p->pad < p->out_w)
            return tmix_fail(TMIX_EINVAL,
                             "augment: a %dx%d image padded by %d is smaller than the %dx%d output",
                             h, w, p->pad, p->out_h, p->out_w);
        return 0;
    case TMIXD_CROP_RANDOM_RESIZED:
        if (!(p->scale_min > 0 && p->scale_min <= p->scale_max && isfinite(p->scale_max)))
            return tmix_fail(TMIX_EINVAL, "augment: scale range [%g, %g] needs 0 < min <= max",
                             p->scale_min, p->scale_max);
        if (!(p->ratio_min > 0 && p->ratio_min <= p->ratio_max && isfinite(p->ratio_max)))
            return tmix_fail(TMIX_EINVAL, "augment: ratio range [%g, %g] needs 0 < min <= max",
                             p->ratio_min, p->ratio_max);
        return 0;
    }
    return tmix_fail(TMIX_EINVAL, "augment: unknown crop kind %d", (int)p->crop);
}

int tmixd_augment_window(const tmixd_augment_params *p, int h, int w, tmix_rng *rng,
                         tmixd_crop_box *window)
{
    TMIX_TRY(check_params(p, h, w));
    tmixd_crop_box b = {0, 0, h, w};
    if (p->crop == TMIXD_CROP_PAD) {
        b.h = p->out_h;
        b.w = p->out_w;
        b.top = (int)tmix_rng_below(rng, (uint64_t)(h + 2 * p->pad - p->out_h + 1)) - p->pad;
        b.left = (int)tmix_rng_below(rng, (uint64_t)(w + 2 * p->pad - p->out_w + 1)) - p->pad;
    } else if (p->crop == TMIXD_CROP_RANDOM_RESIZED) {
        b = tmixd_random_resized_box(p, h, w, rng);
    }
    *window = b;
    return 0;
}

int tmixd_augment_apply(const tmixd_augment_params *p, const tmixd_image *in,
                        tmixd_crop_box window, tmix_rng *rng, uint8_t *out) // (out_h, out_w, c)
{
    if (!in->data || in->h <= 0 || in->w <= 0 || in->c <= 0)
        return tmix_fail(TMIX_EINVAL, "augment: input image %dx%dx%d is empty", in->h, in->w,
                         in->c);
    // In the coordinates of the part of the image that in holds. What of the window lies
    // inside the image lies inside that part; for PAD the rest is outside both (zeros).
    tmixd_crop_box b = window;
    b.top -= in->top;
    b.left -= in->left;
    if (p->crop == TMIXD_CROP_PAD) {
        pad_window(in, b, out);
    } else {
        if (b.top < 0 || b.left < 0 || b.top + b.h > in->h || b.left + b.w > in->w)
            return tmix_fail(TMIX_EINVAL, "augment: the window (%d,%d) %dx%d is not inside the "
                             "part (%d,%d) %dx%d of the image read", window.top, window.left,
                             window.h, window.w, in->top, in->left, in->h, in->w);
        TMIX_TRY(resize_window(in, b, p->out_h, p->out_w, out));
    }
    if (p->flip && tmix_rng_uniform(rng) < 0.5)
        flip_rows(out, p->out_h, p->out_w, in->c);
    return 0;
}

int tmixd_augment(const tmixd_augment_params *p, const tmixd_image *in, tmix_rng *rng,
                  uint8_t *out) // (out_h, out_w, in->c)
{
    tmixd_crop_box window;
    TMIX_TRY(tmixd_augment_window(p, in->h, in->w, rng, &window));
    return tmixd_augment_apply(p, in, window, rng, out);
}
