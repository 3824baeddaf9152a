"""The run-folder mirror against a real S3 API server on 127.0.0.1 (moto's) and a file:// folder:
round trips, superseded pushes, processes killed mid-upload and mid-restore, an outage and its
end, refusals at start, and no secret anywhere."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from fastimagenet.common.atomic import atomic_path
from fastimagenet.common.cli import UserError
from fastimagenet.train.mirror import PART, Mirror

from conftest import error_line, script
from s3server import ACCESS_KEY, SECRET, S3Server, aws_env, free_port, s3server  # noqa: F401 (fixtures)

# A process that pushes a run folder once and waits for the upload, as the trainer does at its end.
PUSH = '''import sys
from fastimagenet.train.mirror import Mirror
mirror = Mirror(sys.argv[1], endpoint_url=sys.argv[2] or None)
mirror.push(sys.argv[3], int(sys.argv[4]))
done = mirror.close(120)
print(f'uploaded={mirror.uploaded}')
sys.exit(0 if done else 1)
'''
RESTORE = '''import sys
from fastimagenet.train.mirror import Mirror
print(Mirror(sys.argv[1], endpoint_url=sys.argv[2] or None).restore(sys.argv[3]))
'''
CHECK = '''import sys
from fastimagenet.common.cli import run
from fastimagenet.train.mirror import Mirror
run(lambda: Mirror(sys.argv[1], endpoint_url=sys.argv[2] or None).check())
'''


@dataclass
class Target:
    """A mirror URL and a look at what its store holds, bypassing the code under test."""
    url: str
    endpoint: str | None
    objects: Callable[[], dict[str, bytes]]  # path under the URL -> content (temp files included)
    put: Callable[[str, bytes], None]        # overwrite an object (to damage the mirror)
    unfinished: Callable[[], list[str]]      # unfinished multipart uploads, temp files

    def mirror(self, **kwargs) -> Mirror:
        return Mirror(self.url, endpoint_url=self.endpoint, **kwargs)


def s3_target(server: S3Server) -> Target:
    bucket, prefix = server.bucket(), 'runs/rn50'
    return Target(f's3://{bucket}/{prefix}', server.endpoint,
                  lambda: {k[len(prefix) + 1:]: v for k, v in server.objects(bucket, prefix + '/').items()},
                  lambda name, data: server.client().put_object(Bucket=bucket, Key=f'{prefix}/{name}', Body=data),
                  lambda: server.unfinished_uploads(bucket, prefix + '/'))


def file_target(root: Path) -> Target:
    root.parent.mkdir(parents=True)
    files = lambda: [p for p in root.rglob('*') if p.is_file()] if root.exists() else []
    return Target(f'file://{root}', None,
                  lambda: {p.relative_to(root).as_posix(): p.read_bytes() for p in files()},
                  lambda name, data: (root / name).write_bytes(data),
                  lambda: [p.name for p in files() if p.name.startswith('.')])


@pytest.fixture(params=['s3', 'file'])
def target(request, tmp_path, aws_env) -> Target:
    if request.param == 's3':
        return s3_target(request.getfixturevalue('s3server'))
    return file_target(tmp_path / 'nfs' / 'runs' / 'rn50')


def write_run(folder: Path, epoch: int, last_size: int = 200_000) -> dict[str, bytes]:
    """A run folder as the trainer leaves it after `epoch` epochs (checkpoints of random bytes,
    written as the trainer writes them: renamed into place; tensorboard's file appended to)."""
    folder.mkdir(parents=True, exist_ok=True)
    put = lambda name, data: _write_atomic(folder / name, data)
    if not (folder / 'params.json').exists():
        put('params.json', json.dumps({'training.epochs': 8, 'lr.lr': 0.5}).encode())
    put('log.jsonl', ''.join(json.dumps({'epoch': e, 'top_1': e / 10}) + '\n' for e in range(epoch)).encode())
    put('last.pt', os.urandom(last_size))
    if epoch % 2:
        put('best.pt', os.urandom(50_000))
    if epoch == 2:
        put('epoch_0002.pt', os.urandom(60_000))  # a periodic checkpoint
    (folder / 'tensorboard').mkdir(exist_ok=True)
    with open(folder / 'tensorboard' / 'events.out.tfevents.1', 'ab') as f:
        f.write(f'scalar epoch {epoch}\n'.encode())
    (folder / '.last.pt.tmp-99999').write_bytes(b'what a killed save left')  # never mirrored
    (folder / 'notes.txt').write_text('not a run file')                      # never mirrored
    return contents(folder)


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


MIRRORED_NAMES = {'params.json', 'log.jsonl', 'last.pt', 'best.pt', 'tensorboard/events.out.tfevents.1'}


def contents(folder: Path) -> dict[str, bytes]:
    """The run files of a folder (what the mirror should carry), by relative name."""
    names = {p.relative_to(folder).as_posix(): p for p in folder.rglob('*') if p.is_file()}
    return {name: p.read_bytes() for name, p in names.items()
            if name in MIRRORED_NAMES or re.fullmatch(r'epoch_\d{4}\.pt', name)}


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob('*') if p.is_file() and not p.name.startswith('.')) \
        if folder.exists() else []


