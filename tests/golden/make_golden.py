#!/usr/bin/python3
"""Writes the golden fixtures that the CPU ops are checked against.

Run with Debian's python3-torch (`/usr/bin/python3 tests/golden/make_golden.py`). Every case
draws float32 inputs from a fixed seed, computes the reference in float64 with PyTorch (so
the fixture holds the exact answer, rounded once to float32), and stores inputs, outputs
and gradients as float32 in tests/golden/<suite>.safetensors, the format kernels/golden.h
reads: tensors "<case>/<role>", metadata "cases" (comma-separated) and "<case>" (JSON
parameters with a human "label"). Fixtures are committed; rerun only when a case changes.

The cases live in the gen_*.py modules beside this file (gen_nn.py, gen_warp.py, gen_mix.py,
gen_assemble.py), one per op group, each exposing SUITES = {suite_name: function returning
[(case_name, params, tensors)]}.
"""
import argparse
import glob
import importlib
import json
import os
import struct
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# Every gen_*.py beside this file is a module of cases.
MODULES = [importlib.import_module(os.path.basename(f)[:-3])
           for f in sorted(glob.glob(os.path.join(HERE, "gen_*.py")))]


def as_array(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    t = np.asarray(t)
    if t.dtype == np.uint8:
        return np.ascontiguousarray(t), "U8"
    return np.ascontiguousarray(t, dtype="<f4"), "F32"


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, array); metadata: dict of str -> str."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, value in tensors:
        arr, dtype = as_array(value)
        data = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep the data section 8-byte aligned
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def read_safetensors(path):
    """Returns ({name: array}, metadata) of a file written by write_safetensors."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    base, arrays = 8 + n, {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dtype = np.uint8 if e["dtype"] == "U8" else np.dtype("<f4")
        arrays[name] = np.frombuffer(raw[base + b:base + end], dtype=dtype).reshape(e["shape"])
    return arrays, metadata


def compare_suite(name, fresh_dir, rtol=1e-6):
    """Compares a freshly generated suite with the committed one; returns the faults."""
    old, old_meta = read_safetensors(os.path.join(HERE, name + ".safetensors"))
    new, new_meta = read_safetensors(os.path.join(fresh_dir, name + ".safetensors"))
    faults = []
    skip = {"torch"}  # the torch version may differ; the numbers may not
    for key in sorted(set(old_meta) | set(new_meta)):
        if key not in skip and old_meta.get(key) != new_meta.get(key):
            faults.append(f"{name}: metadata '{key}' differs")
    for key in sorted(set(old) | set(new)):
        if key not in old or key not in new or old[key].shape != new[key].shape:
            faults.append(f"{name}: tensor '{key}' missing or reshaped")
            continue
        a, b = old[key].astype(np.float64), new[key].astype(np.float64)
        # NaN and Inf are deliberate in some cases: they must stand in the same places.
        fa, fb = np.isfinite(a), np.isfinite(b)
        if not np.array_equal(fa, fb) or not np.array_equal(a[~fa], b[~fb], equal_nan=True):
            faults.append(f"{name}: tensor '{key}' has NaN/Inf in other places")
            continue
        a, b = a[fa], b[fb]
        scale = max(np.abs(b).max(initial=0.0), 1e-30)
        err = np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3 * scale), initial=0.0)
        if err > rtol:
            faults.append(f"{name}: tensor '{key}' differs by {err:.3g}")
    return faults


def write_suite(name, cases, outdir):
    tensors, metadata = [], {"cases": ",".join(c[0] for c in cases), "suite": name,
                             "generator": "tests/golden/make_golden.py",
                             "torch": torch.__version__}
    for case, params, arrays in cases:
        assert "label" in params, f"{name}/{case}: params need a label"
        metadata[case] = json.dumps(params)
        for role, value in arrays.items():
            tensors.append((f"{case}/{role}", value))
    path = os.path.join(outdir, name + ".safetensors")
    write_safetensors(path, tensors, metadata)
    size = os.path.getsize(path)
    print(f"{path}: {len(cases)} cases, {size} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suites", nargs="*", help="suites to write (default: all)")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare with the committed "
                         "fixtures instead of overwriting them")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    suites = {}
    for m in MODULES:
        suites.update(m.SUITES)
    unknown = set(args.suites) - set(suites)
    if unknown:
        sys.exit(f"unknown suites: {', '.join(sorted(unknown))}")
    names = args.suites or sorted(suites)
    if not args.check:
        for name in names:
            write_suite(name, suites[name](), args.out)
        return
    with tempfile.TemporaryDirectory() as fresh:
        faults = []
        for name in names:
            write_suite(name, suites[name](), fresh)
            faults += compare_suite(name, fresh)
    for f in faults:
        print("MISMATCH", f)
    print(f"{len(names)} suites regenerated: {len(faults)} mismatches")
    sys.exit(1 if faults else 0)


if __name__ == "__main__":
    main()
