"""Model files: a :class:`~slide.state.TrainState` plus the estimator's parameters, as arrays
and JSON metadata in :mod:`slide.io`'s checksummed files.

Stored: the parameters, the resolved layer settings, every weight and optimiser moment, the hash
tables (so a resumed run continues with the very tables it had), the seed from which hash
functions are redrawn, the step and rebuild counters, the history, and, for a checkpoint, the
training progress. Nothing is pickled.
"""

from __future__ import annotations

from .config import validate_params
from .errors import DataFormatError
from .io import read_arrays, write_arrays
from .state import ADAM_MEMBER, TrainState, _listed, tupled
from .targets import Targets
from .text import TextFeatures


def save_model(path, params: dict, state: TrainState, targets: Targets, text: TextFeatures | None = None) -> None:
    """Write ``state`` with the estimator parameters ``params``, its targets' form and label
    names, and a text model's featuriser to ``path`` (atomically)."""
    arrays, meta = state.to_arrays()
    meta["params"] = _listed(params)
    meta["targets"] = targets.to_dict()
    if text is not None:
        text_arrays, meta["text"] = text.to_arrays()
        arrays.update(text_arrays)
    write_arrays(path, arrays, meta)


def _params(stored: dict) -> dict:
    """Constructor keywords from a file's parameter record (JSON lists back to tuples)."""
    params = tupled(stored)
    params.setdefault("sampler", "uniform")  # files from before the parameter existed
    params.setdefault("output_init", "uniform")  # ... and from before the centroid initialisation
    params.setdefault("output_imprint", 0.0)  # ... and from before imprinting
    params.setdefault("label_smoothing", 0.0)  # ... and from before label smoothing
    params.setdefault("data_parallel", "auto")  # ... and from before data-parallel training
    params.setdefault("sync_every", 8)
    return params


def _resolved(stored: dict) -> dict:
    """The values a file's model was trained with (:func:`_params` of its resolved record).
    Files from before the first layer had its own optimiser trained it as every other layer."""
    params = _params(stored)
    for name, same_as in (("input_optimizer", "optimizer"), ("input_learning_rate", "learning_rate")):
        if params.get(name, "auto") == "auto" and same_as in params:
            params[name] = params[same_as]
    return params


def load_model(path, optimizer_state: bool = True) -> tuple[dict, TrainState, Targets, TextFeatures | None]:
    """(estimator parameters, state, targets, text featuriser or None) from a file written by
    :func:`save_model`; without ``optimizer_state`` the Adam moments are not read (a model for
    prediction: its state says so, and it cannot resume training)."""
    arrays, meta = read_arrays(path, skip=None if optimizer_state else ADAM_MEMBER.fullmatch)
    try:
        params = _params(meta["params"])  # as the user gave them (get_params round-trips)
        validate_params(params)
        # files from before the recipe stored the values they trained with as the parameters
        config = validate_params({**params, **_resolved(meta.get("resolved_params", meta["params"]))})
        state = TrainState.from_arrays(arrays, meta, config, where=path, optimizer_state=optimizer_state)
        text = None
        if meta.get("text") is not None:
            text = TextFeatures.from_arrays(arrays, meta["text"], state.n_features, path)
        return params, state, Targets.from_dict(meta.get("targets"), state.n_labels), text
    except DataFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataFormatError(f"{path}: the model file is inconsistent ({type(e).__name__}: {e}).") from None
