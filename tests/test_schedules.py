"""LR and resolution schedules, the stretch rule, and the shipped configs."""
import pytest
import yaml

from fastimagenet.common.config import flatten
from fastimagenet.train.config import CONFIG_DIR
from fastimagenet.train.schedules import lr_at, momentum_at, resolution_at, stretch

BUDGETS = (16, 24, 32, 40, 56, 88)


def test_cyclic_lr_is_the_public_triangle():
    kw = dict(schedule='cyclic', lr=1.7, epochs=16, lr_peak_epoch=2)
    assert lr_at(0, **kw) == pytest.approx(1.7e-4)
    assert lr_at(1, **kw) == pytest.approx((1.7e-4 + 1.7) / 2)
    assert lr_at(2, **kw) == pytest.approx(1.7)
    assert lr_at(9, **kw) == pytest.approx(1.7 * 7 / 14)
    assert lr_at(15.999, **kw) == pytest.approx(0, abs=1e-3)
    assert lr_at(16, **kw) == 0


def test_step_and_cosine():
    step = dict(schedule='step', lr=1.0, epochs=90, step_ratio=0.1, step_length=30)
    assert [lr_at(e, **step) for e in (0, 29.9, 30, 60.5)] == pytest.approx([1, 1, 0.1, 0.01])
    cos = dict(schedule='cosine', lr=2.0, epochs=12, lr_peak_epoch=2)
    assert lr_at(1, **cos) == pytest.approx(1.0)
    assert lr_at(2, **cos) == pytest.approx(2.0)
    assert lr_at(7, **cos) == pytest.approx(1.0)
    assert lr_at(11.999, **cos) == pytest.approx(0, abs=1e-5)
    with pytest.raises(ValueError):
        lr_at(0, schedule='linear', lr=1, epochs=1)


def test_resolution_ramp_in_steps_of_32():
    kw = dict(min_res=160, max_res=192, start_ramp=65, end_ramp=76)
    res = [resolution_at(e, **kw) for e in range(88)]
    assert res[:71] == [160] * 71 and res[71:] == [192] * 17  # half-way rounds up to the next step
    assert all(r % 32 == 0 for r in res) and res == sorted(res)
    assert [resolution_at(e, min_res=64, max_res=160, start_ramp=0, end_ramp=6) for e in range(7)] == \
        [64, 64, 96, 128, 128, 128, 160]  # np.round: halves to even


def shipped(epochs: int) -> dict:
    return flatten(yaml.safe_load((CONFIG_DIR / f'rn50_{epochs}_epochs.yaml').read_text()))


@pytest.mark.parametrize('epochs', BUDGETS)
def test_configs_are_the_88_epoch_recipe_stretched(epochs):
    base = shipped(88)
    expected = stretch(base, epochs)
    expected['logging.folder'] = f'runs/rn50_{epochs}_epochs'
    assert shipped(epochs) == expected


def test_stretch_reproduces_the_public_ramps():
    public = {16: (11, 13), 24: (17, 20), 32: (23, 27), 40: (29, 34), 56: (41, 48), 88: (65, 76)}
    base = {'training.epochs': 88, 'resolution.start_ramp': 65, 'resolution.end_ramp': 76,
            'lr.lr_peak_epoch': 2}
    for epochs, ramp in public.items():
        s = stretch(base, epochs)
        assert (s['resolution.start_ramp'], s['resolution.end_ramp']) == ramp
        assert s['lr.lr_peak_epoch'] == 2
        scaled = stretch(base, epochs, lr_peak='fraction')
        assert scaled['lr.lr_peak_epoch'] == pytest.approx(2 * epochs / 88, abs=1e-4)
        assert scaled['resolution.start_ramp'] == s['resolution.start_ramp']


def test_bare_config_name_is_found_in_rn50_configs():
    from fastimagenet.train import config
    p = config.load(['--config-file', 'rn50_16_epochs.yaml', '--data.val_dataset=x', '--training.epochs=3'])
    assert p['model.arch'] == 'resnet50d' and p['training.epochs'] == 3  # CLI wins
    assert p['resolution.end_ramp'] == 13 and p['config_files'][0].endswith('rn50_16_epochs.yaml')


def torch_one_cycle(steps: int, **kw) -> tuple[list[float], list[float]]:
    """LR and momentum at every step from torch's own OneCycleLR."""
    import torch
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, total_steps=steps, **kw)
    lrs, momenta = [], []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]['lr'])
        momenta.append(opt.param_groups[0]['momentum'])
        opt.step()
        sched.step()
    return lrs, momenta


