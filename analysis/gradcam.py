"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

The activations A of the last conv stage (`last_conv_stage`: layer4 of our ResNet-D and
of torchvision's ResNets, BlurPool or not) are weighted, channel by channel, by the
spatial mean of d score_c / d A; the weighted sum, through a ReLU, is upsampled to the
input and scaled to [0, 1].

The model is left as it was found: the hook is removed whatever happens, the model runs
in eval mode (BatchNorm statistics are not touched) and its train/eval flag is restored,
and no parameter gradient is computed or accumulated: the gradient is taken only with
respect to the stage's output, which the hook swaps for a detached copy.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fastimagenet.train.model import last_conv_stage


def grad_cam(model: torch.nn.Module, inputs: torch.Tensor,
             targets: torch.Tensor | list[int] | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """(maps, logits): float32 maps (N, H, W) in [0, 1] at the input's size, for `targets`
    (class indices, default: each image's top-1 class), and the model's logits (N, classes)."""
    stage = last_conv_stage(model)
    captured = {}

    def swap_for_leaf(module, args, output):
        # A leaf that requires grad: the gradient stops here, so none flows into the
        # backbone's weights, and it works even if the parameters are frozen.
        leaf = output.detach().requires_grad_(True)
        captured['activations'] = leaf
        return leaf

    was_training = model.training
    handle = stage.register_forward_hook(swap_for_leaf)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(inputs)
            if targets is None:
                targets = logits.argmax(dim=1)
            targets = torch.as_tensor(targets, device=logits.device).reshape(-1)
            if len(targets) != len(logits):
                raise ValueError(f'{len(targets)} targets for {len(logits)} images')
            # Summing is exact: in eval mode each image's score depends on its own activations only.
            score = logits.gather(1, targets[:, None]).sum()
            activations = captured['activations']
            (gradients,) = torch.autograd.grad(score, activations)
    finally:
        handle.remove()
        model.train(was_training)

    with torch.no_grad():
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam.float(), size=inputs.shape[-2:], mode='bilinear', align_corners=False)[:, 0]
        peak = cam.flatten(1).max(dim=1).values[:, None, None]
        # A map with no positive evidence stays all zero instead of amplifying rounding noise.
        cam = torch.where(peak > 1e-12, cam / peak.clamp_min(1e-12), torch.zeros_like(cam)).clamp_(0, 1)
    return cam.cpu().numpy().astype(np.float32), logits.detach()


def overlay(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The map as a JET heat-map (red = strong) blended over the uint8 RGB image, resized to it."""
    height, width = rgb.shape[:2]
    if cam.shape != (height, width):
        cam = cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.uint8(np.clip(cam, 0, 1) * 255 + 0.5), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1 - alpha, heat, alpha, 0)
