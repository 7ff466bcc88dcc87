"""SLIDE against its baselines on the same data, cores and network: ``slide bench``.

Two modes:

* ``curve``: each method trains under the same wall-clock and/or epoch budget; every
  ``eval_every`` seconds of *training* time (evaluation time is excluded) it is evaluated (exact
  top-5) on a fixed shuffled subset of the test set. Every point (method, train seconds, samples
  seen, P@1, P@5, samples/s, peak RSS) goes to ``bench.json``; ``bench.png`` draws P@1 against
  training time, one line per method.
* ``threads``: each method trains for a fixed time at each thread count; samples/s against
  threads goes to ``bench.json`` and ``bench.png``.

Each method runs in its own child process (``python -m slide.bench --worker SPEC``) so its peak
resident memory is its own and one method's allocations cannot slow the next. The child loads
(or generates) the data itself, deterministically, from the data description.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

from .config import PARAM_BY_NAME, validate_value
from .errors import DataFormatError, ParameterError, SlideError

METHODS = ("slide", "dense", "sampled", "omikuji", "pecos")
TREES = ("omikuji", "pecos")  # label-tree methods: trained once, evaluated once
LABELS = {"slide": "SLIDE (this library, LSH-sparse)", "dense": "dense full softmax (PyTorch)",
          "sampled": "sampled softmax (PyTorch)", "omikuji": "label trees (omikuji)",
          "pecos": "label trees (PECOS XR-Linear)"}


# ----------------------------------------------------------------------------- data
def load_data(data: dict):
    """(X, Y, X_eval, Y_eval, name) from a data description: ``{"preset": name, "scale": s}``
    or ``{"train": path, "test": path}``, plus ``max_train`` (first N training points),
    ``eval_size`` (test points: a fixed shuffle, or the first ones with ``eval_first``) and
    ``random_state``."""
    seed = int(data.get("random_state", 0))
    if data.get("preset"):
        from .datasets import preset

        X, Y, Xt, Yt = preset(data["preset"], scale=float(data.get("scale", 1.0)), random_state=seed)
        name = f"{data['preset']} (generated, scale {data.get('scale', 1.0)})"
    else:
        X, Y = _first_rows(data["train"], data.get("max_train"))
        Xt, Yt = _first_rows(data["test"], None)
        if Xt.shape[1] != X.shape[1] or Yt.shape[1] != Y.shape[1]:
            raise DataFormatError(f"{data['test']}: has {Xt.shape[1]} features and {Yt.shape[1]} labels, but "
                                  f"{data['train']} has {X.shape[1]} and {Y.shape[1]}; expected the same.")
        name = os.path.basename(os.path.dirname(os.path.abspath(data["train"]))) or data["train"]
    if data.get("max_train"):
        X, Y = X[: int(data["max_train"])], Y[: int(data["max_train"])]
    n_eval = min(Xt.shape[0], int(data.get("eval_size", 2000)))
    if data.get("eval_first"):
        pick = np.arange(n_eval)  # the first points, as a published protocol may ask
    else:
        pick = np.sort(np.random.default_rng(seed).permutation(Xt.shape[0])[:n_eval])
    return X, Y, Xt[pick], Yt[pick], name


def _first_rows(path, n):
    """The first ``n`` points of an XMC file (all when None) without reading the rest."""
    from .data import iter_xmc, load_xmc

    if n is None:
        return load_xmc(path)
    Xs, Ys, got = [], [], 0
    for X, Y in iter_xmc(path, chunk_size=min(200_000, int(n))):
        Xs.append(X)
        Ys.append(Y)
        got += X.shape[0]
        if got >= n:
            break
    return sp.vstack(Xs, format="csr")[:n], sp.vstack(Ys, format="csr")[:n]


# ----------------------------------------------------------------------------- one method (child)
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def make_estimator(method: str, params: dict, n_jobs: int, pecos_python=None):
    if method == "slide":
        from .estimator import SlideClassifier

        # n_negatives is a sampled-softmax setting, not a SLIDE parameter
        return SlideClassifier(**{k: v for k, v in params.items() if k in PARAM_BY_NAME}, n_jobs=n_jobs)
    from . import baselines

    if method == "dense":
        from .baselines.torch_nets import SHARED

        return baselines.DenseClassifier(**{k: v for k, v in params.items() if k in SHARED}, n_jobs=n_jobs)
    if method == "sampled":
        from .baselines.torch_nets import SHARED

        kw = {k: v for k, v in params.items() if k in SHARED or k in ("n_negatives", "sampler")}
        return baselines.SampledSoftmaxClassifier(**kw, n_jobs=n_jobs)
    if method == "omikuji":
        return baselines.LabelTreeClassifier(n_jobs=n_jobs)
    if method == "pecos":
        return baselines.PecosClassifier(python=pecos_python, n_jobs=n_jobs)
    raise ParameterError(f"Unknown method {method!r}; expected one of {', '.join(METHODS)}.")


def theoretical_bytes(method: str, clf, n_features: int, n_labels: int, params: dict) -> dict:
    """Sizes of the arrays a method's training needs by definition (weights, optimiser state,
    hash tables), to set peak RSS against."""
    from .estimator import SlideClassifier

    # the baselines are the same network without tables (SLIDE's estimate with no LSH layer);
    # 'auto' values as the recipe decided them on this data
    chosen = {c.name: c.value for c in getattr(clf, "recipe_", [])}
    if method == "slide":
        net = SlideClassifier(**{**clf.get_params(), **chosen})
    else:
        shared = {k: v for k, v in {**params, **chosen}.items() if k in ("hidden_layer_sizes", "optimizer",
                                                                             "input_optimizer")}
        net = SlideClassifier(**shared, lsh_layers="none")
    est = net.estimate_memory(n_features, n_labels)
    out = {k: est[k] for k in ("weights", "optimizer_state", "hash_tables")}
    out["total"] = sum(out.values())
    return out


def run_method(spec: dict) -> list[dict]:
    """Train one method as ``spec`` says and return its records (runs in the child process)."""
    from .metrics import evaluate

    t_load = time.perf_counter()
    X, Y, Xe, Ye, name = load_data(spec["data"])
    load_seconds = time.perf_counter() - t_load
    method, budget, every = spec["method"], spec.get("max_seconds"), spec.get("eval_every")
    params = dict(spec.get("params", {}))
    params.setdefault("random_state", spec["data"].get("random_state", 0))
    clf = make_estimator(method, params, spec["n_jobs"], spec.get("pecos_python"))
    rss_data = _rss_bytes()
    records: list[dict] = []
    base = {"method": method, "n_jobs": spec["n_jobs"], "dataset": name, "n_train": int(X.shape[0]),
            "n_eval": int(Xe.shape[0])}
    state = {"next_eval": every if every else float("inf")}
    evaluating = spec.get("evaluate", True)

    def point(rec, final=False):
        r = dict(base, epoch=rec.get("epoch"), train_seconds=rec["train_seconds"],
                 samples_seen=rec["samples_seen"],
                 samples_per_second=rec["samples_seen"] / max(rec["train_seconds"], 1e-9),
                 peak_rss_bytes=_peak_rss_bytes(), final=final)
        if evaluating:
            top = clf.predict_topk(Xe, k=5)[0]
            m = evaluate(Ye, top, ks=(1, 5))
            r.update({"P@1": m["P@1"], "P@5": m["P@5"]})
        records.append(r)
        if spec.get("verbose", True):
            shown = f"P@1 {r['P@1']:.4f}  " if "P@1" in r else ""
            print(f"[{method}] {r['train_seconds']:8.1f} s  {r['samples_seen']:>10,} samples  {shown}"
                  f"{r['samples_per_second']:,.0f} samples/s", file=sys.stderr, flush=True)
        return r

    last = {}  # the latest batch record: where a budget stop left the run

    def on_batch(rec):
        last.update(rec)
        ts = rec["train_seconds"]
        if budget is not None and ts >= budget:
            return True
        if ts >= state["next_eval"]:
            point(rec)
            state["next_eval"] = ts + every
        return False

    if method in TREES:
        t0 = time.perf_counter()
        clf.fit(X, Y)
        # PECOS reports the time it trained for in its own process (no file exchange)
        seconds = getattr(clf, "train_seconds_", time.perf_counter() - t0)
        last.update(train_seconds=seconds, samples_seen=X.shape[0], epoch=1)
    else:
        clf.fit(X, Y, batch_callback=on_batch, batch_callback_every=1)
        if clf.history_ and clf.history_[-1]["samples_seen"] >= last.get("samples_seen", 0):
            last.update(clf.history_[-1])  # ended at an epoch boundary: its record has the final time
    final = point(last, final=True)
    final["load_seconds"] = load_seconds
    final["rss_after_data_bytes"] = rss_data
    final["theoretical_bytes"] = (None if method in TREES else
                                  theoretical_bytes(method, clf, X.shape[1], Y.shape[1], params))
    final["model_peak_bytes"] = final["peak_rss_bytes"] - rss_data
    return records


# ----------------------------------------------------------------------------- driver
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def _child(spec: dict, timeout: float | None) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "records.json")
        cmd = [sys.executable, "-m", "slide.bench", "--worker", json.dumps(spec), "--worker_out", out]
        proc = subprocess.run(cmd, timeout=timeout)
        if proc.returncode != 0 or not os.path.exists(out):
            raise SlideError(f"slide bench: the {spec['method']!r} run failed (exit code {proc.returncode}); its "
                             "messages are above.")
        with open(out) as f:
            return json.load(f)


def check_methods(methods, pecos_python=None) -> list[str]:
    from .baselines import available

    ok = available(pecos_python)
    out = []
    for m in methods:
        if m not in METHODS:
            raise ParameterError(f"Unknown method {m!r} for slide bench; expected some of {', '.join(METHODS)}.")
        if m != "slide" and not ok[m]:
            need = {"omikuji": "omikuji (pip install omikuji)",
                    "pecos": "an interpreter with libpecos (--pecos_python, or $SLIDE_PECOS_PYTHON)"}.get(
                m, "PyTorch (pip install 'slide[torch]')")
            raise ParameterError(f"slide bench: method {m!r} needs {need}, which is not available here.")
        out.append(m)
    return out


def run_bench(data: dict, methods=("slide", "dense"), *, params=None, method_params=None, n_jobs=2,
              max_seconds=None, eval_every=60.0, mode="curve", threads=(1, 2), out_dir="bench",
              verbose=True, pecos_python=None) -> dict:
    """Run the benchmark and write ``out_dir/bench.json`` and ``out_dir/bench.png``.

    ``params``: estimator parameters shared by every method (e.g. ``hidden_layer_sizes``,
    ``epochs``); ``method_params``: per-method extras, e.g. ``{"sampled": {"n_negatives": 2048}}``.
    ``max_seconds``: training-time budget per method (None: the epochs decide; in threads mode
    with 'auto' epochs, 60 s per run). ``pecos_python``: the interpreter that runs PECOS
    (:mod:`slide.baselines.xr_linear`)."""
    from .baselines.xr_linear import pecos_python as find_pecos

    methods = check_methods(methods, pecos_python)
    if mode not in ("curve", "threads"):
        raise ParameterError(f"mode must be 'curve' or 'threads'. Got {mode!r} instead.")
    params = _checked_params(params or {})
    if max_seconds is None and params.get("epochs", "auto") == "auto" and mode == "threads":
        max_seconds = 60.0
    os.makedirs(out_dir, exist_ok=True)
    result = {"benchmark": "slide bench", "mode": mode, "machine": machine(), "data": data, "params":
              {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
              "method_params": method_params or {}, "n_jobs": n_jobs, "max_seconds": max_seconds,
              "eval_every": eval_every, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "points": []}
    runs = [(m, t) for m in methods for t in (threads if mode == "threads" else (n_jobs,))]
    for m, t in runs:
        spec = {"method": m, "data": data, "params": {**result["params"], **(method_params or {}).get(m, {})},
                "n_jobs": int(t), "max_seconds": max_seconds, "eval_every": eval_every if mode == "curve" else None,
                "evaluate": mode == "curve", "verbose": verbose}
        if m == "pecos":
            spec["pecos_python"] = find_pecos(pecos_python)
        result["points"] += _child(spec, None)
        _write(result, out_dir)  # after every method: a crash later keeps what was measured
    if mode == "curve":
        result["summary"] = summarize(result["points"])
    _write(result, out_dir)
    plot(result, os.path.join(out_dir, "bench.png"))
    return result


def _checked_params(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if k == "n_negatives":
            from .baselines.torch_nets import SAMPLED_PARAMS

            out[k] = validate_value({p.name: p for p in SAMPLED_PARAMS}[k], v, "slide bench", api=False)
            continue
        if k not in PARAM_BY_NAME:
            raise ParameterError(f"Unknown parameter {k!r} for slide bench.")
        if k == "n_jobs":
            raise ParameterError("slide bench takes the thread count as its own n_jobs, not as a model parameter.")
        out[k] = validate_value(PARAM_BY_NAME[k], v, "slide bench", api=False)
    return out


def _write(result, out_dir):
    from .io import atomic_write

    atomic_write(os.path.join(out_dir, "bench.json"),
                 lambda f: f.write(json.dumps(result, indent=1, default=float).encode()))


def summarize(points: list[dict]) -> dict:
    """Per method: final throughput, best P@1 and when it was first reached; and for SLIDE against
    each baseline: throughput ratio and how much sooner SLIDE first reached the baseline's best P@1."""
    by = {}
    for p in points:
        by.setdefault(p["method"], []).append(p)
    s = {}
    for m, pts in by.items():
        ev = [p for p in pts if "P@1" in p]
        fin = next((p for p in pts if p.get("final")), pts[-1])
        best = max(ev, key=lambda p: p["P@1"]) if ev else None
        s[m] = {"samples_per_second": fin["samples_per_second"], "train_seconds": fin["train_seconds"],
                "samples_seen": fin["samples_seen"], "final_P@1": fin.get("P@1"), "final_P@5": fin.get("P@5"),
                "best_P@1": best["P@1"] if best else None, "best_P@1_seconds": best["train_seconds"] if best else None,
                "peak_rss_bytes": fin["peak_rss_bytes"], "model_peak_bytes": fin.get("model_peak_bytes"),
                "theoretical_bytes": fin.get("theoretical_bytes")}
    if "slide" in by:
        sl = [p for p in by["slide"] if "P@1" in p]
        for m in by:
            if m == "slide" or s[m]["best_P@1"] is None:
                continue
            target = s[m]["best_P@1"]
            hit = next((p for p in sl if p["P@1"] >= target), None)
            s[f"slide_vs_{m}"] = {
                # a tree trains in one pass of its own kind: samples/s are not comparable
                "throughput_ratio": (None if m in TREES else
                                     s["slide"]["samples_per_second"] / s[m]["samples_per_second"]),
                "baseline_best_P@1": target, "baseline_seconds": s[m]["best_P@1_seconds"],
                "slide_seconds_to_reach": hit["train_seconds"] if hit else None,
                "sooner": s[m]["best_P@1_seconds"] / hit["train_seconds"] if hit else None}
    return s


