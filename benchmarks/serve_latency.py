"""Latency and throughput of `slide serve` on loopback: LSH and exact inference, and the same
queries through a label tree (omikuji) behind the same server code.

    python benchmarks/serve_latency.py --model slide-run/model.npz \
        --data ../shared/datasets/debian-package-search --out benchmarks/results/serve_latency.json

The model is one trained by ``slide train`` on the debian-package-search texts (its featuriser
inside). omikuji is trained here on the same features (the slide model's TF-IDF of the same
training texts; 2 threads; cached in ``--omikuji_dir``). Each server runs in its own process;
the load comes from a second process on loopback: ``concurrency`` client threads, each with a
keep-alive connection, sending one query per request ({"texts": [q], "k": 5}) until the bounded
stream of ``--requests`` is sent. Latency is per request as the client sees it (connection,
JSON, server, response); req/s is requests over the stream's wall time. Before the HTTP runs,
the same queries are timed in-process (no HTTP) one by one, and P@1/P@5 on the whole test split
are measured for each predictor.

On a 2-core machine the client and the server share the cores: throughput at high concurrency is
what both together allow.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def _read_jsonl(path, n=None):
    texts, labels = [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            texts.append(rec["text"])
            labels.append(rec["labels"])
            if n is not None and len(texts) == n:
                break
    return texts, labels


def _names(data: Path):
    with gzip.open(data / "labels.txt.gz", "rt", encoding="utf-8") as f:
        return [line.strip() for line in f]


def _stats(lat_ms: np.ndarray) -> dict:
    return {"p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99)),
            "mean_ms": float(lat_ms.mean()), "max_ms": float(lat_ms.max())}


# ----------------------------------------------------------------------------- omikuji behind the server code
class TreePredictor:
    """omikuji on the slide model's features, answering label names as the slide model does."""

    def __init__(self, model, tree_dir: Path, data: Path, n_jobs: int = 2):
        import omikuji

        from slide.baselines.label_tree import LabelTreeClassifier

        self.model, self.classes = model, model.classes_
        self.tree = LabelTreeClassifier(n_jobs=n_jobs)
        if (tree_dir / "settings.json").exists():
            self.tree.model_ = omikuji.Model.load(str(tree_dir))
            self.tree.n_features_in_, self.tree.n_labels_ = model.n_features_in_, model.n_labels_
            self.train_seconds = json.loads((tree_dir / "slide_bench.json").read_text())["train_seconds"]
        else:
            import scipy.sparse as sp

            texts, labels = _read_jsonl(data / "train.jsonl.gz")
            names = _names(data)
            where = {v: i for i, v in enumerate(self.classes.tolist())}
            rows = [[where[names[l]] for l in ls] for ls in labels]
            ind = np.array([i for r in rows for i in r], np.int32)
            ptr = np.cumsum([0] + [len(r) for r in rows])
            Y = sp.csr_matrix((np.ones(ind.size, np.float32), ind, ptr), shape=(len(rows), model.n_labels_))
            X = model._text.transform(texts)
            t0 = time.perf_counter()
            self.tree.fit(X, Y)
            self.train_seconds = time.perf_counter() - t0
            tree_dir.mkdir(parents=True, exist_ok=True)
            self.tree.model_.save(str(tree_dir))
            (tree_dir / "slide_bench.json").write_text(json.dumps({"train_seconds": self.train_seconds}))

    def predict_topk(self, texts, k, mode=None):
        ids, scores = self.tree.predict_topk(self.model._text.transform(texts), k=k)
        names = self.classes[np.clip(ids, 0, None)].astype(object)
        names[ids < 0] = None
        return names, scores


def serve_tree(args) -> None:
    import uvicorn

    import slide
    from slide.serve import build_app

    model = slide.load(args.model)
    tree = TreePredictor(model, Path(args.omikuji_dir), Path(args.data))
    info = {"model": "omikuji", "n_labels": int(model.n_labels_)}
    app = build_app(tree.predict_topk, info, n_labels=int(model.n_labels_), mode="exact", modes=("exact",))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


# ----------------------------------------------------------------------------- the client process
def client(args) -> None:
    with open(args.queries, encoding="utf-8") as f:
        queries = json.load(f)
    n, c = args.requests, int(args.concurrency)
    lat = np.zeros(n)
    errors = []
    counter = iter(range(n))
    lock = threading.Lock()
    body_extra = {} if args.mode is None else {"mode": args.mode}

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body = json.dumps({"texts": [queries[i % len(queries)]], "k": 5, **body_extra})
            t0 = time.perf_counter()
            conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            out = r.read()
            lat[i] = (time.perf_counter() - t0) * 1e3
            if r.status != 200:
                errors.append((r.status, out[:200].decode(errors="replace")))
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(c)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    print(json.dumps({"requests": n, "concurrency": c, "wall_s": wall, "req_per_s": n / wall, "errors": len(errors),
                      "first_error": errors[0] if errors else None, **_stats(lat)}))


# ----------------------------------------------------------------------------- the orchestration
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port, proc, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stdout.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the server did not start")


