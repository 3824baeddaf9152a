"""Batch-side augmentations (random erasing, Mixup/CutMix, soft-target losses) against timm's.

Three kinds of evidence: for the same draws, our outputs equal timm's bit for bit (timm's
own code runs with its `random` / numpy draws scripted from our draw table); over many
draws, our distributions match timm's own seeded ones (every test here is deterministic,
so a bound cannot flake: the bounds are ~6 sigma, or a two-sample KS test at p = 1e-6, so a
real difference shows); and the outputs depend on (seed, epoch, sample index) alone.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.data import mixup as timm_mixup
from timm.data import random_erasing as timm_erasing
from timm.loss import BinaryCrossEntropy as TimmBCE
from timm.loss import SoftTargetCrossEntropy as TimmSoftCE

from fastimagenet.train.augment import erasing as E
from fastimagenet.train.augment import mixing as M
from fastimagenet.train.augment.erasing import ErasingSpec, erase, erasing_boxes
from fastimagenet.train.augment.losses import BinaryCrossEntropy, LossSpec, SoftTargetCrossEntropy
from fastimagenet.train.augment.mixing import MixSpec, mix, mixing_params, soft_targets
from fastimagenet.train.draws import STREAM_ERASING, STREAM_MIXING, uniform_table

N_STATS = 20000  # draws per distribution comparison


def images(n=8, h=20, w=24, seed=0) -> torch.Tensor:
    x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(memory_format=torch.channels_last)


def ks_distance(a, b) -> float:
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, 'right') / len(a) - np.searchsorted(b, grid, 'right') / len(b)).max())


def assert_same_distribution(ours, theirs, what):
    """Two-sample Kolmogorov-Smirnov at p = 1e-6 (ties make it conservative)."""
    n, m = len(ours), len(theirs)
    bound = math.sqrt(-0.5 * math.log(1e-6 / 2)) * math.sqrt((n + m) / (n * m))
    assert ks_distance(ours, theirs) < bound, (what, ks_distance(ours, theirs), bound)


def assert_same_rate(ours, theirs, what):
    """Two binomial rates within 6 sigma of each other."""
    p1, p2 = np.mean(ours), np.mean(theirs)
    p = (p1 * len(ours) + p2 * len(theirs)) / (len(ours) + len(theirs))
    sigma = math.sqrt(max(p * (1 - p), 1e-4) * (1 / len(ours) + 1 / len(theirs)))
    assert abs(p1 - p2) < 6 * sigma, (what, p1, p2, sigma)


# ---------------------------------------------------------------- timm with scripted draws

class ScriptedNumpy:
    """Answers timm's mixup.py calls to np.random from our draw table (rows as mixing.py reads them)."""

    def __init__(self, spec: MixSpec, draws: np.ndarray, params: M.MixParams, per_batch: bool):
        mixup_alpha, cutmix_alpha = spec.alphas
        both = mixup_alpha > 0 and cutmix_alpha > 0
        if per_batch:  # rand() < prob, then rand() < switch_prob
            self.rand_calls = [draws[0, M._APPLY], draws[0, M._SWITCH]]
        else:  # rand(n) < switch_prob (both alphas only), then rand(n) < prob
            self.rand_calls = [draws[:, M._SWITCH]] * both + [draws[:, M._APPLY]]
        self.draws = draws
        per_box = 4 if spec.cutmix_minmax is not None else 2  # (cut_h, cut_w, top, left) or (cy, cx)
        self.randint_calls = [u for i in np.flatnonzero(params.cutmix) for u in draws[i, M._BOX:M._BOX + per_box]]

    def rand(self, size=None):
        return self.rand_calls.pop(0)

    def beta(self, a, b, size=None):
        lam = M.beta_draws(self.draws[:, M._BETA], np.full(len(self.draws), a))
        return lam[0] if size is None else lam

    def randint(self, low, high=None, size=None):
        return low + int(self.randint_calls.pop(0) * (high - low))  # as mixing.py maps a uniform


def numpy_global_rng(monkeypatch, seed):
    """timm's mixup draws from numpy's global generator: seed it for this test alone."""
    rng = np.random.RandomState(seed)
    for name in ('rand', 'beta', 'randint'):
        monkeypatch.setattr(np.random, name, getattr(rng, name))


