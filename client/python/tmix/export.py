"""Teacher files from PyTorch: `python -m tmix.export` (models/README.md, "Teacher files").

    python -m tmix.export --arch cifar_resnet20 --state-dict ckpt.pt -o teacher.safetensors \\
        --mean 0.4914,0.4822,0.4465 --std 0.2470,0.2435,0.2616 --dataset cifar10
    python -m tmix.export --arch resnet50 --torchvision --pretrained -o resnet50.safetensors

The state_dict is loaded into tmix.zoo.build(arch, num_classes, in_channels) with
strict=True first, so a file that tmixd would refuse is refused here, naming the tensors.
num_classes and in_channels default to the shapes of the classifier and the first conv.
Exit status: 0 written, 2 bad input (message on stderr).

As a function:

    export(source, arch, out, num_classes=None, in_channels=None, mean=None, std=None,
           dataset=None, image_size=None, dtype="f32") -> metadata dict
        source: an nn.Module or a state_dict (a 'module.' prefix is stripped).
    load_state_dict(path) -> state_dict of a torch.save'd state_dict, whole module, or a dict
        holding one under 'state_dict' or 'model'.
Both raise ExportError (a ValueError) on bad input.
"""
import argparse
import json
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn

from . import safetensors, zoo

__all__ = ["ExportError", "export", "load_state_dict", "main"]

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
SHOW = 8  # names listed per kind of mismatch; the rest are counted


class ExportError(ValueError):
    pass


def _strip_prefix(sd):
    """Drops the 'module.' of DataParallel / DistributedDataParallel checkpoints."""
    if sd and all(k.startswith("module.") for k in sd):
        return OrderedDict((k[len("module."):], v) for k, v in sd.items())
    return sd


def _as_state_dict(obj, where):
    if isinstance(obj, nn.Module):
        return _strip_prefix(OrderedDict(obj.state_dict()))
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], (dict, nn.Module)):
                return _as_state_dict(obj[key], f"{where}['{key}']")
        bad = [k for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
        if bad:
            raise ExportError(f"{where}: not a state_dict: entry {bad[0]!r} is not a "
                              "tensor (and there is no 'state_dict' or 'model' key)")
        return _strip_prefix(OrderedDict(obj))
    raise ExportError(f"{where}: holds a {type(obj).__name__}, not a state_dict or nn.Module")


def load_state_dict(path):
    try:
        obj = torch.load(path, map_location="cpu")
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file") from None
    except Exception as e:  # pickle and zip errors come in many types
        raise ExportError(f"{path}: cannot be read by torch.load: {e}") from None
    return _as_state_dict(obj, path)


def _classifier_name(arch):
    return "fc" if arch.startswith("resnet") or arch == "wrn28_10" else "linear"


def _infer(sd, arch, key, axis, what, where):
    t = sd.get(key)
    if t is None or t.dim() <= axis:
        raise ExportError(f"{where}: cannot infer {what}: tensor '{key}' of arch {arch} is "
                          "missing or malformed (wrong --arch?)")
    return int(t.shape[axis])


def _guess(sd, arch):
    """Names the zoo arch whose tensor names sd has, if another one does."""
    names = {k for k in sd if not k.endswith(".num_batches_tracked")}
    for other in zoo.ARCHS:
        if other != arch and names == {k for k in zoo.build(other, 10).state_dict()
                                       if not k.endswith(".num_batches_tracked")}:
            return f"; its names are those of --arch {other}"
    return ""


def _check_names(sd, model, arch, where):
    """Compares sd with the zoo model: every fault, each naming its tensor."""
    want = model.state_dict()
    optional = {k for k in want if k.endswith(".num_batches_tracked")}
    missing = [k for k in want if k not in sd and k not in optional]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"'{k}' is {list(sd[k].shape)}, {arch} needs {list(want[k].shape)}"
              for k in want if k in sd and sd[k].shape != want[k].shape]
    faults = []
    for title, names, quote in (("missing tensor", missing, True),
                                ("unexpected tensor", unexpected, True),
                                ("wrong shape:", shapes, False)):
        for n in names[:SHOW]:
            faults.append(f"{where}: {title} '{n}'" if quote else f"{where}: {title} {n}")
        if len(names) > SHOW:
            faults.append(f"{where}: ... and {len(names) - SHOW} more {title.rstrip(':')}s")
    if faults:
        raise ExportError("\n".join(faults) + f"\n{where}: does not match arch {arch} "
                          f"({len(missing)} missing, {len(unexpected)} unexpected, "
                          f"{len(shapes)} wrong shapes)" + _guess(sd, arch))
    bad = [k for k, v in sd.items() if not torch.is_tensor(v)
           or not (v.is_floating_point() or k.endswith(".num_batches_tracked"))]
    if bad:
        raise ExportError(f"{where}: tensor '{bad[0]}' is not floating point")
    model.load_state_dict(sd, strict=not optional.difference(sd))


def _channels(values, n, what):
    if values is None:
        return None
    values = [float(v) for v in values]
    if len(values) != n:
        raise ExportError(f"--{what} has {len(values)} values, the teacher takes {n} "
                          "input channels")
    if what == "std" and any(v <= 0 for v in values):
        raise ExportError(f"--std values must be positive, got {values}")
    return values


