"""Raw text in: the featuriser a model fitted on strings keeps.

A model fitted on a list of strings turns them into TF-IDF vectors with scikit-learn's own
vectorizers, configured by the ``text`` group of :data:`slide.config.PARAMS`:
``TfidfVectorizer`` (a vocabulary of the training texts' word or character n-grams) or
``HashingVectorizer`` followed by ``TfidfTransformer`` (no vocabulary: n-grams hashed into
``hash_features`` columns). The fitted state is plain arrays (the vocabulary's terms as one UTF-8
string and offsets, the idf weights) plus the resolved settings as JSON, so a model file holds it
without pickle and a loaded model featurises exactly as the fitted one did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .errors import DataFormatError, ParameterError
from .recipe import Choice

# 'auto' values: word uni+bi-grams (the reference featurisation of extreme text classification);
# character 2..5-grams within word boundaries, which match misspellings and word pieces
AUTO_NGRAMS = {"word": (1, 2), "char_wb": (2, 5)}
# min_df 'auto': terms seen in >= 2 texts, unless the corpus is so small that a term's second
# occurrence is luck (a few hundred texts: every term is kept)
MIN_DF_FROM = 1000
MAX_NGRAM = 10
FEW_TEXTS = 64  # up to this many texts, transform without scikit-learn's per-call overhead


def as_texts(X, name: str = "X") -> list[str] | None:
    """X as a list of str when it is text (a list, tuple, 1-D array or pandas Series of strings),
    else None (a feature matrix). A text input with a non-string entry is an error naming it."""
    if isinstance(X, (str, bytes)):
        raise DataFormatError(f"{name} is a single {type(X).__name__}; expected a list of strings, one per sample "
                              f"(e.g. [{X[:30]!r}]).")
    if hasattr(X, "to_numpy") and not hasattr(X, "columns") and getattr(X, "ndim", 1) == 1:  # pandas Series
        X = X.to_numpy()
    if isinstance(X, np.ndarray):
        if X.ndim != 1 or X.dtype.kind not in "UO" or X.size == 0:
            return None
        if X.dtype.kind == "U":
            return X.tolist()
    elif not isinstance(X, (list, tuple)) or len(X) == 0:
        return None
    if not isinstance(X[0], str):
        return None
    for i, v in enumerate(X):
        if not isinstance(v, str):
            raise DataFormatError(f"{name}[{i}] is {type(v).__name__} {v!r:.60}; {name} is text (its first entry is a "
                                  "string), so every entry must be a string (an empty string for no text).")
    return list(X)


def resolve(p: dict, n_texts: int) -> tuple[dict, list[Choice]]:
    """The text settings with 'auto' decided for ``n_texts`` training texts, and the reasons."""
    s = {k: p[k] for k in ("text_features", "analyzer", "ngram_range", "min_df", "sublinear_tf",
                            "hash_features")}
    choices = []
    if s["ngram_range"] == "auto":
        s["ngram_range"] = AUTO_NGRAMS[s["analyzer"]]
        what = "word uni- and bi-grams" if s["analyzer"] == "word" else "character 2- to 5-grams inside words"
        choices.append(Choice("ngram_range", list(s["ngram_range"]), what))
    if s["min_df"] == "auto":
        if s["text_features"] == "hashing":
            s["min_df"] = 1
        else:
            s["min_df"] = 2 if n_texts >= MIN_DF_FROM else 1
            why = (f"terms of >= 2 of the {n_texts:,} texts" if s["min_df"] == 2 else
                   f"every term: only {n_texts:,} texts (< {MIN_DF_FROM:,})")
            choices.append(Choice("min_df", s["min_df"], why))
    s["ngram_range"] = tuple(s["ngram_range"])
    return s, choices


@dataclass
class TextFeatures:
    """A fitted featuriser: settings (every 'auto' resolved) and the fitted scikit-learn object."""

    settings: dict
    vectorizer: object  # TfidfVectorizer, or a (HashingVectorizer, TfidfTransformer) pipeline
    _fast: tuple | None = field(default=None, repr=False, compare=False)  # analyzer, vocabulary, idf

    # ------------------------------------------------------------------ building
    @staticmethod
    def _make(s: dict, vocabulary=None):
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        common = dict(analyzer=s["analyzer"], ngram_range=tuple(s["ngram_range"]), lowercase=True,
                      dtype=np.float32)
        if s["text_features"] == "tfidf":
            return TfidfVectorizer(min_df=s["min_df"], sublinear_tf=s["sublinear_tf"], norm="l2", vocabulary=vocabulary, **common)
        return make_pipeline(HashingVectorizer(n_features=s["hash_features"], alternate_sign=False, norm=None,
                                               **common),
                             TfidfTransformer(sublinear_tf=s["sublinear_tf"], norm="l2"))

    @classmethod
    def fit(cls, texts: list[str], settings: dict) -> tuple["TextFeatures", sp.csr_matrix]:
        """(featuriser, features of ``texts``): fitted once on the training texts."""
        vec = cls._make(settings)
        try:
            X = vec.fit_transform(texts)
        except ValueError as e:  # "empty vocabulary", "After pruning, no terms remain"
            raise DataFormatError(f"X: the {len(texts):,} training texts give no features with analyzer="
                                  f"{settings['analyzer']!r}, ngram_range={settings['ngram_range']}, "
                                  f"min_df={settings['min_df']} ({e}).") from None
        if hasattr(vec, "stop_words_"):
            del vec.stop_words_  # every pruned term, kept by scikit-learn "for introspection" only
        return cls(dict(settings), vec), _canonical(X)

    @property
    def n_features(self) -> int:
        if self.settings["text_features"] == "tfidf":
            return len(self.vectorizer.vocabulary_)
        return int(self.settings["hash_features"])

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        """Features of ``texts``: canonical CSR (float32 rows of unit norm, sorted column indices),
        as :func:`slide.data_checks.check_X` gives the kernels."""
        if len(texts) <= FEW_TEXTS and self.settings["text_features"] == "tfidf":
            return self._transform_few(texts)
        return _canonical(self.vectorizer.transform(texts))

    def _transform_few(self, texts: list[str]) -> sp.csr_matrix:
        """The vectorizer's transform for a few texts (a served query), by its own analyzer and
        the same arithmetic (float32 counts, 1 + log tf, times idf, unit l2 norm), without
        scikit-learn's per-call validation, which costs about 1 ms a call: most of a one-query
        prediction."""
        if self._fast is None:
            self._fast = (self.vectorizer.build_analyzer(), self.vectorizer.vocabulary_,
                          np.asarray(self.vectorizer.idf_, np.float32))
        analyze, vocabulary, idf = self._fast
        indptr, indices = np.zeros(len(texts) + 1, np.int64), []
        counts = []
        for i, text in enumerate(texts):
            row: dict = {}
            for term in analyze(text):
                j = vocabulary.get(term)
                if j is not None:
                    row[j] = row.get(j, 0) + 1
            cols = sorted(row)
            indices += cols
            counts += [row[c] for c in cols]
            indptr[i + 1] = len(indices)
        idx = np.asarray(indices, np.int32)
        data = np.asarray(counts, np.float32)
        if self.settings["sublinear_tf"]:
            np.log(data, out=data)
            data += np.float32(1)
        data *= idf[idx]
        for i in range(len(texts)):
            a, b = indptr[i], indptr[i + 1]
            norm = np.sqrt(np.dot(data[a:b], data[a:b]))
            if norm > 0:
                data[a:b] /= norm
        out = sp.csr_matrix((data, idx, indptr), shape=(len(texts), self.n_features))
        out.has_sorted_indices = True
        return out

    def _idf(self):
        return self.vectorizer.idf_ if self.settings["text_features"] == "tfidf" else self.vectorizer[-1].idf_

    # ------------------------------------------------------------------ files
    def to_arrays(self) -> tuple[dict, dict]:
        """(arrays, JSON metadata): the vocabulary's terms (one UTF-8 string and the offset of each
        term in it, in feature order) and the idf weights; nothing pickled."""
        arrays = {}
        if self.settings["text_features"] == "tfidf":
            terms = self.vectorizer.get_feature_names_out().tolist()
            lengths = np.fromiter((len(t) for t in terms), np.int64, len(terms))
            offsets = np.zeros(len(terms) + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
            arrays["text_terms"] = np.frombuffer("".join(terms).encode("utf-8"), np.uint8)
            arrays["text_term_offsets"] = offsets
        arrays["text_idf"] = np.asarray(self._idf(), np.float32)
        meta = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.settings.items()}
        meta["n_features"] = self.n_features
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict, n_features: int, where) -> "TextFeatures":
        """The featuriser :meth:`to_arrays` wrote, checked against the network's ``n_features``."""
        from .config import PARAM_BY_NAME, validate_value

        if not isinstance(meta, dict):
            raise DataFormatError(f"{where}: the text featuriser's record is {type(meta).__name__}, expected an object.")
        s = {}
        for name in ("text_features", "analyzer", "ngram_range", "min_df", "sublinear_tf", "hash_features"):
            if name not in meta:
                raise DataFormatError(f"{where}: the text featuriser's record has no {name!r}.")
            try:
                s[name] = validate_value(PARAM_BY_NAME[name], meta[name], owner=f"the model file {where}")
            except ParameterError as e:
                raise DataFormatError(str(e)) from None
        if s["ngram_range"] == "auto" or s["min_df"] == "auto":
            raise DataFormatError(f"{where}: the text featuriser's ngram_range and min_df must be resolved values.")
        if meta.get("n_features") != n_features:
            raise DataFormatError(f"{where}: the text featuriser gives {meta.get('n_features')!r} features but the "
                                  f"network takes {n_features}.")
        idf = arrays.get("text_idf")
        if idf is None or idf.dtype != np.float32 or idf.shape != (n_features,):
            raise DataFormatError(f"{where}: array text_idf is "
                                  f"{'missing' if idf is None else f'{idf.dtype}{idf.shape}'}; expected "
                                  f"float32 ({n_features},).")
        if not np.isfinite(idf).all() or (idf < 1).any():
            raise DataFormatError(f"{where}: array text_idf holds values below 1 or non-finite ones; "
                                  "idf weights are >= 1.")
        vocabulary = None
        if s["text_features"] == "tfidf":
            vocabulary = _terms(arrays, n_features, where)
        elif s["hash_features"] != n_features:
            raise DataFormatError(f"{where}: hash_features is {s['hash_features']} but the network takes {n_features}.")
        vec = cls._make(s, vocabulary)
        if s["text_features"] == "tfidf":
            vec.idf_ = idf  # the vocabulary is given: nothing else to fit
        else:
            vec[0].fit([])  # stateless: marks it fitted
            vec[-1].idf_ = idf
        return cls(s, vec)


