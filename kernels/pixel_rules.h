// Which pixels an op reads, with what weights, and how a value is written for a trainer: the
// rules that the CPU twins and the CUDA kernels must apply identically, written once and
// compiled by both (as C, and by nvcc for host and device). The arithmetic goes through
// TMIX_DMUL / TMIX_DADD / TMIX_DSUB (double) and TMIX_FMUL / TMIX_FADD (float), which on
// the GPU round each operation (nvcc would otherwise fuse a multiply and an add,
// and a point on a pixel edge would move); the C code is built with -ffp-contract=off
// (meson.build), so both round alike.
#ifndef TMIX_PIXEL_RULES_H
#define TMIX_PIXEL_RULES_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "params.h"

#ifdef __CUDACC__
#define TMIX_HD static inline __host__ __device__
#else
#define TMIX_HD static inline
#endif
#ifdef __CUDA_ARCH__
#define TMIX_DMUL(a, b) __dmul_rn((a), (b))
#define TMIX_DADD(a, b) __dadd_rn((a), (b))
#define TMIX_DSUB(a, b) __dsub_rn((a), (b))
#else
#define TMIX_DMUL(a, b) ((a) * (b))
#define TMIX_DADD(a, b) ((a) + (b))
#define TMIX_DSUB(a, b) ((a) - (b))
#endif
#ifdef __CUDA_ARCH__
#define TMIX_FMUL(a, b) __fmul_rn((a), (b))
#define TMIX_FADD(a, b) __fadd_rn((a), (b))
#else
#define TMIX_FMUL(a, b) ((a) * (b))
#define TMIX_FADD(a, b) ((a) + (b))
#endif

// ---- grid_sample: bilinear, zero padding, align_corners=False ----------------------------

// The four neighbours of one sampling point, in the order nw, ne, sw, se.
typedef struct {
    int64_t idx[4]; // y * W + x of the neighbour, or -1 when it lies outside (reads zero)
    double w[4];    // bilinear weights
    double tx, ty;  // position inside the cell, in [0, 1): what the weights depend on
} tmix_taps;

typedef enum {
    TMIX_TAPS_INSIDE,    // some neighbour may be in the image: idx, w, tx, ty are set
    TMIX_TAPS_OUTSIDE,   // every neighbour reads zero: output 0, no gradient
    TMIX_TAPS_NONFINITE, // a coordinate is NaN or infinite: tx (ty) is NaN when x (y) is
} tmix_taps_kind;

// Finds the neighbours of grid point g on an H x W image. A point outside [-1, W) x
// [-1, H) in pixels has none; the test is written so that it comes before any conversion
// to an integer, which huge coordinates would overflow. A point exactly on -1 keeps its
// in-image neighbour: its value there is 0, but its gradient w.r.t. the grid is not, as
// in PyTorch. Non-finite coordinates follow PyTorch too: its weights become NaN, so the
// output is NaN and the grid gradient is NaN in x when y is non-finite (the x gradient is
// made of y weights) and in y when x is; din gets nothing from such a point.
TMIX_HD tmix_taps_kind tmix_find_taps(tmix_taps *t,   // the neighbours found
                                      const float *g, // (2) the grid point (gx, gy)
                                      int64_t H, int64_t W)
{
    const double ix = TMIX_DMUL(TMIX_DSUB(TMIX_DMUL(TMIX_DADD((double)g[0], 1.0), (double)W), 1.0), 0.5);
    const double iy = TMIX_DMUL(TMIX_DSUB(TMIX_DMUL(TMIX_DADD((double)g[1], 1.0), (double)H), 1.0), 0.5);
    if (!isfinite(ix) || !isfinite(iy)) {
        t->tx = isfinite(ix) ? 0.0 : (double)NAN;
        t->ty = isfinite(iy) ? 0.0 : (double)NAN;
        return TMIX_TAPS_NONFINITE;
    }
    if (!(ix >= -1.0 && ix < (double)W && iy >= -1.0 && iy < (double)H))
        return TMIX_TAPS_OUTSIDE;
    const double fx = floor(ix), fy = floor(iy);
    const int64_t x0 = (int64_t)fx, y0 = (int64_t)fy;
    t->tx = ix - fx;
    t->ty = iy - fy;
    t->w[0] = (1.0 - t->tx) * (1.0 - t->ty);
    t->w[1] = t->tx * (1.0 - t->ty);
    t->w[2] = (1.0 - t->tx) * t->ty;
    t->w[3] = t->tx * t->ty;
    for (int k = 0; k < 4; k++) {
        const int64_t x = x0 + (k & 1), y = y0 + (k >> 1);
        t->idx[k] = x >= 0 && x < W && y >= 0 && y < H ? y * W + x : -1;
    }
    return TMIX_TAPS_INSIDE;
}

