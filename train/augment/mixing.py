"""Mixup and CutMix of the normalised batch on the model's device, as timm's Mixup.

As timm 1.0.31 (timm/data/mixup.py): sample i is mixed with sample N-1-i (the batch flipped).
With probability `prob` a mix happens; if both alphas are > 0 it is CutMix with probability
`switch_prob`, else Mixup. lam ~ Beta(alpha, alpha) of the chosen one. Mixup: lam * x +
(1 - lam) * partner. CutMix: the partner's pixels in a box, square with side sqrt(1 - lam)
of the image's and centred uniformly (clipped at the borders), or with `cutmix_minmax`
each side uniform in that fraction of the image's (timm then forces cutmix_alpha = 1);
with `correct_lam` (or minmax) lam becomes 1 - box area / image area. The targets are
lam * y + (1 - lam) * y_partner of the label-smoothed one-hots (off = smoothing / classes,
on = 1 - smoothing + off): label smoothing lives here, in the targets, not in the loss.

Modes: 'batch' one lam and one box for the whole batch, from the draws of the batch's
first sample; 'elem' one per sample, from its own draws; 'pair' one per pair (i, N-1-i),
from the draws of i, both samples swapping the same box. timm asserts an even batch; here
an odd one works: the middle sample is its own partner (a no-op image) in 'batch' and
'elem', unmixed in 'pair'. lam has timm's precision: a float64 per batch, float32 per
sample or pair, and boxes are computed from it as timm does, so they match bit for bit.

Draws: column k of a sample's row of `draws.uniform_table` in stream STREAM_MIXING: 0
apply, 1 switch, 2 the Beta draw, 3-6 the box (centre y, x; or minmax height, width, top,
left). The Beta draw is numpy's Beta sampler in a generator seeded with that uniform's 53
bits: exact, and still a function of (seed, epoch, index) alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ..draws import STREAM_MIXING, uniform_table
from .erasing import check_field, host_indices, is_int, is_real

MODES = ('batch', 'pair', 'elem')
_APPLY, _SWITCH, _BETA, _BOX = 0, 1, 2, 3
COLUMNS = 7


@dataclass(frozen=True)
class MixSpec:
    """timm's Mixup arguments; defaults: the strong recipe (Mixup 0.2, CutMix 1.0, smoothing 0.1).

    Both alphas 0 (and no cutmix_minmax) turns mixing off: `mix` then returns the images as
    they are with label-smoothed targets, so the loss path stays one.
    """
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    cutmix_minmax: tuple[float, float] | None = None
    prob: float = 1.0
    switch_prob: float = 0.5
    mode: str = 'batch'
    correct_lam: bool = True
    label_smoothing: float = 0.1
    num_classes: int = 1000

    def __post_init__(self):
        check = partial(check_field, self)
        check('mixup_alpha', is_real(self.mixup_alpha) and self.mixup_alpha >= 0, 'a number >= 0')
        check('cutmix_alpha', is_real(self.cutmix_alpha) and self.cutmix_alpha >= 0, 'a number >= 0')
        minmax = self.cutmix_minmax
        if minmax is not None:
            check('cutmix_minmax', isinstance(minmax, (tuple, list)) and len(minmax) == 2
                  and all(is_real(v) and 0 < v <= 1 for v in minmax) and minmax[0] < minmax[1],
                  'None or a pair (min, max) with 0 < min < max <= 1')
            object.__setattr__(self, 'cutmix_minmax', tuple(float(v) for v in minmax))
        check('prob', is_real(self.prob) and 0 <= self.prob <= 1, 'a number in [0, 1]')
        check('switch_prob', is_real(self.switch_prob) and 0 <= self.switch_prob <= 1, 'a number in [0, 1]')
        check('mode', self.mode in MODES, f'one of {", ".join(MODES)}')
        check('correct_lam', isinstance(self.correct_lam, bool), 'True or False')
        check('label_smoothing', is_real(self.label_smoothing) and 0 <= self.label_smoothing <= 1,
              'a number in [0, 1]')
        check('num_classes', is_int(self.num_classes) and self.num_classes >= 1, 'an integer >= 1')

    @property
    def alphas(self) -> tuple[float, float]:
        """(mixup, cutmix) alphas in effect: cutmix_minmax forces cutmix_alpha = 1, as timm."""
        return self.mixup_alpha, 1.0 if self.cutmix_minmax is not None else self.cutmix_alpha

    @property
    def enabled(self) -> bool:
        return max(self.alphas) > 0


@dataclass(frozen=True)
class MixParams:
    """One entry per batch, sample or pair: its lam and whether (and where) CutMix pastes.

    lam is float64 per batch and float32 per sample or pair, as timm's; a box is rows y0:y1,
    columns x0:x1, empty where `cutmix` is False.
    """
    lam: np.ndarray
    cutmix: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray


@dataclass(frozen=True)
class Mixed:
    """A mixed batch. targets: (N, num_classes) float32, label smoothing included. lam: (N,)
    each sample's weight of its own image and label. hard: (N,) bool, lam == 1: that sample's
    target is its label's smoothed one-hot and its image its own (count accuracy on these)."""
    images: torch.Tensor
    targets: torch.Tensor
    lam: np.ndarray
    hard: np.ndarray

    @property
    def all_hard(self) -> bool:
        return bool(self.hard.all())


