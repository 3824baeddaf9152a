"""Convert ImageNet (ImageFolder layout or the Kaggle download) to FFCV `.beton` files.

    python convert/write_imagenet.py --cfg.data_dir=/data/imagenet --cfg.split=both \
        --cfg.write_path=/data/ffcv --cfg.max_resolution=500 \
        --cfg.write_mode=proportion --cfg.compress_probability=0.5 --cfg.jpeg_quality=90

The `cfg.*` keys are those of the public ffcv-imagenet writer, so its `write_imagenet.sh`
calls work unchanged; the extra keys are documented in --help and the README.
"""

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import os
from pathlib import Path

from fastargs import Param, Section
from fastargs.validation import And, OneOf

from fastimagenet.common.cli import fail, run
from fastimagenet.common.config import parse_config
from fastimagenet.convert.conversion import WRITE_MODES, Encoding, convert_split, skipped_report_path
from fastimagenet.convert.layout import SPLITS, find_split
from fastimagenet.convert.verify import verify_beton

Section('cfg', 'ImageNet -> .beton conversion').params(
    dataset=Param(And(str, OneOf(['imagenet'])), 'dataset kind (only imagenet)', default='imagenet'),
    split=Param(And(str, OneOf(['train', 'val', 'both'])), 'split to write; both = train then val', default='both'),
    data_dir=Param(str, 'a split folder of class folders, a root with train/ and val/, or the Kaggle download', default=''),
    write_path=Param(str, 'output .beton; with split=both a folder or a path containing {split}', required=True),
    write_mode=Param(And(str, OneOf(WRITE_MODES)), 'smart, raw, jpg or proportion (ffcv semantics)', default='proportion'),
    max_resolution=Param(int, 'longest side of stored images (px)', default=500),
    compress_probability=Param(float, 'share stored as JPEG with write_mode=proportion', default=0.5),
    jpeg_quality=Param(float, 'JPEG quality of stored images', default=90),
    smart_threshold=Param(int, 'write_mode=smart: store JPEG when raw pixels exceed this many bytes', default=None),
    num_workers=Param(int, 'decoding processes (0 = all cores)', default=0),
    chunk_size=Param(int, 'images per worker task', default=100),
    subset=Param(int, 'convert only the first N images of each split (-1 = all)', default=-1),
    class_list=Param(str, 'class list (.beton.json or wnid-per-line .txt) to label a val folder given alone', default=''),
    seed=Param(int, 'seed of the per-image JPEG/raw draw of write_mode=proportion', default=0),
    verify=Param(int, '1 = re-open each written .beton and decode every image; with no data_dir, verify write_path only', default=0),
)


def output_path(write_path: str, split: str, splits: list[str]) -> Path:
    path = Path(write_path).expanduser()
    if '{split}' in write_path:
        return Path(write_path.format(split=split)).expanduser()
    if len(splits) > 1 or path.is_dir() or write_path.endswith('/'):
        return path / f'{split}.beton'
    return path


def main():
    cfg = parse_config('Convert ImageNet to FFCV .beton files', sections=['cfg'])
    c = {k.split('.', 1)[1]: v for k, v in cfg.items() if k.startswith('cfg.')}
    workers = c['num_workers'] or os.cpu_count()
    splits = list(SPLITS) if c['split'] == 'both' else [c['split']]

    if not c['data_dir']:
        if not c['verify']:
            fail('--cfg.data_dir is required (or pass --cfg.verify=1 to check an existing .beton)')
        for split in splits if '{split}' in c['write_path'] else [None]:
            path = output_path(c['write_path'], split, []) if split else Path(c['write_path'])
            report = verify_beton(path, workers)
            print(f'{path}: OK, {report["images"]} images, {report["classes"]} classes, every image decodes')
        return

    if not 1 <= c['jpeg_quality'] <= 100:
        fail(f'--cfg.jpeg_quality must be in 1..100, got {c["jpeg_quality"]}')
    if c['max_resolution'] < 8:
        fail(f'--cfg.max_resolution must be at least 8 px, got {c["max_resolution"]}')
    enc = Encoding(max_resolution=c['max_resolution'], write_mode=c['write_mode'],
                   compress_probability=c['compress_probability'], jpeg_quality=int(c['jpeg_quality']),
                   smart_threshold=c['smart_threshold'], seed=c['seed'])
    # Find every split (and every labelling problem) before writing anything.
    sources = [find_split(c['data_dir'], split, c['class_list']) for split in splits]
    for source in sources:
        if source.empty_classes:
            print(f'warning: {len(source.empty_classes)} empty class folder(s) in {source.folder}, '
                  f'e.g. {source.empty_classes[0]}; their labels stay reserved')

    for source in sources:
        path = output_path(c['write_path'], source.split, splits)
        print(f'{source.split}: {len(source.samples)} images in {len(source.classes)} classes '
              f'from {source.folder} ({source.layout}) -> {path}')
        stats = convert_split(source, path, enc, workers, c['chunk_size'], c['subset'], params=c)
        print(f'{source.split}: wrote {stats["written"]} images to {path} '
              f'({stats["bytes"] / 1e6:.1f} MB) in {stats["seconds"]:.1f} s, '
              f'{stats["images_per_s"]:.0f} images/s with {workers} workers; '
              f'skipped {stats["skipped"]} (listed in {skipped_report_path(path)})')
        if c['verify']:
            report = verify_beton(path, workers)
            print(f'{path}: verified, {report["images"]} images, every image decodes')


if __name__ == '__main__':
    run(main)
