"""``SlideClassifier``: the scikit-learn estimator.

The estimator keeps its parameters, validates parameters and data once at the boundary, and
holds the fitted model as ``state_``, a :class:`slide.state.TrainState` (weights, tables,
optimiser state, counters, history). Training is :mod:`slide.training`, prediction
:mod:`slide.predict`, persistence :mod:`slide.persist`; each takes the state, never the
estimator. Targets in any scikit-learn form, and predictions in the same form, are
:mod:`slide.targets`.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numba
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from threadpoolctl import ThreadpoolController

from . import _numba_cache
from . import predict as _predict
from . import distributed, recipe, training
from .centroids import init_output_centroids
from .config import DEFAULTS, PARAM_BY_NAME, PARAMS, validate_params, validate_value
from .data_checks import check_k, check_X, row_maxima
from .errors import DataFormatError, NotFittedError, ParameterError
from .memory import check_fits, estimate_bytes
from .network import init_weights, label_order_of_counts, resolve_specs
from .persist import load_model, save_model
from .recipe import DataProfile
from .state import TIMED_PHASES, TrainState, resolve_n_jobs
from .targets import Targets
from .text import TextFeatures, as_texts, check_text_model, resolve as resolve_text

log = logging.getLogger("slide")

__all__ = ["SlideClassifier", "load", "resolve_n_jobs", "TIMED_PHASES"]


_POOLS: list = []  # the ThreadpoolController, made once


def _controller():
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries. Finding them walks every loaded
    shared library (3 ms, which was most of a one-query prediction), so it is done once, at the
    first call, when NumPy's and SciPy's BLAS are loaded."""
    if not _POOLS:
        _POOLS.append(ThreadpoolController())
    return _POOLS[0]


@contextmanager
def thread_limits(n: int):
    """Run Numba kernels and BLAS calls on ``n`` threads, restoring the previous counts."""
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with _controller().limit(limits=n):
            yield
    finally:
        numba.set_num_threads(old)


@contextmanager
def _verbose_logging(verbose: int):
    """With ``verbose``, slide's INFO records are emitted for the duration of the call; when the
    application has set up no logging, they go to stderr (its own handlers are left alone)."""
    if not verbose:
        yield
        return
    handler = None
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.setLevel(old_level)
        if handler is not None:
            log.removeHandler(handler)


def _from_state(name: str, doc: str) -> property:
    """A read-only fitted attribute: ``name`` of the fitted TrainState."""
    return property(lambda self: getattr(self._fitted(), name), doc=doc)


