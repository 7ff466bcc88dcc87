"""The compiled training step against a plain NumPy reference.

One batch goes through ``train_batch`` (forward, loss, backward) and ``apply_batch`` (gradient
assembly and the optimiser step). The reference recomputes everything in float64 from the
weights before the step, using the active sets the kernel recorded (for LSH layers) or every
neuron (dense layers): forward values, loss, every gradient, and the Adam / SGD update of the
touched rows. Untouched rows must not change at all.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from slide import SlideClassifier
from slide.config import validate_params
from slide.data_checks import check_X, check_Y
from slide.kernels import train as K
from slide import network
from slide.network import init_weights, label_order, resolve_specs
from slide.state import TrainState
from slide.training import optimizer_step


def _problem(n=24, d=40, n_labels=30, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.2, random_state=seed, format="csr", dtype=np.float32)
    X.data = rng.uniform(0.1, 1.0, X.nnz).astype(np.float32)
    rows, cols = [], []
    for i in range(n):
        k = rng.integers(1, 4)
        for j in rng.choice(n_labels, size=k, replace=False):
            rows.append(i)
            cols.append(j)
    Y = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n_labels))
    return check_X(X, normalize="l2"), check_Y(Y, n_rows=n)


def _setup(X, Y, n_threads=1, **params):
    clf = SlideClassifier(**{"random_state": 0, "n_jobs": n_threads, "dropout": 0.0, "input_dropout": 0.0,
                             "label_smoothing": 0.0, "lr_schedule": "constant", **params})
    p = validate_params(clf.get_params())
    specs = resolve_specs(p, X.shape[1], Y.shape[1])
    Ws, bs = init_weights(specs, np.random.default_rng(0), 3.0)  # large init: non-trivial ReLUs
    rng = np.random.default_rng(1)
    bs = [rng.normal(0, 0.1, b.shape).astype(np.float32) for b in bs]
    state = TrainState.build(p, specs, Ws, bs, seed=0, label_order=label_order(Y, Y.shape[1]),
                             max_labels=int(np.diff(Y.indptr).max()), max_nnz=int(np.diff(X.indptr).max()))
    state.rebuild_tables(initial=True)
    return state, p


def _run_batch(clf, p, X, Y, rows, n_threads=1):
    losses = np.zeros(n_threads)
    timers = np.zeros((n_threads, K.N_PHASES), np.uint64)
    K.train_batch(clf.net, clf.lsh, clf.work, clf.grad, X.indptr, X.indices, X.data, Y.indptr, Y.indices, rows, 0, 0,
                  np.uint64(7), 0, n_threads, losses, timers)
    snapshot = {
        "x_idx": clf.work.x_idx.copy(),
        "x_val": clf.work.x_val.copy(),
        "x_n": clf.work.x_n.copy(),
        "ids": [a.copy() for a in clf.work.act_ids],
        "n_active": clf.work.n_active.copy(),
        "n_head": clf.work.n_head.copy(),
        "pad_tries": clf.work.pad_tries.copy(),
        "act": [a.copy() for a in clf.work.act],
        "delta": [a.copy() for a in clf.work.delta],
    }
    clf.step = 0
    optimizer_step(clf, p, rows.size)
    return losses.sum(), snapshot


def _log_inclusion(spec, A, n_head, tries, ranked):
    """log of the inclusion probability of the padded ids A[n_head:] (the sampling correction)."""
    pad = A[n_head:]
    if spec.sampler == "uniform":
        return np.full(len(pad), np.log((len(A) - n_head) / (spec.n_out - n_head)))
    rank = np.argsort(ranked)[pad]
    q = np.log((rank + 2.0) / (rank + 1.0)) / np.log(spec.n_out + 1.0)
    return np.log(1.0 - (1.0 - q) ** tries)


def _reference(W, b, specs, X, Y, rows, snap, ranked, dropout=0.0, label_smoothing=0.0):
    """Float64 forward/backward over the recorded active sets (and, with dropout, the recorded
    dropout masks: a hidden unit the kernel zeroed although its ReLU was positive was dropped;
    the input after input dropout is the one the kernel recorded; with the sampling correction,
    the recorded padding). Returns loss, per-layer active outputs, deltas, and full weight/bias
    gradients."""
    n_layers = len(W)
    gW = [np.zeros(w.shape) for w in W]
    gb = [np.zeros(v.shape) for v in b]
    touched_rows = [set() for _ in W]
    touched_bias = [set() for _ in W]
    loss = 0.0
    outs, deltas = [], []
    scale = 1.0 / (1.0 - dropout)
    for s, r in enumerate(rows):
        x = np.zeros(X.shape[1])
        n_x = snap["x_n"][s]
        x[snap["x_idx"][s][:n_x]] = snap["x_val"][s][:n_x]
        acts, actives = [x], []
        for l in range(n_layers):
            if specs[l].lsh:
                A = snap["ids"][l][s][: snap["n_active"][s, l]].astype(int)
            else:
                A = np.arange(specs[l].n_out)
            actives.append(A)
            Wl = W[l].astype(np.float64)
            z = (acts[-1] @ Wl if l == 0 else Wl @ acts[-1]) + b[l]
            a = np.zeros(specs[l].n_out)
            a[A] = z[A] if l == n_layers - 1 else np.maximum(z[A], 0)
            if l < n_layers - 1 and dropout > 0:
                kept = snap["act"][l][s][: len(A)] != 0
                a[A] = np.where(kept, a[A] * scale, 0.0)
            acts.append(a)
        A = actives[-1]
        zA = acts[-1][A]
        if specs[-1].lsh and specs[-1].sample_correction:
            n_head = snap["n_head"][s, -1]
            zA = zA.copy()
            zA[n_head:] -= _log_inclusion(specs[-1], A, n_head, snap["pad_tries"][s, -1], ranked)
        p = np.exp(zA - zA.max())
        p /= p.sum()
        labels = Y[r].indices
        y = (1.0 - label_smoothing) * np.isin(A, labels) / len(labels) + label_smoothing / len(A)
        loss -= np.sum(y * np.log(np.where(y > 0, p, 1.0)))
        d = np.zeros(specs[-1].n_out)
        d[A] = p - y
        outs.append((A, p))
        sample_deltas = [None] * n_layers
        sample_deltas[-1] = d
        for l in range(n_layers - 1, -1, -1):
            dl = sample_deltas[l]
            Al = actives[l]
            Wl = W[l].astype(np.float64)
            if l == 0:
                gW[0] += np.outer(acts[0], dl)
                touched_rows[0].update(snap["x_idx"][s][: snap["x_n"][s]].tolist())
            else:
                gW[l] += np.outer(dl, acts[l])
                touched_rows[l].update(Al.tolist())
                prev = Wl.T @ dl
                prev = np.where(acts[l] > 0, prev * scale, 0.0)
                sample_deltas[l - 1] = prev
            gb[l] += dl
            touched_bias[l].update(Al.tolist())
        deltas.append(sample_deltas)
    return loss, outs, deltas, gW, gb, touched_rows, touched_bias


def _adam(w, g, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m = (1 - b1) * g
    v = (1 - b2) * g * g
    return w - lr * (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)


CASES = [
    dict(hidden_layer_sizes=(16,), lsh_layers="none"),
    dict(hidden_layer_sizes=(16,), lsh_layers="output", active_size=10, min_active=12, n_tables=4),
    dict(hidden_layer_sizes=(16, 12), lsh_layers="none"),
    dict(hidden_layer_sizes=(16, 12), lsh_layers="output", active_size=10, min_active=12, n_tables=4),
    dict(hidden_layer_sizes=(16, 12), lsh_layers="all", active_size=8, n_tables=6, hashes_per_table=3),
    dict(hidden_layer_sizes=(16, 12), lsh_layers=(1,), active_size=6, n_tables=6, hash_family="dwta",
         wta_bin_size=4),
    dict(hidden_layer_sizes=(), lsh_layers="output", active_size=10, n_tables=5),
    dict(hidden_layer_sizes=(16,), lsh_layers="output", active_size=6, min_active=14, n_tables=4,
         sample_correction=True, sampler="uniform"),
    dict(hidden_layer_sizes=(16,), lsh_layers="output", active_size=6, min_active=14, n_tables=4,
         sample_correction=True, sampler="log_uniform"),
    dict(hidden_layer_sizes=(16,), lsh_layers="none", label_smoothing=0.3),
    dict(hidden_layer_sizes=(16,), lsh_layers="output", active_size=6, min_active=14, n_tables=4,
         sample_correction=True, sampler="log_uniform", label_smoothing=0.2),
]


# (optimizer, input_optimizer, input_learning_rate): the first layer's weights may have their own
OPTIMIZERS = [("adam", "auto", "auto"), ("sgd", "auto", "auto"), ("adam", "sgd", 0.5), ("sgd", "adam", 0.02)]


@pytest.mark.parametrize("params", CASES, ids=lambda c: f"{c['hidden_layer_sizes']}-{c['lsh_layers']}"
                         + (f"-corrected-{c['sampler']}" if c.get("sample_correction") else "")
                         + (f"-smoothing-{c['label_smoothing']}" if c.get("label_smoothing") else ""))
@pytest.mark.parametrize("optimizers", OPTIMIZERS, ids=lambda o: o[0] if o[1] == "auto" else f"{o[0]}-input-{o[1]}")
@pytest.mark.parametrize("by_rows", [True, False], ids=["rows-allowed", "per-sample"])
def test_batch_matches_numpy_reference(params, optimizers, by_rows, monkeypatch):
    """Every case against the reference; an LSH output layer on a dense hidden layer runs row by
    row unless its partial sums may not have the memory (then per sample). The first layer's
    weights follow input_optimizer at input_learning_rate, every other array optimizer."""
    if not by_rows:
        monkeypatch.setattr(network, "ROW_PARTS_BYTES", 0)
    optimizer, input_opt, input_lr = optimizers
    X, Y = _problem()
    clf, p = _setup(X, Y, optimizer=optimizer, learning_rate=0.01, batch_size=8, input_optimizer=input_opt,
                    input_learning_rate=input_lr, **params)
    specs = clf.specs
    assert (clf.work.dpart.shape[0] > 0) == (by_rows and len(specs) >= 2 and specs[-1].lsh and not specs[-2].lsh)
    W0 = [w.copy() for w in clf.net.W]
    b0 = [v.copy() for v in clf.net.b]
    rows = np.array([3, 0, 7, 11, 5, 19, 2, 23], np.int64)
    loss, snap = _run_batch(clf, p, X, Y, rows)
    ref_loss, outs, deltas, gW, gb, t_rows, t_bias = _reference(W0, b0, specs, X, Y, rows, snap, ranked=clf.label_order,
                                                                label_smoothing=params.get("label_smoothing", 0.0))
    assert loss == pytest.approx(ref_loss, rel=1e-4)
    if specs[-1].sample_correction:  # the case pads: some samples have corrected positions
        assert np.any(snap["n_active"][:, -1] > snap["n_head"][:, -1])
    out_l = len(specs) - 1
    for s, (A, prob) in enumerate(outs):
        got = snap["act"][out_l][s][: len(A)] if specs[-1].lsh else snap["act"][out_l][s][A]
        np.testing.assert_allclose(got, prob, rtol=1e-4, atol=1e-6)
        # labels come first in an LSH output layer's active set
        if specs[-1].lsh:
            labs = Y[rows[s]].indices
            assert set(A[: len(labs)].tolist()) == set(labs.tolist())
    for l in range(len(specs)):
        lr = 0.01
        w_opt, w_lr = (input_opt, input_lr) if l == 0 and input_opt != "auto" else (optimizer, lr)
        if w_opt == "adam":
            exp_W = W0[l].astype(np.float64).copy()
            rows_l = sorted(t_rows[l])
            exp_W[rows_l] = _adam(exp_W[rows_l], gW[l][rows_l], lr=w_lr)
        else:
            exp_W = W0[l] - w_lr * gW[l]
        if optimizer == "adam":
            exp_b = b0[l].astype(np.float64).copy()
            bl = sorted(t_bias[l])
            exp_b[bl] = _adam(exp_b[bl], gb[l][bl], lr=lr)
        else:
            exp_b = b0[l] - lr * gb[l]
        np.testing.assert_allclose(clf.net.W[l], exp_W, rtol=2e-4, atol=2e-6, err_msg=f"weights of layer {l}")
        np.testing.assert_allclose(clf.net.b[l], exp_b, rtol=2e-4, atol=2e-6, err_msg=f"biases of layer {l}")
        # rows nobody touched are bit-for-bit unchanged (lazy updates)
        untouched = np.setdiff1d(np.arange(W0[l].shape[0]), sorted(t_rows[l]))
        np.testing.assert_array_equal(clf.net.W[l][untouched], W0[l][untouched])
        if w_opt == "adam":
            m = clf.net.mW[l]
            np.testing.assert_allclose(m[sorted(t_rows[l])], 0.1 * gW[l][sorted(t_rows[l])], rtol=2e-4, atol=1e-7)
            assert not m[untouched].any()


@pytest.mark.parametrize("lsh_layers", ["none", "output"])
def test_dropout_and_input_dropout_match_reference(lsh_layers):
    X, Y = _problem()
    rate = 0.3
    clf, p = _setup(X, Y, optimizer="sgd", learning_rate=0.01, batch_size=8, hidden_layer_sizes=(16, 12),
                    lsh_layers=lsh_layers, active_size=10, n_tables=4, dropout=rate, input_dropout=0.4)
    specs = clf.specs
    W0 = [w.copy() for w in clf.net.W]
    b0 = [v.copy() for v in clf.net.b]
    rows = np.array([3, 0, 7, 11, 5, 19, 2, 23], np.int64)
    loss, snap = _run_batch(clf, p, X, Y, rows)
    # input dropout kept some but not all non-zeros, scaled by 1 / (1 - 0.4)
    total = sum(X[r].nnz for r in rows)
    assert 0 < snap["x_n"].sum() < total
    for s, r in enumerate(rows):
        row = X[r].toarray().ravel()
        got_i = snap["x_idx"][s][: snap["x_n"][s]]
        np.testing.assert_allclose(snap["x_val"][s][: snap["x_n"][s]], row[got_i] / 0.6, rtol=1e-6)
    ref_loss, _, _, gW, gb, _, _ = _reference(W0, b0, specs, X, Y, rows, snap, dropout=rate, ranked=clf.label_order)
    assert loss == pytest.approx(ref_loss, rel=1e-4)
    for l in range(len(specs)):
        np.testing.assert_allclose(clf.net.W[l], W0[l] - 0.01 * gW[l], rtol=2e-4, atol=2e-6)
        np.testing.assert_allclose(clf.net.b[l], b0[l] - 0.01 * gb[l], rtol=2e-4, atol=2e-6)


def test_gradients_with_every_neuron_active_match_finite_differences():
    """With every neuron active, the assembled gradient equals a central finite difference of
    the (float64) loss, for a few random weights of each layer."""
    X, Y = _problem(n=6, d=12, n_labels=7)
    clf, p = _setup(X, Y, optimizer="sgd", learning_rate=1.0, batch_size=6, hidden_layer_sizes=(5, 4),
                    lsh_layers="none")
    W0 = [w.astype(np.float64) for w in clf.net.W]
    b0 = [v.astype(np.float64) for v in clf.net.b]
    rows = np.arange(6, dtype=np.int64)
    _run_batch(clf, p, X, Y, rows)
    grads = [W0[l] - clf.net.W[l] for l in range(len(W0))]  # SGD with lr 1: the gradient

    def loss_of(Ws):
        total = 0.0
        for r in rows:
            a = X[r].toarray().ravel().astype(np.float64)
            for l, Wl in enumerate(Ws):
                z = (a @ Wl if l == 0 else Wl @ a) + b0[l]
                a = z if l == len(Ws) - 1 else np.maximum(z, 0)
            lse = np.log(np.exp(a - a.max()).sum()) + a.max()
            labels = Y[r].indices
            total -= np.mean(a[labels] - lse)
        return total

    rng = np.random.default_rng(3)
    for l in range(len(W0)):
        for _ in range(5):
            i, j = (rng.integers(0, n) for n in W0[l].shape)
            if l == 0 and X[:, i].nnz == 0:
                continue
            eps = 1e-5
            Wp = [w.copy() for w in W0]
            Wm = [w.copy() for w in W0]
            Wp[l][i, j] += eps
            Wm[l][i, j] -= eps
            fd = (loss_of(Wp) - loss_of(Wm)) / (2 * eps)
            assert grads[l][i, j] == pytest.approx(fd, rel=2e-3, abs=2e-5), (l, i, j)


def test_a_grouping_left_by_a_batch_given_up_or_shared_is_not_reused():
    """An output layer computed row by row leaves its entries grouped for the optimiser pass,
    which reuses them only when they are exactly the batch it updates: a batch that never reached
    its optimiser pass, or a data-parallel worker's share of the slots, is regrouped."""
    X, Y = _problem()
    params = dict(optimizer="sgd", learning_rate=0.01, batch_size=8, hidden_layer_sizes=(16,), lsh_layers="output",
                  active_size=10, min_active=12, n_tables=4)
    rows = np.array([3, 0, 7, 11, 5, 19, 2, 23], np.int64)
    fresh, p = _setup(X, Y, **params)
    _run_batch(fresh, p, X, Y, rows)
    assert fresh.grad.grouped[-1] == 0 and not fresh.grad.count[-1].any()
    given_up, p = _setup(X, Y, **params)
    losses, timers = np.zeros(1), np.zeros((1, K.N_PHASES), np.uint64)
    # another batch's forward and backward, its grouping left behind (no optimiser pass) ...
    K.train_batch(given_up.net, given_up.lsh, given_up.work, given_up.grad, X.indptr, X.indices, X.data, Y.indptr,
                  Y.indices, rows[::-1].copy(), 0, 0, np.uint64(7), 0, 1, losses, timers)
    assert given_up.grad.grouped[-1] == rows.size
    _run_batch(given_up, p, X, Y, rows)  # ... then the batch itself
    for a, b in zip(fresh.net.W, given_up.net.W):
        np.testing.assert_array_equal(a, b)
    # a share of the slots (here the first half: slots [0, 4)) is grouped, not the batch of 8
    share, _ = _setup(X, Y, **params)
    K.train_batch(share.net, share.lsh, share.work, share.grad, X.indptr, X.indices, X.data, Y.indptr, Y.indices,
                  rows[4:].copy(), 4, 4, np.uint64(7), 0, 1, losses, timers)
    assert share.grad.grouped[-1] == -1