@pytest.mark.parametrize('anneal', ['cos', 'linear'])
def test_onecycle_is_torchs_step_by_step(anneal):
    epochs, steps = 7, 13
    kw = dict(schedule='onecycle', lr=0.8, epochs=epochs, pct_start=0.25, div_factor=20, final_div_factor=300,
              anneal=anneal, cycle_momentum=1, base_momentum=0.8, max_momentum=0.93, steps_per_epoch=steps)
    lrs, momenta = torch_one_cycle(epochs * steps, max_lr=0.8, pct_start=0.25, div_factor=20, final_div_factor=300,
                                   anneal_strategy=anneal, cycle_momentum=True, base_momentum=0.8,
                                   max_momentum=0.93)
    ours = [lr_at(e + s / steps, **kw) for e in range(epochs) for s in range(steps)]
    ours_m = [momentum_at(e + s / steps, **kw) for e in range(epochs) for s in range(steps)]
    assert ours == pytest.approx(lrs, rel=1e-12, abs=1e-15)
    assert ours_m == pytest.approx(momenta, rel=1e-12)
    assert momentum_at(3.0, **{**kw, 'cycle_momentum': 0}) is None


def test_onecycle_from_a_later_epoch_starts_afresh_there():
    """A run switched to One-Cycle at epoch 20 of 40 (lr.start_epoch=20) gets a whole cycle over 20..40."""
    steps = 10
    kw = dict(schedule='onecycle', lr=1.0, epochs=40, start_epoch=20, steps_per_epoch=steps)
    fresh = dict(schedule='onecycle', lr=1.0, epochs=20, steps_per_epoch=steps)
    assert [lr_at(20 + t / 4, **kw) for t in range(80)] == [lr_at(t / 4, **fresh) for t in range(80)]
    assert lr_at(20, **kw) == pytest.approx(1.0 / 25)  # initial LR = peak / div_factor
    assert lr_at(39.9, **kw) == pytest.approx(1.0 / 25 / 1e4, rel=0.05)


def test_cosine_warm_up_and_floor():
    kw = dict(schedule='cosine', lr=2.0, epochs=12, lr_peak_epoch=2, min_lr=0.1)
    assert lr_at(1, **kw) == pytest.approx(1.0)
    assert lr_at(2, **kw) == pytest.approx(2.0)
    assert lr_at(7, **kw) == pytest.approx(0.1 + 1.9 / 2)
    assert lr_at(11.999999, **kw) == pytest.approx(0.1)


def test_lr_follows_the_global_batch_from_the_reference_batch():
    from fastimagenet.train.schedules import peak_lr
    p = {'lr.lr': 1.7, 'lr.reference_batch': 4096}
    assert peak_lr(p, 512) == pytest.approx(0.2125) and peak_lr(p, 4096) == 1.7
    assert peak_lr({'lr.lr': 1.7, 'lr.reference_batch': 0}, 512) == 1.7  # the public configs' meaning


def test_bad_schedules_are_named():
    from fastimagenet.train.schedules import check_schedule
    from fastimagenet.train import config
    base = config.load(['--data.val_dataset=x', '--logging.folder=y', '--training.epochs=10'])
    assert check_schedule(base) is None
    assert 'pct_start' in check_schedule({**base, 'lr.lr_schedule_type': 'onecycle', 'lr.pct_start': 0})
    assert 'warm-up must end' in check_schedule({**base, 'lr.lr_peak_epoch': 10})
    assert 'reference_batch' in check_schedule({**base, 'lr.reference_batch': -1})
    assert 'start_epoch' in check_schedule({**base, 'lr.start_epoch': 10})


def test_stretch_moves_augmentation_switches_by_fraction():
    base = {'training.epochs': 120, 'resolution.start_ramp': 89, 'resolution.end_ramp': 104, 'lr.lr_peak_epoch': 2,
            'augment.mixing_off_epoch': 52, 'augment.erasing_off_epoch': 83, 'augment.randaugment_off_epoch': -1,
            'augment.mixing_on_epoch': 0}
    s = stretch(base, 16)
    assert (s['augment.mixing_off_epoch'], s['augment.erasing_off_epoch']) == (7, 11)
    assert s['augment.randaugment_off_epoch'] == -1 and s['augment.mixing_on_epoch'] == 0
