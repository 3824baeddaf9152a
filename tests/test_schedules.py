"""LR and resolution schedules, the stretch rule, and the shipped configs."""
import pytest
import yaml

from fastimagenet.common.config import flatten
from fastimagenet.train.config import CONFIG_DIR
from fastimagenet.train.schedules import lr_at, resolution_at, stretch

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
