#!/usr/bin/env python3
"""Trains a small CNN on mixed batches from a running tmixd and prints the test split's
accuracy after each epoch.

    python3 train.py [ENDPOINT] [--epochs 5] [--device cuda] [--data DIR]

The daemon serves the training split (Fashion-MNIST by default); this script reads the test
split itself, the IDX files in DIR or the ImageFolder DIR/test/<class>/* (resized and centre
cropped to the daemon's size), and normalises it as the daemon does: pixels / 255, minus
the mean, over the std, which the daemon's Welcome gives (tmix.Info.mean and .std). The targets are the mix's soft labels, so the loss is soft cross-entropy.
Under torchrun the ranks share the epoch (tmix.torch.Loader forms one shard group).
"""
import argparse
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import tmix
import tmix.torch


def read_idx(path):
    """An IDX file (plain or .gz) as a numpy array of its shape."""
    for name in (path, path + ".gz"):
        if os.path.exists(name):
            with (gzip.open if name.endswith(".gz") else open)(name, "rb") as f:
                data = f.read()
            ndim = data[3]
            shape = tuple(int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim))
            return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)
    sys.exit(f"train.py: {path}[.gz] not found")


def test_split(folder, info):
    """(images, labels) of the test split in folder, normalised as the daemon's batches."""
    mean = torch.tensor(info.mean[:info.channels]).view(1, -1, 1, 1)
    std = torch.tensor(info.std[:info.channels]).view(1, -1, 1, 1)
    if os.path.isdir(os.path.join(folder, "test")):  # an ImageFolder, torchvision's order
        from torchvision import datasets, transforms
        size = (info.height, info.width)
        data = datasets.ImageFolder(os.path.join(folder, "test"), transforms.Compose(
            [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()]))
        x = torch.stack([image for image, _ in data])
        y = torch.tensor(data.targets, dtype=torch.int64)
    else:
        images = read_idx(os.path.join(folder, "t10k-images-idx3-ubyte"))
        x = torch.from_numpy(images[:, None].astype(np.float32) / 255)
        y = torch.from_numpy(read_idx(os.path.join(folder, "t10k-labels-idx1-ubyte")).astype(np.int64))
    return (x - mean) / std, y


def cnn(channels, height, width, classes):
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (height // 4) * (width // 4), 128), nn.ReLU(),
        nn.Linear(128, classes))


@torch.no_grad()
def accuracy(model, x, y, device):
    model.eval()
    correct = sum(int((model(xb.to(device)).argmax(1).cpu() == yb).sum())
                  for xb, yb in zip(x.split(1000), y.split(1000)))
    model.train()
    return correct, len(y)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("endpoint", nargs="?", default=None, help="tmixd's endpoint")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--group", default=None, help="consumer group (default: see tmix.torch)")
    p.add_argument("--delivery", default=None, choices=("inline", "shm"))
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                   help="folder of the test split's IDX files, or an ImageFolder root with test/")
    p.add_argument("--limit", type=int, default=0,
                   help="at most this many batches per epoch (a quick check); 0: all")
    args = p.parse_args()

    loader = tmix.torch.Loader(args.endpoint, group=args.group, batch_size=args.batch_size,
                               delivery=args.delivery, device=args.device)
    info = loader.info
    x_test, y_test = test_split(args.data, info)
    if tuple(x_test.shape[1:]) != (info.channels, info.height, info.width):
        sys.exit(f"train.py: the daemon serves {info.channels}x{info.height}x{info.width} "
                 f"images, the test split in {args.data} is {tuple(x_test.shape[1:])}")
    model = cnn(info.channels, info.height, info.width, info.classes).to(args.device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    print(f"{info.method} batches of {info.batch_size} from {loader.client.endpoint}, "
          f"group {loader.group} ({info.mode}), {len(loader)} per epoch", flush=True)
    for epoch in range(args.epochs):
        total, steps = 0.0, 0
        for images, targets in loader:
            loss = torch.sum(-targets * F.log_softmax(model(images), 1), 1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
            if steps == args.limit:
                break
        correct, n = accuracy(model, x_test, y_test, args.device)
        print(f"epoch {epoch}: {steps} batches, loss {total / max(steps, 1):.4f}, "
              f"test accuracy {correct / n:.4f} ({correct}/{n})", flush=True)
    loader.close()


if __name__ == "__main__":
    main()
