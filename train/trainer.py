"""A training run, step by step: `train()` is its table of contents.

    build_run       datasets, augmentations, the run folder (resume or start, from a mirror too),
                    model, optimiser, EMA, loaders
    train_epoch     one pass over the training set, the LR set every step
    validate_epoch  top-1/top-5 of the model (and its EMA), exactly, over all processes
    end_epoch       log, checkpoint (and its upload to the mirror), print
    finish_run      the final weights

The same lines run on a CPU, one GPU and under DDP (torchrun): only rank 0 touches the run
folder; the other ranks get its decisions and its checkpoint. Rerunning the same command
resumes from last.pt and ends where an uninterrupted run would have.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from fastimagenet.common import faults
from fastimagenet.common.classes import Dataset, open_dataset
from fastimagenet.common.cli import UserError, fail

from . import checkpoints, config, devices, distributed
from .augment.erasing import erase
from .augment.mixing import mix
from .augment.recipe import NAMES as AUGMENTATIONS
from .augment.recipe import Augmentations
from .augment.recipe import from_config as augmentations
from .ema import EMA
from .inputs import Normalize
from .metrics import TrainAccuracy, evaluate
from .model import build_model
from .optim import build_optimizer
from .precision import Precision, precision_for
from .progress import Progress, epoch_line
from .mirror import Mirror
from .runs import (BEST, CHANGE_FLAG, FINAL, FIXED, LAST, PARAMS, RunFolder, describe_difference, differing_settings,
                   periodic_name, segment_of)
from .schedules import lr_at, momentum_at, resolution_of, schedule_args

MIRROR_WAIT_S = 600  # at the end of a run: how long to wait for the last upload


def train(p: dict, ctx: distributed.Context) -> None:
    config.check(p)
    run = build_run(p, ctx)
    try:
        if run.finished:
            return report_finished(run)
        for epoch in range(run.start_epoch, run.epochs):
            record = train_epoch(run, epoch)
            record.update(validate_epoch(run, epoch))
            end_epoch(run, epoch, record)
        finish_run(run)
    finally:
        for loader in (run.train_data, run.val_data):  # an epoch left part way (an error) stops here
            if loader is not None:
                loader.close()
        close_mirror(run, timeout=60)  # after a crash: the last checkpoint still goes up (bounded)


@dataclass
class Run:
    """Everything a run's steps share."""
    p: dict
    ctx: distributed.Context
    folder: RunFolder
    train_set: Dataset
    val_set: Dataset
    params: dict                  # what params.json holds (settings, classes, history)
    global_batch: int
    steps_per_epoch: int
    precision: Precision
    augment: Augmentations
    mirror: Mirror | None = None  # rank 0's, with logging.mirror
    model_args: dict = field(default_factory=dict)
    model: torch.nn.Module | None = None        # the bare model: what is saved and validated
    train_model: torch.nn.Module | None = None  # what trains: the model under DDP / compile
    optimizer: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None
    ema: EMA | None = None
    train_data: object = None     # loaders.TrainLoader
    val_data: object = None       # loaders.BatchLoader
    criterion: torch.nn.Module | None = None
    start_epoch: int = 0
    best_top1: float = -1.0
    history: list[dict] = field(default_factory=list)  # log.jsonl's records so far
    elapsed: float = 0.0
    finished: bool = False
    final_metrics: dict = field(default_factory=dict)  # of a run found finished
    tensorboard: object = None

    @property
    def epochs(self) -> int:
        return self.p['training.epochs']


# ---- building the run ---------------------------------------------------------------------------

def build_run(p: dict, ctx: distributed.Context) -> Run:
    train_set, val_set = open_datasets(p)
    global_batch = p['training.batch_size'] * ctx.world_size
    steps_per_epoch = train_set.num_samples // global_batch
    if steps_per_epoch == 0:
        fail(f'{train_set.num_samples} training images do not fill one batch of {p["training.batch_size"]} '
             f'x {ctx.world_size} processes; lower --training.batch_size')
    precision = precision_for(p['training.precision'], ctx.device)
    augment = augmentations(p, len(train_set.classes))
    params = {**p, 'dist.world_size': ctx.world_size, 'dataset.train_samples': train_set.num_samples,
              'dataset.num_classes': len(train_set.classes), 'classes': train_set.classes.to_json(),
              'hardware': devices.describe(ctx), 'precision': precision.name}
    run = Run(p, ctx, RunFolder(p['logging.folder']), train_set, val_set, params, global_batch,
              steps_per_epoch, precision, augment)
    if ctx.is_main and p['logging.mirror']:
        run.mirror = Mirror(p['logging.mirror'], endpoint_url=p['logging.mirror_endpoint'] or None)
        run.mirror.check()  # credentials, bucket, scheme: one line now, not after an epoch
    workers, threads = devices.cpu_budget(p['data.num_workers'], ctx)
    devices.configure(ctx, threads)

    resume = claim_folder(run)
    if run.finished:
        return run
    build_model_and_optimizer(run, resume)
    del resume
    build_loaders(run, workers)
    if ctx.is_main:
        run.tensorboard = tensorboard_writer(p, run.folder)
    return run


