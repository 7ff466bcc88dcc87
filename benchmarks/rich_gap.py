"""Where the label trees lead at P@1 (rcv1sub1, stackex-cooking, debian-packages-text): the
candidate remedies, each one fit against the same network without it.

    python benchmarks/rich_gap.py                                   # every variant on the three sets
    python benchmarks/rich_gap.py --datasets rcv1sub1 --variants dense,wide:0.1,ovr,svd:full

Variants (``random_state`` 0, or each of ``--seeds``; 2 threads, the whole test split; every
parameter not named at the recipe's value, as ``benchmarks/study.py`` runs them):

* ``dense``: ``DenseClassifier``, the network and recipe of ``SlideClassifier`` in PyTorch.
* ``wide:S``: the same plus a sparse linear path from every input feature to every label
  ("wide & deep": logit_j = v_j . h + S w_j . x, w started at 0 and trained by the same lazy Adam;
  S scales the path's step).
* ``ovr``: the same network with the trees' one-vs-rest loss (a sigmoid per label, binary
  cross-entropy over all labels) instead of the softmax.
* ``svd:full`` / ``svd:pm``: the first layer started from the top principal directions of the
  l2-normalised training rows (randomised SVD; ``pm``: half as many, each with both signs, so the
  ReLU keeps both sides) at the random start's column norm.
* ``slide`` / ``slide:LR``: ``SlideClassifier`` at its defaults, or with learning rate LR.
* ``slide:NAME=VALUE+NAME=VALUE...``: ``SlideClassifier`` with those parameters (numbers, words,
  and tuples of ints written ``512/512``; ``/`` alone is the empty tuple), e.g.
  ``slide:beta2=0.99``, ``slide:hidden_layer_sizes=/+epochs=20``,
  ``slide:input_optimizer=adam+input_dropout=0.1`` (the first layer as before the wide-input rule).

``--train_fraction F`` trains on a random F of the training points (the same points for every
variant and seed), the test split unchanged.

Writes ``benchmarks/results/rich_gap.json``; ``benchmarks/RESULTS.md`` section 11 has the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import study  # noqa: E402  (the featurisation and data paths of the defaults study)

SETS = ("rcv1sub1", "stackex-cooking", "debian-packages-text")
VARIANTS = ("dense", "wide:1", "wide:0.3", "wide:0.1", "ovr", "svd:full", "svd:pm", "slide", "slide:0.006",
            "slide:0.01")


def load(name, cache):
    from slide.data import load_xmc

    if name in study.TEXT:
        tr, te, _ = study.featurise(name, cache)
    else:
        d = os.path.join(study.SHARED, name)
        tr, te = os.path.join(d, "train.txt.gz"), os.path.join(d, "test.txt.gz")
    X, Y = load_xmc(tr)
    Xt, Yt = load_xmc(te, n_features=X.shape[1], n_labels=Y.shape[1])
    return X, Y, Xt, Yt


def torch_variants():
    """The PyTorch model classes (imported only when a dense variant runs)."""
    import torch
    import torch.nn.functional as F

    from slide.baselines.torch_nets import DenseClassifier, _batch_tensors
    from slide.data_checks import check_X

    class Wide(DenseClassifier):
        scale = 1.0

        def _prepare(self, Y, p, rng):
            net = self.network_
            net.wide = torch.nn.EmbeddingBag(net.first.weight.shape[0], Y.shape[1], mode="sum", sparse=True)
            with torch.no_grad():
                net.wide.weight.zero_()

        def _optimizers(self, p):
            net = self.network_
            sparse = [net.first.weight, net.wide.weight]
            dense = [q for q in net.parameters() if all(q is not s for s in sparse)]
            kw = dict(lr=p["learning_rate"], betas=(p["beta1"], p["beta2"]), eps=p["adam_epsilon"])
            opts = [torch.optim.SparseAdam(sparse, **kw), torch.optim.Adam(dense, **kw)]
            for o in opts:
                for g in o.param_groups:
                    g["base_lr"] = g["lr"]
            return opts

        def _logits(self, idx, off, w, dropout):
            net = self.network_
            z = net.logits(net.hidden_output(idx, off, w, dropout))
            # Adam's step does not depend on the gradient's scale, so scaling the path's output
            # scales its step
            return z + self.scale * net.wide(idx, off, per_sample_weights=w)

        def _batch_loss(self, X, Y, rows, p, rng):
            idx, off, w = _batch_tensors(X, rows, p["input_dropout"], rng)
            logp = F.log_softmax(self._logits(idx, off, w, p["dropout"]), dim=1)
            pos, lab, tw = self._targets(Y, rows)
            return -(logp[torch.from_numpy(pos), torch.from_numpy(lab)] * torch.from_numpy(tw)).sum()

        def predict_topk(self, X, k=5):
            X = check_X(X, name="X", n_features=self.n_features_in_, normalize=self._p["normalize"])
            self.network_.eval()
            with torch.no_grad():
                idx, off, w = _batch_tensors(X, np.arange(X.shape[0]), 0.0, None)
                v, i = torch.topk(self._logits(idx, off, w, 0.0), k, dim=1)
            return i.numpy(), v.numpy()

    class OneVsRest(DenseClassifier):
        def _batch_loss(self, X, Y, rows, p, rng):
            idx, off, w = _batch_tensors(X, rows, p["input_dropout"], rng)
            z = self.network_.logits(self.network_.hidden_output(idx, off, w, p["dropout"]))
            t = torch.from_numpy(Y[rows].toarray().astype(np.float32))
            return F.binary_cross_entropy_with_logits(z, t, reduction="sum")

    class SVDStart(DenseClassifier):
        X = None
        both_signs = False

        def _prepare(self, Y, p, rng):
            from sklearn.preprocessing import normalize
            from sklearn.utils.extmath import randomized_svd

            W = self.network_.first.weight  # (n_features, hidden)
            k = W.shape[1] // 2 if self.both_signs else W.shape[1]
            _, _, VT = randomized_svd(normalize(self.X), k, random_state=0)
            V = VT.T.astype(np.float32)
            if self.both_signs:
                V = np.concatenate([V, -V], axis=1)
            with torch.no_grad():
                norm = float(np.linalg.norm(W.numpy(), axis=0).mean())
                W.copy_(torch.from_numpy(np.ascontiguousarray(V * norm)))

    return {"dense": DenseClassifier, "wide": Wide, "ovr": OneVsRest, "svd": SVDStart}


def slide_params(arg: str) -> dict:
    """The parameters of a ``slide:...`` variant (see the module)."""
    if not arg:
        return {}
    if "=" not in arg:
        return {"learning_rate": float(arg)}
    params = {}
    for item in arg.split("+"):
        key, _, value = item.partition("=")
        if "/" in value:
            params[key] = tuple(int(v) for v in value.split("/") if v)
        else:
            try:
                params[key] = int(value) if value.lstrip("-").isdigit() else float(value)
            except ValueError:
                params[key] = value
    return params


def run(name, variant, data, n_jobs, seed=0):
    from slide.metrics import evaluate

    X, Y, Xt, Yt = data
    kind, _, arg = variant.partition(":")
    if kind == "slide":
        from slide import SlideClassifier

        model = SlideClassifier(random_state=seed, n_jobs=n_jobs, **slide_params(arg))
    else:
        cls = torch_variants()[kind]
        if kind == "wide":
            cls.scale = float(arg)
        if kind == "svd":
            cls.X, cls.both_signs = X, arg == "pm"
        model = cls(random_state=seed, n_jobs=n_jobs)
    t = time.perf_counter()
    model.fit(X, Y)
    seconds = time.perf_counter() - t
    top = model.predict_topk(Xt, 5)[0] if kind != "slide" else model.predict_topk(Xt, k=5)[0]
    res = evaluate(Yt, top, ks=(1, 5))
    return {"dataset": name, "variant": variant, "random_state": seed, "P@1": res["P@1"], "P@5": res["P@5"],
            "train_seconds": seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(SETS))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--n_jobs", type=int, default=2)
    ap.add_argument("--seeds", default="0", help="comma-separated random_state values; several print their mean "
                    "(a small test split's P@1 moves by +-0.01 from seed to seed)")
    ap.add_argument("--cache", default=os.path.join(HERE, "results", "study-cache"), help="TF-IDF cache (study.py's)")
    ap.add_argument("--train_fraction", type=float, default=1.0,
                    help="train on this random fraction of the training points (default 1: all)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "rich_gap.json"))
    args = ap.parse_args(argv)
    if not 0 < args.train_fraction <= 1:
        ap.error(f"--train_fraction must be in (0, 1]; got {args.train_fraction}")
    records = []
    for name in args.datasets.split(","):
        data = load(name, args.cache)
        if args.train_fraction < 1:
            X, Y, Xt, Yt = data
            n = X.shape[0]
            keep = np.sort(np.random.default_rng(7).choice(n, int(args.train_fraction * n), replace=False))
            data = X[keep], Y[keep], Xt, Yt
        for v in args.variants.split(","):
            runs = []
            for seed in [int(x) for x in args.seeds.split(",")]:
                r = {**run(name, v, data, args.n_jobs, seed), "train_fraction": args.train_fraction}
                print(f"{name:22s} {v:12s} seed {seed} P@1 {r['P@1']:.4f} P@5 {r['P@5']:.4f} {r['train_seconds']:.0f} s",
                      flush=True)
                runs.append(r)
            if len(runs) > 1:
                print(f"{name:22s} {v:12s} mean   P@1 {np.mean([r['P@1'] for r in runs]):.4f} P@5 "
                      f"{np.mean([r['P@5'] for r in runs]):.4f}", flush=True)
            records += runs
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"benchmark": "benchmarks/rich_gap.py", "n_jobs": args.n_jobs, "records": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
