// tmix_preview_get: one PreviewRequest on a socket of its own; the reply is checked for
// self-consistency before the caller sees a pointer into it.
#include <stdlib.h>

#include "internal.h"

typedef struct {
    tmix_preview pub; // the caller's pointer is &pub; the arrays point into env
    Tmix__Envelope *env;
} preview_reply;

static int check(const char *endpoint, const Tmix__Preview *p, char *err)
{
    if (p->n_image_shape != 3)
        return tmixi_fail(err, TMIX_EPROTO, "%s: a Preview without a C, H, W image shape",
                          endpoint);
    const uint64_t c = p->image_shape[0], h = p->image_shape[1], w = p->image_shape[2];
    const uint64_t rows = p->samples, pairs = rows * p->mix_n, image = c * h * w, plane = h * w;
    if (!rows || !p->mix_n || !c || c > 3 || p->n_inputs != rows * image ||
        (p->n_cams && p->n_cams != rows * plane) || p->n_warped != pairs * image ||
        p->n_masks != pairs * plane || p->n_mixed != rows * image || p->n_source_rows != pairs ||
        p->n_labels != pairs || p->n_weights != pairs || p->n_mean != c || p->n_std != c)
        return tmixi_fail(err, TMIX_EPROTO,
                          "%s: a Preview of %llu samples of n = %u, %llux%llux%llu "
                          "whose arrays do not have those sizes",
                          endpoint, (unsigned long long)rows, p->mix_n, (unsigned long long)c,
                          (unsigned long long)h, (unsigned long long)w);
    for (uint64_t i = 0; i < pairs; i++)
        if (p->source_rows[i] >= rows)
            return tmixi_fail(err, TMIX_EPROTO, "%s: a Preview source row %u of %llu rows",
                              endpoint, p->source_rows[i], (unsigned long long)rows);
    return 0;
}

int tmix_preview_get(const char *endpoint, uint32_t samples, int timeout_ms, tmix_preview **out)
{
    char *err = tmixi_thread_error();
    if (!out || !endpoint)
        return tmixi_fail(err, TMIX_EINVAL, "tmix_preview_get: %s is NULL",
                          out ? "endpoint" : "out");
    *out = NULL;
    Tmix__PreviewRequest pr = TMIX__PREVIEW_REQUEST__INIT;
    pr.samples = samples;
    Tmix__Envelope req = TMIX__ENVELOPE__INIT;
    req.body_case = TMIX__ENVELOPE__BODY_PREVIEW_REQUEST;
    req.preview_request = &pr;
    Tmix__Envelope *rep;
    int rc = tmixi_request(endpoint, timeout_ms, &req, TMIX__ENVELOPE__BODY_PREVIEW, &rep, err);
    if (rc < 0)
        return rc;
    const Tmix__Preview *p = rep->preview;
    preview_reply *r = calloc(1, sizeof *r);
    if ((rc = check(endpoint, p, err)) < 0 || !r) {
        free(r);
        tmixi_envelope_free(rep);
        return rc < 0 ? rc
                      : tmixi_fail(err, TMIX_ENOMEM, "%s: no memory for the preview", endpoint);
    }
    r->env = rep;
    r->pub = (tmix_preview){
        .samples = p->samples,
        .mix_n = p->mix_n,
        .channels = p->image_shape[0],
        .height = p->image_shape[1],
        .width = p->image_shape[2],
        .method = p->method,
        .inputs = p->inputs,
        .cams = p->n_cams ? p->cams : NULL,
        .warped = p->warped,
        .masks = p->masks,
        .mixed = p->mixed,
        .source_rows = p->source_rows,
        .labels = p->labels,
        .weights = p->weights,
    };
    for (size_t k = 0; k < p->n_mean; k++) {
        r->pub.mean[k] = p->mean[k];
        r->pub.std[k] = p->std[k];
    }
    *out = &r->pub;
    return 0;
}

void tmix_preview_free(tmix_preview *p)
{
    if (!p)
        return;
    preview_reply *r = (preview_reply *)p;
    tmixi_envelope_free(r->env);
    free(r);
}