def export(source, arch, out, num_classes=None, in_channels=None, mean=None, std=None,
           dataset=None, image_size=None, dtype="f32", where=None):
    """Checks source against zoo arch and writes the teacher file out; returns its metadata."""
    if arch not in zoo.ARCHS:
        raise ExportError(f"unknown --arch {arch!r} (known: {', '.join(zoo.ARCHS)})")
    if dtype not in DTYPES:
        raise ExportError(f"unknown --dtype {dtype!r} (f32, f16 or bf16)")
    where = where or ("the model" if isinstance(source, nn.Module) else "the state_dict")
    sd = _as_state_dict(source, where)
    fc = _classifier_name(arch)
    k = _infer(sd, arch, fc + ".weight", 0, "num_classes", where)
    c = _infer(sd, arch, "conv1.weight", 1, "in_channels", where)
    if num_classes is not None and num_classes != k:
        raise ExportError(f"{where}: --num-classes {num_classes} but '{fc}.weight' has {k} rows")
    if in_channels is not None and in_channels != c:
        raise ExportError(f"{where}: --in-channels {in_channels} but 'conv1.weight' takes "
                          f"{c} channels")
    if c not in (1, 3):
        raise ExportError(f"{where}: 'conv1.weight' takes {c} input channels; tmix teachers "
                          "take 1 or 3")
    mean, std = _channels(mean, c, "mean"), _channels(std, c, "std")
    if image_size is not None and image_size < 1:
        raise ExportError(f"--image-size must be positive, got {image_size}")
    _check_names(sd, zoo.build(arch, k, c), arch, where)

    meta = {"format": "tmix-teacher", "arch": arch, "num_classes": str(k), "in_channels": str(c)}
    if mean is not None:
        meta["mean"] = json.dumps(mean)
    if std is not None:
        meta["std"] = json.dumps(std)
    if dataset:
        meta["dataset"] = dataset
    if image_size is not None:
        meta["image_size"] = str(image_size)
    tensors = OrderedDict()
    for name, t in sd.items():
        t = t.detach().cpu()
        tensors[name] = t.to(torch.int64) if name.endswith(".num_batches_tracked") \
            else t.to(DTYPES[dtype])
    try:
        safetensors.save(out, tensors, meta)
    except OSError as e:
        raise ExportError(f"{out}: cannot write: {e.strerror}") from None
    return meta


def _torchvision_source(arch, pretrained, num_classes, in_channels):
    if not arch.startswith("resnet"):
        raise ExportError(f"--torchvision needs a torchvision arch (resnet18/34/50), not {arch}")
    if not pretrained:
        return zoo.build(arch, num_classes or 1000, in_channels or 3)
    import torchvision
    if num_classes not in (None, 1000) or in_channels not in (None, 3):
        raise ExportError("--pretrained weights have 1000 classes and 3 input channels")
    weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    if not os.path.exists(cached):
        raise ExportError(f"--pretrained: {cached} is not there; fetch {weights.url} into it "
                          "(no download is attempted)")
    return getattr(torchvision.models, arch)(weights=weights)


def _floats(text):
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tmix.export",
                                description="Write a tmix teacher file (safetensors) from a "
                                            "PyTorch state_dict or a torchvision model.")
    p.add_argument("--arch", required=True, help="zoo name: " + ", ".join(zoo.ARCHS))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--state-dict", metavar="FILE",
                     help="torch.save'd state_dict, nn.Module, or dict with 'state_dict'/'model'")
    src.add_argument("--torchvision", action="store_true",
                     help="a fresh torchvision model of --arch")
    p.add_argument("--pretrained", action="store_true",
                   help="with --torchvision: torchvision's ImageNet weights, if cached locally")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--in-channels", type=int, choices=(1, 3))
    p.add_argument("--mean", type=_floats, help="per-channel mean, comma-separated")
    p.add_argument("--std", type=_floats, help="per-channel std, comma-separated")
    p.add_argument("--dataset", help="informative: the data set it was trained on")
    p.add_argument("--image-size", type=int, help="informative: the training image size")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="f32",
                   help="storage type of the float tensors (default f32)")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="teacher file to write")
    a = p.parse_args(argv)
    try:
        if a.pretrained and not a.torchvision:
            raise ExportError("--pretrained goes with --torchvision")
        if a.torchvision:
            source, where = _torchvision_source(a.arch, a.pretrained, a.num_classes,
                                                a.in_channels), f"torchvision {a.arch}"
            if a.pretrained:  # the weights were trained on normalised ImageNet
                a.mean = a.mean or IMAGENET_MEAN
                a.std = a.std or IMAGENET_STD
                a.dataset = a.dataset or "imagenet"
                a.image_size = a.image_size or 224
        else:
            source, where = load_state_dict(a.state_dict), a.state_dict
        meta = export(source, a.arch, a.out, a.num_classes, a.in_channels, a.mean, a.std,
                      a.dataset, a.image_size, a.dtype, where=where)
    except ExportError as e:
        print(f"tmix.export: {e}", file=sys.stderr)
        return 2
    print(f"tmix.export: wrote {a.out} ({meta['arch']}, {meta['num_classes']} classes, "
          f"{meta['in_channels']} channels, {a.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
