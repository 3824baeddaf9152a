"""Per-sample RandAugment and color jitter (train/augment): every op equal to timm's / torchvision's
on the same image, the draws distributed as theirs, reproducible per (seed, epoch, index), inside
a real ffcv Loader, and bad configs refused in one line."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

import timm.data.auto_augment as timm_aa
from torchvision.transforms import ColorJitter, RandomApply
from torchvision.transforms import functional as F

from fastimagenet.train.augment import image_ops
from fastimagenet.train.augment.color_jitter import ColorJitterSpec, color_jitter_spec, timm_color_jitter
from fastimagenet.train.augment.color_jitter import draws as jitter_draws
from fastimagenet.train.augment.per_sample import PerSampleAugment, augment_images
from fastimagenet.train.augment.randaugment import (DEFAULT_OPS, INCREASING_OPS, OPS, TIMM_FILL, WEIGHTED_OPS,
                                                    apply_op, level_arg, parse_randaugment)
from fastimagenet.train.augment.randaugment import draws as ra_draws
from fastimagenet.train.draws import STREAM_COLOR_JITTER, STREAM_RANDAUGMENT, sample_key, stream_key

from conftest import photo, script

TIMM_HPARAMS = {'translate_pct': 0.45, 'img_mean': TIMM_FILL}  # as timm's create_transform passes them


def images() -> list[np.ndarray]:
    """A photo-like picture, noise, a low-contrast one, odd and tiny sizes."""
    rng = np.random.default_rng(0)
    low = (np.asarray(photo(3, (50, 40))).astype(int) // 3 + 60).astype(np.uint8)
    return [np.asarray(photo(1, (64, 48))).copy(), rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), low,
            np.asarray(photo(2, (40, 40))).copy(), rng.integers(0, 256, (2, 5, 3), dtype=np.uint8)]


def key(seed, epoch, index, stream):
    """A sample's stream key, as the operation computes it. From Python every argument must be
    a np.uint64: numba types a Python int as int64, and the hash of an int64 differs."""
    return np.uint64(stream_key(np.uint64(sample_key(np.uint64(seed), epoch, np.uint64(index))), stream))


def ra_key(seed, epoch, index):
    return key(seed, epoch, index, STREAM_RANDAUGMENT)


def cj_key(seed, epoch, index):
    return key(seed, epoch, index, STREAM_COLOR_JITTER)


# ---- each operation against the reference ----

def op_args(name: str) -> list:
    """Arguments as level_to_arg makes them (magnitudes 0-10 and beyond), with the quarter
    and half turns that Pillow's rotate handles apart."""
    base = name.replace('Increasing', '')
    if base in ('AutoContrast', 'Equalize', 'Invert'):
        return [None]
    return {'Rotate': [0.0, 13.7, -27.3, 30.0, 45.5, 90.0, 180.0, -90.0], 'Posterize': [0, 1, 4, 7, 8],
            'Solarize': [0, 26, 128, 255, 256], 'SolarizeAdd': [0, 33, 110],
            'ShearX': [0.0, 0.13, -0.3, 0.2999], 'ShearY': [0.0, 0.13, -0.3, 0.2999],
            'TranslateXRel': [0.0, 0.21, -0.45, 1 / 3], 'TranslateYRel': [0.0, 0.21, -0.45, 1 / 3],
            }.get(base, [0.1, 0.37, 1.0, 1.63, 1.9])  # the enhancements


@pytest.mark.parametrize('name', OPS)
def test_each_randaugment_op_equals_timms(name):
    """Bit for bit, geometric ops included: our bilinear is Pillow's (sample point, clamped
    neighbours, float64 weights, truncation; cos/sin rounded to 15 digits as Pillow's rotate).
    The one difference from timm is the filter it draws: bicubic half the time, never here."""
    for image in images():
        pil = Image.fromarray(image)
        for arg in op_args(name):
            ours = image.copy()
            apply_op(ours, OPS.index(name), 0.0 if arg is None else float(arg), np.array(TIMM_FILL, np.uint8),
                     np.empty_like(ours))
            args = () if arg is None else (arg,)
            theirs = timm_aa.NAME_TO_OP[name](pil, *args, fillcolor=TIMM_FILL, resample=Image.BILINEAR)
            np.testing.assert_array_equal(ours, np.asarray(theirs), err_msg=f'{name}({arg}) on {image.shape}')


