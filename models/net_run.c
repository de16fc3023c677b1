// Running a node list (net.h): sizing the activations, the forward pass (frozen, or trainable
// in train or eval form) and the backward pass into the input and the weights.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "net.h"
#include "ops.h"

// PyTorch's BatchNorm2d defaults, which every zoo recipe keeps.
static const tmix_batchnorm_train_params bn_params = {.eps = TMIX_NET_BN_EPS, .momentum = 0.1f};

static void free_activations(tmix_net *g)
{
    for (int i = 0; i < g->count; i++) {
        tmix_tensor_free(g->be, &g->nodes[i].out);
        tmix_tensor_free(g->be, &g->nodes[i].dout);
    }
    g->grads_ready = false;
    g->all_activations = false;
}

void tmix_net_release(tmix_net *g)
{
    free_activations(g);
    tmix_layers_free(g->layers);
    g->layers = NULL;
    g->layers_backward = g->layers_refused = g->backward_refused = g->whole_forward = false;
    g->layers_why[0] = 0;
    memset(g->x_shape, 0, sizeof g->x_shape);
}

static const tmix_tensor *input_of(const tmix_net *g, const tmix_tensor *x, int in)
{
    return in == TMIX_NET_INPUT ? x : &g->nodes[in].out;
}

// Node n's output shape for x, from its input's (already sized).
static void node_shape(const tmix_net *g, const tmix_tensor *x, const tmix_node *n, int *ndim,
                       int64_t s[4])
{
    const tmix_tensor *a = input_of(g, x, n->in[0]);
    const int64_t k[4] = {a->shape[0], n->channels, a->shape[2], a->shape[3]};
    memcpy(s, k, sizeof k);
    *ndim = 4;
    if (n->kind == TMIX_NODE_CONV) {
        // The zoo pads every kernel to fit any input of 1x1 or more; a size of 0 would only
        // make the allocation fail.
        s[2] = tmix_window_out_size(s[2], n->weight.shape[2], n->conv.stride_h, n->conv.pad_h);
        s[3] = tmix_window_out_size(s[3], n->weight.shape[3], n->conv.stride_w, n->conv.pad_w);
    } else if (n->kind == TMIX_NODE_MAXPOOL) {
        s[2] = tmix_window_out_size(s[2], n->pool.kernel_h, n->pool.stride_h, n->pool.pad_h);
        s[3] = tmix_window_out_size(s[3], n->pool.kernel_w, n->pool.stride_w, n->pool.pad_w);
    } else if (n->kind == TMIX_NODE_AVGPOOL || n->kind == TMIX_NODE_LINEAR) {
        *ndim = 2;
        s[2] = s[3] = 0;
    }
}

// Sizes the activations for x: every node's when all (a forward that a backward may follow),
// else only keep's, in memory of its own, and the others' shapes (tmix_net_infer). The last
// node writes the caller's tensor. Each (re)allocation moves the activations: generation
// counts them.
static int prepare(tmix_net *g, const tmix_tensor *x, bool all)
{
    if (memcmp(g->x_shape, x->shape, sizeof g->x_shape) != 0)
        tmix_net_release(g);
    else if (g->all_activations || !all)
        return 0; // sized for x, as much as asked
    else
        free_activations(g); // keep's own memory, from tmix_net_infer, becomes a view again
    memcpy(g->x_shape, x->shape, sizeof g->x_shape);
    g->generation++;
    for (int i = 0; i < g->count - 1; i++) {
        tmix_node *n = &g->nodes[i];
        int ndim;
        int64_t s[4];
        node_shape(g, x, n, &ndim, s);
        int rc = 0;
        if (!all && i != g->keep)
            n->out = tmix_tensor_view(NULL, TMIX_F32, g->be->device, ndim, s); // the shape only
        else if (all && n->inplace)
            n->out = tmix_tensor_view(input_of(g, x, n->in[0])->data, TMIX_F32, g->be->device,
                                      ndim, s);
        else
            rc = tmix_tensor_alloc(g->be, &n->out, TMIX_F32, ndim, s);
        if (rc < 0) {
            tmix_net_release(g);
            return rc;
        }
    }
    g->all_activations = all;
    return 0;
}

