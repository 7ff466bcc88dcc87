"""SlideClassifier's public behaviour: scikit-learn conventions, determinism, prediction modes,
persistence and the errors a user can cause."""

import inspect

import numpy as np
import pytest
import scipy.sparse as sp

import slide
from slide import DataFormatError, NotFittedError, ParameterError, SlideClassifier
from slide.config import PARAMS
from slide.datasets import make_extreme
from slide.metrics import precision_at_k


@pytest.fixture(scope="module")
def data():
    return make_extreme(2000, 2000, 1000, n_test=300, label_power=0.6, random_state=1)


def small(**kw):
    base = dict(hidden_layer_sizes=(32,), lsh_layers="output", epochs=3, batch_size=64, random_state=0,
                n_jobs=1, learning_rate=0.01)
    base.update(kw)
    return SlideClassifier(**base)


def test_init_defaults_match_the_parameter_table():
    sig = inspect.signature(SlideClassifier.__init__)
    defaults = {n: p.default for n, p in sig.parameters.items() if n != "self"}
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for n, p in sig.parameters.items() if n != "self")
    assert defaults == {p.name: p.default for p in PARAMS}


def test_init_only_stores_and_get_set_params_round_trip():
    clf = SlideClassifier(n_tables=7, learning_rate=0.5)
    assert clf.get_params()["n_tables"] == 7
    assert not hasattr(clf, "coefs_")
    assert clf.set_params(n_tables=9) is clf
    assert clf.n_tables == 9
    assert "n_tables=9" in repr(clf)


@pytest.mark.parametrize("name,value,fragment", [
    ("n_tables", 0, "'n_tables' parameter of SlideClassifier must be an int in [1, 4096]. Got 0"),
    ("learning_rate", -1.0, "'learning_rate' parameter of SlideClassifier must be a float in (0, 10]"),
    ("hash_family", "md5", "one of 'simhash', 'wta', 'dwta', 'doph'"),
    ("hidden_layer_sizes", (0,), "'hidden_layer_sizes'"),
    ("active_size", 1.5, "'active_size'"),
    ("n_jobs", 0, "'n_jobs'"),
    ("dropout", 1.0, "'dropout'"),
    ("beta2", 1 - 1e-16, "'beta2' parameter of SlideClassifier must be a float in [0, 0.9999999]"),
    ("adam_epsilon", 5e-324, "'adam_epsilon' parameter of SlideClassifier must be a float in [1e-30, 1]"),
])
def test_bad_parameters_are_named_with_range_and_value(data, name, value, fragment):
    X, Y, _, _ = data
    with pytest.raises(ParameterError, match=None) as e:
        SlideClassifier(**{name: value}).fit(X, Y)
    assert fragment in str(e.value)
    assert repr(value) in str(e.value)


def test_smallest_adam_epsilon_trains_in_float32(data):
    # the kernels run Adam in float32: eps * sqrt(1 - beta2**t) must not underflow to 0, or a row
    # without gradient history divides 0 by 0 (Hypothesis found adam_epsilon=5e-324)
    X, Y, _, _ = data
    clf = SlideClassifier(hidden_layer_sizes=(8,), adam_epsilon=1e-30, beta2=0.9999999, epochs=1, n_jobs=1,
                          random_state=0, verbose=0).fit(X, Y)
    assert all(np.isfinite(W).all() for W in clf.coefs_)


def test_unknown_parameter_in_set_params():
    with pytest.raises(ParameterError, match="Unknown parameter"):
        SlideClassifier().set_params(n_table=3)


def test_fit_returns_self_and_sets_fitted_attributes(data):
    X, Y, Xt, Yt = data
    clf = small()
    assert clf.fit(X, Y, eval_set=(Xt, Yt)) is clf
    assert clf.n_features_in_ == X.shape[1] and clf.n_labels_ == Y.shape[1]
    assert clf.coefs_[0].shape == (X.shape[1], 32) and clf.coefs_[1].shape == (Y.shape[1], 32)
    assert len(clf.history_) == 3 and clf.n_iter_ == 3
    assert {"P@1", "P@5", "loss", "samples_per_second", "active_mean"} <= set(clf.history_[-1])
    # and, with an LSH output layer, the end-of-fit check of LSH against exact prediction; on this
    # long tail the recipe imprints the trained rows
    assert {c.name: c.value for c in clf.recipe_}["output_imprint"] > 0
    assert set(clf.timings_) == {"setup", "hashing", "selection", "forward", "backward", "optimizer", "rebuild",
                                 "lsh_check", "imprint"}
    assert clf.layer_specs_[-1].lsh and not clf.layer_specs_[0].lsh
    assert clf.state_.lsh_check["rows"] == min(1000, X.shape[0])