def manifests(target: Target) -> list[dict]:
    objects = target.objects()
    return [json.loads(objects[k]) for k in sorted(objects) if k.startswith('snapshots/')]


def referenced_blobs(target: Target) -> set[str]:
    return {f'blobs/{f["sha256"]}' for m in manifests(target) for f in m['files'].values()}


def stored_blobs(target: Target) -> set[str]:
    return {k for k in target.objects() if k.startswith('blobs/')}


def restored(target: Target, folder: Path) -> dict[str, bytes]:
    target.mirror().restore(folder)
    return contents(folder)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f'gave up waiting for {what}')
        time.sleep(0.02)


def in_subprocess(code: str, target: Target, folder: Path, *args, fault: str = ''):
    return script('-c', code, target.url, target.endpoint or '', folder, *args, check=False,
                  env={'FASTIMAGENET_FAULT': fault}, timeout=300)


# ---- round trips


def test_push_then_restore_gives_identical_verified_files(target, tmp_path):
    run = tmp_path / 'run'
    files = write_run(run, 1)
    mirror = target.mirror()
    mirror.check()
    assert mirror.latest() is None and mirror.restore(tmp_path / 'nothing') is None
    mirror.push(run, 1)
    assert mirror.close(timeout=60)

    objects = target.objects()
    [manifest] = manifests(target)
    assert set(objects) == {'snapshots/00000001.json'} | {f'blobs/{hashlib.sha256(d).hexdigest()}'
                                                          for d in files.values()}  # no probe left
    assert manifest['epoch'] == 1 and set(manifest['files']) == MIRRORED_NAMES
    for name, data in files.items():
        entry = manifest['files'][name]
        assert entry == {'size': len(data), 'sha256': hashlib.sha256(data).hexdigest()}
        assert objects[f'blobs/{entry["sha256"]}'] == data

    reader = target.mirror()  # a fresh machine: nothing but the URL
    snapshot = reader.latest()
    assert (snapshot.seq, snapshot.epoch) == (1, 1)
    assert reader.read_json('params.json', snapshot) == json.loads(files['params.json'])
    assert reader.read_json('eval.jsonl', snapshot) is None
    fresh = tmp_path / 'fresh' / 'run'  # does not exist yet
    assert reader.restore(fresh) == snapshot
    assert contents(fresh) == files
    assert visible(fresh) == sorted(Path(n).name for n in MIRRORED_NAMES)  # no temp, nothing else


def test_unchanged_files_are_uploaded_once_and_old_snapshots_are_collected(target, tmp_path):
    run, mirror = tmp_path / 'run', target.mirror()
    write_run(run, 1)
    mirror.push(run, 1)
    assert mirror.wait(60) and mirror.uploaded == 5
    write_run(run, 2)  # new log, last.pt, tensorboard, epoch_0002.pt; same params.json and best.pt
    mirror.push(run, 2)
    assert mirror.wait(60) and mirror.uploaded == 5 + 4
    files = write_run(run, 3)  # new log, last.pt, best.pt, tensorboard
    mirror.push(run, 3)
    assert mirror.close(60) and mirror.uploaded == 5 + 4 + 4

    # The newest two manifests are kept, and exactly the blobs they name.
    assert [(m['seq'], m['epoch']) for m in manifests(target)] == [(2, 2), (3, 3)]
    assert stored_blobs(target) == referenced_blobs(target)
    assert restored(target, tmp_path / 'fresh') == files


