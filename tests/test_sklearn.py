"""SlideClassifier as a scikit-learn citizen: the estimator checks, Pipeline, model selection,
pickling and the input and target forms scikit-learn users pass."""

import copy
import logging
import pickle

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import slide
from slide import SlideClassifier, precision_scorer
from slide.datasets import make_extreme
from slide.errors import ParameterError
from slide.metrics import precision_at_k
from slide.state import resolve_n_jobs

# The checks that cannot apply to an extreme classifier, each with the reason.
EXPECTED_FAILED_CHECKS = {
    "check_classifier_multioutput":
        "multi-label predictions are the top-k labels of one softmax ranking, not an independent yes/no per "
        "label at decision_function 0 or probability 0.5",
    "check_classifiers_multilabel_output_format_predict_proba":
        "predict_proba is a sparse (n, n_labels) matrix of each row's top k, never a dense n x n_labels array "
        "(10^5-10^7 labels)",
    "check_decision_proba_consistency":
        "the same: a column of the sparse predict_proba is a sparse vector, not an array with .round()",
}


@parametrize_with_checks([SlideClassifier(n_jobs=1, random_state=0)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# ----------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def xmc():
    X, Y, Xt, Yt = make_extreme(1200, 400, 60, n_test=300, label_power=0.6, random_state=2)
    return X, Y, Xt, Yt


FAST = dict(hidden_layer_sizes=(32,), epochs=4, learning_rate=0.01, n_jobs=1, random_state=0)


def _texts(n_per_class=30, n_classes=8, seed=0):
    """Short documents: each class has its own words, all share filler words."""
    rng = np.random.default_rng(seed)
    filler = [f"common{i}" for i in range(40)]
    docs, labels = [], []
    for c in range(n_classes):
        own = [f"topic{c}word{i}" for i in range(12)]
        for _ in range(n_per_class):
            words = list(rng.choice(own, 4)) + list(rng.choice(filler, 6))
            rng.shuffle(words)
            docs.append(" ".join(words))
            labels.append(f"class-{c}")
    order = rng.permutation(len(docs))
    return [docs[i] for i in order], np.array(labels)[order]


@pytest.fixture(scope="module")
def text():
    docs, y = _texts()
    return docs[:180], y[:180], docs[180:], y[180:]


# ----------------------------------------------------------------------------- composition
def test_text_pipeline_predicts_class_names(text):
    docs, y, docs_t, y_t = text
    pipe = make_pipeline(TfidfVectorizer(), SlideClassifier(n_jobs=1, random_state=0)).fit(docs, y)
    pred = pipe.predict(docs_t)
    assert pred.shape == (len(docs_t),) and pred.dtype == y.dtype
    assert set(pred) <= set(y) and (pred == y_t).mean() > 0.9
    assert pipe.score(docs_t, y_t) == pytest.approx((pred == y_t).mean())
    P = pipe.predict_proba(docs_t, k=3)
    assert sp.issparse(P) and P.shape == (len(docs_t), 8) and (np.diff(P.indptr) == 3).all()
    np.testing.assert_array_equal(pipe.classes_[P.argmax(axis=1)], pred)


def test_grid_search_with_a_precision_scorer_has_no_nan_scores(xmc, text):
    X, Y, _, _ = xmc
    search = GridSearchCV(SlideClassifier(**FAST), {"learning_rate": [1e-3, 1e-2]}, scoring=precision_scorer(3),
                          cv=KFold(2), error_score="raise").fit(X, Y)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and scores.max() > 0.1
    assert search.best_params_["learning_rate"] == 1e-2  # 4 epochs: the larger step learns more
    # the same inside a text pipeline, with the estimator's own score (P@1)
    docs, y, _, _ = text
    pipe = make_pipeline(TfidfVectorizer(), SlideClassifier(n_jobs=1, random_state=0, epochs=5))
    search = GridSearchCV(pipe, {"slideclassifier__hidden_layer_sizes": [(16,), (64,)]}, cv=KFold(2),
                          error_score="raise").fit(docs, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_cross_validate_returns_fitted_estimators(xmc):
    X, Y, _, _ = xmc
    lists = [list(Y.indices[Y.indptr[i]:Y.indptr[i + 1]]) for i in range(Y.shape[0])]
    # cross_validate refuses a sparse y (scikit-learn checks it as array-like): label lists go through
    res = cross_validate(SlideClassifier(**FAST), X, lists, cv=KFold(3), return_estimator=True, error_score="raise",
                         scoring={"P@1": precision_scorer(1), "P@5": precision_scorer(5)})
    assert np.isfinite(res["test_P@1"]).all() and (res["test_P@5"] <= res["test_P@1"]).all()
    for i, (est, (_, test)) in enumerate(zip(res["estimator"], KFold(3).split(X))):
        ids = est.predict_topk(X[test], k=1)[0]
        assert precision_at_k(Y[test], ids, 1) == pytest.approx(res["test_P@1"][i]) == est.score(X[test], Y[test])


def test_clone_keeps_parameters_and_drops_the_fit(xmc):
    X, Y, _, _ = xmc
    clf = SlideClassifier(**FAST).fit(X, Y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "state_")
    assert twin.set_params(learning_rate=50.0).learning_rate == 50.0  # stored, not checked ...
    with pytest.raises(ParameterError, match="'learning_rate' parameter"):
        twin.fit(X, Y)  # ... until fit
    with pytest.raises(ParameterError, match="Unknown parameter"):
        twin.set_params(learnig_rate=0.1)


# ----------------------------------------------------------------------------- copies
@pytest.mark.parametrize("how", ["pickle", "joblib", "deepcopy"])
def test_round_trips_predict_identically(xmc, tmp_path, how):
    X, Y, Xt, _ = xmc
    clf = SlideClassifier(**FAST, lsh_layers="output").fit(X, Y)
    if how == "pickle":
        twin = pickle.loads(pickle.dumps(clf))
    elif how == "joblib":
        joblib.dump(clf, tmp_path / "m.joblib")
        twin = joblib.load(tmp_path / "m.joblib")
    else:
        twin = copy.deepcopy(clf)
    for mode in ("exact", "lsh"):
        a, b = clf.predict_topk(Xt, k=5, mode=mode), twin.predict_topk(Xt, k=5, mode=mode)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert twin.history_ == clf.history_ and twin.get_params() == clf.get_params()
    # a copy is independent: refitting it leaves the original alone
    before = clf.coefs_[1].copy()
    twin.set_params(epochs=1).fit(X, Y)
    np.testing.assert_array_equal(clf.coefs_[1], before)


def test_a_fitted_model_goes_to_worker_processes(xmc):
    X, Y, Xt, _ = xmc
    clf = SlideClassifier(**FAST).fit(X, Y)
    parts = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(clf.predict_topk)(Xt[i::2], k=3) for i in range(2))
    expect = clf.predict_topk(Xt, k=3)[0]
    np.testing.assert_array_equal(parts[0][0], expect[0::2])
    np.testing.assert_array_equal(parts[1][0], expect[1::2])


# ----------------------------------------------------------------------------- inputs
def test_array_likes_give_the_same_model(xmc):
    pd = pytest.importorskip("pandas")
    torch = pytest.importorskip("torch")
    X, Y, Xt, _ = xmc
    X, Y, Xt = X[:300], Y[:300], Xt[:50]
    ref = SlideClassifier(**FAST).fit(X, Y).predict_topk(Xt, k=3)[0]
    D = X.toarray()
    forms = {
        "numpy": D,
        "list": D.tolist(),
        "pandas": pd.DataFrame(D),
        "pandas sparse": pd.DataFrame.sparse.from_spmatrix(X),
        "torch": torch.from_numpy(D),
        "csr_array": sp.csr_array(X),
        "coo": X.tocoo(),
    }
    for name, form in forms.items():
        got = SlideClassifier(**FAST).fit(form, Y).predict_topk(Xt, k=3)[0]
        np.testing.assert_array_equal(got, ref, err_msg=name)


def test_targets_in_every_form_predict_in_that_form(xmc):
    X, Y, Xt, _ = xmc
    lists = [list(Y.indices[Y.indptr[i]:Y.indptr[i + 1]]) for i in range(Y.shape[0])]
    ref = SlideClassifier(**FAST).fit(X, Y)
    ids = ref.predict_topk(Xt, k=2)[0]
    # a sparse label matrix: a sparse indicator of the top k
    ind = ref.predict(Xt, k=2)
    assert sp.issparse(ind) and ind.shape == (Xt.shape[0], Y.shape[1]) and (np.diff(ind.indptr) == 2).all()
    np.testing.assert_array_equal(np.sort(ind.indices.reshape(-1, 2), axis=1), np.sort(ids, axis=1))
    # a dense indicator: dense, same dtype
    dense = SlideClassifier(**FAST).fit(X, Y.toarray().astype(np.int64))
    out = dense.predict(Xt, k=2)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64 and (out.sum(axis=1) == 2).all()
    # label lists of ids and of names
    np.testing.assert_array_equal(SlideClassifier(**FAST).fit(X, lists).predict_topk(Xt, k=2)[0], ids)
    names = [[f"tag{v}" for v in row] for row in lists]
    named = SlideClassifier(**FAST).fit(X, names)
    got = named.predict_topk(Xt, k=2)[0]
    np.testing.assert_array_equal(got, named.classes_[np.searchsorted(named.classes_, got)])
    assert named.score(Xt[:5], [[got[i, 0]] for i in range(5)]) == 1.0


def test_one_label_per_sample_with_string_classes():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 20)) * 3
    y = rng.integers(0, 3, 400)
    X = centers[y] + rng.normal(size=(400, 20))
    names = np.array(["cat", "dog", "fish"])[y]
    clf = SlideClassifier(n_jobs=1, random_state=0).fit(X[:300], names[:300])
    assert list(clf.classes_) == ["cat", "dog", "fish"]
    pred = clf.predict(X[300:])
    assert pred.dtype.kind == "U" and (pred == names[300:]).mean() > 0.9
    assert clf.score(X[300:], names[300:]) == pytest.approx((pred == names[300:]).mean())
    P = clf.predict_proba(X[300:])  # every label of a 3-label model
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ParameterError, match="'k' argument of predict must be 1"):
        clf.predict(X[300:], k=2)
    labels, _ = clf.predict_topk(X[300:], k=2)
    assert labels.shape == (100, 2) and set(labels.ravel()) <= {"cat", "dog", "fish"}


