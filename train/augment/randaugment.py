"""RandAugment as timm 1.0.31 configures and draws it, applied per sample in ffcv's threads.

Configured with timm's string (timm/data/auto_augment.py rand_augment_transform), sections
after 'rand' separated by '-', in any order:
  m<int>     magnitude (default 10)         n<int>     ops per image (default 2)
  p<float>   probability of each op (0.5)   mstd<float> magnitude noise: gaussian std;
  mmax<int>  clip magnitudes to [0, mmax]              above 100, uniform in [0, m]
             (default 10; 0 also means 10)  inc<0|1>   timm's "increasing" op list
  tweights   timm's weighted op choice (_RAND_WEIGHTED_0)
timm's RandAugment ('rand-m9-mstd0.5' is the ResNet strong recipe's): per image, n ops are
chosen (uniformly with replacement; weighted ones without replacement, as timm's
np.random.choice(replace=choice_weights is None)); each is applied with probability p, at a
magnitude drawn around m, clipped, mapped to the op's argument by timm's level_to_arg (with
a random sign for rotate, shear, translate and the "increasing" enhancements); hparams as
timm's create_transform passes them for ImageNet: translate_pct 0.45, fill (124, 116, 104).

Where timm accepts a string but ignores part of it, or fails only when it runs, this raises
ValueError naming the part: a section without a number ('foo', 'mstdinf'), an unknown
transform set ('tfoo'), a section given twice (timm keeps the first 'mstd'/'mmax'/'t' but
the last 'm'/'n'/'p'), p above 1, inc other than 0/1, more weighted ops than there are.
'w0' is gone from timm 1.0.31 (it asserts); 't3a'/'t3aw' (3-Augment's set, which needs
GaussianBlur) are not implemented here.

Interpolation: timm draws bilinear or bicubic for each geometric op (under
transforms_imagenet_train's default interpolation, 'random'); this always uses bilinear,
for speed (bicubic reads 16 neighbours per pixel, not 4), as timm does when given
interpolation='bilinear'. Everything else is timm's arithmetic exactly (image_ops.py).

Draws: stream STREAM_RANDAUGMENT of the sample's key; layer j uses draws 8j..8j+4: the op,
whether it applies, the magnitude noise (two for Box-Muller), the sign.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..draws import normal, uniform
from . import image_ops as ops
from .jit import kernel

OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'PosterizeIncreasing',
       'Solarize', 'SolarizeIncreasing', 'SolarizeAdd', 'Color', 'ColorIncreasing', 'Contrast',
       'ContrastIncreasing', 'Brightness', 'BrightnessIncreasing', 'Sharpness',
       'SharpnessIncreasing', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')
(AUTO_CONTRAST, EQUALIZE, INVERT, ROTATE, POSTERIZE, POSTERIZE_INC, SOLARIZE, SOLARIZE_INC,
 SOLARIZE_ADD, COLOR, COLOR_INC, CONTRAST, CONTRAST_INC, BRIGHTNESS, BRIGHTNESS_INC, SHARPNESS,
 SHARPNESS_INC, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y) = range(len(OPS))

# timm 1.0.31's op sets (_RAND_TRANSFORMS, _RAND_INCREASING_TRANSFORMS, _RAND_WEIGHTED_0)
DEFAULT_OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'SolarizeAdd',
               'Color', 'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateXRel',
               'TranslateYRel')
INCREASING_OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'PosterizeIncreasing',
                  'SolarizeIncreasing', 'SolarizeAdd', 'ColorIncreasing', 'ContrastIncreasing',
                  'BrightnessIncreasing', 'SharpnessIncreasing', 'ShearX', 'ShearY', 'TranslateXRel',
                  'TranslateYRel')
WEIGHTED_OPS = {'Rotate': 3, 'ShearX': 2, 'ShearY': 2, 'TranslateXRel': 1, 'TranslateYRel': 1,
                'ColorIncreasing': .25, 'SharpnessIncreasing': 0.25, 'AutoContrast': 0.25,
                'SolarizeIncreasing': .05, 'SolarizeAdd': .05, 'ContrastIncreasing': .05,
                'BrightnessIncreasing': .05, 'Equalize': .05, 'PosterizeIncreasing': 0.05, 'Invert': 0.05}

LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitude 10 is an op's full strength
TIMM_FILL = (124, 116, 104)  # create_transform's img_mean: round(255 * IMAGENET_DEFAULT_MEAN)
TIMM_TRANSLATE_PCT = 0.45
DRAWS_PER_LAYER = 8

_SECTIONS = {'m': 'magnitude', 'n': 'ops per image', 'p': 'probability of each op',
             'mstd': 'magnitude noise', 'mmax': 'magnitude bound', 'inc': 'increasing op set',
             't': 'transform set'}


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed RandAugment config: what the ffcv operation needs, nothing timm-specific."""
    config: str
    ops: tuple[str, ...]
    weights: tuple[float, ...] | None  # normalised choice weights (chosen without replacement)
    num_layers: int = 2
    magnitude: float = LEVEL_DENOM
    magnitude_std: float = 0.0  # inf: uniform in [0, magnitude]
    magnitude_max: float = LEVEL_DENOM
    prob: float = 0.5
    translate_pct: float = TIMM_TRANSLATE_PCT
    fill: tuple[int, int, int] = TIMM_FILL

    def arrays(self):
        """(op codes, cumulative weights or empty, float64 params, uint8 fill) for the kernels."""
        codes = np.array([OPS.index(name) for name in self.ops], dtype=np.int64)
        weights = np.array(self.weights if self.weights is not None else (), dtype=np.float64)
        params = np.array([self.num_layers, self.magnitude, self.magnitude_std, self.magnitude_max,
                           self.prob, self.translate_pct], dtype=np.float64)
        return codes, weights, params, np.array(self.fill, dtype=np.uint8)


