"""Write files so that a crash never leaves something at the final path that looks valid.

Everything a user keeps (a `.beton`, a checkpoint, a report) is written under a hidden
temporary name in the same directory and renamed into place once complete: a rename
within one filesystem is atomic, so the final path holds either the old file or the
whole new one, never a prefix of it.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TMP_MARK = '.tmp-'


def temp_path_for(path: Path) -> Path:
    return path.with_name(f'.{path.name}{TMP_MARK}{os.getpid()}')


def remove_stale_temps(path: Path) -> None:
    """Delete temp files a killed earlier writer of `path` left behind (its pid is gone)."""
    for tmp in path.parent.glob(f'.{path.name}{TMP_MARK}*'):
        pid = tmp.name.rsplit(TMP_MARK, 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        # fsync before the rename: otherwise a power cut can leave the new name
        # pointing at a file whose data never reached the disk.
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + '\n')