def open_datasets(p: dict) -> tuple[Dataset, Dataset]:
    train_set = open_dataset(p['data.train_dataset'], 'train')
    val_set = open_dataset(p['data.val_dataset'], 'val')
    if len(val_set.classes) > len(train_set.classes):
        fail(f'{val_set.path} has {len(val_set.classes)} classes, more than the '
             f'{len(train_set.classes)} of {train_set.path}')
    return train_set, val_set


def claim_folder(run: Run) -> dict | None:
    """Rank 0 checks that this command may use the run folder and loads the checkpoint to resume
    from; every rank gets its decision and the checkpoint. Returns the checkpoint (or None)."""
    error, resume = None, None
    if run.ctx.is_main:
        try:
            folder = run.folder
            if run.mirror is not None:
                restore_from_mirror(run)
            changes = folder.claim(run.params, allow_changes=bool(run.p[CHANGE_FLAG]))
            resume = checkpoints.load(folder / LAST) if (folder / LAST).exists() else None
            start = resume['epoch'] if resume else 0
            if resume is None or resume['epoch'] < run.epochs:
                run.params = folder.record(run.params, changes, from_epoch=start)
            for key, (old, new) in changes.items():
                print(f'changed from epoch {start}: {key} {old!r} -> {new!r}')
        except UserError as e:
            error = str(e)
    error = distributed.broadcast_from_main(error)  # every rank stops with rank 0's one line
    if error is not None:
        fail(error)
    resume = distributed.broadcast_checkpoint(resume, run.ctx.device)
    if resume is not None and resume['epoch'] >= run.epochs:
        run.finished, run.final_metrics, run.start_epoch = True, resume['metrics'], resume['epoch']
        if run.ctx.is_main and not (run.folder / FINAL).exists():
            # killed between the last checkpoint and the final weights: write them now
            checkpoints.save_state_dict(run.folder / FINAL, resume['model'])
    return resume


def restore_from_mirror(run: Run) -> None:
    """On a fresh machine (or one whose copy is older), the mirror's newest complete snapshot
    becomes the local run folder, once its settings are found to be this command's run."""
    snapshot = run.mirror.latest()
    local = checkpoints.load(run.folder / LAST)['epoch'] if (run.folder / LAST).exists() else -1
    if snapshot is None or snapshot.epoch <= local or LAST not in snapshot.files:
        return
    theirs = run.mirror.read_json(PARAMS, snapshot) or {}
    diff = differing_settings(run.params, theirs)
    if diff and (not run.p[CHANGE_FLAG] or any(k in FIXED for k in diff)):
        fail(f'{describe_difference(run.p["logging.mirror"], diff, run.params, theirs)}; use another '
             f'logging.mirror, or the same settings to resume')
    print(f'restoring {run.folder.path} from {run.p["logging.mirror"]}: epoch {snapshot.epoch} '
          f'(the local copy has {max(local, 0)})', flush=True)
    run.mirror.restore(run.folder.path, snapshot)