// ---- resize_bilinear: PyTorch's area_pixel_compute_source_index ---------------------------

// Where output index d of an axis reads from: indices i0 <= i1 of the input and their
// weights. scale = in / out, source = (d + 0.5) * scale - 0.5 clamped below at 0,
// i0 = floor(source) clamped to the last pixel, and i1 = i0 + 1 except on the last pixel,
// where both taps read it.
typedef struct {
    int64_t i0, i1;
    double l0, l1;
} tmix_axis_tap;

TMIX_HD tmix_axis_tap tmix_source_tap(int64_t d, int64_t in, int64_t out)
{
    const double scale = (double)in / (double)out;
    double src = TMIX_DSUB(TMIX_DMUL(scale, (double)d + 0.5), 0.5);
    if (src < 0)
        src = 0;
    tmix_axis_tap t;
    t.i0 = (int64_t)floor(src);
    if (t.i0 > in - 1)
        t.i0 = in - 1;
    t.i1 = t.i0 + (t.i0 < in - 1 ? 1 : 0);
    t.l1 = fmin(fmax(src - (double)t.i0, 0.0), 1.0);
    t.l0 = 1.0 - t.l1;
    return t;
}

// ---- maxpool2d: PyTorch's MaxPool2d ------------------------------------------------------

// The rows [w->hs, w->he) and columns [w->ws, w->we) of an (H, W) plane that output window
// (oh, ow) of a max pool covers: the padding left out.
typedef struct {
    int64_t hs, he, ws, we;
} tmix_window;

TMIX_HD tmix_window tmix_window_at(int64_t H, int64_t W, int64_t oh, int64_t ow,
                                   tmix_pool2d_params p)
{
    const int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
    tmix_window w;
    w.hs = h0 < 0 ? 0 : h0;
    w.ws = w0 < 0 ? 0 : w0;
    w.he = h0 + p.kernel_h < H ? h0 + p.kernel_h : H;
    w.we = w0 + p.kernel_w < W ? w0 + p.kernel_w : W;
    return w;
}

// Index in the (H, W) plane of the maximum of output window (oh, ow), scanning rows then
// columns. The first in-image position starts as the answer with -inf as its value, so a
// window of -inf picks its first element, as PyTorch does; later NaNs replace earlier ones.
TMIX_HD int64_t tmix_window_argmax(const float *x, // (H, W)
                                   int64_t H, int64_t W, int64_t oh, int64_t ow,
                                   tmix_pool2d_params p)
{
    const tmix_window win = tmix_window_at(H, W, oh, ow, p);
    int64_t best = win.hs * W + win.ws;
    float max = -INFINITY;
    for (int64_t ih = win.hs; ih < win.he; ih++) {
        for (int64_t iw = win.ws; iw < win.we; iw++) {
            const float v = x[ih * W + iw];
            if (v > max || isnan(v)) {
                max = v;
                best = ih * W + iw;
            }
        }
    }
    return best;
}

// ---- encode_images: the values a trainer receives -------------------------------------------

// IEEE half from float, rounding to nearest even (C11 has no _Float16): what
// torch.Tensor.half() gives, with every NaN made the quiet NaN of its sign.
TMIX_HD uint16_t tmix_half_from_float(float f)
{
    uint32_t x;
#ifdef __CUDA_ARCH__
    x = __float_as_uint(f);
#else
    memcpy(&x, &f, sizeof x);
#endif
    const uint32_t sign = (x >> 16) & 0x8000u, abs = x & 0x7fffffffu;
    if (abs >= 0x7f800000u) // inf or nan
        return (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
    if (abs >= 0x477ff000u) // rounds to beyond the largest half
        return (uint16_t)(sign | 0x7c00u);
    if (abs < 0x38800000u) // a subnormal half (or zero): |f| / 2^-24, exact, rounded
        return (uint16_t)(sign | (uint32_t)lrintf(fabsf(f) * 16777216.0f));
    const uint32_t mant = abs & 0x1fffu, base = (abs - 0x38000000u) >> 13;
    const uint32_t up = mant > 0x1000u || (mant == 0x1000u && (base & 1u));
    return (uint16_t)(sign | (base + up));
}

// A normalised value back to a pixel: v * 255 std + 255 mean (each product and the sum
// rounded to float), rounded to nearest even and clamped to [0, 255]; NaN gives 0.
TMIX_HD uint8_t tmix_pixel_from_value(float v, float mean, float std)
{
    const float px = TMIX_FADD(TMIX_FMUL(v, TMIX_FMUL(255.0f, std)), TMIX_FMUL(255.0f, mean));
    return (uint8_t)(px >= 255 ? 255 : px > 0 ? lrintf(px) : 0);
}

#endif
