"""Which optimiser should train the first layer (a weight row per input feature)? Adam against SGD on
the same data, with the input's vocabulary and feature values changed, to see what decides it.

    python benchmarks/first_layer.py                      # both studies (about 10 minutes on 2 cores)
    python benchmarks/first_layer.py --studies vocabulary --seeds 0,1,2

Each cell is the mean test P@1 of ``SlideClassifier(random_state=seed, n_jobs=2)`` over ``--seeds``,
every parameter at its default but the two compared (the whole test split):

* ``adam``: ``input_optimizer='adam', input_dropout=0.1`` (the rich recipe's first layer before the
  wide-input rule of ``slide.recipe``);
* ``sgd``: ``input_optimizer='sgd', input_dropout=0`` (``input_learning_rate`` 'auto': 3.0).

Studies:

* ``vocabulary``: debian-packages-text featurised with fewer and more frequent features
  (``TfidfVectorizer(ngram_range=(1, n), min_df=m, sublinear_tf=True)`` for (m, n) in
  ``--vocabularies``), from 175,890 features seen in a median of 3 descriptions each to 775 seen in
  a median of 399: is it the rarity of the features?
* ``values``: the feature values changed, the features kept: the binary Mulan sets bibtex and
  corel5k with each column scaled by its idf (as TF-IDF weights its terms), and
  debian-packages-text's TF-IDF matrix made binary (l2 normalisation follows in both): is it how
  unevenly a row weights its features?

Writes ``benchmarks/results/first_layer.json``; ``benchmarks/RESULTS.md`` section 11 ("The first
layer's optimiser") has the tables.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import study  # noqa: E402  (data paths and the featurised text sets)

VARIANTS = {"adam": dict(input_optimizer="adam", input_dropout=0.1),
            "sgd": dict(input_optimizer="sgd", input_dropout=0.0)}


def fit_p1(X, Y, Xt, Yt, params, seeds, n_jobs):
    from slide import SlideClassifier
    from slide.metrics import evaluate

    p1, secs = [], []
    for seed in seeds:
        t = time.perf_counter()
        clf = SlideClassifier(random_state=seed, n_jobs=n_jobs, **params).fit(X, Y)
        secs.append(time.perf_counter() - t)
        p1.append(evaluate(Yt, clf.predict_topk(Xt, k=5)[0], ks=(1,))["P@1"])
    return p1, float(np.mean(secs))


def packages_text():
    """(train texts, train tag lists, test texts, test tag lists) of debian-packages-text."""
    def read(split):
        with gzip.open(os.path.join(study.SHARED, "debian-packages-text", f"{split}.jsonl.gz"), "rt",
                       encoding="utf-8") as f:
            recs = [json.loads(line) for line in f]
        return [r["text"] for r in recs], [r["tags"] for r in recs]

    (tr, ytr), (te, yte) = read("train"), read("test")
    return tr, ytr, te, yte


def label_matrices(ytr, yte):
    from sklearn.preprocessing import MultiLabelBinarizer

    tags = sorted({t for ts in ytr for t in ts})
    mlb = MultiLabelBinarizer(classes=tags)
    known = set(tags)  # a test tag never seen in training is dropped, as study.py does
    return sp.csr_matrix(mlb.fit_transform(ytr)), sp.csr_matrix(mlb.transform([[t for t in ts if t in known]
                                                                               for ts in yte]))


def feature_stats(X) -> dict:
    df = np.bincount(X.indices, minlength=X.shape[1])
    df = df[df > 0]
    return {"n_features": int(X.shape[1]), "features_per_point": X.shape[1] / X.shape[0],
            "median_feature_points": float(np.median(df))}


def vocabulary(args, seeds):
    from sklearn.feature_extraction.text import TfidfVectorizer

    tr, ytr, te, yte = packages_text()
    Y, Yt = label_matrices(ytr, yte)
    out = []
    for spec in args.vocabularies.split(","):
        min_df, longest = (int(v) for v in spec.split(":"))
        vec = TfidfVectorizer(ngram_range=(1, longest), min_df=min_df, sublinear_tf=True, dtype=np.float32)
        X, Xt = vec.fit_transform(tr), vec.transform(te)
        rec = {"study": "vocabulary", "dataset": "debian-packages-text", "min_df": min_df, "ngram_max": longest,
               **feature_stats(X)}
        for name, params in VARIANTS.items():
            p1, secs = fit_p1(X, Y, Xt, Yt, params, seeds, args.n_jobs)
            rec[name] = {"P@1": p1, "mean": float(np.mean(p1)), "seconds": secs}
        print(f"min_df {min_df:3d} 1-{longest}-grams: {rec['n_features']:7,} features, median feature in "
              f"{rec['median_feature_points']:g} points: adam {rec['adam']['mean']:.4f} sgd {rec['sgd']['mean']:.4f}",
              flush=True)
        out.append(rec)
    return out


def values(args, seeds):
    import rich_gap

    out = []
    for name, change in (("bibtex", "idf"), ("corel5k", "idf"), ("debian-packages-text", "binary")):
        X, Y, Xt, Yt = rich_gap.load(name, args.cache)
        X, Xt = X.tocsr().astype(np.float32), Xt.tocsr().astype(np.float32)
        if change == "idf":  # TfidfVectorizer's smooth idf, from the training rows
            df = np.bincount(X.indices, minlength=X.shape[1])
            idf = sp.diags((np.log((1 + X.shape[0]) / (1 + df)) + 1).astype(np.float32))
            X, Xt = (X @ idf).tocsr(), (Xt @ idf).tocsr()
        else:
            X.data[:] = 1.0
            Xt.data[:] = 1.0
        rec = {"study": "values", "dataset": name, "change": change, **feature_stats(X)}
        for v, params in VARIANTS.items():
            p1, secs = fit_p1(X, Y, Xt, Yt, params, seeds, args.n_jobs)
            rec[v] = {"P@1": p1, "mean": float(np.mean(p1)), "seconds": secs}
        print(f"{name} ({change}): adam {rec['adam']['mean']:.4f} sgd {rec['sgd']['mean']:.4f}", flush=True)
        out.append(rec)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--studies", default="vocabulary,values", help="comma-separated: vocabulary, values")
    ap.add_argument("--seeds", default="0,1,2", help="random_state values averaged (default 0,1,2)")
    ap.add_argument("--vocabularies", default="2:2,5:2,20:2,50:1,200:1",
                    help="min_df:longest n-gram of each debian-packages-text featurisation")
    ap.add_argument("--n_jobs", type=int, default=2)
    ap.add_argument("--cache", default=os.path.join(HERE, "results", "study-cache"), help="study.py's TF-IDF cache")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "first_layer.json"))
    args = ap.parse_args(argv)
    if not os.path.isdir(study.SHARED):
        ap.error(f"the shared data sets are not at {study.SHARED}")
    seeds = [int(s) for s in args.seeds.split(",")]
    studies = {"vocabulary": vocabulary, "values": values}
    records = []
    for name in args.studies.split(","):
        if name not in studies:
            ap.error(f"unknown study {name!r}; expected vocabulary or values")
        records += studies[name](args, seeds)
    from slide.bench import machine
    from slide.io import atomic_write

    blob = {"benchmark": "benchmarks/first_layer.py", "machine": machine(), "seeds": seeds, "n_jobs": args.n_jobs,
            "variants": VARIANTS, "records": records}
    atomic_write(args.out, lambda f: f.write(json.dumps(blob, indent=1, default=float).encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
