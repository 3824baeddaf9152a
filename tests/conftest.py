"""Shared helpers: small generated datasets, and running the project's scripts as a user would."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
WNIDS = ['n01440764', 'n01443537', 'n01484850', 'n01491361']


def script(*args: str, timeout: float = 600, env: dict | None = None, check: bool = True,
           cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python <args>` from the repository root; fail the test with its output if it fails."""
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        pytest.fail(f'{" ".join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one-line error a command printed (and exited 2 with)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    return lines[0]


def photo(seed: int, size=(160, 120)) -> Image.Image:
    """A small structured RGB picture (gradient, a shape) whose content depends on `seed`."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(0, 1, w)[None, :, None] * rng.uniform(50, 200, 3) + rng.uniform(0, 55, 3)
    img = Image.fromarray(np.broadcast_to(base, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    x, y = rng.integers(0, w // 2), rng.integers(0, h // 2)
    draw.ellipse([x, y, x + w // 3, y + h // 3], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


def write_class_folders(split_dir: Path, per_class: dict[str, int], seed: int = 0, size=(160, 120)) -> None:
    for c, (wnid, count) in enumerate(per_class.items()):
        folder = split_dir / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            photo(seed * 100000 + c * 1000 + i, size).save(folder / f'{wnid}_{i}.JPEG', quality=90)


# The trainer's tests: 4 classes (textures and a circle: learnable in a few dozen steps), 40
# images/class for training, 31 val images (odd: divides neither by 2 processes nor by the batch).
SAMPLE_CLASSES = ['circle', 'stripes', 'checkerboard', 'dots']


@pytest.fixture(scope='session')
def betons(tmp_path_factory) -> dict[str, Path]:
    """The built-in sample (4 classes), converted; shared by every test that trains."""
    from fastimagenet.convert.make_sample import write_sample
    root = tmp_path_factory.mktemp('sample')
    write_sample(root / 'images', train_per_class=40, val_per_class=8, seed=0, classes=SAMPLE_CLASSES)
    next((root / 'images' / 'val').glob('*/*_7.JPEG')).unlink()  # an odd count
    script('convert/write_imagenet.py', f'--cfg.data_dir={root / "images"}', f'--cfg.write_path={root}/',
           '--cfg.max_resolution=96', '--cfg.num_workers=2')
    return {'train': root / 'train.beton', 'val': root / 'val.beton', 'images': root / 'images'}


@pytest.fixture
def imagefolder(tmp_path) -> Path:
    """root/{train,val}/<wnid>/*.JPEG with 4 classes; val lacks the last class."""
    root = tmp_path / 'imagenet'
    write_class_folders(root / 'train', {w: 6 for w in WNIDS}, seed=1)
    write_class_folders(root / 'val', {w: 3 for w in WNIDS[:3]}, seed=2)
    return root


@contextlib.contextmanager
def sigint_as_on_a_terminal():
    """Children started inside get SIGINT at its default, so their Python turns Ctrl-C into
    KeyboardInterrupt. A suite started in the background (`make test &`, a CI job run by a
    non-interactive shell) inherits SIGINT ignored; Python then leaves it ignored, and its children
    too, so a test's Ctrl-C would reach nothing (a converter hung 300 s on it in such a run)."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield  # a handler or the default: exec resets a handler to the default anyway
        return
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_until_fault(args: list, point: str, folder: Path, timeout: float = 600,
                      env: dict | None = None) -> subprocess.Popen:
    """Start `python <args>` (in a session of its own) with the fault `point` (common/faults.py: e.g.
    'train.epoch_saved:1') and return once it reports it is stopped there: a kill now is at a known
    place. The process gets `.fault_pid` (the process stopped there: a worker, maybe) and its output
    goes to files in `folder` (a full pipe would stall it before the point); `finish` collects it."""
    stem = f'fault-{point}-{time.time_ns()}'.replace('.', '-').replace(':', '-').replace('=', '-')
    mark, out_path, err_path = (folder / f'{stem}{suffix}' for suffix in ('.txt', '.out', '.err'))
    with open(out_path, 'w') as out, open(err_path, 'w') as err, sigint_as_on_a_terminal():
        proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=out, stderr=err,
                                start_new_session=True, env={**os.environ, **(env or {}), 'FASTIMAGENET_FAULT': point,
                                                             'FASTIMAGENET_FAULT_FILE': str(mark)})
    proc.outputs = (out_path, err_path)
    deadline = time.time() + timeout
    while not (mark.exists() and mark.read_text().endswith('\n')):
        if proc.poll() is not None or time.time() > deadline:
            kill_tree(proc)
            pytest.fail(f'{args[0]} never reached {point} (exit {proc.returncode}):\n{err_path.read_text()[-3000:]}')
        time.sleep(0.05)
    proc.fault_pid = int(re.search(r'\(pid (\d+)\)', mark.read_text()).group(1))
    return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    """Wait for a process started by start_until_fault to end (a hang fails the test) and collect its output.

    The default wait is long on purpose: on a starved machine (this suite beside other work, a
    low-priority CI job) a healthy process's clean exit has taken over 60 s; a real hang still fails."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        pytest.fail(f'still running {timeout} s on:\n{proc.outputs[1].read_text()[-2000:]}')
    out, err = (p.read_text() for p in proc.outputs)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process and all its descendants, wherever their sessions are (torchrun starts
    its workers in sessions of their own: killing its process group would leave them running)."""
    import psutil
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(family, timeout=60)
