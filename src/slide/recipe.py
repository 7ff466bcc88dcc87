"""The default recipe: every 'auto' training parameter decided from the data, with its reason.

Extreme classification data comes in two regimes that want opposite settings (measured in
``benchmarks/RESULTS.md`` section 11 on every shared data set):

* **Long tail**: most labels have a handful of training points (debian-package-search: median 3;
  amazon-670k: 1). The network has to *memorise* each label from those few points: dropout of
  the hidden layer or the input removes most of what little each label gets (P@1 0.0003 with
  dropout 0.5 against 0.41 without, same network), and a learning rate decaying to 0 shrinks
  the last of the few visits each label gets per epoch (a constant rate: +0.03 P@1).
* **Data-rich labels**: every label has dozens to thousands of points (the Mulan sets); the
  same network then over-fits within a few epochs, and dropout is what keeps it general.

The statistic that separates them is the median number of training points of a label (over the
labels that occur): under :data:`TAIL_MEDIAN_POINTS` the data is a long tail, unless points carry
many labels each (over :data:`TAIL_MAX_LABELS_PER_POINT`, as delicious-200k's 75): then a point's
target is spread over dozens of mostly rare labels, memorising them pushes those rare labels above
the frequent ones at the top of the ranking (P@1 0.016 without dropout against 0.984 with it on
the delicious-200k preset), and the regularised recipe is the right one. A long tail of 10^4+
labels also gets a wider hidden layer, within a memory budget. With data-rich labels and a wide
input (at least :data:`WIDE_INPUT_RATIO` features per training point, as TF-IDF text has) the
first layer learns by SGD: Adam's per-weight steps move a rarely or weakly weighted feature's row
as far as any other's and the network memorises through them, where SGD moves a row by its
features' values (+0.014 P@1 on debian-packages-text; on a long tail the rare terms *are* the
signal, and Adam stays); such a first layer learns slowly, and trains for four times the usual
steps, without label smoothing (+0.007 more). A parameter the user sets is
never changed; :func:`resolve` returns the decided values and one line of reason
for each, which ``slide train`` prints and ``fit`` keeps in ``recipe_``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import ParameterError
from .network import rebuild_cost_batches, resolve_specs

TAIL_MEDIAN_POINTS = 10
TAIL_MAX_LABELS_PER_POINT = 20
RICH_DROPOUT, RICH_INPUT_DROPOUT = 0.65, 0.1
# label smoothing of a dense output layer when labels have dozens of points, not hundreds
RICH_LABEL_SMOOTHING, SMOOTHING_MAX_MEDIAN = 0.3, 200
AUTO_EPOCH_STEPS, AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 1200, 5, 50
# hidden_layer_sizes='auto': one layer of TAIL_WIDE_HIDDEN instead of DEFAULT_HIDDEN on a big tail
# (a long tail of at least TAIL_BIG_LABELS labels): capacity for many labels learnt from a few
# points each (+0.005 to +0.017 P@1 on three tails of debian-package-search, +5% on debian-en-cbow at 200k points;
# on the data-rich sets 1,024 or 2,048 did nothing), as long as the weights and their Adam moments
# fit in WIDE_STATE_BUDGET bytes (benchmarks/RESULTS.md section 11)
TAIL_BIG_LABELS = 10_000
# rebuild_first='auto': REBUILD_FIRST batches, unless one rebuild of an LSH layer costs more than
# 1 / REBUILD_BATCHES_PER_COST of that (slide.network.rebuild_cost_batches): then the first rebuild
# waits REBUILD_BATCHES_PER_COST rebuilds' worth of batches, so rebuilds take at most about a
# quarter of a fit's early time (amazon-670k's output layer: a rebuild costs 10.6 batches, and
# 10 -> 32 made a 2-epoch fit 1.46x faster at the same P@1; benchmarks/RESULTS.md section 11)
REBUILD_FIRST, REBUILD_BATCHES_PER_COST = 10, 3
DEFAULT_HIDDEN, TAIL_WIDE_HIDDEN = 512, 1024
WIDE_STATE_BUDGET = 6 << 30
# input_optimizer='auto' on data-rich labels: SGD for the first layer's weights where there are at least
# WIDE_INPUT_RATIO features per training point, at step INPUT_SGD_LEARNING_RATE (benchmarks/RESULTS.md
# section 11, "The first layer's optimiser")
WIDE_INPUT_RATIO, INPUT_SGD_LEARNING_RATE = 2.0, 3.0
# epochs='auto' where the first layer learns by SGD beside Adam and the output layer is dense:
# SGD_INPUT_STEP_FACTOR times the steps (and the epoch cap); and no label smoothing under SGD. SGD
# moves a rarely seen feature's row by its small gradients alone, so the first layer is still
# learning when ~1,200 steps end, and it is regularised enough that smoothing only holds the
# output back (benchmarks/RESULTS.md section 11, "Longer, without smoothing")
SGD_INPUT_STEP_FACTOR = 4
# output_imprint='auto' on a long tail: after training, each label's row is turned this share of the
# way towards its points' centroid under the trained network (slide.centroids.imprint_output): on the
# tails measured it gained 0.003-0.015 P@1, and on data-rich labels 0.1 already cost up to 0.014
# (benchmarks/RESULTS.md section 11, "Imprinting the trained rows")
TAIL_IMPRINT = 0.2


@dataclass(frozen=True)
class DataProfile:
    """What the recipe looks at, measured once on the training data."""

    n_samples: int  # samples with at least one label (the ones training uses)
    n_features: int
    n_labels: int
    n_labels_seen: int  # labels with at least one training point
    labels_per_sample: float
    points_per_label: float  # mean over the labels seen
    median_points_per_label: float
    nnz_per_sample: float
    top_label_share: float  # share of samples carrying the most frequent label

    @classmethod
    def of(cls, X, Y) -> "DataProfile":
        """Profile of validated CSR X (n, d) and binary CSR Y (n, L)."""
        rows = np.diff(Y.indptr) > 0
        return cls.of_counts(n_samples=int(rows.sum()), n_features=int(X.shape[1]),
                             label_counts=np.bincount(Y.indices, minlength=Y.shape[1]),
                             nnz=int(np.diff(X.indptr)[rows].sum()))

    @classmethod
    def of_counts(cls, *, n_samples: int, n_features: int, label_counts: np.ndarray, nnz: int) -> "DataProfile":
        """Profile from sums over the data, which data-parallel workers add up across their
        shards: labelled samples, training points per label, and the labelled samples' input
        non-zeros."""
        n = int(n_samples)
        seen = label_counts[label_counts > 0]
        return cls(
            n_samples=n, n_features=int(n_features), n_labels=int(label_counts.size), n_labels_seen=int(seen.size),
            labels_per_sample=float(label_counts.sum() / n) if n else 0.0,
            points_per_label=float(seen.mean()) if seen.size else 0.0,
            median_points_per_label=float(np.median(seen)) if seen.size else 0.0,
            nnz_per_sample=float(nnz / n) if n else 0.0,
            top_label_share=float(seen.max() / n) if n and seen.size else 0.0,
        )

    @property
    def long_tail(self) -> bool:
        return (self.median_points_per_label < TAIL_MEDIAN_POINTS
                and self.labels_per_sample <= TAIL_MAX_LABELS_PER_POINT)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Choice:
    """One decided parameter: its value and why."""

    name: str
    value: object
    reason: str

    def line(self) -> str:
        return f"{self.name} {self.value}: {self.reason}"


def state_bytes(n_features: int, n_labels: int, width: int) -> int:
    """Bytes of the weights and Adam moments (float32, three copies) of ``n_features -> width -> n_labels``."""
    return 12 * ((n_features + 1) * width + (width + 1) * n_labels)


def auto_hidden(n_features: int, n_labels: int, tail: bool) -> tuple[tuple[int, ...], str]:
    """(hidden_layer_sizes, reason) of hidden_layer_sizes='auto'."""
    wide = state_bytes(n_features, n_labels, TAIL_WIDE_HIDDEN)
    wide_gb = wide / 2**30
    if not tail:
        return (DEFAULT_HIDDEN,), "not a long tail: more width did not help there (1,024 or 2,048 on the Mulan sets)"
    if n_labels < TAIL_BIG_LABELS:
        return (DEFAULT_HIDDEN,), f"{n_labels:,} labels (< {TAIL_BIG_LABELS:,}) fit in {DEFAULT_HIDDEN} units"
    if wide > WIDE_STATE_BUDGET:
        return (DEFAULT_HIDDEN,), (f"a long tail of {n_labels:,} labels would want {TAIL_WIDE_HIDDEN}, but its weights and "
                                   f"Adam state would take {wide_gb:.1f} GiB (> {WIDE_STATE_BUDGET / 2**30:g})")
    return (TAIL_WIDE_HIDDEN,), (f"a long tail of {n_labels:,} labels (>= {TAIL_BIG_LABELS:,}), each learnt from a few "
                                 f"points, needs the capacity ({wide_gb:.1f} GiB of weights and Adam state, at most "
                                 f"{WIDE_STATE_BUDGET / 2**30:g})")


def _median_text(profile: DataProfile) -> str:
    m = profile.median_points_per_label
    return f"the median label has {m:g} training point{'s' if m != 1 else ''}"


def resolve(params: dict, profile: DataProfile, n_batches: int) -> tuple[dict, list[Choice]]:
    """(params with every 'auto' recipe value decided, the choices made) for validated
    ``params``. ``n_batches``: optimiser steps per epoch. Values the user set stay as they are."""
    p = dict(params)
    out: list[Choice] = []

    def decide(name, value, reason):
        if p[name] == "auto":
            p[name] = value
            out.append(Choice(name, value, reason))

    tail = profile.long_tail
    med = _median_text(profile)
    if p["hidden_layer_sizes"] == "auto":
        decide("hidden_layer_sizes", *auto_hidden(profile.n_features, profile.n_labels, tail))
    if not p["hidden_layer_sizes"]:
        # without a hidden layer the output weights are the input weights: nothing to centre on
        if p["output_init"] == "centroid":
            raise ParameterError("The 'output_init' parameter of SlideClassifier can be 'centroid' only with a "
                                 "hidden layer (hidden_layer_sizes is empty). Got 'centroid' instead.")
        decide("output_init", "uniform", "no hidden layer: the output weights are the input weights")
        if p["output_imprint"] not in ("auto", 0, 0.0):
            raise ParameterError("The 'output_imprint' parameter of SlideClassifier needs a hidden layer "
                                 f"(hidden_layer_sizes is empty). Got {p['output_imprint']!r} instead.")
        decide("output_imprint", 0.0, "no hidden layer: the output weights are the input weights")

    if tail:
        decide("dropout", 0.0, f"{med} (< {TAIL_MEDIAN_POINTS}): a long tail, where each label must be "
               "memorised from its few points")
        decide("input_dropout", 0.0, f"{med}: dropping input features would remove most of what a rare "
               "label is seen with")
        decide("lr_schedule", "constant", f"{med}: each label is visited a few times per epoch, and a "
               "decaying rate would shrink its last visits")
        decide("output_init", "centroid", f"{med}: each label's row starts at its points' centroid "
               "instead of waiting for its few updates to find it")
        decide("label_smoothing", 0.0, f"{med}: a rare label's few points must pull its row all the way "
               "(0.3 cost 0.069 P@1 on the reference workload)")
        decide("output_imprint", TAIL_IMPRINT, f"{med}: a rare label's row last moved on its few points' "
               "batches, so at the end it is turned towards where they lie under the trained first layer "
               "(+0.012 P@1 on debian-package-search)")
    else:
        if profile.median_points_per_label >= TAIL_MEDIAN_POINTS:
            why = f"{med} (>= {TAIL_MEDIAN_POINTS})"
        else:
            why = (f"{profile.labels_per_sample:.1f} labels per point (> {TAIL_MAX_LABELS_PER_POINT}), whose "
                   "frequent labels must stay above the rare ones")
        decide("dropout", RICH_DROPOUT, f"{why}: the network would over-fit, so the hidden layer is regularised")
        decide("input_optimizer", *_rich_input_optimizer(p, profile))
        if _sgd_input(p):
            decide("input_dropout", 0.0, "the first layer learns by SGD, where each row moves only by the evidence "
                   "of its features: dropping some of it cost 0.006 P@1 on debian-packages-text")
        decide("input_dropout", RICH_INPUT_DROPOUT, f"{why}: a label is learnt from partial inputs too")
        decide("lr_schedule", "linear", f"{why}: the rate decays to 0 so the last epochs settle")
        decide("output_init", "uniform", f"{why}: training alone places each label's row (a centroid start "
               "cost 0.006 P@1 on the Mulan text sets and 0.46 on the delicious-200k preset)")
        decide("label_smoothing", *_rich_smoothing(p, profile, med))
        decide("output_imprint", 0.0, f"{why}: training places each row from many points (imprinting "
               "them at 0.2 cost up to 0.029 P@1 on the Mulan sets and debian-packages-text)")
    # (the tail branch and a network without a hidden layer train the first layer as every other)
    decide("input_optimizer", p["optimizer"], _same_optimizer_reason(p, tail, med))
    if _sgd_input(p):
        decide("input_learning_rate", INPUT_SGD_LEARNING_RATE, "SGD's step for rows of unit-norm inputs beside "
               "Adam (1 to 10 measured within 0.0015 P@1 on debian-packages-text)")
    decide("input_learning_rate", p["learning_rate"], "learning_rate: the first layer runs the same optimiser as "
           "the others")
    if p["epochs"] == "auto":
        decide("epochs", *_auto_epochs(p, profile, n_batches))
    return p, out


def _sgd_input(p: dict) -> bool:
    """Whether the first layer (of a network with a hidden layer) learns by SGD beside Adam."""
    return bool(p["hidden_layer_sizes"]) and p["input_optimizer"] == "sgd" and p["optimizer"] == "adam"


def _lsh_output(p: dict, profile: DataProfile) -> bool:
    """Whether the output layer will use LSH (the dense baseline has no lsh_layers: it takes
    SlideClassifier's default, as for every value)."""
    return resolve_specs({"lsh_layers": "auto", **p}, profile.n_features, profile.n_labels)[-1].lsh


def _auto_epochs(p: dict, profile: DataProfile, n_batches: int) -> tuple[int, str]:
    """(value, reason) of epochs='auto': about AUTO_EPOCH_STEPS optimiser steps, SGD_INPUT_STEP_FACTOR
    times that (and the cap) where the first layer learns by SGD beside Adam and the output layer is
    dense, the setting where it was measured to help."""
    f = SGD_INPUT_STEP_FACTOR if _sgd_input(p) and not _lsh_output(p, profile) else 1
    steps, cap = f * AUTO_EPOCH_STEPS, f * AUTO_EPOCHS_MAX
    n = min(cap, max(AUTO_EPOCHS_MIN, round(steps / max(1, n_batches))))
    why = f"about {steps:,} optimiser steps at {n_batches:,} per epoch (between {AUTO_EPOCHS_MIN} and {cap})"
    if f > 1:
        why += (f": {f}x the usual, as the first layer's SGD learns a rarely seen feature's row slowly "
                "(+0.005 P@1 on debian-packages-text, +0.008 on rcv1sub1)")
    elif _sgd_input(p):
        why += (": an LSH output layer does not gain from the longer training a first layer by SGD wants "
                "beside a dense one (4x cost 0.008 P@5 on the delicious-200k preset, at 3.3x the time)")
    return n, why


def _rich_input_optimizer(p: dict, profile: DataProfile) -> tuple[str, str]:
    """(value, reason) of input_optimizer on data-rich labels: SGD where the input has at least
    WIDE_INPUT_RATIO features per training point (and a hidden layer, trained by Adam), else the
    optimiser of the other layers."""
    ratio = profile.n_features / max(1, profile.n_samples)
    if not p["hidden_layer_sizes"] or p["optimizer"] != "adam":
        return p["optimizer"], _same_optimizer_reason(p, False, "")
    if ratio >= WIDE_INPUT_RATIO:
        return "sgd", (f"{profile.n_features:,} features for {profile.n_samples:,} points ({ratio:.1f} per point, >= "
                       f"{WIDE_INPUT_RATIO:g}): Adam moves a rarely or weakly weighted feature's row as far as any "
                       "other's, and the network memorises through them; SGD moves a row by its features' values "
                       "(+0.015 P@1 on debian-packages-text, +0.009 on rcv1sub1)")
    return "adam", (f"{ratio:.2f} features per point (< {WIDE_INPUT_RATIO:g}): each feature's row is seen often "
                    "enough for Adam's per-weight steps (SGD cost 0.007 to 0.04 P@1 on the Mulan sets)")


def _same_optimizer_reason(p: dict, tail: bool, med: str) -> str:
    if not p["hidden_layer_sizes"]:
        return "no hidden layer: the first layer is the output layer"
    if p["optimizer"] != "adam":
        return f"as optimizer ({p['optimizer']})"
    if tail:
        return (f"{med}: a rare label's few points must move their features' rows all the way (SGD cost "
                "0.13 P@1 on a debian-package-search tail)")
    return "as optimizer"


def _rich_smoothing(p: dict, profile: DataProfile, med: str) -> tuple[float, str]:
    """(value, reason) of label_smoothing on data-rich labels: RICH_LABEL_SMOOTHING where labels
    have dozens of points (median in [TAIL_MEDIAN_POINTS, SMOOTHING_MAX_MEDIAN)) and the output
    layer is dense, the only setting where it was measured to help; else 0."""
    m = profile.median_points_per_label
    if _sgd_input(p):
        return 0.0, ("the first layer learns by SGD, which regularises it: smoothing on top cost 0.010 P@1 on "
                     "debian-packages-text at 4x the usual steps")
    if m < TAIL_MEDIAN_POINTS:
        return 0.0, (f"{profile.labels_per_sample:.1f} labels per point: smoothing spreads the target further "
                     "over the rare labels (0.3 cost 0.010 P@1 and 0.024 P@5 on the delicious-200k preset)")
    if m >= SMOOTHING_MAX_MEDIAN:
        return 0.0, f"{med} (>= {SMOOTHING_MAX_MEDIAN}): no need to soften it (0.3 cost 0.015 P@1 on tmc2007-500)"
    if _lsh_output(p, profile):
        return 0.0, "an LSH output layer: smoothing over its sampled active set is not measured to help"
    return RICH_LABEL_SMOOTHING, (f"{med} (< {SMOOTHING_MAX_MEDIAN}): a softer target keeps each row from "
                                  "over-fitting its dozens of points (+0.009 P@1 on stackex-cooking, +0.007 on "
                                  "rcv1sub1)")


def resolve_schedule(params: dict, specs, choices: list[Choice]) -> tuple[dict, list[Choice]]:
    """(params with rebuild_first decided, choices + its reason), once the layers are known."""
    p = dict(params)
    if p["rebuild_first"] != "auto":
        return p, choices
    costs = [(rebuild_cost_batches(s, p["batch_size"]), l) for l, s in enumerate(specs) if s.lsh]
    if not costs:
        p["rebuild_first"] = REBUILD_FIRST  # no tables to rebuild: the value is never used
        return p, choices
    cost, l = max(costs)
    n = max(REBUILD_FIRST, math.ceil(REBUILD_BATCHES_PER_COST * cost))
    if n == REBUILD_FIRST:
        why = (f"one table rebuild of layer {l} costs about {cost:.1f} batches (<= "
               f"{REBUILD_FIRST / REBUILD_BATCHES_PER_COST:.1f}): tables follow the weights early")
    else:
        why = (f"one table rebuild of layer {l} ({specs[l].n_out:,} neurons) costs about {cost:.1f} batches: "
               f"the first waits {REBUILD_BATCHES_PER_COST} rebuilds' worth")
    p["rebuild_first"] = n
    return p, [*choices, Choice("rebuild_first", n, why)]


def describe(profile: DataProfile) -> str:
    """One line of the statistics the recipe looked at."""
    return (f"{profile.n_samples:,} labelled points, {profile.n_features:,} features, {profile.n_labels:,} labels "
            f"({profile.labels_per_sample:.2f} per point; {profile.points_per_label:.1f} points per label, median "
            f"{profile.median_points_per_label:g}), {profile.nnz_per_sample:.1f} non-zeros per point, most frequent "
            f"label on {100 * profile.top_label_share:.1f}% of points")


def report(profile: DataProfile, choices: list[Choice]) -> str:
    """What ``slide train`` and ``fit(verbose=1)`` print: the data profile and every decided value."""
    lines = [f"recipe for {describe(profile)}:"]
    lines += [f"  {c.line()}" for c in choices] or ["  (every recipe parameter was set explicitly)"]
    return "\n".join(lines)


__all__ = ["DataProfile", "Choice", "resolve", "resolve_schedule", "describe", "report", "auto_hidden", "state_bytes",
           "TAIL_MEDIAN_POINTS", "TAIL_MAX_LABELS_PER_POINT", "WIDE_INPUT_RATIO", "INPUT_SGD_LEARNING_RATE",
           "SGD_INPUT_STEP_FACTOR"]
