"""Ranking metrics for extreme multi-label classification.

All metrics take the ground truth ``Y_true`` as a scipy sparse ``(n, L)`` matrix (any dtype;
every stored non-zero marks a relevant label), a dense ``(n, L)`` array of the same meaning, or
a list of label-id lists (as pyxclib and PECOS users keep them), and the predictions
``top_k_labels`` as an ``(n, m)`` integer array of label ids, best first, or as a sparse
``(n, L)`` score matrix (``SlideClassifier.predict_proba``, a PECOS prediction), ranked by
score. An id of ``-1`` means "no prediction" and always counts as a miss. Only the first
``k`` columns are used.

The implementation is fully vectorised: membership of a prediction in a row's label set is
decided by encoding both as row-major keys ``row * L + label`` and looking the prediction
keys up in the (sorted) keys of ``Y_true``'s non-zeros with :func:`numpy.searchsorted`.
Rows are processed in large blocks so that memory stays bounded on test sets with millions
of rows; the caller's matrix is never modified.

Conventions follow the Extreme Classification Repository and pyxclib
(``xclib/evaluation/xc_metrics.py``):

* ``P@k`` and ``nDCG@k`` are averaged over **all** rows; rows without labels score 0.
* ``PSP@k`` (normalised) is the ratio of two averages: the propensity-weighted hits of the
  predictions over those of the ideal ranking (not an average of per-row ratios).
* ``R@k`` is the exception: it is averaged over the rows that have at least one label only
  (pyxclib's ``recall`` averages over all rows, with label-less rows scoring 0).

Predictions are expected to be duplicate-free within a row; duplicates are not detected and
each occurrence of a relevant label counts as a hit (as in pyxclib).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

from slide.data_checks import check_k
from slide.errors import DataFormatError, ParameterError

__all__ = [
    "precision_at_k",
    "ndcg_at_k",
    "label_propensities",
    "psprecision_at_k",
    "recall_at_k",
    "evaluate",
    "ids_from_scores",
    "MetricsAccumulator",
]

# Number of prediction entries (rows x used columns) handled per block; bounds the size of
# the temporary arrays (a few hundred MB at most) independently of the number of rows.
_BLOCK_ENTRIES = 1 << 22


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------


class _Truth:
    """Canonical view of a label matrix: sorted, duplicate-free, explicit zeros dropped.

    ``indptr`` (int64, length ``n + 1``) and ``indices`` describe the relevant labels of each
    row exactly like CSR arrays. They are either the caller's arrays (read only) or fresh
    copies; the caller's matrix is never modified.
    """

    __slots__ = ("n", "L", "indptr", "indices", "counts", "from_lists")

    def __init__(self, n: int, L: int, indptr: np.ndarray, indices: np.ndarray, from_lists: bool = False):
        self.n = n
        self.L = L
        self.from_lists = from_lists  # L is then only as wide as the ids seen
        self.indptr = indptr
        self.indices = indices
        self.counts = np.diff(indptr)


def _lists_to_csr(Y, name: str, width: int) -> sp.csr_matrix:
    indptr = np.zeros(len(Y) + 1, np.int64)
    np.cumsum([len(r) for r in Y], out=indptr[1:])
    try:
        ids = np.fromiter((v for r in Y for v in r), dtype=np.int64, count=int(indptr[-1]))
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{name} must be a list of label-id lists (non-negative ints): {exc}") from None
    if ids.size and ids.min() < 0:
        raise DataFormatError(f"{name} holds the label id {int(ids.min())}; expected non-negative ids")
    width = max(width, int(ids.max()) + 1 if ids.size else 1)
    return sp.csr_matrix((np.ones(ids.size, np.int8), ids, indptr), shape=(len(Y), width))


def _max_id(top_k_labels) -> int:
    """The largest label id a prediction argument can name (for the width of list truth)."""
    if sp.issparse(top_k_labels):
        return int(top_k_labels.shape[1]) - 1
    try:
        P = np.asarray(top_k_labels)
        return int(P.max()) if P.size and np.issubdtype(P.dtype, np.integer) else 0
    except (ValueError, TypeError):
        return 0  # _as_predictions reports it


def _as_truth(Y, name: str, top_k_labels=None) -> _Truth:
    from_lists = False
    if isinstance(Y, (list, tuple)) and all(isinstance(r, (list, tuple, np.ndarray, set, frozenset)) for r in Y):
        # a list of label-id lists carries no width: wide enough for every id here or predicted
        Y = _lists_to_csr(Y, name, 1 + (_max_id(top_k_labels) if top_k_labels is not None else 0))
        from_lists = True
    elif not sp.issparse(Y):
        try:
            D = np.asarray(Y)
        except (ValueError, TypeError):
            D = None
        if D is None or D.ndim != 2 or D.dtype.kind not in "biuf":
            raise DataFormatError(
                f"{name} must be a label matrix of shape (n_rows, n_labels) (scipy.sparse, CSR "
                f"preferred, or a dense 0/1 array) or a list of label-id lists, got {type(Y).__name__}"
            )
        Y = sp.csr_matrix(D)
    if len(Y.shape) != 2:
        raise DataFormatError(f"{name} must be 2-D, got shape {Y.shape}")
    n, L = (int(s) for s in Y.shape)
    if L == 0:
        raise DataFormatError(f"{name} has no label columns (shape {Y.shape})")
    Y = Y if Y.format == "csr" else Y.tocsr()  # tocsr() returns a new object
    indptr = np.asarray(Y.indptr, dtype=np.int64)
    indices = np.asarray(Y.indices)
    data = np.asarray(Y.data)
    nnz = int(indptr[-1])
    indices = indices[:nnz]
    data = data[:nnz]

    rows = None
    nonzero = data != 0
    if not nonzero.all():
        # explicit zeros are stored but not relevant: drop them (on copies)
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))[nonzero]
        indices = indices[nonzero]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        nnz = indices.size

    if nnz > 1:
        # canonical <=> strictly increasing column indices inside every row
        increasing = np.diff(indices.astype(np.int64, copy=False)) > 0
        starts = indptr[1:-1]
        starts = starts[(starts > 0) & (starts < nnz)]
        increasing[starts - 1] = True  # a new row may start anywhere
        if not increasing.all():
            if rows is None:
                rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
            keys = np.unique(rows * L + indices.astype(np.int64))
            rows = keys // L
            indices = keys - rows * L
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return _Truth(n, L, indptr, indices, from_lists)


def _check_k(k, name: str = "k") -> int:
    return check_k(k, name=name, where="the metric")


def _check_ks(ks) -> tuple[int, ...]:
    if isinstance(ks, numbers.Integral) and not isinstance(ks, bool):
        ks = (ks,)
    if not isinstance(ks, Iterable):
        raise ParameterError(f"ks must be a sequence of positive integers, got {ks!r}")
    ks = tuple(_check_k(k, "ks") for k in ks)
    if not ks:
        raise ParameterError("ks must contain at least one value of k")
    if len(set(ks)) != len(ks):
        raise ParameterError(f"ks must not contain duplicates, got {ks}")
    return ks


def ids_from_scores(S, k: int) -> np.ndarray:
    """(n, k) label ids of each row's ``k`` largest stored scores of a sparse (n, L) score
    matrix, best first (ties: the lower id first), ``-1`` where a row stores fewer."""
    S = sp.csr_matrix(S)
    S.sum_duplicates()
    n = S.shape[0]
    counts = np.diff(S.indptr)
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    order = np.lexsort((S.indices, -S.data.astype(np.float64), rows))
    rank = np.arange(order.size, dtype=np.int64) - S.indptr[rows]  # rows stay sorted: order keeps them
    keep = rank < k
    out = np.full((n, k), -1, dtype=np.int64)
    out[rows[keep], rank[keep]] = S.indices[order][keep]
    return out


def _as_predictions(top_k_labels, truth: _Truth, kmax: int) -> np.ndarray:
    """Validate the prediction array (or rank a sparse score matrix) and return its first
    ``kmax`` columns."""
    if sp.issparse(top_k_labels):
        if top_k_labels.ndim != 2 or top_k_labels.shape[0] != truth.n or (
                top_k_labels.shape[1] != truth.L and not truth.from_lists):
            raise DataFormatError(
                f"the score matrix top_k_labels has shape {top_k_labels.shape} but Y_true has "
                f"{(truth.n, truth.L)}; both must describe the same rows and labels"
            )
        return ids_from_scores(top_k_labels, kmax)
    try:
        P = np.asarray(top_k_labels)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise DataFormatError(
            f"top_k_labels must be a rectangular (n_rows, m) integer array: {exc}"
        ) from None
    if P.ndim != 2:
        raise DataFormatError(
            f"top_k_labels must be a 2-D (n_rows, m) array of label ids, got shape {P.shape}"
        )
    if not np.issubdtype(P.dtype, np.integer):
        raise DataFormatError(
            f"top_k_labels must hold integer label ids (best first, -1 for no prediction), "
            f"got dtype {P.dtype}; convert with .astype(np.int64) if the values are ids"
        )
    if P.shape[0] != truth.n:
        raise DataFormatError(
            f"top_k_labels has {P.shape[0]} rows but Y_true has {truth.n}; "
            f"both must describe the same rows"
        )
    if kmax > P.shape[1]:
        raise ParameterError(
            f"k = {kmax} exceeds the number of predicted columns in top_k_labels "
            f"({P.shape[1]})"
        )
    P = P[:, :kmax]
    if P.size:
        lo, hi = P.min(), P.max()
        if hi >= truth.L or lo < -1:
            bad = (P >= truth.L) | (P < -1)
            r, c = np.unravel_index(int(np.argmax(bad)), P.shape)
            raise DataFormatError(
                f"top_k_labels[{r}, {c}] = {P[r, c]} is not a valid label id: expected "
                f"0 <= id < {truth.L} (the number of columns of Y_true) or -1 for no prediction"
            )
    return P


def _check_propensities(propensities, name: str = "propensities") -> np.ndarray:
    try:
        p = np.asarray(propensities, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"{name} must be a 1-D array of floats: {exc}") from None
    if p.ndim != 1:
        raise ParameterError(f"{name} must be a 1-D array (one value per label), got shape {p.shape}")
    if p.size and not (np.all(np.isfinite(p)) and p.min() > 0 and p.max() <= 1):
        raise ParameterError(
            f"{name} must lie in (0, 1] (got min {p.min()!r}, max {p.max()!r}); note that "
            f"pyxclib's compute_inv_propesity returns inverse propensities 1/p_l"
        )
    return p


def _check_prop_len(p: np.ndarray, truth: _Truth) -> None:
    if truth.from_lists and truth.L <= p.size:
        truth.L = p.size  # list truth takes the propensities' width
        return
    if p.size != truth.L:
        raise DataFormatError(
            f"propensities has {p.size} entries but Y_true has {truth.L} label columns"
        )


def _check_AB(A, B) -> tuple[float, float]:
    for name, v in (("A", A), ("B", B)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
            raise ParameterError(f"{name} must be a finite number > 0, got {v!r}")
    return float(A), float(B)


def _propensities(truth: _Truth, A: float, B: float) -> np.ndarray:
    N = truth.n
    if N < 3:
        raise DataFormatError(
            f"label propensities need at least 3 training points (the model's constant "
            f"C = (log N - 1)(B + 1)^A must be positive), got N = {N}"
        )
    N_l = np.bincount(truth.indices, minlength=truth.L).astype(np.float64)
    C = (math.log(N) - 1.0) * (B + 1.0) ** A
    return 1.0 / (1.0 + C * np.exp(-A * np.log(N_l + B)))


# --------------------------------------------------------------------------------------
# core: per-block sums
# --------------------------------------------------------------------------------------

_ALL = ("P", "nDCG", "PSP", "R")


class _Sums:
    """Running sums from which every metric is a single division at the end."""

    def __init__(self, ks: tuple[int, ...], want: tuple[str, ...], inv_p: np.ndarray | None):
        self.ks = ks
        self.kmax = max(ks)
        self.want = frozenset(want)
        self.inv_p = inv_p  # 1 / p_l, or None when PSP is not wanted
        self.inv_p_ranked = None
        self.label_rank = None
        if inv_p is not None:
            order = np.argsort(-inv_p, kind="stable")  # labels by decreasing weight
            self.inv_p_ranked = inv_p[order]
            self.label_rank = np.empty(inv_p.size, dtype=np.int64)
            self.label_rank[order] = np.arange(inv_p.size, dtype=np.int64)
        d = 1.0 / np.log2(np.arange(2, self.kmax + 2, dtype=np.float64))  # 1/log2(rank+1)
        self.discount = d
        self.ideal_dcg = np.cumsum(d)  # ideal_dcg[j-1] = IDCG for j relevant labels
        nk = len(ks)
        self.n_rows = 0
        self.n_labelled = 0
        self.hits = np.zeros(nk, dtype=np.int64)
        self.ndcg = np.zeros(nk)
        self.recall = np.zeros(nk)
        self.psp_num = np.zeros(nk)
        self.psp_den = np.zeros(nk)

    def add(self, truth: _Truth, P: np.ndarray) -> None:
        self.n_rows += truth.n
        self.n_labelled += int(np.count_nonzero(truth.counts))
        step = max(1, _BLOCK_ENTRIES // self.kmax)
        for a in range(0, truth.n, step):  # a handful of large blocks, not rows
            self._add_block(truth, P, a, min(truth.n, a + step))

    def _add_block(self, truth: _Truth, P: np.ndarray, a: int, b: int) -> None:
        L, ks, want = truth.L, self.ks, self.want
        cnt = truth.counts[a:b]
        s, e = int(truth.indptr[a]), int(truth.indptr[b])
        row_ids = np.arange(a, b, dtype=np.int64)
        rows = np.repeat(row_ids, cnt)
        keys = rows * L + truth.indices[s:e]  # sorted: rows ascending, labels ascending

        pred = P[a:b].astype(np.int64, copy=False)
        valid = pred >= 0
        if keys.size:
            q = pred + (row_ids * L)[:, None]
            pos = np.searchsorted(keys, q)
            np.minimum(pos, keys.size - 1, out=pos)
            hits = (keys[pos] == q) & valid  # -1 would alias the previous row's label L-1
            del q, pos
        else:
            hits = np.zeros(pred.shape, dtype=bool)

        labelled = cnt > 0
        cum = None
        if "R" in want or "nDCG" in want:
            cum = np.cumsum(hits, axis=1, dtype=np.int64)
        if "nDCG" in want:
            dcg = np.cumsum(hits * self.discount, axis=1)
        if "PSP" in want:
            w = np.zeros(pred.shape)
            w[hits] = self.inv_p[pred[hits]]
            wcum = np.cumsum(w, axis=1)
            # ideal ranking: each row's true labels by decreasing 1/p_l; sorting the key
            # row * L + rank(l) orders labels by weight inside each row
            ideal = rows * L + self.label_rank[truth.indices[s:e]]
            ideal.sort()
            ranked_w = self.inv_p_ranked[ideal - rows * L]
            place = np.arange(e - s, dtype=np.int64) - np.repeat(truth.indptr[a:b] - s, cnt)

        for i, k in enumerate(ks):
            if "P" in want:
                self.hits[i] += int(np.count_nonzero(hits[:, :k]))
            if "nDCG" in want:
                norm = self.ideal_dcg[np.minimum(cnt[labelled], k) - 1]
                self.ndcg[i] += float(np.sum(dcg[labelled, k - 1] / norm))
            if "R" in want:
                self.recall[i] += float(np.sum(cum[labelled, k - 1] / cnt[labelled]))
            if "PSP" in want:
                self.psp_num[i] += float(np.sum(wcum[:, k - 1]))
                self.psp_den[i] += float(np.sum(ranked_w[place < k]))

    # ---- final divisions -------------------------------------------------------------

    def _require_rows(self) -> None:
        if self.n_rows == 0:
            raise DataFormatError("no rows to evaluate: Y_true / top_k_labels have 0 rows")

    def precision(self, i: int) -> float:
        return float(self.hits[i] / (self.ks[i] * self.n_rows))

    def ndcg_value(self, i: int) -> float:
        return float(self.ndcg[i] / self.n_rows)

    def recall_value(self, i: int) -> float:
        return float(self.recall[i] / self.n_labelled) if self.n_labelled else 0.0

    def psp_value(self, i: int, normalize: bool = True) -> float:
        if not normalize:
            return float(self.psp_num[i] / (self.ks[i] * self.n_rows))
        return float(self.psp_num[i] / self.psp_den[i]) if self.psp_den[i] > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        self._require_rows()
        out: dict[str, float] = {}
        for i, k in enumerate(self.ks):
            out[f"P@{k}"] = self.precision(i)
        for i, k in enumerate(self.ks):
            out[f"nDCG@{k}"] = self.ndcg_value(i)
        if "PSP" in self.want:
            for i, k in enumerate(self.ks):
                out[f"PSP@{k}"] = self.psp_value(i)
        for i, k in enumerate(self.ks):
            out[f"R@{k}"] = self.recall_value(i)
        return out


_INPUTS = """\
    Y_true : sparse matrix or array, shape (n, L), or list of n label-id lists
        Ground truth; every stored non-zero (every listed id) marks a relevant label.
    top_k_labels : int array, shape (n, m), or sparse score matrix, shape (n, L)
        Predicted label ids, best first, ``m`` at least the cut-off (``-1``: no prediction,
        a miss); or scores, each row ranked by decreasing score (ties: the lower id first)."""


def _inputs_doc(f):
    """Write the shared description of ``Y_true`` and ``top_k_labels`` into f's docstring."""
    if f.__doc__:  # None under python -OO
        f.__doc__ = f.__doc__.replace("    {inputs}", _INPUTS)
    return f


