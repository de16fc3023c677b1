// CPU backends computing at the GPU's reduced precisions (emulated_precision.h).
#include "emulated_precision.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "error.h"

static float to_tf32(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u)
        u &= 0xffffe000u;
    memcpy(&f, &u, 4);
    return f;
}

static float to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u)
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static tmix_precision emulated;
static bool whole;

// t's values rounded by r, in a host tensor of the same shape (data freed by the caller).
static tmix_tensor rounded(const tmix_tensor *t, float (*r)(float))
{
    tmix_tensor c = *t;
    const int64_t n = tmix_tensor_numel(t);
    float *d = malloc((size_t)n * sizeof *d);
    for (int64_t i = 0; d && i < n; i++)
        d[i] = r(((const float *)t->data)[i]);
    c.data = d;
    return c;
}

// Rounds t to bf16 in place when the network runs whole.
static int round_activation(tmix_tensor *t, int rc)
{
    float *d = t->data;
    for (int64_t i = 0; rc == 0 && whole && i < tmix_tensor_numel(t); i++)
        d[i] = to_bf16(d[i]);
    return rc;
}

static int emulated_forward(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                            const tmix_tensor *weight, const tmix_tensor *bias,
                            tmix_conv2d_params p)
{
    const bool bf16 = emulated == TMIX_PRECISION_BF16;
    float (*r)(float) = bf16 ? to_bf16 : to_tf32;
    tmix_tensor image = rounded(in, r), w = rounded(weight, r);
    tmix_conv2d_params plain = p; // the bias and the ReLU come after the output's rounding
    plain.relu = false;
    int rc = image.data && w.data ? tmix_cpu_conv2d_forward(be, out, &image, &w, NULL, plain)
                                  : tmix_fail(TMIX_ENOMEM, "emulated conv2d_forward");
    free(image.data);
    free(w.data);
    const int64_t n = out->shape[0], oc = out->shape[1], hw = out->shape[2] * out->shape[3];
    float *o = out->data;
    for (int64_t i = 0; rc == 0 && i < n * oc * hw; i++) {
        const float v = bf16 ? to_bf16(o[i]) : o[i];
        const float y = bias ? v + ((const float *)bias->data)[i / hw % oc] : v;
        o[i] = p.relu && y < 0.0f ? 0.0f : y;
    }
    return round_activation(out, rc);
}

static int emulated_backward_input(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                   const tmix_tensor *weight, tmix_conv2d_params p)
{
    float (*r)(float) = whole ? to_bf16 : to_tf32;
    tmix_tensor d = rounded(dout, r), w = rounded(weight, r);
    const int rc = d.data && w.data ? tmix_cpu_conv2d_backward_input(be, din, &d, &w, p)
                                    : tmix_fail(TMIX_ENOMEM, "emulated conv2d_backward_input");
    free(d.data);
    free(w.data);
    return round_activation(din, rc);
}

// The other gradients a network run whole gives its layers, rounded to bf16 as it keeps them.
static int emulated_relu_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                  const tmix_tensor *out)
{
    return round_activation(din, tmix_cpu_relu_backward(be, din, dout, out));
}

static int emulated_scale_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout,
                                   const tmix_tensor *scale)
{
    return round_activation(din, tmix_cpu_batchnorm_backward_input(be, din, dout, scale));
}

static int emulated_maxpool_backward(tmix_backend *be, tmix_tensor *din,
                                     const tmix_tensor *dout, const tmix_tensor *in,
                                     tmix_pool2d_params p)
{
    return round_activation(din, tmix_cpu_maxpool2d_backward(be, din, dout, in, p));
}

static int emulated_avgpool_backward(tmix_backend *be, tmix_tensor *din, const tmix_tensor *dout)
{
    return round_activation(din, tmix_cpu_avgpool_backward(be, din, dout));
}

static int emulated_batchnorm(tmix_backend *be, tmix_tensor *out, const tmix_tensor *in,
                              const tmix_tensor *scale, const tmix_tensor *shift)
{
    return round_activation(out, tmix_cpu_batchnorm_forward(be, out, in, scale, shift));
}

static int emulated_add(tmix_backend *be, tmix_tensor *out, const tmix_tensor *a,
                        const tmix_tensor *b, bool relu)
{
    return round_activation(out, tmix_cpu_add(be, out, a, b, relu));
}

tmix_backend *tmix_test_emulated_precision(tmix_precision p, bool whole_network)
{
    static tmix_backend_ops ops;
    static tmix_backend be;
    ops = *tmix_backend_cpu()->ops;
    ops.conv2d_forward = emulated_forward;
    ops.conv2d_backward_input = emulated_backward_input;
    ops.relu_backward = emulated_relu_backward;
    ops.batchnorm_backward_input = emulated_scale_backward;
    ops.maxpool2d_backward = emulated_maxpool_backward;
    ops.avgpool_backward = emulated_avgpool_backward;
    ops.batchnorm_forward = emulated_batchnorm;
    ops.add = emulated_add;
    be = *tmix_backend_cpu();
    be.ops = &ops;
    be.name = "cpu (emulated)";
    emulated = p;
    whole = whole_network && p == TMIX_PRECISION_BF16;
    return &be;
}
