"""Locality-sensitive hash families as Numba kernels.

Four families, all producing ``n_codes = K * L`` small integer codes per vector (K =
``hashes_per_table`` codes for each of L = ``n_tables`` tables; codes ``t*K .. t*K+K-1`` belong
to table ``t``), for a dense vector or a sparse one given as
``(idx, val, nnz)``. Dense and sparse forms of the same vector give the same codes (up to
floating-point summation order for SimHash), which the tests check.

- SimHash (signed random projections): code = [r_c . v >= 0], 1 bit. P[equal] = 1 - angle/pi.
- WTA: code = position of the largest of ``m`` coordinates chosen by a random permutation.
- DWTA: WTA over the non-zero coordinates only; a bin with no non-zero falls back to the code of
  another bin picked by a fixed pseudo-random probe sequence (cost proportional to non-zeros).
- DOPH: one-permutation MinHash of a set (the non-zeros of a sparse vector, or the ``top`` largest
  positive coordinates of a dense one); each table has its own hash of coordinates split into K
  bins; empty bins borrow from a probed non-empty bin of the same table. P[equal] ~ Jaccard.

The parameters live in a :class:`HashParams` named tuple built by :mod:`slide.lsh`; arrays of the
families not in use are empty. Keys (:func:`codes_to_keys`) concatenate the K codes of a table,
each in its own bit range, and fold them to ``bucket_bits`` bits with a multiplicative hash when
they are longer.
"""

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .layers import FASTMATH
from .rng import mix64
from .topk import push

SIMHASH, WTA, DWTA, DOPH = 0, 1, 2, 3
DOPH_CODE_BITS = 4


class HashParams(NamedTuple):
    family: int
    hashes_per_table: int  # K
    n_tables: int  # L
    code_bits: int
    bucket_bits: int
    dim: int  # dimension of the hashed (possibly augmented) vectors
    seed: np.uint64
    fold_mult: np.uint64
    # SimHash, dense projections (density 1): proj[c] and its transpose for sparse queries
    proj: np.ndarray  # float32 (n_codes, dim) or (0, 0)
    proj_t: np.ndarray  # float32 (dim, n_codes) or (0, 0)
    # SimHash, sparse projections: CSR by code and CSC (by coordinate) with +-1 signs
    sp_indptr: np.ndarray  # int32 (n_codes+1,)
    sp_indices: np.ndarray  # int32
    sp_signs: np.ndarray  # float32
    sp_t_indptr: np.ndarray  # int32 (dim+1,)
    sp_t_codes: np.ndarray  # int32
    sp_t_signs: np.ndarray  # float32
    # WTA / DWTA: the m coordinates of each bin, and the inverse map coordinate -> (code, pos)
    bins: np.ndarray  # int32 (n_codes, m)
    coord_indptr: np.ndarray  # int32 (dim+1,)
    coord_code: np.ndarray  # int32
    coord_pos: np.ndarray  # int32
    # DOPH: per-table multiplier/offset of the coordinate hash, and the set size for dense vectors
    doph_a: np.ndarray  # uint64 (L,)
    doph_b: np.ndarray  # uint64 (L,)
    doph_top: int


# ---------------------------------------------------------------------------------------------
# SimHash
# ---------------------------------------------------------------------------------------------
@njit(cache=True, fastmath=FASTMATH)  # re-association vectorises the dot products
def simhash_dense(hp, vec, codes):
    """codes[c] = [proj_c . vec >= 0] for a dense vec (dim,)."""
    n_codes = hp.hashes_per_table * hp.n_tables
    if hp.proj.shape[0] > 0:
        proj = hp.proj
        for c in range(n_codes):
            s = np.float32(0.0)
            for i in range(hp.dim):
                # in place, not a row view: threads share proj (see slide.kernels.optim.step_row)
                s += proj[c, i] * vec[i]
            codes[c] = 1 if s >= 0 else 0
    else:
        for c in range(n_codes):
            s = np.float32(0.0)
            for e in range(hp.sp_indptr[c], hp.sp_indptr[c + 1]):
                s += hp.sp_signs[e] * vec[hp.sp_indices[e]]
            codes[c] = 1 if s >= 0 else 0


