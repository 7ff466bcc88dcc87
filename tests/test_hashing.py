"""The LSH families of slide.kernels.hashing and the key / table-filling code of slide.lsh.

Three kinds of checks:

- collision probabilities against theory, measured over many i.i.d. codes of one pair of vectors
  (one HashParams with a large K * L), with tolerances of a few binomial standard errors;
- exact agreement with plain NumPy / Python references (WTA, DWTA with its densification rule,
  DOPH, key packing and folding), and between the dense and sparse input paths;
- end-to-end retrieval: tables filled by ``rebuild_tables`` and queried with ``select_active``
  find the neurons with the largest cosine / inner product.

Every random draw uses a fixed seed, so the tests are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2, kendalltau

from slide.kernels.hashing import (
    DOPH,
    DOPH_CODE_BITS,
    DWTA,
    SIMHASH,
    WTA,
    codes_to_keys,
    hash_dense,
    hash_rows_keys,
    hash_sparse,
    make_scratch,
    simhash_signs_to_keys,
)
from slide.kernels.tables import FIFO, RESERVOIR, TOPK, select_active
from slide.lsh import code_bits_of, make_hash_params, mean_neuron, neuron_rows, rebuild_tables

M64 = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------
# helpers and plain-Python references
# ---------------------------------------------------------------------------------------------
def n_codes(hp):
    return hp.hashes_per_table * hp.n_tables


def codes_dense(hp, vec, scratch=None):
    scratch = make_scratch(hp, 1) if scratch is None else scratch
    codes = np.full(n_codes(hp), -99, np.int64)
    hash_dense(hp, np.ascontiguousarray(vec, np.float32), codes, scratch, 0)
    return codes


def codes_sparse(hp, idx, val, scratch=None):
    scratch = make_scratch(hp, 1) if scratch is None else scratch
    codes = np.full(n_codes(hp), -99, np.int64)
    idx = np.ascontiguousarray(idx, np.int32)
    val = np.ascontiguousarray(val, np.float32)
    hash_sparse(hp, idx, val, len(idx), codes, scratch, 0)
    return codes


def keys_of(hp, codes):
    keys = np.empty(hp.n_tables, np.int64)
    codes_to_keys(hp, codes, keys)
    return keys


def se(p, n):
    """Binomial standard error of a proportion, floored so p in {0, 1} still gets a tolerance."""
    p = min(max(p, 1.0 / n), 1.0 - 1.0 / n)
    return math.sqrt(p * (1.0 - p) / n)


def py_mix64(z):
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def py_probe(seed, table, c, attempt, n):
    inner = (table * 1000003 + c * 7919 + attempt) & M64
    return py_mix64(int(seed) ^ py_mix64(inner)) % n


def py_densify(hp, codes, start, n):
    """The densification rule of ``_densify`` (empty = -1): every empty bin takes the code of the
    first originally non-empty bin of its probe sequence; all-empty ranges become all zeros."""
    seg = list(codes[start:start + n])
    empty = [c == -1 for c in seg]
    if not any(empty):
        return
    if all(empty):
        codes[start:start + n] = 0
        return
    out = list(seg)
    for c in range(n):
        if not empty[c]:
            continue
        attempt = 1
        while True:
            c2 = py_probe(hp.seed, start, c, attempt, n)
            if not empty[c2]:
                out[c] = seg[c2]
                break
            attempt += 1
    codes[start:start + n] = out


def ref_wta(hp, vec):
    return np.argmax(vec[hp.bins], axis=1).astype(np.int64)  # argmax: first maximum wins


def ref_dwta(hp, vec):
    vals = vec[hp.bins].astype(np.float64)
    nz = vals != 0
    masked = np.where(nz, vals, -np.inf)
    codes = np.where(nz.any(axis=1), np.argmax(masked, axis=1), -1).astype(np.int64)
    py_densify(hp, codes, 0, n_codes(hp))
    return codes


def ref_doph(hp, members):
    """DOPH codes of a set of coordinates, recomputed with Python integers."""
    K, L = hp.hashes_per_table, hp.n_tables
    mask = (1 << DOPH_CODE_BITS) - 1
    codes = np.empty(K * L, np.int64)
    for t in range(L):
        a, b = int(hp.doph_a[t]), int(hp.doph_b[t])
        mins = [None] * K
        for i in members:
            h = py_mix64(a * (int(i) + 1) + b) >> 32
            c = (h * K) >> 32
            if mins[c] is None or h < mins[c]:
                mins[c] = h
        for c in range(K):
            codes[t * K + c] = -1 if mins[c] is None else (py_mix64(mins[c]) & mask)
        py_densify(hp, codes, t * K, K)
    return codes


def ref_keys(hp, codes):
    total = hp.hashes_per_table * hp.code_bits
    keys = np.empty(hp.n_tables, np.int64)
    for t in range(hp.n_tables):
        key = 0
        for k in range(hp.hashes_per_table):
            key = (key << hp.code_bits) | int(codes[t * hp.hashes_per_table + k])
        if total > hp.bucket_bits:
            key = ((key * int(hp.fold_mult)) & M64) >> (64 - hp.bucket_bits)
        keys[t] = key
    return keys


def pair_at_angle(dim, theta, rng):
    """Two unit vectors (float32) at angle theta, in a random plane."""
    u = rng.standard_normal(dim)
    u /= np.linalg.norm(u)
    w = rng.standard_normal(dim)
    w -= (w @ u) * u
    w /= np.linalg.norm(w)
    v = math.cos(theta) * u + math.sin(theta) * w
    return u.astype(np.float32), v.astype(np.float32)


def correlated_pair(dim, rho, rng):
    u = rng.standard_normal(dim)
    v = rho * u + math.sqrt(max(0.0, 1.0 - rho * rho)) * rng.standard_normal(dim)
    return u.astype(np.float32), v.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# SimHash
# ---------------------------------------------------------------------------------------------
SIM_DIM = 128
SIM_CODES = 20000
ANGLES = [0, 30, 60, 90, 120, 170]


@pytest.fixture(scope="module")
def simhash_dense_hp():
    return make_hash_params("simhash", 1, SIM_CODES, SIM_DIM, bucket_bits=1, seed=11)


@pytest.fixture(scope="module")
def simhash_sparse_hp():
    return make_hash_params("simhash", 1, SIM_CODES, SIM_DIM, bucket_bits=1, seed=12, simhash_density=0.3)


def test_simhash_params_shapes(simhash_dense_hp, simhash_sparse_hp):
    hp = simhash_dense_hp
    assert hp.family == SIMHASH and hp.code_bits == 1
    assert hp.proj.shape == (SIM_CODES, SIM_DIM) and np.array_equal(hp.proj.T, hp.proj_t)
    assert set(np.unique(hp.proj)) == {-1.0, 1.0}
    sp_hp = simhash_sparse_hp
    assert sp_hp.proj.shape[0] == 0
    nnz = sp_hp.sp_indptr[-1]
    assert abs(nnz / (SIM_CODES * SIM_DIM) - 0.3) < 0.01
    assert set(np.unique(sp_hp.sp_signs)) == {-1.0, 1.0}
    # the CSC copy holds the same matrix as the CSR one
    R = np.zeros((SIM_CODES, SIM_DIM), np.float32)
    rows = np.repeat(np.arange(SIM_CODES), np.diff(sp_hp.sp_indptr))
    R[rows, sp_hp.sp_indices] = sp_hp.sp_signs
    Rt = np.zeros((SIM_DIM, SIM_CODES), np.float32)
    cols = np.repeat(np.arange(SIM_DIM), np.diff(sp_hp.sp_t_indptr))
    Rt[cols, sp_hp.sp_t_codes] = sp_hp.sp_t_signs
    assert np.array_equal(R.T, Rt)


@pytest.mark.parametrize("deg", ANGLES)
def test_simhash_dense_collision_probability(simhash_dense_hp, deg):
    hp = simhash_dense_hp
    rng = np.random.default_rng(100 + deg)
    u, v = pair_at_angle(SIM_DIM, math.radians(deg), rng)
    cu, cv = codes_dense(hp, u), codes_dense(hp, v)
    # the codes are the signs of the projections (up to rounding where the projection is ~0)
    proj = hp.proj.astype(np.float64) @ u
    assert np.all((cu == (proj >= 0)) | (np.abs(proj) < 1e-5))
    p = np.mean(cu == cv)
    theory = 1.0 - math.radians(deg) / math.pi
    # +-1 projections are Gaussian only asymptotically: allow 0.005 of bias on top of 4.5 SE
    assert abs(p - theory) <= 4.5 * se(theory, SIM_CODES) + 0.005, (deg, p, theory)


@pytest.mark.parametrize("deg", ANGLES)
def test_simhash_sparse_projection_collision_probability(simhash_sparse_hp, deg):
    """With density < 1 each code sees only its own coordinates S_c, so the expected collision
    probability is mean_c (1 - angle(u_S, v_S)/pi), close to 1 - angle/pi for spread-out vectors."""
    hp = simhash_sparse_hp
    rng = np.random.default_rng(200 + deg)
    u, v = pair_at_angle(SIM_DIM, math.radians(deg), rng)
    cu, cv = codes_dense(hp, u), codes_dense(hp, v)
    p = np.mean(cu == cv)
    rows = np.repeat(np.arange(SIM_CODES), np.diff(hp.sp_indptr))
    uu = np.bincount(rows, u[hp.sp_indices].astype(np.float64) ** 2, SIM_CODES)
    vv = np.bincount(rows, v[hp.sp_indices].astype(np.float64) ** 2, SIM_CODES)
    uv = np.bincount(rows, u[hp.sp_indices].astype(np.float64) * v[hp.sp_indices], SIM_CODES)
    cos = np.clip(uv / np.sqrt(uu * vv), -1.0, 1.0)
    theory = float(np.mean(1.0 - np.arccos(cos) / math.pi))
    assert abs(p - theory) <= 4.5 * se(theory, SIM_CODES) + 0.005, (deg, p, theory)
    assert abs(p - (1.0 - math.radians(deg) / math.pi)) < 0.03


@pytest.mark.parametrize("density", [1.0, 0.3])
def test_simhash_dense_and_sparse_inputs_agree(simhash_dense_hp, simhash_sparse_hp, density):
    hp = simhash_dense_hp if density == 1.0 else simhash_sparse_hp
    rng = np.random.default_rng(7)
    scratch = make_scratch(hp, 1)
    for nnz in (1, 10, 60):
        idx = np.sort(rng.choice(SIM_DIM, nnz, replace=False))
        val = rng.standard_normal(nnz).astype(np.float32)
        dense = np.zeros(SIM_DIM, np.float32)
        dense[idx] = val
        cd = codes_dense(hp, dense, scratch)
        cs = codes_sparse(hp, idx, val, scratch)
        mism = cd != cs
        # only summation order differs: mismatches only where the projection is ~0
        if density == 1.0:
            proj = hp.proj.astype(np.float64) @ dense
        else:
            rows = np.repeat(np.arange(SIM_CODES), np.diff(hp.sp_indptr))
            proj = np.bincount(rows, hp.sp_signs * dense[hp.sp_indices].astype(np.float64), SIM_CODES)
        assert mism.mean() <= 1e-3
        assert np.all(np.abs(proj[mism]) <= 1e-4 * (np.abs(val).sum() + 1.0))
    # the scratch accumulator does not leak between calls
    idx = np.array([3, 5], np.int32)
    val = np.array([1.0, -2.0], np.float32)
    a = codes_sparse(hp, idx, val, scratch)
    b = codes_sparse(hp, idx, val, scratch)
    assert np.array_equal(a, b)


def test_simhash_is_scale_invariant(simhash_dense_hp):
    hp = simhash_dense_hp
    rng = np.random.default_rng(3)
    u = rng.integers(-5, 6, SIM_DIM).astype(np.float32)  # integers: exact sums
    proj = hp.proj @ u
    assert np.array_equal(codes_dense(hp, u), (proj >= 0).astype(np.int64))
    assert np.array_equal(codes_dense(hp, 4.0 * u), (proj >= 0).astype(np.int64))
    assert np.array_equal(codes_dense(hp, -u), (proj <= 0).astype(np.int64))  # sign(0) -> code 1
    assert np.all(codes_dense(hp, np.zeros(SIM_DIM, np.float32)) == 1)


# ---------------------------------------------------------------------------------------------
# WTA
# ---------------------------------------------------------------------------------------------
WTA_DIM = 64  # a multiple of every bin size used, so bins never straddle two permutations


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_wta_bin2_collision_is_concordant_fraction(rho):
    """m = 2: the code is which of two random distinct coordinates is larger, so P[equal] is the
    fraction of concordant coordinate pairs, (1 + Kendall tau) / 2 without ties."""
    n = 20000
    hp = make_hash_params("wta", 1, n, WTA_DIM, bucket_bits=1, seed=21, wta_bin_size=2)
    assert hp.family == WTA and hp.code_bits == 1 and hp.bins.shape == (n, 2)
    assert np.all(hp.bins[:, 0] != hp.bins[:, 1])
    rng = np.random.default_rng(int(rho * 100))
    u, v = correlated_pair(WTA_DIM, rho, rng)
    p = np.mean(codes_dense(hp, u) == codes_dense(hp, v))
    tau = kendalltau(u, v).statistic
    theory = (1.0 + tau) / 2.0
    assert abs(p - theory) <= 4.5 * se(theory, n), (rho, p, theory)


@pytest.mark.parametrize("m", [2, 4, 8, 16])
def test_wta_matches_numpy_reference(m):
    hp = make_hash_params("wta", 3, 200, WTA_DIM, bucket_bits=30, seed=m, wta_bin_size=m)
    assert hp.code_bits == max(1, math.ceil(math.log2(m)))
    assert hp.bins.shape == (600, m)
    # bins are m distinct coordinates
    assert all(len(set(r)) == m for r in hp.bins.tolist())
    rng = np.random.default_rng(m)
    scratch = make_scratch(hp, 1)
    for trial in range(4):
        vec = rng.standard_normal(WTA_DIM).astype(np.float32)
        if trial == 3:  # ties: rounded values, first position wins
            vec = np.round(vec).astype(np.float32)
        c = codes_dense(hp, vec, scratch)
        assert np.array_equal(c, ref_wta(hp, vec))
        assert c.min() >= 0 and c.max() < m
        # sparse input (absent = 0) gives the same codes, scratch left clean
        vec[rng.random(WTA_DIM) < 0.5] = 0.0
        idx = np.flatnonzero(vec).astype(np.int32)
        cs = codes_sparse(hp, idx, vec[idx], scratch)
        assert np.array_equal(cs, ref_wta(hp, vec))
        assert not scratch.dense.any()


def test_wta_collision_increases_with_rank_correlation():
    n = 4000
    hp = make_hash_params("wta", 1, n, WTA_DIM, bucket_bits=3, seed=5, wta_bin_size=8)
    rng = np.random.default_rng(9)
    rhos = [0.0, 0.5, 0.8, 0.95, 1.0]
    rates = []
    for rho in rhos:
        ps = []
        for _ in range(3):
            u, v = correlated_pair(WTA_DIM, rho, rng)
            ps.append(np.mean(codes_dense(hp, u) == codes_dense(hp, v)))
        rates.append(float(np.mean(ps)))
    assert abs(rates[0] - 1 / 8) < 0.04  # independent vectors: the argmax agrees 1 time in m
    assert rates[-1] == 1.0
    for a, b in zip(rates, rates[1:]):
        assert b > a + 3 * se(0.5, 3 * n), rates
    # WTA depends on ranks only: a monotone transform of the vector keeps every code
    u = rng.standard_normal(WTA_DIM).astype(np.float32)
    assert np.array_equal(codes_dense(hp, u), codes_dense(hp, np.exp(u) * 3 + 1))


def test_wta_bins_hold_distinct_coordinates_when_dim_not_multiple_of_m():
    for dim, m in ((10, 4), (129, 8)):
        hp = make_hash_params("wta", 4, 50, dim, bucket_bits=12, seed=3, wta_bin_size=m)
        assert all(len(set(r)) == m for r in hp.bins.tolist()), (dim, m)


# ---------------------------------------------------------------------------------------------
# DWTA
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dwta_hp():
    return make_hash_params("dwta", 4, 250, 300, bucket_bits=12, seed=31, wta_bin_size=8)


def _sparse_vec(dim, nnz, rng, positive=False):
    idx = np.sort(rng.choice(dim, nnz, replace=False)).astype(np.int32)
    val = rng.standard_normal(nnz).astype(np.float32)
    if positive:
        val = np.abs(val) + 0.01
    return idx, val


def test_dwta_equals_wta_on_vectors_without_zeros():
    hp = make_hash_params("dwta", 4, 100, WTA_DIM, bucket_bits=12, seed=32, wta_bin_size=8)
    hp_wta = make_hash_params("wta", 4, 100, WTA_DIM, bucket_bits=12, seed=32, wta_bin_size=8)
    assert hp.family == DWTA and hp_wta.family == WTA
    assert np.array_equal(hp.bins, hp_wta.bins)  # same seed, same permutations
    rng = np.random.default_rng(1)
    for _ in range(5):
        vec = rng.standard_normal(WTA_DIM).astype(np.float32)
        c = codes_dense(hp, vec)
        assert np.array_equal(c, codes_dense(hp_wta, vec))
        assert np.array_equal(c, ref_wta(hp, vec))
        assert np.array_equal(codes_sparse(hp, np.arange(WTA_DIM), vec), c)


def test_dwta_sparse_path_equals_dense_path_and_reference(dwta_hp):
    hp = dwta_hp
    rng = np.random.default_rng(2)
    scratch = make_scratch(hp, 1)
    for nnz in (0, 1, 2, 5, 20, 80, 300):
        idx, val = _sparse_vec(hp.dim, nnz, rng)
        if nnz >= 5:
            val[1] = 0.0  # an explicit zero counts as absent
            val[3] = val[2]  # a tie
        dense = np.zeros(hp.dim, np.float32)
        dense[idx] = val
        cd = codes_dense(hp, dense, scratch)
        cs = codes_sparse(hp, idx, val, scratch)
        assert np.array_equal(cd, cs), nnz
        assert np.array_equal(cd, ref_dwta(hp, dense)), nnz
        # densification: every code is defined
        assert cd.min() >= 0 and cd.max() < 8
    # the empty vector: all codes 0
    assert np.array_equal(codes_sparse(hp, [], []), np.zeros(n_codes(hp), np.int64))


def test_dwta_densified_codes_come_from_nonempty_bins(dwta_hp):
    hp = dwta_hp
    rng = np.random.default_rng(4)
    idx, val = _sparse_vec(hp.dim, 3, rng)
    dense = np.zeros(hp.dim, np.float32)
    dense[idx] = val
    nonempty = (dense[hp.bins] != 0).any(axis=1)
    assert 0 < nonempty.sum() < n_codes(hp)
    c = codes_dense(hp, dense)
    raw = ref_wta(hp, np.where(dense != 0, dense, -np.inf))
    assert np.array_equal(c[nonempty], raw[nonempty])
    # each empty bin holds the code of some originally non-empty bin
    assert set(c[~nonempty]) <= set(raw[nonempty])


def test_dwta_identical_vectors_collide_and_overlap_raises_collisions(dwta_hp):
    hp = dwta_hp
    dim, nnz, n = hp.dim, 40, n_codes(hp)
    rng = np.random.default_rng(5)
    idx, val = _sparse_vec(dim, nnz, rng, positive=True)
    assert np.array_equal(codes_sparse(hp, idx, val), codes_sparse(hp, idx.copy(), val.copy()))
    rates = []
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        ps = []
        for rep in range(3):
            a_idx, a_val = _sparse_vec(dim, nnz, rng, positive=True)
            keep = int(round(frac * nnz))
            others = np.setdiff1d(np.arange(dim), a_idx)
            new = rng.choice(others, nnz - keep, replace=False)
            b_idx = np.concatenate([a_idx[:keep], new]).astype(np.int32)
            b_val = np.concatenate([a_val[:keep], np.abs(rng.standard_normal(nnz - keep)) + 0.01])
            order = np.argsort(b_idx)
            ps.append(np.mean(codes_sparse(hp, a_idx, a_val) == codes_sparse(hp, b_idx[order], b_val[order])))
        rates.append(float(np.mean(ps)))
    assert rates[-1] == 1.0
    for a, b in zip(rates, rates[1:]):
        assert b > a + 3 * se(0.5, 3 * n), rates


# ---------------------------------------------------------------------------------------------
# DOPH
# ---------------------------------------------------------------------------------------------
DOPH_DIM = 5000


@pytest.fixture(scope="module")
def doph_hp():
    return make_hash_params("doph", 4, 5000, DOPH_DIM, bucket_bits=16, seed=41, doph_top=64)


def test_doph_matches_python_reference():
    hp = make_hash_params("doph", 4, 30, 500, bucket_bits=16, seed=42, doph_top=16)
    assert hp.family == DOPH and hp.code_bits == DOPH_CODE_BITS
    rng = np.random.default_rng(6)
    for nnz in (0, 1, 3, 10, 16):
        idx, val = _sparse_vec(500, nnz, rng, positive=True)
        c = codes_sparse(hp, idx, val)
        assert np.array_equal(c, ref_doph(hp, idx)), nnz
        assert c.min() >= 0 and c.max() < 2 ** DOPH_CODE_BITS


@pytest.mark.parametrize("shared", [0, 16, 32, 48, 64])
def test_doph_collision_probability_is_jaccard(doph_hp, shared):
    """Codes are the low 4 bits of a mixed bin minimum: equal minima (probability J for a
    non-empty bin of the union) always collide, different ones 1 time in 16, so
    P[equal] = J + (1 - J) / 16. Sets of 32..64 elements in K = 4 bins are almost never empty."""
    hp = doph_hp
    rng = np.random.default_rng(300 + shared)
    union = 64
    r = (union - shared) // 2
    elems = rng.choice(DOPH_DIM, shared + 2 * r, replace=False)
    A = np.sort(elems[: shared + r])
    B = np.sort(np.concatenate([elems[:shared], elems[shared + r:]]))
    J = len(np.intersect1d(A, B)) / len(np.union1d(A, B))
    assert J == shared / union
    ca = codes_sparse(hp, A, np.ones(len(A)))
    cb = codes_sparse(hp, B, np.ones(len(B)))
    p = np.mean(ca == cb)
    theory = J + (1 - J) / 2 ** DOPH_CODE_BITS
    n = n_codes(hp)
    assert abs(p - theory) <= 5 * se(theory, n), (J, p, theory)


def test_doph_dense_and_sparse_forms_agree(doph_hp):
    hp = doph_hp
    rng = np.random.default_rng(8)
    scratch = make_scratch(hp, 1)
    # nnz <= doph_top: the set is every positive non-zero
    idx, val = _sparse_vec(DOPH_DIM, 50, rng, positive=True)
    dense = np.zeros(DOPH_DIM, np.float32)
    dense[idx] = val
    c_sparse = codes_sparse(hp, idx, val, scratch)
    assert np.array_equal(c_sparse, codes_dense(hp, dense, scratch))
    assert np.array_equal(c_sparse, codes_sparse(hp, idx, np.ones(50), scratch))  # values do not matter
    # non-positive entries are not members
    neg_idx = np.setdiff1d(np.arange(DOPH_DIM), idx)[:5]
    all_idx = np.concatenate([idx, neg_idx])
    all_val = np.concatenate([val, -np.ones(5, np.float32)])
    order = np.argsort(all_idx)
    assert np.array_equal(codes_sparse(hp, all_idx[order], all_val[order], scratch), c_sparse)
    # nnz > doph_top: the set is the doph_top largest entries, in both forms
    idx, val = _sparse_vec(DOPH_DIM, 200, rng, positive=True)
    dense = np.zeros(DOPH_DIM, np.float32)
    dense[idx] = val
    top = idx[np.argsort(-val)[: hp.doph_top]]
    c_top = codes_sparse(hp, np.sort(top), np.ones(hp.doph_top), scratch)
    assert np.array_equal(codes_sparse(hp, idx, val, scratch), c_top)
    assert np.array_equal(codes_dense(hp, dense, scratch), c_top)
    # a fully dense vector with negative entries: top doph_top positive coordinates
    vec = rng.standard_normal(DOPH_DIM).astype(np.float32)
    top = np.argsort(-vec)[: hp.doph_top]
    assert np.array_equal(codes_dense(hp, vec, scratch), codes_sparse(hp, np.sort(top), np.ones(hp.doph_top), scratch))


# ---------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,K,bin_size,bucket_bits", [
    ("wta", 3, 8, 12),      # 9 bits: packed (bucket_bits capped to 9)
    ("wta", 6, 8, 12),      # 18 bits: folded to 12
    ("dwta", 4, 4, 8),      # 8 bits: exactly packed
    ("simhash", 9, 2, 20),  # 9 bits: packed
    ("simhash", 24, 2, 10),  # folded
    ("doph", 3, 8, 30),     # 12 bits: packed
    ("doph", 5, 8, 14),     # 20 bits: folded
])
def test_codes_to_keys_matches_reference(family, K, bin_size, bucket_bits):
    L = 40
    dim = 64
    hp = make_hash_params(family, K, L, dim, bucket_bits=bucket_bits, seed=K, wta_bin_size=bin_size)
    cb = code_bits_of(family, bin_size)
    assert hp.code_bits == cb
    assert hp.bucket_bits == min(bucket_bits, K * cb)
    rng = np.random.default_rng(K)
    for _ in range(5):
        codes = rng.integers(0, 2 ** cb, K * L).astype(np.int64)
        keys = keys_of(hp, codes)
        assert np.array_equal(keys, ref_keys(hp, codes))
        assert keys.min() >= 0 and keys.max() < 2 ** hp.bucket_bits
    if K * cb <= bucket_bits:
        # packing: code k of table t sits in bits [(K-1-k)*cb, (K-k)*cb)
        codes = rng.integers(0, 2 ** cb, K * L).astype(np.int64)
        keys = keys_of(hp, codes)
        for k in range(K):
            shift = (K - 1 - k) * cb
            assert np.array_equal((keys >> shift) & (2 ** cb - 1), codes[k::K])


def test_packed_keys_are_injective():
    """Each code has its own bit range: all 8**3 WTA code tuples give 512 distinct keys (the
    public C++ code shifts 3-bit codes by 2 bits, so tuples collide)."""
    K, m = 3, 8
    hp = make_hash_params("wta", K, 1, 16, bucket_bits=9, seed=0, wta_bin_size=m)
    grid = np.array(np.meshgrid(*[np.arange(m)] * K, indexing="ij")).reshape(K, -1).T
    keys = [int(keys_of(hp, row.astype(np.int64))[0]) for row in grid]
    assert len(set(keys)) == m ** K == 512
    assert max(keys) == 511


def test_folded_keys_spread_over_buckets():
    hp = make_hash_params("simhash", 30, 1, 64, bucket_bits=6, seed=1)
    rng = np.random.default_rng(0)
    keys = np.array([keys_of(hp, rng.integers(0, 2, 30).astype(np.int64))[0] for _ in range(6400)])
    counts = np.bincount(keys, minlength=64)
    assert counts.min() > 50 and counts.max() < 160  # about 100 each


@pytest.mark.parametrize("family", ["simhash", "wta", "dwta", "doph"])
def test_hash_rows_keys_matches_per_row_hashing(family):
    hp = make_hash_params(family, 3, 12, 40, bucket_bits=10, seed=5, wta_bin_size=4, doph_top=8)
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((37, 40)).astype(np.float32)
    rows[rows < -0.5] = 0.0
    keys = np.empty((37, hp.n_tables), np.int64)
    hash_rows_keys(hp, rows, keys, 2)
    scratch = make_scratch(hp, 1)
    for r in range(37):
        assert np.array_equal(keys[r], keys_of(hp, codes_dense(hp, rows[r], scratch)))
    if family == "simhash":
        keys_t = np.full((hp.n_tables, 40), -1, np.int32)  # table-major, written from column 3 on
        zero = np.zeros(max(len(rows), hp.hashes_per_table * hp.n_tables), np.float32)
        simhash_signs_to_keys(hp, np.ascontiguousarray(rows @ hp.proj.T, np.float32), zero, zero, zero, keys_t, 3, 2)
        assert np.array_equal(keys, keys_t[:, 3:].T) and (keys_t[:, :3] == -1).all()


# ---------------------------------------------------------------------------------------------
# tables filled by rebuild_tables
# ---------------------------------------------------------------------------------------------
def _tables(hp, bucket_size):
    buckets = np.full((hp.n_tables, 1 << hp.bucket_bits, bucket_size), -1, np.int32)
    fill = np.zeros((hp.n_tables, 1 << hp.bucket_bits), np.int32)
    return buckets, fill


@pytest.mark.parametrize("family", ["simhash", "dwta"])
@pytest.mark.parametrize("center", [False, True])
def test_rebuild_inserts_every_neuron_in_its_bucket(family, center):
    """Every neuron lands in the bucket its hashed vector ([w, b], centred or not) has; the
    SimHash rebuild folds bias and centring into its BLAS product instead of hashing a copy."""
    d, N = 30, 300
    hp = make_hash_params(family, 2, 6, d + 1, bucket_bits=4, seed=2, wta_bin_size=4)
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((N, d)) + 0.5).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    buckets, fill = _tables(hp, N)  # room for everything
    rebuild_tables(hp, buckets, fill, W, b, input_major=False, mips=False, center=center, insertion=FIFO, seed=1,
                   epoch=0, n_threads=2, chunk=64)
    assert np.all(fill.sum(axis=1) == N)
    c = mean_neuron(W, b, False) if center else None
    rows = neuron_rows(W, b, np.arange(N), input_major=False, mips=False, max_norm=1.0, center=c)
    keys = np.empty((N, hp.n_tables), np.int64)
    hash_rows_keys(hp, rows, keys, 1)
    for t in range(hp.n_tables):
        for key in range(1 << hp.bucket_bits):
            got = buckets[t, key, : fill[t, key]]
            assert sorted(got.tolist()) == np.flatnonzero(keys[:, t] == key).tolist()
    # input-major weights (first layer: W is (d, N)) give the same tables
    buckets2, fill2 = _tables(hp, N)
    rebuild_tables(hp, buckets2, fill2, np.ascontiguousarray(W.T), b, input_major=True, mips=False, center=center,
                   insertion=FIFO, seed=1, epoch=0, n_threads=2)
    assert np.array_equal(fill, fill2)
    assert np.array_equal(buckets, buckets2)


def test_neuron_rows_mips_augmentation():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((20, 5)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    M = float(np.sqrt(((W ** 2).sum(1) + b ** 2).max()))
    rows = neuron_rows(W, b, np.arange(20), input_major=False, mips=True, max_norm=M)
    assert rows.shape == (20, 7)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    x = rng.standard_normal(5).astype(np.float32)
    q = np.concatenate([x, [1.0, 0.0]])
    np.testing.assert_allclose(rows @ q, (W @ x + b) / M, rtol=1e-5, atol=1e-5)


def _reservoir_position_chi2(chunk):
    """All neurons identical (one bucket per table), reservoir of 4 out of 40; count at which
    insertion position (in rebuild's shuffled order) the kept ids were offered."""
    d, N, cap = 8, 40, 4
    hp = make_hash_params("simhash", 2, 64, d + 1, bucket_bits=2, seed=0)
    W = np.tile(np.arange(1, d + 1, dtype=np.float32), (N, 1))
    b = np.ones(N, np.float32)
    counts = np.zeros(N)
    n_epochs = 40
    for epoch in range(n_epochs):
        buckets, fill = _tables(hp, cap)
        rebuild_tables(hp, buckets, fill, W, b, input_major=False, mips=False, center=False, insertion=RESERVOIR,
                       seed=9, epoch=epoch, n_threads=1, chunk=chunk)
        order = np.random.default_rng([9, epoch]).permutation(N)
        pos = np.empty(N, np.int64)
        pos[order] = np.arange(N)
        full = np.flatnonzero(fill.ravel() == N)
        assert len(full) == hp.n_tables  # one bucket per table got everything
        kept = buckets.reshape(-1, cap)[full]
        assert np.all(np.sort(kept, axis=1)[:, 1:] != np.sort(kept, axis=1)[:, :-1])  # distinct
        np.add.at(counts, pos[kept.ravel()], 1)
    S = n_epochs * hp.n_tables
    p = cap / N
    E = S * p
    stat = np.sum((counts - E) ** 2) / (E * (1 - p) * N / (N - 1))
    return chi2.sf(stat, N - 1)


def test_rebuild_reservoir_is_uniform_over_insertion_order():
    assert _reservoir_position_chi2(chunk=16384) > 1e-3


def test_rebuild_reservoir_uniform_over_insertion_order_with_several_chunks():
    assert _reservoir_position_chi2(chunk=20) > 1e-3


# ---------------------------------------------------------------------------------------------
# retrieval recall
# ---------------------------------------------------------------------------------------------
def _layer_with_planted_queries(N, d, n_queries, n_planted, rng, equal_norms):
    """Random layer, plus queries each correlated with its own planted neurons."""
    dirs = rng.standard_normal((N, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    queries = []
    planted_all = rng.choice(N, n_queries * n_planted, replace=False).reshape(n_queries, n_planted)
    for qi in range(n_queries):
        x = rng.standard_normal(d)
        x /= np.linalg.norm(x)
        for j in planted_all[qi]:
            c = rng.uniform(0.65, 0.95)  # cosine with the query
            z = rng.standard_normal(d)
            z -= (z @ x) * x
            z /= np.linalg.norm(z)
            dirs[j] = c * x + math.sqrt(1 - c * c) * z
        queries.append(4.0 * x)  # |x| = 4: the appended 1 of [x, 1] tilts the query only a little
    norms = np.ones(N) if equal_norms else np.exp(rng.normal(0, 0.5, N))
    W = (dirs * norms[:, None]).astype(np.float32)
    b = np.zeros(N, np.float32) if equal_norms else (0.05 * rng.standard_normal(N)).astype(np.float32)
    return W, b, np.array(queries, np.float32)


def _retrieve(hp, buckets, fill, q, budget, N, tag, state):
    scratch = make_scratch(hp, 1)
    codes = np.empty(n_codes(hp), np.int64)
    hash_dense(hp, q, codes, scratch, 0)
    keys = np.empty(hp.n_tables, np.int64)
    codes_to_keys(hp, codes, keys)
    stamp, count, cand, out, order, rng = state
    n = select_active(buckets, fill, keys, TOPK, budget, 1, stamp, count, tag, cand, out, 0, order, rng)
    return out[:n].copy()


@pytest.mark.parametrize("mips", [False, True])
def test_simhash_tables_retrieve_top_neurons(mips):
    N, d, L, K, bucket_bits, bucket_size = 5000, 64, 50, 8, 8, 128
    budget = N // 20
    rng = np.random.default_rng(123 + mips)
    W, b, queries = _layer_with_planted_queries(N, d, 20, 10, rng, equal_norms=mips)
    dim = d + (2 if mips else 1)
    hp = make_hash_params("simhash", K, L, dim, bucket_bits=bucket_bits, seed=77)
    buckets, fill = _tables(hp, bucket_size)
    rebuild_tables(hp, buckets, fill, W, b, input_major=False, mips=mips, center=False, insertion=RESERVOIR,
                   seed=5, epoch=0, n_threads=2)
    assert np.all(fill.sum(axis=1) == N)
    state = (np.zeros(N, np.int64), np.zeros(N, np.int32), np.zeros(L * bucket_size, np.int32),
             np.zeros(N, np.int32), np.zeros(L, np.int64), np.array([1], np.uint64))
    wb = np.hstack([W, b[:, None]]).astype(np.float64)
    recalls = []
    for qi, x in enumerate(queries):
        if mips:
            q = np.concatenate([x, [1.0, 0.0]]).astype(np.float32)
            score = W.astype(np.float64) @ x + b  # inner products
        else:
            q = np.concatenate([x, [1.0]]).astype(np.float32)
            score = wb @ q / np.linalg.norm(wb, axis=1)  # cosine of [w, b] vs [x, 1]
        top = np.argsort(-score)[:10]
        got = _retrieve(hp, buckets, fill, q, budget, N, qi + 1, state)
        assert len(got) <= budget and len(set(got.tolist())) == len(got)
        recalls.append(len(np.intersect1d(top, got)) / 10)
    recall = float(np.mean(recalls))
    assert recall > 0.8, recalls
    assert recall > 10 * budget / N
