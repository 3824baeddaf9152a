"""The trainer, run as users run it, on CPU: it learns, resumes exactly, and evaluates exactly under DDP."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastimagenet.train.runs import BEST, FINAL, LAST, LOG, PARAMS

from conftest import ROOT, error_line, script

TRAINER = 'train/train_imagenet.py'
# Small and fast: 4 classes (textures and a circle: learnable in a few dozen steps) at 32-64 px,
# 40 images/class for training, 31 val images (odd: divides neither by 2 processes nor by the batch).
TINY = ['--model.arch=resnet18d', '--resolution.min_res=32', '--resolution.max_res=64',
        '--resolution.start_ramp=1', '--resolution.end_ramp=3', '--validation.resolution=64',
        '--validation.batch_size=8', '--training.batch_size=16', '--data.num_workers=1',
        '--lr.lr=0.02', '--lr.lr_peak_epoch=1', '--training.nesterov=1', '--data.min_crop_scale=0.25',
        '--training.use_blurpool=1']
SAMPLE_CLASSES = ['circle', 'stripes', 'checkerboard', 'dots']
VAL_COUNT = 31


@pytest.fixture(scope='session')
def betons(tmp_path_factory) -> dict[str, Path]:
    """The built-in sample (4 classes), converted; shared by the tests of this file."""
    from fastimagenet.convert.make_sample import write_sample
    root = tmp_path_factory.mktemp('sample')
    write_sample(root / 'images', train_per_class=40, val_per_class=8, seed=0, classes=SAMPLE_CLASSES)
    next((root / 'images' / 'val').glob('*/*_7.JPEG')).unlink()  # an odd count
    script('convert/write_imagenet.py', f'--cfg.data_dir={root / "images"}', f'--cfg.write_path={root}/',
           '--cfg.max_resolution=96', '--cfg.num_workers=2')
    return {'train': root / 'train.beton', 'val': root / 'val.beton'}


def data_args(betons) -> list[str]:
    return [f'--data.train_dataset={betons["train"]}', f'--data.val_dataset={betons["val"]}']


def read_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / LOG).read_text().splitlines()]


RUN_ARGS = ['--training.epochs=6', '--training.ema=1']


@pytest.fixture(scope='session')
def trained(betons, tmp_path_factory):
    """(run folder, stdout) of one 6-epoch run with EMA; tests that need a run copy the folder."""
    run = tmp_path_factory.mktemp('trained') / 'run'
    proc = script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', *RUN_ARGS)
    return run, proc.stdout


def copy_run(trained, tmp_path) -> Path:
    shutil.copytree(trained[0], tmp_path / 'run')
    return tmp_path / 'run'


def test_cpu_run_learns_and_writes_its_folder(betons, trained, tmp_path):
    run, stdout = copy_run(trained, tmp_path), trained[1]
    log = read_log(run)
    assert [r['epoch'] for r in log] == list(range(6))
    assert [r['res'] for r in log] == [32, 32, 64, 64, 64, 64]
    for r in log:
        assert {'lr', 'train_loss', 'top_1', 'top_5', 'val_loss', 'ema_top_1', 'ema_top_5',
                'epoch_time_s', 'train_imgs_per_s'} <= r.keys()
        assert 0 <= r['top_1'] <= r['top_5'] <= 1 and r['val_count'] == VAL_COUNT
    assert log[-1]['train_loss'] < log[0]['train_loss']
    assert log[-1]['top_1'] > 0.5, log  # well above chance (0.25)
    assert stdout.strip().splitlines()[-1] == f'top_1: {log[-1]["top_1"]:.4f}'

    params = json.loads((run / PARAMS).read_text())
    assert params['model.arch'] == 'resnet18d' and params['dataset.num_classes'] == 4
    assert [c['wnid'] for c in params['classes']] == sorted(c['wnid'] for c in params['classes'])
    weights = torch.load(run / FINAL, weights_only=True)
    assert not any(k.startswith(('module.', '_orig_mod.')) for k in weights)
    last = torch.load(run / LAST, weights_only=True)
    assert last['epoch'] == 6 and last['ema'] is not None
    assert (run / BEST).exists()

    # the same command again: nothing to do, same answer
    again = script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', *RUN_ARGS)
    assert 'already holds the finished run' in again.stdout
    assert again.stdout.strip().splitlines()[-1] == stdout.strip().splitlines()[-1]

    # eval_only on the run's best checkpoint logs to eval.jsonl
    ev = script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', *RUN_ARGS,
                '--training.eval_only=1', f'--training.checkpoint={run / LAST}')
    record = json.loads((run / 'eval.jsonl').read_text().splitlines()[-1])
    assert record['top_1'] == pytest.approx(log[-1]['top_1'])
    assert record['ema_top_1'] == pytest.approx(log[-1]['ema_top_1'])
    assert ev.stdout.strip().splitlines()[-1] == f'top_1: {record["top_1"]:.4f}'


def test_resume_after_kill_ends_like_an_uninterrupted_run(betons, tmp_path):
    args = [*TINY, *data_args(betons), '--training.epochs=4', '--training.ema=1', '--logging.log_level=0']
    straight = tmp_path / 'straight'
    script(TRAINER, *args, f'--logging.folder={straight}')

    broken = tmp_path / 'broken'
    proc = subprocess.Popen([sys.executable, TRAINER, *args, f'--logging.folder={broken}'], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if (broken / LOG).exists() and len(read_log(broken)) >= 2 and (broken / LAST).exists() \
                and torch.load(broken / LAST, weights_only=True)['epoch'] >= 2:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # after epoch 2, possibly mid-way through epoch 3
    proc.wait()
    assert torch.load(broken / LAST, weights_only=True)['epoch'] < 4, 'the run finished before the kill'

    resumed = script(TRAINER, *args, f'--logging.folder={broken}')
    assert 'resuming' in resumed.stdout
    a = torch.load(straight / FINAL, weights_only=True)
    b = torch.load(broken / FINAL, weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ema_a = torch.load(straight / LAST, weights_only=True)['ema']
    ema_b = torch.load(broken / LAST, weights_only=True)['ema']
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    assert [r['epoch'] for r in read_log(broken)] == [0, 1, 2, 3]
    assert read_log(broken)[-1]['top_1'] == read_log(straight)[-1]['top_1']


def test_two_process_gloo_validation_equals_one_process(betons, tmp_path):
    run = tmp_path / 'ddp'
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                           '--master_port=29731', TRAINER, *TINY, *data_args(betons),
                           f'--logging.folder={run}', '--training.epochs=1', '--training.batch_size=8'],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = read_log(run)[-1]
    assert ddp['val_count'] == VAL_COUNT
    assert json.loads((run / PARAMS).read_text())['dist.world_size'] == 2

    script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', '--training.eval_only=1',
           f'--training.checkpoint={run / LAST}')
    single = json.loads((run / 'eval.jsonl').read_text().splitlines()[-1])
    for key in ('top_1', 'top_5', 'val_loss'):
        assert single[key] == pytest.approx(ddp[key], abs=1e-5), key


def test_folder_of_another_run_is_refused(betons, trained, tmp_path):
    run = copy_run(trained, tmp_path)
    before = (run / LAST).read_bytes()
    proc = script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', *RUN_ARGS,
                  '--lr.lr=0.3', check=False)
    assert 'lr.lr' in error_line(proc)
    assert (run / LAST).read_bytes() == before

    # a reclaimed instance comes back with new mounts: moved datasets, more workers are fine
    moved = tmp_path / 'moved'
    moved.mkdir()
    for name in ('train', 'val'):
        for suffix in ('', '.json'):
            shutil.copy(f'{betons[name]}{suffix}', moved / f'{name}.beton{suffix}')
    ok = script(TRAINER, *TINY, f'--data.train_dataset={moved}/train.beton',
                f'--data.val_dataset={moved}/val.beton', f'--logging.folder={run}', *RUN_ARGS,
                '--data.num_workers=2')
    assert 'already holds the finished run' in ok.stdout


def test_bad_inputs_fail_in_one_line(betons, trained, tmp_path):
    def fails(*extra, folder=tmp_path / 'x') -> str:
        return error_line(script(TRAINER, *TINY, f'--logging.folder={folder}', *extra, check=False))

    train, val = data_args(betons)
    assert 'does not exist' in fails(f'--data.train_dataset={tmp_path}/nope.beton', val)
    (tmp_path / 'text.beton').write_text('hello, not a beton' * 10)
    assert 'not an FFCV .beton' in fails(f'--data.train_dataset={tmp_path}/text.beton', val)
    assert 'fields' in fails(train, f'--data.val_dataset={fields_beton(tmp_path)}')
    cfg = tmp_path / 'typo.yaml'
    cfg.write_text('training:\n  epochz: 5\n')
    assert "unknown key 'training.epochz'" in fails(f'--config-file={cfg}', train, val)
    assert 'CPU cores' in fails(train, val, '--training.distributed=1', '--dist.world_size=64')
    assert 'multiple of 32' in fails(train, val, '--resolution.max_res=100')

    run = copy_run(trained, tmp_path)
    good = (run / LAST).read_bytes()
    (run / LAST).write_bytes(good[:len(good) // 3])  # truncated, as by a full disk
    assert 'corrupt' in fails(train, val, *RUN_ARGS, folder=run)
    torch.save({'conv1.weight': torch.zeros(1)}, run / LAST)  # someone else's state_dict
    assert 'not a checkpoint of this project' in fails(train, val, *RUN_ARGS, folder=run)
    assert 'not a checkpoint of this project' in fails(train, val, '--training.eval_only=1',
                                                      f'--training.checkpoint={run / LAST}', folder=run)


def fields_beton(tmp_path: Path) -> Path:
    """A valid .beton whose first field is not called `image` (as another ffcv dataset's would be)."""
    import numpy as np
    from fastimagenet.common.beton import MODE_RAW, BetonWriter, HeaderType
    path = tmp_path / 'fields.beton'
    with open(path, 'wb') as f:
        writer = BetonWriter(f, capacity=1)
        writer.add(MODE_RAW, 1, 1, np.zeros(3, np.uint8), 0)
        writer.finish()
        f.seek(HeaderType.itemsize + 1)  # the first descriptor's name
        f.write(b'pixels')
    return path


def test_public_ffcv_imagenet_yaml_runs_unchanged(betons, tmp_path):
    """The keys of the public rn18/rn50 configs (including data.gpu, logging.log_level, training.bn_wd)."""
    cfg = tmp_path / 'rn18_public.yaml'
    cfg.write_text("""data:
  gpu: 0
  in_memory: 1
  num_workers: 1
dist:
  world_size: 1
logging:
  folder: /tmp/
  log_level: 0
lr:
  lr: 0.5
  lr_peak_epoch: 2
  lr_schedule_type: cyclic
model:
  arch: resnet18
resolution:
  end_ramp: 76
  max_res: 192
  min_res: 160
  start_ramp: 65
training:
  batch_size: 1024
  bn_wd: 0
  distributed: 0
  epochs: 88
  label_smoothing: 0.1
  momentum: 0.9
  optimizer: sgd
  weight_decay: 5e-5
  use_blurpool: 1
validation:
  lr_tta: true
  resolution: 256
""")
    run = tmp_path / 'pub'
    proc = script(TRAINER, f'--config-file={cfg}', *data_args(betons), f'--logging.folder={run}',
                  '--training.epochs=1', '--training.batch_size=16', '--resolution.min_res=32',
                  '--resolution.max_res=32', '--validation.resolution=32')
    params = json.loads((run / PARAMS).read_text())
    assert params['model.arch'] == 'resnet18' and params['training.weight_decay'] == 5e-5
    assert params['validation.lr_tta'] == 1 and params['data.gpu'] == 0
    assert proc.stdout.strip().splitlines()[-1].startswith('top_1: ')