def timm_mix(monkeypatch, x, labels, spec: MixSpec, draws, params):
    scripted = ScriptedNumpy(spec, draws, params, spec.mode == 'batch')
    with monkeypatch.context() as m:
        for name in ('rand', 'beta', 'randint'):
            m.setattr(np.random, name, getattr(scripted, name))
        mixup = timm_mixup.Mixup(mixup_alpha=spec.mixup_alpha, cutmix_alpha=spec.cutmix_alpha,
                                 cutmix_minmax=spec.cutmix_minmax, prob=spec.prob, switch_prob=spec.switch_prob,
                                 mode=spec.mode, correct_lam=spec.correct_lam,
                                 label_smoothing=spec.label_smoothing, num_classes=spec.num_classes)
        out = mixup(x.clone(), labels)
    assert not scripted.randint_calls  # timm cut exactly the boxes we cut
    return out


class ScriptedRandom:
    """Stands in for the `random` module inside timm's random_erasing.py, answering from our table."""

    def __init__(self, draws: np.ndarray):
        self.draws, self.row, self.last, self.abandoned = draws, -1, None, 0

    def _column(self, offset):
        return self.draws[self.row, E._BOXES + 4 * (E.ATTEMPTS * self.box + self.attempt) + offset]

    def random(self):  # the first draw of each sample: apply or not
        self.abandoned += self.last == 'aspect'  # the previous sample's last box never fitted
        self.row, self.last = self.row + 1, 'apply'
        return self.draws[self.row, E._APPLY]

    def uniform(self, a, b):
        if self.last == 'area':
            self.last = 'aspect'
            return a + (b - a) * self._column(1)
        if self.last in ('apply', 'count'):  # the sample's first box
            self.box, self.attempt = 0, 0
        elif self.last == 'left':  # the previous box was placed
            self.box, self.attempt = self.box + 1, 0
        else:  # the previous attempt did not fit
            self.attempt += 1
            if self.attempt == E.ATTEMPTS:  # nor did any: timm goes on to the next box
                self.box, self.attempt, self.abandoned = self.box + 1, 0, self.abandoned + 1
        self.last = 'area'
        return a + (b - a) * self._column(0)

    def randint(self, a, b):
        if self.last == 'apply':
            self.last, u = 'count', self.draws[self.row, E._COUNT]
        else:
            self.last = 'top' if self.last == 'aspect' else 'left'
            u = self._column(2 if self.last == 'top' else 3)
        return a + int(u * (b - a + 1))  # as erasing.py maps a uniform


def timm_erasing_module(spec: ErasingSpec):
    return timm_erasing.RandomErasing(probability=spec.probability, min_area=spec.min_area,
                                      max_area=spec.max_area, min_aspect=spec.min_aspect,
                                      max_aspect=spec.max_aspect, mode=spec.mode, min_count=spec.min_count,
                                      max_count=spec.max_count, device='cpu')


# ---------------------------------------------------------------- equal to timm for the same draws

MIX_CONFIGS = {
    'recipe': {},
    'minmax': {'cutmix_minmax': (0.3, 0.8)},
    'cutmix-only': {'mixup_alpha': 0.0},
    'mixup-only': {'cutmix_alpha': 0.0},
    'prob-uncorrected': {'prob': 0.6, 'correct_lam': False, 'switch_prob': 0.3, 'label_smoothing': 0.0},
}


@pytest.mark.parametrize('mode', M.MODES)
@pytest.mark.parametrize('config', MIX_CONFIGS)
def test_mixing_equals_timm_for_the_same_draws(monkeypatch, mode, config):
    spec = MixSpec(mode=mode, num_classes=10, **MIX_CONFIGS[config])
    seen = {'cutmix': 0, 'mixup': 0}
    for epoch in range(16):
        x, labels, idx = images(seed=epoch), torch.randint(0, 10, (8,)), np.arange(8) * 5 + 11
        rows = {'batch': 1, 'pair': 4, 'elem': 8}[mode]
        draws = uniform_table(3, epoch, idx[:rows], STREAM_MIXING, M.COLUMNS)
        params = mixing_params(spec, draws, 20, 24, mode == 'batch')
        timm_x, timm_targets = timm_mix(monkeypatch, x, labels, spec, draws, params)
        ours = mix(x, labels, idx, spec, seed=3, epoch=epoch)
        assert torch.equal(ours.images, timm_x) and torch.equal(ours.targets, timm_targets), epoch
        assert ours.images.is_contiguous(memory_format=torch.channels_last)
        seen['cutmix'] += int(params.cutmix.any())
        seen['mixup'] += int((~params.cutmix & (params.lam != 1)).any())
    mixup_alpha, cutmix_alpha = spec.alphas
    assert (seen['cutmix'] > 0) == (cutmix_alpha > 0) and (seen['mixup'] > 0) == (mixup_alpha > 0), seen


