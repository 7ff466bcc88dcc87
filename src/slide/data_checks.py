"""Input validation at the API boundary: every array a kernel sees passed through here once.

Kernels take CSR triples with int64 ``indptr``, int32 ``indices`` (sorted, no duplicates) and
float32 ``data``; they never check anything themselves.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from .errors import DataFormatError, DataTypeError, ParameterError


def _as_csr(A, name: str, min_samples: int = 0) -> sp.csr_matrix:
    """Any matrix a user may hold (scipy.sparse, NumPy, pandas dense or sparse, lists, torch CPU
    tensors, objects with ``__array__``) as CSR of float32 or float64. scikit-learn's
    ``check_array`` does the conversions and the refusals (complex or non-numeric values, a 1-D
    array, no columns), with the messages scikit-learn users know; finiteness is checked by
    :func:`check_X`, which names the row and column."""
    from sklearn.utils import check_array

    if hasattr(A, "detach") and hasattr(A, "numpy"):  # a torch tensor: np.asarray fails if it needs grad
        A = A.detach().cpu().numpy()
    if isinstance(A, (list, tuple)) and len({len(r) if hasattr(r, "__len__") else -1 for r in A}) > 1:
        raise DataFormatError(f"{name} is a list of rows of different lengths; expected a 2-D matrix "
                              "(n_samples, n_features).")
    if np.iscomplexobj(A if sp.issparse(A) or isinstance(A, np.ndarray) else np.empty(0)):
        raise DataFormatError(f"{name}: Complex data not supported; expected real numbers.")  # scikit-learn's words
    try:
        M = check_array(A, accept_sparse="csr", dtype=[np.float32, np.float64], ensure_all_finite=False,
                        ensure_min_samples=min_samples, input_name=name)
    except ValueError as e:  # DataFormatError is a ValueError too, so scikit-learn's callers still match
        raise DataFormatError(f"{name}: {e}") from None
    except TypeError as e:  # e.g. an object that is no array at all, or a dict inside one
        raise DataTypeError(f"{name} must be a scipy.sparse matrix or a 2-D array-like of numbers; got "
                              f"{type(A).__name__} ({e}).") from None
    return M if sp.issparse(M) else sp.csr_matrix(M)


def _canonical(M: sp.csr_matrix, dtype) -> sp.csr_matrix:
    M = M.copy() if M.dtype == dtype else M.astype(dtype)
    M.sum_duplicates()  # also sorts indices
    M.sort_indices()
    out = sp.csr_matrix((M.data.astype(dtype, copy=False), M.indices.astype(np.int32, copy=False),
                         M.indptr.astype(np.int64, copy=False)), shape=M.shape)
    out.has_sorted_indices = True
    return out


def check_X(X, *, name: str = "X", n_features: int | None = None, normalize: str = "none",
            min_samples: int = 0) -> sp.csr_matrix:
    """Feature matrix as canonical float32 CSR (a copy), optionally rows scaled to unit L2 norm.

    Raises DataFormatError for non-numeric, non-finite or wrongly shaped input, or fewer than
    ``min_samples`` rows.
    """
    M = _as_csr(X, name, min_samples)
    if M.shape[1] >= 2**31:
        raise DataFormatError(f"{name} has {M.shape[1]} columns; at most 2**31 - 1 are supported.")
    M = _canonical(M, np.float32)
    if M.nnz and not np.isfinite(M.data).all():
        bad = int(np.flatnonzero(~np.isfinite(M.data))[0])
        row = int(np.searchsorted(M.indptr, bad, side="right") - 1)
        what = "NaN" if np.isnan(M.data[bad]) else "infinity (inf)"
        raise DataFormatError(f"{name} contains {what} in row {row}, column {M.indices[bad]}; expected finite "
                              "numbers.")
    if n_features is not None and M.shape[1] != n_features:
        raise DataFormatError(f"{name} has {M.shape[1]} features, but SlideClassifier is expecting {n_features} "
                              f"features as input (the columns it was fitted with).")
    if normalize == "l2" and M.nnz:
        sq = np.add.reduceat(M.data.astype(np.float64) ** 2, M.indptr[:-1].clip(max=M.nnz - 1))
        sq[np.diff(M.indptr) == 0] = 0.0
        norms = np.sqrt(sq)
        norms[norms == 0] = 1.0
        M.data /= np.repeat(norms, np.diff(M.indptr)).astype(np.float32)
    return M


def check_Y(Y, *, n_rows: int, n_labels: int | None = None, name: str = "Y") -> sp.csr_matrix:
    """Label matrix as canonical binary float32 CSR. Accepts a sparse/dense 0-1 matrix or a
    list of label-id lists (then ``n_labels`` or the largest id + 1 gives the width)."""
    if isinstance(Y, (list, tuple)) and (len(Y) == 0 or isinstance(Y[0], (list, tuple, np.ndarray, set, frozenset))):
        indptr = np.zeros(len(Y) + 1, np.int64)
        idx = []
        for i, labels in enumerate(Y):
            try:
                ids = sorted(set(labels))
            except TypeError:  # unhashable or unorderable items
                raise DataFormatError(f"{name}[{i}] is {labels!r}; expected a list of int label ids.") from None
            for v in ids:
                if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v < 2**31 - 1:
                    raise DataFormatError(f"{name}[{i}] holds {v!r}; expected int label ids in [0, 2**31 - 1).")
            idx.extend(ids)
            indptr[i + 1] = len(idx)
        indices = np.asarray(idx, np.int64)
        width = n_labels if n_labels is not None else (int(indices.max()) + 1 if indices.size else 0)
        if indices.size and indices.max() >= width:
            raise DataFormatError(f"{name} holds label id {int(indices.max())}, but there are only {width} labels.")
        M = sp.csr_matrix((np.ones(indices.size, np.float32), indices.astype(np.int32), indptr),
                          shape=(len(Y), width))
    else:
        M = _as_csr(Y, name)
    M = _canonical(M, np.float32)
    if M.nnz and not np.isin(M.data, (0.0, 1.0)).all():
        bad = M.data[~np.isin(M.data, (0.0, 1.0))][0]
        raise DataFormatError(f"{name} must be binary (0/1 entries); found the value {bad}.")
    M.eliminate_zeros()
    if M.shape[0] != n_rows:
        raise DataFormatError(f"{name} has {M.shape[0]} rows but X has {n_rows}; expected one label row per sample.")
    if n_labels is not None and M.shape[1] != n_labels:
        raise DataFormatError(f"{name} has {M.shape[1]} labels, but the model was fitted with "
                              f"{n_labels}; expected {n_labels} columns.")
    M = sp.csr_matrix((M.data, M.indices.astype(np.int32), M.indptr.astype(np.int64)), shape=M.shape)
    M.has_sorted_indices = True
    return M


def row_maxima(X: sp.csr_matrix, Y: sp.csr_matrix) -> tuple[int, int]:
    """(most labels, most non-zeros) of any row of canonical X and Y, each at least 1: the sizes of
    the per-sample training buffers."""
    def most(M):
        return max(1, int(np.diff(M.indptr).max())) if M.shape[0] else 1

    return most(Y), most(X)


def check_eval_set(eval_set, *, n_features: int, n_labels: int, normalize: str):
    """None, or the validated pair (X_val, Y_val) with the training data's dimensions."""
    if eval_set is None:
        return None
    if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
        raise ParameterError("eval_set must be a pair (X_val, Y_val).")
    Xv = check_X(eval_set[0], name="eval_set[0]", n_features=n_features, normalize=normalize)
    Yv = check_Y(eval_set[1], n_rows=Xv.shape[0], n_labels=n_labels, name="eval_set[1]")
    return Xv, Yv


def check_k(k, *, name: str = "k", where: str = "predict", n_labels: int | None = None) -> int:
    """A cut-off ``k`` validated at the boundary: an int in [1, n_labels] (>= 1 when n_labels
    is None). The kernels fill k columns per row, so an unchecked 0, -1 or 10**6 would write
    outside their buffers."""
    if (isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1
            or (n_labels is not None and k > n_labels)):
        allowed = f"in [1, {n_labels}]" if n_labels is not None else ">= 1"
        raise ParameterError(f"The {name!r} argument of {where} must be an int {allowed}. Got {k!r} instead.")
    return int(k)
