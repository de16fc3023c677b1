"""Checks that batches served with [server] device = cpu and = cuda (files of `tmixctl pull
--out`, same seed and group settings) are the same batches: ids, sources and labels equal,
weights and images equal to float rounding (the GPU's sums run in another order).

    check_devices.py CPU.safetensors CUDA.safetensors
"""
import sys

import numpy as np

from tmix import safetensors


def main():
    (cpu, _), (gpu, _) = (safetensors.load(p) for p in sys.argv[1:3])
    for key in ("sample_ids", "sources", "labels", "epoch", "index"):
        if not np.array_equal(cpu[key], gpu[key]):
            sys.exit(f"FAIL: {key} differ between the CPU and the GPU")
    for key, tol in (("weights", 1e-6), ("images", 1e-5)):
        err = np.abs(cpu[key].astype(np.float64) - gpu[key]).max()
        if not err <= tol:
            sys.exit(f"FAIL: {key} differ by {err:.3g} (tolerance {tol:g})")
    print(f"cpu and cuda agree on {cpu['images'].shape[0]} images")


if __name__ == "__main__":
    main()
