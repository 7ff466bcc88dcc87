"""Tests for slide.metrics: loop references, hand-computed cases, streaming, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from slide import metrics as M
from slide.errors import DataFormatError, ParameterError, SlideError

APPROX = dict(rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------------------
# plain Python reference (one row at a time, sets and lists only)
# --------------------------------------------------------------------------------------


def ref_label_sets(Y):
    """Relevant label set of every row: columns whose (summed) value is non-zero."""
    dense = Y.toarray()
    return [set(int(j) for j in range(dense.shape[1]) if dense[i, j] != 0) for i in range(dense.shape[0])]


def ref_propensities(Y, A=0.55, B=1.5):
    sets = ref_label_sets(Y)
    N, L = Y.shape
    C = (math.log(N) - 1) * (B + 1) ** A
    out = []
    for lab in range(L):
        N_l = sum(1 for s in sets if lab in s)
        out.append(1.0 / (1.0 + C * math.exp(-A * math.log(N_l + B))))
    return out


def ref_metrics(Y, P, k, propensities=None):
    """Obviously-correct loop implementation of every metric at one k."""
    sets = ref_label_sets(Y)
    n = len(sets)
    prec = ndcg = rec = psp_num = psp_den = 0.0
    labelled = 0
    for i in range(n):
        y = sets[i]
        preds = [int(p) for p in P[i][:k]]
        hits = [p != -1 and p in y for p in preds]
        prec += sum(hits) / k
        if y:
            labelled += 1
            dcg = sum(1 / math.log2(r + 2) for r in range(k) if hits[r])
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(y))))
            ndcg += dcg / idcg
            rec += sum(hits) / len(y)
        if propensities is not None:
            psp_num += sum(1 / propensities[p] for p, h in zip(preds, hits) if h) / k
            best = sorted((1 / propensities[lab] for lab in y), reverse=True)[:k]
            psp_den += sum(best) / k
    out = {
        "P": prec / n,
        "nDCG": ndcg / n,
        "R": rec / labelled if labelled else 0.0,
    }
    if propensities is not None:
        out["PSP"] = psp_num / psp_den if psp_den else 0.0
        out["PSP_raw"] = psp_num / n
    return out


def ref_evaluate(Y, P, ks, propensities=None):
    per_k = {k: ref_metrics(Y, P, k, propensities) for k in ks}
    names = ["P", "nDCG"] + (["PSP"] if propensities is not None else []) + ["R"]
    return {f"{name}@{k}": per_k[k][name] for name in names for k in ks}


# --------------------------------------------------------------------------------------
# random data
# --------------------------------------------------------------------------------------


def random_case(seed, n=60, L=25, m=7, max_labels=6, p_empty=0.2, p_missing=0.15):
    """Random binary CSR truth (with empty rows) and duplicate-free predictions with -1s."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for i in range(n):
        c = 0 if rng.random() < p_empty else int(rng.integers(1, max_labels + 1))
        labs = rng.choice(L, size=c, replace=False)
        rows += [i] * c
        cols += list(labs)
    Y = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, L))
    P = np.empty((n, m), dtype=np.int64)
    sets = ref_label_sets(Y)
    for i in range(n):
        # bias towards hits: mix of true labels and random others, no duplicates
        cand = list(sets[i]) + list(rng.permutation(L))
        seen, row = set(), []
        for c in (cand[j] for j in rng.permutation(len(cand))):
            if c not in seen:
                seen.add(c)
                row.append(c)
        P[i] = row[:m]
    P[rng.random((n, m)) < p_missing] = -1
    return Y, P


def random_propensities(seed, L):
    return np.random.default_rng(seed).uniform(0.05, 1.0, L)


