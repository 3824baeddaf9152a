"""Per-sample random streams: every random draw of the data pipeline is a hash.

A draw is a function of (seed, epoch, sample index, stream, k), never of a generator's
state. So a sample sees the same crop, flip, RandAugment ops, erased box and mixing
partner whichever decoding thread handles it, however many threads there are, and
whether the run was interrupted and resumed or not. Each augmentation draws from its
own stream, so turning one on or off leaves the others' draws unchanged.

Keys are uint64: from Python, pass np.uint64 values (a plain int is typed int64 by numba,
whose shifts are arithmetic: another hash). The functions are numba-jitted: the decoding threads call them inside ffcv's compiled
pipeline, and `uniform_table` gives the batch-side augmentations (on the model's
device) their draws for a whole batch at once.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

# One stream per augmentation (salted keys). The crop and flip keep the plain sample key.
STREAM_CROP = 0
STREAM_RANDAUGMENT = 1
STREAM_COLOR_JITTER = 2
STREAM_ERASING = 3
STREAM_MIXING = 4


@intrinsic
def load_int64(typingctx, address):
    """The int64 at `address`, read at run time. numba freezes the arrays a compiled function
    captures as constants, so a value that changes every epoch without recompiling ffcv's
    pipeline (the epoch the draws use, an augmentation's on/off switch) is read through memory."""
    def codegen(context, builder, signature, args):
        return builder.load(builder.inttoptr(args[0], ir.IntType(64).as_pointer()))
    return types.int64(types.intp), codegen


@njit(inline='always')
def _mix(z):
    # splitmix64's finaliser: a cheap, well-distributed 64-bit hash.
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline='always')
def uniform(key, k):
    """The k-th uniform draw in [0, 1) of the stream `key`."""
    return (_mix(key + np.uint64(k) * _GOLDEN) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline='always')
def normal(key, k):
    """A standard normal draw (Box-Muller on the uniforms k and k + 1)."""
    u1 = 1.0 - uniform(key, k)  # in (0, 1]: log() stays finite
    u2 = uniform(key, k + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(cache=True)  # cached: every process (DDP ranks, tests) would compile it again
def sample_key(seed, epoch, index):
    """The key of sample `index` in `epoch`: its crop and flip draw from it directly."""
    return _mix(np.uint64(seed) ^ _mix(np.uint64(epoch) * _GOLDEN ^ _mix(np.uint64(index))))


@njit(inline='always')
def stream_key(key, stream):
    """The key of one augmentation's stream for a sample (stream 0 is the key itself)."""
    if stream == 0:
        return key
    return _mix(key ^ (np.uint64(stream) * np.uint64(0xD1B54A32D192ED03)))


@njit(cache=True)
def uniform_table(seed, epoch, indices, stream, count):
    """(len(indices), count) uniform draws: row i is stream `stream` of sample indices[i]."""
    out = np.empty((len(indices), count), dtype=np.float64)
    for i in range(len(indices)):
        key = stream_key(sample_key(seed, epoch, np.uint64(indices[i])), stream)
        for k in range(count):
            out[i, k] = uniform(key, k)
    return out