class SlideClassifier(ClassifierMixin, BaseEstimator):
    """Extreme multi-label classifier trained with LSH-selected sparse activations (SLIDE).

    A fully connected network ``sparse input -> hidden ReLU layers -> softmax over all labels``
    trained with cross-entropy against the uniform distribution over each sample's labels
    (label smoothing, where the recipe or the user sets it, spreads part of it over every
    computed output).
    In an LSH layer only the neurons retrieved from hash tables of their weight vectors (plus,
    in training, the true labels and some random padding) are computed forward and backward,
    and only their weights get updates. The samples of a batch run in parallel without locks
    and each weight row is then updated by one thread, so a run gives the same result for any
    ``n_jobs``.

    All parameters are keyword-only; see :data:`slide.config.PARAMS` (or ``slide train --help``)
    for the meaning and allowed range of each. ``set_params`` stores values; ``fit`` validates.

    Targets may be a sparse or dense 0/1 label matrix, a list of label lists (ids or names; rows
    of equal length holding only 0 and 1 are an indicator matrix, as scikit-learn reads them), or
    one label per sample (multiclass, ints or strings); ``predict`` answers in the same form.

    Attributes
    ----------
    state_ : slide.state.TrainState
        The fitted model: weights, optimiser state, hash tables, counters, history.
    classes_ : ndarray
        The name of each label id (``arange(n_labels)`` for a label matrix).
    n_features_in_ : int
    n_labels_ : int
    coefs_ : list of ndarray
        Layer weights: ``coefs_[0]`` is (n_features, hidden_1) (input-major), later layers are
        (n_out, n_in) (one row per neuron).
    intercepts_ : list of ndarray
    layer_specs_ : list of LayerSpec
        The resolved settings of each layer ('auto' values decided).
    recipe_ : list of recipe.Choice
        The value chosen for every 'auto' parameter, with its reason.
    data_profile_ : recipe.DataProfile
    history_ : list of dict
        One record per epoch: epoch, wall seconds, samples/s, mean loss and evaluation metrics.
    timings_ : dict
        Seconds spent per phase (hashing, selection, forward, backward summed over threads;
        optimizer and rebuild wall time; setup, and where they ran, imprint and lsh_check).
    n_iter_ : int
        Epochs run.
    data_parallel_ : dict or None
        After a data-parallel fit (:mod:`slide.distributed`): world size, rank, mode, exchanges,
        bytes sent (in all and per batch) next to a dense all-reduce's, seconds copying and waiting.
    """

    _text = None  # a text model's featuriser (slide.text.TextFeatures), set by fit and load
    data_parallel_ = None  # what a data-parallel fit exchanged (set by fit and resume in a group)

    def __init__(self, *, hidden_layer_sizes="auto", lsh_layers="auto", dropout="auto", input_dropout="auto",
                 label_smoothing="auto", init_scale=1.0, output_init="auto", centroid_scale=10.0, output_imprint="auto",
                 normalize="l2",
                 text_features="tfidf",
                 analyzer="word", ngram_range="auto", min_df="auto", sublinear_tf=True, hash_features=1 << 18,
                 hash_family="simhash",
                 hashes_per_table="auto", n_tables="auto",
                 bucket_size="auto", bucket_bits="auto", insertion="reservoir", selection="topk",
                 active_size="auto", threshold=2, min_active="auto", sample_correction=True, sampler="log_uniform", center=True,
                 mips=False, wta_bin_size=8,
                 simhash_density=1.0, doph_top=32, rebuild_first="auto", rebuild_growth=0.1,
                 rebuild_max_interval=250, epochs="auto", batch_size=128, learning_rate=3e-3,
                 lr_schedule="auto", optimizer="adam", input_optimizer="auto", input_learning_rate="auto",
                 beta1=0.9, beta2=0.999, adam_epsilon=1e-8, data_parallel="auto", sync_every=8,
                 predict_mode="exact", n_jobs=None, random_state=None, verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.lsh_layers = lsh_layers
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.label_smoothing = label_smoothing
        self.init_scale = init_scale
        self.output_init = output_init
        self.centroid_scale = centroid_scale
        self.output_imprint = output_imprint
        self.normalize = normalize
        self.text_features = text_features
        self.analyzer = analyzer
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf
        self.hash_features = hash_features
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
        self.input_optimizer = input_optimizer
        self.input_learning_rate = input_learning_rate
        self.beta1 = beta1
        self.beta2 = beta2
        self.adam_epsilon = adam_epsilon
        self.data_parallel = data_parallel
        self.sync_every = sync_every
        self.predict_mode = predict_mode
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ scikit-learn protocol
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        return tags

    def set_params(self, **params) -> "SlideClassifier":
        """Store parameters (checked by the next ``fit``, as scikit-learn asks); an unknown name
        fails here, listing the known ones."""
        unknown = {k: v for k, v in params.items() if k not in DEFAULTS}
        if unknown:
            validate_params(unknown)  # raises, listing the known names
        return super().set_params(**params)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "state_")

    # fitted attributes, read from the one owner
    n_labels_ = _from_state("n_labels", "Number of labels (output neurons).")
    coefs_ = _from_state("weights", "Weight matrix of each layer (layer 0 (n_features, n_out), later "
                         "layers (n_out, n_in)).")
    intercepts_ = _from_state("biases", "Bias vector of each layer.")
    layer_specs_ = _from_state("specs", "Resolved settings of each layer (slide.network.LayerSpec).")
    history_ = _from_state("history", "One record per epoch: loss, speed, evaluation.")
    timings_ = _from_state("timings", "Seconds spent per phase of training.")
    n_iter_ = property(lambda self: len(self._fitted().history), doc="Epochs trained.")
    recipe_ = _from_state("recipe", "The 'auto' values chosen from the data, each with its reason.")
    data_profile_ = _from_state("data_profile", "The statistics of the training data the recipe read.")

    @property
    def vectorizer_(self):
        """A model fitted on strings: the fitted scikit-learn featuriser (``TfidfVectorizer``, or
        ``HashingVectorizer`` then ``TfidfTransformer``); None for a model fitted on a matrix."""
        self._fitted()
        return None if self._text is None else self._text.vectorizer

    @property
    def classes_(self) -> np.ndarray:
        self._fitted()
        return self._targets.classes

    def _fitted(self) -> TrainState:
        state = self.__dict__.get("state_")
        if state is None:
            raise NotFittedError("This SlideClassifier is not fitted yet: call fit(X, Y) (or slide.load) first.")
        return state

    def _n_threads(self) -> int:
        """Threads for prediction from the current n_jobs (set_params may have changed it after fit)."""
        return resolve_n_jobs(validate_value(PARAM_BY_NAME["n_jobs"], self.n_jobs))

    def _params(self) -> dict:
        """The parameters validated, with random_state reduced to an int seed (or None)."""
        params = self.get_params()
        params["random_state"] = training.seed_of(params["random_state"])
        return validate_params(params)

    # ------------------------------------------------------------------ training
    def fit(self, X, Y, *, eval_set=None, eval_k=None, callback=None, checkpoint_path=None,
            checkpoint_every=None, batch_callback=None, batch_callback_every=100) -> "SlideClassifier":
        """Train on X (n, n_features) and targets Y.

        Parameters
        ----------
        X : scipy.sparse matrix or array-like (NumPy, pandas, lists, torch CPU tensor),
            shape (n_samples, n_features)
        Y : label matrix (sparse or dense 0/1, shape (n_samples, n_labels)), list of label
            lists (ids or names), or a vector of one label per sample (ints or strings)
            Samples without labels are skipped in training.
        eval_set : (X_val, Y_val), optional
            Evaluated (exact top-``eval_k``) after every epoch; results go to ``history_``.
        eval_k : int, optional
            Cut-off of that evaluation (P@1, P@3, P@5 up to it); default 5, or the number of
            labels if fewer.
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
        p = self._params()
        if Y is None:
            raise ParameterError("SlideClassifier requires y to be passed, but the target y is None: fit(X, Y) "
                                 "needs the labels of X.")
        text, text_choices, featurise_seconds = None, [], 0.0
        texts = as_texts(X, "X")
        group = distributed.context(p["data_parallel"], p["sync_every"])
        if group is not None and texts is not None:
            raise ParameterError("Data-parallel training takes feature matrices, not texts: every worker must "
                                 "use the same features (fit a featuriser once, e.g. slide.text, and pass "
                                 "each worker its shard's matrix).")
        if texts is not None:  # strings: fit the featuriser once, on the training texts
            t_text = time.perf_counter()
            settings, text_choices = resolve_text(p, len(texts))
            text, X = TextFeatures.fit(texts, settings)
            featurise_seconds = time.perf_counter() - t_text
        if text is None:  # the featuriser's rows are canonical already, of unit norm
            X = check_X(X, name="X", normalize=p["normalize"], min_samples=1)
        targets, Y = Targets.fit(Y, n_rows=X.shape[0], name="Y")
        eval_set = self._check_eval_set(eval_set, X.shape[1], targets, p["normalize"], text)
        eval_k = _eval_k(eval_k, "fit", Y.shape[1])
        training.check_callbacks(callback, batch_callback, batch_callback_every)
        checkpoint = _checkpointing(checkpoint_path, checkpoint_every, self._saved_params(), targets, text)
        n_labels_per_row = np.diff(Y.indptr)
        n_trainable = int((n_labels_per_row > 0).sum())
        if group is None:
            if n_trainable == 0:
                raise ParameterError("Y has no sample with a label: there is nothing to train on.")
            profile = DataProfile.of(X, Y)
            n_batches = -(-n_trainable // p["batch_size"])
            max_labels, max_nnz = row_maxima(X, Y)
            label_counts, reduce = np.bincount(Y.indices, minlength=Y.shape[1]), None
        else:  # the whole data set's figures, added up over the workers' shards
            profile, n_batches, (max_labels, max_nnz), label_counts = distributed.shard_profile(
                group, X, Y, targets.to_dict(), p["batch_size"])
            reduce = group.sum_
            if group.rank != 0:  # rank 0 writes and evaluates for the group
                checkpoint, eval_set = None, None
        p, choices = recipe.resolve(p, profile, n_batches)
        specs = resolve_specs(p, X.shape[1], Y.shape[1])
        p, choices = recipe.resolve_schedule(p, specs, choices)
        choices = text_choices + choices
        with _verbose_logging(p["verbose"] if group is None or group.rank == 0 else 0):
            log.info(recipe.report(profile, choices))
            if group is not None:
                log.info(f"Data-parallel training ({group.mode}) on {group.world} workers: this one has "
                         f"{n_trainable:,} of the {profile.n_samples:,} training points.")
            compiling = _numba_cache.first_use()
            if compiling:
                log.info("Compiling slide's kernels (once per install; later runs load them from the cache)...")
            check_fits(estimate_bytes(specs, p, resolve_n_jobs(p["n_jobs"]), max_labels, max_nnz))
            seed = training.resolve_seed(p["random_state"])
            if group is not None:
                seed = group.broadcast_int(seed)  # one seed for the group: identical initial weights
            rng = np.random.default_rng(seed)
            Ws, bs = init_weights(specs, rng, p["init_scale"])
            fingerprint = training.data_fingerprint(X, Y)
            if group is not None:
                fingerprint = distributed.data_fingerprint(group, fingerprint)
            with thread_limits(resolve_n_jobs(p["n_jobs"])):
                if p["output_init"] == "centroid":
                    init_output_centroids(Ws, bs, X, Y, p["centroid_scale"], reduce=reduce)
                state = TrainState.build(p, specs, Ws, bs, seed=seed,
                                         label_order=label_order_of_counts(label_counts),
                                         max_labels=max_labels, max_nnz=max_nnz)
                del Ws, bs
                state.recipe, state.data_profile = choices, profile
                state.total_steps = n_batches * p["epochs"]
                state.progress = training.Progress(n_epochs=p["epochs"], rng_state=rng.bit_generator.state,
                                                   fingerprint=fingerprint)
                state.rebuild_tables(initial=True)
                state.timings["setup"] = time.perf_counter() - t_setup
                if text is not None:
                    state.timings["featurise"] = featurise_seconds  # part of setup
                self.state_, self._targets, self._text = state, targets, text
                self.n_features_in_ = X.shape[1]
                training.run(state, X, Y, eval_set=eval_set, eval_k=eval_k, callback=callback,
                             checkpoint=checkpoint, batch_callback=batch_callback,
                             batch_callback_every=batch_callback_every, group=group)
                self.data_parallel_ = None if group is None else group.report(state)
                distributed.release(group)
                _check_lsh(state, X)
            if compiling:
                log.info(f"Kernels compiled and cached: this first fit took {time.perf_counter() - t_setup:.1f} s "
                         "with compilation.")
        return self

    def resume(self, X, Y, *, eval_set=None, eval_k=None, callback=None, checkpoint_path=None,
               checkpoint_every=None, batch_callback=None, batch_callback_every=100) -> "SlideClassifier":
        """Continue an interrupted training run from a checkpoint loaded with :func:`slide.load`,
        on the same training data (checked), to the end of its epochs. With the same settings and
        ``n_jobs=1`` the result equals the uninterrupted run's bit for bit, provided both ran the
        same compiled kernels (a kernel freshly compiled by Numba and its on-disk cached copy may
        round differently in the last bit). Returns self."""
        state = self._fitted()
        if state.progress is None:
            raise ParameterError("This model holds no training progress: resume needs a checkpoint written "
                                 "during fit (checkpoint_path=...), not a finished model.")
        if not state.optimizer_state:
            raise ParameterError("This checkpoint was loaded without its optimiser state (optimizer_state=False, "
                                 "for prediction): load it whole to resume training.")
        p = state.config
        X = self._validated_X(X)
        Y = self._targets.encode(Y, X.shape[0], "Y")
        where = getattr(self, "_loaded_from", "checkpoint")
        group = distributed.context(p["data_parallel"], p["sync_every"], where="resume")
        if group is None:
            training.check_same_data(state.progress.fingerprint, X, Y, where)
            need_labels, need_nnz = row_maxima(X, Y)
        else:  # every worker its own shard of the checkpoint's data, cut as before
            fingerprint = distributed.data_fingerprint(group, training.data_fingerprint(X, Y))
            training.check_same_fingerprint(state.progress.fingerprint, fingerprint, where)
            _, n_batches, (need_labels, need_nnz), _ = distributed.shard_profile(
                group, X, Y, self._targets.to_dict(), p["batch_size"])
            if n_batches * state.progress.n_epochs != state.total_steps:
                raise DataFormatError(f"{where}: the checkpoint's run has {state.total_steps} batches, but "
                                      f"{group.world} workers with these shards make {n_batches} per epoch.")
        # the per-sample buffers were sized from the metadata: the data must fit them
        if need_nnz > state.max_nnz or need_labels > state.max_labels:
            raise DataFormatError(f"{where}: the checkpoint's buffers hold {state.max_nnz} non-zeros and "
                                  f"{state.max_labels} labels per sample, but its training data has rows with "
                                  f"{need_nnz} and {need_labels}: the checkpoint's metadata is inconsistent.")
        eval_set = self._check_eval_set(eval_set, X.shape[1], self._targets, p["normalize"], self._text)
        eval_k = _eval_k(eval_k, "resume", self.n_labels_)
        training.check_callbacks(callback, batch_callback, batch_callback_every)
        checkpoint = _checkpointing(checkpoint_path, checkpoint_every, self._saved_params(), self._targets,
                                    self._text)
        if group is not None and group.rank != 0:
            checkpoint, eval_set = None, None
        if checkpoint is not None:
            checkpoint.mark(state.step)
        verbose = p["verbose"] if group is None or group.rank == 0 else 0
        with _verbose_logging(verbose), thread_limits(state.n_threads):
            training.run(state, X, Y, eval_set=eval_set, eval_k=eval_k, callback=callback, checkpoint=checkpoint,
                         batch_callback=batch_callback, batch_callback_every=batch_callback_every, group=group)
            self.data_parallel_ = None if group is None else group.report(state)
            distributed.release(group)
            _check_lsh(state, X)
        return self

    @staticmethod
    def _check_eval_set(eval_set, n_features, targets: Targets, normalize, text: TextFeatures | None):
        if eval_set is None:
            return None
        if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
            raise ParameterError("eval_set must be a pair (X_val, Y_val).")
        Xv = _features(eval_set[0], text, "eval_set[0]", n_features, normalize)
        return Xv, targets.encode(eval_set[1], Xv.shape[0], "eval_set[1]")

    def estimate_memory(self, n_features, n_labels, *, max_labels=1, max_nnz=100) -> dict:
        """Bytes the arrays of training this configuration need, by kind (weights,
        optimizer_state, hash_tables, batch_buffers, scratch, prediction, imprint); the data set itself
        is not included. ``fit`` refuses to start when the sum exceeds 90% of the available
        memory. Without the data, ``hidden_layer_sizes='auto'`` counts as the widest layer the
        recipe may choose for these dimensions."""
        p = self._params()
        for name, v in (("n_features", n_features), ("n_labels", n_labels), ("max_labels", max_labels),
                        ("max_nnz", max_nnz)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"The {name!r} argument of estimate_memory must be an int >= 1. Got {v!r} instead.")
        if p["hidden_layer_sizes"] == "auto":  # the data decides: count the widest the recipe may pick
            p["hidden_layer_sizes"] = recipe.auto_hidden(int(n_features), int(n_labels), tail=True)[0]
        specs = resolve_specs(p, int(n_features), int(n_labels))
        return estimate_bytes(specs, p, resolve_n_jobs(p["n_jobs"]), int(max_labels), int(max_nnz))

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the model (weights, optimiser state, hash tables and seeds, settings, label
        names) to one ``.npz`` file, atomically and checksummed (:mod:`slide.io`);
        :func:`slide.load` reads it."""
        state = self._fitted()
        save_model(_check_path(path, "save"), self._saved_params(), state, self._targets, self._text)

    def _saved_params(self) -> dict:
        params = self.get_params()
        if not (params["random_state"] is None or isinstance(params["random_state"], (int, np.integer))):
            params["random_state"] = None  # a RandomState/Generator: the drawn seed is in the state
        return params

    @classmethod
    def _from_file(cls, path, optimizer_state: bool = True) -> "SlideClassifier":
        params, state, targets, text = load_model(path, optimizer_state)
        model = cls(**params)
        model.state_, model._targets, model._text = state, targets, text
        model.n_features_in_ = state.n_features
        model._loaded_from = str(path)
        return model

    # ------------------------------------------------------------------ prediction
    def _validated_X(self, X):
        state = self._fitted()
        return _features(X, self._text, "X", self.n_features_in_, state.config["normalize"])

    def _mode(self, mode) -> str:
        mode = self.predict_mode if mode is None else mode
        if mode not in ("exact", "lsh"):
            raise ParameterError(f"The 'mode' argument of predict must be 'exact' or 'lsh'. Got {mode!r} instead.")
        return mode

    def _topk_ids(self, X, k, mode, where):
        """(ids, logits) of the top k labels of validated-here X."""
        state = self._fitted()
        X = self._validated_X(X)
        mode = self._mode(mode)
        k = check_k(k, where=where, n_labels=state.n_labels)
        n_threads = self._n_threads()
        with thread_limits(n_threads):
            return _predict.predict_topk(state, X, k, mode, n_threads)

    def predict(self, X, k=1, *, mode=None):
        """Predicted labels in the form the training targets had: for a vector of one label per
        sample, the best label of each row (a vector); for a label matrix or label lists, the
        top-``k`` labels of each row as a 0/1 indicator over ``classes_`` (sparse CSR, or a
        dense array when the training targets were dense). For the ranked ids themselves use
        :meth:`predict_topk`."""
        self._fitted()
        if self._targets.kind == "vector" and not (isinstance(k, (int, np.integer)) and k == 1):
            raise ParameterError(f"The 'k' argument of predict must be 1 for a model fitted on one label per "
                                 f"sample (it returns one label per row). Got {k!r} instead; predict_topk gives "
                                 "the top k.")
        ids, _ = self._topk_ids(X, k, mode, "predict")
        return self._targets.decode(ids, self.n_labels_)

    def predict_topk(self, X, k=5, *, mode=None):
        """(labels, scores): the top-``k`` labels of each row, best first, and their logits,
        each (n, k). Labels are ids (int64, -1 where fewer than k were scored, which only
        happens in 'lsh' mode) or, for a model fitted on label names, the names."""
        ids, scores = self._topk_ids(X, k, mode, "predict_topk")
        return self._targets.names(ids), scores

    def predict_proba(self, X, k=None, *, mode=None):
        """Probabilities of each row's top-``k`` labels (default 5, or every label of a model
        with fewer) as a ``scipy.sparse.csr_array`` (n, n_labels), never a dense n x n_labels
        array. 'exact' mode: the softmax over all labels (a row sums to 1 when k covers every
        label); 'lsh' mode: the softmax over the k labels retrieved."""
        state = self._fitted()
        X = self._validated_X(X)
        mode = self._mode(mode)
        k = min(5, state.n_labels) if k is None else check_k(k, where="predict_proba", n_labels=state.n_labels)
        n_threads = self._n_threads()
        with thread_limits(n_threads):
            ids, probs = _predict.predict_proba(state, X, k, mode, n_threads)
        return _predict.topk_matrix(ids, probs, state.n_labels)

    def score(self, X, y, sample_weight=None) -> float:
        """Precision@1 on (X, y): the share of rows whose best label is one of theirs (the
        accuracy, for one label per sample)."""
        if sample_weight is not None:
            raise ParameterError("score does not take sample_weight (slide trains without sample weights).")
        ids, _ = self._topk_ids(X, 1, None, "score")
        Y = self._targets.encode(y, ids.shape[0], "y")
        from .metrics import precision_at_k

        return float(precision_at_k(Y, ids, 1))

    def rehash(self, **params) -> "SlideClassifier":
        """Change hashing parameters of a fitted model (any of the ``lsh`` group: hash_family,
        hashes_per_table, n_tables, bucket_size, bucket_bits, insertion, selection, active_size,
        threshold, min_active, center, mips, ...) and rebuild its tables from the current
        weights. Weights are untouched; use it to tune LSH prediction or retrieval after
        training. Returns self."""
        state = self._fitted()
        lsh_names = {p.name for p in PARAMS if p.group == "lsh"}
        bad = sorted(set(params) - lsh_names)
        if bad:
            raise ParameterError(f"rehash only changes hashing parameters ({', '.join(sorted(lsh_names))}); "
                                 f"got {', '.join(bad)}.")
        checked = validate_params(params)
        config = {**state.config, **checked}
        with thread_limits(state.n_threads):
            new = state.with_hashing(config)
        self.set_params(**params)
        self.state_ = new
        return self

    def retrieval_recall(self, X, k=10) -> dict:
        """Quality of the output layer's LSH retrieval on X: the fraction of each row's true
        top-``k`` logits that its active set (as used by ``predict(mode='lsh')``) contains, the
        mean active-set size, and the mean share of the full softmax mass it holds. The number
        that tells whether hashes_per_table, n_tables and bucket_size are right."""
        state = self._fitted()
        if not state.specs[-1].lsh:
            raise ParameterError("retrieval_recall needs an LSH output layer (lsh_layers includes the output).")
        k = check_k(k, where="retrieval_recall", n_labels=state.n_labels)
        X = self._validated_X(X)
        n_threads = self._n_threads()
        with thread_limits(n_threads):
            return _predict.retrieval_recall(state, X, k, n_threads)

    def decision_function(self, X, labels=None):
        """Logits. ``labels=None``: all labels, (n, n_labels) dense (mind the size), or for a
        two-class model fitted on one label per sample the (n,) margin of ``classes_[1]`` over
        ``classes_[0]``, as scikit-learn's binary classifiers give; an (m,) array of label ids:
        those labels for every row, (n, m); an (n, m) array: per-row label ids."""
        state = self._fitted()
        X = self._validated_X(X)
        n_threads = self._n_threads()
        with thread_limits(n_threads):
            Z = _predict.decision_function(state, X, labels)
        if labels is None and self._targets.kind == "vector" and state.n_labels == 2:
            return Z[:, 1] - Z[:, 0]
        return Z


