"""Learning-rate and resolution schedules, and how a recipe is stretched to another epoch budget.

Both schedules are functions of the (fractional) epoch, so the trainer sets the LR every
iteration, a resumed run lands on the same values, and the report can redraw them.
One-Cycle is torch's OneCycleLR, whose phase boundaries are counted in steps: it takes the
steps per epoch too, and gives the same value as torch's scheduler at every step.
"""
from __future__ import annotations

import math

import numpy as np

LR_SCHEDULES = ('cyclic', 'step', 'cosine', 'onecycle')
# The lr.* keys that shape the schedule, as lr_at's keyword arguments (lr itself follows the batch).
SHAPE_KEYS = ('lr_peak_epoch', 'step_ratio', 'step_length', 'min_lr', 'pct_start', 'div_factor',
              'final_div_factor', 'anneal', 'cycle_momentum', 'base_momentum', 'max_momentum', 'start_epoch')


def peak_lr(p: dict, global_batch: int) -> float:
    """lr.lr, or, with lr.reference_batch set, lr.lr scaled linearly to the real global batch
    (so the same config is right on 1 GPU and on 8: Goyal et al.'s rule)."""
    reference = p.get('lr.reference_batch') or 0
    return p['lr.lr'] * global_batch / reference if reference > 0 else p['lr.lr']


def schedule_args(p: dict, global_batch: int, steps_per_epoch: int) -> dict:
    """lr_at's keyword arguments for a run's settings: the one reading of the lr.* keys (the
    trainer's and the report's). Keys a run of an older version lacks take lr_at's defaults."""
    shape = {k: p[f'lr.{k}'] for k in SHAPE_KEYS if f'lr.{k}' in p}
    return dict(schedule=p['lr.lr_schedule_type'], lr=peak_lr(p, global_batch), epochs=p['training.epochs'],
                steps_per_epoch=steps_per_epoch, **shape)


def check_schedule(p: dict) -> str | None:
    """What is wrong with the lr.* settings, as one line, or None."""
    kind, epochs, start = p['lr.lr_schedule_type'], p['training.epochs'], p.get('lr.start_epoch', 0)
    if not 0 <= start < epochs:
        return f'--lr.start_epoch must be in [0, training.epochs) = [0, {epochs}), got {start}'
    if kind in ('cyclic', 'cosine') and not 0 <= p['lr.lr_peak_epoch'] < epochs - start:
        return (f'--lr.lr_peak_epoch={p["lr.lr_peak_epoch"]}: the warm-up must end before the run does '
                f'({epochs - start} epochs of schedule)')
    if kind == 'onecycle':
        if not 0 < p['lr.pct_start'] < 1:
            return f'--lr.pct_start must be in (0, 1), got {p["lr.pct_start"]}'
        if p['lr.div_factor'] <= 0 or p['lr.final_div_factor'] <= 0:
            return '--lr.div_factor and --lr.final_div_factor must be positive'
    if kind == 'step' and p['lr.step_length'] < 1:
        return f'--lr.step_length must be at least 1, got {p["lr.step_length"]}'
    if p.get('lr.reference_batch', 0) < 0:
        return f'--lr.reference_batch must be positive (or 0: lr.lr is for the global batch), got {p["lr.reference_batch"]}'
    if p.get('lr.min_lr', 0) < 0 or p['lr.lr'] <= 0:
        return '--lr.lr must be positive and --lr.min_lr not negative'
    return None


