"""Random erasing of the normalised batch on the model's device, as timm's RandomErasing.

Per sample, as timm 1.0.31 (timm/data/random_erasing.py): with probability `probability`,
erase `count` boxes, count uniform in [min_count, max_count]. Each box makes up to 10
attempts: area = uniform(min_area, max_area) * H * W / count, aspect = exp(uniform(log
min_aspect, log max_aspect)), h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect));
the first attempt with h < H and w < W is placed uniformly (top in [0, H - h], left in
[0, W - w]); a box whose 10 attempts all fail is skipped. Later boxes paint over earlier
ones. Fill, in normalised units: 'const' 0 (the dataset mean), 'rand' one standard normal
colour per box and channel, 'pixel' standard normal noise per pixel.

Draws: every draw of sample i is column k of its row of `draws.uniform_table` in stream
STREAM_ERASING, at a fixed column (below), so a sample's erasing depends on (seed, epoch,
index) alone: not on its batch, its place in it, or how many draws its neighbours used.
The boxes of the whole batch are computed at once in numpy (all 10 attempts of every box,
then the first that fits). 'pixel' noise is the one thing not in the table: it comes from a
torch.Generator on the batch's device, one per sample, seeded from that sample's draws. It
is as reproducible as torch's generators on that device type (a CPU and a CUDA generator
give different noise for one seed).

`erase` never writes into its input: 'const' and 'rand' fill all boxes of one slot of the
whole batch with one masked `torch.where` (a few kernels whatever the batch size), 'pixel'
copies each box's noise into a clone. bench/augment_batch.py times the per-box alternative.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ..draws import STREAM_ERASING, uniform_table

MODES = ('const', 'rand', 'pixel')
ATTEMPTS = 10  # as timm
# Columns of a sample's row: apply, count, then 4 per attempt of each box (area, aspect,
# top, left), then the pixel-noise seed, then 2 per box and channel for 'rand' colours.
_APPLY, _COUNT, _BOXES = 0, 1, 2


def is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_field(spec, field: str, ok: bool, want: str) -> None:
    """The spec dataclasses' validation: one ValueError naming the field, what it must be, what it is."""
    if not ok:
        raise ValueError(f'{field} must be {want}, got {getattr(spec, field)!r}')


@dataclass(frozen=True)
class ErasingSpec:
    """timm's RandomErasing arguments (defaults: timm's train.py, --reprob 0.25 --remode pixel).

    max_aspect None means 1 / min_aspect and max_count None means min_count, as timm.
    """
    probability: float = 0.25
    mode: str = 'pixel'
    min_area: float = 0.02
    max_area: float = 1 / 3
    min_aspect: float = 0.3
    max_aspect: float | None = None
    min_count: int = 1
    max_count: int | None = None

    def __post_init__(self):
        check = partial(check_field, self)  # in order: a later check may rely on an earlier one
        check('probability', is_real(self.probability) and 0 <= self.probability <= 1, 'a number in [0, 1]')
        check('mode', self.mode in MODES, f'one of {", ".join(MODES)}')
        check('min_area', is_real(self.min_area) and 0 < self.min_area <= 1, 'a number in (0, 1]')
        check('max_area', is_real(self.max_area) and 0 < self.max_area <= 1, 'a number in (0, 1]')
        check('min_area', self.min_area <= self.max_area, f'at most max_area ({self.max_area})')
        check('min_aspect', is_real(self.min_aspect) and self.min_aspect > 0, 'a number > 0')
        check('max_aspect', self.max_aspect is None or (is_real(self.max_aspect) and self.max_aspect > 0),
              'a number > 0, or None (1 / min_aspect)')
        check('min_aspect', self.min_aspect <= self.aspect_range[1],
              f'at most max_aspect ({self.aspect_range[1]:g}; None means 1 / min_aspect)')
        check('min_count', is_int(self.min_count) and self.min_count >= 1, 'an integer >= 1')
        check('max_count', self.max_count is None or (is_int(self.max_count) and self.max_count >= self.min_count),
              f'an integer >= min_count ({self.min_count}), or None (min_count)')

    @property
    def aspect_range(self) -> tuple[float, float]:
        return self.min_aspect, self.max_aspect if self.max_aspect is not None else 1 / self.min_aspect

    @property
    def slots(self) -> int:
        """The most boxes one sample can get."""
        return self.max_count if self.max_count is not None else self.min_count

    @property
    def log_aspect(self) -> tuple[float, float]:
        return tuple(math.log(a) for a in self.aspect_range)

    def columns(self, channels: int) -> int:
        """How many draws one sample's row holds."""
        return _BOXES + 4 * ATTEMPTS * self.slots + 1 + 2 * self.slots * channels


@dataclass(frozen=True)
class Boxes:
    """(N, slots) arrays: box b of sample i is rows top:top+h, columns left:left+w if valid."""
    top: np.ndarray
    left: np.ndarray
    h: np.ndarray
    w: np.ndarray
    valid: np.ndarray


