"""Epoch-budget sweeps (train/ablate.py) and their report (analysis/report.py), on fabricated run
folders: no training, so the whole file takes seconds."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pandas as pd
import pytest

from fastimagenet.analysis import plots
from fastimagenet.analysis.report import COLUMNS, DEFAULT_REFERENCE, build_report, read_references
from fastimagenet.common.cli import UserError

from conftest import error_line, script

RN50_88 = 'rn50_configs/rn50_88_epochs.yaml'
DATA = ['--data.train_dataset=/data/ffcv/train.beton', '--data.val_dataset=/data/ffcv/val.beton']
DATA_OVERRIDES = {'data.train_dataset': '/data/ffcv/train.beton', 'data.val_dataset': '/data/ffcv/val.beton'}


def fake_run(folder: Path, top_1: list[float | None], *, epochs: int | None = None, ema: bool = False,
             params: dict | None = None, elapsed: bool = True, write_params: bool = True) -> Path:
    """A run folder as the trainer leaves it: one record per entry of `top_1` (None: not
    validated that epoch, as with log_level=0), 60 s of training + 6 s of validation per epoch."""
    folder.mkdir(parents=True, exist_ok=True)
    epochs = epochs or len(top_1)
    if write_params:
        p = {'model.arch': 'resnet18d', 'training.epochs': epochs, 'training.ema': int(ema),
             'lr.lr': 0.4, 'lr.lr_schedule_type': 'cyclic', 'lr.lr_peak_epoch': 2, 'lr.step_ratio': 0.1,
             'lr.step_length': 30, 'resolution.min_res': 64, 'resolution.max_res': 96,
             'resolution.start_ramp': 1, 'resolution.end_ramp': 3, 'dist.world_size': 1,
             'config_files': ['/x/rn50_configs/cpu_sample.yaml'],
             'hardware': {'device': 'cpu', 'name': 'Test CPU', 'processes': 1, 'cpu_count': 2}}
        (folder / 'params.json').write_text(json.dumps({**p, **(params or {})}))
    lines = []
    for epoch, acc in enumerate(top_1):
        r = {'epoch': epoch, 'lr': 0.1, 'res': 64, 'train_loss': 2.0 - 0.1 * epoch}
        if acc is not None:
            r.update(top_1=acc, top_5=min(1.0, acc + 0.2), val_loss=1.0, val_count=100)
            if ema:
                r.update(ema_top_1=acc + 0.01, ema_top_5=min(1.0, acc + 0.21), ema_val_loss=0.9)
        r.update(epoch_time_s=60.0, val_time_s=6.0, train_imgs_per_s=100.0 + 10 * epoch, timestamp=0.0)
        if elapsed:
            r['elapsed_s'] = 66.0 * (epoch + 1)
        lines.append(json.dumps(r) + '\n')
    (folder / 'log.jsonl').write_text(''.join(lines))
    return folder


@pytest.fixture
def sweep(tmp_path) -> Path:
    """Complete runs (EMA, no EMA, log_level=0) and every kind of damaged or unfinished one."""
    root = tmp_path / 'sweep'
    fake_run(root / 'ema', [0.2, 0.5, 0.7, 0.65], ema=True)
    fake_run(root / 'plain', [0.3, 0.6, 0.6], elapsed=False)  # an older log without elapsed_s
    fake_run(root / 'level0', [None, None, None, None, 0.8])
    cut = fake_run(root / 'cut', [0.2, 0.4, 0.5])
    text = (cut / 'log.jsonl').read_text()
    (cut / 'log.jsonl').write_text(text[:-30])  # the last record cut mid-way, no newline
    garbage = fake_run(root / 'garbage', [0.2, 0.4, 0.5])
    lines = (garbage / 'log.jsonl').read_text().splitlines(keepends=True)
    (garbage / 'log.jsonl').write_text(''.join(lines[:1] + ['<<<<<<< merge conflict\n'] + lines[1:]))
    fake_run(root / 'running', [0.2, 0.4], epochs=8)
    fake_run(root / 'noparams', [0.1, 0.3], write_params=False)
    empty = fake_run(root / 'empty', [], epochs=4)
    (empty / 'log.jsonl').write_text('')
    return root


def row(table: pd.DataFrame, run: str) -> pd.Series:
    return table.set_index('run').loc[run]


def test_report_reads_complete_partial_and_damaged_runs(sweep, tmp_path):
    out = tmp_path / 'report'
    proc = script('analysis/report.py', sweep, '--out', out)
    table = pd.read_csv(out / 'report.csv')
    assert list(table.columns) == COLUMNS
    assert list(table.run) == ['cut', 'ema', 'empty', 'garbage', 'level0', 'noparams', 'plain', 'running']

    ema = row(table, 'ema')
    assert (ema.status, ema.arch, ema.epochs, ema.epochs_done) == ('complete', 'resnet18d', 4, 4)
    assert ema.top_1 == 0.65 and ema.top_5 == pytest.approx(0.85) and ema.ema_top_1 == pytest.approx(0.66)
    assert (ema.best_top_1, ema.best_epoch) == (0.7, 3)  # epochs counted from 1
    assert ema.minutes == pytest.approx(4 * 66 / 60)
    assert ema.train_imgs_per_s == pytest.approx(115.0)
    assert (ema.processes, ema.device, ema.device_name) == (1, 'cpu', 'Test CPU')
    assert ema.config_files.endswith('cpu_sample.yaml') and pd.isna(ema.problems)

    plain = row(table, 'plain')
    assert plain.status == 'complete' and pd.isna(plain.ema_top_1)
    assert (plain.best_top_1, plain.best_epoch) == (0.6, 2)  # the first epoch to reach it
    assert plain.minutes == pytest.approx(3 * 66 / 60)  # epoch_time_s + val_time_s, without elapsed_s

    level0 = row(table, 'level0')
    assert (level0.status, level0.top_1, level0.best_epoch) == ('complete', 0.8, 5)

    for name, problem in [('cut', 'line 3 is cut short'), ('garbage', 'line 2 is not an epoch record'),
                          ('running', '2 of 8 epochs logged'), ('noparams', 'no params.json'),
                          ('empty', 'log.jsonl is empty')]:
        r = row(table, name)
        assert r.status == 'partial' and problem in r.problems, (name, r.problems)
        assert any(line.startswith(f'warning: {name} ({sweep / name}): ') and problem in line
                   for line in proc.stderr.splitlines()), proc.stderr
    assert (row(table, 'cut').epochs_done, row(table, 'cut').top_1) == (2, 0.4)  # what could be read
    assert (row(table, 'garbage').epochs_done, row(table, 'garbage').top_1) == (3, 0.5)
    assert row(table, 'running').minutes == pytest.approx(2 * 66 / 60)
    assert pd.isna(row(table, 'noparams').arch) and row(table, 'noparams').top_1 == 0.3
    assert row(table, 'empty').epochs_done == 0 and pd.isna(row(table, 'empty').minutes)
    assert len([l for l in proc.stderr.splitlines() if l.startswith('warning: ')]) == 6  # cut: 2 problems
    assert f'warning: cut ({sweep / "cut"}): 2 of 3 epochs logged' in proc.stderr  # what it means
    assert 'Traceback' not in proc.stderr and '3 complete, 5 partial' in proc.stdout

    md = (out / 'report.md').read_text()
    assert '| ema | resnet18d | 4 | 65.00 | 85.00 | 70.00 (3) | 66.00 | 4.4 |' in md
    assert '| running | resnet18d | 2/8 |' in md and '**cut**: log.jsonl line 3 is cut short' in md
    for png in ['accuracy_vs_time.png', *(f'curves_{r}.png' for r in table.run)]:
        assert (out / png).stat().st_size > 5000, png


def test_reference_csvs_are_read_and_plotted(sweep, tmp_path):
    shipped = read_references([DEFAULT_REFERENCE])
    assert len(shipped) == 12 and set(shipped.arch) == {'resnet50', 'resnet18'}
    assert shipped.set_index(['arch', 'epochs']).loc[('resnet50', 88), 'top_1'] == 0.784

    mine = tmp_path / 'mine.csv'
    mine.write_text('arch,epochs,top_1,top_5,time_min,setup,source\nresnet18d,16,0.5,0.8,3.0,2xCPU,our lab\n')
    table, _ = build_report([sweep / 'ema'], tmp_path / 'r', references=[DEFAULT_REFERENCE, mine])
    labels = plots.accuracy_vs_time(table, read_references([DEFAULT_REFERENCE, mine]), tmp_path / 'r' / 'again.png')
    assert 'resnet50 (ffcv-imagenet, 8xA100)' in labels and 'resnet18 (ffcv-imagenet, 1xA100)' in labels
    assert 'resnet18d (our, 2xCPU)' in labels and 'resnet18d (1x cpu)' in labels
    assert (tmp_path / 'r' / 'accuracy_vs_time.png').stat().st_size > 5000

    bad = tmp_path / 'bad.csv'
    bad.write_text('arch,epochs,acc\nresnet50,16,0.7\n')
    proc = script('analysis/report.py', sweep / 'ema', '--out', tmp_path / 'r2', '--reference', bad, check=False)
    assert 'lacks column(s) top_1, time_min' in error_line(proc)


def test_a_path_that_is_no_run_folder_is_one_line_error(tmp_path):
    (tmp_path / 'notes').mkdir()
    (tmp_path / 'notes' / 'readme.txt').write_text('hello')
    assert 'not a run folder' in error_line(script('analysis/report.py', tmp_path / 'notes', check=False))
    with pytest.raises(UserError, match='does not exist'):
        build_report([tmp_path / 'missing'], tmp_path / 'out')


# ---- train/ablate.py


def stretched_command(epochs: int, start: int, end: int, out: Path, launcher: list[str]) -> list[str]:
    return [*launcher, 'train/train_imagenet.py', '--config-file', RN50_88, *DATA, '--lr.lr=1.5',
            f'--training.epochs={epochs}', f'--resolution.start_ramp={start}', f'--resolution.end_ramp={end}',
            f'--logging.folder={out}/ep{epochs}']


def finished_run(budget) -> None:
    """Fabricate what the trainer leaves in a budget's folder once it has finished."""
    fake_run(budget.folder, [0.1] * (budget.epochs - 1) + [0.7], ema=True,
             params={k: v for k, v in budget.params.items()})
    (budget.folder / 'last.pt').write_bytes(b'not read')
    (budget.folder / 'final_weights.pt').write_bytes(b'not read')


