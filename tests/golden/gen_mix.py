"""Golden cases of the mixing ops: softmax_channel, blend, cross_entropy, sgd, preprocess.

Each suite function returns [(case_name, params, tensors)] (see make_golden.py). The roles
are those kernels/golden/mix.c reads:

softmax_channel  in, tau (shape (1)), out; dout, grad_input, grad_tau (shape (1))
blend            masks, x, out; dout, grad_masks, grad_x
cross_entropy    logits, targets, loss (shape (1)); grad_logits (the gradient of the loss)
sgd              param0, grad0..grad{steps-1}; param and (with momentum) buf after the last
                 step. Params: lr, momentum, dampening, weight_decay, nesterov, steps.
preprocess       src (uint8, (B, H, W, Cs)), out. The host arrays of the op live in the
                 params: crop_y, crop_x, flip (B ints each), mean and std (C floats each,
                 float32-representable).

Hyperparameters (tau, lr, mean...) are float32-representable, as the C side reads floats.
"""
import numpy as np
import torch
import torch.nn.functional as F

from common import grads, rand


def f32(x):
    """The float32 value nearest x, as a Python float (what the C side will read)."""
    return float(np.float32(x))


def dims(shape):
    return "x".join(str(s) for s in shape)


# ---- softmax_channel -----------------------------------------------------------------------

def softmax_channel_cases():
    # (N, K, H, W), tau, logit range
    specs = [
        ((2, 2, 5, 7), 1.0, 3.0),
        ((3, 3, 3, 5), 0.3, 3.0),
        ((1, 3, 7, 9), 2.5, 3.0),
        ((2, 2, 6, 5), 0.3, 40.0),   # large logits: stability
        ((1, 3, 5, 3), 1.0, 40.0),
        ((2, 3, 9, 11), 2.5, 5.0),
    ]
    cases = []
    for i, (shape, tau, r) in enumerate(specs):
        h = rand(100 + i, *shape, lo=-r, hi=r).requires_grad_()
        t = torch.tensor([f32(tau)], requires_grad=True)
        m = torch.softmax(h / t, dim=1)
        dout, (dh, dt) = grads(m, [h, t], 200 + i)
        label = f"in {dims(shape)} tau {tau:g}" + (f" logits +-{r:g}" if r >= 10 else "")
        cases.append((f"c{i}", {"label": label, "tau": f32(tau)},
                      {"in": h, "tau": t, "out": m, "dout": dout,
                       "grad_input": dh, "grad_tau": dt}))
    return cases


# ---- blend ---------------------------------------------------------------------------------

def blend_cases():
    # B, K, C, H, W; soft masks from a softmax (the real use) or any values
    specs = [
        (2, 2, 3, 5, 7, True),
        (1, 3, 1, 7, 5, True),
        (3, 3, 3, 4, 9, False),
        (2, 2, 1, 9, 3, False),
        (1, 2, 3, 6, 6, True),
    ]
    cases = []
    for i, (B, K, C, H, W, soft) in enumerate(specs):
        if soft:
            masks = torch.softmax(rand(300 + i, B, K, H, W, lo=-3, hi=3), dim=1)
            masks = masks.float().double()  # an input: float32-representable
        else:
            masks = rand(300 + i, B, K, H, W, lo=-0.5, hi=1.5)
        masks.requires_grad_()
        x = rand(400 + i, B * K, C, H, W).requires_grad_()
        out = (masks.unsqueeze(2) * x.view(B, K, C, H, W)).sum(dim=1)
        dout, (dm, dx) = grads(out, [masks, x], 500 + i)
        label = f"B{B} K{K} C{C} {H}x{W}" + (" softmax" if soft else "")
        cases.append((f"c{i}", {"label": label},
                      {"masks": masks, "x": x, "out": out, "dout": dout,
                       "grad_masks": dm, "grad_x": dx}))
    return cases


# ---- cross_entropy -------------------------------------------------------------------------

def one_hot(seed, B, J):
    g = torch.Generator().manual_seed(seed)
    return F.one_hot(torch.randint(0, J, (B,), generator=g), J).double()


def two_label(seed, B, J):
    """lam * one_hot(a) + (1 - lam) * one_hot(b), lam float32-representable, per sample."""
    lam = rand(seed, B, 1, lo=0.0, hi=1.0)
    y = lam * one_hot(seed + 1, B, J) + (1 - lam) * one_hot(seed + 2, B, J)
    return y.float().double()


def cross_entropy_cases():
    # name, B, J, logit range, targets
    specs = [
        ("one-hot", 4, 10, 3.0, lambda s, B, J: one_hot(s, B, J)),
        ("two-label", 5, 10, 3.0, two_label),
        ("sum!=1", 3, 100, 3.0, lambda s, B, J: rand(s, B, J, lo=0.0, hi=0.1)),
        ("two-label +-50", 4, 10, 50.0, two_label),
        ("one-hot", 1, 100, 4.0, lambda s, B, J: one_hot(s, B, J)),
        ("two-label", 7, 100, 2.0, two_label),
    ]
    cases = []
    for i, (kind, B, J, r, targets) in enumerate(specs):
        z = rand(600 + i, B, J, lo=-r, hi=r).requires_grad_()
        y = targets(700 + i, B, J)
        loss = F.cross_entropy(z, y)  # probability targets, mean over the batch
        (dz,) = torch.autograd.grad(loss, [z])
        cases.append((f"c{i}", {"label": f"B{B} J{J} {kind}"},
                      {"logits": z, "targets": y, "loss": loss.reshape(1),
                       "grad_logits": dz}))
    return cases


