"""The run folder mirrored to object storage, so that a run outlives the machine it ran on.

    mirror = Mirror('s3://bucket/runs/rn50')      # or gs://bucket/..., file:///mnt/nfs/runs/rn50
    mirror.check()                                # before training: one clear line if it cannot work
    snapshot = mirror.latest()                    # the newest complete snapshot (seq, epoch, files) or None
    mirror.read_json('params.json', snapshot)     # its settings, before anything big is downloaded
    mirror.restore(folder, snapshot)              # on a fresh machine: download it, verified
    mirror.push(folder, epoch)                    # after each checkpoint; returns at once
    mirror.close(timeout=600)                     # at the end: a bounded wait, then what is not mirrored

What the URL holds:

    blobs/<sha256>           the content of one file, named by its SHA-256
    snapshots/<seq>.json     a manifest: {seq, epoch, time, files: {name: {size, sha256}}}, seq 00000001, ...

A push uploads the blobs its files need and the store lacks, then its manifest. Every object
is written whole or not at all (an S3 PUT, or a multipart upload completed only once all its
parts are in; on a file system a temp name renamed), and a manifest goes up only after all
its blobs: so every manifest in the mirror describes a complete snapshot, and a process killed
at any point leaves the previous one restorable. What a kill leaves behind (blobs no manifest
names, an unfinished multipart upload, a temp file) is deleted after the next manifest is
written, with the manifests older than the newest two and every blob neither of those two
names: the previous snapshot stays whole while a restore may still be reading it. Files that
did not change (params.json, best.pt, old periodic checkpoints) are uploaded once.

One consistent version: the trainer renames new files over the old ones while uploads run, so
push() opens the files on the caller's thread and the upload reads those handles (a file
renamed over stays readable through its handle; of a file appended to in place, tensorboard's
event files, only the size seen at push() is read). Hashing and uploading happen on one
background thread: push() costs the caller a directory listing and an open() per file.

A newer push replaces one still queued, and one in flight at its next file boundary, except
an upload that itself replaced one in flight: when uploads outlast an epoch, every second
snapshot still completes. A failing store (down, erroring) is retried with exponential
backoff, always with the newest push, and one warning line says so; close() waits a bounded
time and then says in one line what is not mirrored.

One writer per URL: rank 0 of one run. Credentials are never taken from the URL nor written
anywhere: they come from the standard places (for S3 the environment, AWS_PROFILE and ~/.aws,
the instance role; endpoint_url or AWS_ENDPOINT_URL for MinIO, R2, Ceph). restore() places
checkpoints last, last.pt the very last: a kill during a restore leaves the local folder older
than the mirror, so the next attempt restores again.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit

from fastimagenet.common import faults
from fastimagenet.common.atomic import TMP_MARK, atomic_path
from fastimagenet.common.cli import UserError, fail

from .runs import LAST, MIRRORED, PERIODIC, TENSORBOARD

FORMAT, VERSION = 'fastimagenet.mirror', 1
KEEP = 2                  # manifests kept: the newest and the one before it
PART = 16 * 2**20         # upload part and read chunk (S3 parts are 5 MiB at least)
# URL scheme -> (kind of store, the package it needs, how to install that)
SCHEMES = {'s3': ('s3', 's3fs', "pip install -e '.[s3]'"), 'gs': ('gs', 'gcsfs', 'pip install gcsfs'),
           'gcs': ('gs', 'gcsfs', 'pip install gcsfs'), 'file': ('file', None, None)}
# Timeouts and retries of one request; the mirror's own backoff retries whole snapshots.
BOTO_CONFIG = {'connect_timeout': 5, 'read_timeout': 60, 'retries': {'max_attempts': 2, 'mode': 'standard'}}
SECRET_ENV = ('AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN')
CREDENTIAL_SOURCES = {'env': 'the environment (AWS_ACCESS_KEY_ID)', 'shared-credentials-file': '~/.aws/credentials',
                      'config-file': '~/.aws/config', 'iam-role': "the instance's role",
                      'container-role': "the container's role", 'assume-role': 'a role of ~/.aws/config'}
REJECTED = ('InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'ExpiredToken', 'InvalidClientTokenId',
            'TokenRefreshRequired', 'AuthorizationHeaderMalformed', 'AuthFailure')
UNREACHABLE = ('EndpointConnectionError', 'ConnectTimeoutError', 'ConnectionClosedError', 'ClientConnectorError',
               'ServerDisconnectedError')


@dataclass(frozen=True)
class Snapshot:
    """One complete snapshot of the mirror, as its manifest says."""
    seq: int
    epoch: int
    time: float
    files: dict  # name in the run folder ('/'-separated) -> {'size': int, 'sha256': str}

    def to_json(self) -> bytes:
        return json.dumps({'format': FORMAT, 'version': VERSION, 'seq': self.seq, 'epoch': self.epoch,
                           'time': self.time, 'files': self.files}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Snapshot:
        """Raises ValueError for anything but a manifest of this format with safe names."""
        try:
            obj = json.loads(data)
            if obj.get('format') != FORMAT or obj.get('version', 0) > VERSION:
                raise ValueError('not a manifest of this version')
            files = {}
            for name, f in obj['files'].items():
                parts = PurePosixPath(name).parts
                sha = str(f['sha256'])
                if not parts or name.startswith('/') or '..' in parts or not _is_sha256(sha):
                    raise ValueError(f'unsafe entry {name!r}')
                files[name] = {'size': int(f['size']), 'sha256': sha}
            return cls(int(obj['seq']), int(obj['epoch']), float(obj['time']), files)
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f'malformed manifest ({e})') from e

    def __str__(self) -> str:
        return f'snapshot {self.seq} (epoch {self.epoch}, {len(self.files)} files)'


class Mirror:
    def __init__(self, url: str, endpoint_url: str | None = None, *, backoff: tuple[float, float] = (1.0, 60.0)):
        """No I/O: checks the URL and that the packages it needs are installed."""
        parts = urlsplit(url)
        scheme, self.url = parts.scheme.lower(), url.rstrip('/')
        if parts.username or parts.password:  # never repeat the URL itself: it holds a secret
            fail(f'mirror {scheme}://{parts.hostname}{parts.path}: credentials do not belong in the URL '
                 f'(it is printed and kept in params.json); use the environment, ~/.aws or an instance role')
        if scheme not in SCHEMES:
            fail(f'mirror {url}: ' + ('not a URL' if not scheme else f'unsupported scheme {scheme}://') +
                 '; use s3://bucket/prefix (also MinIO, R2, Ceph with endpoint_url), gs://bucket/prefix, '
                 'or file:///absolute/path for a folder on a network file system')
        kind, package, install = SCHEMES[scheme]
        if endpoint_url and kind != 's3':
            fail(f'mirror {url}: endpoint_url is for s3:// URLs (S3-compatible stores); drop it or use s3://')
        self.kind, self.endpoint_url = kind, endpoint_url
        self.backoff = backoff
        if kind == 'file':
            if parts.netloc not in ('', 'localhost') or not parts.path.startswith('/'):
                fail(f'mirror {url}: a file:// URL takes an absolute path, as in file:///mnt/nfs/runs/rn50')
            self._store = _FolderStore(Path(parts.path))
        else:
            if not parts.netloc:
                fail(f'mirror {url}: no bucket; use {scheme}://bucket/prefix')
            self.bucket = parts.netloc
            try:
                import fsspec  # noqa: F401
                __import__(package)
            except ImportError:
                fail(f'mirror {url}: {scheme}:// needs the {package} package: {install}')
            self._store = _FsspecStore(self._filesystem(), f'{parts.netloc}{parts.path}'.rstrip('/'))

        # Shared with the upload thread, under _cond.
        self._cond = threading.Condition()
        self._pending: _Pushed | None = None   # the newest push not yet taken by the thread
        self._busy = False                     # the thread is uploading
        self._kick = self._closing = self._stop = False
        self._thread: threading.Thread | None = None
        self._newest: tuple | None = None      # (epoch, folder, {name: stat key}) of the newest push
        # Upload thread only (and read for messages).
        self._hashes: dict[tuple, str] = {}    # stat key -> sha256, so an unchanged file is hashed once
        self._blobs: dict[str, int] | None = None  # what blobs/ holds (sha256 -> size); None: list it again
        self._manifests: dict[str, Snapshot] = {}
        self._seq: int | None = None
        self._warned = False
        self.mirrored: Snapshot | None = None  # the last snapshot this object uploaded
        self.uploaded = 0                      # blobs uploaded by this object
        self.failures = 0                      # failed upload attempts
        self.last_error = ''
        self.on_uploaded: Callable[[str], None] | None = None  # for tests: called after each blob

    # ---- before training

    def check(self) -> None:
        """Reachable, credentials accepted, bucket there, objects writable, readable, listable and
        deletable: or one line (fail) saying what is wrong."""
        probe = f'.probe-{uuid.uuid4().hex}'
        with self._failing():
            self._store.write(probe, [b'probe'], 5)
            if self._store.read(probe) != b'probe':
                raise OSError('a probe object read back differs from what was written')
            self._store.list('snapshots')
            self._store.delete([probe])

    def latest(self) -> Snapshot | None:
        """The newest complete snapshot (all its blobs there, with their sizes), or None."""
        return next(self._complete_snapshots(), None)

    def read_json(self, name: str, snapshot: Snapshot | None = None):
        """A JSON file of `snapshot` (default: the latest), verified; None if it has no such file."""
        snapshot = snapshot or self.latest()
        if snapshot is None or name not in snapshot.files:
            return None
        entry = snapshot.files[name]
        with self._failing():
            data = self._store.read(f'blobs/{entry["sha256"]}')
        if len(data) != entry['size'] or hashlib.sha256(data).hexdigest() != entry['sha256']:
            fail(f'mirror {self.url}: {name} of {snapshot} does not match its checksum; the mirror is damaged')
        try:
            return json.loads(data)
        except ValueError:
            fail(f'mirror {self.url}: {name} of {snapshot} is not JSON')

    def restore(self, folder: str | os.PathLike, snapshot: Snapshot | None = None) -> Snapshot | None:
        """Download `snapshot` (default: the newest that verifies) into `folder`; returns it, or
        None if the mirror holds none. Each file is checked (size, SHA-256) before any is placed."""
        folder = Path(folder)
        for snap in [snapshot] if snapshot else self._complete_snapshots():
            try:
                self._download(snap, folder)
                return snap
            except _Corrupt as e:
                if snapshot:
                    fail(f'mirror {self.url}: {e}; the mirror is damaged')
                _say(f'warning: mirror {self.url}: {e}; trying the snapshot before it')
        if snapshot is None and self.latest() is not None:
            fail(f'mirror {self.url}: no snapshot verifies; the mirror is damaged')
        return None

    # ---- during training

    def push(self, folder: str | os.PathLike, epoch: int) -> None:
        """Mirror what `folder` holds now, as the snapshot of `epoch`, in the background."""
        pushed = _Pushed(Path(folder), epoch)  # opened here, on the caller's thread: this version
        with self._cond:
            if self._closing:
                pushed.close()
                raise RuntimeError('Mirror.push() after close()')
            if self._pending is not None:
                self._pending.close()
            self._pending = pushed
            self._newest = (epoch, pushed.folder, {n: _key(st) for n, (fd, st) in pushed.files.items()})
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name='mirror', daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until everything pushed is mirrored (True) or `timeout` seconds pass (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self, timeout: float = 600) -> bool:
        """Wait up to `timeout` s for the last push (retrying at once if the store was failing), stop
        the upload thread; if not everything is mirrored, say in one line what is not."""
        with self._cond:
            self._closing = self._kick = True
            self._cond.notify_all()
        done = self.wait(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if done:
            if self._thread is not None:
                self._thread.join()
            return True
        epoch, folder, keys = self._newest
        held = self.mirrored.files if self.mirrored else {}
        missing = [n for n, key in keys.items() if held.get(n, {}).get('sha256') != self._hashes.get(key)]
        holds = f'the mirror holds epoch {self.mirrored.epoch}' if self.mirrored else \
            'nothing was mirrored by this run'
        _say(f'mirror {self.url}: not up to date after waiting {timeout:g} s '
             f'({self.last_error or "the upload was still running"}): '
             f'{", ".join(missing)} of epoch {epoch} are only in {folder} ({holds}); rerun the same command '
             f'with the store reachable to upload them, or copy the folder yourself')
        return False

    # ---- the upload thread

    def _run(self) -> None:
        delay, carry = self.backoff[0], False
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stop)
                if self._stop:
                    if self._pending is not None:
                        self._pending.close()
                    return
                pushed, self._pending, self._busy = self._pending, None, True
            pushed.carried, carry = pushed.carried or carry, False
            try:
                snapshot = self._upload(pushed)
            except _Superseded:
                pushed.close()
                carry = True
                with self._cond:
                    self._busy = False
                continue
            except _Stopped:
                pushed.close()
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
                return
            except Exception as e:
                self.failures += 1
                self.last_error = self._explain(e)
                self._blobs = None  # what the store holds is uncertain now
                if not self._warned:
                    _say(f'warning: mirror {self.url}: upload failed ({self.last_error}); training goes on, '
                         f'retrying in the background')
                    self._warned = True
                with self._cond:
                    if self._pending is None:
                        self._pending = pushed  # retried, unless a newer push came meanwhile
                    else:
                        pushed.close()
                    self._busy = False
                    self._cond.notify_all()
                    kicked = self._cond.wait_for(lambda: self._kick or self._stop, delay)
                    self._kick = False
                delay = self.backoff[0] if kicked else min(2 * delay, self.backoff[1])
                continue
            pushed.close()
            if self._warned:
                _say(f'mirror {self.url}: uploads work again; epoch {snapshot.epoch} is mirrored')
                self._warned = False
            delay = self.backoff[0]
            with self._cond:
                self.mirrored, self._busy = snapshot, False
                self._cond.notify_all()

    def _upload(self, pushed: _Pushed) -> Snapshot:
        store, files = self._store, {}
        for name, (fd, st) in pushed.files.items():
            key = _key(st)
            if key not in self._hashes:
                digest = hashlib.sha256()
                for chunk in _read(fd, st.st_size):
                    digest.update(chunk)  # hashlib releases the GIL: the training thread runs on
                self._hashes[key] = digest.hexdigest()
            files[name] = {'size': st.st_size, 'sha256': self._hashes[key]}
        if self._blobs is None:
            self._blobs = store.list('blobs')
        for name in sorted(files, key=lambda n: files[n]['size']):
            sha, size = files[name]['sha256'], files[name]['size']
            if self._blobs.get(sha) == size:
                continue
            self._at_boundary(pushed)
            store.write(f'blobs/{sha}', _read(pushed.files[name][0], size), size)
            self._blobs[sha] = size
            self.uploaded += 1
            faults.point('mirror.uploaded', self.uploaded)  # tests kill a push here (common/faults.py)
            faults.point('mirror.uploading', pushed.epoch)  # ... or a given epoch's, mid-way
            if self.on_uploaded is not None:
                self.on_uploaded(name)
        if self._seq is None:
            self._seq = max(filter(None, map(_seq_of, store.list('snapshots'))), default=0)
        snapshot = Snapshot(self._seq + 1, pushed.epoch, pushed.time, files)
        data = snapshot.to_json()
        store.write(_manifest_name(snapshot.seq), [data], len(data))  # last: now the snapshot exists
        self._seq = snapshot.seq
        self._manifests[_manifest_name(snapshot.seq)] = snapshot
        faults.point('mirror.snapshot', snapshot.epoch)  # this epoch is in the mirror, complete
        try:
            self._collect(snapshot)
        except Exception:
            self._blobs = None  # the snapshot is safe; the next one collects again
        return snapshot

    def _at_boundary(self, pushed: _Pushed) -> None:
        if self._stop:
            raise _Stopped
        if self._pending is not None and not pushed.carried:
            raise _Superseded

    def _collect(self, current: Snapshot) -> None:
        """Delete the manifests before the one before `current` (KEEP = 2), the blobs the others do
        not name, and what killed uploads left (unfinished multipart uploads, temp files)."""
        store, kept, old = self._store, [], []
        for name in sorted((n for n in store.list('snapshots') if _seq_of(n)), reverse=True):
            snapshot = self._manifest(name)  # None: malformed
            older_kept = sum(self._manifests[k].seq < current.seq for k in kept)
            keep = snapshot is not None and (snapshot.seq >= current.seq or older_kept < KEEP - 1)
            (kept if keep else old).append(name)
        referenced = {f['sha256'] for name in kept for f in self._manifests[name].files.values()}
        store.delete([f'snapshots/{name}' for name in old])
        for name in old:
            self._manifests.pop(name, None)
        orphans = [sha for sha in self._blobs if sha not in referenced and _is_sha256(sha)]
        store.delete([f'blobs/{sha}' for sha in orphans])
        for sha in orphans:
            del self._blobs[sha]
        store.clean()

    def _manifest(self, name: str) -> Snapshot | None:
        if name not in self._manifests:
            try:
                self._manifests[name] = Snapshot.from_json(self._store.read(f'snapshots/{name}'))
            except (ValueError, FileNotFoundError):
                return None
        return self._manifests[name]

    # ---- reading

    def _complete_snapshots(self) -> Iterator[Snapshot]:
        """The snapshots whose blobs are all there, newest first."""
        with self._failing():
            blobs = self._store.list('blobs')
            names = sorted((n for n in self._store.list('snapshots') if _seq_of(n)), reverse=True)
        for name in names:
            with self._failing():
                try:
                    snapshot = Snapshot.from_json(self._store.read(f'snapshots/{name}'))
                except (ValueError, FileNotFoundError):
                    continue  # foreign or deleted meanwhile
            if all(blobs.get(f['sha256']) == f['size'] for f in snapshot.files.values()):
                yield snapshot

    def _download(self, snapshot: Snapshot, folder: Path) -> None:
        # Placed in this order (ExitStack renames in reverse order of entry): logs and settings,
        # then checkpoints, last.pt the very last, so a local last.pt from the mirror means all is.
        order = sorted(snapshot.files, key=lambda n: (n == LAST, n.endswith('.pt'), n))
        placed = []
        with ExitStack() as stack:
            for name in reversed(order):
                entry, dest = snapshot.files[name], folder / name
                if dest.is_file() and dest.stat().st_size == entry['size'] and _file_sha256(dest) == entry['sha256']:
                    continue
                tmp = stack.enter_context(atomic_path(dest))
                digest, size = hashlib.sha256(), 0
                with self._failing(), open(tmp, 'wb') as out:
                    for chunk in self._store.chunks(f'blobs/{entry["sha256"]}', entry['size']):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                if size != entry['size'] or digest.hexdigest() != entry['sha256']:
                    raise _Corrupt(f'{name} of {snapshot} does not match its size and checksum')
                placed.append((dest, entry['sha256']))
                faults.point('mirror.downloaded', len(placed))  # tests kill a restore here
        for dest, sha in placed:  # a later push of these files needs no hashing
            self._hashes[_key(dest.stat())] = sha

    # ---- the store, and its errors

    def _filesystem(self):
        if self.kind == 's3':
            import s3fs
            fs = s3fs.S3FileSystem(endpoint_url=self.endpoint_url, skip_instance_cache=True,
                                   use_listings_cache=False, config_kwargs=BOTO_CONFIG)
            fs.retries = 2  # s3fs's own retries of one request, on top of botocore's
            return fs
        import fsspec
        return fsspec.filesystem('gcs', skip_instance_cache=True)

    @contextmanager
    def _failing(self) -> Iterator[None]:
        """Within it, a failure of the store becomes one line (fail); the project's own errors pass."""
        try:
            yield
        except (UserError, _Corrupt):
            raise
        except Exception as e:
            raise UserError(f'mirror {self.url}: {self._explain(e)}') from None

    def _explain(self, e: BaseException) -> str:
        """What went wrong, in words a user can act on; never a secret."""
        names = {type(x).__name__ for x in _chain(e)}
        code = _error_code(e)
        endpoint = self.endpoint_url or os.environ.get('AWS_ENDPOINT_URL_S3') or os.environ.get('AWS_ENDPOINT_URL') \
            or 'AWS S3'
        detail = _scrub(f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}')[:200]
        if self.kind == 's3':
            if names & {'NoCredentialsError', 'PartialCredentialsError'}:
                return ('no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE '
                        '(~/.aws/credentials), or run on an instance with a role')
            if code in REJECTED:
                return (f'{_scrub(endpoint)} rejected the credentials from {self._store.credential_source()} ({code}); '
                        f'they are taken from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), '
                        f'then AWS_PROFILE and ~/.aws, then the instance role')
            if code == 'NoSuchBucket':
                return (f'bucket {self.bucket!r} does not exist at {_scrub(endpoint)}; create it '
                        f'(aws s3 mb s3://{self.bucket}) or fix the URL')
            if code in ('AccessDenied', 'AllAccessDisabled', '403'):
                return (f'the credentials from {self._store.credential_source()} may not use {self.url} '
                        f'(AccessDenied); they need s3:PutObject, s3:GetObject, s3:ListBucket and s3:DeleteObject there')
            if names & set(UNREACHABLE) or any(isinstance(x, (ConnectionError, TimeoutError)) for x in _chain(e)):
                return (f'cannot reach {_scrub(endpoint)} ({detail}); check the network, and endpoint_url or '
                        f'AWS_ENDPOINT_URL for an S3-compatible store (MinIO, R2, Ceph)')
        if isinstance(e, PermissionError) and self.kind == 'file':
            return f'may not write to {self._store.root} ({detail})'
        return detail