def _canonical(X) -> sp.csr_matrix:
    """The kernels' CSR (float32 data, sorted indices; scipy's index dtypes) of a vectorizer's output."""
    X = X.tocsr()
    X.sort_indices()
    out = sp.csr_matrix((X.data.astype(np.float32, copy=False), X.indices.astype(np.int32, copy=False),
                         X.indptr.astype(np.int64, copy=False)), shape=X.shape)
    out.has_sorted_indices = True
    return out


def _terms(arrays: dict, n_features: int, where) -> dict:
    blob, offsets = arrays.get("text_terms"), arrays.get("text_term_offsets")
    if blob is None or offsets is None:
        raise DataFormatError(f"{where}: a TF-IDF text model needs the arrays text_terms and text_term_offsets.")
    if blob.dtype != np.uint8 or blob.ndim != 1 or offsets.dtype != np.int64 or offsets.shape != (n_features + 1,):
        raise DataFormatError(f"{where}: text_terms is {blob.dtype}{blob.shape} and text_term_offsets "
                              f"{offsets.dtype}{offsets.shape}; expected uint8 (n,) and int64 ({n_features + 1},).")
    try:
        text = blob.tobytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{where}: array text_terms is not UTF-8 ({e}).") from None
    if offsets[0] != 0 or offsets[-1] != len(text) or (np.diff(offsets) < 1).any():
        raise DataFormatError(f"{where}: array text_term_offsets does not cut text_terms into {n_features} "
                              "non-empty terms.")
    bounds = offsets.tolist()
    vocabulary = {text[a:b]: i for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))}
    if len(vocabulary) != n_features:
        raise DataFormatError(f"{where}: the text vocabulary repeats a term ({len(vocabulary)} distinct of "
                              f"{n_features}).")
    return vocabulary


def check_text_model(text: "TextFeatures | None", texts: list[str] | None, name: str) -> None:
    """A text model takes strings and a vector model takes a matrix: say which when they are mixed."""
    if text is not None and texts is None:
        raise DataFormatError(f"{name}: this model was fitted on text; expected a list of strings, one per sample.")
    if text is None and texts is not None:
        raise DataFormatError(f"{name} is a list of strings, but this model was fitted on feature vectors; "
                              "expected a matrix (n_samples, n_features). Fit on the strings to get a text model.")


__all__ = ["TextFeatures", "as_texts", "resolve", "check_text_model", "AUTO_NGRAMS"]
