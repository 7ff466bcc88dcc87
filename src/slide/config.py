"""Every user-facing parameter, declared once: name, default, allowed values, help.

The same table validates :class:`slide.SlideClassifier` parameters, builds the ``slide train``
command-line flags, reads ``--config`` TOML files and names the fields of benchmark output, so a
parameter has one name everywhere.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from .errors import ParameterError


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    kind: str  # int, float, float_auto, bool, choice, sizes, layers, range, int_auto, size_auto, seed, n_jobs
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    low_open: bool = False  # low bound excluded
    high_open: bool = False  # high bound excluded
    group: str = "training"


def _p(*args, **kw):
    return Param(*args, **kw)


PARAMS: tuple[Param, ...] = (
    # --- network
    _p("hidden_layer_sizes", "auto", "sizes", "widths of the hidden ReLU layers, e.g. 128 or 256,128; 'auto': "
       "one layer of 512, or of 1,024 on a long tail of >= 10,000 labels whose weights and Adam state "
       "then fit in 6 GiB (the recipe)",
       low=1, high=1 << 20, group="network"),
    _p("lsh_layers", "auto", "layers",
       "which layers select active neurons by LSH: 'auto' (the output layer when it has >= 4096 "
       "neurons), 'output', 'all', 'none', or layer numbers (0 = first hidden layer)", group="network"),
    _p("dropout", "auto", "float_auto", "training dropout rate of the hidden layers' outputs; 'auto': "
       "chosen from the data (slide.recipe)", low=0, high=0.95, group="network"),
    _p("input_dropout", "auto", "float_auto", "training dropout rate of the input's non-zero features; "
       "'auto': chosen from the data (slide.recipe)", low=0, high=0.95, group="network"),
    _p("label_smoothing", "auto", "float_auto", "share of each training point's target spread evenly over the "
       "output neurons computed for it (every label in a dense output layer, the active set in an LSH one); "
       "'auto': chosen from the data (slide.recipe)", low=0, high=0.95, group="network"),
    _p("init_scale", 1.0, "float", "multiplier of the uniform initialisation bound", low=0,
       low_open=True, high=1e3, group="network"),
    _p("output_init", "auto", "choice", "initial output rows: 'centroid' (each label's row points "
       "where its training points' hidden vectors lie, slide.centroids), 'uniform' (random), or "
       "'auto': chosen from the data (slide.recipe)", choices=("auto", "centroid", "uniform"), group="network"),
    _p("centroid_scale", 10.0, "float", "output_init='centroid': the starting logit of an input of "
       "average hidden norm aligned with its label's centroid", low=0, low_open=True, high=1e3,
       group="network"),
    _p("output_imprint", "auto", "float_auto", "at the end of training, turn each output row of a label "
       "with training points this share of the way towards its points' centred mean hidden vector under the "
       "trained network, keeping the row's length (weight imprinting, slide.centroids); 'auto': chosen from "
       "the data (slide.recipe)", low=0, high=1, group="network"),
    _p("normalize", "l2", "choice", "scale each input row: 'l2' (unit norm) or 'none'",
       choices=("l2", "none"), group="network"),
    # --- text (a model fitted on strings: slide.text)
    _p("text_features", "tfidf", "choice", "how strings become features: 'tfidf' (scikit-learn's "
       "TfidfVectorizer, a vocabulary of the training texts' n-grams) or 'hashing' (HashingVectorizer then "
       "idf: n-grams hashed into hash_features columns, no vocabulary)", choices=("tfidf", "hashing"),
       group="text"),
    _p("analyzer", "word", "choice", "text n-grams of 'word's or of characters inside word boundaries "
       "('char_wb')", choices=("word", "char_wb"), group="text"),
    _p("ngram_range", "auto", "range", "(shortest, longest) n-gram; 'auto': 1,2 for words, 2,5 for "
       "characters", low=1, high=10, group="text"),
    _p("min_df", "auto", "int_auto", "text_features='tfidf': keep terms of at least this many training "
       "texts; 'auto': 2, or 1 under 1,000 texts", low=1, high=1 << 40, group="text"),
    _p("sublinear_tf", True, "bool", "text: term frequency as 1 + log(tf)", group="text"),
    _p("hash_features", 1 << 18, "int", "text_features='hashing': number of hashed feature columns",
       low=16, high=1 << 26, group="text"),
    # --- LSH
    _p("hash_family", "simhash", "choice", "hash family of LSH layers",
       choices=("simhash", "wta", "dwta", "doph"), group="lsh"),
    _p("hashes_per_table", "auto", "int_auto", "K: hash codes concatenated into one table key",
       low=1, high=64, group="lsh"),
    _p("n_tables", "auto", "int_auto", "L: number of hash tables per LSH layer", low=1, high=4096,
       group="lsh"),
    _p("bucket_size", "auto", "int_auto", "capacity of one bucket (neuron ids)", low=1,
       high=1 << 16, group="lsh"),
    _p("bucket_bits", "auto", "int_auto", "a table has 2**bucket_bits buckets (at most K * code bits)",
       low=1, high=24, group="lsh"),
    _p("insertion", "reservoir", "choice", "what a full bucket keeps: 'fifo' (newest ids) or "
       "'reservoir' (a uniform sample)", choices=("fifo", "reservoir"), group="lsh"),
    _p("selection", "topk", "choice",
       "active set from the buckets: 'vanilla' (union, up to active_size), 'topk' (the active_size "
       "ids found in most tables) or 'threshold' (ids found in >= threshold tables)",
       choices=("vanilla", "topk", "threshold"), group="lsh"),
    _p("active_size", "auto", "size_auto",
       "active-set budget of an LSH layer: neuron count, or fraction of the layer if < 1; 'auto': "
       "4.5 * sqrt(layer size), at most 2,000 (1,006 of 50k neurons, 2,000 of 670k)", low=0,
       low_open=True, group="lsh"),
    _p("threshold", 2, "int", "selection='threshold': minimum number of tables returning an id",
       low=1, high=4096, group="lsh"),
    _p("min_active", "auto", "size_auto",
       "pad active sets with distinct random neurons up to this size (count, or fraction of the "
       "layer if < 1); 'auto': 1.2 * active_size at the output layer, no padding elsewhere",
       low=0, group="lsh"),
    _p("sample_correction", True, "bool",
       "output layer: weight each random padding id by its inclusion probability (sampled "
       "softmax's log-Q correction), so training follows the full softmax and keeps the label "
       "prior", group="lsh"),
    _p("sampler", "log_uniform", "choice",
       "distribution of the output layer's random padding (min_active): 'log_uniform' (Zipf "
       "over labels ranked by training frequency, as the sampled softmax's negatives) or "
       "'uniform'", choices=("uniform", "log_uniform"), group="lsh"),
    _p("center", True, "bool", "hash neurons' [w, b] minus their mean: the logit ranking is "
       "unchanged, but neurons no longer share one direction and crowd into a few buckets",
       group="lsh"),
    _p("mips", False, "bool", "hash with the asymmetric MIPS transform (norm-scaled, one more "
       "coordinate) instead of the angle between [w, b] and [x, 1]", group="lsh"),
    _p("wta_bin_size", 8, "int", "WTA/DWTA: coordinates compared per code", low=2, high=256, group="lsh"),
    _p("simhash_density", 1.0, "float", "SimHash: fraction of non-zero projection entries", low=0,
       low_open=True, high=1.0, group="lsh"),
    _p("doph_top", 32, "int", "DOPH: a dense vector's set is its doph_top largest coordinates",
       low=1, high=1 << 20, group="lsh"),
    _p("rebuild_first", "auto", "int_auto", "batches before the first hash-table rebuild; 'auto': 10, "
       "or 3 rebuilds' worth of batches on a layer where one rebuild costs more than 3 batches", low=1,
       high=1 << 40, group="lsh"),
    _p("rebuild_growth", 0.1, "float", "rebuild intervals grow as rebuild_first * exp(growth * i)",
       low=0, high=10, group="lsh"),
    _p("rebuild_max_interval", 250, "int", "longest interval between rebuilds, in batches", low=1,
       high=1 << 40, group="lsh"),
    # --- training
    _p("epochs", "auto", "int_auto", "passes over the training data; 'auto': enough for about 1,200 "
       "optimiser steps, at least 5 and at most 50", low=1, high=1 << 20),
    _p("batch_size", 128, "int", "samples per optimiser step", low=1, high=1 << 20),
    _p("learning_rate", 3e-3, "float", "step size", low=0, low_open=True, high=10),
    _p("lr_schedule", "auto", "choice", "'constant', 'linear' decay to 0 over all epochs, or 'auto': "
       "chosen from the data (slide.recipe)", choices=("auto", "constant", "linear")),
    _p("optimizer", "adam", "choice", "'adam' (lazy: only rows with gradient) or 'sgd'",
       choices=("adam", "sgd")),
    _p("input_optimizer", "auto", "choice", "optimiser of the first layer's weights (a row per input feature; "
       "its biases follow optimizer): 'adam', 'sgd' (a row moves by its features' values times the error, so "
       "weakly weighted features move little), or 'auto': chosen from the data (slide.recipe), else as "
       "optimizer", choices=("auto", "adam", "sgd")),
    _p("input_learning_rate", "auto", "float_auto", "step size of the first layer's weights; 'auto': "
       "learning_rate, or 3.0 where the first layer alone runs SGD (slide.recipe)", low=0, low_open=True,
       high=1e3),
    # at most 1 - 1e-7: the kernels run Adam in float32, where a beta closer to 1 rounds to 1 and
    # the bias correction 1 - beta**t becomes 0 (ZeroDivisionError) or the moment stops moving
    _p("beta1", 0.9, "float", "Adam first-moment decay", low=0, high=0.9999999),
    _p("beta2", 0.999, "float", "Adam second-moment decay", low=0, high=0.9999999),
    # float32 arithmetic: eps * sqrt(1 - beta2**t) must stay above 0 there (1e-40 underflowed and
    # a row with no gradient history divided 0 by 0)
    _p("adam_epsilon", 1e-8, "float", "Adam denominator offset", low=1e-30, high=1),
    _p("data_parallel", "auto", "choice", "training with several processes (torchrun, or an initialised "
       "torch.distributed group; slide.distributed): 'sync' exchanges each batch's per-sample gradient factors so "
       "every process applies the same update (the result of one process on the same global batch), "
       "'local_sgd' trains each process alone and averages the rows touched every sync_every batches, "
       "'off' ignores the group; 'auto': 'sync' when there is a group of more than one process",
       choices=("auto", "sync", "local_sgd", "off")),
    _p("sync_every", 8, "int", "data_parallel='local_sgd': batches between averaging the touched rows",
       low=1, high=1 << 20),
    _p("predict_mode", "exact", "choice", "'exact' (every output neuron) or 'lsh' (active set only)",
       choices=("exact", "lsh")),
    _p("n_jobs", None, "n_jobs", "threads (None or -1: all cores, -2: all but one, as joblib)"),
    _p("random_state", None, "seed", "seed of every random choice (None: fresh entropy; the API also takes "
       "a numpy RandomState or Generator)"),
    _p("verbose", 0, "int", "0 silent, 1 progress bar and per-epoch lines", low=0, high=10),
)

PARAM_BY_NAME = {p.name: p for p in PARAMS}
DEFAULTS = {p.name: p.default for p in PARAMS}


def _fail(owner: str, p: Param, constraint: str, value) -> None:
    raise ParameterError(f"The '{p.name}' parameter of {owner} must be {constraint}. Got {value!r} instead.")


def _range_text(p: Param, kind: str) -> str:
    lo = "(" if p.low_open else "["
    low = "-inf" if p.low is None else (int(p.low) if kind == "int" else p.low)
    high = "inf" if p.high is None else (int(p.high) if kind == "int" else p.high)
    return f"{lo}{low}, {high}{')' if p.high_open else ']'}"


def _check_number(owner, p, value, kind):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(owner, p, f"{'an int' if kind == 'int' else 'a float'} in {_range_text(p, kind)}", value)
    if kind == "int" and not float(value).is_integer():
        _fail(owner, p, f"an int in {_range_text(p, kind)}", value)
    v = int(value) if kind == "int" else float(value)
    if v != v:  # NaN
        _fail(owner, p, f"a number in {_range_text(p, kind)}", value)
    bad_low = p.low is not None and (v <= p.low if p.low_open else v < p.low)
    bad_high = p.high is not None and (v >= p.high if p.high_open else v > p.high)
    if bad_low or bad_high:
        _fail(owner, p, f"{'an int' if kind == 'int' else 'a float'} in {_range_text(p, kind)}", value)
    return v


def allowed(p: Param) -> str:
    """What parameter ``p`` accepts, in words (error messages and ``slide train --help``)."""
    k = p.kind
    if k in ("int", "float"):
        return f"{'an int' if k == 'int' else 'a float'} in {_range_text(p, k)}"
    if k in ("int_auto", "float_auto"):
        return f"'auto' or {'an int' if k == 'int_auto' else 'a float'} in {_range_text(p, k[:-5])}"
    if k == "bool":
        return "a bool"
    if k == "choice":
        return "one of " + ", ".join(repr(c) for c in p.choices)
    if k == "size_auto":
        return ("'auto', a positive int (neurons) or a float in (0, 1) (fraction)" if p.name != "min_active"
                else "'auto', an int >= 0 (neurons) or a float in [0, 1) (fraction)")
    if k == "sizes":
        return f"'auto' or a tuple of ints in [1, {int(p.high)}] (possibly empty)"
    if k == "layers":
        return "'auto', 'output', 'all', 'none' or a tuple of layer numbers >= 0"
    if k == "range":
        return f"'auto' or a pair of ints (shortest, longest) with {int(p.low)} <= shortest <= longest <= {int(p.high)}"
    if k == "seed":
        return "None or an int in [0, 2**63)"
    if k == "n_jobs":
        return "None, a positive int, or a negative int as joblib reads it (-1 all cores, -2 all but one)"
    raise AssertionError(k)


def validate_value(p: Param, value, owner: str = "SlideClassifier", *, api: bool = True):
    """Checked (and normalised) value of parameter ``p``; raises ParameterError otherwise. ``api``:
    the value came through the Python API, where the estimators have already reduced a
    ``random_state`` given as a RandomState or Generator to an int (its error says so); False for
    values read from text (flags, config files)."""
    k = p.kind
    # Keyword values are matched only when the value is a str: ``value == "auto"`` or
    # ``value in choices`` on a NumPy array raised "truth value of an array is ambiguous".
    is_str = isinstance(value, str)
    if k in ("int", "float"):
        return _check_number(owner, p, value, k)
    if k == "bool":
        if isinstance(value, bool) or (isinstance(value, numbers.Integral) and value in (0, 1)):
            return bool(value)
        _fail(owner, p, "a bool", value)
    if k == "choice":
        if is_str and value in p.choices:
            return value
        _fail(owner, p, allowed(p), value)
    if k in ("int_auto", "float_auto"):
        if is_str and value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            _fail(owner, p, allowed(p), value)
        return _check_number(owner, p, value, k[:-5])
    if k == "size_auto":
        if is_str and value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
            _fail(owner, p, allowed(p), value)
        if value < 0 or (p.low_open and value == 0) or (value >= 1 and not float(value).is_integer()):
            _fail(owner, p, "a positive int (neurons) or a float in (0, 1) (fraction)", value)
        return int(value) if value >= 1 or value == 0 else float(value)
    if k == "sizes":
        if is_str and value == "auto":
            return value
        vals = (value,) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
        try:
            vals = tuple(vals)
        except TypeError:
            _fail(owner, p, "'auto' or a tuple of positive ints (possibly empty)", value)
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not (1 <= v <= p.high):
                _fail(owner, p, f"'auto' or a tuple of ints in [1, {int(p.high)}]", value)
        return tuple(int(v) for v in vals)
    if k == "layers":
        if is_str and value in ("auto", "output", "all", "none"):
            return value
        vals = (value,) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
        try:
            vals = tuple(vals)
        except TypeError:
            _fail(owner, p, "'auto', 'output', 'all', 'none' or a tuple of layer numbers", value)
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                _fail(owner, p, "'auto', 'output', 'all', 'none' or a tuple of layer numbers >= 0", value)
        return tuple(sorted(set(int(v) for v in vals)))
    if k == "range":
        if is_str and value == "auto":
            return value
        try:
            lo, hi = value
        except (TypeError, ValueError):
            _fail(owner, p, allowed(p), value)
        for v in (lo, hi):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                _fail(owner, p, allowed(p), value)
        if not p.low <= lo <= hi <= p.high:
            _fail(owner, p, allowed(p), value)
        return (int(lo), int(hi))
    if k == "seed":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (0 <= value < 2**63):
            _fail(owner, p, "None, an int in [0, 2**63), a numpy RandomState or a Generator" if api else allowed(p),
                  value)
        return int(value)
    if k == "n_jobs":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value == 0:
            _fail(owner, p, allowed(p), value)
        return int(value)
    raise AssertionError(k)


def validate_params(params: dict, owner: str = "SlideClassifier") -> dict:
    """Validate a parameter dict in the table's order (unknown names are an error, listing the known ones)."""
    unknown = sorted(set(params) - set(PARAM_BY_NAME))
    if unknown:
        raise ParameterError(f"Unknown parameter(s) of {owner}: {', '.join(unknown)}. "
                             f"Known: {', '.join(p.name for p in PARAMS)}.")
    # in table order, whatever the dict's (get_params sorts by name): the first bad one is named
    return {p.name: validate_value(p, params[p.name], owner) for p in PARAMS if p.name in params}