@njit(cache=True, fastmath=FASTMATH)
def simhash_sparse(hp, idx, val, nnz, codes, acc):
    """SimHash of a sparse vector; ``acc`` is a float32 (n_codes,) scratch buffer."""
    n_codes = hp.hashes_per_table * hp.n_tables
    acc[:n_codes] = 0.0
    if hp.proj.shape[0] > 0:
        proj_t = hp.proj_t
        for k in range(nnz):
            v = val[k]
            i = idx[k]
            for c in range(n_codes):
                acc[c] += v * proj_t[i, c]
    else:
        for k in range(nnz):
            v = val[k]
            i = idx[k]
            for e in range(hp.sp_t_indptr[i], hp.sp_t_indptr[i + 1]):
                acc[hp.sp_t_codes[e]] += v * hp.sp_t_signs[e]
    for c in range(n_codes):
        codes[c] = 1 if acc[c] >= 0 else 0


# ---------------------------------------------------------------------------------------------
# WTA and DWTA
# ---------------------------------------------------------------------------------------------
@njit(cache=True, fastmath=False)
def wta_dense(hp, vec, codes):
    """codes[c] = argmax over the bin's m coordinates (first position wins ties)."""
    m = hp.bins.shape[1]
    for c in range(hp.hashes_per_table * hp.n_tables):
        b = hp.bins[c]
        best = vec[b[0]]
        pos = 0
        for p in range(1, m):
            v = vec[b[p]]
            if v > best:
                best = v
                pos = p
        codes[c] = pos


@njit(cache=True, fastmath=False)
def wta_sparse(hp, idx, val, nnz, codes, scratch):
    """WTA of a sparse vector (absent coordinates are 0): scatter into ``scratch`` (dim,), which
    must be all zeros on entry and is left all zeros."""
    for k in range(nnz):
        scratch[idx[k]] = val[k]
    wta_dense(hp, scratch, codes)
    for k in range(nnz):
        scratch[idx[k]] = 0.0


@njit(cache=True, fastmath=False, inline="always")
def _probe(seed, table, c, attempt, n):
    return np.int64(mix64(seed ^ mix64(np.uint64(table) * np.uint64(1000003) + np.uint64(c) * np.uint64(7919) + np.uint64(attempt))) % np.uint64(n))


@njit(cache=True, fastmath=False)
def _densify(hp, codes, start, n, empty_code):
    """Replace codes equal to ``empty_code`` in codes[start:start+n] by the code of a non-empty
    bin of the same range found by a fixed probe sequence (the same for every vector, so two
    vectors with the same non-empty bins densify identically)."""
    n_empty = 0
    for c in range(start, start + n):
        if codes[c] == empty_code:
            n_empty += 1
    if n_empty == 0:
        return
    if n_empty == n:
        for c in range(start, start + n):
            codes[c] = 0
        return
    for c in range(start, start + n):
        if codes[c] != empty_code:
            continue
        attempt = 1
        while True:
            c2 = start + _probe(hp.seed, start, c - start, attempt, n)
            code2 = codes[c2]
            # a bin densified earlier in this loop holds a code >= 0 but came from another bin;
            # only bins that were non-empty originally are valid donors, marked by code2 >= 0
            # and not being in the "filled" range (filled codes are stored as -2 - code).
            if code2 >= 0:
                codes[c] = -2 - code2
                break
            attempt += 1
            if attempt > 8 * n:  # unreachable in practice: a non-empty bin exists
                codes[c] = -2
                break
    for c in range(start, start + n):
        if codes[c] <= -2:
            codes[c] = -2 - codes[c]


@njit(cache=True, fastmath=False)
def dwta_dense(hp, vec, codes):
    """DWTA of a dense vector: zeros count as absent."""
    m = hp.bins.shape[1]
    n_codes = hp.hashes_per_table * hp.n_tables
    for c in range(n_codes):
        b = hp.bins[c]
        pos = -1
        best = np.float32(0.0)
        for p in range(m):
            v = vec[b[p]]
            if v != 0 and (pos < 0 or v > best):
                best = v
                pos = p
        codes[c] = pos
    _densify(hp, codes, 0, n_codes, -1)


@njit(cache=True, fastmath=False)
def dwta_sparse(hp, idx, val, nnz, codes, best):
    """DWTA of a sparse vector in O(nnz * codes per coordinate); ``best`` is a float32
    (n_codes,) scratch buffer."""
    n_codes = hp.hashes_per_table * hp.n_tables
    for c in range(n_codes):
        codes[c] = -1
    for k in range(nnz):
        v = val[k]
        if v == 0:
            continue
        i = idx[k]
        for e in range(hp.coord_indptr[i], hp.coord_indptr[i + 1]):
            c = hp.coord_code[e]
            p = hp.coord_pos[e]
            cur = codes[c]
            if cur < 0 or v > best[c] or (v == best[c] and p < cur):
                best[c] = v
                codes[c] = p
    _densify(hp, codes, 0, n_codes, -1)