def test_predict_shapes_and_learning(data):
    X, Y, Xt, Yt = data
    clf = small(epochs=5).fit(X, Y)
    top = clf.predict_topk(Xt, k=5)[0]
    assert top.shape == (Xt.shape[0], 5) and top.dtype == np.int64
    assert ((top >= 0) & (top < Y.shape[1])).all()
    # far above the most-frequent-label baseline
    freq = np.asarray(Y.sum(axis=0)).ravel()
    baseline = precision_at_k(Yt, np.tile(np.argsort(-freq)[:5], (Xt.shape[0], 1)), k=1)
    assert precision_at_k(Yt, top, k=1) > baseline + 0.2
    lsh_top = clf.predict_topk(Xt, k=5, mode="lsh")[0]
    assert precision_at_k(Yt, lsh_top, k=1) > baseline + 0.2


def test_predict_topk_scores_match_decision_function(data):
    X, Y, Xt, _ = data
    clf = small().fit(X, Y)
    labels, scores = clf.predict_topk(Xt[:20], k=4)
    assert (np.diff(scores, axis=1) <= 0).all()
    np.testing.assert_allclose(clf.decision_function(Xt[:20], labels), scores, rtol=1e-4, atol=1e-5)
    full = clf.decision_function(Xt[:20])
    np.testing.assert_array_equal(np.argsort(-full, axis=1, kind="stable")[:, :1], labels[:, :1])


def test_same_seed_same_model_any_thread_count(data):
    X, Y, Xt, _ = data
    a = small(n_jobs=1).fit(X, Y).predict_topk(Xt, k=5)[0]
    b = small(n_jobs=1).fit(X, Y).predict_topk(Xt, k=5)[0]
    c = small(n_jobs=2).fit(X, Y).predict_topk(Xt, k=5)[0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    d = small(random_state=1).fit(X, Y).predict_topk(Xt, k=5)[0]
    assert not np.array_equal(a, d)


def test_accepts_label_lists_dense_input_and_rows_without_labels():
    rng = np.random.default_rng(0)
    X = rng.random((60, 12)).astype(np.float32)
    Y = [[i % 5] if i % 7 else [] for i in range(60)]  # some rows have no label: skipped
    clf = SlideClassifier(hidden_layer_sizes=(8,), epochs=2, random_state=0, n_jobs=1).fit(X, Y)
    assert clf.n_labels_ == 5
    assert clf.predict_topk(X, k=2)[0].shape == (60, 2)


def test_linear_model_without_hidden_layers(data):
    X, Y, Xt, Yt = data
    clf = small(hidden_layer_sizes=(), epochs=3).fit(X, Y)
    assert len(clf.coefs_) == 1
    assert precision_at_k(Yt, clf.predict_topk(Xt, k=1)[0], k=1) > 0.2


def test_errors_before_fit_and_on_wrong_shapes(data):
    X, Y, Xt, Yt = data
    with pytest.raises(NotFittedError):
        SlideClassifier().predict_topk(Xt)[0]
    with pytest.raises(DataFormatError, match="rows"):
        small().fit(X, Y[:-1])
    clf = small(epochs=1).fit(X, Y)
    with pytest.raises(DataFormatError, match="features"):
        clf.predict_topk(sp.random(3, X.shape[1] + 1, format="csr"))[0]
    with pytest.raises(ParameterError, match="'k' argument"):
        clf.predict_topk(Xt, k=0)[0]
    with pytest.raises(ParameterError, match="'mode' argument"):
        clf.predict_topk(Xt, mode="fast")[0]
    # every cut-off is checked before a kernel fills k columns: eval_k=0 once corrupted the heap,
    # retrieval_recall(k=0) aborted the process
    for bad in (0, -1, "5", 2.5, True, Y.shape[1] + 1):
        with pytest.raises(ParameterError, match=r"'k' argument of predict(_topk)? must be an int in \[1, "):
            clf.predict_topk(Xt, k=bad)[0]
        with pytest.raises(ParameterError, match="'k' argument of retrieval_recall"):
            clf.retrieval_recall(Xt, k=bad)
        with pytest.raises(ParameterError, match="'eval_k' argument of fit"):
            small(epochs=1).fit(X, Y, eval_set=(Xt, Yt), eval_k=bad)
    assert clf.predict_topk(Xt[:2], k=np.int64(Y.shape[1]))[0].shape == (2, Y.shape[1])
    with pytest.raises(DataFormatError, match=r"X contains NaN in row 0, column \d+; expected finite"):
        bad = X.copy()
        bad.data[0] = np.nan
        small().fit(bad, Y)
    with pytest.raises(ParameterError, match="no sample with a label"):
        small().fit(X, sp.csr_matrix(Y.shape, dtype=np.float32))


def test_save_load_round_trip_and_corruption(data, tmp_path):
    X, Y, Xt, _ = data
    clf = small().fit(X, Y)
    path = tmp_path / "m.npz"
    clf.save(path)
    loaded = slide.load(path)
    np.testing.assert_array_equal(loaded.predict_topk(Xt, k=5)[0], clf.predict_topk(Xt, k=5)[0])
    np.testing.assert_array_equal(loaded.predict_topk(Xt, k=5, mode="lsh")[0], clf.predict_topk(Xt, k=5, mode="lsh")[0])
    assert loaded.get_params() == clf.get_params()
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match="trunc.npz"):
        slide.load(tmp_path / "trunc.npz")
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(DataFormatError):
        slide.load(tmp_path / "flip.npz")
    with pytest.raises(DataFormatError, match="does not exist"):
        slide.load(tmp_path / "missing.npz")