@pytest.mark.parametrize("by_rows", [True, False], ids=["output-by-rows", "per-sample"])
def test_thread_count_does_not_change_the_result(by_rows, monkeypatch):
    """Samples only read weights, each row is updated by one thread in sample order, and the
    output layer's row-by-row backward pass adds fixed row blocks in block order, so two threads
    give bit-identical weights to one thread."""
    if not by_rows:
        monkeypatch.setattr(network, "ROW_PARTS_BYTES", 0)
    X, Y = _problem(n=64, d=60, n_labels=50)
    results = []
    for n_threads in (1, 2):
        clf = SlideClassifier(hidden_layer_sizes=(16,), lsh_layers="output", active_size=12, n_tables=6,
                              epochs=2, batch_size=16, random_state=0, n_jobs=n_threads, input_dropout=0.2)
        clf.fit(X, Y)
        assert (clf.state_.work.dpart.shape[0] > 0) == by_rows
        results.append([w.copy() for w in clf.coefs_])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_every_kernel_states_its_fastmath_flags():
    # Numba compiles a callee that sets no fastmath option with the flags of whichever caller
    # compiled it first, and caches it under a key that ignores flags: a hashing or selection
    # kernel then rounded differently depending on compile order (prediction first, or training
    # first) and on the on-disk cache. Stating the flags on every kernel makes them fixed.
    import importlib
    import pkgutil

    import numba

    import slide.kernels

    names = [f"slide.kernels.{m.name}" for m in pkgutil.iter_modules(slide.kernels.__path__)]
    names += ["slide.predict", "slide.lsh", "slide.data", "slide.metrics"]
    found = []
    for name in names:
        mod = importlib.import_module(name)
        for attr, obj in vars(mod).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.__module__ == name:
                found.append(attr)
                assert "fastmath" in obj.targetoptions, f"{name}.{attr} does not state fastmath"
    assert len(found) > 40


