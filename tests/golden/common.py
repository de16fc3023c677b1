"""Helpers shared by the gen_*.py case modules."""
import torch


def rand(seed, *shape, lo=-1.0, hi=1.0):
    """float64 tensor of float32-representable values, uniform in [lo, hi), from a seed."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(*shape, generator=g, dtype=torch.float32) * (hi - lo) + lo
    return t.to(torch.float64)


def grads(out, inputs, seed):
    """Backpropagates a random float32-representable dout through out.

    Returns (dout, [gradient of each input]) in float64, the cotangent the C side feeds to
    the backward op, and what it must produce.
    """
    dout = rand(seed, *out.shape)
    gs = torch.autograd.grad(out, inputs, dout, allow_unused=True)
    return dout, [g if g is not None else torch.zeros_like(i) for g, i in zip(gs, inputs)]
