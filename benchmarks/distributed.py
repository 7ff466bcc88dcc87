"""Data-parallel scaling at amazon-670k dimensions: measured here, projected to N machines.

    python benchmarks/distributed.py                    # 1, 2 and 4 processes, 8,192 points
    python benchmarks/distributed.py --points 4096 --processes 1,2

Measured (each run a fresh ``fit`` with default parameters, one epoch, one thread per process,
on loopback with torchrun and gloo): the per-batch compute of one process (forward/backward,
optimiser pass, table rebuilds), and for 2 and 4 processes the bytes each worker sends per batch,
the time it spends packing and unpacking records and waiting in collectives, and the weight rows
a batch touches. On a 2-core machine 4 processes share 2 cores, so their times are not scaling
figures; their byte counts are exact.

Projected, for N = 1 .. 64 workers of one core each (the speed-up of N workers over one does not
depend on the cores per worker when every compute term scales alike), on a stated network:
10 Gbit/s with 50 us per message and 100 Gbit/s with 10 us, ring collectives. ``sync`` as built:
each worker runs B / N samples forward and backward, the records are all-gathered (2 (N - 1)
messages, (N - 1) shares of B / N records), every worker unpacks them and runs the whole optimiser
pass and every rebuild: time(N) = F / N + O + R + copy(N) + comm(N). Two rebuild costs R: the
fresh run's (measured: a short fit rebuilds often) and the steady state's (one rebuild every
rebuild_max_interval batches, at the measured seconds per rebuild).

Bytes per worker and batch, next to the records it sends: the touched rows' gradients as (row,
values) (each worker's rows of the batch, at least (N - 1) / N of all touched rows' bytes in a
reduce-scatter, as much again to share the result), and the dense all-reduce of data-parallel
dense training, 2 (N - 1) / N of the model.

Writes ``benchmarks/results/distributed.json`` and ``distributed.png``. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PRESET = "amazon-670k"
NETWORKS = {"10 Gbit/s": {"bytes_per_s": 10e9 / 8, "latency_s": 50e-6},
            "100 Gbit/s": {"bytes_per_s": 100e9 / 8, "latency_s": 10e-6}}
PROJECT_N = (1, 2, 4, 8, 16, 32, 64)
REBUILDS = {"R": "this fresh run's", "R_steady": "steady state"}


def _touched(state, n: int) -> dict:
    """Weight rows the batch in slots 0 .. n - 1 updates, and their bytes (row and bias)."""
    work, rows, nbytes = state.work, [], 0
    for l, s in enumerate(state.specs):
        W = state.net.W.arrays[l]
        if l == 0:
            ids = np.unique(np.concatenate([work.x_idx[i, :work.x_n[i]] for i in range(n)]))
            k, width = ids.size, W.shape[1]
        elif s.lsh:
            ids = np.unique(np.concatenate([work.act_ids[l][i, :work.n_active[i, l]] for i in range(n)]))
            k, width = ids.size, W.shape[1] + 1
        else:
            k, width = W.shape[0], W.shape[1] + 1
        rows.append(int(k))
        nbytes += 4 * k * width
    return {"rows": rows, "bytes": nbytes}


def worker(out_dir: str, points: int) -> None:
    """One process of a run (alone, or under torchrun): fit on its rows, write what it measured."""
    import slide
    from slide.datasets import PRESETS, preset

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    X, Y, _, _ = preset(PRESET, scale=min(1.0, points / PRESETS[PRESET]["n_train"]), random_state=0)
    X, Y = X[:points], Y[:points]
    clf = slide.SlideClassifier(random_state=0, epochs=1, n_jobs=1)
    samples = []

    def every_batch(rec):
        if rec["step"] % 8 == 0:  # the batch is still in the buffers (all of it, after the exchange)
            n = int(min(clf.batch_size, clf.state_.work.x_n.shape[0]))
            samples.append(_touched(clf.state_, n))

    t = time.perf_counter()
    clf.fit(X[rank::world], Y[rank::world], batch_callback=every_batch, batch_callback_every=1)
    seconds = time.perf_counter() - t
    st = clf.state_
    rec = {"rank": rank, "world": world, "fit_seconds": seconds, "steps": st.step, "n_train": int(X.shape[0]),
           "rebuilds": st.n_rebuilds - 1, "rebuild_max_interval": st.config["rebuild_max_interval"],
           "batch_size": clf.batch_size, "timings": dict(st.timings), "report": clf.data_parallel_,
           "touched_rows": np.mean([s["rows"] for s in samples], axis=0).tolist(),
           "touched_bytes": float(np.mean([s["bytes"] for s in samples])),
           "model_bytes": int(sum(W.nbytes + b.nbytes for W, b in zip(st.net.W.arrays, st.net.b.arrays))),
           "hidden_layer_sizes": list(st.config["hidden_layer_sizes"])}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(rec, f)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(n: int, points: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as out:
        me = [os.path.abspath(__file__), "--worker", out, "--points", str(points)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if n == 1:
            cmd = [sys.executable, *me]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n), "--master-addr",
                   "127.0.0.1", "--master-port", str(_port()), *me]
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        recs = [json.load(open(os.path.join(out, f"rank{r}.json"))) for r in range(n)]
    recs[0]["wall_seconds"] = wall
    return recs


def per_batch(rec: dict) -> dict:
    """Seconds per global batch of one process: F (per-sample phases, thread-seconds), O, R (the
    run's rebuilds), R_steady (one rebuild per rebuild_max_interval batches)."""
    t, steps = rec["timings"], rec["steps"]
    f = sum(t.get(k, 0.0) for k in ("hashing", "selection", "forward", "backward")) / steps
    per_rebuild = t["rebuild"] / max(1, rec["rebuilds"])
    return {"F": f, "O": t["optimizer"] / steps, "R": t["rebuild"] / steps,
            "R_steady": per_rebuild / rec["rebuild_max_interval"], "seconds_per_rebuild": per_rebuild,
            "setup": t["setup"]}


def project(one: dict, shares: dict, net: dict, n: int, rebuild: str) -> float:
    """Seconds per global batch on n workers (see the module); ``rebuild``: 'R' or 'R_steady'."""
    if n == 1:
        return one["F"] + one["O"] + one[rebuild]
    bw, lat = net["bytes_per_s"], net["latency_s"]
    share = shares["record_bytes_per_sample"] * shares["batch_size"] / n
    comm = 2 * (n - 1) * lat + (n - 1) * share / bw
    copy = shares["copy_seconds_per_sample"] * shares["batch_size"] * (n - 1) / n
    return one["F"] / n + one["O"] + one[rebuild] + copy + comm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=8192, help="training points (amazon-670k dimensions)")
    ap.add_argument("--processes", default="1,2,4", help="process counts to measure on this machine")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "distributed.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.points)
    counts = [int(c) for c in args.processes.split(",")]
    if 1 not in counts:
        counts = [1, *counts]
    runs = {}
    for n in counts:
        print(f"{n} process(es) ...", file=sys.stderr, flush=True)
        runs[n] = run(n, args.points)
    one = per_batch(runs[1][0])
    measured = []
    for n in counts:
        r0 = runs[n][0]
        rep = r0["report"] or {}
        row = {"processes": n, "fit_seconds": r0["fit_seconds"], "steps": r0["steps"],
               "samples_per_second": r0["n_train"] / r0["fit_seconds"], **per_batch(r0),
               "touched_rows_per_batch": r0["touched_rows"], "touched_bytes_per_batch": r0["touched_bytes"],
               "model_bytes": r0["model_bytes"]}
        if n > 1:
            steps = r0["steps"]
            row.update(bytes_sent_per_batch=rep["bytes_sent_per_batch"],
                       dense_allreduce_bytes_per_batch=rep["dense_allreduce_bytes_per_batch"],
                       copy_seconds_per_batch=rep["copy_seconds"] / steps,
                       wait_seconds_per_batch=rep["wait_seconds"] / steps)
        measured.append(row)
    two = next(r for r in measured if r["processes"] == 2) if 2 in counts else None
    if two is None:
        raise SystemExit("the projection needs a 2-process run (--processes 1,2,...)")
    bs = runs[1][0]["batch_size"]
    # an all-gather of 2 sends the other worker one share of B / 2 records (+ the 8-byte size)
    shares = {"batch_size": bs, "record_bytes_per_sample": (two["bytes_sent_per_batch"] - 8) / (bs / 2),
              "copy_seconds_per_sample": two["copy_seconds_per_batch"] / bs,
              "touched_bytes": measured[0]["touched_bytes_per_batch"]}
    table = []
    for net_name, net in NETWORKS.items():
        for rebuild in ("R", "R_steady"):
            base = project(one, shares, net, 1, rebuild)
            for n in PROJECT_N:
                t = project(one, shares, net, n, rebuild)
                table.append({"network": net_name, "rebuilds": REBUILDS[rebuild], "workers": n,
                              "seconds_per_batch": t, "speedup": base / t, "efficiency": base / t / n,
                              "records_bytes_per_worker_per_batch":
                                  (n - 1) * shares["record_bytes_per_sample"] * bs / n,
                              "row_gradient_bytes_per_worker_per_batch": 2 * (n - 1) / n * shares["touched_bytes"],
                              "dense_allreduce_bytes_per_worker_per_batch": 2 * (n - 1) / n
                              * measured[0]["model_bytes"]})
    result = {"benchmark": "benchmarks/distributed.py", "preset": PRESET, "points": args.points,
              "hidden_layer_sizes": runs[1][0]["hidden_layer_sizes"], "batch_size": bs,
              "machine": f"{os.cpu_count()} cores", "measured": measured, "model_inputs": {**one, **shares},
              "networks": NETWORKS, "projection": table}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    _print(result)
    _plot(result, os.path.splitext(args.out)[0] + ".png")


