// A network as a flat list of nodes (internal to models/), and the one interface through which
// zoo.c describes each architecture. The description is built two ways: graph.c's frozen
// loader reads the weights from a teacher file and folds batch norm into the convolution it
// follows; classifier_build.c's trainable builder draws fresh weights and keeps batch norm as
// a node in training form. Both fill the same node list, which net_run.c runs forward and
// backward.
#ifndef TMIX_NET_H
#define TMIX_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "params.h"
#include "tensor.h"

// The network input x, as a node's input.
#define TMIX_NET_INPUT (-1)

// PyTorch's BatchNorm2d eps, which every zoo model uses.
#define TMIX_NET_BN_EPS 1e-5f

typedef enum {
    TMIX_NODE_CONV, // conv2d; frozen, a batch norm that follows it is folded into a bias
    TMIX_NODE_BN,   // batch norm: frozen, a per-channel scale and shift; trainable, training form
    TMIX_NODE_RELU,
    TMIX_NODE_MAXPOOL,
    TMIX_NODE_ADD,     // residual: in[0] + in[1]
    TMIX_NODE_AVGPOOL, // global: (N, C, H, W) -> (N, C)
    TMIX_NODE_LINEAR,  // (N, I) -> (N, O)
} tmix_node_kind;

typedef struct {
    tmix_node_kind kind;
    char name[64]; // the state_dict prefix: "layer1.0.conv1", "bn1", "linear"; "relu"...
    int in[2];     // input nodes (in[1] for add only); TMIX_NET_INPUT is x
    int channels;  // output channels (features for avgpool and linear)
    tmix_conv2d_params conv;
    tmix_pool2d_params pool;
    bool fixed; // a conv whose weight is given, never read nor trained (option A shortcuts)
    // conv (OC, C, KH, KW) and, frozen, its folded bias (OC) or none; linear (O, I), (O);
    // batch norm: frozen, its scale and shift; trainable, gamma and beta (C).
    tmix_tensor weight, bias;
    tmix_tensor out;    // activation; for an in-place ReLU a view of its input's
    tmix_tensor dout;   // d(loss)/d(out); only where the node reaches x
    bool inplace;       // ReLU over its input's activation (the only reader of it)
    bool relu_fused;    // conv or add whose in-place ReLU it applies itself, in the same
                        // pass (the ReLU node's forward then has nothing left to do)
    bool reaches_input; // depends on x, so the gradient flows through it
    // Trainable nets only (classifier_build.c); empty in a frozen one. A node is trainable
    // when dweight is allocated.
    tmix_tensor dweight, dbias;
    tmix_tensor running_mean, running_var; // bn (C)
    int64_t num_batches_tracked;           // bn: train forwards so far
    tmix_tensor save_mean, save_invstd;    // bn (C): the batch statistics of the last train
    tmix_tensor scale, shift;              // bn (C): the running statistics folded, for eval
} tmix_node;

typedef struct {
    tmix_backend *be;
    tmix_node *nodes;
    int count, cap;
    int in_channels, num_classes;
    int64_t x_shape[4]; // the input shape the activations are sized for; 0s: none yet
    tmix_tensor x;      // the last forward's input (borrowed), read by the backward
    bool grads_ready;   // dout tensors are allocated for x_shape
    bool all_activations; // every node's out is allocated for x_shape, not only keep's
    int keep;             // the node whose activation is read from outside (the CAM
                          // features), or -2 (tmix_net_finish)
    tmix_layers *layers;  // the network run whole for x_shape, or NULL
    bool layers_backward; // layers was made for a backward too (a forward's)
    bool layers_refused;  // the backend does not run it whole for x_shape,
    char layers_why[256]; // and why
    bool backward_refused; // nor with its backward (then forwards run op by op)
    bool whole_forward;    // the last forward ran whole: its backward does too
    uint64_t generation; // counts the (re)allocations of the activations: a graph's key
} tmix_net;

// ---- describing an architecture (zoo.c) ------------------------------------------------------

typedef struct tmix_net_builder tmix_net_builder;

// What a builder does with the operations that have parameters. Called only while b->rc is 0;
// each returns the last node it added, or a failure code through tmix_net_done.
typedef struct {
    int (*conv)(tmix_net_builder *b, int in, const char *prefix, const char *conv, const char *bn,
                int oc, int k, int stride, int pad);
    int (*bn)(tmix_net_builder *b, int in, const char *prefix, const char *bn);
    int (*linear)(tmix_net_builder *b, int in, const char *name);
} tmix_net_ops;

