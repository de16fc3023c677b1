#include "graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ops.h"

#define BN_EPS 1e-5f // PyTorch's BatchNorm2d default, which every zoo model uses

// ---- building ----------------------------------------------------------------------------

static char *dims_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t at = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (at < size)
        snprintf(buf + at, size - at, ")");
    return buf;
}

// "prefix.leaf", or "leaf" without a prefix.
static const char *node_name(char *buf, size_t size, const char *prefix, const char *leaf)
{
    snprintf(buf, size, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", leaf);
    return buf;
}

// "prefix.leaf.what", or "leaf.what" without a prefix.
static const char *join(char *buf, size_t size, const char *prefix, const char *leaf,
                        const char *what)
{
    snprintf(buf, size, "%s%s%s.%s", prefix ? prefix : "", prefix ? "." : "", leaf, what);
    return buf;
}

// Reads tensor `name`, which must have the given shape, as floats into dst and marks it used.
static int take(tmix_graph_loader *b, const char *name, int ndim, const int64_t *shape, float *dst)
{
    const char *path = tmix_safetensors_path(b->st);
    int count = tmix_safetensors_count(b->st), at = -1;
    for (int i = 0; i < count && at < 0; i++)
        if (strcmp(tmix_safetensors_at(b->st, i)->name, name) == 0)
            at = i;
    if (at < 0)
        return tmix_fail(TMIX_EFORMAT, "%s: missing tensor '%s' for arch %s", path, name, b->arch);
    const tmix_st_tensor *t = tmix_safetensors_at(b->st, at);
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char got[160], want[160];
        return tmix_fail(TMIX_ESHAPE, "%s: tensor '%s' is %s, expected %s for arch %s", path, name,
                         dims_str(got, sizeof got, t->ndim, t->shape),
                         dims_str(want, sizeof want, ndim, shape), b->arch);
    }
    TMIX_TRY(tmix_st_read_f32(b->st, t, dst));
    // A NaN or infinite weight would only show up later as garbage logits.
    const int64_t n = tmix_st_numel(t);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s' holds a non-finite value at %lld", path,
                             name, (long long)i);
    b->used[at] = true;
    return 0;
}

// Reads batch norm `prefix.bn` of C channels and folds it into scale and shift (C each).
// tmp holds 4 * C floats.
static int take_bn(tmix_graph_loader *b, const char *prefix, const char *bn, int C, float *scale,
                   float *shift, float *tmp)
{
    static const char *const parts[] = {"weight", "bias", "running_mean", "running_var"};
    char name[160];
    for (int i = 0; i < 4; i++)
        TMIX_TRY(
            take(b, join(name, sizeof name, prefix, bn, parts[i]), 1, (int64_t[]){C}, tmp + i * C));
    const float *var = tmp + 3 * C;
    for (int c = 0; c < C; c++)
        if (var[c] < 0)
            return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s' has a negative variance %g",
                             tmix_safetensors_path(b->st), name, (double)var[c]);
    tmix_batchnorm_fold(scale, shift, tmp, tmp + C, tmp + 2 * C, var, BN_EPS, C);
    return 0;
}

static int upload(tmix_graph_loader *b, tmix_tensor *t, int ndim, const int64_t *shape,
                  const float *host)
{
    TMIX_TRY(tmix_tensor_alloc(b->g->be, t, TMIX_F32, ndim, shape));
    return tmix_tensor_upload(b->g->be, t, host);
}

// Appends a node reading in0 (and in1 for add); NULL after setting b->rc on failure.
static tmix_node *push(tmix_graph_loader *b, tmix_node_kind kind, const char *name, int in0,
                       int in1)
{
    tmix_graph *g = b->g;
    for (int k = 0; k < 2; k++) {
        int in = k ? in1 : in0;
        if (in < TMIX_GRAPH_INPUT || in >= g->count) {
            b->rc = tmix_fail(TMIX_EINVAL, "graph %s: %s reads node %d of %d", b->arch, name, in,
                              g->count);
            return NULL;
        }
    }
    if (g->count == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        tmix_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            b->rc = tmix_fail(TMIX_ENOMEM, "graph %s: %d nodes", b->arch, cap);
            return NULL;
        }
        g->nodes = nodes;
        g->cap = cap;
    }
    tmix_node *n = &g->nodes[g->count++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    snprintf(n->name, sizeof n->name, "%s", name);
    n->in[0] = in0;
    n->in[1] = in1;
    n->channels = in0 == TMIX_GRAPH_INPUT ? g->in_channels : g->nodes[in0].channels;
    return n;
}

