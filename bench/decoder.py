"""Per-image cost of the training decoder, one thread, outside ffcv's loader.

    python bench/decoder.py --image-folder DIR [--res 160] [--repeats 5]

DIR is converted as bench/loader.py converts it (max side 500, 50% JPEG, quality 90). Then,
separately for the JPEG-stored and the raw-stored images, every image of the file in turn:
  decode_only      what bench/loader.py's decode_only does: ffcv's imdecode of the whole
                   JPEG; a copy of a raw image
  project          train/crop_resize.cpp as the CPU trainer calls it: a random-resized crop
                   decoded in part, resized, flipped, written as normalised float32
  project_full     the same, but every JPEG decoded whole (partial decoding switched off)
The best of --repeats passes, in ms per image. The loader's throughput cannot beat what these
allow: where `project` costs more per image than `decode_only`, so does the loader.
The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

from fastimagenet.train.decoders import crop_resize, random_crop
from fastimagenet.train.draws import sample_key

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.loader import convert


@njit
def _crop(index, height, width, log_ratio_lo, log_ratio_hi):
    """The crop the trainer's decoder draws for sample `index` in epoch 1."""
    return random_crop(sample_key(0, 1, index), height, width, 0.08, 1.0, log_ratio_lo, log_ratio_hi)


def per_image_ms(beton: Path, res: int, repeats: int) -> dict:
    from ffcv.libffcv import imdecode

    from fastimagenet.common.beton import MODE_JPG, BetonFile
    from fastimagenet.train.inputs import IMAGENET_MEAN, IMAGENET_STD

    f = BetonFile(beton)
    meta = f.image_meta
    images = [f.image_bytes(i) for i in range(len(f))]
    heights, widths = meta['height'].astype(int), meta['width'].astype(int)
    jpeg = meta['mode'] == MODE_JPG
    crops = [_crop(i, heights[i], widths[i], np.log(3 / 4), np.log(4 / 3)) for i in range(len(f))]
    std, mean = np.asarray(IMAGENET_STD), np.asarray(IMAGENET_MEAN)
    scale, shift = (1 / std).astype(np.float32), (-mean / std).astype(np.float32)
    scratch = np.zeros(int(heights.max() * widths.max() * 3), dtype=np.uint8)
    # a batch's worth of outputs, written in turn as the loader does (not one hot buffer)
    outputs = np.zeros((128, res, res, 3), dtype=np.float32)

    def decode_only(i, k):
        if jpeg[i]:
            imdecode(images[i], scratch, heights[i], widths[i], heights[i], widths[i], 0, 0, 1, 1, False, False)
        else:
            scratch[:images[i].size] = images[i]

    def project(i, k, partial=1):
        top, left, h, w = crops[i]
        crop_resize(images[i].ctypes.data, images[i].size, int(jpeg[i]), int(heights[i]), int(widths[i]),
                    top, left, h, w, outputs[k % 128].ctypes.data, res, res, k & 1, partial,
                    scale.ctypes.data, shift.ctypes.data)

    ways = {'decode_only': decode_only, 'project': project,
            'project_full': lambda i, k: project(i, k, partial=0)}
    result = {}
    for kind, chosen in (('jpeg', np.flatnonzero(jpeg)), ('raw', np.flatnonzero(~jpeg))):
        for name, way in ways.items():
            if kind == 'raw' and name == 'project_full':
                continue  # the same call as `project` for raw images
            best = float('inf')
            for _ in range(repeats):
                t = time.perf_counter()
                for k, i in enumerate(chosen):
                    way(i, k)
                best = min(best, (time.perf_counter() - t) / max(len(chosen), 1))
            result[f'{kind}_{name}_ms'] = round(best * 1e3, 4)
        result[f'{kind}_count'] = int(len(chosen))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--image-folder', required=True, type=Path)
    ap.add_argument('--res', type=int, default=160)
    ap.add_argument('--repeats', type=int, default=5)
    args = ap.parse_args()
    if not args.image_folder.is_dir():
        sys.exit(f'error: {args.image_folder} is not a directory')
    with tempfile.TemporaryDirectory() as tmp:
        r = per_image_ms(convert(args.image_folder, Path(tmp), workers=2), args.res, args.repeats)
    print(f'{"ms per image, 1 thread":24s}{"JPEG-stored":>14s}{"raw-stored":>14s}')
    for name in ('decode_only', 'project', 'project_full'):
        raw = r.get(f'raw_{name}_ms')
        print(f'{name:24s}{r[f"jpeg_{name}_ms"]:14.3f}{"" if raw is None else f"{raw:.3f}":>14s}')
    print(f'images: {r["jpeg_count"]} JPEG, {r["raw_count"]} raw; res {args.res}')
    print(json.dumps({**r, 'res': args.res}))


if __name__ == '__main__':
    main()
