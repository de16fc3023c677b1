// A preview: one batch mixed with its intermediates kept (tmixctl preview). The producer
// fills it beside the batch when a job carries one; the server sends both as a Preview.
#ifndef TMIXD_PREVIEW_H
#define TMIXD_PREVIEW_H

#include <stdint.h>

typedef struct {
    void *reply_to; // the nanomsg control header of the PreviewRequest
    uint32_t samples, n, channels, height, width;
    float *inputs;  // samples x C x H x W: the normalised batch before mixing
    float *cams;    // samples x H x W, or NULL without a teacher
    float *warped;  // samples x n x C x H x W
    float *masks;   // samples x n x H x W
    float *mixed;   // samples x C x H x W
    uint32_t *source_rows; // samples x n: the row of inputs of each source
} tmixd_preview;

// Allocates the arrays for samples x n sources of C x H x W (cams only with_cams); -1 when
// out of memory (the arrays made so far stay, for tmixd_preview_free).
int tmixd_preview_alloc(tmixd_preview *p, uint32_t samples, uint32_t n, uint32_t c, uint32_t h,
                        uint32_t w, int with_cams);
// Frees the arrays and p itself. NULL: no-op.
void tmixd_preview_free(tmixd_preview *p);

#endif
