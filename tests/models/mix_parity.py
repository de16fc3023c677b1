#!/usr/bin/python3
"""Parity of `tmixd mix` with the PyTorch reference (tmix.module.mix) for one teacher arch.

Usage: mix_parity.py ARCH N  (env TMIXD: the daemon; PYTHONPATH: client/python)

Builds a zoo teacher (random weights and batch norm statistics, frozen, exported with
tmix.export) and a mixing module of N sources whose every weight is random (the STN's last
layer included, and log τ = -0.3) so that each gradient path carries signal. One batch
(B = 4 images, partners, Dirichlet λ, noise) goes through `tmixd mix --grads`, and the
OUT tensors (the intermediates, logits, loss, grad.mixed and grad.<every module tensor>) are
compared with tmix.module.mix run in float64 on the same float32 inputs and weights. Then
the methods none, mixup, cutmix (n = 2; the boxes tmixd drew are read off its masks) and
softmax-cam (no module, --n N), stn-only and mpn-only (with the module) are checked on
theta, masks, mixed and weights.

Step by step: each tensor's reference is computed from tmixd's own values of the step's
inputs (see `reference`), so that a failure names the step at fault, and float32 rounding
of earlier steps, which the warp (coordinates times 16 or 32 pixels) and the teacher amplify
a hundredfold, does not hide or fake one. The end-to-end error (every step in float64 from
IN) is printed beside it for information.

Bounds:
- sources and labels (int64): equal.
- forward tensors: max_i |got_i - ref_i| / max(|ref_i|, 1e-3 max|ref|) (kernels/golden.c's
  measure) at most 1e-4, or SLACK times the error of PyTorch's own float32 on the same step
  when that is larger (as tests/models/zoo_parity.py): near-zero logits and warps of white
  noise are ill-conditioned, and tmixd is asked to be as accurate as PyTorch, not more.
  PyTorch's error is the worse of its NCHW and channels_last runs (as
  tests/models/classifier_parity.py): how far float32 lands depends on the summation order.
  On an AMD EPYC, resnet18 n=2's logit 1.67e-3 (of logits up to 2) came out 3e-8 from
  float64 in PyTorch's NCHW run and 5e-7 in tmixd's, a relative 2.5e-4 against the floor of
  2e-3: a bound from the NCHW run alone fails.
- gradients: ||got - ref|| / ||ref|| at most 1e-3, or SLACK times the same error of
  PyTorch's own float32 gradient when that is larger: how far float32 lands depends on the
  summation order, hence on the machine (resnet18 n=3's grad.mpn.net.4.weight: tmixd 1.8e-3
  and PyTorch 1.5e-3 on a 2-core Xeon with AVX-512, both under 1e-3 on an AMD EPYC).
  Element by element they cannot be held to a bound: a ReLU or max-pool input within
  float32 rounding of its switch (one in about 1e6 units, so in some runs) routes its
  gradient differently in float32 and float64; one such unit in the MPN moves single weight
  gradients by 4e-2, the norm by 1e-4.
Prints a table; exits 1 on any failure or missing tensor.
"""
import copy
import os
import sys
import tempfile

import numpy as np
import torch

import tmix.module as tm
from tmix import export, safetensors, zoo

from common import norm_error, rel_error, run

B, CLASSES, S = 4, 10, 32
IMAGE_SIZE = {"cifar_resnet18": 32, "resnet18": 64}
TOL, SLACK = 1e-4, 4  # forward tensors, element-wise
GRAD_TOL = 1e-3       # gradients, norm-wise
FORWARD = ["cams", "sources", "theta", "warped", "warped_cams", "masks", "mixed", "weights",
           "labels", "logits", "loss"]
# The other methods, and whether they run with the module (else with --n N).
METHODS = {"none": False, "mixup": False, "cutmix": False, "softmax-cam": False,
           "stn-only": True, "mpn-only": True}
METHOD_TENSORS = ["theta", "masks", "mixed", "weights"]


def randomize_module(module, g):
    """Random weights everywhere, the fresh-module structure kept: θ near the identity but
    not on it (an identity warp samples pixel centres, where bilinear slopes jump), masks
    that vary with their inputs, τ != 1. Other layers: PyTorch's default range, redrawn."""
    def uniform(t, bound):
        t.copy_(bound * (2 * torch.rand(t.shape, generator=g, dtype=t.dtype) - 1))

    with torch.no_grad():
        for name, layer in module.named_modules():
            if not isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                continue
            if name == "stn.fc.2":
                uniform(layer.weight, 0.05)
                identity = torch.tensor([0.9, 0.0, 0.0, 0.0, 0.9, 0.0]).repeat(module.n)
                uniform(layer.bias, 0.1)
                layer.bias += identity
            else:
                bound = 1 / np.sqrt(layer.weight[0].numel())
                uniform(layer.weight, bound)
                uniform(layer.bias, bound)
        module.mpn.log_tau.fill_(-0.3)


