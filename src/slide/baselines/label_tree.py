"""Adapter for ``omikuji`` (Parabel / Bonsai-style label trees with linear classifiers), the
accuracy bar of extreme classification. Optional: only usable where ``omikuji`` is installed
(``pip install omikuji``); it is not a dependency of slide."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from ..data_checks import check_k, check_X, check_Y
from ..errors import NotFittedError, ParameterError, SlideError


class LabelTreeClassifier:
    """Label-tree classifier trained by omikuji on the same CSR data, with the ``fit`` /
    ``predict`` API of :class:`slide.SlideClassifier`.

    Parameters
    ----------
    n_trees : int, default 3
        Trees of the ensemble (omikuji's default).
    beam_size : int, default 10
        Beam width of the tree search in prediction.
    normalize : {'l2', 'none'}, default 'l2'
        Row scaling of the input, as in SlideClassifier.
    n_jobs : int or None
        Threads (None: all cores).
    """

    def __init__(self, *, n_trees=3, beam_size=10, normalize="l2", n_jobs=None):
        self.n_trees = n_trees
        self.beam_size = beam_size
        self.normalize = normalize
        self.n_jobs = n_jobs

    def _omikuji(self):
        try:
            import omikuji
        except ImportError:
            raise SlideError("LabelTreeClassifier needs the omikuji package (pip install omikuji).") from None
        return omikuji

    def fit(self, X, Y):
        omikuji = self._omikuji()
        for name, v, lo in (("n_trees", self.n_trees, 1), ("beam_size", self.beam_size, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ParameterError(f"The '{name}' parameter of LabelTreeClassifier must be an int >= {lo}. "
                                     f"Got {v!r} instead.")
        if self.normalize not in ("l2", "none"):
            raise ParameterError(f"The 'normalize' parameter of LabelTreeClassifier must be 'l2' or 'none'. "
                                 f"Got {self.normalize!r} instead.")
        X = check_X(X, name="X", normalize=self.normalize)
        Y = check_Y(Y, n_rows=X.shape[0], name="Y")
        keep = np.flatnonzero(np.diff(Y.indptr) > 0)  # omikuji, like slide, learns nothing from label-less rows
        from ..data import save_xmc
        from ..estimator import resolve_n_jobs

        hp = omikuji.Model.default_hyper_param()
        hp.n_trees = int(self.n_trees)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "train.txt")
            save_xmc(path, X[keep], Y[keep])  # omikuji reads the same XMC text format
            self.model_ = omikuji.Model.train_on_data(path, hp, n_threads=resolve_n_jobs(self.n_jobs))
        self.n_features_in_, self.n_labels_ = X.shape[1], Y.shape[1]
        return self

    def predict_topk(self, X, k=5):
        """(labels, scores), best first; rows with fewer than k candidates are padded with -1 / -inf."""
        if not hasattr(self, "model_"):
            raise NotFittedError("This LabelTreeClassifier is not fitted yet: call fit(X, Y) first.")
        k = check_k(k, n_labels=self.n_labels_)
        X = check_X(X, name="X", n_features=self.n_features_in_, normalize=self.normalize)
        out_i = np.full((X.shape[0], k), -1, np.int64)
        out_v = np.full((X.shape[0], k), -np.inf, np.float32)
        for r in range(X.shape[0]):
            s, e = X.indptr[r], X.indptr[r + 1]
            pairs = list(zip(X.indices[s:e].tolist(), X.data[s:e].tolist()))
            got = self.model_.predict(pairs, beam_size=int(self.beam_size), top_k=k)
            for j, (lab, score) in enumerate(got[:k]):
                out_i[r, j], out_v[r, j] = lab, score
        return out_i, out_v

    def predict(self, X, k=5) -> np.ndarray:
        return self.predict_topk(X, k)[0]
