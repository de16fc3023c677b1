"""`python -m tmix.export` and the teacher files it writes, through the real command.

    test_export.py            (env: TMIXD = the tmixd binary, PYTHONPATH = client/python)

Exports a torchvision resnet18 (fresh, and a torch.save'd module) and a checkpoint of
cifar_resnet20 (DDP prefix, under 'state_dict'), reads the files back and checks names, order,
shapes, dtypes, values and metadata; F16 and BF16 storage; that bad inputs exit 2 with a
message naming the tensor or option; and that `tmixd mix` accepts the exported teachers
(and refuses one with a tensor too many or too few, naming it).
Exit status 0 when every check passes, 1 otherwise.
"""
import os
import sys
import tempfile
from collections import OrderedDict

import numpy as np
import torch
import torchvision

from tmix import export, safetensors, zoo

from common import rel_error, run

FAILS = []


def check(cond, what):
    print(f"{'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        FAILS.append(what)
    return cond


def run_export(*args):
    """`python -m tmix.export ARGS`, its stderr apart: error messages must go there."""
    return run([sys.executable, "-m", "tmix.export", *args], check=False, merge=False)


def expected_dtype(name, float_dtype):
    return "I64" if name.endswith(".num_batches_tracked") else float_dtype


def check_file(path, sd, meta, float_dtype, what):
    """The file holds exactly sd (names in order, shapes, values as stored) and meta."""
    entries, got_meta = safetensors.header(path)
    check(list(entries) == list(sd), f"{what}: tensor names and order are the state_dict's")
    check(got_meta == meta, f"{what}: metadata as expected"
                            f"{'' if got_meta == meta else f' (got {got_meta}, want {meta})'}")
    bad = [k for k, (dt, shape) in entries.items() if k in sd
           and (dt != expected_dtype(k, float_dtype) or shape != list(sd[k].shape))]
    check(not bad, f"{what}: dtypes {float_dtype} (num_batches_tracked I64) and shapes "
                   f"{'' if not bad else 'wrong for ' + bad[0]}")
    tensors, _ = safetensors.load(path)
    cast = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[float_dtype]
    differ = [k for k in sd if k in tensors and not np.array_equal(
        tensors[k], sd[k].to(cast).float().numpy() if sd[k].is_floating_point()
        else sd[k].numpy())]
    check(not differ, f"{what}: values equal the state_dict's rounded to {float_dtype}"
                      f"{'' if not differ else ' (not ' + differ[0] + ')'}")


def cifar_resnet20(classes, in_channels, seed):
    torch.manual_seed(seed)
    model = zoo.randomize_bn(zoo.build("cifar_resnet20", classes, in_channels), seed)
    return model.eval()


def test_torchvision(tmp):
    out = os.path.join(tmp, "tv.safetensors")
    p = run_export("--arch", "resnet18", "--torchvision", "--num-classes", "10",
                   "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225",
                   "--dataset", "imagenet", "--image-size", "224", "-o", out)
    if check(p.returncode == 0, f"export --torchvision resnet18 exits 0 {p.stderr.strip()}"):
        ref = torchvision.models.resnet18(num_classes=10).state_dict()
        entries, meta = safetensors.header(out)
        check(list(entries) == list(ref), "torchvision resnet18: names and order are "
                                          "torchvision's")
        check(all(entries[k] == (expected_dtype(k, "F32"), list(v.shape))
                  for k, v in ref.items() if k in entries),
              "torchvision resnet18: shapes as torchvision's, F32 (I64 counters)")
        want = {"format": "tmix-teacher", "arch": "resnet18", "num_classes": "10",
                "in_channels": "3", "mean": "[0.485, 0.456, 0.406]",
                "std": "[0.229, 0.224, 0.225]", "dataset": "imagenet", "image_size": "224"}
        check(meta == want, f"torchvision resnet18: metadata as expected"
                            f"{'' if meta == want else f' (got {meta})'}")

    # A whole torchvision module, torch.save'd, with its values.
    model = torchvision.models.resnet18(num_classes=5)
    src = os.path.join(tmp, "tv_module.pt")
    torch.save(model, src)
    p = run_export("--arch", "resnet18", "--state-dict", src, "-o", out)
    if check(p.returncode == 0, f"export of a saved torchvision module exits 0 {p.stderr.strip()}"):
        check_file(out, model.state_dict(), {"format": "tmix-teacher", "arch": "resnet18",
                                             "num_classes": "5", "in_channels": "3"},
                   "F32", "saved torchvision module")


def test_checkpoint(tmp):
    model = cifar_resnet20(10, 3, seed=1)
    sd = model.state_dict()
    ckpt = os.path.join(tmp, "r20.pt")
    torch.save({"epoch": 7, "best_prec1": 91.0,
                "state_dict": OrderedDict(("module." + k, v) for k, v in sd.items())}, ckpt)
    meta = {"format": "tmix-teacher", "arch": "cifar_resnet20", "num_classes": "10",
            "in_channels": "3", "mean": "[0.4914, 0.4822, 0.4465]",
            "std": "[0.247, 0.2435, 0.2616]", "dataset": "cifar10", "image_size": "32"}
    norm = ["--mean", "0.4914,0.4822,0.4465", "--std", "0.2470,0.2435,0.2616",
            "--dataset", "cifar10", "--image-size", "32"]
    for dtype, st_dtype in (("f32", "F32"), ("f16", "F16"), ("bf16", "BF16")):
        out = os.path.join(tmp, f"r20_{dtype}.safetensors")
        p = run_export("--arch", "cifar_resnet20", "--state-dict", ckpt, "--dtype", dtype,
                       *norm, "-o", out)
        if check(p.returncode == 0, f"export cifar_resnet20 checkpoint --dtype {dtype} exits 0 "
                                    f"{p.stderr.strip()}"):
            check_file(out, sd, meta, st_dtype, f"cifar_resnet20 {dtype}")

    # One input channel, a plain state_dict, num_classes and in_channels inferred.
    gray = cifar_resnet20(4, 1, seed=2)
    ckpt1 = os.path.join(tmp, "r20_gray.pt")
    torch.save(gray.state_dict(), ckpt1)
    out = os.path.join(tmp, "r20_gray.safetensors")
    p = run_export("--arch", "cifar_resnet20", "--state-dict", ckpt1, "-o", out)
    if check(p.returncode == 0, f"export grayscale cifar_resnet20 exits 0 {p.stderr.strip()}"):
        check_file(out, gray.state_dict(), {"format": "tmix-teacher", "arch": "cifar_resnet20",
                                            "num_classes": "4", "in_channels": "1"},
                   "F32", "grayscale cifar_resnet20")

    # The function gives the same file as the command.
    out2 = os.path.join(tmp, "r20_fn.safetensors")
    export.export(model, "cifar_resnet20", out2, mean=[0.4914, 0.4822, 0.4465],
                  std=[0.2470, 0.2435, 0.2616], dataset="cifar10", image_size=32)
    with open(out2, "rb") as a, open(os.path.join(tmp, "r20_f32.safetensors"), "rb") as b:
        check(a.read() == b.read(), "export.export(model, ...) writes the same bytes as the "
                                    "command")
    return ckpt


def test_bad_inputs(tmp, ckpt):
    sd = cifar_resnet20(10, 3, seed=1).state_dict()

    def refused(what, args, needles):
        out = os.path.join(tmp, "refused.safetensors")
        if os.path.exists(out):
            os.remove(out)
        p = run_export(*args, "-o", out)
        named = all(n in p.stderr for n in needles)
        check(p.returncode == 2 and named and not os.path.exists(out),
              f"{what}: exit {p.returncode} (want 2), message names {needles}: "
              f"{p.stderr.strip().splitlines()[:1]}")

    def saved(name, d):
        path = os.path.join(tmp, name)
        torch.save(d, path)
        return path

    missing = OrderedDict((k, v) for k, v in sd.items() if k != "layer2.1.bn2.running_var")
    refused("missing tensor", ["--arch", "cifar_resnet20", "--state-dict",
                               saved("missing.pt", missing)],
            ["missing tensor 'layer2.1.bn2.running_var'", "missing.pt"])
    extra = OrderedDict(sd)
    extra["layer2.0.shortcut.0.weight"] = torch.zeros(32, 16, 1, 1)
    refused("extra tensor", ["--arch", "cifar_resnet20", "--state-dict",
                             saved("extra.pt", extra)],
            ["unexpected tensor 'layer2.0.shortcut.0.weight'", "extra.pt"])
    shaped = OrderedDict(sd)
    shaped["layer3.2.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    refused("wrong shape", ["--arch", "cifar_resnet20", "--state-dict",
                            saved("shaped.pt", shaped)],
            ["'layer3.2.conv1.weight'", "[64, 64, 1, 1]"])
    refused("wrong arch", ["--arch", "cifar_resnet18", "--state-dict", ckpt],
            ["missing tensor 'layer2.0.shortcut.0.weight'",
             "unexpected tensor 'layer1.2.conv1.weight'", "--arch cifar_resnet20"])
    refused("unknown arch", ["--arch", "resnet101", "--state-dict", ckpt], ["resnet101"])
    refused("--num-classes disagrees", ["--arch", "cifar_resnet20", "--state-dict", ckpt,
                                        "--num-classes", "100"], ["'linear.weight'", "100"])
    refused("--mean of 2 values", ["--arch", "cifar_resnet20", "--state-dict", ckpt,
                                   "--mean", "0.5,0.5"], ["--mean"])
    refused("no such file", ["--arch", "cifar_resnet20", "--state-dict",
                             os.path.join(tmp, "nope.pt")], ["nope.pt"])
    refused("not a state_dict", ["--arch", "cifar_resnet20", "--state-dict",
                                 saved("list.pt", [1, 2, 3])], ["list.pt", "list"])
    refused("--torchvision with a CIFAR arch", ["--arch", "wrn28_10", "--torchvision"],
            ["wrn28_10"])


