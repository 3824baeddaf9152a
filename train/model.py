"""Models: one parameterised ResNet (ResNet-D variants), BlurPool, and torchvision's ResNets.

Module names follow timm's resnet.py so that a `resnet50d` state_dict has exactly
timm's keys: weights can be compared or exchanged with timm without renaming.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

__all__ = ['ARCHITECTURES', 'BasicBlock', 'BlurPoolConv2d', 'Bottleneck', 'ResNet', 'apply_blurpool',
           'build_model', 'last_conv_stage', 'resnet18d', 'resnet34d', 'resnet50d', 'resnet101d', 'unwrap']


def _shortcut(in_ch: int, out_ch: int, stride: int, avg_down: bool) -> nn.Module:
    if not avg_down:
        return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
    # ResNet-D: a strided 1x1 conv would ignore 3/4 of the activations; averaging first keeps them.
    # ceil_mode + count_include_pad=False so odd sizes give the same spatial size as the main path
    # without diluting the border average with zeros. Identity keeps the Sequential's indices
    # (and so the state_dict keys) the same whether or not this block downsamples.
    pool = (nn.AvgPool2d(2, stride=stride, ceil_mode=True, count_include_pad=False)
            if stride > 1 else nn.Identity())
    return nn.Sequential(pool, nn.Conv2d(in_ch, out_ch, 1, stride=1, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        # Stride on the 3x3 (ResNet v1.5/B): a strided 1x1 would skip 3/4 of the input.
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.bn3(self.conv3(x))
        return self.act3(x + shortcut)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    def __init__(self, block: Block, layers: list[int] | tuple[int, ...], num_classes: int = 1000,
                 stem: str = 'plain', avg_down: bool = False, zero_init_last: bool = True):
        super().__init__()
        if stem == 'deep':
            # ResNet-C: three 3x3 convs see the same 7x7 field as one 7x7 conv with fewer FLOPs.
            # The last conv's BN lives outside the Sequential as `bn1`, as in timm.
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                nn.Conv2d(32, 64, 3, padding=1, bias=False))
        elif stem == 'plain':
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        else:
            raise ValueError(f"stem must be 'plain' or 'deep', not {stem!r}")
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        in_ch = 64
        for i, blocks in enumerate(layers):
            planes, stride = 64 * 2 ** i, 1 if i == 0 else 2
            out_ch = planes * block.expansion
            downsample = _shortcut(in_ch, out_ch, stride, avg_down) if stride != 1 or in_ch != out_ch else None
            stage = [block(in_ch, planes, stride, downsample)]
            stage += [block(out_ch, planes) for _ in range(blocks - 1)]
            self.add_module(f'layer{i + 1}', nn.Sequential(*stage))
            in_ch = out_ch

        self.num_features = in_ch
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            # Each residual block then starts as the identity, which makes early training of
            # deep nets stable at large learning rates (Goyal et al., 2017).
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.global_pool(self.forward_features(x)), 1))


def _resnet_d(block: Block, layers: tuple[int, ...], num_classes: int, zero_init_last: bool) -> ResNet:
    return ResNet(block, layers, num_classes=num_classes, stem='deep', avg_down=True, zero_init_last=zero_init_last)


def resnet18d(num_classes: int = 1000, zero_init_last: bool = True) -> ResNet:
    return _resnet_d(BasicBlock, (2, 2, 2, 2), num_classes, zero_init_last)


def resnet34d(num_classes: int = 1000, zero_init_last: bool = True) -> ResNet:
    return _resnet_d(BasicBlock, (3, 4, 6, 3), num_classes, zero_init_last)


def resnet50d(num_classes: int = 1000, zero_init_last: bool = True) -> ResNet:
    return _resnet_d(Bottleneck, (3, 4, 6, 3), num_classes, zero_init_last)


def resnet101d(num_classes: int = 1000, zero_init_last: bool = True) -> ResNet:
    return _resnet_d(Bottleneck, (3, 4, 23, 3), num_classes, zero_init_last)


class BlurPoolConv2d(nn.Module):
    """Low-pass filter before a strided conv, so downsampling aliases less (Zhang, 2019)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(kernel, kernel) / 16
        # A constant, not state: a buffer follows .to(device/dtype/channels_last) but gets no
        # gradient and no weight decay; non-persistent so checkpoints hold only learned weights.
        self.register_buffer('blur_filter', kernel.expand(conv.in_channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.blur_filter, stride=1, padding=1, groups=self.conv.in_channels)
        return self.conv(x)


def apply_blurpool(model: nn.Module) -> nn.Module:
    """Wrap, in place, every strided conv with at least 16 input channels (returns `model`).

    The channel threshold leaves the RGB stem conv alone, as in FFCV's ResNet-50 recipe;
    stride-1 convs (including ResNet-D's shortcut 1x1s) do not alias, so stay as they are.
    """
    for name, child in model.named_children():
        if isinstance(child, nn.Conv2d) and max(child.stride) > 1 and child.in_channels >= 16:
            setattr(model, name, BlurPoolConv2d(child))
        elif not isinstance(child, BlurPoolConv2d):  # applying twice must not blur twice
            apply_blurpool(child)
    return model


_OURS: dict[str, Callable[..., ResNet]] = {
    'resnet18d': resnet18d, 'resnet34d': resnet34d, 'resnet50d': resnet50d, 'resnet101d': resnet101d,
}
_TORCHVISION = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'resnext50_32x4d',
                'resnext101_32x8d', 'resnext101_64x4d', 'wide_resnet50_2', 'wide_resnet101_2')
ARCHITECTURES: tuple[str, ...] = tuple(sorted({*_OURS, *_TORCHVISION}))


def build_model(arch: str, num_classes: int, use_blurpool: bool = False, zero_init_last: bool = True) -> nn.Module:
    """A randomly initialised model by name; weights are never downloaded."""
    if arch in _OURS:
        model = _OURS[arch](num_classes=num_classes, zero_init_last=zero_init_last)
    elif arch in _TORCHVISION:
        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes,
                                                  zero_init_residual=zero_init_last)
    else:
        raise ValueError(f'unknown arch {arch!r}; choose one of: {", ".join(ARCHITECTURES)}')
    return apply_blurpool(model) if use_blurpool else model


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP/DataParallel (`.module`) and torch.compile (`._orig_mod`), nested in any order."""
    while True:
        inner = getattr(model, '_orig_mod', None)
        if inner is None:
            inner = getattr(model, 'module', None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def last_conv_stage(model: nn.Module) -> nn.Module:
    """The module whose output Grad-CAM uses: the last stage, at the coarsest resolution."""
    bare = unwrap(model)
    stage = getattr(bare, 'layer4', None)
    if not isinstance(stage, nn.Module):
        raise TypeError(f'{type(bare).__name__} has no layer4; only ResNets are supported')
    return stage
