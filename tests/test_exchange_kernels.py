"""The records data-parallel workers exchange (slide.kernels.exchange), without any process group.

A batch is trained into the slots of one model; its records are packed from a range of slots and
unpacked into other slots of a second model of the same shape. Every array the optimiser pass reads
must arrive unchanged, so the optimiser step on the unpacked batch equals the step on the original
bit for bit; the touched-row marks equal the row sets NumPy finds in the same buffers.
"""

import numpy as np
import pytest

from slide.kernels import exchange as KX
from slide.kernels import train as K
from slide.network import _tl
from slide.training import optimizer_step
from test_training_kernels import CASES, _problem, _setup


def _run_batch(state, X, Y, rows):
    """Forward and backward of ``rows`` into slots 0 .., no optimiser step."""
    K.train_batch(state.net, state.lsh, state.work, state.grad, X.indptr, X.indices, X.data, Y.indptr, Y.indices,
                  rows, 0, 0, np.uint64(7), 0, 1, np.zeros(1), np.zeros((1, K.N_PHASES), np.uint64))


def _records(state, lo, n):
    """What the optimiser reads of slots lo .. lo + n - 1, per slot, as plain arrays."""
    w, out = state.work, []
    for s in range(lo, lo + n):
        rec = [w.x_idx[s, :w.x_n[s]].copy(), w.x_val[s, :w.x_n[s]].copy(), w.n_active[s].copy()]
        for l, spec in enumerate(state.specs):
            m = w.n_active[s, l]
            if spec.lsh:
                rec.append(w.act_ids[l][s, :m].copy())
            if l < len(state.specs) - 1:
                rec.append(w.act[l][s, :m].copy())
            rec.append(w.delta[l][s, :m].copy())
        out.append(rec)
    return out


@pytest.mark.parametrize("params", CASES, ids=lambda c: f"{c['hidden_layer_sizes']}-{c['lsh_layers']}")
def test_records_round_trip_and_give_the_same_update(params):
    X, Y = _problem()
    a, p = _setup(X, Y, **params)
    b, _ = _setup(X, Y, **params)
    rows = np.arange(X.shape[0], dtype=np.int64)
    _run_batch(a, X, Y, rows)
    n = rows.size
    size = KX.records_size(a.net, a.work, 0, n)
    buf = np.full(size + 7, np.nan, np.float32)
    assert KX.pack_records(a.net, a.work, 0, n, buf) == size
    # into the second model in two pieces, at other slots first (a worker's share lands at its offset)
    half = n // 2
    first = KX.records_size(a.net, a.work, 0, half)
    assert KX.unpack_records(b.net, b.work, 0, half, buf[:first], b.max_nnz) == first
    assert KX.unpack_records(b.net, b.work, half, n - half, buf[first:size], b.max_nnz) == size - first
    for ra, rb in zip(_records(a, 0, n), _records(b, 0, n)):
        for x, y in zip(ra, rb):
            np.testing.assert_array_equal(x, y)
    optimizer_step(a, p, n)
    optimizer_step(b, p, n)
    for l in range(len(a.specs)):
        np.testing.assert_array_equal(a.net.W.arrays[l], b.net.W.arrays[l])
        np.testing.assert_array_equal(a.net.b.arrays[l], b.net.b.arrays[l])


def test_a_record_that_does_not_fit_is_refused():
    X, Y = _problem()
    a, _ = _setup(X, Y, hidden_layer_sizes=(16,), lsh_layers="none")
    _run_batch(a, X, Y, np.arange(4, dtype=np.int64))
    buf = np.zeros(KX.records_size(a.net, a.work, 0, 4), np.float32)
    KX.pack_records(a.net, a.work, 0, 4, buf)
    buf.view(np.int32)[0] = a.max_nnz + 1  # more input non-zeros than the buffers hold
    assert KX.unpack_records(a.net, a.work, 0, 4, buf, a.max_nnz) == -1


def test_touched_marks_are_the_rows_the_batch_updates():
    X, Y = _problem()
    state, _ = _setup(X, Y, hidden_layer_sizes=(16,), lsh_layers="output", active_size=6, min_active=10,
                      n_tables=4)
    rows = np.arange(10, dtype=np.int64)
    _run_batch(state, X, Y, rows)
    marks = _tl([np.zeros(X.shape[1], np.uint8), np.zeros(Y.shape[1], np.uint8)])
    KX.mark_touched(state.net, state.work, rows.size, marks)
    w = state.work
    features = np.unique(np.concatenate([w.x_idx[s, :w.x_n[s]] for s in range(rows.size)]))
    outputs = np.unique(np.concatenate([w.act_ids[1][s, :w.n_active[s, 1]] for s in range(rows.size)]))
    np.testing.assert_array_equal(np.flatnonzero(marks.arrays[0]), features)
    np.testing.assert_array_equal(np.flatnonzero(marks.arrays[1]), outputs)
