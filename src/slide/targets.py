"""Targets as a scikit-learn user passes them, and predictions in the same form.

slide trains on a binary CSR label matrix over label ids ``0 .. n_labels - 1``. Users arrive with
any of: a sparse 0/1 matrix, a dense 0/1 array (multi-label indicator), a list of label lists
(ids or names, as pyxclib and PECOS users keep them), or a 1-D vector of one label per sample
(multiclass: ints or strings). :class:`Targets` remembers which form and the label names
(``classes_``) so that ``predict`` answers in the same form.

Nested lists whose rows all have the same length (two or more) and hold only 0 and 1 are a 0/1
indicator matrix written as lists, as scikit-learn reads them (``type_of_target`` says
'multilabel-indicator'), not label lists of the ids 0 and 1. A label named twice in one row is
one label.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .data_checks import check_Y
from .errors import DataFormatError

SPARSE, DENSE, LISTS, VECTOR = "sparse", "dense", "lists", "vector"


def _is_label_lists(Y) -> bool:
    if not isinstance(Y, (list, tuple)) or len(Y) == 0:
        return False
    return all(isinstance(r, (list, tuple, np.ndarray, set, frozenset)) for r in Y)


_ROW_TYPES = (list, tuple, np.ndarray, set, frozenset)


def _is_indicator_rows(Y) -> bool:
    """Whether a list of rows is a 0/1 indicator matrix written as nested lists (see the module)."""
    if not _is_label_lists(Y):
        return False
    width = None
    for row in Y:
        if isinstance(row, (set, frozenset)):
            return False
        values = row.tolist() if isinstance(row, np.ndarray) else row
        if width is None:
            width = len(values)
        if len(values) != width or width < 2:
            return False
        for v in values:
            if not isinstance(v, (numbers.Real, np.bool_)) or isinstance(v, str) or v not in (0, 1):
                return False
    return True


def _check_label_rows(Y, name: str) -> None:
    """A list that holds some label lists must hold one for every sample, each of plain labels
    (ints or names, no None and no nesting)."""
    if not isinstance(Y, (list, tuple)) or not any(isinstance(r, _ROW_TYPES) for r in Y):
        return
    for i, row in enumerate(Y):
        if not isinstance(row, _ROW_TYPES):
            raise DataFormatError(f"{name}[{i}] is {row!r}; expected a list of labels for every sample "
                                  "(an empty list for none).")
        for v in (row.tolist() if isinstance(row, np.ndarray) else row):
            if v is None or isinstance(v, (list, tuple, dict, set, frozenset, np.ndarray)):
                raise DataFormatError(f"{name}[{i}] holds {v!r}; expected labels (ints or names), not None or "
                                      "nested lists.")


def _names_in(Y) -> bool:
    """Whether a list of label lists holds label names (anything but ints)."""
    for row in Y:
        for v in row:
            return not (isinstance(v, numbers.Integral) and not isinstance(v, bool))
    return False


@dataclass
class Targets:
    """The form a model's training targets came in, and its label names."""

    kind: str  # SPARSE, DENSE, LISTS or VECTOR
    classes: np.ndarray  # name of each label id
    dtype: str = "float32"  # of a DENSE indicator: predictions use it too

    @property
    def named(self) -> bool:
        """Whether label ids differ from their names (predictions are mapped through classes)."""
        c = self.classes
        return not (np.issubdtype(c.dtype, np.integer) and np.array_equal(c, np.arange(c.size)))

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, Y, n_rows: int, name: str = "Y") -> tuple["Targets", sp.csr_matrix]:
        """(Targets, binary CSR over label ids) from training targets in any supported form."""
        if sp.issparse(Y):
            M = check_Y(Y, n_rows=n_rows, name=name)
            return cls(SPARSE, np.arange(M.shape[1])), M
        _check_label_rows(Y, name)
        if _is_indicator_rows(Y):
            Y = np.asarray(Y)  # a dense indicator (below)
        elif _is_label_lists(Y) and _names_in(Y):
            classes = np.array(sorted({v for row in Y for v in row}, key=lambda v: (str(type(v)), v)))
            return cls(LISTS, classes), cls(LISTS, classes)._indicator(Y, n_rows, name)
        if _is_label_lists(Y):
            M = check_Y(list(Y), n_rows=n_rows, name=name)
            return cls(LISTS, np.arange(M.shape[1])), M
        if hasattr(Y, "to_numpy") and not hasattr(Y, "columns"):  # pandas Series
            Y = Y.to_numpy()
        elif hasattr(Y, "columns"):  # pandas DataFrame: an indicator with named columns
            names = np.asarray(Y.columns)
            M = check_Y(np.asarray(Y.to_numpy()), n_rows=n_rows, name=name)
            return cls(DENSE, names, str(np.asarray(Y.to_numpy()).dtype)), M
        arr = np.asarray(Y)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]  # a column vector: scikit-learn's multiclass y as often passed
        if arr.ndim == 1:
            if arr.shape[0] != n_rows:
                raise DataFormatError(f"{name} has {arr.shape[0]} entries but X has {n_rows} rows; expected "
                                      "one label per sample.")
            if arr.dtype == object and any(v is None or isinstance(v, (list, tuple, dict)) for v in arr):
                raise DataFormatError(f"{name} holds a None or a nested value; expected one label per sample.")
            if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
                raise DataFormatError(f"{name} holds a non-finite label; expected finite labels.")
            if arr.dtype.kind == "f" and arr.size and not np.all(arr == np.round(arr)):
                # scikit-learn's wording ("Unknown label type: continuous"): a regression target
                raise DataFormatError(f"Unknown label type: continuous. {name} holds non-integer numbers such as "
                                      f"{arr[arr != np.round(arr)][0]!r}; a classifier expects class labels.")
            classes, ids = np.unique(arr, return_inverse=True)
            M = sp.csr_matrix((np.ones(n_rows, np.float32), ids.astype(np.int32), np.arange(n_rows + 1)),
                              shape=(n_rows, classes.size))
            return cls(VECTOR, classes), check_Y(M, n_rows=n_rows, name=name)
        if arr.ndim == 2:
            M = check_Y(arr, n_rows=n_rows, name=name)
            return cls(DENSE, np.arange(arr.shape[1]), str(arr.dtype)), M
        raise DataFormatError(f"{name} must be a label matrix (n_samples, n_labels), a list of label lists or a "
                              f"vector of one label per sample; got an array of shape {arr.shape}.")

    # ------------------------------------------------------------------ later targets
    def encode(self, Y, n_rows: int, name: str = "Y") -> sp.csr_matrix:
        """Binary CSR over this model's label ids from targets in its form (an evaluation set)."""
        n_labels = self.classes.size
        _check_label_rows(Y, name)
        if _is_indicator_rows(Y) and len(Y[0]) == n_labels and not self.named:
            Y = np.asarray(Y)  # an indicator over this model's labels, as fit reads one
        if _is_label_lists(Y) and (self.named or self.kind == VECTOR):
            return self._indicator(Y, n_rows, name)  # label lists of a multi-class model: multi-label truth
        if self.kind == VECTOR or (self.named and not sp.issparse(Y) and not _is_label_lists(Y)
                                   and np.asarray(Y).ndim == 1):
            arr = np.asarray(Y.to_numpy() if hasattr(Y, "to_numpy") else Y)
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1 or arr.shape[0] != n_rows:
                raise DataFormatError(f"{name} has shape {arr.shape}; expected {n_rows} labels, one per sample.")
            return self._indicator([[v] for v in arr], n_rows, name)
        if hasattr(Y, "columns"):
            Y = Y.to_numpy()
        return check_Y(Y if sp.issparse(Y) else (list(Y) if _is_label_lists(Y) else np.asarray(Y)),
                       n_rows=n_rows, n_labels=n_labels, name=name)

    def _indicator(self, rows, n_rows: int, name: str) -> sp.csr_matrix:
        if len(rows) != n_rows:
            raise DataFormatError(f"{name} has {len(rows)} rows but X has {n_rows}; expected one label row per sample.")
        where = {v: i for i, v in enumerate(self.classes.tolist())}
        indptr = np.zeros(n_rows + 1, np.int64)
        ids = []
        for i, row in enumerate(rows):
            seen = set()
            for v in row:
                key = v.item() if isinstance(v, np.generic) else v
                if key not in where:
                    raise DataFormatError(f"{name}[{i}] holds the label {v!r}, which the model was not trained "
                                          f"with ({self.classes.size} known labels, e.g. {self.classes[:3].tolist()}).")
                if where[key] not in seen:  # named twice: one label
                    seen.add(where[key])
                    ids.append(where[key])
            indptr[i + 1] = len(ids)
        M = sp.csr_matrix((np.ones(len(ids), np.float32), np.asarray(ids, np.int32), indptr),
                          shape=(n_rows, self.classes.size))
        return check_Y(M, n_rows=n_rows, name=name)

    # ------------------------------------------------------------------ predictions
    def names(self, ids: np.ndarray) -> np.ndarray:
        """Label names of an id array (-1, no label, stays -1 for ids and becomes None for names)."""
        if not self.named:
            return ids
        out = self.classes[np.clip(ids, 0, None)].astype(object)
        out[ids < 0] = None
        return out if (ids < 0).any() else out.astype(self.classes.dtype)

    def decode(self, ids: np.ndarray, n_labels: int):
        """Predictions in the training targets' form from the (n, k) top label ids."""
        n, k = ids.shape
        if self.kind == VECTOR:
            return self.classes[np.clip(ids[:, 0], 0, None)]
        keep = ids >= 0
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(keep.sum(axis=1), out=indptr[1:])
        cols = ids[keep]
        order = np.argsort(np.repeat(np.arange(n), keep.sum(axis=1)) * n_labels + cols, kind="stable")
        M = sp.csr_array((np.ones(cols.size, np.int8), cols[order].astype(np.int32), indptr), shape=(n, n_labels))
        if self.kind == DENSE:
            return M.toarray().astype(self.dtype)
        return M

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        c = self.classes
        return {"kind": self.kind, "dtype": self.dtype,
                "classes": None if not self.named else c.tolist(),
                "classes_dtype": None if not self.named else str(c.dtype), "n_labels": int(c.size)}

    @classmethod
    def from_dict(cls, d: dict | None, n_labels: int) -> "Targets":
        if d is None:  # files from before the targets were recorded: sparse over ids
            return cls(SPARSE, np.arange(n_labels))
        if d["classes"] is None:
            classes = np.arange(n_labels)
        else:
            classes = np.asarray(d["classes"], dtype=d["classes_dtype"])
        if classes.shape != (n_labels,):
            raise DataFormatError(f"the model file names {classes.size} labels but its network has {n_labels}.")
        if d["kind"] not in (SPARSE, DENSE, LISTS, VECTOR):
            raise DataFormatError(f"the model file's target kind {d['kind']!r} is not one slide writes.")
        return cls(d["kind"], classes, str(d["dtype"]))