def test_label_order_is_saved_and_older_files_load_with_their_padding(data, tmp_path):
    """The padding sampler's label ranks travel with the model; a file from before the sampler
    existed (no label order, no 'sampler' parameter) loads with the uniform padding it trained
    with; a label order that is not a permutation of the labels is refused."""
    from slide.io import read_arrays, write_arrays

    X, Y, Xt, _ = data
    clf = small(epochs=1).fit(X, Y)
    counts = np.bincount(Y.indices, minlength=Y.shape[1])
    assert np.all(np.diff(counts[clf.state_.label_order]) <= 0)  # by decreasing training frequency
    path = tmp_path / "m.npz"
    clf.save(path)
    np.testing.assert_array_equal(slide.load(path).state_.label_order, clf.state_.label_order)

    old = small(epochs=1, sample_correction=False, sampler="uniform").fit(X, Y)
    old.save(path)
    arrays, meta = read_arrays(path)
    del arrays["label_order"]
    del meta["params"]["sampler"]
    for spec in meta["layer_specs"]:
        del spec["sampler"]
    write_arrays(tmp_path / "old.npz", arrays, meta)
    loaded = slide.load(tmp_path / "old.npz")
    assert loaded.sampler == "uniform" and loaded.layer_specs_[-1].sampler == "uniform"
    np.testing.assert_array_equal(loaded.predict_topk(Xt, k=5)[0], old.predict_topk(Xt, k=5)[0])

    arrays, meta = read_arrays(path)
    arrays["label_order"] = np.zeros_like(arrays["label_order"])
    write_arrays(tmp_path / "bad.npz", arrays, meta)
    with pytest.raises(DataFormatError, match="label_order"):
        slide.load(tmp_path / "bad.npz")


