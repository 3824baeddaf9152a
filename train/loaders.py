"""FFCV loaders for training and validation, built one way for the trainer, analysis and benchmarks.

What a loader hands out (`BatchLoader.normalized` says which, and inputs.Normalize checks it):
channels_last NCHW batches, uint8 on a GPU (4x less to copy; inputs.Normalize turns them into
model input there), already normalised float32 on a CPU (normalised in ffcv's decoding
threads, so the main thread is left to the model). Training batches also carry each
sample's dataset index, from which the batch-side augmentations draw (train/draws.py).

Importing this module imports ffcv (seconds of numba start-up): the trainer does it only
once its arguments are checked.
"""
from __future__ import annotations

import queue
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numba
import numpy as np
import torch

from . import ffcv_import  # noqa: F401  (first: ffcv's import would set torch's threads to 1)
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader as FfcvLoader
from ffcv.loader import OrderOption
from ffcv.loader.epoch_iterator import IS_CUDA, EpochIterator
from ffcv.memory_managers import OSCacheManager, ProcessCacheManager
from ffcv.memory_managers.base import MemoryManager
from ffcv.memory_managers.process_cache.context import ProcessCacheContext
from ffcv.memory_managers.process_cache.schedule import ScheduleExecutor, compute_schedule
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.traversal_order.quasi_random import QuasiRandom
from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage

from fastimagenet.common.beton import BetonFile

from .decoders import RandomResizedCropFlipDecoder
from .inputs import IMAGENET_MEAN, IMAGENET_STD, VAL_CROP_RATIO


def _numba_threads_only(cls, n: int) -> None:
    # ffcv's version also calls torch.set_num_threads(n), from __iter__ and again from its
    # producer thread, so the model's thread count would be whatever the loader last said
    # (one decoding thread meant a one-core model). Decoding threads are numba's business only:
    # torch's count is set once per process (train/devices.py configure).
    cls.num_threads = n if n >= 1 else numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(min(cls.num_threads, numba.config.NUMBA_NUM_THREADS))


Compiler.set_num_threads = classmethod(_numba_threads_only)


class _Epoch(EpochIterator):
    """ffcv's epoch iterator, except that a failing decoding thread is an error in the training
    loop: ffcv's producer thread dies with the exception and the loop waits forever for a batch."""

    def run(self):
        try:
            super().run()
        except BaseException as e:
            self.failure = e
            self.output_queue.put(_FAILED)

    def __next__(self):  # ffcv's, plus the failure
        result = self.output_queue.get()
        if result is _FAILED:
            self.close()
            raise RuntimeError(f'an ffcv decoding thread failed: {type(self.failure).__name__}: '
                               f'{self.failure}'.splitlines()[0]) from self.failure
        if result is None:
            self.close()
            raise StopIteration()
        slot, batch = result
        if IS_CUDA:  # the batch's copy to the device was queued on its own stream
            self.current_stream.wait_stream(self.cuda_streams[slot])
        return batch


_FAILED = object()


# ---- ffcv's OS-cache reader, without corrupting numba's types -----------------------------------
# ffcv 1.0.2's OSCacheManager.state_type (in_memory=1) marks its data type read-only by setting
# `.mutable = False` on numba's interned uint8[::1], the one object every uint8 1-D C array in
# the process is typed as. That changes the type's hash under every dict already keyed by it:
# a kernel compiled before the first such Loader and called after it fails inside numba with a
# KeyError (tests/test_loaders.py shows it). The same reader, typed with a read-only type of its own.
_READ_ONLY_BYTES = numba.types.Array(numba.types.uint8, 1, 'C', readonly=True)
_OS_CACHE_STATE = numba.types.Tuple([_READ_ONLY_BYTES, numba.types.uint64[::1], numba.types.uint64[::1]])


def _os_cache_reader(self):
    def read(address, mem_state):
        size = mem_state[2][np.searchsorted(mem_state[1], address)]
        return mem_state[0][address:address + size]
    return Compiler.compile(read, _READ_ONLY_BYTES(numba.types.uint64, _OS_CACHE_STATE))


