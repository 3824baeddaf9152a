"""Error analysis of a trained checkpoint on a validation .beton.

    python analysis/errors.py --checkpoint runs/demo/best.pt \
        --data.val_dataset=data/sample_ffcv/val.beton --out runs/demo/analysis \
        [--validation.resolution=256] [--validation.lr_tta=1] [--select confident|random] [--count 36] [--ema 0|1]

Validates exactly as the trainer does (its loader, Normalize, flip averaging and precision,
with the trainer's own validation function; resolution, flip setting and precision default to
the checkpoint's own), so the printed top-1 is the trainer's: its `top_1` with --ema 0, its `ema_top_1` with --ema 1 (the default,
when the checkpoint has EMA weights). Writes into --out:

    predictions.csv             one row per image: true class, top-5 classes and probabilities, correct
    per_class.csv               per class: count, top-1/top-5 accuracy, the class it is most confused with
    confusions.csv              (true, predicted) pairs of the errors, most frequent first
    misclassified.png           the chosen errors as the model saw them (the centre crop), captioned
    misclassified_gradcam.png   the same with the Grad-CAM heat-map of the predicted class
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

from fastimagenet.common.atomic import atomic_path
from fastimagenet.common.cli import fail, run

FILES = ('predictions.csv', 'per_class.csv', 'confusions.csv', 'misclassified.png', 'misclassified_gradcam.png')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--checkpoint', required=True, help='best.pt, last.pt or final_weights.pt')
    parser.add_argument('--data.val_dataset', dest='val_dataset', required=True, metavar='BETON',
                        help='validation .beton')
    parser.add_argument('--out', required=True, help='folder for the CSVs and grids')
    # The trainer's keys, spelled as in its configs; unset = what the checkpoint was validated with.
    parser.add_argument('--validation.resolution', dest='resolution', type=int, metavar='PX',
                        help="center-crop resolution (default: the checkpoint's)")
    parser.add_argument('--validation.lr_tta', dest='lr_tta', type=int, choices=(0, 1),
                        help="1: average with the flipped image (default: the checkpoint's)")
    parser.add_argument('--validation.batch_size', dest='batch_size', type=int, metavar='N',
                        help="batch size (default: the checkpoint's)")
    parser.add_argument('--data.num_workers', dest='num_workers', type=int, default=0, metavar='N',
                        help='decoding threads (0 = all cores)')
    parser.add_argument('--training.precision', dest='precision', choices=('auto', 'fp32', 'bf16', 'fp16'),
                        help="precision of the forward pass (default: the checkpoint's)")
    parser.add_argument('--select', choices=('confident', 'random'), default='confident',
                        help='which errors to show: the most confident ones, or a random sample')
    parser.add_argument('--count', type=int, default=36, help='how many errors to show (default 36)')
    parser.add_argument('--seed', type=int, default=0, help='seed of --select random')
    parser.add_argument('--ema', type=int, choices=(0, 1), default=1, help='1: EMA weights when the checkpoint has them')
    args = parser.parse_args(argv)
    if args.count < 0:
        fail('--count must not be negative')
    if args.resolution is not None and args.resolution < 8:
        fail(f'--validation.resolution must be at least 8 px, got {args.resolution}')
    if args.batch_size is not None and args.batch_size < 1:
        fail('--validation.batch_size must be positive')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    # Cheap checks of both files first: a typo is reported before torch and ffcv take seconds to load.
    from fastimagenet.common.beton import BetonFile
    BetonFile(args.val_dataset)
    if not Path(args.checkpoint).is_file():
        fail(f'checkpoint {args.checkpoint} does not exist')

    import numpy as np
    import torch

    from fastimagenet.analysis import error_stats
    from fastimagenet.analysis.predictor import class_names
    from fastimagenet.analysis.preprocess import resolution_of
    from fastimagenet.common.classes import open_dataset
    from fastimagenet.train.checkpoints import load_model
    from fastimagenet.train.inputs import Normalize
    from fastimagenet.train.loaders import val_loader
    from fastimagenet.train.metrics import evaluate
    from fastimagenet.train.precision import precision_for

    val_set = open_dataset(args.val_dataset, 'val')
    model, classes, info = load_model(args.checkpoint, prefer_ema=bool(args.ema))
    params = info.get('params') or {}
    res = args.resolution or resolution_of(info)
    lr_tta = bool(args.lr_tta if args.lr_tta is not None else params.get('validation.lr_tta', 1))
    batch_size = args.batch_size or int(params.get('validation.batch_size') or 100)
    if len(classes) < len(val_set.classes):
        fail(f'{args.checkpoint} predicts {len(classes)} classes but {val_set.path} has {len(val_set.classes)}')
    if val_set.num_samples == 0:
        fail(f'{val_set.path} holds no images')
    shared = len(val_set.classes)
    if not (is_numbered(val_set.classes) or is_numbered(classes)) and val_set.classes.wnids != classes.wnids[:shared]:
        print(f'warning: the classes of {val_set.path} are not those {args.checkpoint} was trained on '
              f'(labels are compared by index)')
    names = class_names(classes)
    if args.ema and info['weights'] != 'ema':
        print(f'{args.checkpoint} has no EMA weights: analysing the model\'s own')

    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    # The trainer's validation: its loader, Normalize, flip averaging and precision (autocast on a GPU).
    precision = precision_for(args.precision or params.get('training.precision', 'auto'), device)
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    model = model.to(device, memory_format=torch.channels_last)
    loader = val_loader(val_set.path, batch_size=batch_size, num_workers=args.num_workers or cores,
                        in_memory=1, res=res, device=device)
    normalize = Normalize(device, normalized=loader.normalized)
    print(f'{args.checkpoint} ({info["weights"]} weights) on {val_set.path}: {val_set.num_samples} images, '
          f'{res} px center crop{", flip-averaged" if lr_tta else ""}, {precision.name}')
    result = evaluate(model, loader, normalize, lr_tta=lr_tta, precision=precision,
                      expected=val_set.num_samples, keep_probs=True)
    probs, labels = result['probs'].numpy(), result['labels'].numpy().astype(np.int64)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    predictions = error_stats.predictions_table(labels, probs, names)
    top, top_probs = error_stats.top_k(probs, 5)
    write_csv(out / 'predictions.csv', predictions)
    write_csv(out / 'per_class.csv', error_stats.per_class_table(labels, top, classes, names))
    write_csv(out / 'confusions.csv', error_stats.confusions_table(labels, top[:, 0], names))

    chosen = error_stats.select_errors(labels, top[:, 0], top_probs[:, 0], args.select, args.count, args.seed)
    draw_errors(out, model, val_set.path, chosen, labels, top[:, 0], top_probs[:, 0], names, res, args.select)

    errors = int((predictions['correct'] == 0).sum())
    print(f'top_1: {result["top_1"]:.4f}  top_5: {result["top_5"]:.4f}  val_loss: {result["val_loss"]:.4f}  '
          f'({errors} of {len(labels)} images misclassified, {len(chosen)} shown)')
    print(f'wrote {", ".join(FILES)} to {out}')


def is_numbered(classes) -> bool:
    """Classes known only by their label (a .beton without its class list)."""
    return classes.wnids == [str(i) for i in range(len(classes))]


def write_csv(path: Path, table) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def draw_errors(out: Path, model, beton_path, chosen, labels, predicted, confidence, names, res, how) -> None:
    """Both grids: each chosen image's validation crop, plain and with the Grad-CAM of its prediction."""
    import numpy as np

    from fastimagenet.analysis.gradcam import grad_cam, overlay
    from fastimagenet.analysis.grids import save_grid, shorten
    from fastimagenet.analysis.preprocess import center_crop, to_model_input
    from fastimagenet.common.beton import BetonFile

    beton = BetonFile(beton_path)
    crops = [center_crop(beton.image(int(i)), res) for i in chosen]
    captions = [f'#{i}  true: {shorten(names[labels[i]])}\npred: {shorten(names[predicted[i]])} '
                f'({confidence[i]:.0%})' for i in chosen]
    heatmaps, cam_captions = [], []
    device = next(model.parameters()).device
    for start in range(0, len(crops), 16):  # bounded memory for the gradients
        part = crops[start:start + 16]
        cams, _ = grad_cam(model, to_model_input(part).to(device), [int(predicted[i]) for i in chosen[start:start + 16]])
        heatmaps += [overlay(crop, cam) for crop, cam in zip(part, cams)]
        # An all-zero map (nothing speaks for the class) would otherwise look like a cold one.
        cam_captions += [caption + ('  [empty map]' if cam.max() == 0 else '')
                         for caption, cam in zip(captions[start:start + 16], cams)]
    what = 'most confident errors' if how == 'confident' else 'random errors'
    total = int(np.sum(labels != predicted))
    save_grid(out / 'misclassified.png', crops, captions, f'{len(chosen)} {what} of {total}')
    save_grid(out / 'misclassified_gradcam.png', heatmaps, cam_captions,
              f'{len(chosen)} {what} of {total}: Grad-CAM of the predicted class')


if __name__ == '__main__':
    run(main)
