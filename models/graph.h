// A feed-forward network as a flat list of nodes (internal to models/): the zoo's builders
// add nodes whose weights come from a safetensors file, and the teacher runs the list forward
// (keeping every activation) and backward (into the input only; weights are frozen).
#ifndef TMIX_GRAPH_H
#define TMIX_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "params.h"
#include "safetensors.h"
#include "tensor.h"

// The network input x, as a node's input.
#define TMIX_GRAPH_INPUT (-1)

typedef enum {
    TMIX_NODE_CONV, // conv2d; a batch norm that follows it is folded into weight and bias
    TMIX_NODE_BN,   // batch norm as a per-channel scale and shift (pre-activation blocks)
    TMIX_NODE_RELU,
    TMIX_NODE_MAXPOOL,
    TMIX_NODE_ADD,     // residual: in[0] + in[1]
    TMIX_NODE_AVGPOOL, // global: (N, C, H, W) -> (N, C)
    TMIX_NODE_LINEAR,  // (N, I) -> (N, O)
} tmix_node_kind;

typedef struct {
    tmix_node_kind kind;
    char name[64]; // the state_dict name, for messages: "layer1.0.conv1", "relu"
    int in[2];     // input nodes (in[1] for add only); TMIX_GRAPH_INPUT is x
    int channels;  // output channels (features for avgpool and linear)
    tmix_conv2d_params conv;
    tmix_pool2d_params pool;
    tmix_tensor weight; // conv (OC, C, KH, KW), linear (O, I), batch norm scale (C)
    tmix_tensor bias;   // conv (OC) or empty, linear (O), batch norm shift (C)
    tmix_tensor out;    // activation; for an in-place ReLU a view of its input's
    tmix_tensor dout;   // d(loss)/d(out); only where the node reaches x
    bool inplace;       // ReLU over its input's activation (the only reader of it)
    bool reaches_input; // depends on x, so the gradient flows through it
} tmix_node;

typedef struct {
    tmix_backend *be;
    tmix_node *nodes;
    int count, cap;
    int in_channels, num_classes;
    int64_t x_shape[4]; // the input shape the activations are sized for; 0s: none yet
    tmix_tensor x;      // the last forward's input (borrowed), read by a max pool's backward
    bool grads_ready;   // dout tensors are allocated for x_shape
} tmix_graph;

// Adds nodes while reading their weights from st. Every call returns the new node's index, or
// once any call has failed, that failure's code (rc) without doing anything, so a builder
// checks rc once at the end. Tensor names are "prefix.leaf.weight" etc. (prefix may be NULL).
typedef struct {
    tmix_graph *g;
    const tmix_safetensors *st;
    const char *arch;
    bool *used; // [tmix_safetensors_count(st)]: tensors read so far
    int rc;
} tmix_graph_loader;

// A convolution without bias (weight (oc, C, k, k), square kernel, stride and padding), with
// the batch norm `bn` folded in when bn is not NULL.
int tmix_graph_conv(tmix_graph_loader *b, int in, const char *prefix, const char *conv,
                    const char *bn, int oc, int k, int stride, int pad);
// A convolution whose weight is given (host, (oc, C, k, k)) rather than read; name is only
// for messages.
int tmix_graph_conv_fixed(tmix_graph_loader *b, int in, const char *name, const float *weight,
                          int oc, int k, int stride, int pad);
int tmix_graph_bn(tmix_graph_loader *b, int in, const char *prefix, const char *bn);
int tmix_graph_relu(tmix_graph_loader *b, int in);
int tmix_graph_maxpool(tmix_graph_loader *b, int in, int k, int stride, int pad);
int tmix_graph_add(tmix_graph_loader *b, int in0, int in1);
int tmix_graph_avgpool(tmix_graph_loader *b, int in);
// weight (num_classes, C) and bias (num_classes).
int tmix_graph_linear(tmix_graph_loader *b, int in, const char *name);

// Once built: decides which nodes reach x and which ReLUs run in place (never over node keep,
// whose activation is read from outside: the CAM features).
void tmix_graph_finish(tmix_graph *g, int keep);
void tmix_graph_free(tmix_graph *g);
// dst: the network of src running on be (src's device, maybe another stream) with src's
// weights borrowed and activations of its own. src must outlive dst and not change.
int tmix_graph_share(tmix_graph *dst, const tmix_graph *src, tmix_backend *be);

// out = the last node of the network on x (caller's tensor, written directly; the last node
// is always the classifier, whose output no backward reads). Activations are (re)allocated
// when x's shape changes. x and out are checked by the caller; x must stay alive until the
// backward.
int tmix_graph_forward(tmix_graph *g,
                       tmix_tensor *out,      // (B, num_classes)
                       const tmix_tensor *x); // (B, in_channels, H, W)
// dx += d(loss)/dx for the last forward, from dout = d(loss)/d(out).
int tmix_graph_backward(tmix_graph *g,
                        tmix_tensor *dx,          // (B, in_channels, H, W)
                        const tmix_tensor *dout); // (B, num_classes)

#endif
