// The zoo's architectures, each as in the repository its state_dict names come from,
// described once through net.h's builder interface: graph.c builds them frozen from a
// teacher file, classifier_build.c trainable with fresh weights.
#include "zoo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "error.h"
#include "teacher.h"

typedef tmix_net_builder builder;

enum { INPUT = TMIX_NET_INPUT };

// akamaster's option A shortcut, F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4,
// planes // 4)): a fixed 1x1 stride-2 convolution whose weight copies input channel c to
// output channel planes / 4 + c.
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
    int node = tmix_net_conv_fixed(b, x, name, w, planes, 1, 2, 0);
    free(w);
    return node;
}

// A residual block of two 3x3 convolutions, each followed by a batch norm (torchvision and
// kuangliu BasicBlock, akamaster's too): relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
// Where the shape changes the shortcut is the 1x1 convolution sc_conv with batch norm sc_bn
// or, when sc_conv is NULL, akamaster's option A (see option_a).
static int basic_block(builder *b, int x, const char *p, int in, int planes, int stride,
                       const char *sc_conv, const char *sc_bn)
{
    int y = tmix_net_relu(b, tmix_net_conv(b, x, p, "conv1", "bn1", planes, 3, stride, 1));
    y = tmix_net_conv(b, y, p, "conv2", "bn2", planes, 3, 1, 1);
    int sc = x;
    if (stride != 1 || in != planes)
        sc = sc_conv ? tmix_net_conv(b, x, p, sc_conv, sc_bn, planes, 1, stride, 0)
                     : option_a(b, x, p, in, planes);
    return tmix_net_relu(b, tmix_net_add(b, y, sc));
}

// torchvision Bottleneck, v1.5 (the stride on the 3x3 convolution).
static int bottleneck(builder *b, int x, const char *p, int in, int planes, int stride)
{
    int y = tmix_net_relu(b, tmix_net_conv(b, x, p, "conv1", "bn1", planes, 1, 1, 0));
    y = tmix_net_relu(b, tmix_net_conv(b, y, p, "conv2", "bn2", planes, 3, stride, 1));
    y = tmix_net_conv(b, y, p, "conv3", "bn3", 4 * planes, 1, 1, 0);
    int sc = x;
    if (stride != 1 || in != 4 * planes)
        sc = tmix_net_conv(b, x, p, "downsample.0", "downsample.1", 4 * planes, 1, stride, 0);
    return tmix_net_relu(b, tmix_net_add(b, y, sc));
}

// A pre-activation block (kuangliu PreActBlock; xternalz BasicBlock, the same network):
// o = relu(bn1(x)); conv2(relu(bn2(conv1(o)))) + (shape changes ? sc(o) : x). bn2 follows
// conv1 alone, so it is folded into it; bn1 follows a residual sum and stays.
static int preact_block(builder *b, int x, const char *p, int in, int planes, int stride,
                        const char *sc)
{
    int o = tmix_net_relu(b, tmix_net_bn(b, x, p, "bn1"));
    int y = tmix_net_relu(b, tmix_net_conv(b, o, p, "conv1", "bn2", planes, 3, stride, 1));
    y = tmix_net_conv(b, y, p, "conv2", NULL, planes, 3, 1, 1);
    if (stride != 1 || in != planes)
        x = tmix_net_conv(b, o, p, sc, NULL, planes, 1, stride, 0);
    return tmix_net_add(b, y, x);
}

// The classifier: global average pool and linear layer `name`. Returns the feature node.
static int head(builder *b, int features, const char *name)
{
    tmix_net_linear(b, tmix_net_avgpool(b, features), name);
    return b->rc < 0 ? b->rc : features;
}

typedef enum { BASIC, BOTTLENECK, PREACT } block_kind;

// The stages of a residual net: stage s (from 1) has blocks[s - 1] blocks of planes << (s - 1)
// planes (times 4 out of a bottleneck), named "<stage><s><block>.<i>"; the first block of
// every stage but the first has stride 2. sc_conv and sc_bn name the projection shortcut.
typedef struct {
    const char *stage, *block;
    int stages, planes;
    const int *blocks;
    block_kind kind;
    const char *sc_conv, *sc_bn;
} stack;

static int residual_stages(builder *b, int x, int in, const stack *k)
{
    for (int s = 0; s < k->stages; s++)
        for (int i = 0; i < k->blocks[s]; i++) {
            char p[32];
            snprintf(p, sizeof p, "%s%d%s.%d", k->stage, s + 1, k->block, i);
            int planes = k->planes << s, stride = s > 0 && i == 0 ? 2 : 1;
            switch (k->kind) {
            case BASIC:
                x = basic_block(b, x, p, in, planes, stride, k->sc_conv, k->sc_bn);
                break;
            case BOTTLENECK:
                x = bottleneck(b, x, p, in, planes, stride);
                planes *= 4;
                break;
            case PREACT:
                x = preact_block(b, x, p, in, planes, stride, k->sc_conv);
                break;
            }
            in = planes;
        }
    return x;
}