def test_a_push_uploads_the_files_as_they_were_when_pushed(target, tmp_path):
    """The trainer renames new checkpoints over the old ones (and appends to tensorboard's file)
    while an upload runs: what is uploaded is the version of push() time."""
    run, mirror = tmp_path / 'run', target.mirror()
    write_run(run, 1)
    at_push = {}

    def while_uploading(name):  # on the upload thread, during the first snapshot's upload
        if not at_push:
            mirror.push(run, 2)
            at_push.update(contents(run))
            write_run(run, 3)  # the next epoch renames over everything before the push is read
    mirror.on_uploaded = while_uploading
    mirror.push(run, 1)
    assert mirror.wait(60) and mirror.close(60)  # wait first: close() refuses the pushes to come
    snapshot = target.mirror().latest()
    assert snapshot.epoch == 2
    assert restored(target, tmp_path / 'fresh') == at_push != contents(run)


def test_a_newer_push_supersedes_one_in_flight(target, tmp_path):
    """Epoch 2's push stops epoch 1's upload after its first blob; epoch 3's push, during epoch 2's
    upload, waits for it (a replacement is carried through), so the mirror gets 2, then 3."""
    run, mirror = tmp_path / 'run', target.mirror()
    write_run(run, 1)
    pushed, uploads = {}, []

    def while_uploading(name):
        uploads.append(name)
        if len(uploads) in (1, 2):  # epoch 1's first blob, then epoch 2's first blob
            epoch = len(uploads) + 1
            pushed[epoch] = write_run(run, epoch)
            mirror.push(run, epoch)
    mirror.on_uploaded = while_uploading
    mirror.push(run, 1)
    assert mirror.wait(60) and mirror.close(60)  # wait first: close() refuses the pushes to come

    assert [(m['seq'], m['epoch']) for m in manifests(target)] == [(1, 2), (2, 3)]  # epoch 1 never was
    assert mirror.mirrored.epoch == 3
    assert stored_blobs(target) == referenced_blobs(target)  # epoch 1's own blob collected
    assert restored(target, tmp_path / 'fresh') == pushed[3]


# ---- kills


@pytest.mark.parametrize('fault', ['mirror.uploaded:1=kill', 'mirror.part:2=kill'],
                         ids=['between-blobs', 'mid-blob'])
def test_a_kill_during_upload_leaves_the_previous_snapshot_and_the_next_run_completes_it(target, tmp_path, fault):
    run = tmp_path / 'run'
    first = write_run(run, 1)
    mirror = target.mirror()
    mirror.push(run, 1)
    assert mirror.close(60)
    # Epoch 2 changes log.jsonl, tensorboard's file and last.pt (in two parts for the kill 'mid-blob').
    second = write_run(run, 2, last_size=PART + 100_000 if fault.startswith('mirror.part') else 200_000)
    changed = sum(first.get(name) != data for name, data in second.items())

    proc = in_subprocess(PUSH, target, run, 2, fault=fault)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    if fault.startswith('mirror.part'):
        assert target.unfinished()  # a multipart upload never completed, or a temp file
    else:
        assert stored_blobs(target) - referenced_blobs(target)  # a blob named by no manifest
    assert target.mirror().latest().epoch == 1
    assert restored(target, tmp_path / 'fresh1') == first

    proc = in_subprocess(PUSH, target, run, 2)  # the next run pushes again
    assert proc.returncode == 0, proc.stderr[-2000:]
    if fault.startswith('mirror.uploaded'):  # what the killed run uploaded is not uploaded again
        assert f'uploaded={changed - 1}' in proc.stdout
    assert target.mirror().latest().epoch == 2
    assert restored(target, tmp_path / 'fresh2') == second
    assert target.unfinished() == []
    assert stored_blobs(target) == referenced_blobs(target)


def test_a_kill_during_restore_leaves_nothing_that_looks_valid(target, tmp_path):
    run = tmp_path / 'run'
    files = write_run(run, 1)
    mirror = target.mirror()
    mirror.push(run, 1)
    assert mirror.close(60)
    fresh = tmp_path / 'fresh'
    proc = in_subprocess(RESTORE, target, fresh, fault='mirror.downloaded:3=kill')
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert visible(fresh) == []  # three files downloaded, under temp names; none placed
    assert any(fresh.rglob('.*'))
    proc = in_subprocess(RESTORE, target, fresh)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert contents(fresh) == files
    assert not any(fresh.rglob('.*'))  # the killed restore's temp files are gone