@pytest.mark.parametrize('per_batch', [True, False])
@pytest.mark.parametrize('minmax', [None, (0.25, 0.75)])
def test_cutmix_boxes_equal_timm_helpers(monkeypatch, per_batch, minmax):
    """Many lam values and centres, the borders included: boxes and corrected lam as cutmix_bbox_and_lam's."""
    rng = np.random.default_rng(0)
    draws = rng.random((2000, M.COLUMNS))
    draws[:, M._APPLY] = 0  # always mix
    draws[:, M._BOX:M._BOX + 2][:50] = [0.0, 0.999999]  # a corner, then near-1 and near-0 lam
    spec = MixSpec(mixup_alpha=0.0, cutmix_alpha=1.0, cutmix_minmax=minmax)
    lam_draws = M.beta_draws(draws[:, M._BETA], np.ones(len(draws)))
    lam_draws[50:60], lam_draws[60:70] = 1 - 1e-9, 1e-9
    monkeypatch.setattr(M, 'beta_draws', lambda u, alpha: lam_draws[:len(u)])
    ours = mixing_params(spec, draws, 37, 53, per_batch)
    dtype = np.float64 if per_batch else np.float32
    assert np.array_equal(ours.cutmix, dtype(lam_draws) != 1)  # lam 1 (in its precision): no box
    for i in np.flatnonzero(ours.cutmix):
        box_draws = list(draws[i, M._BOX:M._BOX + 4])
        monkeypatch.setattr(np.random, 'randint',
                            lambda low, high=None, size=None: low + int(box_draws.pop(0) * (high - low)))
        (y0, y1, x0, x1), lam = timm_mixup.cutmix_bbox_and_lam((3, 37, 53), dtype(lam_draws[i]), minmax)
        assert (y0, y1, x0, x1) == (ours.y0[i], ours.y1[i], ours.x0[i], ours.x1[i]), i
        assert dtype(lam) == ours.lam[i] and ours.lam.dtype == dtype, i


ERASING_CONFIGS = {
    'recipe': {},
    'three-boxes': {'probability': 0.7, 'max_count': 3},
    'attempts-fail': {'probability': 1.0, 'min_area': 0.5, 'max_area': 0.95, 'min_aspect': 0.1, 'max_count': 2},
}


@pytest.mark.parametrize('mode', E.MODES)
@pytest.mark.parametrize('config', ERASING_CONFIGS)
def test_erasing_equals_timm_for_the_same_draws(monkeypatch, mode, config):
    spec = ErasingSpec(mode=mode, **ERASING_CONFIGS[config])
    x, idx = images(64, 24, 20), np.arange(64) * 7 + 3
    draws = uniform_table(1, 2, idx, STREAM_ERASING, spec.columns(3))
    boxes = erasing_boxes(spec, 24, 20, draws)
    # timm's fills, scripted: our 'rand' colours, and 'pixel' noise from the same per-sample generators
    colours, seeds, fills = E.box_colours(spec, 3, draws), E.noise_seeds(spec, draws), []
    for i in range(64):
        generator = torch.Generator().manual_seed(int(seeds[i]))
        for b in np.flatnonzero(boxes.valid[i]):
            if mode == 'rand':
                fills.append(torch.tensor(colours[i, b], dtype=torch.float32)[:, None, None])
            elif mode == 'pixel':
                fills.append(torch.randn((3, int(boxes.h[i, b]), int(boxes.w[i, b])), generator=generator))
    scripted = ScriptedRandom(draws)
    with monkeypatch.context() as m:
        m.setattr(timm_erasing, 'random', scripted)
        if mode != 'const':
            m.setattr(timm_erasing, '_get_pixels', lambda *args, **kwargs: fills.pop(0))
        theirs = timm_erasing_module(spec)(x.clone())
    ours = erase(x, idx, spec, seed=1, epoch=2)
    assert not fills and torch.equal(ours, theirs)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert boxes.valid.any()
    if config == 'attempts-fail':
        assert scripted.abandoned > 0  # the 10-attempt rule was exercised