def make_inputs(teacher, n, size, g):
    """One batch: images, labels, n - 1 partner permutations, Dirichlet λ, noise.

    Each label is drawn among the classes whose CAM for that image has a positive peak: a
    random teacher's CAM for a random class is often all zero, which would leave the CAM
    paths untested. Images are smooth (noise at a quarter of the size, upsampled), as photos
    are: a warp of white noise turns float32 rounding of the sampling points into errors 10x
    larger than any real image would see.
    """
    images = torch.nn.functional.interpolate(
        torch.randn(B, 3, size // 4, size // 4, generator=g), size=(size, size),
        mode="bilinear", align_corners=False)
    with torch.no_grad():
        w = zoo.classifier(teacher).weight
        peaks = torch.einsum("kc,bchw->bkhw", w, zoo.features(teacher, images)).amax((2, 3))
    scores = torch.rand(B, CLASSES, generator=g) * (peaks > 0)  # random among the positive
    e = -torch.log(torch.rand(B, n, generator=g))  # Exp(1): normalised, Dirichlet(1, ..., 1)
    return {
        "images": images,
        "labels": scores.argmax(1),
        "perm": torch.stack([torch.randperm(B, generator=g) for _ in range(n - 1)]),
        "lam": e / e.sum(1, keepdim=True),
        "noise": torch.randn(B, 1, S, S, generator=g),
    }


def cutmix_boxes(masks, lam):
    """The boxes (B, 4: y0, x0, y1, x1) of tmixd's CutMix masks (B, 2, H, W), which must be
    0 / 1, source 2 on exactly one axis-aligned rectangle. Where the box does not touch the
    border its sides are those of Yun et al.'s code: cut = int(size * sqrt(1 - λ_1)), the
    box spans centre -+ cut // 2. tmixd draws the centres from its seed, so the reference
    takes the boxes from here. Returns (boxes, the faults found)."""
    b, _, h, w = masks.shape
    boxes, faults = np.zeros((b, 4), np.int64), []
    for i in range(b):
        inside = masks[i, 1]
        if not (np.isin(masks[i], (0, 1)).all() and np.array_equal(masks[i, 0], 1 - inside)):
            faults.append(f"sample {i}: masks are not a 0/1 box and its complement")
            continue
        ys, xs = np.nonzero(inside.any(1))[0], np.nonzero(inside.any(0))[0]
        if len(ys) == 0:
            continue  # no box: λ_1 = 1, or a box clipped away
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        boxes[i] = y0, x0, y1, x1
        if inside.sum() != (y1 - y0) * (x1 - x0):
            faults.append(f"sample {i}: source 2 covers more than one rectangle")
        ratio = np.sqrt(1 - float(lam[i, 0]))
        for lo, hi, size, axis in ((y0, y1, h, "height"), (x0, x1, w, "width")):
            side = 2 * (int(size * ratio) // 2)
            if 0 < lo and hi < size and hi - lo != side:
                faults.append(f"sample {i}: box {axis} {hi - lo}, expected {side} "
                              f"(lambda_1 = {float(lam[i, 0]):.4f})")
    return torch.from_numpy(boxes), faults


def reference(teacher, module, inputs, method, grads, got=None, boxes=None, loss=True,
              memory_format=torch.contiguous_format):
    """The OUT tensors of `tmixd mix` as numpy arrays, from a run in the dtype of teacher and
    module (float64 for the reference, float32 to measure PyTorch's own rounding). Without
    loss (the methods' runs, which check no logits), the teacher does not see the mixed batch.

    With got (tmixd's OUT), every step runs on tmixd's values of its inputs: a step's output
    is replaced by got's value, while its gradient still flows through the reference step
    (got + (ref - ref.detach())). Each tensor, gradients included, is then checked on its
    own, without the rounding of the steps before it in the way. memory_format: the images'
    (the nets come with their weights in it).
    """
    dtype = next(teacher.parameters()).dtype
    ref = {}

    def step(name, t):
        ref[name] = t.detach().numpy().copy()
        if got is None or name not in got or list(got[name].shape) != list(t.shape):
            return t
        return torch.from_numpy(got[name]).to(dtype) + (t - t.detach())

    x = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
    x["images"] = x["images"].contiguous(memory_format=memory_format)
    out = tm.mix(teacher, module, x["images"], x["labels"], x["perm"], x["lam"], x["noise"],
                 method=method, boxes=boxes, hook=step, loss=loss)
    ref.update(sources=out["sources"].numpy(), labels=out["labels"].numpy())
    if loss:
        ref["loss"] = out["loss"].detach().numpy().reshape(1)
    if grads:
        params = list(module.named_parameters())
        gs = torch.autograd.grad(out["loss"], [out["mixed"]] + [p for _, p in params])
        ref["grad.mixed"] = gs[0].numpy()
        for (name, _), g in zip(params, gs[1:]):
            ref["grad." + name] = g.numpy()
    return ref


def check(name, got, ref, e2e, f32s):
    """(error, end-to-end error, bound, what the error is) of one OUT tensor; f32s: PyTorch's
    float32 values of it, one per memory format."""
    if ref.dtype.kind in "iu":
        return (0.0 if np.array_equal(got, ref) else np.inf), np.nan, 0.0, "equal"
    if not np.all(np.isfinite(got)):
        return np.inf, np.inf, 0.0, "finite"
    if name.startswith("grad."):
        bound = max([GRAD_TOL] + [SLACK * norm_error(f32, ref) for f32 in f32s])
        return norm_error(got, ref), norm_error(got, e2e), bound, "norm"
    bound = max([TOL] + [SLACK * rel_error(f32, ref) for f32 in f32s])
    return rel_error(got, ref), rel_error(got, e2e), bound, "elem"


def compare(title, got, refs, names):
    """Prints one row per tensor; returns the number of failures. refs: the step-wise
    float64 reference, the end-to-end one, then float32 PyTorch's step-wise values in each
    memory format."""
    ref, e2e, f32s = refs[0], refs[1], refs[2:]
    print(f"\n{title}")
    print(f"  {'tensor':24s} {'shape':14s} {'max|ref|':>9s} {'':4s} {'error':>9s} "
          f"{'bound':>9s} {'e2e':>9s}")
    failures = 0
    for name in names:
        if name not in got:
            print(f"  {name:24s} MISSING from OUT  FAIL")
            failures += 1
            continue
        g, r = got[name], ref[name]
        if list(g.shape) != list(r.shape):
            print(f"  {name:24s} shape {list(g.shape)}, expected {list(r.shape)}  FAIL")
            failures += 1
            continue
        err, err_e2e, bound, kind = check(name, g, r, e2e[name],
                                          [f32[name] for f32 in f32s if name in f32])
        ok = err <= bound
        failures += not ok
        shape = "x".join(str(d) for d in r.shape)
        print(f"  {name:24s} {shape:14s} {np.abs(r).max(initial=0):9.3g} {kind:4s} {err:9.2e} "
              f"{bound:9.2e} {err_e2e:9.2e}{'' if ok else '  FAIL'}")
    return failures


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in IMAGE_SIZE or sys.argv[2] not in ("2", "3"):
        sys.exit(f"usage: mix_parity.py {{{','.join(IMAGE_SIZE)}}} {{2,3}}")
    arch, n = sys.argv[1], int(sys.argv[2])
    tmixd = os.environ.get("TMIXD")
    if not tmixd or not os.access(tmixd, os.X_OK):
        sys.exit(f"mix_parity: TMIXD must name the tmixd binary (got {tmixd!r})")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1000 + n)

    teacher = zoo.randomize_bn(zoo.build(arch, CLASSES), seed=1).eval().requires_grad_(False)
    module = tm.MixingModule(n, S)
    randomize_module(module, g)
    inputs = make_inputs(teacher, n, IMAGE_SIZE[arch], g)

    with tempfile.TemporaryDirectory(prefix="tmix-mix-") as tmp:
        path = {k: os.path.join(tmp, k + ".safetensors") for k in ("teacher", "module", "in")}
        export.export(teacher, arch, path["teacher"])
        tm.save(module, path["module"], alpha=1.0, dataset="random", teacher_arch=arch)
        safetensors.save(path["in"], inputs)
        module, _ = tm.load(path["module"])  # exactly the float32 weights tmixd reads
        cl = torch.channels_last
        f32_nets = [(copy.deepcopy(teacher), copy.deepcopy(module)),
                    (copy.deepcopy(teacher).to(memory_format=cl),
                     copy.deepcopy(module).to(memory_format=cl))]
        f64_net = (teacher.double(), module.double())
        grad_names = ["grad.mixed"] + ["grad." + k for k, _ in module.named_parameters()]

        runs = [("transformmix", ["--module", path["module"], "--grads"], FORWARD + grad_names)]
        for method, uses_module in METHODS.items():
            if method == "cutmix" and n != 2:
                continue  # CutMix pastes one box: n = 2 only
            which = ["--module", path["module"]] if uses_module else ["--n", str(n)]
            runs.append((method, which + ["--method", method], METHOD_TENSORS))
        failures = 0
        out = os.path.join(tmp, "out.safetensors")
        for method, args, names in runs:
            run([tmixd, "mix", "--teacher", path["teacher"], "--in", path["in"], "--out", out]
                + args)
            got, _ = safetensors.load(out)
            grads, boxes = "--grads" in args, None
            title = f"{arch} n={n} {method}" + (" --grads" if grads else "")
            if method == "cutmix":
                if "masks" not in got:
                    print(f"\n{title}: no masks in OUT  FAIL")
                    failures += 1
                    continue
                boxes, faults = cutmix_boxes(got["masks"], inputs["lam"])
                for fault in faults:
                    print(f"\n{title}: {fault}  FAIL")
                failures += len(faults)
            loss = "loss" in names
            refs = [reference(*f64_net, inputs, method, grads, got, boxes, loss),
                    reference(*f64_net, inputs, method, grads, None, boxes, loss)]
            refs += [reference(*net, inputs, method, grads, got, boxes, loss, fmt)
                     for net, fmt in zip(f32_nets, (torch.contiguous_format, cl))]
            failures += compare(title, got, refs, names)

    print(f"\n{failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
