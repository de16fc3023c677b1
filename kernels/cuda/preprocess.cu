// preprocess on the GPU (the twin of kernels/preprocess.c): uint8 (B, H, W, Cs) images to
// normalised float (B, C, OH, OW) planes through a per-sample crop window that may leave the
// image (outside pixels read 0 before normalisation), an optional left-right flip and
// (v / 255 - mean) / std. One thread per output element; the crops, means and stds are host
// arrays, copied to the scratch buffer first.
#include <stdlib.h>

#include "ops.cuh"

// out[b, c, i, j] = ((v / 255) - mean[c]) / std[c] in double, rounded once (the CPU twin's
// table entry for v), where v is src[b, crop.y + i, crop.x + (flip ? OW - 1 - j : j), c]
// (channel 0 when Cs == 1), or 0 where that pixel is outside the image.
static __global__ void preprocess_kernel(float *out,             // (B, C, OH, OW)
                                         const uint8_t *src,     // (B, H, W, Cs)
                                         const tmix_crop *crops, // [B] on the device
                                         const float *mean,      // [C] on the device
                                         const float *std,       // [C] on the device
                                         int64_t B, int64_t H, int64_t W, int64_t Cs,
                                         int64_t C, int64_t OH, int64_t OW)
{
    TMIX_CUDA_LOOP_Y(row, B * C * OH) {
        const int64_t b = row / (C * OH), c = row / OH % C;
        const tmix_crop cr = crops[b];
        const int64_t yy = cr.y + row % OH;
        const uint8_t *sc = src + b * H * W * Cs + (Cs == 1 ? 0 : c);
        const double m = mean[c], s = std[c];
        float *o = out + row * OW;
        TMIX_CUDA_LOOP(j, OW) {
            const int64_t xx = cr.x + (cr.flip ? OW - 1 - j : j);
            const bool inside = yy >= 0 && yy < H && xx >= 0 && xx < W;
            const int v = inside ? sc[(yy * W + xx) * Cs] : 0;
            o[j] = (float)(((double)v / 255.0 - m) / s);
        }
    }
}

// For the GPU fault tests (tests/serve/serving.sh gpu_fault, gpu_hang): with
// TMIX_CUDA_FAULT_AFTER=N in the environment, every preprocess after the N-th also launches
// a kernel that traps, which breaks the context as a real fault in a kernel would; with
// TMIX_CUDA_HANG_AFTER=N, one that never ends, as a kernel stuck in a loop.
static __global__ void fault_kernel(void) { __trap(); }
static __global__ void hang_kernel(void)
{
    for (;;)
        __nanosleep(1000000);
}

// Whether this is a call after the N-th of those counted by calls, where the environment
// variable var says N.
static bool after_nth(long *calls, const char *var)
{
    const char *n = getenv(var);
    return n && *n && __atomic_add_fetch(calls, 1, __ATOMIC_RELAXED) > atol(n);
}

extern "C" int tmix_cuda_preprocess(tmix_backend *be, tmix_tensor *out, const tmix_tensor *src,
                                    const tmix_crop *crops, const float *mean, const float *std)
{
    tmix_cuda_state *st = tmix_cuda_state_of(be);
    CUDA_CHECK(tmix_cuda_use(st));
    int64_t B = src->shape[0], H = src->shape[1], W = src->shape[2], Cs = src->shape[3];
    int64_t C = out->shape[1], OH = out->shape[2], OW = out->shape[3];
    // Scratch holds crops[B], then mean[C] and std[C] (every offset a multiple of 4 bytes).
    const size_t crop_bytes = (size_t)B * sizeof(tmix_crop), stat_bytes = (size_t)C * sizeof(float);
    void *scratch;
    TMIX_TRY(tmix_cuda_scratch(st, crop_bytes + 2 * stat_bytes, &scratch));
    tmix_crop *dcrops = (tmix_crop *)scratch;
    float *dmean = (float *)((char *)scratch + crop_bytes), *dstd = dmean + C;
    // From pageable host memory, each copy has read its source when it returns, so the
    // caller may free the arrays as soon as this returns.
    CUDA_CHECK(cudaMemcpyAsync(dcrops, crops, crop_bytes, cudaMemcpyHostToDevice, st->stream));
    CUDA_CHECK(cudaMemcpyAsync(dmean, mean, stat_bytes, cudaMemcpyHostToDevice, st->stream));
    CUDA_CHECK(cudaMemcpyAsync(dstd, std, stat_bytes, cudaMemcpyHostToDevice, st->stream));
    tmix_cuda_plan2d g = tmix_cuda_plan(OW, B * C * OH);
    preprocess_kernel<<<g.grid, g.block, 0, st->stream>>>(tmix_f32(out), (const uint8_t *)src->data,
                                                          dcrops, dmean, dstd, B, H, W, Cs, C,
                                                          OH, OW);
    CUDA_CHECK(cudaGetLastError());
    static long fault_calls, hang_calls;
    if (after_nth(&fault_calls, "TMIX_CUDA_FAULT_AFTER"))
        fault_kernel<<<1, 1, 0, st->stream>>>();
    if (after_nth(&hang_calls, "TMIX_CUDA_HANG_AFTER"))
        hang_kernel<<<1, 1, 0, st->stream>>>();
    return 0;
}