class _Pushed:
    """The files of one push, opened on the caller's thread; the upload reads these handles."""
    def __init__(self, folder: Path, epoch: int):
        self.folder, self.epoch, self.time = folder, epoch, time.time()
        self.carried = False  # replaced one in flight: carried through (see the module docstring)
        self.files: dict[str, tuple[int, os.stat_result]] = {}
        for path in _mirrored_paths(folder):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # removed since the listing
            self.files[path.relative_to(folder).as_posix()] = (fd, os.fstat(fd))

    def close(self) -> None:
        for fd, _ in self.files.values():
            os.close(fd)
        self.files = {}


class _FolderStore:
    """file://: a folder (a network file system); each object written under a temp name, then renamed."""
    def __init__(self, root: Path):
        self.root = root

    def list(self, folder: str) -> dict[str, int]:
        d = self.root / folder
        if not d.is_dir():
            return {}
        return {p.name: p.stat().st_size for p in d.iterdir() if p.is_file() and not p.name.startswith('.')}

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def chunks(self, name: str, size: int) -> Iterator[bytes]:
        with open(self.root / name, 'rb') as f:
            while chunk := f.read(PART):
                yield chunk

    def write(self, name: str, chunks: Iterable[bytes], size: int) -> None:
        with atomic_path(self.root / name) as tmp, open(tmp, 'wb') as out:
            for part, chunk in enumerate(chunks, 1):
                out.write(chunk)
                _part_written(part)

    def delete(self, names: list[str]) -> None:
        for name in names:
            (self.root / name).unlink(missing_ok=True)

    def clean(self) -> None:
        for folder in ('blobs', 'snapshots'):  # one writer, nothing in flight: every temp is a killed upload's
            for tmp in (self.root / folder).glob(f'.*{TMP_MARK}*'):
                tmp.unlink(missing_ok=True)


