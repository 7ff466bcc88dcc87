"""Baselines that SLIDE is measured against, with the same ``fit``/``predict`` API.

* :class:`DenseClassifier`: the same network as a :class:`slide.SlideClassifier` (sparse input
  through an ``EmbeddingBag`` with per-sample weights, hidden ReLU layers, a full softmax over
  every label), the same loss, initialisation, Adam settings, batch size and learning-rate
  schedule, trained with PyTorch (CPU).
* :class:`SampledSoftmaxClassifier`: the same network trained on each batch's true labels plus a
  shared random sample of negatives (uniform or log-uniform over labels ranked by frequency),
  logits corrected by the log of each candidate's inclusion probability.
* :class:`LabelTreeClassifier`: an adapter for ``omikuji`` (Parabel/Bonsai-style label trees)
  when it is installed; not a dependency.
* :class:`PecosClassifier`: an adapter for PECOS XR-Linear, run in an interpreter of its own
  (``libpecos`` pins old NumPy/SciPy); not a dependency.

PyTorch is the optional extra ``slide[torch]`` (``pip install 'slide[torch]'``, pinned to 2.13.0);
importing a baseline without it raises :class:`slide.errors.SlideError` saying so.
"""

from __future__ import annotations

from ..errors import SlideError

__all__ = ["DenseClassifier", "SampledSoftmaxClassifier", "LabelTreeClassifier", "PecosClassifier", "available"]

_TORCH = ("DenseClassifier", "SampledSoftmaxClassifier")


def available(pecos_python=None) -> dict:
    """Which baselines can run here: {'dense', 'sampled', 'omikuji', 'pecos'} -> bool (PECOS: an
    interpreter for it is named or this one imports it, see :func:`xr_linear.pecos_python`)."""
    import importlib.util

    from .xr_linear import pecos_python as find_pecos

    has_torch = importlib.util.find_spec("torch") is not None
    return {"dense": has_torch, "sampled": has_torch, "omikuji": importlib.util.find_spec("omikuji") is not None,
            "pecos": find_pecos(pecos_python) is not None}


def __getattr__(name):
    if name in _TORCH:
        try:
            from . import torch_nets
        except ImportError as e:  # torch missing: say how to get it
            raise SlideError(f"slide.baselines.{name} needs PyTorch, which is not importable here "
                             f"({e}). Install it with: pip install 'slide[torch]' "
                             f"(pins torch==2.13.0).") from None
        return getattr(torch_nets, name)
    if name == "LabelTreeClassifier":
        from .label_tree import LabelTreeClassifier

        return LabelTreeClassifier
    if name == "PecosClassifier":
        from .xr_linear import PecosClassifier

        return PecosClassifier
    raise AttributeError(f"module 'slide.baselines' has no attribute {name!r}")
