"""Golden cases of the network layers: conv2d, batchnorm, relu, maxpool2d, avgpool, linear.

The batchnorm suite holds both forms: inference (a folded scale and shift) and training
(nn.BatchNorm2d in train(): batch statistics, saved and running ones), told apart by "train".

Each suite function returns [(case_name, params, {role: tensor})]; make_golden.py writes
them. Inputs are float32-representable (common.rand), the math is float64 (the driver sets
torch's default dtype), and gradients are those of a random float32 cotangent `dout`.
"""
import torch
import torch.nn.functional as F

from common import grads, rand


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def _dims(shape):
    return "x".join(str(s) for s in shape)


def _conv_case(seed, n, c, h, w, oc, k, stride=1, pad=0, dil=1, bias=True, label=""):
    kh, kw = _pair(k)
    stride, pad, dil = _pair(stride), _pair(pad), _pair(dil)
    x = rand(seed, n, c, h, w).requires_grad_()
    # Weights at the scale of a fan-in initialisation, so outputs stay O(1).
    bound = 1.0 / (c * kh * kw) ** 0.5
    wt = rand(seed + 1, oc, c, kh, kw, lo=-bound, hi=bound).requires_grad_()
    b = rand(seed + 2, oc, lo=-bound, hi=bound).requires_grad_() if bias else None
    out = F.conv2d(x, wt, b, stride=stride, padding=pad, dilation=dil)
    inputs = [x, wt] + ([b] if bias else [])
    dout, g = grads(out, inputs, seed + 3)
    tensors = {"in": x, "weight": wt}
    if bias:
        tensors["bias"] = b
    tensors.update({"out": out, "dout": dout, "grad_input": g[0], "grad_weight": g[1]})
    if bias:
        tensors["grad_bias"] = g[2]
    params = {"label": label, "stride": stride, "pad": pad, "dilation": dil}
    return params, tensors


def conv2d():
    specs = [
        # name, seed, (n, c, h, w, oc, kernel), keywords, label
        ("k3s1p1", 100, (2, 3, 8, 8, 4, 3), dict(pad=1), "in 2x3x8x8 k3 s1 p1"),
        ("k3s2", 110, (2, 3, 9, 9, 5, 3), dict(stride=2, pad=1), "in 2x3x9x9 k3 s2 p1"),
        ("dil2", 120, (2, 2, 9, 9, 3, 3), dict(pad=2, dil=2), "in 2x2x9x9 k3 p2 d2"),
        ("k1", 130, (2, 8, 5, 5, 6, 1), {}, "in 2x8x5x5 k1 (pointwise)"),
        ("stem", 140, (1, 3, 16, 16, 8, 7), dict(stride=2, pad=3),
         "in 1x3x16x16 k7 s2 p3 (stem)"),
        ("odd", 150, (3, 2, 5, 7, 4, 3), dict(pad=1), "in 3x2x5x7 k3 s1 p1"),
        ("b1", 160, (1, 4, 6, 6, 3, 3), dict(pad=1), "in 1x4x6x6 k3 p1 (batch 1)"),
        ("nobias", 170, (2, 3, 6, 5, 4, 3), dict(bias=False), "in 2x3x6x5 k3 no bias"),
        ("k3x1", 180, (2, 3, 7, 6, 4, (3, 1)), dict(stride=(2, 1), pad=(1, 0)),
         "in 2x3x7x6 k3x1 s2,1 p1,0"),
        ("k1s2", 190, (2, 4, 7, 7, 6, 1), dict(stride=2), "in 2x4x7x7 k1 s2 (shortcut)"),
        ("mixed", 200, (2, 3, 8, 9, 2, (2, 3)), dict(stride=(1, 2), pad=(0, 2), dil=(2, 1)),
         "in 2x3x8x9 k2x3 s1,2 p0,2 d2,1"),
    ]
    cases = []
    for name, seed, (n, c, h, w, oc, k), kw, label in specs:
        params, tensors = _conv_case(seed, n, c, h, w, oc, k, label=label, **kw)
        cases.append((name, params, tensors))
    return cases


