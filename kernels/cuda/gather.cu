// Row gather on the GPU (the twin of kernels/gather.c): out[m] = in[index[m]] along dimension
// 0. The checked host index is copied to scratch first; x walks a row, y walks the rows of out.
#include "host_args.cuh"
#include "ops.cuh"

static __global__ void gather_kernel(float *out,           // (M, row)
                                     const float *in,      // (N, row)
                                     const int64_t *index, // [M], device
                                     int64_t M, int64_t row)
{
    TMIX_CUDA_LOOP_Y(m, M) {
        const float *x = in + index[m] * row;
        float *y = out + m * row;
        TMIX_CUDA_LOOP(i, row)
            y[i] = x[i];
    }
}

extern "C" int tmix_cuda_gather(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                                const int64_t *index)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t M = out->shape[0], row = tmix_cuda_numel(in) / in->shape[0];
    void *dindex;
    TMIX_TRY(tmix_cuda_host_args(st, index, (size_t)M * sizeof *index, &dindex));
    tmix_cuda_plan2d g = tmix_cuda_plan(row, M);
    gather_kernel<<<g.grid, g.block, 0, st->stream>>>(tmix_f32(out), tmix_f32(in),
                                                      (const int64_t *)dindex, M, row);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
