"""The training decoder: torchvision's crop distribution, reproducible draws, and partial decoding
that stays close to decoding in full."""
from __future__ import annotations

import ctypes
import json
import math
import mmap
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastimagenet.common.beton import MODE_JPG, MODE_RAW, BetonFile, BetonWriter
from fastimagenet.common.images import encode_jpeg, restart_interval
from fastimagenet.train.decoders import RandomResizedCropFlipDecoder, do_flip, random_crop
from fastimagenet.train.draws import sample_key
from fastimagenet.train.inputs import IMAGENET_MEAN, IMAGENET_STD

from conftest import photo, script


@pytest.fixture(scope='module')
def betons(tmp_path_factory):
    """The built-in sample at ImageNet's stored size, once all-JPEG and once mostly raw."""
    from fastimagenet.convert.make_sample import write_sample
    root = tmp_path_factory.mktemp('dec')
    write_sample(root / 'images', train_per_class=12, val_per_class=1, classes=4)
    out = {}
    for mode in ('jpg', 'raw'):
        out[mode] = root / f'{mode}.beton'
        script('convert/write_imagenet.py', f'--cfg.data_dir={root / "images"}', '--cfg.split=train',
               f'--cfg.write_path={out[mode]}', f'--cfg.write_mode={mode}', '--cfg.max_resolution=500')
    return out


def decode_all(path, res, *, partial=True, epoch=0, seed=0, workers=2, order=None, normalize=None) -> torch.Tensor:
    """Every sample of `path` through the decoder, in index order (NHWC)."""
    from ffcv.fields.basics import IntDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor
    decoder = RandomResizedCropFlipDecoder((res, res), seed=seed, partial_decode=partial, normalize=normalize)
    decoder.epoch = epoch
    loader = Loader(str(path), batch_size=7, num_workers=workers, order=order or OrderOption.SEQUENTIAL,
                    drop_last=False, pipelines={'image': [decoder, ToTensor()], 'label': [IntDecoder(), ToTensor()]},
                    seed=1)
    if order is None:
        return torch.cat([x.clone() for x, _ in loader])
    # a shuffled pass: put each sample back at its index (via the order ffcv used)
    sample_order = loader.next_traversal_order()
    images = torch.cat([x.clone() for x, _ in loader])
    out = torch.empty_like(images)
    out[torch.as_tensor(sample_order.astype(np.int64))] = images
    return out


@pytest.mark.parametrize('res', [64, 160])
def test_partial_decoding_stays_close_to_full_decoding(betons, res):
    partial = decode_all(betons['jpg'], res, partial=True).float()
    full = decode_all(betons['jpg'], res, partial=False).float()
    per_image = (partial - full).abs().mean(dim=(1, 2, 3))
    # Same crops; what differs is DCT-domain downscaling before the resize (and the decoded
    # region's rounding to whole pixels of the scaled image).
    assert per_image.mean() < 3.0, per_image
    assert per_image.max() < 8.0, per_image


def test_raw_images_take_the_ordinary_path(betons):
    assert torch.equal(decode_all(betons['raw'], 96, partial=True), decode_all(betons['raw'], 96, partial=False))


@pytest.mark.parametrize('mode', ['raw', 'jpg'])
@pytest.mark.parametrize('res', [48, 96, 224])  # shrinking by up to ~10x, and enlarging
def test_crop_resize_flip_match_torchvision_on_stored_pixels(betons, res, mode):
    """The crop's geometry, the flip, the channel order and the resize, against torchvision's
    antialiased resized_crop of the same crop of the same stored (decoded) pixels."""
    from torchvision.transforms import functional as F
    ours = decode_all(betons[mode], res).float()
    beton = BetonFile(betons[mode])
    errors = []
    for i in range(len(beton)):
        pixels = torch.from_numpy(np.array(beton.image(i))).permute(2, 0, 1)
        key = np.uint64(sample_key(np.uint64(0), 0, np.uint64(i)))
        top, left, h, w = random_crop(key, pixels.shape[1], pixels.shape[2], 0.08, 1.0, math.log(3 / 4), math.log(4 / 3))
        expected = F.resized_crop(pixels, top, left, h, w, [res, res], antialias=True).float()
        if do_flip(key):
            expected = expected.flip(-1)
        errors.append((ours[i].permute(2, 0, 1) - expected).abs().mean().item())
    print(f'{mode} res {res}: mean abs difference {np.mean(errors):.2f}, max {np.max(errors):.2f}')
    assert np.mean(errors) < 2.0 and np.max(errors) < 4.0, errors
    # a wrong crop, a missing or extra flip gives far more than that
    assert (ours[-1].permute(2, 0, 1) - expected.flip(-1)).abs().mean() > 4 * errors[-1] + 1