def test_restore_verifies_checksums_and_falls_back_to_the_previous_snapshot(target, tmp_path, capsys):
    run, mirror = tmp_path / 'run', target.mirror()
    first = write_run(run, 1)
    mirror.push(run, 1)
    assert mirror.wait(60)
    write_run(run, 2)
    mirror.push(run, 2)
    assert mirror.close(60)
    newest = target.mirror().latest()
    sha = newest.files['last.pt']['sha256']
    target.put(f'blobs/{sha}', os.urandom(newest.files['last.pt']['size']))  # same size, other bytes

    with pytest.raises(UserError, match=r'last\.pt of snapshot 2 \(epoch 2, 6 files\) does not match') as e:
        target.mirror().restore(tmp_path / 'a', newest)
    assert '\n' not in str(e.value)
    assert visible(tmp_path / 'a') == []  # nothing placed from a snapshot that does not verify
    assert target.mirror().restore(tmp_path / 'b').epoch == 1
    assert contents(tmp_path / 'b') == first
    assert 'trying the snapshot before it' in capsys.readouterr().err


# ---- an unreliable store


@pytest.fixture
def own_server():
    """A server of this test alone, which it may stop and start."""
    server = S3Server()
    server.up = True
    yield server
    if server.up:
        server.stop()


def test_store_down_mid_run_warns_once_retries_and_catches_up(own_server, aws_env, tmp_path, capsys):
    run, url = tmp_path / 'run', f's3://{own_server.bucket()}/run'
    mirror = Mirror(url, endpoint_url=own_server.endpoint, backoff=(0.05, 0.5))
    write_run(run, 1)
    mirror.push(run, 1)
    assert mirror.wait(60)

    own_server.stop()
    own_server.up = False
    write_run(run, 2)
    mirror.push(run, 2)  # returns at once, as every push while the store is down
    wait_until(lambda: mirror.failures >= 3, 'three failed attempts')
    third = write_run(run, 3)
    mirror.push(run, 3)  # replaces epoch 2's push, which never got through
    failures = mirror.failures
    wait_until(lambda: mirror.failures >= failures + 2, 'two more failed attempts')
    lines = [l for l in capsys.readouterr().err.splitlines() if 'mirror' in l]
    assert len(lines) == 1, lines  # one warning, not one per retry
    assert lines[0].startswith(f'warning: mirror {url}: upload failed (cannot reach {own_server.endpoint}')
    assert 'training goes on' in lines[0]

    own_server.start()
    own_server.up = True
    assert mirror.close(60)
    assert f'mirror {url}: uploads work again; epoch 3 is mirrored' in capsys.readouterr().err
    snapshot = Mirror(url, endpoint_url=own_server.endpoint).latest()
    assert (snapshot.seq, snapshot.epoch) == (2, 3)
    Mirror(url, endpoint_url=own_server.endpoint).restore(tmp_path / 'fresh')
    assert contents(tmp_path / 'fresh') == third


def test_store_answering_errors_mid_run_warns_once_and_catches_up(s3server, aws_env, tmp_path, capsys):
    target, run = s3_target(s3server), tmp_path / 'run'
    mirror = target.mirror(backoff=(0.05, 0.5))
    files = write_run(run, 1)
    with s3server.checking_credentials():  # every request answered 403 InvalidAccessKeyId meanwhile
        mirror.push(run, 1)
        wait_until(lambda: mirror.failures >= 3, 'three failed attempts')
    assert mirror.close(60)
    lines = [l for l in capsys.readouterr().err.splitlines() if 'mirror' in l]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f'warning: mirror {target.url}: upload failed ({s3server.endpoint} rejected the '
                               f'credentials from the environment (AWS_ACCESS_KEY_ID) (InvalidAccessKeyId)')
    assert lines[1] == f'mirror {target.url}: uploads work again; epoch 1 is mirrored'
    assert restored(target, tmp_path / 'fresh') == files


def test_close_with_the_store_down_waits_bounded_and_says_what_is_not_mirrored(own_server, aws_env, tmp_path,
                                                                             capsys):
    run, url = tmp_path / 'run', f's3://{own_server.bucket()}/run'
    mirror = Mirror(url, endpoint_url=own_server.endpoint, backoff=(0.05, 0.5))
    write_run(run, 1)
    mirror.push(run, 1)
    assert mirror.wait(60)
    own_server.stop()
    own_server.up = False
    write_run(run, 2)  # new log.jsonl, last.pt, epoch_0002.pt, tensorboard file; same params.json, best.pt
    mirror.push(run, 2)
    wait_until(lambda: mirror.failures >= 1, 'a failed attempt')
    assert mirror.close(timeout=2) is False
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith(f'mirror {url}: ')]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f'mirror {url}: not up to date after waiting 2 s (cannot reach {own_server.endpoint}')
    assert 'log.jsonl, last.pt, epoch_0002.pt, tensorboard/events.out.tfevents.1 of epoch 2 are only in ' in line
    assert f'{run} (the mirror holds epoch 1)' in line and 'rerun the same command' in line
    assert 'params.json' not in line and 'best.pt' not in line
    with pytest.raises(RuntimeError, match='after close'):
        mirror.push(run, 3)


