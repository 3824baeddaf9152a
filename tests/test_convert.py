"""The converter, run as users run it, on generated ImageFolder and Kaggle layouts and bad files."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastimagenet.common.beton import BetonFile
from fastimagenet.common.classes import read_info

from conftest import ROOT, WNIDS, error_line, finish, photo, script, start_until_fault, write_class_folders

WRITER = 'convert/write_imagenet.py'


def convert(data_dir, write_path, *extra, check=True):
    return script(WRITER, f'--cfg.data_dir={data_dir}', f'--cfg.write_path={write_path}',
                  '--cfg.num_workers=2', *extra, check=check)


def labels_by_file(beton: Path) -> dict[int, int]:
    return dict(enumerate(BetonFile(beton).labels.tolist()))


def test_imagefolder_round_trip_both_splits(imagefolder, tmp_path):
    out = tmp_path / 'ffcv'
    proc = convert(imagefolder, f'{out}/', '--cfg.split=both', '--cfg.write_mode=raw', '--cfg.max_resolution=100')
    assert 'wrote 24 images' in proc.stdout and 'wrote 9 images' in proc.stdout

    train, val = BetonFile(out / 'train.beton'), BetonFile(out / 'val.beton')
    assert train.num_samples == 24 and val.num_samples == 9
    assert train.labels.tolist() == [c for c in range(4) for _ in range(6)]
    assert val.labels.tolist() == [c for c in range(3) for _ in range(3)]  # same indices as train
    info = read_info(out / 'val.beton')
    assert info.classes.wnids == WNIDS and info.split == 'val' and info.num_samples == 9
    assert info.extra['counts_per_class'] == [3, 3, 3, 0]

    # raw mode stores exactly the shrunk RGB pixels (max side 100, INTER_AREA as ffcv)
    from fastimagenet.common.images import load_rgb
    expected = load_rgb(imagefolder / 'train' / WNIDS[1] / f'{WNIDS[1]}_2.JPEG', 100)
    assert expected.shape == (75, 100, 3)
    np.testing.assert_array_equal(train.image(6 + 2), expected)


def test_jpeg_mode_close_to_source_and_readable_by_stock_ffcv(imagefolder, tmp_path):
    out = tmp_path / 'train.beton'
    convert(imagefolder / 'train', out, '--cfg.split=train', '--cfg.write_mode=jpg', '--cfg.jpeg_quality=95')
    beton = BetonFile(out)
    src = np.asarray(Image.open(imagefolder / 'train' / WNIDS[0] / f'{WNIDS[0]}_0.JPEG').convert('RGB'))
    assert np.abs(beton.image(0).astype(int) - src).mean() < 3

    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor
    loader = Loader(str(out), batch_size=8, num_workers=1, order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines={'image': [CenterCropRGBImageDecoder((32, 32), 1.0), ToTensor()],
                               'label': [IntDecoder(), ToTensor()]})
    labels = np.concatenate([y.numpy().ravel() for _, y in loader])
    assert labels.tolist() == beton.labels.tolist()


def test_public_writer_call_unchanged(imagefolder, tmp_path):
    """What ffcv-imagenet's write_imagenet.sh runs, key for key, and the shell script itself."""
    out = tmp_path / 'train_500_0.50_90.ffcv'
    script(WRITER, '--cfg.dataset=imagenet', '--cfg.split=train', f'--cfg.data_dir={imagefolder}/train',
           f'--cfg.write_path={out}', '--cfg.max_resolution=500', '--cfg.write_mode=proportion',
           '--cfg.compress_probability=0.50', '--cfg.jpeg_quality=90', '--cfg.num_workers=2',
           '--cfg.chunk_size=5', '--cfg.subset=-1')
    assert BetonFile(out).num_samples == 24
    env = {'IMAGENET_DIR': str(imagefolder), 'WRITE_DIR': str(tmp_path / 'sh'),
           'PATH': f'{Path(sys.executable).parent}:{os.environ["PATH"]}'}  # as with the venv activated
    (tmp_path / 'sh').mkdir()
    proc = subprocess.run(['bash', 'convert/write_imagenet.sh', '500', '0.50', '90'], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert BetonFile(tmp_path / 'sh' / 'train_500_0.50_90.ffcv').num_samples == 24
    assert BetonFile(tmp_path / 'sh' / 'val_500_0.50_90.ffcv').num_samples == 9


def test_proportion_is_deterministic_across_worker_counts(imagefolder, tmp_path):
    a, b = tmp_path / 'a.beton', tmp_path / 'b.beton'
    args = ('--cfg.split=train', '--cfg.write_mode=proportion', '--cfg.compress_probability=0.5',
            '--cfg.chunk_size=4')
    script(WRITER, f'--cfg.data_dir={imagefolder}', f'--cfg.write_path={a}', '--cfg.num_workers=1', *args)
    script(WRITER, f'--cfg.data_dir={imagefolder}', f'--cfg.write_path={b}', '--cfg.num_workers=2', *args)
    one, two = BetonFile(a), BetonFile(b)  # where samples land may differ; what they hold may not
    for field in ('mode', 'height', 'width'):
        assert one.image_meta[field].tolist() == two.image_meta[field].tolist()
    assert one.labels.tolist() == two.labels.tolist()
    assert all((one.image_bytes(i) == two.image_bytes(i)).all() for i in range(len(one)))
    modes = one.image_meta['mode']
    assert 0 < modes.sum() < len(modes)  # some raw, some JPEG


def test_subset_takes_the_first_images(imagefolder, tmp_path):
    out = tmp_path / 'sub.beton'
    convert(imagefolder, out, '--cfg.split=train', '--cfg.subset=8')
    assert BetonFile(out).labels.tolist() == [0] * 6 + [1] * 2


def kaggle_download(root: Path, val_wnids: list[str]) -> Path:
    cls_loc = root / 'ILSVRC' / 'Data' / 'CLS-LOC'
    write_class_folders(cls_loc / 'train', {w: 4 for w in WNIDS}, seed=3)
    (cls_loc / 'val').mkdir(parents=True)
    rows = []
    for i, wnid in enumerate(val_wnids):
        image_id = f'ILSVRC2012_val_{i + 1:08d}'
        photo(500 + i).save(cls_loc / 'val' / f'{image_id}.JPEG')
        rows.append((image_id, f'{wnid} 1 2 30 40 {wnid} 5 6 70 80'))
    with open(root / 'LOC_val_solution.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['ImageId', 'PredictionString'])
        w.writerows(rows)
    (root / 'LOC_synset_mapping.txt').write_text(
        ''.join(f'{w} name{i}, other words\n' for i, w in enumerate(WNIDS)))
    return root


@pytest.mark.parametrize('start', ['root', 'cls-loc'])
def test_kaggle_layout(tmp_path, start):
    val_wnids = [WNIDS[2], WNIDS[0], WNIDS[2], WNIDS[3], WNIDS[1]]
    root = kaggle_download(tmp_path / 'kaggle', val_wnids)
    data_dir = root if start == 'root' else root / 'ILSVRC' / 'Data' / 'CLS-LOC'
    out = tmp_path / 'out'
    convert(data_dir, f'{out}/', '--cfg.split=both')
    assert BetonFile(out / 'train.beton').labels.tolist() == [c for c in range(4) for _ in range(4)]
    assert BetonFile(out / 'val.beton').labels.tolist() == [WNIDS.index(w) for w in val_wnids]
    info = read_info(out / 'val.beton')
    assert info.classes.names == ['name0', 'name1', 'name2', 'name3']
    assert info.extra['layout'] == 'kaggle-flat'


def test_kaggle_val_given_alone_and_bad_labels(tmp_path):
    root = kaggle_download(tmp_path / 'kaggle', [WNIDS[1], WNIDS[3]])
    val_dir = root / 'ILSVRC' / 'Data' / 'CLS-LOC' / 'val'
    convert(val_dir, tmp_path / 'val.beton', '--cfg.split=val')
    assert BetonFile(tmp_path / 'val.beton').labels.tolist() == [1, 3]

    # a wnid the train split lacks: an error before anything is written
    text = (root / 'LOC_val_solution.csv').read_text().replace(WNIDS[3], 'n09999999')
    (root / 'LOC_val_solution.csv').write_text(text)
    proc = convert(val_dir, tmp_path / 'bad.beton', '--cfg.split=val', check=False)
    assert 'the train split lacks' in error_line(proc) and 'n09999999' in error_line(proc)
    assert not (tmp_path / 'bad.beton').exists()

    (root / 'LOC_val_solution.csv').unlink()
    proc = convert(val_dir, tmp_path / 'bad.beton', '--cfg.split=val', check=False)
    assert 'LOC_val_solution.csv' in error_line(proc)


def test_val_folder_alone_uses_train_classes(imagefolder, tmp_path):
    convert(imagefolder / 'val', tmp_path / 'val.beton', '--cfg.split=val')
    assert read_info(tmp_path / 'val.beton').classes.wnids == WNIDS
    # without a train/ beside it, labels need the train class list
    alone = tmp_path / 'only' / 'val'
    shutil.copytree(imagefolder / 'val', alone)
    proc = convert(alone, tmp_path / 'x.beton', '--cfg.split=val', check=False)
    assert 'class_list' in error_line(proc)
    convert(imagefolder / 'train', tmp_path / 'train.beton', '--cfg.split=train')
    convert(alone, tmp_path / 'x.beton', '--cfg.split=val', f'--cfg.class_list={tmp_path}/train.beton.json')
    assert BetonFile(tmp_path / 'x.beton').labels.tolist() == BetonFile(tmp_path / 'val.beton').labels.tolist()


def write_bad_inputs(folder: Path) -> dict[str, object]:
    """Every kind of awkward file ImageNet and user folders hold; returns what each should become."""
    folder.mkdir(parents=True, exist_ok=True)
    good = photo(7, (120, 90))
    good.save(folder / 'a_good.JPEG')
    (folder / 'b_empty.JPEG').write_bytes(b'')
    data = (folder / 'a_good.JPEG').read_bytes()
    (folder / 'c_truncated.JPEG').write_bytes(data[:len(data) // 2])
    (folder / 'd_text.JPEG').write_text('not an image\n')
    good.save(folder / 'e_png_named.JPEG', format='PNG')
    Image.new('RGB', (64, 48), (255, 0, 0)).convert('CMYK').save(folder / 'f_cmyk.JPEG', quality=95)
    Image.new('L', (64, 48), 77).save(folder / 'g_gray.JPEG', quality=95)
    rotated = Image.new('RGB', (80, 40), (255, 0, 0))
    rotated.paste((0, 0, 255), (40, 0, 80, 40))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    rotated.save(folder / 'h_exif.JPEG', exif=exif, quality=95)
    Image.new('P', (30, 20), 3).save(folder / 'i_palette.png')
    rgba = Image.new('RGBA', (30, 20), (0, 255, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 15, 20))  # left half transparent
    rgba.save(folder / 'j_rgba.png')
    Image.fromarray((np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)).save(folder / 'k_16bit.png')
    return {'skipped': {'b_empty.JPEG': 'empty', 'c_truncated.JPEG': 'truncated', 'd_text.JPEG': 'identify'},
            'png': np.asarray(good)}


def test_bad_inputs_skipped_and_reported_others_correct(tmp_path):
    data = tmp_path / 'data'
    expect = write_bad_inputs(data / 'train' / 'n00000001')
    write_class_folders(data / 'train', {'n00000002': 2})
    (data / 'train' / 'n00000003').mkdir()  # an empty class folder: its label stays reserved
    out = tmp_path / 'train.beton'
    proc = convert(data / 'train', out, '--cfg.split=train', '--cfg.write_mode=raw')
    assert 'skipped 3' in proc.stdout and 'empty class folder' in proc.stdout

    with open(f'{out}.skipped.csv') as f:
        report = {Path(r['path']).name: r['reason'] for r in csv.DictReader(f)}
    assert set(report) == set(expect['skipped'])
    for name, word in expect['skipped'].items():
        assert word in report[name]

    beton = BetonFile(out)
    info = read_info(out)
    assert info.classes.wnids == ['n00000001', 'n00000002', 'n00000003'] and info.num_samples == 10
    assert beton.labels.tolist() == [0] * 8 + [1] * 2
    images = [beton.image(i) for i in range(8)]  # files a, e..k in name order
    png_named, cmyk, gray, exif, palette, rgba, sixteen = images[1:]
    np.testing.assert_array_equal(png_named, expect['png'])
    assert np.abs(cmyk.astype(int) - [255, 0, 0]).max() < 8
    assert (gray == 77).all() or np.abs(gray.astype(int) - 77).max() <= 2
    assert exif.shape == (80, 40, 3)  # upright: 40 wide, 80 tall, red on top
    assert exif[5, 20].tolist()[0] > 200 and exif[75, 20].tolist()[2] > 200
    assert palette.shape == (20, 30, 3)
    assert rgba[10, 5].tolist() == [255, 255, 255] and rgba[10, 25].tolist() == [0, 255, 0]
    np.testing.assert_array_equal(sixteen[:, :, 0].ravel(), np.arange(256))


@pytest.mark.parametrize('case', ['missing', 'empty', 'file', 'no_classes'])
def test_bad_data_dir(tmp_path, case):
    data = tmp_path / 'data'
    if case == 'empty':
        data.mkdir()
    elif case == 'file':
        data.write_text('x')
    elif case == 'no_classes':
        (data / 'train').mkdir(parents=True)
        photo(1).save(data / 'train' / 'x.JPEG')
    proc = convert(data, tmp_path / 'o.beton', '--cfg.split=train', check=False)
    assert str(data) in error_line(proc) or 'class folders' in error_line(proc)
    assert not (tmp_path / 'o.beton').exists()


def test_unknown_config_key_in_yaml(imagefolder, tmp_path):
    cfg = tmp_path / 'c.yaml'
    cfg.write_text('cfg:\n  max_resolutoin: 100\n')
    proc = script(WRITER, f'--config-file={cfg}', f'--cfg.data_dir={imagefolder}',
                  f'--cfg.write_path={tmp_path}/o.beton', check=False)
    assert "unknown key 'cfg.max_resolutoin'" in error_line(proc) and 'cfg.max_resolution' in error_line(proc)


def left_behind(pgid: int, timeout: float = 60) -> list[int]:
    """Processes of the group still running (workers that outlived their converter) once none
    is or `timeout` s have passed; those are then killed, to leave no strays behind a failure."""
    deadline = time.monotonic() + timeout
    while (live := running_in_group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in live:
        os.kill(pid, signal.SIGKILL)
    return live


def running_in_group(pgid: int) -> list[int]:
    running = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            state, _, group = stat.read_text().rsplit(')', 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # it ended while we looked
        if int(group) == pgid and state not in 'ZX':  # a zombie is dead, only not yet reaped
            running.append(int(stat.parent.name))
    return running


def test_killed_conversion_leaves_nothing_that_looks_valid(tmp_path):
    """Interrupted or killed midway, the converter leaves nothing at its output path, its workers
    end with it, and what a SIGKILL leaves behind is hidden and cleaned by the next run."""
    data = tmp_path / 'data'
    write_class_folders(data / 'train', {'n00000001': 15, 'n00000002': 15})  # 6 chunks of 5
    out = tmp_path / 'out' / 'train.beton'
    out.parent.mkdir()
    temps = lambda: list(out.parent.glob('.train.beton.tmp-*'))
    # Ctrl-C reaches the whole process group; the OOM killer, the converter alone.
    # SIGKILL last: its leftovers are checked below.
    for sig, whom in ((signal.SIGINT, 'group'), (signal.SIGKILL, 'group'), (signal.SIGKILL, 'parent')):
        # stopped once 10 of the 30 images are recorded: midway, whatever the machine's speed
        proc = start_until_fault([WRITER, f'--cfg.data_dir={data}', f'--cfg.write_path={out}', '--cfg.split=train',
                                  '--cfg.num_workers=2', '--cfg.chunk_size=5'], 'convert.placed:10', tmp_path, 120)
        assert temps() and not out.exists()
        (os.killpg if whom == 'group' else os.kill)(proc.pid, sig)
        done = finish(proc)
        assert done.returncode == (130 if sig == signal.SIGINT else -sig), done.stderr[-2000:]
        assert not out.exists(), f'{sig!r} left {out}'
        assert not Path(f'{out}.json').exists()
        assert not left_behind(proc.pid), f'workers outlived a converter killed by {sig!r} ({whom})'
        if sig == signal.SIGINT:  # handled: the temp file is gone too
            assert 'interrupted' in done.stderr and not temps()
    assert len(temps()) == 1  # the last SIGKILLed run's, hidden (that run had removed the one before)

    # the next run cleans the dead writer's temp file and completes
    convert(data, out, '--cfg.split=train', '--cfg.subset=20')
    assert BetonFile(out).num_samples == 20
    assert not temps()


@pytest.mark.parametrize('command', ['convert', 'verify'])
def test_dead_worker_is_one_line_and_leaves_nothing(imagefolder, tmp_path, command):
    """A worker killed as the OOM killer kills (SIGKILL) ends the command at once with one line
    of error, nothing half-written at the output path, and no process left behind."""
    out = tmp_path / 'out' / 'train.beton'
    if command == 'convert':
        args = [f'--cfg.data_dir={imagefolder}', '--cfg.split=train', '--cfg.chunk_size=5']
        fault = 'convert.worker_encoded:7'  # in the 2nd of 5 chunks: the other worker goes on
    else:
        convert(imagefolder, out, '--cfg.split=train')
        before = out.read_bytes()
        args, fault = ['--cfg.verify=1'], 'verify.worker_checked:7'
    proc = start_until_fault([WRITER, f'--cfg.write_path={out}', '--cfg.num_workers=2', *args], fault, tmp_path, 120)
    worker = proc.fault_pid
    assert worker != proc.pid
    os.kill(worker, signal.SIGKILL)
    line = error_line(finish(proc))
    who = 'conversion' if command == 'convert' else 'verify'
    assert line.startswith(f'error: a {who} worker (pid {worker}) died, killed by signal 9 (SIGKILL'), line
    assert str(out) in line and 'rerun' in line
    if command == 'convert':
        assert not out.exists() and not Path(f'{out}.json').exists()
    else:
        assert out.read_bytes() == before
    assert not list(out.parent.glob('.*.tmp-*'))
    assert not left_behind(proc.pid)


def test_verify_mode(imagefolder, tmp_path):
    out = tmp_path / 'v.beton'
    proc = convert(imagefolder, out, '--cfg.split=val', '--cfg.write_mode=jpg', '--cfg.verify=1')
    assert 'every image decodes' in proc.stdout
    assert '\r' not in proc.stderr  # not a terminal: no progress bar frames (common/progress.py)
    proc = script(WRITER, f'--cfg.write_path={out}', '--cfg.verify=1')
    assert 'OK, 9 images, 4 classes' in proc.stdout

    # damage one stored JPEG: verify must say so
    beton = BetonFile(out)
    ptr = int(beton.image_meta[4]['data_ptr'])
    with open(out, 'r+b') as f:
        f.seek(ptr)
        f.write(b'\x00' * 64)
    proc = script(WRITER, f'--cfg.write_path={out}', '--cfg.verify=1', check=False)
    assert 'do not decode' in error_line(proc)

    json_path = Path(f'{out}.json')
    info = json.loads(json_path.read_text())
    info['num_samples'] = 10
    json_path.write_text(json.dumps(info))
    proc = script(WRITER, f'--cfg.write_path={out}', '--cfg.verify=1', check=False)
    assert 'mismatched' in error_line(proc)


def test_full_disk_is_one_line_and_leaves_nothing(imagefolder, tmp_path):
    """A worker's write failing (here: a 4 MB file-size limit, before the first data page)
    is one line of error, and neither the .beton nor its temporary file is left behind."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))

    out = tmp_path / 'out' / 'train.beton'
    proc = subprocess.run([sys.executable, WRITER, f'--cfg.data_dir={imagefolder}', f'--cfg.write_path={out}',
                           '--cfg.split=train', '--cfg.num_workers=2'], cwd=ROOT, capture_output=True,
                          text=True, preexec_fn=limit_file_size, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert error_line(proc).startswith(f'error: could not write {out}: File too large')
    assert not out.exists() and not list(out.parent.glob('.train.beton.tmp-*'))


def test_progress_is_plain_lines_off_a_terminal():
    """In a log file (nohup, tee), counted work reports plain lines with its rate and ETA."""
    import io
    from fastimagenet.common.progress import CountProgress
    log = io.StringIO()
    with CountProgress(100, 'train -> train.beton', every=0, stream=log) as bar:
        bar.update(40, skipped=1)
        bar.update(60, skipped=1)  # done: the command's own summary line follows
    lines = log.getvalue().splitlines()
    assert '\r' not in log.getvalue() and len(lines) == 1
    assert lines[0].startswith('train -> train.beton: 40/100 img  ') and ' img/s  ETA ' in lines[0]
    assert lines[0].endswith('skipped 1')
