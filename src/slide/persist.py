"""A model's state as arrays plus JSON metadata, for :mod:`slide.io`'s checksummed files.

Stored: the parameters, the resolved layer settings, every weight and optimiser moment, the hash
tables (so a resumed run continues with the very tables it had), the seed from which hash
functions are redrawn, the step and rebuild counters, the history, and, for a checkpoint, the
training :class:`~slide.training.Progress`. Nothing is pickled.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .config import validate_params
from .errors import DataFormatError
from .io import read_arrays, write_arrays
from .network import LayerSpec
from .recipe import Choice, DataProfile


def save_model(model, path, progress=None) -> None:
    net, lsh = model._net, model._lsh
    arrays = {}
    for l in range(len(net.W.arrays)):
        arrays[f"W{l}"], arrays[f"b{l}"] = net.W.arrays[l], net.b.arrays[l]
        if model._p["optimizer"] == "adam":
            arrays[f"mW{l}"], arrays[f"vW{l}"] = net.mW.arrays[l], net.vW.arrays[l]
            arrays[f"mb{l}"], arrays[f"vb{l}"] = net.mb.arrays[l], net.vb.arrays[l]
        if model.layer_specs_[l].lsh:
            arrays[f"buckets{l}"], arrays[f"fill{l}"] = lsh.buckets.arrays[l], lsh.fill.arrays[l]
    arrays["label_order"] = model._ranked
    listed = lambda d: {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}  # noqa: E731
    meta = {
        "params": listed(model.get_params()),
        "resolved_params": listed(model._p),
        "recipe": [dataclasses.asdict(c) for c in model.recipe_],
        "data_profile": model.data_profile_.to_dict(),
        "layer_specs": [dataclasses.asdict(s) for s in model.layer_specs_],
        "n_features_in": model.n_features_in_,
        "n_labels": model.n_labels_,
        "seed": model._seed,
        "step": model._step,
        "total_steps": model._total_steps,
        "n_rebuilds": model._n_rebuilds,
        "schedule": model._schedule.state() if model._schedule is not None else None,
        "max_labels": model._max_labels,
        "max_nnz": model._max_nnz,
        "history": model.history_,
        "timings": {k: float(v) for k, v in model.timings_.items()},
        "progress": None if progress is None else progress.to_dict(),
    }
    write_arrays(path, arrays, meta)


def _params(stored: dict) -> dict:
    """Constructor keywords from a file's parameter record (JSON lists back to tuples)."""
    params = dict(stored)
    params.setdefault("sampler", "uniform")  # files from before the parameter existed
    params.setdefault("output_init", "uniform")  # ... and from before the centroid initialisation
    if isinstance(params["hidden_layer_sizes"], list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    if isinstance(params["lsh_layers"], list):
        params["lsh_layers"] = tuple(params["lsh_layers"])
    return params


def load_model(cls, path):
    """(model, progress dict or None) from a file written by :func:`save_model`."""
    arrays, meta = read_arrays(path)
    try:
        params = _params(meta["params"])
        # files from before the recipe stored the values they trained with as the parameters
        resolved = _params(meta.get("resolved_params", meta["params"]))
        model = cls(**params)
        validate_params(model.get_params())
        p = validate_params({**model.get_params(), **resolved})
        specs = [LayerSpec(**d) for d in meta["layer_specs"]]
        n_layers = len(specs)
        Ws = [arrays[f"W{l}"] for l in range(n_layers)]
        bs = [arrays[f"b{l}"] for l in range(n_layers)]
        for l, s in enumerate(specs):
            want = (s.n_in, s.n_out) if l == 0 else (s.n_out, s.n_in)
            if Ws[l].shape != want or bs[l].shape != (s.n_out,):
                raise DataFormatError(f"{path}: layer {l} weights have shape {Ws[l].shape}, expected {want}.")
        n_labels = int(meta["n_labels"])
        ranked = arrays.get("label_order")
        if ranked is None:  # files from before the log-uniform sampler: frequencies unknown
            ranked = np.arange(n_labels, dtype=np.int32)
        if (ranked.shape != (n_labels,) or ranked.dtype != np.int32
                or not np.array_equal(np.sort(ranked), np.arange(n_labels))):
            raise DataFormatError(f"{path}: array label_order is {ranked.dtype}{ranked.shape}, expected "
                                  f"a permutation of the {n_labels} label ids.")
        model._setup(p, specs, Ws, bs, int(meta["seed"]), int(meta["max_labels"]), int(meta["max_nnz"]), ranked)
        net, lsh = model._net, model._lsh
        for l in range(n_layers):
            targets = []
            if p["optimizer"] == "adam":
                targets += [("mW", net.mW.arrays), ("vW", net.vW.arrays), ("mb", net.mb.arrays), ("vb", net.vb.arrays)]
            if specs[l].lsh:
                targets += [("buckets", lsh.buckets.arrays), ("fill", lsh.fill.arrays)]
            for name, dst in targets:
                src = arrays[f"{name}{l}"]
                if src.shape != dst[l].shape or src.dtype != dst[l].dtype:
                    raise DataFormatError(f"{path}: array {name}{l} is {src.dtype}{src.shape}, expected "
                                          f"{dst[l].dtype}{dst[l].shape}.")
                dst[l][...] = src
        model._step = int(meta["step"])
        model._total_steps = int(meta["total_steps"])
        model._n_rebuilds = int(meta["n_rebuilds"])
        if model._schedule is not None and meta["schedule"] is not None:
            model._schedule.set_state(meta["schedule"])
        model.n_features_in_ = int(meta["n_features_in"])
        model.n_labels_ = int(meta["n_labels"])
        model.history_ = list(meta["history"])
        model.recipe_ = [Choice(**c) for c in meta.get("recipe", [])]
        model.data_profile_ = DataProfile(**meta["data_profile"]) if meta.get("data_profile") else None
        model.timings_ = {k: float(v) for k, v in meta["timings"].items()}
        model.n_iter_ = len(model.history_)
        model.coefs_ = list(net.W.arrays)
        model.intercepts_ = list(net.b.arrays)
        return model, meta.get("progress")
    except DataFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataFormatError(f"{path}: the model file is inconsistent ({type(e).__name__}: {e}).") from None
