"""Imprinting the trained output rows (``output_imprint``): test P@1 / P@5 against its weight.

    python benchmarks/study.py --datasets debian-package-search --methods omikuji   # featurises once
    python benchmarks/imprint.py                                    # every workload below
    python benchmarks/imprint.py --workloads slice,thinned --weights 0,0.2

Imprinting runs once, after the last epoch, so a fit with ``output_imprint=a`` is a fit with
``output_imprint=0`` followed by :func:`slide.centroids.imprint_output` at weight a on the
training data (fits repeat exactly for a seed and thread count). Each workload is therefore fitted
once (``random_state=0``, 2 threads, every other parameter at its default unless the workload
names it) and scored, exact over every label, after imprinting a copy of its output rows at each
of ``--weights``. Workloads:

* ``slice``: debian-package-search's first 15,000 labels (``tail_slice.py``), tested on their
  test points; ``dps``: the whole set (61,073 labels, 3.3 points per label); ``thinned``: the whole
  set with each label's training points cut at random (seed 0) to 1 for 70% of the labels and 2
  for the rest (1.26 points per label), the regime of a 124k-label set with 1.3 points per label.
  Their test splits hold one query per package.
* ``reference`` / ``reference128``: the ``slide-reference`` preset at the defaults, and at issue
  #2's network (hidden 128, 3 epochs, learning rate 3e-3); ``amazon``: the amazon-670k preset,
  scale 0.05, hidden 128, 2 epochs (section 10's setting); ``cbow``: debian-en-cbow points 0, 25,
  50, ... (200,000; one pass) tested on every 5th test point (20,000). Natural test splits.
* any other name: a shared set as ``rich_gap.py`` loads it (bibtex, rcv1sub1, debian-packages-text,
  ...), data-rich labels where the recipe does not imprint.

Writes ``benchmarks/results/imprint.json``; ``benchmarks/RESULTS.md`` section 11 has the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
WORKLOADS = ("slice", "dps", "thinned", "reference", "reference128", "amazon", "cbow", "bibtex", "enron",
             "corel5k", "stackex-cooking", "rcv1sub1", "delicious", "tmc2007-500", "mediamill-discretized",
             "debian-packages-text")


def thinned(X, Y, seed=0):
    """Each label's points cut at random to 1 (70% of labels) or 2 (the rest)."""
    rng = np.random.default_rng(seed)
    Yc, keep = Y.tocsc(), []
    for j in range(Y.shape[1]):
        pts = Yc.indices[Yc.indptr[j]:Yc.indptr[j + 1]]
        keep.extend(rng.permutation(pts)[:1 if rng.random() < 0.7 else 2].tolist())
    keep = np.unique(np.asarray(keep, np.int64))
    return X[keep], Y[keep]


def load(name, cache):
    """(X, Y, X_test, Y_test, parameters the workload sets)."""
    import rich_gap
    import study
    from slide.data import load_xmc_shard
    from slide.datasets import preset
    from tail_slice import tail_slice

    if name in ("slice", "dps", "thinned"):
        X, Y, Xt, Yt = rich_gap.load("debian-package-search", cache)
        if name == "slice":
            return (*tail_slice(X, Y, 15_000), *tail_slice(Xt, Yt, 15_000), {})
        return (*(thinned(X, Y) if name == "thinned" else (X, Y)), Xt, Yt, {})
    if name.startswith("reference"):
        kw = dict(hidden_layer_sizes=(128,), epochs=3, learning_rate=3e-3) if name == "reference128" else {}
        return (*preset("slide-reference", random_state=0), kw)
    if name == "amazon":
        return (*preset("amazon-670k", scale=0.05, random_state=0), dict(hidden_layer_sizes=(128,), epochs=2))
    if name == "cbow":
        d = os.path.join(study.SHARED, study.CBOW)
        X, Y = load_xmc_shard(os.path.join(d, "train.txt.gz"), 0, 25)
        Xt, Yt = load_xmc_shard(os.path.join(d, "test.txt.gz"), 0, 5, n_features=X.shape[1], n_labels=Y.shape[1])
        return X, Y, Xt, Yt, {}
    return (*rich_gap.load(name, cache), {})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated (default: all)")
    ap.add_argument("--weights", default="0,0.1,0.2,0.3", help="output_imprint values scored (default 0,0.1,0.2,0.3)")
    ap.add_argument("--cache", default=os.path.join(HERE, "results", "study-cache"), help="study.py's cache")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "imprint.json"), help="JSON output")
    a = ap.parse_args(argv)
    from slide import SlideClassifier
    from slide.bench import machine
    from slide.centroids import imprint_output
    from slide.estimator import thread_limits
    from slide.io import atomic_write
    from slide.metrics import evaluate

    weights = [float(w) for w in a.weights.split(",")]
    records = []
    if os.path.exists(a.out):  # a rerun replaces its own workloads' records
        with open(a.out) as f:
            records = [r for r in json.load(f)["records"] if r["workload"] not in a.workloads.split(",")]
    for name in a.workloads.split(","):
        X, Y, Xt, Yt, kw = load(name, a.cache)
        t0 = time.perf_counter()
        clf = SlideClassifier(random_state=0, n_jobs=2, output_imprint=0.0, **kw).fit(X, Y)
        fit_s = time.perf_counter() - t0
        state = clf.state_
        Xv, Yv = clf._validated_X(X), clf._targets.encode(Y, X.shape[0], "Y")
        trained = state.weights[-1].copy()
        rec = {"workload": name, "params": {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()},
               "train_points": int(X.shape[0]), "test_points": int(Xt.shape[0]), "labels": int(Y.shape[1]),
               "recipe_output_imprint": [c.value for c in clf.recipe_ if c.name == "output_imprint"],
               "fit_seconds": round(fit_s, 1), "by_weight": {}}
        for w in weights:
            state.weights[-1][:] = trained
            t0 = time.perf_counter()
            if w > 0:
                with thread_limits(2):
                    imprint_output(state.weights, state.biases, Xv, Yv, w)
            seconds = time.perf_counter() - t0
            m = evaluate(Yt, clf.predict_topk(Xt, k=5, mode="exact")[0])
            rec["by_weight"][str(w)] = {"P@1": round(m["P@1"], 4), "P@5": round(m["P@5"], 4),
                                        "imprint_seconds": round(seconds, 2)}
            print(json.dumps({"workload": name, "output_imprint": w, **rec["by_weight"][str(w)]}), flush=True)
        records.append(rec)
        blob = {"benchmark": "benchmarks/imprint.py", "machine": machine(), "n_jobs": 2, "records": records}
        atomic_write(a.out, lambda f: f.write(json.dumps(blob, indent=1).encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