// scale, shift = the running statistics of trainable batch norm n folded (PyTorch's eval()),
// at each call, so that they follow the optimiser's updates.
static int fold_running(tmix_net *g, tmix_node *n)
{
    const int C = n->channels;
    float *h = malloc((size_t)C * 6 * sizeof *h); // gamma, beta, mean, var, scale, shift
    if (!h)
        return tmix_fail(TMIX_ENOMEM, "net forward: %s", n->name);
    const tmix_tensor *src[4] = {&n->weight, &n->bias, &n->running_mean, &n->running_var};
    int rc = 0;
    for (int k = 0; k < 4 && rc == 0; k++)
        rc = tmix_tensor_download(g->be, h + k * C, src[k]);
    if (rc == 0) {
        tmix_batchnorm_fold(h + 4 * C, h + 5 * C, h, h + C, h + 2 * C, h + 3 * C, bn_params.eps, C);
        rc = tmix_tensor_upload(g->be, &n->scale, h + 4 * C);
    }
    if (rc == 0)
        rc = tmix_tensor_upload(g->be, &n->shift, h + 5 * C);
    free(h);
    return rc;
}

static int bn_forward(tmix_net *g, tmix_node *n, tmix_tensor *y, const tmix_tensor *a, bool train)
{
    if (!n->dweight.data) // frozen: weight and bias are the folded scale and shift
        return tmix_batchnorm_forward(g->be, y, a, &n->weight, &n->bias);
    if (!train) {
        TMIX_TRY(fold_running(g, n));
        return tmix_batchnorm_forward(g->be, y, a, &n->scale, &n->shift);
    }
    TMIX_TRY(tmix_batchnorm_train_forward(g->be, y, &n->save_mean, &n->save_invstd,
                                          &n->running_mean, &n->running_var, a, &n->weight,
                                          &n->bias, bn_params));
    n->num_batches_tracked++;
    return 0;
}

static int forward_whole(tmix_net *g, tmix_tensor *out, const tmix_tensor *x, bool *whole);

