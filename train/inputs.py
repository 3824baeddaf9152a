"""What the model sees: ImageNet normalisation, the validation crop, flip test-time augmentation.

Kept apart from the loaders (which import ffcv, seconds of numba start-up) so prediction
and the web demo prepare images with exactly these lines without paying for ffcv.
"""
from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
VAL_CROP_RATIO = 224 / 256  # validation: center crop of 224/256 of the short side, resized to the resolution


class Normalize(torch.nn.Module):
    """A batch as a loader hands it out -> normalised float model input in `dtype`, on its device.

    What comes in is declared, not guessed: `normalized=False` (GPU loaders, prediction, the
    web demo) takes uint8 0-255 NCHW in any memory format and normalises it here;
    `normalized=True` (CPU loaders, which normalise in their decoding threads) takes float
    batches normalised already and only sets dtype and memory format. Pass the loader's own
    `BatchLoader.normalized`. A batch of the other kind is an error, never silently wrong input.
    """

    def __init__(self, device, dtype=torch.float32, channels_last=True, normalized: bool = False):
        super().__init__()
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
        # (x - mean) / std as one fused multiply-add
        self.scale = (1 / std).to(device=device, dtype=dtype)
        self.shift = (-mean / std).to(device=device, dtype=dtype)
        self.dtype = dtype
        self.normalized = normalized
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.is_floating_point() != self.normalized:
            expected = 'normalised float' if self.normalized else 'uint8'
            raise TypeError(f'expected {expected} images from the loader, got {images.dtype}')
        x = images.to(dtype=self.dtype, memory_format=self.memory_format)
        return x if self.normalized else torch.addcmul(self.shift, x, self.scale)


def forward_tta(model, images: torch.Tensor, lr_tta: bool) -> torch.Tensor:
    """Logits, averaged with those of the left/right-flipped batch when `lr_tta`."""
    logits = model(images)
    if lr_tta:
        logits = (logits + model(torch.flip(images, dims=[3]))) / 2
    return logits
