"""Checks that the same batches pulled as float32 NCHW, float16 NCHW and uint8 NHWC (files of
`tmixctl pull --out`, same daemon and seed, one group each) hold the same mix: the same ids,
sources, labels and weights; float16 = float32 rounded; uint8 = the float32 image
de-normalised with mean = std = 0.5, rounded and clamped, transposed.

    check_formats.py F32 F16 U8
"""
import sys

import numpy as np

from tmix import safetensors


def main():
    (f32, _), (f16, _), (u8, _) = (safetensors.load(p) for p in sys.argv[1:4])
    for key in ("sample_ids", "sources", "labels", "weights", "epoch", "index"):
        for other, name in ((f16, "float16"), (u8, "uint8")):
            if not np.array_equal(f32[key], other[key]):
                sys.exit(f"FAIL: {key} differ between float32 and {name}")
    x = f32["images"]
    if f16["images"].dtype != np.float16 or u8["images"].dtype != np.uint8:
        sys.exit(f"FAIL: dtypes {f16['images'].dtype}, {u8['images'].dtype}")
    if not np.array_equal(f16["images"], x.astype(np.float16)):
        sys.exit("FAIL: float16 images are not the float32 ones rounded")
    pixels = np.clip(np.rint((x * 0.5 + 0.5) * 255), 0, 255)
    got = u8["images"].transpose(0, 3, 1, 2).astype(np.float64)
    if got.shape != pixels.shape or np.abs(got - pixels).max() > 1:
        sys.exit("FAIL: uint8 NHWC images are not the float32 NCHW ones as pixels")
    w = f32["weights"]
    if not np.allclose(w.sum(axis=1), 1, atol=1e-5):
        sys.exit("FAIL: label weights do not sum to 1")
    print(f"formats agree on {x.shape[0]} images of {x.shape[1:]}")


if __name__ == "__main__":
    main()
