"""A run folder: what it holds, and whether a command may resume it.

    params.json        the run's settings (and its classes)
    log.jsonl          one JSON object per epoch, rewritten atomically each epoch
    last.pt, best.pt   checkpoints (see checkpoints.py)
    final_weights.pt   the final model's state_dict
    eval.jsonl         results of training.eval_only=1
    tensorboard/       with logging.tensorboard=1

Running the same command again resumes from last.pt. A folder holding a run with other
settings is refused, so an unrelated run is never overwritten; settings that do not
change the result (paths, worker counts, ports) may differ.
"""
from __future__ import annotations

import json
from pathlib import Path

from fastimagenet.common.atomic import write_json_atomic, write_text_atomic
from fastimagenet.common.cli import fail

from .config import RESUMABLE_CHANGES

PARAMS, LOG, EVAL = 'params.json', 'log.jsonl', 'eval.jsonl'
LAST, BEST, FINAL = 'last.pt', 'best.pt', 'final_weights.pt'


def result_settings(params: dict) -> dict:
    return {k: v for k, v in params.items() if '.' in k and k not in RESUMABLE_CHANGES}


class RunFolder:
    def __init__(self, folder: str):
        self.path = Path(folder).expanduser()

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def claim(self, params: dict) -> None:
        """Create the folder for `params`, or check that the run already in it has the same settings."""
        existing = self / PARAMS
        if existing.exists():
            try:
                old = json.loads(existing.read_text())
            except ValueError:
                fail(f'{existing} is unreadable; move the folder away or pick another logging.folder')
            mine, theirs = result_settings(params), result_settings(old)
            diff = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            if diff:
                k = diff[0]
                fail(f'{self.path} holds a run with {k}={theirs.get(k)!r}, this command has {mine.get(k)!r} '
                     f'({len(diff)} setting(s) differ); use another logging.folder, or the same settings to resume')
        elif self.path.exists() and any(self.path.glob('*.pt')):
            fail(f'{self.path} holds checkpoints but no params.json; use another logging.folder')
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(existing, params)

    def read_log(self, before_epoch: int | None = None) -> list[dict]:
        """The per-epoch records; with `before_epoch`, only those of epochs already checkpointed."""
        path = self / LOG
        if not path.exists():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a foreign edit; the log itself is always rewritten whole
        if before_epoch is not None:
            records = [r for r in records if r.get('epoch', 0) < before_epoch]
        return records

    def write_log(self, records: list[dict]) -> None:
        write_text_atomic(self / LOG, ''.join(json.dumps(r) + '\n' for r in records))

    def append_eval(self, record: dict) -> None:
        path = self / EVAL
        old = path.read_text() if path.exists() else ''
        write_text_atomic(path, old + json.dumps(record) + '\n')