def test_normalised_output_is_the_uint8_output_normalised(betons):
    raw = decode_all(betons['jpg'], 64).float()
    normalised = decode_all(betons['jpg'], 64, normalize=(IMAGENET_MEAN, IMAGENET_STD))
    assert normalised.dtype == torch.float32
    expected = (raw - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(normalised, expected, atol=1e-5, rtol=1e-5)


def test_draws_depend_on_seed_epoch_and_index_only(betons):
    from ffcv.loader import OrderOption
    a = decode_all(betons['jpg'], 64, epoch=3, workers=1)
    b = decode_all(betons['jpg'], 64, epoch=3, workers=2, order=OrderOption.RANDOM)  # other threads, order
    assert torch.equal(a, b)
    assert not torch.equal(a, decode_all(betons['jpg'], 64, epoch=4))
    assert not torch.equal(a, decode_all(betons['jpg'], 64, epoch=3, seed=5))


def test_crops_follow_torchvision_random_resized_crop():
    from torchvision.transforms import RandomResizedCrop
    height, width, n = 375, 500, 4000
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    ours = np.array([random_crop(np.uint64(sample_key(np.uint64(0), 0, np.uint64(i))), height, width, scale[0], scale[1],
                                 math.log(ratio[0]), math.log(ratio[1])) for i in range(n)])
    torch.manual_seed(0)
    image = torch.zeros(3, height, width)
    theirs = np.array([RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(n)])
    for crops in (ours, theirs):
        top, left, h, w = crops.T
        assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()
    area_ours, area_theirs = (ours[:, 2] * ours[:, 3]) / (height * width), (theirs[:, 2] * theirs[:, 3]) / (height * width)
    assert abs(area_ours.mean() - area_theirs.mean()) < 0.02
    assert abs(np.median(area_ours) - np.median(area_theirs)) < 0.03
    log_aspect_ours, log_aspect_theirs = np.log(ours[:, 3] / ours[:, 2]), np.log(theirs[:, 3] / theirs[:, 2])
    assert abs(log_aspect_ours.mean() - log_aspect_theirs.mean()) < 0.02
    assert abs(log_aspect_ours.std() - log_aspect_theirs.std()) < 0.02
    centre_ours = (ours[:, 0] + ours[:, 2] / 2) / height
    assert abs(centre_ours.mean() - 0.5) < 0.02


def test_an_undecodable_jpeg_leaves_zeros_not_a_crash():
    from fastimagenet.train.decoders import crop_resize
    garbage = np.frombuffer(b'\xff\xd8\xff\xe0 not a jpeg at all' * 20, dtype=np.uint8).copy()
    out = np.full((32, 32, 3), 7, dtype=np.uint8)
    status = crop_resize(garbage.ctypes.data, garbage.size, 1, 300, 400, 10, 20, 200, 250,
                         out.ctypes.data, 32, 32, 0, 1, None, None)
    assert status != 0 and not out.any()


@pytest.mark.parametrize('decoder', ['fast', 'stock'])
def test_training_loader_gives_normalised_channels_last_batches_on_cpu(betons, decoder):
    """Both `data.decoder` choices, built as the trainer builds them: the fast decoder
    normalises inside the decoder, the stock one through ffcv's NormalizeImage."""
    from fastimagenet.train.loaders import train_loader
    data = train_loader(betons['jpg'], batch_size=8, num_workers=2, in_memory=1, res=64, seed=0,
                        distributed=False, device=torch.device('cpu'), decoder=decoder)
    images, labels, indices = next(iter(data))
    assert data.normalized and images.shape == (8, 3, 64, 64) and images.dtype == torch.float32
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert -2.5 < images.mean() < 2.5 and images.std() > 0.1  # normalised, not 0-255
    assert labels.shape == (8,) and labels.dtype == torch.int64
    assert torch.equal(labels, torch.as_tensor(BetonFile(betons['jpg']).labels[indices.numpy()]))


def test_a_crop_outside_the_image_leaves_zeros_not_a_crash():
    """An inconsistent .beton (metadata larger than the stored pixels) must not abort the process."""
    from fastimagenet.train.decoders import crop_resize
    pixels = np.full((10, 10, 3), 200, dtype=np.uint8)
    out = np.full((8, 8, 3), 7, dtype=np.uint8)
    status = crop_resize(pixels.ctypes.data, pixels.size, 0, 10, 10, 5, 5, 20, 20,
                         out.ctypes.data, 8, 8, 0, 1, None, None)
    assert status != 0 and not out.any()


def test_loader_keeps_its_buffers_and_survives_an_epoch_left_early(betons):
    """The project's Loader reuses ffcv's batch buffers across epochs. An epoch abandoned
    after one batch must not write into the next epoch's batches, and a new resolution
    must get buffers of the new shape."""
    from fastimagenet.train.loaders import train_loader

    def epoch(data, e, stop_after=None, res=48):
        data.start_epoch(e, res)
        out = []
        for i, (images, labels, _) in enumerate(data):
            out.append((images.clone(), labels.clone(), images.data_ptr()))
            if stop_after is not None and i + 1 == stop_after:
                break
        return out

    def build():
        return train_loader(betons['jpg'], batch_size=8, num_workers=2, in_memory=1, res=48, seed=0,
                            distributed=False, device=torch.device('cpu'))
    data = build()
    first = epoch(data, 0)
    epoch(data, 1, stop_after=1)  # left early: its producer thread was still running
    again = epoch(data, 0)
    assert len(again) == len(first) == 48 // 8
    for (x, y, ptr), (x2, y2, ptr2) in zip(first, again):
        assert ptr == ptr2  # the same memory, epoch after epoch
        assert torch.equal(y, y2) and torch.equal(x, x2)

    expected = epoch(build(), 1)  # epoch 1 in full, from a loader that never stopped early
    got = epoch(data, 1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(expected, got))

    smaller = epoch(data, 2, res=32)  # progressive resizing: new buffers of the new shape
    assert smaller[0][0].shape == (8, 3, 32, 32)


@pytest.mark.parametrize('res', [160, 224])  # shrinking by up to ~3x (the sample's crops: up to 500 px), enlarging
def test_our_bilinear_matches_opencv_inter_linear(betons, res):
    """crop_resize.cpp resizes with its own SIMD bilinear on x86: it must agree with
    OpenCV's INTER_LINEAR (the path elsewhere) on the same crop of the same pixels."""
    import cv2
    ours = decode_all(betons['raw'], res).numpy().astype(int)
    beton = BetonFile(betons['raw'])
    compared = 0
    for i in range(len(beton)):
        pixels = np.array(beton.image(i))
        key = np.uint64(sample_key(np.uint64(0), 0, np.uint64(i)))
        top, left, h, w = random_crop(key, pixels.shape[0], pixels.shape[1], 0.08, 1.0, math.log(3 / 4), math.log(4 / 3))
        if h >= 2 * res and w >= 2 * res:
            continue  # halved first by both: not the part under test
        expected = cv2.resize(pixels[top:top + h, left:left + w], (res, res), interpolation=cv2.INTER_LINEAR)
        if do_flip(key):
            expected = expected[:, ::-1]
        difference = np.abs(ours[i] - expected)
        assert difference.max() <= 2 and difference.mean() < 0.35, (i, difference.mean())
        compared += 1
    assert compared > len(beton) // 2


def _crop_segments(jpeg: np.ndarray, height, width, crop):
    import ctypes

    from fastimagenet.train.decoders import _lib
    extent = (ctypes.c_int * 4)()
    cut = _lib.crop_segments(ctypes.c_void_p(jpeg.ctypes.data), ctypes.c_uint64(jpeg.size), height, width,
                             *[int(v) for v in crop], extent)
    return bool(cut), tuple(extent)


def test_converter_writes_restart_markers_the_decoder_cuts_crops_with(betons):
    """The converter's JPEGs carry restart markers every few MCUs, so the decoder can splice
    a crop's segments out of the compressed stream; what it keeps covers the crop, on the
    MCU grid, and is less than the image."""
    beton = BetonFile(betons['jpg'])
    meta = beton.image_meta
    cut_count = 0
    for i in range(len(beton)):
        jpeg = beton.image_bytes(i)
        height, width = int(meta['height'][i]), int(meta['width'][i])
        dri = jpeg.tobytes().find(b'\xff\xdd\x00\x04')
        assert dri > 0 and int.from_bytes(jpeg[dri + 4:dri + 6].tobytes(), 'big') == restart_interval(width)
        key = np.uint64(sample_key(np.uint64(0), 0, np.uint64(i)))
        top, left, h, w = crop = random_crop(key, height, width, 0.08, 1.0, math.log(3 / 4), math.log(4 / 3))
        cut, (y, x, kept_h, kept_w) = _crop_segments(jpeg, height, width, crop)
        if not cut:
            continue
        cut_count += 1
        assert y % 16 == 0 and x % 16 == 0
        assert y <= top and top + h <= y + kept_h <= height and x <= left and left + w <= x + kept_w <= width
        assert kept_h * kept_w < height * width
    assert cut_count > len(beton) // 2


def test_cut_jpeg_decodes_as_the_whole_one(betons):
    """The same pixels encoded with and without restart markers (the same coefficients): the
    crops decoded by splicing segments equal those decoded from the unmarked stream."""
    import cv2

    from fastimagenet.train.decoders import crop_resize
    beton = BetonFile(betons['raw'])
    rng = np.random.default_rng(0)
    cut_count = 0
    for i in range(len(beton)):
        pixels = np.ascontiguousarray(beton.image(i))
        height, width = pixels.shape[:2]
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        marked = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_RST_INTERVAL,
                                            restart_interval(width)])[1].reshape(-1)
        plain = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].reshape(-1)
        key = np.uint64(sample_key(np.uint64(1), 0, np.uint64(i)))
        crop = random_crop(key, height, width, 0.08, 1.0, math.log(3 / 4), math.log(4 / 3))
        cut_count += _crop_segments(marked, height, width, crop)[0]
        res = int(rng.integers(48, 224))
        outs = []
        for jpeg in (marked, plain):
            out = np.zeros((res, res, 3), dtype=np.uint8)
            assert crop_resize(jpeg.ctypes.data, jpeg.size, 1, height, width, *crop, out.ctypes.data, res, res,
                               i % 2, 1, None, None) == 0
            outs.append(out.astype(int))
        # identical but at the kept part's edges (chroma upsampling has no neighbour there)
        assert np.abs(outs[0] - outs[1]).mean() < 0.1, i
    assert cut_count > len(beton) // 2


