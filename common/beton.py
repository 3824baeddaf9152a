"""ImageNet `.beton` files: ffcv's format, written and read in one place.

A file holds two fields, `image` (ffcv's RGBImageField) and `label` (IntField), laid out
as ffcv 1.0 lays them out, so stock ffcv and the public ffcv-imagenet trainer read ours
and we read theirs:

    header | field descriptors | metadata, one row per sample | data pages | allocation table

We write it ourselves instead of through `ffcv.writer.DatasetWriter` because that writer
hangs forever when a worker raises (one corrupt JPEG stops an ImageNet conversion
without a message), cannot skip a sample once the count is fixed, and draws its
JPEG/raw choice from unseeded per-process generators.

Two ways to fill the data pages: `BetonWriter.add` appends in one process; `SharedPages`
lets worker processes write their samples straight into the file (the converter's way:
funnelling every image through one process costs a core at ImageNet rates), each
reporting back only where it put them for `BetonWriter.place`.
"""
from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from .cli import fail

# ffcv 1.0's on-disk types (ffcv/types.py, ffcv/fields/), spelled out so that reading and
# writing a .beton does not import ffcv, whose import costs seconds of numba compilation.
# tests/test_beton.py checks them against ffcv's own.
CURRENT_VERSION = 2
HeaderType = np.dtype([('version', '<u2'), ('num_fields', '<u2'), ('page_size', '<u4'),
                       ('num_samples', '<u8'), ('alloc_table_ptr', '<u8')], align=True)
FieldDescType = np.dtype([('type_id', '<u1'), ('name', ('<u1', 16)), ('arguments', ('<u1', (1024,)))],
                         align=True)
ALLOC_TABLE_TYPE = np.dtype([('sample_id', '<u8'), ('ptr', '<u8'), ('size', '<u8')])
IMAGE_META = np.dtype([('mode', '<u1'), ('width', '<u2'), ('height', '<u2'), ('data_ptr', '<u8')])  # packed
METADATA_TYPE = np.dtype([('f0', IMAGE_META), ('f1', '<i8')], align=True)
TYPE_IDS = {'image': 2, 'label': 1}  # ffcv's ids of RGBImageField and IntField, in file order
MODE_JPG, MODE_RAW = 0, 1  # ffcv's IMAGE_MODES
MIN_PAGE_SIZE = 1 << 21  # ffcv's minimum, and its default is 4x this
DEFAULT_PAGE_SIZE = 1 << 23


def page_size_for(max_sample_bytes: int) -> int:
    """Smallest power of two >= the default that holds the largest possible sample."""
    size = DEFAULT_PAGE_SIZE
    while size < max_sample_bytes:
        size *= 2
    return size


