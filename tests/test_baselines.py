"""The PyTorch baselines are the same network and optimiser as SlideClassifier: checked by
training both one step from the same seed, and the sampled softmax against the full one."""

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

import slide  # noqa: E402
from slide import NotFittedError, ParameterError, SlideClassifier  # noqa: E402
from slide.baselines import DenseClassifier, SampledSoftmaxClassifier  # noqa: E402
from slide.baselines.torch_nets import SHARED  # noqa: E402
from slide.config import PARAM_BY_NAME  # noqa: E402
from slide.datasets import make_extreme  # noqa: E402
from slide.metrics import precision_at_k  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return make_extreme(1500, 1500, 300, n_test=300, label_power=0.6, random_state=3)


def _one_batch_problem(seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(40, 60, density=0.1, format="csr", random_state=seed, dtype=np.float32)
    X.data[:] = rng.random(X.nnz).astype(np.float32) + 0.1
    X = X[np.diff(X.indptr) > 0]
    Y = sp.csr_matrix((np.ones(2 * X.shape[0], np.float32),
                       rng.integers(0, 25, size=2 * X.shape[0]),
                       np.arange(0, 2 * X.shape[0] + 1, 2)), shape=(X.shape[0], 25))
    Y.sum_duplicates()
    Y.data[:] = 1
    return X, Y


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_dense_baseline_takes_the_same_step_as_slide(optimizer):
    # one batch holds the whole set: after one step (and, on this tail, the rows imprinted at the
    # end of the fit) both libraries must hold the same weights
    X, Y = _one_batch_problem()
    common = dict(hidden_layer_sizes=(16,), dropout=0.0, input_dropout=0.0, epochs=1, batch_size=64,
                  learning_rate=0.01, lr_schedule="constant", optimizer=optimizer, random_state=7, n_jobs=1)
    sl = SlideClassifier(lsh_layers="none", **common).fit(X, Y)
    de = DenseClassifier(**common).fit(X, Y)
    imprints = [{c.name: c.value for c in m.recipe_}["output_imprint"] for m in (sl, de)]
    assert imprints[0] == imprints[1] > 0
    net = de.network_
    got = [net.first.weight.detach().numpy(), net.first_bias.detach().numpy(),
           net.out_weight.detach().numpy(), net.out_bias.detach().numpy()[:, 0]]
    want = [sl.coefs_[0], sl.intercepts_[0], sl.coefs_[1], sl.intercepts_[1]]
    for g, w in zip(got, want):
        # atol: 1% of one step (lr 0.01); Adam's g / (|g| + eps) is float32-sensitive where |g| ~ eps
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4)
    assert not np.allclose(sl.coefs_[1], SlideClassifier(lsh_layers="none", **{**common, "learning_rate": 1e-30})
                           .fit(X, Y).coefs_[1])  # the step moved the weights


def test_sampled_softmax_with_every_label_drawn_is_the_full_softmax():
    X, Y = _one_batch_problem(1)
    kw = dict(hidden_layer_sizes=(8,), dropout=0.0, input_dropout=0.0, label_smoothing=0.0, random_state=0, n_jobs=1)
    de = DenseClassifier(**kw)
    sa = SampledSoftmaxClassifier(n_negatives=20000, sampler="uniform", **kw)
    for clf in (de, sa):
        clf.fit(X, Y, batch_callback=lambda rec: True, batch_callback_every=1)  # initialise, stop
    sa.network_.load_state_dict(de.network_.state_dict())
    p = de._validated()
    rows = np.arange(X.shape[0])
    rng = np.random.default_rng(0)
    full = de._batch_loss(X, Y, rows, p, rng).item()
    sampled = sa._batch_loss(X, Y, rows, sa._validated(), rng).item()
    # 20000 uniform draws over 25 labels: each is in the sample with probability 1 - (24/25)^20000
    assert sampled == pytest.approx(full, rel=1e-5)


def test_dense_loss_matches_numpy_reference():
    X, Y = _one_batch_problem(2)
    de = DenseClassifier(hidden_layer_sizes=(8,), dropout=0.0, input_dropout=0.0, label_smoothing=0.0, random_state=0,
                         n_jobs=1)
    de.fit(X, Y, batch_callback=lambda rec: True, batch_callback_every=1)
    net = de.network_
    W0, b0 = net.first.weight.detach().numpy(), net.first_bias.detach().numpy()
    W1, b1 = net.out_weight.detach().numpy(), net.out_bias.detach().numpy()[:, 0]
    Xn = slide.data_checks.check_X(X, normalize="l2").toarray()
    H = np.maximum(Xn @ W0 + b0, 0)
    Z = H @ W1.T + b1
    logp = Z - Z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    Yd = Y.toarray()
    want = -(logp * Yd / Yd.sum(1, keepdims=True)).sum()  # summed over the batch, as SLIDE does
    got = (de._batch_loss(slide.data_checks.check_X(X, normalize="l2"), Y, np.arange(X.shape[0]),
                               de._validated(), None).item())
    assert got == pytest.approx(want, rel=1e-5)