# --------------------------------------------------------------------------------------
# against the reference
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_single_metrics_match_reference(seed, k):
    Y, P = random_case(seed)
    w = random_propensities(seed, Y.shape[1])
    ref = ref_metrics(Y, P, k, w)
    assert M.precision_at_k(Y, P, k) == pytest.approx(ref["P"], **APPROX)
    assert M.ndcg_at_k(Y, P, k) == pytest.approx(ref["nDCG"], **APPROX)
    assert M.recall_at_k(Y, P, k) == pytest.approx(ref["R"], **APPROX)
    assert M.psprecision_at_k(Y, P, k, propensities=w) == pytest.approx(ref["PSP"], **APPROX)
    assert M.psprecision_at_k(Y, P, k, propensities=w, normalize=False) == pytest.approx(
        ref["PSP_raw"], **APPROX
    )


@pytest.mark.parametrize("seed", range(4))
def test_evaluate_matches_reference(seed):
    Y, P = random_case(seed, n=80, L=30, m=6)
    w = random_propensities(seed + 100, 30)
    got = M.evaluate(Y, P, ks=(1, 3, 5), propensities=w)
    ref = ref_evaluate(Y, P, (1, 3, 5), w)
    assert list(got) == list(ref)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], **APPROX), key
        assert type(got[key]) is float


def test_evaluate_keys_without_propensities():
    Y, P = random_case(0)
    got = M.evaluate(Y, P)
    assert list(got) == ["P@1", "P@3", "P@5", "nDCG@1", "nDCG@3", "nDCG@5", "R@1", "R@3", "R@5"]
    assert all(type(v) is float for v in got.values())


def test_psprecision_default_propensities_from_y_true():
    Y, P = random_case(3)
    w = ref_propensities(Y, A=0.6, B=2.6)
    ref = ref_metrics(Y, P, 3, w)
    assert M.psprecision_at_k(Y, P, 3, A=0.6, B=2.6) == pytest.approx(ref["PSP"], **APPROX)
    assert M.psprecision_at_k(Y, P, 3) == pytest.approx(
        ref_metrics(Y, P, 3, ref_propensities(Y))["PSP"], **APPROX
    )


def test_label_propensities_match_reference():
    Y, _ = random_case(5, n=200, L=40)
    np.testing.assert_allclose(M.label_propensities(Y), ref_propensities(Y), rtol=1e-13)
    np.testing.assert_allclose(
        M.label_propensities(Y, A=0.5, B=0.4), ref_propensities(Y, 0.5, 0.4), rtol=1e-13
    )


@pytest.mark.parametrize("block", [1, 3, 7, 50])
def test_small_blocks_match_reference(monkeypatch, block):
    """Block boundaries inside the vectorised core must not change anything."""
    monkeypatch.setattr(M, "_BLOCK_ENTRIES", block)
    Y, P = random_case(11, n=40, L=12, m=5)
    w = random_propensities(1, 12)
    got = M.evaluate(Y, P, ks=(1, 2, 5), propensities=w)
    ref = ref_evaluate(Y, P, (1, 2, 5), w)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], **APPROX), key


# --------------------------------------------------------------------------------------
# hand-computed cases
# --------------------------------------------------------------------------------------


def csr(rows, L):
    """CSR matrix from a list of label lists."""
    r = [i for i, labs in enumerate(rows) for _ in labs]
    c = [lab for labs in rows for lab in labs]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), L))


def test_precision_by_hand():
    Y = csr([[0, 2], [1], []], 4)
    P = np.array([[2, 1, 0], [3, 1, -1], [0, 1, 2]])
    # row hits at ranks: [1, 0, 1], [0, 1, 0], [0, 0, 0]
    assert M.precision_at_k(Y, P, 1) == pytest.approx(1 / 3)
    assert M.precision_at_k(Y, P, 2) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert M.precision_at_k(Y, P, 3) == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)


