// Building a trainable network: the node adders of classifier_net.h with their initial
// values, and the tables of parameters and buffers once it is built.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classifier_net.h"
#include "error.h"
#include "ops.h"

// Allocates t on the classifier's backend with the host values given, or zeros when host is
// NULL (gradients, saved statistics).
static int alloc_tensor(tmix_cls_builder *b, tmix_tensor *t, int ndim, const int64_t *shape,
                        const float *host)
{
    tmix_backend *be = b->c->be;
    TMIX_TRY(tmix_tensor_alloc(be, t, TMIX_F32, ndim, shape));
    return host ? tmix_tensor_upload(be, t, host) : tmix_tensor_zero(be, t);
}

// How initial values are drawn: N(0, normal_std^2) when normal_std > 0, else
// U(-uniform_bound, uniform_bound) when uniform_bound > 0, else all `value`.
typedef struct {
    float value, normal_std, uniform_bound;
} init_rule;

// Allocates t with values drawn by r.
static int values(tmix_cls_builder *b, tmix_tensor *t, int ndim, const int64_t *shape, init_rule r)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    float *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return tmix_fail(TMIX_ENOMEM, "classifier %s: %lld initial values", b->c->info.arch,
                         (long long)n);
    for (int64_t i = 0; i < n; i++) {
        double x = r.value;
        if (r.normal_std > 0)
            x = r.normal_std * tmix_rng_normal(&b->rng);
        else if (r.uniform_bound > 0)
            x = r.uniform_bound * (2 * tmix_rng_uniform(&b->rng) - 1);
        v[i] = (float)x;
    }
    int rc = alloc_tensor(b, t, ndim, shape, v);
    free(v);
    return rc;
}

// A parameter drawn by r, and its gradient, zeroed.
static int param(tmix_cls_builder *b, tmix_tensor *t, tmix_tensor *grad, int ndim,
                 const int64_t *shape, init_rule r)
{
    TMIX_TRY(values(b, t, ndim, shape, r));
    return alloc_tensor(b, grad, ndim, shape, NULL);
}

