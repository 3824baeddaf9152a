"""A trained checkpoint ready to classify and explain single images: shared by predict.py and app.py.

Images are seen as in validation (preprocess.py) at the checkpoint's validation
resolution, with its flip-averaging setting; the Grad-CAM map explains the top-1 class
of the plain (unflipped) forward pass.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from fastimagenet.common.classes import ClassList, imagenet_names
from fastimagenet.train.checkpoints import load_model
from fastimagenet.train.inputs import forward_tta

from .gradcam import grad_cam, overlay
from .preprocess import center_crop, prepare, resolution_of

DISPLAY_SIZE = 256  # heat-maps are drawn on the model's crop at least this large, to be legible


def class_names(classes: ClassList) -> list[str]:
    """Readable, unique names: ImageNet's (torchvision's list) for the 1000 ImageNet classes,
    else the class list's own. A name used twice (ImageNet has two 'crane's) gets its wnid."""
    ids = classes.wnids
    names = imagenet_names() if classes.is_imagenet_1k else list(classes.names)
    seen = Counter(names)
    return [f'{n} ({w})' if seen[n] > 1 and n != w else n for n, w in zip(names, ids)]


@dataclass
class Prediction:
    top: list[tuple[int, str, float]]  # (class index, name, probability), most probable first
    crop: np.ndarray                   # what the model saw: (res, res, 3) uint8
    heatmap: np.ndarray | None = None  # Grad-CAM overlay of the top-1 class, (display, display, 3) uint8


class Predictor:
    def __init__(self, checkpoint: str | os.PathLike, prefer_ema: bool = True):
        self.model, self.classes, self.info = load_model(checkpoint, prefer_ema=prefer_ema)
        self.names = class_names(self.classes)
        self.resolution = resolution_of(self.info)
        params = self.info.get('params') or {}
        self.lr_tta = bool(params.get('validation.lr_tta', 1))
        # The trainer's memory format: the same kernels give the same numbers as validation.
        self.model.to(memory_format=torch.channels_last)

    def describe(self) -> str:
        return (f'{params_arch(self.info)} with {len(self.classes)} classes, {self.info["weights"]} weights, '
                f'{self.resolution} px center crop{", flip-averaged" if self.lr_tta else ""}')

    def __call__(self, rgb: np.ndarray, topk: int = 5, gradcam: bool = False) -> Prediction:
        crop, x = prepare(rgb, self.resolution)
        with torch.no_grad():
            probs = forward_tta(self.model, x, self.lr_tta).float().softmax(dim=1)[0]
        k = min(topk, len(self.names))
        values, indices = probs.topk(k)
        top = [(int(i), self.names[int(i)], float(p)) for p, i in zip(values, indices)]
        heatmap = None
        if gradcam:
            cams, _ = grad_cam(self.model, x, [top[0][0]])
            heatmap = overlay(center_crop(rgb, max(self.resolution, DISPLAY_SIZE)), cams[0])
        return Prediction(top, crop, heatmap)


def params_arch(info: dict) -> str:
    return (info.get('params') or {}).get('model.arch', 'model')