def _single(Y_true, top_k_labels, k) -> tuple[int, _Truth, np.ndarray]:
    """Validate the arguments shared by the single-cut-off metrics."""
    k = _check_k(k)
    truth = _as_truth(Y_true, "Y_true", top_k_labels)
    P = _as_predictions(top_k_labels, truth, k)
    return k, truth, P


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


@_inputs_doc
def precision_at_k(Y_true, top_k_labels, k: int = 1) -> float:
    r"""Precision at ``k``.

    .. math::

        P@k = \frac{1}{n} \sum_{i=1}^{n} \frac{1}{k}
              \sum_{r=1}^{k} [\hat y_{i,r} \in y_i]

    where :math:`\hat y_{i,r}` is the label predicted at rank :math:`r` for row :math:`i`
    and :math:`y_i` its set of relevant labels. Rows with no relevant label score 0 and
    still count in the mean (as in the Extreme Classification Repository and pyxclib).

    Parameters
    ----------
    {inputs}
    k : int, default 1
        Cut-off, ``1 <= k <= m``.

    Returns
    -------
    float
        Mean precision at ``k`` over all ``n`` rows, in ``[0, 1]``.

    Raises
    ------
    DataFormatError
        If the inputs are not of the forms above or disagree in their number of rows, or a
        label id is outside ``[-1, L)``.
    ParameterError
        If ``k < 1`` or ``k > m``.
    """
    k, truth, P = _single(Y_true, top_k_labels, k)
    sums = _Sums((k,), ("P",), None)
    sums.add(truth, P)
    sums._require_rows()
    return sums.precision(0)


