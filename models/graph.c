// The frozen builder (graph.h): a zoo description's weights read from a teacher file, batch
// norm folded into the convolution it follows.
#include "graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ops.h"

static char *dims_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t at = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (at < size)
        snprintf(buf + at, size - at, ")");
    return buf;
}

// Reads tensor "base.what", which must have the given shape, as floats into dst and marks it
// used.
static int take(tmix_graph_loader *l, const char *base, const char *what, int ndim,
                const int64_t *shape, float *dst)
{
    const char *path = tmix_safetensors_path(l->st), *arch = l->b.arch;
    char name[160];
    snprintf(name, sizeof name, "%s.%s", base, what);
    int count = tmix_safetensors_count(l->st), at = -1;
    for (int i = 0; i < count && at < 0; i++)
        if (strcmp(tmix_safetensors_at(l->st, i)->name, name) == 0)
            at = i;
    if (at < 0)
        return tmix_fail(TMIX_EFORMAT, "%s: missing tensor '%s' for arch %s", path, name, arch);
    const tmix_st_tensor *t = tmix_safetensors_at(l->st, at);
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char got[160], want[160];
        return tmix_fail(TMIX_ESHAPE, "%s: tensor '%s' is %s, expected %s for arch %s", path, name,
                         dims_str(got, sizeof got, t->ndim, t->shape),
                         dims_str(want, sizeof want, ndim, shape), arch);
    }
    TMIX_TRY(tmix_st_read_f32(l->st, t, dst));
    // A NaN or infinite weight would only show up later as garbage logits.
    const int64_t n = tmix_st_numel(t);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s' holds a non-finite value at %lld", path,
                             name, (long long)i);
    l->used[at] = true;
    return 0;
}

// Reads batch norm `bn` (its full name) of C channels and folds it into scale and shift (C
// each). tmp holds 4 * C floats.
static int take_bn(tmix_graph_loader *l, const char *bn, int C, float *scale, float *shift,
                   float *tmp)
{
    static const char *const parts[] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++)
        TMIX_TRY(take(l, bn, parts[i], 1, (int64_t[]){C}, tmp + i * C));
    const float *var = tmp + 3 * C;
    for (int c = 0; c < C; c++)
        if (var[c] < 0)
            return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s.running_var' has a negative variance %g",
                             tmix_safetensors_path(l->st), bn, (double)var[c]);
    tmix_batchnorm_fold(scale, shift, tmp, tmp + C, tmp + 2 * C, var, TMIX_NET_BN_EPS, C);
    return 0;
}

static int frozen_conv(tmix_net_builder *b, int in, const char *prefix, const char *conv,
                       const char *bn, int oc, int k, int stride, int pad)
{
    tmix_graph_loader *l = (tmix_graph_loader *)b;
    int64_t shape[4];
    tmix_node *n = tmix_net_push_conv(b, in, prefix, conv, oc, k, stride, pad, shape);
    if (!n)
        return b->rc;
    const int64_t per_oc = shape[1] * k * k;
    float *w = malloc((size_t)(oc * per_oc) * sizeof *w);
    float *bnv = malloc((size_t)oc * 6 * sizeof *bnv); // scale, shift, then 4 for take_bn
    int rc = w && bnv ? 0 : tmix_fail(TMIX_ENOMEM, "net %s: %s", b->arch, n->name);
    if (rc == 0)
        rc = take(l, n->name, "weight", 4, shape, w);
    if (rc == 0 && bn) {
        char bn_name[160];
        snprintf(bn_name, sizeof bn_name, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", bn);
        rc = take_bn(l, bn_name, oc, bnv, bnv + oc, bnv + 2 * oc);
        for (int64_t o = 0; rc == 0 && o < oc; o++)
            for (int64_t i = 0; i < per_oc; i++)
                w[o * per_oc + i] *= bnv[o];
        if (rc == 0)
            rc = tmix_net_tensor(b, &n->bias, 1, shape, bnv + oc);
    }
    if (rc == 0)
        rc = tmix_net_tensor(b, &n->weight, 4, shape, w);
    free(w);
    free(bnv);
    return tmix_net_done(b, rc);
}

static int frozen_bn(tmix_net_builder *b, int in, const char *prefix, const char *bn)
{
    tmix_node *n = tmix_net_push(b, TMIX_NODE_BN, prefix, bn, in, in);
    if (!n)
        return b->rc;
    const int C = n->channels;
    float *bnv = malloc((size_t)C * 6 * sizeof *bnv);
    int rc = bnv ? 0 : tmix_fail(TMIX_ENOMEM, "net %s: %s", b->arch, n->name);
    if (rc == 0)
        rc = take_bn((tmix_graph_loader *)b, n->name, C, bnv, bnv + C, bnv + 2 * C);
    if (rc == 0)
        rc = tmix_net_tensor(b, &n->weight, 1, (int64_t[]){C}, bnv);
    if (rc == 0)
        rc = tmix_net_tensor(b, &n->bias, 1, (int64_t[]){C}, bnv + C);
    free(bnv);
    return tmix_net_done(b, rc);
}

static int frozen_linear(tmix_net_builder *b, int in, const char *name)
{
    tmix_graph_loader *l = (tmix_graph_loader *)b;
    tmix_node *n = tmix_net_push(b, TMIX_NODE_LINEAR, NULL, name, in, in);
    if (!n)
        return b->rc;
    const int64_t shape[2] = {b->net->num_classes, n->channels};
    n->channels = b->net->num_classes;
    float *w = malloc((size_t)((shape[1] + 1) * shape[0]) * sizeof *w); // weight, then bias
    float *bias = w + shape[0] * shape[1];
    int rc = w ? 0 : tmix_fail(TMIX_ENOMEM, "net %s: %s", b->arch, name);
    if (rc == 0)
        rc = take(l, name, "weight", 2, shape, w);
    if (rc == 0)
        rc = take(l, name, "bias", 1, shape, bias);
    if (rc == 0)
        rc = tmix_net_tensor(b, &n->weight, 2, shape, w);
    if (rc == 0)
        rc = tmix_net_tensor(b, &n->bias, 1, shape, bias);
    free(w);
    return tmix_net_done(b, rc);
}

static const tmix_net_ops frozen_ops = {frozen_conv, frozen_bn, frozen_linear};

tmix_graph_loader tmix_graph_loader_init(tmix_net *net, const char *arch,
                                         const tmix_safetensors *st, bool *used)
{
    return (tmix_graph_loader){
        .b = {.ops = &frozen_ops, .net = net, .arch = arch}, .st = st, .used = used};
}

int tmix_graph_share(tmix_net *dst, const tmix_net *src, tmix_backend *be)
{
    memset(dst, 0, sizeof *dst);
    dst->nodes = calloc((size_t)src->count, sizeof *dst->nodes);
    if (!dst->nodes)
        return tmix_fail(TMIX_ENOMEM, "graph_share: %d nodes", src->count);
    dst->be = be;
    dst->count = dst->cap = src->count;
    dst->in_channels = src->in_channels;
    dst->num_classes = src->num_classes;
    dst->keep = src->keep;
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
