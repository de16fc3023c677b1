// The trainable network behind tmix_classifier (internal to models/): a flat list of nodes,
// like graph.h's, whose weights are parameters with gradients and whose batch norms run in
// training form. Architecture builders (classifier_archs.c) add the nodes in state_dict
// order; classifier.c runs them; classifier_state.c lists, saves and loads their tensors.
#ifndef TMIX_CLASSIFIER_NET_H
#define TMIX_CLASSIFIER_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "classifier.h"
#include "params.h"
#include "rng.h"
#include "tensor.h"

// The network input x, as a node's input.
#define TMIX_CLS_INPUT (-1)

typedef enum {
    TMIX_CLS_CONV, // conv2d without bias; its weight is a parameter unless `fixed`
    TMIX_CLS_BN,   // batch norm: weight, bias, running_mean, running_var, num_batches_tracked
    TMIX_CLS_RELU,
    TMIX_CLS_ADD,     // residual: in[0] + in[1]
    TMIX_CLS_AVGPOOL, // global: (N, C, H, W) -> (N, C)
    TMIX_CLS_LINEAR,  // (N, I) -> (N, O), weight and bias
} tmix_cls_kind;

typedef struct {
    tmix_cls_kind kind;
    char name[64]; // the state_dict prefix: "layer1.0.conv1", "bn1", "linear"; "relu"...
    int in[2];     // input nodes (in[1] for add only); TMIX_CLS_INPUT is x
    int channels;  // output channels (features for avgpool and linear)
    tmix_conv2d_params conv;
    bool fixed;               // a conv whose weight is not trained (option A shortcuts)
    tmix_tensor weight, bias; // conv (OC, C, KH, KW); bn gamma, beta (C); linear (O, I), (O)
    tmix_tensor dweight, dbias;
    tmix_tensor running_mean, running_var; // bn (C)
    int64_t num_batches_tracked;           // bn: train forwards so far
    tmix_tensor save_mean, save_invstd;    // bn (C): the batch statistics of the last train
    tmix_tensor scale, shift;              // bn (C): the running statistics folded, for eval
    tmix_tensor out;                       // activation; for an in-place ReLU a view of its input's
    tmix_tensor dout;                      // d(loss)/d(out), allocated by the first backward
    bool inplace; // ReLU over its input's activation (the only reader of it)
} tmix_cls_node;

struct tmix_classifier {
    tmix_backend *be;
    tmix_classifier_info info;
    tmix_cls_node *nodes;
    int count, cap;
    tmix_classifier_param *params;   // [nparams], pointing into nodes (fixed by finish)
    tmix_classifier_buffer *buffers; // [nbuffers]
    int nparams, nbuffers;
    int64_t x_shape[4]; // the input shape the activations are sized for; 0s: none yet
    tmix_tensor x;      // the last train forward's input (borrowed), for the stem's gradient
    bool grads_ready;   // dout tensors are allocated for x_shape
    bool have_train;    // the activations hold a successful train forward
};

// Adds nodes with freshly initialised parameters (classifier.h's recipe, drawn from rng).
// Every call returns the new node's index or, once any call has failed, that failure's code
// (rc) without doing anything, so a builder checks rc once at the end. Names are
// "prefix.leaf" (prefix may be NULL), as in graph.h.
typedef struct {
    tmix_classifier *c;
    tmix_rng rng;
    int rc;
} tmix_cls_builder;

// A convolution without bias (weight (oc, C, k, k)), then batch norm `bn` unless bn is NULL;
// returns the last node added (graph.h's tmix_graph_conv, unfolded).
int tmix_cls_conv(tmix_cls_builder *b, int in, const char *prefix, const char *conv, const char *bn,
                  int oc, int k, int stride, int pad);
// A convolution whose weight is given (host, (oc, C, k, k)) and never trained; name is only
// for messages.
int tmix_cls_conv_fixed(tmix_cls_builder *b, int in, const char *name, const float *weight, int oc,
                        int k, int stride, int pad);
int tmix_cls_bn(tmix_cls_builder *b, int in, const char *prefix, const char *bn);
int tmix_cls_relu(tmix_cls_builder *b, int in);
int tmix_cls_add(tmix_cls_builder *b, int in0, int in1);
int tmix_cls_avgpool(tmix_cls_builder *b, int in);
// weight (num_classes, C) and bias (num_classes), named name.weight and name.bias.
int tmix_cls_linear(tmix_cls_builder *b, int in, const char *name);

// An architecture that can be trained: adds its nodes, the classifier last; returns b->rc.
typedef struct {
    const char *name;
    int (*build)(tmix_cls_builder *b);
} tmix_cls_arch;

// NULL when no trainable architecture has that name.
const tmix_cls_arch *tmix_cls_arch_find(const char *name);

// Once built: which ReLUs run in place, and the parameter and buffer tables.
int tmix_cls_finish(tmix_classifier *c);

#endif
