"""The report's figures, drawn with matplotlib's Agg renderer (no display, no global pyplot state).

Epochs on the x-axis count epochs done: the point at 3 is the result after the third epoch,
the resolution drawn over (2, 3] is the third epoch's. The LR and resolution schedules are
redrawn from params.json with the trainer's own functions, so a partial run shows what is
still to come; the logged values are drawn on top as markers.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from fastimagenet.analysis.runlogs import RunLog
from fastimagenet.common.atomic import atomic_path
from fastimagenet.train.runs import segments, settings_at
from fastimagenet.train.schedules import LR_SCHEDULES, lr_at, resolution_of, schedule_args

LOG_SCALE_RATIO = 30  # times beyond which one linear axis squeezes the fast runs into a corner


def _figure(size) -> Figure:
    fig = Figure(figsize=size, layout='constrained')
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=110)  # the temp name has no .png for savefig to go by


def accuracy_vs_time(table: pd.DataFrame, reference: pd.DataFrame, path: Path) -> list[str]:
    """Final top-1 against wall-clock minutes: a line per architecture (points labelled by
    their epochs), and each reference series dashed. Returns the legend's labels."""
    fig = _figure((8.5, 5.5))
    ax = fig.add_subplot()
    colors = itertools.cycle(f'C{i}' for i in range(10))
    ours = table[table.top_1.notna() & table.minutes.notna() & (table.minutes > 0)]
    xs: list[float] = []

    for arch, group in ours.groupby(ours.arch.fillna('unknown architecture'), sort=False):
        group = group.sort_values('minutes')
        color = next(colors)
        finished = group[group.status == 'complete']  # the trade-off line; partial runs are bare points
        ax.plot(finished.minutes, 100 * finished.top_1, '-', color=color, label=f'{arch} ({_hardware(group)})')
        for r in group.itertuples():
            done = r.status == 'complete'
            ax.plot(r.minutes, 100 * r.top_1, 'o', color=color, markerfacecolor=color if done else 'white')
            ax.annotate(_epochs_label(r), (r.minutes, 100 * r.top_1), textcoords='offset points',
                        xytext=(5, 5), fontsize=8, color=color)
        xs += list(group.minutes)

    ref = reference[reference.top_1.notna() & reference.time_min.notna() & (reference.time_min > 0)]
    for (arch, setup, source), group in ref.groupby(['arch', 'setup', 'source'], sort=False):
        group = group.sort_values('time_min')
        color = next(colors)
        origin = ', '.join(filter(None, [source.split(' ')[0] if source else '', setup]))  # 'ffcv-imagenet README' -> project name
        ax.plot(group.time_min, 100 * group.top_1, '--x', color=color, alpha=0.8,
                label=f'{arch} ({origin})' if origin else str(arch))
        for r in group.itertuples():
            ax.annotate(f'{r.epochs:g}', (r.time_min, 100 * r.top_1), textcoords='offset points',
                        xytext=(4, -10), fontsize=7, color=color)
        xs += list(group.time_min)

    label = 'wall-clock minutes (training + validation)'
    if xs and max(xs) / min(xs) > LOG_SCALE_RATIO:
        ax.set_xscale('log')
        label += ', log scale'
    ax.set_xlabel(label)
    ax.set_ylabel('top-1 accuracy (%)')
    ax.set_title('Top-1 against training time (points labelled by epochs)')
    ax.grid(True, which='both', alpha=0.3)
    if not xs:
        ax.text(0.5, 0.5, 'no run has a validation result yet', ha='center', va='center', transform=ax.transAxes)
    handles, labels = ax.get_legend_handles_labels()
    if (ours.status != 'complete').any():
        handles.append(Line2D([], [], marker='o', color='grey', markerfacecolor='white', linestyle=''))
        labels.append('partial run (latest result)')
    if handles:
        ax.legend(handles, labels, fontsize=8, loc='best')
    _save(fig, path)
    return labels


def _hardware(group: pd.DataFrame) -> str:
    """'1x cpu', '8x cuda' or 'mixed hardware' for the runs of one line."""
    kinds = {(_int(r.processes), r.device) for r in group.itertuples()}
    if len(kinds) != 1:
        return 'mixed hardware'
    processes, device = kinds.pop()
    return f'{processes}x {device}' if processes and isinstance(device, str) else 'this project'


def _epochs_label(r) -> str:
    budget = _int(r.epochs)
    if r.status == 'complete':
        return str(budget)
    return f'{r.epochs_done}/{budget or "?"}'


def _int(value) -> int | None:
    return None if pd.isna(value) else int(value)


