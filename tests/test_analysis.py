"""Understanding a trained model: error analysis, Grad-CAM and prediction, run as users run them.

One tiny checkpoint is trained once per session (`tiny_run`, shared with test_app.py).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fastimagenet.analysis import error_stats
from fastimagenet.analysis.gradcam import grad_cam, overlay
from fastimagenet.analysis.predictor import Predictor, class_names
from fastimagenet.analysis.preprocess import center_box, center_crop, to_model_input
from fastimagenet.common.beton import MODE_RAW, BetonFile
from fastimagenet.common.classes import ClassList, imagenet_names
from fastimagenet.train.checkpoints import load_model
from fastimagenet.train.model import build_model, last_conv_stage

from conftest import error_line, photo, script

CLASS_NAMES = ['circle', 'square', 'triangle', 'star']  # the sample's first four classes
# Trained for speed, not accuracy: 32 px, 2 epochs of 2 steps; EMA and BlurPool on, as in `make demo`;
# validated at 64 px with flip averaging (the trainer's defaults for that).
TINY_RUN = ['--model.arch=resnet18d', '--resolution.min_res=32', '--resolution.max_res=32',
            '--resolution.start_ramp=1', '--resolution.end_ramp=2', '--validation.resolution=64',
            '--validation.batch_size=6', '--training.batch_size=16', '--data.num_workers=1',
            '--lr.lr=0.4', '--lr.lr_peak_epoch=1', '--training.use_blurpool=1', '--training.ema=1',
            '--training.epochs=2', '--logging.log_level=0']


def tiny_run(tmp_path_factory) -> dict[str, Path]:
    """{'run', 'val', 'root'}: the sample (4 classes, 32 train / 16 val images, stored at <= 96 px,
    half raw and half JPEG), converted and trained once per session whichever test file asks first."""
    root = tmp_path_factory.getbasetemp() / 'analysis-tiny-run'
    paths = {'root': root, 'run': root / 'run', 'val': root / 'val.beton'}
    if (paths['run'] / 'final_weights.pt').exists():
        return paths
    from fastimagenet.convert.make_sample import write_sample
    write_sample(root / 'images', train_per_class=8, val_per_class=4, seed=0, classes=4)
    script('convert/write_imagenet.py', f'--cfg.data_dir={root / "images"}', f'--cfg.write_path={root}/',
           '--cfg.max_resolution=96', '--cfg.num_workers=2')
    script('train/train_imagenet.py', *TINY_RUN, f'--data.train_dataset={root / "train.beton"}',
           f'--data.val_dataset={paths["val"]}', f'--logging.folder={paths["run"]}')
    return paths


@pytest.fixture(scope='session')
def trained(tmp_path_factory) -> dict[str, Path]:
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope='session')
def analysis(trained, tmp_path_factory) -> tuple[Path, str]:
    """errors.py run once on the tiny checkpoint: (its output folder, its stdout)."""
    out = tmp_path_factory.mktemp('analysis')
    proc = script('analysis/errors.py', '--checkpoint', trained['run'] / 'best.pt',
                  f'--data.val_dataset={trained["val"]}', '--out', out, '--select', 'random', '--count', '5')
    return out, proc.stdout


# ---- error statistics on a hand-made case -------------------------------------------------------

def probs_from_rankings(rankings: list[list[int]], num_classes: int) -> np.ndarray:
    """Probabilities whose order (most probable first) is each ranking."""
    values = np.array([0.4, 0.2, 0.15, 0.1, 0.09, 0.06])[:num_classes]
    probs = np.zeros((len(rankings), num_classes))
    for row, ranking in zip(probs, rankings):
        row[ranking] = values
    return probs


HAND_LABELS = np.array([0, 0, 0, 1, 1, 2, 2])
HAND_RANKINGS = [[0, 1, 2, 3, 4, 5],   # right
                 [1, 0, 2, 3, 4, 5],   # 0 taken for 1; in the top 5
                 [1, 2, 3, 4, 5, 0],   # 0 taken for 1; not even in the top 5
                 [1, 0, 2, 3, 4, 5],   # right
                 [2, 1, 0, 3, 4, 5],   # 1 taken for 2; in the top 5
                 [0, 2, 1, 3, 4, 5],   # 2 taken for 0; in the top 5
                 [2, 0, 1, 3, 4, 5]]   # right
HAND_CLASSES = ClassList([f'w{i}' for i in range(6)], list('abcdef'))


def test_per_class_numbers_by_hand():
    probs = probs_from_rankings(HAND_RANKINGS, 6)
    top, top_probs = error_stats.top_k(probs, 5)
    assert top.tolist() == [r[:5] for r in HAND_RANKINGS]
    assert np.allclose(top_probs[:, 0], 0.4)
    table = error_stats.per_class_table(HAND_LABELS, top, HAND_CLASSES, list('abcdef'))
    assert list(table.columns) == ['class', 'wnid', 'name', 'count', 'top_1', 'top_5', 'most_confused_with',
                                   'most_confused_with_name', 'confused_count']
    rows = table.set_index('class')
    assert rows['count'].tolist() == [3, 2, 2, 0, 0, 0]
    assert rows.loc[0, 'top_1'] == pytest.approx(1 / 3) and rows.loc[0, 'top_5'] == pytest.approx(2 / 3)
    assert rows.loc[1, 'top_1'] == 0.5 and rows.loc[1, 'top_5'] == 1.0
    assert rows.loc[2, 'top_1'] == 0.5 and rows.loc[2, 'top_5'] == 1.0
    assert rows['top_1'][3:].isna().all() and rows['top_5'][3:].isna().all()  # no images: no accuracy
    assert rows['most_confused_with'][:3].tolist() == [1, 2, 0]
    assert rows['most_confused_with_name'].tolist() == ['b', 'c', 'a', '', '', '']
    assert rows['confused_count'].tolist() == [2, 1, 1, 0, 0, 0]
    assert rows['most_confused_with'][3:].isna().all()
    assert rows.loc[0, 'wnid'] == 'w0' and rows.loc[2, 'name'] == 'c'


def test_confusions_by_hand():
    predicted = np.array([r[0] for r in HAND_RANKINGS])
    table = error_stats.confusions_table(HAND_LABELS, predicted, list('abcdef'))
    assert list(table.columns) == ['true', 'true_name', 'predicted', 'predicted_name', 'count', 'share_of_true']
    # most frequent first, then by true class; the diagonal (right answers) never appears
    assert table[['true', 'predicted', 'count']].values.tolist() == [[0, 1, 2], [1, 2, 1], [2, 0, 1]]
    assert table['share_of_true'].tolist() == pytest.approx([2 / 3, 1 / 2, 1 / 2])
    assert table['true_name'].tolist() == ['a', 'b', 'c'] and table['predicted_name'].tolist() == ['b', 'c', 'a']
    assert len(error_stats.confusions_table(HAND_LABELS, predicted, list('abcdef'), limit=1)) == 1
    assert error_stats.confusions_table(HAND_LABELS, HAND_LABELS, list('abcdef')).empty


def test_most_confused_tie_goes_to_the_lower_class():
    labels = np.array([0, 0, 0])
    top = np.array([[3], [1], [0]])
    table = error_stats.per_class_table(labels, top, ClassList(list('wxyz'), list('wxyz')), list('wxyz'))
    assert table.loc[0, 'most_confused_with'] == 1 and table.loc[0, 'confused_count'] == 1
    assert table.loc[0, 'top_5'] == pytest.approx(1 / 3)  # fewer than 5 columns: the hits there are


def test_predictions_table_columns_and_flags():
    probs = probs_from_rankings(HAND_RANKINGS, 6)
    table = error_stats.predictions_table(HAND_LABELS, probs, list('abcdef'))
    assert list(table.columns) == ['index', 'label', 'label_name', *[f'pred_{i}' for i in range(1, 6)],
                                   *[f'name_{i}' for i in range(1, 6)], *[f'prob_{i}' for i in range(1, 6)],
                                   'correct', 'correct_top5']
    assert table['correct'].tolist() == [1, 0, 0, 1, 0, 0, 1]
    assert table['correct_top5'].tolist() == [1, 1, 0, 1, 1, 1, 1]
    assert table.loc[4, 'name_1'] == 'c' and table.loc[4, 'label_name'] == 'b' and table.loc[4, 'prob_2'] == 0.2


def test_select_errors():
    labels = np.array([0, 1, 2, 0, 1, 2])
    predicted = np.array([1, 1, 0, 2, 0, 2])  # wrong: 0, 2, 3, 4
    confidence = np.array([0.5, 0.9, 0.8, 0.95, 0.6, 0.99])
    assert error_stats.select_errors(labels, predicted, confidence, 'confident', 3).tolist() == [3, 2, 4]
    assert error_stats.select_errors(labels, predicted, confidence, 'confident', 10).tolist() == [3, 2, 4, 0]
    sample = error_stats.select_errors(labels, predicted, confidence, 'random', 2, seed=1)
    assert len(sample) == 2 and set(sample) <= {0, 2, 3, 4} and list(sample) == sorted(sample)
    assert sample.tolist() == error_stats.select_errors(labels, predicted, confidence, 'random', 2, seed=1).tolist()
    assert error_stats.select_errors(labels, labels, confidence, 'random', 5).size == 0


def test_class_names_are_imagenets_for_imagenet_and_unique():
    wnids = ['n01440764', *[f'n{i:08d}' for i in range(2000000, 2000998)], 'n15075141']  # ImageNet's ends
    names = class_names(ClassList(wnids, ['x'] * 1000))
    official = imagenet_names()
    assert names[0] == official[0] == 'tench' and len(set(names)) == 1000  # 'crane' is there twice
    for name, plain, wnid in zip(names, official, wnids):
        assert name == (f'{plain} ({wnid})' if official.count(plain) > 1 else plain)
    assert class_names(ClassList.numbered(1000))[:2] == official[:2]
    assert class_names(ClassList(['s1', 's2'], ['circle', 'square'])) == ['circle', 'square']
    other = [f's{i:08d}' for i in range(1000)]  # 1000 classes, but not ImageNet's: their own names
    assert class_names(ClassList(other, [f'c{i}' for i in range(1000)]))[:2] == ['c0', 'c1']


# ---- the validation view without ffcv ---------------------------------------------------------

def test_center_crop_is_the_ffcv_val_loaders(trained):
    """preprocess.center_crop on a stored image gives the loader's pixels: exactly for images stored
    raw and for JPEGs decoded by ffcv's decoder; within JPEG-decoder rounding for cv2-decoded ones."""
    from ffcv.libffcv import imdecode

    from fastimagenet.train.inputs import IMAGENET_MEAN, IMAGENET_STD, Normalize
    from fastimagenet.train.loaders import val_loader
    beton = BetonFile(trained['val'])
    res = 64
    loader = val_loader(trained['val'], batch_size=8, num_workers=1, in_memory=1, res=res, device=torch.device('cpu'))
    batches = [(images.clone(), labels.clone()) for images, labels in loader]
    theirs = torch.cat([b[0] for b in batches])  # a CPU loader's batches come normalised
    assert theirs.shape == (len(beton), 3, res, res) and theirs.dtype == torch.float32
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    pixels = (theirs * std + mean).round().clamp(0, 255).to(torch.uint8)
    modes = beton.image_meta['mode']
    assert (modes == MODE_RAW).any() and (modes != MODE_RAW).any(), 'want both storage modes'
    for i in range(len(beton)):
        expected = pixels[i].permute(1, 2, 0).numpy()
        meta = beton.image_meta[i]
        if meta['mode'] == MODE_RAW:
            exact = center_crop(beton.image(i), res)
        else:
            h, w = int(meta['height']), int(meta['width'])
            decoded = np.zeros(h * w * 3, dtype=np.uint8)
            assert imdecode(np.ascontiguousarray(beton.image_bytes(i)), decoded, h, w, h, w, 0, 0, 1, 1, False, False) == 0
            exact = center_crop(decoded.reshape(h, w, 3), res)
            approx = center_crop(beton.image(i), res).astype(int)
            assert np.abs(approx - expected).mean() < 2.0 and np.abs(approx - expected).max() <= 12, i
        assert np.array_equal(exact, expected), i
        # and the normalised input the model gets
        ours = to_model_input(exact[None])
        reference = Normalize(torch.device('cpu'), normalized=True)(theirs[i:i + 1])
        assert ours.shape == reference.shape and torch.allclose(ours, reference, atol=1e-5)
        assert ours.is_contiguous(memory_format=torch.channels_last)


