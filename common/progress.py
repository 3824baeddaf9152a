"""Progress of counted work (images converted, images checked) where the user looks.

On a terminal, a tqdm bar. Anywhere else (`nohup`, `| tee convert.log`, a batch job's log) a
bar's carriage-return frames would fill the log with overwritten lines, so a plain line every
`every` seconds instead: done / total, the rate and the ETA. (train/progress.py does the same
for a training epoch, with its loss and learning rate.)
"""
from __future__ import annotations

import sys
import time

from tqdm import tqdm


class CountProgress:
    def __init__(self, total: int, desc: str, unit: str = 'img', every: float = 30.0, stream=None):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.stream = stream or sys.stderr
        self.done, self.postfix = 0, {}
        self.start = self.last = time.time()
        self.bar = (tqdm(total=total, unit=unit, desc=desc, smoothing=0.05, dynamic_ncols=True, file=self.stream)
                    if self.stream.isatty() else None)

    def update(self, n: int, **postfix) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            return
        self.postfix.update(postfix)
        now = time.time()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            extra = ''.join(f'  {k} {v}' for k, v in self.postfix.items())
            print(f'{self.desc}: {self.done}/{self.total} {self.unit}  {rate:.0f} {self.unit}/s  '
                  f'ETA {duration((self.total - self.done) / max(rate, 1e-9))}{extra}', file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> CountProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f'{seconds // 3600}h{seconds // 60 % 60:02d}m' if seconds >= 3600 else f'{seconds // 60}m{seconds % 60:02d}s'
