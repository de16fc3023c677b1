// Every golden suite by name; each name N has a fixture tests/golden/N.safetensors and a
// runner tmix_golden_N. Adding an op means adding its suite here.
#ifndef TMIX_GOLDEN_SUITES_H
#define TMIX_GOLDEN_SUITES_H

#include "../golden.h"

#define TMIX_GOLDEN_SUITES(X)                                                           \
    /* kernels/golden/nn.c */                                                           \
    X(conv2d) X(batchnorm) X(relu) X(maxpool2d) X(avgpool) X(linear)                    \
    /* kernels/golden/warp.c */                                                         \
    X(affine_grid) X(grid_sample) X(warp) X(resize_bilinear) X(minmax_normalize)        \
    /* kernels/golden/mix.c */                                                          \
    X(softmax_channel) X(blend) X(cross_entropy) X(sgd) X(preprocess)                   \
    /* kernels/golden/assemble.c */                                                     \
    X(add) X(concat_channels) X(fill_channels) X(gather) X(cam) X(box_masks)

#define TMIX_SUITE_DECL(name) \
    int tmix_golden_##name(tmix_backend *be, tmix_golden *g, tmix_golden_report report, void *ctx);
TMIX_GOLDEN_SUITES(TMIX_SUITE_DECL)
#undef TMIX_SUITE_DECL

#endif