def test_center_box_follows_ffcv_rounding():
    from ffcv.fields.rgb_image import get_center_crop

    from fastimagenet.train.inputs import VAL_CROP_RATIO
    assert center_box(96, 64) == (20, 4, 56)    # int(0.875 * 64) = 56
    for h, w in [(375, 500), (500, 333), (57, 96), (1, 1), (2, 9), (4000, 3000)]:
        top, left, side = center_box(h, w)
        assert (top, left, side, side) == get_center_crop(h, w, None, VAL_CROP_RATIO)
    assert center_crop(np.zeros((3, 2, 3), np.uint8), 5).shape == (5, 5, 3)
    with pytest.raises(ValueError):
        center_crop(np.zeros((4, 4), np.uint8), 5)


# ---- Grad-CAM ------------------------------------------------------------------------------

@pytest.mark.parametrize('arch,blurpool', [('resnet50d', True), ('resnet18d', False), ('resnet18', False),
                                           ('resnet50', True)])
def test_gradcam_maps_and_no_side_effects(arch, blurpool):
    torch.manual_seed(0)
    model = build_model(arch, 5, use_blurpool=blurpool, zero_init_last=False)
    model.train()  # must come back in the mode it was in, with no BN statistics changed
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stage = last_conv_stage(model)
    x = torch.randn(2, 3, 64, 48)
    maps, logits = grad_cam(model, x, targets=[1, 4])
    assert maps.shape == (2, 64, 48) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    for m in maps:
        assert m.max() == pytest.approx(1.0) or m.max() == 0
    assert model.training
    assert not stage._forward_hooks and not stage._backward_hooks
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.allclose(logits, model.eval()(x), atol=1e-5)
    default_maps, _ = grad_cam(model, x)  # default target: each image's top-1 class
    top1_maps, _ = grad_cam(model, x, targets=logits.argmax(1))
    assert np.allclose(default_maps, top1_maps)
    with pytest.raises(ValueError):
        grad_cam(model, x, targets=[1])
    assert not stage._forward_hooks  # removed on errors too


