"""The training decoder: torchvision's crop distribution, reproducible draws, and partial decoding
that stays close to decoding in full."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastimagenet.common.beton import BetonFile
from fastimagenet.common.images import restart_interval
from fastimagenet.train.decoders import RandomResizedCropFlipDecoder, do_flip, random_crop, sample_key
from fastimagenet.train.inputs import IMAGENET_MEAN, IMAGENET_STD

from conftest import script


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
    from fastimagenet.train.loaders import batches, train_loader
    loader, _ = train_loader(betons['jpg'], batch_size=8, num_workers=2, in_memory=1, res=64, seed=0,
                             distributed=False, device=torch.device('cpu'), decoder=decoder)
    images, labels = next(batches(loader, 2))
    assert images.shape == (8, 3, 64, 64) and images.dtype == torch.float32
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert -2.5 < images.mean() < 2.5 and images.std() > 0.1  # normalised, not 0-255
    assert labels.shape == (8,) and labels.dtype == torch.int64


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
    from fastimagenet.train.loaders import batches, train_loader

    def epoch(loader, decoder, e, stop_after=None):
        loader.next_epoch, decoder.epoch = e, e
        out = []
        for i, (images, labels) in enumerate(batches(loader, 2)):
            out.append((images.clone(), labels.clone(), images.data_ptr()))
            if stop_after is not None and i + 1 == stop_after:
                break
        return out

    def build():
        return train_loader(betons['jpg'], batch_size=8, num_workers=2, in_memory=1, res=48, seed=0,
                            distributed=False, device=torch.device('cpu'))
    loader, decoder = build()
    first = epoch(loader, decoder, 0)
    epoch(loader, decoder, 1, stop_after=1)  # left early: its producer thread was still running
    again = epoch(loader, decoder, 0)
    assert len(again) == len(first) == 48 // 8
    for (x, y, ptr), (x2, y2, ptr2) in zip(first, again):
        assert ptr == ptr2  # the same memory, epoch after epoch
        assert torch.equal(y, y2) and torch.equal(x, x2)

    fresh_loader, fresh_decoder = build()  # epoch 1 in full, from a loader that never stopped early
    expected = epoch(fresh_loader, fresh_decoder, 1)
    got = epoch(loader, decoder, 1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(expected, got))

    decoder.output_size = (32, 32)  # progressive resizing: new buffers of the new shape
    smaller = epoch(loader, decoder, 2)
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
