"""Named points where a test can stop a process, so that "killed midway" means a known place.

A test that kills a run "after epoch 1" or a conversion "after 200 images" cannot rely on
timing: on a fast or idle machine the work finishes first. Instead the code announces
the points it passes, and a test sets

    FASTIMAGENET_FAULT=<point>:<count>[=<action>][,...]     e.g. train.epoch_saved:1

The process then acts when it reaches that point with that count (the first time it
reaches the point if no count is given):

    hang   (default) print `fault: <point>:<count> (pid N)` to stderr and sleep until killed;
           with FASTIMAGENET_FAULT_FILE set, also write that line to that file
    pause  the same, but carry on once the test deletes FASTIMAGENET_FAULT_FILE (e.g. after it
           stopped a server the process talks to)
    kill   SIGKILL itself (as the OOM killer would)
    oom    raise torch.OutOfMemoryError (as a GPU that is too small would)

Unset (every real run), a point costs one dictionary lookup.
"""
from __future__ import annotations

import os
import signal
import sys
import time

ENV, FILE_ENV = 'FASTIMAGENET_FAULT', 'FASTIMAGENET_FAULT_FILE'
ACTIONS = ('hang', 'pause', 'kill', 'oom')


def _parse(spec: str) -> dict[str, tuple[int | None, str]]:
    faults = {}
    for item in filter(None, (part.strip() for part in spec.split(','))):
        where, _, action = item.partition('=')
        name, _, count = where.partition(':')
        action = action or 'hang'
        if action not in ACTIONS or (count and not count.isdigit()):
            raise ValueError(f'{ENV}: cannot read {item!r} (expected point[:count][={"|".join(ACTIONS)}])')
        faults[name] = (int(count) if count else None, action)
    return faults


_FAULTS = _parse(os.environ.get(ENV, ''))


def point(name: str, count: int | None = None) -> None:
    """Announce that this process reached `name` (the count-th time, or with `count` done)."""
    if name not in _FAULTS:
        return
    want, action = _FAULTS[name]
    if want is not None and count != want:
        return
    line = f'fault: {name}:{count} (pid {os.getpid()})'
    if action == 'kill':
        os.kill(os.getpid(), signal.SIGKILL)
    if action == 'oom':
        import torch
        raise torch.cuda.OutOfMemoryError(f'CUDA out of memory (injected by {ENV} at {name}:{count})')
    print(line, file=sys.stderr, flush=True)
    mark = os.environ.get(FILE_ENV)
    if mark:
        with open(mark, 'a') as f:
            f.write(line + '\n')
    while action == 'hang' or (mark and os.path.exists(mark)):
        time.sleep(0.1)
    print(f'fault: {name}:{count} carries on', file=sys.stderr, flush=True)