def _print(res: dict) -> None:
    print(f"\n{res['preset']} dimensions, hidden {res['hidden_layer_sizes']}, batch {res['batch_size']}, "
          f"{res['points']:,} points, 1 epoch, fresh fit, 1 thread per process")
    print("measured | processes | fit s | samples/s | F s/batch | O s/batch | R s/batch | sent B/batch | "
          "dense all-reduce B/batch | copy s/batch | wait s/batch")
    for r in res["measured"]:
        print(f"  {r['processes']} | {r['fit_seconds']:.1f} | {r['samples_per_second']:,.0f} | {r['F']:.4f} | "
              f"{r['O']:.4f} | {r['R']:.4f} | {r.get('bytes_sent_per_batch', 0):,.0f} | "
              f"{r.get('dense_allreduce_bytes_per_batch', 0):,.0f} | {r.get('copy_seconds_per_batch', 0):.4f} | "
              f"{r.get('wait_seconds_per_batch', 0):.4f}")
    print("projected speed-up (efficiency) | workers | " + " | ".join(str(n) for n in PROJECT_N))
    for net in NETWORKS:
        for rebuild in REBUILDS.values():
            rows = [r for r in res["projection"] if r["network"] == net and r["rebuilds"] == rebuild]
            print(f"  {net}, rebuilds {rebuild} | "
                  + " | ".join(f"{r['speedup']:.2f} ({r['efficiency']:.2f})" for r in rows))
    rows = [r for r in res["projection"] if r["network"] == "10 Gbit/s" and r["rebuilds"] == REBUILDS["R"]]
    print("MB sent per worker per batch | workers | " + " | ".join(str(r["workers"]) for r in rows))
    for key, what in (("records", "per-sample records (built)"), ("row_gradient", "touched rows' gradients"),
                      ("dense_allreduce", "dense all-reduce")):
        print(f"  {what} | " + " | ".join(f"{r[key + '_bytes_per_worker_per_batch'] / 1e6:,.2f}" for r in rows))


def _plot(res: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(PROJECT_N, PROJECT_N, color="0.7", ls=":", label="linear")
    for net, style in zip(NETWORKS, ("-", "--")):
        for rebuild, color in zip(REBUILDS.values(), ("C0", "C1")):
            rows = [r for r in res["projection"] if r["network"] == net and r["rebuilds"] == rebuild]
            ax.plot([r["workers"] for r in rows], [r["speedup"] for r in rows], style, color=color, marker="o",
                    ms=3, label=f"sync, {net}, rebuilds: {rebuild}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("workers (one core each)")
    ax.set_ylabel("projected speed-up over one worker")
    ax.set_title(f"{res['preset']} dimensions, batch {res['batch_size']}: data-parallel slide", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