def erasing_boxes(spec: ErasingSpec, height: int, width: int, draws: np.ndarray) -> Boxes:
    """Every sample's boxes from its row of draws, as timm's RandomErasing._erase places them."""
    n, slots = len(draws), spec.slots
    apply = draws[:, _APPLY] <= spec.probability  # timm skips a sample when random() > probability
    if spec.min_count == spec.slots:
        count = np.full(n, spec.min_count, dtype=np.int64)
    else:  # random.randint(min_count, max_count), inclusive
        count = spec.min_count + (draws[:, _COUNT] * (spec.slots - spec.min_count + 1)).astype(np.int64)
    d = draws[:, _BOXES:_BOXES + 4 * ATTEMPTS * slots].reshape(n, slots, ATTEMPTS, 4)
    # The same float operations in the same order as timm, so h and w round identically.
    area = (spec.min_area + (spec.max_area - spec.min_area) * d[..., 0]) * (height * width) / count[:, None, None]
    lo, hi = spec.log_aspect
    aspect = np.exp(lo + (hi - lo) * d[..., 1])
    h = np.rint(np.sqrt(area * aspect)).astype(np.int64)  # rint and round() both round half to even
    w = np.rint(np.sqrt(area / aspect)).astype(np.int64)
    fits = (h < height) & (w < width)
    first = fits.argmax(axis=2)[..., None]  # timm keeps the first attempt that fits

    def pick(a):
        return np.take_along_axis(a, first, axis=2)[..., 0]

    valid = fits.any(axis=2) & apply[:, None] & (np.arange(slots) < count[:, None])
    h, w = np.where(valid, pick(h), 0), np.where(valid, pick(w), 0)
    top = np.where(valid, (pick(d[..., 2]) * (height - h + 1)).astype(np.int64), 0)  # randint(0, H - h)
    left = np.where(valid, (pick(d[..., 3]) * (width - w + 1)).astype(np.int64), 0)
    return Boxes(top, left, h, w, valid)


def box_colours(spec: ErasingSpec, channels: int, draws: np.ndarray) -> np.ndarray:
    """(N, slots, channels) fill colours: 0 for 'const', standard normals (Box-Muller) for 'rand'."""
    n = len(draws)
    if spec.mode != 'rand':
        return np.zeros((n, spec.slots, channels))
    start = _BOXES + 4 * ATTEMPTS * spec.slots + 1
    u = draws[:, start:start + 2 * spec.slots * channels].reshape(n, spec.slots, channels, 2)
    return np.sqrt(-2.0 * np.log(1.0 - u[..., 0])) * np.cos(2.0 * np.pi * u[..., 1])


def noise_seeds(spec: ErasingSpec, draws: np.ndarray) -> np.ndarray:
    """One 53-bit seed per sample for its 'pixel' noise generator."""
    return (draws[:, _BOXES + 4 * ATTEMPTS * spec.slots] * 2.0 ** 53).astype(np.int64)


def host_indices(indices) -> np.ndarray:
    """The batch's dataset indices as an int64 numpy array (a CUDA tensor costs a device sync)."""
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    return np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)


def fill_boxes(images: torch.Tensor, boxes: Boxes, colours: np.ndarray) -> torch.Tensor:
    """`images` with every valid box painted its colour: one masked where per box slot."""
    _, _, height, width = images.shape
    device = images.device
    geometry = torch.as_tensor(np.stack([boxes.top, boxes.top + boxes.h, boxes.left, boxes.left + boxes.w]),
                               device=device)  # (4, N, slots); invalid boxes are empty (h = w = 0)
    fill = torch.as_tensor(colours, dtype=images.dtype, device=device)
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    out = images
    for b in np.flatnonzero(boxes.valid.any(axis=0)):
        y0, y1, x0, x1 = (g[:, b, None] for g in geometry)
        inside = ((rows >= y0) & (rows < y1))[:, None, :, None] & ((cols >= x0) & (cols < x1))[:, None, None, :]
        out = torch.where(inside, fill[:, b, :, None, None], out)
    return out


def paste_noise(images: torch.Tensor, boxes: Boxes, seeds: np.ndarray) -> torch.Tensor:
    """A copy of `images` with per-pixel normal noise in every valid box, from per-sample generators."""
    out = images.clone()
    channels = images.shape[1]
    for i in np.flatnonzero(boxes.valid.any(axis=1)):
        generator = torch.Generator(device=images.device)
        generator.manual_seed(int(seeds[i]))
        for b in np.flatnonzero(boxes.valid[i]):
            t, l, h, w = (int(a[i, b]) for a in (boxes.top, boxes.left, boxes.h, boxes.w))
            out[i, :, t:t + h, l:l + w] = torch.randn((channels, h, w), generator=generator,
                                                      device=images.device, dtype=images.dtype)
    return out


def erase(images: torch.Tensor, indices, spec: ErasingSpec, *, seed: int, epoch: int) -> torch.Tensor:
    """Random erasing of a normalised (N, C, H, W) batch whose samples have dataset `indices`.

    Returns a new tensor (or `images` itself when nothing is erased), in `images`' memory
    format; `images` is never written. `indices`: numpy or a tensor (pass a CPU copy: reading
    a CUDA tensor waits for the device).
    """
    n, channels, height, width = images.shape
    indices = host_indices(indices)
    if len(indices) != n:
        raise ValueError(f'erase: {len(indices)} indices for a batch of {n} images')
    draws = uniform_table(seed, epoch, indices, STREAM_ERASING, spec.columns(channels))
    boxes = erasing_boxes(spec, height, width, draws)
    if not boxes.valid.any():
        return images
    if spec.mode == 'pixel':
        return paste_noise(images, boxes, noise_seeds(spec, draws))
    return fill_boxes(images, boxes, box_colours(spec, channels, draws))
