"""The label-partitioned output layer (not built), projected from measured compute.

    python benchmarks/label_blocks.py                   # blocks of 1/2 .. 1/64 of the labels
    python benchmarks/label_blocks.py --blocks 1,2,4,8 --points 4096

``slide.distributed``'s sync mode replicates the optimiser pass and the rebuilds on every worker,
which caps its projected speed-up near 2x at amazon-670k dimensions (``distributed.py``). The
design that removes them partitions the output layer by label: worker q keeps labels
[q L/N, (q+1) L/N) with their weights, Adam moments and hash tables; every worker runs the whole
global batch through the (replicated) first layer, hashes it, selects and computes its block's
share of each sample's active set, and the workers merge each sample's softmax normaliser (an
all-gather of (max, sum) pairs) and sum their blocks' contributions to the hidden layer's deltas (an
all-reduce of batch x hidden floats); the first layer is updated identically everywhere, each
block by its owner.

What one such worker computes per batch is what one process computes on a network whose output
layer is that block. This script measures it: for each N, a fresh one-thread ``fit`` (one epoch,
``--points`` points of the amazon-670k preset) of a network with ceil(L / N) output labels, every
label j of the data renamed j mod ceil(L / N) (each sample keeps its labels, so no sample drops
out), and every setting the recipe resolved for the whole layer pinned, except the output
layer's active set and padding floor, which are the whole layer's divided by N (each block takes
its share). From its per-batch seconds (F: hashing, selection, forward, backward; O: the
optimiser pass; R: rebuilds, steady state one per ``rebuild_max_interval`` batches), plus the
three collectives on a stated network (ring algorithms: an all-gather of the batch's inputs from
the workers that read them, of the (max, sum) pairs, and an all-reduce of the hidden deltas), the
projected time per batch of N workers is F_N + O_N + R_N + comm(N), against F_1 + O_1 + R_1.

The proxy is slightly pessimistic: in a real block only about 1/N of a sample's labels fall, here
all of them do (a handful of ids next to hundreds of active ones).

Writes ``benchmarks/results/label_blocks.json``. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from distributed import NETWORKS, PRESET, per_batch  # noqa: E402

PINNED = ("hash_family", "hashes_per_table", "n_tables", "bucket_bits", "bucket_size", "insertion", "selection",
          "threshold", "sample_correction", "sampler", "center", "simhash_density")


def rename_labels(Y: sp.csr_matrix, n_block: int) -> sp.csr_matrix:
    """Y with label j renamed j mod n_block (a sample's labels that collide become one)."""
    rows, cols = Y.nonzero()
    out = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols % n_block)), shape=(Y.shape[0], n_block))
    out.data[:] = 1.0
    return out


def fit_block(X, Y, n: int, whole: dict | None) -> dict:
    import slide

    L = Y.shape[1]
    n_block = -(-L // n)
    kw = {}
    if whole is not None:
        spec = whole["spec"]
        kw = {k: spec[k] for k in PINNED}
        kw.update(hidden_layer_sizes=tuple(whole["hidden_layer_sizes"]), rebuild_first=whole["rebuild_first"],
                  active_size=max(1, round(spec["active_size"] / n)),
                  min_active=max(1, round(spec["min_active"] / n)))
    clf = slide.SlideClassifier(random_state=0, epochs=1, n_jobs=1, **kw)
    t = time.perf_counter()
    clf.fit(X, rename_labels(Y, n_block))
    seconds = time.perf_counter() - t
    st = clf.state_
    out_spec = st.specs[-1]
    rec = {"blocks": n, "labels_in_block": n_block, "fit_seconds": seconds, "steps": st.step,
           "rebuilds": st.n_rebuilds - 1, "rebuild_max_interval": st.config["rebuild_max_interval"],
           "batch_size": clf.batch_size, "timings": dict(st.timings),
           "hidden_layer_sizes": list(st.config["hidden_layer_sizes"]), "rebuild_first": st.config["rebuild_first"],
           "spec": {k: getattr(out_spec, k) for k in (*PINNED, "active_size", "min_active")},
           "input_nnz_per_sample": float(np.diff(X.indptr).mean()),
           "labels_per_sample": float(np.diff(Y.indptr).mean())}
    rec.update(per_batch(rec))
    return rec


def comm_seconds(n: int, rec: dict, net: dict) -> tuple[float, int]:
    """(seconds, bytes each worker receives) of one batch's three collectives on ``n`` workers."""
    if n == 1:
        return 0.0, 0
    B, H = rec["batch_size"], rec["hidden_layer_sizes"][-1]
    share = B / n * (8 * rec["input_nnz_per_sample"] + 4 * rec["labels_per_sample"] + 8)  # (id, value) + labels
    got = (n - 1) * share + (n - 1) * B * 8 + 2 * (n - 1) / n * B * H * 4  # inputs, (max, sum), deltas
    # all-gather of inputs and of (max, sum) pairs: n - 1 messages each; all-reduce: 2 (n - 1)
    messages = 4 * (n - 1)
    return messages * net["latency_s"] + got / net["bytes_per_s"], int(got)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=8192, help="training points (amazon-670k dimensions)")
    ap.add_argument("--blocks", default="1,2,4,8,16,32,64", help="N: the output layer cut into N blocks")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "label_blocks.json"))
    args = ap.parse_args()
    from slide.datasets import PRESETS, preset

    X, Y, _, _ = preset(PRESET, scale=min(1.0, args.points / PRESETS[PRESET]["n_train"]), random_state=0)
    X, Y = X[: args.points], Y[: args.points]
    counts = sorted({1, *(int(c) for c in args.blocks.split(","))})
    runs = {}
    for n in counts:
        print(f"output layer in {n} block(s) ...", file=sys.stderr, flush=True)
        runs[n] = fit_block(X, Y, n, runs.get(1))
    one = runs[1]
    table = []
    for net_name, net in NETWORKS.items():
        for rebuild in ("R", "R_steady"):
            base = one["F"] + one["O"] + one[rebuild]
            for n in counts:
                r = runs[n]
                comm, got = comm_seconds(n, r, net)
                t = r["F"] + r["O"] + r[rebuild] + comm
                table.append({"network": net_name, "rebuilds": rebuild, "workers": n, "seconds_per_batch": t,
                              "comm_seconds": comm, "bytes_received_per_worker": got, "speedup": base / t,
                              "efficiency": base / t / n})
    result = {"benchmark": "benchmarks/label_blocks.py", "preset": PRESET, "points": args.points,
              "machine": f"{os.cpu_count()} cores", "measured": [runs[n] for n in counts], "networks": NETWORKS,
              "projection": table}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\n{PRESET} dimensions, {args.points:,} points, 1 epoch, fresh fit, 1 thread; one worker's block")
    print("blocks | labels | active | fit s | F s/batch | O s/batch | R s/batch | R steady s/batch")
    for n in counts:
        r = runs[n]
        print(f"  {n} | {r['labels_in_block']:,} | {r['spec']['active_size']} | {r['fit_seconds']:.1f} | "
              f"{r['F']:.4f} | {r['O']:.4f} | {r['R']:.4f} | {r['R_steady']:.4f}")
    print("projected speed-up (efficiency) | workers | " + " | ".join(str(n) for n in counts))
    for net_name in NETWORKS:
        for rebuild in ("R", "R_steady"):
            rows = [r for r in table if r["network"] == net_name and r["rebuilds"] == rebuild]
            print(f"  {net_name}, {rebuild} | " + " | ".join(f"{r['speedup']:.2f} ({r['efficiency']:.2f})"
                                                           for r in rows))


if __name__ == "__main__":
    main()