// The new node's index, or b->rc when rc (the step's result) or an earlier step failed.
static int done(tmix_graph_loader *b, int rc)
{
    if (rc < 0 && b->rc == 0)
        b->rc = rc;
    return b->rc < 0 ? b->rc : b->g->count - 1;
}

static tmix_conv2d_params conv_params(int stride, int pad)
{
    return (tmix_conv2d_params){.stride_h = stride,
                                .stride_w = stride,
                                .pad_h = pad,
                                .pad_w = pad,
                                .dilation_h = 1,
                                .dilation_w = 1};
}

int tmix_graph_conv(tmix_graph_loader *b, int in, const char *prefix, const char *conv,
                    const char *bn, int oc, int k, int stride, int pad)
{
    if (b->rc < 0)
        return b->rc;
    char name[160];
    tmix_node *n = push(b, TMIX_NODE_CONV, node_name(name, sizeof name, prefix, conv), in, in);
    if (!n)
        return b->rc;
    join(name, sizeof name, prefix, conv, "weight");
    const int64_t shape[4] = {oc, n->channels, k, k};
    const int64_t per_oc = shape[1] * k * k;
    n->channels = oc;
    n->conv = conv_params(stride, pad);
    float *w = malloc((size_t)(oc * per_oc) * sizeof *w);
    float *bnv = malloc((size_t)oc * 6 * sizeof *bnv); // scale, shift, then 4 for take_bn
    int rc = w && bnv ? 0 : tmix_fail(TMIX_ENOMEM, "graph %s: %s", b->arch, name);
    if (rc == 0)
        rc = take(b, name, 4, shape, w);
    if (rc == 0 && bn) {
        rc = take_bn(b, prefix, bn, oc, bnv, bnv + oc, bnv + 2 * oc);
        for (int64_t o = 0; rc == 0 && o < oc; o++)
            for (int64_t i = 0; i < per_oc; i++)
                w[o * per_oc + i] *= bnv[o];
        if (rc == 0)
            rc = upload(b, &n->bias, 1, shape, bnv + oc);
    }
    if (rc == 0)
        rc = upload(b, &n->weight, 4, shape, w);
    free(w);
    free(bnv);
    return done(b, rc);
}

int tmix_graph_conv_fixed(tmix_graph_loader *b, int in, const char *name, const float *weight,
                          int oc, int k, int stride, int pad)
{
    if (b->rc < 0)
        return b->rc;
    tmix_node *n = push(b, TMIX_NODE_CONV, name, in, in);
    if (!n)
        return b->rc;
    const int64_t shape[4] = {oc, n->channels, k, k};
    n->channels = oc;
    n->conv = conv_params(stride, pad);
    return done(b, upload(b, &n->weight, 4, shape, weight));
}

int tmix_graph_bn(tmix_graph_loader *b, int in, const char *prefix, const char *bn)
{
    if (b->rc < 0)
        return b->rc;
    char name[160];
    tmix_node *n = push(b, TMIX_NODE_BN, node_name(name, sizeof name, prefix, bn), in, in);
    if (!n)
        return b->rc;
    const int C = n->channels;
    float *bnv = malloc((size_t)C * 6 * sizeof *bnv);
    int rc = bnv ? 0 : tmix_fail(TMIX_ENOMEM, "graph %s: %s", b->arch, name);
    if (rc == 0)
        rc = take_bn(b, prefix, bn, C, bnv, bnv + C, bnv + 2 * C);
    if (rc == 0)
        rc = upload(b, &n->weight, 1, (int64_t[]){C}, bnv);
    if (rc == 0)
        rc = upload(b, &n->bias, 1, (int64_t[]){C}, bnv + C);
    free(bnv);
    return done(b, rc);
}

