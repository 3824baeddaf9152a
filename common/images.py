"""Turn any image file a user has into correct 8-bit RGB pixels, or say why not.

Used by the converter (every ImageNet file) and by prediction (a user's photo), so the
two see an image the same way. ImageNet itself holds the awkward cases handled here:
22 CMYK JPEGs, grayscale ones, a PNG named `.JPEG`; user photos add EXIF rotation,
palette/RGBA/16-bit PNGs and WebP.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# A file failing to decode raises one of these; each becomes a skipped-file reason.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError,
                 Image.DecompressionBombError)
# A few bytes can declare billions of pixels (a decompression bomb): Pillow refuses above this at
# open (and only warns from half of it). load_rgb's default, so the converter reads what it always
# read; the web app passes a lower limit.
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # 178,956,970: ~13,400 px square


class BadImage(Exception):
    """The file is not a decodable image; the message is the reason."""


def load_rgb(path: str | os.PathLike, max_side: int | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode `path` to an (H, W, 3) uint8 RGB array, EXIF orientation applied.

    With `max_side`, JPEGs much larger than needed are decoded at a reduced DCT scale
    (libjpeg's draft mode), which is several times faster and no worse than decoding
    in full and shrinking: the final resize to `max_side` is still done with INTER_AREA.
    An image declaring more than `max_pixels` (at most Pillow's limit) is refused before
    anything is decoded.
    """
    if os.path.getsize(path) == 0:
        raise BadImage('empty file (0 bytes)')
    try:
        with Image.open(path) as im:  # reads the header only
            w, h = im.size
            if w * h > max_pixels:
                raise BadImage(f'too many pixels: {w}x{h} is over the limit of {max_pixels:,}, '
                               'could be a decompression bomb (else shrink the picture first)')
            if max_side and im.format == 'JPEG':
                # draft() keeps the size >= the request, so quality is kept.
                im.draft('RGB', (max_side, max_side))
            im.load()  # decodes now: a truncated file raises here, not later
            ImageOps.exif_transpose(im, in_place=True)  # in place: otherwise a copy of every image
            rgb = to_rgb_array(im)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own check at open; its warning raises only where a caller made warnings errors.
        raise BadImage(f'too many pixels: {e}'.splitlines()[0]) from None
    except DECODE_ERRORS as e:
        raise BadImage(f'{type(e).__name__}: {e}'.splitlines()[0]) from None
    return resize_max_side(rgb, max_side)


def to_rgb_array(im: Image.Image) -> np.ndarray:
    if im.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I'):
        # 16-bit grayscale: Pillow's convert('RGB') would clip at 255, whitening the image.
        a = np.asarray(im).astype(np.uint32)
        gray = (a >> 8).astype(np.uint8) if a.max() > 255 else a.astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if im.mode == 'F':
        gray = np.clip(np.asarray(im), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if im.mode == 'P' and 'transparency' in im.info:
        im = im.convert('RGBA')
    if im.mode in ('RGBA', 'LA', 'PA', 'RGBa'):
        # Transparent pixels shown over white, as a viewer would, instead of
        # whatever colour happens to hide under alpha 0.
        im = im.convert('RGBA')
        background = Image.new('RGBA', im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    if im.mode != 'RGB':
        im = im.convert('RGB')  # L, 1, P, CMYK (Adobe-inverted too), YCbCr, LAB ...
    return np.asarray(im, dtype=np.uint8)


def resize_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink so the longer side is at most `max_side` (never enlarge), as ffcv's writer does."""
    if not max_side:
        return image
    h, w = image.shape[:2]
    ratio = max_side / max(h, w)
    if ratio >= 1:
        return image
    size = (max(1, int(w * ratio)), max(1, int(h * ratio)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


# OpenCV's encoder subsamples chroma 2x2 (4:2:0): a row of MCUs is 16 pixels high and each
# MCU 16 pixels wide.
MCU_SIZE = 16


def restart_interval(width: int) -> int:
    """MCUs between JPEG restart markers for an image `width` pixels wide.

    The training decoder (train/crop_resize.cpp) cuts a crop's segments out of the compressed
    stream only when the interval divides the MCUs of a row. 3 or 4 MCUs (48-64 px columns)
    cost ~2-3% in file size and full-decode time; every MCU would cost 10% and 30%. Failing
    those, 2, else the smallest divisor (a prime width in MCUs: whole rows)."""
    mcus = -(-width // MCU_SIZE)
    for k in (4, 3, 2):
        if mcus % k == 0:
            return k
    return next(k for k in range(5, mcus + 1) if mcus % k == 0) if mcus > 1 else 1


def encode_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """RGB array -> JPEG bytes (uint8 array), with OpenCV's libjpeg like ffcv's writer, and
    restart markers every restart_interval() MCUs (any decoder reads them)."""
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [int(cv2.IMWRITE_JPEG_QUALITY), int(quality),
                            int(cv2.IMWRITE_JPEG_RST_INTERVAL), restart_interval(image.shape[1])])
    if not ok:
        raise BadImage('JPEG encoding failed')
    return buf.reshape(-1)
