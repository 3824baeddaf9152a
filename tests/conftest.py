"""Shared helpers: small generated datasets, and running the project's scripts as a user would."""
from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.fixture
def imagefolder(tmp_path) -> Path:
    """root/{train,val}/<wnid>/*.JPEG with 4 classes; val lacks the last class."""
    root = tmp_path / 'imagenet'
    write_class_folders(root / 'train', {w: 6 for w in WNIDS}, seed=1)
    write_class_folders(root / 'val', {w: 3 for w in WNIDS[:3]}, seed=2)
    return root