def test_dry_run_prints_the_stretched_commands_and_skips_finished_runs(tmp_path):
    from fastimagenet.train.sweep import plan
    out = tmp_path / 'ablation'
    finished_run(plan([RN50_88], {**DATA_OVERRIDES, 'lr.lr': '1.5'}, [24], out, None)[0])

    proc = script('train/ablate.py', '--config-file', RN50_88, '--epochs', '16,24,88', '--out', out, '--dry-run',
                  DATA[0], *DATA[1].split('='), '--lr.lr', '1.5')  # both override forms pass through
    assert [shlex.split(l) for l in proc.stdout.splitlines()] == \
        [stretched_command(16, 11, 13, out, [sys.executable]), stretched_command(88, 65, 76, out, [sys.executable])]
    assert f'# {out}/ep24: finished (top_1 0.7000, ema_top_1 0.7100), skipped' in proc.stderr
    assert not (out / 'ep16').exists()  # a dry run creates nothing

    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2']
    assert [b.command for b in plan([RN50_88], {**DATA_OVERRIDES, 'lr.lr': '1.5'}, [16, 88], out, 2)] == \
        [stretched_command(16, 11, 13, out, torchrun), stretched_command(88, 65, 76, out, torchrun)]

    scaled = plan([RN50_88], {**DATA_OVERRIDES, 'lr.lr': '1.5'}, [16], out, None, lr_peak='fraction')[0]
    assert '--lr.lr_peak_epoch=0.3636' in scaled.command and scaled.params['lr.lr_peak_epoch'] == 0.3636


