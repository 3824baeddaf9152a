"""An epoch-budget sweep: one recipe stretched to several budgets, one run folder per budget.

Each budget's run is an ordinary trainer command (so it can be printed for a scheduler, or
rerun by hand to resume); this module builds those commands and tells, from a run folder's
files alone, whether its run is finished, interrupted or not started.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from fastargs import get_current_config

from fastimagenet.analysis.runlogs import read_run
from fastimagenet.common.cli import fail
from fastimagenet.common.config import check_keys

from . import config
from .runs import FINAL, LAST, PARAMS, describe_difference, differing_settings, result_settings
from .schedules import stretch

TRAINER = Path(__file__).resolve().parent / 'train_imagenet.py'
# Set per budget by the sweep itself: an override of them would make every budget the same run.
OWN_KEYS = ('training.epochs', 'logging.folder')
# A prefix for the sweep, one URL per budget under it (OUT/ep16 -> PREFIX/ep16).
PER_BUDGET_PREFIXES = ('logging.mirror',)


@dataclass
class Budget:
    epochs: int
    folder: Path
    params: dict          # the trainer's settings for this budget, as it will parse them
    command: list[str]
    state: str = 'start'  # 'start', 'resume' or 'finished'
    note: str = ''        # what the folder holds, for the progress line

    @property
    def shell(self) -> str:
        return shlex.join(self.command)


def parse_budgets(text: str) -> list[int]:
    """'16,24,32' -> [16, 24, 32] (order kept, repeats dropped)."""
    try:
        budgets = [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        budgets = []
    if not budgets or min(budgets) < 1:
        fail(f'--epochs: expected comma-separated positive epoch counts such as 16,24,32, got {text!r}')
    return list(dict.fromkeys(budgets))


def parse_overrides(tokens: list[str]) -> dict[str, str]:
    """Trainer overrides `--section.key=value` / `--section.key value` -> {key: value}, checked
    against the trainer's settings so a typo fails here, before any run starts."""
    overrides, i = {}, 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith('--') or token == '--':
            fail(f'unexpected argument {token!r}; trainer settings are given as --section.key=value')
        key, eq, value = token[2:].partition('=')
        if not eq:
            if i + 1 == len(tokens) or tokens[i + 1].startswith('--'):
                fail(f'{token} needs a value: {token}=VALUE')
            value, i = tokens[i + 1], i + 1
        check_keys([key], trainer_keys(), 'the trainer overrides')
        if key in OWN_KEYS:
            fail(f'--{key} is set per budget by the sweep (from --epochs and --out); drop it')
        overrides[key] = value
        i += 1
    return overrides


def trainer_keys() -> list[str]:
    return ['.'.join(path) for path in get_current_config().entries if path[0] in config.SECTIONS]


def plan(config_files: list[str], overrides: dict[str, str], budgets: list[int], out: Path,
         nproc: int | None, lr_peak: str = 'epochs') -> list[Budget]:
    """The trainer command of every budget, each parsed as the trainer will parse it.

    The base recipe is the config file(s) with the overrides; `stretch` moves what depends
    on the budget (the resolution ramp, a step schedule's steps), and those keys are passed
    explicitly so each printed command shows the schedule it runs.
    """
    file_args = [arg for name in config_files for arg in ('--config-file', name)]
    base = config.load(file_args + [f'--{k}={v}' for k, v in overrides.items()])
    launcher = [sys.executable] if nproc is None else \
        [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}']
    trainer = os.path.relpath(TRAINER)
    if trainer.startswith('..'):
        trainer = str(TRAINER)
    budgets_out = []
    for epochs in budgets:
        stretched = stretch(base, epochs, lr_peak)
        changed = {k: v for k, v in stretched.items() if '.' in k and v != base[k]}
        per_budget = {'training.epochs': epochs, 'resolution.start_ramp': stretched['resolution.start_ramp'],
                      'resolution.end_ramp': stretched['resolution.end_ramp'], **changed,
                      'logging.folder': str(out / f'ep{epochs}')}
        for key in PER_BUDGET_PREFIXES:
            if base[key]:
                per_budget[key] = base[key].rstrip('/') + f'/ep{epochs}'
        kept = {k: v for k, v in overrides.items() if k not in per_budget}  # replaced by the stretched value
        args = file_args + [f'--{k}={v}' for k, v in {**kept, **per_budget}.items()]
        params = config.load(args)
        params['dist.world_size'] = world_size(params, nproc)  # as the trainer records it in params.json
        budgets_out.append(Budget(epochs, out / f'ep{epochs}', params, launcher + [trainer] + args))
    return budgets_out


def world_size(p: dict, nproc: int | None) -> int:
    """The process count the trainer will record: torchrun's, its own spawn's, or 1."""
    if nproc is not None:
        return nproc
    return p['dist.world_size'] if p['training.distributed'] and p['dist.world_size'] > 1 else 1


def inspect(budget: Budget) -> None:
    """Set budget.state from the folder's files (no torch), or from its mirror's newest snapshot
    when the folder is not here (a fresh machine): finished, to resume, or to start.

    A folder (or mirror) holding a run with other settings fails here, before any run starts,
    as the trainer would refuse it only when its turn comes.
    """
    folder = budget.folder
    if not (folder / PARAMS).exists():
        if folder.exists() and any(folder.glob('*.pt')):
            fail(f'{folder} holds checkpoints but no {PARAMS}; move it away or use another --out')
        budget.state, budget.note = 'start', ''
        if budget.params.get('logging.mirror'):
            inspect_mirror(budget)
        return
    try:
        old = json.loads((folder / PARAMS).read_text())
    except (OSError, ValueError):
        fail(f'{folder / PARAMS} is unreadable; move the folder away or use another --out')
    refuse_other_run(budget, folder, old)
    log = read_run(folder)
    last = log.records[-1] if log.records else {}
    done = len(log.records)
    if (folder / FINAL).exists() and last.get('epoch') == budget.epochs - 1 and 'top_1' in last:
        ema = f', ema_top_1 {last["ema_top_1"]:.4f}' if 'ema_top_1' in last else ''
        budget.state, budget.note = 'finished', f'top_1 {last["top_1"]:.4f}{ema}'
    elif (folder / LAST).exists():
        budget.state, budget.note = 'resume', f'{done} of {budget.epochs} epochs logged'
    else:
        budget.state, budget.note = 'start', 'no checkpoint yet'


def inspect_mirror(budget: Budget) -> None:
    """A budget whose folder is only in its mirror: the trainer restores it from there (and a
    finished one just comes down, for the report)."""
    from .mirror import Mirror
    url = budget.params['logging.mirror']
    mirror = Mirror(url, endpoint_url=budget.params.get('logging.mirror_endpoint') or None)
    mirror.check()
    snapshot = mirror.latest()
    if snapshot is None:
        return
    refuse_other_run(budget, url, mirror.read_json(PARAMS, snapshot) or {})
    if snapshot.epoch >= budget.epochs and FINAL in snapshot.files:
        budget.state, budget.note = 'restore', f'finished in the mirror {url}'
    else:
        budget.state, budget.note = 'resume', f'{snapshot.epoch} of {budget.epochs} epochs in the mirror {url}'


def refuse_other_run(budget: Budget, where, theirs: dict) -> None:
    diff = differing_settings(budget.params, theirs)
    if diff:
        fail(describe_difference(where, diff, result_settings(budget.params), result_settings(theirs), 'this sweep')
             + '; use another --out, or the same settings to resume')