@pytest.mark.parametrize('name', ['brightness', 'contrast', 'saturation', 'hue'])
def test_each_color_jitter_op_equals_torchvisions(name):
    factors = [-0.5, -0.23, 0.0, 0.05, 0.4999, 0.5] if name == 'hue' else [0.0, 0.6, 1.0, 1.4, 2.7]
    for image in images():
        tensor = torch.from_numpy(image).permute(2, 0, 1)
        for factor in factors:
            ours = image.copy()
            getattr(image_ops, f'tv_{name}')(ours, factor)
            theirs = getattr(F, f'adjust_{name}')(tensor, factor).permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(ours, theirs, err_msg=f'{name}({factor}) on {image.shape}')


def test_hue_equals_torchvision_over_the_colour_cube():
    """Every colour of a 4-step lattice of the RGB cube (greys, ties between channels, the
    sector edges) and random ones, at hue factors that include those rounding h to 1.0."""
    lattice = np.arange(0, 256, 4)
    cube = np.stack(np.meshgrid(lattice, lattice, lattice, indexing='ij'), -1).reshape(-1, 3)
    extra = np.random.default_rng(1).integers(0, 256, (cube.shape[0], 3))
    image = np.concatenate([cube, extra]).astype(np.uint8).reshape(512, -1, 3)
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    for factor in (-0.5, -0.3217, -1e-9, 0.1234, 0.5):
        ours = image.copy()
        image_ops.tv_hue(ours, factor)
        np.testing.assert_array_equal(ours, F.adjust_hue(tensor, factor).permute(1, 2, 0).numpy(), err_msg=str(factor))


def test_op_sets_and_levels_are_timms(monkeypatch):
    assert DEFAULT_OPS == tuple(timm_aa._RAND_TRANSFORMS)
    assert INCREASING_OPS == tuple(timm_aa._RAND_INCREASING_TRANSFORMS)
    assert WEIGHTED_OPS == timm_aa._RAND_WEIGHTED_0
    for negate in (False, True):
        monkeypatch.setattr(timm_aa, '_randomly_negate', (lambda v: -v) if negate else (lambda v: v))
        for name in OPS:
            for magnitude in (0.0, 0.3, 1.0, 4.5, 5.0, 8.7, 9.0, 10.0, 13.7, 30.0):
                level_fn = timm_aa.LEVEL_TO_ARG[name]
                theirs = level_fn(magnitude, TIMM_HPARAMS)[0] if level_fn else 0.0
                assert level_arg(OPS.index(name), magnitude, negate, 0.45) == theirs, (name, magnitude, negate)


def test_randaugment_of_an_image_is_timms_ops_at_its_draws():
    """The whole per-sample RandAugment = timm's op functions, at the drawn ops and arguments,
    applied in order; color jitter likewise torchvision's functional ops; both together the one
    after the other."""
    ra = parse_randaugment('rand-m9-mstd0.5-p0.8-n3')
    cj = color_jitter_spec(0.4, 0.4, 0.4, 0.2, p=0.9)
    image = images()[0]
    for index in range(24):
        expected = Image.fromarray(image)
        for name, applied, _, arg in ra_draws(ra, ra_key(7, 3, index)):
            if applied:
                args = () if name in ('AutoContrast', 'Equalize', 'Invert') else (
                    int(arg) if 'Posterize' in name or 'Solarize' in name else arg,)
                expected = timm_aa.NAME_TO_OP[name](expected, *args, fillcolor=TIMM_FILL, resample=Image.BILINEAR)
        ours = augment_images(image[None].copy(), [index], seed=7, epoch=3, randaugment=ra)[0]
        np.testing.assert_array_equal(ours, np.asarray(expected), err_msg=str(index))

        applied, order, factors = jitter_draws(cj, cj_key(7, 3, index))
        tensor = torch.from_numpy(np.array(expected)).permute(2, 0, 1)
        for name in order if applied else ():
            tensor = getattr(F, f'adjust_{name}')(tensor, factors[name])
        both = augment_images(image[None].copy(), [index], seed=7, epoch=3, randaugment=ra, color_jitter=cj)[0]
        np.testing.assert_array_equal(both, tensor.permute(1, 2, 0).numpy(), err_msg=str(index))


