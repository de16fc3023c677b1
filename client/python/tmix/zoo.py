"""The teacher zoo in PyTorch, with exactly the state_dict names tmix reads (models/README.md).

API:

    ARCHS                                   the zoo names, in README order
    build(arch, num_classes, in_channels=3) -> nn.Module (train mode, as constructed)
    features(model, x) -> (B, C, h, w)      the CAM feature map (README "CAM features")
    classifier(model) -> nn.Linear          the final layer (`fc` or `linear`)
    logits(model, x) -> (B, K)              same as model(x)
    cams(model, x, labels, size=None) -> (B, 1, H, W)
        relu(sum_c W[label_b, c] * F[b, c]) (no bias), min-max normalised per image with
        max(max - min, 1e-12), then resized bilinearly (align_corners=False) to size, which
        defaults to the image size (H, W) of x. Runs in the model's dtype.
    randomize_bn(model, seed)               random running mean/var, weight, bias in every BN
    arch_of(model) -> str                   the zoo name a model was built as

Architectures (write-ups of the upstream definitions, names and forward kept):
- resnet18/34/50: torchvision.models.resnetXX(num_classes=K); conv1 replaced by a 1-channel
  7x7/2 conv when in_channels = 1 (same names).
- cifar_resnet18, preactresnet18: kuangliu/pytorch-cifar models/resnet.py, preact_resnet.py.
- wrn28_10: xternalz/WideResNet-pytorch wideresnet.py, WideResNet(28, K, widen_factor=10).
- cifar_resnet20: akamaster/pytorch_resnet_cifar10 resnet.py, resnet20() with option A.
All CIFAR nets pool globally (F.adaptive_avg_pool2d(out, 1)) instead of the upstream fixed
4x4 / 8x8 window: the same at 32x32, and other image sizes work.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ARCHS", "build", "features", "classifier", "logits", "cams", "randomize_bn",
           "arch_of"]

ARCHS = ["resnet18", "resnet34", "resnet50", "cifar_resnet18", "preactresnet18", "wrn28_10",
         "cifar_resnet20"]


# --- kuangliu/pytorch-cifar: ResNet18 -----------------------------------------------------

class _Stages(nn.Module):
    """What kuangliu's and akamaster's ResNets share (each repeats it upstream): stages of
    blocks built by _make_layer, global pooling and the classifier `linear`. A subclass
    defines features(x)."""

    def _make_layer(self, block, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.linear(out.flatten(1))

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride,
                          bias=False),
                nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class ResNet(_Stages):
    def __init__(self, block, num_blocks, num_classes=10, in_channels=3):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def features(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        return self.layer4(out)


# --- kuangliu/pytorch-cifar: PreActResNet18 -----------------------------------------------

class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride,
                          bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        # The projection shortcut takes the pre-activated input, the identity the raw one.
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(_Stages):
    def __init__(self, block, num_blocks, num_classes=10, in_channels=3):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def features(self, x):
        # The upstream net has no BN + ReLU after layer4: the features are its raw output.
        out = self.conv1(x)
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        return self.layer4(out)


# --- xternalz/WideResNet-pytorch: WideResNet(28, 10) ---------------------------------------

class WideBasicBlock(nn.Module):  # upstream name: BasicBlock
    def __init__(self, in_planes, out_planes, stride, dropRate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1,
                               bias=False)
        self.droprate = dropRate
        self.equalInOut = in_planes == out_planes
        self.convShortcut = None if self.equalInOut else nn.Conv2d(
            in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)

    def forward(self, x):
        # Upstream quirk kept: when the widths differ, x itself is replaced by relu(bn1(x)),
        # so the 1x1 shortcut sees the pre-activated input; otherwise the identity is raw x.
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
            out = x
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class NetworkBlock(nn.Module):
    def __init__(self, nb_layers, in_planes, out_planes, block, stride, dropRate=0.0):
        super().__init__()
        self.layer = nn.Sequential(*[
            block(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1,
                  dropRate) for i in range(int(nb_layers))])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, num_classes, widen_factor=1, dropRate=0.0, in_channels=3):
        super().__init__()
        nChannels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        assert (depth - 4) % 6 == 0
        n = (depth - 4) // 6
        block = WideBasicBlock
        self.conv1 = nn.Conv2d(in_channels, nChannels[0], kernel_size=3, stride=1, padding=1,
                               bias=False)
        self.block1 = NetworkBlock(n, nChannels[0], nChannels[1], block, 1, dropRate)
        self.block2 = NetworkBlock(n, nChannels[1], nChannels[2], block, 2, dropRate)
        self.block3 = NetworkBlock(n, nChannels[2], nChannels[3], block, 2, dropRate)
        self.bn1 = nn.BatchNorm2d(nChannels[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(nChannels[3], num_classes)
        self.nChannels = nChannels[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    def features(self, x):
        out = self.conv1(x)
        out = self.block1(out)
        out = self.block2(out)
        out = self.block3(out)
        return self.relu(self.bn1(out))

    def forward(self, x):
        out = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.fc(out.flatten(1))


# --- akamaster/pytorch_resnet_cifar10: resnet20 (option A) -------------------------------

class ShortcutA(nn.Module):
    """Option A shortcut (upstream: a LambdaLayer around the same expression; a class here
    so that whole models can be pickled): every second pixel, channels zero-padded by pad on
    BOTH sides, so input channel i lands on output channel i + pad. No parameters."""

    def __init__(self, pad):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0)


class AkaBasicBlock(BasicBlock):  # upstream name: BasicBlock
    """kuangliu's BasicBlock (the same forward) with the option A shortcut where the shape
    changes."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__(in_planes, planes, stride)
        if stride != 1 or in_planes != planes:
            self.shortcut = ShortcutA(planes // 4)


class CifarResNet(_Stages):  # upstream name: ResNet
    def __init__(self, block, num_blocks, num_classes=10, in_channels=3):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(block, 16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 64, num_blocks[2], stride=2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight)

    def features(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        return self.layer3(out)


# --- the zoo ------------------------------------------------------------------------------

def _torchvision(arch, num_classes, in_channels):
    import torchvision
    model = getattr(torchvision.models, arch)(num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def build(arch, num_classes, in_channels=3):
    """A fresh zoo model (upstream initialisation) with tmix's state_dict names."""
    if in_channels not in (1, 3):
        raise ValueError(f"zoo: in_channels must be 1 or 3, got {in_channels}")
    if num_classes < 1:
        raise ValueError(f"zoo: num_classes must be positive, got {num_classes}")
    if arch in ("resnet18", "resnet34", "resnet50"):
        model = _torchvision(arch, num_classes, in_channels)
    elif arch == "cifar_resnet18":
        model = ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels)
    elif arch == "preactresnet18":
        model = PreActResNet(PreActBlock, [2, 2, 2, 2], num_classes, in_channels)
    elif arch == "wrn28_10":
        model = WideResNet(28, num_classes, widen_factor=10, in_channels=in_channels)
    elif arch == "cifar_resnet20":
        model = CifarResNet(AkaBasicBlock, [3, 3, 3], num_classes, in_channels)
    else:
        raise ValueError(f"zoo: unknown arch {arch!r} (known: {', '.join(ARCHS)})")
    model.tmix_arch = arch
    return model


def arch_of(model):
    arch = getattr(model, "tmix_arch", None)
    if arch is None:
        raise ValueError(f"zoo: {type(model).__name__} was not made by tmix.zoo.build")
    return arch


def features(model, x):
    """The CAM feature map of models/README.md: (B, C, h, w)."""
    if hasattr(model, "features"):
        return model.features(x)
    m = model  # a torchvision ResNet: everything before its average pool
    out = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    out = m.layer1(out)
    out = m.layer2(out)
    out = m.layer3(out)
    return m.layer4(out)


def classifier(model):
    return model.fc if hasattr(model, "fc") else model.linear


def logits(model, x):
    return classifier(model)(F.adaptive_avg_pool2d(features(model, x), 1).flatten(1))


def cams(model, x, labels, size=None):
    """Class activation maps (B, 1, H, W) of x (B, C, H, W) for labels (B,)."""
    feat = features(model, x)                                  # (B, C, h, w)
    w = classifier(model).weight[labels]                       # (B, C)
    cam = F.relu(torch.einsum("bc,bchw->bhw", w, feat))        # (B, h, w)
    flat = cam.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    hi = flat.max(dim=1).values[:, None, None]
    cam = (cam - lo) / torch.clamp(hi - lo, min=1e-12)
    size = tuple(x.shape[-2:]) if size is None else size
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def randomize_bn(model, seed):
    """Gives every batch norm random statistics and affine parameters, so that tests
    exercise the folding: mean N(0, 0.1), var U(0.5, 1.5), weight U(0.5, 1.5), bias N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))
            m.weight.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.copy_(0.1 * torch.randn(c, generator=g))
    return model
