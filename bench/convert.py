"""Conversion throughput: the project's converter against a plain ffcv DatasetWriter call.

    python bench/convert.py --image-folder DIR [--workers N] [--max-resolution 500]

Both write DIR (an ImageFolder) with the same settings (max side 500, 50% JPEG, quality 90),
at 1 worker and at N, in this process, from a warm page cache; images/s counts input
images, MB/s the bytes written. The project's converter also fsyncs its output before
renaming it into place; ffcv's writer does not.
The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from fastimagenet.convert.conversion import Encoding, convert_split
from fastimagenet.convert.layout import find_split


def project(folder: Path, out: Path, workers: int, max_res: int) -> tuple[int, float]:
    source = find_split(folder, 'train')
    enc = Encoding(max_resolution=max_res, write_mode='proportion', compress_probability=0.5, jpeg_quality=90)
    t = time.perf_counter()
    convert_split(source, out, enc, workers, chunk_size=100)
    return len(source.samples), time.perf_counter() - t


def ffcv_writer(folder: Path, out: Path, workers: int, max_res: int) -> tuple[int, float]:
    """What the public ffcv-imagenet writer does: ImageFolder into ffcv's DatasetWriter."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    from torchvision.datasets import ImageFolder
    dataset = ImageFolder(str(folder))
    writer = DatasetWriter(str(out), {
        'image': RGBImageField(write_mode='proportion', max_resolution=max_res, compress_probability=0.5,
                               jpeg_quality=90),
        'label': IntField()}, num_workers=workers)
    t = time.perf_counter()
    writer.from_indexed_dataset(dataset, chunksize=100)
    return len(dataset), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--image-folder', required=True, type=Path)
    ap.add_argument('--workers', type=int, default=os.cpu_count())
    ap.add_argument('--max-resolution', type=int, default=500)
    args = ap.parse_args()
    if not args.image_folder.is_dir():
        sys.exit(f'error: {args.image_folder} is not a directory')

    # Read every file once first, so neither writer pays for a cold page cache.
    for path in args.image_folder.rglob('*'):
        if path.is_file():
            path.read_bytes()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in sorted({1, args.workers}):
            for name, fn in (('project', project), ('ffcv_writer', ffcv_writer)):
                out = Path(tmp) / f'{name}_{workers}.beton'
                n, seconds = fn(args.image_folder, out, workers, args.max_resolution)
                mb = out.stat().st_size / 1e6
                results[f'{name}_{workers}w'] = {'images': n, 'seconds': round(seconds, 2),
                                                 'img_s': round(n / seconds, 1), 'mb_s': round(mb / seconds, 1),
                                                 'mb': round(mb, 1)}
                out.unlink()
    print(f'\n{"writer":22s}{"img/s":>10s}{"MB/s":>10s}{"seconds":>10s}{"MB":>10s}')
    for name, r in results.items():
        print(f'{name:22s}{r["img_s"]:10.0f}{r["mb_s"]:10.1f}{r["seconds"]:10.1f}{r["mb"]:10.1f}')
    print(json.dumps({'workers': args.workers, **{k: v['img_s'] for k, v in results.items()}}))


if __name__ == '__main__':
    main()
