"""The GPU check: everything that matters on a CUDA machine, in one command, in under 8 minutes on one GPU.

    python bench/gpu_check.py [--work DIR] [--skip-tests] [--skip-throughput] [--images 6400]
    make gpu-check                             a connected machine (sets up .venv first)
    python3 BUNDLE/build_and_check.py          an air-gapped node (builds from `make gpu-bundle`'s folder first)

Prints as it goes, then one JSON object as its last line:

  tests     pytest -m cuda tests/test_cuda.py (bf16, fp16 with a GradScaler, channels_last,
            compile, kill -9 and resume, eval_only and analysis/errors.py against the log, the
            loader's kept buffers under CUDA streams, NCCL with 2 GPUs): counts, and what did not pass
  ceiling   ResNet-50D (train/model.py, 1000 classes) at 160 and 192 px, bf16 autocast,
            channels_last: forward, backward and SGD step on a synthetic batch already on the GPU,
            after warm-up, synchronised (bench/train_step.py), with cuDNN autotuning as the trainer has it
  trainer   train/train_imagenet.py's logged train img/s, same model, precision and batch, on a
            .beton of the built-in sample at ImageNet's stored size (its images are 300-500 px;
            max side 500, half JPEG, as ffcv-imagenet's ResNet-50 files): 160 px epochs, then
            192 px; the first epoch at each resolution (autotuning, new buffers) is left out.
            Once with the fast decoder, once with --data.decoder=stock
  ratios    trainer / ceiling per decoder and resolution, fast / stock
  machine   GPUs, CUDA, cuDNN, NCCL, driver, torch, CPU cores; anchors: the public figures beside ours

The sample is generated and converted in the background (niced) while the tests run. Without
CUDA it says so in one line and exits 0. Exit status 1 if a test failed or a measurement did not
finish; the JSON line is printed either way.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESOLUTIONS = (160, 192)
ANCHORS = [
    {'what': 'ffcv-imagenet ResNet-50 at 160 px', 'img_s': 3500, 'per': 'A100',
     'source': "its 16-epoch 8xA100 run's published logs, validation included"},
    {'what': 'ffcv-imagenet ResNet-50 at 192 px', 'img_s': 2600, 'per': 'A100',
     'source': "its 16-epoch 8xA100 run's published logs, validation included"},
    {'what': 'timm ResNet-50 at 224 px', 'img_s': 2600, 'per': 'A100', 'source': "timm's benchmark, AMP, channels_last"},
    {'what': 'NVIDIA MLPerf ResNet-50', 'img_s': 7900, 'per': 'H200',
     'source': 'MLPerf v4.0, 8xH200, MXNet + DALI + CUDA graphs'},
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--work', help='scratch folder (default: a temporary one, removed after)')
    ap.add_argument('--skip-tests', action='store_true')
    ap.add_argument('--skip-throughput', action='store_true')
    ap.add_argument('--images', type=int, default=6400, help='training images of the throughput .beton (default 6400)')
    ap.add_argument('--batch-size', type=int, default=256, help='per-step batch of the ceiling and the trainer (default 256)')
    ap.add_argument('--epochs-per-res', type=int, default=4, help='trainer epochs at each resolution (default 4)')
    ap.add_argument('--tests-timeout', type=float, default=330, help='seconds for the whole CUDA test run')
    ap.add_argument('--setup', default='{}', help='JSON about how this was set up (build_and_check.py passes it)')
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        build = f'built for CUDA {torch.version.cuda}' if torch.version.cuda else 'a CPU-only build'
        print(f'no CUDA GPU here (torch {torch.__version__}, {build}): the GPU check has nothing to run')
        return 0

    start = time.time()
    work = Path(args.work or tempfile.mkdtemp(prefix='gpu-check-')).resolve()
    work.mkdir(parents=True, exist_ok=True)
    summary = {'machine': machine(torch), 'setup': json.loads(args.setup)}
    half = 'bf16' if torch.cuda.get_device_capability(0) >= (8, 0) else 'fp16'  # bf16 is emulated before Ampere
    print(f'GPU check on {describe(summary["machine"])}; scratch {work}', flush=True)
    ok = True
    try:
        prepare = None if args.skip_throughput else prepare_sample(work, args.images)
        if not args.skip_tests:
            summary['tests'] = run_tests(work, args.tests_timeout)
            ok &= summary['tests'].get('failed', 1) == 0 and summary['tests'].get('errors', 1) == 0
        if not args.skip_throughput:
            summary['throughput'] = {'model': 'resnet50d', 'precision': half, 'channels_last': True,
                                     'batch_size': args.batch_size, 'device': 'cuda:0'}
            summary['ceiling'] = ceiling(torch, args.batch_size, half)
            summary['sample'] = finish_preparing(prepare)
            summary['trainer'] = {}
            if 'error' not in summary['sample']:
                for decoder in ('fast', 'stock'):
                    summary['trainer'][decoder] = trainer_throughput(work, decoder, args.batch_size,
                                                                     args.epochs_per_res, half)
            summary['ratios'] = ratios(summary['ceiling'], summary['trainer'])
            ok &= all('error' not in v for v in (summary['ceiling'], summary['sample'], *summary['trainer'].values()))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    summary['anchors'] = ANCHORS
    summary['elapsed_s'] = round(time.time() - start, 1)
    summary['ok'] = bool(ok)
    report(summary)
    print(json.dumps(summary))
    return 0 if ok else 1


# ---- the machine -------------------------------------------------------------------------------

def machine(torch) -> dict:
    props = torch.cuda.get_device_properties(0)
    nccl = None
    try:
        v = torch.cuda.nccl.version()
        nccl = '.'.join(map(str, v)) if isinstance(v, tuple) else str(v)
    except Exception:
        pass
    cpu = platform.processor()
    if os.path.exists('/proc/cpuinfo'):
        cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), cpu)
    return {'gpus': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            'gpu_count': torch.cuda.device_count(), 'gpu_memory_gib': round(props.total_memory / 2**30, 1),
            'compute_capability': f'{props.major}.{props.minor}', 'driver': driver_version(),
            'torch': torch.__version__, 'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(),
            'nccl': nccl, 'python': platform.python_version(), 'cpu': cpu, 'cpu_cores': os.cpu_count(),
            # a batch scheduler may give this process fewer cores than the machine has
            'cpu_cores_usable': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}


def driver_version() -> str | None:
    if not shutil.which('nvidia-smi'):
        return None
    try:
        out = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                             capture_output=True, text=True, timeout=20).stdout.split()
        return out[0] if out else None
    except (subprocess.TimeoutExpired, OSError):
        return None


def describe(m: dict) -> str:
    gpus = f'{m["gpu_count"]}x {m["gpus"][0]}' if m['gpu_count'] > 1 else m['gpus'][0]
    return (f'{gpus} ({m["gpu_memory_gib"]} GiB, sm {m["compute_capability"]}), torch {m["torch"]}, CUDA {m["cuda"]}, '
            f'cuDNN {m["cudnn"]}, {m["cpu_cores_usable"]}/{m["cpu_cores"]} CPU cores')


# ---- the tests ---------------------------------------------------------------------------------

def run_tests(work: Path, timeout: float) -> dict:
    """The CUDA-marked tests, in their own process group (their trainers and torchrun's workers
    too); their output streams through. Counts from pytest's JUnit report."""
    junit = work / 'cuda-tests.xml'
    junit.unlink(missing_ok=True)
    command = [sys.executable, '-m', 'pytest', '-v', '-m', 'cuda', '--durations=0', '-p', 'no:cacheprovider',
               f'--junitxml={junit}', 'tests/test_cuda.py']
    print(f'$ {shlex.join(command)}', flush=True)
    t = time.time()
    proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        rc, timed_out = proc.wait(), True
    result = {'exit': rc, 'seconds': round(time.time() - t, 1)}
    if timed_out:
        result.update(error=f'timed out after {timeout:.0f} s', failed=1)
    if not junit.exists():
        return {**result, 'error': result.get('error', f'pytest wrote no report (exit {rc})'), 'failed': 1}
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
    counts = {k: int(suite.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped')}
    cases = {'failed': [], 'skipped': []}
    for case in suite.iter('testcase'):
        name = case.get('name')
        if case.find('failure') is not None or case.find('error') is not None:
            cases['failed'].append(name)
        elif (skip := case.find('skipped')) is not None:
            cases['skipped'].append(f'{name}: {skip.get("message", "")}')
    return {**result, 'passed': counts['tests'] - counts['failures'] - counts['errors'] - counts['skipped'],
            'failed': counts['failures'] + (1 if timed_out else 0), 'errors': counts['errors'],
            'skipped': counts['skipped'], 'not_passed': cases['failed'], 'skip_reasons': cases['skipped']}


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and all its descendants, wherever their sessions are (torchrun's workers
    start sessions of their own, so killing a process group would leave them on the GPU)."""
    import psutil
    try:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=60)


# ---- throughput --------------------------------------------------------------------------------

def ceiling(torch, batch: int, precision: str) -> dict:
    from fastimagenet.bench.train_step import images_per_second
    torch.backends.cudnn.benchmark = True  # as the trainer runs (train/devices.py)
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]
    out = {}
    for res in RESOLUTIONS:
        t = time.time()
        try:
            out[res] = round(images_per_second('resnet50d', res, batch, 40, torch.device('cuda'), dtype), 1)
        except torch.cuda.OutOfMemoryError:
            out['error'] = f'out of memory at batch {batch}, {res} px: pass a smaller --batch-size'
            break
        finally:
            torch.cuda.empty_cache()
        print(f'ceiling  {res} px: {out[res]:8.0f} img/s ({time.time() - t:.0f} s)', flush=True)
    return out


def prepare_sample(work: Path, images: int) -> dict:
    """Start generating and converting the throughput sample in the background."""
    images_dir, betons = work / 'sample', work / 'sample_ffcv'
    per_class = max(1, images // 10)  # the sample has 10 classes
    commands = [[sys.executable, 'convert/make_sample.py', '--out', str(images_dir), '--train-per-class', str(per_class),
                 '--val-per-class', '10'],
                [sys.executable, 'convert/write_imagenet.py', f'--cfg.data_dir={images_dir}', f'--cfg.write_path={betons}/',
                 '--cfg.max_resolution=500', '--cfg.write_mode=proportion', '--cfg.compress_probability=0.5',
                 '--cfg.jpeg_quality=90']]
    line = ' && '.join(map(shlex.join, commands))
    nice = ['nice', '-n', '10'] if shutil.which('nice') else []  # the tests come first
    log = open(work / 'sample.log', 'w')
    proc = subprocess.Popen([*nice, 'sh', '-c', line], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return {'proc': proc, 'log': log, 'start': time.time(), 'train': betons / 'train.beton',
            'val': betons / 'val.beton', 'images': per_class * 10}


def finish_preparing(prep: dict, timeout: float = 300) -> dict:
    try:
        rc = prep['proc'].wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(prep['proc'].pid)
        rc = 'timeout'
    prep['log'].close()
    seconds = round(time.time() - prep['start'], 1)
    if rc != 0:
        tail = Path(prep['log'].name).read_text().splitlines()[-3:]
        return {'error': f'making the sample failed ({rc}): {" | ".join(tail)}', 'seconds': seconds}
    size = prep['train'].stat().st_size
    print(f'sample: {prep["images"]} train images, {size / 2**30:.2f} GiB .beton ({seconds:.0f} s, in the background)',
          flush=True)
    prep.update(seconds=seconds)
    return {'train_images': prep['images'], 'train_beton_gib': round(size / 2**30, 2), 'seconds': seconds,
            'train': str(prep['train']), 'val': str(prep['val'])}


def trainer_throughput(work: Path, decoder: str, batch: int, epochs_per_res: int, precision: str,
                       timeout: float = 240) -> dict:
    """Train img/s as the trainer logs it, per resolution (steady epochs: all but the first at each)."""
    run = work / f'run_{decoder}'
    shutil.rmtree(run, ignore_errors=True)
    betons = work / 'sample_ffcv'
    command = [sys.executable, 'train/train_imagenet.py', '--model.arch=resnet50d', '--training.use_blurpool=0',
               '--training.ema=0', f'--training.precision={precision}', '--training.channels_last=1',
               '--training.compile=0', f'--training.batch_size={batch}', f'--training.epochs={2 * epochs_per_res}',
               f'--resolution.min_res={RESOLUTIONS[0]}', f'--resolution.max_res={RESOLUTIONS[1]}',
               f'--resolution.start_ramp={epochs_per_res - 1}', f'--resolution.end_ramp={epochs_per_res}',
               '--lr.lr=0.1', '--lr.lr_peak_epoch=1', '--logging.log_level=0', '--validation.resolution=192', '--validation.batch_size=100',
               f'--data.decoder={decoder}', '--data.num_workers=0', '--data.in_memory=1',
               f'--data.train_dataset={betons / "train.beton"}', f'--data.val_dataset={betons / "val.beton"}',
               f'--logging.folder={run}']
    t = time.time()
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {'error': f'timed out after {timeout:.0f} s', 'command': shlex.join(command)}
    wall = round(time.time() - t, 1)
    if proc.returncode:
        errors = [l for l in proc.stderr.splitlines() if l.strip()]
        return {'error': f'exit {proc.returncode}: {errors[-1] if errors else "no output"}', 'wall_s': wall,
                'command': shlex.join(command)}
    log = [json.loads(l) for l in (run / 'log.jsonl').read_text().splitlines()]
    out = {'wall_s': wall, 'epochs': [{'res': r['res'], 'img_s': r['train_imgs_per_s']} for r in log]}
    for res in RESOLUTIONS:
        rates = [r['train_imgs_per_s'] for r in log if r['res'] == res]
        if rates:
            out[res] = round(statistics.median(rates[1:] or rates), 1)
            print(f'trainer  {res} px, {decoder:5s} decoder: {out[res]:8.0f} img/s '
                  f'(epochs: {", ".join(f"{x:.0f}" for x in rates)})', flush=True)
    return out


def ratios(ceil: dict, trainer: dict) -> dict:
    out = {}
    for res in RESOLUTIONS:
        for decoder, figures in trainer.items():
            if res in figures and res in ceil:
                out[f'{decoder}_vs_ceiling_{res}'] = round(figures[res] / ceil[res], 3)
        if all(res in trainer.get(d, {}) for d in ('fast', 'stock')):
            out[f'fast_vs_stock_{res}'] = round(trainer['fast'][res] / trainer['stock'][res], 3)
    return out


def report(s: dict) -> None:
    """The figures as a table, the anchors beside them."""
    print()
    if 'tests' in s:
        t = s['tests']
        print(f'CUDA tests: {t.get("passed", 0)} passed, {t.get("failed", 0)} failed, {t.get("errors", 0)} errors, '
              f'{t.get("skipped", 0)} skipped in {t["seconds"]:.0f} s' + (f'; {t["error"]}' if 'error' in t else ''))
        for name in t.get('not_passed', []):
            print(f'  did not pass: {name}')
    if 'ceiling' in s:
        th, c, tr, r = s['throughput'], s['ceiling'], s['trainer'], s['ratios']
        print(f'throughput, img/s: ResNet-50D, {th["precision"]}, channels_last, batch {th["batch_size"]}, one GPU '
              f'({s["machine"]["gpus"][0]})')
        print(f'  {"":7s}{"ceiling":>9s}{"fast":>9s}{"stock":>9s}{"fast/ceil":>11s}{"stock/ceil":>11s}{"fast/stock":>11s}')
        for i, res in enumerate(RESOLUTIONS):
            cells = [c.get(res), tr.get('fast', {}).get(res), tr.get('stock', {}).get(res)]
            ratio = [r.get(f'fast_vs_ceiling_{res}'), r.get(f'stock_vs_ceiling_{res}'), r.get(f'fast_vs_stock_{res}')]
            print(f'  {res} px' + ''.join(f'{x:9.0f}' if x else f'{"-":>9s}' for x in cells)
                  + ''.join(f'{x:11.2f}' if x else f'{"-":>11s}' for x in ratio)
                  + f'   anchor: {ANCHORS[i]["what"]} ~{ANCHORS[i]["img_s"]} per {ANCHORS[i]["per"]}')
        for part in (c, s.get('sample', {}), *tr.values()):
            if 'error' in part:
                print(f'  error: {part["error"]}')
        for a in ANCHORS[2:]:
            print(f'  anchor: {a["what"]} ~{a["img_s"]} img/s per {a["per"]} ({a["source"]})')
    print(f'done in {s["elapsed_s"]:.0f} s' + (f' (+{s["setup"]["setup_s"]:.0f} s building)' if 'setup_s' in s['setup'] else ''))


if __name__ == '__main__':
    sys.exit(main())
