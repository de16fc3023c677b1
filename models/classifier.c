// The trainable classifier: creating it from a zoo description (classifier_build.c builds it),
// checking the calls, and running its node list (net_run.c) forward and backward.
#include "classifier.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "classifier_net.h"
#include "error.h"
#include "ops.h"

int tmix_classifier_new(tmix_classifier **out, tmix_backend *be, const char *arch, int in_channels,
                        int num_classes, uint64_t seed)
{
    static const char op[] = "classifier_new";
    if (!out || !be || !arch)
        return tmix_fail(TMIX_EINVAL, "%s: out, backend or arch is NULL", op);
    *out = NULL;
    const tmix_zoo_arch *a = tmix_zoo_find(arch);
    char known[256];
    if (!a)
        return tmix_fail(TMIX_EINVAL, "%s: unknown arch '%s' (trainable: %s)", op, arch,
                         tmix_zoo_names(known, sizeof known));
    if (in_channels != 1 && in_channels != 3)
        return tmix_fail(TMIX_EINVAL, "%s: in_channels is %d, expected 1 or 3", op, in_channels);
    if (num_classes < 1 || num_classes > 1000000)
        return tmix_fail(TMIX_EINVAL, "%s: num_classes is %d, expected 1 to 1000000", op,
                         num_classes);
    tmix_classifier *c = calloc(1, sizeof *c);
    if (!c)
        return tmix_fail(TMIX_ENOMEM, "%s: %s", op, arch);
    c->net.be = be;
    c->net.in_channels = in_channels;
    c->net.num_classes = num_classes;
    snprintf(c->info.arch, sizeof c->info.arch, "%s", a->name);
    c->info.in_channels = in_channels;
    c->info.num_classes = num_classes;
    int rc = tmix_cls_build(c, a, seed);
    if (rc < 0) {
        tmix_classifier_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void tmix_classifier_free(tmix_classifier *c)
{
    if (!c)
        return;
    tmix_net_free(&c->net);
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
        TMIX_TRY(tmix_tensor_zero(c->net.be, c->params[i].grad));
    return 0;
}

// ---- forward -------------------------------------------------------------------------------

int tmix_classifier_forward(tmix_classifier *c, tmix_tensor *logits, const tmix_tensor *x,
                            bool train)
{
    static const char op[] = "classifier_forward";
    if (!c)
        return tmix_fail(TMIX_EINVAL, "%s: classifier is NULL", op);
    tmix_backend *be = c->net.be;
    TMIX_TRY(tmix_check_shape(op, "x", x, be, TMIX_F32, 4,
                              (int64_t[]){-1, c->info.in_channels, -1, -1}));
    TMIX_TRY(tmix_check_shape(op, "logits", logits, be, TMIX_F32, 2,
                              (int64_t[]){x->shape[0], c->info.num_classes}));
    c->have_train = false;
    TMIX_TRY(tmix_net_forward(&c->net, logits, x, train));
    c->have_train = train;
    return 0;
}

// ---- backward ------------------------------------------------------------------------------

int tmix_classifier_backward(tmix_classifier *c, const tmix_tensor *dlogits)
{
    static const char op[] = "classifier_backward";
    if (!c)
        return tmix_fail(TMIX_EINVAL, "%s: classifier is NULL", op);
    if (!c->have_train)
        return tmix_fail(TMIX_EINVAL, "%s: no successful train forward to follow", op);
    TMIX_TRY(tmix_check_shape(op, "dlogits", dlogits, c->net.be, TMIX_F32, 2,
                              (int64_t[]){c->net.x_shape[0], c->info.num_classes}));
    // The stem reads x, whose gradient is not needed.
    return tmix_net_backward(&c->net, NULL, dlogits);
}
