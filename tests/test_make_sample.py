"""The built-in procedural sample dataset: layout, real JPEG files, synsets.txt, determinism."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from fastimagenet.common.classes import read_synset_names
from fastimagenet.convert.make_sample import CLASSES, write_sample

from conftest import script

TRAIN, VAL = 3, 2


@pytest.fixture(scope='module')
def sample(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp('sample')
    return out, write_sample(out, train_per_class=TRAIN, val_per_class=VAL, seed=0, workers=1)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def test_tree_and_counts(sample):
    out, counts = sample
    n = len(CLASSES)
    assert counts == {'classes': n, 'train': n * TRAIN, 'val': n * VAL}
    for split, per_class in (('train', TRAIN), ('val', VAL)):
        folders = sorted(p.name for p in (out / split).iterdir())
        assert len(folders) == n and all(re.fullmatch(r'[a-z]\d{8}', f) for f in folders)
        for f in folders:
            names = sorted(p.name for p in (out / split / f).iterdir())
            assert names == sorted(f'{f}_{i}.JPEG' for i in range(per_class))
    assert sorted(p.name for p in out.iterdir()) == ['synsets.txt', 'train', 'val']


def test_files_are_rgb_jpegs_of_imagenet_like_sizes(sample):
    out, _ = sample
    ratios = set()
    for path in out.rglob('*.JPEG'):
        with Image.open(path) as img:
            assert img.format == 'JPEG' and img.mode == 'RGB', path
            w, h = img.size
            assert 300 <= w <= 500 and 300 <= h <= 500, (path, img.size)
            img.load()  # decodes completely
        ratios.add(round(w / h, 1))
    assert any(r > 1 for r in ratios) and any(r < 1 for r in ratios) and len(ratios) >= 4, ratios


def test_synsets_name_every_class_folder(sample):
    out, _ = sample
    lines = (out / 'synsets.txt').read_text().splitlines()
    assert all(re.fullmatch(r'\S+ \S.*', line) for line in lines)
    names = read_synset_names(out / 'synsets.txt')  # the converter's own reader
    assert sorted(names) == sorted(p.name for p in (out / 'train').iterdir())
    assert sorted(names) == sorted(p.name for p in (out / 'val').iterdir())
    assert list(names.values()) == list(CLASSES)


def test_converter_reads_the_layout(sample):
    from fastimagenet.convert.layout import find_split
    out, _ = sample
    val = find_split(out, 'val')
    assert val.classes.names == list(CLASSES)
    assert len(val.samples) == len(CLASSES) * VAL
    assert sorted({label for _, label in val.samples}) == list(range(len(CLASSES)))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    tiny = dict(train_per_class=2, val_per_class=1, classes=3)
    write_sample(tmp_path / 'a', seed=7, workers=1, **tiny)
    write_sample(tmp_path / 'b', seed=7, workers=2, **tiny)  # and the same with a process pool
    write_sample(tmp_path / 'c', seed=8, workers=1, **tiny)
    a, b, c = (files(tmp_path / d) for d in 'abc')
    assert len(a) == 3 * 3 + 1 and a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.endswith('.JPEG'))


def test_rewrite_replaces_a_previous_sample_but_not_other_data(tmp_path):
    write_sample(tmp_path / 's', train_per_class=2, val_per_class=1, classes=2, workers=1)
    counts = write_sample(tmp_path / 's', train_per_class=1, val_per_class=1, classes=1, workers=1)
    assert counts == {'classes': 1, 'train': 1, 'val': 1}
    assert len(list((tmp_path / 's').rglob('*.JPEG'))) == 2  # no stale files or classes

    (tmp_path / 'other' / 'train' / 'n01440764').mkdir(parents=True)
    with pytest.raises(FileExistsError):
        write_sample(tmp_path / 'other', train_per_class=1, val_per_class=1, classes=1, workers=1)
    assert (tmp_path / 'other' / 'train' / 'n01440764').is_dir()


def test_command_line(tmp_path):
    proc = script('convert/make_sample.py', '--out', tmp_path / 'cli', '--train-per-class', '1',
                  '--val-per-class', '1', '--classes', '2', '--seed', '3')
    assert re.fullmatch(r'wrote 2 train \+ 2 val images of 2 classes to .*cli in [\d.]+s\n', proc.stdout)
    assert len(list((tmp_path / 'cli').rglob('*.JPEG'))) == 4
