"""The checkpoint format: written by the trainer, read by resume, eval, ablation and analysis.

A checkpoint is a dict saved with torch.save:
    format, version          -- to refuse foreign files with a clear message
    model_args               -- {arch, num_classes, use_blurpool}: enough to rebuild the model
    classes                  -- [{index, wnid, name}] of the training set
    model, ema, ema_updates  -- state_dicts without `module.`/`_orig_mod.` prefixes (ema may be None)
    optimizer, scaler        -- for resuming
    precision                -- the resolved precision it trained in (fp32, bf16, fp16)
    epoch, best_top_1        -- number of epochs completed, best validation top-1 so far
    rng                      -- torch/numpy/python generator states at the end of that epoch
    params                   -- the run's flat config
    metrics                  -- the last epoch's log record

Everything in it loads with `torch.load(weights_only=True)`, so reading a checkpoint
never runs code from the file. `final_weights.pt` is a plain model state_dict beside
`params.json`, for people who just want the weights.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from fastimagenet.common.atomic import atomic_path
from fastimagenet.common.classes import ClassList
from fastimagenet.common.cli import fail

from .model import build_model, unwrap
from .runs import PARAMS

FORMAT = 'fastimagenet.checkpoint'
VERSION = 1


def save(path: str | os.PathLike, checkpoint: dict) -> None:
    """Atomic: a kill while saving leaves the previous file at `path` intact."""
    with atomic_path(path) as tmp:
        torch.save({'format': FORMAT, 'version': VERSION, **checkpoint}, tmp)


def save_weights(path: str | os.PathLike, model: torch.nn.Module) -> None:
    save_state_dict(path, unwrap(model).state_dict())


def save_state_dict(path: str | os.PathLike, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: str | os.PathLike, map_location='cpu') -> dict:
    """A checkpoint of this project, or one line saying why the file is not one."""
    obj = _torch_load(path, map_location)
    if not isinstance(obj, dict) or obj.get('format') != FORMAT:
        fail(f'{path} is not a checkpoint of this project (a plain state_dict? '
             f'load those with load_model, with params.json beside them)')
    if obj.get('version', 0) > VERSION:
        fail(f'{path} is checkpoint version {obj["version"]}; this code reads up to {VERSION}')
    return obj


def _torch_load(path, map_location):
    path = Path(path)
    if not path.is_file():
        fail(f'checkpoint {path} does not exist')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        fail(f'{path} is corrupt, truncated or not a PyTorch file ({str(e).splitlines()[0][:120]})')


def training_state(model, ema, optimizer, scaler, epoch: int, best_top1: float, model_args: dict,
                   classes: ClassList, params: dict, metrics: dict, precision: str) -> dict:
    """Everything a resumed run needs, and what analysis reads (see the format above)."""
    return {'model_args': model_args, 'classes': classes.to_json(),
            'model': unwrap(model).state_dict(), 'ema': ema.module.state_dict() if ema else None,
            'ema_updates': ema.updates if ema else 0,
            'optimizer': optimizer.state_dict(), 'scaler': scaler.state_dict(), 'precision': precision,
            'epoch': epoch, 'best_top_1': best_top1, 'rng': rng_state(),
            'params': {k: v for k, v in params.items() if k != 'classes'}, 'metrics': metrics}


def restore(checkpoint: dict, model, optimizer, scaler, precision: str) -> tuple[int, float]:
    """Load a training_state into the live objects; returns (epochs done, best top-1).

    A run may come back on another kind of GPU (a reclaimed A100 returning as a T4), where
    `precision=auto` resolves differently. The weights and the optimiser carry over as they
    are; only the loss scale belongs to fp16: it is kept from fp16 to fp16, and an fp16 run
    continuing in bf16/fp32 drops it (a fresh scaler starts for bf16/fp32 -> fp16). Said in one line.
    """
    model.load_state_dict(checkpoint['model'])
    optimizer.load_state_dict(checkpoint['optimizer'])
    before = checkpoint.get('precision')
    if before is not None and before != precision:
        print(f'note: this run trained in {before} until epoch {checkpoint["epoch"]} and continues in '
              f'{precision} on this device' + (' with a fresh loss scale' if precision == 'fp16' else ''))
    if precision == 'fp16' and before in ('fp16', None) and checkpoint['scaler']:
        scaler.load_state_dict(checkpoint['scaler'])
    set_rng_state(checkpoint['rng'])
    return checkpoint['epoch'], checkpoint['best_top_1']


def restore_ema(checkpoint: dict, ema) -> None:
    ema.module.load_state_dict(checkpoint['ema'])
    ema.updates = checkpoint['ema_updates']


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {'torch': torch.get_rng_state(), 'python': random.getstate(),
             'numpy': [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]]}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    random.setstate(tuple(state['python'][:1]) + (tuple(state['python'][1]),) + tuple(state['python'][2:]))
    kind, keys, *rest = state['numpy']
    np.random.set_state((kind, keys.numpy(), *rest))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def load_model(path: str | os.PathLike, prefer_ema: bool = True, map_location='cpu'):
    """(model in eval mode, ClassList, info) from a checkpoint or a final_weights.pt.

    With `prefer_ema`, a checkpoint's EMA weights are used when it has them.
    """
    path = Path(path)
    obj = _torch_load(path, map_location)
    if isinstance(obj, dict) and obj.get('format') == FORMAT:
        args, classes = obj['model_args'], ClassList.from_json(obj['classes'])
        use_ema = prefer_ema and obj.get('ema') is not None
        state = obj['ema'] if use_ema else obj['model']
        info = {'epoch': obj.get('epoch'), 'weights': 'ema' if use_ema else 'model', 'params': obj.get('params')}
    elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        params = _params_beside(path)
        state = strip_prefixes(obj)
        if 'fc.weight' not in state:
            fail(f'{path} is not a checkpoint of this project, nor the weights of the '
                 f'{params["model.arch"]} that {path.parent / PARAMS} describes')
        args = {'arch': params['model.arch'], 'num_classes': state['fc.weight'].shape[0],
                'use_blurpool': bool(params['training.use_blurpool'])}
        classes = ClassList.from_json(params['classes']) if 'classes' in params \
            else ClassList.numbered(args['num_classes'])
        info = {'epoch': None, 'weights': 'model', 'params': params}
    else:
        fail(f'{path} is neither a checkpoint of this project nor a state_dict')
    model = build_model(args['arch'], args['num_classes'], use_blurpool=args['use_blurpool'])
    try:
        model.load_state_dict(strip_prefixes(state))
    except RuntimeError as e:
        fail(f'{path} does not fit a {args["arch"]} with {args["num_classes"]} classes '
             f'({str(e).splitlines()[0][:120]})')
    return model.eval(), classes, info


def _params_beside(path: Path) -> dict:
    params_file = path.parent / PARAMS
    if not params_file.is_file():
        fail(f'{path} is a plain state_dict and there is no {PARAMS} beside it to say which model it is')
    return json.loads(params_file.read_text())


def strip_prefixes(state: dict) -> dict:
    """Weights saved from DDP (`module.`) or torch.compile (`_orig_mod.`) fit the bare model."""
    out = {}
    for key, value in state.items():
        for prefix in ('module.', '_orig_mod.'):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out