def build_model_and_optimizer(run: Run, resume: dict | None) -> None:
    """Model, optimiser, scaler, EMA: the same on every rank (rank 0's, when resuming)."""
    p, ctx = run.p, run.ctx
    torch.manual_seed(p['data.seed'])
    np.random.seed(p['data.seed'])
    run.model_args = {'arch': p['model.arch'], 'num_classes': len(run.train_set.classes),
                      'use_blurpool': bool(p['training.use_blurpool'])}
    model = build_model(**run.model_args, zero_init_last=bool(p['training.zero_init']))
    memory_format = torch.channels_last if p['training.channels_last'] else torch.contiguous_format
    run.model = model.to(device=ctx.device, memory_format=memory_format)
    run.optimizer = build_optimizer(run.model, p)
    run.scaler = run.precision.scaler()
    halflife = p['training.ema_halflife'] * run.steps_per_epoch
    if resume is not None:
        run.start_epoch, run.best_top1 = checkpoints.restore(resume, run.model, run.optimizer, run.scaler,
                                                             run.precision.name)
        if ctx.is_main:
            run.history = run.folder.read_log(before_epoch=run.start_epoch)
            print(f'resuming {run.folder.path} after epoch {run.start_epoch} of {run.epochs}')
    if p['training.ema']:
        run.ema = EMA(run.model, halflife)
        if resume is not None and resume.get('ema') is not None:
            checkpoints.restore_ema(resume, run.ema)
        distributed.sync_state(run.ema.module)  # identical on every rank by construction, not by seeding
    run.elapsed = run.history[-1]['elapsed_s'] if run.history else 0.0

    train_model = run.model
    if ctx.distributed:  # DDP broadcasts rank 0's parameters and buffers here
        train_model = DDP(train_model, device_ids=[ctx.device.index] if ctx.device.type == 'cuda' else None)
    run.train_model = torch.compile(train_model) if p['training.compile'] else train_model
    if run.augment.loss.name == 'ce' and run.augment.mixing is None:
        run.criterion = torch.nn.CrossEntropyLoss(label_smoothing=p['training.label_smoothing'])
    else:  # soft targets (Mixup/CutMix), or BCE: label smoothing of hard labels inside the loss
        run.criterion = run.augment.loss.build()


def build_loaders(run: Run, workers: int) -> None:
    # ffcv is imported only now: its import alone costs seconds of numba compilation, which a
    # bad argument should not have to wait for.
    from .loaders import train_loader
    p, ctx, aug = run.p, run.ctx, run.augment
    per_sample = None
    if aug.per_sample:  # RandAugment / color jitter in the decoding threads
        from .augment.per_sample import PerSampleAugment
        per_sample = PerSampleAugment(p['data.seed'], randaugment=aug.randaugment, color_jitter=aug.color_jitter)
    run.train_data = train_loader(run.train_set.path, batch_size=p['training.batch_size'], num_workers=workers,
                                  in_memory=p['data.in_memory'], res=resolution_of(p, run.start_epoch),
                                  seed=p['data.seed'], distributed=ctx.distributed, device=ctx.device,
                                  decoder=p['data.decoder'], scale=(p['data.min_crop_scale'], 1.0),
                                  augment=per_sample)
    run.val_data = validation_loader(p, ctx, run.val_set, workers)


def validation_loader(p: dict, ctx: distributed.Context, val_set: Dataset, workers: int):
    """This rank's share of the validation set, as the trainer and eval_only validate it."""
    from .loaders import val_loader
    return val_loader(val_set.path, batch_size=p['validation.batch_size'], num_workers=workers,
                      in_memory=p['data.in_memory'], res=p['validation.resolution'], device=ctx.device,
                      rank=ctx.rank, world_size=ctx.world_size)


# ---- one epoch ----------------------------------------------------------------------------------

def train_epoch(run: Run, epoch: int) -> dict:
    p, ctx, aug = run.p, run.ctx, run.augment
    res = resolution_of(p, epoch)
    run.train_data.start_epoch(epoch, res)
    if run.train_data.augment is not None:  # switched without recompiling ffcv's pipeline
        run.train_data.augment.randaugment_on = aug.on('randaugment', epoch)
        run.train_data.augment.color_jitter_on = aug.on('color_jitter', epoch)
    erasing = aug.erasing if aug.on('erasing', epoch) else None
    mixing = aug.mixing if aug.on('mixing', epoch) else None
    seed = p['data.seed']
    normalize = Normalize(ctx.device, channels_last=bool(p['training.channels_last']),
                          normalized=run.train_data.normalized)
    lr_args = schedule_args(p, run.global_batch, run.steps_per_epoch)
    steps = len(run.train_data)
    accuracy = TrainAccuracy(ctx.device) if mixing is None else None  # mixed targets have no right answer
    loss_sum = torch.zeros((), device=ctx.device)
    progress = Progress(steps, epoch, run.epochs, run.global_batch, enabled=ctx.is_main,
                        every=p['logging.progress_every'])
    run.train_model.train()
    t0 = time.time()
    lr = 0.0
    try:
        for step, (images, labels, indices) in enumerate(run.train_data):
            lr = set_lr(run.optimizer, epoch + step / steps, lr_args)
            faults.point('train.step', epoch * steps + step)
            x, targets = normalize(images), labels
            if erasing is not None:
                x = erase(x, indices, erasing, seed=seed, epoch=epoch)
            if mixing is not None:
                mixed = mix(x, labels, indices, mixing, seed=seed, epoch=epoch)
                x, targets = mixed.images, mixed.targets
            with run.precision.autocast():
                logits = run.train_model(x)
                loss = run.criterion(logits, targets)
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
            if run.ema is not None:
                run.ema.update()
            loss_sum += loss.detach()
            if accuracy is not None:
                accuracy.add(logits.detach(), labels)
            progress.step(step, loss, lr, res)
    except torch.cuda.OutOfMemoryError:  # (torch.OutOfMemoryError in newer torch: the same class)
        fail(out_of_memory_message(run, res))
    finally:
        progress.close()
    train_loss = distributed.all_reduce_sum(loss_sum).item() / (steps * ctx.world_size)
    if not math.isfinite(train_loss):
        fail(f'training diverged in epoch {epoch} (loss {train_loss}); lower --lr.lr')
    train_time = time.time() - t0
    switches = {f'{name}_on': int(aug.on(name, epoch)) for name in AUGMENTATIONS if getattr(aug, name) is not None}
    return {'epoch': epoch, 'segment': segment_of(run.params, epoch), 'lr': lr, 'res': res,
            'train_loss': train_loss, **(accuracy.result() if accuracy is not None else {}), **switches,
            'torch_threads': torch.get_num_threads(),  # in force while it trained (ffcv's import once set 1)
            'epoch_time_s': round(train_time, 3), 'train_imgs_per_s': round(steps * run.global_batch / train_time, 1)}


