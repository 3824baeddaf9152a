"""The training and validation loaders' contract with the trainer: the order depends on the seed and
the samples only, batches say what they hold, the model's threads stay the model's, and a failing
decoding thread is an error instead of a hang."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fastimagenet.common.beton import MODE_RAW, BetonWriter

from conftest import script

SIDE, COUNT, PAGE = 64, 400, 1 << 21  # 12 KB raw samples: 170 to a 2 MB page, so 3 pages


def images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8) for _ in range(count)]


def write(path, pixels: list[np.ndarray], reverse_layout: bool):
    """The same samples (same indices, labels, pixels); with `reverse_layout` their bytes lie in the
    file's pages in reverse order, as another scheduling of the converter's workers could place them."""
    with open(path, 'wb') as f:
        writer = BetonWriter(f, capacity=len(pixels), page_size=PAGE)
        per_page = PAGE // pixels[0].nbytes
        order = list(reversed(range(len(pixels)))) if reverse_layout else list(range(len(pixels)))
        where = {}
        for slot, i in enumerate(order):
            where[i] = writer.data_start + (slot // per_page) * PAGE + (slot % per_page) * pixels[i].nbytes
            f.seek(where[i])
            f.write(pixels[i].tobytes())
        for i, image in enumerate(pixels):
            writer.place(MODE_RAW, SIDE, SIDE, where[i], image.nbytes, i % 4)
        writer.finish(shared_pages=-(-len(pixels) // per_page))
    return path


def epochs_of(path, epochs=2, **kw) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    from fastimagenet.train.loaders import train_loader
    data = train_loader(path, batch_size=16, num_workers=2, in_memory=1, res=32, seed=3, distributed=False,
                        device=torch.device('cpu'), **kw)
    out = []
    for epoch in range(epochs):
        data.start_epoch(epoch, 32)
        out += [(x.clone(), y.clone(), i.clone()) for x, y, i in data]
    return out


def test_training_order_depends_on_seed_and_samples_not_on_the_file_layout(tmp_path):
    """The same samples laid out differently in the file give the same batches: a run's result
    depends on its seed and data, not on how the conversion was scheduled (quasi-random page
    order, the previous default, followed the layout, and with class-sorted pages it gave
    batches of a handful of classes)."""
    pixels = images(COUNT)
    a = epochs_of(write(tmp_path / 'a.beton', pixels, reverse_layout=False))
    b = epochs_of(write(tmp_path / 'b.beton', pixels, reverse_layout=True))
    assert len(a) == 2 * (COUNT // 16)
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(ya, yb) and torch.equal(xa, xb)
    first = torch.cat([i for _, _, i in a[:COUNT // 16]])
    assert len(set(first.tolist())) == len(first)  # each sample once per epoch
    assert torch.equal(torch.cat([y for _, y, _ in a]), torch.cat([i for _, _, i in a]) % 4)  # labels, indices agree
    # a batch mixes the whole set: its samples are spread over all three pages
    assert all(len({int(i) // 170 for i in idx}) == 3 for _, _, idx in a[:4])


def test_batches_declare_their_kind_and_the_model_keeps_its_threads(tmp_path):
    from fastimagenet.train.inputs import Normalize
    from fastimagenet.train.loaders import train_loader, val_loader
    path = write(tmp_path / 'a.beton', images(64), reverse_layout=False)
    torch.set_num_threads(2)
    data = train_loader(path, batch_size=16, num_workers=1, in_memory=1, res=32, seed=0, distributed=False,
                        device=torch.device('cpu'))
    val = val_loader(path, batch_size=16, num_workers=1, in_memory=1, res=32, device=torch.device('cpu'))
    assert data.normalized and val.normalized  # a CPU loader normalises in its decoding threads
    for loader in (data, val):
        for batch in loader:
            images_, labels = batch[0], batch[1]
            # ffcv sets torch's thread count to its worker count (1) in iter() and in its thread
            assert torch.get_num_threads() == 2
        x = Normalize(torch.device('cpu'), normalized=loader.normalized)(images_)
        assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(TypeError, match='expected uint8'):
        Normalize(torch.device('cpu'))(images_)  # normalised batches are not taken for raw pixels
    with pytest.raises(TypeError, match='expected normalised float'):
        Normalize(torch.device('cpu'), normalized=True)(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


FAILING_PIPELINE = '''
import sys, numpy as np, torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import SimpleRGBImageDecoder
from ffcv.pipeline.operation import Operation
from ffcv.transforms import ToTensor
from fastimagenet.train.loaders import BatchLoader

class Broken(Operation):  # its code does not compile in numba: ffcv's thread dies on the first batch
    def generate_code(self):
        def broken(images, dst):
            return undefined_name(images)
        return broken
    def declare_state_and_memory(self, previous_state):
        return previous_state, None

loader = BatchLoader(sys.argv[1], batch_size=8, num_workers=1, normalized=False,
                     pipelines={'image': [SimpleRGBImageDecoder(), Broken(), ToTensor()],
                                'label': [IntDecoder(), ToTensor()]})
try:
    next(iter(loader))
except RuntimeError as e:
    print('raised:', str(e)[:80])
'''


def test_a_failing_decoding_thread_is_an_error_not_a_hang(tmp_path):
    path = write(tmp_path / 'a.beton', images(16), reverse_layout=False)
    proc = script('-c', FAILING_PIPELINE, path, timeout=300)  # ffcv alone waits forever here
    assert 'raised: an ffcv decoding thread failed: TypingError' in proc.stdout


def test_an_in_memory_loader_leaves_numbas_array_types_alone(tmp_path):
    """ffcv's OS-cache reader set `.mutable = False` on numba's one uint8[::1] type object: every
    dict keyed by it broke, and a kernel compiled before such a Loader failed with a KeyError
    inside numba when it was next compiled for a new caller (the augmentation tests did, in a
    full run of the suite)."""
    import numba
    bytes_type = numba.typeof(np.zeros(3, np.uint8))
    before = hash(bytes_type)

    @numba.njit
    def total(a):
        return a.sum()

    @numba.njit
    def both(a, b):
        return total(a) + total(b)

    total(np.ones(3, np.uint8))  # keyed by the type before the loader
    epochs_of(write(tmp_path / 'a.beton', images(32), reverse_layout=False), epochs=1)
    assert numba.typeof(np.zeros(3, np.uint8)) is bytes_type and bytes_type.mutable and hash(bytes_type) == before
    assert both(np.ones(3, np.uint8), np.ones(3, np.uint8)) == 6  # typing the call reads total's overloads


def test_importing_ffcv_through_the_project_keeps_torchs_threads():
    """ffcv's first import set torch's thread count to 1; the trainer imports it after choosing."""
    for module in ('fastimagenet.train.augment.per_sample', 'fastimagenet.train.decoders',
                   'fastimagenet.train.loaders'):
        proc = script('-c', f'import torch; torch.set_num_threads(2); import {module}; print(torch.get_num_threads())')
        assert proc.stdout.split() == ['2'], module
