"""Every setting of the trainer, as fastargs sections.

The sections and keys of the public ffcv-imagenet trainer are all here with their
meaning, so its YAML files run unchanged; keys it lacks are marked [added] in --help's
descriptions and listed in the README.
"""
from __future__ import annotations

from pathlib import Path

from fastargs import Param, Section
from fastargs.validation import And, OneOf

from fastimagenet.common.cli import fail
from fastimagenet.common.config import parse_config

from .model import ARCHITECTURES
from .precision import PRECISIONS
from .schedules import LR_SCHEDULES, check_schedule

CONFIG_DIR = Path(__file__).resolve().parent.parent / 'rn50_configs'

Section('model', 'model').params(
    arch=Param(And(str, OneOf(ARCHITECTURES)), 'architecture', default='resnet50d'),
    pretrained=Param(int, 'must be 0: weights are never downloaded', default=0),
)
Section('resolution', 'progressive resolution (multiples of 32)').params(
    min_res=Param(int, 'training resolution until start_ramp', default=160),
    max_res=Param(int, 'training resolution from end_ramp on', default=192),
    start_ramp=Param(int, 'last epoch (0-based) at min_res', default=0),
    end_ramp=Param(int, 'first epoch at max_res', default=0),
)
Section('data', 'datasets and loading').params(
    train_dataset=Param(str, 'training .beton', default=''),
    val_dataset=Param(str, 'validation .beton', required=True),
    num_workers=Param(int, 'decoding threads per process (0 = cores / processes on this node)', default=0),
    in_memory=Param(int, '1: read through the OS page cache (dataset fits in RAM); 0: ffcv process cache', default=1),
    gpu=Param(int, 'ignored (public-config compatibility); the device is set by torchrun/LOCAL_RANK', default=0),
    decoder=Param(And(str, OneOf(['fast', 'stock'])), '[added] fast: reproducible partial-decoding crops; stock: ffcv\'s', default='fast'),
    seed=Param(int, '[added] seed of sample order, augmentations and init', default=0),
    min_crop_scale=Param(float, '[added] smallest random-resized-crop area, as a share of the image', default=0.08),
)
Section('lr', 'learning-rate schedule, set every iteration').params(
    lr=Param(float, 'peak learning rate (for the global batch, or for lr.reference_batch when set)', default=0.5),
    reference_batch=Param(int, '[added] global batch that lr.lr is for; the LR follows the real global batch '
                          'linearly (0: lr.lr is for the global batch as it is)', default=0),
    lr_schedule_type=Param(And(str, OneOf(LR_SCHEDULES)), 'cyclic, step, cosine or onecycle', default='cyclic'),
    lr_peak_epoch=Param(float, 'epoch of the LR peak (end of warm-up) for cyclic and cosine', default=2),
    step_ratio=Param(float, 'step schedule: LR factor at each step', default=0.1),
    step_length=Param(int, 'step schedule: epochs between steps', default=30),
    min_lr=Param(float, '[added] cosine: the LR it decays to (timm\'s lr_min)', default=0.0),
    pct_start=Param(float, '[added] onecycle: share of the steps spent rising to the peak', default=0.3),
    div_factor=Param(float, '[added] onecycle: initial LR = lr / div_factor', default=25.0),
    final_div_factor=Param(float, '[added] onecycle: final LR = initial LR / final_div_factor', default=1e4),
    anneal=Param(And(str, OneOf(['cos', 'linear'])), '[added] onecycle: cos or linear annealing', default='cos'),
    cycle_momentum=Param(int, '[added] onecycle: 1 = cycle SGD momentum inversely to the LR', default=0),
    base_momentum=Param(float, '[added] onecycle: momentum at the LR peak (with cycle_momentum)', default=0.85),
    max_momentum=Param(float, '[added] onecycle: momentum at the start and end (with cycle_momentum)', default=0.95),
    start_epoch=Param(int, '[added] epoch the schedule starts from (a schedule changed mid-run starts afresh '
                      'there); the schedule spans start_epoch..training.epochs', default=0),
)
Section('logging', 'run folder').params(
    folder=Param(str, 'run folder: params.json, log.jsonl, checkpoints; rerun to resume', required=True),
    log_level=Param(int, '0: validate only after the last epoch; 1: every epoch', default=1),
    tensorboard=Param(int, '[added] 1: also write TensorBoard scalars to <folder>/tensorboard', default=0),
    progress_every=Param(float, '[added] seconds between plain progress lines when stdout is not a terminal '
                         '(a terminal gets a progress bar)', default=60.0),
    checkpoint_every=Param(int, '[added] also keep epoch_NNNN.pt every this many epochs (0: only last.pt, best.pt)',
                           default=0),
    keep_checkpoints=Param(int, '[added] how many epoch_NNNN.pt to keep, newest first (0: all)', default=0),
    mirror=Param(str, '[added] mirror the run folder to this fsspec URL (s3://bucket/prefix/run, gs://..., '
                 'file:///...) and resume from it on a fresh machine', default=''),
    mirror_endpoint=Param(str, '[added] endpoint URL of an S3-compatible store (MinIO, R2, Ceph); '
                          'also read from AWS_ENDPOINT_URL', default=''),
)
Section('validation', 'validation').params(
    batch_size=Param(int, 'validation batch size per process', default=256),
    resolution=Param(int, 'validation resolution (center crop of ratio 224/256)', default=256),
    lr_tta=Param(int, '1: average logits over the image and its left/right flip', default=1),
    ema_every=Param(int, '[added] validate the EMA every this many epochs, and after the last (0: only after '
                    'the last)', default=1),
)
Section('training', 'optimisation').params(
    resume_with_changes=Param(int, '[added] 1: continue the run in logging.folder from its last.pt with this '
                              'command\'s settings; params.json records the changes and the epoch', default=0),
    eval_only=Param(int, '1: evaluate training.checkpoint (default: the run\'s best.pt) and log it', default=0),
    checkpoint=Param(str, '[added] checkpoint for eval_only', default=''),
    batch_size=Param(int, 'batch size per process', default=512),
    optimizer=Param(And(str, OneOf(['sgd'])), 'sgd', default='sgd'),
    momentum=Param(float, 'SGD momentum', default=0.9),
    nesterov=Param(int, '[added] 1: Nesterov momentum', default=0),
    weight_decay=Param(float, 'weight decay', default=5e-5),
    bn_wd=Param(int, '1: weight decay on BatchNorm parameters too', default=0),
    epochs=Param(int, 'number of epochs', default=16),
    label_smoothing=Param(float, 'label smoothing', default=0.1),
    loss=Param(And(str, OneOf(['ce', 'bce'])), '[added] ce: cross-entropy; bce: binary cross-entropy '
               '("ResNet strikes back")', default='ce'),
    bce_target_thresh=Param(float, '[added] bce: targets above this become 1, the rest 0 (0: soft targets kept)',
                            default=0.0),
    distributed=Param(int, '1 without torchrun: spawn dist.world_size processes on this node', default=0),
    use_blurpool=Param(int, '1: blur before strided convs (BlurPool)', default=0),
    zero_init=Param(int, '[added] 1: zero-init the last BN of each residual block', default=1),
    channels_last=Param(int, '[added] 1: channels_last memory format', default=1),
    precision=Param(And(str, OneOf(PRECISIONS)),
                    '[added] auto: bf16 on CUDA GPUs with native bf16 (compute capability 8.0+), fp16 with a '
                    'GradScaler on older ones (T4, V100), fp32 on CPU', default='auto'),
    compile=Param(int, '[added] 1: torch.compile the model', default=0),
    ema=Param(int, '[added] 1: keep an EMA of the weights, evaluated and logged beside the model', default=0),
    ema_halflife=Param(float, '[added] EMA half-life in epochs', default=0.5),
)
Section('dist', 'distributed (torchrun sets these through the environment)').params(
    world_size=Param(int, 'processes for training.distributed=1 without torchrun', default=1),
    address=Param(str, 'master address for training.distributed=1', default='localhost'),
    port=Param(str, 'master port for training.distributed=1', default='12355'),
)

