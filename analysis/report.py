"""Compare training runs: a table and plots of accuracy against training time.

    python analysis/report.py runs/ablation/ep16 runs/ablation/ep88 [--out DIR] [--reference CSV]...
    python analysis/report.py runs/ablation          # a folder of run folders: all of them

Writes into --out (default: the run folders' common parent):
    report.csv            one row per run; accuracies as fractions, as in the logs
    report.md             the same as a Markdown table (accuracies in %), and each partial run's problems
    accuracy_vs_time.png  final top-1 against wall-clock minutes, one line per architecture, plus the
                          reference results (dashed; default: the public ffcv-imagenet table)
    curves_<run>.png      per run: val/EMA top-1, losses, LR and resolution against epoch

Epochs in the report count from 1 (best_epoch 8 = after the 8th epoch), like checkpoints'
`epoch`; log.jsonl's `epoch` key counts from 0. Wall time is the trainer's `elapsed_s`
(training + validation, without start-up), else the sum of epoch_time_s + val_time_s.
Runs with damaged or unfinished logs are reported as partial with what could be read,
with one warning line per problem.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import math
import os
import re
import sys
from pathlib import Path

import pandas as pd

from fastimagenet.analysis import plots
from fastimagenet.analysis.runlogs import RunLog, final_metrics, is_run_folder, read_run
from fastimagenet.common.atomic import atomic_path, write_text_atomic
from fastimagenet.common.cli import fail, run

# The public ffcv-imagenet results (ResNet-50 on 8xA100, ResNet-18 on 1xA100); source in reference/README.md.
DEFAULT_REFERENCE = Path(__file__).resolve().parent / 'reference' / 'ffcv_imagenet_results.csv'
REFERENCE_COLUMNS = ('arch', 'epochs', 'top_1', 'time_min')  # setup, source, top_5: optional

INTEGERS = ('epochs', 'epochs_done', 'best_epoch', 'processes')
FLOATS = ('top_1', 'top_5', 'best_top_1', 'ema_top_1', 'minutes', 'train_imgs_per_s')
COLUMNS = ['run', 'arch', 'epochs', 'epochs_done', 'top_1', 'top_5', 'best_top_1', 'best_epoch',
           'ema_top_1', 'minutes', 'train_imgs_per_s', 'processes', 'device', 'device_name',
           'config_files', 'changes', 'status', 'problems', 'path']


def summarise(log: RunLog, name: str) -> dict:
    """One report row: what the run folder says, NaN/empty where it does not say."""
    p, records = log.params, log.records
    hardware = p.get('hardware') if isinstance(p.get('hardware'), dict) else {}
    last = final_metrics(log)
    validated = [r for r in records if _number(r.get('top_1'))]
    best = max(validated, key=lambda r: r['top_1'], default=None)  # max keeps the earliest of ties
    speeds = [r['train_imgs_per_s'] for r in records if _number(r.get('train_imgs_per_s'))]
    return {
        'run': name,
        'arch': _str(p.get('model.arch')),
        'epochs': log.budget,
        'epochs_done': log.epochs_done,
        'top_1': last.get('top_1'),
        'top_5': last.get('top_5'),
        'best_top_1': best['top_1'] if best else None,
        'best_epoch': best['epoch'] + 1 if best else None,
        'ema_top_1': last.get('ema_top_1'),
        'minutes': _minutes(records),
        'train_imgs_per_s': round(sum(speeds) / len(speeds), 1) if speeds else None,
        'processes': hardware.get('processes', p.get('dist.world_size')),
        'device': _str(hardware.get('device')),
        'device_name': _str(hardware.get('name')),
        'config_files': ';'.join(map(str, _as_list(p.get('config_files')))),
        'changes': '; '.join(f'after {e} epochs: {text}' for e, text in plots.changes_of(log)),
        'status': 'complete' if log.complete else 'partial',
        'problems': '; '.join(log.problems),
        'path': str(log.path),
    }


def _str(value) -> str | None:
    return None if value is None else str(value)


def _as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _minutes(records: list[dict]) -> float | None:
    if not records:
        return None
    if _number(records[-1].get('elapsed_s')):
        return round(records[-1]['elapsed_s'] / 60, 3)
    parts = [r.get(k) for r in records for k in ('epoch_time_s', 'val_time_s')]
    seconds = [s for s in parts if _number(s)]
    return round(sum(seconds) / 60, 3) if seconds else None


def expand(paths: list[str]) -> list[Path]:
    """Run folders, in the order given; a folder of run folders (a sweep's --out) stands for them all."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if not path.exists():
            fail(f'{path} does not exist')
        if is_run_folder(path):
            found.append(path)
            continue
        children = sorted((c for c in path.iterdir() if is_run_folder(c)), key=_natural) if path.is_dir() else []
        if not children:
            fail(f'{path} is not a run folder (no params.json, log.jsonl or checkpoint in it, nor in its subfolders)')
        found.extend(children)
    seen, runs = set(), []
    for path in found:  # a run given twice is reported once, in its first place
        if path.resolve() not in seen:
            seen.add(path.resolve())
            runs.append(path)
    return runs


def _natural(path: Path):
    """ep8 before ep16."""
    return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', path.name)]


def default_out(folders: list[Path]) -> Path:
    """The runs' common parent folder (a single run's parent: the report goes beside it, not into it)."""
    common = os.path.commonpath([os.path.abspath(p) for p in folders])
    if len(folders) == 1:
        common = os.path.dirname(common)
    relative = os.path.relpath(common)
    return Path(common if relative.startswith('..') else relative)


def run_names(paths: list[Path]) -> list[str]:
    """Folder names, made unique with their parents' names where two runs share one."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    base = Path(os.path.commonpath([p.resolve() for p in paths]))
    return [str(p.resolve().relative_to(base)).replace(os.sep, '-') or p.name for p in paths]


def read_references(paths: list[str | Path]) -> pd.DataFrame:
    frames = []
    for path in paths:
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as e:  # pandas' parser errors are ValueErrors
            fail(f'cannot read reference CSV {path}: {str(e).splitlines()[0][:120]}')
        missing = [c for c in REFERENCE_COLUMNS if c not in frame.columns]
        if missing:
            fail(f'reference CSV {path} lacks column(s) {", ".join(missing)} '
                 f'(expected {",".join(REFERENCE_COLUMNS)},setup,source)')
        for column in ('epochs', 'top_1', 'top_5', 'time_min'):
            if column in frame:
                frame[column] = pd.to_numeric(frame[column], errors='coerce')
        if (frame.top_1 > 1).any():
            fail(f'reference CSV {path}: top_1 must be a fraction (0.784), not a percentage')
        for column in ('setup', 'source'):
            frame[column] = frame[column].fillna('').astype(str) if column in frame else ''
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*REFERENCE_COLUMNS, 'setup', 'source'])


def build_report(paths: list[str | Path], out: str | Path | None = None,
                 references: list[str | Path] | None = None, warn=None) -> tuple[pd.DataFrame, Path]:
    """Read the runs, write report.csv/.md and the plots into `out`; (the table, out).

    `references`: reference CSVs (None: the shipped ffcv-imagenet table; []: none).
    `warn` gets one line per problem found (default: printed to stderr).
    """
    warn = warn or (lambda line: print(f'warning: {line}', file=sys.stderr))
    folders = expand([str(p) for p in paths])
    out = Path(out) if out is not None else default_out(folders)
    reference = read_references([DEFAULT_REFERENCE] if references is None else references)

    logs = [read_run(p) for p in folders]
    names = run_names(folders)
    for log, name in zip(logs, names):
        for problem in log.problems:
            warn(f'{name} ({log.path}): {problem}')
    table = typed(pd.DataFrame([summarise(log, name) for log, name in zip(logs, names)], columns=COLUMNS))

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / 'report.csv') as tmp:
        table.to_csv(tmp, index=False)
    write_text_atomic(out / 'report.md', markdown(table))
    plots.accuracy_vs_time(table, reference, out / 'accuracy_vs_time.png')
    for log, name in zip(logs, names):
        plots.curves(log, name, out / f'curves_{name}.png')
    return table, out


def typed(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers as numbers even when every run lacks them; counts stay integers beside missing ones."""
    for column in FLOATS:
        table[column] = pd.to_numeric(table[column], errors='coerce').astype(float)
    for column in INTEGERS:
        table[column] = pd.to_numeric(table[column], errors='coerce').round().astype('Int64')
    return table


def markdown(table: pd.DataFrame) -> str:
    header = ['run', 'arch', 'epochs', 'top-1 %', 'top-5 %', 'best top-1 % (epoch)', 'EMA top-1 %',
              'minutes', 'train img/s', 'processes', 'device', 'config', 'status']
    rows = []
    for r in table.itertuples():
        best = f'{_pct(r.best_top_1)} ({int(r.best_epoch)})' if _present(r.best_epoch) else ''
        epochs = _int(r.epochs) if r.status == 'complete' else f'{r.epochs_done}/{_int(r.epochs) or "?"}'
        rows.append([r.run, _text(r.arch), epochs, _pct(r.top_1), _pct(r.top_5), best, _pct(r.ema_top_1),
                     _fixed(r.minutes, 1), _fixed(r.train_imgs_per_s, 0), _int(r.processes),
                     ' '.join(filter(None, [_text(r.device), _text(r.device_name)])),
                     ', '.join(Path(f).name for f in _text(r.config_files).split(';') if f), r.status])
    lines = ['# Training runs', '',
             'Accuracies in % (final epoch; partial runs: latest validated), epochs counted from 1, '
             'minutes of training + validation.', '',
             '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c).replace('|', '\\|') for c in row) + ' |' for row in rows]
    changed = [(r.run, r.changes) for r in table.itertuples() if isinstance(r.changes, str) and r.changes]
    if changed:
        lines += ['', '## Settings changed mid-run', '']
        lines += [f'- **{run}**: {text}' for run, text in changed]
    partial = table[table.problems.fillna('') != '']
    if len(partial):
        lines += ['', '## Problems', '']
        lines += [f'- **{r.run}**: {r.problems}' for r in partial.itertuples()]
    lines += ['', '![top-1 against training time](accuracy_vs_time.png)', '']
    return '\n'.join(lines)


def _present(value) -> bool:
    return not pd.isna(value)


def _pct(value) -> str:
    return f'{100 * value:.2f}' if _present(value) else ''


def _fixed(value, digits: int) -> str:
    return f'{value:.{digits}f}' if _present(value) else ''


def _int(value) -> str:
    return str(int(value)) if _present(value) else ''


def _text(value) -> str:
    return str(value) if _present(value) else ''


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('runs', nargs='+', metavar='RUN_DIR', help='run folders (or a folder of them)')
    parser.add_argument('--out', help='output folder (default: the runs\' common parent)')
    parser.add_argument('--reference', action='append', metavar='CSV',
                        help='reference results, columns arch,epochs,top_1,top_5,time_min,setup,source '
                             f'(repeatable; default {DEFAULT_REFERENCE.name})')
    parser.add_argument('--no-reference', action='store_true', help='plot no reference results')
    args = parser.parse_args(argv)
    references = [] if args.no_reference else args.reference
    table, out = build_report(args.runs, args.out, references)
    complete = (table.status == 'complete').sum()
    print(f'{len(table)} run(s), {complete} complete, {len(table) - complete} partial; '
          f'wrote {out}/report.csv, report.md, accuracy_vs_time.png, curves_<run>.png')


if __name__ == '__main__':
    run(main)
