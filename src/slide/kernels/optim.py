"""The optimiser pass after each batch: assemble each touched weight row's gradient, then update
that row with lazy Adam (or SGD).

Threads own contiguous blocks of rows. Each thread groups the batch's (sample, position) pairs
that touch its rows with a counting sort (two scans of the batch's entries, keeping its own),
into its own range of the entry arrays, then updates its rows in index order: every row has one
owner, so updates need no locks and none is lost, and each row sums its contributions in sample
order, so results do not depend on the thread count. Rows that no sample touched are not
visited at all (lazy Adam: their moments are not decayed, as in TensorFlow's LazyAdam).
"""

import numpy as np
from numba import njit, prange

from .layers import FASTMATH, grad_row_input_major, grad_row_output_major
from .state import ROW_BLOCKS

ADAM, SGD = 0, 1


@njit(cache=True, fastmath=FASTMATH, inline="always")
def step_row(W, j, g, mW, vW, n, opt, lr, beta1, beta2, eps):
    """One optimiser step on row j of W (first n entries) with gradient g[:n] (all float32).
    Adam, with mW, vW the moments: w -= lr * m / (sqrt(v) + eps), where the caller folded the
    bias corrections of step t into lr = lr0 * sqrt(1 - beta2**t) / (1 - beta1**t) and eps =
    eps0 * sqrt(1 - beta2**t) (Kingma & Ba's efficient form; equal to lr0 * m_hat /
    (sqrt(v_hat) + eps0)). SGD ignores mW and vW.

    Rows are indexed in place (W[j, c]), never taken as views (W[j]): inside a parallel loop
    every view increments and decrements the parent array's shared reference count, and the
    threads then fight over that cache line (the whole pass ran 1.8x slower)."""
    if opt == SGD:
        for c in range(n):
            W[j, c] -= lr * g[c]
        return
    one = np.float32(1.0)
    for c in range(n):
        gc = g[c]
        mc = beta1 * mW[j, c] + (one - beta1) * gc
        vc = beta2 * vW[j, c] + (one - beta2) * gc * gc
        mW[j, c] = mc
        vW[j, c] = vc
        W[j, c] -= lr * mc / (np.sqrt(vc) + eps)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def step_scalar(b, j, g, mb, vb, opt, lr, beta1, beta2, eps):
    if opt == SGD:
        b[j] -= lr * g
        return
    one = np.float32(1.0)
    mc = beta1 * mb[j] + (one - beta1) * g
    vc = beta2 * vb[j] + (one - beta2) * g * g
    mb[j] = mc
    vb[j] = vc
    b[j] -= lr * mc / (np.sqrt(vc) + eps)


@njit(cache=True, fastmath=False, inline="always")
def _block(t, n_rows, n_threads):
    """Thread t's rows: [lo, hi)."""
    return t * n_rows // n_threads, (t + 1) * n_rows // n_threads


@njit(cache=True, fastmath=False, inline="always")
def block_rows(t, n_out, n_threads):
    """Thread t's rows of a layer grouped in the ROW_BLOCKS fixed blocks: whole blocks."""
    b0, b1 = t * ROW_BLOCKS // n_threads, (t + 1) * ROW_BLOCKS // n_threads
    return b0 * n_out // ROW_BLOCKS, b1 * n_out // ROW_BLOCKS


@njit(cache=True, fastmath=False)
def set_grouped(grouped, l, n):
    """grouped[l] = n (a called function: a parallel region drops a named tuple's direct stores)."""
    grouped[l] = n


@njit(cache=True, fastmath=False)
def ungroup(grad, l):
    """Zero layer l's row counts left by a grouping that will not be used (grad.grouped[l] != 0:
    a data-parallel worker's share, or a batch given up before its optimiser pass)."""
    grad.count[l][:] = 0
    set_grouped(grad.grouped, l, 0)