def test_ndcg_known_values():
    Y = csr([[0, 2]], 4)
    # DCG@3 = 1/log2(2) + 1/log2(4) = 1.5; IDCG(2 labels) = 1 + 1/log2(3)
    assert M.ndcg_at_k(Y, np.array([[2, 1, 0]]), 3) == pytest.approx(0.9197207891481876, **APPROX)
    # DCG@2 = 1; IDCG = 1 + 1/log2(3)
    assert M.ndcg_at_k(Y, np.array([[2, 1, 0]]), 2) == pytest.approx(0.6131471927654584, **APPROX)
    # single label found at rank 2: 1/log2(3), ideal is 1
    Y1 = csr([[1]], 3)
    assert M.ndcg_at_k(Y1, np.array([[0, 1]]), 2) == pytest.approx(0.6309297535714575, **APPROX)
    # perfect ranking and all-miss ranking
    assert M.ndcg_at_k(Y, np.array([[0, 2, 3]]), 3) == pytest.approx(1.0, **APPROX)
    assert M.ndcg_at_k(Y, np.array([[3, 1, -1]]), 3) == 0.0
    # ideal for min(k, |y|) labels: 3 labels, k = 1, hit at rank 1 -> 1
    assert M.ndcg_at_k(csr([[0, 1, 2]], 3), np.array([[1]]), 1) == 1.0


def test_ndcg_empty_rows_count_as_zero():
    # pyxclib convention: label-less rows score 0 and stay in the mean
    Y = csr([[0], [], []], 2)
    P = np.array([[0], [0], [1]])
    assert M.ndcg_at_k(Y, P, 1) == pytest.approx(1 / 3)
    assert M.precision_at_k(Y, P, 1) == pytest.approx(1 / 3)
    # recall ignores them
    assert M.recall_at_k(Y, P, 1) == 1.0


def test_recall_by_hand():
    Y = csr([[0, 1, 2, 3], [4], []], 5)
    P = np.array([[0, 4, 3], [1, 4, -1], [0, 1, 2]])
    # row 0: 2 of 4 found at k=3; row 1: 1 of 1 at k=2; row 2 excluded
    assert M.recall_at_k(Y, P, 3) == pytest.approx((2 / 4 + 1) / 2)
    assert M.recall_at_k(Y, P, 1) == pytest.approx((1 / 4 + 0) / 2)
    assert M.recall_at_k(csr([[], []], 3), np.array([[0], [1]]), 1) == 0.0


def test_psprecision_by_hand():
    Y = csr([[0, 1], [2]], 3)
    P = np.array([[0, 2], [2, 0]])
    p = np.array([0.5, 0.25, 1.0])  # weights 1/p = 2, 4, 1
    # k=1: hits weigh 2 and 1; ideal picks labels 1 (4) and 2 (1)
    assert M.psprecision_at_k(Y, P, 1, propensities=p) == pytest.approx(3 / 5)
    assert M.psprecision_at_k(Y, P, 1, propensities=p, normalize=False) == pytest.approx(1.5)
    # k=2: hits 2 and 1; ideal 4+2 and 1 -> (3/2) / (7/2)
    assert M.psprecision_at_k(Y, P, 2, propensities=p) == pytest.approx(3 / 7)
    assert M.psprecision_at_k(Y, P, 2, propensities=p, normalize=False) == pytest.approx(0.75)
    # perfect ranking by weight gives exactly 1
    assert M.psprecision_at_k(Y, np.array([[1, 0], [2, -1]]), 2, propensities=p) == 1.0
    # no labels anywhere: 0 by convention
    assert M.psprecision_at_k(csr([[], []], 3), P, 1, propensities=p) == 0.0


def test_label_propensities_by_hand():
    # N = 10 rows; label 0 never occurs, label 1 once, label 2 in 5 rows
    rows = [[1, 2]] + [[2]] * 4 + [[]] * 5
    p = M.label_propensities(csr(rows, 3))
    # N_l = 1 makes C * (1 + B)^-A = log N - 1, so p = 1 / log N exactly
    assert p[1] == pytest.approx(1 / math.log(10), rel=1e-14)
    assert p[0] == pytest.approx(0.36695438878327463, rel=1e-14)
    assert p[2] == pytest.approx(0.5649264557303245, rel=1e-14)
    assert p.dtype == np.float64 and p.shape == (3,)
    # pyxclib's compute_inv_propesity form: 1/p = 1 + C (N_l + B)^-A
    C = (math.log(10) - 1) * 2.5**0.55
    np.testing.assert_allclose(1 / p, 1 + C * (np.array([0, 1, 5]) + 1.5) ** -0.55, rtol=1e-13)


