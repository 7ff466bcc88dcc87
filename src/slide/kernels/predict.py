"""Prediction kernels: top-k of dense logit rows (exact mode) and the LSH forward of every row
(lsh mode: the training's per-sample forward without labels, padding or dropout), both through
:func:`slide.kernels.topk.push`, so both rank alike (ties: the smaller label id first)."""

import numpy as np
from numba import njit, prange

from .topk import push
from .train import N_PHASES, forward_sample


@njit(cache=True, fastmath=False, parallel=True)
def topk_rows(Z, k, out_idx, out_val, row0):
    """Top-k column ids and values of each row of Z into out_*[row0 + r] (best first)."""
    n, m = Z.shape
    for r in prange(n):
        idx = out_idx[row0 + r]
        val = out_val[row0 + r]
        cnt = 0
        for j in range(m):
            cnt = push(idx, val, cnt, k, j, Z[r, j])


@njit(cache=True, fastmath=False, parallel=True)
def predict_lsh_rows(net, lsh, work, X_indptr, X_indices, X_data, k, n_threads, out_idx, out_val,
                     act_out, act_n):
    """LSH forward of every row; top-k of the output layer's active logits into out_*. If
    ``act_out`` has rows, the output layer's active ids are also copied there (act_n: count)."""
    n = X_indptr.shape[0] - 1
    out_l = net.is_lsh.shape[0] - 1
    dense = net.is_lsh[out_l] == 0
    no_labels = np.empty(0, np.int32)
    timers = np.zeros((n_threads, N_PHASES), np.uint64)
    keep_active = act_out.shape[0] > 0
    for t in prange(n_threads):
        rng = np.empty(1, np.uint64)
        for r in range(t, n, n_threads):
            rng[0] = np.uint64(r) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
            p0, p1 = X_indptr[r], X_indptr[r + 1]
            x0 = (X_indices[p0:p1], X_data[p0:p1], np.int64(p1 - p0), False)
            forward_sample(net, lsh, work, t, t, x0, no_labels, rng, rng, 0, 0, timers, training=False)
            n_act = work.n_active[t, out_l]
            z = work.act[out_l][t]
            ids = work.act_ids[out_l][t]
            if keep_active:
                act_n[r] = n_act
            idx = out_idx[r]
            val = out_val[r]
            cnt = 0
            for a in range(n_act):
                j = a if dense else ids[a]
                if keep_active:
                    act_out[r, a] = j
                cnt = push(idx, val, cnt, k, j, z[a])
