"""Learning-rate and resolution schedules, and how a recipe is stretched to another epoch budget.

Both schedules are functions of the (fractional) epoch, so the trainer sets the LR every
iteration, a resumed run lands on the same values, and the report can redraw them.
"""
from __future__ import annotations

import math

import numpy as np

LR_SCHEDULES = ('cyclic', 'step', 'cosine')


def lr_at(epoch: float, *, schedule: str, lr: float, epochs: int, lr_peak_epoch: float = 2,
          step_ratio: float = 0.1, step_length: int = 30) -> float:
    """LR at a fractional epoch (epoch 2.5 = half-way through the third epoch)."""
    if epoch >= epochs:
        return 0.0
    if schedule == 'cyclic':  # ffcv-imagenet's: linear up to the peak, linear down to 0
        return float(np.interp(epoch, [0, lr_peak_epoch, epochs], [1e-4 * lr, lr, 0]))
    if schedule == 'step':
        return lr * step_ratio ** math.floor(epoch / step_length)
    if schedule == 'cosine':  # linear warm-up to the peak, then half a cosine to 0
        if epoch < lr_peak_epoch:
            return lr * max(epoch, 1e-4 * lr_peak_epoch) / lr_peak_epoch
        progress = (epoch - lr_peak_epoch) / max(epochs - lr_peak_epoch, 1e-9)
        return lr * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f'unknown LR schedule {schedule!r}; choose one of {", ".join(LR_SCHEDULES)}')


def resolution_at(epoch: int, *, min_res: int, max_res: int, start_ramp: int, end_ramp: int) -> int:
    """Training resolution of an epoch: min_res until start_ramp, then a linear ramp in
    steps of 32 px to max_res at end_ramp (ffcv-imagenet's progressive resizing)."""
    if epoch <= start_ramp:
        return min_res
    if epoch >= end_ramp:
        return max_res
    res = np.interp(epoch, [start_ramp, end_ramp], [min_res, max_res])
    return int(round(res / 32)) * 32


LR_PEAK_PLACEMENTS = ('epochs', 'fraction')


def stretch(params: dict, epochs: int, lr_peak: str = 'epochs') -> dict:
    """The same recipe over another epoch budget (flat 'section.key' params).

    The resolution ramp keeps its place as a fraction of training: the published
    ffcv-imagenet configs follow start_ramp = 3/4·E - 1 and end_ramp = 7/8·E - 1 exactly,
    and stretching their 88-epoch config reproduces every other one. By default the LR
    warm-up keeps its length in epochs (they use lr_peak_epoch = 2 at every budget): it
    protects the large-batch start, which is no shorter in a short run. lr_peak='fraction'
    scales it with the budget instead (2 of 88 epochs becomes 0.36 of 16).
    """
    if lr_peak not in LR_PEAK_PLACEMENTS:
        raise ValueError(f'lr_peak must be one of {LR_PEAK_PLACEMENTS}, got {lr_peak!r}')
    base = params['training.epochs']
    out = dict(params)
    out['training.epochs'] = epochs
    for key in ('resolution.start_ramp', 'resolution.end_ramp'):
        fraction = (params[key] + 1) / base
        out[key] = max(0, round(fraction * epochs) - 1)
    if lr_peak == 'fraction':
        out['lr.lr_peak_epoch'] = round(params['lr.lr_peak_epoch'] * epochs / base, 4)
    if params.get('lr.lr_schedule_type') == 'step':
        out['lr.step_length'] = max(1, round(params['lr.step_length'] * epochs / base))
    return out
