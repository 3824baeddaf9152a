"""Training throughput of the model alone (forward + backward + SGD step), on this machine's device.

    python bench/train_step.py [--res 160] [--batch-size 32] [--steps 10] [--archs resnet50d,resnet50]

ResNet-50D beside torchvision's ResNet-50, so the cost of the D tweaks (deep stem, average-
pool shortcuts) is known, in fp32 and in the mixed precision the trainer would use (bf16
autocast; on CUDA fp16 is timed too), channels_last. Synthetic inputs: data loading is
measured by bench/loader.py. The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

from fastimagenet.common.cli import isolate_script

isolate_script(__file__)  # first: our module names must not shadow libraries'

import argparse
import json
import time
from contextlib import nullcontext

import torch

from fastimagenet.train.model import build_model


def images_per_second(arch: str, res: int, batch: int, steps: int, device: torch.device, dtype) -> float:
    torch.manual_seed(0)
    model = build_model(arch, 1000).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, res, res, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else nullcontext

    def step():
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(2):  # warm-up: allocator, cuDNN/oneDNN kernel choice
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--res', type=int, default=160)
    ap.add_argument('--batch-size', type=int, default=32)
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--archs', default='resnet50d,resnet50')
    args = ap.parse_args()
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    precisions = {'fp32': None, 'bf16': torch.bfloat16}
    if device.type == 'cuda':
        precisions['fp16'] = torch.float16
    name = torch.cuda.get_device_name() if device.type == 'cuda' else f'cpu x{torch.get_num_threads()} threads'
    print(f'device: {name}; res {args.res}, batch {args.batch_size}, {args.steps} timed steps, channels_last')
    results = {}
    for arch in args.archs.split(','):
        for precision, dtype in precisions.items():
            rate = images_per_second(arch, args.res, args.batch_size, args.steps, device, dtype)
            results[f'{arch}_{precision}_img_s'] = round(rate, 1)
            print(f'{arch:12s}{precision:6s}{rate:10.1f} img/s', flush=True)
    print(json.dumps({'device': name, 'res': args.res, 'batch_size': args.batch_size, **results}))


if __name__ == '__main__':
    main()