int tmix_graph_relu(tmix_graph_loader *b, int in)
{
    if (b->rc < 0)
        return b->rc;
    return push(b, TMIX_NODE_RELU, "relu", in, in) ? done(b, 0) : b->rc;
}

int tmix_graph_maxpool(tmix_graph_loader *b, int in, int k, int stride, int pad)
{
    if (b->rc < 0)
        return b->rc;
    tmix_node *n = push(b, TMIX_NODE_MAXPOOL, "maxpool", in, in);
    if (!n)
        return b->rc;
    n->pool = (tmix_pool2d_params){.kernel_h = k,
                                   .kernel_w = k,
                                   .stride_h = stride,
                                   .stride_w = stride,
                                   .pad_h = pad,
                                   .pad_w = pad};
    return done(b, 0);
}

int tmix_graph_add(tmix_graph_loader *b, int in0, int in1)
{
    if (b->rc < 0)
        return b->rc;
    tmix_node *n = push(b, TMIX_NODE_ADD, "add", in0, in1);
    if (!n)
        return b->rc;
    int c1 = in1 == TMIX_GRAPH_INPUT ? b->g->in_channels : b->g->nodes[in1].channels;
    if (n->channels != c1)
        return done(b, tmix_fail(TMIX_EINVAL, "graph %s: adding %d channels to %d", b->arch, c1,
                                 n->channels));
    return done(b, 0);
}

int tmix_graph_avgpool(tmix_graph_loader *b, int in)
{
    if (b->rc < 0)
        return b->rc;
    return push(b, TMIX_NODE_AVGPOOL, "avgpool", in, in) ? done(b, 0) : b->rc;
}

int tmix_graph_linear(tmix_graph_loader *b, int in, const char *name)
{
    if (b->rc < 0)
        return b->rc;
    tmix_node *n = push(b, TMIX_NODE_LINEAR, name, in, in);
    if (!n)
        return b->rc;
    const int64_t shape[2] = {b->g->num_classes, n->channels};
    n->channels = b->g->num_classes;
    float *w = malloc((size_t)((shape[1] + 1) * shape[0]) * sizeof *w); // weight, then bias
    char wname[160];
    int rc = w ? 0 : tmix_fail(TMIX_ENOMEM, "graph %s: %s", b->arch, name);
    if (rc == 0)
        rc = take(b, join(wname, sizeof wname, NULL, name, "weight"), 2, shape, w);
    if (rc == 0)
        rc = take(b, join(wname, sizeof wname, NULL, name, "bias"), 1, shape,
                  w + shape[0] * shape[1]);
    if (rc == 0)
        rc = upload(b, &n->weight, 2, shape, w);
    if (rc == 0)
        rc = upload(b, &n->bias, 1, shape, w + shape[0] * shape[1]);
    free(w);
    return done(b, rc);
}

// How many nodes read node i.
static int readers(const tmix_graph *g, int i)
{
    int r = 0;
    for (int j = i + 1; j < g->count; j++)
        r += (g->nodes[j].in[0] == i) +
             (g->nodes[j].kind == TMIX_NODE_ADD && g->nodes[j].in[1] == i);
    return r;
}

void tmix_graph_finish(tmix_graph *g, int keep)
{
    for (int i = 0; i < g->count; i++) {
        tmix_node *n = &g->nodes[i];
        const int arity = n->kind == TMIX_NODE_ADD ? 2 : 1;
        n->reaches_input = false;
        for (int k = 0; k < arity; k++)
            n->reaches_input |= n->in[k] == TMIX_GRAPH_INPUT || g->nodes[n->in[k]].reaches_input;
        // Every backward but ReLU's and max pool's ignores the activations, and those read
        // their own output and their input: a ReLU may overwrite an input nobody else reads.
        n->inplace = n->kind == TMIX_NODE_RELU && n->in[0] != TMIX_GRAPH_INPUT &&
                     n->in[0] != keep && i != g->count - 1 && readers(g, n->in[0]) == 1;
    }
}

// ---- running -----------------------------------------------------------------------------

