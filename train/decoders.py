"""The training decoder: random-resized-crop + flip that decodes only what the crop needs.

Two things make it differ from ffcv's `RandomResizedCropRGBImageDecoder` + `RandomHorizontalFlip`:

1. Reproducible draws. The crop and the flip of sample `i` in epoch `e` come from a hash
   of (seed, e, i), not from numba's per-thread generators that nothing seeds. A run
   and its resumption after preemption see the same augmentations, whichever worker
   thread decodes a sample.
2. Less decoding. A JPEG is decoded at libjpeg-turbo's reduced DCT scale (1/2, 1/4,
   1/8) whenever the crop is at least that many times the output size, and, when the
   crop is a small part of the image, only the crop's MCU-aligned region is decoded
   (a lossless libjpeg-turbo crop). The rest of the way is the same INTER_AREA resize.
   Crops follow torchvision's RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3).

Images stored raw (not JPEG) take the ordinary path.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from ffcv.fields.rgb_image import IMAGE_MODES, SimpleRGBImageDecoder
from ffcv.libffcv import imdecode, resize_crop
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.state import State
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

MCU = 16              # JPEG crop offsets must fall on iMCU boundaries; 16 covers 4:4:4, 4:2:2 and 4:2:0
REGION_MAX_AREA = 0.5  # below this share of the image, decoding just the crop's region pays off
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@intrinsic
def _load_int64(typingctx, address):
    """Read an int64 through its address: numba freezes captured arrays as constants,
    so a value that changes every epoch (without recompiling) is read through memory."""
    def codegen(context, builder, signature, args):
        return builder.load(builder.inttoptr(args[0], ir.IntType(64).as_pointer()))
    return types.int64(types.intp), codegen


@njit(inline='always')
def _mix(z):
    # splitmix64's finaliser: a cheap, well-distributed 64-bit hash.
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline='always')
def _uniform(key, k):
    """The k-th uniform draw in [0, 1) of the stream `key`."""
    return (_mix(key + np.uint64(k) * _GOLDEN) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit
def sample_key(seed, epoch, index):
    return _mix(np.uint64(seed) ^ _mix(np.uint64(epoch) * _GOLDEN ^ _mix(np.uint64(index))))


@njit
def random_crop(key, height, width, scale_lo, scale_hi, log_ratio_lo, log_ratio_hi):
    """torchvision's RandomResizedCrop.get_params with draws from `key`: (top, left, h, w)."""
    area = height * width
    for attempt in range(10):
        target_area = area * (scale_lo + (scale_hi - scale_lo) * _uniform(key, 4 * attempt))
        aspect = np.exp(log_ratio_lo + (log_ratio_hi - log_ratio_lo) * _uniform(key, 4 * attempt + 1))
        w = int(np.round(np.sqrt(target_area * aspect)))
        h = int(np.round(np.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(_uniform(key, 4 * attempt + 2) * (height - h + 1))
            left = int(_uniform(key, 4 * attempt + 3) * (width - w + 1))
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
    return _uniform(key, 64) < 0.5


@njit
def dct_denominator(crop_h, crop_w, out_h, out_w):
    """Largest of 8, 4, 2, 1 such that the crop, decoded 1/d scale, still covers the output."""
    d = 8
    while d > 1 and (crop_h < d * out_h or crop_w < d * out_w):
        d //= 2
    return d


@njit(inline='always')
def _halve(src, src_w, r0, r1, c0, c1, dst):
    """2x2 box average of src[r0:r1, c0:c1] (flat HWC rows of width src_w) into dst, row-major.
    dst may be src itself with r0 = c0 = 0: every pixel is written after the ones it reads."""
    h, w = (r1 - r0) // 2, (c1 - c0) // 2
    for y in range(h):
        top = ((r0 + 2 * y) * src_w + c0) * 3
        bottom = top + src_w * 3
        for x in range(w):
            for ch in range(3):
                i = 6 * x + ch
                total = np.uint32(src[top + i]) + src[top + i + 3] + src[bottom + i] + src[bottom + i + 3]
                dst[(y * w + x) * 3 + ch] = np.uint8((total + 2) // 4)
    return h, w


@njit(inline='always')
def _bilinear(src, src_w, r0, r1, c0, c1, dst, flip):
    """Resize src[r0:r1, c0:c1] to dst (H, W, 3) with half-pixel centres, mirrored if `flip`.
    Only used for shrinking by less than 2x (or enlarging), where bilinear does not alias.
    Weights are 8-bit fixed point: integer arithmetic is what keeps this cheap."""
    out_h, out_w = dst.shape[0], dst.shape[1]
    in_h, in_w = r1 - r0, c1 - c0
    sy, sx = in_h / out_h, in_w / out_w
    xa = np.empty(out_w, np.int64)  # flat offsets of the left/right source pixels in a row
    xb = np.empty(out_w, np.int64)
    wx = np.empty(out_w, np.int32)
    for x in range(out_w):
        f = min(max((x + 0.5) * sx - 0.5, 0.0), in_w - 1.0)
        i = int(f)
        xa[x] = (c0 + i) * 3
        xb[x] = (c0 + min(i + 1, in_w - 1)) * 3
        wx[x] = int((f - i) * 256 + 0.5)
    for y in range(out_h):
        f = min(max((y + 0.5) * sy - 0.5, 0.0), in_h - 1.0)
        i = int(f)
        ra = (r0 + i) * src_w * 3
        rb = (r0 + min(i + 1, in_h - 1)) * src_w * 3
        wy = np.int32((f - i) * 256 + 0.5)
        for x in range(out_w):
            out_x = out_w - 1 - x if flip else x
            w1 = wx[x]
            w0 = 256 - w1
            for ch in range(3):
                top = np.int32(src[ra + xa[x] + ch]) * w0 + np.int32(src[ra + xb[x] + ch]) * w1
                bottom = np.int32(src[rb + xa[x] + ch]) * w0 + np.int32(src[rb + xb[x] + ch]) * w1
                dst[y, out_x, ch] = np.uint8((top * (256 - wy) + bottom * wy + 32768) >> 16)


# Inlined: a separately compiled helper that ffcv's parallel code calls with two array types
# fails to compile for a second loader in the same process (KeyError in numba 0.68's dispatcher).
@njit(inline='always')
def shrink(src, src_w, r0, r1, c0, c1, tmp, dst, flip):
    """src[r0:r1, c0:c1] -> dst: 2x2 box averages while the region is at least twice the
    output, then bilinear. An area filter in effect, at a fraction of OpenCV's INTER_AREA
    cost for the non-integer factors of random crops."""
    out_h, out_w = dst.shape[0], dst.shape[1]
    while r1 - r0 >= 2 * out_h and c1 - c0 >= 2 * out_w:
        h, w = _halve(src, src_w, r0, r1, c0, c1, tmp)
        src, src_w, r0, r1, c0, c1 = tmp, w, 0, h, 0, w
    _bilinear(src, src_w, r0, r1, c0, c1, dst, flip)


@njit(inline='always')
def mirror(image, flip):
    if flip:
        w = image.shape[1]
        for r in range(image.shape[0]):
            for c in range(w // 2):
                for ch in range(3):
                    image[r, c, ch], image[r, w - 1 - c, ch] = image[r, w - 1 - c, ch], image[r, c, ch]


class RandomResizedCropFlipDecoder(SimpleRGBImageDecoder):
    """ffcv decoder: random-resized-crop to `output_size`, then a random left/right flip.

    Set `.epoch` before each epoch and `.output_size` to change resolution; neither
    recompiles. `partial_decode=False` decodes every JPEG in full (the reference path).
    """

    def __init__(self, output_size, seed: int = 0, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 partial_decode: bool = True):
        super().__init__()
        self.output_size = tuple(output_size)
        self.seed = seed
        self.scale = scale
        self.ratio = ratio
        self.partial_decode = partial_decode
        self._epoch = np.zeros(1, dtype=np.int64)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch[0] = value

    def declare_state_and_memory(self, previous_state: State):
        self.max_width = int(self.metadata['width'].max())
        self.max_height = int(self.metadata['height'].max())
        out_shape = (self.output_size[0], self.output_size[1], 3)
        return (replace(previous_state, jit_mode=True, shape=out_shape, dtype=np.dtype('u1')),
                (AllocationQuery(out_shape, np.dtype('u1')),
                 AllocationQuery((self.max_height * self.max_width * 3,), np.dtype('u1'))))

    def generate_code(self):
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        imdecode_c = Compiler.compile(imdecode)
        resize_crop_c = Compiler.compile(resize_crop)
        jpg = IMAGE_MODES['jpg']
        seed = np.uint64(self.seed)
        epoch_address = self._epoch.ctypes.data
        scale_lo, scale_hi = float(self.scale[0]), float(self.scale[1])
        log_ratio_lo, log_ratio_hi = float(np.log(self.ratio[0])), float(np.log(self.ratio[1]))
        partial = self.partial_decode

        def decode(batch_indices, my_storage, metadata, storage_state):
            destination, temp_storage = my_storage
            epoch = _load_int64(epoch_address)
            out_h, out_w = destination.shape[1], destination.shape[2]
            for dst_ix in my_range(len(batch_indices)):
                source_ix = batch_indices[dst_ix]
                field = metadata[source_ix]
                image_data = mem_read(field['data_ptr'], storage_state)
                height, width = np.uint32(field['height']), np.uint32(field['width'])
                key = sample_key(seed, epoch, source_ix)
                top, left, h, w = random_crop(key, height, width, scale_lo, scale_hi,
                                              log_ratio_lo, log_ratio_hi)
                dest = destination[dst_ix]

                flip = do_flip(key)
                tmp = temp_storage[dst_ix]
                if field['mode'] != jpg:
                    if partial:
                        shrink(image_data, width, top, top + h, left, left + w, tmp, dest, flip)
                    else:
                        resize_crop_c(image_data.reshape(height, width, 3), top, top + h, left, left + w, dest)
                        mirror(dest, flip)
                    continue
                d = dct_denominator(h, w, out_h, out_w) if partial else 1
                use_region = partial and h * w < REGION_MAX_AREA * height * width
                if use_region:  # decode the MCU-aligned box holding the crop
                    y0, x0 = (top // MCU) * MCU, (left // MCU) * MCU
                else:
                    y0, x0 = 0, 0
                box_h = top + h - y0 if use_region else height
                box_w = left + w - x0 if use_region else width
                dec_h, dec_w = (box_h + d - 1) // d, (box_w + d - 1) // d
                ok = imdecode_c(image_data, tmp[:dec_h * dec_w * 3], height, width, box_h, box_w,
                                x0, y0, 1, d, use_region, False)
                if ok != 0 and (use_region or d > 1):  # fall back to a plain full decode
                    d, y0, x0, dec_h, dec_w = 1, 0, 0, height, width
                    imdecode_c(image_data, tmp[:dec_h * dec_w * 3], height, width, height, width,
                               0, 0, 1, 1, False, False)
                r0 = min((top - y0) // d, dec_h - 1)
                c0 = min((left - x0) // d, dec_w - 1)
                r1 = max(min((top - y0 + h + d - 1) // d, dec_h), r0 + 1)
                c1 = max(min((left - x0 + w + d - 1) // d, dec_w), c0 + 1)
                if partial:
                    shrink(tmp, dec_w, r0, r1, c0, c1, tmp, dest, flip)
                else:
                    resize_crop_c(tmp[:dec_h * dec_w * 3].reshape(dec_h, dec_w, 3), r0, r1, c0, c1, dest)
                    mirror(dest, flip)
            return destination[:len(batch_indices)]

        decode.is_parallel = True
        return decode
