"""The project's own error types.

Every problem a user can cause (a bad file, a bad parameter, a model used before ``fit``)
surfaces as a subclass of :class:`SlideError`, so callers and the CLI can catch one type and
show its message, which always says what was expected, what arrived and where.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFitted


class SlideError(Exception):
    """Base class of every error raised on purpose by slide."""


class DataFormatError(SlideError, ValueError):
    """A data file or array does not follow the expected format.

    Attributes
    ----------
    path : str or None
        The file being read, if any.
    line : int or None
        1-based line number in that file, if known.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = ""
        if path is not None and line is not None:
            where = f"{path}, line {line}: "
        elif path is not None:
            where = f"{path}: "
        super().__init__(where + message)


class DataTypeError(DataFormatError, TypeError):
    """Data of a type that cannot be read as numbers (a dict inside an array, say)."""


class ParameterError(SlideError, ValueError):
    """A parameter value is outside its allowed range or of the wrong type."""


class NotFittedError(SlideError, _SklearnNotFitted):
    """The model was used before ``fit`` (or ``load``); scikit-learn's NotFittedError too (a
    ValueError and an AttributeError), so ``check_is_fitted`` callers catch it."""


class TrainingError(SlideError, RuntimeError):
    """Training cannot continue (for example the loss became non-finite)."""