static void release(tmix_graph *g)
{
    for (int i = 0; i < g->count; i++) {
        tmix_tensor_free(g->be, &g->nodes[i].out);
        tmix_tensor_free(g->be, &g->nodes[i].dout);
    }
    memset(g->x_shape, 0, sizeof g->x_shape);
    g->grads_ready = false;
}

void tmix_graph_free(tmix_graph *g)
{
    if (!g)
        return;
    release(g);
    for (int i = 0; i < g->count; i++) {
        tmix_tensor_free(g->be, &g->nodes[i].weight);
        tmix_tensor_free(g->be, &g->nodes[i].bias);
    }
    free(g->nodes);
    memset(g, 0, sizeof *g);
}

int tmix_graph_share(tmix_graph *dst, const tmix_graph *src, tmix_backend *be)
{
    memset(dst, 0, sizeof *dst);
    dst->nodes = calloc((size_t)src->count, sizeof *dst->nodes);
    if (!dst->nodes)
        return tmix_fail(TMIX_ENOMEM, "graph_share: %d nodes", src->count);
    dst->be = be;
    dst->count = dst->cap = src->count;
    dst->in_channels = src->in_channels;
    dst->num_classes = src->num_classes;
    for (int i = 0; i < src->count; i++) {
        const tmix_node *s = &src->nodes[i];
        tmix_node *n = &dst->nodes[i];
        *n = *s;
        n->weight.owned = n->bias.owned = false; // views: tmix_tensor_free only forgets them
        memset(&n->out, 0, sizeof n->out);
        memset(&n->dout, 0, sizeof n->dout);
    }
    return 0;
}

static const tmix_tensor *input_of(const tmix_graph *g, const tmix_tensor *x, int in)
{
    return in == TMIX_GRAPH_INPUT ? x : &g->nodes[in].out;
}

// Output size along one axis (PyTorch floor mode). The zoo pads every kernel to fit any
// input of 1x1 or more; a size of 0 would only make the allocation fail.
static int64_t out_size(int64_t in, int k, int stride, int pad)
{
    int64_t span = in + 2 * pad - k;
    return span < 0 ? 0 : span / stride + 1;
}

// Sizes every activation for x; the last node writes the caller's tensor.
static int prepare(tmix_graph *g, const tmix_tensor *x)
{
    if (memcmp(g->x_shape, x->shape, sizeof g->x_shape) == 0)
        return 0;
    release(g);
    for (int i = 0; i < g->count - 1; i++) {
        tmix_node *n = &g->nodes[i];
        const tmix_tensor *a = input_of(g, x, n->in[0]);
        int64_t s[4] = {a->shape[0], n->channels, a->shape[2], a->shape[3]};
        int ndim = 4;
        if (n->kind == TMIX_NODE_CONV) {
            s[2] = out_size(s[2], (int)n->weight.shape[2], n->conv.stride_h, n->conv.pad_h);
            s[3] = out_size(s[3], (int)n->weight.shape[3], n->conv.stride_w, n->conv.pad_w);
        } else if (n->kind == TMIX_NODE_MAXPOOL) {
            s[2] = out_size(s[2], n->pool.kernel_h, n->pool.stride_h, n->pool.pad_h);
            s[3] = out_size(s[3], n->pool.kernel_w, n->pool.stride_w, n->pool.pad_w);
        } else if (n->kind == TMIX_NODE_AVGPOOL || n->kind == TMIX_NODE_LINEAR) {
            ndim = 2;
        }
        int rc = 0;
        if (n->inplace)
            n->out = tmix_tensor_view(a->data, TMIX_F32, g->be->device, ndim, s);
        else
            rc = tmix_tensor_alloc(g->be, &n->out, TMIX_F32, ndim, s);
        if (rc < 0) {
            release(g);
            return rc;
        }
    }
    memcpy(g->x_shape, x->shape, sizeof g->x_shape);
    return 0;
}

