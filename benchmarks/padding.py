"""Does the output layer keep the label prior? SLIDE's random padding three ways, on four workloads.

An LSH output layer computes the sample's labels, the ids its retrieval returns and random
padding. Retrieval returns labels with large logits for this input, so a frequent label absent
from the sample is rarely pushed down: without help the label prior is lost. Compared here, with
everything else at the defaults:

* ``uncorrected``: uniform padding, no correction (the paper's SLIDE; the default before 0.8);
* ``uniform``: uniform padding with the exact log-Q correction;
* ``log_uniform``: padding drawn log-uniformly over labels ranked by training frequency, each
  padded logit corrected by its inclusion probability (the default).

Workloads (all with an LSH output layer): the reference workload of ``train_speed.py`` (50,000
Zipf labels, 3 per point, hidden 512, 'auto' epochs); the amazon-670k and delicious-200k presets
at a fraction of their points (hidden 128, 2 epochs); and, when ``../shared/datasets`` is there,
one pass over the first points of debian-en-cbow (101,686-way word prediction, hidden 128, no
dropout). Reports P@1, P@5 on held-out points and training samples/s; writes JSON.

    python benchmarks/padding.py                          # everything (~25 min on 2 cores)
    python benchmarks/padding.py --workloads reference,delicious-200k --n_jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import slide
from slide.datasets import preset
from slide.metrics import precision_at_k

VARIANTS = {
    "uncorrected": dict(sample_correction=False, sampler="uniform"),
    "uniform": dict(sample_correction=True, sampler="uniform"),
    "log_uniform": dict(sample_correction=True, sampler="log_uniform"),
}
DEBIAN = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "debian-en-cbow")


def workload(name: str, args):
    """(X, Y, X_eval, Y_eval, parameters) of one workload."""
    if name == "reference":
        X, Y, Xt, Yt = preset("slide-reference", random_state=0)
        return X, Y, Xt, Yt, {}
    if name in ("amazon-670k", "delicious-200k"):
        X, Y, Xt, Yt = preset(name, scale=args.scale, random_state=0)
        ev = np.random.default_rng(0).permutation(Xt.shape[0])[:2000]
        return X, Y, Xt[ev], Yt[ev], dict(hidden_layer_sizes=(128,), epochs=2, rebuild_first=50)
    if name == "debian-en-cbow":
        from slide.bench import load_data

        X, Y, Xt, Yt, _ = load_data({"train": os.path.join(DEBIAN, "train.txt.gz"),
                                     "test": os.path.join(DEBIAN, "test.txt.gz"), "max_train": args.debian_points,
                                     "eval_size": 20000, "eval_first": True, "random_state": 0})
        return X, Y, Xt, Yt, dict(hidden_layer_sizes=(128,), epochs=1, dropout=0.0, input_dropout=0.0)
    raise SystemExit(f"unknown workload {name!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default="reference,amazon-670k,delicious-200k,debian-en-cbow")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--scale", type=float, default=0.05, help="presets: fraction of their points")
    ap.add_argument("--debian_points", type=int, default=1_000_000)
    ap.add_argument("--n_jobs", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/padding.json")
    args = ap.parse_args(argv)
    rows = []
    for name in [w.strip() for w in args.workloads.split(",") if w.strip()]:
        if name == "debian-en-cbow" and not os.path.isdir(DEBIAN):
            print(f"skipping {name}: {DEBIAN} is absent")
            continue
        X, Y, Xe, Ye, params = workload(name, args)
        for v in [v.strip() for v in args.variants.split(",") if v.strip()]:
            clf = slide.SlideClassifier(random_state=0, n_jobs=args.n_jobs, **params, **VARIANTS[v])
            t = time.perf_counter()
            clf.fit(X, Y)
            secs = time.perf_counter() - t
            P = clf.predict_topk(Xe, k=5)[0]
            row = {"workload": name, "variant": v, **VARIANTS[v], "epochs": clf.n_iter_, "fit_seconds": round(secs, 1),
                   "samples_per_second": round(X.shape[0] * clf.n_iter_ / secs),
                   "P@1": round(float(precision_at_k(Ye, P, k=1)), 5), "P@5": round(float(precision_at_k(Ye, P, k=5)), 5),
                   "active_size": clf.layer_specs_[-1].active_size, "min_active": clf.layer_specs_[-1].min_active}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"benchmark": "padding", "scale": args.scale, "debian_points": args.debian_points, "rows": rows,
              "command": "python benchmarks/padding.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
