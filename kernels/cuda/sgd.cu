// One torch.optim.SGD step on the GPU (the twin of kernels/sgd.c): elementwise, in double,
// each stored value rounded once, in torch's order of operations (params.h has the formulas).
#include "ops.cuh"

// The hyperparameters widened to double once, on the host.
struct sgd_coeffs {
    double lr, momentum, dampening, weight_decay;
    bool nesterov;
    bool first_step; // step 0: torch starts the buffer at d, ignoring its contents
};

static __global__ void sgd_update_kernel(float *w,       // (n)
                                         const float *g, // (n)
                                         float *buf,     // (n), or NULL without momentum
                                         sgd_coeffs c, int64_t n)
{
    TMIX_CUDA_LOOP(i, n) {
        double d = g[i];
        if (c.weight_decay != 0)
            d += c.weight_decay * w[i];
        if (buf) {
            double b = c.first_step ? d : c.momentum * buf[i] + (1 - c.dampening) * d;
            buf[i] = (float)b;
            d = c.nesterov ? d + c.momentum * b : b;
        }
        w[i] = (float)(w[i] - c.lr * d);
    }
}

extern "C" int tmix_cuda_sgd_update(tmix_backend *be, tmix_tensor *param, const tmix_tensor *grad,
                                    tmix_tensor *momentum_buf, tmix_sgd_params p, int64_t step)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t n = tmix_cuda_numel(param);
    // A buffer given with momentum == 0 is left alone, as on the CPU.
    float *buf = p.momentum != 0 ? tmix_f32(momentum_buf) : NULL;
    sgd_coeffs c = {p.lr, p.momentum, p.dampening, p.weight_decay, p.nesterov != 0, step == 0};
    sgd_update_kernel<<<tmix_cuda_blocks(n, TMIX_CUDA_BLOCK), TMIX_CUDA_BLOCK, 0, st->stream>>>(
        tmix_f32(param), tmix_f32(grad), buf, c, n);
    CUDA_CHECK(cudaGetLastError());
    return 0;
}