# ---- the draws against the references' distributions ----

def ks_distance(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two ECDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, 'right') / len(a) - np.searchsorted(b, grid, 'right') / len(b)).max())


def timm_layers(config: str, count: int):
    """timm's RandAugment run `count` times with fixed seeds, its ops replaced by recorders:
    per image, per layer, (op, applied, clipped magnitude or None, argument or None)."""
    ra = timm_aa.rand_augment_transform(config, dict(TIMM_HPARAMS))
    log: list[list[dict]] = []

    class Layer:
        def __init__(self, op):
            self.op = op
            level_fn = op.level_fn

            def record_level(magnitude, hparams):
                log[-1][-1]['magnitude'] = magnitude
                return level_fn(magnitude, hparams)

            def record_op(img, *args, **_):
                log[-1][-1].update(applied=True, arg=args[0] if args else None)
                return img
            op.level_fn = record_level if level_fn else None
            op.aug_fn = record_op

        def __call__(self, img):
            log[-1].append({'op': self.op.name, 'applied': False, 'magnitude': None, 'arg': None})
            return self.op(img)

    ra.ops = [Layer(op) for op in ra.ops]
    random.seed(0)
    np.random.seed(0)
    for _ in range(count):
        log.append([])
        ra(None)
    return log


def our_layers(config: str, count: int):
    spec = parse_randaugment(config)
    out = []
    for i in range(count):
        out.append([{'op': op, 'applied': applied, 'magnitude': m, 'arg': arg}
                    for op, applied, m, arg in ra_draws(spec, ra_key(0, 1, i))])
    return out


@pytest.mark.parametrize('config', ['rand-m9-mstd0.5', 'rand-m7-mstd101-n3', 'rand-m12-mmax15-mstd2-inc1-p0.7',
                                    'rand-n3-m8-mstd1-tweights'])
def test_randaugment_draws_are_distributed_as_timms(config):
    """Both sides are seeded: the comparisons are fixed numbers, they cannot flake. The
    tolerances are ~5 standard errors at 6000 images."""
    count = 6000
    theirs, ours = timm_layers(config, count), our_layers(config, count)
    spec = parse_randaugment(config)
    for run in (theirs, ours):
        assert all(len(layers) == spec.num_layers for layers in run)
        if spec.weights is not None:  # without replacement
            assert all(len({layer['op'] for layer in layers}) == len(layers) for layers in run)
    flat_t = [layer for layers in theirs for layer in layers]
    flat_o = [layer for layers in ours for layer in layers]
    for j in range(spec.num_layers):  # op frequencies, layer by layer (weighted: they differ)
        for name in spec.ops:
            ft = np.mean([layers[j]['op'] == name for layers in theirs])
            fo = np.mean([layers[j]['op'] == name for layers in ours])
            assert abs(ft - fo) < 5 * np.sqrt(max(ft, 1 / count) / count) + 1e-9, (j, name, ft, fo)
    rate_t, rate_o = np.mean([x['applied'] for x in flat_t]), np.mean([x['applied'] for x in flat_o])
    assert abs(rate_t - spec.prob) < 0.02 and abs(rate_o - spec.prob) < 0.02
    # magnitudes (timm draws one only for ops with an argument)
    m_t = np.array([x['magnitude'] for x in flat_t if x['magnitude'] is not None])
    m_o = np.array([x['magnitude'] for x in flat_o if x['applied'] and timm_aa.LEVEL_TO_ARG[x['op']]])
    assert ks_distance(m_t, m_o) < 0.035
    tolerance = 0.05 * max(1.0, m_t.std())
    assert abs(m_t.mean() - m_o.mean()) < tolerance and abs(m_t.std() - m_o.std()) < tolerance
    for bound in (0.0, spec.magnitude_max):  # clipping: the same mass at each end
        assert abs(np.mean(m_t == bound) - np.mean(m_o == bound)) < 0.015, bound
    assert m_o.min() >= 0.0 and m_o.max() <= spec.magnitude_max
    # random signs of rotate/shear/translate
    signed = ('Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')
    for run in (flat_t, flat_o):
        args = [x['arg'] for x in run if x['applied'] and x['op'] in signed and x['arg'] != 0]
        assert abs(np.mean(np.array(args) < 0) - 0.5) < 0.03


