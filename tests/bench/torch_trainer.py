"""One PyTorch trainer that pulls batches from tmixd through tmix.torch.Loader for S seconds
and prints the columns of `tmixctl bench --touch`, so that e2e.sh can run the rows tmixctl
cannot: cuda delivery, whose images are tensors on the GPU.

    PYTHONPATH=client/python python3 tests/bench/torch_trainer.py ENDPOINT --seconds S \
        [--group G] [--delivery inline|shm|cuda] [--device cpu|cuda[:k]] [--step-ms MS]

Columns: trainers (1), batches, images, images/s, p50 and p99 ms of getting the next
(images, targets) pair, then mean ms per batch of reading the images (a sum over every
element, waited for on the GPU), of the pair plus the reading, and of copying the last
batch's images into a tensor of the trainer's own on the same device.
"""
import argparse
import time

import torch

import tmix.torch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("endpoint")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--group", default="e2e")
    ap.add_argument("--delivery", default="inline", choices=["inline", "shm", "cuda"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--step-ms", type=float, default=0.0)
    args = ap.parse_args()
    device = torch.device(args.device)
    # A stalled daemon ends the row within the run, not after the Loader's 60 s default.
    loader = tmix.torch.Loader(args.endpoint, group=args.group, delivery=args.delivery,
                               device=args.device, timeout=max(10.0, 2 * args.seconds))
    latencies, touch_ms, busy_ms, images, checksum = [], 0.0, 0.0, 0, 0.0
    last = None
    start = time.perf_counter()
    deadline = start + args.seconds
    now = start
    while now < deadline:
        for x, _ in loader:  # one epoch per loop
            got = time.perf_counter()
            latencies.append((got - now) * 1e3)
            checksum += float(x.float().sum())  # a host sync: the reading is done
            done = time.perf_counter()
            touch_ms += (done - got) * 1e3
            busy_ms += (done - now) * 1e3
            images += x.shape[0]
            last = x
            if args.step_ms > 0:
                time.sleep(args.step_ms / 1e3)
                done = time.perf_counter()
            now = done
            if now >= deadline:
                break
    end = time.perf_counter()
    copy_ms = 0.0
    if last is not None:
        own = torch.empty_like(last)
        own.copy_(last)  # its pages or device memory touched once, as a reused buffer's
        sync(device)
        t0 = time.perf_counter()
        for _ in range(5):
            own.copy_(last)
        sync(device)
        copy_ms = (time.perf_counter() - t0) * 1e3 / 5
    del last
    loader.close()
    latencies.sort()
    n = len(latencies)

    def quantile(p):
        return latencies[max(0, min(n - 1, int(p * n + 0.999999) - 1))] if n else 0.0

    print(f"{'trainers':>8} {'batches':>10} {'images':>12} {'images/s':>12} {'p50 ms':>9} "
          f"{'p99 ms':>9} {'touch ms':>9} {'trainer ms':>10} {'memcpy ms':>10}")
    print(f"{1:>8} {n:>10} {images:>12} {images / (end - start):>12.1f} {quantile(0.5):>9.2f} "
          f"{quantile(0.99):>9.2f} {touch_ms / max(n, 1):>9.3f} {busy_ms / max(n, 1):>10.3f} "
          f"{copy_ms:>10.3f}")


if __name__ == "__main__":
    main()
