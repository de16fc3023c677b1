// The contract between the core and the CUDA backend plugin (libtmix-cuda.so). The plugin
// is loaded with dlopen so that tmix starts, and runs on the CPU, on machines that have no
// CUDA runtime or cuDNN; executables export the core's symbols (tmix_fail...) to it.
#ifndef TMIX_CUDA_PLUGIN_H
#define TMIX_CUDA_PLUGIN_H

#include "backend.h"

#define TMIX_CUDA_PLUGIN_ABI 13 // 6: CUDA IPC buffers; 7: bf16 precision; 8: graphs;
                                // 9: ipc_buffer_read, pci_bus_id; 10: timing marks;
                                // 11: ReLU fused into conv2d_forward and add;
                                // 12: frozen networks run whole (layers_*);
                                // 13: and their gradient to the input

// Each returns what tmix_cuda_device_count / tmix_backend_cuda_open return.
typedef int (*tmix_cuda_plugin_abi_fn)(void);
typedef int (*tmix_cuda_plugin_count_fn)(void);
typedef int (*tmix_cuda_plugin_open_fn)(tmix_backend **out, int device);

#define TMIX_CUDA_PLUGIN_ABI_SYM "tmix_cuda_plugin_abi"
#define TMIX_CUDA_PLUGIN_COUNT_SYM "tmix_cuda_plugin_device_count"
#define TMIX_CUDA_PLUGIN_OPEN_SYM "tmix_cuda_plugin_open"

#endif
