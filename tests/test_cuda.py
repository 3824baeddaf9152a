"""The CUDA paths, run as users run them (the trainer's command line, in subprocesses): bf16, fp16
with a GradScaler, channels_last, torch.compile, kill -9 and resume, eval_only and
analysis/errors.py against the trainer's log, the loader's kept buffers under CUDA streams, and
NCCL under torchrun. All skipped without a CUDA GPU; `make gpu-check` (bench/gpu_check.py) runs them.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastimagenet.train.runs import EVAL, FINAL, LAST, PARAMS

from conftest import ROOT, kill_tree, script, start_until_fault
from test_train import TINY, TRAINER, VAL_COUNT, data_args, read_log

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')]

# TINY trains at 32 px in both epochs (its ramp starts after epoch 1): one shape, one compilation.
# One checkpoint per epoch, so that a run can be compared with another after each of them.
GPU_RUN = [*TINY, '--training.epochs=2', '--training.ema=1', '--logging.checkpoint_every=1']
# cuBLAS picks its workspace per stream; fixed, its reductions are the same from one process to the next.
GPU_ENV = {'CUBLAS_WORKSPACE_CONFIG': ':4096:8'}
TIMEOUT = 300


def half() -> str:
    """bf16 where the GPU computes it natively (compute capability 8.0+), else fp16."""
    return 'bf16' if torch.cuda.get_device_capability(0) >= (8, 0) else 'fp16'


def train(betons, folder: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return script(TRAINER, *GPU_RUN, *data_args(betons), f'--logging.folder={folder}', *extra,
                  env={**GPU_ENV, **(env or {})}, timeout=TIMEOUT)


def assert_finished_on_gpu(run: Path, precision: str) -> list[dict]:
    log = read_log(run)
    assert [r['epoch'] for r in log] == [0, 1]
    assert all(torch.isfinite(torch.tensor(r['train_loss'])) for r in log), log
    assert log[-1]['val_count'] == VAL_COUNT and 0 <= log[-1]['top_1'] <= 1
    assert json.loads((run / PARAMS).read_text())['hardware']['device'] == 'cuda'
    last = torch.load(run / LAST, weights_only=True)
    assert last['epoch'] == 2 and last['precision'] == precision
    weights = torch.load(run / FINAL, weights_only=True)
    assert not any(k.startswith(('module.', '_orig_mod.')) for k in weights)
    assert all(torch.isfinite(w.float()).all() for w in weights.values())
    return log


@pytest.fixture(scope='module')
def reference(betons, tmp_path_factory) -> Path:
    """One 2-epoch run in the GPU's half precision, channels_last: other tests compare with it."""
    run = tmp_path_factory.mktemp('reference') / 'run'
    train(betons, run, f'--training.precision={half()}', '--training.channels_last=1')
    return run


def test_bf16_channels_last_run_finishes_on_the_gpu(reference):
    if half() != 'bf16':
        pytest.skip('bf16 needs compute capability 8.0+ natively')
    log = assert_finished_on_gpu(reference, 'bf16')
    assert log[1]['train_loss'] < log[0]['train_loss'], log


def test_fp16_run_scales_its_loss(betons, tmp_path):
    """fp16 with a GradScaler, and the contiguous memory format for once."""
    run = tmp_path / 'fp16'
    train(betons, run, '--training.precision=fp16', '--training.channels_last=0')
    log = assert_finished_on_gpu(run, 'fp16')
    assert log[1]['train_loss'] < log[0]['train_loss'], log
    scaler = torch.load(run / LAST, weights_only=True)['scaler']
    assert scaler and 0 < scaler['scale'] < float('inf'), scaler  # a live scaler, not a disabled one's {}


def test_compiled_run_trains_like_the_eager_one(betons, reference, tmp_path):
    run = tmp_path / 'compiled'
    train(betons, run, f'--training.precision={half()}', '--training.channels_last=1', '--training.compile=1')
    log = assert_finished_on_gpu(run, half())
    eager = read_log(reference)
    # Same seed, data and init; inductor's fused kernels round differently, so close, not equal.
    # Epoch 1's loss, not epoch 0's: that one is near chance's ln 4 whatever the model computes.
    assert log[1]['train_loss'] < log[0]['train_loss'], log
    assert abs(log[1]['train_loss'] - eager[1]['train_loss']) < 0.1, (log, eager)


def test_kill_after_epoch_1_and_rerun_ends_with_the_same_weights(betons, reference, tmp_path):
    broken = tmp_path / 'broken'
    args = [TRAINER, *GPU_RUN, *data_args(betons), f'--logging.folder={broken}', f'--training.precision={half()}',
            '--training.channels_last=1']
    proc = start_until_fault(args, 'train.epoch_saved:1', tmp_path, timeout=TIMEOUT, env=GPU_ENV)
    kill_tree(proc)  # kill -9 right after epoch 1's checkpoint
    assert torch.load(broken / LAST, weights_only=True)['epoch'] == 1

    resumed = train(betons, broken, f'--training.precision={half()}', '--training.channels_last=1')
    assert 'resuming' in resumed.stdout
    assert [r['epoch'] for r in read_log(broken)] == [0, 1]
    differing = differences(reference / FINAL, broken / FINAL)
    if differing:
        # Tell a resume that went wrong from a GPU that does not repeat itself: the first epoch
        # ran the same way in both processes, without any resume.
        first = differences(reference / 'epoch_0001.pt', broken / 'epoch_0001.pt', key='model')
        why = (f'epoch 1 differed too, before any resume ({len(first)} tensors, e.g. {first[:3]}): this GPU\'s '
               'kernels do not repeat from one process to the next' if first else
               'epoch 1 was identical in both processes: the resume changed the result')
        pytest.fail(f'{len(differing)} tensors differ after the rerun, e.g. {differing[:3]}; {why}')
    ema = differences(reference / LAST, broken / LAST, key='ema')
    assert not ema, ema
    assert read_log(broken)[-1]['top_1'] == read_log(reference)[-1]['top_1']