def curves(log: RunLog, name: str, path: Path) -> None:
    """Val top-1 (and EMA), losses, LR and resolution of one run against epochs done."""
    p, records = log.params, log.records
    budget = log.budget
    fig = _figure((10, 7))
    acc, loss, lr, res = fig.subplots(2, 2, sharex=True).flat
    done = [r['epoch'] + 1 for r in records]

    _series(acc, records, done, 'top_1', 'val top-1', scale=100)
    _series(acc, records, done, 'ema_top_1', 'EMA top-1', scale=100)
    # Training top-1 exists for epochs with hard targets (no Mixup/CutMix): its gap to the
    # validation curve is how users steer augmentation strength.
    _series(acc, records, done, 'train_top_1', 'train top-1', scale=100, style='s--')
    acc.set_ylabel('top-1 (%)')
    _series(loss, records, done, 'train_loss', 'train loss')
    _series(loss, records, done, 'val_loss', 'val loss')
    _series(loss, records, done, 'ema_val_loss', 'EMA val loss')
    loss.set_ylabel('loss')

    schedule = _schedule(p, budget)
    if schedule is not None:
        t, lrs, epochs, resolutions = schedule
        lr.plot(t, lrs, '-', color='grey', alpha=0.6, label='schedule')
        res.plot(epochs, resolutions, '-', color='grey', alpha=0.6, drawstyle='steps-pre', label='schedule')
    style = 'o' if schedule is not None else 'o-'  # the schedule draws the line
    _series(lr, records, done, 'lr', 'logged (end of epoch)', style=style)
    lr.set_ylabel('learning rate')
    _series(res, records, done, 'res', 'logged', style=style)
    res.set_ylabel('training resolution (px)')
    losses = [y for line in loss.lines for y in line.get_ydata()]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 10:
        loss.set_yscale('log')  # an early BatchNorm blow-up would flatten everything after it

    for epoch, text in changes_of(log):  # deliberate changes of settings mid-run
        for ax in (acc, loss, lr, res):
            ax.axvline(epoch, color='purple', linestyle=':', alpha=0.7)
        acc.annotate(f'after {epoch}: {text}', (epoch, 1), xycoords=('data', 'axes fraction'), xytext=(3, -3),
                     textcoords='offset points', fontsize=6, color='purple', va='top', rotation=90)
    for ax in (acc, loss, lr, res):
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, 'nothing logged', ha='center', va='center', transform=ax.transAxes)
    for ax in (lr, res):
        ax.set_xlabel('epochs done')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    state = 'complete' if log.complete else 'partial'
    fig.suptitle(f'{name}: {p.get("model.arch", "unknown architecture")}, '
                 f'{len(records)}/{budget or "?"} epochs ({state})')
    _save(fig, path)


def _series(ax, records: list[dict], done: list[int], key: str, label: str, scale: float = 1,
            style: str = 'o-') -> None:
    points = [(x, r[key] * scale) for x, r in zip(done, records)
              if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if points:
        x, y = zip(*points)
        ax.plot(x, y, style if len(points) < 40 else style.replace('o', '') or '.', markersize=3, label=label)


def _schedule(p: dict, budget: int | None):
    """(fractional epochs, LRs, epochs, resolutions) as the trainer set them, or None if unknown.
    Each epoch's values come from the settings in force then (a run changed mid-way has several)."""
    if budget is None:
        return None
    try:
        samples, batch = p.get('dataset.train_samples'), p['training.batch_size'] * p.get('dist.world_size', 1)
        steps = samples // batch if isinstance(samples, int) and samples >= batch else None
        segments = {}
        for e in range(budget):
            settings = settings_at(p, e)
            if settings['lr.lr_schedule_type'] not in LR_SCHEDULES:
                return None
            segments[e] = (schedule_args(settings, batch, steps), settings)
    except (KeyError, TypeError):
        return None
    t = np.linspace(0, budget, 50 * budget + 1)[:-1]  # up to, not at, the end: the LR there is 0
    epochs = np.arange(budget + 1)
    resolutions = [resolution_of(segments[max(e - 1, 0)][1], max(e - 1, 0)) for e in epochs]
    return t, [lr_at(x, **segments[int(x)][0]) for x in t], epochs, resolutions


def changes_of(log: RunLog) -> list[tuple[int, str]]:
    """(epoch, 'key old -> new, ...') of each deliberate change of settings (params.json's history)."""
    out = []
    for segment in segments(log.params)[1:]:
        changes = segment.get('changes') or {}
        text = ', '.join(f'{k.split(".", 1)[-1]} {_short(a)}->{_short(b)}' for k, (a, b) in changes.items())
        out.append((segment.get('from_epoch', 0), text))
    return out


def _short(value) -> str:
    text = f'{value:g}' if isinstance(value, float) else str(value)
    return text if len(text) <= 16 else text[:15] + '…'