def test_color_jitter_draws_are_distributed_as_torchvisions():
    count = 6000
    tv = ColorJitter(0.4, (0.6, 1.3), 0.25, 0.1)
    spec = color_jitter_spec(0.4, (0.6, 1.3), 0.25, 0.1, p=0.8)
    torch.manual_seed(0)
    theirs = [tv.get_params(tv.brightness, tv.contrast, tv.saturation, tv.hue) for _ in range(count)]
    ours = [jitter_draws(spec, cj_key(0, 2, i)) for i in range(count)]
    names = ('brightness', 'contrast', 'saturation', 'hue')
    for f, name in enumerate(names):
        lo, hi = getattr(spec, name)
        assert (lo, hi) == tuple(getattr(tv, name))
        t = np.array([draw[1 + f] for draw in theirs])
        o = np.array([factors[name] for _, _, factors in ours])
        assert ks_distance(t, o) < 0.03, name
        assert lo <= o.min() and o.max() < hi
    # the order: each op at each position, and all 24 orders
    order_t = [tuple(names[i] for i in draw[0].tolist()) for draw in theirs]
    order_o = [order for _, order, _ in ours]
    for position in range(4):
        for name in names:
            ft = np.mean([o[position] == name for o in order_t])
            fo = np.mean([o[position] == name for o in order_o])
            assert abs(ft - 0.25) < 0.03 and abs(fo - 0.25) < 0.03
    perms_o = {p: order_o.count(p) / count for p in set(order_o)}
    perms_t = {p: order_t.count(p) / count for p in set(order_t)}
    assert len(perms_o) == len(perms_t) == 24
    assert max(abs(perms_o[p] - perms_t[p]) for p in perms_o) < 0.015
    # RandomApply(p): how often the jitter runs at all
    runs = []
    counter = torch.nn.Module()
    counter.forward = lambda img: runs.append(1) or img
    apply = RandomApply(torch.nn.ModuleList([counter]), p=spec.p)
    for _ in range(count):
        apply(torch.zeros(1))
    rate_o = np.mean([applied for applied, _, _ in ours])
    assert abs(len(runs) / count - spec.p) < 0.02 and abs(rate_o - spec.p) < 0.02


def test_switching_one_augmentation_off_leaves_the_others_draws():
    ra, cj = parse_randaugment('rand-m9-mstd0.5'), color_jitter_spec(0.4, 0.4, 0.4)
    batch = np.stack([images()[0]] * 6)
    both = augment_images(batch.copy(), range(6), seed=1, epoch=0, randaugment=ra, color_jitter=cj)
    only_ra = augment_images(batch.copy(), range(6), seed=1, epoch=0, randaugment=ra)
    expected = np.stack([augment_images(only_ra[i:i + 1].copy(), [i], seed=1, epoch=0, color_jitter=cj)[0]
                         for i in range(6)])
    np.testing.assert_array_equal(both, expected)


# ---- inside ffcv's loader ----