OSCacheManager.state_type = property(lambda self: _OS_CACHE_STATE)
OSCacheManager.compile_reader = _os_cache_reader


# ---- ffcv's per-sample tables as arrays -------------------------------------------------------
# ffcv 1.0.2 builds its loaders' lookup tables and its process cache's epoch schedule in Python
# loops over every sample. Measured here at ImageNet's 1,281,167 samples (2 cores): Loader() took
# 3.4 s and 700 MB more in every process (each DDP rank) with in_memory=1, 7.4 s with in_memory=0,
# whose every epoch then waited 3.9 s for its first batch; from numpy, 0.7 s and 120 MB, 2.1 s,
# 1.8 s (bench/RESULTS.md). The same tables and schedules, for every ffcv loader in a process
# that imports this module.

class _ArrayTable(Mapping):
    """One of ffcv's per-sample lookup tables, over two parallel arrays (key i pairs with value i)
    instead of a Python object per sample: sorted on first use, then looked up by binary search,
    or by index where the keys are 0..n-1 once each, as sample ids are.

    With `sets`, key -> the set of its values, built in table order (so it iterates as ffcv's
    own set did), and a missing key gives an empty set (ffcv's were defaultdict(set)); without,
    key -> its value, the last of a repeated key's, KeyError if missing (ffcv's dict)."""

    def __init__(self, keys: np.ndarray, values: np.ndarray, sets: bool):
        self._keys, self._values, self._sets = keys, values, sets
        self._dense = None  # the values indexed by key, when the keys are 0..n-1 once each; else False

    def _sort(self) -> None:
        order = np.argsort(self._keys, kind='stable')  # a key's values stay in table order
        keys, values = self._keys[order], self._values[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
        self._sorted = keys, values, order, starts
        dense = len(keys) > 0 and len(starts) == len(keys) and keys[0] == 0 and keys[-1] == len(keys) - 1
        self._dense = values if dense else False

    def dense(self) -> np.ndarray | None:
        """The values indexed by key (sample -> its page), if every key 0..n-1 has one value."""
        if self._dense is None:
            self._sort()
        return self._dense if self._dense is not False else None

    def _span(self, key) -> tuple[int, int]:
        if self._dense is None:
            self._sort()
        if key < 0:
            return 0, 0
        if self._dense is not False:
            return (key, key + 1) if key < len(self._dense) else (0, 0)
        keys = self._sorted[0]
        key = keys.dtype.type(key)  # else numpy converts the whole array for every search
        return np.searchsorted(keys, key), np.searchsorted(keys, key, 'right')

    def __getitem__(self, key):
        lo, hi = self._span(key)
        values = self._sorted[1]
        if self._sets:
            return set(values[lo:hi])
        if lo == hi:
            raise KeyError(key)
        return values[hi - 1]

    def __contains__(self, key) -> bool:
        lo, hi = self._span(key)
        return lo < hi

    def __len__(self) -> int:
        self.dense()
        return len(self._sorted[3])

    def __iter__(self):
        self.dense()
        keys, _, order, starts = self._sorted
        return iter(keys[starts[np.argsort(order[starts])]])  # in order of first appearance, as a dict

    def groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(each key once, where its values start, all values grouped by key, in table order within)."""
        self.dense()
        keys, values, _, starts = self._sorted
        return keys[starts], starts, values


def _tables_as_arrays(self, reader) -> None:
    # ffcv's MemoryManager.__init__ builds a dict (pointer -> size) and a set of pages per sample
    # and of samples per page, though the OS-cache loader reads none of them. The same tables as
    # _ArrayTables (ffcv 1.0.2 reads sample_to_pages in its process cache, page_to_samples in
    # QuasiRandom, ptr_to_size nowhere).
    self.reader = reader
    table = reader.alloc_table
    order = np.argsort(table['ptr'])  # ffcv's own: sorted for its readers' binary search
    self.ptrs, self.sizes = table['ptr'][order], table['size'][order]
    pages = table['ptr'] >> int(np.log2(reader.page_size))
    self.ptr_to_size = _ArrayTable(self.ptrs, self.sizes, sets=False)
    self.sample_to_pages = _ArrayTable(table['sample_id'], pages, sets=True)
    self.page_to_samples = _ArrayTable(pages, table['sample_id'], sets=True)


def _page_rows_with_numpy(self) -> None:
    # ffcv's QuasiRandom.prepare_data_structures, without its loop over every sample (run twice
    # per loader: train_loader replaces ffcv's order with ours). The same arrays: a page's row
    # holds its samples in the order ffcv's set of them iterates in, as each epoch's shuffle of
    # the row starts from that order.
    pages, starts, samples = self.page_to_samples.groups()
    rows = [np.fromiter(set(part.tolist()), np.int64) for part in np.split(samples, starts[1:])]
    wanted = np.zeros(int(samples.max()) + 1, dtype=bool)
    indices = self.indices[(self.indices >= 0) & (self.indices < len(wanted))]
    wanted[indices.astype(np.int64)] = True
    num_pages = pages.max() + np.uint64(1)
    self.page_to_samples_array = np.empty((num_pages, max(len(row) for row in rows)), dtype=np.int64)
    self.page_sizes = np.zeros(num_pages, dtype=np.int64)
    for page, row in zip(pages, rows):
        row = row[wanted[row]]
        self.page_to_samples_array[page, :len(row)] = row
        self.page_sizes[page] = len(row)


class _ProcessCacheEpoch(ProcessCacheContext):
    """ffcv's process cache for one epoch (in_memory=0), with the pages each batch needs found by
    indexing one array instead of a set lookup per sample. The schedule, page slots and readers
    are ffcv's own, from the same page sets."""

    def __enter__(self):
        page_of = self.manager.sample_to_pages.dense()
        if page_of is None:  # a sample stored in several pieces: ffcv's way
            return super().__enter__()
        sizes = [len(batch) for batch in self.batches]
        pages = page_of[np.concatenate(self.batches).astype(np.int64)] if sizes else page_of[:0]
        self.schedule = compute_schedule([set(part) for part in np.split(pages, np.cumsum(sizes)[:-1])])
        self.memory = np.zeros((self.schedule.num_slots, self.page_size), dtype='<u1')
        self.executor = ScheduleExecutor(self.fname, self.schedule, self.memory)
        slots = self.schedule.page_to_slot
        self.page_to_slot = np.zeros(int(max(slots, default=-1)) + 1, dtype=np.uint32)  # by page: O(1) lookup
        for page, slot in slots.items():
            self.page_to_slot[page] = slot
        self.executor.__enter__()


# ffcv's own, for the tests that compare them with ours (tests/test_scale.py)
FFCV_ORIGINALS = {(MemoryManager, '__init__'): MemoryManager.__init__,
                  (QuasiRandom, 'prepare_data_structures'): QuasiRandom.prepare_data_structures,
                  (ProcessCacheManager, 'schedule_epoch'): ProcessCacheManager.schedule_epoch}
MemoryManager.__init__ = _tables_as_arrays
QuasiRandom.prepare_data_structures = _page_rows_with_numpy
ProcessCacheManager.schedule_epoch = lambda self, batches: _ProcessCacheEpoch(self, batches)


class BatchLoader(FfcvLoader):
    """ffcv's Loader, keeping its batch buffers from one epoch to the next.

    ffcv allocates every operation's output buffers (batches_ahead + 2 batches of them:
    ~200 MB of float32 at res 160, batch 128) afresh each epoch, and the first write to each
    page faults. On a small dataset or a validation set that is a fifth of the epoch's time;
    here the buffers are kept while their shapes stay the same (a new resolution gets new
    ones). To share them safely, an epoch abandoned part way (a loop left early) is stopped
    before the next starts, and, as within an epoch in ffcv, a batch is only valid until the
    loop moves batches_ahead + 1 further: copy what must outlive that.
    """

    def __init__(self, *args, normalized: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.normalized = normalized  # batches are normalised float32 (else uint8 0-255)
        self._buffers = (None, None)
        self._epoch = None
        allocate = self.graph.allocate_memory

        def allocate_once(batch_size, batches_ahead):
            key = (batch_size, batches_ahead, repr(self.graph.collect_requirements()[0]))
            if self._buffers[0] != key:
                self._buffers = (None, None)  # release the old ones before allocating
                self._buffers = (key, allocate(batch_size, batches_ahead))
            return self._buffers[1]
        self.graph.allocate_memory = allocate_once

    def __iter__(self):
        self._stop(self._epoch)
        if torch.cuda.is_available():  # kernels queued on the last batches may still read them
            torch.cuda.current_stream().synchronize()
        # ffcv's __iter__, with our epoch iterator
        Compiler.set_num_threads(self.num_workers)
        order = self.next_traversal_order()
        self.next_epoch += 1
        if self.code is None or self.recompile:
            self.generate_code()
        self._epoch = _Epoch(self, order[:len(self) * self.batch_size])
        return self._epoch

    def close(self) -> None:
        """Stop the epoch in flight, if any. A process leaving with one running (an error in the
        training loop) aborts in numba's thread pool at exit instead of exiting with its status."""
        self._stop(self._epoch)
        self._epoch = None

    @staticmethod
    def _stop(epoch) -> None:
        if epoch is None:
            return
        epoch.close()  # it stops when its queue is full, at most batches_ahead batches on
        while epoch.is_alive():
            epoch.join(timeout=1)
            try:  # ffcv hands over the end-of-epoch marker without a timeout: make room
                epoch.output_queue.get_nowait()
            except queue.Empty:
                pass


class ReproducibleQuasiRandom(QuasiRandom):
    """ffcv's quasi-random order shuffles its page table in place, so the order of epoch e
    depends on how many epochs the process has already run, and a resumed run would see
    other batches than an uninterrupted one. This one shuffles a fresh copy every epoch."""

    def sample_order(self, epoch: int):
        pristine = self.page_to_samples_array
        self.page_to_samples_array = pristine.copy()
        try:
            return super().sample_order(epoch)
        finally:
            self.page_to_samples_array = pristine


class WithIndex(Operation):
    """Label -> (label, sample index): the batch-side augmentations draw from each sample's index."""

    def generate_code(self):
        def with_index(labels, dst, indices):
            for i in range(labels.shape[0]):
                dst[i, 0] = labels[i, 0]
                dst[i, 1] = indices[i]
            return dst
        with_index.with_indices = True
        return with_index

    def declare_state_and_memory(self, previous_state):
        return replace(previous_state, shape=(2,), dtype=np.dtype('<i8')), AllocationQuery((2,), np.dtype('<i8'))


def _image_tail(device, normalized: bool):
    """After decoding. On a GPU: uint8 to the device, normalised there by inputs.Normalize. On a
    CPU: normalised here, unless the decoder did it already. ffcv's NormalizeImage is jitted,
    so it must come before ToTensor: after it, Loader() loops forever in ffcv's graph grouping.
    ToTorchImage gives NCHW over NHWC memory: channels_last, no copy."""
    if device.type == 'cuda':
        return [ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage()]
    normalize = [] if normalized else [NormalizeImage(np.array(IMAGENET_MEAN), np.array(IMAGENET_STD), np.float32)]
    return normalize + [ToTensor(), ToTorchImage()]


def _to_device(device):
    return [ToDevice(device, non_blocking=True)] if device.type == 'cuda' else []


@dataclass
class TrainLoader:
    """The training loader and the pieces the trainer sets each epoch (without recompiling)."""
    loader: BatchLoader
    decoder: RandomResizedCropFlipDecoder | RandomResizedCropRGBImageDecoder
    device: torch.device
    augment: Operation | None = None   # per-sample image augmentations (train/augment), if any

    @property
    def normalized(self) -> bool:
        return self.loader.normalized

    def __len__(self) -> int:
        return len(self.loader)

    def start_epoch(self, epoch: int, res: int) -> None:
        self.decoder.output_size = (res, res)
        if hasattr(self.decoder, 'epoch'):  # the fast decoder draws its crops from (seed, epoch, index)
            self.decoder.epoch = epoch
        if self.augment is not None:
            self.augment.epoch = epoch
        self.loader.next_epoch = epoch  # ffcv seeds the epoch's sample order with it

    def close(self) -> None:
        self.loader.close()

    def __iter__(self):
        """(images, labels, sample indices) batches: images and labels on the device, the indices
        on the host, where the batch-side augmentations compute their draws without a device sync."""
        for images, target in self.loader:
            yield images, target[:, 0].to(self.device, non_blocking=True), target[:, 1]


def train_loader(path, *, batch_size, num_workers, in_memory, res, seed, distributed, device,
                 decoder='fast', scale=(0.08, 1.0), augment: Operation | None = None) -> TrainLoader:
    """The training loader. Order: uniformly random over sample indices, seeded by (seed, epoch),
    so the batches depend on the data and the seed alone. With in_memory=0 (a dataset larger than
    RAM, read through ffcv's process cache) pages must be read in bulk, so the order is
    quasi-random instead: random pages, shuffled within a window of a few of them."""
    on_cpu = device.type != 'cuda'
    if decoder == 'fast':
        # With per-sample augmentations the decoder hands them uint8; they normalise after.
        fused = on_cpu and augment is None
        dec = RandomResizedCropFlipDecoder((res, res), seed=seed, scale=scale,
                                           normalize=(IMAGENET_MEAN, IMAGENET_STD) if fused else None)
        image_ops = [dec, *([augment] if augment else []), *_image_tail(device, normalized=fused)]
    else:  # ffcv's own, as the public trainer uses it (its draws are not reproducible)
        dec = RandomResizedCropRGBImageDecoder((res, res), scale=scale)
        image_ops = [dec, RandomHorizontalFlip(), *([augment] if augment else []),
                     *_image_tail(device, normalized=False)]
    quasi = not in_memory and not distributed  # ffcv's quasi-random order does not split across ranks
    loader = BatchLoader(str(path), batch_size=batch_size, num_workers=num_workers,
                         order=OrderOption.QUASI_RANDOM if quasi else OrderOption.RANDOM,
                         os_cache=bool(in_memory), drop_last=True, distributed=distributed, seed=seed,
                         pipelines={'image': image_ops,
                                    'label': [IntDecoder(), WithIndex(), ToTensor()]},
                         normalized=on_cpu)
    if quasi:
        loader.traversal_order = ReproducibleQuasiRandom(loader)
    return TrainLoader(loader, dec, device, augment)


def val_loader(path, *, batch_size, num_workers, in_memory, res, device, rank=0, world_size=1) -> BatchLoader:
    """Sequential loader over this rank's share of the validation set: (images, labels) batches.

    Each rank takes every world_size-th sample, with no padding: ffcv's distributed mode
    pads by repeating samples, which would count some images twice.
    """
    num_samples = BetonFile(path).num_samples
    return BatchLoader(str(path), batch_size=batch_size, num_workers=num_workers,
                       order=OrderOption.SEQUENTIAL, os_cache=bool(in_memory), drop_last=False,
                       indices=np.arange(rank, num_samples, world_size),
                       pipelines={'image': [CenterCropRGBImageDecoder((res, res), ratio=VAL_CROP_RATIO),
                                            *_image_tail(device, normalized=False)],
                                  'label': [IntDecoder(), ToTensor(), Squeeze(), *_to_device(device)]},
                       normalized=device.type != 'cuda')