@njit(cache=True, fastmath=False, inline="always")
def _starts(cnt, start, lo, hi, pos):
    """Row j's entries will occupy ent_*[start[j] : start[j] + cnt[j]], rows of [lo, hi) in
    order from ``pos`` on."""
    for j in range(lo, hi):
        c = cnt[j]
        if c != 0:
            start[j] = pos
            pos += c


@njit(cache=True, fastmath=False, inline="always")
def _place(start, es, ek, j, s, k):
    """Store entry (s, k) of row j; start[j] advances, ending at the end of j's range."""
    p = start[j]
    es[p] = s
    ek[p] = k
    start[j] = p + 1


@njit(cache=True, fastmath=False, inline="always")
def row_groups(grad, l):
    """Layer l's counting-sort arrays: (count, start, ent_s, ent_k), see :func:`count_entries`."""
    return grad.count[l], grad.start[l], grad.ent_s[l], grad.ent_k[l]


@njit(cache=True, fastmath=False, inline="always")
def count_entries(ids, n, s0, s1, cnt, lo, hi):
    """First scan of the counting sort: cnt[j] += the entries (s, a), s0 <= s < s1, a < n[s],
    with ids[s, a] = j, for the rows j of [lo, hi). Returns how many there were."""
    c = 0
    for s in range(s0, s1):
        for a in range(n[s]):
            j = ids[s, a]
            if j >= lo and j < hi:
                cnt[j] += 1
                c += 1
    return c


@njit(cache=True, fastmath=False, inline="always")
def place_entries(ids, n, s0, s1, cnt, start, es, ek, lo, hi, pos):
    """Second scan: the entries counted by :func:`count_entries`, in sample order, into
    ent_*[pos:], row j's at ent_*[start[j] - cnt[j] : start[j]]."""
    _starts(cnt, start, lo, hi, pos)
    for s in range(s0, s1):
        for a in range(n[s]):
            j = ids[s, a]
            if j >= lo and j < hi:
                _place(start, es, ek, j, s, a)


