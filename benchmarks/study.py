"""The defaults study: every shared data set x {slide, dense PyTorch, omikuji, PECOS} -> P@1, P@5, seconds.

    python benchmarks/study.py                                  # everything (about an hour on 2 cores)
    python benchmarks/study.py --datasets bibtex,debian-package-search --methods slide,pecos
    python benchmarks/study.py --pecos_python scratch/pecos-venv/bin/python

Every method runs with its own defaults (slide: ``SlideClassifier(random_state=0)``, the recipe
chosen from the data; dense: the same network and recipe trained on the full softmax in PyTorch;
omikuji and PECOS XR-Linear: their library defaults on l2-normalised rows), 2 threads, each in
its own child process through ``slide bench`` (so one method's memory cannot slow the next), on
the whole test split. The raw-text sets are featurised once as a user would: scikit-learn
``TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)`` fitted on the training
texts, cached as XMC files under ``--cache``. debian-en-cbow is the first 1,000,000 training
points, one pass (``epochs=1``), 20,000 test points. Seconds are training only (setup, table
builds and kernel compilation included for slide; the trees' own fit); the dense baseline on
the two 10^5-label sets gets a fixed budget (``DENSE_BUDGET``), its P@1 is where that budget
left it and its samples/s is what the comparison needs.

Writes ``benchmarks/results/study.json`` (every record) and prints the markdown table that
``benchmarks/RESULTS.md`` section 11 shows. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "datasets"))
MULAN = ("bibtex", "delicious", "corel5k", "enron", "mediamill-discretized", "rcv1sub1", "stackex-cooking",
         "tmc2007-500")
TEXT = {"debian-packages-text": "tags", "debian-package-search": "labels"}
CBOW = "debian-en-cbow"
DATASETS = ("debian-package-search", CBOW, *MULAN, "debian-packages-text")
METHODS = ("slide", "dense", "omikuji", "pecos")
DENSE_BUDGET = 600.0  # seconds of dense training on the 10^5-label sets (a full run takes hours)


def featurise(name: str, cache: str) -> tuple[str, str, float]:
    """(train path, test path, featurising seconds) of a raw-text set as TF-IDF XMC files."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    from slide.data import save_xmc

    out = os.path.join(cache, name)
    paths = os.path.join(out, "train.txt.gz"), os.path.join(out, "test.txt.gz")
    meta = os.path.join(out, "featurise.json")
    if all(os.path.exists(p) for p in (*paths, meta)):
        with open(meta) as f:
            return (*paths, json.load(f)["seconds"])
    key = TEXT[name]

    def read(split):
        texts, labels = [], []
        with gzip.open(os.path.join(SHARED, name, f"{split}.jsonl.gz"), "rt", encoding="utf-8") as f:
            for line in f:
                o = json.loads(line)
                texts.append(o["text"])
                labels.append(o[key])
        return texts, labels

    (tr, ltr), (te, lte) = read("train"), read("test")
    t = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float32)
    X, Xt = vec.fit_transform(tr), vec.transform(te)
    seconds = time.perf_counter() - t
    if key == "tags":  # tag names -> ids in sorted order; a test tag never seen in training is dropped
        vocab = {t: i for i, t in enumerate(sorted({t for ls in ltr for t in ls}))}
        ltr = [[vocab[t] for t in ls] for ls in ltr]
        lte = [[vocab[t] for t in ls if t in vocab] for ls in lte]
        n_labels = len(vocab)
    else:  # package ids are already 0-based over the whole catalogue
        n_labels = 1 + max(max(ls) for ls in ltr + lte if ls)

    def indicator(ls):
        rows = [sorted(set(map(int, l))) for l in ls]
        ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        ind = np.fromiter((i for r in rows for i in r), np.int64, count=int(ptr[-1]))
        return sp.csr_matrix((np.ones(ind.size, np.float32), ind, ptr), shape=(len(rows), n_labels))

    os.makedirs(out, exist_ok=True)
    save_xmc(paths[0], X, indicator(ltr))
    save_xmc(paths[1], Xt, indicator(lte))
    with open(meta, "w") as f:
        json.dump({"seconds": seconds, "vectorizer": "TfidfVectorizer(ngram_range=(1, 2), min_df=2, "
                   "sublinear_tf=True)", "features": X.shape[1]}, f)
    return (*paths, seconds)


