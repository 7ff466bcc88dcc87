"""slide: sub-linear deep learning for extreme classification on CPUs (SLIDE, with Numba).

Public names: :class:`SlideClassifier`, the data readers/writers (:func:`load_xmc`,
:func:`save_xmc`, :func:`load_libsvm`, :func:`save_libsvm`), :mod:`slide.metrics` and
:mod:`slide.datasets`.
"""

from . import _numba_cache  # noqa: F401  (first: sets the compiled-kernel cache folder)
from .errors import DataFormatError, NotFittedError, ParameterError, SlideError, TrainingError
from .estimator import SlideClassifier, load
from .scoring import precision_scorer

__version__ = "0.1.0"

__all__ = [
    "SlideClassifier",
    "load",
    "precision_scorer",
    "SlideError",
    "DataFormatError",
    "ParameterError",
    "NotFittedError",
    "TrainingError",
]

try:  # the data module may be absent in a partial checkout; the estimator never needs it
    from .data import iter_xmc, load_libsvm, load_xmc, save_libsvm, save_xmc  # noqa: F401

    __all__ += ["load_xmc", "save_xmc", "iter_xmc", "load_libsvm", "save_libsvm"]
except ImportError:  # pragma: no cover
    pass
