"""Train an ImageNet classifier from FFCV .beton files.

    python train/train_imagenet.py --config-file rn50_88_epochs.yaml \
        --data.train_dataset=/data/ffcv/train.beton --data.val_dataset=/data/ffcv/val.beton \
        --logging.folder=runs/rn50_88
    torchrun --nproc_per_node=8 train/train_imagenet.py --config-file rn50_88_epochs.yaml ...

One script for one device, DDP on one node and several nodes (torchrun sets RANK and
WORLD_SIZE), CPU or CUDA. Running the same command again resumes from the run folder's
last.pt and ends where an uninterrupted run would.
"""
import math
import os
import platform
import time
from contextlib import nullcontext

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from fastimagenet.common.cli import fail, run
from fastimagenet.train import checkpoints, config, distributed
from fastimagenet.train.ema import EMA
from fastimagenet.train.inputs import Normalize
from fastimagenet.common.classes import open_dataset
from fastimagenet.train.metrics import evaluate
from fastimagenet.train.model import build_model
from fastimagenet.train.runs import BEST, FINAL, LAST, RunFolder
from fastimagenet.train.schedules import lr_at, resolution_at


def train(p: dict, ctx: distributed.Context) -> None:
    check_settings(p)
    folder = RunFolder(p['logging.folder'])
    train_set = open_dataset(p['data.train_dataset'], 'train')
    val_set = open_dataset(p['data.val_dataset'], 'val')
    if len(val_set.classes) > len(train_set.classes):
        fail(f'{val_set.path} has {len(val_set.classes)} classes, more than the '
             f'{len(train_set.classes)} of {train_set.path}')
    global_batch = p['training.batch_size'] * ctx.world_size
    steps_per_epoch = train_set.num_samples // global_batch
    if steps_per_epoch == 0:
        fail(f'{train_set.num_samples} training images do not fill one batch of {p["training.batch_size"]} '
             f'x {ctx.world_size} processes; lower --training.batch_size')
    epochs, device = p['training.epochs'], ctx.device
    params = {**p, 'dist.world_size': ctx.world_size, 'dataset.train_samples': train_set.num_samples,
              'dataset.num_classes': len(train_set.classes), 'classes': train_set.classes.to_json(),
              'hardware': hardware(ctx)}

    # ---- run folder. Rank 0 owns it: it checks that this command may use it and reads the
    # checkpoint to resume from; the other ranks get its decision (and the checkpoint).
    resume = None
    if ctx.is_main:
        try:
            folder.claim(params)
            resume = checkpoints.load(folder / LAST) if (folder / LAST).exists() else None
        except Exception as e:
            resume = e
    resume = distributed.broadcast_from_main(resume)
    if isinstance(resume, Exception):
        raise resume
    if resume is not None and resume['epoch'] >= epochs:
        if ctx.is_main:
            print(f'{folder.path} already holds the finished run ({epochs} epochs)')
            print(f'top_1: {resume["metrics"].get("top_1", float("nan")):.4f}')
        return

    # ---- model, optimiser, EMA: the same lines for CPU, one GPU and DDP
    torch.manual_seed(p['data.seed'])
    np.random.seed(p['data.seed'])
    model_args = {'arch': p['model.arch'], 'num_classes': len(train_set.classes),
                  'use_blurpool': bool(p['training.use_blurpool'])}
    model = build_model(**model_args, zero_init_last=bool(p['training.zero_init']))
    memory_format = torch.channels_last if p['training.channels_last'] else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    optimizer = torch.optim.SGD(param_groups(model, p['training.weight_decay'], p['training.bn_wd']), lr=0.0,
                                momentum=p['training.momentum'], nesterov=bool(p['training.nesterov']))
    autocast, scaler = precision_of(p, device)
    ema = EMA(model, p['training.ema_halflife'] * steps_per_epoch) if p['training.ema'] else None

    start_epoch, best_top1, history = 0, -1.0, []
    if resume is not None:
        start_epoch, best_top1 = checkpoints.restore(resume, model, optimizer, scaler, ema)
        if ctx.is_main:
            history = folder.read_log(before_epoch=start_epoch)
            print(f'resuming {folder.path} after epoch {start_epoch} of {epochs}')
    del resume

    train_model = torch.compile(model) if p['training.compile'] else model
    if ctx.distributed:
        train_model = DDP(train_model, device_ids=[device.index] if device.type == 'cuda' else None)

    # ---- data (ffcv is imported only now: its import alone costs seconds of numba compilation,
    # which a bad argument should not have to wait for)
    from fastimagenet.train.loaders import batches, train_loader, val_loader
    workers, threads = cpu_budget(p, ctx)
    loader, decoder = train_loader(train_set.path, batch_size=p['training.batch_size'], num_workers=workers,
                                   in_memory=p['data.in_memory'], res=res_of(p, start_epoch), seed=p['data.seed'],
                                   distributed=ctx.distributed, device=device, decoder=p['data.decoder'],
                                   scale=(p['data.min_crop_scale'], 1.0))
    val = val_loader(val_set.path, batch_size=p['validation.batch_size'], num_workers=workers,
                     in_memory=p['data.in_memory'], res=p['validation.resolution'], device=device,
                     rank=ctx.rank, world_size=ctx.world_size)
    normalize = Normalize(device, channels_last=bool(p['training.channels_last']))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=p['training.label_smoothing'])
    lr_args = dict(schedule=p['lr.lr_schedule_type'], lr=p['lr.lr'], epochs=epochs,
                   lr_peak_epoch=p['lr.lr_peak_epoch'], step_ratio=p['lr.step_ratio'],
                   step_length=p['lr.step_length'])
    validate = lambda m: evaluate(m, batches(val, threads), normalize, lr_tta=bool(p['validation.lr_tta']),
                                  expected=val_set.num_samples, autocast=autocast)
    tb = tensorboard_writer(p, folder) if ctx.is_main else None
    elapsed = history[-1]['elapsed_s'] if history else 0.0

    for epoch in range(start_epoch, epochs):
        # ---- train one epoch
        res = res_of(p, epoch)
        decoder.output_size = (res, res)
        if hasattr(decoder, 'epoch'):  # the fast decoder draws its crops from (seed, epoch, index)
            decoder.epoch = epoch
        loader.next_epoch = epoch  # ffcv seeds the epoch's sample order with it
        train_model.train()
        steps, loss_sum, t0 = len(loader), torch.zeros((), device=device), time.time()
        bar = tqdm(batches(loader, threads), total=steps, desc=f'epoch {epoch + 1}/{epochs}',
                   disable=not ctx.is_main, dynamic_ncols=True, leave=False)
        for step, (images, labels) in enumerate(bar):
            lr = lr_at(epoch + step / steps, **lr_args)
            for group in optimizer.param_groups:
                group['lr'] = lr
            with autocast():
                loss = criterion(train_model(normalize(images)), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update()
            loss_sum += loss.detach()
            if ctx.is_main and (step % 10 == 0 or step == steps - 1):
                bar.set_postfix(loss=f'{loss.item():.3f}', lr=f'{lr:.3f}', res=res,
                                img_s=f'{(step + 1) * global_batch / (time.time() - t0):.0f}')
        train_loss = distributed.all_reduce_sum(loss_sum).item() / (steps * ctx.world_size)
        if not math.isfinite(train_loss):
            fail(f'training diverged in epoch {epoch} (loss {train_loss}); lower --lr.lr')
        train_time = time.time() - t0

        # ---- validate (exactly, over all ranks), log, checkpoint
        t1 = time.time()
        for module in (model, ema.module if ema else None):
            if module is not None:
                distributed.sync_buffers(module)  # every rank validates what rank 0 saves
        record = {'epoch': epoch, 'lr': lr, 'res': res, 'train_loss': train_loss}
        if p['logging.log_level'] > 0 or epoch == epochs - 1:
            record.update(validate(model))
            if ema is not None:
                record.update({f'ema_{k}': v for k, v in validate(ema.module).items() if k != 'val_count'})
        elapsed += time.time() - t0
        record.update(epoch_time_s=round(train_time, 3), val_time_s=round(time.time() - t1, 3),
                      elapsed_s=round(elapsed, 3), train_imgs_per_s=round(steps * global_batch / train_time, 1),
                      timestamp=time.time())
        if ctx.is_main:
            history.append(record)
            folder.write_log(history)  # before last.pt: a resume rewrites the log from the checkpoint
            is_best = record.get('top_1', -1.0) > best_top1
            best_top1 = max(best_top1, record.get('top_1', -1.0))
            state = checkpoints.training_state(model, ema, optimizer, scaler, epoch + 1, best_top1, model_args,
                                               train_set.classes, params, record)
            checkpoints.save(folder / LAST, state)
            if is_best:
                checkpoints.save(folder / BEST, state)
            if tb is not None:
                for key, value in record.items():
                    if key not in ('epoch', 'timestamp'):
                        tb.add_scalar(key, value, epoch)
                tb.flush()
            print(epoch_line(record, epochs))

    if ctx.is_main:
        checkpoints.save_weights(folder / FINAL, model)
        print(f'finished {epochs} epochs in {history[-1]["elapsed_s"] / 60:.1f} min; run folder {folder.path}')
        print(f'top_1: {history[-1]["top_1"]:.4f}')


def evaluate_checkpoint(p: dict, ctx: distributed.Context) -> None:
    """training.eval_only=1: validate a checkpoint (and its EMA) and log the result."""
    folder = RunFolder(p['logging.folder'])
    path = p['training.checkpoint'] or next((str(folder / n) for n in (BEST, LAST, FINAL) if (folder / n).exists()),
                                            str(folder / BEST))
    val_set = open_dataset(p['data.val_dataset'], 'val')
    autocast, _ = precision_of(p, ctx.device)
    from fastimagenet.train.loaders import batches, val_loader
    workers, threads = cpu_budget(p, ctx)
    val = val_loader(val_set.path, batch_size=p['validation.batch_size'], num_workers=workers,
                     in_memory=p['data.in_memory'], res=p['validation.resolution'], device=ctx.device,
                     rank=ctx.rank, world_size=ctx.world_size)
    normalize = Normalize(ctx.device, channels_last=bool(p['training.channels_last']))
    record = {'checkpoint': path, 'val_dataset': str(val_set.path), 'resolution': p['validation.resolution'],
              'lr_tta': p['validation.lr_tta'], 'timestamp': time.time()}
    for prefix, prefer_ema in (('', False), ('ema_', True)):
        model, classes, info = checkpoints.load_model(path, prefer_ema=prefer_ema)
        if prefix and info['weights'] != 'ema':
            break
        if len(classes) < len(val_set.classes):
            fail(f'{path} predicts {len(classes)} classes but {val_set.path} has {len(val_set.classes)}')
        model = model.to(ctx.device, memory_format=torch.channels_last)
        metrics = evaluate(model, batches(val, threads), normalize, lr_tta=bool(p['validation.lr_tta']),
                           expected=val_set.num_samples, autocast=autocast)
        record.update({prefix + k: v for k, v in metrics.items()})
    if ctx.is_main:
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.append_eval(record)
        print(f'{path}: top_1 {record["top_1"]:.4f}  top_5 {record["top_5"]:.4f}  val_loss {record["val_loss"]:.4f}'
              + (f'  ema_top_1 {record["ema_top_1"]:.4f}' if 'ema_top_1' in record else ''))
        print(f'top_1: {record["top_1"]:.4f}')


def check_settings(p: dict) -> None:
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


def cpu_budget(p: dict, ctx: distributed.Context) -> tuple[int, int]:
    """(decoding threads, torch threads) for this process: the node's cores shared among its processes.
    On a CPU-only machine the model needs every core, so torch keeps them all."""
    cores = max(1, (os.cpu_count() or 1) // ctx.local_world_size)
    return p['data.num_workers'] or cores, cores


def precision_of(p: dict, device: torch.device):
    """(autocast context factory, GradScaler): bf16/fp16 autocast on CUDA, fp32 on CPU unless asked."""
    precision = p['training.precision']
    if precision == 'auto':
        precision = ('bf16' if torch.cuda.is_bf16_supported() else 'fp16') if device.type == 'cuda' else 'fp32'
    if precision == 'fp16' and device.type != 'cuda':
        fail('--training.precision=fp16 needs CUDA; use bf16 or fp32 on CPU')
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
    return autocast, torch.amp.GradScaler(device.type, enabled=precision == 'fp16')


def param_groups(model: torch.nn.Module, weight_decay: float, bn_wd: bool) -> list[dict]:
    """No weight decay on BatchNorm parameters unless asked: decaying them only fights the
    next layer's scale. Found by module type, so it holds whatever the layers are named."""
    bn_params = {id(q) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                 for q in m.parameters(recurse=False)}
    bn = [q for q in model.parameters() if id(q) in bn_params]
    rest = [q for q in model.parameters() if id(q) not in bn_params]
    return [{'params': bn, 'weight_decay': weight_decay if bn_wd else 0.0},
            {'params': rest, 'weight_decay': weight_decay}]


def res_of(p: dict, epoch: int) -> int:
    return resolution_at(epoch, min_res=p['resolution.min_res'], max_res=p['resolution.max_res'],
                         start_ramp=p['resolution.start_ramp'], end_ramp=p['resolution.end_ramp'])


def hardware(ctx: distributed.Context) -> dict:
    """What the run ran on, for reports (not compared on resume: a run may move)."""
    if ctx.device.type == 'cuda':
        name = torch.cuda.get_device_name(ctx.device)
    else:
        name = platform.processor()
        if os.path.exists('/proc/cpuinfo'):
            name = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                         if line.startswith('model name')), name)
    return {'device': ctx.device.type, 'name': name, 'processes': ctx.world_size, 'cpu_count': os.cpu_count()}


