"""Per-image uint8 operations on (H, W, 3) RGB arrays, each bit-equal to its reference.

RandAugment's ops follow Pillow 12.3's C code as timm 1.0.31 calls it (ImageOps lookup
tables, ImageEnhance's float32 blends, the SMOOTH 3x3 filter, affine transforms through
Pillow's bilinear filter). Color jitter's follow torchvision 0.29's tensor functional ops on
uint8 (float32 blends truncated, its grayscale weights, hue through its HSV code).
"Equal" means the same float32/float64 operations in the same order: numba neither fuses
a*b + c into an FMA nor reorders sums unless told to (fastmath), and nothing here is.

Speed comes from the loops' shape, not from other arithmetic: every loop runs over the
flat pixel array so that LLVM vectorises it, a blend whose other side is constant (a
brightness, a contrast) becomes a 256-entry table computed the reference's way, and
branches between values are selects.

Pointwise ops work in place; those that read neighbours (affine, sharpness) write into
`out`, another array of the same shape. Arrays must be C-contiguous (H, W, 3) uint8.
"""
from __future__ import annotations

import math

import numpy as np

from .jit import kernel

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_F255 = np.float32(255.0)
_U = np.uint64


@kernel
def to_uint8(v):
    """Clamp a float32 to [0, 255] and truncate: Pillow's clip and torch's clamp + .to(uint8)."""
    return np.uint8(min(max(v, _F0), _F255))


@kernel
def copy(dst, src):
    """dst = src for arrays of one shape: a plain loop, 10-20x faster than numba's slice
    assignment (dst[:] = src), which goes element by element through the general path."""
    d, s = dst.reshape(-1), src.reshape(-1)
    for i in range(d.size):
        d[i] = s[i]


# ---- lookup tables ----

@kernel
def apply_lut(image, lut):
    """One (256,) uint8 table for every channel, in place."""
    flat = image.reshape(-1)
    for i in range(flat.size):
        flat[i] = lut[flat[i]]


