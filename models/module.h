// The TransformMix mixing module's parameters: the STN (localisation net + regressor) and
// the MPN (mask net + log temperature), with the PyTorch names and shapes of DESIGN.md ("The
// mixing module, exactly"), initialised, loaded and saved as safetensors.
#ifndef TMIX_MODULE_H
#define TMIX_MODULE_H

#include <stdint.h>

#include "backend.h"
#include "safetensors.h"
#include "tensor.h"

// The module's tensors in state_dict order.
#define TMIX_MODULE_TENSORS(X)                                                             \
    X(STN_LOC0_W, "stn.loc.0.weight") X(STN_LOC0_B, "stn.loc.0.bias")                      \
    X(STN_LOC3_W, "stn.loc.3.weight") X(STN_LOC3_B, "stn.loc.3.bias")                      \
    X(STN_FC0_W, "stn.fc.0.weight") X(STN_FC0_B, "stn.fc.0.bias")                          \
    X(STN_FC2_W, "stn.fc.2.weight") X(STN_FC2_B, "stn.fc.2.bias")                          \
    X(MPN_NET0_W, "mpn.net.0.weight") X(MPN_NET0_B, "mpn.net.0.bias")                      \
    X(MPN_NET2_W, "mpn.net.2.weight") X(MPN_NET2_B, "mpn.net.2.bias")                      \
    X(MPN_NET4_W, "mpn.net.4.weight") X(MPN_NET4_B, "mpn.net.4.bias")                      \
    X(MPN_NET6_W, "mpn.net.6.weight") X(MPN_NET6_B, "mpn.net.6.bias")                      \
    X(MPN_LOG_TAU, "mpn.log_tau")

#define TMIX_MODULE_ENUM(id, name) TMIX_##id,
typedef enum { TMIX_MODULE_TENSORS(TMIX_MODULE_ENUM) TMIX_MODULE_COUNT } tmix_module_tensor;
#undef TMIX_MODULE_ENUM

extern const char *const tmix_module_names[TMIX_MODULE_COUNT];

#define TMIX_MODULE_MAX_N 3

typedef struct {
    int n;          // inputs per mixed image, 2 or 3
    int stn_size;   // S, the STN's input resolution
    float alpha;    // the Dirichlet / Beta concentration it was trained with
    char dataset[64], teacher_arch[32];
    tmix_tensor p[TMIX_MODULE_COUNT]; // on the backend the module was made for
} tmix_module;

// Side of the STN's last feature map: ((S - 6) / 2 - 4) / 2; S must make it at least 1.
int tmix_module_stn_features(int stn_size);
// Shape of tensor i for n inputs and STN size S.
void tmix_module_shape(int n, int stn_size, int i, int *ndim, int64_t shape[4]);

// A fresh module (PyTorch's default initialisation from the seed, identity regressor,
// log_tau = 0).
int tmix_module_init(tmix_module *m, tmix_backend *be, int n, int stn_size, float alpha,
                     uint64_t seed);
// Loads a module file; errors name the file and the tensor or metadata key at fault.
int tmix_module_load(tmix_module *m, tmix_backend *be, const char *path);
// Reads a module from an open file whose other tensors, if any, all have names starting
// with `others` (NULL: none allowed), as in a search checkpoint.
int tmix_module_read(tmix_module *m, tmix_backend *be, const tmix_safetensors *st,
                     const char *others);
// Writes the module (F32, metadata of DESIGN.md) atomically.
int tmix_module_save(const tmix_module *m, tmix_backend *be, const char *path);
// Adds the module's tensors and metadata to w (what tmix_module_save writes).
int tmix_module_write(const tmix_module *m, tmix_backend *be, tmix_st_writer *w);
void tmix_module_free(tmix_module *m, tmix_backend *be);
// Allocates tensors shaped like the module's (for gradients) and zeroes them.
int tmix_module_alloc_like(const tmix_module *m, tmix_backend *be,
                           tmix_tensor out[TMIX_MODULE_COUNT]);

#endif