def test_log_uniform_sampler_follows_zipf_over_frequency_ranks():
    rng = np.random.default_rng(0)
    L = 50
    # label popularity: id 49 most frequent, then 48, ...: ranks are reversed ids
    counts = np.arange(1, L + 1)
    Y = sp.csr_matrix((np.ones(counts.sum()), np.repeat(np.arange(L), counts), np.arange(counts.sum() + 1)),
                      shape=(counts.sum(), L))
    sa = SampledSoftmaxClassifier(n_negatives=1)
    sa._prepare(Y, {"n_negatives": 1, "sampler": "log_uniform"}, rng)
    draws = np.concatenate([sa._draw(rng, "log_uniform", 1, L) for _ in range(40000)])
    freq = np.bincount(draws, minlength=L) / draws.size
    r = np.arange(L)
    q_rank = np.log((r + 2) / (r + 1)) / np.log(L + 1)
    expect = q_rank[L - 1 - np.arange(L)]
    assert np.abs(freq - expect).max() < 0.01
    # inclusion-probability correction of one draw is log q
    np.testing.assert_allclose(sa._log_inclusion.numpy(), np.log(expect), rtol=1e-4)


@pytest.mark.parametrize("cls", [DenseClassifier, SampledSoftmaxClassifier])
def test_fit_predict_learns(data, cls):
    X, Y, Xt, Yt = data
    kw = dict(n_negatives=64) if cls is SampledSoftmaxClassifier else {}
    clf = cls(hidden_layer_sizes=(32,), epochs=8, learning_rate=0.01, random_state=0, n_jobs=1, **kw)
    assert clf.fit(X, Y, eval_set=(Xt, Yt)) is clf
    top = clf.predict(Xt, k=5)
    assert top.shape == (Xt.shape[0], 5) and top.dtype == np.int64
    assert precision_at_k(Yt, top, k=1) > 0.3  # chance is ~0.01
    assert len(clf.history_) == clf.n_iter_ == 8 and "P@1" in clf.history_[-1]
    idx, val = clf.predict_topk(Xt[:7], k=3)
    assert (np.diff(val, axis=1) <= 0).all()


def test_parameters_share_slide_names_and_validation(data):
    X, Y, _, _ = data
    clf = DenseClassifier()
    assert set(clf.get_params()) == set(SHARED)
    for name in SHARED:
        assert clf.get_params()[name] == PARAM_BY_NAME[name].default
    with pytest.raises(ParameterError, match="learning_rate"):
        DenseClassifier(learning_rate=-1).fit(X, Y)
    with pytest.raises(ParameterError, match="n_negatives"):
        SampledSoftmaxClassifier(n_negatives=0).fit(X, Y)
    with pytest.raises(ParameterError, match="sampler"):
        SampledSoftmaxClassifier().set_params(sampler="zipf")
    with pytest.raises(ParameterError, match="hidden_layer_sizes"):
        DenseClassifier(hidden_layer_sizes=()).fit(X, Y)
    with pytest.raises(NotFittedError):
        DenseClassifier().predict(X)
    fitted = DenseClassifier(hidden_layer_sizes=(4,), epochs=1, n_jobs=1).fit(X[:100], Y[:100])
    with pytest.raises(slide.DataFormatError):
        fitted.predict(sp.csr_matrix((3, X.shape[1] + 1), dtype=np.float32))
    with pytest.raises(ParameterError, match="'k' argument of predict must be an int"):
        fitted.predict(X[:3], k=0)
    # random_state in every form SlideClassifier takes (a RandomState failed validation here)
    small = dict(hidden_layer_sizes=(4,), epochs=1, n_jobs=1)
    a = DenseClassifier(**small, random_state=np.random.RandomState(3)).fit(X[:100], Y[:100])
    b = DenseClassifier(**small, random_state=np.random.RandomState(3)).fit(X[:100], Y[:100])
    np.testing.assert_array_equal(a.predict(X[:20], k=3), b.predict(X[:20], k=3))
    DenseClassifier(**small, random_state=np.random.default_rng(3)).fit(X[:100], Y[:100])
    with pytest.raises(ParameterError, match="RandomState or a Generator"):
        DenseClassifier(**small, random_state=1.5).fit(X[:100], Y[:100])


def test_label_tree_adapter(data):
    pytest.importorskip("omikuji")
    from slide.baselines import LabelTreeClassifier

    X, Y, Xt, Yt = data
    clf = LabelTreeClassifier(n_trees=1, n_jobs=1).fit(X, Y)
    top = clf.predict(Xt, k=5)
    assert top.shape == (Xt.shape[0], 5)
    assert precision_at_k(Yt, top, k=1) > 0.3


def test_pecos_adapter(data):
    """Runs where an interpreter with libpecos is known ($SLIDE_PECOS_PYTHON); skips elsewhere."""
    from slide.baselines import PecosClassifier
    from slide.baselines.xr_linear import pecos_python

    if pecos_python() is None:
        pytest.skip("no interpreter with libpecos ($SLIDE_PECOS_PYTHON)")
    X, Y, Xt, Yt = data
    clf = PecosClassifier(n_jobs=1).fit(X, Y)
    top = clf.predict(Xt, k=5)
    assert top.shape == (Xt.shape[0], 5)
    assert precision_at_k(Yt, top, k=1) > 0.3 and clf.train_seconds_ > 0


def test_pecos_without_an_interpreter_says_how_to_get_one(data, monkeypatch):
    from slide.baselines import PecosClassifier
    from slide.baselines import xr_linear

    monkeypatch.delenv(xr_linear.ENV_PYTHON, raising=False)
    monkeypatch.setattr(xr_linear, "pecos_python", lambda python=None: python)
    X, Y, _, _ = data
    with pytest.raises(slide.SlideError, match="pip install libpecos"):
        PecosClassifier().fit(X, Y)
