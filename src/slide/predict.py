"""Prediction from a :class:`slide.state.TrainState`: exact top-k over every output neuron,
or LSH-sparse top-k over the active set.

Exact mode computes layers with BLAS on row chunks (the logits of a chunk never exceed about
64 MB) and selects the top k per row in a parallel Numba kernel. LSH mode runs the same
per-sample forward as training, without labels (:mod:`slide.kernels.predict`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from .errors import DataFormatError, ParameterError
from .kernels.predict import predict_lsh_rows, topk_rows
from .network import make_work

_CHUNK_FLOATS = 1 << 24


def hidden_activations(net, X: sp.csr_matrix, upto: int) -> np.ndarray:
    """Dense activations of layer ``upto - 1`` (every neuron computed, ReLU applied), i.e. the
    input of layer ``upto``; ``upto`` >= 1."""
    H = np.asarray(X @ net.W.arrays[0]) + net.b.arrays[0]
    np.maximum(H, 0, out=H)
    for l in range(1, upto):
        H = H @ net.W.arrays[l].T + net.b.arrays[l]
        np.maximum(H, 0, out=H)
    return np.ascontiguousarray(H, dtype=np.float32)


def output_logits(net, X: sp.csr_matrix) -> np.ndarray:
    n_layers = len(net.W.arrays)
    if n_layers == 1:
        return np.ascontiguousarray(np.asarray(X @ net.W.arrays[0]) + net.b.arrays[0], dtype=np.float32)
    H = hidden_activations(net, X, n_layers - 1)
    return np.ascontiguousarray(H @ net.W.arrays[-1].T + net.b.arrays[-1], dtype=np.float32)


def predict_exact(net, X: sp.csr_matrix, k: int, lse: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ids and logits of every row; with ``lse`` (n,) also each row's log-sum-exp over
    all labels (the softmax's normaliser) written there."""
    n = X.shape[0]
    n_labels = net.b.arrays[-1].shape[0]
    out_idx = np.full((n, k), -1, np.int64)
    out_val = np.full((n, k), -np.inf, np.float32)
    chunk = max(1, min(8192, _CHUNK_FLOATS // max(1, n_labels)))
    for s in range(0, n, chunk):
        Z = output_logits(net, X[s:s + chunk])
        topk_rows(Z, k, out_idx, out_val, s)
        if lse is not None:
            lse[s:s + Z.shape[0]] = logsumexp(Z.astype(np.float64), axis=1)
    return out_idx, out_val


def predict_lsh(state, X: sp.csr_matrix, k: int, n_threads: int, return_active: bool = False):
    """LSH-sparse top-k; with ``return_active`` also the output layer's active sets as a CSR
    pattern matrix (n, n_labels)."""
    n = X.shape[0]
    out_idx = np.full((n, k), -1, np.int64)
    out_val = np.full((n, k), -np.inf, np.float32)
    cap = state.specs[-1].active_cap(0)
    act_out = np.zeros((n if return_active else 0, cap), np.int32)
    act_n = np.zeros(n, np.int64)
    if n > 0:
        max_nnz = int(np.diff(X.indptr).max())
        work = make_work(state.specs, state.hash_params, n_threads, n_threads, 0, max_nnz, training=False)
        predict_lsh_rows(state.net, state.lsh, work, X.indptr, X.indices, X.data, k, n_threads,
                         out_idx, out_val, act_out, act_n)
    if not return_active:
        return out_idx, out_val
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(act_n, out=indptr[1:])
    mask = np.arange(cap)[None, :] < act_n[:, None]
    A = sp.csr_matrix((np.ones(int(indptr[-1]), np.float32), act_out[mask], indptr), shape=(n, state.n_labels))
    return out_idx, out_val, A


def retrieval_recall(state, X: sp.csr_matrix, k: int, n_threads: int) -> dict:
    """How well the output layer's LSH active sets (no labels added, as at prediction) cover the
    true top-``k`` logits: mean recall, mean active-set size, and the share of the softmax mass
    (over all labels) inside the active set."""
    n = X.shape[0]
    if n == 0:
        return {f"recall@{k}": float("nan"), "active_mean": float("nan"), "softmax_mass": float("nan")}
    _, _, A = predict_lsh(state, X, k, n_threads, return_active=True)
    hits = mass = 0.0
    chunk = max(1, _CHUNK_FLOATS // max(1, state.n_labels))
    for s in range(0, n, chunk):
        Z = output_logits(state.net, X[s:s + chunk])
        Ac = A[s:s + chunk].toarray() > 0
        top = np.argpartition(-Z, k - 1, axis=1)[:, :k]
        hits += np.take_along_axis(Ac, top, axis=1).sum()
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        mass += (P * Ac).sum()
    return {f"recall@{k}": hits / (n * k), "active_mean": float(np.diff(A.indptr).mean()),
            "softmax_mass": mass / n}


# the check's rows: at least and at most, within a budget of exact scoring's multiply-adds that
# keeps it to about 1% of a fit (0.05 s on 2 cores; the reference workload gets 156 rows)
LSH_CHECK_ROWS = (50, 1000)
LSH_CHECK_MACS = 1e9


def lsh_check(state, X: sp.csr_matrix, n_threads: int, seed: int = 0) -> dict:
    """How often LSH-sparse prediction's top label is exact prediction's, on a sample of the
    rows of X (drawn with ``seed``; as many as :data:`LSH_CHECK_MACS` allows, 50 to 1,000): what
    tells a server whether the hash tables can stand in for the full output layer of this model."""
    out = state.specs[-1]
    lo, hi = LSH_CHECK_ROWS
    want = int(min(hi, max(lo, LSH_CHECK_MACS // (out.n_out * out.n_in))))
    rows = X.shape[0]
    if rows > want:
        pick = np.sort(np.random.default_rng(seed).choice(rows, want, replace=False))
        X = X[pick]
    exact = predict_exact(state.net, X, 1)[0][:, 0]
    lsh = predict_lsh(state, X, 1, n_threads)[0][:, 0]
    return {"rows": int(X.shape[0]), "top1_agreement": float(np.mean(exact == lsh))}


def predict_topk(state, X: sp.csr_matrix, k: int, mode: str, n_threads: int):
    if mode == "lsh" and any(s.lsh for s in state.specs):
        return predict_lsh(state, X, k, n_threads)
    return predict_exact(state.net, X, k)


def predict_proba(state, X: sp.csr_matrix, k: int, mode: str, n_threads: int):
    """(ids, probabilities) of each row's top k: the softmax over all labels ('exact'), or
    over the k retrieved ('lsh')."""
    if mode == "lsh" and any(s.lsh for s in state.specs):
        ids, z = predict_lsh(state, X, k, n_threads)
        z = z.astype(np.float64)
        z[ids < 0] = -np.inf
        lse = logsumexp(z, axis=1) if k else np.zeros(0)
    else:
        lse = np.zeros(X.shape[0], np.float64)
        ids, z = predict_exact(state.net, X, k, lse)
    with np.errstate(invalid="ignore"):
        probs = np.exp(z.astype(np.float64) - lse[:, None])
    probs[ids < 0] = 0.0
    return ids, probs.astype(np.float32)


def topk_matrix(ids: np.ndarray, values: np.ndarray, n_labels: int) -> sp.csr_array:
    """CSR (n, n_labels) holding each row's top-k ``values`` at their ids (-1 ids left out),
    columns sorted within a row. A sparse *array*: ``M.sum(axis=1)`` and ``M.argmax(axis=1)``
    are 1-D, as on a dense array."""
    n = ids.shape[0]
    keep = ids >= 0
    rows = np.repeat(np.arange(n), keep.sum(axis=1))
    M = sp.csr_array((values[keep], (rows, ids[keep])), shape=(n, n_labels))
    M.sort_indices()
    return M


def decision_function(state, X: sp.csr_matrix, labels=None) -> np.ndarray:
    net = state.net
    n_labels = state.n_labels
    n = X.shape[0]
    if labels is None:
        return output_logits(net, X)
    lab = np.asarray(labels)
    if lab.size == 0 and lab.dtype.kind == "f":
        lab = lab.astype(np.int64)  # an empty list ([] is float64 to NumPy): no labels to score
    if not np.issubdtype(lab.dtype, np.integer) or lab.ndim not in (1, 2):
        raise ParameterError(f"The 'labels' argument of decision_function must be an int array of shape "
                             f"(m,) or (n_samples, m). Got dtype {lab.dtype}, shape {lab.shape} instead.")
    if lab.size and (lab.min() < 0 or lab.max() >= n_labels):
        raise ParameterError(f"The 'labels' argument of decision_function must hold ids in [0, {n_labels}). "
                             f"Got ids from {lab.min()} to {lab.max()} instead.")
    if lab.ndim == 2 and lab.shape[0] != n:
        raise DataFormatError(f"labels has {lab.shape[0]} rows but X has {n}.")
    n_layers = len(net.W.arrays)
    if n_layers == 1:
        Wt = net.W.arrays[0]  # (n_features, n_labels)
        if lab.ndim == 1:
            return np.asarray(X @ Wt[:, lab]) + net.b.arrays[0][lab]
        out = np.empty(lab.shape, np.float32)
        for i in range(n):
            row = X[i]
            out[i] = np.asarray(row @ Wt[:, lab[i]]).ravel() + net.b.arrays[0][lab[i]]
        return out
    H = hidden_activations(net, X, n_layers - 1)
    Wo, bo = net.W.arrays[-1], net.b.arrays[-1]
    if lab.ndim == 1:
        return H @ Wo[lab].T + bo[lab]
    return np.einsum("nh,nmh->nm", H, Wo[lab]) + bo[lab]
