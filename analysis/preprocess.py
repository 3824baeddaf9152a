"""The trainer's validation view of an image, computed without ffcv: for a user's photo.

The trainer validates with ffcv's `CenterCropRGBImageDecoder((res, res), ratio=224/256)`:
a centred square of side int(224/256 * short side), resized to res x res with OpenCV's
INTER_AREA, then `Normalize`. This module does the same with numpy and cv2, so a photo
given to predict.py, the web app or Grad-CAM is seen exactly as validation images are
(tests/test_analysis.py checks it against the ffcv loader on stored images).
Everything that turns pixels into model input goes through here.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from fastimagenet.train.inputs import VAL_CROP_RATIO, Normalize

DEFAULT_RESOLUTION = 256  # the trainer's default validation.resolution


def center_box(height: int, width: int, ratio: float = VAL_CROP_RATIO) -> tuple[int, int, int]:
    """(top, left, side) of the validation crop, with ffcv's integer rounding."""
    side = int(ratio * min(height, width))
    return (height - side) // 2, (width - side) // 2, side


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the validation crop as (size, size, 3) uint8.

    With size = the model's resolution this is exactly what the model sees; a larger
    size gives the same region in more detail, for display.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}')
    top, left, side = center_box(*rgb.shape[:2])
    if side < 1:
        raise ValueError(f'image of {rgb.shape[1]}x{rgb.shape[0]} px is too small to crop')
    region = rgb[top:top + side, left:left + side]
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)


def to_model_input(crops: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """uint8 crops (N, H, W, 3) or a list of (H, W, 3) -> normalised float (N, 3, H, W),
    channels_last, as `Normalize` turns the loader's batches into model input."""
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(crops) if isinstance(crops, list) else crops))
    return normalize(batch.permute(0, 3, 1, 2))


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> model input, with the trainer's own Normalize (on the batch's device)."""
    return Normalize(images.device)(images)


def prepare(rgb: np.ndarray, resolution: int) -> tuple[np.ndarray, torch.Tensor]:
    """(the crop the model sees as uint8 HWC, its (1, 3, res, res) model input)."""
    crop = center_crop(rgb, resolution)
    return crop, to_model_input(crop[None])


def resolution_of(info: dict) -> int:
    """The validation resolution a checkpoint was evaluated at (from its params)."""
    params = info.get('params') or {}
    return int(params.get('validation.resolution') or DEFAULT_RESOLUTION)
