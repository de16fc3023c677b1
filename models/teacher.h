// The frozen teacher: a zoo architecture (resnet18/34/50, cifar_resnet18, preactresnet18,
// wrn28_10, cifar_resnet20) loaded from a safetensors file with PyTorch state_dict names
// (models/README.md). It runs forward keeping every activation, so that CAMs and the
// gradient with respect to the input can follow without a second pass.
#ifndef TMIX_TEACHER_H
#define TMIX_TEACHER_H

#include <stdbool.h>

#include "backend.h"
#include "tensor.h"

typedef struct tmix_teacher tmix_teacher;

typedef struct {
    char arch[32];
    int num_classes;
    int in_channels;      // 1 or 3
    int feature_channels; // channels of the CAM feature map
    bool has_norm;        // mean/std were in the file
    float mean[3], std[3];
    char dataset[64]; // "" when the file does not say
} tmix_teacher_info;

// The zoo's architecture names, NULL-terminated.
extern const char *const tmix_teacher_archs[];

// Loads and validates a teacher file onto be (folding batch norm where it follows a
// convolution). Errors name the file and the fault: TMIX_EFORMAT for no or an unknown arch, a
// missing or extra tensor, a non-finite weight or metadata that disagrees with the tensors;
// TMIX_ESHAPE for a tensor of the wrong shape; TMIX_EDTYPE for one that is not F32, F16 or
// BF16; TMIX_ENOENT when the file does not exist. *out is NULL after a failure.
int tmix_teacher_load(tmix_teacher **out, tmix_backend *be, const char *path);
// A second teacher on be running src's network with src's weights (not copied) and
// activations of its own, so that several batches can run at once: be is src's backend or
// another one on the same device (a GPU stream of its own). src must outlive *out.
// TMIX_EINVAL when be is on another device.
int tmix_teacher_share(tmix_teacher **out, const tmix_teacher *src, tmix_backend *be);
void tmix_teacher_free(tmix_teacher *t);
const tmix_teacher_info *tmix_teacher_info_get(const tmix_teacher *t);

// logits = teacher(x), keeping every activation (ReLUs overwrite their input where nothing
// else reads it), or on a backend that runs networks whole (CUDA at bf16) there, keeping
// what its backward reads, bf16 NHWC. Activations are (re)allocated when the batch shape
// changes; gradient buffers on the first backward after that. x is kept by reference: it
// must stay alive until the backward.
int tmix_teacher_forward(tmix_teacher *t,
                         tmix_tensor *logits,   // (B, num_classes)
                         const tmix_tensor *x); // (B, in_channels, H, W)
// logits = teacher(x) as tmix_teacher_forward, for CAMs and logits only: no backward may
// follow. Keeps only the CAM features; on a backend that runs networks whole (CUDA at bf16
// precision, ops.h "frozen networks") it runs there, every activation bf16 NHWC.
int tmix_teacher_infer(tmix_teacher *t,
                       tmix_tensor *logits,   // (B, num_classes)
                       const tmix_tensor *x); // (B, in_channels, H, W)
// Whether the last tmix_teacher_infer, or tmix_teacher_forward and the backward after it,
// ran the network whole (ops.h "frozen networks"); if not, *why (when why is not NULL) says
// why it ran op by op.
bool tmix_teacher_runs_whole(const tmix_teacher *t, const char **why);
// CAMs of the last forward or infer for the given labels (host array of B entries, each in
// [0, num_classes)): the classifier row of the label times the CAM features, summed over
// channels, then relu, min-max per image, bilinear resize to the input size H x W.
int tmix_teacher_cams(tmix_teacher *t,
                      tmix_tensor *cams,      // (B, 1, H, W)
                      const int64_t *labels); // [B], host
// Changes whenever the teacher's activations (or CAM buffer) are allocated again, which
// moves them: a recorded graph of its forward is valid only while this stays the same.
uint64_t tmix_teacher_generation(const tmix_teacher *t);
// dx += d(loss)/dx for the last forward (not infer), given dlogits = d(loss)/d(logits).
// Teacher weights are frozen: no weight gradients. Op by op it may be called again after the
// same forward; after a forward run whole, a second is refused (TMIX_EINVAL).
int tmix_teacher_backward(tmix_teacher *t,
                          tmix_tensor *dx,             // (B, in_channels, H, W)
                          const tmix_tensor *dlogits); // (B, num_classes)

#endif
