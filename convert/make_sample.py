"""Write a small procedurally generated ImageNet-like dataset (no download, nothing committed).

    python convert/make_sample.py --out data/sample [--train-per-class 100] [--val-per-class 30] [--seed 0]

Layout, as ImageNet's ImageFolder tree:
    OUT/train/<wnid>/<wnid>_<i>.JPEG, OUT/val/<wnid>/<wnid>_<i>.JPEG
    OUT/synsets.txt   lines `<wnid> <name>`, the format of Kaggle's LOC_synset_mapping.txt

The wnids (`s00000001`, ...) have the length of real WordNet ids but start with `s` so they
can never be mistaken for ImageNet classes. A class is a large foreground shape or a texture
filling the image: both survive RandomResizedCrop, downscaling to ~64 px and horizontal flips,
and no class is the mirror image of another: a resnet18d from scratch at 64 px reached 90%+
val accuracy after ~13 epochs of the default sample (a few CPU-minutes). Colours, background,
position, size, tilt, blur, noise and a few small distractor shapes vary so the task is not
trivial.

Every image draws from its own generator seeded by (seed, split, class, index): the output is
byte-identical for the same arguments whatever the order of writing, and a given image does not
change when the per-class counts do.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import math
import os
import shutil
import time
from contextlib import closing
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fastimagenet.common.workers import ordered_map

SPLITS = ('train', 'val')
SUPERSAMPLE = 2          # shapes are drawn at 2x and reduced: antialiased edges for < 1 ms
# (w, h) ratios; both sides must stay in 300..500, so 5:3 is the widest "16:9-ish" that fits.
ASPECTS = (1.0, 4 / 3, 4 / 3, 3 / 2, 3 / 2, 5 / 3, 3 / 4, 3 / 4, 2 / 3)
# Unit sensor noise shared by all images (each takes a crop), fixed so output depends on the seed only.
NOISE = np.random.default_rng(20240101).standard_normal((500, 500, 3), dtype=np.float32)


# --- shapes: polygons in unit coordinates (radius ~1), placed by _shape ----------------------

def _ngon(n: int, radius: float = 1.0, first: float = -90) -> np.ndarray:
    """Regular polygon; the first corner at `first` degrees (-90 = straight up, y points down)."""
    a = np.radians(first) + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(a), np.sin(a)], 1)


def _rotation(angle: float) -> np.ndarray:
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def _star(inner: float) -> np.ndarray:
    pts = _ngon(10)
    pts[1::2] *= inner
    return pts


def _shape(rng, size, *polygons) -> Image.Image:
    """Mask of the polygons (filled, then each following one punched out) at a random pose.

    The object's diameter is 50-80% of the short side and it lies inside the image, so most
    crops still show enough of it (at 30-70% a small ResNet learned shapes far more slowly).
    It stands upright give or take 20 degrees, as objects do in photos: every shape is symmetric about its vertical axis, so a flip never changes the class,
    and an upright square differs from a circle by more than a few blurry corners.
    """
    w, h = size
    s = SUPERSAMPLE
    r = rng.uniform(0.25, 0.4) * min(w, h)
    stretch = np.array([rng.uniform(0.9, 1.1), 1.0])
    rot = _rotation(np.radians(rng.uniform(-20, 20)))
    centre = np.array([rng.uniform(r, w - r), rng.uniform(r, h - r)])
    mask = Image.new('L', (w * s, h * s), 0)
    draw = ImageDraw.Draw(mask)
    for k, poly in enumerate(polygons):
        pts = (poly * stretch * r) @ rot.T + centre
        draw.polygon([tuple(p) for p in pts * s], fill=0 if k else 255)
    return mask.reduce(s)


def circle(rng, size):
    return _shape(rng, size, _ngon(72))


def ring(rng, size):
    return _shape(rng, size, _ngon(72), _ngon(72, rng.uniform(0.45, 0.65)))


def square(rng, size):
    return _shape(rng, size, _ngon(4, 1.1, first=45))


def triangle(rng, size):
    return _shape(rng, size, _ngon(3, 1.2))


def heart(rng, size):
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    x = np.sin(t) ** 3
    y = (np.cos(4 * t) + 2 * np.cos(3 * t) + 5 * np.cos(2 * t) - 13 * np.cos(t)) / 16 + 0.15
    return _shape(rng, size, np.stack([x, y], 1))


def star(rng, size):
    return _shape(rng, size, _star(rng.uniform(0.38, 0.5)))


def cross(rng, size):
    t = rng.uniform(0.25, 0.36)              # half the arm width
    return _shape(rng, size, np.array([(t, 1), (-t, 1), (-t, t), (-1, t), (-1, -t), (-t, -t),
                                       (-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t)]))


# --- textures filling the image: periodic fields thresholded with a ~1 px soft edge -----------

def _phases(rng, size):
    """Phases (u, v) of a randomly rotated grid whose period is 9-16% of the short side:
    coarse enough to stay visible after a crop is downscaled to 64 px."""
    w, h = size
    period = rng.uniform(0.09, 0.16) * min(w, h)
    angle = rng.uniform(0, np.pi)
    c, s = np.float32(2 * np.pi / period) * np.float32([math.cos(angle), math.sin(angle)])
    x, y = np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]
    u = (c * x + rng.uniform(0, 2 * np.pi)) + s * y
    v = (c * y + rng.uniform(0, 2 * np.pi)) - s * x
    return u, v, period


def _soft(field: np.ndarray, period: float) -> Image.Image:
    # The fields below change by about 2*pi/period per pixel at their zero crossings,
    # so this scaling gives a one-pixel ramp: antialiased without supersampling.
    m = np.clip(0.5 + field * (period / (2 * np.pi)), 0, 1)
    return Image.fromarray((m * 255).astype(np.uint8))


def stripes(rng, size):
    u, _, period = _phases(rng, size)
    return _soft(np.sin(u), period)


def checkerboard(rng, size):
    u, v, period = _phases(rng, size)
    return _soft(np.sin(u) * np.sin(v), period)


def dots(rng, size):
    u, v, period = _phases(rng, size)
    # Threshold >= 0.8 keeps the dots round; near 0 they would merge into a checkerboard.
    return _soft(np.cos(u) + np.cos(v) - rng.uniform(0.8, 1.3), period)


# Order matters: class k gets the wnid s{k+1:08d}, and `classes=N` keeps the first N.
CLASSES = {
    'circle': circle, 'square': square, 'triangle': triangle, 'star': star, 'cross': cross,
    'ring': ring, 'heart': heart, 'stripes': stripes, 'checkerboard': checkerboard, 'dots': dots,
}
DISTRACTORS = {'circle': _ngon(24), 'square': _ngon(4), 'triangle': _ngon(3), 'hexagon': _ngon(6),
               'star': _star(0.45)}


def wnid(index: int) -> str:
    return f's{index + 1:08d}'


# --- one image ----------------------------------------------------------------------------------

def _colour_pair(rng) -> tuple[np.ndarray, np.ndarray]:
    """Background and foreground colours that differ clearly in brightness, so the class is
    visible in grey too, never only a matter of hue."""
    luma = np.array([0.299, 0.587, 0.114])
    while True:
        bg, fg = rng.uniform(0, 255, (2, 3))
        if abs((bg - fg) @ luma) > 60:
            return bg, fg


def _background(rng, size, colour) -> Image.Image:
    """A linear colour gradient plus blotches a few tens of pixels wide, from one small grid
    upsampled once: texture that is neither a shape nor a stripe, for ~1 ms."""
    cells = np.stack(np.mgrid[-1:1:10j, -1:1:12j], -1)                       # (10, 12, yx)
    tilt = rng.uniform(-40, 40, (2, 3))                                       # colour change per axis
    grid = colour + cells @ tilt + rng.uniform(-1, 1, (10, 12, 3)) * rng.uniform(10, 40)
    return Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8)).resize(size, Image.BICUBIC)


def _distractors(rng, img: Image.Image, avoid: str) -> None:
    """0-2 small shapes of other kinds, far smaller than any main object (<= 10% vs >= 50%)."""
    draw = ImageDraw.Draw(img)
    w, h = img.size
    kinds = [k for k in DISTRACTORS if k != avoid]
    for _ in range(rng.integers(0, 3)):
        poly = DISTRACTORS[kinds[rng.integers(len(kinds))]]
        r = rng.uniform(0.03, 0.05) * min(w, h)
        pts = r * poly @ _rotation(rng.uniform(0, 2 * np.pi)).T + (rng.uniform(0, w), rng.uniform(0, h))
        draw.polygon([tuple(p) for p in pts], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))


def render(name: str, rng: np.random.Generator) -> Image.Image:
    """One RGB image of class `name`, 300-500 px per side."""
    aspect = ASPECTS[rng.integers(len(ASPECTS))]
    long_side = int(rng.integers(math.ceil(300 * max(aspect, 1 / aspect)), 501))
    size = (long_side, round(long_side / aspect)) if aspect >= 1 else (round(long_side * aspect), long_side)
    # Drawn smaller and upsampled: the softness of a slightly out-of-focus photo, and cheaper
    # than drawing at full size and blurring.
    scale = rng.uniform(0.55, 1.0)
    small = (round(size[0] * scale), round(size[1] * scale))

    bg_colour, fg_colour = _colour_pair(rng)
    bg = _background(rng, small, bg_colour)
    _distractors(rng, bg, name)
    fg = Image.new('RGB', small, tuple(int(c) for c in fg_colour))
    img = Image.composite(fg, bg, CLASSES[name](rng, small))

    # Light falling off across the scene, and sensor noise: a crop of one shared noise field,
    # since drawing fresh Gaussian noise would cost more than everything else together.
    w, h = small
    light = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(0.95, 1.1), w, dtype=np.float32)
    if rng.random() < 0.5:
        light = light[::-1]
    ox, oy = rng.integers(0, NOISE.shape[1] - w + 1), rng.integers(0, NOISE.shape[0] - h + 1)
    arr = np.asarray(img, np.float32) * light[:, None]          # (h, w, 3) * (w, 1): per column
    arr += NOISE[oy:oy + h, ox:ox + w] * np.float32(rng.uniform(2, 8))
    img = Image.fromarray(np.clip(arr, 0, 255, out=arr).astype(np.uint8))
    return img.resize(size, Image.BILINEAR)


# --- the dataset ----------------------------------------------------------------------------------

def write_sample(out_dir, train_per_class: int = 100, val_per_class: int = 30, seed: int = 0,
                 classes: int | list[str] | None = None, workers: int = 0) -> dict:
    """Write the dataset under `out_dir`; returns {'classes': N, 'train': n, 'val': n}.

    `classes` keeps the first N classes, or those named (all when None); `workers` processes draw the images
    (0 = one per core), with the same bytes as one. A previous sample in `out_dir` (recognised
    by its synsets.txt) is replaced; any other non-empty train/ or val/ raises FileExistsError.
    """
    if isinstance(classes, list):
        unknown = [c for c in classes if c not in CLASSES]
        if unknown or not classes:
            raise ValueError(f'unknown classes {unknown}; choose from {", ".join(CLASSES)}')
        names = classes
    elif classes is not None and not 1 <= classes <= len(CLASSES):
        raise ValueError(f'classes must be 1..{len(CLASSES)}, got {classes}')
    else:
        names = list(CLASSES)[:classes]
    out = Path(out_dir)
    _clear_previous(out)
    per_class = {'train': train_per_class, 'val': val_per_class}
    tasks = []
    for split_index, split in enumerate(SPLITS):
        for k, name in enumerate(names):
            folder = out / split / wnid(k)
            folder.mkdir(parents=True, exist_ok=True)
            tasks += [(folder / f'{wnid(k)}_{i}.JPEG', name, (seed, split_index, k, i))
                      for i in range(per_class[split])]
    if not workers:  # a pool takes ~0.1 s to start: only worth it beyond a few dozen images each
        workers = min(os.cpu_count() or 1, max(1, len(tasks) // 50))
    if workers > 1:  # a dead worker is an error, not a hang (common/workers.py)
        chunks = [tasks[i:i + 25] for i in range(0, len(tasks), 25)]
        with closing(ordered_map(_write_images, chunks, workers)) as done:
            for _ in done:
                pass
    else:
        for task in tasks:
            _write_image(task)
    (out / 'synsets.txt').write_text(''.join(f'{wnid(k)} {n}\n' for k, n in enumerate(names)))
    return {'classes': len(names), **{s: n * len(names) for s, n in per_class.items()}}


def _write_images(tasks) -> None:
    for task in tasks:
        _write_image(task)


def _write_image(task) -> None:
    path, name, key = task
    rng = np.random.default_rng(key)
    quality = int(rng.integers(85, 93))
    render(name, rng).save(path, 'JPEG', quality=quality)


def _clear_previous(out: Path) -> None:
    ours = (out / 'synsets.txt').is_file() and (out / 'synsets.txt').read_text().startswith(wnid(0) + ' ')
    for split in SPLITS:
        folder = out / split
        if folder.exists() and any(folder.iterdir()):
            if not ours:
                raise FileExistsError(f'{folder} exists and is not a sample written by make_sample.py')
            shutil.rmtree(folder)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', required=True, help='output folder (train/, val/, synsets.txt)')
    p.add_argument('--train-per-class', type=int, default=100)
    p.add_argument('--val-per-class', type=int, default=30)
    p.add_argument('--classes', type=int, default=None, help=f'first N of the {len(CLASSES)} classes')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--workers', type=int, default=0, help='processes (0 = one per core)')
    a = p.parse_args(argv)
    start = time.perf_counter()
    counts = write_sample(a.out, a.train_per_class, a.val_per_class, a.seed, a.classes, a.workers)
    print(f'wrote {counts["train"]} train + {counts["val"]} val images of {counts["classes"]} classes '
          f'to {a.out} in {time.perf_counter() - start:.1f}s')


if __name__ == '__main__':
    main()