# Samples that are not what their metadata says. crop_resize.cpp must check the metadata against
# the buffer it is given, never read or write past either buffer, and leave zeros and a nonzero
# status. An over-read mostly reads someone else's bytes unnoticed, so these tests put every
# buffer's end against an inaccessible page (one byte beyond segfaults) and call in a child
# process (a segfault fails the test, not pytest).

def in_child(function: str, *args: str) -> subprocess.CompletedProcess:
    """`function(*args)` of this module in a fresh interpreter."""
    return subprocess.run([sys.executable, '-c', f'import sys, test_decoders; test_decoders.{function}(*sys.argv[1:])',
                           *map(str, args)], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=600)


def guarded(nbytes: int) -> int:
    """The address of `nbytes` zeroed bytes that end where 1 MiB without access begins."""
    libc = ctypes.CDLL(None)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    guard = 1 << 20  # wider than a few rows of any image here: an over-read cannot jump it
    span = -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE + guard
    base = libc.mmap(None, span, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert base not in (None, ctypes.c_void_p(-1).value) and libc.mprotect(base + span - guard, guard, 0) == 0
    return base + span - guard - nbytes


def _case(data: bytes, jpeg: bool, height=240, width=320, crop=(0, 0, 240, 320), out=(32, 32), partial=1,
          normalise=False) -> dict:
    return dict(data=data, jpeg=int(jpeg), height=height, width=width, crop=crop, out=out, partial=partial,
                normalise=normalise)


def stored_samples():
    """A 240 x 320 picture, raw and as the converter's JPEG (restart markers every 4 of a row's 20 MCUs)."""
    pixels = np.array(photo(3, size=(320, 240)))
    return pixels.tobytes(), encode_jpeg(pixels, 90).tobytes()


def bad_samples() -> dict[str, dict]:
    """crop_resize's arguments, by name, for samples at odds with their metadata (or crops with the image)."""
    raw, jpeg = stored_samples()
    scan = jpeg.index(b'\xff\xda')
    rst2 = jpeg.index(b'\xff\xd2', scan)
    top, bottom = (0, 0, 100, 100), (140, 220, 100, 100)
    return {
        'raw_a_byte_short': _case(raw[:-1], False),
        'raw_half_of_it': _case(raw[:len(raw) // 2], False, crop=bottom),
        'raw_a_byte_short_normalised': _case(raw[:-1], False, normalise=True),
        'raw_empty': _case(b'', False),
        'raw_longer_than_stated': _case(raw + bytes(960), False),
        'raw_holding_a_jpeg': _case(jpeg, False),
        # 65535 x 21846 x 3 bytes is 65534 modulo 2**32: a size computed in 32 bits would agree
        'raw_absurd_size_wrapping_32_bits': _case(raw[:65534], False, height=65535, width=21846,
                                                   crop=(0, 0, 65535, 21846)),
        'zero_height': _case(b'', False, height=0, crop=(0, 0, 0, 0)),
        'zero_width': _case(b'', False, width=0, crop=(120, 0, 0, 0)),  # random_crop's for width 0
        'raw_empty_crop': _case(raw, False, crop=(10, 10, 0, 50)),
        'negative_output_size': _case(raw, False, out=(-1, 32)),
        'jpeg_taller_than_stated': _case(jpeg, True, height=200, crop=top),
        'jpeg_shorter_than_stated': _case(jpeg, True, height=256, crop=top),
        'jpeg_narrower_than_stated': _case(jpeg, True, width=336, crop=top),
        'jpeg_cut_below_the_crop': _case(jpeg[:len(jpeg) * 2 // 3], True, crop=top),
        'jpeg_cut_above_the_crop': _case(jpeg[:len(jpeg) // 3], True, crop=bottom),
        'jpeg_cut_decoded_whole': _case(jpeg[:len(jpeg) // 2], True, partial=0),
        'jpeg_cut_in_its_scan_header': _case(jpeg[:scan] + b'\xff\xda\x00\x02', True, crop=bottom),
        'jpeg_frame_header_shorter_than_its_fields': _case(b'\xff\xd8\xff\xc0\x00\x02\xff\xd9', True, crop=bottom),
        'jpeg_lost_a_restart_marker': _case(jpeg[:rst2] + jpeg[rst2 + 2:], True, partial=0),
        'jpeg_crop_past_the_right_edge': _case(jpeg, True, crop=(0, 250, 100, 100)),
        'jpeg_crop_above_the_top': _case(jpeg, True, crop=(-20, 0, 100, 100)),
        'jpeg_empty_crop': _case(jpeg, True, crop=(0, 0, 0, 100)),
    }


def good_samples() -> dict[str, dict]:
    """The same sample as stated, cropped at its last rows and columns: nothing beyond them is read."""
    raw, jpeg = stored_samples()
    corner = (140, 220, 100, 100)
    return {
        'raw_whole': _case(raw, False),
        'raw_corner_enlarged': _case(raw, False, crop=corner, out=(160, 160)),
        'raw_corner_normalised': _case(raw, False, crop=corner, normalise=True),
        'jpeg_corner': _case(jpeg, True, crop=corner),
        'jpeg_whole_decoded_whole': _case(jpeg, True, partial=0),
    }


def call_guarded(*names: str) -> None:
    """(In a child process.) crop_resize on each named case, its sample and its output each ending
    at an inaccessible page; prints the name before, the status and whether the output is all zeros after."""
    from fastimagenet.train.decoders import crop_resize
    cases = {**bad_samples(), **good_samples()}
    scale, shift = np.full(3, 1 / 64, np.float32), np.full(3, -1.0, np.float32)
    for name in names:
        case = cases[name]
        print('calling', name, flush=True)
        src = guarded(len(case['data']))
        ctypes.memmove(src, case['data'], len(case['data']))
        out_h, out_w = case['out']
        itemsize = 4 if case['normalise'] else 1
        out_bytes = max(out_h, 0) * max(out_w, 0) * 3 * itemsize
        dst = guarded(out_bytes)
        out = np.frombuffer((ctypes.c_uint8 * out_bytes).from_address(dst), np.uint8)
        out[:] = 7
        status = crop_resize(src, len(case['data']), case['jpeg'], case['height'], case['width'], *case['crop'],
                             dst, out_h, out_w, 1, case['partial'], *((scale.ctypes.data, shift.ctypes.data)
                                                                     if case['normalise'] else (None, None)))
        print(json.dumps({'case': name, 'status': status, 'zeros': not out.any()}), flush=True)


@pytest.fixture(scope='module')
def guarded_calls() -> dict[str, dict]:
    """call_guarded on every case, by name: {'status', 'zeros'}, or {'crashed': how}. A crash ends
    its child; the next child goes on from the case after it."""
    results, pending = {}, [*bad_samples(), *good_samples()]
    while pending:
        proc = in_child('call_guarded', *pending)
        started = None
        for line in proc.stdout.splitlines():
            if line.startswith('calling '):
                started = line.split()[1]
            else:
                result = json.loads(line)
                results[result.pop('case')] = result
        if proc.returncode == 0:
            break
        if started is None or started in results:
            pytest.fail(f'the child failed between cases (exit {proc.returncode}):\n{proc.stderr[-3000:]}')
        results[started] = {'crashed': f'exit {proc.returncode} {proc.stderr.strip()[-300:]}'}
        pending = pending[pending.index(started) + 1:]
    return results


@pytest.mark.parametrize('case', list(bad_samples()))
def test_a_sample_at_odds_with_its_metadata_leaves_zeros_and_a_status(guarded_calls, case):
    result = guarded_calls[case]
    assert 'crashed' not in result and result['status'] != 0 and result['zeros'], result


@pytest.mark.parametrize('case', list(good_samples()))
def test_a_sample_as_stated_decodes_without_reading_past_its_end(guarded_calls, case):
    assert guarded_calls[case] == {'status': 0, 'zeros': False}


def decode_to(beton: str, out: str) -> None:
    """(In a child process.) decode_all(beton) at 64 px -> the .npy `out`."""
    np.save(out, decode_all(Path(beton), 64).numpy())


def test_the_loader_leaves_zeros_for_samples_at_odds_with_their_metadata(tmp_path):
    """A .beton read by ffcv's loader with our decoder, its bad samples between good ones: a raw
    image whose metadata claims twice the rows its bytes hold (the next sample's bytes follow it
    in the page), a JPEG cut short, a JPEG taller than its metadata says."""
    raw, jpeg = stored_samples()
    samples = [(MODE_RAW, 240, raw), (MODE_RAW, 480, raw), (MODE_JPG, 240, jpeg),
               (MODE_JPG, 240, jpeg[:len(jpeg) * 2 // 3]), (MODE_JPG, 200, jpeg), (MODE_RAW, 240, raw)]
    beton = tmp_path / 'inconsistent.beton'
    with open(beton, 'wb') as f:
        writer = BetonWriter(f, capacity=len(samples))
        for label, (mode, height, data) in enumerate(samples):
            writer.add(mode, height, 320, np.frombuffer(data, np.uint8), label)
        writer.finish()
    proc = in_child('decode_to', beton, tmp_path / 'images.npy')
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = np.load(tmp_path / 'images.npy')
    assert images.shape == (len(samples), 64, 64, 3)
    assert [bool(image.any()) for image in images] == [True, False, True, False, False, True]