def _f32(v):
    """The float32 value the C side gets for the parameter v."""
    return float(torch.tensor(v, dtype=torch.float32))


def batchnorm():
    specs = [
        # name, seed, shape, eps
        ("odd", 300, (2, 3, 5, 7), 1e-5),
        ("b1", 310, (1, 4, 6, 6), 1e-5),
        ("c1", 320, (3, 1, 4, 9), 1e-3),
        ("wide", 330, (2, 16, 3, 3), 1e-5),
    ]
    cases = []
    for name, seed, shape, eps in specs:
        c = shape[1]
        eps = _f32(eps)
        x = rand(seed, *shape, lo=-3.0, hi=3.0).requires_grad_()
        gamma = rand(seed + 1, c, lo=0.5, hi=1.5)
        beta = rand(seed + 2, c, lo=-0.2, hi=0.2)
        mean = rand(seed + 3, c, lo=-0.3, hi=0.3)
        var = rand(seed + 4, c, lo=0.25, hi=2.0)
        out = F.batch_norm(x, mean, var, gamma, beta, training=False, eps=eps)
        dout, (gx,) = grads(out, [x], seed + 5)
        label = f"in {_dims(shape)} eps {eps:.0e}"
        cases.append((name, {"label": label, "train": 0, "eps": eps,
                             "inplace": int(name == "odd")},
                      {"in": x, "gamma": gamma, "beta": beta, "mean": mean, "var": var,
                       "out": out, "dout": dout, "grad_input": gx}))
    return cases + _batchnorm_train()


def _rel_err(got, ref):
    """kernels/golden.h's error measure: relative per element, floored at 1e-3 of the scale."""
    floor = 1e-3 * ref.abs().max()
    return float(((got - ref).abs() / torch.maximum(ref.abs(), floor)).max())


