"""Progress of an epoch where the user looks: a bar on a terminal, plain lines in a log file.

Under `nohup`, `tmux` with a pipe, or `| tee console.log`, a progress bar's carriage-return
frames would fill the log with thousands of overwritten lines; there the trainer prints one
plain line every `every` seconds instead (loss, lr, resolution, images/s, the epoch's ETA).
Reading the loss costs a host sync, so it is read only when something is printed.
"""
from __future__ import annotations

import sys
import time

from tqdm import tqdm

from fastimagenet.common.progress import duration


class Progress:
    def __init__(self, steps: int, epoch: int, epochs: int, global_batch: int, *, enabled: bool,
                 every: float = 60.0, stream=None):
        self.steps, self.epoch, self.epochs, self.global_batch = steps, epoch, epochs, global_batch
        self.enabled, self.every = enabled, every
        self.stream = stream or sys.stdout
        self.start = self.last = time.time()
        self.bar = None
        if enabled and self.stream.isatty():
            self.bar = tqdm(total=steps, desc=f'epoch {epoch + 1}/{epochs}', dynamic_ncols=True, leave=False,
                            file=self.stream)

    def step(self, step: int, loss, lr: float, res: int) -> None:
        """After training step `step` (0-based) of the epoch; `loss` a tensor, read only when shown."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            if step % 10 == 0 or step == self.steps - 1:
                self.bar.set_postfix(loss=f'{loss.item():.3f}', lr=f'{lr:.3f}', res=res,
                                     img_s=f'{self._rate(step):.0f}')
            return
        now = time.time()
        if now - self.last >= self.every and step < self.steps - 1:
            self.last = now
            done = step + 1
            eta = (now - self.start) / done * (self.steps - done)
            print(f'epoch {self.epoch + 1}/{self.epochs}  step {done}/{self.steps}  loss {loss.item():.4f}  '
                  f'lr {lr:.4f}  res {res}  {self._rate(step):.0f} img/s  epoch ETA {duration(eta)}',
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _rate(self, step: int) -> float:
        return (step + 1) * self.global_batch / max(time.time() - self.start, 1e-9)


def epoch_line(r: dict, epochs: int) -> str:
    """The line printed after each epoch (from its log record)."""
    line = f'epoch {r["epoch"] + 1}/{epochs}  res {r["res"]}  lr {r["lr"]:.4f}  train_loss {r["train_loss"]:.4f}'
    if 'train_top_1' in r:
        line += f'  train_top_1 {r["train_top_1"]:.4f}'
    if 'top_1' in r:
        line += f'  top_1 {r["top_1"]:.4f}  top_5 {r["top_5"]:.4f}  val_loss {r["val_loss"]:.4f}'
    if 'ema_top_1' in r:
        line += f'  ema_top_1 {r["ema_top_1"]:.4f}'
    return line + f'  {r["train_imgs_per_s"]:.0f} img/s  {r["epoch_time_s"]:.0f}s'