def beta_draws(u: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Beta(alpha, alpha) for each uniform: numpy's sampler, seeded with the uniform's 53 bits."""
    return np.array([np.random.default_rng(int(v * 2.0 ** 53)).beta(a, a) for v, a in zip(u, alpha)],
                    dtype=np.float64)


def mixing_params(spec: MixSpec, draws: np.ndarray, height: int, width: int, per_batch: bool) -> MixParams:
    """lam and CutMix box of each row of draws, as timm's _params_per_batch/_params_per_elem and
    cutmix_bbox_and_lam compute them."""
    m = len(draws)
    mixup_alpha, cutmix_alpha = spec.alphas
    if not spec.enabled:
        zero = np.zeros(m, dtype=np.int64)
        return MixParams(np.ones(m, np.float64 if per_batch else np.float32), np.zeros(m, bool), zero, zero, zero, zero)
    apply = draws[:, _APPLY] < spec.prob
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cutmix = draws[:, _SWITCH] < spec.switch_prob
    else:
        cutmix = np.full(m, cutmix_alpha > 0)
    lam = np.ones(m)
    lam[apply] = beta_draws(draws[apply, _BETA], np.where(cutmix, cutmix_alpha, mixup_alpha)[apply])
    lam = lam.astype(np.float64 if per_batch else np.float32)  # timm: float(lam) per batch, float32 per element
    cutmix &= lam != 1
    u = draws[:, _BOX:_BOX + 4]
    if spec.cutmix_minmax is not None:  # rand_bbox_minmax
        lo, hi = spec.cutmix_minmax
        # randint(int(H * lo), int(H * hi)); where both ints are equal (tiny images) timm raises, we take that size
        h_lo, h_hi, w_lo, w_hi = int(height * lo), int(height * hi), int(width * lo), int(width * hi)
        cut_h = h_lo + (u[:, 0] * max(h_hi - h_lo, 1)).astype(np.int64)
        cut_w = w_lo + (u[:, 1] * max(w_hi - w_lo, 1)).astype(np.int64)
        y0 = (u[:, 2] * (height - cut_h + 1)).astype(np.int64)
        x0 = (u[:, 3] * (width - cut_w + 1)).astype(np.int64)
        y1, x1 = y0 + cut_h, x0 + cut_w
    else:  # rand_bbox: in lam's own precision, as timm
        ratio = np.sqrt(1 - np.where(cutmix, lam, 0))
        cut_h, cut_w = (height * ratio).astype(np.int64), (width * ratio).astype(np.int64)
        cy, cx = (u[:, 0] * height).astype(np.int64), (u[:, 1] * width).astype(np.int64)
        y0, y1 = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + (cut_h + 1) // 2, 0, height)
        x0, x1 = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + (cut_w + 1) // 2, 0, width)
    y0, y1, x0, x1 = (np.where(cutmix, a, 0) for a in (y0, y1, x0, x1))
    if spec.correct_lam or spec.cutmix_minmax is not None:
        corrected = 1. - (y1 - y0) * (x1 - x0) / float(height * width)
        lam = np.where(cutmix, corrected, lam).astype(lam.dtype)
    return MixParams(lam, cutmix, y0, y1, x0, x1)


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(N, num_classes) float32 label-smoothed one-hots, as timm's mixup_target with lam = 1
    (the same distribution as cross_entropy's label_smoothing)."""
    off = smoothing / num_classes
    return torch.full((len(labels), num_classes), off, dtype=torch.float32, device=labels.device).scatter_(
        1, labels.long().view(-1, 1), 1. - smoothing + off)


def _per_sample(params: MixParams, n: int, mode: str) -> MixParams:
    """Spread per-batch or per-pair params over the batch's n samples."""
    lam, *rest = vars(params).values()
    if mode == 'batch':
        return MixParams(*(np.repeat(a, n) for a in (lam, *rest)))
    if mode == 'pair':  # pair i is samples i and n-1-i; an odd batch's middle sample stays unmixed
        def spread(a, middle):
            return np.concatenate([a, np.full(n % 2, middle, a.dtype), a[::-1]])
        return MixParams(spread(lam, 1), *(spread(a, 0) for a in rest))
    return params


def mix(images: torch.Tensor, labels: torch.Tensor, indices, spec: MixSpec, *, seed: int, epoch: int) -> Mixed:
    """Mixup/CutMix of a normalised (N, C, H, W) batch whose samples have dataset `indices`.

    Returns new images (or `images` itself when nothing is mixed; `images` is never written),
    in `images`' memory format, and float32 soft targets on `labels`' device. `indices`:
    numpy or a tensor (pass a CPU copy: reading a CUDA tensor waits for the device).
    """
    n, _, height, width = images.shape
    targets = soft_targets(labels, spec.num_classes, spec.label_smoothing)
    if not spec.enabled:
        return Mixed(images, targets, np.ones(n, np.float32), np.ones(n, bool))
    indices = host_indices(indices)
    if len(indices) != n or len(labels) != n:
        raise ValueError(f'mix: {len(indices)} indices and {len(labels)} labels for a batch of {n} images')
    rows = {'batch': 1, 'pair': n // 2, 'elem': n}[spec.mode]
    draws = uniform_table(seed, epoch, indices[:rows], STREAM_MIXING, COLUMNS)
    params = _per_sample(mixing_params(spec, draws, height, width, spec.mode == 'batch'), n, spec.mode)
    hard = params.lam == 1
    if hard.all():
        return Mixed(images, targets, params.lam, hard)
    if spec.mode == 'batch':  # one python float lam: the exact operations of timm's _mix_batch, on copies
        lam = float(params.lam[0])
        if params.cutmix[0]:
            y0, y1, x0, x1 = (int(a[0]) for a in (params.y0, params.y1, params.x0, params.x1))
            out = images.clone()
            out[:, :, y0:y1, x0:x1] = images[:, :, y0:y1, x0:x1].flip(0)
        else:
            out = images.flip(0).mul_(1. - lam).add_(images * lam)
        return Mixed(out, targets * lam + targets.flip(0) * (1. - lam), params.lam, hard)
    # per sample or pair: blend the Mixup samples, then paste the CutMix boxes (masks over the batch)
    partner = images.flip(0)
    device = images.device
    lam = torch.as_tensor(params.lam, device=device)
    blend = torch.as_tensor(~hard & ~params.cutmix, device=device).view(n, 1, 1, 1)
    weight = lam.to(images.dtype).view(n, 1, 1, 1)
    out = torch.where(blend, images * weight + partner * (1 - weight), images)
    if params.cutmix.any():
        y0, y1, x0, x1 = torch.as_tensor(np.stack([params.y0, params.y1, params.x0, params.x1]), device=device)
        rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
        inside = (((rows >= y0[:, None]) & (rows < y1[:, None]))[:, None, :, None]
                  & ((cols >= x0[:, None]) & (cols < x1[:, None]))[:, None, None, :])  # (N, 1, H, W)
        out = torch.where(inside, partner, out)
    lam = lam.to(targets.dtype)[:, None]
    return Mixed(out, targets * lam + targets.flip(0) * (1 - lam), params.lam, hard)
