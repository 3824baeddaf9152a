"""The training decoder: torchvision's crop distribution, reproducible draws, and partial decoding
that stays close to decoding in full."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastimagenet.train.decoders import RandomResizedCropFlipDecoder, random_crop, sample_key

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


def decode_all(path, res, *, partial=True, epoch=0, seed=0, workers=2, order=None) -> torch.Tensor:
    """Every sample of `path` through the decoder, in index order."""
    from ffcv.fields.basics import IntDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor
    decoder = RandomResizedCropFlipDecoder((res, res), seed=seed, partial_decode=partial)
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
    # Same crops; what differs is DCT-domain downscaling and box+bilinear vs INTER_AREA.
    assert per_image.mean() < 3.0, per_image
    assert per_image.max() < 8.0, per_image


def test_raw_images_take_the_ordinary_path(betons):
    partial = decode_all(betons['raw'], 96, partial=True).float()
    full = decode_all(betons['raw'], 96, partial=False).float()
    assert (partial - full).abs().mean() < 3.0


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
