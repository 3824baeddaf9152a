"""Exponential moving average of the weights, evaluated and logged beside the model."""
from __future__ import annotations

import copy

import torch

from .model import unwrap


class EMA:
    """`decay` per step is set from a half-life in steps, so it means the same thing at
    any batch size; early on it averages over fewer steps (timm's warm-up), or the EMA
    would mostly remember the random initialisation in a short run."""

    def __init__(self, model: torch.nn.Module, halflife_steps: float):
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)
        self.decay = 0.5 ** (1.0 / max(halflife_steps, 1.0))
        self.updates = 0
        self._pair_with(model)

    def _pair_with(self, model):
        src, dst = unwrap(model).state_dict(), self.module.state_dict()
        floats = [k for k, v in dst.items() if v.is_floating_point()]
        self._dst_f, self._src_f = [dst[k] for k in floats], [src[k] for k in floats]
        others = [k for k, v in dst.items() if not v.is_floating_point()]
        self._dst_o, self._src_o = [dst[k] for k in others], [src[k] for k in others]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._dst_f, self._src_f, 1.0 - decay)
        for d, s in zip(self._dst_o, self._src_o):
            d.copy_(s)