def data_spec(name: str, cache: str) -> tuple[dict, dict, dict]:
    """(bench data description, shared params, notes) of one data set."""
    if name in TEXT:
        train, test, secs = featurise(name, cache)
        return {"train": train, "test": test, "eval_size": 10 ** 9}, {}, {"featurise_seconds": secs}
    d = os.path.join(SHARED, name)
    data = {"train": os.path.join(d, "train.txt.gz"), "test": os.path.join(d, "test.txt.gz"), "eval_size": 10 ** 9}
    if name == CBOW:
        return {**data, "max_train": 1_000_000, "eval_size": 20_000}, {"epochs": 1}, {"protocol": "1M points, one pass"}
    return data, {}, {}


def run(name, method, cache, n_jobs, pecos_python):
    from slide.bench import _child
    from slide.baselines.xr_linear import pecos_python as find_pecos

    data, params, notes = data_spec(name, cache)
    data["random_state"] = 0
    spec = {"method": method, "data": data, "params": params, "n_jobs": n_jobs, "eval_every": None,
            "max_seconds": None, "evaluate": True, "verbose": True}
    if method == "dense" and name in ("debian-package-search", CBOW):
        spec["max_seconds"] = DENSE_BUDGET
        notes = {**notes, "budget_seconds": DENSE_BUDGET}
    if method == "pecos":
        spec["pecos_python"] = find_pecos(pecos_python)
    t = time.perf_counter()
    final = [r for r in _child(spec, None) if r.get("final")][-1]
    final["wall_seconds"] = time.perf_counter() - t
    return {**final, **notes, "dataset": name}


def table(records) -> str:
    by = {}
    for r in records:
        by.setdefault(r["dataset"], {})[r["method"]] = r
    head = "| dataset | " + " | ".join(f"{m} P@1 / P@5 / s" for m in METHODS) + " | slide vs best tree |"
    lines = [head, "|" + "---|" * (len(METHODS) + 2)]
    for name in [d for d in DATASETS if d in by]:
        row = by[name]
        cells = []
        for m in METHODS:
            r = row.get(m)
            if r is None:
                cells.append("–")
                continue
            budget = " (budget)" if r.get("budget_seconds") else ""
            cells.append(f"{r['P@1']:.4f} / {r['P@5']:.4f} / {r['train_seconds']:.0f}{budget}")
        trees = [row[m]["P@1"] for m in ("omikuji", "pecos") if m in row]
        vs = f"{row['slide']['P@1'] - max(trees):+.4f}" if trees and "slide" in row else "–"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {vs} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated, from: " + ", ".join(DATASETS))
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from: " + ", ".join(METHODS))
    ap.add_argument("--n_jobs", type=int, default=2, help="threads of every method (default 2)")
    ap.add_argument("--pecos_python", help="interpreter with libpecos (default: $SLIDE_PECOS_PYTHON)")
    ap.add_argument("--cache", default=os.path.join(HERE, "results", "study-cache"),
                    help="where the featurised text sets go (default benchmarks/results/study-cache)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "study.json"), help="JSON of every record")
    a = ap.parse_args(argv)
    names, methods = a.datasets.split(","), a.methods.split(",")
    bad = [n for n in names if n not in DATASETS] + [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown data set or method: {', '.join(bad)}")
    if not os.path.isdir(SHARED):
        ap.error(f"the shared data sets are not at {SHARED}")
    from slide.bench import machine
    from slide.io import atomic_write

    records = []
    if os.path.exists(a.out):  # keep what other runs measured; a rerun replaces its own cells
        with open(a.out) as f:
            records = [r for r in json.load(f)["records"] if (r["dataset"], r["method"]) not in
                       {(n, m) for n in names for m in methods}]
    for name in names:
        for m in methods:
            if m == "dense" and name == CBOW:
                continue  # section 6: dense one pass is hours; its samples/s is measured there
            print(f"== {name} / {m}", file=sys.stderr, flush=True)
            records.append(run(name, m, a.cache, a.n_jobs, a.pecos_python))
            blob = {"benchmark": "benchmarks/study.py", "machine": machine(), "n_jobs": a.n_jobs, "records": records}
            atomic_write(a.out, lambda f: f.write(json.dumps(blob, indent=1, default=float).encode()))
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
