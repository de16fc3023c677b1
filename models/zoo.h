// The teacher zoo (models/README.md, "The zoo"): each architecture's name, its classifier's
// state_dict name, and the builder that adds its nodes. Internal to models/. Every
// architecture starts with a convolution named "conv1", whose weight gives the input channels.
#ifndef TMIX_ZOO_H
#define TMIX_ZOO_H

#include "graph.h"

typedef struct {
    const char *name;
    const char *classifier; // the final linear layer: "fc" or "linear"
    // Adds the nodes (the classifier last) and returns the CAM feature node, or b->rc.
    int (*build)(tmix_graph_loader *b);
} tmix_zoo_arch;

// NULL when no architecture has that name.
const tmix_zoo_arch *tmix_zoo_find(const char *name);

#endif
