// One batch of mixing, for every method (models/README.md "Methods and their outputs"):
// CAMs from the teacher, pairing, the STN warp, the MPN masks, the blend, the soft labels,
// and for training the backward pass into the module's parameters.
#ifndef TMIX_MIX_H
#define TMIX_MIX_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "module.h"
#include "params.h"
#include "rng.h"
#include "teacher.h"

#define TMIX_METHODS(X)                                                                    \
    X(NONE, "none") X(MIXUP, "mixup") X(CUTMIX, "cutmix") X(SOFTMAX_CAM, "softmax-cam")    \
    X(STN_ONLY, "stn-only") X(MPN_ONLY, "mpn-only") X(TRANSFORMMIX, "transformmix")

#define TMIX_METHOD_ENUM(id, name) TMIX_MIX_##id,
typedef enum { TMIX_METHODS(TMIX_METHOD_ENUM) TMIX_MIX_METHOD_COUNT } tmix_method;
#undef TMIX_METHOD_ENUM

const char *tmix_method_name(tmix_method m);
// Parses a method name; an unknown one is TMIX_EINVAL with the list of names.
int tmix_method_parse(const char *name, tmix_method *out);
bool tmix_method_uses_stn(tmix_method m);
bool tmix_method_uses_mpn(tmix_method m);
// Whether the method needs the teacher's CAMs (the others mix without a teacher).
bool tmix_method_uses_cams(tmix_method m);

// The random part of one batch, on the host: drawn from a seed, or given (tmixd mix --in).
typedef struct {
    int batch, n, stn_size;
    int64_t *perm;  // [(n - 1) * batch]: row k - 1 is the k-th partner of every sample
    float *lam;     // [batch * n], each row sums to 1
    float *noise;   // [batch * stn_size * stn_size], NULL when stn_size is 0
    float *centre;  // [batch * 2]: CutMix box centre (y, x) as a fraction of the image
} tmix_draws;

// stn_size 0: no noise (for the methods without an STN, which need none).
int tmix_draws_alloc(tmix_draws *d, int batch, int n, int stn_size);
void tmix_draws_free(tmix_draws *d);
// Fills every field in the order of models/README.md ("Randomness").
void tmix_draws_sample(tmix_draws *d, tmix_rng *rng, double alpha);
// Checks given draws: perm rows are permutations, lam rows are >= 0 and sum to 1.
int tmix_draws_check(const tmix_draws *d);

// What the last forward made. Tensors live on the mixer's backend and belong to it; host
// arrays are [batch * n], row-major, and valid until the next forward.
typedef struct {
    const tmix_tensor *cams;        // (B, 1, H, W)
    const tmix_tensor *theta;       // (B * n, 2, 3)
    const tmix_tensor *warped;      // (B * n, C, H, W)
    const tmix_tensor *warped_cams; // (B * n, 1, H, W)
    const tmix_tensor *masks;       // (B, n, H, W)
    const tmix_tensor *mixed;       // (B, C, H, W)
    const tmix_tensor *logits;      // (B, classes): the teacher on mixed (with_loss only)
    const int64_t *sources, *labels;
    const float *weights;
    float loss;                     // with_loss only
} tmix_mix_result;

typedef struct tmix_mixer tmix_mixer;

int tmix_mixer_new(tmix_mixer **out, tmix_backend *be, tmix_method method);
void tmix_mixer_free(tmix_mixer *mx);

// Where the backend has graphs (CUDA) and `on`, each forward without the loss becomes one
// launch: the first forward of a batch shape runs op by op (allocating buffers, choosing
// convolution algorithms), the second records a CUDA graph of its work, the rest replay it
// with their own inputs. Replays need the images at the same address every batch (a batch
// elsewhere records again), and the teacher and module given to the mixer not reallocated
// by anyone else meanwhile (each would change the key and record again). A batch whose
// recording fails runs op by op, and the next one of its shape tries again; after three
// failures the mixer turns graphs off and keeps the reason (tmix_mixer_graph_error): a batch
// never fails for want of a graph. Off by default.
void tmix_mixer_use_graphs(tmix_mixer *mx, bool on);
// Forwards that ran as a graph launch so far.
int64_t tmix_mixer_graph_launches(const tmix_mixer *mx);
// Why recording a graph failed (graphs are off since), or NULL.
const char *tmix_mixer_graph_error(const tmix_mixer *mx);

// Mixes images (B, C, H, W; C = the teacher's in_channels) with labels (host, B entries).
// module is needed by the methods that use the STN or MPN (NULL otherwise), and must have
// n = draws->n. with_loss also runs the teacher on the mixed batch for logits and the loss.
// teacher may be NULL for a method that needs no CAMs (none, mixup, cutmix) without
// with_loss; the result's cams and warped_cams are then NULL.
int tmix_mix_forward(tmix_mixer *mx, tmix_teacher *teacher, const tmix_module *module,
                     const tmix_tensor *images, const int64_t *labels,
                     const tmix_draws *draws, bool with_loss, tmix_mix_result *res);
// After a forward with_loss: accumulates the gradient of the loss into dmixed (B, C, H, W;
// or NULL) and into grads[i] for every module tensor the method uses (grads from
// tmix_module_alloc_like; entries may be empty tensors to skip them).
int tmix_mix_backward(tmix_mixer *mx, tmix_teacher *teacher, const tmix_module *module,
                      tmix_tensor *grads, tmix_tensor *dmixed);

#endif
