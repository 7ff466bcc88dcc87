"""What a model file must hold, checked as if a stranger wrote it.

A checksum only says the file is the one that was written, not that its writer was slide: a
crafted file recomputes it. So before any kernel sees a loaded model, every number the kernels
index with is checked here — counters, seeds and buffer sizes in the metadata, layer settings
against the parameters that imply them, every array's dtype (native byte order), shape and
range — and each failure is a :class:`~slide.errors.DataFormatError` naming the file and the
entry. The kernels themselves never validate.
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import DataFormatError, ParameterError
from .network import LayerSpec, resolve_specs

# layer-setting names in files written before they took their parameters' names
_SPEC_RENAMED = {"family": "hash_family", "K": "hashes_per_table", "L": "n_tables", "bin_size": "wta_bin_size",
                 "density": "simhash_density"}

SEED_LIMIT = 2**63  # seeds reach the kernels as uint64 stream keys after * 1000003 + layer


def meta_int(meta: dict, key: str, where, *, low: int = 0, high: int | None = None, default=None) -> int:
    """meta[key] as an int in [low, high]; a missing key takes ``default`` (None: required)."""
    v = meta.get(key, default)
    if v is None or isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low \
            or (high is not None and v > high):
        rng = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise DataFormatError(f"{where}: metadata {key!r} must be an int {rng}; got {v!r}.")
    return int(v)


def layer_specs(meta: dict, config: dict, n_features: int, n_labels: int, where) -> list[LayerSpec]:
    """The stored layer settings, which must be exactly those the stored parameters imply for
    these dimensions (a hand-edited setting would silently change what the tables mean)."""
    records = meta.get("layer_specs")
    if not isinstance(records, list) or not records or not all(isinstance(d, dict) for d in records):
        raise DataFormatError(f"{where}: metadata 'layer_specs' must be a non-empty list of records, one per "
                              f"layer; got {type(records).__name__}.")
    try:
        specs = [LayerSpec(**{_SPEC_RENAMED.get(k, k): v for k, v in d.items()}) for d in records]
    except TypeError as e:
        raise DataFormatError(f"{where}: metadata 'layer_specs' holds an unknown layer setting ({e}).") from None
    if isinstance(config.get("hidden_layer_sizes"), str):  # files from before the recipe: nothing to compare
        want_sizes = [n_features] + [s.n_out for s in specs[:-1]] + [n_labels]
    else:
        try:
            want = resolve_specs(config, n_features, n_labels)
        except ParameterError as e:
            raise DataFormatError(f"{where}: the stored parameters do not describe a network ({e}).") from None
        if len(want) != len(specs):
            raise DataFormatError(f"{where}: metadata 'layer_specs' has {len(specs)} layers; the parameters "
                                  f"imply {len(want)}.")
        for l, (got, exp) in enumerate(zip(specs, want)):
            if got != exp:
                diff = [f"{f}={getattr(got, f)!r} (expected {getattr(exp, f)!r})"
                        for f in LayerSpec.__dataclass_fields__ if getattr(got, f) != getattr(exp, f)]
                raise DataFormatError(f"{where}: layer {l}'s stored settings disagree with the stored "
                                      f"parameters: {', '.join(diff)}.")
        want_sizes = [n_features, *config["hidden_layer_sizes"], n_labels]
    got_sizes = [specs[0].n_in] + [s.n_out for s in specs]
    chained = all(specs[l].n_in == specs[l - 1].n_out for l in range(1, len(specs)))
    if got_sizes != want_sizes or not chained:
        raise DataFormatError(f"{where}: the layers' sizes {[(s.n_in, s.n_out) for s in specs]} do not chain "
                              f"from {n_features} features to {n_labels} labels.")
    return specs


def array(arrays: dict, name: str, shape: tuple, dtype, where, *, finite: bool = False) -> np.ndarray:
    """arrays[name] with exactly this shape and dtype (native byte order), as a C-contiguous
    array; with ``finite`` also free of NaN and infinity."""
    a = arrays.get(name)
    want = np.dtype(dtype)
    if a is None:
        raise DataFormatError(f"{where}: the array {name!r} is missing.")
    if a.dtype != want or a.dtype.byteorder not in ("=", "|") or a.shape != tuple(shape):
        raise DataFormatError(f"{where}: array {name} is {a.dtype.str}{a.shape}, expected {want.str}{tuple(shape)}.")
    if finite and not np.isfinite(a).all():
        raise DataFormatError(f"{where}: array {name} holds NaN or infinite values (a diverged model?).")
    return np.ascontiguousarray(a)


def tables(buckets: np.ndarray, fill: np.ndarray, n_out: int, name: str, where) -> None:
    """Every id a bucket holds (its first min(fill, bucket_size) slots) is a neuron of the layer,
    and every fill count is >= 0."""
    if fill.size and fill.min() < 0:
        raise DataFormatError(f"{where}: array fill{name} holds negative bucket counts.")
    held = np.arange(buckets.shape[2])[None, None, :] < fill[:, :, None]
    ids = buckets[held]
    if ids.size and (ids.min() < 0 or ids.max() >= n_out):
        raise DataFormatError(f"{where}: array buckets{name} holds neuron ids outside [0, {n_out}).")


def lsh_check(record, where):
    """The stored LSH-vs-exact agreement record (None, or rows and a share in [0, 1])."""
    if record is None:
        return None
    ok = (isinstance(record, dict) and set(record) == {"rows", "top1_agreement"}
          and isinstance(record["rows"], int) and not isinstance(record["rows"], bool) and record["rows"] >= 1
          and isinstance(record["top1_agreement"], (int, float)) and not isinstance(record["top1_agreement"], bool)
          and 0.0 <= record["top1_agreement"] <= 1.0)
    if not ok:
        raise DataFormatError(f"{where}: metadata 'lsh_check' is {record!r:.80}; expected null or "
                              '{"rows": int >= 1, "top1_agreement": a number in [0, 1]}.')
    return {"rows": record["rows"], "top1_agreement": float(record["top1_agreement"])}
