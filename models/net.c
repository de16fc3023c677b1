// Building a node list: the description interface zoo.c calls, the node adders both builders
// share (the operations without parameters are the same for both), and finishing.
#include "net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ops.h"

// ---- the description interface ---------------------------------------------------------------

int tmix_net_conv(tmix_net_builder *b, int in, const char *prefix, const char *conv, const char *bn,
                  int oc, int k, int stride, int pad)
{
    return b->rc < 0 ? b->rc : b->ops->conv(b, in, prefix, conv, bn, oc, k, stride, pad);
}

int tmix_net_bn(tmix_net_builder *b, int in, const char *prefix, const char *bn)
{
    return b->rc < 0 ? b->rc : b->ops->bn(b, in, prefix, bn);
}

int tmix_net_linear(tmix_net_builder *b, int in, const char *name)
{
    return b->rc < 0 ? b->rc : b->ops->linear(b, in, name);
}

int tmix_net_conv_fixed(tmix_net_builder *b, int in, const char *name, const float *weight, int oc,
                        int k, int stride, int pad)
{
    int64_t shape[4];
    tmix_node *n = tmix_net_push_conv(b, in, NULL, name, oc, k, stride, pad, shape);
    if (!n)
        return b->rc;
    n->fixed = true;
    return tmix_net_done(b, tmix_net_tensor(b, &n->weight, 4, shape, weight));
}

// A node without parameters.
static int plain(tmix_net_builder *b, tmix_node_kind kind, const char *name, int in0, int in1)
{
    return tmix_net_push(b, kind, NULL, name, in0, in1) ? tmix_net_done(b, 0) : b->rc;
}

int tmix_net_relu(tmix_net_builder *b, int in)
{
    return plain(b, TMIX_NODE_RELU, "relu", in, in);
}

int tmix_net_avgpool(tmix_net_builder *b, int in)
{
    return plain(b, TMIX_NODE_AVGPOOL, "avgpool", in, in);
}

int tmix_net_maxpool(tmix_net_builder *b, int in, int k, int stride, int pad)
{
    int node = plain(b, TMIX_NODE_MAXPOOL, "maxpool", in, in);
    if (node >= 0)
        b->net->nodes[node].pool = (tmix_pool2d_params){.kernel_h = k,
                                                        .kernel_w = k,
                                                        .stride_h = stride,
                                                        .stride_w = stride,
                                                        .pad_h = pad,
                                                        .pad_w = pad};
    return node;
}

int tmix_net_add(tmix_net_builder *b, int in0, int in1)
{
    int node = plain(b, TMIX_NODE_ADD, "add", in0, in1);
    if (node < 0)
        return node;
    const tmix_net *g = b->net;
    int c1 = in1 == TMIX_NET_INPUT ? g->in_channels : g->nodes[in1].channels;
    if (g->nodes[node].channels != c1)
        return tmix_net_done(b, tmix_fail(TMIX_EINVAL, "net %s: adding %d channels to %d", b->arch,
                                          c1, g->nodes[node].channels));
    return node;
}

// ---- for the builders ------------------------------------------------------------------------