@pytest.mark.parametrize("sampler", ["uniform", "log_uniform"])
def test_sampling_correction_estimates_the_full_softmax_denominator(sampler):
    """The corrected padding is a Horvitz-Thompson estimate of the softmax mass outside the head:
    averaged over many draws, sum over padded j of exp(z_j) / pi_j matches sum over the tail of
    exp(z_j), here with logits that follow the label frequency (the case where uncorrected
    padding misses most of the mass)."""
    from slide.kernels.layers import correct_padding
    from slide.kernels.rng import stream_seed
    from slide.kernels.tables import LOG_UNIFORM, UNIFORM, log_uniform_sequence, pad_from_sequence, pad_random
    from slide.network import log_uniform_log1mq

    n, n_head, target, reps = 2000, 25, 150, 4000
    gen = np.random.default_rng(3)
    ranked = gen.permutation(n).astype(np.int32)
    rank_of = np.argsort(ranked)
    z_all = (-1.2 * np.log1p(rank_of) + gen.normal(0, 0.5, n)).astype(np.float32)  # popular = large
    head = gen.choice(n, n_head, replace=False).astype(np.int32)
    tail = np.setdiff1d(np.arange(n), head)
    want = np.exp(z_all[tail].astype(np.float64)).sum()
    log1mq = log_uniform_log1mq(ranked)
    est = np.empty(reps)
    for r in range(reps):
        stamp = np.zeros(n, np.int64)
        stamp[head] = 1
        out = np.zeros(target, np.int32)
        out[:n_head] = head
        rng = np.array([stream_seed(17, r, 0)], np.uint64)
        if sampler == "uniform":
            m, tries = pad_random(n, target, stamp, 1, out, n_head, rng), 0
        else:
            seq, seq_try = np.zeros(target, np.int32), np.zeros(target, np.int64)
            k, total = log_uniform_sequence(ranked, target, 1 << 20, rng, np.zeros(n, np.int64), 1, seq, seq_try)
            m, tries = pad_from_sequence(target, stamp, 1, out, n_head, seq, seq_try, k, total)
        z = z_all[out[:m]].copy()
        correct_padding(z, out, n_head, m, n, UNIFORM if sampler == "uniform" else LOG_UNIFORM, tries, log1mq)
        est[r] = np.exp(z[n_head:].astype(np.float64)).sum()
    mean, se = est.mean(), est.std() / np.sqrt(reps)
    assert abs(mean - want) < max(4 * se, 0.02 * want), (mean, want, se)
    if sampler == "log_uniform":  # the frequency-ranked proposal has a much smaller variance here
        assert est.std() < 0.1 * want