# ---------------------------------------------------------------------------------------------
# DOPH
# ---------------------------------------------------------------------------------------------
@njit(cache=True, fastmath=False, inline="always")
def _doph_hash(hp, t, i):
    return mix64(hp.doph_a[t] * np.uint64(i + 1) + hp.doph_b[t]) >> np.uint64(32)


@njit(cache=True, fastmath=False)
def doph_set(hp, members, n_members, codes, minval):
    """One-permutation MinHash of a set of coordinates, per table; ``minval`` is a uint64
    (n_codes,) scratch buffer."""
    per_table = hp.hashes_per_table
    mask = np.uint64((1 << DOPH_CODE_BITS) - 1)
    for t in range(hp.n_tables):
        base = t * per_table
        for c in range(per_table):
            minval[base + c] = np.uint64(0xFFFFFFFFFFFFFFFF)
        for k in range(n_members):
            h = _doph_hash(hp, t, members[k])
            c = np.int64((h * np.uint64(per_table)) >> np.uint64(32))
            if h < minval[base + c]:
                minval[base + c] = h
        for c in range(per_table):
            if minval[base + c] == np.uint64(0xFFFFFFFFFFFFFFFF):
                codes[base + c] = -1
            else:
                codes[base + c] = np.int64(mix64(minval[base + c]) & mask)
        _densify(hp, codes, base, per_table, -1)


@njit(cache=True, fastmath=False)
def top_positive(vec, n, top, out, out_val):
    """Indices of the ``top`` largest strictly positive entries of vec[:n] into ``out`` (their
    values into ``out_val``); returns how many were written (ties: smaller index first)."""
    cnt = 0
    for i in range(n):
        if vec[i] > 0:
            cnt = push(out, out_val, cnt, top, i, vec[i])
    return cnt


@njit(cache=True, fastmath=False)
def doph_dense(hp, vec, codes, minval, members, top_val):
    """DOPH of a dense vector: the set is its ``doph_top`` largest positive coordinates."""
    n = top_positive(vec, hp.dim, hp.doph_top, members, top_val)
    doph_set(hp, members, n, codes, minval)


@njit(cache=True, fastmath=False)
def doph_sparse(hp, idx, val, nnz, codes, minval, members, top_val):
    """DOPH of a sparse vector: the set is its ``doph_top`` largest positive entries."""
    n = top_positive(val, nnz, hp.doph_top, members, top_val)
    for k in range(n):
        members[k] = idx[members[k]]
    doph_set(hp, members, n, codes, minval)


# ---------------------------------------------------------------------------------------------
# Dispatch and keys
# ---------------------------------------------------------------------------------------------
class HashScratch(NamedTuple):
    """Per-call scratch buffers of :func:`hash_dense` / :func:`hash_sparse`."""

    acc: np.ndarray  # float32 (n_codes,)
    dense: np.ndarray  # float32 (dim,), all zeros between calls (WTA on sparse vectors)
    minval: np.ndarray  # uint64 (n_codes,)
    members: np.ndarray  # int64 (max(dim, 1),): a set never exceeds dim
    top_val: np.ndarray  # float32 (doph_top,) for DOPH: values of the set's members


def make_scratch(hp, n_threads=1):
    """Scratch buffers for ``n_threads`` concurrent hashers (leading axis = thread)."""
    n_codes = hp.hashes_per_table * hp.n_tables
    dense_dim = hp.dim if hp.family == WTA else 0
    return HashScratch(
        np.zeros((n_threads, n_codes), np.float32),
        np.zeros((n_threads, dense_dim), np.float32),
        np.zeros((n_threads, n_codes), np.uint64),
        np.zeros((n_threads, max(hp.dim, 1)), np.int64),
        np.zeros((n_threads, hp.doph_top if hp.family == DOPH else 0), np.float32),
    )


