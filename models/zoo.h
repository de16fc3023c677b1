// The zoo (models/README.md, "The zoo"): each architecture's name, its classifier's state_dict
// name, and its description, which a builder of net.h turns into a frozen teacher (graph.h)
// or a trainable classifier (classifier_net.h). Internal to models/. Every architecture
// starts with a convolution named "conv1", whose weight gives the input channels.
#ifndef TMIX_ZOO_H
#define TMIX_ZOO_H

#include <stddef.h>

#include "net.h"

typedef struct {
    const char *name;
    const char *classifier; // the final linear layer: "fc" or "linear"
    // Adds the nodes (the classifier last) and returns the CAM feature node, or b->rc.
    int (*build)(tmix_net_builder *b);
} tmix_zoo_arch;

// NULL when no architecture has that name.
const tmix_zoo_arch *tmix_zoo_find(const char *name);
// "resnet18, resnet34, ..." (every name; all are trainable too) into buf, for messages.
const char *tmix_zoo_names(char *buf, size_t size);

#endif
