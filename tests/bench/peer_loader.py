"""The peer of tmixd in tests/bench/e2e.sh: a PyTorch DataLoader over the same ImageFolder
(workers = cores, PIL decode, RandomResizedCrop, RandomHorizontalFlip, ToTensor, Normalize)
feeding the daemon's mixing computation, done in PyTorch in the trainer, for S seconds.

    python3 tests/bench/peer_loader.py CONFIG --seconds S [--workers W] [--device cpu|cuda]

CONFIG is a tmixd config as `tmixd serve --print-config` writes it; the peer takes from it
what tmixd would do: [dataset] path, [augment] size, scale_min, scale_max, flip, mean, std,
[mix] method, alpha, n, module, precision, [teacher] path, [output] batch_size. Methods: none,
mixup, and those of a teacher (softmax-cam, stn-only, mpn-only, transformmix: CAMs, STN, warp,
MPN and blend with tmix.module, as tests/bench/peer_torch.py's whole mix; PYTHONPATH must
reach client/python). The mixing runs on --device (default: cuda when there is one).

Prints the columns of `tmixctl bench --touch`, for one trainer: batches, images, images/s,
p50/p99 ms of waiting for the next batch, then the mean ms per batch of the mixing in the
trainer (in the `touch ms` column: it reads every byte), of waiting + mixing (trainer ms),
and of a memcpy of the received batch into a private buffer (memcpy ms). The clock starts
when the workers have been started, before the first batch, as tmixctl's starts before its
first request to a daemon that has nothing made yet.
"""
import argparse
import configparser
import json
import os
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler
from torchvision import datasets, transforms

TEACHER_METHODS = ("softmax-cam", "stn-only", "mpn-only", "transformmix")
COPIES = 5  # copies of the last batch timed for the memcpy column, as tmixctl's


def read_config(path):
    """The tmixd config at path (every key `tmixd serve --print-config` writes)."""
    cfg = configparser.ConfigParser(interpolation=None)
    try:
        with open(path) as f:
            cfg.read_file(f)
    except (OSError, configparser.Error) as e:
        sys.exit(f"peer_loader: {path}: {e}")
    return cfg


def floats(cfg, key, default):
    """[augment] mean or std: comma-separated floats, or `auto` = default."""
    text = cfg.get("augment", key)
    if text == "auto":
        return default
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        sys.exit(f"peer_loader: [augment] {key} = {text!r}: expected floats or auto")


class Mixer:
    """The daemon's mixing of one batch, in PyTorch: n sources per sample (the sample itself,
    then n - 1 random partners), λ ~ Dirichlet(alpha) per sample, soft targets."""

    def __init__(self, cfg, device):
        self.device = device
        self.method = cfg.get("mix", "method")
        self.n = cfg.getint("mix", "n")
        self.alpha = cfg.getfloat("mix", "alpha")
        self.teacher = self.module = None
        self.mean = self.std = None
        if self.method in TEACHER_METHODS:
            self.load_models(cfg)
        elif self.method not in ("none", "mixup"):
            sys.exit(f"peer_loader: method {self.method} is not done by the peer "
                     "(none, mixup, " + ", ".join(TEACHER_METHODS) + ")")

    def load_models(self, cfg):
        from tmix import module as tm
        from tmix import safetensors, zoo
        self.tm, self.zoo = tm, zoo
        path = cfg.get("teacher", "path")
        if not path:
            sys.exit(f"peer_loader: method {self.method} needs [teacher] path")
        tensors, meta = safetensors.load(path)
        teacher = zoo.build(meta["arch"], int(meta["num_classes"]), int(meta["in_channels"]))
        teacher.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
        self.teacher = teacher.float().eval().requires_grad_(False).to(self.device)
        if "mean" in meta:
            self.mean, self.std = json.loads(meta["mean"]), json.loads(meta["std"])
        if self.method != "softmax-cam":
            if not cfg.get("mix", "module"):
                sys.exit(f"peer_loader: method {self.method} needs [mix] module")
            module, _ = tm.load(cfg.get("mix", "module"))
            self.module = module.eval().requires_grad_(False).to(self.device)
        tf32 = cfg.get("mix", "precision") == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

    @torch.no_grad()
    def __call__(self, images, labels, classes):
        """Mixed images (B, C, H, W) and soft targets (B, classes) on the device."""
        x, y = images.to(self.device), labels.to(self.device)
        b = x.shape[0]
        own = torch.arange(b, device=self.device).view(1, b)
        perms = [torch.randperm(b, device=self.device).view(1, b) for _ in range(self.n - 1)]
        sources = torch.cat([own] + perms).t()  # (B, n)
        concentration = torch.full((self.n,), self.alpha, device=self.device)
        lam = torch.distributions.Dirichlet(concentration).sample((b,))  # (B, n)
        if self.method == "none":
            lam = torch.zeros_like(lam)
            lam[:, 0] = 1
        if self.teacher is None:  # one gather and one multiply-add per partner
            mixed = x * lam[:, :1, None, None]
            for k, perm in enumerate(perms, 1):
                mixed.addcmul_(x[perm[0]], lam[:, k:k + 1, None, None])
        else:
            mixed, lam = self.teacher_mix(x, y, sources, lam)
        targets = torch.zeros(b, classes, device=self.device).scatter_add_(1, y[sources], lam)
        return mixed, targets

    def teacher_mix(self, x, y, sources, lam):
        """CAMs, STN, warp, MPN and blend, as tests/bench/peer_torch.py's whole mix."""
        tm = self.tm
        b, _, h, w = x.shape
        cams = self.zoo.cams(self.teacher, x, y, (h, w))[sources, 0]  # (B, n, H, W)
        if self.method in ("stn-only", "transformmix"):
            s = self.module.stn_size
            noise = torch.randn(b, 1, s, s, device=self.device)
            theta = self.module.theta(cams, lam, noise)
        else:
            theta = tm.identity_theta(b, self.n, x)
        warped = tm.warp(x[sources], theta)
        warped_cams = tm.warp(cams.unsqueeze(2), theta).squeeze(2)
        if self.method in ("mpn-only", "transformmix"):
            masks = self.module.masks(warped_cams, lam)
        elif self.method == "stn-only":
            masks = tm.lambda_maps(lam, h, w)
        else:  # softmax-cam: the CAMs decide, and the label weights follow the masks
            masks = torch.softmax(warped_cams, dim=1)
            lam = masks.mean(dim=(2, 3))
        return tm.blend(masks, warped), lam


