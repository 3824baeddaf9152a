"""Mixed precision: which one a device gets, and what it takes (autocast, a GradScaler).

One place for the rule, used by the trainer, `eval_only` and analysis/errors.py, so that a
model is validated in the precision it was trained in.

`auto` is bf16 only on GPUs that compute it natively (compute capability 8.0+: A100, A10G,
L4, H100...). `torch.cuda.is_bf16_supported()` also says yes on a T4 or V100, where bf16
is emulated or fails; there fp16 with a GradScaler is the right choice. On a CPU, fp32.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from fastimagenet.common.cli import fail

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def resolve(requested: str, device: torch.device, capability: tuple[int, int] | None = None) -> str:
    """'auto' -> 'bf16', 'fp16' or 'fp32' for this device; an explicit choice is checked.
    `capability` (the GPU's compute capability) is read from the device when not given."""
    if requested not in PRECISIONS:
        raise ValueError(f'unknown precision {requested!r}; choose one of {", ".join(PRECISIONS)}')
    if device.type != 'cuda':
        if requested == 'fp16':
            fail('--training.precision=fp16 needs CUDA; use bf16 or fp32 on CPU')
        return 'fp32' if requested == 'auto' else requested
    if capability is None:
        capability = torch.cuda.get_device_capability(device)
    if requested == 'auto':
        return 'bf16' if capability >= (8, 0) else 'fp16'
    return requested


@dataclass(frozen=True)
class Precision:
    name: str                 # resolved: fp32, bf16 or fp16
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        return DTYPES.get(self.name)

    def autocast(self):
        """A context for the forward pass (a no-op in fp32)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none (disabled scaler)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == 'fp16')


def precision_for(requested: str, device: torch.device) -> Precision:
    return Precision(resolve(requested, device), device.type)
