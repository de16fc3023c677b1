"""The peer of bench_mix: the same computation written plainly in PyTorch eager, with the same
random teachers (tmix.zoo) and mixing module (tmix.module), so that the two tables compare
side by side on one machine.

    PYTHONPATH=client/python python3 tests/bench/peer_torch.py [--device cuda] [--repeat 5]

Rows, as bench_mix's, in ms per batch of 128 (best of --repeat after a warm-up):
- CAMs: the teacher on the clean batch and the CAM of each sample's label;
- whole mix: CAMs, the STN, the warp, the MPN and the blend (no gradients);
- search step: the mix, the teacher on the mixed batch, the soft-label loss and the backward
  into the module (the teacher frozen).
For (a) cifar_resnet18 at 32x32 and (b) resnet50 at 224x224, in float32 and with the teacher
under bfloat16 autocast (the mixing module stays in float32).
"""
import argparse
import time

import torch

import tmix.module as tm
from tmix import zoo


def timed(fn, device, repeat):
    best = float("inf")
    for r in range(repeat + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        if r:  # the first run warms up (cuDNN autotuning, allocator)
            best = min(best, (time.perf_counter() - t0) * 1e3)
    return best


def bench(arch, classes, size, device, precision, repeat, batch=128, n=2):
    g = torch.Generator().manual_seed(0)
    teacher = zoo.build(arch, classes).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    module = tm.MixingModule(n=n).to(device)
    images = torch.randn(batch, 3, size, size, generator=g).to(device)
    labels = torch.arange(batch) % classes
    labels = labels.to(device)
    perm = torch.randperm(batch, generator=g).view(1, batch).to(device)
    lam = torch.distributions.Dirichlet(torch.ones(n)).sample((batch,)).to(device)
    noise = torch.randn(batch, 1, module.stn_size, module.stn_size, generator=g).to(device)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16,
                              enabled=precision == "bf16")
    sources = torch.cat([torch.arange(batch, device=device).view(1, batch), perm]).t()

    def cams():
        with torch.no_grad(), autocast:
            return zoo.cams(teacher, images, labels, (size, size)).float()

    def whole_mix():
        with torch.no_grad():
            c = cams()[sources, 0]
            theta = module.theta(c, lam, noise)
            warped = tm.warp(images[sources], theta)
            masks = module.masks(tm.warp(c.unsqueeze(2), theta).squeeze(2), lam)
            return tm.blend(masks, warped)

    def search_step():
        module.zero_grad(set_to_none=True)
        with autocast:
            out = tm.mix(teacher, module, images, labels, perm, lam, noise)
        out["loss"].float().backward()

    return [timed(f, device, repeat) for f in (cams, whole_mix, search_step)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32, as in tmix
    torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"PyTorch {torch.__version__} eager on {name}, batch 128, n = 2, "
          f"best of {args.repeat}")
    print(f"{'teacher':<28} {'precision':<9} {'CAMs ms':>9} {'mix ms':>9} {'step ms':>9}")
    for arch, classes, size in (("cifar_resnet18", 10, 32), ("resnet50", 1000, 224)):
        for precision in ("fp32", "bf16"):
            ms = bench(arch, classes, size, args.device, precision, args.repeat)
            print(f"{arch + f' {size}x{size}':<28} {precision:<9} "
                  f"{ms[0]:>9.1f} {ms[1]:>9.1f} {ms[2]:>9.1f}")


if __name__ == "__main__":
    main()