# ----------------------------------------------------------------------------- parameters
def test_random_state_as_scikit_learn_takes_it(xmc):
    X, Y, Xt, _ = xmc
    params = {k: v for k, v in FAST.items() if k != "random_state"}
    a = SlideClassifier(**params, random_state=np.random.RandomState(3)).fit(X, Y)
    b = SlideClassifier(**params, random_state=np.random.RandomState(3)).fit(X, Y)
    np.testing.assert_array_equal(a.coefs_[1], b.coefs_[1])
    c = SlideClassifier(**params, random_state=np.random.default_rng(3)).fit(X, Y)
    d = SlideClassifier(**params, random_state=np.random.default_rng(3)).fit(X, Y)
    np.testing.assert_array_equal(c.coefs_[1], d.coefs_[1])
    with pytest.raises(ParameterError, match="'random_state' parameter"):
        SlideClassifier(random_state="seven").fit(X, Y)


def test_n_jobs_negative_counts_as_joblib_does():
    import numba

    n = numba.config.NUMBA_NUM_THREADS
    assert resolve_n_jobs(-1) == n and resolve_n_jobs(None) == n
    assert resolve_n_jobs(-2) == max(1, n - 1) and resolve_n_jobs(-n - 5) == 1
    assert resolve_n_jobs(10**6) == n


