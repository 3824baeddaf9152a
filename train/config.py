"""Every setting of the trainer, as fastargs sections.

The sections and keys of the public ffcv-imagenet trainer are all here with their
meaning, so its YAML files run unchanged; keys it lacks are marked [added] in --help's
descriptions and listed in the README.
"""
from __future__ import annotations

from pathlib import Path

from fastargs import Param, Section
from fastargs.validation import And, OneOf

from fastimagenet.common.config import parse_config

from .model import ARCHITECTURES
from .schedules import LR_SCHEDULES

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
    lr=Param(float, 'peak learning rate (for the global batch)', default=0.5),
    lr_schedule_type=Param(And(str, OneOf(LR_SCHEDULES)), 'cyclic, step or cosine', default='cyclic'),
    lr_peak_epoch=Param(float, 'epoch of the LR peak (end of warm-up)', default=2),
    step_ratio=Param(float, 'step schedule: LR factor at each step', default=0.1),
    step_length=Param(int, 'step schedule: epochs between steps', default=30),
)
Section('logging', 'run folder').params(
    folder=Param(str, 'run folder: params.json, log.jsonl, checkpoints; rerun to resume', required=True),
    log_level=Param(int, '0: validate only after the last epoch; 1: every epoch', default=1),
    tensorboard=Param(int, '[added] 1: also write TensorBoard scalars to <folder>/tensorboard', default=0),
)
Section('validation', 'validation').params(
    batch_size=Param(int, 'validation batch size per process', default=256),
    resolution=Param(int, 'validation resolution (center crop of ratio 224/256)', default=256),
    lr_tta=Param(int, '1: average logits over the image and its left/right flip', default=1),
)
Section('training', 'optimisation').params(
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
    distributed=Param(int, '1 without torchrun: spawn dist.world_size processes on this node', default=0),
    use_blurpool=Param(int, '1: blur before strided convs (BlurPool)', default=0),
    zero_init=Param(int, '[added] 1: zero-init the last BN of each residual block', default=1),
    channels_last=Param(int, '[added] 1: channels_last memory format', default=1),
    precision=Param(And(str, OneOf(['auto', 'fp32', 'bf16', 'fp16'])),
                    '[added] auto: bf16 (fp16 if unsupported) on CUDA, fp32 on CPU', default='auto'),
    compile=Param(int, '[added] 1: torch.compile the model', default=0),
    ema=Param(int, '[added] 1: keep an EMA of the weights, evaluated and logged beside the model', default=0),
    ema_halflife=Param(float, '[added] EMA half-life in epochs', default=0.5),
)
Section('dist', 'distributed (torchrun sets these through the environment)').params(
    world_size=Param(int, 'processes for training.distributed=1 without torchrun', default=1),
    address=Param(str, 'master address for training.distributed=1', default='localhost'),
    port=Param(str, 'master port for training.distributed=1', default='12355'),
)

SECTIONS = ('model', 'resolution', 'data', 'lr', 'logging', 'validation', 'training', 'dist')

# Settings that may change between a run and its resumption without changing its result:
# a reclaimed instance comes back with new mounts, another worker count, another port.
RESUMABLE_CHANGES = {
    'data.train_dataset', 'data.val_dataset', 'data.num_workers', 'data.in_memory', 'data.gpu',
    'logging.folder', 'logging.tensorboard', 'logging.log_level', 'validation.batch_size',
    'training.eval_only', 'training.checkpoint', 'training.compile', 'dist.address', 'dist.port',
}


def load(argv=None) -> dict:
    """Parse the command line: {'section.key': value}."""
    return parse_config('Train an ImageNet classifier from .beton files', argv, search_dirs=[CONFIG_DIR],
                        sections=SECTIONS)
