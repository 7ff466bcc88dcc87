"""Hash functions and hash tables of one LSH layer: construction, rebuilding and the schedule.

The kernels live in :mod:`slide.kernels.hashing` and :mod:`slide.kernels.tables`; this module
draws the random parameters (from a seed, so a model can store the seed instead of the arrays),
hashes every neuron's weight vector and fills the tables.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from .kernels.hashing import (
    DOPH,
    DOPH_CODE_BITS,
    DWTA,
    SIMHASH,
    WTA,
    HashParams,
    hash_rows_keys,
    simhash_signs_to_keys,
)
from .kernels.tables import FIFO, RESERVOIR, insert_keys

FAMILIES = {"simhash": SIMHASH, "wta": WTA, "dwta": DWTA, "doph": DOPH}
INSERTIONS = {"fifo": FIFO, "reservoir": RESERVOIR}


def code_bits_of(family: str, bin_size: int) -> int:
    """Bits one code of ``family`` occupies in a bucket key."""
    if family == "simhash":
        return 1
    if family in ("wta", "dwta"):
        return max(1, math.ceil(math.log2(bin_size)))
    return DOPH_CODE_BITS


def _empty(dtype, ndim):
    return np.zeros((0,) * ndim, dtype)


def make_hash_params(hash_family: str, hashes_per_table: int, n_tables: int, dim: int, *, bucket_bits: int,
                     seed: int, wta_bin_size: int = 8, simhash_density: float = 1.0,
                     doph_top: int = 32) -> HashParams:
    """Draw the random parameters of ``n_tables`` tables of ``hashes_per_table`` codes over
    ``dim``-dimensional vectors.

    ``bucket_bits`` is capped at hashes_per_table * code_bits (a table cannot have more distinct
    keys than that).
    """
    rng = np.random.default_rng(seed)
    fam = FAMILIES[hash_family]
    n_codes = hashes_per_table * n_tables
    cb = code_bits_of(hash_family, wta_bin_size)
    bucket_bits = int(min(bucket_bits, hashes_per_table * cb))
    i32 = np.int32
    proj = proj_t = _empty(np.float32, 2)
    sp_indptr, sp_indices, sp_signs = np.zeros(1, i32), _empty(i32, 1), _empty(np.float32, 1)
    sp_t_indptr, sp_t_codes, sp_t_signs = np.zeros(1, i32), _empty(i32, 1), _empty(np.float32, 1)
    bins = np.zeros((0, 1), i32)
    coord_indptr, coord_code, coord_pos = np.zeros(1, i32), _empty(i32, 1), _empty(i32, 1)
    doph_a = doph_b = _empty(np.uint64, 1)
    if fam == SIMHASH:
        signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=(n_codes, dim))
        if simhash_density >= 1.0:
            proj = np.ascontiguousarray(signs)
            proj_t = np.ascontiguousarray(signs.T)
        else:
            keep = rng.random((n_codes, dim)) < simhash_density
            R = sp.csr_matrix(np.where(keep, signs, 0).astype(np.float32))
            R.sort_indices()
            sp_indptr, sp_indices, sp_signs = R.indptr.astype(i32), R.indices.astype(i32), R.data
            Rt = R.T.tocsr()
            Rt.sort_indices()
            sp_t_indptr, sp_t_codes, sp_t_signs = Rt.indptr.astype(i32), Rt.indices.astype(i32), Rt.data
    elif fam in (WTA, DWTA):
        # each permutation is cut into dim // wta_bin_size whole bins (the rest is dropped), so the
        # coordinates of one bin are always distinct
        per_perm = dim // wta_bin_size
        n_perm = math.ceil(n_codes / per_perm)
        perm = np.concatenate([rng.permutation(dim)[: per_perm * wta_bin_size] for _ in range(n_perm)])
        bins = perm[: n_codes * wta_bin_size].reshape(n_codes, wta_bin_size).astype(i32)
        flat = bins.ravel()
        order = np.argsort(flat, kind="stable")
        coord_code = (order // wta_bin_size).astype(i32)
        coord_pos = (order % wta_bin_size).astype(i32)
        coord_indptr = np.zeros(dim + 1, i32)
        np.cumsum(np.bincount(flat, minlength=dim), out=coord_indptr[1:])
    else:
        doph_a = rng.integers(1, 2**63, size=n_tables, dtype=np.uint64) | np.uint64(1)
        doph_b = rng.integers(0, 2**63, size=n_tables, dtype=np.uint64)
    seed64 = np.uint64(rng.integers(0, 2**63))
    fold_mult = np.uint64(rng.integers(0, 2**63)) * np.uint64(2) + np.uint64(1)
    return HashParams(
        fam, int(hashes_per_table), int(n_tables), int(cb), bucket_bits, int(dim), seed64, fold_mult,
        proj, proj_t, sp_indptr, sp_indices, sp_signs, sp_t_indptr, sp_t_codes, sp_t_signs,
        bins, coord_indptr, coord_code, coord_pos, doph_a, doph_b, int(doph_top),
    )


def neuron_rows(W: np.ndarray, b: np.ndarray, ids: np.ndarray, *, input_major: bool, mips: bool,
                max_norm: float, center: np.ndarray | None = None) -> np.ndarray:
    """The hashed vectors of neurons ``ids``: u = [w, b] - c (the query side is [x, 1]), or with
    ``mips`` [u/M, sqrt(1 - |u/M|^2)] (M = max_norm of u over all neurons; query [x, 1, 0]).

    ``c`` (``center``, default 0) is a vector common to all neurons: subtracting it changes every
    logit of a query by the same amount (c . [x, 1]), so the ranking of neurons by logit is
    unchanged, while the hashed vectors lose the direction they all share. After a few epochs
    of softmax training every output neuron has been pushed the same way (away from the average
    hidden vector), and without centering most neurons fall into a handful of buckets."""
    w = W[:, ids].T if input_major else W[ids]
    n, d = w.shape
    out = np.empty((n, d + 2 if mips else d + 1), np.float32)
    out[:, :d] = w
    out[:, d] = b[ids]
    if center is not None:
        out[:, : d + 1] -= center
    if not mips:
        return out
    out[:, : d + 1] /= max_norm
    sq = np.einsum("ij,ij->i", out[:, : d + 1], out[:, : d + 1])
    out[:, d + 1] = np.sqrt(np.maximum(0.0, 1.0 - sq))
    return out


def mean_neuron(W: np.ndarray, b: np.ndarray, input_major: bool) -> np.ndarray:
    """Mean of the neurons' [w, b] vectors (float32, length n_in + 1)."""
    w_mean = W.mean(axis=1, dtype=np.float64) if input_major else W.mean(axis=0, dtype=np.float64)
    return np.append(w_mean, b.mean(dtype=np.float64)).astype(np.float32)


