"""What data-parallel workers send each other: a batch's per-sample records, and touched rows.

Synchronous mode exchanges the factors of the batch's gradient rather than the gradient rows:
row j of a layer's gradient is sum over samples of delta_s[j] * x_s (the sample's layer input),
so a sample's input non-zeros, its active ids, activations and deltas determine its whole
contribution to every row it touches. Each worker packs the records of its own samples
(:func:`pack_records`), the records of all workers are gathered, and every worker unpacks them
into the batch slots where the samples would sit in one process (:func:`unpack_records`); the
unchanged optimiser pass (:func:`slide.kernels.train.apply_batch`) then runs on the whole
batch, so every replica applies the same lazy-Adam update to the same rows (sufficient-factor
broadcasting, Xie et al. 2015). A record costs (nnz + sum of active sizes) numbers, where the
gradient rows it stands for cost (active rows x row width) numbers.

The buffers are float32; ids and counts travel as int32 bit patterns in the same buffer (a view),
so one gather moves everything.
"""

import numpy as np
from numba import njit

from .train import set_n_active


@njit(cache=True, fastmath=False)
def _record_size(net, work, s):
    n_layers = net.is_lsh.shape[0]
    size = 1 + n_layers + 2 * work.x_n[s]
    for l in range(n_layers):
        n = work.n_active[s, l]
        size += n  # delta
        if net.is_lsh[l] != 0:
            size += n  # ids
        if l < n_layers - 1:
            size += n  # activations: the next layer's input
    return size


@njit(cache=True, fastmath=False)
def records_size(net, work, slot0, n):
    """Floats :func:`pack_records` needs for slots slot0 .. slot0 + n - 1."""
    total = 0
    for s in range(slot0, slot0 + n):
        total += _record_size(net, work, s)
    return total


@njit(cache=True, fastmath=False)
def pack_records(net, work, slot0, n, buf):
    """Write the records of slots slot0 .. slot0 + n - 1 into ``buf`` (float32, at least
    :func:`records_size` long). Returns the floats written."""
    ibuf = buf.view(np.int32)
    n_layers = net.is_lsh.shape[0]
    p = 0
    for s in range(slot0, slot0 + n):
        xn = work.x_n[s]
        ibuf[p] = xn
        for l in range(n_layers):
            ibuf[p + 1 + l] = work.n_active[s, l]
        p += 1 + n_layers
        for k in range(xn):
            ibuf[p + k] = work.x_idx[s, k]
            buf[p + xn + k] = work.x_val[s, k]
        p += 2 * xn
        for l in range(n_layers):
            m = work.n_active[s, l]
            if net.is_lsh[l] != 0:
                ids = work.act_ids[l]
                for a in range(m):
                    ibuf[p + a] = ids[s, a]
                p += m
            if l < n_layers - 1:
                act = work.act[l]
                for a in range(m):
                    buf[p + a] = act[s, a]
                p += m
            delta = work.delta[l]
            for a in range(m):
                buf[p + a] = delta[s, a]
            p += m
    return p


@njit(cache=True, fastmath=False)
def unpack_records(net, work, slot0, n, buf, max_nnz):
    """Read ``n`` records from ``buf`` into slots slot0 .. slot0 + n - 1 (the layout
    :func:`pack_records` writes, field by field in the same order). Returns the floats read, or
    -1 if a record does not fit the buffers (sizes from another model)."""
    ibuf = buf.view(np.int32)
    n_layers = net.is_lsh.shape[0]
    p = 0
    for s in range(slot0, slot0 + n):
        xn = ibuf[p]
        if xn < 0 or xn > max_nnz:
            return -1
        for l in range(n_layers):
            m = ibuf[p + 1 + l]
            if m < 0 or m > work.act_ids[l].shape[1]:
                return -1
            set_n_active(work, s, l, m)
        p += 1 + n_layers
        work.x_n[s] = xn
        for k in range(xn):
            work.x_idx[s, k] = ibuf[p + k]
            work.x_val[s, k] = buf[p + xn + k]
        p += 2 * xn
        for l in range(n_layers):
            m = work.n_active[s, l]
            if net.is_lsh[l] != 0:
                ids = work.act_ids[l]
                for a in range(m):
                    ids[s, a] = ibuf[p + a]
                p += m
            if l < n_layers - 1:
                act = work.act[l]
                for a in range(m):
                    act[s, a] = buf[p + a]
                p += m
            delta = work.delta[l]
            for a in range(m):
                delta[s, a] = buf[p + a]
            p += m
    return p


@njit(cache=True, fastmath=False)
def mark_touched(net, work, n, marks):
    """marks[l][row] = 1 for every weight row the samples in slots 0 .. n - 1 update: the input
    features present (layer 0, input-major) and the active neurons of later LSH layers (dense
    layers' rows are all touched by every batch, and are not marked)."""
    n_layers = net.is_lsh.shape[0]
    m0 = marks[0]
    for s in range(n):
        for k in range(work.x_n[s]):
            m0[work.x_idx[s, k]] = 1
    for l in range(1, n_layers):
        if net.is_lsh[l] == 0:
            continue
        ml = marks[l]
        ids = work.act_ids[l]
        for s in range(n):
            for a in range(work.n_active[s, l]):
                ml[ids[s, a]] = 1