def differences(a: Path, b: Path, key: str | None = None) -> list[str]:
    """Names (with the largest difference) of the tensors that are not equal in two state dicts."""
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    if key:
        x, y = x[key], y[key]
    assert x.keys() == y.keys()
    return [f'{k} ({(x[k].double() - y[k].double()).abs().max().item():.2e})' for k in x
            if not torch.equal(x[k], y[k])]


def test_eval_only_and_errors_py_agree_with_the_logged_top1(betons, reference, tmp_path):
    run = tmp_path / 'run'
    shutil.copytree(reference, run)
    logged = read_log(run)[-1]
    script(TRAINER, *GPU_RUN, *data_args(betons), f'--logging.folder={run}', f'--training.precision={half()}',
           '--training.channels_last=1', '--training.eval_only=1', f'--training.checkpoint={run / LAST}',
           env=GPU_ENV, timeout=TIMEOUT)
    record = json.loads((run / EVAL).read_text().splitlines()[-1])
    # in images, not fractions: one image of 31 is 0.032
    assert round(record['top_1'] * VAL_COUNT) == round(logged['top_1'] * VAL_COUNT), (record, logged)
    assert round(record['ema_top_1'] * VAL_COUNT) == round(logged['ema_top_1'] * VAL_COUNT), (record, logged)

    for ema, key in ((0, 'top_1'), (1, 'ema_top_1')):
        out = tmp_path / f'errors_ema{ema}'
        script('analysis/errors.py', f'--checkpoint={run / LAST}', f'--data.val_dataset={betons["val"]}',
               f'--out={out}', f'--ema={ema}', env=GPU_ENV, timeout=TIMEOUT)
        with open(out / 'predictions.csv') as f:
            correct = sum(int(float(row['correct'])) for row in csv.DictReader(f))
        assert correct == round(logged[key] * VAL_COUNT), (key, correct, logged)


def test_kept_loader_buffers_under_cuda_streams_give_a_fresh_loaders_batches(betons):
    """The GPU side of tests/test_decoders.py's buffer test: batches copied to the device on
    ffcv's CUDA streams into buffers kept across epochs, an epoch left after one batch."""
    from fastimagenet.train.loaders import train_loader
    device = torch.device('cuda', 0)

    def build():
        return train_loader(betons['train'], batch_size=8, num_workers=2, in_memory=1, res=48, seed=0,
                            distributed=False, device=device)

    def epoch(data, e, stop_after=None):
        data.start_epoch(e, 48)
        out = []
        for i, (images, labels, *_) in enumerate(data):
            assert images.is_cuda and images.dtype == torch.uint8 and images.shape == (8, 3, 48, 48)
            out.append((images.clone(), labels.clone(), images.data_ptr()))
            if stop_after is not None and i + 1 == stop_after:
                break
        torch.cuda.synchronize()
        return [(x.cpu(), y.cpu(), ptr) for x, y, ptr in out]

    data = build()
    first = epoch(data, 0)
    epoch(data, 1, stop_after=1)  # left early: copies for the next batches were still queued
    again = epoch(data, 0)
    assert len(first) == len(again) == 160 // 8
    for (x, y, ptr), (x2, y2, ptr2) in zip(first, again):
        assert ptr == ptr2  # the same device memory, epoch after epoch
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(first[0][0], first[1][0])  # real batches, not one buffer seen twice

    expected = epoch(build(), 1)  # epoch 1 in full, from a loader that never stopped early
    got = epoch(data, 1)
    assert len(got) == len(expected)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(expected, got))


def test_two_process_nccl_run_validates_like_one_process(betons, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip('needs 2 CUDA GPUs')
    run = tmp_path / 'ddp'
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', TRAINER,
               *TINY, *data_args(betons), f'--logging.folder={run}', '--training.epochs=1',
               '--training.batch_size=8', f'--training.precision={half()}']
    with open(tmp_path / 'ddp.log', 'w') as out:
        proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **GPU_ENV}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            kill_tree(proc)  # torchrun's workers run in sessions of their own: killpg misses them
            raise
    assert rc == 0, (tmp_path / 'ddp.log').read_text()[-3000:]
    ddp = read_log(run)[-1]
    params = json.loads((run / PARAMS).read_text())
    assert params['dist.world_size'] == 2 and params['hardware']['device'] == 'cuda'
    assert ddp['val_count'] == VAL_COUNT

    script(TRAINER, *TINY, *data_args(betons), f'--logging.folder={run}', '--training.eval_only=1',
           f'--training.checkpoint={run / LAST}', f'--training.precision={half()}', env=GPU_ENV, timeout=TIMEOUT)
    single = json.loads((run / EVAL).read_text().splitlines()[-1])
    assert round(single['top_1'] * VAL_COUNT) == round(ddp['top_1'] * VAL_COUNT), (single, ddp)
    assert single['val_loss'] == pytest.approx(ddp['val_loss'], abs=2e-2), (single, ddp)
