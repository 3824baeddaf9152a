"""Spot instances that vanish: the trainer mirrors its run folder to a real S3 API server (moto's, on
127.0.0.1, started by the tests) or a file:// folder, and the same command on a fresh machine (the
local folder deleted) resumes from the mirror and ends with the weights of an uninterrupted run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastimagenet.train.mirror import Mirror
from fastimagenet.train.runs import FINAL, LAST, LOG, PARAMS

from conftest import ROOT, error_line, kill_tree, script, start_until_fault
from s3server import SECRET, aws_env, s3server  # noqa: F401 (fixtures)
from test_train import TINY, data_args, read_log, same_weights

TRAINER = 'train/train_imagenet.py'
EPOCHS = ['--training.epochs=3', '--training.ema=1', '--logging.log_level=0']


@pytest.fixture(scope='module')
def straight(betons, tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must end like."""
    run = tmp_path_factory.mktemp('straight') / 'run'
    script(TRAINER, *TINY, *data_args(betons), *EPOCHS, f'--logging.folder={run}')
    return run


def args(betons, folder: Path, url: str, *extra) -> list[str]:
    return [TRAINER, *TINY, *data_args(betons), *EPOCHS, f'--logging.folder={folder}', f'--logging.mirror={url}',
            *extra]


def test_fresh_machine_resumes_from_the_s3_mirror_exactly(betons, straight, s3server, aws_env, tmp_path):
    bucket = s3server.bucket()
    url = f's3://{bucket}/runs/tiny'
    endpoint = f'--logging.mirror_endpoint={s3server.endpoint}'
    folder = tmp_path / 'run'
    # The uploader stops once epoch 1 is in the mirror; the instance is reclaimed soon after.
    proc = start_until_fault(args(betons, folder, url, endpoint), 'mirror.snapshot:1', tmp_path)
    kill_tree(proc)
    assert Mirror(url, s3server.endpoint).latest().epoch == 1
    shutil.rmtree(folder)  # the local disk went with the instance

    resumed = script(*args(betons, folder, url, endpoint))
    assert 'restoring' in resumed.stdout and 'epoch 1' in resumed.stdout and 'resuming' in resumed.stdout
    same_weights(straight / FINAL, folder / FINAL)
    assert [r['epoch'] for r in read_log(folder)] == [0, 1, 2]
    latest = Mirror(url, s3server.endpoint).latest()
    assert latest.epoch == 3 and {PARAMS, LOG, LAST, FINAL} <= latest.files.keys()
    # no secret anywhere the run wrote, locally or in the mirror
    assert SECRET not in resumed.stdout + resumed.stderr
    assert all(SECRET.encode() not in f.read_bytes() for f in folder.rglob('*') if f.is_file())
    assert all(SECRET.encode() not in data for data in s3server.objects(bucket).values())

    # a fresh machine given other settings for that mirror is refused before anything is downloaded
    other = tmp_path / 'other'
    refused = script(*args(betons, other, url, endpoint, '--lr.lr=0.3'), check=False)
    assert 'lr.lr' in error_line(refused) and not (other / LAST).exists()


def test_kill_during_an_upload_leaves_the_previous_checkpoint_restorable(betons, straight, tmp_path):
    """kill -9 while epoch 2's files are going up (file:// mirror): the mirror still holds a complete
    snapshot, the one before, and the fresh machine resumes from it."""
    url = (tmp_path / 'nfs' / 'tiny').as_uri()
    folder = tmp_path / 'run'
    proc = start_until_fault(args(betons, folder, url), 'mirror.uploading:2', tmp_path)
    kill_tree(proc)
    latest = Mirror(url).latest()
    assert latest is None or latest.epoch < 2  # epoch 2's snapshot never completed
    shutil.rmtree(folder)
    resumed = script(*args(betons, folder, url))
    if latest is not None:
        assert f'epoch {latest.epoch}' in resumed.stdout and 'resuming' in resumed.stdout
    same_weights(straight / FINAL, folder / FINAL)
    assert Mirror(url).latest().epoch == 3