def lr_at(epoch: float, *, schedule: str, lr: float, epochs: int, lr_peak_epoch: float = 2,
          step_ratio: float = 0.1, step_length: int = 30, min_lr: float = 0.0, pct_start: float = 0.3,
          div_factor: float = 25.0, final_div_factor: float = 1e4, anneal: str = 'cos',
          cycle_momentum: int = 0, base_momentum: float = 0.85, max_momentum: float = 0.95,
          start_epoch: int = 0, steps_per_epoch: int | None = None) -> float:
    """LR at a fractional epoch (epoch 2.5 = half-way through the third epoch).

    The schedule spans [start_epoch, epochs): a schedule changed mid-run (lr.start_epoch)
    starts afresh there; before it, it holds its first value.
    """
    span = epochs - start_epoch
    t = max(epoch - start_epoch, 0.0)
    if t >= span:
        return 0.0
    if schedule == 'cyclic':  # ffcv-imagenet's: linear up to the peak, linear down to 0
        return float(np.interp(t, [0, lr_peak_epoch, span], [1e-4 * lr, lr, 0]))
    if schedule == 'step':
        return lr * step_ratio ** math.floor(t / step_length)
    if schedule == 'cosine':  # linear warm-up to the peak, then half a cosine to min_lr (timm, warmup_prefix)
        if t < lr_peak_epoch:
            return lr * max(t, 1e-4 * lr_peak_epoch) / lr_peak_epoch
        progress = (t - lr_peak_epoch) / max(span - lr_peak_epoch, 1e-9)
        return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == 'onecycle':
        return _one_cycle(t, span, steps_per_epoch, lr / div_factor, lr, lr / div_factor / final_div_factor,
                          pct_start, anneal)
    raise ValueError(f'unknown LR schedule {schedule!r}; choose one of {", ".join(LR_SCHEDULES)}')


def momentum_at(epoch: float, *, schedule: str, epochs: int, cycle_momentum: int = 0, pct_start: float = 0.3,
                anneal: str = 'cos', base_momentum: float = 0.85, max_momentum: float = 0.95,
                start_epoch: int = 0, steps_per_epoch: int | None = None, **_) -> float | None:
    """SGD momentum at a fractional epoch when the schedule cycles it (onecycle), else None."""
    if schedule != 'onecycle' or not cycle_momentum:
        return None
    span = epochs - start_epoch
    t = min(max(epoch - start_epoch, 0.0), span)
    return _one_cycle(t, span, steps_per_epoch, max_momentum, base_momentum, max_momentum, pct_start, anneal)


def _one_cycle(t: float, span: int, steps_per_epoch: int | None, start: float, peak: float, end: float,
               pct_start: float, anneal: str) -> float:
    """torch.optim.lr_scheduler.OneCycleLR (two phases) at step t * steps_per_epoch of span * steps_per_epoch:
    its phase boundaries are in steps, so the same steps give the same values."""
    steps = steps_per_epoch or 1000  # a report redrawing a run of unknown batch count
    total = span * steps
    step = round(t * steps)
    phases = [(float(pct_start * total) - 1, start, peak), (total - 1, peak, end)]
    begin = 0.0
    for i, (finish, a, b) in enumerate(phases):
        if step <= finish or i == len(phases) - 1:
            pct = (step - begin) / (finish - begin)
            if anneal == 'cos':
                return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
            return (b - a) * pct + a
        begin = finish
    raise AssertionError('unreachable')


def resolution_at(epoch: int, *, min_res: int, max_res: int, start_ramp: int, end_ramp: int) -> int:
    """Training resolution of an epoch: min_res until start_ramp, then a linear ramp in
    steps of 32 px to max_res at end_ramp (ffcv-imagenet's progressive resizing)."""
    if epoch <= start_ramp:
        return min_res
    if epoch >= end_ramp:
        return max_res
    res = np.interp(epoch, [start_ramp, end_ramp], [min_res, max_res])
    return int(round(res / 32)) * 32


def resolution_of(p: dict, epoch: int) -> int:
    """The training resolution of `epoch` for a run's settings."""
    return resolution_at(epoch, min_res=p['resolution.min_res'], max_res=p['resolution.max_res'],
                         start_ramp=p['resolution.start_ramp'], end_ramp=p['resolution.end_ramp'])


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
    # Augmentation switches (augment.*_on_epoch / *_off_epoch) keep their place as a fraction of
    # training, like the resolution ramp: Mixup off at 52 of 120 epochs is off at 7 of 16.
    for key, value in params.items():
        if key.startswith('augment.') and key.endswith(('_on_epoch', '_off_epoch')) and value > 0:
            out[key] = min(epochs - 1, max(1, round(value * epochs / base)))
    if params.get('lr.start_epoch', 0) > 0:
        out['lr.start_epoch'] = min(epochs - 1, round(params['lr.start_epoch'] * epochs / base))
    return out
