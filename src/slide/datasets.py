"""Seeded generators of learnable sparse extreme-classification data.

The model behind :func:`make_extreme`:

- labels have Zipf(``label_power``) popularity (ids shuffled, so id order means nothing) and
  belong to clusters of ``cluster_size`` related labels;
- every cluster has a *topic*: a weighted set of ``topic_size`` features its labels share, and
  every label has its own weighted prototype of ``proto_size`` features;
- a point draws 1 + Poisson(avg_labels - 1) labels: the first by popularity, each further one
  from the first one's cluster with probability ``cluster_affinity`` (labels co-occur), else by
  popularity;
- its features are draws from the mixture: background noise (Zipf over features) with
  probability ``noise``, else a topic feature (probability ``topic_share``) or a prototype
  feature of one of its labels; counts become values and rows are L2-normalised.

Related labels share topic features, so telling them apart needs the hard negatives an LSH
active set must retrieve. Rows are generated in fixed blocks of 4096 with their own seeds, so
the data are the same whatever the chunk size, and :func:`iter_extreme` streams data sets that
do not fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import ParameterError

_BLOCK = 4096


@dataclass(frozen=True)
class _Model:
    n_features: int
    n_labels: int
    label_cdf: np.ndarray  # popularity, cumulative
    label_cluster: np.ndarray  # cluster of each label
    cluster_members: np.ndarray  # labels sorted by cluster
    cluster_start: np.ndarray  # offsets into cluster_members
    cluster_cdf: np.ndarray  # within-cluster popularity cumulative (aligned with members)
    proto_feat: np.ndarray  # (n_labels, proto_size)
    proto_cdf: np.ndarray
    topic_feat: np.ndarray  # (n_clusters, topic_size)
    topic_cdf: np.ndarray
    noise_cdf: np.ndarray
    noise_perm: np.ndarray


def _zipf_cdf(n: int, power: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** power
    c = np.cumsum(w)
    return c / c[-1]


def _weighted_sets(rng, n_sets, size, n_features):
    feats = rng.integers(0, n_features, size=(n_sets, size), dtype=np.int64)
    w = rng.exponential(1.0, size=(n_sets, size))
    cdf = np.cumsum(w, axis=1)
    cdf /= cdf[:, -1:]
    cdf += np.arange(n_sets)[:, None]  # row r spans (r, r + 1]: see _sample_cdf_rows
    return feats.astype(np.int32), cdf


def _build_model(seed, n_features, n_labels, label_power, cluster_size, proto_size, topic_size):
    rng = np.random.default_rng([seed, 0])
    pop_rank = rng.permutation(n_labels)  # label id -> popularity rank
    label_cdf_rank = _zipf_cdf(n_labels, label_power)
    # label_cdf over ranks; map ranks back to ids when sampling
    n_clusters = max(1, -(-n_labels // cluster_size))
    label_cluster = rng.permutation(np.arange(n_labels) % n_clusters)
    members = np.argsort(label_cluster, kind="stable")
    start = np.zeros(n_clusters + 1, np.int64)
    np.cumsum(np.bincount(label_cluster, minlength=n_clusters), out=start[1:])
    pop = 1.0 / (pop_rank[members] + 1.0) ** label_power
    ccdf = np.empty(n_labels)
    for c in range(n_clusters):  # n_clusters python steps, fine (model built once)
        s, e = start[c], start[c + 1]
        cs = np.cumsum(pop[s:e])
        ccdf[s:e] = cs / cs[-1]
    proto_feat, proto_cdf = _weighted_sets(rng, n_labels, proto_size, n_features)
    topic_feat, topic_cdf = _weighted_sets(rng, n_clusters, topic_size, n_features)
    noise_perm = rng.permutation(n_features).astype(np.int32)
    model = _Model(n_features, n_labels, label_cdf_rank, label_cluster, members, start, ccdf,
                   proto_feat, proto_cdf, topic_feat, topic_cdf, _zipf_cdf(n_features, 1.0), noise_perm)
    rank_to_id = np.argsort(pop_rank)
    return model, rank_to_id


def _sample_cdf_rows(rng, cdf_rows, row_idx):
    """One draw from each of the categorical rows cdf_rows[row_idx] (vectorised): the rows are
    stored shifted by their row number (row r spans (r, r + 1]), so one searchsorted serves all."""
    width = cdf_rows.shape[1]
    u = rng.random(row_idx.size)
    pos = np.searchsorted(cdf_rows.ravel(), row_idx + u, side="right") - row_idx * width
    return np.clip(pos, 0, width - 1)


def _block(model, rank_to_id, seed, block_no, n_rows, avg_labels, draws_per_row, noise,
           topic_share, cluster_affinity):
    rng = np.random.default_rng([seed, 1, block_no])
    m = model
    n_lab = 1 + rng.poisson(max(0.0, avg_labels - 1.0), size=n_rows)
    n_lab = np.minimum(n_lab, m.n_labels)
    total = int(n_lab.sum())
    row_of = np.repeat(np.arange(n_rows), n_lab)
    first = rank_to_id[np.searchsorted(m.label_cdf, rng.random(n_rows), side="right").clip(max=m.n_labels - 1)]
    labels = rank_to_id[np.searchsorted(m.label_cdf, rng.random(total), side="right").clip(max=m.n_labels - 1)]
    pos_in_row = np.arange(total) - np.repeat(np.cumsum(n_lab) - n_lab, n_lab)
    labels[pos_in_row == 0] = first
    same = (pos_in_row > 0) & (rng.random(total) < cluster_affinity)
    if same.any():
        cl = m.label_cluster[first[row_of[same]]]
        s, e = m.cluster_start[cl], m.cluster_start[cl + 1]
        u = rng.random(same.sum())
        pick = _within(m.cluster_cdf, s, e, u)
        labels[same] = m.cluster_members[np.minimum(s + pick, e - 1)]
    Y = sp.csr_matrix((np.ones(total, np.float32), (row_of, labels)), shape=(n_rows, m.n_labels))
    Y.data[:] = 1.0  # duplicate labels were summed
    Y.sort_indices()
    # features
    n_draw = np.maximum(1, rng.poisson(draws_per_row, size=n_rows))
    D = int(n_draw.sum())
    drow = np.repeat(np.arange(n_rows), n_draw)
    kind = rng.random(D)
    feats = np.empty(D, np.int64)
    is_noise = kind < noise
    k = int(is_noise.sum())
    feats[is_noise] = m.noise_perm[np.searchsorted(m.noise_cdf, rng.random(k), side="right").clip(max=m.n_features - 1)]
    rest = ~is_noise
    rr = drow[rest]
    # pick one of the row's labels uniformly
    y_ptr, y_idx = Y.indptr, Y.indices
    cnt = np.diff(y_ptr)[rr]
    lab = y_idx[y_ptr[rr] + (rng.random(rr.size) * cnt).astype(np.int64)]
    topic = rng.random(rr.size) < topic_share
    out = np.empty(rr.size, np.int64)
    if topic.any():
        cl = m.label_cluster[lab[topic]]
        out[topic] = m.topic_feat[cl, _sample_cdf_rows(rng, m.topic_cdf, cl)]
    if (~topic).any():
        lb = lab[~topic]
        out[~topic] = m.proto_feat[lb, _sample_cdf_rows(rng, m.proto_cdf, lb)]
    feats[rest] = out
    X = sp.csr_matrix((np.ones(D, np.float32), (drow, feats)), shape=(n_rows, m.n_features))
    X.sum_duplicates()
    X.data = np.log1p(X.data).astype(np.float32)  # sub-linear counts, as tf weighting does
    norms = np.sqrt(np.add.reduceat(X.data.astype(np.float64) ** 2, X.indptr[:-1]))
    X.data /= np.repeat(norms, np.diff(X.indptr)).astype(np.float32)
    return X, Y


def _within(cdf, s, e, u):
    """Vectorised searchsorted of u[i] in cdf[s[i]:e[i]] (all segments sorted)."""
    width = int((e - s).max())
    idx = s[:, None] + np.arange(width)[None, :]
    valid = idx < e[:, None]
    vals = np.where(valid, cdf[np.minimum(idx, len(cdf) - 1)], np.inf)
    return (vals <= u[:, None]).sum(axis=1)


def _check(name, value, low, high=None, integer=True):
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.floating, np.integer))
    if isinstance(value, bool) or not ok or value < low or (high is not None and value > high):
        rng = f"[{low}, {high if high is not None else 'inf'}]"
        raise ParameterError(f"The '{name}' parameter of make_extreme must be {'an int' if integer else 'a number'} "
                             f"in {rng}. Got {value!r} instead.")


def iter_extreme(n_samples=20000, n_features=100_000, n_labels=50_000, *, avg_labels=3.0, avg_nnz=73.0,
                 label_power=1.0, cluster_size=16, proto_size=24, topic_size=48, noise=0.15,
                 topic_share=0.35, cluster_affinity=0.6, random_state=0, chunk_size=_BLOCK * 16,
                 start=0):
    """Yield (X, Y) chunks of :func:`make_extreme` data (rows ``start`` to ``start + n_samples``)
    without holding more than one chunk in memory."""
    _check("n_samples", n_samples, 0)
    _check("n_features", n_features, 1)
    _check("n_labels", n_labels, 1)
    _check("avg_labels", avg_labels, 1, None, integer=False)
    _check("avg_nnz", avg_nnz, 1, None, integer=False)
    _check("label_power", label_power, 0, 10, integer=False)
    _check("cluster_size", cluster_size, 1)
    _check("proto_size", proto_size, 1)
    _check("topic_size", topic_size, 1)
    _check("noise", noise, 0, 1, integer=False)
    _check("topic_share", topic_share, 0, 1, integer=False)
    _check("cluster_affinity", cluster_affinity, 0, 1, integer=False)
    _check("random_state", random_state, 0)
    _check("chunk_size", chunk_size, 1)
    model, rank_to_id = _build_model(int(random_state), n_features, n_labels, label_power, cluster_size,
                                     proto_size, topic_size)
    lab_mean, draws = _calibrate(model, rank_to_id, random_state, avg_labels, avg_nnz, noise, topic_share,
                                 cluster_affinity)
    row, stop = start, start + n_samples
    pend_X, pend_Y, pend_n = [], [], 0
    while row < stop:
        b = row // _BLOCK
        X, Y = _block(model, rank_to_id, random_state, b, _BLOCK, lab_mean, draws, noise, topic_share,
                      cluster_affinity)
        lo, hi = row - b * _BLOCK, min(_BLOCK, stop - b * _BLOCK)
        pend_X.append(X[lo:hi])
        pend_Y.append(Y[lo:hi])
        pend_n += hi - lo
        row = b * _BLOCK + hi
        if pend_n >= chunk_size or row >= stop:
            yield sp.vstack(pend_X, format="csr"), sp.vstack(pend_Y, format="csr")
            pend_X, pend_Y, pend_n = [], [], 0


def _calibrate(model, rank_to_id, seed, avg_labels, avg_nnz, noise, topic_share, cluster_affinity):
    """Label and feature draws per row that give about ``avg_labels`` distinct labels and
    ``avg_nnz`` distinct features per row (draws repeat), found with pilot blocks."""
    lab, draws = float(avg_labels), float(avg_nnz)
    for it in range(4):
        X, Y = _block(model, rank_to_id, seed, 10**9 + it, 2048, lab, draws, noise, topic_share,
                      cluster_affinity)
        got_l, got_f = Y.nnz / 2048, X.nnz / 2048
        lab = 1.0 + (lab - 1.0) * (avg_labels - 1.0) / max(got_l - 1.0, 1e-3) if avg_labels > 1 else 1.0
        draws *= avg_nnz / max(got_f, 1e-9)
    return lab, draws


# Published dimensions of benchmark data sets (Extreme Classification Repository) and the
# workload of issue #2; ``scale`` shrinks the number of points, never the dimensions.
PRESETS = {
    "slide-reference": dict(n_train=20_000, n_test=2_000, n_features=100_000, n_labels=50_000, avg_nnz=73.0,
                            avg_labels=3.0),
    "amazon-670k": dict(n_train=490_449, n_test=153_025, n_features=135_909, n_labels=670_091, avg_nnz=75.7,
                        avg_labels=5.45),
    "delicious-200k": dict(n_train=196_606, n_test=100_095, n_features=782_585, n_labels=205_443, avg_nnz=301.0,
                           avg_labels=75.5),
}


def preset(name: str, *, scale: float = 1.0, random_state: int = 0, **kw):
    """(X_train, Y_train, X_test, Y_test) of a preset (see :data:`PRESETS`) with the published
    feature and label dimensions and per-point statistics; ``scale`` in (0, 1] keeps that
    fraction of the training and test points. Other keywords go to :func:`make_extreme`."""
    if name not in PRESETS:
        raise ParameterError(f"Unknown preset {name!r}; expected one of {', '.join(sorted(PRESETS))}.")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (0 < scale <= 1):
        raise ParameterError(f"The 'scale' parameter of preset must be a number in (0, 1]. Got {scale!r} instead.")
    s = PRESETS[name]
    n_train = max(1, int(round(s["n_train"] * scale)))
    n_test = max(1, int(round(s["n_test"] * scale)))
    return make_extreme(n_train, s["n_features"], s["n_labels"], n_test=n_test, avg_nnz=s["avg_nnz"],
                        avg_labels=s["avg_labels"], random_state=random_state, **kw)


def iter_preset(name: str, *, scale: float = 1.0, random_state: int = 0, split: str = "train",
                chunk_size: int = 65536, **kw):
    """Stream a preset's training or test split in chunks of ``chunk_size`` rows (the same rows as
    :func:`preset`), for sets too big to hold at once."""
    s = PRESETS[name]
    n_train = max(1, int(round(s["n_train"] * scale)))
    n_test = max(1, int(round(s["n_test"] * scale)))
    start, n = (0, n_train) if split == "train" else (n_train, n_test)
    return iter_extreme(n, s["n_features"], s["n_labels"], avg_nnz=s["avg_nnz"], avg_labels=s["avg_labels"],
                        random_state=random_state, chunk_size=chunk_size, start=start, **kw)


def make_extreme(n_samples=20000, n_features=100_000, n_labels=50_000, *, n_test=0, random_state=0, **kw):
    """Generate a sparse extreme multi-label data set (see the module docstring for the model).

    Parameters
    ----------
    n_samples, n_features, n_labels : int
        Training points, feature dimension and number of labels.
    n_test : int
        If > 0, also return that many test points from the same distribution (rows following
        the training rows).
    avg_labels, avg_nnz, label_power, cluster_size, proto_size, topic_size, noise, topic_share,
    cluster_affinity : see :func:`iter_extreme`.
    random_state : int

    Returns
    -------
    (X, Y) or (X_train, Y_train, X_test, Y_test): float32 CSR features with unit-norm rows and
    binary float32 CSR labels.
    """
    parts = list(iter_extreme(n_samples + n_test, n_features, n_labels, random_state=random_state,
                              chunk_size=max(1, n_samples + n_test), **kw))
    if parts:
        X, Y = parts[0] if len(parts) == 1 else (sp.vstack([p[0] for p in parts], format="csr"),
                                                  sp.vstack([p[1] for p in parts], format="csr"))
    else:
        X = sp.csr_matrix((0, n_features), dtype=np.float32)
        Y = sp.csr_matrix((0, n_labels), dtype=np.float32)
    if n_test > 0:
        return X[:n_samples], Y[:n_samples], X[n_samples:], Y[n_samples:]
    return X, Y
