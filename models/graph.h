// The frozen builder of net.h (internal to models/): it builds a zoo description with the
// weights of a teacher file, folding each batch norm that follows a convolution into that
// convolution's weight and a bias, and keeping the others as a per-channel scale and shift.
// The teacher runs the result (net_run.c) forward and backward into the input only.
#ifndef TMIX_GRAPH_H
#define TMIX_GRAPH_H

#include <stdbool.h>

#include "net.h"
#include "safetensors.h"

// net.h's builder reading from st. Tensors are matched by name and shape; each one read is
// marked in used, so that the caller can refuse the tensors left over.
typedef struct {
    tmix_net_builder b; // b.ops is set by tmix_graph_loader_init
    const tmix_safetensors *st;
    bool *used; // [tmix_safetensors_count(st)]: tensors read so far
} tmix_graph_loader;

// A loader filling net (be, in_channels and num_classes set) from st as architecture arch.
tmix_graph_loader tmix_graph_loader_init(tmix_net *net, const char *arch,
                                         const tmix_safetensors *st, bool *used);

// dst: the network of src running on be (src's device, maybe another stream) with src's
// weights borrowed and activations of its own. src must outlive dst and not change.
int tmix_graph_share(tmix_net *dst, const tmix_net *src, tmix_backend *be);

#endif
