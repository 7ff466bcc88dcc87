"""Centroid initialisation of the output layer (``output_init='centroid'``).

With uniform random output rows every label starts at the same logit, and a label with three
training points gets three small updates per epoch: on real long-tail data (debian-package-search,
3.3 points per label) a network spent its first epochs on a loss plateau and ended below the
label trees. Here the output row of each label starts as the direction in which its training
points' hidden vectors (under the random first layers) lie from the mean hidden vector, so the
untrained network is already a nearest-centroid classifier over random features, the hash tables
built from those rows retrieve meaningful candidates from the first batch, and training refines
from there (the label-tree methods start from label centroids the same way: PECOS' PIFA
embedding). Measured in ``benchmarks/RESULTS.md`` section 11.
"""

from __future__ import annotations

import numpy as np

from .kernels.centroids import add_label_sums, finish_centroids, first_layer_rows, imprint_rows

CHUNK_FLOATS = 1 << 22  # hidden activations computed per block: about 16 MB


def hidden_block(Ws, bs, X, r0: int, r1: int, buf: np.ndarray) -> np.ndarray:
    """ReLU activations of the last hidden layer for rows r0..r1 of CSR X (every neuron)."""
    H = buf[: r1 - r0]
    first_layer_rows(X.indptr, X.indices, X.data, r0, r1, Ws[0], bs[0], True, H)
    for W, b in zip(Ws[1:-1], bs[1:-1]):
        H = np.maximum(H @ W.T + b, 0, dtype=np.float32)
    return H


def _hidden_blocks(Ws, bs, X, chunk_floats: int):
    """(r0, ReLU activations of the last hidden layer for rows r0...) over X in blocks of about
    ``chunk_floats`` floats, computed into one reused buffer."""
    step = max(1, chunk_floats // max(Ws[0].shape[1], Ws[-1].shape[1]))
    buf = np.empty((min(step, max(1, X.shape[0])), Ws[0].shape[1]), np.float32)
    for r0 in range(0, X.shape[0], step):
        yield r0, hidden_block(Ws, bs, X, r0, min(X.shape[0], r0 + step), buf)


def _label_counts(Y, n_labels: int, reduce) -> np.ndarray:
    """Training points per label (over every worker's shard with ``reduce``)."""
    counts = np.bincount(Y.indices, minlength=n_labels).astype(np.int64)
    if reduce is not None:
        reduce([counts])
    return counts


def init_output_centroids(Ws: list, bs: list, X, Y, scale: float, reduce=None) -> int:
    """Set each output row ``Ws[-1][j]`` of a label with training points to
    ``scale * u_j / (|u_j| * mean |h|)``, where u_j is the mean hidden vector of its points minus
    the mean hidden vector of all labelled points and mean |h| their mean hidden norm: a point of
    average norm aligned with its label's direction starts with logit ``scale``. Rows of labels
    without points keep their random values; biases are untouched. Needs a hidden layer (the
    caller checks). ``reduce(arrays)``, if given, sums each of the arrays in place over the
    data-parallel workers (each holding a shard of X, Y) before the rows are finished. Returns the
    number of rows set."""
    W_out = Ws[-1]
    n_labels, n_hidden = W_out.shape
    counts = _label_counts(Y, n_labels, reduce)
    has_points = counts > 0
    W_out[has_points] = 0.0  # the rows accumulate their points' sums
    labelled = np.diff(Y.indptr) > 0
    h_sum = np.zeros(n_hidden, np.float64)
    norm_sum = 0.0
    for r0, H in _hidden_blocks(Ws, bs, X, CHUNK_FLOATS):
        keep = labelled[r0:r0 + H.shape[0]]
        h_sum += H[keep].sum(axis=0, dtype=np.float64)
        norm_sum += float(np.sqrt(np.einsum("ij,ij->i", H[keep], H[keep], dtype=np.float64)).sum())
        add_label_sums(Y.indptr, Y.indices, r0, H, W_out, 0)
    totals = np.array([norm_sum, labelled.sum()], np.float64)
    if reduce is not None:  # only the rows with points: the others keep their (shared) random values
        sums = W_out[has_points]
        reduce([sums, h_sum, totals])
        W_out[has_points] = sums
    norm_sum, n = float(totals[0]), max(1, int(totals[1]))
    mean_norm = norm_sum / n
    # all-zero hidden vectors (empty rows) leave nothing to align with: the rows stay zero
    factor = scale / mean_norm if mean_norm > 0 else 0.0
    finish_centroids(W_out, counts, (h_sum / n).astype(np.float32), np.float32(factor))
    return int(has_points.sum())


IMPRINT_BLOCK_BYTES = 1 << 29  # label sums held at once: 512 MB (a bigger layer takes several passes)
IMPRINT_CHUNK_FLOATS = 1 << 18  # hidden activations computed per block: 1 MB


def imprint_output(Ws: list, bs: list, X, Y, weight: float, reduce=None) -> int:
    """Turn each trained output row ``Ws[-1][j]`` of a label with training points ``weight`` of
    the way towards u_j = (mean hidden vector of its points) - (mean hidden vector of all labelled
    points), under the trained network, keeping the row's length: W_j <- (1 - weight) W_j +
    weight |W_j| u_j / |u_j| ("weight imprinting", Qi et al. 2018). Training moves a rare label's
    row only on its few points' batches, early on through a first layer that has changed since;
    the centroid under the final first layer is where those points now lie. Biases and rows of
    labels without points are untouched. The label sums are made in blocks of at most
    ``IMPRINT_BLOCK_BYTES`` (one pass over X per block). ``reduce`` as in
    :func:`init_output_centroids`. Returns the number of rows turned."""
    W_out = Ws[-1]
    n_labels, n_hidden = W_out.shape
    counts = _label_counts(Y, n_labels, reduce)
    labelled = np.diff(Y.indptr) > 0
    block = max(1, IMPRINT_BLOCK_BYTES // (4 * n_hidden))
    h_sum = np.zeros(n_hidden, np.float64)
    totals = np.zeros(1, np.float64)
    mean = None
    for j0 in range(0, n_labels, block):
        sums = np.zeros((min(block, n_labels - j0), n_hidden), np.float32)
        # a small reused block of hidden vectors: at the end of a short fit, fresh pages cost more
        # than the passes (this virtual machine faults in about 1 GB a second)
        for r0, H in _hidden_blocks(Ws, bs, X, IMPRINT_CHUNK_FLOATS):
            if mean is None:
                keep = labelled[r0:r0 + H.shape[0]]
                h_sum += (H if keep.all() else H[keep]).sum(axis=0, dtype=np.float64)
                totals[0] += keep.sum()
            add_label_sums(Y.indptr, Y.indices, r0, H, sums, j0)
        if reduce is not None:
            reduce([sums] if mean is not None else [sums, h_sum, totals])
        if mean is None:
            mean = (h_sum / max(1.0, totals[0])).astype(np.float32)
        imprint_rows(W_out, sums, counts, j0, mean, np.float32(weight))
    return int((counts > 0).sum())
