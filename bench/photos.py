"""An ImageNet-like folder of real photographs for the benchmarks, cut from Debian's wallpapers.

    python bench/photos.py --out data/photos [--count 2000] [--classes 10]

Decoding cost depends on real image statistics (texture, noise, chroma), which procedural
images lack. Debian's `gnome-backgrounds` and `plasma-workspace-wallpapers` ship real
photographs; random crops of them, shrunk so the longer side is 300-500 px and saved as
quality-90 JPEGs, have the sizes and aspect ratios of ImageNet's images. Nothing is
committed: the folder is generated.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

SOURCES = (Path('/usr/share/backgrounds'), Path('/usr/share/wallpapers'))
PACKAGES = 'gnome-backgrounds plasma-workspace-wallpapers'


def source_photos(min_side: int = 1000) -> list[Path]:
    found = []
    for root in SOURCES:
        for path in sorted(root.rglob('*')):
            if path.suffix.lower() in ('.jpg', '.jpeg', '.png', '.webp'):
                try:
                    with Image.open(path) as im:
                        if min(im.size) >= min_side:
                            found.append(path)
                except OSError:
                    continue
    return found


def write_photos(out: Path, count: int, classes: int, seed: int = 0) -> int:
    sources = source_photos()
    if not sources:
        raise SystemExit(f'error: no photographs under {", ".join(map(str, SOURCES))}; '
                         f'install them: apt-get install {PACKAGES}')
    rng = np.random.default_rng(seed)
    per_source = -(-count // len(sources))
    written = 0
    for s, path in enumerate(sources):
        with Image.open(path) as im:
            im.draft('RGB', (im.width // 2, im.height // 2))  # the sources are 2-5K px: plenty
            photo = im.convert('RGB')
        for _ in range(min(per_source, count - written)):
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            side = rng.uniform(0.3, 1.0) * min(photo.size)
            w, h = int(min(side * aspect, photo.width)), int(min(side / aspect, photo.height))
            x, y = rng.integers(0, photo.width - w + 1), rng.integers(0, photo.height - h + 1)
            longer = rng.integers(300, 501)
            scale = longer / max(w, h)
            crop = photo.crop((x, y, x + w, y + h)).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                           Image.BILINEAR)
            folder = out / f'c{written % classes:04d}'
            folder.mkdir(parents=True, exist_ok=True)
            crop.save(folder / f'p{s:03d}_{written:06d}.JPEG', quality=90)
            written += 1
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', type=Path, required=True)
    ap.add_argument('--count', type=int, default=2000)
    ap.add_argument('--classes', type=int, default=10)
    args = ap.parse_args()
    t = time.time()
    n = write_photos(args.out, args.count, args.classes)
    print(f'wrote {n} photographs (300-500 px JPEGs) to {args.out} in {time.time() - t:.1f} s')


if __name__ == '__main__':
    main()