def _align(offset: int, page_size: int) -> int:
    return -(-offset // page_size) * page_size


class BetonWriter:
    """Append samples in order to an open file; `finish()` writes the tables.

    `capacity` bounds the number of samples (the metadata region is reserved up front,
    since it sits before the data); fewer may be added when inputs are skipped.
    """

    def __init__(self, fp: BinaryIO, capacity: int, page_size: int = DEFAULT_PAGE_SIZE):
        self.fp = fp
        self.page_size = page_size
        self.metadata = np.zeros(capacity, dtype=METADATA_TYPE)
        self.allocations = np.zeros(capacity, dtype=ALLOC_TABLE_TYPE)
        self.count = 0
        metadata_start = HeaderType.itemsize + FieldDescType.itemsize * len(TYPE_IDS)
        self.data_start = _align(metadata_start + self.metadata.nbytes, page_size)
        self.page = np.zeros(page_size, dtype=np.uint8)
        self.pages_written = 0
        self.page_fill = 0
        fp.seek(self.data_start)

    def add(self, mode: int, height: int, width: int, data: np.ndarray, label: int) -> None:
        """Append a sample's bytes to the file."""
        size = data.nbytes
        if size > self.page_size:
            raise ValueError(f'sample of {size} bytes does not fit a {self.page_size}-byte page')
        if self.page_fill + size > self.page_size:
            self._flush_page()
        ptr = self.data_start + self.pages_written * self.page_size + self.page_fill
        self.page[self.page_fill:self.page_fill + size] = data.reshape(-1)
        self.page_fill += size
        self.place(mode, height, width, ptr, size, label)

    def place(self, mode: int, height: int, width: int, ptr: int, size: int, label: int) -> None:
        """Record the next sample, whose bytes are already in the file at `ptr`."""
        i = self.count
        self.metadata[i]['f0'] = (mode, width, height, ptr)
        self.metadata[i]['f1'] = label
        self.allocations[i] = (i, ptr, size)
        self.count += 1

    def _flush_page(self) -> None:
        # Whole pages, zero-padded: ffcv's process cache reads the file page by page.
        self.page[self.page_fill:] = 0
        self.fp.write(self.page)  # the buffer itself: no 8 MB copy per page
        self.pages_written += 1
        self.page_fill = 0

    def finish(self, shared_pages: int = 0) -> int:
        """Write the tables. `shared_pages`: how many pages SharedPages handed out, when the
        samples went through it (and `place`) instead of `add`; the two fill the same pages."""
        if shared_pages and (self.pages_written or self.page_fill):
            raise ValueError('samples were both added here and written through SharedPages')
        if self.page_fill:
            self._flush_page()
        alloc_table_ptr = self.data_start + (self.pages_written + shared_pages) * self.page_size
        self.fp.seek(alloc_table_ptr)
        self.fp.write(self.allocations[:self.count].tobytes())

        header = np.zeros(1, dtype=HeaderType)[0]
        header['version'] = CURRENT_VERSION
        header['num_fields'] = len(TYPE_IDS)
        header['page_size'] = self.page_size
        header['num_samples'] = self.count
        header['alloc_table_ptr'] = alloc_table_ptr
        descriptors = np.zeros(len(TYPE_IDS), dtype=FieldDescType)  # neither field takes arguments
        for d, (name, type_id) in zip(descriptors, TYPE_IDS.items()):
            d['type_id'] = type_id
            d['name'][:len(name)] = np.frombuffer(name.encode('ascii'), dtype=np.uint8)
        self.fp.seek(0)
        self.fp.write(header.tobytes())
        self.fp.write(descriptors.tobytes())
        self.fp.write(self.metadata[:self.count].tobytes())
        self.fp.flush()
        return self.count


class SharedPages:
    """Data pages of one file, handed out to several writer processes.

    Each process fills whole pages of its own (a sample never straddles two, as ffcv's
    process cache requires), claiming the next free page from a counter shared by all, and
    writes each sample at its place at once. Where samples land depends on scheduling;
    what each sample holds does not. Create it in the parent; use it in the workers.
    """

    def __init__(self, path: str | os.PathLike, data_start: int, page_size: int):
        self.path, self.data_start, self.page_size = str(path), data_start, page_size
        self.pages = multiprocessing.Value('q', 0)  # pages claimed so far, by all processes
        self._fd = None
        self._page, self._fill = -1, page_size

    def __getstate__(self):  # a process's open file and current page are its own
        return {**self.__dict__, '_fd': None, '_page': -1, '_fill': self.page_size}

    def write(self, data: np.ndarray) -> int:
        """Write one sample; -> its offset in the file."""
        size = data.nbytes
        if size > self.page_size:
            raise ValueError(f'sample of {size} bytes does not fit a {self.page_size}-byte page')
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY)
        if self._fill + size > self.page_size:
            with self.pages.get_lock():
                self._page = self.pages.value
                self.pages.value += 1
            self._fill = 0
        ptr = self.data_start + self._page * self.page_size + self._fill
        view = memoryview(np.ascontiguousarray(data)).cast('B')
        while view:  # pwrite may write less than asked
            view = view[os.pwrite(self._fd, view, ptr + size - len(view)):]
        self._fill += size
        return ptr

    @property
    def claimed(self) -> int:
        return self.pages.value


