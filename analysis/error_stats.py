"""Error analysis from (labels, class probabilities): pure functions, no model, no files.

Everything errors.py writes comes from here, so the numbers can be checked on
hand-made cases (tests/test_analysis.py) and agree with the trainer's: top-1 is the
most probable class, top-5 counts a hit anywhere in the five most probable.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fastimagenet.common.classes import ClassList


def top_k(probs: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(indices, probabilities), each (N, k), most probable first; ties go to the lower index."""
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind='stable')[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted] as int64 (num_classes, num_classes)."""
    flat = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predicted, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def predictions_table(labels: np.ndarray, probs: np.ndarray, names: list[str], k: int = 5) -> pd.DataFrame:
    """One row per image: index, label, label_name, pred_1..k, name_1..k, prob_1..k, correct, correct_top5."""
    labels = np.asarray(labels, dtype=np.int64)
    idx, p = top_k(probs, k)
    names = np.asarray(names, dtype=object)
    table = {'index': np.arange(len(labels)), 'label': labels, 'label_name': names[labels]}
    for j in range(idx.shape[1]):
        table[f'pred_{j + 1}'] = idx[:, j]
    for j in range(idx.shape[1]):
        table[f'name_{j + 1}'] = names[idx[:, j]]
    for j in range(idx.shape[1]):
        table[f'prob_{j + 1}'] = p[:, j].round(6)
    table['correct'] = (idx[:, 0] == labels).astype(int)
    table['correct_top5'] = (idx == labels[:, None]).any(axis=1).astype(int)
    return pd.DataFrame(table)


def per_class_table(labels: np.ndarray, top: np.ndarray, classes: ClassList, names: list[str]) -> pd.DataFrame:
    """One row per class of the model: class, wnid, name, count, top_1, top_5 (fractions; empty when
    the class has no images), most_confused_with, most_confused_with_name, confused_count.

    `top` is (N, k) class indices, most probable first (top_k's first output). The most
    confused-with class is the one this class's images are most often predicted as
    (ties: the lower index); it is empty when none of them is misclassified.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(classes)
    counts = np.bincount(labels, minlength=n)
    hits1 = np.bincount(labels, weights=top[:, 0] == labels, minlength=n)
    hits5 = np.bincount(labels, weights=(top[:, :5] == labels[:, None]).any(axis=1), minlength=n)
    off_diagonal = confusion_matrix(labels, top[:, 0], n)
    np.fill_diagonal(off_diagonal, 0)
    worst = off_diagonal.argmax(axis=1)
    worst_count = off_diagonal[np.arange(n), worst]
    has_errors = worst_count > 0
    with np.errstate(invalid='ignore', divide='ignore'):
        top1 = np.where(counts > 0, hits1 / counts, np.nan)
        top5 = np.where(counts > 0, hits5 / counts, np.nan)
    return pd.DataFrame({
        'class': np.arange(n), 'wnid': classes.wnids, 'name': names, 'count': counts,
        'top_1': top1.round(6), 'top_5': top5.round(6),
        'most_confused_with': pd.array([int(w) if e else pd.NA for w, e in zip(worst, has_errors)], dtype='Int64'),
        'most_confused_with_name': [names[w] if e else '' for w, e in zip(worst, has_errors)],
        'confused_count': worst_count,
    })


def confusions_table(labels: np.ndarray, predicted: np.ndarray, names: list[str],
                     limit: int | None = None) -> pd.DataFrame:
    """(true, predicted) pairs with true != predicted, most frequent first (ties: by true, then
    predicted class): true, true_name, predicted, predicted_name, count, share_of_true (count /
    images of the true class)."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(names)
    matrix = confusion_matrix(labels, predicted, n)
    per_true = matrix.sum(axis=1)
    np.fill_diagonal(matrix, 0)
    true, pred = np.nonzero(matrix)
    counts = matrix[true, pred]
    order = np.lexsort((pred, true, -counts))
    if limit is not None:
        order = order[:limit]
    true, pred, counts = true[order], pred[order], counts[order]
    return pd.DataFrame({'true': true, 'true_name': [names[t] for t in true],
                         'predicted': pred, 'predicted_name': [names[p] for p in pred],
                         'count': counts, 'share_of_true': (counts / per_true[true]).round(6)})


def select_errors(labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray, how: str,
                  count: int, seed: int = 0) -> np.ndarray:
    """Indices of up to `count` misclassified images: the most confident mistakes first
    (how='confident'), or a seeded random sample in dataset order (how='random')."""
    wrong = np.flatnonzero(np.asarray(predicted) != np.asarray(labels))
    if how == 'confident':
        return wrong[np.argsort(-np.asarray(confidence)[wrong], kind='stable')][:count]
    if how == 'random':
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(wrong, size=min(count, len(wrong)), replace=False))
    raise ValueError(f"how must be 'confident' or 'random', not {how!r}")
