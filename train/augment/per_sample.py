"""The ffcv operation that augments each sample in the decoding threads: RandAugment, then
color jitter, on the crop decoder's uint8 (H, W, 3) output, in place.

Sample i of epoch e draws from the key draws.sample_key(seed, e, i) (the one its crop and
flip come from), salted per augmentation (STREAM_RANDAUGMENT, STREAM_COLOR_JITTER): its
augmentation is the same whichever thread handles it, however many there are, wherever it
sits in its batch, and turning one augmentation off leaves the other's draws unchanged.

`.epoch` and the two on/off switches are read through memory by the compiled pipeline (as
the decoder's epoch), so setting them never recompiles it. With both off the operation
returns the batch untouched. Its ffcv memory, a batch like its input, is only scratch for
the ops that read neighbours (rotate, shear, translate, sharpness).
"""
from __future__ import annotations

import ctypes
from dataclasses import replace

import numpy as np
from .. import ffcv_import  # noqa: F401  (first: ffcv's import would set torch's threads to 1)
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State
from numba import carray, cfunc, types

from ..draws import STREAM_COLOR_JITTER, STREAM_RANDAUGMENT, load_int64, sample_key, stream_key
from .color_jitter import ColorJitterSpec, color_jitter
from .jit import kernel
from .randaugment import RandAugmentSpec, parse_randaugment, randaugment

_EPOCH, _RANDAUGMENT_ON, _COLOR_JITTER_ON = range(3)


def _randaugment_arrays(spec: RandAugmentSpec | None):
    if spec is None:  # typed placeholders, never read while the switch is off
        return (np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(6, np.float64),
                np.zeros(3, np.uint8))
    return spec.arrays()


def _color_jitter_arrays(spec: ColorJitterSpec | None):
    if spec is None:
        return np.zeros((4, 2), np.float64), np.zeros(4, np.uint8), 0.0
    return spec.arrays()


@kernel
def augment_one(image, scratch, key, randaugment_on, color_jitter_on, codes, weights, params, fill,
                ranges, active, p):
    """Both augmentations of one image, in place, from its sample key (`scratch`: an array
    like `image` that the ops reading neighbours write into)."""
    if randaugment_on:
        randaugment(image, scratch, stream_key(key, STREAM_RANDAUGMENT), codes, weights, params, fill)
    if color_jitter_on:
        color_jitter(image, stream_key(key, STREAM_COLOR_JITTER), ranges, active, p)


@kernel
def _augment_all(images, indices, seed, epoch, randaugment_on, color_jitter_on, codes, weights,
                 params, fill, ranges, active, p):
    scratch = np.empty_like(images[0])
    for i in range(images.shape[0]):
        augment_one(images[i], scratch, sample_key(seed, epoch, indices[i]), randaugment_on, color_jitter_on,
                    codes, weights, params, fill, ranges, active, p)


# The pipeline calls the kernels through a C function pointer, as the decoder calls its C++
# helper. Called as a numba function instead, all of their code would be linked into ffcv's
# pipeline and optimised again each time a Loader compiles it: 4 s (1 thread) to 15 s (2
# threads, ffcv's parallel build) of CPU per Loader, measured; through the pointer, under 1 s.
_P, _I64, _F64 = types.CPointer, types.int64, types.float64


@cfunc(types.void(_P(types.uint8), _P(types.uint8), _I64, _I64, types.uint64, _I64, _P(_I64), _I64,
                  _P(_F64), _I64, _P(_F64), _P(types.uint8), _P(_F64), _P(types.uint8), _F64),
       cache=True, error_model='numpy')
def _augment_c(image, scratch, height, width, key, switches, codes, n_codes, weights, n_weights, params,
               fill, ranges, active, p):
    shape = (height, width, 3)
    augment_one(carray(image, shape), carray(scratch, shape), key, switches & 1 != 0, switches & 2 != 0,
                carray(codes, n_codes), carray(weights, n_weights), carray(params, 6), carray(fill, 3),
                carray(ranges, (4, 2)), carray(active, 4), p)


_c_void_p, _c_int64 = ctypes.c_void_p, ctypes.c_int64
augment_c = ctypes.CFUNCTYPE(None, _c_void_p, _c_void_p, _c_int64, _c_int64, ctypes.c_uint64, _c_int64,
                             _c_void_p, _c_int64, _c_void_p, _c_int64, _c_void_p, _c_void_p, _c_void_p,
                             _c_void_p, ctypes.c_double)(_augment_c.address)