def test_gradcam_of_each_image_ignores_the_rest_of_the_batch(trained):
    model, _, _ = load_model(trained['run'] / 'best.pt')
    x = torch.randn(3, 3, 64, 64)
    together, _ = grad_cam(model, x, targets=[0, 1, 2])
    alone, _ = grad_cam(model, x[1:2], targets=[1])
    assert np.allclose(together[1], alone[0], atol=1e-4)


def test_gradcam_same_for_ddp_saved_weights(trained, tmp_path):
    """final_weights.pt saved from DDP/compile (`module.`/`_orig_mod.` keys) explains like the bare model."""
    run = trained['run']
    weights = torch.load(run / 'final_weights.pt', weights_only=True)
    ddp = tmp_path / 'ddp'
    ddp.mkdir()
    torch.save({f'module._orig_mod.{k}': v for k, v in weights.items()}, ddp / 'final_weights.pt')
    (ddp / 'params.json').write_text((run / 'params.json').read_text())
    bare, classes, _ = load_model(run / 'final_weights.pt')
    wrapped, wrapped_classes, _ = load_model(ddp / 'final_weights.pt')
    assert class_names(wrapped_classes) == CLASS_NAMES == class_names(classes)
    x = torch.randn(1, 3, 64, 64)
    a, la = grad_cam(bare, x)
    b, lb = grad_cam(wrapped, x)
    assert np.allclose(a, b) and torch.allclose(la, lb)
    ema, _, info = load_model(run / 'best.pt', prefer_ema=True)
    assert info['weights'] == 'ema'
    maps, _ = grad_cam(ema, x)
    assert maps.shape == (1, 64, 64) and 0 <= maps.min() <= maps.max() <= 1


