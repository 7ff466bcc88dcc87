"""A fit gives the same weights whether the process compiled its kernels or loaded them from
Numba's cache: machine code must not depend on which callees LLVM saw as IR (and could inline and
re-associate in the caller's context) and which it linked as cached object code."""

import os
import subprocess
import sys

import pytest

CHILD = r"""
import hashlib
import numpy as np
from slide import SlideClassifier
from slide.datasets import make_extreme

X, Y, Xt, Yt = make_extreme(3000, 5000, 300, n_test=200, avg_nnz=30, avg_labels=2, random_state=0)
clf = SlideClassifier(hidden_layer_sizes=(64, 64), lsh_layers="all", label_smoothing=0.1, epochs=1,
                      random_state=0, n_jobs=1).fit(X, Y)
ids, logits = clf.predict_topk(Xt, k=5)
h = hashlib.sha1()
for a in (*clf.coefs_, *clf.intercepts_, ids, logits):
    h.update(np.ascontiguousarray(a).tobytes())
print("HASH", h.hexdigest())
"""


def _fit_hash(cache_dir) -> tuple[str, list[str]]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("HASH ")]
    assert lines, out.stdout[-2000:] + out.stderr[-2000:]
    return lines[-1], os.listdir(cache_dir)


@pytest.mark.slow
def test_a_fit_rounds_the_same_compiled_or_loaded_from_the_cache(tmp_path):
    compiled, entries = _fit_hash(tmp_path)  # an empty cache: this process compiles every kernel
    assert entries, "the first process wrote no kernel cache"
    cached, _ = _fit_hash(tmp_path)  # this one loads them
    assert compiled == cached