@_inputs_doc
def ndcg_at_k(Y_true, top_k_labels, k: int = 5) -> float:
    r"""Normalised discounted cumulative gain at ``k``.

    .. math::

        DCG@k(i) = \sum_{r=1}^{k} \frac{[\hat y_{i,r} \in y_i]}{\log_2(r + 1)}, \qquad
        nDCG@k = \frac{1}{n} \sum_{i=1}^{n}
                 \frac{DCG@k(i)}{\sum_{r=1}^{\min(k, |y_i|)} 1/\log_2(r + 1)}

    Rows with no relevant label (:math:`|y_i| = 0`) score 0 and count in the mean: this is
    pyxclib's convention (``xc_metrics.ndcg``: the normaliser of an empty row is never
    smaller than the ideal DCG for ``k`` labels while its DCG is 0), and it keeps nDCG@k
    comparable with P@k, which treats such rows the same way.

    Parameters
    ----------
    {inputs}
    k : int, default 5
        Cut-off, ``1 <= k <= m``.

    Returns
    -------
    float
        Mean nDCG at ``k`` over all ``n`` rows, in ``[0, 1]``.

    Raises
    ------
    DataFormatError, ParameterError
        As for :func:`precision_at_k`.
    """
    k, truth, P = _single(Y_true, top_k_labels, k)
    sums = _Sums((k,), ("nDCG",), None)
    sums.add(truth, P)
    sums._require_rows()
    return sums.ndcg_value(0)