@njit(cache=True, fastmath=False, inline="always")
def _offsets(per_thread):
    """Exclusive prefix sums: where each thread's entries begin."""
    out = np.empty_like(per_thread)
    pos = 0
    for t in range(per_thread.shape[0]):
        out[t] = pos
        pos += per_thread[t]
    return out


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def update_output_major(net, work, grad, l, n_batch, n_threads, opt, lr, beta1, beta2, eps):
    """Optimiser step of layer l >= 1 (weights (n_out, n_in)). In an LSH layer each thread first
    groups the entries (sample, active position) of its rows by row, unless the batch's forward
    pass left exactly these entries grouped (an output layer computed row by row: threads then
    take the same fixed blocks of rows, and the entries sit in the same sample order); a dense
    layer touches every row with every sample of the batch. Leaves the row counts at zero."""
    W = net.W[l]
    b = net.b[l]
    mW, vW, mb, vb = net.mW[l], net.vW[l], net.mb[l], net.vb[l]
    n_in = W.shape[1]
    dense_out = net.is_lsh[l] == 0
    in_dense = net.is_lsh[l - 1] == 0
    n_out = W.shape[0]
    cnt, start, es, ek = row_groups(grad, l)
    delta = work.delta[l]
    x_act = work.act[l - 1]
    x_ids = work.act_ids[l - 1]
    x_n = work.n_active[:, l - 1]
    ids_l = work.act_ids[l]
    n_l = work.n_active[:, l]
    reuse = grad.grouped[l] == n_batch
    if not dense_out and not reuse and grad.grouped[l] != 0:
        ungroup(grad, l)
    first = np.zeros(n_threads, np.int64)
    if not dense_out and not reuse:
        for t in prange(n_threads):  # count the entries of the thread's rows
            lo, hi = _block(t, n_out, n_threads)
            first[t] = count_entries(ids_l, n_l, 0, n_batch, cnt, lo, hi)
        first = _offsets(first)
    for t in prange(n_threads):
        lo, hi = block_rows(t, n_out, n_threads) if reuse else _block(t, n_out, n_threads)
        if not dense_out and not reuse:  # place them, in sample order, in the thread's range of ent_*
            place_entries(ids_l, n_l, 0, n_batch, cnt, start, es, ek, lo, hi, first[t])
        # a gradient row of the thread's own (a fresh array: the compiler then knows it
        # aliases no input, and the accumulation vectorises)
        g = np.empty(n_in, np.float32)
        # rows visited in index order so the row streams of W, mW and vW are sequential for
        # the hardware prefetcher
        for j in range(lo, hi):
            if dense_out:
                e0, e1 = 0, n_batch
            elif cnt[j] == 0:
                continue
            else:
                e1 = start[j]
                e0 = e1 - cnt[j]
                cnt[j] = 0
            gbias = grad_row_output_major(g, n_in, j, delta, x_act, x_ids, x_n, es, ek, e0, e1,
                                          in_dense=in_dense, dense_out=dense_out)
            step_row(W, j, g, mW, vW, n_in, opt, lr, beta1, beta2, eps)
            step_scalar(b, j, gbias, mb, vb, opt, lr, beta1, beta2, eps)
    if reuse:
        set_grouped(grad.grouped, l, 0)


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def update_input_major(net, work, grad, n_batch, n_threads, opt_w, lr_w, opt_b, lr_b, beta1, beta2, eps):
    """Optimiser step of layer 0 (weights (n_features, n_out)): the input features present in
    the batch by ``opt_w`` at ``lr_w`` (each thread groups the entries (sample, non-zero) of its
    features first, as :func:`update_output_major`), and the biases of the neurons that were
    active by ``opt_b`` at ``lr_b``."""
    W = net.W[0]
    b = net.b[0]
    mW, vW, mb, vb = net.mW[0], net.vW[0], net.mb[0], net.vb[0]
    n_out = W.shape[1]
    dense_out = net.is_lsh[0] == 0
    cnt, start, es, ek = row_groups(grad, 0)
    x_val = work.x_val
    x_idx, x_n = work.x_idx, work.x_n
    delta0 = work.delta[0]
    ids0 = work.act_ids[0]
    n0 = work.n_active[:, 0]
    n_features = W.shape[0]
    first = np.zeros(n_threads, np.int64)
    for t in prange(n_threads):
        lo, hi = _block(t, n_features, n_threads)
        first[t] = count_entries(x_idx, x_n, 0, n_batch, cnt, lo, hi)
    first = _offsets(first)
    for t in prange(n_threads):
        lo, hi = _block(t, n_features, n_threads)
        place_entries(x_idx, x_n, 0, n_batch, cnt, start, es, ek, lo, hi, first[t])
        g = np.empty(n_out, np.float32)  # as in update_output_major
        for f in range(lo, hi):
            if cnt[f] == 0:
                continue
            e1 = start[f]
            e0 = e1 - cnt[f]
            grad_row_input_major(g, n_out, delta0, ids0, n0, es, ek, e0, e1, x_val, dense_out=dense_out)
            cnt[f] = 0
            step_row(W, f, g, mW, vW, n_out, opt_w, lr_w, beta1, beta2, eps)
    # biases: sum of the active neurons' deltas over the batch (serial: n_out is small)
    gb = grad.gb[0]
    mark = grad.bias_mark[0]
    for s in range(n_batch):
        if dense_out:
            for j in range(n_out):
                gb[j] += delta0[s, j]
                mark[j] = 1
        else:
            for a in range(n0[s]):
                j = ids0[s, a]
                gb[j] += delta0[s, a]
                mark[j] = 1
    for j in range(n_out):
        if mark[j]:
            step_scalar(b, j, gb[j], mb, vb, opt_b, lr_b, beta1, beta2, eps)
            gb[j] = 0.0
            mark[j] = 0