# ---------------------------------------------------------------- distributions against timm's own draws

def test_mixing_statistics_match_timm(monkeypatch):
    spec = MixSpec(mixup_alpha=0.2, cutmix_alpha=1.0, prob=0.6, switch_prob=0.3, mode='elem', correct_lam=False)
    timm = timm_mixup.Mixup(mixup_alpha=0.2, cutmix_alpha=1.0, prob=0.6, switch_prob=0.3, mode='elem',
                            correct_lam=False)
    numpy_global_rng(monkeypatch, 0)
    theirs = {'elem': timm._params_per_elem(N_STATS),
              'batch': tuple(map(np.array, zip(*(timm._params_per_batch() for _ in range(N_STATS)))))}
    draws = uniform_table(0, 5, np.arange(N_STATS), STREAM_MIXING, M.COLUMNS)
    for mode, (their_lam, their_cutmix) in theirs.items():
        ours = mixing_params(spec, draws, 160, 160, per_batch=mode == 'batch')
        our_lam, our_cutmix = ours.lam.astype(np.float64), ours.cutmix
        assert_same_rate(our_lam != 1, their_lam != 1, f'{mode}: mixing rate')
        assert abs(np.mean(our_lam != 1) - 0.6) < 6 * math.sqrt(0.24 / N_STATS)
        mixed, their_mixed = our_lam != 1, their_lam != 1
        assert_same_rate(our_cutmix[mixed], their_cutmix[their_mixed], f'{mode}: cutmix share')
        for is_cutmix, alpha in ((False, 0.2), (True, 1.0)):
            a = our_lam[mixed & (our_cutmix == is_cutmix)]
            b = their_lam[their_mixed & (their_cutmix == is_cutmix)]
            assert_same_distribution(a, b, f'{mode}: lam, alpha {alpha}')
            var = 1 / (4 * (2 * alpha + 1))  # Beta(alpha, alpha): mean 1/2
            assert abs(a.mean() - 0.5) < 6 * math.sqrt(var / len(a)), (mode, alpha, a.mean())
            assert abs(a.var() / var - 1) < 0.1, (mode, alpha, a.var(), var)


@pytest.mark.parametrize('minmax', [None, (0.3, 0.8)])
def test_cutmix_box_statistics_match_timm(monkeypatch, minmax):
    spec = MixSpec(mixup_alpha=0.0, cutmix_alpha=1.0, cutmix_minmax=minmax, mode='elem')
    ours = mixing_params(spec, uniform_table(0, 1, np.arange(N_STATS), STREAM_MIXING, M.COLUMNS), 160, 128, False)
    numpy_global_rng(monkeypatch, 1)
    theirs = [timm_mixup.cutmix_bbox_and_lam((160, 128), np.random.beta(1.0, 1.0), minmax) for _ in range(N_STATS)]
    their_boxes, their_lam = np.array([b for b, _ in theirs]), np.array([lam for _, lam in theirs])
    assert_same_distribution(ours.lam, their_lam, 'corrected lam')
    for k, what in enumerate(('y0', 'y1', 'x0', 'x1')):
        assert_same_distribution(getattr(ours, what), their_boxes[:, k], what)


