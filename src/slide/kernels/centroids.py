"""Kernels of the centroid initialisation of the output layer (:mod:`slide.centroids`).

:func:`first_layer_rows` computes the first layer for a block of rows at once (every neuron, in
parallel over rows); :func:`add_label_sums` adds each row's last hidden vector to the rows of
its labels; :func:`finish_centroids` turns those sums into centred, scaled unit vectors in place.
The output weights themselves hold the sums, so a 670k-label layer needs no second copy.
:func:`imprint_rows` turns trained rows towards such centroids, keeping their lengths (the
imprinting at the end of training, :func:`slide.centroids.imprint_output`).
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
def add_label_sums(Y_indptr, Y_indices, r0, H, sums, j0):
    """sums[j - j0] += H[r - r0] for every label j in [j0, j0 + len(sums)) of every row r of the
    block ``H`` (rows r0...); labels outside that range are skipped (a block of the layer).
    Serial, so the sums do not depend on the thread count."""
    n_h = H.shape[1]
    j1 = j0 + sums.shape[0]
    for i in range(H.shape[0]):
        r = r0 + i
        h = H[i]
        for p in range(Y_indptr[r], Y_indptr[r + 1]):
            j = Y_indices[p]
            if j < j0 or j >= j1:
                continue
            s = sums[j - j0]
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


@njit(cache=True, parallel=True, fastmath=False)
def imprint_rows(W, sums, counts, j0, mean, weight):
    """For each row j = j0 + i of W whose label has counts[j] > 0 points: u = sums[i] / counts[j]
    - mean, and W[j] becomes (1 - weight) W[j] + weight |W[j]| u / |u| (a zero u or a zero row is
    left as it is). The norms accumulate in float64."""
    d = W.shape[1]
    for i in prange(sums.shape[0]):
        j = j0 + i
        c = counts[j]
        if c == 0:
            continue
        inv = 1.0 / c
        uu = 0.0
        ww = 0.0
        for k in range(d):
            u = sums[i, k] * inv - mean[k]
            uu += u * u
            ww += np.float64(W[j, k]) * W[j, k]
        if uu == 0.0 or ww == 0.0:
            continue
        f = weight * np.sqrt(ww) / np.sqrt(uu)
        for k in range(d):
            W[j, k] = (1.0 - weight) * W[j, k] + f * (sums[i, k] * inv - mean[k])