class BetonFile:
    """Read access to an image/label `.beton` (ours or the public writer's), checked first."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        header = check_beton(self.path)
        self.num_samples = int(header['num_samples'])
        self.page_size = int(header['page_size'])
        descriptors = np.fromfile(self.path, dtype=FieldDescType, count=int(header['num_fields']),
                                  offset=HeaderType.itemsize)
        fields = {bytes(d['name']).split(b'\0')[0].decode('ascii', 'replace'): int(d['type_id'])
                  for d in descriptors}
        if list(fields.items()) != list(TYPE_IDS.items()):
            have = ', '.join(f'{name} (type {t})' for name, t in fields.items())
            fail(f'{self.path} has fields {have}; expected image (type 2) then label (type 1), '
                 f'as convert/write_imagenet.py writes them')
        metadata = np.fromfile(self.path, dtype=METADATA_TYPE, count=self.num_samples,
                               offset=HeaderType.itemsize + descriptors.nbytes)
        self.image_meta = metadata['f0']
        self.labels = np.asarray(metadata['f1'])
        self._alloc_table_ptr = int(header['alloc_table_ptr'])
        self._ptrs = self._sizes = self._data = None

    def __len__(self) -> int:
        return self.num_samples

    def _read_sizes(self) -> None:
        # Read on the first image only: opening a file to check it or take its labels (the
        # trainer, val_loader, verify's parent) then costs no sort of 1.28M entries. A sort of
        # the pointers alone is ~6x faster than np.sort(order='ptr') of the whole table (1.2 s
        # at 1.28M), which it equals unless two entries share a pointer.
        table = np.fromfile(self.path, dtype=ALLOC_TABLE_TYPE, offset=self._alloc_table_ptr)
        table = table[np.argsort(table['ptr'], kind='stable')]
        if len(table) and (table['ptr'][1:] == table['ptr'][:-1]).any():
            table = np.sort(table, order='ptr')  # ties ordered as before, by the other fields
        self._ptrs, self._sizes = np.ascontiguousarray(table['ptr']), np.ascontiguousarray(table['size'])

    def image_bytes(self, i: int) -> np.ndarray:
        if self._data is None:
            self._data = np.memmap(self.path, dtype=np.uint8, mode='r')
        if self._ptrs is None:
            self._read_sizes()
        ptr = self.image_meta[i]['data_ptr']
        # The key as the table's uint64: numpy searches for a Python int by converting the whole
        # table first (8 ms per image at 1.28M samples: verify went from 8.6k to 430 img/s).
        size = int(self._sizes[np.searchsorted(self._ptrs, np.uint64(ptr))])
        return self._data[int(ptr):int(ptr) + size]

    def image(self, i: int) -> np.ndarray:
        """Sample i as full-size (H, W, 3) RGB; raises ValueError if it does not decode."""
        meta = self.image_meta[i]
        h, w = int(meta['height']), int(meta['width'])
        data = self.image_bytes(i)
        if meta['mode'] == MODE_RAW:
            if data.size != h * w * 3:
                raise ValueError(f'raw image of {data.size} bytes, expected {h}x{w}x3')
            return np.asarray(data).reshape(h, w, 3)
        image = cv2.imdecode(np.asarray(data), cv2.IMREAD_COLOR)  # libjpeg-turbo, like ffcv's decoder
        if image is None or image.shape[:2] != (h, w):
            raise ValueError('JPEG does not decode' if image is None
                             else f'JPEG decodes to {image.shape[:2]}, metadata says {(h, w)}')
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_beton(path: Path) -> np.void:
    """The header, or one line of error for a missing, truncated or non-ffcv file
    (before numpy would allocate whatever sizes a garbage header claims)."""
    if not path.exists():
        fail(f'{path} does not exist (convert a dataset first: python convert/write_imagenet.py)')
    if path.is_dir():
        fail(f'{path} is a directory, not a .beton file')
    size = path.stat().st_size
    if size < HeaderType.itemsize:
        fail(f'{path} is not an FFCV .beton file ({size} bytes)')
    header = np.fromfile(path, dtype=HeaderType, count=1)[0]
    sane = (header['version'] == CURRENT_VERSION and 0 < header['num_fields'] <= 64
            and header['page_size'] >= MIN_PAGE_SIZE and header['alloc_table_ptr'] <= size
            and header['num_samples'] * METADATA_TYPE.itemsize <= size)
    if not sane:
        fail(f'{path} is not an FFCV .beton file (or is truncated)')
    return header