@pytest.mark.parametrize('config, size', [
    ({'probability': 0.25}, 32),
    ({'probability': 0.6, 'max_count': 3, 'min_aspect': 0.5, 'max_aspect': 3.0}, 40),
    ({'probability': 1.0, 'min_area': 0.5, 'max_area': 0.95, 'min_aspect': 0.1, 'min_count': 2, 'max_count': 3}, 12),
])
def test_erasing_statistics_match_timm(monkeypatch, config, size):
    spec = ErasingSpec(mode='const', **config)
    ours = erasing_boxes(spec, size, size, uniform_table(0, 3, np.arange(N_STATS), STREAM_ERASING, spec.columns(3)))

    class Recorder:  # what timm's _erase assigns to: img[:, top:top + h, left:left + w]
        def __init__(self):
            self.boxes = []

        def __setitem__(self, key, value):
            _, rows, cols = key
            self.boxes.append((rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start))

    monkeypatch.setattr(timm_erasing, '_get_pixels', lambda *args, **kwargs: None)
    monkeypatch.setattr(timm_erasing, 'random', random.Random(0))  # timm's own draws, seeded
    timm = timm_erasing_module(spec)
    per_sample = []
    for _ in range(N_STATS):
        recorder = Recorder()
        timm._erase(recorder, 3, size, size, torch.float32)
        per_sample.append(recorder.boxes)
    their_counts = np.array([len(b) for b in per_sample])
    theirs = np.array([box for boxes in per_sample for box in boxes], dtype=np.float64).reshape(-1, 4)
    our_counts = ours.valid.sum(axis=1)
    for count in range(spec.slots + 1):  # application rate, count draw and abandoned boxes together
        assert_same_rate(our_counts == count, their_counts == count, f'{count} boxes')
    v = ours.valid
    top, left, h, w = (getattr(ours, k)[v].astype(np.float64) for k in ('top', 'left', 'h', 'w'))
    assert_same_distribution(h * w, theirs[:, 2] * theirs[:, 3], 'area')
    assert_same_distribution(np.log((h + 0.5) / (w + 0.5)), np.log((theirs[:, 2] + 0.5) / (theirs[:, 3] + 0.5)),
                             'aspect')
    assert_same_distribution(top, theirs[:, 0], 'top')
    assert_same_distribution(left, theirs[:, 1], 'left')


# ---------------------------------------------------------------- losses and targets

def test_losses_equal_timm():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 10, generator=g) * 3
    soft = torch.softmax(torch.randn(32, 10, generator=g) * 2, dim=-1)
    labels = torch.randint(0, 10, (32,), generator=g)
    assert torch.equal(SoftTargetCrossEntropy()(logits, soft), TimmSoftCE()(logits, soft))
    for smoothing in (0.0, 0.1):
        for threshold in (None, 0.2):
            for reduction in ('mean', 'sum', 'none'):
                ours = BinaryCrossEntropy(smoothing, threshold, reduction)
                theirs = TimmBCE(smoothing, threshold, reduction=reduction)
                for targets in (labels, soft):
                    assert torch.equal(ours(logits, targets), theirs(logits, targets)), (smoothing, threshold)
    # hard labels through the soft-target CE: cross-entropy with label smoothing
    ce = SoftTargetCrossEntropy(smoothing=0.1)(logits, labels)
    torch.testing.assert_close(ce, F.cross_entropy(logits, labels, label_smoothing=0.1))
    torch.testing.assert_close(LossSpec('bce', target_threshold=0.2).build()(logits, soft),
                               TimmBCE(0.0, 0.2)(logits, soft))


def test_soft_targets_are_timms_label_smoothing():
    labels = torch.tensor([3, 0, 9, 3, 5])
    targets = soft_targets(labels, 10, 0.1)
    assert torch.equal(targets, timm_mixup.mixup_target(labels, 10, 1.0, 0.1))
    assert targets.dtype == torch.float32
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(SoftTargetCrossEntropy()(logits, targets),
                               F.cross_entropy(logits, labels, label_smoothing=0.1))