def test_minus_one_never_aliases_previous_row():
    # key of (row 1, -1) equals key of (row 0, L-1): must still be a miss
    L = 4
    Y = csr([[L - 1], [0]], L)
    P = np.array([[L - 1], [-1]])
    assert M.precision_at_k(Y, P, 1) == 0.5
    assert M.evaluate(Y, P, ks=(1,))["P@1"] == 0.5


def test_input_forms_and_no_mutation():
    """Unsorted indices, duplicates, explicit zeros, odd dtypes, other sparse formats."""
    indptr = np.array([0, 4, 6, 8])
    indices = np.array([3, 1, 3, 0, 2, 2, 1, 0], dtype=np.int32)
    data = np.array([1, 1, 1, 0, 5, 1, 0, 0], dtype=np.int8)  # row0 {1,3}; row1 {2}; row2 {}
    Y = sp.csr_matrix((data, indices, indptr), shape=(3, 4))
    before = (Y.indptr.copy(), Y.indices.copy(), Y.data.copy())
    P = np.array([[3, 0, 1], [2, 1, -1], [0, 1, 2]], dtype=np.int16)
    expected = M.evaluate(csr([[1, 3], [2], []], 4), P.astype(np.int64), ks=(1, 2, 3))
    for variant in (Y, Y.tocoo(), Y.tocsc(), sp.csr_array(Y), Y.astype(bool)):
        got = M.evaluate(variant, P, ks=(1, 2, 3))
        assert got == pytest.approx(expected, **APPROX)
    assert M.precision_at_k(Y, P, 2) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    np.testing.assert_array_equal(Y.indptr, before[0])
    np.testing.assert_array_equal(Y.indices, before[1])
    np.testing.assert_array_equal(Y.data, before[2])
    # predictions as nested lists are fine too
    assert M.precision_at_k(Y, P.tolist(), 1) == pytest.approx(2 / 3)


def test_extra_prediction_columns_are_ignored():
    Y, P = random_case(2, m=7)
    wide = np.hstack([P, np.full((P.shape[0], 3), 10**9)])  # invalid ids beyond max(ks)
    assert M.evaluate(Y, wide) == M.evaluate(Y, P) == M.evaluate(Y, P[:, :5])
    assert M.precision_at_k(Y, wide, 5) == M.precision_at_k(Y, P, 5)


# --------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_p", [False, True])
def test_accumulator_equals_evaluate(with_p):
    Y, P = random_case(7, n=101, L=30, m=5)
    w = random_propensities(3, 30) if with_p else None
    full = M.evaluate(Y, P, ks=(1, 3, 5), propensities=w)
    acc = M.MetricsAccumulator(ks=(1, 3, 5), propensities=w)
    for a, b in [(0, 10), (10, 10), (10, 57), (57, 58), (58, 101)]:  # includes an empty chunk
        acc.update(Y[a:b], P[a:b])
    assert acc.n_rows == 101
    res = acc.result()
    assert list(res) == list(full)
    assert res == pytest.approx(full, **APPROX)
    assert all(type(v) is float for v in res.values())