def parse_randaugment(config: str, *, translate_pct: float = TIMM_TRANSLATE_PCT,
                      fill=TIMM_FILL) -> RandAugmentSpec:
    """timm's `rand-...` string -> RandAugmentSpec; ValueError naming the bad part."""
    if not isinstance(config, str):
        raise ValueError(f"RandAugment config must be a string like 'rand-m9-mstd0.5', got {config!r}")
    sections = config.strip().split('-')
    if sections[0] != 'rand':
        raise ValueError(f"RandAugment config {config!r} must start with 'rand' (timm's syntax, "
                         f"e.g. 'rand-m9-mstd0.5')")
    given: dict[str, tuple[str, str]] = {}
    for section in sections[1:]:
        if not section:
            continue  # as timm: 'rand-m9-' and 'rand--m9' are 'rand-m9'
        if section.startswith('t'):
            key, value = 't', section[1:]
        else:
            # as timm's re.split(r'(\d.*)', section): the key is all before the first digit
            match = re.fullmatch(r'(\D*)(\d.*)', section)
            if match is None:
                hint = (" (timm ignores it; for uniform magnitudes write e.g. 'mstd101': timm "
                        "reads mstd above 100 as infinite)") if section.startswith('mstd') else ''
                raise ValueError(f'RandAugment config {config!r}: section {section!r} has no number{hint}')
            key, value = match.groups()
        if key == 'w':
            raise ValueError(f"RandAugment config {config!r}: section {section!r}: timm 1.0.31 has no "
                             f"'w' section any more (for weighted op choice use 'tweights')")
        if key not in _SECTIONS:
            known = ', '.join(f"'{k}' ({v})" for k, v in _SECTIONS.items())
            raise ValueError(f'RandAugment config {config!r}: unknown section {section!r}; known: {known}')
        if key in given:
            raise ValueError(f'RandAugment config {config!r}: {key!r} given twice '
                             f'({given[key][0]!r} and {section!r})')
        given[key] = (section, value)

    def number(key, kind):
        section, value = given[key]
        try:
            return kind(value)
        except ValueError:
            want = 'a whole number' if kind is int else 'a number'
            raise ValueError(f'RandAugment config {config!r}: section {section!r}: {key} takes {want}, '
                             f'got {value!r}') from None

    def bad(key, want):
        raise ValueError(f'RandAugment config {config!r}: section {given[key][0]!r}: {key} must be {want}')

    magnitude = float(number('m', int)) if 'm' in given else LEVEL_DENOM
    num_layers = number('n', int) if 'n' in given else 2
    prob = number('p', float) if 'p' in given else 0.5
    if not 0.0 <= prob <= 1.0:
        bad('p', 'a probability in [0, 1]')
    mstd = number('mstd', float) if 'mstd' in given else 0.0
    if mstd > 100:
        mstd = math.inf  # as timm: uniform sampling in [0, m]
    mmax = number('mmax', int) if 'mmax' in given else 0
    increasing = number('inc', int) if 'inc' in given else 0
    if increasing not in (0, 1):
        bad('inc', '0 or 1')
    weights = None
    names = INCREASING_OPS if increasing else DEFAULT_OPS
    if 't' in given:
        name = given['t'][1]
        if name in ('3a', '3aw'):
            raise ValueError(f"RandAugment config {config!r}: transform set 't{name}' (timm's 3-Augment, "
                             f"with GaussianBlur and Desaturate) is not implemented here; use the default "
                             f"set, 'inc1' or 'tweights'")
        if name != 'weights':
            raise ValueError(f"RandAugment config {config!r}: unknown transform set 't{name}' "
                             f"(known: 'tweights')")
        names = tuple(WEIGHTED_OPS)
        total = sum(WEIGHTED_OPS.values())
        weights = tuple(WEIGHTED_OPS[k] / total for k in names)
        if num_layers > len(names):
            bad('n', f'at most {len(names)} with tweights (timm draws weighted ops without replacement)')
    return RandAugmentSpec(config=config, ops=names, weights=weights, num_layers=num_layers,
                           magnitude=magnitude, magnitude_std=mstd,
                           magnitude_max=float(mmax) if mmax else LEVEL_DENOM,  # timm: `mmax or 10`
                           prob=prob, translate_pct=float(translate_pct),
                           fill=tuple(int(v) for v in fill))