def test_hard_targets_are_flagged():
    x, labels, idx = images(9), torch.tensor([0, 1, 2, 3, 0, 2, 3, 0, 1]), np.arange(9) + 100  # partners differ
    plain = soft_targets(labels, 4, 0.1)
    for spec in (MixSpec(mixup_alpha=0.0, cutmix_alpha=0.0, num_classes=4), MixSpec(prob=0.0, num_classes=4)):
        out = mix(x, labels, idx, spec, seed=0, epoch=0)
        assert out.all_hard and out.images is x and torch.equal(out.targets, plain)
    seen_hard = seen_soft = 0
    for epoch in range(40):
        for mode in M.MODES:
            out = mix(x, labels, idx, MixSpec(prob=0.5, mode=mode, num_classes=4), seed=0, epoch=epoch)
            assert np.array_equal(out.hard, out.lam == 1)
            h = torch.as_tensor(out.hard)
            assert torch.equal(out.images[h], x[h]) and torch.equal(out.targets[h], plain[h])
            mixed = ~h & (torch.arange(9) != 4)  # the middle sample, its own partner, keeps its target
            assert not (out.targets[mixed] == plain[mixed]).all(dim=1).any()
            if mode == 'pair':  # odd batch: the middle sample has no partner
                assert out.hard[4]
            seen_hard += int(out.hard.any())
            seen_soft += int((~out.hard).any())
    assert seen_hard and seen_soft


# ---------------------------------------------------------------- reproducibility

@pytest.mark.parametrize('mode', E.MODES)
def test_erasing_is_reproducible_and_follows_the_sample(mode):
    spec = ErasingSpec(probability=0.5, mode=mode, max_count=2)
    x, idx = images(32, 30, 26, seed=4), np.arange(32) * 31 + 7
    before = x.clone()
    out = erase(x, idx, spec, seed=9, epoch=3)
    assert torch.equal(x, before)  # the input is not written
    assert torch.equal(out, erase(x.clone(), torch.as_tensor(idx), spec, seed=9, epoch=3))
    assert not torch.equal(out, erase(x, idx, spec, seed=9, epoch=4))
    assert not torch.equal(out, erase(x, idx, spec, seed=10, epoch=3))
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(erase(x[perm], idx[perm.numpy()], spec, seed=9, epoch=3), out[perm])
    assert not torch.equal(out, x)


@pytest.mark.parametrize('mode', M.MODES)
def test_mixing_is_reproducible(mode):
    spec = MixSpec(mode=mode, num_classes=10)
    x, labels, idx = images(16, seed=2), torch.randint(0, 10, (16,)), np.arange(16) * 3
    before = x.clone()
    first = mix(x, labels, idx, spec, seed=1, epoch=7)
    again = mix(x.clone(), labels, torch.as_tensor(idx), spec, seed=1, epoch=7)
    assert torch.equal(x, before)
    assert torch.equal(first.images, again.images) and torch.equal(first.targets, again.targets)
    assert np.array_equal(first.lam, again.lam)
    others = [mix(x, labels, idx, spec, seed=1, epoch=e).lam for e in range(8, 12)]
    assert not all(np.array_equal(first.lam, lam) for lam in others)


def test_batch_mode_draws_from_the_first_sample():
    spec, x, labels = MixSpec(num_classes=10), images(8), torch.randint(0, 10, (8,))
    a = mix(x, labels, np.arange(8), spec, seed=0, epoch=1)
    b = mix(x, labels, np.r_[0, np.arange(8)[:0:-1]], spec, seed=0, epoch=1)  # same first sample
    assert np.array_equal(a.lam, b.lam)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_on_cuda_as_on_cpu():
    """Geometry and draws are host-side and the pixel arithmetic is exact elementwise float32
    operations, so a CUDA batch gets the CPU's result bit for bit; 'pixel' noise (CUDA's own
    generator) is reproducible and follows the sample."""
    cuda = torch.device('cuda')
    x, labels, idx = images(16, 40, 48, seed=5), torch.randint(0, 10, (16,)), np.arange(16) * 3 + 1
    for mode in ('const', 'rand'):
        spec = ErasingSpec(probability=0.7, mode=mode, max_count=2)
        assert torch.equal(erase(x.to(cuda), idx, spec, seed=0, epoch=1).cpu(), erase(x, idx, spec, seed=0, epoch=1))
    spec, perm = ErasingSpec(probability=0.7, max_count=2), torch.randperm(16)
    out = erase(x.to(cuda), torch.as_tensor(idx, device=cuda), spec, seed=0, epoch=1)
    assert torch.equal(out, erase(x.to(cuda), idx, spec, seed=0, epoch=1))
    assert torch.equal(out[perm.to(cuda)], erase(x[perm].to(cuda), idx[perm.numpy()], spec, seed=0, epoch=1))
    for mode in M.MODES:
        for epoch in range(8):
            on_gpu = mix(x.to(cuda), labels.to(cuda), idx, MixSpec(mode=mode, num_classes=10), seed=0, epoch=epoch)
            on_cpu = mix(x, labels, idx, MixSpec(mode=mode, num_classes=10), seed=0, epoch=epoch)
            assert torch.equal(on_gpu.images.cpu(), on_cpu.images) and torch.equal(on_gpu.targets.cpu(), on_cpu.targets)


