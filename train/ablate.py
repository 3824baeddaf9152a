"""Train one recipe at several epoch budgets, one after another, and report accuracy against time.

    python train/ablate.py --config-file rn50_configs/rn50_88_epochs.yaml --epochs 16,24,32,40,56,88 \
        --out runs/ablation --data.train_dataset=.../train.beton --data.val_dataset=.../val.beton
    ... --nproc 8        each run through torchrun with 8 processes
    ... --dry-run        print the commands (one per line, shell-quoted) instead, e.g. for SLURM

Each budget E is the recipe stretched by train/schedules.py:stretch, trained in OUT/epE. Rerun
the same command after an interruption: finished runs are skipped, an interrupted one resumes.
With --logging.mirror=PREFIX each budget is mirrored to PREFIX/epE; on a fresh machine the same
command restores finished budgets from their mirror (for the report) and resumes the interrupted one.
At the end the report (analysis/report.py) is written into OUT: report.md, report.csv,
accuracy_vs_time.png, curves_epE.png.
"""

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import subprocess
import sys
from pathlib import Path

from fastimagenet.common.cli import fail, run
from fastimagenet.train.sweep import inspect, parse_budgets, parse_overrides, plan
from fastimagenet.train.schedules import LR_PEAK_PLACEMENTS


# What running a budget's command does, by its state (train/sweep.py inspect).
ACTIONS = {'resume': 'resuming', 'restore': 'restoring from its mirror'}


class Parser(argparse.ArgumentParser):
    def error(self, message):  # the project's one-line errors instead of argparse's usage dump
        fail(message)


def arguments():
    parser = Parser(description=__doc__.split('\n\n')[0], allow_abbrev=False,
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog=__doc__.split('\n\n', 1)[1] + '\nAny other --section.key=value is passed to '
                    'every run (see train/train_imagenet.py --help).')
    parser.add_argument('--config-file', '-C', action='append', default=[], metavar='YAML',
                        help='the recipe (repeatable, as for the trainer)')
    parser.add_argument('--epochs', required=True, help='budgets, comma-separated: 16,24,32')
    parser.add_argument('--out', required=True, help='sweep folder: OUT/ep<E>/ per budget, and the report')
    parser.add_argument('--nproc', type=int, help='processes per run, launched with torchrun')
    parser.add_argument('--lr-peak', choices=LR_PEAK_PLACEMENTS, default='epochs',
                        help='epochs: keep the warm-up length in epochs, as the public configs do '
                        '(default); fraction: scale it with the budget')
    parser.add_argument('--dry-run', action='store_true', help='print the commands instead of running them')
    return parser.parse_known_args()


def main() -> None:
    args, rest = arguments()
    if not args.config_file:
        fail('--config-file is required: the recipe to stretch to each budget')
    if args.nproc is not None and args.nproc < 1:
        fail(f'--nproc must be at least 1, got {args.nproc}')
    budgets = plan(args.config_file, parse_overrides(rest), parse_budgets(args.epochs), Path(args.out), args.nproc,
                   args.lr_peak)
    for budget in budgets:  # every folder checked before the first run starts
        inspect(budget)

    if args.dry_run:
        for budget in budgets:
            if budget.state == 'finished':
                print(f'# {budget.folder}: finished ({budget.note}), skipped', file=sys.stderr)
            else:
                if budget.state in ACTIONS:
                    print(f'# {budget.folder}: {ACTIONS[budget.state]} ({budget.note})', file=sys.stderr)
                print(budget.shell, flush=True)
        return

    for i, budget in enumerate(budgets, 1):
        tag = f'[{i}/{len(budgets)}] {budget.folder}'
        if budget.state == 'finished':
            print(f'{tag}: finished ({budget.note}), skipped', flush=True)
            continue
        print(f'{tag}: {ACTIONS.get(budget.state, "starting")} {budget.epochs} epochs'
              + (f' ({budget.note})' if budget.note else ''))
        print(f'$ {budget.shell}', flush=True)
        code = subprocess.run(budget.command).returncode
        if code != 0:
            fail(f'the run in {budget.folder} failed (exit status {code}, output above); '
                 'fix the cause and rerun this command: finished runs are skipped, this one resumes')

    from fastimagenet.analysis.report import build_report  # pandas, matplotlib: not for a dry run
    table, out = build_report([b.folder for b in budgets], args.out)
    print()
    print(f'{"budget":>8}  {"top_1":>7}  {"ema_top_1":>9}  {"minutes":>8}  status')
    for r in table.itertuples():
        print(f'{r.run:>8}  {_fmt(r.top_1, 4):>7}  {_fmt(r.ema_top_1, 4):>9}  {_fmt(r.minutes, 1):>8}  {r.status}')
    print(f'report: {out / "report.md"} (and report.csv, accuracy_vs_time.png, curves_<run>.png)')


def _fmt(value: float, digits: int) -> str:
    return '-' if value != value else f'{value:.{digits}f}'  # NaN: nothing measured


if __name__ == '__main__':
    run(main)
