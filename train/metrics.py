"""Accuracy: validation with exact accounting (every image once, whatever the number of processes),
and training accuracy counted on the device.

`evaluate` is the one validation loop: the trainer's, `eval_only`'s and analysis/errors.py's,
so their top-1 agree to the last image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .distributed import all_reduce_sum
from .inputs import forward_tta
from .precision import Precision


@torch.no_grad()
def evaluate(model, batches, normalize, *, lr_tta: bool, precision: Precision, expected: int | None = None,
             keep_probs: bool = False) -> dict:
    """top_1, top_5 (fractions), val_loss (plain cross-entropy) and val_count over all ranks' shares,
    with the model in `precision`'s autocast as in training.

    Sums are reduced across processes, then divided once: no rank's batch sizes or padding can
    tilt the result. `expected` (the dataset size) is checked against the count. With
    `keep_probs`, this rank's softmax probabilities and labels, in loader order, are returned too
    (as 'probs', 'labels': CPU tensors).
    """
    model.eval()
    device = normalize.scale.device
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, count
    probs, labels_seen = [], []
    for images, labels in batches:
        with precision.autocast():
            logits = forward_tta(model, normalize(images), lr_tta).float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top == labels[:, None]
        sums += torch.stack([F.cross_entropy(logits, labels, reduction='sum').double(),
                             hits[:, 0].sum().double(), hits.any(dim=1).sum().double(),
                             torch.tensor(float(len(labels)), dtype=torch.float64, device=device)])
        if keep_probs:
            probs.append(logits.softmax(dim=1).cpu())
            labels_seen.append(labels.cpu())
    loss, top1, top5, count = all_reduce_sum(sums).tolist()
    if expected is not None and int(count) != expected:
        raise RuntimeError(f'validation saw {int(count)} images, expected {expected}')
    n = max(count, 1)
    result = {'top_1': top1 / n, 'top_5': top5 / n, 'val_loss': loss / n, 'val_count': int(count)}
    if keep_probs:
        result['probs'], result['labels'] = torch.cat(probs), torch.cat(labels_seen)
    return result


class TrainAccuracy:
    """Top-1/top-5 hits of training batches, summed on the device: no host sync per step.
    Only batches with hard targets count (Mixup/CutMix targets have no right answer)."""

    def __init__(self, device):
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # top1, top5, count

    @torch.no_grad()
    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == labels[:, None]
        self.sums += torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum(),
                                  torch.tensor(len(labels), device=labels.device)]).double()

    def result(self) -> dict:
        """{'train_top_1', 'train_top_5'} over all ranks, or {} if no batch counted."""
        top1, top5, count = all_reduce_sum(self.sums.clone()).tolist()
        return {'train_top_1': top1 / count, 'train_top_5': top5 / count} if count else {}
