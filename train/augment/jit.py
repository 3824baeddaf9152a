"""The package's numba decorator, with an on-disk cache keyed on every file the kernels read.

Compiling the augmentation kernels takes ~25 s of CPU (this project's 2-core CI machine),
so they are cached (numba's cache=True). But numba checks a cached function against its own
source file only, and these call each other across files and call ../draws.py: an edit
there would leave stale machine code running, silently. So their cache entries carry a hash of all those files instead
(a numba cache locator, the mechanism numba provides for custom cache placement).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from numba import njit
from numba.core import caching

_HERE = Path(__file__).resolve().parent
_SOURCES = [_HERE / f'{name}.py' for name in ('jit', 'image_ops', 'randaugment', 'color_jitter', 'per_sample')]
_SOURCES.append(_HERE.parent / 'draws.py')
_STAMP = hashlib.sha256(b''.join(p.read_bytes() for p in _SOURCES)).hexdigest()


class _Stamped:
    """Mixin: applies to this package's files only; stamps entries with all sources' hash."""

    def get_source_stamp(self):
        return _STAMP

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).resolve().parent != _HERE:
            return None
        return super().from_function(py_func, py_file)


# (older numba, 0.57 among them, names them with a leading underscore)
_IN_TREE = getattr(caching, 'InTreeCacheLocator', None) or caching._InTreeCacheLocator
_USER_WIDE = getattr(caching, 'UserWideCacheLocator', None) or caching._UserWideCacheLocator


class _InTree(_Stamped, _IN_TREE):
    pass


class _UserWide(_Stamped, _USER_WIDE):  # where __pycache__ is not writable
    pass


if _InTree not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes[:0] = [_InTree, _UserWide]

kernel = njit(nogil=True, cache=True, error_model='numpy')
