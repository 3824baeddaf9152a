"""Validation with exact accounting: every image counted once, whatever the number of processes."""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from .distributed import all_reduce_sum
from .inputs import forward_tta


@torch.no_grad()
def evaluate(model, batches, normalize, *, lr_tta: bool, expected: int | None = None,
             autocast=nullcontext) -> dict:
    """top_1, top_5 (fractions) and val_loss (plain cross-entropy) over all ranks' shares.

    Sums are reduced across processes, then divided once: no rank's batch sizes or
    padding can tilt the result. `expected` (the dataset size) is checked against the count.
    """
    model.eval()
    device = normalize.scale.device
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, count
    for images, labels in batches:
        with autocast():
            logits = forward_tta(model, normalize(images), lr_tta).float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top == labels[:, None]
        sums += torch.stack([F.cross_entropy(logits, labels, reduction='sum').double(),
                             hits[:, 0].sum().double(), hits.any(dim=1).sum().double(),
                             torch.tensor(float(len(labels)), dtype=torch.float64, device=device)])
    loss, top1, top5, count = all_reduce_sum(sums).tolist()
    if expected is not None and int(count) != expected:
        raise RuntimeError(f'validation saw {int(count)} images, expected {expected}')
    count = max(count, 1)
    return {'top_1': top1 / count, 'top_5': top5 / count, 'val_loss': loss / count, 'val_count': int(count)}
