"""The trainer, run as users run it, on CPU: it learns, resumes exactly (one process and DDP),
evaluates exactly under DDP, and refuses what it cannot do in one line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastimagenet.train.runs import BEST, FINAL, LAST, LOG, PARAMS

from conftest import ROOT, error_line, kill_tree, script, start_until_fault

TRAINER = 'train/train_imagenet.py'
# Small and fast: 4 classes (textures and a circle: learnable in a few dozen steps) at 32-64 px,
# 40 images/class for training, 31 val images (odd: divides neither by 2 processes nor by the batch).
TINY = ['--model.arch=resnet18d', '--resolution.min_res=32', '--resolution.max_res=64',
        '--resolution.start_ramp=1', '--resolution.end_ramp=3', '--validation.resolution=64',
        '--validation.batch_size=8', '--training.batch_size=16', '--data.num_workers=1',
        '--lr.lr=0.02', '--lr.lr_peak_epoch=1', '--training.nesterov=1', '--data.min_crop_scale=0.25',
        '--training.use_blurpool=1']
VAL_COUNT = 31


def data_args(betons) -> list[str]:
    return [f'--data.train_dataset={betons["train"]}', f'--data.val_dataset={betons["val"]}']


def read_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / LOG).read_text().splitlines()]


def same_weights(a: Path, b: Path) -> None:
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert x.keys() == y.keys()
    for k in x:
        assert torch.equal(x[k], y[k]), k


# Periodic checkpoints and plain progress lines (stdout is a pipe here, as under nohup or tee).
RUN_ARGS = ['--training.epochs=6', '--training.ema=1', '--logging.checkpoint_every=2',
            '--logging.keep_checkpoints=2', '--logging.progress_every=0']


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
        assert {'lr', 'train_loss', 'train_top_1', 'train_top_5', 'top_1', 'top_5', 'val_loss', 'ema_top_1',
                'ema_top_5', 'epoch_time_s', 'train_imgs_per_s', 'segment'} <= r.keys()
        assert 0 <= r['top_1'] <= r['top_5'] <= 1 and r['val_count'] == VAL_COUNT
        assert 0 <= r['train_top_1'] <= r['train_top_5'] <= 1
    assert log[-1]['train_loss'] < log[0]['train_loss']
    assert log[-1]['top_1'] > 0.5, log  # well above chance (0.25)
    # a CPU run's model uses every core it may (ffcv's import used to leave torch one)
    assert all(r['torch_threads'] == len(os.sched_getaffinity(0)) for r in log), log
    assert stdout.strip().splitlines()[-1] == f'top_1: {log[-1]["top_1"]:.4f}'
    # not a terminal: plain progress lines, no carriage-return frames of a progress bar
    assert '\r' not in stdout
    progress = [line for line in stdout.splitlines() if ' step ' in line and 'ETA' in line]
    assert progress and all(' img/s ' in line and ' lr ' in line and ' res ' in line for line in progress)

    params = json.loads((run / PARAMS).read_text())
    assert params['model.arch'] == 'resnet18d' and params['dataset.num_classes'] == 4
    assert params['precision'] == 'fp32' and [h['from_epoch'] for h in params['history']] == [0]
    assert [c['wnid'] for c in params['classes']] == sorted(c['wnid'] for c in params['classes'])
    weights = torch.load(run / FINAL, weights_only=True)
    assert not any(k.startswith(('module.', '_orig_mod.')) for k in weights)
    last = torch.load(run / LAST, weights_only=True)
    assert last['epoch'] == 6 and last['ema'] is not None and last['precision'] == 'fp32'
    assert (run / BEST).exists()
    # every 2 epochs, the newest 2 kept
    assert sorted(p.name for p in run.glob('epoch_*.pt')) == ['epoch_0004.pt', 'epoch_0006.pt']
    assert torch.load(run / 'epoch_0004.pt', weights_only=True)['epoch'] == 4

    # the same command again: nothing to do, same answer
    again = script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', *RUN_ARGS)
    assert 'already holds the finished run' in again.stdout
    assert again.stdout.strip().splitlines()[-1] == stdout.strip().splitlines()[-1]

    # killed between the last checkpoint and the final weights: the rerun writes them
    final = (run / FINAL).read_bytes()
    (run / FINAL).unlink()
    script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', *RUN_ARGS)
    same_weights(run / FINAL, trained[0] / FINAL)
    assert len((run / FINAL).read_bytes()) == len(final)

    # eval_only on the run's best checkpoint logs to eval.jsonl
    ev = script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', *RUN_ARGS,
                '--training.eval_only=1', f'--training.checkpoint={run / LAST}')
    record = json.loads((run / 'eval.jsonl').read_text().splitlines()[-1])
    assert record['top_1'] == pytest.approx(log[-1]['top_1'])
    assert record['ema_top_1'] == pytest.approx(log[-1]['ema_top_1'])
    assert ev.stdout.strip().splitlines()[-1] == f'top_1: {record["top_1"]:.4f}'


def test_resume_after_kill_ends_like_an_uninterrupted_run(betons, tmp_path):
    args = [TRAINER, *TINY, *data_args(betons), '--training.epochs=4', '--training.ema=1', '--logging.log_level=0']
    straight = tmp_path / 'straight'
    script(*args, f'--logging.folder={straight}')

    broken = tmp_path / 'broken'
    proc = start_until_fault([*args, f'--logging.folder={broken}'], 'train.epoch_saved:2', tmp_path)
    kill_tree(proc)  # kill -9 right after epoch 2's checkpoint
    assert torch.load(broken / LAST, weights_only=True)['epoch'] == 2

    resumed = script(*args, f'--logging.folder={broken}')
    assert 'resuming' in resumed.stdout
    same_weights(straight / FINAL, broken / FINAL)
    ema_a = torch.load(straight / LAST, weights_only=True)['ema']
    ema_b = torch.load(broken / LAST, weights_only=True)['ema']
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    assert [r['epoch'] for r in read_log(broken)] == [0, 1, 2, 3]
    assert read_log(broken)[-1]['top_1'] == read_log(straight)[-1]['top_1']


# Every augmentation on, each switched off at its own epoch, as in the strong recipe.
EVERY_AUGMENTATION = ['--augment.randaugment=rand-m9-mstd0.5-inc1', '--augment.randaugment_off_epoch=3',
                      '--augment.color_jitter_prob=0.5', '--augment.brightness=0.2', '--augment.contrast=0.2',
                      '--augment.saturation=0.2', '--augment.hue=0.05', '--augment.color_jitter_on_epoch=1',
                      '--augment.erasing_prob=0.5', '--augment.erasing_mode=pixel', '--augment.erasing_count=2',
                      '--augment.erasing_off_epoch=3', '--augment.mixup_alpha=0.2', '--augment.cutmix_alpha=1.0',
                      '--augment.mixing_off_epoch=2', '--training.loss=bce', '--training.bce_target_thresh=0.2']


def test_every_augmentation_trains_switches_by_epoch_and_resumes_exactly(betons, tmp_path):
    """The strong recipe's switches in one config; kill -9 after epoch 2 and rerun with another
    number of decoding threads: the same weights, since every draw is a function of
    (seed, epoch, sample index)."""
    args = [TRAINER, *TINY, *data_args(betons), '--training.epochs=4', '--training.ema=1', *EVERY_AUGMENTATION]
    straight = tmp_path / 'straight'
    script(*args, f'--logging.folder={straight}', '--data.num_workers=1')
    log = read_log(straight)
    assert [(r['randaugment_on'], r['color_jitter_on'], r['erasing_on'], r['mixing_on']) for r in log] == \
        [(1, 0, 1, 1), (1, 1, 1, 1), (1, 1, 1, 0), (0, 1, 0, 0)]
    # training accuracy only where targets are hard again (no Mixup/CutMix)
    assert ['train_top_1' in r for r in log] == [False, False, True, True]

    broken = tmp_path / 'broken'
    kill_tree(start_until_fault([*args, f'--logging.folder={broken}', '--data.num_workers=1'],
                                'train.epoch_saved:2', tmp_path))
    resumed = script(*args, f'--logging.folder={broken}', '--data.num_workers=2')
    assert 'resuming' in resumed.stdout
    same_weights(straight / FINAL, broken / FINAL)
    assert read_log(broken)[-1]['top_1'] == log[-1]['top_1']


def torchrun(port: int) -> list[str]:
    return ['-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={port}']


def test_two_process_gloo_run_resumes_exactly_and_validates_like_one_process(betons, tmp_path):
    """The DDP resume that used to crash (rank 1 unpickling the broadcast checkpoint), bit-exact."""
    args = [TRAINER, *TINY, *data_args(betons), '--training.epochs=3', '--training.batch_size=8', '--training.ema=1']
    straight = tmp_path / 'ddp'
    proc = subprocess.run([sys.executable, *torchrun(29731), *args, f'--logging.folder={straight}'],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = read_log(straight)[-1]
    assert ddp['val_count'] == VAL_COUNT
    assert json.loads((straight / PARAMS).read_text())['dist.world_size'] == 2

    broken = tmp_path / 'broken'
    proc = start_until_fault([*torchrun(29732), *args, f'--logging.folder={broken}'], 'train.epoch_saved:1',
                             tmp_path)
    kill_tree(proc)  # torchrun and both workers, after epoch 1
    again = subprocess.run([sys.executable, *torchrun(29733), *args, f'--logging.folder={broken}'],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert 'resuming' in again.stdout
    same_weights(straight / FINAL, broken / FINAL)
    a, b = (torch.load(f / LAST, weights_only=True) for f in (straight, broken))
    assert all(torch.equal(a['ema'][k], b['ema'][k]) for k in a['ema'])
    # and a finished 2-process run rerun (which crashed the same way) says so
    done = subprocess.run([sys.executable, *torchrun(29734), *args, f'--logging.folder={broken}'],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and 'already holds the finished run' in done.stdout, done.stderr[-3000:]

    script(*args, f'--logging.folder={straight}', '--training.eval_only=1', f'--training.checkpoint={straight / LAST}')
    single = json.loads((straight / 'eval.jsonl').read_text().splitlines()[-1])
    for key in ('top_1', 'top_5', 'val_loss'):
        assert single[key] == pytest.approx(ddp[key], abs=1e-5), key


def test_folder_of_another_run_is_refused(betons, trained, tmp_path):
    run = copy_run(trained, tmp_path)
    before = (run / LAST).read_bytes()
    proc = script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', *RUN_ARGS,
                  '--lr.lr=0.3', check=False)
    line = error_line(proc)
    assert 'lr.lr' in line and '--training.resume_with_changes=1' in line
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


def test_deliberate_changes_continue_the_run_and_are_recorded(betons, trained, tmp_path):
    """Steering a run: after 6 epochs, 2 more with another schedule; the architecture stays."""
    run = copy_run(trained, tmp_path)
    changed = [*TINY, *data_args(betons), f'--logging.folder={run}', *RUN_ARGS, '--training.epochs=8',
               '--lr.lr_schedule_type=onecycle', '--lr.start_epoch=6', '--lr.lr=0.01']
    assert '--training.resume_with_changes=1' in error_line(script(TRAINER, *changed, check=False))
    proc = script(TRAINER, *changed, '--training.resume_with_changes=1')
    assert 'changed from epoch 6: lr.lr_schedule_type' in proc.stdout and 'resuming' in proc.stdout
    params = json.loads((run / PARAMS).read_text())
    assert [h['from_epoch'] for h in params['history']] == [0, 6]
    assert params['history'][1]['changes'] == {'lr.lr': [0.02, 0.01], 'lr.lr_schedule_type': ['cyclic', 'onecycle'],
                                               'lr.start_epoch': [0, 6], 'training.epochs': [6, 8]}
    log = read_log(run)
    assert [r['segment'] for r in log] == [0] * 6 + [1, 1]
    # the checkpoint carries the settings in force when it was saved (what the analysis tools read)
    assert torch.load(run / LAST, weights_only=True)['params']['lr.lr_schedule_type'] == 'onecycle'
    assert torch.load(run / 'epoch_0006.pt', weights_only=True)['params']['lr.lr_schedule_type'] == 'cyclic'

    from fastimagenet.analysis.report import build_report
    table, out = build_report([run], tmp_path / 'report', references=[])
    assert 'after 6 epochs: lr 0.02->0.01' in table.changes[0]
    assert '## Settings changed mid-run' in (out / 'report.md').read_text()

    # what defines the model cannot change, not even deliberately
    arch = script(TRAINER, *changed, '--training.resume_with_changes=1', '--model.arch=resnet34d', check=False)
    assert 'model.arch cannot change within a run' in error_line(arch)


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
    spawned = ['--training.distributed=1', '--dist.world_size=2']  # checked once, before the processes start
    assert 'does not exist' in fails(f'--data.train_dataset={tmp_path}/nope.beton', val, *spawned)
    assert 'lr.pct_start' in fails(train, val, *spawned, '--lr.lr_schedule_type=onecycle', '--lr.pct_start=0')
    assert 'multiple of 32' in fails(train, val, '--resolution.max_res=100')
    assert 'lr.pct_start' in fails(train, val, '--lr.lr_schedule_type=onecycle', '--lr.pct_start=1.5')
    assert 'warm-up must end' in fails(train, val, '--lr.lr_peak_epoch=20', '--training.epochs=4')
    assert 'lr.reference_batch' in fails(train, val, '--lr.reference_batch=-8')
    assert not (tmp_path / 'x').exists()

    run = copy_run(trained, tmp_path)
    good = (run / LAST).read_bytes()
    (run / LAST).write_bytes(good[:len(good) // 3])  # truncated, as by a full disk
    assert 'corrupt' in fails(train, val, *RUN_ARGS, folder=run)
    torch.save({'conv1.weight': torch.zeros(1)}, run / LAST)  # someone else's state_dict
    assert 'not a checkpoint of this project' in fails(train, val, *RUN_ARGS, folder=run)
    assert 'not a checkpoint of this project' in fails(train, val, '--training.eval_only=1',
                                                      f'--training.checkpoint={run / LAST}', folder=run)


def test_out_of_memory_says_which_key_to_lower(betons, tmp_path):
    """A GPU too small for the batch (injected: there is no GPU here) is one line naming the key."""
    proc = script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={tmp_path / "oom"}',
                  '--lr.reference_batch=256', env={'FASTIMAGENET_FAULT': 'train.step:0=oom'}, check=False)
    line = error_line(proc)
    assert '--training.batch_size=8' in line and 'the LR follows the batch' in line and '0.0006' in line


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


PUBLIC_RN18 = """data:
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
"""


def test_public_ffcv_imagenet_yaml_runs_unchanged(betons, tmp_path):
    """The keys of the public rn18/rn50 configs (including data.gpu, logging.log_level, training.bn_wd),
    on a .beton written by ffcv's own DatasetWriter, read through ffcv's process cache (in_memory=0)."""
    cfg = tmp_path / 'rn18_public.yaml'
    cfg.write_text(PUBLIC_RN18)
    train = ffcv_written_beton(betons['images'] / 'train', tmp_path / 'ffcv_train.beton')
    run = tmp_path / 'pub'
    proc = script(TRAINER, f'--config-file={cfg}', f'--data.train_dataset={train}',
                  f'--data.val_dataset={betons["val"]}', f'--logging.folder={run}', '--data.in_memory=0',
                  '--training.epochs=1', '--lr.lr_peak_epoch=0.5', '--training.batch_size=16',
                  '--resolution.min_res=32', '--resolution.max_res=32', '--validation.resolution=32')
    params = json.loads((run / PARAMS).read_text())
    assert params['model.arch'] == 'resnet18' and params['training.weight_decay'] == 5e-5
    assert params['validation.lr_tta'] == 1 and params['data.gpu'] == 0 and params['data.in_memory'] == 0
    assert params['dataset.num_classes'] == 4 and params['classes'][0]['wnid'] == '0'  # no class list beside it
    assert proc.stdout.strip().splitlines()[-1].startswith('top_1: ')


def ffcv_written_beton(folder: Path, path: Path) -> Path:
    """An ImageFolder written the way the public ffcv-imagenet writer does it: ffcv's DatasetWriter."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    from torchvision.datasets import ImageFolder
    writer = DatasetWriter(str(path), {'image': RGBImageField(write_mode='proportion', max_resolution=96,
                                                              compress_probability=0.5, jpeg_quality=90),
                                       'label': IntField()}, num_workers=2)
    writer.from_indexed_dataset(ImageFolder(str(folder)), chunksize=20)
    return path