def _load_runs(port, queries_file, mode, levels, requests, warmup):
    rows = []
    base = [sys.executable, str(HERE), "--client", "--port", str(port), "--queries", str(queries_file)]
    if mode is not None:
        base += ["--mode", mode]
    subprocess.run(base + ["--concurrency", "4", "--requests", str(warmup)], check=True, capture_output=True)
    for c in levels:
        n = requests * (1 if c == 1 else 2)
        out = subprocess.run(base + ["--concurrency", str(c), "--requests", str(n)], check=True, capture_output=True,
                             text=True).stdout
        rec = json.loads(out.strip().splitlines()[-1])
        rows.append(rec)
        print(f"  {mode or 'omikuji':8s} c={c:<3d} p50 {rec['p50_ms']:7.2f} ms  p99 {rec['p99_ms']:7.2f} ms  "
              f"{rec['req_per_s']:8.1f} req/s  errors {rec['errors']}", flush=True)
    return rows


def _precision(pred_names, truth_names, k):
    hits = [sum(1 for v in row[:k] if v in t) for row, t in zip(pred_names, truth_names)]
    return float(np.sum(hits) / (k * len(truth_names)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=False)
    ap.add_argument("--data", default=str(HERE.parents[2] / "shared" / "datasets" / "debian-package-search"))
    ap.add_argument("--out", default=str(HERE.parent / "results" / "serve_latency.json"))
    ap.add_argument("--omikuji_dir", default=None, help="where the omikuji model is cached (default: beside --out)")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=1000, help="requests at concurrency 1 (twice as many above)")
    ap.add_argument("--inprocess", type=int, default=500, help="queries timed one by one in-process")
    ap.add_argument("--n_jobs", type=int, default=2)
    # the two subprocess roles
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve_tree", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--queries", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        return client(args)
    if args.omikuji_dir is None:
        args.omikuji_dir = str(Path(args.out).parent / "serve_latency_omikuji")
    if args.serve_tree:
        return serve_tree(args)

    import slide

    data = Path(args.data)
    model = slide.load(args.model)
    model.set_params(n_jobs=args.n_jobs)
    texts, labels = _read_jsonl(data / "test.jsonl.gz")
    names = _names(data)
    truth = [{names[l] for l in ls} for ls in labels]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    queries = [texts[i] for i in order[:5000]]
    qfile = Path(args.out).with_suffix(".queries.json")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    qfile.write_text(json.dumps(queries))
    result = {"model": args.model, "n_labels": int(model.n_labels_), "n_features": int(model.n_features_in_),
              "lsh_check": model.state_.lsh_check,
              "layers": [{"n_in": s.n_in, "n_out": s.n_out, "lsh": s.lsh} for s in model.state_.specs],
              "cpu_count": os.cpu_count(), "n_jobs": args.n_jobs, "accuracy": {}, "inprocess": {}, "http": {}}

    print("training / loading omikuji on the same features...", flush=True)
    tree = TreePredictor(model, Path(args.omikuji_dir), data, n_jobs=args.n_jobs)
    result["omikuji_train_seconds"] = tree.train_seconds
    predictors = {"lsh": lambda q, k: model.predict_topk(q, k=k, mode="lsh"),
                  "exact": lambda q, k: model.predict_topk(q, k=k, mode="exact"),
                  "omikuji": lambda q, k: tree.predict_topk(q, k)}

    for name, fn in predictors.items():
        t0 = time.perf_counter()
        pred = fn(texts, 5)[0]
        sec = time.perf_counter() - t0
        rows = [[v for v in r if v is not None] for r in pred.tolist()]
        result["accuracy"][name] = {"P@1": _precision(rows, truth, 1), "P@5": _precision(rows, truth, 5),
                                    "batch_seconds": sec, "n_test": len(texts)}
        for q in queries[:20]:
            fn([q], 5)
        lat = np.zeros(args.inprocess)
        for i, q in enumerate(queries[:args.inprocess]):
            t1 = time.perf_counter()
            fn([q], 5)
            lat[i] = (time.perf_counter() - t1) * 1e3
        result["inprocess"][name] = _stats(lat)
        print(f"{name:8s} P@1 {result['accuracy'][name]['P@1']:.4f}  P@5 {result['accuracy'][name]['P@5']:.4f}  "
              f"in-process one query p50 {result['inprocess'][name]['p50_ms']:.2f} ms "
              f"p99 {result['inprocess'][name]['p99_ms']:.2f} ms", flush=True)

    levels = [int(c) for c in args.concurrency.split(",")]
    servers = [("slide", [sys.executable, "-m", "slide.cli", "serve", args.model, "--n_jobs", str(args.n_jobs)],
                ["lsh", "exact"]),
               ("omikuji", [sys.executable, str(HERE), "--serve_tree", "--model", args.model, "--data", args.data,
                            "--omikuji_dir", args.omikuji_dir], [None])]
    for name, cmd, modes in servers:
        port = _free_port()
        proc = subprocess.Popen(cmd + ["--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            _wait_healthy(port, proc)
            print(f"{name} server on port {port}", flush=True)
            for mode in modes:
                result["http"][mode or name] = _load_runs(port, qfile, mode, levels, args.requests, 200)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    lsh, exact = result["http"]["lsh"], result["http"]["exact"]
    result["lsh_over_exact_req_per_s"] = {str(a["concurrency"]): a["req_per_s"] / b["req_per_s"]
                                          for a, b in zip(lsh, exact)}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result["lsh_over_exact_req_per_s"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
