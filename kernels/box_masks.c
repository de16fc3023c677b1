// box_masks: the two masks of a CutMix pair, masks[b, 1] = 1 inside boxes[b] and 0 outside,
// masks[b, 0] = 1 - masks[b, 1], so that blend with K = 2 pastes the box of the second image
// into the first. boxes is a host array, so that every box is checked before anything is
// written.
#include "check.h"
#include "cpu.h"
#include "ops.h"

int tmix_box_masks(tmix_backend *be,
                   tmix_tensor *masks,     // (B, 2, H, W)
                   const tmix_box *boxes)  // [B], host
{
    static const char op[] = "box_masks";
    TMIX_CHECK_BACKEND(op, be, box_masks);
    TMIX_TRY(tmix_check_shape(op, "masks", masks, be, TMIX_F32, 4, (int64_t[]){-1, 2, -1, -1}));
    if (!boxes)
        return tmix_fail(TMIX_EINVAL, "%s: boxes is NULL", op);
    int64_t B = masks->shape[0], H = masks->shape[2], W = masks->shape[3];
    for (int64_t b = 0; b < B; b++) {
        tmix_box r = boxes[b];
        if (r.y0 < 0 || r.y0 > r.y1 || r.y1 > H || r.x0 < 0 || r.x0 > r.x1 || r.x1 > W) {
            char s[96];
            return tmix_fail(TMIX_EINVAL,
                             "%s: boxes[%lld] is rows [%d, %d) columns [%d, %d), outside masks "
                             "%s (0 <= y0 <= y1 <= %lld, 0 <= x0 <= x1 <= %lld)",
                             op, (long long)b, r.y0, r.y1, r.x0, r.x1,
                             tmix_shape_str(masks, s, sizeof s), (long long)H, (long long)W);
        }
    }
    TMIX_CALL(op, be, box_masks, masks, boxes);
}

int tmix_cpu_box_masks(tmix_backend *be, tmix_tensor *masks, const tmix_box *boxes)
{
    (void)be;
    int64_t B = masks->shape[0], H = masks->shape[2], W = masks->shape[3];
    float *m = tmix_f32(masks);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        tmix_box r = boxes[b];
        float *m0 = m + b * 2 * H * W, *m1 = m0 + H * W; // (H, W) each
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < W; j++) {
                bool inside = i >= r.y0 && i < r.y1 && j >= r.x0 && j < r.x1;
                m1[i * W + j] = inside ? 1.0f : 0.0f;
                m0[i * W + j] = inside ? 0.0f : 1.0f;
            }
    }
    return 0;
}