# ---- draws ----

@kernel
def draw_layers(key, codes, weights, params):
    """The draws of every layer: (op code, applied, magnitude, negated), as timm draws them."""
    num_layers = int(params[0])
    magnitude, mstd, upper, prob = params[1], params[2], params[3], params[4]
    chosen = np.empty(num_layers, dtype=np.int64)
    applied = np.empty(num_layers, dtype=np.bool_)
    magnitudes = np.empty(num_layers, dtype=np.float64)
    negated = np.empty(num_layers, dtype=np.bool_)
    remaining = weights.copy()
    for j in range(num_layers):
        k = DRAWS_PER_LAYER * j
        u = uniform(key, k)
        if remaining.size == 0:  # uniform, with replacement
            pick = min(int(u * codes.size), codes.size - 1)
        else:  # weighted, without replacement: the chosen ones drop out
            target = u * remaining.sum()
            pick, acc = -1, 0.0
            for i in range(remaining.size):
                if remaining[i] > 0.0:
                    acc += remaining[i]
                    pick = i
                    if acc > target:
                        break
            remaining[pick] = 0.0
        chosen[j] = codes[pick]
        applied[j] = uniform(key, k + 1) < prob
        m = magnitude
        if mstd == np.inf:
            m = magnitude * uniform(key, k + 2)
        elif mstd > 0.0:
            m = magnitude + mstd * normal(key, k + 2)
        magnitudes[j] = max(0.0, min(m, upper))
        negated[j] = uniform(key, k + 4) > 0.5  # timm's _randomly_negate
    return chosen, applied, magnitudes, negated