// A builder's state; graph.c's and classifier_build.c's builders start with it.
struct tmix_net_builder {
    const tmix_net_ops *ops;
    tmix_net *net;    // be, in_channels and num_classes set; nodes appended
    const char *arch; // for messages
    int rc;           // the first failure; every later call returns it and does nothing
};

// Every call returns the index of the (last) node it adds or, once any call has failed, that
// failure's code without doing anything, so a description checks rc once at the end. Names
// are "prefix.leaf" (prefix may be NULL); tensors are "prefix.leaf.weight" etc.

// A convolution without bias (weight (oc, C, k, k), square kernel, stride and padding), then
// batch norm `bn` unless bn is NULL (folded into the convolution when frozen).
int tmix_net_conv(tmix_net_builder *b, int in, const char *prefix, const char *conv, const char *bn,
                  int oc, int k, int stride, int pad);
// A convolution whose weight is given (host, (oc, C, k, k)), never read nor trained; name is
// only for messages.
int tmix_net_conv_fixed(tmix_net_builder *b, int in, const char *name, const float *weight, int oc,
                        int k, int stride, int pad);
int tmix_net_bn(tmix_net_builder *b, int in, const char *prefix, const char *bn);
int tmix_net_relu(tmix_net_builder *b, int in);
int tmix_net_maxpool(tmix_net_builder *b, int in, int k, int stride, int pad);
int tmix_net_add(tmix_net_builder *b, int in0, int in1);
int tmix_net_avgpool(tmix_net_builder *b, int in);
// weight (num_classes, C) and bias (num_classes), named name.weight and name.bias.
int tmix_net_linear(tmix_net_builder *b, int in, const char *name);

// ---- for the builders ------------------------------------------------------------------------

// Appends a node named "prefix.leaf" reading in0 (and in1 for add), with its input's
// channels; NULL after setting b->rc on failure.
tmix_node *tmix_net_push(tmix_net_builder *b, tmix_node_kind kind, const char *prefix,
                         const char *leaf, int in0, int in1);
// Appends a convolution of oc output channels; its weight's shape (oc, C, k, k) into shape.
tmix_node *tmix_net_push_conv(tmix_net_builder *b, int in, const char *prefix, const char *leaf,
                              int oc, int k, int stride, int pad, int64_t shape[4]);
// The newest node's index, or b->rc when rc (the step's result) or an earlier step failed.
int tmix_net_done(tmix_net_builder *b, int rc);
// Allocates t on the net's backend with the host values given, or zeros when host is NULL.
int tmix_net_tensor(tmix_net_builder *b, tmix_tensor *t, int ndim, const int64_t *shape,
                    const float *host);

// Once built: which nodes reach x, and which ReLUs run in place (never over node keep, whose
// activation is read from outside, e.g. the CAM features; -2 for none).
void tmix_net_finish(tmix_net *net, int keep);
// Frees every tensor (views are only forgotten) and the nodes.
void tmix_net_free(tmix_net *net);

// ---- running (net_run.c) -----------------------------------------------------------------

// out = the last node of the network on x (caller's tensor, written directly; the last node
// is always the classifier, whose output no backward reads). train: trainable batch norms
// normalise with the batch's statistics, update the running ones and count the batch; else
// they use the running statistics. Activations are (re)allocated when x's shape changes. x
// and out are checked by the caller; x must stay alive until the backward. A frozen network
// (no train) runs whole where the backend can (tmix_layers_new with backward), its backward
// too; else op by op.
int tmix_net_forward(tmix_net *net,
                     tmix_tensor *out,     // (B, num_classes)
                     const tmix_tensor *x, // (B, in_channels, H, W)
                     bool train);
// out = the last node on x, as tmix_net_forward(train = false), keeping only the activation
// of node keep (tmix_net_finish): no backward may follow. Where the backend runs the network
// whole (tmix_layers_new: CUDA at bf16) it does, writing only the caller's out and keep's
// activation; else op by op, as tmix_net_forward.
int tmix_net_infer(tmix_net *net,
                   tmix_tensor *out,      // (B, num_classes)
                   const tmix_tensor *x); // (B, in_channels, H, W)
// From dout = d(loss)/d(out) of the last forward: every trainable node's weight gradients
// += theirs, and dx += d(loss)/dx unless dx is NULL. After a forward run whole, one
// backward (a second is refused: tmix_layers_backward).
int tmix_net_backward(tmix_net *net,
                      tmix_tensor *dx,          // (B, in_channels, H, W) or NULL
                      const tmix_tensor *dout); // (B, num_classes)
// Frees the activations, their gradients and the network run whole.
void tmix_net_release(tmix_net *net);

#endif