def label_propensities(Y_train, A: float = 0.55, B: float = 1.5) -> np.ndarray:
    r"""Label propensities of Jain, Prabhu and Varma (KDD 2016).

    .. math::

        p_l = \frac{1}{1 + C\, e^{-A \log(N_l + B)}}, \qquad
        C = (\log N - 1)\,(B + 1)^{A}

    with :math:`N` the number of training points and :math:`N_l` the number of training
    points having label :math:`l` (duplicate or explicitly zero entries do not count).

    Parameters
    ----------
    Y_train : scipy.sparse matrix, shape (N, L)
        Training label matrix; every stored non-zero marks a relevant label.
    A, B : float, default 0.55 and 1.5
        Model parameters, both ``> 0``. The paper uses ``A, B = 0.5, 0.4`` for Wikipedia
        data sets, ``0.6, 2.6`` for Amazon ones and ``0.55, 1.5`` otherwise.

    Returns
    -------
    numpy.ndarray of float64, shape (L,)
        Propensity :math:`p_l \in (0, 1)` of every label. Propensity-scored metrics weigh a
        hit on label :math:`l` by :math:`1 / p_l` (what pyxclib's ``compute_inv_propesity``
        returns).

    Raises
    ------
    DataFormatError
        If ``Y_train`` is not a 2-D sparse matrix or has fewer than 3 rows (then
        :math:`C \le 0` and the model is meaningless).
    ParameterError
        If ``A`` or ``B`` is not a finite number ``> 0``.
    """
    A, B = _check_AB(A, B)
    truth = _as_truth(Y_train, "Y_train")
    return _propensities(truth, A, B)


