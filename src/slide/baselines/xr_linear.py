"""Adapter for PECOS XR-Linear (Amazon's label-tree ranker), the other accuracy bar of extreme
classification besides omikuji. ``libpecos`` pins old NumPy/SciPy releases, so it is not a
dependency and does not have to share slide's environment: the adapter runs PECOS in the
interpreter ``python`` names (a virtual environment with ``pip install libpecos``), exchanging
the matrices as ``.npz`` files (:mod:`slide.baselines._pecos_worker`).

    python3 -m venv pecos-venv && pecos-venv/bin/pip install libpecos
    PecosClassifier(python="pecos-venv/bin/python").fit(X, Y).predict(Xt, k=5)
    slide bench ... --methods slide,pecos --pecos_python pecos-venv/bin/python
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import scipy.sparse as sp

from ..data_checks import check_k, check_X, check_Y
from ..errors import NotFittedError, ParameterError, SlideError

ENV_PYTHON = "SLIDE_PECOS_PYTHON"
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_pecos_worker.py")


def pecos_python(python=None) -> str | None:
    """The interpreter to run PECOS with: ``python``, else $SLIDE_PECOS_PYTHON, else this one if
    it can import pecos; None when there is none."""
    for cand in (python, os.environ.get(ENV_PYTHON)):
        if cand:
            return str(cand)
    import importlib.util

    return sys.executable if importlib.util.find_spec("pecos") is not None else None


class PecosClassifier:
    """PECOS XR-Linear with its default pipeline (PIFA label embeddings, hierarchical k-means
    tree, XR-Linear rankers), with the ``fit`` / ``predict`` API of :class:`slide.SlideClassifier`.

    Parameters
    ----------
    python : str, optional
        Interpreter that can import ``pecos`` (default: $SLIDE_PECOS_PYTHON, else this one).
    beam_size : int, default 10
        Beam width of the tree search in prediction (PECOS' default).
    normalize : {'l2', 'none'}, default 'l2'
        Row scaling of the input, as in SlideClassifier.
    n_jobs : int or None
        Threads (None: all cores).

    The trained PECOS model lives in a temporary folder owned by this object (removed with it);
    ``train_seconds_`` is the time PECOS itself spent training, measured in its process.
    """

    def __init__(self, *, python=None, beam_size=10, normalize="l2", n_jobs=None):
        self.python = python
        self.beam_size = beam_size
        self.normalize = normalize
        self.n_jobs = n_jobs

    def fit(self, X, Y):
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, (int, np.integer)) or self.beam_size < 1:
            raise ParameterError(f"The 'beam_size' parameter of PecosClassifier must be an int >= 1. "
                                 f"Got {self.beam_size!r} instead.")
        if self.normalize not in ("l2", "none"):
            raise ParameterError(f"The 'normalize' parameter of PecosClassifier must be 'l2' or 'none'. "
                                 f"Got {self.normalize!r} instead.")
        if pecos_python(self.python) is None:
            raise SlideError("PecosClassifier needs an interpreter with libpecos: pass python=... or set "
                             f"${ENV_PYTHON} (python3 -m venv pecos-venv && pecos-venv/bin/pip install libpecos).")
        X = check_X(X, name="X", normalize=self.normalize)
        Y = check_Y(Y, n_rows=X.shape[0], name="Y")
        keep = np.flatnonzero(np.diff(Y.indptr) > 0)  # rows without labels teach a ranker nothing
        self._folder = tempfile.TemporaryDirectory(prefix="slide-pecos-")
        sp.save_npz(os.path.join(self._folder.name, "X.npz"), X[keep])
        sp.save_npz(os.path.join(self._folder.name, "Y.npz"), sp.csr_matrix(Y[keep], dtype=np.float32))
        info = self._run("train")
        self.train_seconds_ = float(info["train_seconds"])
        self.pecos_version_ = info.get("pecos_version")
        self.n_features_in_, self.n_labels_ = X.shape[1], Y.shape[1]
        return self

    def _run(self, command, *extra) -> dict:
        from ..estimator import resolve_n_jobs

        folder = self._folder.name
        cmd = [pecos_python(self.python), _WORKER, command, folder, str(resolve_n_jobs(self.n_jobs)), *map(str, extra)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise SlideError(f"PECOS {command} failed (exit code {proc.returncode}, interpreter {cmd[0]}): "
                             + " | ".join(tail))
        with open(os.path.join(folder, "result.json")) as f:
            return json.load(f)

    def predict_topk(self, X, k=5):
        """(labels, scores) best first; -1 / -inf where PECOS returned fewer than k labels."""
        if not hasattr(self, "_folder"):
            raise NotFittedError("This PecosClassifier is not fitted yet: call fit(X, Y) first.")
        k = check_k(k, n_labels=self.n_labels_)
        X = check_X(X, name="X", n_features=self.n_features_in_, normalize=self.normalize)
        sp.save_npz(os.path.join(self._folder.name, "Xq.npz"), X)
        info = self._run("predict", int(k), int(self.beam_size))
        self.predict_seconds_ = float(info["predict_seconds"])
        with np.load(os.path.join(self._folder.name, "top.npz")) as z:
            return z["labels"], z["scores"]

    def predict(self, X, k=5) -> np.ndarray:
        return self.predict_topk(X, k)[0]
