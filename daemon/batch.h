// One produced batch: the mixed images in their output dtype and layout and the per-sample
// metadata, in one allocation owned by whoever holds the pointer (a group entry). The images
// are at the end of that allocation, or in a slot of the group's shared-memory ring, and
// for CUDA delivery also in a slot of its device ring (for a group whose members all take
// cuda delivery, only there until another member needs them: host_images);
// tmixd_batch_free gives slots back.
#ifndef TMIXD_BATCH_H
#define TMIXD_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device_ring.h"
#include "ops.h"
#include "shm_ring.h"

typedef struct {
    uint64_t pos;            // stream position: epoch * batches_per_epoch + index
    uint64_t epoch, index;
    uint32_t size, mix_n;    // N samples, n sources each
    int dtype, layout;       // proto DType / Layout values
    uint32_t shape[4];       // as laid out
    void *images;            // size x C x H x W elements of dtype
    size_t images_bytes;
    bool host_images;        // images holds them (else they are only in the device slot)
    bool reading;            // they are being read from the device slot (server.c)
    bool read_failed;        // that read failed
    int pool_jobs;           // jobs using it, on libuv's thread pool or about to run on
                             // the loop: that read, packings of it into replies (server.c)
    bool free_after_jobs;    // freed while pool_jobs > 0: the last job's end frees it
    uint64_t *sample_ids;    // [N]
    uint64_t *sources;       // [N * n]
    uint32_t *labels;        // [N * n]
    float *weights;          // [N * n]
    uint64_t *replaced_ids;  // [replaced_count]: samples read in place of unreadable ones
    size_t replaced_count;
    size_t bytes;            // everything above, for the memory budget
    tmixd_ring *ring;        // the images are in slot `slot` of ring, or ring is NULL
    int slot;
    tmixd_device_ring *dring; // a copy of the images is in GPU slot `dslot`, or dring is NULL
    int dslot;
} tmixd_batch;

// Gives the slots back to the rings, if any, and frees; while jobs on the thread pool use
// it, only once the last of them ends (tmixd_batch_job_ended). NULL: no-op.
void tmixd_batch_free(tmixd_batch *b);

// One job of b->pool_jobs has ended: frees b if it was freed meanwhile and none is left.
void tmixd_batch_job_ended(tmixd_batch *b);

// The kernels' name for a proto DType and Layout (FLOAT16 2, UINT8 3; NHWC 2).
static inline tmix_image_format tmixd_image_format(int dtype, int layout)
{
    return (tmix_image_format){dtype == 2   ? TMIX_IMAGE_F16
                               : dtype == 3 ? TMIX_IMAGE_U8
                                            : TMIX_IMAGE_F32,
                               layout == 2};
}

// Bytes per element of a proto DType: FLOAT32 4, FLOAT16 2, UINT8 1.
static inline size_t tmixd_dtype_bytes(int dtype)
{
    return tmix_image_dtype_size(tmixd_image_format(dtype, 0).dtype);
}

#endif
