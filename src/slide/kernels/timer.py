"""A cycle counter readable from Numba kernels, for per-phase timing inside parallel loops.

Numba cannot call ``time.perf_counter`` in nopython mode, and splitting a fused per-sample
kernel into one call per phase would evict the active weight rows from cache between phases.
So the kernels read the CPU's cycle counter (LLVM's ``readcyclecounter``: RDTSC on x86) around
each phase and add the difference to a per-thread slot; Python converts cycles to seconds with
a rate measured against ``time.perf_counter`` (:func:`cycles_per_second`).
"""

import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _readcyclecounter(typingctx):
    sig = types.uint64()

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return sig, codegen


@njit(cache=True, fastmath=False, inline="always")
def cycles():
    """Current value of the CPU cycle counter (0 where the platform has none)."""
    return _readcyclecounter()


_RATE = None


def cycles_per_second():
    """Cycle-counter ticks per second, measured once per process (0.0 if no counter)."""
    global _RATE
    if _RATE is None:
        cycles()  # compile outside the measured interval
        t0, c0 = time.perf_counter(), cycles()
        time.sleep(0.05)
        t1, c1 = time.perf_counter(), cycles()
        _RATE = float(np.uint64(c1) - np.uint64(c0)) / (t1 - t0) if c1 > c0 else 0.0
    return _RATE
