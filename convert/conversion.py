"""Convert one split to a `.beton`: workers decode and write, this process indexes, rename when whole.

Workers decode (PIL, any mode, EXIF-rotated), shrink to `max_resolution`, encode each
image as ffcv stores it and write it into the data pages of the temporary file themselves
(common/beton.py:SharedPages); only where it went comes back. An image that does not
decode comes back as a reason instead and is listed in `<file>.skipped.csv`. This process
records the samples in order, writes the tables and renames the file into place, so one
bad file never leaves the output half-made or hangs the conversion, and neither does a
worker that dies (common/workers.py: one line of error instead).
"""
from __future__ import annotations

import csv
import io
import os
import signal
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fastimagenet.common import faults
from fastimagenet.common.atomic import atomic_path, write_text_atomic
from fastimagenet.common.beton import MODE_JPG, MODE_RAW, BetonWriter, SharedPages, page_size_for
from fastimagenet.common.classes import write_info
from fastimagenet.common.cli import fail
from fastimagenet.common.images import BadImage, encode_jpeg, load_rgb
from fastimagenet.common.progress import CountProgress
from fastimagenet.common.workers import WorkerDied, ordered_map

from .layout import SplitSource

WRITE_MODES = ('smart', 'raw', 'jpg', 'proportion')


@dataclass(frozen=True)
class Encoding:
    """How images are stored; the keys and meanings of the public ffcv-imagenet writer."""
    max_resolution: int
    write_mode: str = 'proportion'
    compress_probability: float = 0.5
    jpeg_quality: int = 90
    smart_threshold: int | None = None
    seed: int = 0

    def store_as_jpeg(self, index: int, raw_bytes: int) -> bool:
        if self.write_mode == 'jpg':
            return True
        if self.write_mode == 'proportion':
            # Drawn from (seed, index), not a per-process generator: the same
            # images are compressed whatever the number of workers.
            return np.random.default_rng((self.seed, index)).random() < self.compress_probability
        if self.write_mode == 'smart':  # ffcv's rule: JPEG only above the threshold
            return self.smart_threshold is not None and raw_bytes > self.smart_threshold
        return False


def skipped_report_path(write_path: Path) -> Path:
    return Path(f'{write_path}.skipped.csv')


def encode_one(index: int, path: str, enc: Encoding):
    """-> (mode, height, width, data) or a reason string."""
    try:
        image = load_rgb(path, enc.max_resolution)
        h, w = image.shape[:2]
        if enc.store_as_jpeg(index, image.nbytes):
            return MODE_JPG, h, w, encode_jpeg(image, enc.jpeg_quality)
        return MODE_RAW, h, w, image.reshape(-1)
    except BadImage as e:
        return str(e)
    except Exception as e:  # a worker must answer for every file, whatever happens
        return f'{type(e).__name__}: {e}'.splitlines()[0]


_pages: SharedPages | None = None  # this worker's handle on the output file


def _encode_chunk(args):
    """-> [(index, (mode, height, width, ptr, size) or reason)], the data already in the file."""
    chunk, enc = args
    out = []
    for i, path in chunk:
        result = encode_one(i, path, enc)
        if not isinstance(result, str):
            mode, h, w, data = result
            result = mode, h, w, _pages.write(data), data.nbytes
        out.append((i, result))
        faults.point('convert.worker_encoded', i)  # tests kill this worker here (sample i is in the file)
    return out


def _worker_init(pages: SharedPages):
    # Ctrl-C is handled once, by the parent; OpenCV's own threads would only fight
    # the worker processes for the same cores.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cv2
    cv2.setNumThreads(1)
    global _pages
    _pages = pages


def convert_split(source: SplitSource, write_path: Path, enc: Encoding, num_workers: int,
                  chunk_size: int, subset: int = -1, params: dict | None = None) -> dict:
    """Write `source` to `write_path` (atomically) with its class list and skipped report beside it."""
    samples = source.samples[:subset] if subset > 0 else source.samples
    if not samples:
        fail(f'nothing to convert in {source.folder}')
    start = time.time()
    skipped = list(source.unlabelled)
    counts = np.zeros(len(source.classes), dtype=np.int64)
    page_size = page_size_for(2 * enc.max_resolution ** 2 * 3)
    tasks = (([(i, samples[i][0]) for i in range(lo, min(lo + chunk_size, len(samples)))], enc)
             for lo in range(0, len(samples), chunk_size))
    bytes_written = done = 0

    with atomic_path(write_path) as tmp:
        try:
            with open(tmp, 'wb') as fp:
                writer = BetonWriter(fp, capacity=len(samples), page_size=page_size)
                pages = SharedPages(tmp, writer.data_start, page_size)
                # The workers write each sample before answering for it: once the last answer
                # is in, so is every byte.
                chunks = ordered_map(_encode_chunk, tasks, num_workers, _worker_init, (pages,))
                with closing(chunks), CountProgress(len(samples), f'{source.split} -> {write_path.name}') as bar:
                    for results in chunks:
                        for i, result in results:
                            path, label = samples[i]
                            if isinstance(result, str):
                                skipped.append((path, result))
                                continue
                            writer.place(*result, label)
                            counts[label] += 1
                            bytes_written += result[-1]
                        done += len(results)
                        bar.update(len(results), skipped=len(skipped))
                        faults.point('convert.placed', done)  # tests kill the conversion here
                written = writer.finish(shared_pages=pages.claimed)
        except WorkerDied as e:  # the OOM killer, a decoder's segfault
            fail(f'a conversion {e}; nothing was written to {write_path}; rerun the same command '
                 f'(with fewer --cfg.num_workers if memory ran out)')
        except OSError as e:  # disk full, no permission, a vanished mount: here or in a worker
            fail(f'could not write {write_path}: {e.strerror or e} (nothing was left at that path)')
        if written == 0:
            fail(f'none of the {len(samples)} images in {source.folder} could be decoded '
                 f'(first: {skipped[0][0]}: {skipped[0][1]})')
        seconds = time.time() - start
        stats = {'written': written, 'skipped': len(skipped), 'seconds': round(seconds, 2),
                 'images_per_s': round(len(samples) / seconds, 1),
                 'mb_per_s': round(bytes_written / 1e6 / seconds, 2),
                 'bytes': os.path.getsize(tmp)}
        # The class list and report are in place before the .beton appears, so a
        # visible .beton always has its class list beside it.
        _write_report(skipped_report_path(write_path), skipped)
        write_info(write_path, source.classes, source.split, written,
                   counts_per_class=counts.tolist(), skipped=len(skipped),
                   empty_classes=source.empty_classes, layout=source.layout,
                   source=str(source.folder), encoding=asdict(enc),
                   conversion=params or {}, stats=stats)
    return stats


def _write_report(path: Path, skipped: list[tuple[str, str]]) -> None:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(['path', 'reason'])
    w.writerows(skipped)
    write_text_atomic(path, out.getvalue())
