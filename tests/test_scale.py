"""ImageNet-scale counts: bench/scale.py keeps running, and the loaders' tables that it made us
build with numpy (train/loaders.py) are ffcv's own tables, schedules and orders, unchanged."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch

from fastimagenet.common.beton import MODE_RAW, BetonWriter

from conftest import script

SIDE, COUNT, PAGE = 32, 3000, 1 << 21  # 3 KB raw samples: 682 to a 2 MB page, so 5 pages


def scattered(path):
    """COUNT samples whose bytes lie in the pages in a random order, as the converter's workers
    place them: a page holds ids from all over 0..COUNT, so a Python set of them does not iterate
    in sorted order, and the tables' order is really tested."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (COUNT, SIDE, SIDE, 3), dtype=np.uint8)
    slot_of = rng.permutation(COUNT)
    per_page = PAGE // pixels[0].nbytes
    with open(path, 'wb') as f:
        writer = BetonWriter(f, capacity=COUNT, page_size=PAGE)
        where = writer.data_start + (slot_of // per_page) * PAGE + (slot_of % per_page) * pixels[0].nbytes
        for i in range(COUNT):
            f.seek(int(where[i]))
            f.write(pixels[i].tobytes())
        for i in range(COUNT):
            writer.place(MODE_RAW, SIDE, SIDE, int(where[i]), pixels[i].nbytes, i % 10)
        writer.finish(shared_pages=-(-COUNT // per_page))
    return path


def ffcv_original(monkeypatch):
    """Put ffcv's own table builders and process-cache schedule back, for this test only."""
    from fastimagenet.train.loaders import FFCV_ORIGINALS
    for (cls, name), fn in FFCV_ORIGINALS.items():
        monkeypatch.setattr(cls, name, fn)


def test_array_tables_read_like_ffcv_dicts_of_sets():
    from fastimagenet.train.loaders import _ArrayTable
    keys, values = np.array([5, 3, 5, 9, 5], dtype='u8'), np.array([7, 2, 1, 4, 7], dtype='u8')
    theirs = defaultdict(set)
    for k, v in zip(keys, values):
        theirs[k].add(v)
    ours = _ArrayTable(keys, values, sets=True)
    assert list(ours) == list(theirs) == [5, 3, 9] and len(ours) == 3  # first-seen order, as a dict
    assert all(list(ours[k]) == list(theirs[k]) for k in theirs)
    assert ours[4] == set() and 4 not in ours and 5 in ours and ours[-1] == set()
    plain = _ArrayTable(keys, values, sets=False)
    assert dict(plain) == dict(zip(keys.tolist(), values.tolist()))  # a repeated key keeps its last value
    with pytest.raises(KeyError):
        plain[4]
    dense = _ArrayTable(np.array([2, 0, 1], dtype='u8'), np.array([9, 8, 7], dtype='u8'), sets=True)
    assert dense.dense().tolist() == [8, 7, 9] and dense[2] == {9} and dense[3] == set()
    assert _ArrayTable(keys, values, sets=True).dense() is None


def test_memory_tables_and_quasi_random_rows_are_ffcvs(tmp_path):
    from ffcv.memory_managers.base import MemoryManager
    from ffcv.reader import Reader

    from fastimagenet.train.loaders import FFCV_ORIGINALS, QuasiRandom, _page_rows_with_numpy, _tables_as_arrays

    class Tables(MemoryManager):  # the tables alone, without a loader
        schedule_epoch = compile_reader = state_type = None

    reader = Reader(str(scattered(tmp_path / 'a.beton')))
    theirs, ours = Tables.__new__(Tables), Tables.__new__(Tables)
    FFCV_ORIGINALS[(MemoryManager, '__init__')](theirs, reader)
    _tables_as_arrays(ours, reader)
    assert np.array_equal(theirs.ptrs, ours.ptrs) and np.array_equal(theirs.sizes, ours.sizes)
    assert dict(ours.ptr_to_size) == theirs.ptr_to_size
    for name in ('sample_to_pages', 'page_to_samples'):
        a, b = getattr(theirs, name), getattr(ours, name)
        assert list(a) == list(b) and all(list(a[k]) == list(b[k]) for k in a), name
    page = next(iter(theirs.page_to_samples.values()))
    assert list(page) != sorted(page)  # the order below is a real test

    class Rows:
        pass
    for indices in (np.arange(COUNT, dtype='u8'), np.random.default_rng(1).choice(COUNT, COUNT // 3, replace=False)):
        a, b = Rows(), Rows()
        a.page_to_samples, a.indices = theirs.page_to_samples, indices
        b.page_to_samples, b.indices = ours.page_to_samples, indices
        FFCV_ORIGINALS[(QuasiRandom, 'prepare_data_structures')](a)
        _page_rows_with_numpy(b)
        assert a.page_to_samples_array.shape == b.page_to_samples_array.shape
        assert np.array_equal(a.page_sizes, b.page_sizes)
        for p, size in enumerate(a.page_sizes):
            assert np.array_equal(a.page_to_samples_array[p, :size], b.page_to_samples_array[p, :size])


def batches_of(path, epochs=2):
    """What the trainer's loader gives with in_memory=0: quasi-random order through the process cache."""
    from fastimagenet.train.loaders import train_loader
    data = train_loader(path, batch_size=64, num_workers=2, in_memory=0, res=16, seed=3, distributed=False,
                        device=torch.device('cpu'))
    out = []
    for epoch in range(epochs):
        data.start_epoch(epoch, 16)
        out += [(x.clone(), i.clone()) for x, _, i in data]
        schedule = data.loader._epoch.memory_context.schedule
        out.append((schedule.num_slots, dict(schedule.page_to_slot)))
    return out


def test_process_cache_loader_gives_ffcvs_batches_and_schedule(tmp_path, monkeypatch):
    path = scattered(tmp_path / 'a.beton')
    ours = batches_of(path)
    with monkeypatch.context() as m:
        ffcv_original(m)
        theirs = batches_of(path)
    assert len(ours) == len(theirs) == 2 * (COUNT // 64 + 1)
    for a, b in zip(ours, theirs):
        if isinstance(a[0], int):  # an epoch's schedule: the same slots for the same pages
            assert a == b
        else:
            assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])


def test_scale_bench_runs_on_an_imagenet_shaped_set(tmp_path):
    """The whole benchmark on 2000 images over 1000 classes (no figures checked: they are the machine's)."""
    data = tmp_path / 'scale'
    proc = script('bench/scale.py', '--sizes=2000', '--classes=1000', f'--data-dir={data}', '--batch-size=32',
                  '--batches=3', '--workers=2', timeout=900)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    (result,) = report['results']
    assert result['n'] == 2000 and result['convert']['images'] == 2000 and result['convert']['pss_mb'] > 0
    assert result['verify']['img_s'] > 0
    loaders = result['loaders']
    assert set(loaders) == {'train', 'train_touched', 'train_quasi', 'val', 'ddp_rank'}
    assert all(p['samples'] == 2000 and p['steady_img_s'] > 0 and p['buffers_mb'] > 0 for p in loaders.values())
    assert loaders['train']['batches'] == 2000 // 32 and loaders['val']['batches'] == -(-2000 // 32)
    assert loaders['ddp_rank']['batches'] == 2000 // 8 // 32  # rank 0's share of 8
    assert loaders['train_quasi']['process_cache_mb'] > 0 and loaders['train']['beton_mapped_rss_mb'] > 0
    # touched: the whole file is in this process's mapping, not only the pages 3 batches read
    assert loaders['train_touched']['touch_s'] >= 0
    assert loaders['train_touched']['beton_mapped_rss_mb'] > 2 * loaders['train']['beton_mapped_rss_mb']
    assert not data.exists()  # the generated images and .beton are gone


def test_scale_summary_compares_per_image_costs_across_sizes():
    from fastimagenet.bench.scale import summarize

    def result(n, convert_img_s, us_per_img, construction_s, beyond_mb):
        probe = {'steady_us_per_img': us_per_img, 'construction_s': construction_s, 'beyond_buffers_mb': beyond_mb}
        return {'n': n, 'convert': {'img_s': convert_img_s}, 'loaders': {'train': probe}}
    summary = summarize([result(40_000, 1000, 10, 2, 100), result(1_281_167, 900, 11, 3, 300)])
    assert summary['per_image_growth'] == {'convert': pytest.approx(1.111, abs=1e-3), 'train': 1.1}
    assert summary['flat'] and summary['construction_ok'] and summary['memory_ok']
    # cheaper per image at the larger N (a small N's start-up spread over few images): flat, not growth
    summary = summarize([result(40_000, 500, 20, 2, 100), result(1_281_167, 1000, 10, 3, 300)])
    assert summary['per_image_growth'] == {'convert': 0.5, 'train': 0.5} and summary['flat']
    summary = summarize([result(40_000, 1000, 10, 2, 100), result(1_281_167, 700, 11, 12, 3000)])
    assert not summary['flat'] and not summary['construction_ok'] and not summary['memory_ok']