@kernel
def apply_luts(image, luts):
    """luts[c] for channel c, in place; luts is (3, 256) uint8."""
    flat = image.reshape(-1)
    for i in range(flat.size // 3):
        flat[3 * i] = luts[0, flat[3 * i]]
        flat[3 * i + 1] = luts[1, flat[3 * i + 1]]
        flat[3 * i + 2] = luts[2, flat[3 * i + 2]]


@kernel
def histograms(image):
    """(3, 256) counts per channel."""
    flat = image.reshape(-1)
    hist = np.zeros((3, 256), dtype=np.int64)
    for i in range(flat.size // 3):
        hist[0, flat[3 * i]] += 1
        hist[1, flat[3 * i + 1]] += 1
        hist[2, flat[3 * i + 2]] += 1
    return hist


# ---- Pillow: ImageOps ----

@kernel
def autocontrast(image):
    """ImageOps.autocontrast(img): each channel's [min, max] stretched to [0, 255]."""
    hist = histograms(image)
    luts = np.empty((3, 256), dtype=np.uint8)
    for c in range(3):
        lo = 0
        while lo < 255 and hist[c, lo] == 0:
            lo += 1
        hi = 255
        while hi > 0 and hist[c, hi] == 0:
            hi -= 1
        if hi <= lo:
            for i in range(256):
                luts[c, i] = i
            continue
        scale = 255.0 / (hi - lo)
        offset = -lo * scale
        for i in range(256):
            luts[c, i] = min(max(int(i * scale + offset), 0), 255)  # int(): towards zero
    apply_luts(image, luts)


@kernel
def equalize(image):
    """ImageOps.equalize(img): per-channel histogram equalisation in Pillow's integer steps."""
    hist = histograms(image)
    luts = np.empty((3, 256), dtype=np.uint8)
    for c in range(3):
        total, last, used = 0, 0, 0
        for i in range(256):
            if hist[c, i]:
                total += hist[c, i]
                last = hist[c, i]
                used += 1
        step = (total - last) // 255 if used > 1 else 0
        if step == 0:
            for i in range(256):
                luts[c, i] = i
            continue
        n = step // 2
        for i in range(256):
            luts[c, i] = min(n // step, 255)  # Image.point clips its table to 0-255
            n += hist[c, i]
    apply_luts(image, luts)


@kernel
def invert(image):
    lut = np.empty(256, dtype=np.uint8)
    for i in range(256):
        lut[i] = 255 - i
    apply_lut(image, lut)


@kernel
def posterize(image, bits):
    """ImageOps.posterize: keep the top `bits` bits; 8 or more keeps the image (timm's check)."""
    if bits >= 8:
        return
    mask = 0 if bits <= 0 else (0xFF << (8 - bits)) & 0xFF
    lut = np.empty(256, dtype=np.uint8)
    for i in range(256):
        lut[i] = i & mask
    apply_lut(image, lut)


@kernel
def solarize(image, threshold):
    """ImageOps.solarize: values at or above `threshold` inverted."""
    lut = np.empty(256, dtype=np.uint8)
    for i in range(256):
        lut[i] = i if i < threshold else 255 - i
    apply_lut(image, lut)


@kernel
def solarize_add(image, add, threshold=128):
    """timm's solarize_add: `add` added (saturating) to values below `threshold`."""
    lut = np.empty(256, dtype=np.uint8)
    for i in range(256):
        lut[i] = min(255, i + add) if i < threshold else i
    apply_lut(image, lut)


# ---- Pillow: ImageEnhance, i.e. Image.blend(degenerate, image, factor) ----

@kernel
def pil_blend(degenerate, value, alpha):
    """Blend.c: in1 + alpha * (in2 - in1) in float32 (alpha a float32), clipped, truncated."""
    return to_uint8(np.float32(degenerate) + alpha * np.float32(np.int32(value) - np.int32(degenerate)))


@kernel
def pil_luma(r, g, b):
    """Convert.c's RGB -> L: ITU-R 601-2 luma in 16-bit fixed point, rounded."""
    return (np.int32(r) * 19595 + np.int32(g) * 38470 + np.int32(b) * 7471 + 0x8000) >> 16


@kernel
def pil_blend_with_constant(image, degenerate, factor):
    lut = np.empty(256, dtype=np.uint8)
    alpha = np.float32(factor)
    for v in range(256):
        lut[v] = pil_blend(degenerate, v, alpha)
    apply_lut(image, lut)


@kernel
def brightness(image, factor):
    """ImageEnhance.Brightness: blend with black."""
    pil_blend_with_constant(image, 0, factor)


@kernel
def contrast(image, factor):
    """ImageEnhance.Contrast: blend with the mean luma rounded to an integer (ImageStat's
    float mean, then int(mean + 0.5))."""
    flat = image.reshape(-1)
    total = 0
    for i in range(flat.size // 3):
        total += pil_luma(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2])
    pil_blend_with_constant(image, int(total / (flat.size // 3) + 0.5), factor)


@kernel
def color(image, factor):
    """ImageEnhance.Color: blend with the pixel's luma (0 gives grey, 1 the image)."""
    flat = image.reshape(-1)
    alpha = np.float32(factor)
    for i in range(flat.size // 3):
        r, g, b = flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]
        luma = pil_luma(r, g, b)
        flat[3 * i] = pil_blend(luma, r, alpha)
        flat[3 * i + 1] = pil_blend(luma, g, alpha)
        flat[3 * i + 2] = pil_blend(luma, b, alpha)


@kernel
def sharpness(image, factor, out):
    """ImageEnhance.Sharpness into `out`: blend with ImageFilter.SMOOTH, the 3x3 kernel
    [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 in float32 (Filter.c: + 0.5, clipped, truncated;
    the border pixels copied)."""
    h, w, _ = image.shape
    src, dst = image.reshape(-1), out.reshape(-1)
    copy(out, image)  # the border; and all of it below 3 x 3, where Pillow returns a copy
    if h < 3 or w < 3:
        return
    k1 = np.float32(1.0) / np.float32(13.0)
    k5 = np.float32(5.0) / np.float32(13.0)
    alpha = np.float32(factor)
    half = np.float32(0.5)
    row, n = 3 * w, 3 * w - 6
    for y in range(1, h - 1):
        # the 9 neighbours as views indexed by the same j (an index like j - 3 would make
        # numba check it for wraparound, and LLVM would not vectorise the loop)
        a, m, b = (y - 1) * row, y * row, (y + 1) * row
        a0, a1, a2 = src[a:a + n], src[a + 3:a + 3 + n], src[a + 6:a + 6 + n]
        m0, m1, m2 = src[m:m + n], src[m + 3:m + 3 + n], src[m + 6:m + 6 + n]
        b0, b1, b2 = src[b:b + n], src[b + 3:b + 3 + n], src[b + 6:b + 6 + n]
        o = dst[m + 3:m + 3 + n]
        for j in range(n):
            # Filter.c's order: the row below, the centre row, the row above; each left to right
            below = (np.float32(b0[j]) * k1 + np.float32(b1[j]) * k1) + np.float32(b2[j]) * k1
            centre = (np.float32(m0[j]) * k1 + np.float32(m1[j]) * k5) + np.float32(m2[j]) * k1
            above = (np.float32(a0[j]) * k1 + np.float32(a1[j]) * k1) + np.float32(a2[j]) * k1
            smooth = to_uint8(((half + below) + centre) + above)
            o[j] = pil_blend(smooth, m1[j], alpha)


# ---- Pillow: affine transforms with the bilinear filter (Geometry.c) ----

@kernel
def affine(image, out, a0, a1, a2, a3, a4, a5, fill):
    """Image.transform(size, AFFINE, (a0, ..., a5), BILINEAR, fillcolor=fill) into `out`.

    Output pixel (x, y) samples the input at (a0 X + a1 Y + a2, a3 X + a4 Y + a5), where
    X = x + 0.5 and Y = y + 0.5. A sample point outside the image gives `fill`; inside, its
    2x2 neighbours (clamped at the edges: an edge pixel blends with itself, not with the
    fill) are interpolated in float64 and truncated. Row by row in two passes: the sample
    points (a loop LLVM vectorises), then the gathers."""
    h, w, _ = image.shape
    src, dst = image.reshape(-1), out.reshape(-1)
    row = 3 * w
    inside = np.empty(w, dtype=np.bool_)
    dxs, dys = np.empty(w), np.empty(w)
    offsets = np.empty((4, w), dtype=np.uint64)  # top left, top right, bottom left, bottom right
    tl, tr, bl, br = offsets[0], offsets[1], offsets[2], offsets[3]
    for y in range(h):
        yo = y + 0.5
        for x in range(w):
            xo = x + 0.5
            xin = a0 * xo + a1 * yo + a2
            yin = a3 * xo + a4 * yo + a5
            inside[x] = (xin >= 0.0) & (xin < w) & (yin >= 0.0) & (yin < h)
            xin -= 0.5
            yin -= 0.5
            xf, yf = np.floor(xin), np.floor(yin)
            dxs[x], dys[x] = xin - xf, yin - yf
            # inside, xf is in [-1, w - 1] and yf in [-1, h - 1]; the clamps only keep the
            # offsets of outside points (never read) in range
            xf, yf = min(max(xf, -1.0), w - 1.0), min(max(yf, -1.0), h - 1.0)
            left, right = 3 * int(max(xf, 0.0)), 3 * int(min(xf + 1.0, w - 1.0))
            top = row * int(max(yf, 0.0))
            bottom = row * int(yf + 1.0) if yf + 1.0 < h else top  # Pillow: no row below, v2 = v1
            tl[x], tr[x], bl[x], br[x] = top + left, top + right, bottom + left, bottom + right
        o = dst[y * row:(y + 1) * row]
        for x in range(w):
            if not inside[x]:
                o[3 * x], o[3 * x + 1], o[3 * x + 2] = fill[0], fill[1], fill[2]
                continue
            dx, dy = dxs[x], dys[x]
            for c in range(3):
                k = _U(c)
                p = np.int32(src[tl[x] + k])
                v1 = p + (np.int32(src[tr[x] + k]) - p) * dx
                q = np.int32(src[bl[x] + k])
                v2 = q + (np.int32(src[br[x] + k]) - q) * dx
                o[3 * x + c] = np.uint8(v1 + (v2 - v1) * dy)


@kernel
def round15(v):
    """Python's round(v, 15), correctly rounded. numba's rounds v * 1e15 and is a digit off
    in ~4% of cases; Dekker's exact product gives the rounding error of v * 1e15, which
    decides the exact halves."""
    p = v * 1e15
    split = 134217729.0  # 2 ** 27 + 1
    t = split * v
    vh = t - (t - v)
    vl = v - vh
    t = split * 1e15
    bh = t - (t - 1e15)
    bl = 1e15 - bh
    err = ((vh * bh - p) + vh * bl + vl * bh) + vl * bl
    z = math.floor(p)
    frac = p - z
    if frac > 0.5 or (frac == 0.5 and (err > 0.0 or (err == 0.0 and z % 2.0 == 1.0))):
        z += 1.0
    return z / 1e15


@kernel
def quarter_turns(image, out, turns):
    """Transpose.ROTATE_180, or ROTATE_90 / ROTATE_270 (counter-clockwise) of a square image."""
    h, w, _ = image.shape
    for y in range(h):
        for x in range(w):
            if turns == 2:
                sy, sx = h - 1 - y, w - 1 - x
            elif turns == 1:
                sy, sx = x, w - 1 - y
            else:
                sy, sx = h - 1 - x, y
            for c in range(3):
                out[y, x, c] = image[sy, sx, c]


@kernel
def rotate(image, out, degrees, fill):
    """Image.rotate(degrees, BILINEAR, fillcolor=fill) into `out`: counter-clockwise about
    the centre, with Pillow's matrix (cos and sin rounded to 15 digits) and its exact turns."""
    h, w, _ = image.shape
    angle = degrees % 360.0
    if angle == 0.0:
        copy(out, image)
        return
    if angle == 180.0 or ((angle == 90.0 or angle == 270.0) and w == h):
        quarter_turns(image, out, int(angle) // 90)
        return
    theta = -(angle * (math.pi / 180.0))  # -math.radians(angle)
    a, b = round15(math.cos(theta)), round15(math.sin(theta))
    d, e = round15(-math.sin(theta)), round15(math.cos(theta))
    cx, cy = w / 2, h / 2
    affine(image, out, a, b, a * -cx + b * -cy + 0.0 + cx, d, e, d * -cx + e * -cy + 0.0 + cy, fill)


# Shears and translations move pixels along one axis only: Pillow's sample points then sit
# exactly on pixel centres along the other (x + 0.5 - 0.5 = x), its interpolation weight there
# is 0, and p + (q - p) * 0 = p. These compute just the other axis, with Pillow's arithmetic
# for it (a0 * X + a1 * Y + a2, left to right), 2-3x faster than `affine`.

@kernel
def _fill_row(o, fill):
    for j in range(o.size // 3):
        o[3 * j], o[3 * j + 1], o[3 * j + 2] = fill[0], fill[1], fill[2]


@kernel
def _sample_point(v, size):
    """(inside, floor index, weight) of a sample coordinate, as BILINEAR_HEAD."""
    if v < 0.0 or v >= size:
        return False, 0, 0.0
    v -= 0.5
    f = np.floor(v)
    return True, int(f), v - f


@kernel
def _lerp_u8(p, q, d):
    p = np.int32(p)
    return np.uint8(p + (np.int32(q) - p) * d)


@kernel
def translate_y(image, out, pixels, fill):
    """affine (1, 0, 0, 0, 1, pixels): each output row a blend of two input rows."""
    h, w, _ = image.shape
    src, dst = image.reshape(-1), out.reshape(-1)
    row = 3 * w
    for y in range(h):
        o = dst[y * row:(y + 1) * row]
        inside, yi, dy = _sample_point((y + 0.5) + pixels, h)  # (0.0 * X + 1.0 * Y) + pixels
        if not inside:
            _fill_row(o, fill)
            continue
        top = src[max(yi, 0) * row:max(yi, 0) * row + row]
        bottom = src[(yi + 1) * row:(yi + 2) * row] if yi + 1 < h else top
        for j in range(row):
            o[j] = _lerp_u8(top[j], bottom[j], dy)


@kernel
def _row_points(w, shift, inside, left, right, dxs):
    """The sample points of one row at X + shift (X + shift + 0, as Pillow sums): vectorised."""
    for x in range(w):
        xin = ((x + 0.5) + shift) + 0.0
        inside[x] = (xin >= 0.0) & (xin < w)
        xin -= 0.5
        xf = np.floor(xin)
        dxs[x] = xin - xf
        xf = min(max(xf, -1.0), w - 1.0)
        left[x], right[x] = 3 * int(max(xf, 0.0)), 3 * int(min(xf + 1.0, w - 1.0))


@kernel
def _shift_row(line, o, inside, left, right, dxs, fill):
    for x in range(inside.size):
        if not inside[x]:
            o[3 * x], o[3 * x + 1], o[3 * x + 2] = fill[0], fill[1], fill[2]
            continue
        for c in range(3):
            o[3 * x + c] = _lerp_u8(line[left[x] + _U(c)], line[right[x] + _U(c)], dxs[x])


@kernel
def _shift_rows(image, out, shifts, fill):
    """Row y of `out` samples row y of `image` at X + shifts[y] (dy = 0)."""
    h, w, _ = image.shape
    src, dst = image.reshape(-1), out.reshape(-1)
    row = 3 * w
    inside, dxs = np.empty(w, dtype=np.bool_), np.empty(w)
    left, right = np.empty(w, dtype=np.uint64), np.empty(w, dtype=np.uint64)
    for y in range(h):
        if y == 0 or shifts[y] != shifts[y - 1]:  # a translation: the same points every row
            _row_points(w, shifts[y], inside, left, right, dxs)
        _shift_row(src[y * row:(y + 1) * row], dst[y * row:(y + 1) * row], inside, left, right, dxs, fill)


@kernel
def translate_x(image, out, pixels, fill):
    """affine (1, 0, pixels, 0, 1, 0): X + pixels."""
    # Pillow computes (1.0 * X + 0.0 * Y) + pixels = X + pixels: one shift for every row
    _shift_rows(image, out, np.full(image.shape[0], pixels), fill)


@kernel
def shear_x(image, out, factor, fill):
    """affine (1, factor, 0, 0, 1, 0): (X + factor * Y) + 0."""
    h = image.shape[0]
    shifts = np.empty(h)
    for y in range(h):
        shifts[y] = factor * (y + 0.5)
    _shift_rows(image, out, shifts, fill)


@kernel
def shear_y(image, out, factor, fill):
    """affine (1, 0, 0, factor, 1, 0): column x samples its column at (factor * X + Y) + 0."""
    h, w, _ = image.shape
    src, dst = image.reshape(-1), out.reshape(-1)
    row = 3 * w
    slope = np.empty(w)
    for x in range(w):
        slope[x] = factor * (x + 0.5)
    inside, dys = np.empty(w, dtype=np.bool_), np.empty(w)
    top, bottom = np.empty(w, dtype=np.uint64), np.empty(w, dtype=np.uint64)
    for y in range(h):
        for x in range(w):  # the sample points: vectorised
            yin = (slope[x] + (y + 0.5)) + 0.0
            inside[x] = (yin >= 0.0) & (yin < h)
            yin -= 0.5
            yf = np.floor(yin)
            dys[x] = yin - yf
            yf = min(max(yf, -1.0), h - 1.0)
            t = row * int(max(yf, 0.0)) + 3 * x
            top[x] = t
            bottom[x] = row * int(yf + 1.0) + 3 * x if yf + 1.0 < h else t
        o = dst[y * row:(y + 1) * row]
        for x in range(w):
            if not inside[x]:
                o[3 * x], o[3 * x + 1], o[3 * x + 2] = fill[0], fill[1], fill[2]
                continue
            for c in range(3):
                o[3 * x + c] = _lerp_u8(src[top[x] + _U(c)], src[bottom[x] + _U(c)], dys[x])


# ---- torchvision: tensor functional ops on uint8 (transforms/_functional_tensor.py) ----

_TV_R, _TV_G, _TV_B = np.float32(0.2989), np.float32(0.587), np.float32(0.114)
_TV_TO_UINT8 = np.float32(255.0 + 1.0 - 1e-3)  # convert_image_dtype's float -> uint8 scale


@kernel
def tv_gray(r, g, b):
    """rgb_to_grayscale on uint8: float32 weights, summed left to right, truncated."""
    return np.uint8((_TV_R * np.float32(r) + _TV_G * np.float32(g)) + _TV_B * np.float32(b))


@kernel
def tv_blend(value, other, ratio, rest):
    """_blend: ratio * img1 + (1 - ratio) * img2 in float32, clamped to [0, 255], truncated."""
    return to_uint8(ratio * np.float32(value) + rest * other)


@kernel
def tv_blend_with_constant(image, other, factor):
    ratio, rest = np.float32(factor), np.float32(1.0 - factor)
    lut = np.empty(256, dtype=np.uint8)
    for v in range(256):
        lut[v] = tv_blend(v, other, ratio, rest)
    apply_lut(image, lut)


@kernel
def tv_brightness(image, factor):
    tv_blend_with_constant(image, _F0, factor)


@kernel
def tv_contrast(image, factor):
    """adjust_contrast: blend with the float32 mean of the (truncated) grayscale image.
    torch sums in float32: the same while the sum stays below 2 ** 24 (256 x 256 pixels)."""
    flat = image.reshape(-1)
    total = 0
    for i in range(flat.size // 3):
        total += np.int32(tv_gray(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]))
    tv_blend_with_constant(image, np.float32(total) / np.float32(flat.size // 3), factor)


@kernel
def tv_saturation(image, factor):
    """adjust_saturation: blend with the pixel's (truncated) grayscale value."""
    flat = image.reshape(-1)
    ratio, rest = np.float32(factor), np.float32(1.0 - factor)
    for i in range(flat.size // 3):
        r, g, b = flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]
        gray = np.float32(tv_gray(r, g, b))
        flat[3 * i] = tv_blend(r, gray, ratio, rest)
        flat[3 * i + 1] = tv_blend(g, gray, ratio, rest)
        flat[3 * i + 2] = tv_blend(b, gray, ratio, rest)


@kernel
def tv_hue(image, factor):
    """adjust_hue: /255, _rgb2hsv, (h + hue) % 1, _hsv2rgb, * 255.999, truncated.

    torchvision's masked sums are selects here (exactly one term of each is non-zero, and
    adding zeros is exact); its fmod(x, 1) and remainder(x, 1) of values in (-1, 2) are
    x - 1, x or x + 1, which is what they compute."""
    flat = image.reshape(-1)
    hue = np.float32(factor)
    for i in range(flat.size // 3):
        r = np.float32(flat[3 * i]) / _F255
        g = np.float32(flat[3 * i + 1]) / _F255
        b = np.float32(flat[3 * i + 2]) / _F255
        maxc = max(r, max(g, b))
        minc = min(r, min(g, b))
        eqc = maxc == minc
        cr = maxc - minc
        s = cr / (_F1 if eqc else maxc)
        divisor = _F1 if eqc else cr
        rc = (maxc - r) / divisor
        gc = (maxc - g) / divisor
        bc = (maxc - b) / divisor
        h_r = bc - gc
        h_g = (np.float32(2.0) + rc) - bc
        h_b = (np.float32(4.0) + gc) - rc
        h = h_r if maxc == r else (h_g if maxc == g else h_b)
        h = h / np.float32(6.0) + _F1  # in [5/6, 2)
        h = h - _F1 if h >= _F1 else h  # torch.fmod(., 1.0)
        h = h + hue  # in [-0.5, 1.5)
        h = h - _F1 if h >= _F1 else (h + _F1 if h < _F0 else h)  # torch's remainder(., 1.0)
        h6 = h * np.float32(6.0)
        sector = np.floor(h6)
        f = h6 - sector
        v = maxc
        p = min(max(v * (_F1 - s), _F0), _F1)
        q = min(max(v * (_F1 - s * f), _F0), _F1)
        t = min(max(v * (_F1 - s * (_F1 - f)), _F0), _F1)
        # sector 6 (h rounded up to 1.0) is sector 0: torchvision's i % 6
        s0 = sector == 0.0 or sector == 6.0
        rr = v if (s0 or sector == 5.0) else (q if sector == 1.0 else (p if sector <= 3.0 else t))
        gg = t if s0 else (v if sector <= 2.0 else (q if sector == 3.0 else p))
        bb = p if (s0 or sector == 1.0) else (t if sector == 2.0 else (v if sector <= 4.0 else q))
        flat[3 * i] = np.uint8(rr * _TV_TO_UINT8)
        flat[3 * i + 1] = np.uint8(gg * _TV_TO_UINT8)
        flat[3 * i + 2] = np.uint8(bb * _TV_TO_UINT8)
