"""The TransformMix mixing module in PyTorch, and one batch of mixing for every method.

`MixingModule` is the definition that tmix loads and runs: its state_dict names and shapes are
those of a `tmix-module` file (models/README.md), so a module trained here is served by
`tmixd`, and one searched by `tmixd` can be inspected or fine-tuned here. `mix` is the
reference of `tmixd mix`: it returns every intermediate under the names of that command's
OUT file.

    import tmix.module as tm
    module = tm.MixingModule(n=2)
    out = tm.mix(teacher, module, images, labels, perm, lam, noise)
    out["loss"].backward()            # trains the STN, the MPN and the temperature
    tm.save(module, "module.safetensors", alpha=1.0, dataset="cifar10",
            teacher_arch="cifar_resnet18")

A batch is mixed as in the TransformMix paper (Cheung & Yeung): sample b is mixed with the
n - 1 partners perm[0][b], perm[1][b], ...; the spatial transformer (STN) predicts an affine
warp of each source from the sources' class activation maps (CAMs), the mixing weights λ and
a noise map; the mask prediction network (MPN) predicts a soft mask per warped source from
the warped CAMs and λ; the mixed image is the mask-weighted sum of the warped sources and its
label the λ-weighted sum of the sources' labels.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from tmix import safetensors, zoo

METHODS = ("none", "mixup", "cutmix", "softmax-cam", "stn-only", "mpn-only", "transformmix")

# Which part of the mixing module each method uses (the rest is fixed, see `mix`).
_USES_STN = ("stn-only", "transformmix")
_USES_MPN = ("mpn-only", "transformmix")


class STN(nn.Module):
    """Spatial transformer: predicts one 2x3 affine matrix per source.

    Input (B, 2n+1, S, S): the n source CAMs, the n λ maps, one noise map. Output θ (B, n, 2, 3),
    in the normalised coordinates of `F.affine_grid` (align_corners=False).
    """

    def __init__(self, n, size):
        super().__init__()
        self.n = n
        side = ((size - 6) // 2 - 4) // 2  # after conv 7, pool 2, conv 5, pool 2
        self.loc = nn.Sequential(
            nn.Conv2d(2 * n + 1, 8, 7), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(8, 10, 5), nn.MaxPool2d(2), nn.ReLU())
        self.fc = nn.Sequential(nn.Linear(10 * side * side, 32), nn.ReLU(), nn.Linear(32, 6 * n))

    def reset_identity(self):
        """Makes the last layer predict the identity warp for every input."""
        with torch.no_grad():
            self.fc[2].weight.zero_()
            identity = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
            self.fc[2].bias.copy_(identity.repeat(self.n))

    def forward(self, x):
        return self.fc(self.loc(x).flatten(1)).view(x.shape[0], self.n, 2, 3)


class MPN(nn.Module):
    """Mask prediction network: one soft mask per source, softmax(h / τ) over the sources.

    Input (B, 2n, H, W): the n warped CAMs, then the n λ maps. Output (B, n, H, W), summing to 1
    over the sources at every pixel. τ = exp(log_tau) is learned.
    """

    def __init__(self, n):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2 * n, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, n, 1))
        self.log_tau = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.softmax(self.net(x) / self.log_tau.exp(), dim=1)


class MixingModule(nn.Module):
    """The TransformMix mixing module of n sources: `stn` and `mpn`.

    It has no forward of its own: `mix` runs it (with the teacher's CAMs and the warp), and
    `theta` and `masks` are its two learned steps.

    n: sources per mixed image (2 or 3). stn_size: the resolution S the STN runs at (CAMs are
    resized to S x S, so one module serves any image size). A fresh module has PyTorch's
    default initialisation, then the STN's last layer predicts the identity and τ = 1.
    """

    def __init__(self, n=2, stn_size=32):
        super().__init__()
        if n not in (2, 3):  # what tmixd serves
            raise ValueError(f"MixingModule: n = {n}, expected 2 or 3")
        if not 18 <= stn_size <= 4096:  # 18: the STN's last feature map keeps one pixel
            raise ValueError(f"MixingModule: stn_size = {stn_size}, expected 18 to 4096")
        self.n = n
        self.stn_size = stn_size
        self.stn = STN(n, stn_size)
        self.mpn = MPN(n)
        self.stn.reset_identity()

    def theta(self, cams, lam, noise):
        """θ (B, n, 2, 3) from the source CAMs (B, n, H, W), λ (B, n), noise (B, 1, S, S)."""
        return self.stn(stn_input(cams, lam, noise, self.stn_size))

    def masks(self, warped_cams, lam):
        """Masks (B, n, H, W) from the warped CAMs (B, n, H, W) and λ (B, n)."""
        return self.mpn(mpn_input(warped_cams, lam))


def save(module, path, alpha, dataset, teacher_arch):
    """Writes a `tmix-module` file: the tensors as F32, and what the module was searched for.

    alpha: the Dirichlet / Beta concentration of λ it was trained with (tmixd draws λ with
    it unless told otherwise); dataset and teacher_arch: informative names.
    """
    metadata = {"format": "tmix-module", "n": str(module.n), "stn_size": str(module.stn_size),
                "alpha": repr(float(alpha)), "dataset": str(dataset),
                "teacher_arch": str(teacher_arch)}
    state = module.state_dict()
    # In the order of DESIGN.md and of tmixd's own files: log_tau last.
    names = sorted(state, key=lambda name: name == "mpn.log_tau")
    safetensors.save(path, {k: state[k].detach().to("cpu", torch.float32) for k in names},
                     metadata)


def load(path):
    """Reads a `tmix-module` file: returns (MixingModule, its metadata, a dict of strings).

    Errors (ValueError) name the file and the metadata key or tensor at fault, as tmixd's.
    """
    tensors, metadata = safetensors.load(path)
    if metadata.get("format") != "tmix-module":
        raise ValueError(f"{path}: metadata 'format' is {metadata.get('format')!r}, "
                         "expected 'tmix-module'")
    sizes = []
    for key in ("n", "stn_size"):
        try:
            sizes.append(int(metadata[key]))
        except KeyError:
            raise ValueError(f"{path}: metadata has no '{key}'") from None
        except ValueError:
            raise ValueError(f"{path}: metadata '{key}' = {metadata[key]!r} is not an "
                             "integer") from None
    try:
        module = MixingModule(*sizes)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    n, size = sizes
    state = module.state_dict()
    for name in tensors:
        if name not in state:
            raise ValueError(f"{path}: tensor '{name}' is not part of a mixing module")
    for name, want in state.items():
        if name not in tensors:
            raise ValueError(f"{path}: tensor '{name}' is missing")
        t = torch.from_numpy(tensors[name])
        if name == "mpn.log_tau" and t.dim() == 0:
            t = t.view(1)
        if t.shape != want.shape or not t.is_floating_point():
            raise ValueError(f"{path}: tensor '{name}' is {t.dtype} {list(t.shape)}, "
                             f"expected float {list(want.shape)} (n = {n}, stn_size = {size})")
        state[name] = t.float()
    module.load_state_dict(state)
    return module, metadata


def lambda_maps(lam, height, width):
    """λ (B, n) broadcast to n constant maps (B, n, height, width)."""
    return lam[:, :, None, None].expand(-1, -1, height, width)


def stn_input(cams, lam, noise, size):
    """(B, 2n+1, S, S): the CAMs (B, n, H, W) resized to S x S, the λ maps, the noise."""
    small = F.interpolate(cams, size=(size, size), mode="bilinear", align_corners=False)
    return torch.cat([small, lambda_maps(lam, size, size), noise], dim=1)


def mpn_input(warped_cams, lam):
    """(B, 2n, H, W): the warped CAMs (B, n, H, W), then the λ maps at image size."""
    return torch.cat([warped_cams, lambda_maps(lam, *warped_cams.shape[2:])], dim=1)


def warp(x, theta):
    """Warps x (B, n, C, H, W) by θ (B, n, 2, 3): bilinear, zero padding, align_corners=False."""
    b, n, c, h, w = x.shape
    grid = F.affine_grid(theta.reshape(b * n, 2, 3), [b * n, c, h, w], align_corners=False)
    out = F.grid_sample(x.reshape(b * n, c, h, w), grid, mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out.view(b, n, c, h, w)


def blend(masks, warped):
    """Σ_k masks[:, k] ⊙ warped[:, k]: (B, n, H, W) and (B, n, C, H, W) to (B, C, H, W)."""
    return (masks.unsqueeze(2) * warped).sum(dim=1)


def identity_theta(batch, n, like):
    """θ (batch, n, 2, 3) of the identity warp, in the dtype and device of `like`."""
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=like.dtype, device=like.device)
    return eye.expand(batch, n, 2, 3)


def box_masks(boxes, n, height, width, like):
    """CutMix masks (B, 2, H, W): source 2 inside its box, source 1 elsewhere.

    boxes (B, 4) int64: y0, x0, y1, x1 of each box, half-open and already inside the image.
    """
    if n != 2:
        raise ValueError(f"mix: method cutmix mixes 2 sources, not {n}")
    if boxes is None:
        raise ValueError("mix: method cutmix needs boxes (B, 4): y0, x0, y1, x1")
    ys = torch.arange(height, device=boxes.device).view(1, height, 1)
    xs = torch.arange(width, device=boxes.device).view(1, 1, width)
    y0, x0, y1, x1 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    inside = ((ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)).to(like.dtype)
    return torch.stack([1 - inside, inside], dim=1)


def soft_label_loss(logits, labels, weights):
    """Mean over the batch of -Σ_j y_j log softmax(logits)_j, y = Σ_k weights_k onehot(labels_k).

    logits (B, classes), labels (B, n) int64, weights (B, n).
    """
    y = torch.zeros_like(logits).scatter_add_(1, labels, weights.to(logits.dtype))
    return -(y * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def mix(teacher, module, images, labels, perm, lam, noise, method="transformmix", boxes=None,
        hook=None, loss=True):
    """Mixes one batch as `tmixd mix` does and returns every intermediate.

    teacher: a zoo network (tmix.zoo.build), frozen and in eval mode; its CAMs are constants
        and its prediction on the mixed batch gives the loss, whose gradient flows through it.
    module: a MixingModule, or None for the methods that use none (none, mixup, cutmix,
        softmax-cam; n is then perm's rows + 1).
    images (B, C, H, W) normalised; labels (B,) int64; perm (n-1, B) int64, the partners;
    lam (B, n) mixing weights summing to 1; noise (B, 1, S, S) (S = module.stn_size) or None
    when no STN runs; boxes (B, 4) int64 (y0, x0, y1, x1), for cutmix only.
    hook: optional hook(name, tensor) -> tensor, called on each float intermediate as it is
        made (cams, theta, warped, warped_cams, masks, weights, mixed, logits); what it returns
        is used from there on. It lets a caller watch the steps, or substitute values, as
        the parity test does to check each step on tmixd's own inputs.
    loss: False stops at the mixed batch: no teacher pass on it, no logits or loss (as
        `tmixd mix` without --grads, and as serving mixes).

    Returns a dict: cams (B, 1, H, W), sources (B, n) int64 (column 0 = the sample itself),
    theta (B, n, 2, 3), warped (B, n, C, H, W), warped_cams (B, n, 1, H, W), masks (B, n, H, W),
    mixed (B, C, H, W), weights (B, n), labels (B, n) int64, and with loss logits (B, classes)
    and loss (a scalar).
    Methods without a learned part use the identity θ and fixed masks (models/README.md).
    """
    if method not in METHODS:
        raise ValueError(f"mix: unknown method {method!r}; one of {', '.join(METHODS)}")
    if module is None and (method in _USES_STN or method in _USES_MPN):
        raise ValueError(f"mix: method {method} needs a mixing module")
    b, _, h, w = images.shape
    n = perm.shape[0] + 1
    if module is not None and module.n != n:
        raise ValueError(f"mix: the module mixes {module.n} sources but perm has {n - 1} rows")
    lam = lam.to(images.dtype)

    step = hook or (lambda name, t: t)
    with torch.no_grad():
        cams = step("cams", zoo.cams(teacher, images, labels, (h, w)))  # (B, 1, H, W)
    own = torch.arange(b, device=perm.device).view(1, b)
    sources = torch.cat([own, perm], dim=0).t().contiguous()  # (B, n)
    source_cams = cams[sources, 0]  # (B, n, H, W)

    if method in _USES_STN:
        theta = module.theta(source_cams, lam, noise.to(images.dtype))
    else:
        theta = identity_theta(b, n, images)
    theta = step("theta", theta)
    warped = step("warped", warp(images[sources], theta))
    warped_cams = step("warped_cams", warp(source_cams.unsqueeze(2), theta))

    weights = lam
    if method in _USES_MPN:
        masks = module.masks(warped_cams.squeeze(2), lam)
    elif method in ("mixup", "stn-only"):
        masks = lambda_maps(lam, h, w)
    elif method == "none":  # mixup with λ = (1, 0, ...)
        weights = torch.zeros_like(lam)
        weights[:, 0] = 1
        masks = lambda_maps(weights, h, w)
    elif method == "cutmix":
        masks = box_masks(boxes, n, h, w, images)
        weights = masks.mean(dim=(2, 3))
    else:  # softmax-cam: the CAMs themselves decide, τ = 1
        masks = torch.softmax(warped_cams.squeeze(2), dim=1)
        weights = masks.mean(dim=(2, 3))
    masks, weights = step("masks", masks), step("weights", weights)

    mixed = step("mixed", blend(masks, warped))
    mixed_labels = labels[sources]
    out = {
        "cams": cams, "sources": sources, "theta": theta, "warped": warped,
        "warped_cams": warped_cams, "masks": masks, "mixed": mixed, "weights": weights,
        "labels": mixed_labels,
    }
    if loss:
        out["logits"] = step("logits", teacher(mixed))
        out["loss"] = soft_label_loss(out["logits"], mixed_labels, weights)
    return out
