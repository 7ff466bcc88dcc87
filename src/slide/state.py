"""``TrainState``: the one owner of a fitted model's state.

Everything a trained (or half-trained) network is lives here: the resolved settings and layer
specs, weights and optimiser moments, hash functions, tables and their rebuild schedule, the
thread buffers the kernels write into, counters, the label order, the training progress and the
history. One factory (:meth:`TrainState.build`) allocates it; :meth:`TrainState.to_arrays` and
:meth:`TrainState.from_arrays` turn it into flat arrays plus JSON metadata and back, which is
what model files, checkpoints, ``pickle`` and ``copy.deepcopy`` all use (the Numba typed lists
inside cannot be pickled themselves). Training (:mod:`slide.training`), prediction
(:mod:`slide.predict`) and persistence (:mod:`slide.persist`) take a ``TrainState``; the
estimator only holds one as ``state_``.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field

import numpy as np

from . import model_checks
from .errors import DataFormatError
from .lsh import INSERTIONS, RebuildSchedule, rebuild_tables
from .network import input_optimizer, lsh_spec, make_grad, make_lsh, make_net, make_work
from .recipe import Choice, DataProfile
from .training import Progress

# timings keys: setup (validation, profile, initialisation, first tables: wall), per-sample
# phases summed over threads, then the optimiser pass and table rebuilds (wall)
TIMED_PHASES = ("setup", "hashing", "selection", "forward", "backward", "optimizer", "rebuild")

# the moments stored per layer when the optimiser is Adam, and their names in a model file
_ADAM_ARRAYS = ("mW", "vW", "mb", "vb")
ADAM_MEMBER = re.compile(r"(mW|vW|mb|vb)\d+")


def resolve_n_jobs(n_jobs) -> int:
    """Threads for ``n_jobs`` as joblib reads it: None or -1 all cores, -2 all but one, and so
    on; never more than Numba's thread pool has."""
    import numba

    avail = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None:
        return avail
    n_jobs = int(n_jobs)
    if n_jobs < 0:
        return max(1, avail + 1 + n_jobs)
    return min(n_jobs, avail)