// torchvision ResNet: 7x7/2 stem, 3x3/2 max pool, four stages of 64 to 512 planes.
static int torchvision_resnet(builder *b, const int blocks[4], block_kind kind)
{
    int x = tmix_net_relu(b, tmix_net_conv(b, INPUT, NULL, "conv1", "bn1", 64, 7, 2, 3));
    x = tmix_net_maxpool(b, x, 3, 2, 1);
    x = residual_stages(b, x, 64,
                        &(stack){"layer", "", 4, 64, blocks, kind, "downsample.0", "downsample.1"});
    return head(b, x, "fc");
}

static int resnet18(builder *b)
{
    return torchvision_resnet(b, (const int[]){2, 2, 2, 2}, BASIC);
}

static int resnet34(builder *b)
{
    return torchvision_resnet(b, (const int[]){3, 4, 6, 3}, BASIC);
}

static int resnet50(builder *b)
{
    return torchvision_resnet(b, (const int[]){3, 4, 6, 3}, BOTTLENECK);
}

// kuangliu/pytorch-cifar ResNet18: 3x3/1 stem with batch norm, no pool, 64 to 512 planes.
static int cifar_resnet18(builder *b)
{
    int x = tmix_net_relu(b, tmix_net_conv(b, INPUT, NULL, "conv1", "bn1", 64, 3, 1, 1));
    x = residual_stages(b, x, 64, &(stack){"layer", "", 4, 64, (const int[]){2, 2, 2, 2}, BASIC,
                                            "shortcut.0", "shortcut.1"});
    return head(b, x, "linear");
}

// kuangliu/pytorch-cifar PreActResNet18: a bare 3x3/1 stem and no final batch norm.
static int preactresnet18(builder *b)
{
    int x = tmix_net_conv(b, INPUT, NULL, "conv1", NULL, 64, 3, 1, 1);
    x = residual_stages(b, x, 64, &(stack){"layer", "", 4, 64, (const int[]){2, 2, 2, 2}, PREACT,
                                            "shortcut.0", NULL});
    return head(b, x, "linear");
}

// xternalz/WideResNet-pytorch WideResNet(depth 28, widen 10): three stages of 4 blocks of
// 160, 320, 640 planes, then relu(bn1(.)), which the CAMs weigh.
static int wrn28_10(builder *b)
{
    int x = tmix_net_conv(b, INPUT, NULL, "conv1", NULL, 16, 3, 1, 1);
    x = residual_stages(b, x, 16, &(stack){"block", ".layer", 3, 160, (const int[]){4, 4, 4},
                                            PREACT, "convShortcut", NULL});
    x = tmix_net_relu(b, tmix_net_bn(b, x, NULL, "bn1"));
    return head(b, x, "fc");
}

// akamaster/pytorch_resnet_cifar10 resnet20: three stages of 3 blocks of 16, 32, 64 planes
// with option A shortcuts (no shortcut names).
static int cifar_resnet20(builder *b)
{
    int x = tmix_net_relu(b, tmix_net_conv(b, INPUT, NULL, "conv1", "bn1", 16, 3, 1, 1));
    x = residual_stages(b, x, 16,
                        &(stack){"layer", "", 3, 16, (const int[]){3, 3, 3}, BASIC, NULL, NULL});
    return head(b, x, "linear");
}

// One table for the lookup and the public list of names.
// clang-format off
#define TMIX_ZOO(Z)                 \
    Z(resnet18, "fc")               \
    Z(resnet34, "fc")               \
    Z(resnet50, "fc")               \
    Z(cifar_resnet18, "linear")     \
    Z(preactresnet18, "linear")     \
    Z(wrn28_10, "fc")               \
    Z(cifar_resnet20, "linear")

static const tmix_zoo_arch zoo[] = {
#define ZOO_ENTRY(fn, classifier) {#fn, classifier, fn},
    TMIX_ZOO(ZOO_ENTRY)
#undef ZOO_ENTRY
};

#define ZOO_NAME(fn, classifier) #fn,
const char *const tmix_teacher_archs[] = {TMIX_ZOO(ZOO_NAME) NULL};
// Every description uses only operations the trainable builder has.
const char *const tmix_classifier_archs[] = {TMIX_ZOO(ZOO_NAME) NULL};
#undef ZOO_NAME
// clang-format on

const tmix_zoo_arch *tmix_zoo_find(const char *name)
{
    for (size_t i = 0; i < sizeof zoo / sizeof zoo[0]; i++)
        if (strcmp(zoo[i].name, name) == 0)
            return &zoo[i];
    return NULL;
}

const char *tmix_zoo_names(char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof zoo / sizeof zoo[0] && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%s", i ? ", " : "", zoo[i].name);
    return buf;
}
