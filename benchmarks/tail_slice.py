"""The long-tail slice of debian-package-search: default fits over several seeds -> test P@1.

    python benchmarks/study.py --datasets debian-package-search --methods omikuji   # featurises once
    PYTHONPATH=OLD/src python benchmarks/tail_slice.py --seeds 0,1,2 --out old.json
    python benchmarks/tail_slice.py --seeds 0,1,2 --out new.json
    python benchmarks/tail_slice.py --seeds 1,2 --set output_imprint=0 --out no_imprint.json

The points of the first ``--labels`` labels (15,000: 50,282 training points, median 3 a label) of
the TF-IDF matrices ``study.py`` caches, labels past the slice dropped, test on the slice's test
points; ``SlideClassifier(random_state=seed, n_jobs=2)`` with every other parameter at its
default. A fit is 1-3 minutes here, so comparing two versions of the code over a few seeds says
whether a change moves accuracy on a real tail beyond one trajectory's spread (the whole set
takes 10-20 minutes a fit). ``PYTHONPATH`` picks the version of slide.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "results", "study-cache", "debian-package-search")


def tail_slice(X, Y, n_labels):
    Y = Y.tocsc()[:, :n_labels].tocsr()
    rows = np.flatnonzero(np.diff(Y.indptr) > 0)
    return X[rows], Y[rows]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated random_state values (default 0,1,2)")
    ap.add_argument("--labels", type=int, default=15_000, help="labels in the slice (default 15000)")
    ap.add_argument("--cache", default=CACHE, help="study.py's featurised debian-package-search")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "tail_slice.json"), help="JSON output")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a SlideClassifier parameter instead of its default, e.g. output_imprint=0 (repeatable)")
    a = ap.parse_args(argv)
    paths = [os.path.join(a.cache, f) for f in ("train.txt.gz", "test.txt.gz")]
    if not all(os.path.exists(p) for p in paths):
        ap.error(f"--cache: expected {paths[0]} and {paths[1]} (run study.py on debian-package-search first)")
    import slide
    from slide import SlideClassifier
    from slide.bench import machine
    from slide.data import load_xmc

    params = {}
    for item in a.set:
        name, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set: expected NAME=VALUE, got {item!r}")
        try:
            params[name] = json.loads(value)
        except ValueError:
            params[name] = value
    X, Y = tail_slice(*load_xmc(paths[0]), a.labels)
    Xt, Yt = tail_slice(*load_xmc(paths[1]), a.labels)
    runs = []
    for seed in map(int, a.seeds.split(",")):
        t = time.perf_counter()
        clf = SlideClassifier(random_state=seed, n_jobs=2, **params).fit(X, Y)
        seconds = time.perf_counter() - t
        top = clf.predict_topk(Xt, 1)[0][:, 0]
        p1 = float(np.mean(np.asarray(Yt[np.arange(Xt.shape[0]), top]).ravel() > 0))
        runs.append({"random_state": seed, "P@1": p1, "fit_seconds": seconds})
        print(f"random_state {seed}: P@1 {p1:.4f} ({seconds:.1f} s)", flush=True)
    print(f"mean P@1 {np.mean([r['P@1'] for r in runs]):.4f}", flush=True)
    with open(a.out, "w") as f:
        json.dump({"benchmark": "benchmarks/tail_slice.py", "machine": machine(), "slide": slide.__file__,
                   "n_train": int(X.shape[0]), "n_test": int(Xt.shape[0]), "labels": a.labels, "params": params,
                   "runs": runs}, f,
                  indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
