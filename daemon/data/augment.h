// Per-sample augmentation of decoded images: a crop (none, pad-and-crop, or random resized
// crop), a bilinear resize to the output size, then an optional horizontal flip. Every random
// choice comes from the caller's tmix_rng in a fixed order, so the output is a function of
// the input image, the parameters and the rng state (README.md lists the draws).
#ifndef TMIXD_AUGMENT_H
#define TMIXD_AUGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "dataset.h"
#include "rng.h"

typedef enum { TMIXD_CROP_NONE, TMIXD_CROP_PAD, TMIXD_CROP_RANDOM_RESIZED } tmixd_crop_kind;

typedef struct {
    int out_h, out_w;
    tmixd_crop_kind crop;
    int pad;                    // PAD: zero pixels added on every side before the random crop
    float scale_min, scale_max; // RANDOM_RESIZED: area fraction (torchvision: 0.08, 1.0)
    float ratio_min, ratio_max; // RANDOM_RESIZED: aspect ratio w/h (torchvision: 3/4, 4/3)
    bool flip;                  // horizontal flip with probability 1/2
} tmixd_augment_params;

// Augments in (uint8 HWC) into out (uint8 HWC, out_h x out_w x in->c):
//   NONE            bilinear resize of the whole image to the output size (a copy when equal);
//                   no draws.
//   PAD             draws top = below(H + 2 pad - out_h + 1), then left = below(W + 2 pad -
//                   out_w + 1), and copies that out_h x out_w window of the zero-padded image;
//                   TMIX_EINVAL when the padded image is smaller than the output.
//   RANDOM_RESIZED  torchvision RandomResizedCrop.get_params (tmixd_random_resized_box), then a
//                   bilinear resize of that window to the output size.
// Then, when p->flip: one uniform draw u; u < 0.5 mirrors the output left to right.
// Bilinear means PyTorch's interpolate(mode="bilinear", align_corners=False, antialias=False),
// rounded to the nearest integer.
int tmixd_augment(const tmixd_augment_params *p, const tmixd_image *in, tmix_rng *rng,
                  uint8_t *out);

// tmixd_augment in two halves, for a caller that reads only the window it needs: the crop's
// draws for an h x w image (*window, in the image's coordinates: for PAD it may leave the
// image; TMIX_EINVAL as tmixd_augment for bad parameters); then, for in holding at least
// the part of the image inside that window (tmixd_image's top and left place it), the
// window resized (or copied) to the output and the flip's draw.
int tmixd_augment_window(const tmixd_augment_params *p, int h, int w, tmix_rng *rng,
                         tmixd_crop_box *window);
int tmixd_augment_apply(const tmixd_augment_params *p, const tmixd_image *in,
                        tmixd_crop_box window, tmix_rng *rng, uint8_t *out);

// torchvision's RandomResizedCrop.get_params for an h x w image: up to 10 tries of
// (area = h w U(scale_min, scale_max), ratio = exp(U(log ratio_min, log ratio_max)),
// cw = round(sqrt(area ratio)), ch = round(sqrt(area / ratio)), half to even); the first with
// 0 < cw <= w and 0 < ch <= h draws top = below(h - ch + 1) then left = below(w - cw + 1);
// if none fits, the central crop clamped to the ratio range. Draws 2 uniforms per try.
tmixd_crop_box tmixd_random_resized_box(const tmixd_augment_params *p, int h, int w, tmix_rng *rng);

#endif