@_inputs_doc
def psprecision_at_k(
    Y_true,
    top_k_labels,
    k: int = 1,
    *,
    propensities=None,
    A: float = 0.55,
    B: float = 1.5,
    normalize: bool = True,
) -> float:
    r"""Propensity-scored precision at ``k``.

    .. math::

        PSP@k = \frac{1}{n} \sum_{i=1}^{n} \frac{1}{k}
                \sum_{r=1}^{k} \frac{[\hat y_{i,r} \in y_i]}{p_{\hat y_{i,r}}}

    With ``normalize=True`` (default) this is divided by its best achievable value, the same
    quantity for the ideal ranking that lists each row's relevant labels by decreasing
    :math:`1/p_l`:

    .. math::

        PSP@k_{norm} = \frac{\sum_i \sum_{r=1}^{k} [\hat y_{i,r} \in y_i] / p_{\hat y_{i,r}}}
                            {\sum_i \sum_{r=1}^{\min(k, |y_i|)} 1 / p_{y^*_{i,r}}}

    i.e. a ratio of totals over all rows, not a mean of per-row ratios (pyxclib's
    ``psprecision`` divides the two row means). It is 0 if no row has a relevant label.

    Parameters
    ----------
    {inputs}
    k : int, default 1
        Cut-off, ``1 <= k <= m``.
    propensities : array_like of float, shape (L,), optional
        Propensity :math:`p_l \in (0, 1]` of every label. The proper use is to compute them
        from the **training** labels with :func:`label_propensities`. When omitted they are
        computed from ``Y_true`` itself with ``A`` and ``B``, which is only a fallback (the
        test set's label frequencies are noisier and differ from those the model saw).
    A, B : float, default 0.55 and 1.5
        Parameters of :func:`label_propensities`; used only when ``propensities`` is None.
    normalize : bool, default True
        Divide by the ideal value (see above).

    Returns
    -------
    float
        PSP@k; in ``[0, 1]`` when normalised.

    Raises
    ------
    DataFormatError
        As for :func:`precision_at_k`, or if ``propensities`` does not have ``L`` entries.
    ParameterError
        As for :func:`precision_at_k`, or if a propensity is outside ``(0, 1]`` or ``A``/``B``
        are invalid.
    """
    k = _check_k(k)
    if propensities is not None:
        p = _check_propensities(propensities)
    else:
        A, B = _check_AB(A, B)
    truth = _as_truth(Y_true, "Y_true", top_k_labels)
    if propensities is not None:
        _check_prop_len(p, truth)
    P = _as_predictions(top_k_labels, truth, k)
    if propensities is None:
        p = _propensities(truth, A, B)
    sums = _Sums((k,), ("PSP",), 1.0 / p)
    sums.add(truth, P)
    sums._require_rows()
    return sums.psp_value(0, normalize=bool(normalize))