def tmixd_mix(tmixd, teacher, images, labels, tmp):
    src, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
    if os.path.exists(out):
        os.remove(out)
    safetensors.save(src, {"images": images.numpy(), "labels": labels.numpy()})
    p = run([tmixd, "mix", "--teacher", teacher, "--method", "none", "--n", "2",
             "--in", src, "--out", out], check=False)
    return p, (safetensors.load(out)[0] if p.returncode == 0 else None)


def test_tmixd(tmixd, tmp, ckpt):
    model = cifar_resnet20(10, 3, seed=1)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 3, 32, 32, generator=g), torch.tensor([2, 7])
    for dtype, cast in (("f32", torch.float32), ("f16", torch.float16),
                        ("bf16", torch.bfloat16)):
        teacher = os.path.join(tmp, f"r20_{dtype}.safetensors")
        p, got = tmixd_mix(tmixd, teacher, x, y, tmp)
        if not check(p.returncode == 0, f"tmixd mix accepts the exported {dtype} "
                                         f"cifar_resnet20: {p.stdout.strip()[-300:]}"):
            continue
        # The reference: the same weights as stored (BF16 widens exactly), in float64.
        ref = cifar_resnet20(10, 3, seed=1)
        ref.load_state_dict({k: v.to(cast).to(v.dtype) if v.is_floating_point() else v
                             for k, v in model.state_dict().items()})
        with torch.no_grad():
            want = ref.double()(x.double()).numpy()
        logits = got.get("logits")
        shape = None if logits is None else list(logits.shape)
        err = rel_error(logits, want) if logits is not None else float("inf")
        check(err <= 1e-4, f"tmixd mix on the {dtype} teacher: logits {shape} match PyTorch "
                           f"(rel error {err:.3g})")

    # tmixd names the tensor it does not expect, or misses.
    tensors, meta = safetensors.load(os.path.join(tmp, "r20_f32.safetensors"))
    for what, edit, needle in (
            ("a tensor too many", lambda t: t.update({"layer4.0.conv1.weight":
                                                      np.zeros((1,), np.float32)}),
             "layer4.0.conv1.weight"),
            ("a tensor too few", lambda t: t.pop("layer3.1.bn1.bias"), "layer3.1.bn1.bias")):
        t = OrderedDict(tensors)
        edit(t)
        bad = os.path.join(tmp, "bad_teacher.safetensors")
        safetensors.save(bad, t, meta)
        p, _ = tmixd_mix(tmixd, bad, x, y, tmp)
        check(p.returncode != 0 and needle in p.stdout and "bad_teacher.safetensors" in p.stdout,
              f"tmixd mix refuses a teacher with {what}, naming the file and '{needle}' "
              f"(exit {p.returncode}: {p.stdout.strip().splitlines()[-1:]})")


def main():
    tmixd = os.environ.get("TMIXD")
    if not tmixd or not os.access(tmixd, os.X_OK):
        sys.exit(f"test_export: TMIXD must name the tmixd binary (got {tmixd!r})")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    with tempfile.TemporaryDirectory(prefix="tmix-export-") as tmp:
        test_torchvision(tmp)
        ckpt = test_checkpoint(tmp)
        test_bad_inputs(tmp, ckpt)
        test_tmixd(tmixd, tmp, ckpt)
    print(f"{len(FAILS)} failed" if FAILS else "all passed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
