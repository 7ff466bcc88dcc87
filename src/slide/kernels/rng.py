"""Counter-based random numbers for kernels (SplitMix64).

Every sample gets its own stream, seeded from ``(seed, batch counter, position in batch)``, so
the random choices of a sample do not depend on which thread runs it or on the clock (the public
C++ SLIDE reseeds from the clock per sample, so all samples of one second share their
"random" padding). With one thread a run is therefore exactly reproducible.
The state is a one-element ``uint64`` array so kernels can advance it in place.
"""

import numpy as np
from numba import njit, prange

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, fastmath=False, inline="always")
def mix64(z):
    """SplitMix64 finaliser: a bijective 64-bit mixer (uint64 -> uint64)."""
    z = np.uint64(z)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, fastmath=False, inline="always")
def stream_seed(seed, a, b):
    """Seed of the independent stream number (a, b) of generator ``seed``."""
    return mix64(mix64(np.uint64(seed) ^ mix64(np.uint64(a) + _GOLDEN)) + np.uint64(b))


@njit(cache=True, fastmath=False, inline="always")
def next_u64(state):
    """Advance ``state`` (uint64[1]) and return 64 random bits."""
    state[0] += _GOLDEN
    return mix64(state[0])


@njit(cache=True, fastmath=False, inline="always")
def rand_below(state, n):
    """Uniform integer in [0, n) for 0 < n < 2**32 (Lemire's multiply-shift, no division)."""
    r = next_u64(state) >> np.uint64(32)
    return np.int64((r * np.uint64(n)) >> np.uint64(32))


@njit(cache=True, fastmath=False, inline="always")
def rand_uniform(state):
    """Uniform float64 in [0, 1)."""
    return np.float64(next_u64(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, fastmath=False, parallel=True)
def fill_uniform(out, seed, low, high):
    """out[i] = uniform in [low, high) from counter i of stream ``seed`` (a flat float32 array):
    the values do not depend on the number of threads that fill it."""
    base = mix64(np.uint64(seed))
    width = high - low
    for i in prange(out.shape[0]):
        z = mix64(base + np.uint64(i) * _GOLDEN)
        out[i] = np.float32(low + width * (np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)))
