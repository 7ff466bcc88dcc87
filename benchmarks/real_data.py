"""How accurate are slide's default parameters on real multi-label benchmarks?

Trains ``SlideClassifier(random_state=0)`` with every other parameter at its default on each
data set in ../shared/datasets (official train/test splits) and reports test P@1/P@3/P@5,
nDCG@5, PSP@5 and wall time, next to the reference points in ../shared/datasets/README.md.

    python benchmarks/real_data.py                      # bibtex, delicious, rcv1sub1
    python benchmarks/real_data.py --datasets bibtex,corel5k,mediamill-discretized
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import slide
from slide.metrics import evaluate, label_propensities

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
REFERENCE_P1 = {  # label trees (omikuji defaults) / plain dense 128-unit PyTorch net, from the data README
    "bibtex": (0.634, 0.425), "delicious": (0.670, 0.580), "rcv1sub1": (0.602, 0.521),
    "corel5k": (0.346, None), "mediamill-discretized": (0.809, None),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="bibtex,delicious,rcv1sub1")
    ap.add_argument("--data_dir", default=str(DATA))
    ap.add_argument("--out", default="benchmarks/results/real_data.json")
    args = ap.parse_args(argv)
    rows = []
    for name in args.datasets.split(","):
        folder = Path(args.data_dir) / name
        X, Y = slide.load_xmc(folder / "train.txt.gz")
        Xt, Yt = slide.load_xmc(folder / "test.txt.gz")
        t = time.perf_counter()
        clf = slide.SlideClassifier(random_state=0).fit(X, Y)
        seconds = time.perf_counter() - t
        res = evaluate(Yt, clf.predict_topk(Xt, k=5)[0], ks=(1, 3, 5), propensities=label_propensities(Y))
        trees, dense128 = REFERENCE_P1.get(name, (None, None))
        row = {"dataset": name, "epochs": clf.n_iter_, "fit_seconds": seconds,
               **{k: res[k] for k in ("P@1", "P@3", "P@5", "nDCG@5", "PSP@5")},
               "reference_label_trees_P@1": trees, "reference_dense128_P@1": dense128}
        rows.append(row)
        print(f"{name:22s} P@1 {row['P@1']:.4f}  P@3 {row['P@3']:.4f}  P@5 {row['P@5']:.4f}  nDCG@5 "
              f"{row['nDCG@5']:.4f}  PSP@5 {row['PSP@5']:.4f}  ({clf.n_iter_} epochs, {seconds:.0f} s)"
              + (f"  [label trees {trees}]" if trees else ""))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"benchmark": "real_data", "params": "defaults, random_state=0", "rows": rows,
                   "command": "python benchmarks/real_data.py " + " ".join(argv or sys.argv[1:])}, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