def set_lr(optimizer, epoch: float, lr_args: dict) -> float:
    lr = lr_at(epoch, **lr_args)
    momentum = momentum_at(epoch, **lr_args)
    for group in optimizer.param_groups:
        group['lr'] = lr
        if momentum is not None:
            group['momentum'] = momentum
    return lr


def out_of_memory_message(run: Run, res: int) -> str:
    """Which key to lower, and where the LR goes with it."""
    p = run.p
    batch = p['training.batch_size']
    half = max(1, batch // 2)
    device = torch.cuda.get_device_name(run.ctx.device) if run.ctx.device.type == 'cuda' else 'this device'
    if p['lr.reference_batch']:
        follows = (f'the LR follows the batch (lr.reference_batch={p["lr.reference_batch"]}): '
                   f'{p["lr.lr"] * half * run.ctx.world_size / p["lr.reference_batch"]:.4g} at {half}')
    else:
        follows = (f'scale --lr.lr with it ({p["lr.lr"] * half / batch:.4g} at {half}), or set '
                   f'--lr.reference_batch={run.global_batch} so it follows by itself')
    return (f'out of memory on {device} training {p["model.arch"]} at batch {batch} per process, {res} px, '
            f'{run.precision.name}: lower --training.batch_size (e.g. --training.batch_size={half}); {follows}')


def validate_epoch(run: Run, epoch: int) -> dict:
    """The model's (and the EMA's) validation, when this epoch is validated."""
    p = run.p
    last = epoch == run.epochs - 1
    if not (p['logging.log_level'] > 0 or last):
        return {}
    t0 = time.time()
    distributed.sync_buffers(run.model)  # every rank validates what rank 0 saves
    record = validate(run, run.model)
    every = p['validation.ema_every']
    if run.ema is not None and (last or (every > 0 and (epoch + 1) % every == 0)):
        distributed.sync_buffers(run.ema.module)
        record.update({f'ema_{k}': v for k, v in validate(run, run.ema.module).items() if k != 'val_count'})
    record['val_time_s'] = round(time.time() - t0, 3)
    return record


def validate(run: Run, model: torch.nn.Module) -> dict:
    normalize = Normalize(run.ctx.device, channels_last=bool(run.p['training.channels_last']),
                          normalized=run.val_data.normalized)
    return evaluate(model, run.val_data, normalize, lr_tta=bool(run.p['validation.lr_tta']),
                    precision=run.precision, expected=run.val_set.num_samples)


def end_epoch(run: Run, epoch: int, record: dict) -> None:
    """Log, checkpoint (rank 0), print."""
    run.elapsed += record['epoch_time_s'] + record.get('val_time_s', 0.0)
    record.update(elapsed_s=round(run.elapsed, 3), timestamp=time.time())
    if not run.ctx.is_main:
        return
    run.history.append(record)
    run.folder.write_log(run.history)  # before last.pt: a resume rewrites the log from the checkpoint
    top1 = record.get('top_1', -1.0)
    is_best = top1 > run.best_top1
    run.best_top1 = max(run.best_top1, top1)
    state = checkpoints.training_state(run.model, run.ema, run.optimizer, run.scaler, epoch + 1, run.best_top1,
                                       run.model_args, run.train_set.classes, run.params, record,
                                       run.precision.name)
    checkpoints.save(run.folder / LAST, state)
    if is_best:
        checkpoints.save(run.folder / BEST, state)
    save_periodic(run, epoch + 1, state)
    faults.point('train.epoch_saved', epoch + 1)  # tests kill a run here (common/faults.py)
    if run.tensorboard is not None:
        for key, value in record.items():
            if key not in ('epoch', 'timestamp', 'segment'):
                run.tensorboard.add_scalar(key, value, epoch)
        run.tensorboard.flush()
    if run.mirror is not None:
        run.mirror.push(run.folder.path, epoch + 1)  # returns at once: uploads in the background
    print(epoch_line(record, run.epochs), flush=True)


def save_periodic(run: Run, epochs_done: int, state: dict) -> None:
    """epoch_NNNN.pt every logging.checkpoint_every epochs, the newest logging.keep_checkpoints kept."""
    every, keep = run.p['logging.checkpoint_every'], run.p['logging.keep_checkpoints']
    if every <= 0 or epochs_done % every:
        return
    checkpoints.save(run.folder / periodic_name(epochs_done), state)
    kept = run.folder.periodic_checkpoints()
    for old in kept[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def finish_run(run: Run) -> None:
    if run.ctx.is_main:
        checkpoints.save_weights(run.folder / FINAL, run.model)
        close_mirror(run)
        print(f'finished {run.epochs} epochs in {run.history[-1]["elapsed_s"] / 60:.1f} min; '
              f'run folder {run.folder.path}')
        print(f'top_1: {run.history[-1]["top_1"]:.4f}')


def report_finished(run: Run) -> None:
    if run.ctx.is_main:
        close_mirror(run)  # what a killed run had not mirrored yet goes up now
        print(f'{run.folder.path} already holds the finished run ({run.epochs} epochs)')
        print(f'top_1: {run.final_metrics.get("top_1", float("nan")):.4f}')


def close_mirror(run: Run, timeout: float = MIRROR_WAIT_S) -> None:
    """The run folder as it is now, uploaded before the process ends (a bounded wait; the mirror
    says in one line what is not mirrored if the store stays unreachable)."""
    if run.mirror is not None:
        mirror, run.mirror = run.mirror, None
        mirror.push(run.folder.path, run.history[-1]['epoch'] + 1 if run.history else run.start_epoch)
        mirror.close(timeout=timeout)


def tensorboard_writer(p: dict, folder: RunFolder):
    if not p['logging.tensorboard']:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        fail('--logging.tensorboard=1 needs the tensorboard package: pip install -e ".[tensorboard]"')
    return SummaryWriter(str(folder / 'tensorboard'))


# ---- evaluation only ----------------------------------------------------------------------------

def evaluate_checkpoint(p: dict, ctx: distributed.Context) -> None:
    """training.eval_only=1: validate a checkpoint (and its EMA) as training does, and log the result."""
    folder = RunFolder(p['logging.folder'])
    path = p['training.checkpoint'] or next((str(folder / n) for n in (BEST, LAST, FINAL) if (folder / n).exists()),
                                            str(folder / BEST))
    val_set = open_dataset(p['data.val_dataset'], 'val')
    precision = precision_for(p['training.precision'], ctx.device)
    workers, threads = devices.cpu_budget(p['data.num_workers'], ctx)
    devices.configure(ctx, threads)
    val = validation_loader(p, ctx, val_set, workers)
    normalize = Normalize(ctx.device, channels_last=bool(p['training.channels_last']), normalized=val.normalized)
    record = {'checkpoint': path, 'val_dataset': str(val_set.path), 'resolution': p['validation.resolution'],
              'lr_tta': p['validation.lr_tta'], 'precision': precision.name, 'timestamp': time.time()}
    for prefix, prefer_ema in (('', False), ('ema_', True)):
        model, classes, info = checkpoints.load_model(path, prefer_ema=prefer_ema)
        if prefix and info['weights'] != 'ema':
            break
        if len(classes) < len(val_set.classes):
            fail(f'{path} predicts {len(classes)} classes but {val_set.path} has {len(val_set.classes)}')
        model = model.to(ctx.device, memory_format=torch.channels_last)
        metrics = evaluate(model, val, normalize, lr_tta=bool(p['validation.lr_tta']), precision=precision,
                           expected=val_set.num_samples)
        record.update({prefix + k: v for k, v in metrics.items()})
    if ctx.is_main:
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.append_eval(record)
        print(f'{path}: top_1 {record["top_1"]:.4f}  top_5 {record["top_5"]:.4f}  val_loss {record["val_loss"]:.4f}'
              + (f'  ema_top_1 {record["ema_top_1"]:.4f}' if 'ema_top_1' in record else ''))
        print(f'top_1: {record["top_1"]:.4f}')