@pytest.fixture(scope='module')
def beton(tmp_path_factory):
    """The built-in sample, 4 classes x 12 images, stored as JPEG by the real converter."""
    from fastimagenet.convert.make_sample import write_sample
    root = tmp_path_factory.mktemp('aug')
    write_sample(root / 'images', train_per_class=12, val_per_class=1, classes=4)
    script('convert/write_imagenet.py', f'--cfg.data_dir={root / "images"}', '--cfg.split=train',
           f'--cfg.write_path={root / "train.beton"}', '--cfg.write_mode=jpg', '--cfg.max_resolution=300')
    return root / 'train.beton'


def load(beton, *, augment=None, threads=1, order=None, tail=None, res=64):
    """Every sample through decoder [+ augment] [+ tail], put back in index order (NHWC)."""
    from ffcv.fields.basics import IntDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.pipeline.compiler import Compiler
    from ffcv.transforms import ToTensor

    from fastimagenet.train.decoders import RandomResizedCropFlipDecoder
    decoder = RandomResizedCropFlipDecoder((res, res), seed=0)
    decoder.epoch = augment.epoch if augment is not None else 0
    # ffcv compiles the pipeline parallel or not by the thread count at construction
    Compiler.set_num_threads(threads)
    loader = Loader(str(beton), batch_size=7, num_workers=threads, order=order or OrderOption.SEQUENTIAL,
                    drop_last=False, seed=1,
                    pipelines={'image': [decoder] + ([augment] if augment else []) + (tail or [ToTensor()]),
                               'label': [IntDecoder(), ToTensor()]})
    sample_order = loader.next_traversal_order()
    images = torch.cat([x.clone() for x, _ in loader])
    out = torch.empty_like(images)
    out[torch.as_tensor(sample_order.astype(np.int64))] = images
    return out


def test_in_a_loader_draws_depend_on_seed_epoch_and_index_only(beton):
    """One thread in file order, two threads in random order: the same bits; and the same as
    augment_images on the decoder's plain output. Another epoch or seed: other draws."""
    from ffcv.loader import OrderOption
    kw = dict(randaugment='rand-m9-mstd0.5', color_jitter=color_jitter_spec(0.4, 0.4, 0.4, 0.1))

    def augment(seed=0, epoch=2):
        op = PerSampleAugment(seed, **kw)
        op.epoch = epoch
        return op
    one_thread = load(beton, augment=augment()).numpy()
    two_threads = load(beton, augment=augment(), threads=2, order=OrderOption.RANDOM).numpy()
    np.testing.assert_array_equal(one_thread, two_threads)
    decoded = PerSampleAugment(0)  # both off: the decoder's own output
    decoded.epoch = 2
    decoded = load(beton, augment=decoded).numpy()
    expected = augment_images(decoded.copy(), np.arange(len(decoded)), seed=0, epoch=2,
                              randaugment=parse_randaugment(kw['randaugment']), color_jitter=kw['color_jitter'])
    np.testing.assert_array_equal(one_thread, expected)
    assert (one_thread != decoded).any(axis=(1, 2, 3)).mean() > 0.9  # nearly every image changed
    for other in (augment(epoch=3), augment(seed=5)):
        assert (load(beton, augment=other).numpy() != one_thread).any(axis=(1, 2, 3)).mean() > 0.9


def test_switches_and_epoch_take_effect_without_recompiling(beton, monkeypatch):
    """One loader: the trainer turns RandAugment and color jitter on and off at given epochs."""
    from ffcv.fields.basics import IntDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.pipeline.compiler import Compiler
    from ffcv.transforms import ToTensor

    from fastimagenet.train.decoders import RandomResizedCropFlipDecoder
    ra, cj = parse_randaugment('rand-m9-mstd0.5'), color_jitter_spec(0.4, 0.4, 0.4, 0.1)
    decoder = RandomResizedCropFlipDecoder((48, 48), seed=0)
    op = PerSampleAugment(0, randaugment=ra, color_jitter=cj)
    Compiler.set_num_threads(1)
    loader = Loader(str(beton), batch_size=8, num_workers=1, order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines={'image': [decoder, op, ToTensor()], 'label': [IntDecoder(), ToTensor()]})
    compiles = []
    monkeypatch.setattr(Compiler, 'compile', classmethod(lambda cls, code, signature=None: compiles.append(code)))

    def epoch(e, randaugment, color_jitter):
        decoder.epoch = op.epoch = e
        op.randaugment_on, op.color_jitter_on = randaugment, color_jitter
        return np.concatenate([x.numpy().copy() for x, _ in loader])
    n = 8 * len(loader)
    for e, switches in enumerate([(False, False), (True, False), (True, True), (False, True), (False, False)]):
        got = epoch(e, *switches)
        op.randaugment_on = op.color_jitter_on = False
        plain = epoch(e, False, False)
        expected = augment_images(plain.copy(), np.arange(n), seed=0, epoch=e,
                                  randaugment=ra if switches[0] else None, color_jitter=cj if switches[1] else None)
        np.testing.assert_array_equal(got, expected, err_msg=str(switches))
        assert (got != plain).any() == any(switches)
    assert compiles == []
    with pytest.raises(ValueError, match='built without it'):
        PerSampleAugment(0, color_jitter=cj).randaugment_on = True


