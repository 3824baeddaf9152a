"""Train an ImageNet classifier from FFCV .beton files.

    python train/train_imagenet.py --config-file rn50_88_epochs.yaml \
        --data.train_dataset=/data/ffcv/train.beton --data.val_dataset=/data/ffcv/val.beton \
        --logging.folder=runs/rn50_88
    torchrun --nproc_per_node=8 train/train_imagenet.py --config-file rn50_88_epochs.yaml ...

One script for one device, DDP on one node and several nodes (torchrun sets RANK and
WORLD_SIZE), CPU or CUDA. Running the same command again resumes from the run folder's
last.pt and ends where an uninterrupted run would. The run itself: train/trainer.py.
"""
from fastimagenet.common.cli import isolate_script, run

isolate_script(__file__)  # first: our module names must not shadow libraries'

from fastimagenet.train import config, distributed
from fastimagenet.train.trainer import evaluate_checkpoint, open_datasets, train


def main(p: dict) -> None:
    ctx = distributed.setup()
    try:
        (evaluate_checkpoint if p['training.eval_only'] else train)(p, ctx)
    finally:
        distributed.cleanup()


def launch() -> None:
    p = config.load()
    config.check(p)
    if p['training.distributed'] and p['dist.world_size'] > 1 and not distributed.under_torchrun():
        # the public scripts' one-command launch: dist.world_size processes on this node, once the
        # settings and datasets are known to be good (else every process would say so)
        if not p['training.eval_only']:
            open_datasets(p)
        distributed.spawn(run_rank, p['dist.world_size'], p['dist.address'], p['dist.port'], p)
    else:
        main(p)


def run_rank(p: dict) -> None:
    run(lambda: main(p))


if __name__ == '__main__':
    run(launch)
