"""FFCV loaders for training and validation, built one way for the trainer, analysis and benchmarks.

Images leave the loader as channels_last NCHW batches: uint8 on a GPU (inputs.Normalize turns
them into model input there), already normalised float32 on a CPU (normalised in ffcv's
decoding threads, so the main thread is left to the model).
"""
from __future__ import annotations

import numpy as np
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.traversal_order.quasi_random import QuasiRandom
from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage

from fastimagenet.common.beton import BetonFile

from .decoders import RandomResizedCropFlipDecoder
from .inputs import IMAGENET_MEAN, IMAGENET_STD, VAL_CROP_RATIO


def _label_pipeline(device):
    ops = [IntDecoder(), ToTensor(), Squeeze()]
    return ops + ([ToDevice(device, non_blocking=True)] if device.type == 'cuda' else [])


def _image_tail(device, normalized: bool):
    """After decoding. On a GPU: uint8 to the device (4x less to copy than float), normalised
    there by inputs.Normalize. On a CPU: normalised here, unless the decoder did it already.
    ffcv's NormalizeImage is jitted, so it must come before ToTensor: after it, Loader()
    loops forever in ffcv's graph grouping. ToTorchImage gives NCHW over NHWC memory:
    channels_last, no copy."""
    if device.type == 'cuda':
        return [ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage()]
    normalize = [] if normalized else [NormalizeImage(np.array(IMAGENET_MEAN), np.array(IMAGENET_STD), np.float32)]
    return normalize + [ToTensor(), ToTorchImage()]


class ReproducibleQuasiRandom(QuasiRandom):
    """ffcv's quasi-random order shuffles its page table in place, so the order of epoch e
    depends on how many epochs the process has already run, and a resumed run would see
    other batches than an uninterrupted one. This one shuffles a fresh copy every epoch."""

    def sample_order(self, epoch: int):
        pristine = self.page_to_samples_array
        self.page_to_samples_array = pristine.copy()
        try:
            return super().sample_order(epoch)
        finally:
            self.page_to_samples_array = pristine


def train_loader(path, *, batch_size, num_workers, in_memory, res, seed, distributed, device,
                 decoder='fast', scale=(0.08, 1.0)):
    """(Loader, decoder): set `decoder.output_size` (and `.epoch` for the fast one) each epoch."""
    on_cpu = device.type != 'cuda'
    if decoder == 'fast':
        dec = RandomResizedCropFlipDecoder((res, res), seed=seed, scale=scale,
                                           normalize=(IMAGENET_MEAN, IMAGENET_STD) if on_cpu else None)
        image_ops = [dec] + _image_tail(device, normalized=on_cpu)
    else:  # ffcv's own, as the public trainer uses it (its draws are not reproducible)
        dec = RandomResizedCropRGBImageDecoder((res, res), scale=scale)
        image_ops = [dec, RandomHorizontalFlip()] + _image_tail(device, normalized=False)
    loader = Loader(str(path), batch_size=batch_size, num_workers=num_workers,
                    # quasi-random reads pages in bulk (fast from disk) but does not split across ranks
                    order=OrderOption.RANDOM if distributed else OrderOption.QUASI_RANDOM,
                    os_cache=bool(in_memory), drop_last=True, distributed=distributed, seed=seed,
                    pipelines={'image': image_ops,
                               'label': _label_pipeline(device)})
    if not distributed:
        loader.traversal_order = ReproducibleQuasiRandom(loader)
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
                                       *_image_tail(device, normalized=False)],
                             'label': _label_pipeline(device)})


def batches(loader: Loader, torch_threads: int):
    """Iterate a Loader without giving up torch's threads: ffcv's iter() sets torch's
    thread count to its own worker count, which would starve the model on a CPU."""
    iterator = iter(loader)
    torch.set_num_threads(torch_threads)
    return iterator