int tmix_graph_forward(tmix_graph *g, tmix_tensor *out, const tmix_tensor *x)
{
    TMIX_TRY(prepare(g, x));
    g->x = *x;
    tmix_backend *be = g->be;
    for (int i = 0; i < g->count; i++) {
        tmix_node *n = &g->nodes[i];
        const tmix_tensor *a = input_of(g, x, n->in[0]);
        tmix_tensor *y = i == g->count - 1 ? out : &n->out;
        switch (n->kind) {
        case TMIX_NODE_CONV:
            TMIX_TRY(
                tmix_conv2d_forward(be, y, a, &n->weight, n->bias.data ? &n->bias : NULL, n->conv));
            break;
        case TMIX_NODE_BN:
            TMIX_TRY(tmix_batchnorm_forward(be, y, a, &n->weight, &n->bias));
            break;
        case TMIX_NODE_RELU:
            TMIX_TRY(tmix_relu_forward(be, y, a));
            break;
        case TMIX_NODE_MAXPOOL:
            TMIX_TRY(tmix_maxpool2d_forward(be, y, a, n->pool));
            break;
        case TMIX_NODE_ADD:
            TMIX_TRY(tmix_add(be, y, a, input_of(g, x, n->in[1])));
            break;
        case TMIX_NODE_AVGPOOL:
            TMIX_TRY(tmix_avgpool_forward(be, y, a));
            break;
        case TMIX_NODE_LINEAR:
            TMIX_TRY(tmix_linear_forward(be, y, a, &n->weight, &n->bias));
            break;
        }
    }
    return 0;
}

// din += d(loss)/d(input k of n), from dy = d(loss)/d(n's output).
static int node_backward(tmix_graph *g, const tmix_node *n, tmix_tensor *din, const tmix_tensor *dy,
                         const tmix_tensor *a)
{
    tmix_backend *be = g->be;
    switch (n->kind) {
    case TMIX_NODE_CONV:
        return tmix_conv2d_backward_input(be, din, dy, &n->weight, n->conv);
    case TMIX_NODE_BN:
        return tmix_batchnorm_backward_input(be, din, dy, &n->weight);
    case TMIX_NODE_RELU:
        return tmix_relu_backward(be, din, dy, &n->out);
    case TMIX_NODE_MAXPOOL:
        return tmix_maxpool2d_backward(be, din, dy, a, n->pool);
    case TMIX_NODE_ADD:
        return tmix_add(be, din, din, dy);
    case TMIX_NODE_AVGPOOL:
        return tmix_avgpool_backward(be, din, dy);
    case TMIX_NODE_LINEAR:
        return tmix_linear_backward_input(be, din, dy, &n->weight);
    }
    return tmix_fail(TMIX_EINVAL, "graph: node %s of unknown kind %d", n->name, (int)n->kind);
}

int tmix_graph_backward(tmix_graph *g, tmix_tensor *dx, const tmix_tensor *dout)
{
    const int last = g->count - 1;
    for (int i = 0; i < last && !g->grads_ready; i++) {
        tmix_node *n = &g->nodes[i];
        if (!n->reaches_input)
            continue;
        int rc = tmix_tensor_alloc(g->be, &n->dout, TMIX_F32, n->out.ndim, n->out.shape);
        if (rc < 0) {
            for (int j = 0; j <= i; j++)
                tmix_tensor_free(g->be, &g->nodes[j].dout);
            return rc;
        }
    }
    g->grads_ready = true;
    for (int i = 0; i < last; i++)
        if (g->nodes[i].reaches_input)
            TMIX_TRY(tmix_tensor_zero(g->be, &g->nodes[i].dout));
    for (int i = last; i >= 0; i--) {
        const tmix_node *n = &g->nodes[i];
        if (!n->reaches_input)
            continue;
        const tmix_tensor *dy = i == last ? dout : &n->dout;
        for (int k = 0; k < (n->kind == TMIX_NODE_ADD ? 2 : 1); k++) {
            const int j = n->in[k];
            if (j != TMIX_GRAPH_INPUT && !g->nodes[j].reaches_input)
                continue;
            tmix_tensor *din = j == TMIX_GRAPH_INPUT ? dx : &g->nodes[j].dout;
            TMIX_TRY(node_backward(g, n, din, dy, input_of(g, &g->x, j)));
        }
    }
    return 0;
}
