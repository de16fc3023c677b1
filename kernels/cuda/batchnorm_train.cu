// Batch norm in training form on the GPU (the twin of kernels/batchnorm_train.c). Own kernels,
// not cuDNN's BatchNormalizationForwardTraining / BackwardTraining: those are deprecated in
// cuDNN 9 and sum in float, while the CPU twin sums in double with the variance in a second
// pass around the mean, which inputs far from zero and the ill-conditioned din of
// N*H*W = 2 need. The n = N*H*W values of each channel are cut into slices; one block sums a
// slice in double through a fixed reduction tree, then one thread per channel folds the
// slices in order: deterministic, no atomics. Gradients accumulate (+=) as on the CPU.
#include "ops.cuh"

// Slices per channel: enough blocks to spread a few wide channels over the GPU, few enough
// that folding the partial sums costs nothing.
#define MAX_SLICES 32

// Where the i-th of the n values of channel c lies in an (N, C, H, W) tensor.
static __device__ __forceinline__ int64_t channel_at(int64_t i, int64_t c, int64_t C, int64_t HW)
{
    const int64_t k = i / HW;
    return (k * C + c) * HW + (i - k * HW);
}

// The sum of the partial sums of one channel, in slice order.
static __device__ __forceinline__ double fold(const double *part, // [slices] at `stride`
                                              int slices, int stride)
{
    double s = 0.0;
    for (int k = 0; k < slices; k++)
        s += part[k * stride];
    return s;
}

// The sizes of an (N, C, H, W) tensor that every launcher needs, n = N*H*W values per
// channel, and the launch geometry of the slice kernels: slice s of channel c is block (s, c)
// and covers the values i = s * blockDim.x + t, stepping by slices * blockDim.x
// (TMIX_CUDA_LOOP over n).
struct bn_dims {
    int64_t N, C, HW, n;
    unsigned slices;
    dim3 grid;
};

static bn_dims dims_of(const tmix_tensor *t)
{
    bn_dims d;
    d.N = t->shape[0];
    d.C = t->shape[1];
    d.HW = t->shape[2] * t->shape[3];
    d.n = d.N * d.HW;
    d.slices = tmix_cuda_blocks(d.n, 8 * TMIX_CUDA_BLOCK); // >= 8 values per thread
    if (d.slices > MAX_SLICES)
        d.slices = MAX_SLICES;
    d.grid = dim3(d.slices, tmix_cuda_blocks(d.C, 1));
    return d;
}

// ---- forward ---------------------------------------------------------------------------------

// sum_part[c, s] = sum of in over slice s of channel c.
static __global__ void sum_kernel(double *sum_part,   // (C, slices)
                                  const float *in,    // (N, C, H, W)
                                  int64_t C, int64_t HW, int64_t n)
{
    for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
        double s = 0.0;
        TMIX_CUDA_LOOP(i, n)
            s += in[channel_at(i, c, C, HW)];
        s = tmix_block_reduce(s, tmix_cuda_sum(), 0.0);
        if (threadIdx.x == 0)
            sum_part[c * gridDim.x + blockIdx.x] = s;
    }
}

// m2_part[c, s] = sum of (in - mean)^2 over slice s, every block folding the same mean.
static __global__ void m2_kernel(double *m2_part,        // (C, slices)
                                 const double *sum_part, // (C, slices)
                                 const float *in,        // (N, C, H, W)
                                 int64_t C, int64_t HW, int64_t n)
{
    const int slices = (int)gridDim.x;
    for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
        const double mean = fold(sum_part + c * slices, slices, 1) / (double)n;
        double s = 0.0;
        TMIX_CUDA_LOOP(i, n) {
            const double d = in[channel_at(i, c, C, HW)] - mean;
            s += d * d;
        }
        s = tmix_block_reduce(s, tmix_cuda_sum(), 0.0);
        if (threadIdx.x == 0)
            m2_part[c * slices + blockIdx.x] = s;
    }
}

