#include "preview.h"

#include <stdlib.h>

int tmixd_preview_alloc(tmixd_preview *p, uint32_t samples, uint32_t n, uint32_t c, uint32_t h,
                        uint32_t w, int with_cams)
{
    const size_t image = (size_t)c * h * w, plane = (size_t)h * w;
    *p = (tmixd_preview){.reply_to = p->reply_to,
                         .samples = samples,
                         .n = n,
                         .channels = c,
                         .height = h,
                         .width = w};
    p->inputs = malloc(samples * image * sizeof(float));
    p->cams = with_cams ? malloc(samples * plane * sizeof(float)) : NULL;
    p->warped = malloc((size_t)samples * n * image * sizeof(float));
    p->masks = malloc((size_t)samples * n * plane * sizeof(float));
    p->mixed = malloc(samples * image * sizeof(float));
    p->source_rows = malloc((size_t)samples * n * sizeof(uint32_t));
    return p->inputs && (p->cams || !with_cams) && p->warped && p->masks && p->mixed &&
                   p->source_rows
               ? 0
               : -1;
}

void tmixd_preview_free(tmixd_preview *p)
{
    if (!p)
        return;
    free(p->inputs);
    free(p->cams);
    free(p->warped);
    free(p->masks);
    free(p->mixed);
    free(p->source_rows);
    free(p);
}