@_inputs_doc
def recall_at_k(Y_true, top_k_labels, k: int = 5) -> float:
    r"""Recall at ``k``, averaged over the rows that have at least one relevant label.

    .. math::

        R@k = \frac{1}{|\{i : |y_i| > 0\}|} \sum_{i : |y_i| > 0}
              \frac{\sum_{r=1}^{k} [\hat y_{i,r} \in y_i]}{|y_i|}

    Rows without labels are **excluded** from the mean (recall is undefined for them).
    pyxclib's ``recall`` instead averages over all rows with such rows scoring 0, so its value
    is this one times the fraction of labelled rows. Returns 0 if no row has a label.

    Parameters
    ----------
    {inputs}
    k : int, default 5
        Cut-off, ``1 <= k <= m``.

    Returns
    -------
    float
        Mean recall at ``k``, in ``[0, 1]`` for duplicate-free predictions.

    Raises
    ------
    DataFormatError, ParameterError
        As for :func:`precision_at_k`.
    """
    k, truth, P = _single(Y_true, top_k_labels, k)
    sums = _Sums((k,), ("R",), None)
    sums.add(truth, P)
    sums._require_rows()
    return sums.recall_value(0)


@_inputs_doc
def evaluate(Y_true, top_k_labels, ks=(1, 3, 5), propensities=None) -> dict[str, float]:
    r"""All metrics at several cut-offs in one pass.

    Parameters
    ----------
    {inputs}
    ks : sequence of int, default (1, 3, 5)
        Distinct cut-offs, each ``>= 1``.
    propensities : array_like of float, shape (L,), optional
        Label propensities (see :func:`label_propensities`, computed from the training
        labels). When given, normalised ``PSP@k`` values are included.

    Returns
    -------
    dict of str to float
        Keys in this order: ``"P@k"`` for every k in ``ks``, then ``"nDCG@k"``, then
        ``"PSP@k"`` (only with ``propensities``), then ``"R@k"``; values are Python floats
        equal to :func:`precision_at_k`, :func:`ndcg_at_k`, :func:`psprecision_at_k`
        (``normalize=True``) and :func:`recall_at_k`.

    Raises
    ------
    DataFormatError, ParameterError
        As for the individual metrics.
    """
    ks = _check_ks(ks)
    p = _check_propensities(propensities) if propensities is not None else None
    truth = _as_truth(Y_true, "Y_true", top_k_labels)
    if p is not None:
        _check_prop_len(p, truth)
    P = _as_predictions(top_k_labels, truth, max(ks))
    sums = _Sums(ks, _ALL if p is not None else ("P", "nDCG", "R"), None if p is None else 1.0 / p)
    sums.add(truth, P)
    return sums.as_dict()