// One thread per channel: the saved and running statistics, and (mean, invstd * gamma) in
// double for the output kernel.
static __global__ void stats_kernel(double *stats,          // (C, 2)
                                    float *save_mean,       // (C)
                                    float *save_invstd,     // (C)
                                    float *running_mean,    // (C) or NULL
                                    float *running_var,     // (C) or NULL
                                    const double *sum_part, // (C, slices)
                                    const double *m2_part,  // (C, slices)
                                    const float *gamma,     // (C)
                                    int64_t C, int slices, double n, double eps, double momentum)
{
    TMIX_CUDA_LOOP(c, C) {
        const double mean = fold(sum_part + c * slices, slices, 1) / n;
        const double m2 = fold(m2_part + c * slices, slices, 1);
        const double invstd = 1.0 / sqrt(m2 / n + eps);
        stats[2 * c] = mean;
        stats[2 * c + 1] = invstd * gamma[c];
        save_mean[c] = (float)mean;
        save_invstd[c] = (float)invstd;
        if (running_mean)
            running_mean[c] = (float)((1 - momentum) * running_mean[c] + momentum * mean);
        if (running_var)
            running_var[c] = (float)((1 - momentum) * running_var[c] + momentum * (m2 / (n - 1)));
    }
}

// out = (in - mean) * invstd * gamma + beta over N*C planes, rounded once; out may be in (the
// statistics were read from in by the kernels before).
static __global__ void normalize_kernel(float *out,          // (N, C, H, W)
                                        const float *in,     // (N, C, H, W)
                                        const double *stats, // (C, 2)
                                        const float *beta,   // (C)
                                        int64_t planes, int64_t C, int64_t HW)
{
    TMIX_CUDA_LOOP_Y(plane, planes) {
        const int64_t c = plane % C;
        const double mean = stats[2 * c], a = stats[2 * c + 1], b = beta[c];
        const float *x = in + plane * HW;
        float *y = out + plane * HW;
        TMIX_CUDA_LOOP(p, HW)
            y[p] = (float)((x[p] - mean) * a + b);
    }
}

extern "C" int tmix_cuda_batchnorm_train_forward(tmix_backend *be, tmix_tensor *out,
                                                 tmix_tensor *save_mean,
                                                 tmix_tensor *save_invstd,
                                                 tmix_tensor *running_mean,
                                                 tmix_tensor *running_var,
                                                 const tmix_tensor *in, const tmix_tensor *gamma,
                                                 const tmix_tensor *beta,
                                                 tmix_batchnorm_train_params p)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    const bn_dims d = dims_of(in);
    void *scratch;
    TMIX_TRY(tmix_cuda_scratch(st, (size_t)d.C * (2 * d.slices + 2) * sizeof(double), &scratch));
    double *sum_part = (double *)scratch, *m2_part = sum_part + d.C * d.slices;
    double *stats = m2_part + d.C * d.slices;

    sum_kernel<<<d.grid, TMIX_CUDA_BLOCK, 0, st->stream>>>(sum_part, tmix_f32(in), d.C, d.HW,
                                                           d.n);
    CUDA_CHECK(cudaGetLastError());
    m2_kernel<<<d.grid, TMIX_CUDA_BLOCK, 0, st->stream>>>(m2_part, sum_part, tmix_f32(in), d.C,
                                                          d.HW, d.n);
    CUDA_CHECK(cudaGetLastError());
    stats_kernel<<<tmix_cuda_blocks(d.C, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0, st->stream>>>(
        stats, tmix_f32(save_mean), tmix_f32(save_invstd),
        running_mean ? tmix_f32(running_mean) : NULL, running_var ? tmix_f32(running_var) : NULL,
        sum_part, m2_part, tmix_f32(gamma), d.C, (int)d.slices, (double)d.n, p.eps, p.momentum);
    CUDA_CHECK(cudaGetLastError());
    const tmix_cuda_plan2d g = tmix_cuda_plan(d.HW, d.N * d.C);
    normalize_kernel<<<g.grid, g.block, 0, st->stream>>>(tmix_f32(out), tmix_f32(in), stats,
                                                         tmix_f32(beta), d.N * d.C, d.C, d.HW);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}

// ---- backward --------------------------------------------------------------------------------

// part[c, s] = (sum of dout, sum of dout * (in - save_mean)) over slice s of channel c.
static __global__ void grad_sums_kernel(double *part,           // (C, slices, 2)
                                        const float *dout,      // (N, C, H, W)
                                        const float *in,        // (N, C, H, W)
                                        const float *save_mean, // (C)
                                        int64_t C, int64_t HW, int64_t n)
{
    for (int64_t c = blockIdx.y; c < C; c += gridDim.y) {
        const double mean = save_mean[c];
        double sum_dy = 0.0, dot = 0.0;
        TMIX_CUDA_LOOP(i, n) {
            const int64_t j = channel_at(i, c, C, HW);
            sum_dy += dout[j];
            dot += dout[j] * (in[j] - mean);
        }
        sum_dy = tmix_block_reduce(sum_dy, tmix_cuda_sum(), 0.0);
        dot = tmix_block_reduce(dot, tmix_cuda_sum(), 0.0);
        if (threadIdx.x == 0) {
            part[(c * gridDim.x + blockIdx.x) * 2] = sum_dy;
            part[(c * gridDim.x + blockIdx.x) * 2 + 1] = dot;
        }
    }
}

