"""Worker processes whose death is an error, not a hang: `ordered_map`.

multiprocessing.Pool waits forever for the answer of a worker that the OOM killer or a
crashing decoder took away. concurrent.futures notices (the dead process's sentinel
fires), stops the other workers and fails every pending task with BrokenProcessPool;
`ordered_map` turns that into `WorkerDied`, which names the worker and how it ended. The
other way round, workers die with their parent (Linux), even when it is SIGKILLed.
"""
from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator

# What usually sends these signals to a worker that decodes images.
_LIKELY_CAUSE = {signal.SIGKILL: 'out of memory?', signal.SIGSEGV: 'a crash in native code?',
                 signal.SIGBUS: 'a file truncated while mapped?', signal.SIGABRT: 'a crash in native code?'}


class WorkerDied(Exception):
    """A worker process ended without answering. str(): 'worker (pid N) died, killed by ...'."""

    def __init__(self, pid: int | None, exitcode: int | None):
        self.pid, self.exitcode = pid, exitcode
        super().__init__(f'worker{f" (pid {pid})" if pid else ""} died, {how_it_ended(exitcode)}')


def how_it_ended(exitcode: int | None) -> str:
    if exitcode is None or exitcode == 0:
        return 'for a reason it did not report'
    if exitcode > 0:
        return f'exiting with status {exitcode}'
    sig = signal.Signals(-exitcode)
    cause = _LIKELY_CAUSE.get(sig)
    return f'killed by signal {-exitcode} ({sig.name}{": " + cause if cause else ""})'


def ordered_map(fn: Callable, tasks: Iterable, num_workers: int, initializer: Callable | None = None,
                initargs: tuple = (), window: int | None = None) -> Iterator:
    """Yield fn(task) for each task, in task order, computed by `num_workers` forked processes.

    At most `window` tasks (default 4 per worker) are queued, running or done but not yet
    yielded, so `tasks` may be a long lazy generator. A task's exception is raised here; a
    worker that dies raises WorkerDied. Leaving early (an error, Ctrl-C, close()) kills the
    workers, and none outlives the generator: wrap it in contextlib.closing.
    """
    window = window or 4 * num_workers
    before = set(multiprocessing.active_children())
    # fork: the workers inherit initargs (a multiprocessing.Value, an open file's path)
    # instead of having them pickled, and start without re-importing anything.
    pool = ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context('fork'),
                               initializer=_start_worker, initargs=(os.getpid(), initializer, initargs))
    workers = []  # with fork, the executor starts them all at the first submit
    in_flight = deque()
    tasks = iter(tasks)
    finished = False
    try:
        while True:
            for task in itertools.islice(tasks, window - len(in_flight)):
                in_flight.append(pool.submit(fn, task))
                workers = workers or [p for p in multiprocessing.active_children() if p not in before]
            if not in_flight:
                break
            yield in_flight.popleft().result()
        finished = True
    except BrokenProcessPool:
        pool.shutdown(wait=True)  # the executor is stopping the other workers: wait for it
        raise WorkerDied(*_first_to_die(workers)) from None
    finally:
        if not finished:
            # Tasks still run or wait; shutdown() alone would let them finish (or hang with a
            # hung worker). Killed, the workers end now and the executor reaps them.
            for p in workers:
                p.kill()
        pool.shutdown(wait=True, cancel_futures=True)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _start_worker(parent: int, initializer: Callable | None, initargs: tuple) -> None:
    # A worker whose parent was SIGKILLed (the OOM killer may pick the parent) would wait for
    # tasks forever: have the kernel kill it when the parent goes. Linux sends the signal when
    # the thread that forked the worker ends: call ordered_map from the main thread, as the
    # commands do.
    if sys.platform == 'linux':
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it went before the request was made
            os._exit(1)
    # Ctrl-C reaches the whole process group. The parent handles it and kills its workers; a
    # worker interrupted itself could stop half way through the executor's queue protocol (a
    # result half sent, a queue lock held), and the executor's shutdown could then wait forever.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def _first_to_die(workers: list) -> tuple[int | None, int | None]:
    """(pid, exitcode) of the worker that died, once all are reaped: the executor SIGTERMs the others."""
    ended = [(p.pid, p.exitcode) for p in workers]
    for pid, code in ended:
        if code not in (0, None, -signal.SIGTERM):
            return pid, code
    return next(((pid, code) for pid, code in ended if code), (None, None))
