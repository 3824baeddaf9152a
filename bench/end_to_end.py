"""Time to accuracy, end to end: our trainer against a plain torchvision script, same recipe and data.

    python bench/end_to_end.py [--data data/fashion] [--epochs 6] [--res 64] [--batch-size 64] [--lr 0.4]
                               [--seeds 0,1,2] [--ours-args "--training.zero_init=0 ..."]

Both train torchvision's resnet18 from scratch on the same images (default: Fashion-MNIST from
Debian as 128 px JPEGs, bench/fashion.py: 10,000 train / 2,000 val) with the same recipe: batch
64, SGD lr 0.4 with a 1-epoch linear warm-up and a linear decay, weight decay 5e-5 (none on
BatchNorm), label smoothing 0.1, random-resized crops + flips at 64 px, flip-averaged validation,
2 decoding workers. The plain script (bench/plain_torchvision.py) reads the JPEG folder through
ImageFolder + DataLoader; ours reads the .beton this script converts first (the conversion time
is reported apart: it is paid once per dataset). They run one after the other, once per seed,
alternating. Wall time is each training process's whole life (imports, start-up,
training, validation). Each pair runs with one seed (`--seed` of the plain script, `data.seed`
of ours: initialisation, sample order, crops); both are deterministic on the CPU, so only several
seeds say whether a difference in top-1 is more than a draw. The last line printed is one JSON object.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def convert(data: Path, out: Path) -> float:
    t = time.time()
    subprocess.run([sys.executable, 'convert/write_imagenet.py', f'--cfg.data_dir={data}', f'--cfg.write_path={out}/',
                    '--cfg.max_resolution=500', '--cfg.num_workers=2'], cwd=ROOT, check=True, capture_output=True)
    return time.time() - t


def run_plain(args, seed: int) -> dict:
    t = time.time()
    proc = subprocess.run([sys.executable, 'bench/plain_torchvision.py', '--data', str(args.data),
                           '--epochs', str(args.epochs), '--res', str(args.res), '--batch-size', str(args.batch_size),
                           '--lr', str(args.lr), '--workers', '2', '--seed', str(seed)],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f'the plain script failed:\n{proc.stderr[-3000:]}')
    epochs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
    return {'wall_s': time.time() - t, 'top_1': [e['top_1'] for e in epochs],
            'imgs_per_s': [e['train_imgs_per_s'] for e in epochs]}


def run_ours(args, seed: int, betons: Path, folder: Path) -> dict:
    command = [sys.executable, 'train/train_imagenet.py', f'--data.train_dataset={betons}/train.beton',
               f'--data.val_dataset={betons}/val.beton', f'--logging.folder={folder}', '--model.arch=resnet18',
               '--training.ema=0', '--training.use_blurpool=0', f'--lr.lr={args.lr}', '--lr.lr_peak_epoch=1',
               '--lr.lr_schedule_type=cyclic', f'--training.batch_size={args.batch_size}',
               f'--training.epochs={args.epochs}', f'--resolution.min_res={args.res}',
               f'--resolution.max_res={args.res}', f'--validation.resolution={args.res}',
               '--validation.batch_size=256', '--training.label_smoothing=0.1', '--training.weight_decay=5e-5',
               '--data.num_workers=2', f'--data.seed={seed}', *shlex.split(args.ours_args)]
    t = time.time()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f'our trainer failed:\n{proc.stderr[-3000:]}')
    log = [json.loads(line) for line in (folder / 'log.jsonl').read_text().splitlines()]
    return {'wall_s': time.time() - t, 'top_1': [r['top_1'] for r in log],
            'imgs_per_s': [r['train_imgs_per_s'] for r in log],
            'train_s': sum(r['epoch_time_s'] for r in log), 'val_s': sum(r.get('val_time_s', 0) for r in log)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', type=Path, default=ROOT / 'data' / 'fashion')
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--res', type=int, default=64)
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--lr', type=float, default=0.4)
    ap.add_argument('--seeds', default='0', help='comma-separated: one pair of runs per seed, e.g. 0,1,2')
    ap.add_argument('--ours-args', default='', help='extra trainer arguments, e.g. "--training.zero_init=0"')
    args = ap.parse_args()
    try:
        seeds = [int(x) for x in args.seeds.split(',')]
    except ValueError:
        raise SystemExit(f'--seeds {args.seeds!r}: expected comma-separated integers, e.g. --seeds 0,1,2')
    if len(set(seeds)) != len(seeds):  # a repeated seed would resume the first run's finished folder
        raise SystemExit(f'--seeds {args.seeds!r}: each seed once (a seed gives the same run every time)')
    if not (args.data / 'train').is_dir():
        subprocess.run([sys.executable, 'bench/fashion.py', '--out', str(args.data)], cwd=ROOT, check=True)

    with tempfile.TemporaryDirectory(prefix='e2e-') as tmp:
        tmp = Path(tmp)
        convert_s = convert(args.data, tmp / 'ffcv')
        plain, ours = [], []
        for seed in seeds:
            plain.append(run_plain(args, seed))
            ours.append(run_ours(args, seed, tmp / 'ffcv', tmp / f'seed{seed}'))

    print(f'{os.cpu_count()} cores; resnet18, {args.epochs} epochs at {args.res} px, batch {args.batch_size}, '
          f'lr {args.lr}; conversion of train+val to .beton: {convert_s:.1f} s (once per dataset)')
    mean = lambda xs: sum(xs) / len(xs)
    print(f'top-1 after each epoch, per seed (plain, ours), and the mean over {len(seeds)} seed(s):')
    print(f'{"epoch":>5}  ' + '  '.join(f'plain@{s} ours@{s}' for s in seeds) + '    plain   ours   ours-plain')
    for epoch in range(args.epochs):
        cells = [f'{p["top_1"][epoch]:7.4f} {o["top_1"][epoch]:6.4f}' for p, o in zip(plain, ours)]
        mp, mo = mean([p['top_1'][epoch] for p in plain]), mean([o['top_1'][epoch] for o in ours])
        print(f'{epoch + 1:>5}  ' + '  '.join(cells) + f'   {mp:.4f} {mo:.4f} {mo - mp:+.4f}')
    for seed, p, o in zip(seeds, plain, ours):
        print(f'seed {seed}: wall plain {p["wall_s"]:.0f} s, ours {o["wall_s"]:.0f} s (train {o["train_s"]:.0f} s, '
              f'validation {o["val_s"]:.0f} s): ours/plain = {o["wall_s"] / p["wall_s"]:.2f}x; '
              f'train img/s plain {sum(p["imgs_per_s"]) / len(p["imgs_per_s"]):.0f}, '
              f'ours {sum(o["imgs_per_s"]) / len(o["imgs_per_s"]):.0f}')
    print(json.dumps({'cores': os.cpu_count(), 'epochs': args.epochs, 'res': args.res, 'convert_s': round(convert_s, 1),
                      'plain': [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in p.items()} for p in plain],
                      'ours': [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in o.items()} for o in ours],
                      'seeds': seeds, 'ours_args': args.ours_args}))


if __name__ == '__main__':
    main()