def _features(X, text: TextFeatures | None, name: str, n_features: int, normalize: str):
    """The kernels' matrix of X after fit: a text model's strings through its featuriser (rows
    canonical and of unit norm already, as in fit), a vector model's matrix through check_X;
    mixing the two is an error saying which the model takes."""
    texts = as_texts(X, name)
    check_text_model(text, texts, name)
    if texts is not None:
        return text.transform(texts)
    return check_X(X, name=name, n_features=n_features, normalize=normalize)


def _check_lsh(state: TrainState, X) -> None:
    """A finished fit with an LSH output layer records how often LSH prediction's top label is
    exact prediction's on a sample of the training rows (``state.lsh_check``; ``slide serve``
    reads it to choose its default mode)."""
    if state.progress is None and state.specs[-1].lsh:
        t0 = time.perf_counter()
        state.lsh_check = _predict.lsh_check(state, X, state.n_threads, seed=state.seed % (2**32))
        state.timings["lsh_check"] = time.perf_counter() - t0
        log.info(f"LSH prediction agrees with exact prediction on the top label of "
                 f"{state.lsh_check['top1_agreement']:.1%} of {state.lsh_check['rows']:,} training rows")


def load(path, *, optimizer_state: bool = True) -> SlideClassifier:
    """Load a model written by :meth:`SlideClassifier.save` (verifies format and checksums).
    ``optimizer_state=False`` loads it for prediction only: the Adam moments (two thirds of a
    trained file) are not read, so it loads faster in a third of the memory, predicts the same,
    saves without them, and cannot resume training."""
    if not isinstance(optimizer_state, bool):
        raise ParameterError(f"The 'optimizer_state' argument of load must be a bool. Got {optimizer_state!r} instead.")
    return SlideClassifier._from_file(_check_path(path, "load"), optimizer_state)