def test_overlay():
    rgb = np.full((40, 30, 3), 128, np.uint8)
    cam = np.zeros((10, 10), np.float32)
    cam[:5] = 1
    out = overlay(rgb, cam)
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] > out[0, 0, 2]      # hot: red
    assert out[-1, 0, 2] > out[-1, 0, 0]    # cold: blue


# ---- errors.py -----------------------------------------------------------------------------

def test_errors_cli_writes_tables_and_grids_with_the_trainers_top1(trained, analysis):
    out, stdout = analysis
    log = [json.loads(line) for line in (trained['run'] / 'log.jsonl').read_text().splitlines()]
    # --ema 1 (default) analyses the EMA weights: its top-1 is the trainer's ema_top_1.
    assert f'top_1: {log[-1]["ema_top_1"]:.4f}  top_5: {log[-1]["ema_top_5"]:.4f}' in stdout
    assert str(out) in stdout

    predictions = pd.read_csv(out / 'predictions.csv')
    assert list(predictions.columns) == ['index', 'label', 'label_name', 'pred_1', 'pred_2', 'pred_3', 'pred_4',
                                         'name_1', 'name_2', 'name_3', 'name_4', 'prob_1', 'prob_2', 'prob_3',
                                         'prob_4', 'correct', 'correct_top5']  # 4 classes: a top-4
    assert len(predictions) == 16 and predictions['index'].tolist() == list(range(16))
    assert predictions['label'].tolist() == BetonFile(trained['val']).labels.tolist()
    assert set(predictions['label_name']) == set(CLASS_NAMES)
    assert predictions['correct'].mean() == pytest.approx(log[-1]['ema_top_1'])
    probs = predictions[['prob_1', 'prob_2', 'prob_3', 'prob_4']].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4) and (np.diff(probs, axis=1) <= 0).all()

    per_class = pd.read_csv(out / 'per_class.csv', keep_default_na=False)
    assert list(per_class.columns) == ['class', 'wnid', 'name', 'count', 'top_1', 'top_5', 'most_confused_with',
                                       'most_confused_with_name', 'confused_count']
    assert per_class['name'].tolist() == CLASS_NAMES and per_class['count'].tolist() == [4, 4, 4, 4]
    for row in per_class.itertuples():
        mine = predictions[predictions['label'] == row[1]]
        assert row.top_1 == pytest.approx(mine['correct'].mean())
        assert row.top_5 == pytest.approx(mine['correct_top5'].mean())

    confusions = pd.read_csv(out / 'confusions.csv')
    assert list(confusions.columns) == ['true', 'true_name', 'predicted', 'predicted_name', 'count', 'share_of_true']
    assert confusions['count'].sum() == (predictions['correct'] == 0).sum()
    assert (confusions['true'] != confusions['predicted']).all()
    assert confusions['count'].is_monotonic_decreasing

    errors = int((predictions['correct'] == 0).sum())
    assert f'{errors} of 16 images misclassified, {min(errors, 5)} shown' in stdout
    for name in ('misclassified.png', 'misclassified_gradcam.png'):
        with Image.open(out / name) as im:
            assert im.format == 'PNG' and im.width >= 200 and im.height >= 200
            assert len(im.convert('RGB').getcolors(1 << 20) or []) > 50  # pictures, not a blank page


