"""Kernels of the centroid initialisation of the output layer (:mod:`slide.centroids`).

:func:`first_layer_rows` computes the first layer for a block of rows at once (every neuron, in
parallel over rows); :func:`add_label_sums` adds each row's last hidden vector to the rows of
its labels; :func:`finish_centroids` turns those sums into centred, scaled unit vectors in place.
The output weights themselves hold the sums, so a 670k-label layer needs no second copy.
"""

import numpy as np
from numba import njit, prange

from .layers import FASTMATH


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def first_layer_rows(indptr, indices, data, r0, r1, W, b, relu, out):
    """out[r - r0] = b + sum_k data_k W[indices_k] over the non-zeros of CSR rows r0..r1, with
    ReLU if ``relu``. W is input-major (n_features, n_out), as layer 0 stores it."""
    n_out = W.shape[1]
    for r in prange(r0, r1):
        h = out[r - r0]
        for j in range(n_out):
            h[j] = b[j]
        for k in range(indptr[r], indptr[r + 1]):
            v = data[k]
            f = indices[k]
            for j in range(n_out):
                h[j] += v * W[f, j]  # in place, not a view (see slide.kernels.optim.step_row)
        if relu:
            for j in range(n_out):
                if h[j] < 0:
                    h[j] = 0.0


@njit(cache=True, fastmath=False)
def add_label_sums(Y_indptr, Y_indices, r0, H, sums):
    """sums[j] += H[r - r0] for every label j of every row r of the block ``H`` (rows r0...).
    Serial, so the sums do not depend on the thread count."""
    n_h = H.shape[1]
    for i in range(H.shape[0]):
        r = r0 + i
        h = H[i]
        for p in range(Y_indptr[r], Y_indptr[r + 1]):
            s = sums[Y_indices[p]]
            for c in range(n_h):
                s[c] += h[c]


@njit(cache=True, parallel=True, fastmath=False)
def finish_centroids(W, counts, mean, scale):
    """Rows j with counts[j] > 0 hold sums of their points' hidden vectors: replace each by
    scale * u / |u|, u = sum / count - mean (rows with no point are left as they are)."""
    n, d = W.shape
    for j in prange(n):
        c = counts[j]
        if c == 0:
            continue
        inv = 1.0 / c
        ss = 0.0
        for i in range(d):
            u = W[j, i] * inv - mean[i]
            W[j, i] = u
            ss += u * u
        f = scale / np.sqrt(ss) if ss > 0 else 0.0
        for i in range(d):
            W[j, i] = W[j, i] * f
