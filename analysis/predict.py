"""Classify image files with a trained checkpoint: the top classes and their probabilities.

    python analysis/predict.py --checkpoint runs/demo/best.pt photo.jpg other.png [--topk 5]
    python analysis/predict.py --checkpoint runs/demo/best.pt photo.jpg --gradcam cam.png

Any JPEG, PNG or WebP (any mode; EXIF rotation applied, transparency over white) is
seen as validation images are: the centred 224/256 crop resized to the checkpoint's
validation resolution. `--gradcam OUT.png` writes the Grad-CAM heat-map of the top-1
class over that crop; with several images, one file per image, numbered in the order
given: OUT-1.png, OUT-2.png, ... The checkpoint may be a best.pt/last.pt (EMA weights
by default, --ema 0 for the raw ones) or a final_weights.pt with params.json beside it.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import os
from pathlib import Path

from PIL import Image

from fastimagenet.common.atomic import atomic_path
from fastimagenet.common.cli import fail, run
from fastimagenet.common.images import DECODE_ERRORS, BadImage, load_rgb


def read_image(path: str):
    """The file's RGB pixels, or one line saying why there are none."""
    if not os.path.exists(path):
        fail(f'{path} does not exist')
    if os.path.isdir(path):
        fail(f'{path} is a directory, not an image file')
    try:
        if os.path.getsize(path) == 0:
            raise BadImage('empty file (0 bytes)')
        with Image.open(path):
            pass
    except BadImage as e:
        fail(f'{path} is not an image ({e})')
    except Image.DecompressionBombError:
        pass  # an image, with too many pixels: load_rgb below says so
    except DECODE_ERRORS as e:
        fail(f'{path} is not an image: not JPEG, PNG, WebP nor any format Pillow reads ({type(e).__name__})')
    try:
        return load_rgb(path)
    except BadImage as e:  # recognised, but truncated or corrupt
        fail(f'{path} does not decode as an image: {e}')


def gradcam_paths(out: str, count: int) -> list[Path]:
    """OUT.png for one image; OUT-1.png ... OUT-N.png for several."""
    out = Path(out)
    if count == 1:
        return [out]
    return [out.with_name(f'{out.stem}-{i}{out.suffix or ".png"}') for i in range(1, count + 1)]


def save_png(path: Path, rgb) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format='PNG')


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--checkpoint', required=True, help='best.pt, last.pt or final_weights.pt')
    parser.add_argument('images', nargs='+', metavar='IMAGE', help='image files')
    parser.add_argument('--topk', type=int, default=5, help='how many classes to show (default 5)')
    parser.add_argument('--gradcam', metavar='OUT.png', help='write the Grad-CAM overlay (OUT-<n>.png for several images)')
    parser.add_argument('--ema', type=int, choices=(0, 1), default=1, help='1: EMA weights when the checkpoint has them')
    args = parser.parse_args(argv)
    if args.topk < 1:
        fail('--topk must be at least 1')

    # Every file is decoded once before the model loads, so a bad one fails at once; then again
    # when its turn comes, so that many large photos never sit in memory together.
    for path in args.images:
        read_image(path)
    if not Path(args.checkpoint).is_file():
        fail(f'checkpoint {args.checkpoint} does not exist')
    from fastimagenet.analysis.predictor import Predictor  # torch and the model only once the inputs are known good
    predictor = Predictor(args.checkpoint, prefer_ema=bool(args.ema))
    print(f'{args.checkpoint}: {predictor.describe()}')
    outputs = gradcam_paths(args.gradcam, len(args.images)) if args.gradcam else [None] * len(args.images)
    width = max(len(name) for name in predictor.names)
    for path, out in zip(args.images, outputs):
        prediction = predictor(read_image(path), topk=args.topk, gradcam=out is not None)
        print(f'\n{path}')
        for rank, (index, name, prob) in enumerate(prediction.top, 1):
            print(f'  {rank}. {name:<{min(width, 40)}}  {100 * prob:6.2f}%   (class {index})')
        if out is not None:
            save_png(out, prediction.heatmap)
            print(f'  Grad-CAM of "{prediction.top[0][1]}" -> {out}')


if __name__ == '__main__':
    run(main)
