"""Parity of one zoo teacher between tmixd and PyTorch, through the real programs.

    zoo_parity.py ARCH        (env: TMIXD = the tmixd binary, PYTHONPATH = client/python)

Builds ARCH with tmix.zoo (7 classes, upstream initialisation from a fixed seed, random
batch-norm statistics so that the folding is exercised), writes it with
`python -m tmix.export`, runs `tmixd mix --method none` on two images, and compares tmixd's
`logits` and `cams` with the same network in float64 PyTorch. The error is that of
kernels/golden.c tmix_rel_error: max_i |got - ref| / max(|ref_i|, 1e-3 max|ref|).
cifar_resnet20 is also checked with one input channel at 28x28.

The bound is TOL, or SLACK times the error of PyTorch's own float32 forward on the same case
when that is larger: through 18-50 layers float32 rounding alone reaches a few 1e-4 in
some cases (logits near zero, CAM values near the minimum, both measured against the 1e-3
floor), and tmixd is asked to be as accurate as PyTorch, not more.
Exit status 0 when every error is within its bound, 1 otherwise.
"""
import os
import sys
import tempfile

import numpy as np
import torch

from tmix import safetensors, zoo

from common import rel_error, run

TOL = 1e-4
SLACK = 4
CLASSES = 7


def spread_labels(model, x):
    """Per image, the class whose raw CAM varies most: well-conditioned min-max maps."""
    with torch.no_grad():
        feat = zoo.features(model, x)                                       # (B, C, h, w)
        raw = torch.relu(torch.einsum("kc,bchw->bkhw", zoo.classifier(model).weight, feat))
        span = raw.flatten(2).max(2).values - raw.flatten(2).min(2).values  # (B, K)
    return span.argmax(1)


def case(arch, in_channels, size, tmixd, tmp, seed):
    name = f"{arch} {in_channels}ch {size}x{size}"
    torch.manual_seed(seed)
    model = zoo.build(arch, CLASSES, in_channels)
    zoo.randomize_bn(model, seed + 1)
    model.eval()
    ckpt = os.path.join(tmp, f"{arch}_{in_channels}.pt")
    teacher = os.path.join(tmp, f"{arch}_{in_channels}.safetensors")
    torch.save(model.state_dict(), ckpt)
    run([sys.executable, "-m", "tmix.export", "--arch", arch, "--state-dict", ckpt,
         "-o", teacher])

    g = torch.Generator().manual_seed(seed + 2)
    x = torch.randn(2, in_channels, size, size, generator=g)                # (B, C, H, W)
    xd = x.double()
    with torch.no_grad():
        model.double()  # the parameters are float32 values, so this is exact
        labels = spread_labels(model, xd)                                   # (B,)
        ref_logits = model(xd).numpy()                                      # (B, K)
        ref_cams = zoo.cams(model, xd, labels).numpy()                      # (B, 1, H, W)
        model.float()
        f32_logits = model(x).numpy()
        f32_cams = zoo.cams(model, x, labels).numpy()

    src, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
    safetensors.save(src, {"images": x.numpy(), "labels": labels.numpy().astype(np.int64)})
    run([tmixd, "mix", "--teacher", teacher, "--method", "none", "--n", "2",
         "--in", src, "--out", out])
    got, _ = safetensors.load(out)

    ok = True
    for key, ref, f32 in (("logits", ref_logits, f32_logits), ("cams", ref_cams, f32_cams)):
        if key not in got:
            print(f"FAIL {name}: tmixd's output has no '{key}'")
            ok = False
            continue
        err, torch_err = rel_error(got[key], ref), rel_error(f32, ref)
        bound = max(TOL, SLACK * torch_err)
        shape = "" if got[key].shape == ref.shape else \
            f" (shape {list(got[key].shape)}, want {list(ref.shape)})"
        good = err <= bound
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {name}: {key} rel error {err:.3g}{shape}, "
              f"bound {bound:.3g} (PyTorch float32: {torch_err:.3g}; "
              f"max|ref| {np.abs(ref).max():.3g})")
    if "mixed" in got and not np.array_equal(got["mixed"], x.numpy()):
        print(f"FAIL {name}: method none changed the images (mixed != images)")
        ok = False
    return ok


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in zoo.ARCHS:
        sys.exit(f"usage: zoo_parity.py ARCH  (ARCH one of {', '.join(zoo.ARCHS)})")
    arch = sys.argv[1]
    tmixd = os.environ.get("TMIXD")
    if not tmixd or not os.access(tmixd, os.X_OK):
        sys.exit(f"zoo_parity: TMIXD must name the tmixd binary (got {tmixd!r})")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    size = 64 if arch.startswith("resnet") else 32
    with tempfile.TemporaryDirectory(prefix="tmix-zoo-") as tmp:
        ok = case(arch, 3, size, tmixd, tmp, seed=10)
        if arch == "cifar_resnet20":
            ok &= case(arch, 1, 28, tmixd, tmp, seed=20)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
