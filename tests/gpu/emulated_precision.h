// CPU backends that compute as the CUDA backend does at a reduced precision, for the gpu
// tests' --cpu runs (test_precision.c) and as a tight reference (test_infer.c).
#ifndef TMIX_TEST_EMULATED_PRECISION_H
#define TMIX_TEST_EMULATED_PRECISION_H

#include <stdbool.h>

#include "backend.h"

// The CPU backend with its convolutions rounded as the GPU's at precision p (TF32 or BF16):
// TF32 reads 10 mantissa bits of each factor (truncated here: the worse of the readings the
// documentation allows). bf16 forward convolutions (kernels/cuda/conv2d.cu) round the image
// and the weights to nearest even, sum in float, round the output, then add the bias and
// apply the ReLU in float; their backward runs in TF32. whole (BF16 only): as a network run
// whole keeps its activations and their gradients (kernels/cuda/layers.cu), the outputs of
// the convolutions, batch norms and sums, and every gradient but the linear layers', are
// rounded to bf16 too, and the convolutions' gradients to their input read bf16. One backend
// at a time: each call changes what the last returned computes.
tmix_backend *tmix_test_emulated_precision(tmix_precision p, bool whole);

#endif