def test_accumulator_errors_leave_state_unchanged():
    Y, P = random_case(1, n=20, L=10, m=5)
    acc = M.MetricsAccumulator(ks=(1, 3))
    with pytest.raises(DataFormatError, match="no rows"):
        acc.result()
    acc.update(Y[:10], P[:10])
    with pytest.raises(DataFormatError, match="label columns"):
        acc.update(sp.csr_matrix((10, 11)), P[:10])
    with pytest.raises(ParameterError, match="exceeds"):
        acc.update(Y[10:], P[10:, :2])
    acc.update(Y[10:], P[10:])
    assert acc.result() == pytest.approx(M.evaluate(Y, P, ks=(1, 3)), **APPROX)
    acc_p = M.MetricsAccumulator(ks=(1,), propensities=np.full(9, 0.5))
    with pytest.raises(DataFormatError, match="propensities has 9"):
        acc_p.update(Y, P)


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------

Y0 = csr([[0, 1], [2]], 3)
P0 = np.array([[0, 1], [2, -1]])


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: M.precision_at_k("abc", P0), DataFormatError, "scipy.sparse"),
        (lambda: M.precision_at_k(Y0.toarray()[None], P0), DataFormatError, "label matrix"),
        (lambda: M.precision_at_k(Y0, P0[0]), DataFormatError, "2-D"),
        (lambda: M.precision_at_k(Y0, P0.astype(float)), DataFormatError, "integer"),
        (lambda: M.precision_at_k(Y0, P0.astype(bool)), DataFormatError, "integer"),
        (lambda: M.ndcg_at_k(Y0, P0[:1], 1), DataFormatError, "1 rows but Y_true has 2"),
        (lambda: M.precision_at_k(Y0, [[0, 1], [2]]), DataFormatError, "rectangular"),
        (lambda: M.precision_at_k(Y0, P0, 0), ParameterError, ">= 1"),
        (lambda: M.recall_at_k(Y0, P0, 3), ParameterError, "exceeds"),
        (lambda: M.precision_at_k(Y0, P0, True), ParameterError, "'k' argument of the metric must be an int"),
        (lambda: M.precision_at_k(Y0, P0, 1.0), ParameterError, "must be an int >= 1. Got 1.0"),
        (lambda: M.precision_at_k(Y0, np.array([[0, 1], [3, 0]]), 1), DataFormatError,
         r"top_k_labels\[1, 0\] = 3"),
        (lambda: M.precision_at_k(Y0, np.array([[0, -2], [0, 0]]), 2), DataFormatError, "-2"),
        (lambda: M.precision_at_k(sp.csr_matrix((0, 3)), np.zeros((0, 1), int)), DataFormatError,
         "no rows"),
        (lambda: M.precision_at_k(sp.csr_matrix((2, 0)), P0), DataFormatError, "no label columns"),
        (lambda: M.evaluate(Y0, P0, ks=(1, 1)), ParameterError, "duplicates"),
        (lambda: M.evaluate(Y0, P0, ks=()), ParameterError, "at least one"),
        (lambda: M.evaluate(Y0, P0, ks=(1, 3)), ParameterError, "exceeds"),
        (lambda: M.evaluate(Y0, P0, ks=(1,), propensities=np.ones(4)), DataFormatError, "4 entries"),
        (lambda: M.evaluate(Y0, P0, ks=(1,), propensities=[1.0, 2.0, 0.5]), ParameterError,
         "inverse propensities"),
        (lambda: M.psprecision_at_k(Y0, P0, propensities=[0.5, 0.0, 0.5]), ParameterError,
         r"\(0, 1\]"),
        (lambda: M.psprecision_at_k(Y0, P0, propensities=np.ones((3, 1))), ParameterError, "1-D"),
        (lambda: M.psprecision_at_k(Y0, P0), DataFormatError, "at least 3 training points"),
        (lambda: M.label_propensities(Y0, A=0), ParameterError, "A must be"),
        (lambda: M.label_propensities(Y0, B=float("nan")), ParameterError, "B must be"),
        (lambda: M.label_propensities("labels"), DataFormatError, "Y_train"),
        (lambda: M.MetricsAccumulator(ks=(0,)), ParameterError, ">= 1"),
        (lambda: M.MetricsAccumulator(ks="abc"), ParameterError, "'ks' argument of the metric must be an int"),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match) as info:
        call()
    assert isinstance(info.value, SlideError)


