// The trainable builder of net.h: a zoo description with fresh parameters (classifier.h's
// recipe) and batch norm in training form, then the tables of parameters and buffers.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classifier_net.h"
#include "error.h"
#include "rng.h"

typedef struct {
    tmix_net_builder b;
    tmix_rng rng; // every initial value, in state_dict order
} builder;

// How initial values are drawn: N(0, normal_std^2) when normal_std > 0, else
// U(-uniform_bound, uniform_bound) when uniform_bound > 0, else all `value`.
typedef struct {
    float value, normal_std, uniform_bound;
} init_rule;

// Allocates t with values drawn by r.
static int values(builder *tb, tmix_tensor *t, int ndim, const int64_t *shape, init_rule r)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    float *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return tmix_fail(TMIX_ENOMEM, "classifier %s: %lld initial values", tb->b.arch,
                         (long long)n);
    for (int64_t i = 0; i < n; i++) {
        double x = r.value;
        if (r.normal_std > 0)
            x = r.normal_std * tmix_rng_normal(&tb->rng);
        else if (r.uniform_bound > 0)
            x = r.uniform_bound * (2 * tmix_rng_uniform(&tb->rng) - 1);
        v[i] = (float)x;
    }
    int rc = tmix_net_tensor(&tb->b, t, ndim, shape, v);
    free(v);
    return rc;
}

// A parameter drawn by r, and its gradient, zeroed.
static int param(builder *tb, tmix_tensor *t, tmix_tensor *grad, int ndim, const int64_t *shape,
                 init_rule r)
{
    TMIX_TRY(values(tb, t, ndim, shape, r));
    return tmix_net_tensor(&tb->b, grad, ndim, shape, NULL);
}

static int trainable_conv(tmix_net_builder *b, int in, const char *prefix, const char *conv,
                          const char *bn, int oc, int k, int stride, int pad)
{
    int64_t shape[4];
    tmix_node *n = tmix_net_push_conv(b, in, prefix, conv, oc, k, stride, pad, shape);
    if (!n)
        return b->rc;
    // kaiming_normal_(mode="fan_in", nonlinearity="leaky_relu", a=0): std sqrt(2 / fan_in).
    const float std = sqrtf(2.0f / (float)(shape[1] * k * k));
    int node = tmix_net_done(
        b, param((builder *)b, &n->weight, &n->dweight, 4, shape, (init_rule){0, std, 0}));
    return bn ? tmix_net_bn(b, node, prefix, bn) : node;
}

static int trainable_bn(tmix_net_builder *b, int in, const char *prefix, const char *bn)
{
    builder *tb = (builder *)b;
    tmix_node *n = tmix_net_push(b, TMIX_NODE_BN, prefix, bn, in, in);
    if (!n)
        return b->rc;
    const int64_t C[1] = {n->channels};
    int rc = param(tb, &n->weight, &n->dweight, 1, C, (init_rule){1, 0, 0});
    if (rc == 0)
        rc = param(tb, &n->bias, &n->dbias, 1, C, (init_rule){0, 0, 0});
    // The running statistics start as those of N(0, 1); the others are scratch.
    tmix_tensor *zeros[] = {&n->running_mean, &n->scale, &n->shift, &n->save_mean, &n->save_invstd};
    for (size_t i = 0; rc == 0 && i < sizeof zeros / sizeof zeros[0]; i++)
        rc = tmix_net_tensor(b, zeros[i], 1, C, NULL);
    if (rc == 0)
        rc = values(tb, &n->running_var, 1, C, (init_rule){1, 0, 0});
    return tmix_net_done(b, rc);
}

static int trainable_linear(tmix_net_builder *b, int in, const char *name)
{
    builder *tb = (builder *)b;
    tmix_node *n = tmix_net_push(b, TMIX_NODE_LINEAR, NULL, name, in, in);
    if (!n)
        return b->rc;
    const int64_t shape[2] = {b->net->num_classes, n->channels};
    n->channels = b->net->num_classes;
    // akamaster's kaiming_normal_ on the weight; the bias keeps nn.Linear's default.
    const float fan_in = (float)shape[1];
    int rc = param(tb, &n->weight, &n->dweight, 2, shape, (init_rule){0, sqrtf(2 / fan_in), 0});
    if (rc == 0)
        rc = param(tb, &n->bias, &n->dbias, 1, shape, (init_rule){0, 0, 1 / sqrtf(fan_in)});
    return tmix_net_done(b, rc);
}

static const tmix_net_ops trainable_ops = {trainable_conv, trainable_bn, trainable_linear};

// ---- the tables ------------------------------------------------------------------------------

// The table entries of node n's tensor `leaf`, named "node.leaf".
static tmix_classifier_param param_entry(const tmix_node *n, const char *leaf, tmix_tensor *value,
                                         tmix_tensor *grad)
{
    tmix_classifier_param p = {.value = value, .grad = grad};
    snprintf(p.name, sizeof p.name, "%s.%s", n->name, leaf);
    return p;
}

static tmix_classifier_buffer buffer_entry(const tmix_node *n, const char *leaf, tmix_tensor *value,
                                           int64_t *count)
{
    tmix_classifier_buffer e = {.value = value, .count = count};
    snprintf(e.name, sizeof e.name, "%s.%s", n->name, leaf);
    return e;
}

static int tables(tmix_classifier *c)
{
    tmix_net *g = &c->net;
    // At most two parameters and three buffers a node.
    c->params = calloc((size_t)g->count * 2, sizeof *c->params);
    c->buffers = calloc((size_t)g->count * 3, sizeof *c->buffers);
    if (!c->params || !c->buffers)
        return tmix_fail(TMIX_ENOMEM, "classifier %s: tables of %d nodes", c->info.arch, g->count);
    for (int i = 0; i < g->count; i++) {
        tmix_node *n = &g->nodes[i];
        if (n->dweight.data)
            c->params[c->nparams++] = param_entry(n, "weight", &n->weight, &n->dweight);
        if (n->dbias.data)
            c->params[c->nparams++] = param_entry(n, "bias", &n->bias, &n->dbias);
        if (n->kind == TMIX_NODE_BN) {
            tmix_classifier_buffer *e = &c->buffers[c->nbuffers];
            e[0] = buffer_entry(n, "running_mean", &n->running_mean, NULL);
            e[1] = buffer_entry(n, "running_var", &n->running_var, NULL);
            e[2] = buffer_entry(n, "num_batches_tracked", NULL, &n->num_batches_tracked);
            c->nbuffers += 3;
        }
    }
    return 0;
}

int tmix_cls_build(tmix_classifier *c, const tmix_zoo_arch *arch, uint64_t seed)
{
    builder tb = {.b = {.ops = &trainable_ops, .net = &c->net, .arch = arch->name}};
    tmix_rng_seed(&tb.rng, seed);
    if (arch->build(&tb.b) < 0)
        return tb.b.rc;
    tmix_net_finish(&c->net, -2); // no activation is read from outside
    return tables(c);
}
