"""``SlideClassifier``: the scikit-learn-style estimator.

The estimator validates parameters and data once at the boundary, allocates every array
(:mod:`slide.network`), and hands the epoch loop to :mod:`slide.training`; prediction lives in
:mod:`slide.predict`, persistence in :mod:`slide.persist`.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from . import predict as _predict
from . import recipe, training
from .centroids import init_output_centroids
from .config import DEFAULTS, PARAMS, validate_params
from .data_checks import check_eval_set, check_k, check_X, check_Y
from .errors import NotFittedError, ParameterError
from .lsh import RebuildSchedule, rebuild_tables
from .memory import check_fits, estimate_bytes
from .network import (INSERTIONS, init_weights, label_order, lsh_spec, make_grad, make_lsh, make_net, make_work,
                      resolve_specs)
from .persist import load_model, save_model
from .recipe import DataProfile

# timings_ keys: setup (validation, profile, initialisation, first tables: wall), per-sample
# phases summed over threads, then the optimiser pass and table rebuilds (wall)
TIMED_PHASES = ("setup", "hashing", "selection", "forward", "backward", "optimizer", "rebuild")


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
    in training, the true labels and some random padding) are computed forward and backward,
    and only their weights get updates. The samples of a batch run in parallel without locks
    and each weight row is then updated by one thread, so a run gives the same result for any
    ``n_jobs``.

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
        Seconds spent per phase (hashing, selection, forward, backward summed over threads;
        optimizer and rebuild wall time).
    n_iter_ : int
        Epochs run.
    """

    def __init__(self, *, hidden_layer_sizes="auto", lsh_layers="auto", dropout="auto", input_dropout="auto",
                 init_scale=1.0, output_init="auto", centroid_scale=10.0, normalize="l2", hash_family="simhash",
                 hashes_per_table="auto", n_tables="auto",
                 bucket_size="auto", bucket_bits="auto", insertion="reservoir", selection="topk",
                 active_size="auto", threshold=2, min_active="auto", sample_correction=True, sampler="log_uniform", center=True,
                 mips=False, wta_bin_size=8,
                 simhash_density=1.0, doph_top=32, rebuild_first="auto", rebuild_growth=0.1,
                 rebuild_max_interval=250, epochs="auto", batch_size=128, learning_rate=3e-3,
                 lr_schedule="auto", optimizer="adam", beta1=0.9, beta2=0.999, adam_epsilon=1e-8,
                 predict_mode="exact", n_jobs=None, random_state=None, verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.lsh_layers = lsh_layers
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.init_scale = init_scale
        self.output_init = output_init
        self.centroid_scale = centroid_scale
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
        self.sampler = sampler
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

    # ------------------------------------------------------------------ training
    def fit(self, X, Y, *, eval_set=None, eval_k=5, callback=None, checkpoint_path=None,
            checkpoint_every=None, batch_callback=None, batch_callback_every=100) -> "SlideClassifier":
        """Train on X (n, n_features) sparse rows and Y (n, n_labels) binary label matrix.

        Parameters
        ----------
        X : scipy.sparse matrix or array-like, shape (n_samples, n_features)
        Y : scipy.sparse matrix, binary, shape (n_samples, n_labels), or a list of label-id lists
            Samples without labels are skipped in training.
        eval_set : (X_val, Y_val), optional
            Evaluated (exact top-``eval_k``) after every epoch; results go to ``history_``.
        callback : callable, optional
            Called as ``callback(record)`` after every epoch with the history record; returning
            True stops training.
        checkpoint_path : path, optional
            Where to write checkpoints (a model file that :meth:`resume` continues from).
        checkpoint_every : int, float or str, optional
            Checkpoint interval: an int is a number of batches, ``"10m"`` / ``"90s"`` a time;
            default with a checkpoint_path: after every epoch.
        batch_callback : callable, optional
            Called as ``batch_callback(record)`` every ``batch_callback_every`` batches with
            epoch, batch, step, samples_seen and train_seconds (its own run time is excluded
            from train_seconds, so it may evaluate the model); returning True stops training.

        Returns
        -------
        self
        """
        t_setup = time.perf_counter()
        p = validate_params(self.get_params())
        X = check_X(X, name="X", normalize=p["normalize"])
        Y = check_Y(Y, n_rows=X.shape[0], name="Y")
        eval_set = check_eval_set(eval_set, n_features=X.shape[1], n_labels=Y.shape[1], normalize=p["normalize"])
        eval_k = check_k(eval_k, name="eval_k", where="fit", n_labels=Y.shape[1])
        checkpoint = _checkpointing(checkpoint_path, checkpoint_every)
        n_labels_per_row = np.diff(Y.indptr)
        n_trainable = int((n_labels_per_row > 0).sum())
        if n_trainable == 0:
            raise ParameterError("Y has no sample with a label: there is nothing to train on.")
        self.data_profile_ = DataProfile.of(X, Y)
        n_batches = -(-n_trainable // p["batch_size"])
        p, self.recipe_ = recipe.resolve(p, self.data_profile_, n_batches)
        specs = resolve_specs(p, X.shape[1], Y.shape[1])
        p, self.recipe_ = recipe.resolve_schedule(p, specs, self.recipe_)
        if p["verbose"]:
            print(recipe.report(self.data_profile_, self.recipe_), file=sys.stderr, flush=True)
        max_labels = int(n_labels_per_row.max())
        max_nnz = max(1, int(np.diff(X.indptr).max()) if X.shape[0] else 1)
        n_threads = resolve_n_jobs(p["n_jobs"])
        check_fits(estimate_bytes(specs, p, n_threads, max_labels, max_nnz))
        seed = training.resolve_seed(p["random_state"])
        rng = np.random.default_rng(seed)
        Ws, bs = init_weights(specs, rng, p["init_scale"])
        with thread_limits(n_threads):
            if p["output_init"] == "centroid":
                init_output_centroids(Ws, bs, X, Y, p["centroid_scale"])
            self._setup(p, specs, Ws, bs, seed, max_labels, max_nnz, label_order(Y, Y.shape[1]))
            del Ws, bs
            self.n_features_in_, self.n_labels_ = X.shape[1], Y.shape[1]
            self.history_ = []
            self.timings_ = {k: 0.0 for k in TIMED_PHASES}
            self._total_steps = n_batches * p["epochs"]
            progress = training.Progress(n_epochs=p["epochs"], rng_state=rng.bit_generator.state,
                                         fingerprint=training.data_fingerprint(X, Y))
            self._rebuild_all(initial=True)
            self.timings_["setup"] = time.perf_counter() - t_setup
            self._train(X, Y, progress, eval_set, eval_k, callback, checkpoint, batch_callback,
                        batch_callback_every)
        return self

    def resume(self, X, Y, *, eval_set=None, eval_k=5, callback=None, checkpoint_path=None,
               checkpoint_every=None, batch_callback=None, batch_callback_every=100) -> "SlideClassifier":
        """Continue an interrupted training run from a checkpoint loaded with :func:`slide.load`,
        on the same training data (checked), to the end of its epochs. With the same settings and
        ``n_jobs=1`` the result equals the uninterrupted run's bit for bit, provided both ran the
        same compiled kernels (a kernel freshly compiled by Numba and its on-disk cached copy may
        round differently in the last bit). Returns self."""
        self._check_fitted()
        progress = getattr(self, "_progress", None)
        if progress is None:
            raise ParameterError("This model holds no training progress: resume needs a checkpoint written "
                                 "during fit (checkpoint_path=...), not a finished model.")
        p = self._p
        X = check_X(X, name="X", n_features=self.n_features_in_, normalize=p["normalize"])
        Y = check_Y(Y, n_rows=X.shape[0], n_labels=self.n_labels_, name="Y")
        training.check_same_data(progress.fingerprint, X, Y, getattr(self, "_loaded_from", "checkpoint"))
        eval_set = check_eval_set(eval_set, n_features=X.shape[1], n_labels=Y.shape[1], normalize=p["normalize"])
        eval_k = check_k(eval_k, name="eval_k", where="resume", n_labels=self.n_labels_)
        checkpoint = _checkpointing(checkpoint_path, checkpoint_every)
        if checkpoint is not None:
            checkpoint.mark(self._step)
        with thread_limits(self._n_threads):
            self._train(X, Y, progress, eval_set, eval_k, callback, checkpoint, batch_callback,
                        batch_callback_every)
        return self

    def _train(self, X, Y, progress, eval_set, eval_k, callback, checkpoint, batch_callback,
               batch_callback_every):
        training.check_batch_callback(batch_callback, batch_callback_every)
        self._progress = progress
        try:
            training.run(self, X, Y, progress, eval_set=eval_set, eval_k=eval_k, callback=callback,
                         checkpoint=checkpoint, batch_callback=batch_callback,
                         batch_callback_every=batch_callback_every)
        finally:
            self.n_iter_ = len(self.history_)
            self.coefs_ = list(self._net.W.arrays)
            self.intercepts_ = list(self._net.b.arrays)
        if progress.done:
            self._progress = None

    def _setup(self, p, specs, Ws, bs, seed, max_labels, max_nnz, ranked):
        """Allocate every array of a model with the given settings and weights; ``ranked``: the
        label ids by decreasing training frequency (the log-uniform padding sampler's ranks)."""
        if p["rebuild_first"] == "auto":  # fit resolves it with the recipe; a model file or a test may not
            p, _ = recipe.resolve_schedule(p, specs, [])
        self._p = p
        self._ranked = ranked
        self._max_labels = max_labels
        self._max_nnz = max_nnz
        self.layer_specs_ = specs
        self._seed = seed
        self._n_threads = resolve_n_jobs(p["n_jobs"])
        self._net = make_net(specs, Ws, bs, p["optimizer"], p["dropout"], p["input_dropout"])
        self._lsh, self._hps = make_lsh(specs, seed, ranked)
        self._work = make_work(specs, self._hps, self._n_threads, p["batch_size"], max_labels, max_nnz)
        self._grad = make_grad(specs, p["batch_size"], max_labels, max_nnz)
        self._step = 0
        self._total_steps = 1
        self._n_rebuilds = 0
        self._progress = None
        any_lsh = any(s.lsh for s in specs)
        self._schedule = (RebuildSchedule(p["rebuild_first"], p["rebuild_growth"], p["rebuild_max_interval"])
                          if any_lsh else None)

    def _rebuild_all(self, initial=False):
        t0 = time.perf_counter()
        for l, s in enumerate(self.layer_specs_):
            if not s.lsh:
                continue
            rebuild_tables(self._hps[l], self._lsh.buckets.arrays[l], self._lsh.fill.arrays[l], self._net.W.arrays[l],
                           self._net.b.arrays[l], input_major=(l == 0), mips=s.mips, center=s.center,
                           insertion=INSERTIONS[s.insertion], seed=self._seed,
                           epoch=self._n_rebuilds, n_threads=self._n_threads)
        self._n_rebuilds += 1
        if not initial:
            self.timings_["rebuild"] += time.perf_counter() - t0

    def estimate_memory(self, n_features, n_labels, *, max_labels=1, max_nnz=100) -> dict:
        """Bytes the arrays of training this configuration need, by kind (weights,
        optimizer_state, hash_tables, batch_buffers, scratch, prediction); the data set itself
        is not included. ``fit`` refuses to start when the sum exceeds 90% of the available
        memory. Without the data, ``hidden_layer_sizes='auto'`` counts as the widest layer the
        recipe may choose for these dimensions."""
        p = validate_params(self.get_params())
        if p["hidden_layer_sizes"] == "auto":  # the data decides: count the widest the recipe may pick
            p["hidden_layer_sizes"] = recipe.auto_hidden(int(n_features), int(n_labels), tail=True)[0]
        specs = resolve_specs(p, int(n_features), int(n_labels))
        return estimate_bytes(specs, p, resolve_n_jobs(p["n_jobs"]), int(max_labels), int(max_nnz))

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the model (weights, optimiser state, hash tables and seeds, settings) to one
        ``.npz`` file, atomically and checksummed (:mod:`slide.io`); :func:`slide.load` reads it."""
        self._check_fitted()
        self._save(path, self._progress)

    def _save(self, path, progress):
        save_model(self, path, progress)

    @classmethod
    def _from_file(cls, path) -> "SlideClassifier":
        model, progress = load_model(cls, path)
        model._loaded_from = str(path)
        model._progress = None if progress is None else training.Progress.from_dict(progress)
        return model

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self):
        if not hasattr(self, "_net"):
            raise NotFittedError("This SlideClassifier is not fitted yet: call fit(X, Y) (or slide.load) first.")

    def _predict_validated(self, X, k, mode, n_threads):
        """Top-k labels of an already validated X (used for the per-epoch evaluation)."""
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
        k = check_k(k, n_labels=self.n_labels_)
        X = check_X(X, name="X", n_features=self.n_features_in_, normalize=p["normalize"])
        n_threads = resolve_n_jobs(self.n_jobs)
        with thread_limits(n_threads):
            return _predict.predict_topk(self, X, k, mode, n_threads)

    def rehash(self, **params) -> "SlideClassifier":
        """Change hashing parameters of a fitted model (any of the ``lsh`` group: hash_family,
        hashes_per_table, n_tables, bucket_size, bucket_bits, insertion, selection, active_size,
        threshold, min_active, center, mips, ...) and rebuild its tables from the current
        weights. Weights are untouched; use it to tune LSH prediction or retrieval after
        training. Returns self."""
        self._check_fitted()
        lsh_names = {p.name for p in PARAMS if p.group == "lsh"}
        bad = sorted(set(params) - lsh_names)
        if bad:
            raise ParameterError(f"rehash only changes hashing parameters ({', '.join(sorted(lsh_names))}); "
                                 f"got {', '.join(bad)}.")
        self.set_params(**params)
        p = validate_params(self.get_params())
        self._p.update({k: p[k] for k in params})
        specs = [lsh_spec(self._p, s.n_in, s.n_out, l == len(self.layer_specs_) - 1) if s.lsh else s
                 for l, s in enumerate(self.layer_specs_)]
        n_threads = resolve_n_jobs(self.n_jobs)
        self.layer_specs_ = specs
        self._lsh, self._hps = make_lsh(specs, self._seed, self._ranked)
        self._work = make_work(specs, self._hps, self._n_threads, self._p["batch_size"], self._max_labels,
                               self._max_nnz)
        self._grad = make_grad(specs, self._p["batch_size"], self._max_labels, self._max_nnz)
        with thread_limits(n_threads):
            self._rebuild_all()
        return self

    def retrieval_recall(self, X, k=10) -> dict:
        """Quality of the output layer's LSH retrieval on X: the fraction of each row's true
        top-``k`` logits that its active set (as used by ``predict(mode='lsh')``) contains, the
        mean active-set size, and the mean share of the full softmax mass it holds. The number
        that tells whether K, L and the bucket size are right."""
        self._check_fitted()
        if not self.layer_specs_[-1].lsh:
            raise ParameterError("retrieval_recall needs an LSH output layer (lsh_layers includes the output).")
        k = check_k(k, where="retrieval_recall", n_labels=self.n_labels_)
        X = check_X(X, name="X", n_features=self.n_features_in_, normalize=self._p["normalize"])
        n_threads = resolve_n_jobs(self.n_jobs)
        with thread_limits(n_threads):
            return _predict.retrieval_recall(self, X, k, n_threads)

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


def _checkpointing(path, every):
    """A :class:`slide.training.Checkpointing` from fit's arguments (None without a path)."""
    if path is None:
        if every is not None:
            raise ParameterError("checkpoint_every needs a checkpoint_path.")
        return None
    # Checked here, not at the first checkpoint write (after maybe hours of training): a missing
    # folder was only reported then, and a folder as the path leaked an OSError from os.replace.
    try:
        target = Path(path)
    except TypeError:
        raise ParameterError(f"checkpoint_path must be a str or os.PathLike. Got {path!r} instead.") from None
    if target.is_dir():
        raise ParameterError(f"checkpoint_path {path} is a folder; expected a file path such as "
                             f"{target / 'checkpoint.npz'}.")
    if not target.parent.is_dir():
        raise ParameterError(f"checkpoint_path {path}: the folder {target.parent} does not exist.")
    if every is None:
        return training.Checkpointing(str(path))
    if isinstance(every, str):
        text = every.strip().lower()
        units = {"s": 1.0, "m": 60.0, "h": 3600.0}
        try:
            if text and text[-1] in units:
                seconds = float(text[:-1]) * units[text[-1]]
                if seconds > 0:
                    return training.Checkpointing(str(path), every_seconds=seconds)
            elif int(text) > 0:
                return training.Checkpointing(str(path), every_batches=int(text))
        except ValueError:
            pass
    elif isinstance(every, (int, np.integer)) and not isinstance(every, bool) and every > 0:
        return training.Checkpointing(str(path), every_batches=int(every))
    raise ParameterError(f"checkpoint_every must be a positive number of batches (e.g. 500) or a time such as "
                         f"'10m', '90s' or '1h'. Got {every!r} instead.")
