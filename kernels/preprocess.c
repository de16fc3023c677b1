// preprocess: the input pipeline's last step on the backend. Decoded uint8 images (B, H, W,
// Cs) become normalised float planes (B, C, OH, OW): a crop window per sample that may leave
// the image (torchvision's RandomCrop with zero padding), an optional left-right flip,
// ToTensor (v / 255) and Normalize ((v - mean) / std). A 1-channel source feeding 3 output
// channels is replicated (grayscale datasets on RGB models).
#include "check.h"
#include "cpu.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>

int tmix_preprocess(tmix_backend *be,
                    tmix_tensor *out,       // (B, C, OH, OW) f32
                    const tmix_tensor *src, // (B, H, W, Cs) u8, Cs == C or Cs == 1
                    const tmix_crop *crops, // [B]
                    const float *mean,      // [C]
                    const float *std)       // [C]
{
    static const char op[] = "preprocess";
    TMIX_CHECK_BACKEND(op, be, preprocess);
    TMIX_TRY(tmix_check_tensor(op, "src", src, be, TMIX_U8, 4));
    TMIX_TRY(tmix_check_shape(op, "out", out, be, TMIX_F32, 4,
                              (int64_t[]){src->shape[0], -1, -1, -1}));
    int64_t C = out->shape[1], Cs = src->shape[3];
    if (Cs != C && !(Cs == 1 && C == 3)) {
        char s[96], o[96];
        return tmix_fail(TMIX_ESHAPE,
                         "%s: src %s has %lld channels but out %s has %lld (must be equal, or "
                         "1 replicated to 3)", op, tmix_shape_str(src, s, sizeof s),
                         (long long)Cs, tmix_shape_str(out, o, sizeof o), (long long)C);
    }
    if (!crops || !mean || !std)
        return tmix_fail(TMIX_EINVAL, "%s: %s is NULL", op,
                         !crops ? "crops" : !mean ? "mean" : "std");
    for (int64_t c = 0; c < C; c++)
        if (!isfinite(mean[c]) || !isfinite(std[c]) || std[c] == 0)
            return tmix_fail(TMIX_EINVAL, "%s: channel %lld has mean %g and std %g (finite, "
                             "std != 0 needed)", op, (long long)c, mean[c], std[c]);
    TMIX_CALL(op, be, preprocess, out, src, crops, mean, std);
}

int tmix_cpu_preprocess(tmix_backend *be, tmix_tensor *out, const tmix_tensor *src,
                        const tmix_crop *crops, const float *mean, const float *std)
{
    int64_t B = src->shape[0], H = src->shape[1], W = src->shape[2], Cs = src->shape[3];
    int64_t C = out->shape[1], OH = out->shape[2], OW = out->shape[3];
    // Every output value is one of 256 per channel: a table computed in double, rounded once.
    float *lut = malloc((size_t)C * 256 * sizeof *lut); // (C, 256)
    if (!lut)
        return tmix_fail(TMIX_ENOMEM, "preprocess: table of %lld channels", (long long)C);
    for (int64_t c = 0; c < C; c++)
        for (int v = 0; v < 256; v++)
            lut[c * 256 + v] = (float)(((double)v / 255.0 - mean[c]) / std[c]);
    const uint8_t *s = src->data;
    float *y = tmix_f32(out);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        tmix_crop cr = crops[b];
        const uint8_t *sb = s + b * H * W * Cs; // (H, W, Cs)
        for (int64_t c = 0; c < C; c++) {
            const float *t = lut + c * 256;
            const uint8_t *sc = sb + (Cs == 1 ? 0 : c);
            float *yc = y + (b * C + c) * OH * OW; // (OH, OW)
            for (int64_t i = 0; i < OH; i++) {
                int64_t yy = cr.y + i;
                for (int64_t j = 0; j < OW; j++) {
                    int64_t xx = cr.x + (cr.flip ? OW - 1 - j : j);
                    bool inside = yy >= 0 && yy < H && xx >= 0 && xx < W;
                    yc[i * OW + j] = t[inside ? sc[(yy * W + xx) * Cs] : 0];
                }
            }
        }
    }
    free(lut);
    return 0;
}