def test_prefaulted_moments_train_alike_and_a_prediction_load_leaves_them_lazy(monkeypatch, tmp_path):
    """Moments mapped with their pages present (MAP_POPULATE, from PREFAULT_BYTES up) are zeros
    like np.zeros': a fit over them gives the same weights bit for bit. A model loaded for
    prediction only keeps lazily allocated zero moments."""
    import mmap

    import slide
    import slide.network as network

    if not hasattr(mmap, "MAP_POPULATE"):
        pytest.skip("no MAP_POPULATE on this platform")

    def mapped(arr):  # the buffer under the views: an mmap (through a memoryview) or not
        while isinstance(arr, np.ndarray):
            arr = arr.base
        return isinstance(getattr(arr, "obj", arr), mmap.mmap)

    X, Y = _problem(n=60, d=50, n_labels=40)
    params = {"random_state": 0, "n_jobs": 1, "epochs": 2, "hidden_layer_sizes": (16,), "lsh_layers": "output"}
    plain = SlideClassifier(**params).fit(X, Y)
    monkeypatch.setattr(network, "PREFAULT_BYTES", 1)  # every moment array prefaulted
    a = network.azeros((3, 5), np.float64, prefault=True)
    assert mapped(a) and a.flags.writeable and a.flags.c_contiguous
    assert a.ctypes.data % network.ALIGN == 0 and not a.any()
    pre = SlideClassifier(**params).fit(X, Y)
    assert all(mapped(m) for m in pre.state_.net.mW.arrays) and not mapped(pre.state_.weights[0])
    for w0, w1 in zip(plain.state_.weights, pre.state_.weights):
        assert np.array_equal(w0, w1)
    pre.save(tmp_path / "m.npz")
    lazy = slide.load(tmp_path / "m.npz", optimizer_state=False)
    assert not any(mapped(m) for m in lazy.state_.net.mW.arrays)
    assert not any(m.any() for m in lazy.state_.net.vW.arrays)
