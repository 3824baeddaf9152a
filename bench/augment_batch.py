"""Per-batch cost of the batch-side augmentations (Mixup/CutMix, random erasing) on this machine's device.

    python bench/augment_batch.py [--batch-size 128] [--res 160] [--repeats 20] [--only erase]

A normalised channels_last float32 batch (N, 3, res, res) on the device, the recipe's settings
(Mixup 0.2, CutMix 1.0, erasing 0.25), each case timed over `repeats` batches of different
epochs (so different draws), after 2 untimed ones; median and slowest batch. Beside ours:
timm's own Mixup / RandomErasing on the same batch (its global RNGs; it works in place, so
its rows include the copy of the batch it is given, as ours leave their input unwritten),
and the alternative fill of erasing boxes, one slice assignment per box (as timm does),
against ours, one masked `where` per box slot over the whole batch. `host` rows time the
numpy part alone (draws and geometry). The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from timm.data.mixup import Mixup
from timm.data.random_erasing import RandomErasing

from fastimagenet.train.augment.erasing import ErasingSpec, box_colours, erase, erasing_boxes, fill_boxes
from fastimagenet.train.augment.mixing import COLUMNS, MixSpec, mix, mixing_params
from fastimagenet.train.draws import STREAM_ERASING, STREAM_MIXING, uniform_table


def fill_by_slices(images: torch.Tensor, boxes, colours: np.ndarray) -> torch.Tensor:
    """The alternative to erasing.fill_boxes: one slice assignment per box."""
    out = images.clone()
    fill = torch.as_tensor(colours, dtype=images.dtype, device=images.device)
    for i, b in zip(*np.nonzero(boxes.valid)):
        t, l, h, w = (int(a[i, b]) for a in (boxes.top, boxes.left, boxes.h, boxes.w))
        out[i, :, t:t + h, l:l + w] = fill[i, b, :, None, None]
    return out


def timed(fn, repeats: int, device: torch.device) -> list[float]:
    """Milliseconds of fn(epoch) for epochs 2..repeats+1 (epochs 0 and 1 warm up)."""
    times = []
    for epoch in range(repeats + 2):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn(epoch)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        if epoch >= 2:
            times.append((time.perf_counter() - t) * 1e3)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--res', type=int, default=160)
    ap.add_argument('--repeats', type=int, default=20)
    ap.add_argument('--only', default='', help='time only the cases whose name contains this')
    args = ap.parse_args()
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    name = torch.cuda.get_device_name() if device.type == 'cuda' else f'cpu x{torch.get_num_threads()} threads'
    n, res = args.batch_size, args.res
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, res, res, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (n,), generator=gen).to(device)
    indices = np.arange(n, dtype=np.int64) * 997  # the host copy the loader keeps
    np.random.seed(0)

    recipe = MixSpec()  # Mixup 0.2, CutMix 1.0, switch 0.5, batch mode, smoothing 0.1
    cases = {
        'mix batch mixup': lambda e: mix(images, labels, indices, MixSpec(cutmix_alpha=0.0), seed=0, epoch=e),
        'mix batch cutmix': lambda e: mix(images, labels, indices, MixSpec(mixup_alpha=0.0), seed=0, epoch=e),
        'mix batch recipe': lambda e: mix(images, labels, indices, recipe, seed=0, epoch=e),
        'mix pair recipe': lambda e: mix(images, labels, indices, MixSpec(mode='pair'), seed=0, epoch=e),
        'mix elem recipe': lambda e: mix(images, labels, indices, MixSpec(mode='elem'), seed=0, epoch=e),
        'host mix elem params': lambda e: mixing_params(
            MixSpec(mode='elem'), uniform_table(0, e, indices, STREAM_MIXING, COLUMNS), res, res, False),
        'timm Mixup batch': lambda e: Mixup(0.2, 1.0, label_smoothing=0.1)(images.clone(), labels),
        'timm Mixup elem': lambda e: Mixup(0.2, 1.0, mode='elem', label_smoothing=0.1)(images.clone(), labels),
    }
    for p in (0.25, 1.0):
        for mode in ('const', 'rand', 'pixel'):
            spec = ErasingSpec(probability=p, mode=mode)
            cases[f'erase p={p} {mode}'] = lambda e, spec=spec: erase(images, indices, spec, seed=0, epoch=e)
            cases[f'timm erase p={p} {mode}'] = lambda e, p=p, mode=mode: RandomErasing(
                p, mode=mode, device=device)(images.clone())
        for mode in ('const', 'rand'):
            spec = ErasingSpec(probability=p, mode=mode)

            def by(fill, e, spec=spec):
                draws = uniform_table(0, e, indices, STREAM_ERASING, spec.columns(3))
                return fill(images, erasing_boxes(spec, res, res, draws), box_colours(spec, 3, draws))
            cases[f'erase p={p} {mode} per-box slices'] = lambda e, by=by: by(fill_by_slices, e)
            cases[f'erase p={p} {mode} masked where'] = lambda e, by=by: by(fill_boxes, e)
            # the two fills agree (the tests check ours against timm's)
            assert torch.equal(by(fill_by_slices, 7), by(fill_boxes, 7))
        spec = ErasingSpec(probability=p, mode='pixel')
        cases[f'host erase p={p} boxes'] = lambda e, spec=spec: erasing_boxes(
            spec, res, res, uniform_table(0, e, indices, STREAM_ERASING, spec.columns(3)))

    print(f'device: {name}; batch {n} x 3 x {res} x {res} float32 channels_last, {args.repeats} batches each')
    print(f'{"case":38s}{"median ms":>11s}{"max ms":>9s}')
    results = {}
    for label, fn in ((k, v) for k, v in cases.items() if args.only in k):
        times = timed(fn, args.repeats, device)
        results[label.replace(' ', '_').replace('=', '')] = round(statistics.median(times), 3)
        print(f'{label:38s}{statistics.median(times):11.2f}{max(times):9.2f}', flush=True)
    print(json.dumps({'device': name, 'batch_size': n, 'res': res, 'repeats': args.repeats, 'median_ms': results}))


if __name__ == '__main__':
    main()