# ---- sgd -----------------------------------------------------------------------------------

def sgd_cases():
    # name, shape, lr, momentum, dampening, weight_decay, nesterov
    specs = [
        ("plain", (5, 7), 0.1, 0.0, 0.0, 0.0, False),
        ("wd", (3, 4, 5), 0.05, 0.0, 0.0, 0.1, False),
        ("mom 0.9", (13,), 0.1, 0.9, 0.0, 0.0, False),
        ("mom 0.9 damp 0.1", (2, 3, 3, 3), 0.02, 0.9, 0.1, 0.0, False),
        ("nesterov wd", (16, 9), 0.1, 0.9, 0.0, 0.01, True),
    ]
    steps = 3
    cases = []
    for i, (name, shape, lr, mom, damp, wd, nesterov) in enumerate(specs):
        hp = {"lr": f32(lr), "momentum": f32(mom), "dampening": f32(damp),
              "weight_decay": f32(wd), "nesterov": int(nesterov)}
        p0 = rand(800 + i, *shape)
        param = torch.nn.Parameter(p0.clone())
        opt = torch.optim.SGD([param], lr=hp["lr"], momentum=hp["momentum"],
                              dampening=hp["dampening"], weight_decay=hp["weight_decay"],
                              nesterov=nesterov)
        tensors = {"param0": p0}
        for s in range(steps):
            g = rand(900 + 10 * i + s, *shape)
            tensors[f"grad{s}"] = g
            param.grad = g.clone()
            opt.step()
            # The op keeps its state in float32 between steps; so does the reference, so
            # each step's result is the exact step from the stored state, rounded once.
            with torch.no_grad():
                param.copy_(param.float().double())
                buf = opt.state[param].get("momentum_buffer")
                if buf is not None:
                    buf.copy_(buf.float().double())
        tensors["param"] = param.detach().clone()
        if mom != 0:
            tensors["buf"] = opt.state[param]["momentum_buffer"].clone()
        params = {"label": f"{dims(shape)} {name}", **hp, "steps": steps}
        cases.append((f"c{i}", params, tensors))
    return cases


# ---- preprocess ----------------------------------------------------------------------------

def preprocess_reference(src, C, OH, OW, ys, xs, flips, mean, std):
    """torchvision's RandomCrop(padding) + RandomHorizontalFlip + ToTensor + Normalize, with
    torch ops: pad with zeros, cut the window, mirror, scale by 1/255, normalise."""
    B, H, W, Cs = src.shape
    img = torch.from_numpy(src).permute(0, 3, 1, 2).double() / 255  # (B, Cs, H, W)
    if Cs == 1 and C == 3:
        img = img.expand(B, 3, H, W)
    P = max(OH, OW) + max(max(abs(v) for v in ys), max(abs(v) for v in xs))
    img = F.pad(img, (P, P, P, P))
    out = []
    for b in range(B):
        win = img[b, :, P + ys[b]:P + ys[b] + OH, P + xs[b]:P + xs[b] + OW]
        if flips[b]:
            win = torch.flip(win, dims=[-1])
        out.append(win)
    out = torch.stack(out)
    m = torch.tensor(mean).view(1, C, 1, 1)
    s = torch.tensor(std).view(1, C, 1, 1)
    return (out - m) / s


def preprocess_cases():
    fmnist = ([0.2860], [0.3530])
    cifar = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])
    gray3 = ([0.5, 0.5, 0.5], [0.25, 0.5, 2.0])
    # label, B, (H, W, Cs), (C, OH, OW), offset ranges (y, x) or fixed crops, mean/std
    specs = [
        ("28x28 gray -> 1x32x32 pad-crop", 3, (28, 28, 1), (1, 32, 32), (-4, 0), fmnist),
        ("32x32 rgb pad-crop flip", 4, (32, 32, 3), (3, 32, 32), (-4, 4), cifar),
        ("20x20 gray -> 3x16x16", 2, (20, 20, 1), (3, 16, 16), (-2, 6), gray3),
        ("9x13 rgb -> 7x11 pad-crop", 2, (9, 13, 3), (3, 7, 11), (-3, 4), cifar),
        ("12x10 rgb -> 6x5 inside B1", 1, (12, 10, 3), (3, 6, 5), None, cifar),
    ]
    cases = []
    for i, (label, B, (H, W, Cs), (C, OH, OW), rng, (mean, std)) in enumerate(specs):
        g = np.random.default_rng(1000 + i)
        src = g.integers(0, 256, size=(B, H, W, Cs), dtype=np.uint8)
        if rng is None:
            ys, xs, flips = [3], [2], [1]
        else:
            ys = [int(v) for v in g.integers(rng[0], rng[1] + 1, size=B)]
            xs = [int(v) for v in g.integers(rng[0], rng[1] + 1, size=B)]
            flips = [b % 2 for b in range(B)]  # both directions in every multi-sample case
        mean = [f32(v) for v in mean]
        std = [f32(v) for v in std]
        out = preprocess_reference(src, C, OH, OW, ys, xs, flips, mean, std)
        params = {"label": label, "crop_y": ys, "crop_x": xs, "flip": flips,
                  "mean": mean, "std": std}
        cases.append((f"c{i}", params, {"src": src, "out": out}))
    return cases


SUITES = {
    "softmax_channel": softmax_channel_cases,
    "blend": blend_cases,
    "cross_entropy": cross_entropy_cases,
    "sgd": sgd_cases,
    "preprocess": preprocess_cases,
}
