"""A real 10-class dataset as an ImageFolder of JPEGs: Fashion-MNIST from Debian's dataset-fashion-mnist.

    python bench/fashion.py --out data/fashion [--train-per-class 1000] [--val-per-class 200] [--size 128]

Zalando's Fashion-MNIST (28x28 grayscale photographs of clothes, 10 classes) is the nearest
real, labelled image set this machine can install (`apt-get install dataset-fashion-mnist`).
Each image is upscaled (bicubic) to `size` px and stored as an RGB JPEG (quality 90), so it
goes through the same decoding and cropping as ImageNet's JPEGs. The first N images of each
class of the official train and test splits make train/ and val/; the output depends on the
arguments only.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import gzip
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path('/usr/share/datasets/fashion-mnist')
CLASSES = ['t_shirt_top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag',
           'ankle_boot']


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, 'rb') as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_split(out: Path, images: np.ndarray, labels: np.ndarray, per_class: int, size: int) -> int:
    count = 0
    for label, name in enumerate(CLASSES):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
            image = Image.fromarray(images[index]).convert('RGB').resize((size, size), Image.BICUBIC)
            image.save(folder / f'{name}_{i}.JPEG', quality=90)
            count += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--train-per-class', type=int, default=1000)
    ap.add_argument('--val-per-class', type=int, default=200)
    ap.add_argument('--size', type=int, default=128)
    args = ap.parse_args()
    if not SOURCE.is_dir():
        raise SystemExit(f'error: {SOURCE} is missing: apt-get install dataset-fashion-mnist')
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    splits = {'train': ('train', args.train_per_class), 'val': ('t10k', args.val_per_class)}
    for split, (prefix, per_class) in splits.items():
        images = read_idx(SOURCE / f'{prefix}-images-idx3-ubyte.gz')
        labels = read_idx(SOURCE / f'{prefix}-labels-idx1-ubyte.gz')
        n = write_split(out / split, images, labels, per_class, args.size)
        print(f'{split}: {n} images of {args.size} px in {len(CLASSES)} classes -> {out / split}')


if __name__ == '__main__':
    main()
