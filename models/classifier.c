// The trainable classifier: creating it from the architecture table, and running its node
// list forward (train or eval) and backward into the parameter gradients.
#include "classifier.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "classifier_net.h"
#include "error.h"
#include "ops.h"

// PyTorch's BatchNorm2d defaults, which akamaster's recipe keeps.
static const tmix_batchnorm_train_params bn_params = {.eps = 1e-5f, .momentum = 0.1f};

// "cifar_resnet20, ..." for messages.
static const char *arch_list(char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; tmix_classifier_archs[i] && at < size; i++)
        at +=
            (size_t)snprintf(buf + at, size - at, "%s%s", i ? ", " : "", tmix_classifier_archs[i]);
    return buf;
}

int tmix_classifier_new(tmix_classifier **out, tmix_backend *be, const char *arch, int in_channels,
                        int num_classes, uint64_t seed)
{
    static const char op[] = "classifier_new";
    if (!out || !be || !arch)
        return tmix_fail(TMIX_EINVAL, "%s: out, backend or arch is NULL", op);
    *out = NULL;
    const tmix_cls_arch *a = tmix_cls_arch_find(arch);
    char known[256];
    if (!a)
        return tmix_fail(TMIX_EINVAL, "%s: unknown arch '%s' (trainable: %s)", op, arch,
                         arch_list(known, sizeof known));
    if (in_channels != 1 && in_channels != 3)
        return tmix_fail(TMIX_EINVAL, "%s: in_channels is %d, expected 1 or 3", op, in_channels);
    if (num_classes < 1 || num_classes > 1000000)
        return tmix_fail(TMIX_EINVAL, "%s: num_classes is %d, expected 1 to 1000000", op,
                         num_classes);
    tmix_classifier *c = calloc(1, sizeof *c);
    if (!c)
        return tmix_fail(TMIX_ENOMEM, "%s: %s", op, arch);
    c->be = be;
    snprintf(c->info.arch, sizeof c->info.arch, "%s", a->name);
    c->info.in_channels = in_channels;
    c->info.num_classes = num_classes;
    tmix_cls_builder b = {.c = c};
    tmix_rng_seed(&b.rng, seed);
    int rc = a->build(&b);
    if (rc == 0)
        rc = tmix_cls_finish(c);
    if (rc < 0) {
        tmix_classifier_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

// Frees the activations and their gradients.
static void release(tmix_classifier *c)
{
    for (int i = 0; i < c->count; i++) {
        tmix_tensor_free(c->be, &c->nodes[i].out);
        tmix_tensor_free(c->be, &c->nodes[i].dout);
    }
    memset(c->x_shape, 0, sizeof c->x_shape);
    c->grads_ready = false;
    c->have_train = false;
}

void tmix_classifier_free(tmix_classifier *c)
{
    if (!c)
        return;
    release(c);
    for (int i = 0; i < c->count; i++) {
        tmix_cls_node *n = &c->nodes[i];
        tmix_tensor *owned[] = {&n->weight,       &n->bias,        &n->dweight,   &n->dbias,
                                &n->running_mean, &n->running_var, &n->save_mean, &n->save_invstd,
                                &n->scale,        &n->shift};
        for (size_t k = 0; k < sizeof owned / sizeof owned[0]; k++)
            tmix_tensor_free(c->be, owned[k]);
    }
    free(c->nodes);
    free(c->params);
    free(c->buffers);
    free(c);
}

const tmix_classifier_info *tmix_classifier_info_get(const tmix_classifier *c)
{
    return &c->info;
}

const tmix_classifier_param *tmix_classifier_params(const tmix_classifier *c, int *count)
{
    *count = c->nparams;
    return c->params;
}

const tmix_classifier_buffer *tmix_classifier_buffers(const tmix_classifier *c, int *count)
{
    *count = c->nbuffers;
    return c->buffers;
}

int tmix_classifier_zero_grad(tmix_classifier *c)
{
    if (!c)
        return tmix_fail(TMIX_EINVAL, "classifier_zero_grad: classifier is NULL");
    for (int i = 0; i < c->nparams; i++)
        TMIX_TRY(tmix_tensor_zero(c->be, c->params[i].grad));
    return 0;
}

// ---- forward -------------------------------------------------------------------------------

static const tmix_tensor *input_of(const tmix_classifier *c, const tmix_tensor *x, int in)
{
    return in == TMIX_CLS_INPUT ? x : &c->nodes[in].out;
}

// Output size along one axis (PyTorch floor mode); 0 only makes the allocation fail.
static int64_t out_size(int64_t in, int64_t k, int stride, int pad)
{
    int64_t span = in + 2 * pad - k;
    return span < 0 ? 0 : span / stride + 1;
}

// Sizes every activation for x; the last node writes the caller's tensor.
static int prepare(tmix_classifier *c, const tmix_tensor *x)
{
    if (memcmp(c->x_shape, x->shape, sizeof c->x_shape) == 0)
        return 0;
    release(c);
    for (int i = 0; i < c->count - 1; i++) {
        tmix_cls_node *n = &c->nodes[i];
        const tmix_tensor *a = input_of(c, x, n->in[0]);
        int64_t s[4] = {a->shape[0], n->channels, a->shape[2], a->shape[3]};
        int ndim = 4;
        if (n->kind == TMIX_CLS_CONV) {
            s[2] = out_size(s[2], n->weight.shape[2], n->conv.stride_h, n->conv.pad_h);
            s[3] = out_size(s[3], n->weight.shape[3], n->conv.stride_w, n->conv.pad_w);
        } else if (n->kind == TMIX_CLS_AVGPOOL || n->kind == TMIX_CLS_LINEAR) {
            ndim = 2;
        }
        int rc = 0;
        if (n->inplace)
            n->out = tmix_tensor_view(a->data, TMIX_F32, c->be->device, ndim, s);
        else
            rc = tmix_tensor_alloc(c->be, &n->out, TMIX_F32, ndim, s);
        if (rc < 0) {
            release(c);
            return rc;
        }
    }
    memcpy(c->x_shape, x->shape, sizeof c->x_shape);
    return 0;
}

// scale, shift = the running statistics of batch norm n folded (PyTorch's eval()).
static int fold_running(tmix_classifier *c, tmix_cls_node *n)
{
    const int C = n->channels;
    float *h = malloc((size_t)C * 6 * sizeof *h); // gamma, beta, mean, var, scale, shift
    if (!h)
        return tmix_fail(TMIX_ENOMEM, "classifier_forward: %s", n->name);
    const tmix_tensor *src[4] = {&n->weight, &n->bias, &n->running_mean, &n->running_var};
    int rc = 0;
    for (int k = 0; k < 4 && rc == 0; k++)
        rc = tmix_tensor_download(c->be, h + k * C, src[k]);
    if (rc == 0) {
        tmix_batchnorm_fold(h + 4 * C, h + 5 * C, h, h + C, h + 2 * C, h + 3 * C, bn_params.eps, C);
        rc = tmix_tensor_upload(c->be, &n->scale, h + 4 * C);
    }
    if (rc == 0)
        rc = tmix_tensor_upload(c->be, &n->shift, h + 5 * C);
    free(h);
    return rc;
}

static int bn_forward(tmix_classifier *c, tmix_cls_node *n, tmix_tensor *y, const tmix_tensor *a,
                      bool train)
{
    if (!train) {
        TMIX_TRY(fold_running(c, n));
        return tmix_batchnorm_forward(c->be, y, a, &n->scale, &n->shift);
    }
    TMIX_TRY(tmix_batchnorm_train_forward(c->be, y, &n->save_mean, &n->save_invstd,
                                          &n->running_mean, &n->running_var, a, &n->weight,
                                          &n->bias, bn_params));
    n->num_batches_tracked++;
    return 0;
}

int tmix_classifier_forward(tmix_classifier *c, tmix_tensor *logits, const tmix_tensor *x,
                            bool train)
{
    static const char op[] = "classifier_forward";
    if (!c)
        return tmix_fail(TMIX_EINVAL, "%s: classifier is NULL", op);
    tmix_backend *be = c->be;
    TMIX_TRY(tmix_check_shape(op, "x", x, be, TMIX_F32, 4,
                              (int64_t[]){-1, c->info.in_channels, -1, -1}));
    TMIX_TRY(tmix_check_shape(op, "logits", logits, be, TMIX_F32, 2,
                              (int64_t[]){x->shape[0], c->info.num_classes}));
    c->have_train = false;
    TMIX_TRY(prepare(c, x));
    for (int i = 0; i < c->count; i++) {
        tmix_cls_node *n = &c->nodes[i];
        const tmix_tensor *a = input_of(c, x, n->in[0]);
        tmix_tensor *y = i == c->count - 1 ? logits : &n->out;
        switch (n->kind) {
        case TMIX_CLS_CONV:
            TMIX_TRY(tmix_conv2d_forward(be, y, a, &n->weight, NULL, n->conv));
            break;
        case TMIX_CLS_BN:
            TMIX_TRY(bn_forward(c, n, y, a, train));
            break;
        case TMIX_CLS_RELU:
            TMIX_TRY(tmix_relu_forward(be, y, a));
            break;
        case TMIX_CLS_ADD:
            TMIX_TRY(tmix_add(be, y, a, input_of(c, x, n->in[1])));
            break;
        case TMIX_CLS_AVGPOOL:
            TMIX_TRY(tmix_avgpool_forward(be, y, a));
            break;
        case TMIX_CLS_LINEAR:
            TMIX_TRY(tmix_linear_forward(be, y, a, &n->weight, &n->bias));
            break;
        }
    }
    if (train) {
        c->x = *x;
        c->have_train = true;
    }
    return 0;
}

// ---- backward ------------------------------------------------------------------------------

// The parameter gradients of node n and din0 (din1: add's second input) += the gradient of
// its input, from dy = d(loss)/d(n's output) and a, its first input; a NULL din is x's, which
// is not needed.
static int node_backward(tmix_classifier *c, tmix_cls_node *n, const tmix_tensor *dy,
                         const tmix_tensor *a, tmix_tensor *din0, tmix_tensor *din1)
{
    tmix_backend *be = c->be;
    switch (n->kind) {
    case TMIX_CLS_CONV:
        if (!n->fixed)
            TMIX_TRY(tmix_conv2d_backward_weight(be, &n->dweight, dy, a, n->conv));
        return din0 ? tmix_conv2d_backward_input(be, din0, dy, &n->weight, n->conv) : 0;
    case TMIX_CLS_BN:
        return tmix_batchnorm_train_backward(be, din0, &n->dweight, &n->dbias, dy, a, &n->weight,
                                             &n->save_mean, &n->save_invstd);
    case TMIX_CLS_RELU:
        return din0 ? tmix_relu_backward(be, din0, dy, &n->out) : 0;
    case TMIX_CLS_ADD:
        if (din0)
            TMIX_TRY(tmix_add(be, din0, din0, dy));
        return din1 ? tmix_add(be, din1, din1, dy) : 0;
    case TMIX_CLS_AVGPOOL:
        return din0 ? tmix_avgpool_backward(be, din0, dy) : 0;
    case TMIX_CLS_LINEAR:
        TMIX_TRY(tmix_linear_backward_weight(be, &n->dweight, dy, a));
        TMIX_TRY(tmix_bias_backward(be, &n->dbias, dy));
        return din0 ? tmix_linear_backward_input(be, din0, dy, &n->weight) : 0;
    }
    return tmix_fail(TMIX_EINVAL, "classifier: node %s of unknown kind %d", n->name, (int)n->kind);
}

// Allocates (once per input shape) and zeroes the gradient of every activation.
static int zero_douts(tmix_classifier *c)
{
    const int last = c->count - 1;
    for (int i = 0; i < last && !c->grads_ready; i++) {
        tmix_cls_node *n = &c->nodes[i];
        int rc = tmix_tensor_alloc(c->be, &n->dout, TMIX_F32, n->out.ndim, n->out.shape);
        if (rc < 0) {
            for (int j = 0; j <= i; j++)
                tmix_tensor_free(c->be, &c->nodes[j].dout);
            return rc;
        }
    }
    c->grads_ready = true;
    for (int i = 0; i < last; i++)
        TMIX_TRY(tmix_tensor_zero(c->be, &c->nodes[i].dout));
    return 0;
}

int tmix_classifier_backward(tmix_classifier *c, const tmix_tensor *dlogits)
{
    static const char op[] = "classifier_backward";
    if (!c)
        return tmix_fail(TMIX_EINVAL, "%s: classifier is NULL", op);
    if (!c->have_train)
        return tmix_fail(TMIX_EINVAL, "%s: no successful train forward to follow", op);
    TMIX_TRY(tmix_check_shape(op, "dlogits", dlogits, c->be, TMIX_F32, 2,
                              (int64_t[]){c->x_shape[0], c->info.num_classes}));
    TMIX_TRY(zero_douts(c));
    const int last = c->count - 1;
    for (int i = last; i >= 0; i--) {
        tmix_cls_node *n = &c->nodes[i];
        tmix_tensor *din[2] = {NULL, NULL};
        for (int k = 0; k < (n->kind == TMIX_CLS_ADD ? 2 : 1); k++)
            if (n->in[k] != TMIX_CLS_INPUT)
                din[k] = &c->nodes[n->in[k]].dout;
        TMIX_TRY(node_backward(c, n, i == last ? dlogits : &n->dout, input_of(c, &c->x, n->in[0]),
                               din[0], din[1]));
    }
    return 0;
}
