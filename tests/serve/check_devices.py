"""Checks that batches served with [server] device = cpu and = cuda (files of `tmixctl pull
--out`, same seed and group settings) are the same batches: ids, sources and labels equal,
weights equal to float rounding, and images within a tolerance: element-wise for methods
without a network (the GPU's sums only run in another order), norm-wise (||gpu - cpu|| /
||cpu||) with --norm for the learned ones, whose warp multiplies rounding in θ by the image
gradient.

    check_devices.py CPU.safetensors CUDA.safetensors [--norm TOL]
"""
import sys

import numpy as np

from tmix import safetensors


def main():
    (cpu, _), (gpu, _) = (safetensors.load(p) for p in sys.argv[1:3])
    norm_tol = float(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--norm" else None
    for key in ("sample_ids", "sources", "labels", "epoch", "index"):
        if not np.array_equal(cpu[key], gpu[key]):
            sys.exit(f"FAIL: {key} differ between the CPU and the GPU")
    err = np.abs(cpu["weights"].astype(np.float64) - gpu["weights"]).max()
    if not err <= 1e-6:
        sys.exit(f"FAIL: weights differ by {err:.3g} (tolerance 1e-06)")
    a, b = cpu["images"].astype(np.float64), gpu["images"].astype(np.float64)
    if norm_tol is None:
        err, tol, how = np.abs(a - b).max(), 1e-5, "at most"
    else:
        err, tol, how = np.linalg.norm(a - b) / np.linalg.norm(a), norm_tol, "norm-wise"
    if not err <= tol:
        sys.exit(f"FAIL: images differ {how} by {err:.3g} (tolerance {tol:g})")
    print(f"cpu and cuda agree on {a.shape[0]} images ({how} {err:.3g})")


if __name__ == "__main__":
    main()
