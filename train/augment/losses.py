"""The training losses, as timm's, on soft targets (what mixing.mix returns) or hard labels.

- SoftTargetCrossEntropy: timm's (timm/loss/cross_entropy.py), sum(-target * log_softmax)
  per sample, averaged over the batch.
- BinaryCrossEntropy: timm's (timm/loss/binary_cross_entropy.py), the loss of "ResNet strikes
  back": per-class sigmoid BCE against the targets, optionally binarised (target > threshold).

Hard labels (N,) become one-hots smoothed by the loss's own `smoothing` (timm's BCE does so;
its default is 0.1). The training step passes mix()'s targets, which already hold the label
smoothing (MixSpec.label_smoothing), so there the loss's `smoothing` does nothing.

Logits are taken in float32: bf16 logits outside autocast would otherwise give a bf16 loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .erasing import check_field, is_real
from .mixing import soft_targets

LOSSES = ('ce', 'bce')
REDUCTIONS = ('mean', 'sum', 'none')


def _dense(targets: torch.Tensor, logits: torch.Tensor, smoothing: float) -> torch.Tensor:
    if targets.shape == logits.shape:
        return targets
    return soft_targets(targets, logits.shape[-1], smoothing)


def _check_common(loss) -> None:
    check_field(loss, 'smoothing', is_real(loss.smoothing) and 0 <= loss.smoothing < 1, 'a number in [0, 1)')
    check_field(loss, 'reduction', loss.reduction in REDUCTIONS, f'one of {", ".join(REDUCTIONS)}')


class SoftTargetCrossEntropy(nn.Module):
    """timm's SoftTargetCrossEntropy ('mean'); 'sum' and 'none' reduce as torch's losses do."""

    def __init__(self, smoothing: float = 0.0, reduction: str = 'mean'):
        super().__init__()
        self.smoothing, self.reduction = smoothing, reduction
        _check_common(self)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        loss = torch.sum(-_dense(targets, logits, self.smoothing) * F.log_softmax(logits, dim=-1), dim=-1)
        return {'mean': loss.mean, 'sum': loss.sum, 'none': lambda: loss}[self.reduction]()


class BinaryCrossEntropy(nn.Module):
    """timm's BinaryCrossEntropy (without its class weights, pos_weight, sum_classes and
    multi-label smoothing): hard labels smoothed (off = smoothing / classes, on = 1 - smoothing
    + off), then targets > target_threshold if one is set, then BCE with logits."""

    def __init__(self, smoothing: float = 0.1, target_threshold: float | None = None, reduction: str = 'mean'):
        super().__init__()
        self.smoothing, self.target_threshold, self.reduction = smoothing, target_threshold, reduction
        _check_common(self)
        check_field(self, 'target_threshold', target_threshold is None
                    or (is_real(target_threshold) and 0 <= target_threshold <= 1), 'None or a number in [0, 1]')

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        targets = _dense(targets, logits, self.smoothing)
        if self.target_threshold is not None:
            targets = targets.gt(self.target_threshold).to(targets.dtype)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction=self.reduction)


@dataclass(frozen=True)
class LossSpec:
    """Which loss and its options. `smoothing` applies to hard labels only (see above)."""
    name: str = 'ce'
    smoothing: float = 0.0
    target_threshold: float | None = None
    reduction: str = 'mean'

    def __post_init__(self):
        check_field(self, 'name', self.name in LOSSES, f'one of {", ".join(LOSSES)}')
        check_field(self, 'target_threshold', self.name == 'bce' or self.target_threshold is None,
                    "None unless name is 'bce'")
        self.build()  # the loss's own checks

    def build(self) -> nn.Module:
        if self.name == 'bce':
            return BinaryCrossEntropy(self.smoothing, self.target_threshold, self.reduction)
        return SoftTargetCrossEntropy(self.smoothing, self.reduction)