Section('augment', 'augmentation beyond crop and flip, each off by default and on for the epochs '
        '[*_on_epoch, *_off_epoch) (0-based; off_epoch -1: to the end)').params(
    randaugment=Param(str, '[added] RandAugment in timm\'s syntax, e.g. rand-m9-mstd0.5-inc1 (empty: off)', default=''),
    randaugment_on_epoch=Param(int, '[added] first epoch with RandAugment', default=0),
    randaugment_off_epoch=Param(int, '[added] first epoch without it again (-1: never)', default=-1),
    color_jitter_prob=Param(float, '[added] probability of color jitter per image (0: off)', default=0.0),
    brightness=Param(float, '[added] color jitter: brightness factor range 1 +- this', default=0.0),
    contrast=Param(float, '[added] color jitter: contrast factor range 1 +- this', default=0.0),
    saturation=Param(float, '[added] color jitter: saturation factor range 1 +- this', default=0.0),
    hue=Param(float, '[added] color jitter: hue shift range +- this (at most 0.5)', default=0.0),
    color_jitter_on_epoch=Param(int, '[added] first epoch with color jitter', default=0),
    color_jitter_off_epoch=Param(int, '[added] first epoch without it again (-1: never)', default=-1),
    erasing_prob=Param(float, '[added] random erasing: probability per image (0: off)', default=0.0),
    erasing_mode=Param(And(str, OneOf(['const', 'rand', 'pixel'])), '[added] random erasing fill: const (0), '
                       'rand (a random colour per box) or pixel (per-pixel noise), as timm', default='pixel'),
    erasing_count=Param(int, '[added] random erasing: up to this many boxes per image', default=1),
    erasing_min_area=Param(float, '[added] random erasing: smallest box, as a share of the image', default=0.02),
    erasing_max_area=Param(float, '[added] random erasing: largest box, as a share of the image', default=1 / 3),
    erasing_min_aspect=Param(float, '[added] random erasing: aspect ratio from this to its inverse', default=0.3),
    erasing_on_epoch=Param(int, '[added] first epoch with random erasing', default=0),
    erasing_off_epoch=Param(int, '[added] first epoch without it again (-1: never)', default=-1),
    mixup_alpha=Param(float, '[added] Mixup: Beta(alpha, alpha) mixing (0: off)', default=0.0),
    cutmix_alpha=Param(float, '[added] CutMix: Beta(alpha, alpha) box area (0: off)', default=0.0),
    cutmix_minmax=Param(str, '[added] CutMix: box size range as "min,max" shares of the side, instead of alpha',
                        default=''),
    mix_prob=Param(float, '[added] probability of mixing a batch (or sample, in elem/pair mode)', default=1.0),
    mix_switch_prob=Param(float, '[added] with both on: probability of CutMix instead of Mixup', default=0.5),
    mix_mode=Param(And(str, OneOf(['batch', 'pair', 'elem'])), '[added] mixing per batch, pair or element',
                   default='batch'),
    mixing_on_epoch=Param(int, '[added] first epoch with Mixup/CutMix', default=0),
    mixing_off_epoch=Param(int, '[added] first epoch without them again (-1: never)', default=-1),
)