def _check_path(path, where: str):
    if not isinstance(path, (str, os.PathLike)):
        raise ParameterError(f"The 'path' argument of {where} must be a file path (str or os.PathLike). "
                             f"Got {path!r} instead.")
    return path


def _eval_k(eval_k, where: str, n_labels: int) -> int:
    if eval_k is None:
        return min(5, n_labels)
    return check_k(eval_k, name="eval_k", where=where, n_labels=n_labels)


def _checkpointing(path, every, params, targets, featuriser=None):
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
        return training.Checkpointing(str(path), params, targets, featuriser)
    if isinstance(every, str):
        text = every.strip().lower()
        units = {"s": 1.0, "m": 60.0, "h": 3600.0}
        try:
            if text and text[-1] in units:
                seconds = float(text[:-1]) * units[text[-1]]
                if seconds > 0:
                    return training.Checkpointing(str(path), params, targets, featuriser, every_seconds=seconds)
            elif int(text) > 0:
                return training.Checkpointing(str(path), params, targets, featuriser, every_batches=int(text))
        except ValueError:
            pass
    elif isinstance(every, (int, np.integer)) and not isinstance(every, bool) and every > 0:
        return training.Checkpointing(str(path), params, targets, featuriser, every_batches=int(every))
    raise ParameterError(f"checkpoint_every must be a positive number of batches (e.g. 500) or a time such as "
                         f"'10m', '90s' or '1h'. Got {every!r} instead.")