int tmix_net_forward(tmix_net *g, tmix_tensor *out, const tmix_tensor *x, bool train)
{
    g->whole_forward = false;
    if (!train) {
        bool whole;
        TMIX_TRY(forward_whole(g, out, x, &whole));
        if (whole) {
            g->x = *x;
            g->whole_forward = true;
            return 0;
        }
    }
    TMIX_TRY(prepare(g, x, true));
    g->x = *x;
    tmix_backend *be = g->be;
    for (int i = 0; i < g->count; i++) {
        tmix_node *n = &g->nodes[i];
        const tmix_tensor *a = input_of(g, x, n->in[0]);
        tmix_tensor *y = i == g->count - 1 ? out : &n->out;
        switch (n->kind) {
        case TMIX_NODE_CONV: {
            tmix_conv2d_params p = n->conv;
            p.relu = n->relu_fused;
            TMIX_TRY(tmix_conv2d_forward(be, y, a, &n->weight, n->bias.data ? &n->bias : NULL, p));
            break;
        }
        case TMIX_NODE_BN:
            TMIX_TRY(bn_forward(g, n, y, a, train));
            break;
        case TMIX_NODE_RELU:
            if (!n->inplace || !g->nodes[n->in[0]].relu_fused)
                TMIX_TRY(tmix_relu_forward(be, y, a));
            break;
        case TMIX_NODE_MAXPOOL:
            TMIX_TRY(tmix_maxpool2d_forward(be, y, a, n->pool));
            break;
        case TMIX_NODE_ADD: {
            const tmix_tensor *b = input_of(g, x, n->in[1]);
            TMIX_TRY(n->relu_fused ? tmix_add_relu(be, y, a, b) : tmix_add(be, y, a, b));
            break;
        }
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

// The nodes as layers (backend.h) for x: keep's output and the last are read.
static tmix_layer *describe_layers(const tmix_net *g, const tmix_tensor *x)
{
    tmix_layer *L = calloc((size_t)g->count, sizeof *L);
    for (int i = 0; L && i < g->count; i++) {
        const tmix_node *n = &g->nodes[i];
        tmix_layer *l = &L[i];
        static const tmix_layer_kind kinds[] = {
            [TMIX_NODE_CONV] = TMIX_LAYER_CONV,       [TMIX_NODE_BN] = TMIX_LAYER_SCALE,
            [TMIX_NODE_RELU] = TMIX_LAYER_RELU,       [TMIX_NODE_MAXPOOL] = TMIX_LAYER_MAXPOOL,
            [TMIX_NODE_ADD] = TMIX_LAYER_ADD,         [TMIX_NODE_AVGPOOL] = TMIX_LAYER_AVGPOOL,
            [TMIX_NODE_LINEAR] = TMIX_LAYER_LINEAR,
        };
        l->kind = kinds[n->kind];
        l->in[0] = n->in[0];
        l->in[1] = n->kind == TMIX_NODE_ADD ? n->in[1] : TMIX_NET_INPUT;
        l->relu = n->relu_fused;
        l->conv = n->conv;
        l->pool = n->pool;
        const bool params = n->kind == TMIX_NODE_CONV || n->kind == TMIX_NODE_BN ||
                            n->kind == TMIX_NODE_LINEAR;
        l->weight = params ? &n->weight : NULL;
        l->bias = params && n->bias.data ? &n->bias : NULL;
        if (i < g->count - 1) {
            l->ndim = n->out.ndim;
            memcpy(l->shape, n->out.shape, sizeof l->shape);
        } else {
            l->ndim = 2;
            l->shape[0] = x->shape[0];
            l->shape[1] = n->channels;
        }
        l->read = i == g->keep || i == g->count - 1;
    }
    return L;
}

// The network is run op by op for x_shape (with backward: its forwards for a backward), for
// the reason the last error gives; the layers, if any, are freed.
static void refuse_layers(tmix_net *g, bool backward)
{
    if (backward)
        g->backward_refused = true;
    else
        g->layers_refused = true;
    snprintf(g->layers_why, sizeof g->layers_why, "%s", tmix_last_error());
    tmix_layers_free(g->layers);
    g->layers = NULL;
}

// Why the network is never run whole, or NULL.
static const char *whole_refused(const tmix_net *g)
{
    for (int i = 0; i < g->count; i++)
        if (g->nodes[i].dweight.data) // a trainable batch norm's scale changes
            return "the network is trainable";
    return tmix_backend_has_layers(g->be) ? NULL : "the backend runs no network whole";
}

// g->layers for x (with backward: for a backward too), or the refusal when the backend does
// not run the network whole.
static int make_layers(tmix_net *g, const tmix_tensor *x, bool backward)
{
    const char *why = whole_refused(g);
    if (why) {
        g->layers_refused = true;
        snprintf(g->layers_why, sizeof g->layers_why, "%s", why);
        return 0;
    }
    tmix_layer *L = describe_layers(g, x);
    if (!L)
        return tmix_fail(TMIX_ENOMEM, "net infer: %d layers", g->count);
    const int rc = tmix_layers_new(g->be, L, g->count, x->shape, backward, &g->layers);
    free(L);
    if (rc == TMIX_ENOTSUP)
        refuse_layers(g, backward);
    else if (rc == 0)
        g->generation++; // the layers' buffers are new
    g->layers_backward = rc == 0 && backward;
    return rc == TMIX_ENOTSUP ? 0 : rc;
}

// out and keep's activation from the layers; TMIX_ENOTSUP when the backend turned a layer
// down at run time.
static int layers_forward(tmix_net *g, tmix_tensor *out, const tmix_tensor *x)
{
    tmix_tensor **outs = calloc((size_t)g->count, sizeof *outs);
    if (!outs)
        return tmix_fail(TMIX_ENOMEM, "net forward: %d outputs", g->count);
    if (g->keep >= 0)
        outs[g->keep] = &g->nodes[g->keep].out;
    outs[g->count - 1] = out;
    const int rc = tmix_layers_forward(g->layers, x, outs);
    free(outs);
    return rc;
}

// Whether the activations are sized for x with every node's: then they stay (a backward op
// by op may still read them), else only keep's are allocated.
static bool keeps_all(const tmix_net *g, const tmix_tensor *x)
{
    return g->all_activations && memcmp(g->x_shape, x->shape, sizeof g->x_shape) == 0;
}

// The forward of a frozen network run whole, for a backward: *whole false, with nothing
// run, where the backend does not.
static int forward_whole(tmix_net *g, tmix_tensor *out, const tmix_tensor *x, bool *whole)
{
    *whole = false;
    if (whole_refused(g))
        return 0;
    TMIX_TRY(prepare(g, x, keeps_all(g, x))); // for another shape: the refusals are forgotten
    if (g->layers_refused || g->backward_refused)
        return 0;
    if (g->layers && !g->layers_backward) { // an infer's: made anew, with backward
        tmix_layers_free(g->layers);
        g->layers = NULL;
    }
    if (!g->layers)
        TMIX_TRY(make_layers(g, x, true));
    if (!g->layers)
        return 0;
    const int rc = layers_forward(g, out, x);
    if (rc == TMIX_ENOTSUP)
        refuse_layers(g, false); // turned down at run time: op by op from now on
    *whole = rc == 0;
    return rc == TMIX_ENOTSUP ? 0 : rc;
}

int tmix_net_infer(tmix_net *g, tmix_tensor *out, const tmix_tensor *x)
{
    // All the activations stay where a forward sized them for x: infer writes keep's there.
    TMIX_TRY(prepare(g, x, keeps_all(g, x)));
    g->whole_forward = false;
    if (!g->layers && !g->layers_refused)
        TMIX_TRY(make_layers(g, x, false));
    if (g->layers) {
        const int rc = layers_forward(g, out, x);
        if (rc != TMIX_ENOTSUP)
            return rc;
        refuse_layers(g, false); // turned down at run time: op by op from now on
    }
    return tmix_net_forward(g, out, x, false);
}

// The weight gradients of node n when it is trainable, and din0 (din1: add's second input)
// += the gradient of its input unless NULL, from dy = d(loss)/d(n's output) and a, its first
// input.
static int node_backward(tmix_net *g, tmix_node *n, const tmix_tensor *dy, const tmix_tensor *a,
                         tmix_tensor *din0, tmix_tensor *din1)
{
    tmix_backend *be = g->be;
    const bool trainable = n->dweight.data != NULL;
    switch (n->kind) {
    case TMIX_NODE_CONV:
        if (trainable)
            TMIX_TRY(tmix_conv2d_backward_weight(be, &n->dweight, dy, a, n->conv));
        return din0 ? tmix_conv2d_backward_input(be, din0, dy, &n->weight, n->conv) : 0;
    case TMIX_NODE_BN:
        if (trainable)
            return tmix_batchnorm_train_backward(be, din0, &n->dweight, &n->dbias, dy, a,
                                                 &n->weight, &n->save_mean, &n->save_invstd);
        return din0 ? tmix_batchnorm_backward_input(be, din0, dy, &n->weight) : 0;
    case TMIX_NODE_RELU:
        return din0 ? tmix_relu_backward(be, din0, dy, &n->out) : 0;
    case TMIX_NODE_MAXPOOL:
        return din0 ? tmix_maxpool2d_backward(be, din0, dy, a, n->pool) : 0;
    case TMIX_NODE_ADD:
        if (din0)
            TMIX_TRY(tmix_add(be, din0, din0, dy));
        return din1 ? tmix_add(be, din1, din1, dy) : 0;
    case TMIX_NODE_AVGPOOL:
        return din0 ? tmix_avgpool_backward(be, din0, dy) : 0;
    case TMIX_NODE_LINEAR:
        if (trainable) {
            TMIX_TRY(tmix_linear_backward_weight(be, &n->dweight, dy, a));
            TMIX_TRY(tmix_bias_backward(be, &n->dbias, dy));
        }
        return din0 ? tmix_linear_backward_input(be, din0, dy, &n->weight) : 0;
    }
    return tmix_fail(TMIX_EINVAL, "net: node %s of unknown kind %d", n->name, (int)n->kind);
}

// Allocates (once per input shape) and zeroes the gradient of every activation that reaches x.
static int zero_douts(tmix_net *g)
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
    return 0;
}

// The backward of a forward run whole: through the layers, or where the backend turns that
// down at run time, op by op after the forward again (op by op from now on).
static int backward_whole(tmix_net *g, tmix_tensor *dx, const tmix_tensor *dout)
{
    if (!dx)
        return 0; // frozen: no weight has a gradient
    const int rc = tmix_layers_backward(g->layers, dx, dout);
    if (rc != TMIX_ENOTSUP)
        return rc;
    refuse_layers(g, true);
    tmix_tensor logits = {0};
    int r = tmix_tensor_alloc(g->be, &logits, TMIX_F32, dout->ndim, dout->shape);
    const tmix_tensor x = g->x;
    if (r == 0)
        r = tmix_net_forward(g, &logits, &x, false);
    tmix_tensor_free(g->be, &logits);
    return r < 0 ? r : tmix_net_backward(g, dx, dout);
}

int tmix_net_backward(tmix_net *g, tmix_tensor *dx, const tmix_tensor *dout)
{
    if (g->whole_forward)
        return backward_whole(g, dx, dout);
    TMIX_TRY(zero_douts(g));
    const int last = g->count - 1;
    for (int i = last; i >= 0; i--) {
        tmix_node *n = &g->nodes[i];
        if (!n->reaches_input)
            continue;
        tmix_tensor *din[2] = {NULL, NULL};
        for (int k = 0; k < (n->kind == TMIX_NODE_ADD ? 2 : 1); k++) {
            const int j = n->in[k];
            if (j == TMIX_NET_INPUT)
                din[k] = dx;
            else if (g->nodes[j].reaches_input)
                din[k] = &g->nodes[j].dout;
        }
        TMIX_TRY(node_backward(g, n, i == last ? dout : &n->dout, input_of(g, &g->x, n->in[0]),
                               din[0], din[1]));
    }
    return 0;
}