def loader(cfg, mixer, workers, pin):
    size = cfg.getint("augment", "size")
    if size <= 0:
        sys.exit("peer_loader: [augment] size must be set (the output size)")
    mean = floats(cfg, "mean", mixer.mean or [0.5] * 3)
    std = floats(cfg, "std", mixer.std or [0.5] * 3)
    scale = (cfg.getfloat("augment", "scale_min"), cfg.getfloat("augment", "scale_max"))
    steps = [transforms.RandomResizedCrop(size, scale=scale)]
    if cfg.getboolean("augment", "flip"):
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    root = os.path.join(cfg.get("dataset", "path"), cfg.get("dataset", "split"))
    data = datasets.ImageFolder(root, transform=transforms.Compose(steps))
    # One long epoch: a small generated set must not make the peer wait at epoch ends that
    # a real data set has once per million images.
    sampler = RandomSampler(data, num_samples=1 << 40)
    return DataLoader(data, batch_size=cfg.getint("output", "batch_size"), sampler=sampler,
                      num_workers=workers, pin_memory=pin), len(data.classes)


def time_copies(images):
    """Mean ms of a memcpy of images' bytes into a private buffer already mapped."""
    src = images.numpy()
    dst = np.zeros_like(src)
    start = time.perf_counter()
    for _ in range(COPIES):
        np.copyto(dst, src)
    return (time.perf_counter() - start) * 1e3 / COPIES


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="tmixd config, as `tmixd serve --print-config` writes it")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    cfg = read_config(args.config)
    cuda = args.device.startswith("cuda")
    mixer = Mixer(cfg, torch.device(args.device))
    batches, classes = loader(cfg, mixer, args.workers, cuda)

    waits, mix_ms, images = [], 0.0, 0
    it = iter(batches)
    start = now = time.perf_counter()
    while now < start + args.seconds:
        x, y = next(it)
        got = time.perf_counter()
        mixer(x, y, classes)
        if cuda:
            torch.cuda.synchronize()
        done = time.perf_counter()
        waits.append((got - now) * 1e3)
        mix_ms += (done - got) * 1e3
        images += x.shape[0]
        now = done
    seconds = now - start
    copy_ms = time_copies(x)
    del it  # stops the workers

    n = len(waits)
    waits.sort()

    def quantile(p):  # nearest rank, as tmixctl's
        return waits[max(int(np.ceil(p * n)) - 1, 0)]

    print(f"{'trainers':>8} {'batches':>10} {'images':>12} {'images/s':>12} {'p50 ms':>9} "
          f"{'p99 ms':>9} {'touch ms':>9} {'trainer ms':>10} {'memcpy ms':>10}")
    print(f"{1:>8} {n:>10} {images:>12} {images / seconds:>12.1f} {quantile(0.5):>9.2f} "
          f"{quantile(0.99):>9.2f} {mix_ms / n:>9.3f} {(sum(waits) + mix_ms) / n:>10.3f} "
          f"{copy_ms:>10.3f}")


if __name__ == "__main__":
    main()
