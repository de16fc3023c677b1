// The architectures tmix can train, each with the nodes and names of its zoo.c twin (the
// frozen teacher it becomes), built with trainable parameters (classifier_build.c).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classifier_net.h"
#include "error.h"

typedef tmix_cls_builder builder;

enum { INPUT = TMIX_CLS_INPUT };

// akamaster's option A shortcut, F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4,
// planes // 4)), as zoo.c runs it: a fixed 1x1 stride-2 convolution whose weight copies input
// channel c to output channel planes / 4 + c.
static int option_a(builder *b, int x, const char *p, int in, int planes)
{
    if (b->rc < 0)
        return b->rc;
    char name[96];
    snprintf(name, sizeof name, "%s.shortcut", p);
    if (in + 2 * (planes / 4) != planes)
        return b->rc = tmix_fail(TMIX_EINVAL, "%s: option A cannot pad %d channels to %d", name, in,
                                 planes);
    float *w = calloc((size_t)planes * (size_t)in, sizeof *w); // (planes, in, 1, 1)
    if (!w)
        return b->rc = tmix_fail(TMIX_ENOMEM, "%s: %d x %d weight", name, planes, in);
    for (int c = 0; c < in; c++)
        w[(planes / 4 + c) * in + c] = 1.0f;
    int node = tmix_cls_conv_fixed(b, x, name, w, planes, 1, 2, 0);
    free(w);
    return node;
}

// akamaster's BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), the shortcut
// option A where the shape changes.
static int basic_block_a(builder *b, int x, const char *p, int in, int planes, int stride)
{
    int y = tmix_cls_relu(b, tmix_cls_conv(b, x, p, "conv1", "bn1", planes, 3, stride, 1));
    y = tmix_cls_conv(b, y, p, "conv2", "bn2", planes, 3, 1, 1);
    int sc = stride != 1 || in != planes ? option_a(b, x, p, in, planes) : x;
    return tmix_cls_relu(b, tmix_cls_add(b, y, sc));
}

// akamaster/pytorch_resnet_cifar10 resnet20: a 3x3/1 stem of 16 channels with batch norm,
// three stages of 3 blocks of 16, 32, 64 planes (stride 2 from the second), global average
// pool and `linear`.
static int cifar_resnet20(builder *b)
{
    int x = tmix_cls_relu(b, tmix_cls_conv(b, INPUT, NULL, "conv1", "bn1", 16, 3, 1, 1));
    int in = 16;
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 3; i++) {
            char p[32];
            snprintf(p, sizeof p, "layer%d.%d", s + 1, i);
            x = basic_block_a(b, x, p, in, 16 << s, s > 0 && i == 0 ? 2 : 1);
            in = 16 << s;
        }
    tmix_cls_linear(b, tmix_cls_avgpool(b, x), "linear");
    return b->rc;
}

// One table for the lookup and the public list of names.
// clang-format off
#define TMIX_CLS_ARCHS(A) A(cifar_resnet20)

static const tmix_cls_arch archs[] = {
#define ARCH_ENTRY(fn) {#fn, fn},
    TMIX_CLS_ARCHS(ARCH_ENTRY)
#undef ARCH_ENTRY
};

const char *const tmix_classifier_archs[] = {
#define ARCH_NAME(fn) #fn,
    TMIX_CLS_ARCHS(ARCH_NAME)
#undef ARCH_NAME
    NULL,
};
// clang-format on

const tmix_cls_arch *tmix_cls_arch_find(const char *name)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(archs[i].name, name) == 0)
            return &archs[i];
    return NULL;
}
