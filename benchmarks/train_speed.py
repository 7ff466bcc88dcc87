"""How fast does slide train on the reference SLIDE workload, where does the time go, and how
much memory does it take?

Workload (issue #2): 100,000 sparse features (~73 non-zeros per point, L2-normalised), 50,000
labels with Zipf(1) popularity and ~3 labels per point, 20,000 training points
(:func:`slide.datasets.make_extreme`); network 100000 -> 128 -> 50000 with an LSH output layer
(~2% of the output neurons retrieved per sample, plus random padding); default parameters
otherwise. Reported for each thread count: samples/s (steady state: epochs after the first,
whose tables are built from random weights), thread-seconds per phase, P@1 on 2,000 test points,
and peak RSS next to the size of the model's arrays. For scale: the public C++ SLIDE trains at
768 samples/s on 2 cores and 434 on one on this workload (figures from issue #2, not
re-measured here).

    python benchmarks/train_speed.py                    # 1 and 2 threads, 3 epochs each
    python benchmarks/train_speed.py --threads 2 --epochs 5 --out speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

import slide
from slide.datasets import make_extreme
from slide.metrics import evaluate


def _nbytes(obj) -> int:
    """Bytes of every array in a kernel-state record (arrays, lists and records of them)."""
    if hasattr(obj, "nbytes"):
        return int(obj.nbytes)
    if isinstance(obj, (int, float)):
        return 0
    return sum(_nbytes(f) for f in obj)


def model_bytes(clf) -> dict:
    """Bytes of the arrays a fitted model holds, by kind."""
    st = clf.state_
    net, lsh, work, grad = st.net, st.lsh, st.work, st.grad
    return {
        "weights": _nbytes([net.W, net.b]),
        "optimizer_state": _nbytes([net.mW, net.vW, net.mb, net.vb]),
        "hash_tables": _nbytes([lsh.buckets, lsh.fill]),
        "buffers": _nbytes(work) + _nbytes(grad),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n_samples", type=int, default=20000)
    ap.add_argument("--out", default="benchmarks/results/train_speed.json")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]

    t0 = time.perf_counter()
    X, Y, Xt, Yt = make_extreme(args.n_samples, 100_000, 50_000, n_test=2000, random_state=0)
    gen_s = time.perf_counter() - t0
    print(f"data: {X.shape[0]:,} x {X.shape[1]:,}, {X.nnz / X.shape[0]:.1f} nnz/pt, "
          f"{Y.nnz / Y.shape[0]:.2f} labels/pt, {Y.shape[1]:,} labels ({gen_s:.1f} s)")
    params = dict(hidden_layer_sizes=(128,), lsh_layers="output", random_state=0, epochs=args.epochs)
    # compile (or load from cache) every kernel outside the timed runs
    slide.SlideClassifier(**{**params, "epochs": 1}).fit(X[:512], Y[:512]).predict_topk(Xt[:10])[0]

    runs = []
    for n in threads:
        clf = slide.SlideClassifier(**params, n_jobs=n)
        t = time.perf_counter()
        clf.fit(X, Y)
        wall = time.perf_counter() - t
        per_epoch = [h["samples_per_second"] for h in clf.history_]
        steady = statistics.median(per_epoch[1:]) if len(per_epoch) > 1 else per_epoch[0]
        seen = clf.history_[-1]["samples_seen"]
        top = clf.predict_topk(Xt, k=5)[0]
        spec = clf.layer_specs_[-1]
        run = {
            "n_jobs": n,
            "samples_per_second": steady,
            "samples_per_second_by_epoch": per_epoch,
            "fit_seconds": wall,
            "phase_us_per_sample": {k: 1e6 * v / seen for k, v in clf.timings_.items()},
            "active_mean": clf.history_[-1].get("active_mean"),
            "output_layer": {"hashes_per_table": spec.hashes_per_table, "n_tables": spec.n_tables, "bucket_bits": spec.bucket_bits,
                             "bucket_size": spec.bucket_size, "active_size": spec.active_size,
                             "min_active": spec.min_active},
            **{k: v for k, v in evaluate(Yt, top, ks=(1, 5)).items() if k in ("P@1", "P@5")},
            "model_bytes": model_bytes(clf),
        }
        runs.append(run)
        ph = ", ".join(f"{k} {v:.0f}" for k, v in run["phase_us_per_sample"].items())
        print(f"n_jobs={n}: {steady:,.0f} samples/s (by epoch {[round(v) for v in per_epoch]}), "
              f"P@1 {run['P@1']:.4f}; thread-us/sample: {ph}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mb = runs[-1]["model_bytes"]
    print(f"peak RSS {peak / 2**20:,.0f} MiB (data included); model arrays "
          + ", ".join(f"{k} {v / 2**20:,.1f} MiB" for k, v in mb.items()))
    if len(runs) > 1:
        print(f"speed-up {threads[-1]} vs {threads[0]} threads: "
              f"{runs[-1]['samples_per_second'] / runs[0]['samples_per_second']:.2f}x")
    result = {
        "benchmark": "train_speed",
        "workload": {"n_train": int(X.shape[0]), "n_features": int(X.shape[1]), "n_labels": int(Y.shape[1]),
                     "nnz_per_point": X.nnz / X.shape[0], "labels_per_point": Y.nnz / Y.shape[0],
                     "network": [int(X.shape[1]), 128, int(Y.shape[1])]},
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
        "runs": runs,
        "peak_rss_bytes": peak,
        "reference_cpp_slide_samples_per_second": {"1": 434, "2": 768},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "python": sys.version.split()[0]},
        "command": "python benchmarks/train_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