SECTIONS = ('model', 'resolution', 'data', 'lr', 'logging', 'validation', 'training', 'dist', 'augment')


def load(argv=None) -> dict:
    """Parse the command line: {'section.key': value}."""
    return parse_config('Train an ImageNet classifier from .beton files', argv, search_dirs=[CONFIG_DIR],
                        sections=SECTIONS)


def check(p: dict) -> None:
    """Values that parse but cannot work: one line naming the key, before any work."""
    for key in ('resolution.min_res', 'resolution.max_res'):
        if p[key] % 32:
            fail(f'--{key} must be a multiple of 32, got {p[key]}')
    if p['resolution.min_res'] > p['resolution.max_res']:
        fail('--resolution.min_res must not exceed --resolution.max_res')
    if p['model.pretrained']:
        fail('--model.pretrained=1 is not supported: weights are never downloaded')
    if p['training.epochs'] < 1 or p['training.batch_size'] < 1:
        fail('--training.epochs and --training.batch_size must be positive')
    if not 0 < p['data.min_crop_scale'] <= 1:
        fail(f'--data.min_crop_scale must be in (0, 1], got {p["data.min_crop_scale"]}')
    for key in ('validation.ema_every', 'logging.checkpoint_every', 'logging.keep_checkpoints'):
        if p[key] < 0:
            fail(f'--{key} must not be negative, got {p[key]}')
    problem = check_schedule(p)
    if problem:
        fail(problem)
