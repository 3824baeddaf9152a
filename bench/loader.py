"""Training-loader throughput, side by side on the same images, in one process.

    python bench/loader.py --image-folder DIR [--res 160] [--batch-size 128] [--workers N] [--epochs 3]

DIR is an ImageFolder (class folders of images). It is converted once, with the project's
converter and its ImageNet settings (max side 500, 50% JPEG, quality 90), to a temporary
.beton; then, alternating, steady-state epochs of:
  torchvision   ImageFolder + DataLoader: RandomResizedCrop, flip, ToTensor, Normalize
  ffcv_stock    ffcv's RandomResizedCropRGBImageDecoder + flip, as the public ffcv-imagenet trainer
  project       the project's training loader, exactly as train/train_imagenet.py builds it
  decode_only   every stored image decoded to full-size RGB (libjpeg-turbo), nothing else:
                the bound no full-decode pipeline can pass
With --strong, the strong recipe's per-image augmentations too (RandAugment rand-m9-mstd0.5 and
random erasing 0.25, pixel mode), beside what timm users run:
  timm_strong     ImageFolder + timm's create_transform(res, is_training=True,
                  auto_augment='rand-m9-mstd0.5', re_prob=0.25) + DataLoader
  project_strong  the project's loader with RandAugment in its decoding threads, then random
                  erasing of the normalised batch (on the CPU here; the trainer does it on the GPU)
Each pipeline's first epoch (numba compilation, worker start-up) is timed on its own.
The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
STRONG_RANDAUGMENT, STRONG_ERASING = 'rand-m9-mstd0.5', 0.25


def convert(image_folder: Path, out: Path, workers: int) -> Path:
    beton = out / 'bench.beton'
    subprocess.run([sys.executable, str(ROOT / 'convert' / 'write_imagenet.py'), f'--cfg.data_dir={image_folder}',
                    '--cfg.split=train', f'--cfg.write_path={beton}', '--cfg.max_resolution=500',
                    '--cfg.write_mode=proportion', '--cfg.compress_probability=0.5', '--cfg.jpeg_quality=90',
                    f'--cfg.num_workers={workers}'], check=True, stdout=subprocess.DEVNULL)
    return beton


def torchvision_epochs(folder: Path, res: int, batch_size: int, workers: int):
    from torchvision import datasets, transforms as T
    tf = T.Compose([T.RandomResizedCrop(res), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder), tf), batch_size=batch_size,
                                         shuffle=True, num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0)

    def epoch() -> int:
        n = 0
        for images, _ in loader:
            n += len(images)
        return n
    return epoch


def timm_strong_epochs(folder: Path, res: int, batch_size: int, workers: int):
    from timm.data import create_transform
    from torchvision import datasets
    tf = create_transform(res, is_training=True, auto_augment=STRONG_RANDAUGMENT, re_prob=STRONG_ERASING)
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder), tf), batch_size=batch_size,
                                         shuffle=True, num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0)

    def epoch() -> int:
        return sum(len(images) for images, _ in loader)
    return epoch


def ffcv_epochs(beton: Path, res: int, batch_size: int, workers: int, kind: str):
    from fastimagenet.train.inputs import Normalize
    from fastimagenet.train.loaders import train_loader
    device = torch.device('cpu')
    augment, erasing = None, None
    if kind == 'project_strong':
        from fastimagenet.train.augment.erasing import ErasingSpec, erase
        from fastimagenet.train.augment.per_sample import PerSampleAugment
        augment = PerSampleAugment(0, randaugment=STRONG_RANDAUGMENT)
        erasing = ErasingSpec(probability=STRONG_ERASING, mode='pixel')
    data = train_loader(beton, batch_size=batch_size, num_workers=workers, in_memory=1, res=res,
                        seed=0, distributed=False, device=device,
                        decoder='stock' if kind == 'ffcv_stock' else 'fast', augment=augment)
    normalize = Normalize(device, normalized=data.normalized)  # all end as normalised float batches
    state = {'epoch': 0}

    def epoch() -> int:
        data.start_epoch(state['epoch'], res)
        n = 0
        for images, _, indices in data:
            x = normalize(images)
            if erasing is not None:
                x = erase(x, indices, erasing, seed=0, epoch=state['epoch'])
            n += len(x)
        state['epoch'] += 1
        return n
    return epoch


def decode_only_epochs(beton: Path, workers: int):
    import numba
    from ffcv.libffcv import imdecode

    from fastimagenet.common.beton import MODE_JPG, BetonFile
    f = BetonFile(beton)
    data = np.memmap(beton, dtype=np.uint8, mode='r')
    meta = f.image_meta
    ptrs = meta['data_ptr'].astype(np.uint64)
    sizes = np.array([f.image_bytes(i).size for i in range(len(f))], dtype=np.uint64)
    heights, widths = meta['height'].astype(np.int64), meta['width'].astype(np.int64)
    jpeg = meta['mode'] == MODE_JPG
    buffers = np.zeros((workers, int(heights.max() * widths.max() * 3)), dtype=np.uint8)
    decode = numba.njit(imdecode)

    @numba.njit(parallel=True, nogil=True)
    def run(data, ptrs, sizes, heights, widths, jpeg, buffers):
        per_worker = (len(ptrs) + buffers.shape[0] - 1) // buffers.shape[0]
        for w in numba.prange(buffers.shape[0]):
            for i in range(w * per_worker, min((w + 1) * per_worker, len(ptrs))):
                src = data[ptrs[i]:ptrs[i] + sizes[i]]
                out = buffers[w, :heights[i] * widths[i] * 3]
                if jpeg[i]:
                    decode(src, out, heights[i], widths[i], heights[i], widths[i], 0, 0, 1, 1, False, False)
                else:
                    out[:] = src  # raw pixels: a copy is their "decode"
        return len(ptrs)

    def epoch() -> int:
        numba.set_num_threads(workers)
        return run(data, ptrs, sizes, heights, widths, jpeg, buffers)
    return epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--image-folder', required=True, type=Path)
    ap.add_argument('--res', type=int, default=160)
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--workers', type=int, default=os.cpu_count())
    ap.add_argument('--epochs', type=int, default=3, help='timed epochs per pipeline, after the first')
    ap.add_argument('--strong', action='store_true', help='also RandAugment + random erasing, against timm')
    args = ap.parse_args()
    if not args.image_folder.is_dir():
        sys.exit(f'error: {args.image_folder} is not a directory')
    torch.set_num_threads(args.workers)

    with tempfile.TemporaryDirectory() as tmp:
        beton = convert(args.image_folder, Path(tmp), args.workers)
        pipelines = {
            'torchvision': torchvision_epochs(args.image_folder, args.res, args.batch_size, args.workers),
            'ffcv_stock': ffcv_epochs(beton, args.res, args.batch_size, args.workers, 'ffcv_stock'),
            'project': ffcv_epochs(beton, args.res, args.batch_size, args.workers, 'project'),
            'decode_only': decode_only_epochs(beton, args.workers),
        }
        if args.strong:
            pipelines['timm_strong'] = timm_strong_epochs(args.image_folder, args.res, args.batch_size, args.workers)
            pipelines['project_strong'] = ffcv_epochs(beton, args.res, args.batch_size, args.workers, 'project_strong')
        first, steady = {}, {name: [] for name in pipelines}
        for name, epoch in pipelines.items():
            t = time.perf_counter()
            epoch()
            first[name] = time.perf_counter() - t
        for _ in range(args.epochs):  # alternating, so drift in machine speed hits all alike
            for name, epoch in pipelines.items():
                t = time.perf_counter()
                n = epoch()
                steady[name].append(n / (time.perf_counter() - t))

    rate = {name: float(np.median(v)) for name, v in steady.items()}
    print(f'{"pipeline":14s}{"img/s (median)":>16s}{"min":>10s}{"max":>10s}{"first epoch s":>16s}')
    for name in pipelines:
        print(f'{name:14s}{rate[name]:16.0f}{min(steady[name]):10.0f}{max(steady[name]):10.0f}{first[name]:16.1f}')
    print(f'project / torchvision = {rate["project"] / rate["torchvision"]:.2f}x, '
          f'project / ffcv_stock = {rate["project"] / rate["ffcv_stock"]:.2f}x, '
          f'project / decode_only = {rate["project"] / rate["decode_only"]:.2f}x')
    if args.strong:
        print(f'project_strong / timm_strong = {rate["project_strong"] / rate["timm_strong"]:.2f}x, '
              f'project_strong / project = {rate["project_strong"] / rate["project"]:.2f}x')
    print(json.dumps({**{f'{name}_img_s': round(value, 1) for name, value in rate.items()},
                      'first_epoch_s': round(first['project'], 2),
                      **({'first_epoch_strong_s': round(first['project_strong'], 2)} if args.strong else {}),
                      'workers': args.workers, 'res': args.res}))


if __name__ == '__main__':
    main()