def test_as_train_loader_would_place_it_on_a_cpu(beton):
    """decoder (uint8) -> PerSampleAugment -> NormalizeImage -> ToTensor -> ToTorchImage: the
    CPU training pipeline with the augmentation in it gives the normalised augmented images."""
    from ffcv.transforms import NormalizeImage, ToTensor, ToTorchImage

    from fastimagenet.train.inputs import IMAGENET_MEAN, IMAGENET_STD
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    augmented = load(beton, augment=PerSampleAugment(0, randaugment='rand-m9-mstd0.5'))
    normalised = load(beton, augment=PerSampleAugment(0, randaugment='rand-m9-mstd0.5'), threads=2,
                      tail=[NormalizeImage(mean, std, np.float32), ToTensor(), ToTorchImage()])
    assert normalised.dtype == torch.float32 and normalised.shape[1] == 3
    expected = (augmented.float() - torch.tensor(mean, dtype=torch.float32)) / torch.tensor(std, dtype=torch.float32)
    torch.testing.assert_close(normalised.permute(0, 2, 3, 1), expected, atol=1e-5, rtol=1e-5)


def test_refuses_normalised_input(beton):
    from ffcv.fields.basics import IntDecoder
    from ffcv.loader import Loader
    from ffcv.transforms import ToTensor

    from fastimagenet.train.decoders import RandomResizedCropFlipDecoder
    from fastimagenet.train.inputs import IMAGENET_MEAN, IMAGENET_STD
    decoder = RandomResizedCropFlipDecoder((32, 32), normalize=(IMAGENET_MEAN, IMAGENET_STD))
    with pytest.raises(ValueError, match='uint8 .H, W, 3. images straight from the decoder'):
        Loader(str(beton), batch_size=4, num_workers=1,
               pipelines={'image': [decoder, PerSampleAugment(0, randaugment='rand-m9'), ToTensor()],
                          'label': [IntDecoder(), ToTensor()]})


# ---- configs ----

@pytest.mark.parametrize('config', ['rand-m9-mstd0.5', 'rand-m9-mstd0.5-inc1', 'rand-m7-n3-p0.8-mstd101',
                                    'rand-mstd1-tweights', 'rand-m12-mmax15', 'rand-m9-mmax0', 'rand-n0',
                                    'rand-m9-', 'rand', 'rand-inc0-m10-n1-p1'])
def test_valid_configs_parse_as_timm_parses_them(config):
    ours = parse_randaugment(config)
    theirs = timm_aa.rand_augment_transform(config, dict(TIMM_HPARAMS))
    assert ours.num_layers == theirs.num_layers
    assert ours.ops == tuple(op.name for op in theirs.ops)
    if theirs.choice_weights is None:
        assert ours.weights is None
    else:
        np.testing.assert_allclose(ours.weights, theirs.choice_weights, rtol=1e-12)
    op = theirs.ops[0]
    assert ours.magnitude == op.magnitude and ours.prob == op.prob
    assert ours.magnitude_std == op.magnitude_std
    assert ours.magnitude_max == (op.magnitude_max or timm_aa._LEVEL_DENOM)
    assert ours.translate_pct == 0.45 and ours.fill == tuple(op.kwargs['fillcolor'])


