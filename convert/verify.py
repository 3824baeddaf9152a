"""Re-open a `.beton` and check it the way training will use it: count, labels, every image."""
from __future__ import annotations

import signal
from contextlib import closing
from pathlib import Path


from fastimagenet.common import faults
from fastimagenet.common.beton import BetonFile
from fastimagenet.common.classes import read_info
from fastimagenet.common.cli import fail
from fastimagenet.common.progress import CountProgress
from fastimagenet.common.workers import WorkerDied, ordered_map

_file: BetonFile | None = None


def _open(path: str) -> None:
    global _file
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _file = BetonFile(path)


def _undecodable(index_range: tuple[int, int]) -> list[tuple[int, str]]:
    bad = []
    for i in range(*index_range):
        try:
            _file.image(i)
        except ValueError as e:
            bad.append((i, str(e)))
        faults.point('verify.worker_checked', i)  # tests kill this worker here
    return bad


def verify_beton(path: Path, num_workers: int, chunk_size: int = 500) -> dict:
    beton = BetonFile(path)
    info = read_info(path)
    n = beton.num_samples
    if info is not None and info.num_samples != n:
        fail(f'{path} holds {n} images but its class list says {info.num_samples}: the pair is mismatched')
    labels = beton.labels
    num_classes = len(info.classes) if info is not None else None
    if n and (labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes)):
        fail(f'{path} has labels in [{labels.min()}, {labels.max()}], outside [0, {num_classes})')

    ranges = [(lo, min(lo + chunk_size, n)) for lo in range(0, n, chunk_size)]
    bad = []
    checked = ordered_map(_undecodable, ranges, num_workers, _open, (str(path),))
    try:
        with closing(checked), CountProgress(n, f'verify {path.name}') as bar:
            for found, (lo, hi) in zip(checked, ranges):  # checked first: zip runs it to its end
                bad.extend(found)
                bar.update(hi - lo)
    except WorkerDied as e:  # the OOM killer, a decoder's segfault
        fail(f'a verify {e}; {path} was left as it is, unverified; rerun the same command '
             f'(with fewer --cfg.num_workers if memory ran out)')
    if bad:
        fail(f'{path}: {len(bad)} of {n} images do not decode (first: sample {bad[0][0]}: {bad[0][1]})')
    return {'images': n, 'classes': num_classes if num_classes is not None else int(labels.max()) + 1}
