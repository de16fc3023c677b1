// A trainable classifier of the zoo (models/README.md, "Training a classifier"): the same
// architecture and state_dict names as the teacher it becomes, built with batch norm in
// training form and weight gradients, on any backend. `tmixd train-teacher` runs it: forward
// in train mode, loss, backward, tmix_sgd_update on every parameter, and at the end
// tmix_classifier_save_teacher writes a file that tmix_teacher_load reads.
#ifndef TMIX_CLASSIFIER_H
#define TMIX_CLASSIFIER_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "safetensors.h"
#include "tensor.h"

typedef struct tmix_classifier tmix_classifier;

// The architectures that can be trained, NULL-terminated (a subset of tmix_teacher_archs).
extern const char *const tmix_classifier_archs[];

typedef struct {
    char arch[32];
    int in_channels; // 1 or 3
    int num_classes;
} tmix_classifier_info;

// A trainable tensor: its state_dict name, its value and the gradient backward adds into.
typedef struct {
    char name[96];      // "layer1.0.conv1.weight"
    tmix_tensor *value; // on the classifier's backend; the optimiser updates it in place
    tmix_tensor *grad;  // same shape; zero it with tmix_classifier_zero_grad
} tmix_classifier_param;

// A batch norm buffer: the running statistics (value) or the count of training batches
// (count, PyTorch's num_batches_tracked, an I64 scalar in files); exactly one is non-NULL.
typedef struct {
    char name[96]; // "bn1.running_mean", "bn1.num_batches_tracked"
    tmix_tensor *value;
    int64_t *count;
} tmix_classifier_buffer;

// A fresh network of `arch` on be with akamaster's initialisation (the reference recipe of
// cifar_resnet20): every convolution and linear weight kaiming_normal_ (N(0, 2 / fan_in)),
// the linear bias PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), batch norm weight 1,
// bias 0, running mean 0, running variance 1, all drawn from `seed` in state_dict order.
// TMIX_EINVAL for NULL arguments, an unknown arch, in_channels other than 1 or 3, or
// num_classes outside 1..1000000; *out is NULL after a failure.
int tmix_classifier_new(tmix_classifier **out, tmix_backend *be, const char *arch, int in_channels,
                        int num_classes, uint64_t seed);
void tmix_classifier_free(tmix_classifier *c);
const tmix_classifier_info *tmix_classifier_info_get(const tmix_classifier *c);

// logits = net(x). train: batch norm normalises with the batch's statistics, updates the
// running ones (momentum 0.1, eps 1e-5, as PyTorch) and counts the batch; every activation
// is kept for the backward, and x is kept by reference (it must stay alive until then).
// Else: the running statistics, nothing updated (PyTorch's eval()). Activations are
// (re)allocated when the shape of x changes. Training needs more than one value per channel
// at every batch norm (TMIX_ESHAPE otherwise, from the op).
int tmix_classifier_forward(tmix_classifier *c,
                            tmix_tensor *logits,  // (B, num_classes)
                            const tmix_tensor *x, // (B, in_channels, H, W)
                            bool train);
// grad += d(loss)/d(param) for every parameter, given dlogits = d(loss)/d(logits) of the last
// forward, which must have been a successful train forward (TMIX_EINVAL otherwise). May be
// called again after the same forward (it adds the same again).
int tmix_classifier_backward(tmix_classifier *c,
                             const tmix_tensor *dlogits); // (B, num_classes)
int tmix_classifier_zero_grad(tmix_classifier *c);

// The parameters / buffers in state_dict order (the array belongs to c; *count entries).
const tmix_classifier_param *tmix_classifier_params(const tmix_classifier *c, int *count);
const tmix_classifier_buffer *tmix_classifier_buffers(const tmix_classifier *c, int *count);

// Checkpoints: adds every parameter and buffer to w, each named prefix + its state_dict name
// (prefix may be NULL: the bare names), F32 and I64 scalars for the counters, in state_dict
// order. Gradients are not written.
int tmix_classifier_write_state(const tmix_classifier *c, tmix_st_writer *w, const char *prefix);
// Reads every parameter and buffer back from st under the same names; tensors st holds
// beyond those are left to the caller (optimiser state). Nothing is changed unless all are
// good. Errors name the file and the tensor: TMIX_EFORMAT for a missing tensor, a non-finite
// value or a negative running variance, TMIX_ESHAPE for a wrong shape, TMIX_EDTYPE for a
// dtype other than F32 (I64 for the counters).
int tmix_classifier_read_state(tmix_classifier *c, const tmix_safetensors *st, const char *prefix);

// Writes a teacher file (models/README.md, "Teacher files") atomically: the state with its
// state_dict names, metadata format, arch, num_classes, in_channels, and dataset, mean and std
// when given (mean and std: in_channels values each, std > 0; both or neither). tmix_teacher_load
// of it computes what tmix_classifier_forward(train = false) does. TMIX_EINVAL for bad
// arguments, before anything is written.
int tmix_classifier_save_teacher(const tmix_classifier *c, const char *path,
                                 const char *dataset, // or NULL
                                 const float *mean,   // [in_channels] or NULL
                                 const float *std);   // [in_channels] or NULL

#endif