def test_shipped_config_trains_with_one_process_as_the_readme_says(betons, tmp_path):
    """`python train/train_imagenet.py --config-file rn50_88_epochs.yaml ...` on one device: one process,
    the LR following the global batch from the config's reference batch (tiny overrides for a CPU)."""
    run = tmp_path / 'one'
    proc = script(TRAINER, '--config-file', 'rn50_88_epochs.yaml', *data_args(betons), f'--logging.folder={run}',
                  '--training.epochs=1', '--training.batch_size=16', '--resolution.min_res=32',
                  '--resolution.max_res=32', '--validation.resolution=32', '--validation.batch_size=16',
                  '--lr.lr_peak_epoch=0.5', '--data.num_workers=1')
    params = json.loads((run / PARAMS).read_text())
    assert params['dist.world_size'] == 1 and params['hardware']['processes'] == 1
    assert params['lr.reference_batch'] == 4096 and params['model.arch'] == 'resnet50d'
    peak = max(r['lr'] for r in read_log(run))
    assert 0 < peak <= 1.7 * 16 / 4096
    assert proc.stdout.strip().splitlines()[-1].startswith('top_1: ')


def test_spawn_launcher_trains_two_processes(betons, tmp_path):
    """The public scripts' launch (training.distributed=1, dist.world_size=2, no torchrun)."""
    run = tmp_path / 'spawned'
    script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', '--training.epochs=1',
           '--lr.lr_peak_epoch=0.5', '--training.batch_size=8', '--training.distributed=1', '--dist.world_size=2',
           '--dist.port=29741')
    params = json.loads((run / PARAMS).read_text())
    assert params['dist.world_size'] == 2 and read_log(run)[-1]['val_count'] == VAL_COUNT