def _batchnorm_train():
    """The training-form cases of the batchnorm suite ("train": 1).

    The backward is judged on its own: it gets PyTorch's saved mean and invstd rounded to
    float32, as the C forward hands them on, and its reference is PyTorch's backward of those
    rounded statistics in float64 (what autograd computes, less the rounding of the stats,
    which an ill-conditioned case such as N*H*W = 2 would otherwise amplify).
    """
    specs = [
        # name, seed, shape, eps, momentum, label
        ("t_odd", 800, (2, 3, 5, 7), 1e-5, 0.1, "train 2x3x5x7 in place"),
        ("t_b1", 810, (1, 4, 6, 6), 1e-5, 0.1, "train 1x4x6x6 (batch 1)"),
        ("t_n2", 820, (2, 3, 1, 1), 1e-5, 0.1, "train 2x3x1x1 (N*H*W = 2)"),
        ("t_hw2", 830, (1, 2, 1, 2), 1e-3, 0.1, "train 1x2x1x2 eps 1e-3"),
        ("t_offset", 840, (4, 2, 3, 5), 1e-5, 0.1, "train 4x2x3x5 mean 50"),
        ("t_mom1", 850, (3, 2, 4, 3), 1e-3, 1.0, "train 3x2x4x3 momentum 1"),
        ("t_mom0", 860, (2, 2, 3, 3), 1e-5, 0.0, "train 2x2x3x3 momentum 0"),
        ("t_wide", 870, (2, 16, 3, 3), 1e-5, 0.3, "train 2x16x3x3 momentum 0.3"),
        ("t_big", 880, (6, 3, 11, 13), 1e-5, 0.1, "train 6x3x11x13"),
    ]
    cases = []
    for name, seed, shape, eps, momentum, label in specs:
        c, n = shape[1], shape[0] * shape[2] * shape[3]
        eps, momentum = _f32(eps), _f32(momentum)
        # Far from zero, a one-pass variance in float32 would lose most of its digits.
        lo, hi = (47.0, 53.0) if name == "t_offset" else (-3.0, 3.0)
        x = rand(seed, *shape, lo=lo, hi=hi).requires_grad_()
        gamma = rand(seed + 1, c, lo=0.5, hi=1.5).requires_grad_()
        beta = rand(seed + 2, c, lo=-0.2, hi=0.2).requires_grad_()
        running_mean = rand(seed + 3, c, lo=-0.3, hi=0.3)
        running_var = rand(seed + 4, c, lo=0.25, hi=2.0)
        new_mean, new_var = running_mean.clone(), running_var.clone()
        out = F.batch_norm(x, new_mean, new_var, gamma, beta, training=True,
                           momentum=momentum, eps=eps)
        with torch.no_grad():
            _, save_mean, save_invstd = torch.native_batch_norm(
                x, gamma, beta, None, None, True, momentum, eps)
            # PyTorch's statistics are the textbook ones.
            dims = (0, 2, 3)
            var = x.var(dims, unbiased=False)
            assert torch.allclose(save_mean, x.mean(dims), rtol=1e-12, atol=0)
            assert torch.allclose(save_invstd, (var + eps) ** -0.5, rtol=1e-12, atol=0)
            assert torch.allclose(new_var, (1 - momentum) * running_var +
                                  momentum * var * n / (n - 1), rtol=1e-12, atol=0)
        dout, (gx, gg, gb) = grads(out, [x, gamma, beta], seed + 5)
        mean32, invstd32 = save_mean.float().double(), save_invstd.float().double()
        with torch.no_grad():
            rx, rg, rb = torch.ops.aten.native_batch_norm_backward(
                dout, x, gamma, None, None, mean32, invstd32, True, eps, [True, True, True])
        # Rounding the statistics moves the gradients by far less than a training step cares
        # about: 3e-3 of din at worst (t_n2, whose din is a difference of near-equal terms).
        assert _rel_err(rx, gx) < 1e-2 and _rel_err(rg, gg) < 1e-5 and _rel_err(rb, gb) == 0
        cases.append((name, {"label": label, "train": 1, "eps": eps, "momentum": momentum,
                             "inplace": int(name == "t_odd")},
                      {"in": x, "gamma": gamma, "beta": beta, "running_mean": running_mean,
                       "running_var": running_var, "out": out, "save_mean": save_mean,
                       "save_invstd": save_invstd, "running_mean_out": new_mean,
                       "running_var_out": new_var, "dout": dout, "grad_input": rx,
                       "grad_gamma": rg, "grad_beta": rb}))
    return cases


def relu():
    specs = [
        # name, seed, shape
        ("d1", 400, (17,)),
        ("d2", 410, (5, 7)),
        ("d3", 420, (2, 3, 5)),
        ("d4", 430, (2, 3, 5, 7)),
        ("zeros", 440, (1, 2, 4, 4)),
    ]
    cases = []
    for name, seed, shape in specs:
        x = rand(seed, *shape)
        if name == "zeros":
            # Exact zeros: the output is 0 and the gradient is 0 there, as in PyTorch.
            x = torch.round(x * 2) / 2
        x.requires_grad_()
        out = F.relu(x)
        dout, (gx,) = grads(out, [x], seed + 1)
        label = f"in {_dims(shape)}" + (" with zeros" if name == "zeros" else "")
        cases.append((name, {"label": label, "inplace": int(name == "d4")},
                      {"in": x, "out": out, "dout": dout, "grad_input": gx}))
    return cases


