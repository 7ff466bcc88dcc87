"""A precision@k scorer for scikit-learn's model selection tools.

``GridSearchCV(..., scoring=slide.precision_scorer(5))`` or ``cross_validate(...,
scoring={"P@1": precision_scorer(1), "P@5": precision_scorer(5)})``: scikit-learn calls a scorer
as ``scorer(estimator, X, y)``. It asks the estimator (or a Pipeline ending in one) for its sparse
top-k probabilities, which Pipeline passes through, so it works on text pipelines too; ``y`` may
be in any form the estimator was fitted with (label matrix, label lists, names, one label per
sample).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .data_checks import check_k
from .metrics import precision_at_k
from .targets import LISTS, VECTOR, Targets, _is_label_lists


class PrecisionScorer:
    """P@k of ``estimator`` on ``(X, y)``; build it with :func:`precision_scorer`."""

    def __init__(self, k: int):
        self.k = check_k(k, where="precision_scorer")

    def __repr__(self) -> str:
        return f"precision_scorer(k={self.k})"

    def __call__(self, estimator, X, y) -> float:
        S = estimator.predict_proba(X, k=self.k)  # sparse (n, n_labels)
        kind = LISTS if sp.issparse(y) or _is_label_lists(y) or np.ndim(y) == 2 else VECTOR
        Y = Targets(kind, np.asarray(estimator.classes_)).encode(y, S.shape[0], "y")
        return float(precision_at_k(Y, S, self.k))


def precision_scorer(k: int = 1) -> PrecisionScorer:
    """A scikit-learn scorer (the ``scoring=`` of GridSearchCV, cross_validate, ...) computing
    precision@k, the extreme-classification metric; ``k=1`` equals ``SlideClassifier.score``."""
    return PrecisionScorer(k)