@njit(cache=True, fastmath=False)
def hash_dense(hp, vec, codes, scratch, t):
    """All K*L codes of a dense vector (dim,) into codes (int64); ``t`` selects the scratch row."""
    f = hp.family
    if f == SIMHASH:
        simhash_dense(hp, vec, codes)
    elif f == WTA:
        wta_dense(hp, vec, codes)
    elif f == DWTA:
        dwta_dense(hp, vec, codes)
    else:
        doph_dense(hp, vec, codes, scratch.minval[t], scratch.members[t], scratch.top_val[t])


@njit(cache=True, fastmath=False)
def hash_sparse(hp, idx, val, nnz, codes, scratch, t):
    """All K*L codes of a sparse vector (idx[:nnz], val[:nnz]) into codes (int64)."""
    f = hp.family
    if f == SIMHASH:
        simhash_sparse(hp, idx, val, nnz, codes, scratch.acc[t])
    elif f == WTA:
        wta_sparse(hp, idx, val, nnz, codes, scratch.dense[t])
    elif f == DWTA:
        dwta_sparse(hp, idx, val, nnz, codes, scratch.acc[t])
    else:
        doph_sparse(hp, idx, val, nnz, codes, scratch.minval[t], scratch.members[t], scratch.top_val[t])


@njit(cache=True, fastmath=False)
def codes_to_keys(hp, codes, keys):
    """keys[t] = bucket of table t: the K codes of the table concatenated (each in its own
    ``code_bits`` range), folded to ``bucket_bits`` bits by a multiplicative hash if longer."""
    per_table = hp.hashes_per_table
    cb = np.uint64(hp.code_bits)
    total = hp.hashes_per_table * hp.code_bits
    shift = np.uint64(64 - hp.bucket_bits)
    for t in range(hp.n_tables):
        key = np.uint64(0)
        for k in range(per_table):
            key = (key << cb) | np.uint64(codes[t * per_table + k])
        if total > hp.bucket_bits:
            key = (key * hp.fold_mult) >> shift
        keys[t] = np.int64(key)


@njit(cache=True, fastmath=False, parallel=True)
def hash_rows_keys(hp, rows, keys, n_threads):
    """Keys (n, L) of the dense rows (n, dim), in parallel (used to rebuild tables)."""
    n = rows.shape[0]
    codes_all = np.empty((n_threads, hp.hashes_per_table * hp.n_tables), np.int64)
    n_codes = hp.hashes_per_table * hp.n_tables
    minval = np.empty((n_threads, n_codes), np.uint64)
    members = np.empty((n_threads, max(hp.dim, 1)), np.int64)
    top_val = np.empty((n_threads, hp.doph_top), np.float32)
    for th in prange(n_threads):
        codes = codes_all[th]
        for r in range(th, n, n_threads):
            f = hp.family
            if f == WTA:
                wta_dense(hp, rows[r], codes)
            elif f == DWTA:
                dwta_dense(hp, rows[r], codes)
            elif f == DOPH:
                doph_dense(hp, rows[r], codes, minval[th], members[th], top_val[th])
            else:
                simhash_dense(hp, rows[r], codes)
            codes_to_keys(hp, codes, keys[r])


@njit(cache=True, fastmath=False, parallel=True)
def simhash_signs_to_keys(hp, proj_values, row_shift, code_scale, code_shift, keys_t, col0, n_threads):
    """Keys from precomputed projections (n, n_codes) (SimHash rebuild via BLAS) into
    ``keys_t[t, col0 + r]`` (table-major, as the insertion reads them): code c of row r is
    [proj_values[r, c] + row_shift[r] * code_scale[c] + code_shift[c] >= 0], the terms a rebuild
    adds for the bias column and the centring (zeros where there are none)."""
    n = proj_values.shape[0]
    n_codes = hp.hashes_per_table * hp.n_tables
    codes_all = np.empty((n_threads, n_codes), np.int64)
    keys_all = np.empty((n_threads, hp.n_tables), np.int64)
    for th in prange(n_threads):
        codes = codes_all[th]
        keys = keys_all[th]
        # contiguous blocks of rows: with rows dealt out in turn, both threads would write the
        # same cache lines of every table's key row
        for r in range(th * n // n_threads, (th + 1) * n // n_threads):
            br = row_shift[r]
            for c in range(n_codes):
                codes[c] = 1 if proj_values[r, c] + br * code_scale[c] + code_shift[c] >= 0 else 0
            codes_to_keys(hp, codes, keys)
            for t in range(hp.n_tables):
                keys_t[t, col0 + r] = keys[t]