def epoch_line(r: dict, epochs: int) -> str:
    line = f'epoch {r["epoch"] + 1}/{epochs}  res {r["res"]}  lr {r["lr"]:.4f}  train_loss {r["train_loss"]:.4f}'
    if 'top_1' in r:
        line += f'  top_1 {r["top_1"]:.4f}  top_5 {r["top_5"]:.4f}  val_loss {r["val_loss"]:.4f}'
    if 'ema_top_1' in r:
        line += f'  ema_top_1 {r["ema_top_1"]:.4f}'
    return line + f'  {r["train_imgs_per_s"]:.0f} img/s  {r["epoch_time_s"]:.0f}s'


def tensorboard_writer(p: dict, folder: RunFolder):
    if not p['logging.tensorboard']:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        fail('--logging.tensorboard=1 needs the tensorboard package: pip install -e ".[tensorboard]"')
    return SummaryWriter(str(folder / 'tensorboard'))


def main(p: dict) -> None:
    ctx = distributed.setup()
    try:
        (evaluate_checkpoint if p['training.eval_only'] else train)(p, ctx)
    finally:
        distributed.cleanup()


def launch() -> None:
    p = config.load()
    if p['training.distributed'] and p['dist.world_size'] > 1 and not distributed.under_torchrun():
        distributed.spawn(run_rank, p['dist.world_size'], p['dist.address'], p['dist.port'], p)
    else:
        main(p)


def run_rank(p: dict) -> None:
    run(lambda: main(p))


if __name__ == '__main__':
    run(launch)