def augment_images(images: np.ndarray, indices, *, seed: int, epoch: int,
                   randaugment: RandAugmentSpec | None = None,
                   color_jitter: ColorJitterSpec | None = None) -> np.ndarray:
    """What the operation does to a batch, outside ffcv (tests, benchmarks): images
    (N, H, W, 3) uint8 of samples `indices`, augmented in place and returned."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or not images.flags.c_contiguous:
        raise ValueError(f'augment_images takes a C-contiguous uint8 (N, H, W, 3) array, got {images.dtype} '
                         f'{images.shape}')
    _augment_all(images, np.asarray(indices, dtype=np.int64), np.uint64(seed), int(epoch),
                 randaugment is not None, color_jitter is not None,
                 *_randaugment_arrays(randaugment), *_color_jitter_arrays(color_jitter))
    return images


class PerSampleAugment(Operation):
    """ffcv operation: uint8 (H, W, 3) images in, the same shape out, augmented per sample.

    `randaugment`: a RandAugmentSpec or timm's config string ('rand-m9-mstd0.5'), or None;
    `color_jitter`: a ColorJitterSpec (color_jitter.color_jitter_spec), or None. Each given
    one starts on. Set `.epoch` before each epoch, as the decoder's; `.randaugment_on` and
    `.color_jitter_on` switch them at any time, without recompiling.
    """

    def __init__(self, seed: int, randaugment: RandAugmentSpec | str | None = None,
                 color_jitter: ColorJitterSpec | None = None):
        super().__init__()
        self.seed = int(seed)
        self.randaugment = parse_randaugment(randaugment) if isinstance(randaugment, str) else randaugment
        self.color_jitter = color_jitter
        # read by the compiled code through its address: kept alive here
        self._state = np.zeros(3, dtype=np.int64)
        self._state[_RANDAUGMENT_ON] = self.randaugment is not None
        self._state[_COLOR_JITTER_ON] = self.color_jitter is not None
        # the kernels' parameters, read by the C calls through their addresses: built once and
        # kept, so every pipeline compiled from this operation (one per Loader) stays valid
        self._arrays = (*_randaugment_arrays(self.randaugment), *_color_jitter_arrays(self.color_jitter)[:2])
        self._p = _color_jitter_arrays(self.color_jitter)[2]

    @property
    def epoch(self) -> int:
        return int(self._state[_EPOCH])

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._state[_EPOCH] = value

    def _switch(self, slot: int, name: str, on: bool) -> None:
        if on and getattr(self, name) is None:
            raise ValueError(f'{name} cannot be switched on: this PerSampleAugment was built without it')
        self._state[slot] = bool(on)

    @property
    def randaugment_on(self) -> bool:
        return bool(self._state[_RANDAUGMENT_ON])

    @randaugment_on.setter
    def randaugment_on(self, on: bool) -> None:
        self._switch(_RANDAUGMENT_ON, 'randaugment', on)

    @property
    def color_jitter_on(self) -> bool:
        return bool(self._state[_COLOR_JITTER_ON])

    @color_jitter_on.setter
    def color_jitter_on(self, on: bool) -> None:
        self._switch(_COLOR_JITTER_ON, 'color_jitter', on)

    def declare_state_and_memory(self, previous_state: State):
        shape, dtype = tuple(previous_state.shape), np.dtype(previous_state.dtype)
        if not previous_state.jit_mode or dtype != np.uint8 or len(shape) != 3 or shape[2] != 3:
            raise ValueError(f'PerSampleAugment takes uint8 (H, W, 3) images straight from the decoder '
                             f'(RandomResizedCropFlipDecoder with normalize=None), got {dtype} {shape}')
        # in place; its memory is the scratch images of the ops that read neighbours
        return replace(previous_state, jit_mode=True), AllocationQuery(shape, np.dtype(np.uint8))

    def generate_code(self):
        my_range = Compiler.get_iterator()
        seed = np.uint64(self.seed)
        state = self._state.ctypes.data
        n_codes, n_weights, p = self._arrays[0].size, self._arrays[1].size, self._p
        codes, weights, params, fill, ranges, active = (a.ctypes.data for a in self._arrays)
        augment_c_ = augment_c

        def augment(images, scratch, indices):
            epoch = load_int64(state)
            switches = (load_int64(state + 8) != 0) + 2 * (load_int64(state + 16) != 0)
            if switches:
                height, width = images.shape[1], images.shape[2]
                for i in my_range(images.shape[0]):
                    augment_c_(images[i].ctypes.data, scratch[i].ctypes.data, height, width,
                               sample_key(seed, epoch, indices[i]), switches, codes, n_codes, weights,
                               n_weights, params, fill, ranges, active, p)
            return images

        augment.is_parallel = True
        augment.with_indices = True
        return augment