// Appends a node reading in0 (and in1 for add); NULL after setting b->rc on failure.
static tmix_cls_node *push(tmix_cls_builder *b, tmix_cls_kind kind, const char *prefix,
                           const char *leaf, int in0, int in1)
{
    tmix_classifier *c = b->c;
    for (int k = 0; k < 2; k++) {
        int in = k ? in1 : in0;
        if (in < TMIX_CLS_INPUT || in >= c->count) {
            b->rc = tmix_fail(TMIX_EINVAL, "classifier %s: %s reads node %d of %d", c->info.arch,
                              leaf, in, c->count);
            return NULL;
        }
    }
    if (c->count == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        tmix_cls_node *nodes = realloc(c->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            b->rc = tmix_fail(TMIX_ENOMEM, "classifier %s: %d nodes", c->info.arch, cap);
            return NULL;
        }
        c->nodes = nodes;
        c->cap = cap;
    }
    tmix_cls_node *n = &c->nodes[c->count++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    snprintf(n->name, sizeof n->name, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", leaf);
    n->in[0] = in0;
    n->in[1] = in1;
    n->channels = in0 == TMIX_CLS_INPUT ? c->info.in_channels : c->nodes[in0].channels;
    return n;
}

// The new node's index, or b->rc when rc (the step's result) or an earlier step failed.
static int done(tmix_cls_builder *b, int rc)
{
    if (rc < 0 && b->rc == 0)
        b->rc = rc;
    return b->rc < 0 ? b->rc : b->c->count - 1;
}

// Appends a convolution node of oc output channels with a square kernel k; its weight's
// shape (oc, C, k, k) into shape. NULL after setting b->rc on failure.
static tmix_cls_node *push_conv(tmix_cls_builder *b, int in, const char *prefix, const char *name,
                                int oc, int k, int stride, int pad, int64_t shape[4])
{
    tmix_cls_node *n = b->rc < 0 ? NULL : push(b, TMIX_CLS_CONV, prefix, name, in, in);
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

int tmix_cls_conv(tmix_cls_builder *b, int in, const char *prefix, const char *conv, const char *bn,
                  int oc, int k, int stride, int pad)
{
    int64_t shape[4];
    tmix_cls_node *n = push_conv(b, in, prefix, conv, oc, k, stride, pad, shape);
    if (!n)
        return b->rc;
    // kaiming_normal_(mode="fan_in", nonlinearity="leaky_relu", a=0): std sqrt(2 / fan_in).
    const float std = sqrtf(2.0f / (float)(shape[1] * k * k));
    int node = done(b, param(b, &n->weight, &n->dweight, 4, shape, (init_rule){0, std, 0}));
    return bn ? tmix_cls_bn(b, node, prefix, bn) : node;
}

int tmix_cls_conv_fixed(tmix_cls_builder *b, int in, const char *name, const float *weight, int oc,
                        int k, int stride, int pad)
{
    int64_t shape[4];
    tmix_cls_node *n = push_conv(b, in, NULL, name, oc, k, stride, pad, shape);
    if (!n)
        return b->rc;
    n->fixed = true;
    return done(b, alloc_tensor(b, &n->weight, 4, shape, weight));
}

int tmix_cls_bn(tmix_cls_builder *b, int in, const char *prefix, const char *bn)
{
    if (b->rc < 0)
        return b->rc;
    tmix_cls_node *n = push(b, TMIX_CLS_BN, prefix, bn, in, in);
    if (!n)
        return b->rc;
    const int64_t C[1] = {n->channels};
    int rc = param(b, &n->weight, &n->dweight, 1, C, (init_rule){1, 0, 0});
    if (rc == 0)
        rc = param(b, &n->bias, &n->dbias, 1, C, (init_rule){0, 0, 0});
    // The running statistics start as those of N(0, 1); the others are scratch.
    tmix_tensor *zeros[] = {&n->running_mean, &n->scale, &n->shift, &n->save_mean, &n->save_invstd};
    for (size_t i = 0; rc == 0 && i < sizeof zeros / sizeof zeros[0]; i++)
        rc = alloc_tensor(b, zeros[i], 1, C, NULL);
    if (rc == 0)
        rc = values(b, &n->running_var, 1, C, (init_rule){1, 0, 0});
    return done(b, rc);
}

// A node without parameters.
static int plain(tmix_cls_builder *b, tmix_cls_kind kind, const char *name, int in0, int in1)
{
    if (b->rc < 0)
        return b->rc;
    return push(b, kind, NULL, name, in0, in1) ? done(b, 0) : b->rc;
}

int tmix_cls_relu(tmix_cls_builder *b, int in)
{
    return plain(b, TMIX_CLS_RELU, "relu", in, in);
}

int tmix_cls_avgpool(tmix_cls_builder *b, int in)
{
    return plain(b, TMIX_CLS_AVGPOOL, "avgpool", in, in);
}

int tmix_cls_add(tmix_cls_builder *b, int in0, int in1)
{
    int node = plain(b, TMIX_CLS_ADD, "add", in0, in1);
    if (node < 0)
        return node;
    const tmix_classifier *c = b->c;
    int c1 = in1 == TMIX_CLS_INPUT ? c->info.in_channels : c->nodes[in1].channels;
    if (c->nodes[node].channels != c1)
        return done(b, tmix_fail(TMIX_EINVAL, "classifier %s: adding %d channels to %d",
                                 c->info.arch, c1, c->nodes[node].channels));
    return node;
}

int tmix_cls_linear(tmix_cls_builder *b, int in, const char *name)
{
    if (b->rc < 0)
        return b->rc;
    tmix_cls_node *n = push(b, TMIX_CLS_LINEAR, NULL, name, in, in);
    if (!n)
        return b->rc;
    const int64_t shape[2] = {b->c->info.num_classes, n->channels};
    n->channels = b->c->info.num_classes;
    // akamaster's kaiming_normal_ on the weight; the bias keeps nn.Linear's default.
    const float fan_in = (float)shape[1];
    int rc = param(b, &n->weight, &n->dweight, 2, shape, (init_rule){0, sqrtf(2 / fan_in), 0});
    if (rc == 0)
        rc = param(b, &n->bias, &n->dbias, 1, shape, (init_rule){0, 0, 1 / sqrtf(fan_in)});
    return done(b, rc);
}

// ---- finishing -----------------------------------------------------------------------------

// How many nodes read node i.
static int readers(const tmix_classifier *c, int i)
{
    int r = 0;
    for (int j = i + 1; j < c->count; j++)
        r +=
            (c->nodes[j].in[0] == i) + (c->nodes[j].kind == TMIX_CLS_ADD && c->nodes[j].in[1] == i);
    return r;
}

// The table entries of node n's tensor `leaf`, named "node.leaf".
static tmix_classifier_param param_entry(const tmix_cls_node *n, const char *leaf,
                                         tmix_tensor *value, tmix_tensor *grad)
{
    tmix_classifier_param p = {.value = value, .grad = grad};
    snprintf(p.name, sizeof p.name, "%s.%s", n->name, leaf);
    return p;
}

static tmix_classifier_buffer buffer_entry(const tmix_cls_node *n, const char *leaf,
                                           tmix_tensor *value, int64_t *count)
{
    tmix_classifier_buffer e = {.value = value, .count = count};
    snprintf(e.name, sizeof e.name, "%s.%s", n->name, leaf);
    return e;
}

int tmix_cls_finish(tmix_classifier *c)
{
    // At most two parameters and three buffers a node.
    c->params = calloc((size_t)c->count * 2, sizeof *c->params);
    c->buffers = calloc((size_t)c->count * 3, sizeof *c->buffers);
    if (!c->params || !c->buffers)
        return tmix_fail(TMIX_ENOMEM, "classifier %s: tables of %d nodes", c->info.arch, c->count);
    for (int i = 0; i < c->count; i++) {
        tmix_cls_node *n = &c->nodes[i];
        // No backward reads the output of the node before a ReLU (batch norm reads its input,
        // the ReLU its own output), so a ReLU may overwrite an input nobody else reads.
        n->inplace = n->kind == TMIX_CLS_RELU && n->in[0] != TMIX_CLS_INPUT && i != c->count - 1 &&
                     readers(c, n->in[0]) == 1;
        if ((n->kind == TMIX_CLS_CONV && !n->fixed) || n->kind == TMIX_CLS_BN ||
            n->kind == TMIX_CLS_LINEAR)
            c->params[c->nparams++] = param_entry(n, "weight", &n->weight, &n->dweight);
        if (n->kind == TMIX_CLS_BN || n->kind == TMIX_CLS_LINEAR)
            c->params[c->nparams++] = param_entry(n, "bias", &n->bias, &n->dbias);
        if (n->kind == TMIX_CLS_BN) {
            tmix_classifier_buffer *e = &c->buffers[c->nbuffers];
            e[0] = buffer_entry(n, "running_mean", &n->running_mean, NULL);
            e[1] = buffer_entry(n, "running_var", &n->running_var, NULL);
            e[2] = buffer_entry(n, "num_batches_tracked", NULL, &n->num_batches_tracked);
            c->nbuffers += 3;
        }
    }
    return 0;
}
