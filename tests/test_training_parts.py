"""The trainer's pieces whose bugs would cost accuracy silently, each on its own: weight decay
groups, the EMA, precision, checkpoints across precisions, DDP broadcasts, backend switches."""
from __future__ import annotations

import os
import socket

import pytest
import torch

from fastimagenet.common.cli import UserError
from fastimagenet.train import checkpoints, devices, distributed, precision
from fastimagenet.train.ema import EMA
from fastimagenet.train.model import build_model
from fastimagenet.train.optim import param_groups


def test_no_weight_decay_on_batchnorm_unless_asked():
    model = build_model('resnet18d', 10, use_blurpool=True)
    bn, rest = param_groups(model, 5e-5, bn_wd=False)
    assert bn['weight_decay'] == 0 and rest['weight_decay'] == 5e-5
    bn_ids = {id(q) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for q in m.parameters()}
    assert {id(q) for q in bn['params']} == bn_ids
    assert all(q.ndim == 1 for q in bn['params'])
    convs_and_fc = {id(q) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
                    for q in m.parameters(recurse=False)}
    assert {id(q) for q in rest['params']} == convs_and_fc  # fc bias decays, as in ffcv-imagenet
    assert len(bn['params']) + len(rest['params']) == len(list(model.parameters()))
    assert param_groups(model, 1e-4, bn_wd=True)[0]['weight_decay'] == 1e-4


def test_ema_decay_follows_its_half_life_with_timms_warm_up():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, halflife_steps=100)
    assert ema.decay == pytest.approx(0.5 ** (1 / 100))
    expected = torch.zeros(1, 2)
    for step in range(1, 301):
        with torch.no_grad():
            model.weight.fill_(float(step))
        ema.update()
        decay = min(0.5 ** (1 / 100), (1 + step) / (10 + step))  # early on, a shorter memory
        expected = decay * expected + (1 - decay) * float(step)
    assert torch.allclose(ema.module.weight, expected, rtol=1e-5)
    assert ema.updates == 300 and not ema.module.weight.requires_grad


def test_precision_auto_is_bf16_only_where_it_is_native():
    cuda = torch.device('cuda', 0)
    assert precision.resolve('auto', cuda, capability=(8, 0)) == 'bf16'   # A100, A10G, L4
    assert precision.resolve('auto', cuda, capability=(9, 0)) == 'bf16'   # H100
    assert precision.resolve('auto', cuda, capability=(7, 5)) == 'fp16'   # T4: bf16 only emulated
    assert precision.resolve('auto', cuda, capability=(7, 0)) == 'fp16'   # V100
    assert precision.resolve('bf16', cuda, capability=(7, 5)) == 'bf16'   # asked for: the user's call
    cpu = torch.device('cpu')
    assert precision.resolve('auto', cpu) == 'fp32' and precision.resolve('bf16', cpu) == 'bf16'
    with pytest.raises(UserError, match='fp16 needs CUDA'):
        precision.resolve('fp16', cpu)
    assert precision.Precision('fp16', 'cpu').scaler().is_enabled()  # (a CUDA one disables itself here)
    assert not precision.Precision('bf16', 'cpu').scaler().is_enabled()


@pytest.mark.parametrize('before,after', [('bf16', 'fp16'), ('fp16', 'bf16'), ('fp16', 'fp16'), ('fp32', 'fp16')])
def test_a_run_resumed_in_another_precision_continues(before, after, capsys):
    """A reclaimed A100 (bf16) coming back as a T4 (fp16), and back: never a crash in GradScaler."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler('cpu', enabled=before == 'fp16', init_scale=1024.0)
    state = {'model': model.state_dict(), 'optimizer': opt.state_dict(), 'scaler': scaler.state_dict(),
             'precision': before, 'epoch': 3, 'best_top_1': 0.5, 'rng': checkpoints.rng_state()}
    fresh = torch.amp.GradScaler('cpu', enabled=after == 'fp16', init_scale=2.0 ** 16)
    assert checkpoints.restore(state, torch.nn.Linear(3, 2), opt, fresh, after) == (3, 0.5)
    if after == 'fp16':
        assert fresh.get_scale() == (1024.0 if before == 'fp16' else 2.0 ** 16)
    assert ('continues in' in capsys.readouterr().out) == (before != after)


def test_cudnn_autotuning_is_switched_on_for_cuda_only():
    old = torch.backends.cudnn.benchmark
    threads = torch.get_num_threads()
    try:
        torch.backends.cudnn.benchmark = False
        devices.configure(distributed.Context(device=torch.device('cpu')), threads)
        assert not torch.backends.cudnn.benchmark
        devices.configure(distributed.Context(device=torch.device('cuda', 0)), threads)
        assert torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = old
        torch.set_num_threads(threads)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _two_ranks(rank: int, port: int, results: dict) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.distributed.init_process_group('gloo', rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # each rank starts from other weights
        ema = EMA(build_model('resnet18d', 4), halflife_steps=10)
        distributed.sync_state(ema.module)
        checkpoint = {'model': {'w': torch.arange(6.0).reshape(2, 3)}, 'epoch': 7, 'rng': checkpoints.rng_state()} \
            if rank == 0 else None
        got = distributed.broadcast_checkpoint(checkpoint, torch.device('cpu'))
        results[rank] = ({k: v.clone() for k, v in ema.module.state_dict().items()}, got)
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_ranks_get_rank_0s_ema_and_checkpoint():
    """The broadcasts that make every rank hold rank 0's state: the EMA (which DDP does not
    know of) and the loaded checkpoint, tensors included (broadcast_object_list crashed on them)."""
    import torch.multiprocessing as mp
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_two_ranks, args=(_free_port(), results), nprocs=2, join=True)
        (ema0, ckpt0), (ema1, ckpt1) = results[0], results[1]
    assert all(torch.equal(ema0[k], ema1[k]) for k in ema0)
    assert ckpt1['epoch'] == 7 and torch.equal(ckpt1['model']['w'], ckpt0['model']['w'])