def test_errors_cli_bad_input_fails_in_one_line(trained, tmp_path):
    proc = script('analysis/errors.py', '--checkpoint', trained['run'] / 'best.pt',
                  f'--data.val_dataset={tmp_path}/nope.beton', '--out', tmp_path / 'x', check=False)
    assert 'nope.beton does not exist' in error_line(proc)
    assert not (tmp_path / 'x').exists()


# ---- predict.py ----------------------------------------------------------------------------

def user_images(folder: Path, trained) -> list[Path]:
    """The formats and modes users have, plus a stored validation image exported losslessly."""
    base = photo(3, size=(150, 110))
    base.save(folder / 'photo.jpg', quality=90)
    rgba = base.convert('RGBA')
    rgba.putalpha(Image.linear_gradient('L').resize(base.size))
    rgba.save(folder / 'rgba.png')
    palette = base.convert('P', palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info['transparency'] = 0
    palette.save(folder / 'palette.png', transparency=0)
    base.convert('L').save(folder / 'gray.png')
    base.save(folder / 'photo.webp', quality=80)
    files = [folder / n for n in ('photo.jpg', 'rgba.png', 'palette.png', 'gray.png', 'photo.webp')]
    beton = BetonFile(trained['val'])
    raw = next(i for i in range(len(beton)) if beton.image_meta[i]['mode'] == MODE_RAW)
    Image.fromarray(beton.image(raw)).save(folder / f'val_{raw}.png')
    return [*files, folder / f'val_{raw}.png']


def parse_predictions(stdout: str) -> dict[str, list[tuple[str, float]]]:
    """{image path: [(name, percent), ...]} from predict.py's output."""
    result, current = {}, None
    for line in stdout.splitlines():
        match = re.match(r'\s+\d+\. (.+?)\s+([\d.]+)%\s+\(class \d+\)$', line)
        if match and current is not None:
            result[current].append((match[1], float(match[2])))
        elif line and not line.startswith(' '):
            current = line.strip()
            result[current] = []
    return result


def test_predict_cli_on_user_formats_with_gradcam(trained, analysis, tmp_path):
    images = user_images(tmp_path, trained)
    proc = script('analysis/predict.py', '--checkpoint', trained['run'] / 'best.pt', *images,
                  '--gradcam', tmp_path / 'cam.png', '--topk', '3')
    found = parse_predictions(proc.stdout)
    assert 'resnet18d with 4 classes, ema weights, 64 px center crop, flip-averaged' in proc.stdout
    for i, path in enumerate(images, 1):
        top = found[str(path)]
        assert len(top) == 3 and {name for name, _ in top} <= set(CLASS_NAMES)
        assert [p for _, p in top] == sorted((p for _, p in top), reverse=True) and sum(p for _, p in top) <= 100.01
        with Image.open(tmp_path / f'cam-{i}.png') as im:  # one overlay per image, numbered in order
            assert im.format == 'PNG' and im.size == (256, 256) and im.mode == 'RGB'
    assert f'Grad-CAM of "{found[str(images[0])][0][0]}" -> {tmp_path / "cam-1.png"}' in proc.stdout

    # The exported validation image is predicted as errors.py (i.e. the trainer) predicted it.
    index = int(images[-1].stem.split('_')[1])
    row = pd.read_csv(analysis[0] / 'predictions.csv').iloc[index]
    assert [name for name, _ in found[str(images[-1])]] == [row['name_1'], row['name_2'], row['name_3']]
    assert [p for _, p in found[str(images[-1])]] == pytest.approx(
        [100 * row['prob_1'], 100 * row['prob_2'], 100 * row['prob_3']], abs=0.011)


def test_predictor_in_process(trained, tmp_path):
    photo(5).save(tmp_path / 'a.jpg')
    predictor = Predictor(trained['run'] / 'best.pt')
    rgb = np.asarray(Image.open(tmp_path / 'a.jpg').convert('RGB'))
    prediction = predictor(rgb, topk=10, gradcam=True)
    assert len(prediction.top) == 4 and prediction.heatmap.shape == (256, 256, 3)
    assert prediction.crop.shape == (64, 64, 3)
    assert sum(p for _, _, p in prediction.top) == pytest.approx(1, abs=1e-5)
    from fastimagenet.analysis.predict import gradcam_paths
    assert gradcam_paths(str(tmp_path / 'x.png'), 1) == [tmp_path / 'x.png']
    assert gradcam_paths(str(tmp_path / 'x.png'), 2) == [tmp_path / 'x-1.png', tmp_path / 'x-2.png']


def test_predict_cli_bad_files_fail_in_one_line(trained, tmp_path):
    good = tmp_path / 'good.jpg'
    photo(1).save(good)
    text = tmp_path / 'notes.jpg'
    text.write_text('not a picture\n' * 20)
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    truncated = tmp_path / 'truncated.jpg'
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])  # header intact, pixels cut
    ckpt = trained['run'] / 'best.pt'
    cases = {tmp_path / 'missing.jpg': 'missing.jpg does not exist', text: 'notes.jpg is not an image',
             empty: 'empty.png is not an image', tmp_path: 'is a directory',
             truncated: 'truncated.jpg does not decode as an image'}
    for path, message in cases.items():
        line = error_line(script('analysis/predict.py', '--checkpoint', ckpt, good, path, check=False))
        assert message in line, line
    line = error_line(script('analysis/predict.py', '--checkpoint', tmp_path / 'nope.pt', good, check=False))
    assert 'nope.pt does not exist' in line
