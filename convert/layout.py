"""Where the images of a split are and what their labels are.

Accepted layouts for `cfg.data_dir`:
  - a split folder of class folders (`.../train`, `.../val`): the public writer's input;
  - a root holding `train/` and `val/`;
  - the Kaggle ILSVRC download, from its root or from `ILSVRC/Data/CLS-LOC`: `train/` has
    class folders, `val/` is flat with labels in `LOC_val_solution.csv`.

A label is the index of the class's WordNet id in the sorted class folders of the *train*
split, so both splits agree even when val lacks classes or is converted on its own.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from fastimagenet.common.classes import ClassList, read_info, read_synset_names
from fastimagenet.common.cli import fail

SPLITS = ('train', 'val')
VAL_LABELS = 'LOC_val_solution.csv'
SYNSET_FILES = ('LOC_synset_mapping.txt', 'synsets.txt')


@dataclass
class SplitSource:
    split: str
    folder: Path
    layout: str                        # 'imagefolder' or 'kaggle-flat'
    classes: ClassList
    samples: list[tuple[str, int]]     # (path, label), in a fixed order
    unlabelled: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    empty_classes: list[str] = field(default_factory=list)


def find_split(data_dir: str | os.PathLike, split: str, class_list: str = '') -> SplitSource:
    root = Path(data_dir).expanduser()
    if not root.exists():
        fail(f'cfg.data_dir {root} does not exist')
    if not root.is_dir():
        fail(f'cfg.data_dir {root} is not a directory')

    split_dir, train_dir = _split_folders(root, split)
    classes = _train_classes(train_dir, split_dir, split, class_list)
    index = {wnid: i for i, wnid in enumerate(classes.wnids)}

    if _is_flat(split_dir):
        samples, unlabelled = _flat_samples(split_dir, index)
        layout = 'kaggle-flat'
        empty = []
    else:
        samples, empty = _class_folder_samples(split_dir, index, split)
        unlabelled, layout = [], 'imagefolder'
    if not samples and not unlabelled:
        fail(f'no image files found in {split_dir}')
    return SplitSource(split, split_dir, layout, classes, samples, unlabelled, empty)


def _split_folders(root: Path, split: str) -> tuple[Path, Path | None]:
    """(folder of this split, folder of the train split or None)."""
    cls_loc = root / 'ILSVRC' / 'Data' / 'CLS-LOC'
    if cls_loc.is_dir():
        root = cls_loc
    if (root / split).is_dir():  # a root holding the splits
        train = root / 'train'
        return root / split, train if train.is_dir() else None
    if root.name in SPLITS and root.name != split:
        fail(f'cfg.data_dir {root} looks like the {root.name} split but cfg.split={split}')
    # The split folder itself; train classes come from a sibling train/ folder.
    if split == 'train':
        return root, root
    sibling = root.parent / 'train'
    return root, sibling if sibling.is_dir() else None


def _train_classes(train_dir: Path | None, split_dir: Path, split: str, class_list: str) -> ClassList:
    if class_list:
        return _read_class_list(Path(class_list))
    if train_dir is None:
        fail(f'cannot label {split_dir} without the train classes: put train/ beside it, or pass '
             f'--cfg.class_list=<train .beton>.json (written by the train conversion)')
    wnids = sorted(e.name for e in os.scandir(train_dir) if e.is_dir() and not e.name.startswith('.'))
    if not wnids:
        if _is_flat(train_dir):
            fail(f'{train_dir} holds images but no class folders; the train split needs one folder per class')
        fail(f'no class folders in {train_dir}')
    names = _synset_names(split_dir)
    return ClassList(wnids, [names.get(w, w) for w in wnids])


def _read_class_list(path: Path) -> ClassList:
    if not path.is_file():
        fail(f'cfg.class_list {path} does not exist')
    if path.suffix == '.json':
        info = read_info(str(path)[:-len('.json')])
        if info is None:
            fail(f'cfg.class_list {path} is not a class list written by the converter')
        return info.classes
    wnids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    names = read_synset_names(path)
    return ClassList(wnids, [names.get(w, w) for w in wnids])


def _synset_names(start: Path) -> dict[str, str]:
    """Readable names from the nearest LOC_synset_mapping.txt / synsets.txt above the split."""
    for folder in [start, *list(start.parents)[:4]]:
        for name in SYNSET_FILES:
            if (folder / name).is_file():
                return read_synset_names(folder / name)
    return {}


def _is_flat(folder: Path) -> bool:
    """True when the folder holds image files but no class folders (Kaggle's val/)."""
    has_dirs = has_files = False
    for entry in os.scandir(folder):
        if entry.name.startswith('.'):
            continue
        has_dirs |= entry.is_dir()
        has_files |= entry.is_file()
    return has_files and not has_dirs


def _files(folder: Path) -> list[str]:
    return sorted(e.path for e in os.scandir(folder) if e.is_file() and not e.name.startswith('.'))


def _class_folder_samples(split_dir: Path, index: dict[str, int], split: str):
    folders = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith('.'))
    unknown = [f for f in folders if f not in index]
    if unknown:
        fail(f'{split} class folder {split_dir / unknown[0]} is not a train class '
             f'({len(unknown)} such folders); labels would be wrong')
    samples, empty = [], []
    for wnid in folders:
        files = _files(split_dir / wnid)
        if not files:
            empty.append(wnid)
        samples.extend((path, index[wnid]) for path in files)
    return samples, empty


def _flat_samples(split_dir: Path, index: dict[str, int]):
    labels_file = next((folder / VAL_LABELS for folder in [split_dir, *list(split_dir.parents)[:4]]
                        if (folder / VAL_LABELS).is_file()), None)
    if labels_file is None:
        fail(f'{split_dir} has no class folders and no {VAL_LABELS} was found above it; '
             f'cannot label its images')
    wnid_of = {}
    with open(labels_file, newline='') as f:
        for row in csv.DictReader(f):
            try:
                wnid_of[row['ImageId']] = row['PredictionString'].split()[0]
            except (KeyError, IndexError):
                fail(f'{labels_file} is not a Kaggle validation labels file (ImageId,PredictionString)')
    missing = sorted({w for w in wnid_of.values() if w not in index})
    if missing:
        fail(f'{labels_file} uses {len(missing)} class(es) the train split lacks, e.g. {missing[0]}')
    samples, unlabelled = [], []
    for path in _files(split_dir):
        wnid = wnid_of.get(Path(path).stem)
        if wnid is None:
            unlabelled.append((path, f'no label in {VAL_LABELS}'))
        else:
            samples.append((path, index[wnid]))
    return samples, unlabelled
