"""Per-image cost of the per-sample augmentations (train/augment), one thread, outside ffcv's loader.

    python bench/augment.py [--image-folder DIR] [--res 160,224] [--repeats 5]

DIR (default: the built-in sample, 10 classes x 26 images, written to a temporary folder) is
converted as bench/loader.py converts it, and its images are decoded once, at each --res, by
the training decoder (random-resized crops, uint8). Then, on those crops, what
PerSampleAugment does per image (augment_images: the same kernels, one thread):
  randaugment       timm's rand-m9-mstd0.5 (ResNet strong recipe): 2 ops, each with p 0.5
  jitter            ColorJitter(0.4, 0.4, 0.4): timm's default color_jitter, no hue
  jitter_hue        ColorJitter(0.4, 0.4, 0.4, 0.1)
  both              randaugment then jitter_hue
  op <Name>         one RandAugment op at magnitude 9, on every image (what it costs when drawn)
and, for scale, `decode`: bench/decoder.py's `project` (the crop decode the trainer pays).
Figures are the best of --repeats passes (each over a fresh copy, a different epoch's draws),
in ms per image of this thread's CPU time: on a shared machine wall time also counts other
processes' turns. The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.loader import convert  # noqa: E402


def decoded_crops(beton: Path, res: int) -> np.ndarray:
    """Every image of `beton` as the trainer's decoder crops it at `res` (uint8 NHWC)."""
    from ffcv.fields.basics import IntDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor

    from fastimagenet.train.decoders import RandomResizedCropFlipDecoder
    loader = Loader(str(beton), batch_size=64, num_workers=1, order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines={'image': [RandomResizedCropFlipDecoder((res, res), seed=0), ToTensor()],
                               'label': [IntDecoder(), ToTensor()]})
    return np.concatenate([x.numpy().copy() for x, _ in loader])


def best_ms(work, crops: np.ndarray, repeats: int) -> float:
    """Best per-image thread CPU time of work(copy, epoch) over `repeats` passes, in ms."""
    work(crops[:2].copy(), 0)  # compiled (or loaded from numba's cache) before timing
    best = float('inf')
    for epoch in range(repeats):
        batch = crops.copy()
        t = time.thread_time()
        work(batch, epoch)
        best = min(best, (time.thread_time() - t) / len(crops))
    return round(best * 1e3, 4)


def per_image_ms(crops: np.ndarray, repeats: int) -> dict:
    from fastimagenet.train.augment.color_jitter import color_jitter_spec
    from fastimagenet.train.augment.per_sample import augment_images
    from fastimagenet.train.augment.randaugment import (DEFAULT_OPS, OPS, TIMM_FILL, apply_op, level_arg,
                                                        parse_randaugment)

    ra = parse_randaugment('rand-m9-mstd0.5')
    jitter, jitter_hue = color_jitter_spec(0.4, 0.4, 0.4), color_jitter_spec(0.4, 0.4, 0.4, 0.1)
    indices = np.arange(len(crops))
    configs = {'randaugment': dict(randaugment=ra), 'jitter': dict(color_jitter=jitter),
               'jitter_hue': dict(color_jitter=jitter_hue), 'both': dict(randaugment=ra, color_jitter=jitter_hue)}
    result = {name: best_ms(lambda batch, epoch, kw=kw: augment_images(batch, indices, seed=0, epoch=epoch, **kw),
                            crops, repeats)
              for name, kw in configs.items()}
    fill = np.array(TIMM_FILL, dtype=np.uint8)
    for name in DEFAULT_OPS:
        code = OPS.index(name)

        def one_op(batch, epoch, code=code):
            scratch = np.empty_like(batch[0])
            for i in range(len(batch)):  # alternate signs, as the draws do
                apply_op(batch[i], code, level_arg(code, 9.0, bool(i & 1), ra.translate_pct), fill, scratch)
        result[f'op {name}'] = best_ms(one_op, crops, repeats)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--image-folder', type=Path, help='ImageFolder tree (default: the built-in sample)')
    ap.add_argument('--res', default='160,224', help='comma-separated output resolutions')
    ap.add_argument('--repeats', type=int, default=5)
    args = ap.parse_args()
    if args.image_folder is not None and not args.image_folder.is_dir():
        sys.exit(f'error: {args.image_folder} is not a directory')
    resolutions = [int(r) for r in args.res.split(',')]
    from bench.decoder import per_image_ms as decoder_ms
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.image_folder
        if folder is None:
            from fastimagenet.convert.make_sample import write_sample
            write_sample(Path(tmp) / 'sample', train_per_class=26, val_per_class=1, workers=2)
            folder = Path(tmp) / 'sample' / 'train'
        beton = convert(folder, Path(tmp), workers=2)
        for res in resolutions:
            crops = decoded_crops(beton, res)
            results[res] = per_image_ms(crops, args.repeats)
            results[res]['decode'] = decoder_ms(beton, res, args.repeats)['jpeg_project_ms']
            results[res]['images'] = len(crops)
    names = [k for k in results[resolutions[0]] if k != 'images']
    print(f'{"ms per image, 1 thread (CPU time)":34s}' + ''.join(f'{f"res {r}":>10s}' for r in resolutions))
    for name in names:
        print(f'{name:34s}' + ''.join(f'{results[r][name]:10.3f}' for r in resolutions))
    print(f'images: {results[resolutions[0]]["images"]} crops per resolution; best of {args.repeats}')
    print(json.dumps({f'{name}_ms_{r}': results[r][name] for r in resolutions for name in names}))


if __name__ == '__main__':
    main()
