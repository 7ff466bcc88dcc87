"""``SlideClassifier``: the scikit-learn-style estimator and its Python epoch loop.

The Python layer validates parameters and data once, allocates every array
(:mod:`slide.network`), then loops over epochs and batches calling one compiled kernel per
batch (:func:`slide.kernels.train.train_batch`) and one per layer for the optimiser; hash tables
are rebuilt on the schedule of :class:`slide.lsh.RebuildSchedule`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from contextlib import contextmanager

import numba
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from . import predict as _predict
from .config import DEFAULTS, PARAMS, validate_params
from .data_checks import check_X, check_Y
from .errors import DataFormatError, NotFittedError, ParameterError, TrainingError
from .io import read_arrays, write_arrays
from .kernels import train as K
from .kernels.timer import cycles_per_second
from .lsh import RebuildSchedule, code_bits_of, rebuild_tables
from .kernels.optim import ADAM, SGD
from .network import INSERTIONS, LayerSpec, init_weights, make_grad, make_lsh, make_net, make_work

AUTO_LSH_MIN_NEURONS = 4096
AUTO_EPOCH_STEPS, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 1200, 5, 50


def resolve_n_jobs(n_jobs) -> int:
    avail = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None or n_jobs == -1:
        return avail
    return min(int(n_jobs), avail)


@contextmanager
def thread_limits(n: int):
    """Run Numba kernels and BLAS calls on ``n`` threads, restoring the previous counts."""
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(old)


class SlideClassifier:
    """Extreme multi-label classifier trained with LSH-selected sparse activations (SLIDE).

    A fully connected network ``sparse input -> hidden ReLU layers -> softmax over all labels``
    trained with cross-entropy against the uniform distribution over each sample's labels.
    In an LSH layer only the neurons retrieved from hash tables of their weight vectors (plus,
    in training, the true labels) are computed forward and backward, and only their weights get
    updates. Samples of a batch run in parallel (HOGWILD); ``n_jobs=1`` is deterministic.

    All parameters are keyword-only; see :data:`slide.config.PARAMS` (or ``slide train --help``)
    for the meaning and allowed range of each.

    Attributes
    ----------
    n_features_in_ : int
    n_labels_ : int
    coefs_ : list of ndarray
        Layer weights: ``coefs_[0]`` is (n_features, hidden_1) (input-major), later layers are
        (n_out, n_in) (one row per neuron).
    intercepts_ : list of ndarray
    layer_specs_ : list of LayerSpec
        The resolved settings of each layer ('auto' values decided).
    history_ : list of dict
        One record per epoch: epoch, wall seconds, samples/s, mean loss and evaluation metrics.
    timings_ : dict
        Seconds spent per phase over the whole fit (hashing, selection, forward, backward summed
        over threads; optimizer and rebuild wall time).
    """

    def __init__(self, *, hidden_layer_sizes=(512,), lsh_layers="auto", dropout=0.5, input_dropout=0.5,
                 init_scale=1.0,
                 normalize="l2", hash_family="simhash", hashes_per_table="auto", n_tables="auto",
                 bucket_size="auto", bucket_bits="auto", insertion="reservoir", selection="topk",
                 active_size="auto", threshold=2, min_active="auto", sample_correction=False, center=True,
                 mips=False, wta_bin_size=8,
                 simhash_density=1.0, doph_top=32, rebuild_first=10, rebuild_growth=0.1,
                 rebuild_max_interval=250, epochs="auto", batch_size=128, learning_rate=3e-3,
                 lr_schedule="linear", optimizer="adam", beta1=0.9, beta2=0.999, adam_epsilon=1e-8,
                 predict_mode="exact", n_jobs=None, random_state=None, verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.lsh_layers = lsh_layers
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.init_scale = init_scale
        self.normalize = normalize
        self.hash_family = hash_family
        self.hashes_per_table = hashes_per_table
        self.n_tables = n_tables
        self.bucket_size = bucket_size
        self.bucket_bits = bucket_bits
        self.insertion = insertion
        self.selection = selection
        self.active_size = active_size
        self.threshold = threshold
        self.min_active = min_active
        self.sample_correction = sample_correction
        self.center = center
        self.mips = mips
        self.wta_bin_size = wta_bin_size
        self.simhash_density = simhash_density
        self.doph_top = doph_top
        self.rebuild_first = rebuild_first
        self.rebuild_growth = rebuild_growth
        self.rebuild_max_interval = rebuild_max_interval
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.optimizer = optimizer
        self.beta1 = beta1
        self.beta2 = beta2
        self.adam_epsilon = adam_epsilon
        self.predict_mode = predict_mode
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ parameters
    def get_params(self, deep=True) -> dict:
        return {p.name: getattr(self, p.name) for p in PARAMS}

    def set_params(self, **params) -> "SlideClassifier":
        validate_params(params)  # unknown names and bad values fail here, before any change
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != DEFAULTS[k]}
        return "SlideClassifier(" + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + ")"

    # ------------------------------------------------------------------ set-up
    def _resolve_specs(self, p: dict, n_features: int, n_labels: int) -> list[LayerSpec]:
        sizes = [n_features, *p["hidden_layer_sizes"], n_labels]
        n_layers = len(sizes) - 1
        ll = p["lsh_layers"]
        if ll == "auto":
            lsh = {n_layers - 1} if n_labels >= AUTO_LSH_MIN_NEURONS else set()
        elif ll == "output":
            lsh = {n_layers - 1}
        elif ll == "all":
            lsh = set(range(n_layers))
        elif ll == "none":
            lsh = set()
        else:
            bad = [v for v in ll if v >= n_layers]
            if bad:
                raise ParameterError(
                    f"The 'lsh_layers' parameter of SlideClassifier names layer(s) {bad}, but the "
                    f"network has {n_layers} layers (numbered 0 to {n_layers - 1}; the last is the output).")
            lsh = set(ll)
        specs = []
        for l in range(n_layers):
            n_in, n_out = sizes[l], sizes[l + 1]
            if l not in lsh:
                specs.append(LayerSpec(n_in=n_in, n_out=n_out, lsh=False))
                continue
            specs.append(self._lsh_spec(p, n_in, n_out, is_output=(l == n_layers - 1)))
        return specs

    @staticmethod
    def _count(value, n_out: int, auto: int) -> int:
        if value == "auto":
            return min(n_out, auto)
        if isinstance(value, float) and value < 1:
            return max(1, min(n_out, int(round(value * n_out)))) if value > 0 else 0
        return min(n_out, int(value))

    def _lsh_spec(self, p: dict, n_in: int, n_out: int, is_output: bool) -> LayerSpec:
        family = p["hash_family"]
        cb = code_bits_of(family, p["wta_bin_size"])
        # active sets of ~2% at 50k neurons, shrinking as a fraction as layers grow (~0.5% at 670k)
        active = self._count(p["active_size"], n_out, int(round(4.5 * math.sqrt(n_out))))
        min_active = self._count(p["min_active"], n_out, int(round(1.2 * active)) if is_output else 0)
        # tables: the query's buckets together hold ~8x the budget (bucket load N / 2**bits
        # times L tables), so counting how many tables return a neuron has room to rank them
        L = 32 if p["n_tables"] == "auto" else p["n_tables"]
        want_bits = max(1, round(math.log2(max(2.0, n_out * L / (8.0 * active)))))
        if p["hashes_per_table"] == "auto":
            K = max(1, min(64 // cb, math.ceil(want_bits / cb)))
        else:
            K = p["hashes_per_table"]
        if K * cb > 64:
            raise ParameterError(
                f"The 'hashes_per_table' parameter of SlideClassifier must be at most {64 // cb} for "
                f"hash_family={family!r} (keys hold K * {cb} bits <= 64). Got {K} instead.")
        if p["bucket_bits"] == "auto":
            bits = min(K * cb, want_bits, 22)
        else:
            bits = min(p["bucket_bits"], K * cb)
        if p["bucket_size"] == "auto":
            # room for ~1.25x the mean load; fuller buckets keep a uniform sample (reservoir)
            load = n_out / float(1 << bits)
            bsize = int(min(1 << 14, max(16, 2 ** math.ceil(math.log2(1.25 * load + 1)))))
        else:
            bsize = p["bucket_size"]
        if p["hash_family"] == "wta" or p["hash_family"] == "dwta":
            dim = n_in + (2 if p["mips"] else 1)
            if p["wta_bin_size"] > dim:
                raise ParameterError(
                    f"The 'wta_bin_size' parameter of SlideClassifier must be at most the hashed "
                    f"dimension ({dim}). Got {p['wta_bin_size']} instead.")
        return LayerSpec(
            n_in=n_in, n_out=n_out, lsh=True, family=family, K=int(K), L=int(L),
            bucket_bits=int(bits), bucket_size=int(bsize), insertion=p["insertion"],
            selection=p["selection"], active_size=int(active), threshold=int(p["threshold"]),
            min_active=int(min_active), sample_correction=bool(p["sample_correction"]),
            center=bool(p["center"]), mips=bool(p["mips"]), bin_size=int(p["wta_bin_size"]),
            density=float(p["simhash_density"]), doph_top=int(p["doph_top"]),
        )

    # ------------------------------------------------------------------ fit
    def fit(self, X, Y, *, eval_set=None, eval_k=5, callback=None) -> "SlideClassifier":
        """Train on X (n, n_features) sparse rows and Y (n, n_labels) binary label matrix.

        Parameters
        ----------
        X : scipy.sparse matrix or array-like, shape (n_samples, n_features)
        Y : scipy.sparse matrix, binary, shape (n_samples, n_labels), or a list of label-id lists
        eval_set : (X_val, Y_val), optional
            Evaluated (exact top-``eval_k``) after every epoch; results go to ``history_``.
        callback : callable, optional
            Called as ``callback(record)`` after every epoch with the history record; returning
            True stops training.

        Returns
        -------
        self
        """
        p = validate_params(self.get_params())
        X = check_X(X, name="X", normalize=p["normalize"])
        Y = check_Y(Y, n_rows=X.shape[0], name="Y")
        n, n_features = X.shape
        n_labels = Y.shape[1]
        if eval_set is not None:
            Xv = check_X(eval_set[0], name="eval_set[0]", n_features=n_features, normalize=p["normalize"])
            Yv = check_Y(eval_set[1], n_rows=Xv.shape[0], n_labels=n_labels, name="eval_set[1]")
        specs = self._resolve_specs(p, n_features, n_labels)
        seed = p["random_state"]
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
        rng = np.random.default_rng(seed)
        n_threads = resolve_n_jobs(p["n_jobs"])
        label_counts = np.diff(Y.indptr)
        trainable = np.flatnonzero(label_counts > 0).astype(np.int64)
        if trainable.size == 0:
            raise ParameterError("Y has no sample with a label: there is nothing to train on.")
        max_labels = int(label_counts.max())
        max_nnz = int(np.diff(X.indptr).max()) if n else 0

        Ws, bs = init_weights(specs, rng, p["init_scale"])
        self._setup(p, specs, Ws, bs, seed, n_threads, max_labels, max_nnz)
        self.n_features_in_ = n_features
        self.n_labels_ = n_labels
        self.history_ = []
        self.timings_ = {k: 0.0 for k in ("hashing", "selection", "forward", "backward", "optimizer", "rebuild")}
        bs_ = p["batch_size"]
        n_batches = math.ceil(trainable.size / bs_)
        n_epochs = p["epochs"]
        if n_epochs == "auto":
            # small data sets need many passes, large ones few: aim at a number of steps
            n_epochs = min(AUTO_EPOCHS_MAX, max(AUTO_EPOCHS_MIN, round(AUTO_EPOCH_STEPS / n_batches)))
        self._total_steps = n_batches * n_epochs
        rate = cycles_per_second()
        timers = np.zeros((n_threads, K.N_PHASES), np.uint64)
        losses = np.zeros(n_threads, np.float64)
        t_start = time.perf_counter()
        samples_seen = 0
        out_lsh = specs[-1].lsh
        with thread_limits(n_threads):
            self._rebuild_all(initial=True)
            for epoch in range(n_epochs):
                order = trainable[rng.permutation(trainable.size)]
                losses[:] = 0.0
                active_sum = 0
                t_epoch = time.perf_counter()
                bar = self._progress(n_batches, epoch, n_epochs, p)
                for bi in range(n_batches):
                    rows = order[bi * bs_:(bi + 1) * bs_]
                    K.train_batch(self._net, self._lsh, self._work, X.indptr, X.indices, X.data,
                                  Y.indptr, Y.indices, rows, np.uint64(seed), self._step,
                                  n_threads, losses, timers)
                    t0 = time.perf_counter()
                    self._optimizer_step(p, rows)
                    self.timings_["optimizer"] += time.perf_counter() - t0
                    samples_seen += rows.size
                    if out_lsh:
                        active_sum += int(self._work.n_active[: rows.size, -1].sum())
                    if self._schedule is not None and self._schedule.due(self._step):
                        self._rebuild_all()
                        self._schedule.advance()
                    if bar is not None:
                        bar.update(1)
                        if bi % 10 == 0 or bi == n_batches - 1:
                            el = time.perf_counter() - t_epoch
                            bar.set_postfix(loss=f"{losses.sum() / max(1, (bi + 1) * bs_):.4f}",
                                            samples_s=f"{min(trainable.size, (bi + 1) * bs_) / max(el, 1e-9):,.0f}")
                if bar is not None:
                    bar.close()
                mean_loss = float(losses.sum() / trainable.size)
                if not math.isfinite(mean_loss):
                    raise TrainingError(f"The training loss became non-finite in epoch {epoch + 1}; "
                                        "lower learning_rate or check the input for huge values.")
                ep_time = time.perf_counter() - t_epoch
                rec = {"epoch": epoch + 1, "loss": mean_loss, "epoch_seconds": ep_time,
                       "train_seconds": time.perf_counter() - t_start, "samples_seen": samples_seen,
                       "samples_per_second": trainable.size / ep_time}
                if out_lsh:
                    rec["active_mean"] = active_sum / trainable.size
                if eval_set is not None:
                    t0 = time.perf_counter()
                    top = self._predict_checked(Xv, eval_k, p["predict_mode"], n_threads)
                    from .metrics import evaluate
                    rec.update(evaluate(Yv, top, ks=tuple(k for k in (1, 3, 5) if k <= eval_k)))
                    rec["eval_seconds"] = time.perf_counter() - t0
                self.history_.append(rec)
                if p["verbose"]:
                    shown = [f"epoch {rec['epoch']}/{n_epochs}", f"loss {rec['loss']:.4f}"]
                    shown += [f"{k} {rec[k]:.4f}" for k in ("P@1", "P@3", "P@5") if k in rec]
                    shown += [f"{rec['samples_per_second']:,.0f} samples/s", f"{rec['train_seconds']:.1f} s"]
                    print("  ".join(shown), file=sys.stderr, flush=True)
                if callback is not None and callback(rec):
                    break
        if self._schedule is not None:
            with thread_limits(n_threads):
                self._rebuild_all()  # tables match the final weights (LSH prediction, saving)
        if rate > 0:
            tot = timers.sum(axis=0).astype(np.float64) / rate
            self.timings_.update(hashing=tot[K.PH_HASH], selection=tot[K.PH_SELECT],
                                 forward=tot[K.PH_FORWARD], backward=tot[K.PH_BACKWARD])
        self.n_iter_ = len(self.history_)
        self.coefs_ = list(self._net.W)
        self.intercepts_ = list(self._net.b)
        return self

    def _setup(self, p, specs, Ws, bs, seed, n_threads, max_labels, max_nnz):
        self._p = p
        self._max_labels = max_labels
        self._max_nnz = max_nnz
        self.layer_specs_ = specs
        self._seed = seed
        self._net = make_net(specs, Ws, bs, p["optimizer"], p["dropout"], p["input_dropout"])
        self._lsh, self._hps = make_lsh(specs, seed)
        self._work = make_work(specs, self._hps, n_threads, p["batch_size"], max_labels, max_nnz)
        self._grad = make_grad(specs, n_threads, p["batch_size"], max_labels, max_nnz)
        self._n_threads = n_threads
        self._step = 0
        self._n_rebuilds = 0
        any_lsh = any(s.lsh for s in specs)
        self._schedule = (RebuildSchedule(p["rebuild_first"], p["rebuild_growth"], p["rebuild_max_interval"])
                          if any_lsh else None)

    def _progress(self, n_batches, epoch, n_epochs, p):
        if not p["verbose"]:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{n_epochs}", unit="batch", leave=False)

    def _optimizer_step(self, p, rows):
        self._step += 1
        lr = p["learning_rate"]
        if p["lr_schedule"] == "linear":
            lr *= max(0.0, 1.0 - (self._step - 1) / self._total_steps)
        if p["optimizer"] == "adam":
            b1, b2 = p["beta1"], p["beta2"]
            bc1, bc2 = 1.0 - b1 ** self._step, 1.0 - b2 ** self._step
            # bias corrections folded into the step size and epsilon (see kernels.optim.step_row)
            opt, lr, eps = ADAM, lr * math.sqrt(bc2) / bc1, p["adam_epsilon"] * math.sqrt(bc2)
        else:
            opt, b1, b2, eps = SGD, 0.0, 0.0, 0.0
        K.apply_batch(self._net, self._work, self._grad, rows.size, self._n_threads, opt, lr, b1, b2, eps)

    def _rebuild_all(self, initial=False):
        t0 = time.perf_counter()
        for l, s in enumerate(self.layer_specs_):
            if not s.lsh:
                continue
            rebuild_tables(self._hps[l], self._lsh.buckets[l], self._lsh.fill[l], self._net.W[l],
                           self._net.b[l], input_major=(l == 0), mips=s.mips, center=s.center,
                           insertion=INSERTIONS[s.insertion], seed=self._seed,
                           epoch=self._n_rebuilds, n_threads=self._n_threads)
        self._n_rebuilds += 1
        if not initial:
            self.timings_["rebuild"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the fitted model (weights, optimiser state, hash tables and seeds, settings) to
        one ``.npz`` file, atomically; see :mod:`slide.io`. Load it with :func:`slide.load`."""
        self._check_fitted()
        net, lsh = self._net, self._lsh
        arrays = {}
        for l in range(len(net.W)):
            arrays[f"W{l}"], arrays[f"b{l}"] = net.W[l], net.b[l]
            if self._p["optimizer"] == "adam":
                arrays[f"mW{l}"], arrays[f"vW{l}"] = net.mW[l], net.vW[l]
                arrays[f"mb{l}"], arrays[f"vb{l}"] = net.mb[l], net.vb[l]
            if self.layer_specs_[l].lsh:
                arrays[f"buckets{l}"], arrays[f"fill{l}"] = lsh.buckets[l], lsh.fill[l]
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self._p.items()}
        meta = {
            "params": params,
            "layer_specs": [dataclasses.asdict(s) for s in self.layer_specs_],
            "n_features_in": self.n_features_in_,
            "n_labels": self.n_labels_,
            "seed": self._seed,
            "step": self._step,
            "total_steps": getattr(self, "_total_steps", self._step),
            "n_rebuilds": self._n_rebuilds,
            "schedule": self._schedule.state() if self._schedule is not None else None,
            "max_labels": self._max_labels,
            "max_nnz": self._max_nnz,
            "history": self.history_,
            "timings": {k: float(v) for k, v in self.timings_.items()},
        }
        write_arrays(path, arrays, meta)

    @classmethod
    def _from_file(cls, path) -> "SlideClassifier":
        arrays, meta = read_arrays(path)
        try:
            params = meta["params"]
            params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
            if isinstance(params["lsh_layers"], list):
                params["lsh_layers"] = tuple(params["lsh_layers"])
            clf = cls(**params)
            p = validate_params(clf.get_params())
            specs = [LayerSpec(**d) for d in meta["layer_specs"]]
            n_layers = len(specs)
            Ws = [arrays[f"W{l}"] for l in range(n_layers)]
            bs = [arrays[f"b{l}"] for l in range(n_layers)]
            clf._setup(p, specs, Ws, bs, int(meta["seed"]), resolve_n_jobs(p["n_jobs"]),
                       int(meta["max_labels"]), int(meta["max_nnz"]))
            net, lsh = clf._net, clf._lsh
            for l in range(n_layers):
                if p["optimizer"] == "adam":
                    for name, dst in (("mW", net.mW), ("vW", net.vW), ("mb", net.mb), ("vb", net.vb)):
                        src = arrays[f"{name}{l}"]
                        if src.shape != dst[l].shape:
                            raise DataFormatError(f"{path}: array {name}{l} has shape {src.shape}, expected {dst[l].shape}.")
                        dst[l][...] = src
                if specs[l].lsh:
                    lsh.buckets[l][...] = arrays[f"buckets{l}"]
                    lsh.fill[l][...] = arrays[f"fill{l}"]
            clf._step = int(meta["step"])
            clf._total_steps = int(meta.get("total_steps", clf._step))
            clf._n_rebuilds = int(meta["n_rebuilds"])
            if clf._schedule is not None and meta["schedule"] is not None:
                clf._schedule.set_state(meta["schedule"])
            clf.n_features_in_ = int(meta["n_features_in"])
            clf.n_labels_ = int(meta["n_labels"])
            clf.history_ = list(meta["history"])
            clf.timings_ = dict(meta["timings"])
            clf.n_iter_ = len(clf.history_)
            clf.coefs_ = list(net.W)
            clf.intercepts_ = list(net.b)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, DataFormatError):
                raise
            raise DataFormatError(f"{path}: the model file is inconsistent ({type(e).__name__}: {e}).") from None
        return clf

    # ------------------------------------------------------------------ predict
    def _check_fitted(self):
        if not hasattr(self, "_net"):
            raise NotFittedError("This SlideClassifier is not fitted yet: call fit(X, Y) (or slide.load) first.")

    def _predict_checked(self, X, k, mode, n_threads):
        return _predict.predict_topk(self, X, k, mode, n_threads)[0]

    def predict(self, X, k=5, *, mode=None):
        """Top-``k`` label ids per row, best first, as an (n, k) int64 array (-1 where fewer than
        k labels were scored, which only happens in 'lsh' mode)."""
        return self.predict_topk(X, k, mode=mode)[0]

    def predict_topk(self, X, k=5, *, mode=None):
        """(labels, scores): the top-``k`` label ids and their logits, each (n, k)."""
        self._check_fitted()
        p = self._p
        if mode is None:
            mode = self.predict_mode
        if mode not in ("exact", "lsh"):
            raise ParameterError(f"The 'mode' argument of predict must be 'exact' or 'lsh'. Got {mode!r} instead.")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (1 <= k <= self.n_labels_):
            raise ParameterError(f"The 'k' argument of predict must be an int in [1, {self.n_labels_}]. Got {k!r} instead.")
        X = check_X(X, name="X", n_features=self.n_features_in_, normalize=p["normalize"])
        n_threads = resolve_n_jobs(self.n_jobs)
        with thread_limits(n_threads):
            return _predict.predict_topk(self, X, int(k), mode, n_threads)

    def retrieval_recall(self, X, k=10) -> dict:
        """Quality of the output layer's LSH retrieval on X: the fraction of each row's true
        top-``k`` logits that its active set (as used by ``predict(mode='lsh')``) contains, the
        mean active-set size, and the mean share of the full softmax mass it holds. The number
        that tells whether K, L and the bucket size are right."""
        self._check_fitted()
        if not self.layer_specs_[-1].lsh:
            raise ParameterError("retrieval_recall needs an LSH output layer (lsh_layers includes the output).")
        X = check_X(X, name="X", n_features=self.n_features_in_, normalize=self._p["normalize"])
        n_threads = resolve_n_jobs(self.n_jobs)
        with thread_limits(n_threads):
            return _predict.retrieval_recall(self, X, int(k), n_threads)

    def decision_function(self, X, labels=None):
        """Logits. ``labels=None``: all labels, (n, n_labels) dense (mind the size); an (m,)
        array: those labels for every row, (n, m); an (n, m) array: per-row label ids."""
        self._check_fitted()
        p = self._p
        X = check_X(X, name="X", n_features=self.n_features_in_, normalize=p["normalize"])
        n_threads = resolve_n_jobs(self.n_jobs)
        with thread_limits(n_threads):
            return _predict.decision_function(self, X, labels)


def load(path) -> SlideClassifier:
    """Load a model written by :meth:`SlideClassifier.save` (verifies format and checksums)."""
    return SlideClassifier._from_file(path)
