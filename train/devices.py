"""This process's share of the machine: cores for decoding and for torch, backend switches, a description.

On a node with several processes (one per GPU), each gets cores / processes decoding threads.
On a CPU-only machine the model needs every core too, so torch keeps them all: decoding
threads and torch's then share the cores, and a CPU run is a smoke test, not a benchmark.
"""
from __future__ import annotations

import os
import platform

import torch

from .distributed import Context


def usable_cores() -> int:
    """The cores this process may run on: a batch scheduler (SLURM, a cgroup cpuset) may give
    fewer than the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_budget(num_workers: int, ctx: Context) -> tuple[int, int]:
    """(decoding threads, torch threads) for this process; num_workers 0 = this process's share."""
    cores = max(1, usable_cores() // ctx.local_world_size)
    return num_workers or cores, cores


def configure(ctx: Context, torch_threads: int) -> None:
    """Once per process, before the first batch. The loaders never change torch's thread count
    (train/loaders.py), so this one holds for the whole run."""
    torch.set_num_threads(torch_threads)
    if ctx.device.type == 'cuda':
        # Shapes are fixed within an epoch (one resolution, drop_last), so cuDNN's per-shape
        # autotuning pays off after a few steps, as in the public ffcv trainer.
        torch.backends.cudnn.benchmark = True


def describe(ctx: Context) -> dict:
    """What the run ran on, for reports (not compared on resume: a run may move)."""
    if ctx.device.type == 'cuda':
        name = torch.cuda.get_device_name(ctx.device)
    else:
        name = platform.processor()
        if os.path.exists('/proc/cpuinfo'):
            name = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                         if line.startswith('model name')), name)
    return {'device': ctx.device.type, 'name': name, 'processes': ctx.world_size, 'cpu_count': os.cpu_count(),
            'usable_cores': usable_cores()}