def max_neuron_norm(W: np.ndarray, b: np.ndarray, input_major: bool, center: np.ndarray | None = None) -> float:
    """max_j |(w_j, b_j) - center|, the MIPS scale (1.0 for an all-zero layer)."""
    if center is None:
        sq = (np.einsum("ij,ij->j", W, W) if input_major else np.einsum("ij,ij->i", W, W)) + b * b
    else:
        sq = np.empty(b.shape[0], np.float64)
        for s in range(0, b.shape[0], 65536):  # chunks: a centred copy of all rows may be large
            ids = np.arange(s, min(b.shape[0], s + 65536))
            u = neuron_rows(W, b, ids, input_major=input_major, mips=False, max_norm=1.0, center=center)
            sq[ids] = np.einsum("ij,ij->i", u, u)
    m = float(np.sqrt(sq.max())) if sq.size else 0.0
    return m if m > 0 else 1.0


def rebuild_tables(hp: HashParams, buckets: np.ndarray, fill: np.ndarray, W: np.ndarray,
                   b: np.ndarray, *, input_major: bool, mips: bool, center: bool, insertion: int,
                   seed: int, epoch: int, n_threads: int, chunk: int = 16384) -> None:
    """Empty the tables and insert every neuron, in a random order, from its current weights
    (centred on the mean neuron when ``center``, see :func:`neuron_rows`).

    Neurons are hashed in index order, in chunks of ``chunk`` rows, and inserted afterwards in a
    shuffled order (so FIFO overflow drops a random subset). With dense SimHash projections, the
    default, a chunk's projections come from one BLAS product over a view of the weights:
    ``(w - c) . r = w . r + b r_b - c . r``, so no centred copy of the rows is made (on amazon-670k
    dimensions the copy took half of every rebuild)."""
    n_neurons = b.shape[0]
    fill[:] = 0
    order = np.random.default_rng([seed, epoch]).permutation(n_neurons).astype(np.int32)
    c = mean_neuron(W, b, input_major) if center else None
    max_norm = max_neuron_norm(W, b, input_major, c) if mips else 1.0
    by_blas = hp.family == SIMHASH and hp.proj.shape[0] > 0 and not mips
    if by_blas:
        d = W.shape[0] if input_major else W.shape[1]
        P_w = np.ascontiguousarray(hp.proj[:, :d].T)  # (d, n_codes)
        p_b = hp.proj[:, d].copy()
        shift = -(c @ hp.proj.T) if c is not None else np.zeros(hp.proj.shape[0], np.float32)
    elif hp.family == SIMHASH:  # rows hashed as they are: nothing to add to their projections
        zero = np.zeros(max(min(chunk, n_neurons), hp.hashes_per_table * hp.n_tables), np.float32)
    # keys_t[t, j]: neuron j's bucket in table t (buckets hold < 2**31 keys: bucket_bits <= 22)
    keys_t = np.empty((hp.n_tables, n_neurons), np.int32)
    if by_blas:  # one product buffer for every chunk
        proj = np.empty((min(chunk, n_neurons), hp.proj.shape[0]), np.float32)
    else:
        keys = np.empty((min(chunk, n_neurons), hp.n_tables), np.int64)
    for s in range(0, n_neurons, chunk):
        e = min(n_neurons, s + chunk)
        if by_blas:
            w = W[:, s:e].T if input_major else W[s:e]
            simhash_signs_to_keys(hp, np.matmul(w, P_w, out=proj[: e - s]), b[s:e], p_b, shift, keys_t, s,
                                  n_threads)
            continue
        k = keys[: e - s]
        rows = neuron_rows(W, b, np.arange(s, e), input_major=input_major, mips=mips, max_norm=max_norm, center=c)
        if hp.family != SIMHASH:
            hash_rows_keys(hp, np.ascontiguousarray(rows), k, n_threads)
            keys_t[:, s:e] = k.T
            continue
        if hp.proj.shape[0] > 0:  # dense projections with the MIPS transform
            vals = rows @ hp.proj.T
        else:
            R = sp.csr_matrix((hp.sp_signs, hp.sp_indices, hp.sp_indptr),
                              shape=(hp.hashes_per_table * hp.n_tables, hp.dim))
            vals = (R @ rows.T).T
        simhash_signs_to_keys(hp, np.ascontiguousarray(vals, dtype=np.float32), zero, zero, zero, keys_t, s, n_threads)
    insert_keys(buckets, fill, keys_t, order, insertion, seed, epoch)


