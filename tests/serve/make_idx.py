#!/usr/bin/env python3
"""Writes a small IDX data set (train and t10k splits) from the first samples of Debian's
Fashion-MNIST, so that serving tests cover whole epochs quickly.

    make_idx.py SRC_DIR OUT_DIR TRAIN_COUNT TEST_COUNT
"""
import gzip
import os
import struct
import sys


def read(path):
    for name in (path, path + ".gz"):
        if os.path.exists(name):
            with (gzip.open if name.endswith(".gz") else open)(name, "rb") as f:
                return f.read()
    sys.exit(f"make_idx.py: {path}[.gz] not found")


def subset(src, out, stem, count):
    images = read(os.path.join(src, f"{stem}-images-idx3-ubyte"))
    labels = read(os.path.join(src, f"{stem}-labels-idx1-ubyte"))
    magic, n, rows, cols = struct.unpack(">IIII", images[:16])
    if count > n:
        sys.exit(f"make_idx.py: {stem} has {n} samples, {count} asked")
    with open(os.path.join(out, f"{stem}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", magic, count, rows, cols))
        f.write(images[16:16 + count * rows * cols])
    with open(os.path.join(out, f"{stem}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", struct.unpack(">I", labels[:4])[0], count))
        f.write(labels[8:8 + count])


def main():
    src, out, train, test = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.makedirs(out, exist_ok=True)
    subset(src, out, "train", train)
    subset(src, out, "t10k", test)


if __name__ == "__main__":
    main()