# ---- refused at start, in one line


@pytest.mark.parametrize('case', ['bad credentials', 'no credentials', 'missing bucket', 'unreachable endpoint',
                                  'unreachable AWS_ENDPOINT_URL', 'unsupported scheme', 'not a URL',
                                  's3fs not installed', 'credentials in the URL'])
def test_check_refuses_in_one_line(case, s3server, aws_env, monkeypatch):
    bucket, dead = s3server.bucket(), f'http://127.0.0.1:{free_port()}'
    url, endpoint, expected = f's3://{bucket}/run', s3server.endpoint, None
    if case == 'bad credentials':
        expected = (f'{s3server.endpoint} rejected the credentials from the environment (AWS_ACCESS_KEY_ID) '
                    f'(InvalidAccessKeyId); they are taken from the environment')
    elif case == 'no credentials':
        monkeypatch.delenv('AWS_ACCESS_KEY_ID')
        monkeypatch.delenv('AWS_SECRET_ACCESS_KEY')
        expected = 'no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE'
    elif case == 'missing bucket':
        url = 's3://no-such-bucket-4711/run'
        expected = (f"bucket 'no-such-bucket-4711' does not exist at {s3server.endpoint}; create it "
                    f"(aws s3 mb s3://no-such-bucket-4711) or fix the URL")
    elif case == 'unreachable endpoint':
        endpoint, expected = dead, f'cannot reach {dead} ('
    elif case == 'unreachable AWS_ENDPOINT_URL':
        monkeypatch.setenv('AWS_ENDPOINT_URL', dead)
        endpoint, expected = None, f'cannot reach {dead} ('
    elif case == 'unsupported scheme':
        url, expected = 'ftp://host/runs/rn50', 'unsupported scheme ftp://; use s3://bucket/prefix'
    elif case == 'not a URL':
        url, expected = 'runs/rn50', 'not a URL; use s3://bucket/prefix'
    elif case == 's3fs not installed':
        monkeypatch.setitem(sys.modules, 's3fs', None)  # import s3fs now raises ImportError
        expected = "s3:// needs the s3fs package: pip install -e '.[s3]'"
    elif case == 'credentials in the URL':
        url, expected = f's3://{ACCESS_KEY}:{SECRET}@{bucket}/run', 'credentials do not belong in the URL'

    with pytest.raises(UserError) as e:
        if case == 'bad credentials':
            with s3server.checking_credentials():
                Mirror(url, endpoint_url=endpoint).check()
        else:
            Mirror(url, endpoint_url=endpoint).check()
    message = str(e.value)
    assert expected in message, message
    assert '\n' not in message and SECRET not in message and ACCESS_KEY not in message
    if case != 'credentials in the URL':
        assert message.startswith(f'mirror {url}: ')


def test_a_refusal_is_one_line_on_the_command_line(s3server, aws_env):
    proc = script('-c', CHECK, 's3://no-such-bucket-4711/run', s3server.endpoint, check=False)
    assert "error: mirror s3://no-such-bucket-4711/run: bucket 'no-such-bucket-4711' does not exist" \
        in error_line(proc)


def test_no_secret_in_any_output_or_file(s3server, aws_env, tmp_path, capsys):
    target = s3_target(s3server)
    run = tmp_path / 'run'
    write_run(run, 1)
    mirror = target.mirror()
    mirror.check()
    mirror.push(run, 1)
    assert mirror.close(60)
    target.mirror().restore(tmp_path / 'fresh')
    messages = []
    with s3server.checking_credentials(), pytest.raises(UserError) as e:
        target.mirror().check()
    messages.append(str(e.value))
    dead = Mirror(target.url, endpoint_url=f'http://127.0.0.1:{free_port()}', backoff=(0.05, 0.1))
    dead.push(run, 2)
    wait_until(lambda: dead.failures >= 1, 'a failed attempt')
    assert dead.close(timeout=1) is False  # a warning and the not-mirrored message
    captured = capsys.readouterr()
    texts = [captured.out, captured.err, *messages]
    assert 'warning: mirror' in captured.err and 'not up to date' in captured.err
    files = list(target.objects().values()) + [p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()]
    for secret in (SECRET, ACCESS_KEY):
        assert not any(secret in text for text in texts)
        assert not any(secret.encode() in data for data in files)