// One thread per channel: dgamma += dot * invstd, dbeta += sum_dy, and the coefficients of
// din (sum_dy / n, dot * invstd^2 / n, invstd * gamma) in double.
static __global__ void grad_params_kernel(double *coef,             // (C, 3)
                                          float *dgamma,            // (C) or NULL
                                          float *dbeta,             // (C) or NULL
                                          const double *part,       // (C, slices, 2)
                                          const float *gamma,       // (C)
                                          const float *save_invstd, // (C)
                                          int64_t C, int slices, double n)
{
    TMIX_CUDA_LOOP(c, C) {
        const double sum_dy = fold(part + c * slices * 2, slices, 2);
        const double dot = fold(part + c * slices * 2 + 1, slices, 2);
        const double invstd = save_invstd[c];
        if (dgamma)
            dgamma[c] = (float)(dgamma[c] + dot * invstd);
        if (dbeta)
            dbeta[c] = (float)(dbeta[c] + sum_dy);
        coef[3 * c] = sum_dy / n;
        coef[3 * c + 1] = dot * invstd * invstd / n;
        coef[3 * c + 2] = invstd * gamma[c];
    }
}

// din += (dout - sum_dy / n - (in - mean) * dot * invstd^2 / n) * invstd * gamma.
static __global__ void grad_input_kernel(float *din,             // (N, C, H, W)
                                         const float *dout,      // (N, C, H, W)
                                         const float *in,        // (N, C, H, W)
                                         const float *save_mean, // (C)
                                         const double *coef,     // (C, 3)
                                         int64_t planes, int64_t C, int64_t HW)
{
    TMIX_CUDA_LOOP_Y(plane, planes) {
        const int64_t c = plane % C;
        const double mean = save_mean[c], dy_mean = coef[3 * c], proj = coef[3 * c + 1];
        const double a = coef[3 * c + 2];
        const float *dy = dout + plane * HW, *x = in + plane * HW;
        float *dx = din + plane * HW;
        TMIX_CUDA_LOOP(p, HW)
            dx[p] = (float)(dx[p] + (dy[p] - dy_mean - (x[p] - mean) * proj) * a);
    }
}

extern "C" int tmix_cuda_batchnorm_train_backward(tmix_backend *be, tmix_tensor *din,
                                                  tmix_tensor *dgamma, tmix_tensor *dbeta,
                                                  const tmix_tensor *dout,
                                                  const tmix_tensor *in,
                                                  const tmix_tensor *gamma,
                                                  const tmix_tensor *save_mean,
                                                  const tmix_tensor *save_invstd)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    const bn_dims d = dims_of(in);
    void *scratch;
    TMIX_TRY(tmix_cuda_scratch(st, (size_t)d.C * (2 * d.slices + 3) * sizeof(double), &scratch));
    double *part = (double *)scratch, *coef = part + d.C * d.slices * 2;

    grad_sums_kernel<<<d.grid, TMIX_CUDA_BLOCK, 0, st->stream>>>(
        part, tmix_f32(dout), tmix_f32(in), tmix_f32(save_mean), d.C, d.HW, d.n);
    CUDA_CHECK(cudaGetLastError());
    grad_params_kernel<<<tmix_cuda_blocks(d.C, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0, st->stream>>>(
        coef, dgamma ? tmix_f32(dgamma) : NULL, dbeta ? tmix_f32(dbeta) : NULL, part,
        tmix_f32(gamma), tmix_f32(save_invstd), d.C, (int)d.slices, (double)d.n);
    CUDA_CHECK(cudaGetLastError());
    if (din) {
        const tmix_cuda_plan2d g = tmix_cuda_plan(d.HW, d.N * d.C);
        grad_input_kernel<<<g.grid, g.block, 0, st->stream>>>(
            tmix_f32(din), tmix_f32(dout), tmix_f32(in), tmix_f32(save_mean), coef, d.N * d.C,
            d.C, d.HW);
        CUDA_CHECK(cudaGetLastError());
    }
    return 0;
}