def test_unknown_override_fails_before_anything_runs(tmp_path):
    proc = script('train/ablate.py', '--config-file', RN50_88, '--epochs', '16,88', '--out', tmp_path / 'a',
                  *DATA, '--training.epochz=5', check=False)
    assert error_line(proc) == "error: unknown key 'training.epochz' in the trainer overrides " \
                               "(did you mean 'training.epochs'?)"
    assert not (tmp_path / 'a').exists()


def test_sweep_checks_settings_budgets_and_required_values(tmp_path):
    from fastimagenet.train.sweep import inspect, parse_budgets, parse_overrides, plan
    assert parse_budgets('16, 24,16,88') == [16, 24, 88]
    for bad in ('', '16,x', '0,8'):
        with pytest.raises(UserError, match='--epochs'):
            parse_budgets(bad)
    assert parse_overrides(['--lr.lr', '1.5', '--data.seed=3']) == {'lr.lr': '1.5', 'data.seed': '3'}
    with pytest.raises(UserError, match='set per budget'):
        parse_overrides(['--training.epochs=5'])
    with pytest.raises(UserError, match='data.val_dataset is required'):
        plan([RN50_88], {}, [16], tmp_path, None)  # a dry run validates too

    overrides = {'data.val_dataset': 'v.beton'}
    step = plan([RN50_88], {**overrides, 'lr.lr_schedule_type': 'step', 'lr.step_length': '44'}, [22], tmp_path, 4)[0]
    assert '--lr.step_length=11' in step.command and step.command.count('--lr.step_length=11') == 1
    assert step.params['dist.world_size'] == 4

    budget = plan([RN50_88], overrides, [16], tmp_path, None)[0]
    fake_run(budget.folder, [0.1, 0.2], params={**budget.params, 'lr.lr': 0.5})
    with pytest.raises(UserError, match=r"holds a run with lr.lr=0.5, this sweep has 1.7"):
        inspect(budget)
    fake_run(budget.folder, [0.1, 0.2], params=budget.params)  # interrupted after 2 epochs
    (budget.folder / 'last.pt').write_bytes(b'')
    inspect(budget)
    assert (budget.state, budget.note) == ('resume', '2 of 16 epochs logged')


