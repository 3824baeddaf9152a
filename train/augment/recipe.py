"""The trainer's `augment.*` keys (train/config.py) read into the augmentations' specs, and which
of them are on in a given epoch.

Each augmentation is off unless its key turns it on, and then on for the epochs
[*_on_epoch, *_off_epoch) (off_epoch -1: to the end). A bad value is one line naming its key,
before any work. Where each one runs:

    RandAugment, color jitter   per sample, in ffcv's decoding threads (per_sample.PerSampleAugment),
                                on the uint8 crop, before normalisation
    random erasing              per sample, on the device, after normalisation (erasing.erase)
    Mixup / CutMix              on the device, on the erased batch (mixing.mix), with soft targets
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from fastimagenet.common.cli import fail

from .color_jitter import ColorJitterSpec, color_jitter_spec
from .erasing import ErasingSpec
from .losses import LossSpec
from .mixing import MixSpec
from .randaugment import RandAugmentSpec, parse_randaugment

NAMES = ('randaugment', 'color_jitter', 'erasing', 'mixing')


@dataclass(frozen=True)
class Augmentations:
    randaugment: RandAugmentSpec | None
    color_jitter: ColorJitterSpec | None
    erasing: ErasingSpec | None
    mixing: MixSpec | None
    loss: LossSpec
    epochs: dict  # name -> (on_epoch, off_epoch or None)

    def on(self, name: str, epoch: int) -> bool:
        """Whether augmentation `name` is configured and on in `epoch` (0-based)."""
        if getattr(self, name) is None:
            return False
        start, stop = self.epochs[name]
        return start <= epoch and (stop is None or epoch < stop)

    @property
    def per_sample(self) -> bool:
        """Whether the decoding threads have work (the loader then carries the operation)."""
        return self.randaugment is not None or self.color_jitter is not None


# Which key each spec field comes from, so an error names what the user wrote.
ERASING_KEYS = {'probability': 'erasing_prob', 'mode': 'erasing_mode', 'min_area': 'erasing_min_area',
                'max_area': 'erasing_max_area', 'min_aspect': 'erasing_min_aspect', 'max_count': 'erasing_count',
                'max_aspect': 'erasing_min_aspect', 'min_count': 'erasing_count'}
MIXING_KEYS = {'mixup_alpha': 'mixup_alpha', 'cutmix_alpha': 'cutmix_alpha', 'cutmix_minmax': 'cutmix_minmax',
               'prob': 'mix_prob', 'switch_prob': 'mix_switch_prob', 'mode': 'mix_mode'}
JITTER_KEYS = {name: name for name in ('brightness', 'contrast', 'saturation', 'hue')}


def from_config(p: dict, num_classes: int) -> Augmentations:
    """The augmentations of a run's settings; one line naming the key for a bad value."""
    epochs = {name: _epochs(p, name) for name in NAMES}

    def spec(build, keys: dict, default: str, section: str = 'augment'):
        try:
            return build()
        except ValueError as e:
            found = [(m.start(), k) for field, k in keys.items() if (m := re.search(rf'\b{field}\b', str(e)))]
            named = min(found)[1] if found else default  # the field the message names first
            fail(f'--{section}.{named}: {e}')

    randaugment = spec(lambda: parse_randaugment(p['augment.randaugment']), {}, 'randaugment') \
        if p['augment.randaugment'] else None
    color_jitter = None
    if p['augment.color_jitter_prob'] != 0:
        color_jitter = spec(lambda: color_jitter_spec(p['augment.brightness'], p['augment.contrast'],
                                                      p['augment.saturation'], p['augment.hue'],
                                                      p['augment.color_jitter_prob']),
                            JITTER_KEYS, 'color_jitter_prob')
        if all(getattr(color_jitter, k) is None for k in JITTER_KEYS):
            fail('--augment.color_jitter_prob is set, but brightness, contrast, saturation and hue are all 0')
    erasing = None
    if p['augment.erasing_prob'] != 0:
        erasing = spec(lambda: ErasingSpec(
            probability=p['augment.erasing_prob'], mode=p['augment.erasing_mode'],
            min_area=p['augment.erasing_min_area'], max_area=p['augment.erasing_max_area'],
            min_aspect=p['augment.erasing_min_aspect'], max_count=p['augment.erasing_count']),
            ERASING_KEYS, 'erasing_prob')
    mixing = None
    if p['augment.mixup_alpha'] or p['augment.cutmix_alpha'] or p['augment.cutmix_minmax']:
        mixing = spec(lambda: MixSpec(
            mixup_alpha=p['augment.mixup_alpha'], cutmix_alpha=p['augment.cutmix_alpha'],
            cutmix_minmax=_pair(p['augment.cutmix_minmax']), prob=p['augment.mix_prob'],
            switch_prob=p['augment.mix_switch_prob'], mode=p['augment.mix_mode'],
            label_smoothing=p['training.label_smoothing'], num_classes=num_classes), MIXING_KEYS, 'mixup_alpha')
    threshold = p['training.bce_target_thresh'] if p['training.loss'] == 'bce' else 0
    loss = spec(lambda: LossSpec(p['training.loss'], smoothing=p['training.label_smoothing'],
                                 target_threshold=threshold or None),
                {'smoothing': 'label_smoothing', 'target_threshold': 'bce_target_thresh'}, 'loss', 'training')
    return Augmentations(randaugment, color_jitter, erasing, mixing, loss, epochs)


def _epochs(p: dict, name: str) -> tuple[int, int | None]:
    start, stop = p[f'augment.{name}_on_epoch'], p[f'augment.{name}_off_epoch']
    if start < 0:
        fail(f'--augment.{name}_on_epoch must not be negative, got {start}')
    if stop != -1 and stop <= start:
        fail(f'--augment.{name}_off_epoch ({stop}) must come after --augment.{name}_on_epoch ({start}), '
             f'or be -1 (on to the end)')
    return start, None if stop == -1 else stop


def _pair(text: str) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        lo, hi = (float(v) for v in text.split(','))
    except ValueError:
        raise ValueError(f'cutmix_minmax must be "min,max", got {text!r}') from None
    return lo, hi
