#!/usr/bin/python3
"""Writes the TransformMix golden case that `tmixd selftest` replays: one whole mix, forward
and backward, through a real teacher file and a real module file.

Run with Debian's python3-torch: `/usr/bin/python3 tests/golden/make_transformmix.py`
(PYTHONPATH is set here). It writes tests/golden/transformmix/:

- teacher.safetensors   cifar_resnet20, 10 classes, random weights and batch norm
                        statistics, stored as F16 (so the F16 path of the teacher loader
                        runs); the reference uses these F16-rounded values.
- module.safetensors    a mixing module, n = 2, stn_size 32, every weight random (the
                        case of tests/models/mix_parity.py: θ near the identity but not on
                        it, log τ = -0.3).
- in.safetensors        the `tmixd mix` input: images (4, 3, 32, 32), labels, perm (1, 4),
                        lam (4, 2), noise (4, 1, 32, 32).
- expected.safetensors  what `tmixd mix --grads` must write for them: every OUT tensor of
                        models/README.md, loss and grad.mixed and grad.<module tensor>
                        included, from tmix.module.mix run in float64 (end to end, from IN)
                        and rounded once to float32; sources and labels int64.

The case is drawn with tests/models/mix_parity.py's helpers from fixed seeds, on one
thread, so a rerun writes the same bytes. --check regenerates into a temporary folder and
compares the bytes with the committed files (exit 1 and the differing tensors on any
difference). The fixtures are committed; rerun only when the case or the method changes.
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "models"))

import tmix.module as tm  # noqa: E402
from mix_parity import make_inputs, randomize_module, reference  # noqa: E402
from tmix import export, safetensors, zoo  # noqa: E402

ARCH, CLASSES, N, S, SIZE = "cifar_resnet20", 10, 2, 32, 32
FILES = ("teacher", "module", "in", "expected")


def load_teacher(path):
    """The zoo network with the values stored in a teacher file (F16 here), as float64."""
    tensors, meta = safetensors.load(path)
    model = zoo.build(meta["arch"], int(meta["num_classes"]), int(meta["in_channels"]))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    return model.double().eval().requires_grad_(False)


def generate(out):
    """Writes the four files into the folder out."""
    torch.set_num_threads(1)  # one summation order for the float64 reference
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2024)
    teacher = zoo.randomize_bn(zoo.build(ARCH, CLASSES), seed=1).eval().requires_grad_(False)
    module = tm.MixingModule(N, S)
    randomize_module(module, g)
    inputs = make_inputs(teacher, N, SIZE, g)

    path = {k: os.path.join(out, k + ".safetensors") for k in FILES}
    export.export(teacher, ARCH, path["teacher"], dataset="random", image_size=SIZE,
                  dtype="f16")
    tm.save(module, path["module"], alpha=1.0, dataset="random", teacher_arch=ARCH)
    safetensors.save(path["in"], inputs)

    module, _ = tm.load(path["module"])
    ref = reference(load_teacher(path["teacher"]), module.double(), inputs, "transformmix",
                    grads=True)
    expected = {k: (v if v.dtype == np.int64 else v.astype(np.float32)) for k, v in ref.items()}
    safetensors.save(path["expected"], expected,
                     {"format": "tmix-mix-golden", "method": "transformmix",
                      "generator": "tests/golden/make_transformmix.py"})
    for k in FILES:
        print(f"{path[k]}: {os.path.getsize(path[k])} bytes")


def differences(name, old, new):
    """Says which tensors (or metadata) of two versions of one file differ."""
    (a, meta_a), (b, meta_b) = safetensors.load(old), safetensors.load(new)
    faults = [f"{name}: metadata differs"] if meta_a != meta_b else []
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            faults.append(f"{name}: tensor '{key}' is only in the "
                          f"{'fresh' if key in b else 'committed'} file")
        elif a[key].dtype != b[key].dtype or a[key].shape != b[key].shape:
            faults.append(f"{name}: tensor '{key}' is {b[key].dtype} {list(b[key].shape)}, "
                          f"committed {a[key].dtype} {list(a[key].shape)}")
        elif a[key].tobytes() != b[key].tobytes():
            diff = np.abs(a[key].astype(np.float64) - b[key].astype(np.float64)).max()
            faults.append(f"{name}: tensor '{key}' differs (max |diff| {diff:.3g})")
    return faults or [f"{name}: bytes differ (layout)"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "transformmix"),
                    help="folder to write (default: tests/golden/transformmix)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare the bytes with the "
                         "committed files instead of overwriting them")
    args = ap.parse_args()
    if not args.check:
        os.makedirs(args.out, exist_ok=True)
        generate(args.out)
        return 0
    faults = []
    with tempfile.TemporaryDirectory(prefix="tmix-golden-") as fresh:
        generate(fresh)
        for k in FILES:
            old, new = (os.path.join(d, k + ".safetensors") for d in (args.out, fresh))
            if not os.path.exists(old):
                faults.append(f"{k}: {old} is missing")
            elif open(old, "rb").read() != open(new, "rb").read():
                faults += differences(k, old, new)
    for f in faults:
        print("MISMATCH", f)
    print(f"{len(FILES)} files regenerated: {len(faults)} mismatches")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