def test_a_sweep_of_finished_runs_skips_them_and_reports(tmp_path, monkeypatch, capsys):
    from fastimagenet.train import ablate
    from fastimagenet.train.sweep import plan
    out = tmp_path / 'ablation'
    for budget in plan([RN50_88], {'data.val_dataset': 'v.beton'}, [16, 24], out, None):
        finished_run(budget)
    # in this process (the CLI is tested above): nothing may be launched, so nothing is
    monkeypatch.setattr(ablate.subprocess, 'run', lambda *a, **k: pytest.fail(f'launched {a}'))
    monkeypatch.setattr(sys, 'argv', ['ablate.py', '-C', RN50_88, '--epochs', '16,24', '--out', str(out),
                                      '--data.val_dataset=v.beton'])
    ablate.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [f'[1/2] {out}/ep16: finished (top_1 0.7000, ema_top_1 0.7100), skipped',
                         f'[2/2] {out}/ep24: finished (top_1 0.7000, ema_top_1 0.7100), skipped']
    assert lines[-4].split() == ['budget', 'top_1', 'ema_top_1', 'minutes', 'status']
    assert lines[-3].split() == ['ep16', '0.7000', '0.7100', '17.6', 'complete']
    assert lines[-1].startswith(f'report: {out}/report.md')
    table = pd.read_csv(out / 'report.csv')
    assert list(table.run) == ['ep16', 'ep24'] and list(table.epochs) == [16, 24]
    assert (out / 'accuracy_vs_time.png').stat().st_size > 5000 and (out / 'curves_ep24.png').exists()


def test_sweep_and_trainer_decide_with_one_rule(tmp_path):
    """train/runs.py differing_settings decides for the trainer (RunFolder.claim) and the sweep
    (inspect): a folder's recorded facts (dataset.*, hardware, history) the sweep cannot know yet
    never make it another run; a setting either side has and the other lacks does."""
    from fastimagenet.train.runs import RunFolder, differing_settings
    from fastimagenet.train.sweep import inspect, plan
    budget = plan([RN50_88], {'data.val_dataset': 'v.beton'}, [16], tmp_path, None)[0]
    recorded = {**budget.params, 'dataset.train_samples': 1281167, 'dataset.num_classes': 1000,
                'hardware': {'device': 'cuda'}, 'history': [{'from_epoch': 0}], 'precision': 'bf16',
                'data.num_workers': 7}  # free to change
    assert differing_settings(budget.params, recorded) == []
    assert differing_settings({**recorded, 'dataset.train_samples': 5}, recorded) == ['dataset.train_samples']
    assert differing_settings({**budget.params, 'augment.new_key': 1}, recorded) == ['augment.new_key']

    fake_run(budget.folder, [0.1], params=recorded)
    (budget.folder / 'last.pt').write_bytes(b'')
    inspect(budget)
    assert budget.state == 'resume'
    RunFolder(str(budget.folder)).claim(recorded)  # the trainer's side: the same folder is its own run
    fake_run(budget.folder, [0.1], params={**recorded, 'training.label_smoothing': 0.2})
    with pytest.raises(UserError, match='training.label_smoothing=0.2, this sweep has 0.1'):
        inspect(budget)
    with pytest.raises(UserError, match='training.label_smoothing=0.2, this command has 0.1'):
        RunFolder(str(budget.folder)).claim(recorded)