def _listed(d: dict) -> dict:
    """JSON form of a parameter dict (tuples as lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def tupled(d: dict) -> dict:
    """A parameter dict read from JSON (the tuple-valued parameters back to tuples)."""
    out = dict(d)
    for name in ("hidden_layer_sizes", "lsh_layers", "ngram_range"):
        if isinstance(out.get(name), list):
            out[name] = tuple(out[name])
    return out


@dataclass(eq=False)
class TrainState:
    """A network with everything its training, prediction and saving need (see the module)."""

    config: dict  # the resolved parameters (no 'auto' left) it was built and trained with
    specs: list  # LayerSpec per layer
    seed: int  # of hash functions, padding and dropout streams
    label_order: np.ndarray  # label ids by decreasing training frequency (log-uniform sampler ranks)
    max_labels: int  # buffers are sized for samples of up to this many labels ...
    max_nnz: int  # ... and input non-zeros
    n_threads: int
    net: object  # kernels.state.Net: weights and optimiser moments
    lsh: object  # kernels.state.LSH: hash functions, tables, selection settings
    hash_params: list  # the HashParams of lsh.hp as a Python list (see network.make_lsh)
    work: object  # kernels.state.Work: per-sample and per-thread buffers
    grad: object  # kernels.state.Grad: the optimiser pass's scratch
    schedule: RebuildSchedule | None
    step: int = 0  # optimiser steps taken
    total_steps: int = 1  # planned for the run (the linear learning-rate decay's horizon)
    n_rebuilds: int = 0  # table builds so far, the initial one included (seeds each rebuild)
    progress: Progress | None = None  # set while a run is unfinished (checkpoints)
    history: list = field(default_factory=list)
    timings: dict = field(default_factory=lambda: {k: 0.0 for k in TIMED_PHASES})
    recipe: list = field(default_factory=list)  # recipe.Choice records of the 'auto' values
    data_profile: DataProfile | None = None
    # how far LSH-sparse prediction follows exact prediction, measured at the end of training:
    # {"rows": n, "top1_agreement": share of rows whose top label is the same} (None: no LSH layer)
    lsh_check: dict | None = None
    # False: loaded for prediction only (slide.load(..., optimizer_state=False)): the Adam moments
    # are zeros, never saved, and training cannot resume from it
    optimizer_state: bool = True

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, config: dict, specs: list, Ws: list, bs: list, *, seed: int, label_order: np.ndarray,
              max_labels: int, max_nnz: int, optimizer_state: bool = True) -> "TrainState":
        """Allocate every array of a network with these settings and initial weights (the
        tables empty until :meth:`rebuild_tables`); without ``optimizer_state`` the Adam
        moments are allocated lazily, for a model that only predicts."""
        if config["rebuild_first"] == "auto":  # fit resolves it with the recipe; a test may not
            from .recipe import resolve_schedule

            config, _ = resolve_schedule(config, specs, [])
        n_threads = resolve_n_jobs(config["n_jobs"])
        net = make_net(specs, Ws, bs, config["optimizer"], config["dropout"], config["input_dropout"],
                       prefault_moments=optimizer_state, label_smoothing=config["label_smoothing"],
                       input_optimizer=input_optimizer(config)[0])
        lsh, hps = make_lsh(specs, seed, label_order)
        any_lsh = any(s.lsh for s in specs)
        schedule = (RebuildSchedule(config["rebuild_first"], config["rebuild_growth"], config["rebuild_max_interval"])
                    if any_lsh else None)
        return cls(config=dict(config), specs=list(specs), seed=int(seed), label_order=label_order,
                   max_labels=int(max_labels), max_nnz=int(max_nnz), n_threads=n_threads, net=net, lsh=lsh,
                   hash_params=hps, work=make_work(specs, hps, n_threads, config["batch_size"], max_labels, max_nnz),
                   grad=make_grad(specs, config["batch_size"], max_labels, max_nnz), schedule=schedule)

    def with_hashing(self, config: dict) -> "TrainState":
        """Same weights, optimiser state and counters; hash tables (and the buffers sized by
        them) made anew from ``config``'s hashing parameters and filled from the weights."""
        out = len(self.specs) - 1
        specs = [lsh_spec(config, s.n_in, s.n_out, l == out) if s.lsh else s for l, s in enumerate(self.specs)]
        lsh, hps = make_lsh(specs, self.seed, self.label_order)
        state = dataclasses.replace(
            self, config=dict(config), specs=specs, lsh=lsh, hash_params=hps,
            work=make_work(specs, hps, self.n_threads, config["batch_size"], self.max_labels, self.max_nnz),
            grad=make_grad(specs, config["batch_size"], self.max_labels, self.max_nnz))
        state.rebuild_tables()
        return state

    # ------------------------------------------------------------------ reading
    @property
    def n_features(self) -> int:
        return self.specs[0].n_in

    @property
    def n_labels(self) -> int:
        return self.specs[-1].n_out

    @property
    def weights(self) -> list:
        """Layer weights: [0] is (n_features, hidden_1) (input-major), later (n_out, n_in)."""
        return list(self.net.W.arrays)

    @property
    def biases(self) -> list:
        return list(self.net.b.arrays)

    @property
    def any_lsh(self) -> bool:
        return any(s.lsh for s in self.specs)

    def weights_finite(self) -> bool:
        return all(np.isfinite(a).all() for a in (*self.net.W.arrays, *self.net.b.arrays))

    # ------------------------------------------------------------------ tables
    def rebuild_tables(self, initial: bool = False) -> None:
        """Re-hash every LSH layer's neurons from the current weights (the initial build's time
        counts as setup, later ones as 'rebuild')."""
        t0 = time.perf_counter()
        for l, s in enumerate(self.specs):
            if s.lsh:
                rebuild_tables(self.hash_params[l], self.lsh.buckets.arrays[l], self.lsh.fill.arrays[l],
                               self.net.W.arrays[l], self.net.b.arrays[l], input_major=(l == 0), mips=s.mips,
                               center=s.center, insertion=INSERTIONS[s.insertion], seed=self.seed,
                               epoch=self.n_rebuilds, n_threads=self.n_threads)
        self.n_rebuilds += 1
        if not initial:
            self.timings["rebuild"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ arrays and back
    def _array_slots(self):
        """(name, per-layer arrays) of everything stored besides weights and biases."""
        slots = []
        if "adam" in (self.config["optimizer"], input_optimizer(self.config)[0]):
            slots += [(n, getattr(self.net, n).arrays) for n in _ADAM_ARRAYS]
        slots += [("buckets", self.lsh.buckets.arrays), ("fill", self.lsh.fill.arrays)]
        return slots

    def _stored(self, name: str, l: int, moments: bool) -> bool:
        """Whether array ``name`` of layer ``l`` goes into a model file (Adam moments: with
        ``moments``, and not the first layer's weight moments under input_optimizer='sgd', which
        do not exist; tables: of LSH layers)."""
        if name in _ADAM_ARRAYS:
            return moments and getattr(self.net, name).arrays[l].size > 0
        return self.specs[l].lsh

    def to_arrays(self) -> tuple[dict, dict]:
        """(arrays, JSON-able metadata): the whole state, nothing pickled."""
        arrays = {"label_order": self.label_order}
        for l in range(len(self.specs)):
            arrays[f"W{l}"], arrays[f"b{l}"] = self.net.W.arrays[l], self.net.b.arrays[l]
            for name, per_layer in self._array_slots():
                if self._stored(name, l, self.optimizer_state):
                    arrays[f"{name}{l}"] = per_layer[l]
        meta = {
            "resolved_params": _listed(self.config),
            "recipe": [dataclasses.asdict(c) for c in self.recipe],
            "data_profile": None if self.data_profile is None else self.data_profile.to_dict(),
            "layer_specs": [dataclasses.asdict(s) for s in self.specs],
            "n_features_in": self.n_features,
            "n_labels": self.n_labels,
            "seed": self.seed,
            "step": self.step,
            "total_steps": self.total_steps,
            "n_rebuilds": self.n_rebuilds,
            "schedule": None if self.schedule is None else self.schedule.state(),
            "max_labels": self.max_labels,
            "max_nnz": self.max_nnz,
            "history": self.history,
            "timings": {k: float(v) for k, v in self.timings.items()},
            "progress": None if self.progress is None else self.progress.to_dict(),
            "lsh_check": self.lsh_check,
            "optimizer_state": self.optimizer_state,
        }
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict, config: dict, where="model",
                    optimizer_state: bool = True) -> "TrainState":
        """The state :meth:`to_arrays` described, given its validated ``config``. Everything is
        checked before a kernel sees it (:mod:`slide.model_checks`): counters and sizes, layer
        settings against ``config``, every array's dtype, shape and range (DataFormatError
        naming ``where`` otherwise)."""
        n_features = model_checks.meta_int(meta, "n_features_in", where, low=1)
        n_labels = model_checks.meta_int(meta, "n_labels", where, low=1)
        specs = model_checks.layer_specs(meta, config, n_features, n_labels, where)
        n_layers = len(specs)
        Ws, bs = [], []
        for l, s in enumerate(specs):
            shape = (s.n_in, s.n_out) if l == 0 else (s.n_out, s.n_in)
            Ws.append(model_checks.array(arrays, f"W{l}", shape, np.float32, where, finite=True))
            bs.append(model_checks.array(arrays, f"b{l}", (s.n_out,), np.float32, where, finite=True))
        ranked = arrays.get("label_order")
        if ranked is None:  # files from before the log-uniform sampler: frequencies unknown
            ranked = np.arange(n_labels, dtype=np.int32)
        ranked = model_checks.array({"label_order": ranked}, "label_order", (n_labels,), np.int32, where)
        if not np.array_equal(np.sort(ranked), np.arange(n_labels)):
            raise DataFormatError(f"{where}: array label_order is not a permutation of the {n_labels} label ids.")
        seed = model_checks.meta_int(meta, "seed", where, high=model_checks.SEED_LIMIT - 1)
        max_labels = model_checks.meta_int(meta, "max_labels", where, low=1, high=n_labels)
        max_nnz = model_checks.meta_int(meta, "max_nnz", where, low=1, high=n_features)
        stored = meta.get("optimizer_state", True)
        if not isinstance(stored, bool):
            raise DataFormatError(f"{where}: metadata 'optimizer_state' is {stored!r}; expected true or false.")
        keep = optimizer_state and stored
        state = cls.build(config, specs, Ws, bs, seed=seed, label_order=ranked, max_labels=max_labels,
                          max_nnz=max_nnz, optimizer_state=keep)
        state.optimizer_state = keep
        for name, per_layer in state._array_slots():
            for l in range(n_layers):
                if not state._stored(name, l, keep):
                    continue
                dst = per_layer[l]
                src = model_checks.array(arrays, f"{name}{l}", dst.shape, dst.dtype, where,
                                         finite=name in _ADAM_ARRAYS)
                dst[...] = src
        for l, s in enumerate(specs):
            if s.lsh:
                model_checks.tables(state.lsh.buckets.arrays[l], state.lsh.fill.arrays[l], s.n_out, str(l), where)
        state.total_steps = model_checks.meta_int(meta, "total_steps", where, low=1)
        state.step = model_checks.meta_int(meta, "step", where, high=state.total_steps)
        state.n_rebuilds = model_checks.meta_int(meta, "n_rebuilds", where)
        if state.schedule is not None and meta["schedule"] is not None:
            state.schedule.set_state(meta["schedule"])
        state.history = list(meta["history"])
        state.timings = {k: float(v) for k, v in meta["timings"].items()}
        state.recipe = [Choice(**c) for c in meta.get("recipe", [])]
        state.data_profile = DataProfile(**meta["data_profile"]) if meta.get("data_profile") else None
        state.progress = None if meta.get("progress") is None else Progress.from_dict(meta["progress"], where)
        state.lsh_check = model_checks.lsh_check(meta.get("lsh_check"), where)
        return state

    def __reduce__(self):
        # pickle, copy.deepcopy and joblib go through the same arrays as a model file
        arrays, meta = self.to_arrays()
        return _unpickle, (arrays, meta, _listed(self.config))


def _unpickle(arrays, meta, config):
    return TrainState.from_arrays(arrays, meta, tupled(config), where="pickled model")
