"""Reading run folders for reports: whatever state they are in, never raising on their content.

A run folder is what the trainer writes; its file names are train/runs.py's: params.json
and log.jsonl beside checkpoints. Reports read folders copied off clusters, runs still going,
logs someone edited: every problem found becomes one line in `RunLog.problems` and the run
is marked partial, with what could be read. Only a path that is no run folder at all is an
error. Reading never imports torch, so checking a sweep's folders stays instant.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fastimagenet.common.cli import fail
from fastimagenet.train.runs import LOG, MARKERS, PARAMS


@dataclass
class RunLog:
    path: Path
    params: dict = field(default_factory=dict)   # {} when params.json is missing or unreadable
    records: list[dict] = field(default_factory=list)  # one per epoch, sorted by epoch
    problems: list[str] = field(default_factory=list)

    @property
    def budget(self) -> int | None:
        """training.epochs, when params.json says it."""
        value = self.params.get('training.epochs')
        return value if isinstance(value, int) and value > 0 else None

    @property
    def epochs_done(self) -> int:
        return len(self.records)

    @property
    def complete(self) -> bool:
        """Every epoch of the budget logged, the last one validated, nothing wrong on the way."""
        return (not self.problems and self.budget is not None
                and [r['epoch'] for r in self.records] == list(range(self.budget))
                and 'top_1' in self.records[-1])


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in MARKERS)


def read_run(path: str | Path) -> RunLog:
    path = Path(path)
    if not is_run_folder(path):
        fail(f'{path} is not a run folder (none of {", ".join(MARKERS)} in it)')
    run = RunLog(path)
    run.params = _read_params(path / PARAMS, run.problems)
    run.records = _read_records(path / LOG, run.problems)
    _check_progress(run)
    return run


def _read_params(path: Path, problems: list[str]) -> dict:
    if not path.exists():
        problems.append(f'no {PARAMS}: budget, architecture and hardware unknown')
        return {}
    try:
        params = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        problems.append(f'{PARAMS} is unreadable ({str(e).splitlines()[0][:80]})')
        return {}
    if not isinstance(params, dict):
        problems.append(f'{PARAMS} holds no mapping of settings')
        return {}
    return params


def _read_records(path: Path, problems: list[str]) -> list[dict]:
    if not path.exists():
        problems.append(f'no {LOG}: no epoch finished yet')
        return []
    try:
        text = path.read_text(errors='replace')
    except OSError as e:
        problems.append(f'{LOG} is unreadable ({e.strerror})')
        return []
    if not text.strip():
        problems.append(f'{LOG} is empty: no epoch finished yet')
        return []
    lines = text.splitlines()
    by_epoch: dict[int, dict] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = _parse_record(line)
        if record is None:
            # The trainer rewrites the log whole and atomically, so a cut line comes from a copy
            # taken mid-write (rsync of a live run) or a full disk; anything else is foreign.
            cut = number == len(lines) and not text.endswith('\n')
            problems.append(f'{LOG} line {number} is ' + ('cut short' if cut else 'not an epoch record')
                            + ' (ignored)')
            continue
        if record['epoch'] in by_epoch:
            problems.append(f'{LOG} has two records of epoch {record["epoch"]} (kept the later one)')
        by_epoch[record['epoch']] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def _parse_record(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get('epoch'), int) or record['epoch'] < 0:
        return None
    return record


def _check_progress(run: RunLog) -> None:
    epochs = [r['epoch'] for r in run.records]
    missing = sorted(set(range(max(epochs) + 1)) - set(epochs)) if epochs else []
    if missing:
        run.problems.append(f'{LOG} lacks the records of epoch {_ranges(missing)} (0-based)')
    budget = run.budget
    if budget is None:
        return
    if run.records and len(run.records) < budget:
        run.problems.append(f'{len(run.records)} of {budget} epochs logged (still running, or interrupted)')
    elif len(run.records) > budget:
        run.problems.append(f'{len(run.records)} epochs logged but training.epochs is {budget}')
    elif run.records and 'top_1' not in run.records[-1]:
        run.problems.append('the last epoch has no validation result')


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'"""
    spans, start = [], numbers[0]
    for prev, cur in zip(numbers, numbers[1:] + [None]):
        if cur != prev + 1:
            spans.append(f'{start}-{prev}' if prev > start else f'{start}')
            start = cur
    return ', '.join(spans)


def final_metrics(run: RunLog) -> dict:
    """The latest validation result (the final one for a complete run), {} if none yet."""
    return next((r for r in reversed(run.records) if 'top_1' in r), {})
