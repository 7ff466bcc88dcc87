"""Plain API calls with hostile or careless inputs get the project's own error naming the
argument, never a foreign exception from deep inside (each case once escaped as one)."""

import numpy as np
import pytest

import slide
from slide import DataFormatError, ParameterError, SlideClassifier
from slide.datasets import make_extreme


@pytest.fixture(scope="module")
def data():
    X, Y, Xt, Yt = make_extreme(120, 40, 12, n_test=20, random_state=0)
    lists = [list(r) for r in np.split(Y.indices, Y.indptr[1:-1])]
    return X, Y, Xt, lists


def small(**kw):
    return SlideClassifier(hidden_layer_sizes=(8,), epochs=1, random_state=0, n_jobs=1, **kw)


@pytest.mark.parametrize("first,match", [
    (None, r"Y\[0\] is None; expected a list of labels"),  # was ValueError: inhomogeneous shape
    ([[0]], r"Y\[0\] holds \[0\]; expected labels"),  # was TypeError: unhashable type
    ([10**30], r"Y\[0\] holds 1000000000000000000000000000000"),  # was OverflowError
    ([-1], r"Y\[0\] holds -1"),
])
def test_bad_label_lists_name_the_row(data, first, match):
    X, _, _, lists = data
    with pytest.raises(DataFormatError, match=match):
        small().fit(X, [first] + lists[1:])


def test_complex_features_are_refused_without_dumping_the_matrix(data):
    X = data[0].toarray().astype(np.complex64)
    with pytest.raises(DataFormatError, match="^X: Complex data not supported; expected real numbers.$"):
        small().fit(X, data[1])


def test_n_jobs_changed_after_fit_is_checked_at_predict(data):
    X, Y, Xt, _ = data
    clf = small().fit(X, Y)
    clf.set_params(n_jobs=0)  # stored, as scikit-learn asks; was a Numba ValueError at predict
    with pytest.raises(ParameterError, match="'n_jobs' parameter"):
        clf.predict_topk(Xt)
    clf.set_params(n_jobs=-1)
    assert clf.predict_topk(Xt)[0].shape == (Xt.shape[0], 5)


@pytest.mark.parametrize("path", [None, 5, ["m.npz"]])
def test_save_and_load_need_a_path(data, path):
    X, Y, _, _ = data
    clf = small().fit(X, Y)
    with pytest.raises(ParameterError, match="'path' argument of save"):
        clf.save(path)
    with pytest.raises(ParameterError, match="'path' argument of load"):
        slide.load(path)


def test_a_multiclass_model_scores_against_label_lists(data):
    # found by tests/test_fuzz.py: a model fitted on one label per sample, scored with label lists,
    # raised numpy's "inhomogeneous shape" ValueError
    X, _, Xt, lists = data
    y = np.array([f"c{row[0] if row else 0}" for row in lists])
    clf = small().fit(X, y)
    truth = [[clf.classes_[0]], [], list(clf.classes_[:2])] + [[clf.classes_[1]]] * (Xt.shape[0] - 3)
    assert 0.0 <= clf.score(Xt, truth) <= 1.0
    with pytest.raises(DataFormatError, match="not trained with"):
        clf.score(Xt, [["nope"]] + truth[1:])


def test_an_indicator_written_as_nested_lists_is_an_indicator(data):
    # found by an adversarial pass: Y.toarray().tolist() was read as label lists of the ids 0 and
    # 1, so every sample silently had labels 0 and 1 (ints), or fit failed on "the value 29.0"
    # (floats); scikit-learn reads such lists as a 'multilabel-indicator'
    X, Y, Xt, _ = data
    dense = Y.toarray()
    ref = small().fit(X, dense)
    for nested in (dense.astype(int).tolist(), dense.tolist(), dense.astype(bool).tolist(), list(dense)):
        clf = small().fit(X, nested)
        np.testing.assert_array_equal(clf.predict_topk(Xt)[0], ref.predict_topk(Xt)[0])
        assert isinstance(clf.predict(Xt), np.ndarray) and clf.predict(Xt).shape == (Xt.shape[0], Y.shape[1])
        assert clf.score(X, nested) == ref.score(X, dense)
    # label lists stay label lists: rows of different lengths, sets, ids above 1, one id per row
    lists = [[0, 1], [1], [2, 0]] + [[0]] * (X.shape[0] - 3)
    assert small().fit(X, lists).classes_.tolist() == [0, 1, 2]
    assert small().fit(X, [[0], [1]] * (X.shape[0] // 2)).classes_.tolist() == [0, 1]


def test_a_label_named_twice_in_a_row_is_one_label(data):
    X, _, Xt, lists = data
    names = [[f"t{v}" for v in row] for row in lists]
    twice = [row + row[:1] for row in names]  # was "Y must be binary; found the value 2.0"
    np.testing.assert_array_equal(small().fit(X, twice).predict_topk(Xt)[0],
                                  small().fit(X, names).predict_topk(Xt)[0])


def test_random_state_errors_name_every_form_the_api_takes(data):
    X, Y, _, _ = data
    for bad in (1.5, -1, 2**70, "0"):
        with pytest.raises(ParameterError, match=r"must be None, an int in \[0, 2\*\*63\), a numpy RandomState or a "
                                                 r"Generator\. Got"):
            small().set_params(random_state=bad).fit(X, Y)
    rs = small().set_params(random_state=np.random.RandomState(0)).fit(X, Y)  # the forms it names are taken
    gen = small().set_params(random_state=np.random.default_rng(0)).fit(X, Y)
    assert rs.predict_topk(X)[0].shape == gen.predict_topk(X)[0].shape


def test_decision_function_of_no_labels_is_an_empty_score_matrix(data):
    X, Y, Xt, _ = data
    clf = small().fit(X, Y)
    assert clf.decision_function(Xt, labels=[]).shape == (Xt.shape[0], 0)  # was "Got dtype float64"
