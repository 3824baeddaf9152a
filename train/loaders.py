"""FFCV loaders for training and validation, built one way for the trainer and the benchmarks.

Images leave the loader as uint8 NHWC batches (viewed as channels_last NCHW) and are
normalised in torch on the device: ffcv's jitted NormalizeImage after ToTensor makes
`Loader()` loop forever on CPU, and uint8 is 4x less to copy to a GPU than float.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.transforms import RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage

from fastimagenet.common.beton import BetonFile
from fastimagenet.common.classes import ClassList, classes_of, read_info
from fastimagenet.common.cli import fail

from .decoders import RandomResizedCropFlipDecoder

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
VAL_CROP_RATIO = 224 / 256


@dataclass
class Dataset:
    path: Path
    num_samples: int
    classes: ClassList
    labels: np.ndarray


def open_dataset(path: str, what: str) -> Dataset:
    """Check a .beton before any work: it exists, is ffcv, has image+label, agrees with its class list."""
    if not path:
        fail(f'--data.{what}_dataset is required')
    beton = BetonFile(path)
    info = read_info(path)
    if info is not None and info.num_samples not in (None, beton.num_samples):
        fail(f'{path} holds {beton.num_samples} images but {path}.json says {info.num_samples}; '
             f'they come from different conversions')
    classes = classes_of(path, beton.labels)
    if beton.num_samples and beton.labels.max() >= len(classes):
        fail(f'{path} has label {beton.labels.max()} but only {len(classes)} classes')
    return Dataset(Path(path), beton.num_samples, classes, beton.labels)


def _label_pipeline(device):
    ops = [IntDecoder(), ToTensor(), Squeeze()]
    return ops + ([ToDevice(device, non_blocking=True)] if device.type == 'cuda' else [])


def _to_torch(device):
    # ToTorchImage gives NCHW over NHWC memory: channels_last, no copy.
    return ([ToDevice(device, non_blocking=True)] if device.type == 'cuda' else []) + [ToTorchImage()]


def train_loader(path, *, batch_size, num_workers, in_memory, res, seed, distributed, device,
                 decoder='fast', scale=(0.08, 1.0)):
    """(Loader, decoder): set `decoder.output_size` (and `.epoch` for the fast one) each epoch."""
    if decoder == 'fast':
        dec = RandomResizedCropFlipDecoder((res, res), seed=seed, scale=scale)
        image_ops = [dec]
    else:  # ffcv's own, as the public trainer uses it (its draws are not reproducible)
        dec = RandomResizedCropRGBImageDecoder((res, res), scale=scale)
        image_ops = [dec, RandomHorizontalFlip()]
    loader = Loader(str(path), batch_size=batch_size, num_workers=num_workers,
                    # quasi-random reads pages in bulk (fast from disk) but does not split across ranks
                    order=OrderOption.RANDOM if distributed else OrderOption.QUASI_RANDOM,
                    os_cache=bool(in_memory), drop_last=True, distributed=distributed, seed=seed,
                    pipelines={'image': image_ops + [ToTensor()] + _to_torch(device),
                               'label': _label_pipeline(device)})
    return loader, dec


def val_loader(path, *, batch_size, num_workers, in_memory, res, device, rank=0, world_size=1):
    """Sequential loader over this rank's share of the validation set.

    Each rank takes every world_size-th sample, with no padding: ffcv's distributed mode
    pads by repeating samples, which would count some images twice.
    """
    num_samples = BetonFile(path).num_samples
    return Loader(str(path), batch_size=batch_size, num_workers=num_workers,
                  order=OrderOption.SEQUENTIAL, os_cache=bool(in_memory), drop_last=False,
                  indices=np.arange(rank, num_samples, world_size),
                  pipelines={'image': [CenterCropRGBImageDecoder((res, res), ratio=VAL_CROP_RATIO),
                                       ToTensor()] + _to_torch(device),
                             'label': _label_pipeline(device)})


def batches(loader: Loader, torch_threads: int):
    """Iterate a Loader without giving up torch's threads: ffcv's iter() sets torch's
    thread count to its own worker count, which would starve the model on a CPU."""
    iterator = iter(loader)
    torch.set_num_threads(torch_threads)
    return iterator


class Normalize(torch.nn.Module):
    """uint8 NCHW (any memory format) -> normalised float in `dtype`, on the batch's device."""

    def __init__(self, device, dtype=torch.float32, channels_last=True):
        super().__init__()
        self.mean = torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device, dtype=dtype).view(1, 3, 1, 1)
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(dtype=self.dtype, memory_format=self.memory_format)
        return (x - self.mean) / self.std
