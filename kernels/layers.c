// The entry points of frozen networks run whole (ops.h, "frozen networks"): every layer's
// inputs, parameters and output shape are checked here, so that a backend may trust them.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops.h"

struct tmix_layers {
    tmix_backend *be;
    tmix_layer *layers; // a copy, to check the outputs of each forward against
    int count;
    int64_t x_shape[4];
    bool backward; // made for tmix_layers_backward
    bool forward_ran; // a forward succeeded, so a backward has activations to read
    void *impl; // the backend's
};

static const char op_new[] = "layers_new";

static const char *const kind_names[] = {"conv", "scale", "relu", "maxpool",
                                         "add", "avgpool", "linear"};

// Layer i's parameter t: on the backend, float32, of the given shape.
static int check_param(tmix_backend *be, int i, const char *name, const tmix_tensor *t, int ndim,
                       const int64_t *shape)
{
    char what[48];
    snprintf(what, sizeof what, "layer %d's %s", i, name);
    return tmix_check_shape(op_new, what, t, be, TMIX_F32, ndim, shape);
}

// Layer i's output shape from its inputs' (ndim and shape of each layer before it, x's for
// -1), its parameters checked on the way.
static int expected_shape(tmix_backend *be, const tmix_layer *L, int i, const int64_t x_shape[4],
                          int *ndim, int64_t shape[4])
{
    const tmix_layer *l = &L[i];
    const int arity = l->kind == TMIX_LAYER_ADD ? 2 : 1;
    const int64_t *in[2] = {NULL, NULL};
    int in_ndim[2] = {0, 0};
    for (int k = 0; k < arity; k++) {
        if (l->in[k] < -1 || l->in[k] >= i)
            return tmix_fail(TMIX_EINVAL, "%s: layer %d (%s) reads layer %d, not an earlier one",
                             op_new, i, kind_names[l->kind], l->in[k]);
        in[k] = l->in[k] < 0 ? x_shape : L[l->in[k]].shape;
        in_ndim[k] = l->in[k] < 0 ? 4 : L[l->in[k]].ndim;
    }
    const bool wants_4d = l->kind != TMIX_LAYER_LINEAR;
    if ((in_ndim[0] == 4) != wants_4d)
        return tmix_fail(TMIX_ESHAPE, "%s: layer %d (%s) reads a %d-D output", op_new, i,
                         kind_names[l->kind], in_ndim[0]);
    *ndim = 4;
    memcpy(shape, in[0], 4 * sizeof *shape);
    switch (l->kind) {
    case TMIX_LAYER_CONV: {
        const tmix_conv2d_params p = l->conv;
        if (p.stride_h <= 0 || p.stride_w <= 0 || p.dilation_h <= 0 || p.dilation_w <= 0 ||
            p.pad_h < 0 || p.pad_w < 0)
            return tmix_fail(TMIX_EINVAL, "%s: layer %d (conv) has a stride, dilation or "
                             "padding out of range", op_new, i);
        TMIX_TRY(check_param(be, i, "weight", l->weight, 4, (int64_t[]){-1, in[0][1], -1, -1}));
        const tmix_tensor *w = l->weight;
        if (l->bias)
            TMIX_TRY(check_param(be, i, "bias", l->bias, 1, &w->shape[0]));
        shape[1] = w->shape[0];
        const int64_t span_h = (w->shape[2] - 1) * p.dilation_h + 1;
        const int64_t span_w = (w->shape[3] - 1) * p.dilation_w + 1;
        shape[2] = tmix_window_out_size(in[0][2], span_h, p.stride_h, p.pad_h);
        shape[3] = tmix_window_out_size(in[0][3], span_w, p.stride_w, p.pad_w);
        break;
    }
    case TMIX_LAYER_SCALE:
        TMIX_TRY(check_param(be, i, "weight", l->weight, 1, &in[0][1]));
        TMIX_TRY(check_param(be, i, "bias", l->bias, 1, &in[0][1]));
        break;
    case TMIX_LAYER_RELU:
        break;
    case TMIX_LAYER_MAXPOOL: {
        const tmix_pool2d_params p = l->pool;
        if (p.kernel_h <= 0 || p.kernel_w <= 0 || p.pad_h < 0 || p.pad_w < 0 ||
            p.pad_h > p.kernel_h / 2 || p.pad_w > p.kernel_w / 2)
            return tmix_fail(TMIX_EINVAL, "%s: layer %d (maxpool) has a kernel or padding out "
                             "of range", op_new, i);
        shape[2] = tmix_window_out_size(in[0][2], p.kernel_h, p.stride_h, p.pad_h);
        shape[3] = tmix_window_out_size(in[0][3], p.kernel_w, p.stride_w, p.pad_w);
        break;
    }
    case TMIX_LAYER_ADD:
        if (in_ndim[1] != 4 || memcmp(in[0], in[1], 4 * sizeof *shape) != 0)
            return tmix_fail(TMIX_ESHAPE, "%s: layer %d (add) reads outputs of two shapes",
                             op_new, i);
        break;
    case TMIX_LAYER_AVGPOOL:
        *ndim = 2;
        break;
    case TMIX_LAYER_LINEAR:
        TMIX_TRY(check_param(be, i, "weight", l->weight, 2, (int64_t[]){-1, in[0][1]}));
        TMIX_TRY(check_param(be, i, "bias", l->bias, 1, &l->weight->shape[0]));
        *ndim = 2;
        shape[1] = l->weight->shape[0];
        break;
    default:
        return tmix_fail(TMIX_EINVAL, "%s: layer %d is of unknown kind %d", op_new, i,
                         (int)l->kind);
    }
    if (*ndim == 2)
        shape[2] = shape[3] = 0;
    for (int d = 0; d < *ndim; d++)
        if (shape[d] <= 0)
            return tmix_fail(TMIX_ESHAPE, "%s: layer %d (%s) would have an empty output", op_new,
                             i, kind_names[l->kind]);
    return 0;
}

