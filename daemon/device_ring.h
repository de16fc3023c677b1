// A consumer group's ring of output slots in GPU memory (CUDA delivery): each slot a buffer
// and an event that trainers on the same GPU open by CUDA IPC. A finished batch's images are
// copied into a free slot on the stream of the lane that made them, device to device, the
// slot's event recorded after the copy;
// the slot is given back when the group frees the batch, as with the shared-memory ring.
#ifndef TMIXD_DEVICE_RING_H
#define TMIXD_DEVICE_RING_H

#include <stddef.h>

#include "backend.h"

typedef struct tmixd_device_ring tmixd_device_ring;

// A ring of `slots` slots of slot_bytes on GPU backend `be` (borrowed: it must outlive the
// ring). The first slot is made now, which tells whether the GPU shares memory by CUDA IPC
// (TMIX_ENOTSUP if not, or on the CPU); the others the first time they are used.
int tmixd_device_ring_new(tmixd_device_ring **out, tmix_backend *be, size_t slot_bytes,
                          int slots);
void tmixd_device_ring_free(tmixd_device_ring *r); // NULL: no-op

// Takes a free slot and queues the copy of src[bytes] into it on be's stream (src: memory on
// the ring's GPU, or host memory), the slot's event recorded after it: 1 with its index in
// *slot, 0 when no slot is free or the GPU has no room for a new one (logged once: the batch
// then goes inline), or a negative code when the copy fails (the GPU is at fault).
int tmixd_device_ring_fill(tmixd_device_ring *r, tmix_backend *be, const void *src, size_t bytes,
                           int *slot);
void tmixd_device_ring_give(tmixd_device_ring *r, int slot);
// Copies the first `bytes` of slot into host memory dst once its copy is done, and waits.
int tmixd_device_ring_read(const tmixd_device_ring *r, int slot, void *dst, size_t bytes);

const tmix_ipc_buffer *tmixd_device_ring_slot(const tmixd_device_ring *r, int slot);
int tmixd_device_ring_device(const tmixd_device_ring *r); // the GPU's index
int tmixd_device_ring_slots(const tmixd_device_ring *r);
int tmixd_device_ring_used(tmixd_device_ring *r);

#endif
