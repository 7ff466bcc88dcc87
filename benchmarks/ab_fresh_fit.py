"""A/B of two versions of slide on fresh fits with the defaults: runs alternated, same script run.

    git worktree add /tmp/base HEAD                  # the version to compare against
    python benchmarks/ab_fresh_fit.py --baseline_src /tmp/base/src --workloads cbow --pairs 2

Each fit is one of ``fresh_fit.py``'s workers (a new process, timed from the call to ``fit`` to its
return, slide only), run once with ``PYTHONPATH`` at ``--baseline_src`` and once at this checkout's
``src``, alternating pair by pair so that the machine's drift from minute to minute falls on both.
Each version compiles into its own kernel cache first (a warm-up fit not counted). Prints and
writes every run's samples/s and phases, and the medians. Run it on a quiet machine. ``--gap``
waits before each fit, for changes to how memory is mapped: on a virtual machine whose host
reclaims freed guest memory, back-to-back fits reuse the pages the one before just freed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fresh_fit import WORKLOADS  # noqa: E402

NEW_SRC = os.path.normpath(os.path.join(HERE, "..", "src"))


def fit(spec: dict, src: str, cache: str) -> dict:
    env = {**os.environ, "PYTHONPATH": src, "NUMBA_CACHE_DIR": cache}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        subprocess.run([sys.executable, os.path.join(HERE, "fresh_fit.py"), "--worker", json.dumps(spec),
                        "--worker_out", out], env=env, check=True)
        with open(out) as f:
            return json.load(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--baseline_src", required=True, help="the src directory of the version to compare against")
    ap.add_argument("--workloads", default="reference", help="comma-separated: " + ", ".join(WORKLOADS))
    ap.add_argument("--pairs", type=int, default=3, help="alternated baseline/new pairs per workload (default 3)")
    ap.add_argument("--n_jobs", type=int, default=2, help="threads (default 2)")
    ap.add_argument("--gap", type=float, default=0.0,
                    help="seconds to wait before each fit (default 0): on a virtual machine whose host reclaims "
                         "freed guest memory after a few seconds, a gap makes each fit touch memory as a first "
                         "job would, instead of the pages the fit before just freed")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "ab_fresh_fit.json"), help="JSON output")
    a = ap.parse_args(argv)
    if a.pairs < 1:
        ap.error(f"--pairs must be >= 1, got {a.pairs}")
    if not a.gap >= 0:
        ap.error(f"--gap must be >= 0 seconds, got {a.gap}")
    if not os.path.isdir(os.path.join(a.baseline_src, "slide")):
        ap.error(f"--baseline_src must be a directory holding the slide package, got {a.baseline_src!r}")
    from slide.bench import machine

    versions = {"baseline": os.path.abspath(a.baseline_src), "new": NEW_SRC}
    results = []
    with tempfile.TemporaryDirectory() as caches:
        for name in a.workloads.split(","):
            if name not in WORKLOADS:
                ap.error(f"--workloads: unknown workload {name!r}; expected some of {', '.join(WORKLOADS)}")
            w = WORKLOADS[name]
            spec = {"data": w["data"], "params": w["params"], "n_jobs": a.n_jobs, "method": "slide"}
            runs = {v: [] for v in versions}
            for v, src in versions.items():  # compile each version's kernels into its own cache
                fit({**spec, "data": {**spec["data"], "max_train": 2_000}}, src, os.path.join(caches, v))
            for _ in range(a.pairs):
                for v, src in versions.items():
                    time.sleep(a.gap)
                    r = fit(spec, src, os.path.join(caches, v))
                    runs[v].append(r)
                    print(f"{name} {v}: {r['samples_per_second']:,.0f} samples/s ({r['fit_seconds']:.1f} s); "
                          f"phases {r['timings']}", flush=True)
            med = {v: statistics.median(r["samples_per_second"] for r in rs) for v, rs in runs.items()}
            print(f"{name}: median baseline {med['baseline']:,.0f}, new {med['new']:,.0f} samples/s "
                  f"({med['new'] / med['baseline']:.2f}x)", flush=True)
            results.append({"workload": name, "runs": runs, "median_samples_per_second": med})
    with open(a.out, "w") as f:
        json.dump({"benchmark": "benchmarks/ab_fresh_fit.py", "machine": machine(), "n_jobs": a.n_jobs, "gap": a.gap,
                   "baseline_src": versions["baseline"], "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