def plot(result: dict, path: str) -> None:
    """bench.png: P@1 vs training time (curve mode) or samples/s vs threads (threads mode)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("matplotlib is not installed: bench.png skipped (pip install 'slide[plot]').", file=sys.stderr)
        return
    by = {}
    for p in result["points"]:
        by.setdefault(p["method"], []).append(p)
    name = result["points"][0]["dataset"] if result["points"] else "?"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    if result["mode"] == "curve":
        for m, pts in by.items():
            ev = sorted((p for p in pts if "P@1" in p), key=lambda p: p["train_seconds"])
            if not ev:
                continue
            ax.plot([p["train_seconds"] for p in ev], [p["P@1"] for p in ev], marker="o",
                    ms=3 if len(ev) > 1 else 7,
                    label=f"{LABELS.get(m, m)}, {ev[-1]['samples_per_second']:,.0f} samples/s")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("training time (seconds, log scale; evaluation excluded)")
        ax.set_ylim(bottom=0)  # P@1 from 0: a tiny range would make equal methods look apart
        ax.set_ylabel(f"precision@1 on {by[next(iter(by))][0]['n_eval']:,} test points")
        threads = f"{result['n_jobs']} threads each"
    else:
        for m, pts in by.items():
            pts = sorted(pts, key=lambda p: p["n_jobs"])
            ax.plot([p["n_jobs"] for p in pts], [p["samples_per_second"] for p in pts], marker="o",
                    label=LABELS.get(m, m))
        ax.set_xticks(sorted({p["n_jobs"] for p in result["points"]}))  # whole threads only
        ax.set_xlabel("threads")
        ax.set_ylabel("training throughput (samples per second, log scale)")
        ax.set_yscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        threads = "throughput vs threads"
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"{name}: {threads}\n{result['machine']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _worker_main(argv) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m slide.bench")
    ap.add_argument("--worker", required=True)
    ap.add_argument("--worker_out", required=True)
    a = ap.parse_args(argv)
    spec = json.loads(a.worker)
    if "hidden_layer_sizes" in spec.get("params", {}):
        spec["params"]["hidden_layer_sizes"] = tuple(spec["params"]["hidden_layer_sizes"])
    records = run_method(spec)
    with open(a.worker_out, "w") as f:
        json.dump(records, f, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
