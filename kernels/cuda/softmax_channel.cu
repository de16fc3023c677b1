// Softmax over the channel dimension with a temperature, on the GPU (the twin of
// kernels/softmax_channel.c). One thread per (n, h, w) column walks its K channels, in
// double, so results are within a rounding of the exact value. tau stays on the device: the
// kernels read it, so nothing waits for the host (and nothing on the host can check that
// tau > 0, as the CPU twin does; a tau <= 0 gives Inf or NaN here).
#include <math.h>

#include "ops.cuh"

// Partial sums of the dtau reduction: one per block of the backward kernel, so the grid of
// that kernel is capped here and the scratch buffer stays small.
#define MAX_PARTIALS 1024

// The max over the K channels of one column and 1 / sum_k exp((in_k - max) / tau): what
// both passes need to evaluate the softmax of that column stably.
static __device__ void column_stats(double *hmax, double *inv_sum,
                                    const float *in, // (K) with stride HW
                                    int64_t K, int64_t HW, double inv_tau)
{
    double m = in[0];
    for (int64_t k = 1; k < K; k++)
        m = fmax(m, (double)in[k * HW]);
    double sum = 0.0;
    for (int64_t k = 0; k < K; k++)
        sum += exp((in[k * HW] - m) * inv_tau);
    *hmax = m;
    *inv_sum = 1.0 / sum;
}

// out[n, :, p] = softmax(in[n, :, p] / tau); out may be in (each column is read before it is
// written, by the one thread that owns it).
static __global__ void softmax_forward_kernel(float *out,       // (N, K, H, W)
                                              const float *in,  // (N, K, H, W)
                                              const float *tau, // (1)
                                              int64_t N, int64_t K, int64_t HW)
{
    const double inv_tau = 1.0 / (double)tau[0];
    TMIX_CUDA_LOOP(q, N * HW) {
        int64_t base = q / HW * K * HW + q % HW;
        double hmax, inv_sum;
        column_stats(&hmax, &inv_sum, in + base, K, HW, inv_tau);
        for (int64_t k = 0; k < K; k++)
            out[base + k * HW] = (float)(exp((in[base + k * HW] - hmax) * inv_tau) * inv_sum);
    }
}

// With g = dout, y = softmax(z) and z = in / tau: dL/dz_k = y_k (g_k - sum_j g_j y_j), so
// din += dL/dz / tau and dL/dtau = -sum over every element of dL/dz_k * in_k / tau^2.
// y is recomputed in double from in rather than read from the float `out`: g_k - sum cancels,
// and a float y would cost digits there (the CPU twin does the same). Since sum_k dL/dz_k = 0,
// in_k may be shifted by the column's max in the dtau term, which keeps large logits from
// cancelling. Each block leaves its columns' sum of dL/dz_k * (in_k - max) in
// partials[blockIdx.x] (when partials is not NULL); softmax_dtau_kernel finishes the sum.
static __global__ void softmax_backward_kernel(float *din,         // (N, K, H, W) or NULL
                                               double *partials,   // (gridDim.x) or NULL
                                               const float *dout,  // (N, K, H, W)
                                               const float *in,    // (N, K, H, W)
                                               const float *tau,   // (1)
                                               int64_t N, int64_t K, int64_t HW)
{
    const double inv_tau = 1.0 / (double)tau[0];
    double acc = 0.0;
    TMIX_CUDA_LOOP(q, N * HW) {
        int64_t base = q / HW * K * HW + q % HW;
        double hmax, inv_sum;
        column_stats(&hmax, &inv_sum, in + base, K, HW, inv_tau);
        double gy = 0.0;
        for (int64_t k = 0; k < K; k++)
            gy += exp((in[base + k * HW] - hmax) * inv_tau) * inv_sum * dout[base + k * HW];
        double column = 0.0;
        for (int64_t k = 0; k < K; k++) {
            int64_t i = base + k * HW;
            double shifted = in[i] - hmax;
            double dz = exp(shifted * inv_tau) * inv_sum * (dout[i] - gy);
            if (din)
                din[i] = (float)(din[i] + dz * inv_tau);
            column += shifted * dz;
        }
        acc += column;
    }
    if (partials) { // the same for every thread of the block
        acc = tmix_block_reduce(acc, tmix_cuda_sum(), 0.0);
        if (threadIdx.x == 0)
            partials[blockIdx.x] = acc;
    }
}

// One block: dtau += -(sum of the partials, in a fixed order) / tau^2.
static __global__ void softmax_dtau_kernel(float *dtau,            // (1)
                                           const double *partials, // (count)
                                           const float *tau,       // (1)
                                           int count)
{
    double s = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x)
        s += partials[i];
    s = tmix_block_reduce(s, tmix_cuda_sum(), 0.0);
    if (threadIdx.x == 0) {
        double t = tau[0];
        dtau[0] = (float)(dtau[0] - s / (t * t));
    }
}

extern "C" int tmix_cuda_softmax_channel_forward(tmix_backend *be, tmix_tensor *out,
                                                 const tmix_tensor *in, const tmix_tensor *tau)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t N = in->shape[0], K = in->shape[1], HW = in->shape[2] * in->shape[3];
    softmax_forward_kernel<<<tmix_cuda_blocks(N * HW, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0,
                             st->stream>>>(tmix_f32(out), tmix_f32(in), tmix_f32(tau), N, K,
                                           HW);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int tmix_cuda_softmax_channel_backward(tmix_backend *be, tmix_tensor *din,
                                                  tmix_tensor *dtau, const tmix_tensor *dout,
                                                  const tmix_tensor *out,
                                                  const tmix_tensor *in,
                                                  const tmix_tensor *tau)
{
    (void)out; // the softmax is recomputed in double from in (see softmax_backward_kernel)
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    if (!din && !dtau)
        return 0;
    int64_t N = in->shape[0], K = in->shape[1], HW = in->shape[2] * in->shape[3];
    // The block count depends on the shape only, so the order of the dtau sum does too.
    unsigned blocks = tmix_cuda_blocks(N * HW, TMIX_CUDA_BLOCK);
    if (blocks > MAX_PARTIALS)
        blocks = MAX_PARTIALS;
    double *partials = NULL;
    if (dtau) {
        void *scratch;
        TMIX_TRY(tmix_cuda_scratch(st, MAX_PARTIALS * sizeof(double), &scratch));
        partials = (double *)scratch;
    }
    softmax_backward_kernel<<<blocks, TMIX_CUDA_BLOCK, 0, st->stream>>>(
        din ? tmix_f32(din) : NULL, partials, tmix_f32(dout), tmix_f32(in), tmix_f32(tau), N, K,
        HW);
    CUDA_CHECK(cudaGetLastError());
    if (dtau) {
        softmax_dtau_kernel<<<1, TMIX_CUDA_BLOCK, 0, st->stream>>>(tmix_f32(dtau), partials,
                                                                   tmix_f32(tau), (int)blocks);
        CUDA_CHECK(cudaGetLastError());
    }
    return 0;
}
