"""A run folder: what it holds, and whether a command may use it.

    params.json        the run's settings (and its classes), with the history of deliberate changes
    log.jsonl          one JSON object per epoch, rewritten atomically each epoch
    last.pt, best.pt   checkpoints (see checkpoints.py)
    epoch_0052.pt      a periodic checkpoint (logging.checkpoint_every), after 52 epochs
    final_weights.pt   the final model's state_dict
    eval.jsonl         results of training.eval_only=1
    tensorboard/       with logging.tensorboard=1

Running the same command again resumes from last.pt. A folder holding a run with other
settings is refused, so an unrelated run is never overwritten; settings that do not change
the result (paths, worker counts, ports) may differ. A deliberate change
(training.resume_with_changes=1) continues the run with the new settings and records in
params.json from which epoch they hold; what defines the model and the data's classes can
never change.

This module is the one home of these names and rules: the trainer, the sweep
(train/sweep.py) and the reports (analysis/runlogs.py) all read them from here. It imports
neither torch nor the config, so reports stay fast.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from fastimagenet.common.atomic import write_json_atomic, write_text_atomic
from fastimagenet.common.cli import fail

PARAMS, LOG, EVAL = 'params.json', 'log.jsonl', 'eval.jsonl'
LAST, BEST, FINAL = 'last.pt', 'best.pt', 'final_weights.pt'
TENSORBOARD = 'tensorboard'
PERIODIC = re.compile(r'epoch_(\d{4,})\.pt')
CHECKPOINTS = (LAST, BEST, FINAL)
MARKERS = (PARAMS, LOG, *CHECKPOINTS)  # any of them makes a folder a run folder
# What a mirror of the folder copies (train/mirror.py); periodic checkpoints and tensorboard/ too.
MIRRORED = (PARAMS, LOG, EVAL, LAST, BEST, FINAL)
CHANGE_FLAG = 'training.resume_with_changes'


def periodic_name(epochs_done: int) -> str:
    return f'epoch_{epochs_done:04d}.pt'


# Settings that may change between a run and its resumption without changing its result:
# a reclaimed instance comes back with new mounts, another worker count, another port.
RESUMABLE_CHANGES = {
    'data.train_dataset', 'data.val_dataset', 'data.num_workers', 'data.in_memory', 'data.gpu',
    'logging.folder', 'logging.tensorboard', 'logging.log_level', 'logging.progress_every',
    'logging.mirror', 'logging.mirror_endpoint', 'validation.batch_size',
    'training.eval_only', 'training.checkpoint', 'training.compile', CHANGE_FLAG,
    'dist.address', 'dist.port',
}
# Settings no run can change, not even deliberately: they define the model and its classes.
FIXED = ('model.arch', 'model.pretrained', 'training.use_blurpool', 'dataset.num_classes', 'classes')
# Facts the trainer derives and records (not command-line keys): compared only when both sides
# know them, so a sweep can check a folder with the settings it will pass.
DERIVED_PREFIX = 'dataset.'


def result_settings(params: dict) -> dict:
    """The settings that make a run what it is (flat `section.key`s, minus those free to change)."""
    return {k: v for k, v in params.items() if '.' in k and k not in RESUMABLE_CHANGES}


def differing_settings(mine: dict, theirs: dict) -> list[str]:
    """The keys whose values would make `theirs` (a folder's run) another run than `mine`, sorted."""
    a, b = result_settings(mine), result_settings(theirs)
    keys = a.keys() | b.keys()
    return sorted(k for k in keys if a.get(k) != b.get(k)
                  and not (k.startswith(DERIVED_PREFIX) and (k not in a or k not in b)))


def describe_difference(where, diff: list[str], mine: dict, theirs: dict, who: str = 'this command') -> str:
    """'<where> holds a run with lr.lr=0.5, this command has 1.7 (2 setting(s) differ)', naming a
    setting that can never change first."""
    key = next((k for k in diff if k in FIXED), diff[0])
    return (f'{where} holds a run with {key}={_short(theirs.get(key))}, {who} has {_short(mine.get(key))} '
            f'({len(diff)} setting(s) differ)')


class RunFolder:
    def __init__(self, folder: str):
        self.path = Path(folder).expanduser()

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def read_params(self) -> dict | None:
        existing = self / PARAMS
        if not existing.exists():
            return None
        try:
            return json.loads(existing.read_text())
        except ValueError:
            fail(f'{existing} is unreadable; move the folder away or pick another logging.folder')

    def claim(self, params: dict, allow_changes: bool = False) -> dict:
        """Check that this command may use the folder; returns the changes it brings
        ({key: (old, new)}, empty unless `allow_changes`). Creates the folder for a new run;
        params.json is written by `record` once the epoch the settings hold from is known."""
        old = self.read_params()
        if old is None:
            if self.path.exists() and any(self.path.glob('*.pt')):
                fail(f'{self.path} holds checkpoints but no {PARAMS}; use another logging.folder')
            self.path.mkdir(parents=True, exist_ok=True)
            return {}
        diff = differing_settings(params, old)
        if not diff:
            return {}
        mine, theirs = result_settings(params), result_settings(old)
        what = describe_difference(self.path, diff, mine, theirs)
        fixed = [k for k in diff if k in FIXED]
        if fixed:
            fail(f'{what}; {fixed[0]} cannot change within a run, not even with --{CHANGE_FLAG}=1: '
                 f'use another logging.folder')
        if not allow_changes:
            fail(f'{what}; use another logging.folder, the same settings to resume, or '
                 f'--{CHANGE_FLAG}=1 to continue this run from its last checkpoint with the new settings')
        return {k: (theirs.get(k), mine.get(k)) for k in diff}

    def record(self, params: dict, changes: dict, from_epoch: int) -> dict:
        """Write params.json: this command's settings, and the run's history with `changes`
        (from `claim`) holding from `from_epoch`. Returns what was written."""
        old = self.read_params() or {}
        history = list(old.get('history') or [{'from_epoch': 0, 'timestamp': time.time()}])
        if changes:
            history.append({'from_epoch': from_epoch, 'timestamp': time.time(),
                            'changes': {k: [a, b] for k, (a, b) in changes.items()}})
        written = {**params, 'history': history}
        write_json_atomic(self / PARAMS, written)
        return written

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

    def periodic_checkpoints(self) -> list[Path]:
        """epoch_NNNN.pt files, oldest first."""
        found = [(int(m.group(1)), p) for p in self.path.glob('epoch_*.pt') if (m := PERIODIC.fullmatch(p.name))]
        return [p for _, p in sorted(found)]


def segments(params: dict) -> list[dict]:
    """The run's history: [{'from_epoch': 0, ...}, {'from_epoch': 20, 'changes': {key: [old, new]}}, ...]."""
    history = params.get('history')
    return history if isinstance(history, list) and history else [{'from_epoch': 0}]


def segment_of(params: dict, epoch: int) -> int:
    """Index of the history segment whose settings held in `epoch` (0-based)."""
    index = 0
    for i, segment in enumerate(segments(params)):
        if isinstance(segment.get('from_epoch'), int) and segment['from_epoch'] <= epoch:
            index = i
    return index


def settings_at(params: dict, epoch: int) -> dict:
    """The settings in force in `epoch`: params.json's (the newest) with later changes undone."""
    settings = dict(params)
    history = segments(params)
    for segment in reversed(history[segment_of(params, epoch) + 1:]):
        for key, change in (segment.get('changes') or {}).items():
            settings[key] = change[0]
    return settings


def _short(value) -> str:
    text = repr(value) if not isinstance(value, list) else f'[{len(value)} entries]'  # e.g. classes
    return text if len(text) <= 60 else text[:57] + '...'