def test_the_store_down_mid_run_training_goes_on_and_the_mirror_catches_up(betons, s3server, aws_env, tmp_path):
    bucket = s3server.bucket()
    url = f's3://{bucket}/runs/down'
    folder = tmp_path / 'run'
    log = tmp_path / 'console.log'
    mark = tmp_path / 'pause.txt'
    env = {'FASTIMAGENET_FAULT': 'train.epoch_saved:1=pause', 'FASTIMAGENET_FAULT_FILE': str(mark)}
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, *args(betons, folder, url, f'--logging.mirror_endpoint={s3server.endpoint}')],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
    try:
        wait_for(lambda: mark.exists() or proc.poll() is not None, 600)
        assert proc.poll() is None, log.read_text()[-3000:]
        s3server.stop()        # the store goes away after epoch 1, before its upload
        mark.unlink()          # training carries on
        wait_for(lambda: 'upload failed' in log.read_text() or proc.poll() is not None, 600)
        assert 'upload failed' in log.read_text(), log.read_text()[-3000:]
    finally:
        s3server.start()       # back: the mirror catches up (the trainer waits for it at the end)
    assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert text.count('upload failed') == 1 and 'uploads work again' in text and 'top_1:' in text
    latest = Mirror(url, s3server.endpoint).latest()
    assert latest.epoch == 3 and FINAL in latest.files


def test_bad_mirrors_are_refused_before_training(betons, s3server, aws_env, tmp_path):
    endpoint = f'--logging.mirror_endpoint={s3server.endpoint}'
    folder = tmp_path / 'run'

    def refused(url, *extra) -> str:
        return error_line(script(*args(betons, folder, url, *extra), check=False))

    assert 'bucket' in refused('s3://no-such-bucket-here/run', endpoint)
    assert 'ftp' in refused('ftp://host/run')
    bucket = s3server.bucket()
    with s3server.checking_credentials():  # our credentials are not in moto's IAM: refused
        line = refused(f's3://{bucket}/run', endpoint)
    assert 'credentials' in line and SECRET not in line
    assert not folder.exists()  # nothing started


def wait_for(condition, timeout: float) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            pytest.fail(f'timed out after {timeout} s')
        time.sleep(0.2)


def test_a_sweep_resumes_on_a_fresh_machine_from_its_mirror(betons, tmp_path):
    """train/ablate.py with a mirror prefix: each budget mirrored under it. The machine is lost
    while the 3-epoch budget runs (after its epoch 2 reached the mirror); the same command on a
    fresh machine restores the finished budget and resumes the other from the mirror."""
    prefix = (tmp_path / 'nfs' / 'sweep').as_uri()
    out = tmp_path / 'ablation'
    sweep = ['train/ablate.py', '--config-file', 'cpu_sample.yaml', '--epochs', '1,3', '--out', out,
             *data_args(betons), f'--logging.mirror={prefix}', *TINY, '--lr.lr_peak_epoch=0.5',
             '--logging.log_level=0']
    kill_tree(start_until_fault(sweep, 'mirror.snapshot:2', tmp_path, timeout=900))
    assert Mirror(f'{prefix}/ep3').latest().epoch == 2 and Mirror(f'{prefix}/ep1').latest().epoch == 1
    shutil.rmtree(out)

    plan = script(*sweep, '--dry-run')
    assert f'# {out}/ep1: restoring from its mirror (finished in the mirror {prefix}/ep1)' in plan.stderr
    assert f'# {out}/ep3: resuming (2 of 3 epochs in the mirror {prefix}/ep3)' in plan.stderr
    done = script(*sweep, timeout=900)
    assert 'restoring' in done.stdout and 'resuming' in done.stdout
    assert [r['epoch'] for r in read_log(out / 'ep3')] == [0, 1, 2]
    lines = done.stdout.splitlines()
    assert [line.split()[-1] for line in lines[-3:-1]] == ['complete', 'complete']