class _FsspecStore:
    """s3:// through s3fs (AWS, or MinIO, R2, Ceph with endpoint_url), gs:// through gcsfs."""
    def __init__(self, fs, root: str):
        self.fs, self.root = fs, root

    def list(self, folder: str) -> dict[str, int]:
        try:
            entries = self.fs.ls(f'{self.root}/{folder}', detail=True, refresh=True)
        except FileNotFoundError as e:
            if _error_code(e) == 'NoSuchBucket':  # s3fs says FileNotFoundError for that too
                raise
            return {}  # nothing under that prefix yet
        return {e['name'].rsplit('/', 1)[-1]: e['size'] for e in entries if e.get('type') == 'file'}

    def read(self, name: str) -> bytes:
        return self.fs.cat_file(f'{self.root}/{name}')

    def chunks(self, name: str, size: int) -> Iterator[bytes]:
        for start in range(0, size, PART):
            yield self.fs.cat_file(f'{self.root}/{name}', start=start, end=min(size, start + PART))

    def write(self, name: str, chunks: Iterable[bytes], size: int) -> None:
        path = f'{self.root}/{name}'
        if size <= PART:
            self.fs.pipe_file(path, b''.join(chunks))  # one PUT
            _part_written(1)
            return
        # A multipart upload, completed (commit) only once every part is in: until then the
        # store shows nothing under `path`, whatever happens to this process.
        out = self.fs.open(path, 'wb', block_size=PART, autocommit=False)
        try:
            for part, chunk in enumerate(chunks, 1):
                out.write(chunk)
                _part_written(part)
            out.close()
            out.commit()
        except BaseException:
            out.discard()
            out.closed = True  # or garbage collection would flush it again
            raise

    def delete(self, names: list[str]) -> None:
        if names:
            self.fs.rm([f'{self.root}/{name}' for name in names])

    def clean(self) -> None:
        """Abort the multipart uploads under the prefix that killed processes left unfinished."""
        if 's3' not in self.fs.protocol:
            return
        bucket, _, prefix = self.root.partition('/')
        listed = self.fs.call_s3('list_multipart_uploads', Bucket=bucket, Prefix=f'{prefix}/' if prefix else '')
        for upload in listed.get('Uploads', []):
            self.fs.call_s3('abort_multipart_upload', Bucket=bucket, Key=upload['Key'], UploadId=upload['UploadId'])

    def credential_source(self) -> str:
        """Where botocore found the credentials (its own label for it), never the credentials."""
        try:
            from fsspec.asyn import sync
            sync(self.fs.loop, self.fs.set_session)
            credentials = sync(self.fs.loop, self.fs.session.get_credentials)
            return CREDENTIAL_SOURCES.get(credentials.method, credentials.method)
        except Exception:
            return 'the standard places'