tmix_node *tmix_net_push(tmix_net_builder *b, tmix_node_kind kind, const char *prefix,
                         const char *leaf, int in0, int in1)
{
    if (b->rc < 0)
        return NULL;
    tmix_net *g = b->net;
    for (int k = 0; k < 2; k++) {
        int in = k ? in1 : in0;
        if (in < TMIX_NET_INPUT || in >= g->count) {
            b->rc = tmix_fail(TMIX_EINVAL, "net %s: %s reads node %d of %d", b->arch, leaf, in,
                              g->count);
            return NULL;
        }
    }
    if (g->count == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        tmix_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            b->rc = tmix_fail(TMIX_ENOMEM, "net %s: %d nodes", b->arch, cap);
            return NULL;
        }
        g->nodes = nodes;
        g->cap = cap;
    }
    tmix_node *n = &g->nodes[g->count++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    snprintf(n->name, sizeof n->name, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", leaf);
    n->in[0] = in0;
    n->in[1] = in1;
    n->channels = in0 == TMIX_NET_INPUT ? g->in_channels : g->nodes[in0].channels;
    return n;
}

tmix_node *tmix_net_push_conv(tmix_net_builder *b, int in, const char *prefix, const char *leaf,
                              int oc, int k, int stride, int pad, int64_t shape[4])
{
    tmix_node *n = tmix_net_push(b, TMIX_NODE_CONV, prefix, leaf, in, in);
    if (!n)
        return NULL;
    shape[0] = oc;
    shape[1] = n->channels;
    shape[2] = shape[3] = k;
    n->channels = oc;
    n->conv = (tmix_conv2d_params){.stride_h = stride,
                                   .stride_w = stride,
                                   .pad_h = pad,
                                   .pad_w = pad,
                                   .dilation_h = 1,
                                   .dilation_w = 1};
    return n;
}

int tmix_net_done(tmix_net_builder *b, int rc)
{
    if (rc < 0 && b->rc == 0)
        b->rc = rc;
    return b->rc < 0 ? b->rc : b->net->count - 1;
}

int tmix_net_tensor(tmix_net_builder *b, tmix_tensor *t, int ndim, const int64_t *shape,
                    const float *host)
{
    tmix_backend *be = b->net->be;
    TMIX_TRY(tmix_tensor_alloc(be, t, TMIX_F32, ndim, shape));
    return host ? tmix_tensor_upload(be, t, host) : tmix_tensor_zero(be, t);
}

// ---- finishing -------------------------------------------------------------------------------

// How many nodes read node i.
static int readers(const tmix_net *g, int i)
{
    int r = 0;
    for (int j = i + 1; j < g->count; j++)
        r += (g->nodes[j].in[0] == i) +
             (g->nodes[j].kind == TMIX_NODE_ADD && g->nodes[j].in[1] == i);
    return r;
}

void tmix_net_finish(tmix_net *g, int keep)
{
    g->keep = keep;
    for (int i = 0; i < g->count; i++) {
        tmix_node *n = &g->nodes[i];
        const int arity = n->kind == TMIX_NODE_ADD ? 2 : 1;
        n->reaches_input = false;
        for (int k = 0; k < arity; k++)
            n->reaches_input |= n->in[k] == TMIX_NET_INPUT || g->nodes[n->in[k]].reaches_input;
        // No backward reads the output of the node a ReLU reads (convolution, batch norm and
        // max pool read their input, the ReLU its own output), so a ReLU may overwrite an
        // input nobody else reads.
        n->inplace = n->kind == TMIX_NODE_RELU && n->in[0] != TMIX_NET_INPUT && n->in[0] != keep &&
                     i != g->count - 1 && readers(g, n->in[0]) == 1;
        // Its input node, a convolution or a residual add, may then apply it: the values
        // are the same, one pass over the activation fewer.
        n->relu_fused = false;
        if (n->inplace) {
            tmix_node *src = &g->nodes[n->in[0]];
            src->relu_fused = src->kind == TMIX_NODE_CONV || src->kind == TMIX_NODE_ADD;
        }
    }
}

void tmix_net_free(tmix_net *g)
{
    if (!g)
        return;
    tmix_net_release(g);
    for (int i = 0; i < g->count; i++) {
        tmix_node *n = &g->nodes[i];
        tmix_tensor *owned[] = {&n->weight,       &n->bias,        &n->dweight,   &n->dbias,
                                &n->running_mean, &n->running_var, &n->save_mean, &n->save_invstd,
                                &n->scale,        &n->shift};
        for (size_t k = 0; k < sizeof owned / sizeof owned[0]; k++)
            tmix_tensor_free(g->be, owned[k]);
    }
    free(g->nodes);
    memset(g, 0, sizeof *g);
}
