// Host arrays passed to an op (indices, labels, boxes) copied into the backend's scratch
// buffer, for the ops whose arguments the entry points check on the host.
#ifndef TMIX_CUDA_HOST_ARGS_CUH
#define TMIX_CUDA_HOST_ARGS_CUH

#include "common.cuh"

// Queues a copy of `bytes` of host memory `host` into st's scratch buffer on st->stream and
// sets *out to the device copy, valid until the next call that asks for scratch. A copy from
// pageable memory returns only once the data is staged, so the caller may reuse `host` at
// once; pinned memory (tmix_host_alloc: the mixer's arrays) is read when the stream gets
// there, and by a graph at each launch (ops.h).
static inline int tmix_cuda_host_args(tmix_cuda_state *st, const void *host, size_t bytes,
                                      void **out)
{
    TMIX_TRY(tmix_cuda_scratch(st, bytes, out));
    CUDA_CHECK(cudaMemcpyAsync(*out, host, bytes, cudaMemcpyHostToDevice, st->stream));
    return 0;
}

#endif
