// A Batch message checked against itself and the Welcome before a trainer sees it: a batch
// that would make the caller read past its arrays or misread its images is refused here.
#include <inttypes.h>
#include <string.h>

#include "internal.h"

#define BAD(...) tmixi_fail(err, TMIX_EPROTO, __VA_ARGS__)

// The per-image dimensions (C, H, W) of a batch shape laid out as `layout`.
static void image_dims(const uint32_t *shape, int layout, uint32_t chw[3])
{
    if (layout == TMIX_LAYOUT_NHWC) {
        chw[0] = shape[3], chw[1] = shape[1], chw[2] = shape[2];
    } else {
        chw[0] = shape[1], chw[1] = shape[2], chw[2] = shape[3];
    }
}

static int check_arrays(const Tmix__Batch *m, uint64_t n_samples, const tmix_info *info,
                        const char *endpoint, char *err)
{
    const uint64_t n = m->mix_n, cells = n_samples * n;
    if (n != info->mix_n)
        return BAD("%s: batch %" PRIu64 " mixes %" PRIu64 " sources, the Welcome said %u", endpoint,
                   m->sequence, n, info->mix_n);
    if (m->n_sample_ids != n_samples || m->n_sources != cells || m->n_labels != cells ||
        m->n_weights != cells)
        return BAD("%s: batch %" PRIu64 " of N = %" PRIu64 ", n = %" PRIu64 " has %zu sample ids, "
                   "%zu sources, %zu labels, %zu weights (expected N, N*n, N*n, N*n)",
                   endpoint, m->sequence, n_samples, n, m->n_sample_ids, m->n_sources, m->n_labels,
                   m->n_weights);
    // sources[i * n] is sample_ids[i], except where an unreadable sample was replaced.
    for (uint64_t k = 0; k < cells; k++)
        if (m->labels[k] >= info->classes)
            return BAD("%s: batch %" PRIu64 ": label %u at %" PRIu64 " is not below the %u classes",
                       endpoint, m->sequence, m->labels[k], k, info->classes);
    return 0;
}

// A batch in a GPU slot (CUDA delivery): the slot and its two IPC handles.
static int find_cuda_slot(const Tmix__Batch *m, const tmix_info *info, const char *endpoint,
                          char *err, tmix_batch *out)
{
    if (m->slot >= info->cuda_slots || m->cuda_mem.len != sizeof out->cuda_mem ||
        m->cuda_event.len != sizeof out->cuda_event || m->images.len)
        return BAD("%s: batch %" PRIu64 " in GPU slot %u (of %u) comes with handles of %zu and "
                   "%zu bytes (expected %zu) and %zu bytes inline (expected none)",
                   endpoint, m->sequence, m->slot, info->cuda_slots, m->cuda_mem.len,
                   m->cuda_event.len, sizeof out->cuda_mem, m->images.len);
    out->cuda_in_slot = 1;
    out->cuda_slot = m->slot;
    memcpy(out->cuda_mem, m->cuda_mem.data, sizeof out->cuda_mem);
    memcpy(out->cuda_event, m->cuda_event.data, sizeof out->cuda_event);
    return 0;
}

// Where the batch's images lie: inline in m, in its slot of the ring, or (CUDA) on the GPU,
// when *images stays NULL.
static int find_images(const Tmix__Batch *m, uint64_t bytes, const tmix_info *info,
                       const tmixi_ring *ring, const char *endpoint, char *err,
                       const void **images)
{
    if (m->in_slot && info->delivery == TMIX_DELIVERY_CUDA)
        return 0;
    if (!m->in_slot) {
        if (m->images.len != bytes)
            return BAD("%s: batch %" PRIu64 " carries %zu bytes of images, its shape and dtype "
                       "need %" PRIu64,
                       endpoint, m->sequence, m->images.len, bytes);
        *images = m->images.data;
        return 0;
    }
    if (!ring)
        return BAD("%s: batch %" PRIu64 " is in a slot, but the session is %s delivery",
                   endpoint, m->sequence, tmix_delivery_name(info->delivery));
    if (m->slot >= ring->slots || bytes > ring->slot_bytes || m->images.len)
        return BAD("%s: batch %" PRIu64 " of %" PRIu64 " bytes in slot %u: the ring %s has %u "
                   "slots of %zu bytes%s",
                   endpoint, m->sequence, bytes, m->slot, ring->name, ring->slots,
                   ring->slot_bytes, m->images.len ? ", and it also carries inline images" : "");
    *images = ring->base + (size_t)m->slot * ring->slot_bytes;
    return 0;
}

int tmixi_batch_read(tmix_batch *out, const Tmix__Batch *m, uint64_t sequence,
                     const tmix_info *info, const tmixi_ring *ring, const char *endpoint,
                     char *err)
{
    if (m->sequence != sequence)
        return BAD("%s: asked for batch %" PRIu64 ", got batch %" PRIu64, endpoint, sequence,
                   m->sequence);
    if ((int)m->dtype != info->dtype || (int)m->layout != info->layout)
        return BAD("%s: batch %" PRIu64 " is %s %s, the Welcome said %s %s", endpoint, sequence,
                   tmix_dtype_name((int)m->dtype), tmix_layout_name((int)m->layout),
                   tmix_dtype_name(info->dtype), tmix_layout_name(info->layout));
    if (m->n_shape != 4)
        return BAD("%s: batch %" PRIu64 " has a shape of %zu dimensions, expected 4", endpoint,
                   sequence, m->n_shape);
    uint32_t chw[3];
    image_dims(m->shape, info->layout, chw);
    const uint64_t n_samples = m->shape[0];
    if (n_samples == 0 || n_samples > info->batch_size || chw[0] != info->channels ||
        chw[1] != info->height || chw[2] != info->width)
        return BAD("%s: batch %" PRIu64 " has shape (%u,%u,%u,%u) %s; the Welcome said "
                   "C,H,W = %u,%u,%u and at most %u samples",
                   endpoint, sequence, m->shape[0], m->shape[1], m->shape[2], m->shape[3],
                   tmix_layout_name(info->layout), info->channels, info->height, info->width,
                   info->batch_size);
    const uint64_t bytes = n_samples * chw[0] * chw[1] * chw[2] * tmix_dtype_size(info->dtype);
    const void *images = NULL;
    int rc = find_images(m, bytes, info, ring, endpoint, err, &images);
    if (rc == 0)
        rc = check_arrays(m, n_samples, info, endpoint, err);
    if (rc < 0)
        return rc;
    *out = (tmix_batch){
        .sequence = m->sequence,
        .epoch = m->epoch,
        .index = m->index,
        .dtype = info->dtype,
        .layout = info->layout,
        .ndim = 4,
        .shape = {m->shape[0], m->shape[1], m->shape[2], m->shape[3]},
        .images = images,
        .images_bytes = bytes,
        .size = (uint32_t)n_samples,
        .mix_n = m->mix_n,
        .sample_ids = m->sample_ids,
        .sources = m->sources,
        .labels = m->labels,
        .weights = m->weights,
        .replaced_ids = m->replaced_ids,
        .replaced_count = m->n_replaced_ids,
    };
    if (m->in_slot && info->delivery == TMIX_DELIVERY_CUDA)
        return find_cuda_slot(m, info, endpoint, err, out);
    return 0;
}