def test_out_of_range_ids_beyond_k_are_not_checked():
    # only the columns that are used (the first max(ks)) are validated
    assert M.precision_at_k(Y0, np.array([[0, 99], [2, 99]]), 1) == 1.0


# --------------------------------------------------------------------------------------
# property test
# --------------------------------------------------------------------------------------


@st.composite
def cases(draw):
    n = draw(st.integers(1, 8))
    L = draw(st.integers(1, 7))
    m = draw(st.integers(1, L + 1))
    label_sets = [draw(st.sets(st.integers(0, L - 1), max_size=L)) for _ in range(n)]
    preds = []
    for _ in range(n):
        order = draw(st.permutations(list(range(L)) + [-1] * m))
        row, seen = [], set()
        for lab in order:  # duplicate-free apart from -1
            if lab == -1 or lab not in seen:
                seen.add(lab)
                row.append(lab)
        preds.append(row[:m])
    Y = csr([sorted(s) for s in label_sets], L)
    ks = tuple(sorted(draw(st.sets(st.integers(1, m), min_size=1, max_size=3))))
    prop = draw(st.lists(st.floats(0.01, 1.0), min_size=L, max_size=L))
    split = draw(st.integers(0, n))
    return Y, np.array(preds, dtype=np.int64), ks, np.array(prop), split


@settings(max_examples=150, deadline=None)
@given(cases())
def test_property_evaluate_reference_streaming_and_bounds(case):
    Y, P, ks, prop, split = case
    got = M.evaluate(Y, P, ks=ks, propensities=prop)
    ref = ref_evaluate(Y, P, ks, prop)
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-12)
    for v in got.values():
        assert 0.0 <= v <= 1.0 + 1e-12
    acc = M.MetricsAccumulator(ks=ks, propensities=prop)
    acc.update(Y[:split], P[:split])
    acc.update(Y[split:], P[split:])
    assert acc.result() == pytest.approx(got, rel=1e-9, abs=1e-12)
    # shuffling rows changes nothing
    perm = np.random.default_rng(len(P)).permutation(len(P))
    assert M.evaluate(Y[perm], P[perm], ks=ks, propensities=prop) == pytest.approx(
        got, rel=1e-9, abs=1e-12
    )
    # P@k is monotone-consistent: k * P@k never decreases with k
    for a, b in zip(ks, ks[1:]):
        assert a * got[f"P@{a}"] <= b * got[f"P@{b}"] + 1e-12


def test_truth_and_predictions_in_the_forms_pyxclib_and_pecos_users_pass():
    rng = np.random.default_rng(5)
    Y = sp.random(60, 40, density=0.08, format="csr", random_state=rng)
    Y.data[:] = 1
    S = sp.random(60, 40, density=0.2, format="csr", random_state=rng)  # a score matrix, as PECOS returns
    top = M.ids_from_scores(S, 5)
    expected = M.evaluate(Y, top)
    lists = [list(Y.indices[Y.indptr[i]:Y.indptr[i + 1]]) for i in range(60)]
    for truth in (Y, Y.toarray(), lists):
        assert M.evaluate(truth, S) == pytest.approx(expected)
        assert M.evaluate(truth, top) == pytest.approx(expected)
    # ids_from_scores against a plain sort of every row
    D = S.toarray()
    for i in range(60):
        stored = np.flatnonzero(D[i])
        ranked = stored[np.lexsort((stored, -D[i, stored]))][:5]
        np.testing.assert_array_equal(top[i, :ranked.size], ranked)
        assert (top[i, ranked.size:] == -1).all()
    # list truth is as wide as the ids it or the predictions name: a predicted id past its last is a miss
    assert M.precision_at_k([[0], [1]], np.array([[7], [1]])) == 0.5
    p = M.label_propensities(Y)
    assert M.evaluate(lists, top, propensities=p) == pytest.approx(M.evaluate(Y, top, propensities=p))