class RebuildSchedule:
    """Batches at which tables are rebuilt: the first after ``first`` batches, then intervals
    growing as ``first * exp(growth * i)`` (i = 1, 2, ...), capped at ``max_interval`` batches
    so tables never go stale for too long. ``growth = 0`` gives a fixed period."""

    def __init__(self, first: int, growth: float, max_interval: int | None = None):
        self.first = int(first)
        self.growth = float(growth)
        self.max_interval = max_interval
        self.count = 0  # rebuilds done so far (not counting the initial build)
        self.next_at = self.first

    def interval(self, i: int) -> int:
        v = self.first * math.exp(self.growth * i)
        if self.max_interval is not None:
            v = min(v, self.max_interval)
        return max(1, int(round(v)))

    def due(self, batches_done: int) -> bool:
        return batches_done >= self.next_at

    def worth_making(self, batches_done: int, total: int) -> bool:
        """Whether the rebuild due now is worth its whole-layer pass: not when the fit ends
        (with a rebuild of its own, after batch ``total``) within half the current interval;
        the tables in use then serve at most 1.5 intervals."""
        return total - batches_done >= self.interval(self.count) / 2

    def advance(self) -> None:
        self.count += 1
        self.next_at += self.interval(self.count)

    def state(self) -> dict:
        return {"count": self.count, "next_at": self.next_at}

    def set_state(self, state: dict) -> None:
        self.count = int(state["count"])
        self.next_at = int(state["next_at"])
