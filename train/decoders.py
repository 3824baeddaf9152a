"""The training decoder: random-resized-crop + flip that decodes only what the crop needs.

Three things make it differ from ffcv's `RandomResizedCropRGBImageDecoder` + `RandomHorizontalFlip`:

1. Reproducible draws. The crop and the flip of sample `i` in epoch `e` come from a hash
   of (seed, e, i), not from numba's per-thread generators that nothing seeds. A run
   and its resumption after preemption see the same augmentations, whichever worker
   thread decodes a sample. Crops follow torchvision's RandomResizedCrop (scale 0.08-1,
   ratio 3/4-4/3).
2. Less decoding. The per-image work is one call into crop_resize.cpp: a JPEG with restart
   markers (the converter writes them) is cut down to the crop's segments, then libjpeg
   decodes only the rows and columns holding the crop, at DCT scale 1/2, 1/4 or 1/8 whenever
   the crop is at least that many times the output; a SIMD bilinear resizes the rest of the
   way. Images stored raw (not JPEG) are cropped and resized the same way, without decoding.
3. On a CPU it writes normalised float32 directly: one pass over the output, not two.
"""
from __future__ import annotations

import ctypes
from dataclasses import replace

import numpy as np
from . import ffcv_import  # noqa: F401  (first: ffcv's import would set torch's threads to 1)
from ffcv.fields.rgb_image import IMAGE_MODES, SimpleRGBImageDecoder
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.state import State
from numba import njit

from .draws import load_int64, sample_key, uniform

try:
    from . import _crop_resize
except ImportError as e:  # pragma: no cover - an install without the compiled helper
    raise ImportError('the compiled crop_resize helper is missing: run `make setup` (or `pip install -e .`) '
                      'to build train/crop_resize.cpp') from e

_lib = ctypes.CDLL(_crop_resize.__file__)
crop_resize = _lib.crop_resize
crop_resize.restype = ctypes.c_int
crop_resize.argtypes = [ctypes.c_void_p, ctypes.c_uint64, *[ctypes.c_int] * 7,  # src, size, is_jpeg, image, crop
                        ctypes.c_void_p, *[ctypes.c_int] * 4,  # dst, out_h, out_w, flip, partial
                        ctypes.c_void_p, ctypes.c_void_p]  # per-channel scale, shift (or NULL)


@njit
def random_crop(key, height, width, scale_lo, scale_hi, log_ratio_lo, log_ratio_hi):
    """torchvision's RandomResizedCrop.get_params with draws from `key`: (top, left, h, w)."""
    if height == 0 or width == 0:  # metadata of no image: an empty crop, which crop_resize refuses
        return 0, 0, 0, 0
    area = height * width
    for attempt in range(10):
        target_area = area * (scale_lo + (scale_hi - scale_lo) * uniform(key, 4 * attempt))
        aspect = np.exp(log_ratio_lo + (log_ratio_hi - log_ratio_lo) * uniform(key, 4 * attempt + 1))
        w = int(np.round(np.sqrt(target_area * aspect)))
        h = int(np.round(np.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(uniform(key, 4 * attempt + 2) * (height - h + 1))
            left = int(uniform(key, 4 * attempt + 3) * (width - w + 1))
            return top, left, h, w
    # Fallback, as torchvision: the central crop with the ratio clamped into range.
    in_ratio = width / height
    if in_ratio < np.exp(log_ratio_lo):
        w = width
        h = int(np.round(w / np.exp(log_ratio_lo)))
    elif in_ratio > np.exp(log_ratio_hi):
        h = height
        w = int(np.round(h * np.exp(log_ratio_hi)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@njit
def do_flip(key):
    return uniform(key, 64) < 0.5


class RandomResizedCropFlipDecoder(SimpleRGBImageDecoder):
    """ffcv decoder: random-resized-crop to `output_size`, then a random left/right flip.

    Set `.epoch` before each epoch and `.output_size` to change resolution; neither
    recompiles. With `normalize=(mean, std)` (per channel, 0-255 scale) it outputs float32
    (x - mean) / std instead of uint8. `partial_decode=False` decodes every JPEG in full
    (the reference path the tests compare against). A sample that is not what its metadata
    says decodes to zeros (see crop_resize.cpp's consistent()).
    """

    def __init__(self, output_size, seed: int = 0, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 partial_decode: bool = True, normalize=None):
        super().__init__()
        self.output_size = tuple(output_size)
        self.seed = seed
        self.scale = scale
        self.ratio = ratio
        self.partial_decode = partial_decode
        self._epoch = np.zeros(1, dtype=np.int64)
        # read by the C code through their addresses: kept alive here
        self._normalize = None
        if normalize is not None:
            mean, std = (np.asarray(v, dtype=np.float64) for v in normalize)
            self._normalize = np.stack([1 / std, -mean / std]).astype(np.float32)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch[0] = value

    def declare_state_and_memory(self, previous_state: State):
        out_shape = (self.output_size[0], self.output_size[1], 3)
        dtype = np.dtype('f4') if self._normalize is not None else np.dtype('u1')
        # no scratch memory from ffcv: the C code keeps a small buffer per thread
        return (replace(previous_state, jit_mode=True, shape=out_shape, dtype=dtype),
                AllocationQuery(out_shape, dtype))

    def generate_code(self):
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        crop_resize_c = crop_resize
        jpg = IMAGE_MODES['jpg']
        seed = np.uint64(self.seed)
        epoch_address = self._epoch.ctypes.data
        scale_address = self._normalize[0].ctypes.data if self._normalize is not None else 0
        shift_address = self._normalize[1].ctypes.data if self._normalize is not None else 0
        scale_lo, scale_hi = float(self.scale[0]), float(self.scale[1])
        log_ratio_lo, log_ratio_hi = float(np.log(self.ratio[0])), float(np.log(self.ratio[1]))
        partial = int(self.partial_decode)

        def decode(batch_indices, destination, metadata, storage_state):
            epoch = load_int64(epoch_address)
            out_h, out_w = destination.shape[1], destination.shape[2]
            for dst_ix in my_range(len(batch_indices)):
                source_ix = batch_indices[dst_ix]
                field = metadata[source_ix]
                image_data = mem_read(field['data_ptr'], storage_state)
                height, width = np.uint32(field['height']), np.uint32(field['width'])
                key = sample_key(seed, epoch, source_ix)
                top, left, h, w = random_crop(key, height, width, scale_lo, scale_hi,
                                              log_ratio_lo, log_ratio_hi)
                # A sample at odds with its metadata (raw bytes other than height x width x 3, a
                # JPEG cut short, undecodable or of another size, a crop outside the image) leaves
                # zeros and a nonzero status: the C++ checks the metadata against the
                # image_data.size bytes it is given and reads nothing else. Nothing acts on the
                # status here: the converter only stores images it has decoded, and
                # `convert/verify.py` checks a .beton end to end.
                crop_resize_c(image_data.ctypes.data, image_data.size, field['mode'] == jpg, height, width,
                              top, left, h, w, destination[dst_ix].ctypes.data, out_h, out_w,
                              do_flip(key), partial, scale_address, shift_address)
            return destination[:len(batch_indices)]

        decode.is_parallel = True
        return decode