def test_files_with_the_old_layer_setting_names_load(data, tmp_path):
    """Layer settings took their parameters' names (hashes_per_table, not K); files that stored
    the old names load with the same tables and predictions."""
    from slide.io import read_arrays, write_arrays

    X, Y, Xt, _ = data
    clf = small(epochs=1).fit(X, Y)
    clf.save(tmp_path / "m.npz")
    arrays, meta = read_arrays(tmp_path / "m.npz")
    old_names = {"hash_family": "family", "hashes_per_table": "K", "n_tables": "L", "wta_bin_size": "bin_size",
                 "simhash_density": "density"}
    meta["layer_specs"] = [{old_names.get(k, k): v for k, v in s.items()} for s in meta["layer_specs"]]
    write_arrays(tmp_path / "old.npz", arrays, meta)
    loaded = slide.load(tmp_path / "old.npz")
    assert loaded.layer_specs_ == clf.layer_specs_
    np.testing.assert_array_equal(loaded.predict_topk(Xt, k=5, mode="lsh")[0], clf.predict_topk(Xt, k=5, mode="lsh")[0])


def test_corrected_padding_keeps_the_label_prior():
    """delicious-200k dimensions (782,585 features, 205,443 labels, ~75 labels per point, a label
    prior so strong that the most popular label is in almost every point): with uncorrected
    uniform padding a frequent label absent from a sample is almost never pushed down, labels
    end up with equal logits and P@1 collapses (0.046 here); the corrected log-uniform padding
    (the default) keeps the prior (0.978), as dense training does."""
    from slide.datasets import preset

    X, Y, Xt, Yt = preset("delicious-200k", scale=0.02, random_state=0)
    Xt, Yt = Xt[:500], Yt[:500]
    common = dict(hidden_layer_sizes=(128,), epochs=2, rebuild_first=50, random_state=0, n_jobs=2)
    p1 = {}
    for name, kw in (("plain", dict(sample_correction=False, sampler="uniform")), ("corrected", {})):
        clf = SlideClassifier(**common, **kw).fit(X, Y)
        assert clf.layer_specs_[-1].lsh
        p1[name] = precision_at_k(Yt, clf.predict_topk(Xt, k=1)[0], k=1)
    assert p1["corrected"] > 0.9 and p1["corrected"] > p1["plain"] + 0.3, p1


def test_retrieval_recall_reports_sane_numbers(data):
    X, Y, Xt, _ = data
    clf = small(epochs=3).fit(X, Y)
    r = clf.retrieval_recall(Xt, k=10)
    assert 0.0 <= r["recall@10"] <= 1.0 and 0.0 <= r["softmax_mass"] <= 1.0
    assert 0 < r["active_mean"] <= clf.layer_specs_[-1].active_size
    # the retrieved sets beat a random set of the same size by a wide margin
    assert r["recall@10"] > 3 * r["active_mean"] / clf.n_labels_
    with pytest.raises(ParameterError, match="LSH output layer"):
        small(lsh_layers="none", epochs=1).fit(X, Y).retrieval_recall(Xt)


@pytest.mark.parametrize("family", ["wta", "dwta", "doph"])
def test_every_hash_family_trains(data, family):
    X, Y, Xt, Yt = data
    clf = small(hash_family=family, epochs=4, wta_bin_size=4).fit(X, Y)
    assert precision_at_k(Yt, clf.predict_topk(Xt, k=1)[0], k=1) > 0.2


@pytest.mark.parametrize("selection", ["vanilla", "threshold"])
def test_selection_modes_train(data, selection):
    X, Y, Xt, Yt = data
    clf = small(selection=selection, threshold=1, epochs=4).fit(X, Y)
    assert precision_at_k(Yt, clf.predict_topk(Xt, k=1)[0], k=1) > 0.2


def test_no_scheduled_rebuild_just_before_the_final_one(data):
    """The tables are rebuilt after the last batch: a scheduled rebuild less than half an
    interval before it is skipped (the schedule still advances)."""
    X, Y, _, _ = data
    clf = small(epochs=1, rebuild_first=10, rebuild_growth=0.0).fit(X, Y)
    n_batches = -(-int((np.diff(Y.indptr) > 0).sum()) // 64)
    due = list(range(10, n_batches + 1, 10))
    kept = [s for s in due if n_batches - s >= 5]
    assert len(kept) < len(due)  # the fixture's batch count puts one due near the end
    assert clf.state_.n_rebuilds == 1 + len(kept) + 1  # initial, scheduled, final
    assert clf.state_.schedule.count == len(due)