def test_bf16_and_compile_on_cpu_and_errors_py_agrees(betons, tmp_path):
    """precision=bf16 and compile=1 train on a CPU; analysis/errors.py validates in the run's own
    precision (the trainer's validation function), so its numbers are eval_only's to the digit."""
    run = tmp_path / 'bf16'
    script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', '--training.epochs=1',
           '--lr.lr_peak_epoch=0.5', '--training.precision=bf16', '--training.compile=1', timeout=1200)
    params = json.loads((run / PARAMS).read_text())
    assert params['precision'] == 'bf16' and params['training.compile'] == 1
    script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', '--training.epochs=1',
           '--lr.lr_peak_epoch=0.5', '--training.precision=bf16', '--training.eval_only=1',
           f'--training.checkpoint={run / LAST}')
    record = json.loads((run / 'eval.jsonl').read_text().splitlines()[-1])
    assert record['precision'] == 'bf16' and record['top_1'] == pytest.approx(read_log(run)[-1]['top_1'])
    proc = script('analysis/errors.py', '--checkpoint', run / LAST, f'--data.val_dataset={betons["val"]}',
                  '--out', tmp_path / 'analysis', '--ema', '0', '--validation.batch_size=8')
    line = next(line for line in proc.stdout.splitlines() if line.startswith('top_1: '))
    assert f'top_1: {record["top_1"]:.4f}' in line and f'val_loss: {record["val_loss"]:.4f}' in line
    fp32 = script('analysis/errors.py', '--checkpoint', run / LAST, f'--data.val_dataset={betons["val"]}',
                  '--out', tmp_path / 'analysis32', '--ema', '0', '--validation.batch_size=8',
                  '--training.precision=fp32')
    assert f'val_loss: {record["val_loss"]:.4f}' not in fp32.stdout  # bf16 is visible in the loss
