"""Class lists: which label means which class, kept beside each `.beton`.

The converter writes `<file>.beton.json` next to every `.beton` it makes: the classes
(index, WordNet id, readable name), the conversion's parameters and counts. The trainer,
the ablation report and the analysis tools read it back from here. A `.beton` written by
the public ffcv-imagenet writer has no such file; its classes are then numbered from the
label field, with ImageNet's names when there are 1000 of them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import write_json_atomic
from .beton import BetonFile
from .cli import fail

FORMAT = 'fastimagenet.dataset-info'
VERSION = 1
# ImageNet-1k's first and last WordNet ids in label (sorted) order.
IMAGENET_FIRST_LAST = ('n01440764', 'n15075141')


def info_path(beton_path: str | os.PathLike) -> Path:
    return Path(f'{beton_path}.json')


@dataclass
class ClassList:
    wnids: list[str]
    names: list[str]

    def __len__(self) -> int:
        return len(self.wnids)

    def to_json(self) -> list[dict]:
        return [{'index': i, 'wnid': w, 'name': n} for i, (w, n) in enumerate(zip(self.wnids, self.names))]

    @classmethod
    def from_json(cls, rows: list[dict]) -> 'ClassList':
        rows = sorted(rows, key=lambda r: r['index'])
        if [r['index'] for r in rows] != list(range(len(rows))):
            raise ValueError('class indices are not 0..N-1')
        return cls([r['wnid'] for r in rows], [r.get('name') or r['wnid'] for r in rows])

    @classmethod
    def numbered(cls, num_classes: int) -> 'ClassList':
        """Classes known only by their label: ImageNet's names if there are 1000 of them."""
        ids = [str(i) for i in range(num_classes)]
        return cls(ids, imagenet_names() if is_imagenet_1k(ids) else list(ids))

    @property
    def is_imagenet_1k(self) -> bool:
        return is_imagenet_1k(self.wnids)


def is_imagenet_1k(wnids: list[str]) -> bool:
    """The 1000 ImageNet-1k classes: by their WordNet ids, or numbered 0..999 (a .beton of the
    public ffcv-imagenet writer, which keeps no class list). The one test of it in the project."""
    return len(wnids) == 1000 and ((wnids[0], wnids[-1]) == IMAGENET_FIRST_LAST
                                   or wnids == [str(i) for i in range(1000)])


@dataclass
class DatasetInfo:
    classes: ClassList
    num_samples: int | None = None
    split: str | None = None
    extra: dict = field(default_factory=dict)


def write_info(beton_path: str | os.PathLike, classes: ClassList, split: str,
               num_samples: int, **extra) -> Path:
    path = info_path(beton_path)
    write_json_atomic(path, {'format': FORMAT, 'version': VERSION, 'split': split,
                             'num_samples': num_samples, 'num_classes': len(classes),
                             **extra, 'classes': classes.to_json()})
    return path


def read_info(beton_path: str | os.PathLike) -> DatasetInfo | None:
    """The converter's JSON beside `beton_path`, or None if there is none."""
    path = info_path(beton_path)
    if not path.exists():
        return None
    try:
        content = json.loads(path.read_text())
        if content.get('format') != FORMAT:
            raise ValueError(f'format is {content.get("format")!r}, expected {FORMAT!r}')
        classes = ClassList.from_json(content['classes'])
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f'{path} is not a readable class list ({e}); delete it to fall back to the label field')
    extra = {k: v for k, v in content.items() if k not in ('classes', 'num_samples', 'split')}
    return DatasetInfo(classes, content.get('num_samples'), content.get('split'), extra)


def classes_of(beton_path: str | os.PathLike, labels: np.ndarray | None = None) -> ClassList:
    """The classes of a `.beton`: from its JSON, else numbered from its labels."""
    info = read_info(beton_path)
    if info is not None:
        return info.classes
    if labels is None:
        labels = BetonFile(beton_path).labels
    return ClassList.numbered(int(labels.max()) + 1 if len(labels) else 0)


@dataclass
class Dataset:
    path: Path
    num_samples: int
    classes: ClassList
    labels: np.ndarray


def open_dataset(path: str, what: str) -> Dataset:
    """Check a .beton before any work: it exists, is ffcv, has image+label, agrees with its class list."""
    if not path:
        fail(f'--data.{what}_dataset is required')
    beton = BetonFile(path)
    info = read_info(path)
    if info is not None and info.num_samples not in (None, beton.num_samples):
        fail(f'{path} holds {beton.num_samples} images but {path}.json says {info.num_samples}; '
             f'they come from different conversions')
    classes = classes_of(path, beton.labels)
    if beton.num_samples and beton.labels.max() >= len(classes):
        fail(f'{path} has label {beton.labels.max()} but only {len(classes)} classes')
    return Dataset(Path(path), beton.num_samples, classes, beton.labels)


def read_synset_names(path: str | os.PathLike) -> dict[str, str]:
    """`n01440764 tench, Tinca tinca` lines (Kaggle's LOC_synset_mapping.txt) -> {wnid: 'tench'}."""
    names = {}
    for line in Path(path).read_text().splitlines():
        wnid, _, text = line.strip().partition(' ')
        if wnid:
            names[wnid] = text.split(',')[0].strip() or wnid
    return names


def imagenet_names() -> list[str]:
    """The 1000 ImageNet-1k class names in label order, as torchvision ships them."""
    from torchvision.models import ResNet50_Weights
    return list(ResNet50_Weights.IMAGENET1K_V1.meta['categories'])