@kernel
def level_arg(op, magnitude, negate, translate_pct):
    """timm's level_to_arg for op `op` (its single argument; 0 for those without)."""
    level = magnitude / LEVEL_DENOM
    sign = -1.0 if negate else 1.0
    if op == ROTATE:
        return sign * (level * 30.0)
    if op == POSTERIZE:
        return float(int(level * 4))
    if op == POSTERIZE_INC:
        return float(4 - int(level * 4))
    if op == SOLARIZE:
        return float(min(256, int(level * 256)))
    if op == SOLARIZE_INC:
        return float(256 - min(256, int(level * 256)))
    if op == SOLARIZE_ADD:
        return float(min(128, int(level * 110)))
    if op == COLOR or op == CONTRAST or op == BRIGHTNESS or op == SHARPNESS:
        return level * 1.8 + 0.1
    if op == COLOR_INC or op == CONTRAST_INC or op == BRIGHTNESS_INC or op == SHARPNESS_INC:
        return max(0.1, 1.0 + sign * (level * 0.9))
    if op == SHEAR_X or op == SHEAR_Y:
        return sign * (level * 0.3)
    if op == TRANSLATE_X or op == TRANSLATE_Y:
        return sign * (level * translate_pct)
    return 0.0


@kernel
def apply_op(image, op, arg, fill, scratch):
    """One op at its argument, in place; `scratch` (an array like `image`) takes the output of
    the ops that read neighbours before it is copied back (allocating it per call would cost
    more than most ops)."""
    if op == AUTO_CONTRAST:
        ops.autocontrast(image)
    elif op == EQUALIZE:
        ops.equalize(image)
    elif op == INVERT:
        ops.invert(image)
    elif op == POSTERIZE or op == POSTERIZE_INC:
        ops.posterize(image, int(arg))
    elif op == SOLARIZE or op == SOLARIZE_INC:
        ops.solarize(image, int(arg))
    elif op == SOLARIZE_ADD:
        ops.solarize_add(image, int(arg))
    elif op == COLOR or op == COLOR_INC:
        ops.color(image, arg)
    elif op == CONTRAST or op == CONTRAST_INC:
        ops.contrast(image, arg)
    elif op == BRIGHTNESS or op == BRIGHTNESS_INC:
        ops.brightness(image, arg)
    else:  # the ops that read neighbours: through the second buffer
        out = scratch
        if op == SHARPNESS or op == SHARPNESS_INC:
            ops.sharpness(image, arg, out)
        elif op == ROTATE:
            ops.rotate(image, out, arg, fill)
        elif op == SHEAR_X:
            ops.shear_x(image, out, arg, fill)
        elif op == SHEAR_Y:
            ops.shear_y(image, out, arg, fill)
        elif op == TRANSLATE_X:
            ops.translate_x(image, out, arg * image.shape[1], fill)  # timm: pct * img.size[0]
        elif op == TRANSLATE_Y:
            ops.translate_y(image, out, arg * image.shape[0], fill)
        ops.copy(image, out)


@kernel
def randaugment(image, scratch, key, codes, weights, params, fill):
    """RandAugment of one image in place, from the draws of `key`."""
    chosen, applied, magnitudes, negated = draw_layers(key, codes, weights, params)
    for j in range(chosen.size):
        if applied[j]:
            apply_op(image, chosen[j], level_arg(chosen[j], magnitudes[j], negated[j], params[5]), fill, scratch)


def draws(spec: RandAugmentSpec, key) -> list[tuple[str, bool, float, float]]:
    """(op, applied, magnitude, argument) of each layer for `key`: what `randaugment` does."""
    codes, weights, params, _ = spec.arrays()
    chosen, applied, magnitudes, negated = draw_layers(np.uint64(key), codes, weights, params)
    return [(OPS[c], bool(a), float(m), float(level_arg(c, m, n, spec.translate_pct)))
            for c, a, m, n in zip(chosen, applied, magnitudes, negated)]
