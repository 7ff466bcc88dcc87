"""What makes LSH retrieval find the large logits? Recall of the true top-10 logits for several
hashing settings, on the same trained weights.

One SLIDE model is trained on the reference workload (100,000 features, 50,000 Zipf labels,
20,000 points, 100000 -> 128 -> 50000, default parameters). Then, keeping its weights, the
output layer's tables are rebuilt (``SlideClassifier.rehash``) with each setting below and the
retrieval is measured on 1,000 test points (``retrieval_recall``): the share of each point's
10 largest logits that the LSH active set contains, the mean active-set size (no labels, no
random padding, as in prediction), the share of the full softmax mass inside it, and P@1 of
LSH-sparse prediction. A random set of the same size would recall active/50,000 of them.

    python benchmarks/retrieval.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import slide
from slide.datasets import make_extreme
from slide.metrics import precision_at_k

SETTINGS = [
    ("default: centred [w,b] vs [h,1], K=8, L=32, top-k", {}),
    ("no centring: [w, b] vs [h, 1] as they are", {"center": False}),
    ("MIPS transform (norm-scaled, Simple-LSH)", {"mips": True, "center": False}),
    ("MIPS transform + centring", {"mips": True}),
    ("union of buckets (vanilla) instead of top-k", {"selection": "vanilla"}),
    ("K=6, L=32", {"hashes_per_table": 6, "bucket_bits": 6}),
    ("K=10, L=64", {"hashes_per_table": 10, "bucket_bits": 10, "n_tables": 64}),
    ("DWTA (bin 8), K=3, L=32", {"hash_family": "dwta", "hashes_per_table": 3, "bucket_bits": 9}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/retrieval.json")
    args = ap.parse_args(argv)
    X, Y, Xt, Yt = make_extreme(20000, 100_000, 50_000, n_test=1000, random_state=0)
    t = time.perf_counter()
    clf = slide.SlideClassifier(hidden_layer_sizes=(128,), random_state=0).fit(X, Y)
    exact_p1 = precision_at_k(Yt, clf.predict_topk(Xt, k=1)[0], k=1)
    print(f"trained in {time.perf_counter() - t:.0f} s; exact P@1 {exact_p1:.4f}")
    rows = []
    base = {k: clf.get_params()[k] for k in ("center", "mips", "selection", "hashes_per_table", "bucket_bits",
                                             "n_tables", "hash_family")}
    for name, change in SETTINGS:
        clf.rehash(**{**base, **change})
        r = clf.retrieval_recall(Xt, k=10)
        p1 = precision_at_k(Yt, clf.predict_topk(Xt, k=1, mode="lsh")[0], k=1)
        spec = clf.layer_specs_[-1]
        row = {"setting": name, **change, "hashes_per_table": spec.hashes_per_table, "n_tables": spec.n_tables,
               "recall@10": float(r["recall@10"]), "active_mean": float(r["active_mean"]),
               "softmax_mass": float(r["softmax_mass"]),
               "random_recall@10": float(r["active_mean"]) / Y.shape[1], "lsh_P@1": p1}
        rows.append(row)
        print(f"{name:52s} recall@10 {row['recall@10']:.3f} (random {row['random_recall@10']:.3f})  "
              f"active {row['active_mean']:6.0f}  softmax mass {row['softmax_mass']:.3f}  LSH P@1 {p1:.4f}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"benchmark": "retrieval", "exact_P@1": exact_p1, "rows": rows,
                   "command": "python benchmarks/retrieval.py " + " ".join(argv or sys.argv[1:])}, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