@pytest.mark.parametrize('config, names', [
    ('rand-m9-foo', "'foo' has no number"),
    ('rand-m9-mstdinf', "'mstdinf' has no number"),
    ('rand-m9-x3', "unknown section 'x3'"),
    ('rand-m9-mstd0.5-w0', "'w0': timm 1.0.31 has no 'w' section"),
    ('rand-m9-tfoo', "unknown transform set 'tfoo'"),
    ('rand-m9-t3a', "'t3a'"),
    ('rand-m9.5', "'m9.5': m takes a whole number"),
    ('rand-m9-mstd0.5x', "'mstd0.5x': mstd takes a number"),
    ('rand-m9-p1.5', "'p1.5': p must be a probability"),
    ('rand-m9-inc2', "'inc2': inc must be 0 or 1"),
    ('rand-m9-m10', "'m' given twice"),
    ('rand-n16-tweights', "'n16': n must be at most 15"),
    ('augmix-m9', "must start with 'rand'"),
    ('', "must start with 'rand'"),
])
def test_bad_randaugment_configs_name_the_bad_part(config, names):
    with pytest.raises(ValueError) as e:
        parse_randaugment(config)
    message = str(e.value)
    assert names in message and '\n' not in message and repr(config) in message


@pytest.mark.parametrize('kwargs, names', [
    (dict(brightness=-0.1), 'brightness: a single number must be non-negative'),
    (dict(contrast=(1.2, 0.8)), 'contrast: range (1.2, 0.8) must satisfy'),
    (dict(hue=0.6), 'hue: range (-0.6, 0.6) must satisfy -0.5 <= min'),
    (dict(saturation='a lot'), 'saturation must be a number or a (min, max) pair'),
    (dict(saturation=(0.5,)), 'saturation must be a number or a (min, max) pair'),
    (dict(brightness=True), 'brightness must be a number'),
    (dict(brightness=float('nan')), 'brightness must be a number'),
    (dict(p=1.5), 'probability must be in [0, 1]'),
])
def test_bad_color_jitter_values_name_the_bad_part(kwargs, names):
    with pytest.raises(ValueError) as e:
        color_jitter_spec(**kwargs)
    assert names in str(e.value) and '\n' not in str(e.value)


def test_color_jitter_ranges_are_torchvisions():
    for args in [(0.4, 0.4, 0.4, 0.1), (0, 1.5, (0.2, 0.9), (-0.3, 0.1)), ((1, 1), 0, 0, 0), (0.2, (0.5, 0.5), 0, 0.5)]:
        tv, ours = ColorJitter(*args), color_jitter_spec(*args)
        for name in ('brightness', 'contrast', 'saturation', 'hue'):
            theirs = getattr(tv, name)
            assert getattr(ours, name) == (None if theirs is None else tuple(theirs)), (args, name)
    assert timm_color_jitter(0.4, p=0.8) == ColorJitterSpec((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), None, 0.8)
    assert timm_color_jitter((0.1, 0.2, 0.3, 0.05)).hue == (-0.05, 0.05)


def test_numba_cache_is_keyed_on_every_source_the_kernels_read():
    """A stale cached kernel would silently run old code: the cache entries of this package
    carry a hash of all its kernel files and of draws.py, not only of their own file."""
    from fastimagenet.train.augment import jit
    from fastimagenet.train.augment.per_sample import _augment_c
    from fastimagenet.train.augment.randaugment import randaugment
    assert {p.name for p in jit._SOURCES} >= {'draws.py', 'image_ops.py', 'randaugment.py', 'color_jitter.py',
                                              'per_sample.py'}
    for kernel in (randaugment, image_ops.rotate, _augment_c):  # _augment_c: what the pipeline calls
        locator = kernel._cache._impl.locator
        assert isinstance(locator, jit._Stamped) and locator.get_source_stamp() == jit._STAMP