def test_progress_goes_to_the_slide_logger(xmc, caplog, capsys):
    X, Y, _, _ = xmc
    with caplog.at_level(logging.INFO, logger="slide"):
        SlideClassifier(**{**FAST, "epochs": 2}, verbose=1).fit(X, Y)
    lines = [r.getMessage() for r in caplog.records if r.name == "slide"]
    assert any(m.startswith("recipe for") for m in lines)
    assert sum(m.startswith("epoch ") for m in lines) == 2
    assert capsys.readouterr().out == ""  # nothing printed to stdout
    caplog.clear()
    SlideClassifier(**{**FAST, "epochs": 1}).fit(X, Y)  # verbose=0: silent
    assert not [r for r in caplog.records if r.name == "slide" and r.levelno >= logging.INFO]


def test_metrics_read_sparse_scores_and_list_truth(xmc):
    X, Y, Xt, Yt = xmc
    clf = SlideClassifier(**FAST).fit(X, Y)
    P = clf.predict_proba(Xt, k=5)
    ids = clf.predict_topk(Xt, k=5)[0]
    lists = [list(Yt.indices[Yt.indptr[i]:Yt.indptr[i + 1]]) for i in range(Yt.shape[0])]
    expect = slide.metrics.evaluate(Yt, ids)
    assert slide.metrics.evaluate(lists, P) == pytest.approx(expect)
    assert slide.metrics.evaluate(Yt.toarray(), P) == pytest.approx(expect)
