"""ImageNet-scale sample counts through the real converter and loaders: what grows with N.

    python bench/scale.py [--sizes 40000,1281167] [--classes 1000] [--workers 2] [--keep]

For each N: N small JPEGs (64x48 px) in 1000 ImageFolder class folders, generated in parallel
and deterministic by --seed, under --data-dir (default data/scale, git-ignored; deleted at the
end unless --keep). They are converted by convert/write_imagenet.py as a user runs it (a
subprocess, its ImageNet settings: proportion 0.5, quality 90) and checked by its
--cfg.verify=1; then each loader is built in a fresh process, as the trainer builds it on a CPU:
  train        train_loader, in_memory=1 (the default): uniform random order, OS page cache
  train_touched  the same as train, with every page of the loader's mapping of the file touched
               before the timed batches (touch_s): the one-off cost of first-touch page faults
  train_quasi  train_loader, in_memory=0: quasi-random order through ffcv's process cache
  val          val_loader over the same file (sequential; ImageNet's val split is 50k images)
  ddp_rank     train_loader with distributed=True, as rank 0 of 8 in torch's fake process
               group (one process, no communication; ffcv's DistributedSampler splits the indices)
Per loader: open_dataset() (the trainer's check of the file: BetonFile and the class list) and
Loader() construction time, first batch, steady img/s over the rest of the first epoch (or
--batches batches of it: its start alone pays a page fault for nearly every sample, since this
process has touched none of the file yet; a whole epoch pays each page once), and memory from
/proc/self/smaps_rollup: the process's own (Anonymous) grown since before open_dataset, less
the loader's batch buffers and process-cache pages, apart from the file-backed pages of the
mapped .beton (the kernel's page cache, shared by every process and dropped under pressure).
Converter and verify: img/s and peak memory of parent + workers, summed PSS (pages the forked
workers share with the parent counted once; USS and RSS are in the JSON too).
The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np

from fastimagenet.common.workers import ordered_map

ROOT = Path(__file__).resolve().parent.parent
IMAGENET_TRAIN = 1_281_167
WIDTH, HEIGHT = 64, 48         # the first probe's size: per-image costs, not pixels, are measured
PROBES = ('train', 'train_touched', 'train_quasi', 'val', 'ddp_rank')
DDP_WORLD = 8
FLAT = 1.2                     # the goals: per-image costs within 20% from the smallest N to the largest,
MAX_CONSTRUCTION_S = 10        # open_dataset + Loader() under 10 s,
MAX_MEMORY_MB = 2048           # and under 2 GB beyond the loader's buffers, at the largest N


# ---- the dataset -------------------------------------------------------------------------------

def class_counts(n: int, classes: int) -> list[int]:
    """ImageNet's shape: every class about n / classes images (1281 or 1282 at ImageNet's n)."""
    return [n // classes + (c < n % classes) for c in range(classes)]


def wnid(c: int) -> str:
    return f's{c + 1:08d}'  # a WordNet id's length, never one of ImageNet's (convert/make_sample.py)


def generate(folder: Path, n: int, classes: int, seed: int, workers: int) -> Path:
    """folder/train/<wnid>/<wnid>_<j>.JPEG, one task per class; reused when already complete."""
    key = json.dumps({'n': n, 'classes': classes, 'seed': seed, 'size': [WIDTH, HEIGHT]})
    marker = folder / 'complete.json'
    if marker.exists() and marker.read_text() == key:
        return folder / 'train'
    shutil.rmtree(folder, ignore_errors=True)
    tasks = [(folder / 'train' / wnid(c), seed, c, count) for c, count in enumerate(class_counts(n, classes))]
    with closing(ordered_map(_write_class, tasks, workers)) as done:
        written = sum(done)
    assert written == n, (written, n)
    marker.write_text(key)  # last: a folder without it is regenerated
    return folder / 'train'


def _write_class(task) -> int:
    import cv2
    cv2.setNumThreads(1)  # the workers are the parallelism
    folder, seed, c, count = task
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng((seed, c))  # one generator per class: the same images whatever the workers
    tint = rng.uniform(0.3, 1.0, 3)
    # Smooth content (an 8x6 grid of random colours, upsampled) encodes to ~1-2 KB like a small
    # photo would; noise would make every file 5x larger and the benchmark a disk benchmark.
    grids = rng.integers(0, 256, (count, 6, 8, 3), dtype=np.uint8)
    for j in range(count):
        image = (cv2.resize(grids[j], (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC) * tint).astype(np.uint8)
        ok, data = cv2.imencode('.jpg', image, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
        (folder / f'{wnid(c)}_{j}.JPEG').write_bytes(data.tobytes())
    return count


# ---- memory ----------------------------------------------------------------------------------------

def rollup(pid: int | str = 'self') -> dict[str, float]:
    """/proc/<pid>/smaps_rollup in MB: Rss, Pss, Anonymous (the process's own pages), ..."""
    out = {}
    with open(f'/proc/{pid}/smaps_rollup') as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == 'kB':
                out[parts[0].rstrip(':')] = int(parts[1]) / 1024
    return out


def mapped_rss(path: Path, pid: int | str = 'self') -> float:
    """MB of `path`'s pages resident in this process's mappings of it (file-backed, not its own)."""
    target, total, inside = str(path.resolve()), 0.0, False
    with open(f'/proc/{pid}/smaps') as f:
        for line in f:
            first = line.split(maxsplit=5)
            if first and '-' in first[0] and len(first) >= 5:  # a mapping's header line
                inside = len(first) == 6 and first[5].strip() == target
            elif inside and first[0] == 'Rss:':
                total += int(first[1]) / 1024
    return total


def cached_fraction(path: Path) -> float:
    """Share of the file's pages in the page cache (mincore(2)): below 1, random reads go to disk."""
    import ctypes
    data = np.memmap(path, dtype=np.uint8, mode='r')
    resident = np.zeros(-(-data.size // os.sysconf('SC_PAGE_SIZE')), dtype=np.uint8)
    if ctypes.CDLL(None).mincore(ctypes.c_void_p(data.ctypes.data), ctypes.c_size_t(data.size),
                                 resident.ctypes.data_as(ctypes.c_void_p)) != 0:
        return float('nan')
    return round(float((resident & 1).mean()), 4)


def page_faults() -> tuple[int, int]:
    """(minor, major) page faults of this process so far: a major one read the disk, a minor one
    mapped a page already in the page cache (the first touch of each page of a mapped file)."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_majflt


def buffer_mb(buffers) -> float:
    """Size of ffcv's batch buffers (nested dicts and tuples of arrays and tensors)."""
    if buffers is None:
        return 0.0
    if isinstance(buffers, dict):
        return sum(buffer_mb(b) for b in buffers.values())
    if isinstance(buffers, (list, tuple)):
        return sum(buffer_mb(b) for b in buffers)
    nbytes = buffers.nbytes if isinstance(buffers, np.ndarray) else buffers.element_size() * buffers.nelement()
    return nbytes / 2 ** 20


def watch(cmd: list[str], log: Path, interval: float = 0.25) -> dict:
    """Run cmd; -> wall time and peak memory of it and its children, sampled every `interval` s."""
    import psutil
    peak = {'pss_mb': 0.0, 'uss_mb': 0.0, 'rss_mb': 0.0, 'parent_anon_mb': 0.0, 'processes': 0}
    start = time.perf_counter()
    with open(log, 'w') as out:
        proc = psutil.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        while proc.poll() is None:
            total = {'pss_mb': 0.0, 'uss_mb': 0.0, 'rss_mb': 0.0}
            try:
                family = [proc, *proc.children(recursive=True)]
                peak['parent_anon_mb'] = max(peak['parent_anon_mb'], rollup(proc.pid).get('Anonymous', 0))
            except (psutil.Error, OSError):
                family = []
            for p in family:
                try:
                    m = p.memory_full_info()  # from smaps_rollup: cheap
                except psutil.Error:
                    continue  # ended between the listing and the reading
                total['pss_mb'] += m.pss / 2 ** 20
                total['uss_mb'] += m.uss / 2 ** 20
                total['rss_mb'] += m.rss / 2 ** 20
            for k, v in total.items():
                peak[k] = max(peak[k], v)
            peak['processes'] = max(peak['processes'], len(family))
            time.sleep(interval)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f'error: {" ".join(cmd[1:3])} ... exited {proc.returncode}:\n{log.read_text()[-2000:]}')
    return {'seconds': round(seconds, 2), **{k: round(v, 1) for k, v in peak.items()}}


# ---- the converter -------------------------------------------------------------------------------------

def convert(train_dir: Path, beton: Path, workers: int) -> dict:
    """write_imagenet.py as a user runs it; img/s from its own stats and from the command's wall time."""
    cmd = [sys.executable, str(ROOT / 'convert' / 'write_imagenet.py'), f'--cfg.data_dir={train_dir}',
           '--cfg.split=train', f'--cfg.write_path={beton}', f'--cfg.num_workers={workers}']
    run = watch(cmd, beton.with_suffix('.convert.log'))
    stats = json.loads(Path(f'{beton}.json').read_text())['stats']
    # img/s: the converter's own figure, from its first image to its last; the command also
    # starts Python, lists the folders (a cold directory cache costs most) and fsyncs the file.
    return {**run, 'images': stats['written'], 'img_s': stats['images_per_s'],
            'command_img_s': round(stats['written'] / run['seconds'], 1),
            'outside_s': round(run['seconds'] - stats['seconds'], 1), 'mb': round(stats['bytes'] / 1e6, 1)}


def verify(beton: Path, workers: int) -> dict:
    cmd = [sys.executable, str(ROOT / 'convert' / 'write_imagenet.py'), '--cfg.verify=1',
           f'--cfg.write_path={beton}', f'--cfg.num_workers={workers}']
    run = watch(cmd, beton.with_suffix('.verify.log'))
    n = json.loads(Path(f'{beton}.json').read_text())['num_samples']
    return {**run, 'img_s': round(n / run['seconds'], 1)}


def warm(path: Path) -> None:
    """Read the file once, so the loaders meet the page cache a converted file usually is in."""
    with open(path, 'rb') as f:
        while f.read(1 << 24):
            pass


# ---- a training process ----------------------------------------------------------------------------

def probe(kind: str, beton: Path, res: int, batch_size: int, batches: int, workers: int) -> dict:
    """One loader in this (fresh) process, built as the trainer builds it; -> its figures."""
    t = time.perf_counter()
    import torch

    from fastimagenet.common.classes import open_dataset
    from fastimagenet.train.loaders import BatchLoader, train_loader, val_loader
    imports_s = time.perf_counter() - t
    epoch_starts = []  # how long BatchLoader.__iter__ takes: the epoch's order and page schedule
    start_epoch = BatchLoader.__iter__

    def timed_start(self):
        t = time.perf_counter()
        epoch = start_epoch(self)
        epoch_starts.append(time.perf_counter() - t)
        return epoch
    BatchLoader.__iter__ = timed_start
    torch.set_num_threads(workers)  # as train/devices.py configure does
    cpu = torch.device('cpu')
    if kind == 'ddp_rank':
        # A process group of 8 in one process: collectives are no-ops, get_rank/get_world_size
        # are real, which is all ffcv's distributed order asks of it.
        import torch.distributed as dist
        from torch.testing._internal.distributed.fake_pg import FakeStore
        dist.init_process_group('fake', store=FakeStore(), rank=0, world_size=DDP_WORLD)
    before = rollup()

    t = time.perf_counter()
    dataset = open_dataset(str(beton), 'train')  # the trainer keeps it for the whole run
    open_s = time.perf_counter() - t
    t = time.perf_counter()
    if kind == 'val':
        loader = val_loader(beton, batch_size=batch_size, num_workers=workers, in_memory=1, res=res, device=cpu)
        batch_loader, start = loader, (lambda: None)
    else:
        data = train_loader(beton, batch_size=batch_size, num_workers=workers, in_memory=int(kind != 'train_quasi'),
                            res=res, seed=0, distributed=kind == 'ddp_rank', device=cpu)
        loader, batch_loader, start = data, data.loader, (lambda: data.start_epoch(0, res))
    loader_s = time.perf_counter() - t
    built = rollup()

    cached = cached_fraction(beton)
    t = time.perf_counter()
    start()
    batches_now = iter(loader)
    next(batches_now)
    first_s = time.perf_counter() - t
    touch_s = None
    if kind == 'train_touched':
        # Page tables belong to a mapping, so it must be the loader's own: one read per 4 KiB page
        # faults the whole file in (it is in the page cache already: minor faults, no disk).
        t = time.perf_counter()
        int(batch_loader._epoch.memory_context.mmap[::4096].sum())
        touch_s = time.perf_counter() - t
    steps = len(loader) - 1 if batches <= 0 else min(batches, len(loader) - 1)
    faults = page_faults()
    t = time.perf_counter()
    images = sum(len(next(batches_now)[0]) for _ in range(steps))
    steady_s = time.perf_counter() - t
    minor, major = (b - a for a, b in zip(faults, page_faults()))
    after = rollup()
    buffers = buffer_mb(batch_loader._buffers[1])
    context = batch_loader._epoch.memory_context
    cache = getattr(context, 'memory', None)  # the process cache's page slots (in_memory=0)
    cache_mb = cache.nbytes / 2 ** 20 if cache is not None else 0.0
    own = after['Anonymous'] - before['Anonymous']
    return {'kind': kind, 'samples': dataset.num_samples, 'batches': len(loader), 'imports_s': round(imports_s, 2),
            'open_dataset_s': round(open_s, 3), 'loader_s': round(loader_s, 3),
            'construction_s': round(open_s + loader_s, 3), 'epoch_start_s': round(epoch_starts[0], 3),
            'first_batch_s': round(first_s, 3), 'beton_cached': cached,
            'touch_s': round(touch_s, 2) if touch_s is not None else None,
            'steady_minor_faults_per_img': round(minor / images, 2) if steps else None, 'steady_major_faults': major,
            'steady_img_s': round(images / steady_s, 1) if steps else None,
            'steady_us_per_img': round(1e6 * steady_s / images, 2) if steps else None,
            'anon_built_mb': round(built['Anonymous'] - before['Anonymous'], 1),
            'anon_mb': round(own, 1), 'buffers_mb': round(buffers, 1), 'process_cache_mb': round(cache_mb, 1),
            'beyond_buffers_mb': round(own - buffers - cache_mb, 1),
            'beton_mapped_rss_mb': round(mapped_rss(beton), 1), 'rss_mb': round(after['Rss'], 1)}


def run_probe(kind: str, beton: Path, args) -> dict:
    proc = subprocess.run([sys.executable, __file__, '--probe', kind, '--beton', str(beton), '--res', str(args.res),
                           '--batch-size', str(args.batch_size), '--batches', str(args.batches),
                           '--workers', str(args.workers)], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f'error: the {kind} loader failed on {beton}:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- all together ----------------------------------------------------------------------------------------

def measure(n: int, args) -> dict:
    folder = args.data_dir / f'n{n}'
    t = time.perf_counter()
    train_dir = generate(folder, n, args.classes, args.seed, args.workers)
    generate_s = time.perf_counter() - t
    beton = folder / 'train.beton'
    result = {'n': n, 'generate_s': round(generate_s, 1), 'convert': convert(train_dir, beton, args.workers)}
    if args.verify:
        result['verify'] = verify(beton, args.workers)
    result['loaders'] = {}
    for kind in args.probes:
        warm(beton)  # again: the page cache may have dropped some of it (each miss costs ms)
        result['loaders'][kind] = run_probe(kind, beton, args)
    if not args.keep:
        shutil.rmtree(folder)
    return result


def growth(values: list[float | None]) -> float | None:
    """The cost at the largest N over that at the smallest (values in order of N): 1.0 is flat.
    Not max/min: a small N's fixed start-up costs spread over few images must not read as growth."""
    if len(values) < 2 or not values[0] or not values[-1]:
        return None
    return round(values[-1] / values[0], 3)


def summarize(results: list[dict]) -> dict:
    """Per-image costs across N and the goals at the largest N."""
    def us(rate):
        return 1e6 / rate if rate else None
    per_image = {'convert': growth([us(r['convert']['img_s']) for r in results])}
    if all('verify' in r for r in results):
        per_image['verify'] = growth([us(r['verify']['img_s']) for r in results])
    for kind in results[0]['loaders']:
        per_image[kind] = growth([r['loaders'][kind]['steady_us_per_img'] for r in results])
    largest = max(results, key=lambda r: r['n'])['loaders'].values()
    construction = max(p['construction_s'] for p in largest)
    memory = max(p['beyond_buffers_mb'] for p in largest)
    return {'per_image_growth': per_image,
            'flat': all(s is None or s <= FLAT for s in per_image.values()),
            'max_construction_s': construction, 'construction_ok': construction < MAX_CONSTRUCTION_S,
            'max_beyond_buffers_mb': memory, 'memory_ok': memory < MAX_MEMORY_MB}


def report(results: list[dict], summary: dict, args) -> None:
    print(f'\n{"N":>10s}{"convert":>9s}{"command":>9s}{"outside s":>10s}{"peak PSS":>9s}{"parent":>8s}'
          f'{"verify":>8s}{"peak PSS":>9s}   (img/s; MB: parent + workers, the parent\'s anonymous)')
    for r in results:
        c, v = r['convert'], r.get('verify', {})
        print(f'{r["n"]:10d}{c["img_s"]:9.0f}{c["command_img_s"]:9.0f}{c["outside_s"]:10.1f}{c["pss_mb"]:9.0f}'
              f'{c["parent_anon_mb"]:8.0f}{v.get("img_s", float("nan")):8.0f}{v.get("pss_mb", float("nan")):9.0f}')
    print(f'\n{"N":>10s} {"loader":14s}{"open s":>7s}{"Loader s":>9s}{"epoch s":>8s}{"1st s":>6s}{"img/s":>8s}'
          f'{"us/img":>7s}{"minflt":>7s}{"majflt":>7s}{"own MB":>7s}{"buffers":>8s}{"beyond":>7s}{"mapped":>7s}')
    for r in results:
        for kind, p in r['loaders'].items():
            print(f'{r["n"]:10d} {kind:14s}{p["open_dataset_s"]:7.2f}{p["loader_s"]:9.2f}{p["epoch_start_s"]:8.2f}'
                  f'{p["first_batch_s"]:6.2f}{p["steady_img_s"] or 0:8.0f}{p["steady_us_per_img"] or 0:7.1f}'
                  f'{p["steady_minor_faults_per_img"] or 0:7.2f}{p["steady_major_faults"]:7d}{p["anon_mb"]:7.0f}{p["buffers_mb"] + p["process_cache_mb"]:8.0f}'
                  f'{p["beyond_buffers_mb"]:7.0f}{p["beton_mapped_rss_mb"]:7.0f}')
    print('(open: open_dataset; epoch: BatchLoader.__iter__, the order and page schedule of an epoch; 1st: to '
          'the first batch, epoch included; minflt: page faults per image while steady, majflt: those that read '
          'the disk; MB: own = anonymous memory grown, buffers = batch buffers + '
          'process cache, beyond = own - buffers, mapped = file pages of the .beton in this process)')
    print(f'\nper-image cost, largest/smallest N: {summary["per_image_growth"]} (goal <= {FLAT}); '
          f'construction {summary["max_construction_s"]:.2f} s (goal < {MAX_CONSTRUCTION_S}); '
          f'memory beyond buffers {summary["max_beyond_buffers_mb"]:.0f} MB (goal < {MAX_MEMORY_MB}) at the largest N')
    print(json.dumps({'sizes': [r['n'] for r in results], 'workers': args.workers, 'res': args.res,
                      'batch_size': args.batch_size, 'results': results, **summary}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--sizes', default=f'40000,{IMAGENET_TRAIN}', help='sample counts, comma-separated')
    ap.add_argument('--classes', type=int, default=1000)
    ap.add_argument('--workers', type=int, default=os.cpu_count(), help='converter processes, decoding threads')
    ap.add_argument('--res', type=int, default=64, help='training/validation resolution')
    ap.add_argument('--batch-size', type=int, default=256)
    ap.add_argument('--batches', type=int, default=0,
                    help='batches timed per loader after the first (0: the rest of the epoch)')
    ap.add_argument('--probes', default=','.join(PROBES), help=f'loaders to build, of {",".join(PROBES)}')
    ap.add_argument('--no-verify', dest='verify', action='store_false', help='skip the converter\'s verify pass')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--data-dir', type=Path, default=ROOT / 'data' / 'scale', help='where images and .betons go')
    ap.add_argument('--keep', action='store_true', help='keep the generated images and .betons')
    ap.add_argument('--probe', choices=PROBES, help=argparse.SUPPRESS)  # internal: one loader, this process
    ap.add_argument('--beton', type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        print(json.dumps(probe(args.probe, args.beton, args.res, args.batch_size, args.batches, args.workers)))
        return
    try:
        sizes = sorted({int(s) for s in args.sizes.split(',')})
    except ValueError:
        sys.exit(f'error: --sizes must be comma-separated sample counts, got {args.sizes!r}')
    args.probes = [p for p in args.probes.split(',') if p]
    unknown = [p for p in args.probes if p not in PROBES]
    if unknown or not args.probes:
        sys.exit(f'error: --probes takes some of {",".join(PROBES)}, got {args.probes}')
    if min(sizes) < args.classes:
        sys.exit(f'error: every size must hold at least one image per class ({args.classes}), got {min(sizes)}')
    results = [measure(n, args) for n in sizes]
    if not args.keep and args.data_dir.is_dir() and not any(args.data_dir.iterdir()):
        args.data_dir.rmdir()  # only what this run made (its n<N> folders are gone already)
    report(results, summarize(results), args)


if __name__ == '__main__':
    main()