def maxpool2d():
    specs = [
        # name, seed, shape, kernel, stride, pad, label
        ("stem", 500, (2, 3, 8, 8), 3, 2, 1, "in 2x3x8x8 k3 s2 p1 (stem)"),
        ("k2s2", 510, (2, 2, 8, 6), 2, 2, 0, "in 2x2x8x6 k2 s2"),
        ("odd", 520, (1, 3, 7, 9), 3, 2, 1, "in 1x3x7x9 k3 s2 p1"),
        ("ties", 530, (2, 2, 9, 9), 3, 1, 1, "in 2x2x9x9 k3 s1 p1 ties"),
        ("ties2", 540, (1, 3, 7, 8), 2, 2, 1, "in 1x3x7x8 k2 s2 p1 ties"),
        ("rect", 550, (2, 2, 6, 7), (2, 3), (1, 2), (1, 1), "in 2x2x6x7 k2x3 s1,2 p1"),
        ("floor", 560, (1, 1, 10, 11), 3, 3, 0, "in 1x1x10x11 k3 s3 (floor)"),
        ("nan", 570, (1, 2, 5, 6), 2, 1, 0, "in 1x2x5x6 k2 s1 with NaN"),
        ("neg", 580, (1, 2, 5, 5), 3, 2, 1, "in 1x2x5x5 k3 s2 p1 negative"),
    ]
    cases = []
    for name, seed, shape, k, s, p, label in specs:
        k, s, p = _pair(k), _pair(s), _pair(p)
        x = rand(seed, *shape)
        if name.startswith("ties"):
            # Three levels only: most windows hold several equal maxima, pinning the rule
            # that the first one in row-major window order takes the gradient.
            x = torch.round(x)
        if name == "nan":
            # A NaN wins its windows; two NaNs in one window: the last one scanned wins.
            x[0, 0, 1, 2] = float("nan")
            x[0, 1, 2, 2] = float("nan")
            x[0, 1, 2, 3] = float("nan")
        if name == "neg":
            # All negative: padding (-inf) must never win.
            x = x - 2.0
        x.requires_grad_()
        out = F.max_pool2d(x, k, s, p)
        dout, (gx,) = grads(out, [x], seed + 1)
        cases.append((name, {"label": label, "kernel": k, "stride": s, "pad": p},
                      {"in": x, "out": out, "dout": dout, "grad_input": gx}))
    return cases


def avgpool():
    specs = [
        # name, seed, shape
        ("odd", 600, (2, 3, 5, 7)),
        ("r7", 610, (3, 2, 7, 7)),
        ("b1", 620, (1, 8, 4, 3)),
        ("one", 630, (2, 4, 1, 1)),
    ]
    cases = []
    for name, seed, shape in specs:
        x = rand(seed, *shape).requires_grad_()
        out = F.adaptive_avg_pool2d(x, 1).flatten(1)
        dout, (gx,) = grads(out, [x], seed + 1)
        cases.append((name, {"label": f"in {_dims(shape)}"},
                      {"in": x, "out": out, "dout": dout, "grad_input": gx}))
    return cases


def linear():
    specs = [
        # name, seed, batch, in features, out features, bias
        ("odd", 700, 2, 7, 5, True),
        ("nobias", 710, 3, 6, 4, False),
        ("b1", 720, 1, 9, 3, True),
        ("head", 730, 4, 512, 10, True),
    ]
    cases = []
    for name, seed, b, i, o, has_bias in specs:
        bound = 1.0 / i ** 0.5
        x = rand(seed, b, i).requires_grad_()
        w = rand(seed + 1, o, i, lo=-bound, hi=bound).requires_grad_()
        bias = rand(seed + 2, o, lo=-bound, hi=bound).requires_grad_() if has_bias else None
        out = F.linear(x, w, bias)
        inputs = [x, w] + ([bias] if has_bias else [])
        dout, g = grads(out, inputs, seed + 3)
        tensors = {"in": x, "weight": w}
        if has_bias:
            tensors["bias"] = bias
        tensors.update({"out": out, "dout": dout, "grad_input": g[0], "grad_weight": g[1]})
        if has_bias:
            tensors["grad_bias"] = g[2]
        label = f"in {b}x{i} -> {o}" + ("" if has_bias else " no bias")
        cases.append((name, {"label": label}, tensors))
    return cases


def _labelled(fn):
    """Checks that every label fits the 34 columns of `tmixd selftest`'s table."""
    def suite():
        cases = fn()
        for name, params, _ in cases:
            assert len(params["label"]) <= 34, f"{fn.__name__}/{name}: label too long"
        return cases
    return suite


SUITES = {fn.__name__: _labelled(fn)
          for fn in (conv2d, batchnorm, relu, maxpool2d, avgpool, linear)}
