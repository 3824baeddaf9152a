"""FFCV loaders for training and validation, built one way for the trainer, analysis and benchmarks.

Images leave the loader as channels_last NCHW batches: uint8 on a GPU (inputs.Normalize turns
them into model input there), already normalised float32 on a CPU (normalised in ffcv's
decoding threads, so the main thread is left to the model).
"""
from __future__ import annotations

import queue

import numpy as np
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader as FfcvLoader
from ffcv.loader import OrderOption
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


class Loader(FfcvLoader):
    """ffcv's Loader, keeping its batch buffers from one epoch to the next.

    ffcv allocates every operation's output buffers (batches_ahead + 2 batches of them:
    ~200 MB of float32 at res 160, batch 128) afresh each epoch, and the first write to each
    page faults. On a small dataset or a validation set that is a fifth of the epoch's time;
    here the buffers are kept while their shapes stay the same (a new resolution gets new
    ones). To share them safely, an epoch abandoned part way (a loop left early) is stopped
    before the next starts, and, as within an epoch in ffcv, a batch is only valid until the
    loop moves batches_ahead + 1 further: copy what must outlive that.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._buffers = (None, None)
        self._epoch = None
        allocate = self.graph.allocate_memory

        def allocate_once(batch_size, batches_ahead):
            key = (batch_size, batches_ahead, repr(self.graph.collect_requirements()[0]))
            if self._buffers[0] != key:
                self._buffers = (None, None)  # release the old ones before allocating
                self._buffers = (key, allocate(batch_size, batches_ahead))
            return self._buffers[1]
        self.graph.allocate_memory = allocate_once

    def __iter__(self):
        self._stop(self._epoch)
        if torch.cuda.is_available():  # kernels queued on the last batches may still read them
            torch.cuda.current_stream().synchronize()
        self._epoch = super().__iter__()
        return self._epoch

    @staticmethod
    def _stop(epoch) -> None:
        if epoch is None:
            return
        epoch.close()  # it stops when its queue is full, at most batches_ahead batches on
        while epoch.is_alive():
            epoch.join(timeout=1)
            try:  # ffcv hands over the end-of-epoch marker without a timeout: make room
                epoch.output_queue.get_nowait()
            except queue.Empty:
                pass


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
