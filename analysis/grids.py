"""Captioned image grids saved as PNG (matplotlib's Agg backend: no display needed)."""
from __future__ import annotations

import math
import os

import numpy as np
from matplotlib.figure import Figure

from fastimagenet.common.atomic import atomic_path

MAX_COLUMNS = 6
CAPTION_CHARS = 26  # per line, so captions of neighbouring tiles do not overlap


def shorten(text: str, limit: int = CAPTION_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + '…'


def save_grid(path: str | os.PathLike, tiles: list[np.ndarray], captions: list[str], title: str) -> None:
    """Tiles (uint8 RGB, any size) in rows of up to six, each with its caption above it."""
    columns = max(1, min(MAX_COLUMNS, len(tiles)))
    rows = max(1, math.ceil(len(tiles) / columns))
    fig = Figure(figsize=(2.3 * columns, 2.75 * rows + 0.5), dpi=100)
    fig.suptitle(title, fontsize=11)
    if not tiles:
        fig.text(0.5, 0.5, 'nothing to show', ha='center', va='center', fontsize=12)
    for i, (tile, caption) in enumerate(zip(tiles, captions)):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.imshow(tile)
        ax.set_title(caption, fontsize=7, loc='left')
        ax.set_axis_off()
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png')
