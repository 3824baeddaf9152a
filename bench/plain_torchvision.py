"""The plain torchvision training script a user would write: the yardstick of bench/end_to_end.py.

    python bench/plain_torchvision.py --data DIR [--epochs 6] [--res 64] [--batch-size 64] [--lr 0.4]

ImageFolder + DataLoader (2 worker processes), RandomResizedCrop + flip, torchvision's resnet18,
SGD (momentum 0.9, weight decay 5e-5, none on BatchNorm) with a 1-epoch linear warm-up and a
linear decay to 0 set every step, label smoothing 0.1; validation: resize to res/0.875 and
centre-crop, logits averaged with the flipped image's. Seeded. After each epoch one JSON line:
{"epoch", "top_1", "train_loss", "elapsed_s", "train_imgs_per_s"}.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import datasets, models, transforms as T

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def main() -> None:
    t_start = time.time()
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', required=True, help='ImageFolder root with train/ and val/')
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--res', type=int, default=64)
    ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--lr', type=float, default=0.4)
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    train_tf = T.Compose([T.RandomResizedCrop(args.res), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    val_tf = T.Compose([T.Resize(int(args.res / 0.875)), T.CenterCrop(args.res), T.ToTensor(), T.Normalize(MEAN, STD)])
    train_set = datasets.ImageFolder(f'{args.data}/train', train_tf)
    val_set = datasets.ImageFolder(f'{args.data}/val', val_tf)
    train = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                        num_workers=args.workers, persistent_workers=True,
                                        generator=torch.Generator().manual_seed(args.seed))
    val = torch.utils.data.DataLoader(val_set, batch_size=256, num_workers=args.workers, persistent_workers=True)

    model = models.resnet18(num_classes=len(train_set.classes)).to(memory_format=torch.channels_last)
    bn = [p for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    rest = [p for p in model.parameters() if all(p is not q for q in bn)]
    opt = torch.optim.SGD([{'params': bn, 'weight_decay': 0}, {'params': rest, 'weight_decay': 5e-5}],
                          lr=args.lr, momentum=0.9)
    steps = len(train)
    total = args.epochs * steps
    schedule = lambda i: args.lr * (i / steps if i < steps else (total - i) / (total - steps))

    elapsed = 0.0
    for epoch in range(args.epochs):
        t0 = time.time()
        model.train()
        losses = []
        for step, (x, y) in enumerate(train):
            for g in opt.param_groups:
                g['lr'] = schedule(epoch * steps + step)
            loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        train_time = time.time() - t0
        model.eval()
        hits = count = 0
        with torch.no_grad():
            for x, y in val:
                x = x.contiguous(memory_format=torch.channels_last)
                logits = (model(x) + model(torch.flip(x, dims=[3]))) / 2
                hits += int((logits.argmax(1) == y).sum())
                count += len(y)
        elapsed += time.time() - t0
        print(json.dumps({'epoch': epoch, 'top_1': hits / count, 'train_loss': float(np.mean(losses)),
                          'elapsed_s': round(elapsed, 2), 'wall_s': round(time.time() - t_start, 2),
                          'train_imgs_per_s': round(steps * args.batch_size / train_time, 1)}), flush=True)


if __name__ == '__main__':
    main()
