// What the fake CUDA plugin's two parts share: fake_cuda.c (the device, its memory, IPC
// buffers, faults) and fake_stream.c (streams and graphs).
#ifndef TMIX_FAKE_H
#define TMIX_FAKE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

typedef struct fake_stream fake_stream;
typedef struct fake_recording fake_recording;

// A fake GPU's backend: the core's handle first, then its stream.
typedef struct {
    tmix_backend be;
    fake_stream *stream;       // the thread that runs its calls in order
    fake_recording *recording; // between capture_begin and capture_end, else NULL
    // The real plugin stages host-array arguments in a scratch buffer that graphs bake in,
    // and makes the buffer anew when a call needs more: its size and how often it was made.
    size_t scratch_bytes;
    uint64_t scratch_generation;
} fake_backend;

// Wraps ops so that every op, copy and free is queued on the backend's stream (or recorded
// while it captures), and adds graphs, timing marks and pinned host memory. ops->close then
// stops the stream before the backend goes.
void fake_stream_install(tmix_backend_ops *ops);
// Starts f's stream.
int fake_stream_open(fake_backend *f);

#endif
