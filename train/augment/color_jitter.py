"""Color jitter as torchvision's ColorJitter (in RandomApply), per sample in ffcv's threads.

Ranges are parsed as ColorJitter's _check_input: a number v gives [max(0, 1 - v), 1 + v] for
brightness, contrast and saturation and [-v, v] for hue (v <= 0.5); a (min, max) pair is
taken as it is (0 <= min <= max; hue within [-0.5, 0.5]); a range that is exactly the
identity (1, 1) or (0, 0) for hue switches that op off. Per image, as get_params: the four
ops in a uniformly random order, each factor uniform in its range; the whole jitter applied
with probability p (RandomApply; timm's color_jitter_prob). The arithmetic is torchvision's
tensor ops on uint8 (image_ops.tv_*).

Draws: stream STREAM_COLOR_JITTER of the sample's key: 0-2 the order (Fisher-Yates, as
uniform over the 24 orders as randperm), 3-6 the factors (brightness, contrast, saturation,
hue), 7 whether it applies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..draws import uniform
from . import image_ops as ops
from .jit import kernel

NAMES = ('brightness', 'contrast', 'saturation', 'hue')
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_range(value, name: str, center: float, bound: tuple[float, float], clip_first_on_zero: bool):
    """torchvision's ColorJitter._check_input, with ValueError for every bad value."""
    if _is_number(value):
        if value < 0:
            raise ValueError(f'color jitter {name}: a single number must be non-negative, got {value!r}')
        lo, hi = center - float(value), center + float(value)
        if clip_first_on_zero:
            lo = max(lo, 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value):
        lo, hi = float(value[0]), float(value[1])
    else:
        raise ValueError(f'color jitter {name} must be a number or a (min, max) pair of numbers, got {value!r}')
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(f'color jitter {name}: range ({lo:g}, {hi:g}) must satisfy '
                         f'{bound[0]:g} <= min <= max <= {bound[1]:g}')
    return None if lo == hi == center else (lo, hi)


@dataclass(frozen=True)
class ColorJitterSpec:
    """Factor ranges (None: that op is off) and the probability of jittering an image."""
    brightness: tuple[float, float] | None = None
    contrast: tuple[float, float] | None = None
    saturation: tuple[float, float] | None = None
    hue: tuple[float, float] | None = None
    p: float = 1.0

    def arrays(self):
        """((4, 2) float64 ranges, (4,) uint8 active, p) for the kernels."""
        ranges = np.zeros((4, 2), dtype=np.float64)
        active = np.zeros(4, dtype=np.uint8)
        for i, name in enumerate(NAMES):
            r = getattr(self, name)
            if r is not None:
                ranges[i], active[i] = r, True
        return ranges, active, float(self.p)


def color_jitter_spec(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, p=1.0) -> ColorJitterSpec:
    """torchvision's ColorJitter(brightness, contrast, saturation, hue), in RandomApply(p)."""
    if not (_is_number(p) and 0.0 <= p <= 1.0):
        raise ValueError(f'color jitter probability must be in [0, 1], got {p!r}')
    return ColorJitterSpec(
        brightness=_check_range(brightness, 'brightness', 1.0, (0.0, math.inf), True),
        contrast=_check_range(contrast, 'contrast', 1.0, (0.0, math.inf), True),
        saturation=_check_range(saturation, 'saturation', 1.0, (0.0, math.inf), True),
        hue=_check_range(hue, 'hue', 0.0, (-0.5, 0.5), False),
        p=float(p))


def timm_color_jitter(color_jitter, p=1.0) -> ColorJitterSpec:
    """timm's create_transform(color_jitter=..., color_jitter_prob=p): a number v is
    brightness = contrast = saturation = v (no hue); 3 or 4 values are (b, c, s[, h])."""
    if _is_number(color_jitter):
        return color_jitter_spec(color_jitter, color_jitter, color_jitter, 0.0, p)
    if isinstance(color_jitter, (tuple, list)) and len(color_jitter) in (3, 4):
        return color_jitter_spec(*color_jitter, p=p)
    raise ValueError(f'color jitter must be a number or 3 or 4 values (brightness, contrast, saturation'
                     f'[, hue]), got {color_jitter!r}')


@kernel
def draw_jitter(key, ranges, p):
    """(applied, order of the four ops, their factors) for one image."""
    order = np.arange(4)
    for i in range(3, 0, -1):
        j = min(int(uniform(key, 3 - i) * (i + 1)), i)
        order[i], order[j] = order[j], order[i]
    factors = np.empty(4, dtype=np.float64)
    for f in range(4):
        factors[f] = ranges[f, 0] + (ranges[f, 1] - ranges[f, 0]) * uniform(key, 3 + f)
    return uniform(key, 7) < p, order, factors


@kernel
def color_jitter(image, key, ranges, active, p):
    """ColorJitter of one image in place, from the draws of `key`."""
    applied, order, factors = draw_jitter(key, ranges, p)
    if not applied:
        return
    for f in order:
        if not active[f]:
            continue
        if f == BRIGHTNESS:
            ops.tv_brightness(image, factors[f])
        elif f == CONTRAST:
            ops.tv_contrast(image, factors[f])
        elif f == SATURATION:
            ops.tv_saturation(image, factors[f])
        else:
            ops.tv_hue(image, factors[f])


def draws(spec: ColorJitterSpec, key) -> tuple[bool, tuple[str, ...], dict[str, float]]:
    """(applied, the active ops in order, their factors) for `key`: what `color_jitter` does."""
    ranges, active, p = spec.arrays()
    applied, order, factors = draw_jitter(np.uint64(key), ranges, p)
    return (bool(applied), tuple(NAMES[f] for f in order if active[f]),
            {NAMES[f]: float(factors[f]) for f in range(4) if active[f]})
