// The trainable network behind tmix_classifier (internal to models/): a zoo description
// (zoo.c) built by net.h's trainable builder (classifier_build.c), with the tables of its
// parameters and buffers. net_run.c runs it; classifier_state.c saves and loads its tensors.
#ifndef TMIX_CLASSIFIER_NET_H
#define TMIX_CLASSIFIER_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "classifier.h"
#include "net.h"
#include "zoo.h"

struct tmix_classifier {
    tmix_classifier_info info;
    tmix_net net;                    // every node trainable but the fixed convolutions
    tmix_classifier_param *params;   // [nparams], pointing into net.nodes
    tmix_classifier_buffer *buffers; // [nbuffers]
    int nparams, nbuffers;
    bool have_train; // the activations hold a successful train forward
};

// Builds c->net (be, in_channels and num_classes set) as arch with fresh parameters drawn
// from seed (classifier.h's recipe), then the parameter and buffer tables.
int tmix_cls_build(tmix_classifier *c, const tmix_zoo_arch *arch, uint64_t seed);

#endif
