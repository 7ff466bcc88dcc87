"""Is accuracy lost to sparsity? SLIDE against the same network with every output neuron active.

Same workload as ``train_speed.py`` (100,000 features, 50,000 Zipf labels, 20,000 training
points, 100000 -> 128 -> 50000), the same parameters and seed for both runs; only
``lsh_layers`` differs ('output' vs 'none'). After every epoch both are evaluated exactly (every
output neuron scored) on 2,000 test points. Also measured for the SLIDE model: how much of the
true top-10 logits its LSH active sets retrieve (``retrieval_recall``). Writes JSON with both
curves.

    python benchmarks/sparsity.py                 # default epochs ('auto': 8 here)
    python benchmarks/sparsity.py --epochs 4 --n_jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import slide
from slide.datasets import make_extreme


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", default="auto")
    ap.add_argument("--n_jobs", type=int, default=None)
    ap.add_argument("--n_samples", type=int, default=20000)
    ap.add_argument("--out", default="benchmarks/results/sparsity.json")
    args = ap.parse_args(argv)
    epochs = args.epochs if args.epochs == "auto" else int(args.epochs)
    X, Y, Xt, Yt = make_extreme(args.n_samples, 100_000, 50_000, n_test=2000, random_state=0)
    common = dict(hidden_layer_sizes=(128,), random_state=0, epochs=epochs, n_jobs=args.n_jobs)
    curves = {}
    for name, lsh in (("slide", "output"), ("all_active", "none")):
        clf = slide.SlideClassifier(lsh_layers=lsh, **common)
        t = time.perf_counter()
        clf.fit(X, Y, eval_set=(Xt, Yt))
        curves[name] = [{k: h[k] for k in ("epoch", "loss", "P@1", "P@3", "P@5", "nDCG@5", "train_seconds",
                                          "samples_per_second") if k in h} for h in clf.history_]
        print(f"{name:10s} " + "  ".join(f"ep{h['epoch']} P@1 {h['P@1']:.4f}" for h in clf.history_)
              + f"  ({time.perf_counter() - t:.0f} s)")
        if lsh == "output":
            recall = clf.retrieval_recall(Xt[:500], k=10)
            print("slide retrieval on 500 test points:", {k: round(float(v), 4) for k, v in recall.items()})
    gaps = [s["P@1"] - d["P@1"] for s, d in zip(curves["slide"], curves["all_active"])]
    print("P@1 slide - all_active by epoch:", [round(g, 4) for g in gaps])
    result = {"benchmark": "sparsity", "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in common.items()},
              "curves": curves, "p1_gap_by_epoch": gaps, "retrieval_recall": {k: float(v) for k, v in recall.items()},
              "command": "python benchmarks/sparsity.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
