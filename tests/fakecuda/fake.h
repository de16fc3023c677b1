// What the fake CUDA plugin's two parts share: fake_cuda.c (devices, memory, IPC buffers,
// faults) and fake_graph.c (CUDA graphs: capture and replay).
#ifndef TMIX_FAKE_H
#define TMIX_FAKE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

typedef struct fake_recording fake_recording;

// A fake GPU's backend: the core's handle first, then what a stream would hold.
typedef struct {
    tmix_backend be;
    fake_recording *recording; // between capture_begin and capture_end, else NULL
    // The real plugin stages host-array arguments in a scratch buffer that graphs bake in,
    // and makes the buffer anew when a call needs more: its size and how often it was made.
    size_t scratch_bytes;
    uint64_t scratch_generation;
} fake_backend;

// Wraps ops (every op, and the calls that a capture cannot record) so that they are
// recorded while be captures; adds capture_begin/capture_end/graph_launch/graph_free and
// host_alloc/host_free (pinned memory, which graphs need).
void fake_graph_install(tmix_backend_ops *ops);

#endif