bool tmix_backend_has_layers(const tmix_backend *be)
{
    return be && be->ops->layers_new && be->ops->layers_forward && be->ops->layers_backward &&
           be->ops->layers_free;
}

int tmix_layers_new(tmix_backend *be, const tmix_layer *layers, int count,
                    const int64_t x_shape[4], bool backward, tmix_layers **out)
{
    if (!out)
        return tmix_fail(TMIX_EINVAL, "%s: out is NULL", op_new);
    *out = NULL;
    TMIX_CHECK_BACKEND(op_new, be, layers_new);
    if (!layers || count <= 0 || !x_shape)
        return tmix_fail(TMIX_EINVAL, "%s: no layers or no input shape", op_new);
    for (int d = 0; d < 4; d++)
        if (x_shape[d] <= 0)
            return tmix_fail(TMIX_ESHAPE, "%s: the input shape has a dimension of %lld", op_new,
                             (long long)x_shape[d]);
    for (int i = 0; i < count; i++) {
        int ndim = 0;
        int64_t shape[4] = {0};
        TMIX_TRY(expected_shape(be, layers, i, x_shape, &ndim, shape));
        if (layers[i].ndim != 2 && layers[i].ndim != 4)
            return tmix_fail(TMIX_ESHAPE, "%s: layer %d states %d dimensions, not 2 or 4",
                             op_new, i, layers[i].ndim);
        if (ndim != layers[i].ndim || memcmp(shape, layers[i].shape, ndim * sizeof *shape) != 0) {
            char want[96], said[96];
            tmix_tensor a = tmix_tensor_view(NULL, TMIX_F32, be->device, ndim, shape);
            tmix_tensor b = tmix_tensor_view(NULL, TMIX_F32, be->device, layers[i].ndim,
                                             layers[i].shape);
            return tmix_fail(TMIX_ESHAPE, "%s: layer %d (%s) is said to give %s; its inputs "
                             "give %s", op_new, i, kind_names[layers[i].kind],
                             tmix_shape_str(&b, said, sizeof said),
                             tmix_shape_str(&a, want, sizeof want));
        }
    }
    tmix_layers *l = calloc(1, sizeof *l);
    tmix_layer *copy = malloc((size_t)count * sizeof *copy);
    if (!l || !copy) {
        free(l);
        free(copy);
        return tmix_fail(TMIX_ENOMEM, "%s: %d layers", op_new, count);
    }
    memcpy(copy, layers, (size_t)count * sizeof *copy);
    *l = (tmix_layers){.be = be, .layers = copy, .count = count, .backward = backward};
    memcpy(l->x_shape, x_shape, sizeof l->x_shape);
    const int rc = be->ops->layers_new(be, layers, count, x_shape, backward, &l->impl);
    if (rc < 0) {
        free(copy);
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

// The backend's forward, profiled as an op of its own.
static int run_forward(tmix_layers *l, const tmix_tensor *x, tmix_tensor *const *outs)
{
    TMIX_CALL("layers_forward", l->be, layers_forward, l->impl, x, outs);
}

int tmix_layers_forward(tmix_layers *l, const tmix_tensor *x, tmix_tensor *const *outs)
{
    static const char op[] = "layers_forward";
    if (!l || !outs)
        return tmix_fail(TMIX_EINVAL, "%s: layers or outs is NULL", op);
    tmix_backend *be = l->be;
    TMIX_TRY(tmix_check_shape(op, "x", x, be, TMIX_F32, 4, l->x_shape));
    for (int i = 0; i < l->count; i++) {
        if (!l->layers[i].read)
            continue;
        char what[32];
        snprintf(what, sizeof what, "outs[%d]", i);
        TMIX_TRY(tmix_check_shape(op, what, outs[i], be, TMIX_F32, l->layers[i].ndim,
                                  l->layers[i].shape));
    }
    l->forward_ran = false;
    const int rc = run_forward(l, x, outs);
    l->forward_ran = rc == 0;
    return rc;
}

int tmix_layers_backward(tmix_layers *l, tmix_tensor *dx, const tmix_tensor *dlast)
{
    static const char op[] = "layers_backward";
    if (!l)
        return tmix_fail(TMIX_EINVAL, "%s: layers is NULL", op);
    if (!l->backward)
        return tmix_fail(TMIX_EINVAL, "%s: the layers were made without backward", op);
    if (!l->forward_ran)
        return tmix_fail(TMIX_EINVAL, "%s: no successful layers_forward to follow", op);
    tmix_backend *be = l->be;
    TMIX_TRY(tmix_check_shape(op, "dx", dx, be, TMIX_F32, 4, l->x_shape));
    const tmix_layer *last = &l->layers[l->count - 1];
    TMIX_TRY(tmix_check_shape(op, "dlast", dlast, be, TMIX_F32, last->ndim, last->shape));
    l->forward_ran = false; // its activations are overwritten: one backward per forward
    TMIX_CALL(op, be, layers_backward, l->impl, dx, dlast);
}

void tmix_layers_free(tmix_layers *l)
{
    if (!l)
        return;
    l->be->ops->layers_free(l->be, l->impl);
    free(l->layers);
    free(l);
}