# ---------------------------------------------------------------- configuration errors

@pytest.mark.parametrize('make, kwargs, field', [
    (ErasingSpec, {'probability': 1.5}, 'probability'),
    (ErasingSpec, {'probability': True}, 'probability'),
    (ErasingSpec, {'probability': 'high'}, 'probability'),
    (ErasingSpec, {'mode': 'gauss'}, 'mode'),
    (ErasingSpec, {'min_area': 0.0}, 'min_area'),
    (ErasingSpec, {'max_area': 1.2}, 'max_area'),
    (ErasingSpec, {'min_area': 0.5, 'max_area': 0.4}, 'min_area'),
    (ErasingSpec, {'min_aspect': 0}, 'min_aspect'),
    (ErasingSpec, {'max_aspect': -1.0}, 'max_aspect'),
    (ErasingSpec, {'min_aspect': 2.0}, 'min_aspect'),  # max_aspect None: 1 / 2 < 2
    (ErasingSpec, {'min_count': 0}, 'min_count'),
    (ErasingSpec, {'min_count': 1.5}, 'min_count'),
    (ErasingSpec, {'min_count': 2, 'max_count': 1}, 'max_count'),
    (MixSpec, {'mixup_alpha': -0.1}, 'mixup_alpha'),
    (MixSpec, {'cutmix_alpha': float('nan')}, 'cutmix_alpha'),
    (MixSpec, {'cutmix_minmax': (0.5,)}, 'cutmix_minmax'),
    (MixSpec, {'cutmix_minmax': (0.0, 0.5)}, 'cutmix_minmax'),
    (MixSpec, {'cutmix_minmax': (0.8, 0.3)}, 'cutmix_minmax'),
    (MixSpec, {'cutmix_minmax': (0.2, 1.2)}, 'cutmix_minmax'),
    (MixSpec, {'prob': 2}, 'prob'),
    (MixSpec, {'switch_prob': -0.5}, 'switch_prob'),
    (MixSpec, {'mode': 'sample'}, 'mode'),
    (MixSpec, {'correct_lam': 1}, 'correct_lam'),
    (MixSpec, {'label_smoothing': 1.5}, 'label_smoothing'),
    (MixSpec, {'num_classes': 0}, 'num_classes'),
    (LossSpec, {'name': 'mse'}, 'name'),
    (LossSpec, {'target_threshold': 0.2}, 'target_threshold'),  # a BCE option on 'ce'
    (LossSpec, {'name': 'bce', 'target_threshold': 2.0}, 'target_threshold'),
    (LossSpec, {'reduction': 'avg'}, 'reduction'),
    (LossSpec, {'smoothing': 1.0}, 'smoothing'),
])
def test_specs_name_the_bad_field(make, kwargs, field):
    with pytest.raises(ValueError, match=rf'^{field} must be .*, got '):
        make(**kwargs)


def test_good_specs_and_mismatched_batches():
    assert MixSpec(cutmix_minmax=[0.2, 0.8]).cutmix_minmax == (0.2, 0.8)
    assert MixSpec(mixup_alpha=0.0, cutmix_alpha=0.0, cutmix_minmax=(0.2, 0.8)).alphas == (0.0, 1.0)
    assert ErasingSpec(min_aspect=0.5).aspect_range == (0.5, 2.0) and ErasingSpec(max_count=3).slots == 3
    x = images(4)
    with pytest.raises(ValueError, match='3 indices for a batch of 4'):
        erase(x, np.arange(3), ErasingSpec(), seed=0, epoch=0)
    with pytest.raises(ValueError, match='3 indices and 4 labels for a batch of 4'):
        mix(x, torch.zeros(4, dtype=torch.long), np.arange(3), MixSpec(num_classes=2), seed=0, epoch=0)
