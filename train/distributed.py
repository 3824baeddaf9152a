"""One process per device: torchrun (single or multi-node), or a local spawn like the public trainer.

The training code is the same whatever the launch: it asks `setup()` for its rank and
device, and only rank 0 touches the run folder.
"""
from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fastimagenet.common.cli import fail


@dataclass
class Context:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    device: torch.device = torch.device('cpu')

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    return 'RANK' in os.environ and 'WORLD_SIZE' in os.environ


def check_world_size(world_size: int) -> None:
    """Refuse more processes per node than devices, before anything starts."""
    if torch.cuda.is_available():
        if world_size > torch.cuda.device_count():
            fail(f'{world_size} processes on this node but only {torch.cuda.device_count()} CUDA device(s)')
    elif world_size > (os.cpu_count() or 1):
        fail(f'{world_size} processes on this node but only {os.cpu_count()} CPU cores (and no CUDA device)')


def setup() -> Context:
    """Join the process group if launched as several processes; pick this process's device."""
    if not under_torchrun() or int(os.environ['WORLD_SIZE']) == 1:
        return Context(device=torch.device('cuda', 0) if torch.cuda.is_available() else torch.device('cpu'))
    rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    local_world = int(os.environ.get('LOCAL_WORLD_SIZE', world))
    check_world_size(local_world)
    if torch.cuda.is_available():
        device = torch.device('cuda', local_rank)
        torch.cuda.set_device(device)
        backend = 'nccl'
    else:
        device, backend = torch.device('cpu'), 'gloo'
    dist.init_process_group(backend, init_method='env://')
    return Context(rank, local_rank, world, local_world, device)


def spawn(fn, world_size: int, address: str, port: str, *args) -> None:
    """Start `world_size` local processes running fn(*args), as `torchrun --nproc_per_node` would."""
    check_world_size(world_size)
    os.environ.update(MASTER_ADDR=address, MASTER_PORT=str(port))
    try:
        torch.multiprocessing.spawn(_spawned, args=(world_size, fn, args), nprocs=world_size, join=True)
    except torch.multiprocessing.ProcessExitedException as e:
        sys.exit(e.exit_code)  # the process that stopped has said why, in its own line


def _spawned(local_rank: int, world_size: int, fn, args) -> None:
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size))
    fn(*args)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sync_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank.

    DDP broadcasts them at the start of each forward, but each rank then updates its
    own from its own batch: after training they differ, and each rank would validate
    its share with a slightly different model than the one rank 0 saves.
    """
    if dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def sync_state(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank, e.g. an EMA, which DDP does not know of."""
    if dist.is_initialized():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def broadcast_from_main(obj):
    """Rank 0's small Python object (a decision, a dict of numbers), on every rank. Not for
    tensors: pickled tensors do not survive broadcast_object_list (use broadcast_checkpoint)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_checkpoint(checkpoint: dict | None, device: torch.device) -> dict | None:
    """Rank 0's loaded checkpoint (tensors included) on every rank, as the bytes of torch.save.

    The other ranks need not see the run folder (several nodes without a shared disk), and
    torch.load(weights_only=True) of those bytes runs no code from the file, as on rank 0.
    """
    if not dist.is_initialized():
        return checkpoint
    # NCCL moves only device tensors; gloo takes CPU ones.
    where = device if dist.get_backend() == 'nccl' else torch.device('cpu')
    payload = None
    if dist.get_rank() == 0 and checkpoint is not None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        payload = torch.frombuffer(bytearray(buffer.getbuffer()), dtype=torch.uint8)
    size = torch.tensor([-1 if payload is None else payload.numel()], dtype=torch.int64, device=where)
    dist.broadcast(size, src=0)
    if size.item() < 0:
        return None
    data = payload.to(where) if payload is not None else torch.empty(size.item(), dtype=torch.uint8, device=where)
    dist.broadcast(data, src=0)
    if dist.get_rank() == 0:
        return checkpoint
    return torch.load(io.BytesIO(data.cpu().numpy().tobytes()), map_location='cpu', weights_only=True)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
