"""Per-sample data augmentation: timm's strong-recipe augmentations, reproducible per sample.

In ffcv's decoding threads (numba), on uint8 HWC images between the crop decoder and
ToTensor: RandAugment (randaugment.py) and color jitter (color_jitter.py), each op equal to
the reference's arithmetic (image_ops.py), applied by one ffcv Operation (per_sample.py).
On the model's device, on whole batches: random erasing (erasing.py), mixup/cutmix
(mixing.py) and the losses they need (losses.py).

Every draw is a hash of (seed, epoch, sample index) (../draws.py). This file imports
nothing, so each module is loaded at its own cost (numba and ffcv only where needed).
"""