class MetricsAccumulator:
    r"""Streaming version of :func:`evaluate` for test sets evaluated chunk by chunk.

    Feed consecutive (or any) row chunks with :meth:`update`; :meth:`result` returns the
    same dictionary :func:`evaluate` would return on the row-wise concatenation of all
    chunks (up to floating-point summation order). Only a few numbers per cut-off are kept.

    Parameters
    ----------
    ks : sequence of int, default (1, 3, 5)
        Distinct cut-offs, each ``>= 1``.
    propensities : array_like of float, shape (L,), optional
        Label propensities computed from the training labels (:func:`label_propensities`);
        when given, normalised ``PSP@k`` is reported. They cannot be derived from a stream.

    Examples
    --------
    >>> acc = MetricsAccumulator(ks=(1, 5))
    >>> for Y_chunk, top_chunk in chunks:  # doctest: +SKIP
    ...     acc.update(Y_chunk, top_chunk)
    >>> acc.result()  # doctest: +SKIP
    {'P@1': ..., 'P@5': ..., 'nDCG@1': ..., 'nDCG@5': ..., 'R@1': ..., 'R@5': ...}
    """

    def __init__(self, ks=(1, 3, 5), propensities=None):
        self._ks = _check_ks(ks)
        self._p = _check_propensities(propensities) if propensities is not None else None
        self._n_labels: int | None = None
        self._sums = _Sums(
            self._ks,
            _ALL if self._p is not None else ("P", "nDCG", "R"),
            None if self._p is None else 1.0 / self._p,
        )

    @property
    def ks(self) -> tuple[int, ...]:
        """The cut-offs, as given."""
        return self._ks

    @property
    def n_rows(self) -> int:
        """Number of rows accumulated so far."""
        return self._sums.n_rows

    def update(self, Y_true_chunk, top_k_chunk) -> None:
        """Add one chunk of rows.

        Parameters
        ----------
        Y_true_chunk : scipy.sparse matrix, shape (c, L)
            Ground truth of the chunk; ``L`` must be the same for every chunk.
        top_k_chunk : array_like of int, shape (c, m)
            Predictions for the same rows, ``m >= max(ks)``.

        Raises
        ------
        DataFormatError, ParameterError
            As for :func:`evaluate`, or if the chunk's number of labels differs from the
            previous chunks'. A rejected chunk leaves the accumulator unchanged.
        """
        truth = _as_truth(Y_true_chunk, "Y_true_chunk", top_k_chunk)
        if self._p is not None:
            _check_prop_len(self._p, truth)
        if truth.from_lists and self._n_labels is not None and truth.L < self._n_labels:
            truth.L = self._n_labels
        if self._n_labels is not None and truth.L != self._n_labels and not truth.from_lists:
            raise DataFormatError(
                f"Y_true_chunk has {truth.L} label columns but earlier chunks had "
                f"{self._n_labels}"
            )
        P = _as_predictions(top_k_chunk, truth, max(self._ks))
        self._n_labels = max(truth.L, self._n_labels or 0) if truth.from_lists else truth.L
        self._sums.add(truth, P)

    def result(self) -> dict[str, float]:
        """Metrics over every row seen so far, with the same keys as :func:`evaluate`.

        Raises
        ------
        DataFormatError
            If no row has been accumulated yet.
        """
        return self._sums.as_dict()