class _Superseded(Exception):
    """A newer push came while this one was in flight."""


class _Stopped(Exception):
    """close() gave up waiting."""


class _Corrupt(Exception):
    """A downloaded file does not match its manifest."""


def _part_written(part: int) -> None:
    faults.point('mirror.part', part)  # tests kill an upload between the parts of a blob here


def _mirrored_paths(folder: Path) -> list[Path]:
    """The run's files in `folder` (runs.py's MIRRORED, the periodic checkpoints, tensorboard/), no temp file."""
    if not folder.is_dir():
        return []
    paths = [folder / name for name in MIRRORED]
    paths += sorted(p for p in folder.iterdir() if PERIODIC.fullmatch(p.name))
    paths += sorted((folder / TENSORBOARD).rglob('*'))
    return [p for p in paths if p.is_file() and not any(part.startswith('.') for part in p.relative_to(folder).parts)]


def _read(fd: int, size: int) -> Iterator[bytes]:
    """`size` bytes of an open file, in PART chunks, without moving its offset (pread)."""
    for offset in range(0, size, PART):
        want = min(PART, size - offset)
        chunk = os.pread(fd, want, offset)
        if len(chunk) != want:
            raise OSError(f'a file shrank while it was mirrored ({offset + len(chunk)} of {size} bytes)')
        yield chunk


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(PART):
            digest.update(chunk)
    return digest.hexdigest()


def _key(st: os.stat_result) -> tuple:
    """Identifies one version of a file: a rename over it makes a new inode, an append a new size."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _manifest_name(seq: int) -> str:
    return f'snapshots/{seq:08d}.json'


def _seq_of(name: str) -> int | None:
    stem = name[:-len('.json')] if name.endswith('.json') else ''
    return int(stem) if stem.isdigit() else None


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in '0123456789abcdef' for c in text)


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _error_code(e: BaseException) -> str | None:
    """The error code of the store's answer (botocore's ClientError) behind `e`, if any."""
    for x in _chain(e):
        response = getattr(x, 'response', None)
        if isinstance(response, dict) and isinstance(response.get('Error'), dict):
            return response['Error'].get('Code')
    return None


def _scrub(text: str) -> str:
    for var in SECRET_ENV:
        secret = os.environ.get(var)
        if secret and len(secret) >= 4:
            text = text.replace(secret, '***')
    return text


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
