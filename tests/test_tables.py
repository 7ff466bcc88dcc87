"""Hash tables (slide.kernels.tables), the rebuild schedule (slide.lsh) and the counter-based RNG
(slide.kernels.rng).

Insertion policies (FIFO keeps the latest ids, reservoir a uniform sample), the three active-set
selection modes against a NumPy counting reference, stamping (no duplicates, tags reused across
samples without clearing), random padding, and edge cases of active_size. Fixed seeds throughout.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit
from scipy.stats import chi2

from slide.kernels.rng import mix64, next_u64, rand_below, rand_uniform, stream_seed
from slide.kernels.tables import (
    FIFO,
    RESERVOIR,
    THRESHOLD,
    TOPK,
    VANILLA,
    insert_id,
    insert_keys,
    log_uniform_sequence,
    pad_from_sequence,
    pad_random,
    select_active,
)
from slide.lsh import RebuildSchedule


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
@njit(cache=False)
def _offer_stream(buckets, fill, t, key, ids, policy, rng):
    for i in range(ids.shape[0]):
        insert_id(buckets, fill, t, key, ids[i], policy, rng)


def empty_tables(L, n_buckets, cap):
    return np.full((L, n_buckets, cap), -1, np.int32), np.zeros((L, n_buckets), np.int32)


class Selector:
    """The per-thread buffers select_active needs, for a layer of ``n`` neurons."""

    def __init__(self, n, L, cap, out_size=None, seed=0):
        self.stamp = np.zeros(n, np.int64)
        self.count = np.zeros(n, np.int32)
        self.cand = np.zeros(L * cap, np.int32)
        self.out = np.full(n if out_size is None else out_size, -1, np.int32)
        self.order = np.zeros(L, np.int64)
        self.rng = np.array([stream_seed(seed, 0, 0)], np.uint64)
        self.tag = 0

    def new_tag(self):
        self.tag += 1
        return self.tag

    def select(self, buckets, fill, keys, mode, active_size, threshold=1, preset=()):
        tag = self.new_tag()
        n_out = 0
        for j in preset:  # ids already in the active set (e.g. the true labels)
            self.stamp[j] = tag
            self.out[n_out] = j
            n_out += 1
        n = select_active(buckets, fill, np.asarray(keys, np.int64), mode, active_size, threshold,
                          self.stamp, self.count, tag, self.cand, self.out, n_out, self.order, self.rng)
        return self.out[:n].copy()


def retrieved_lists(buckets, fill, keys):
    cap = buckets.shape[2]
    return [buckets[t, k, : min(fill[t, k], cap)].tolist() for t, k in enumerate(keys)]


def ref_counts(buckets, fill, keys, n):
    counts = np.zeros(n, np.int64)
    for lst in retrieved_lists(buckets, fill, keys):
        np.add.at(counts, np.asarray(lst, np.int64), 1)
    return counts


def by_table(keys):
    """(n_neurons, L) keys -> the (L, n_neurons) int32 layout insert_keys reads."""
    return np.ascontiguousarray(keys.T, dtype=np.int32)


@pytest.fixture(scope="module")
def random_tables():
    """L=8 tables of 16 buckets of 6 ids over 200 neurons (some buckets overflow)."""
    N, L, nb, cap = 200, 8, 16, 6
    rng = np.random.default_rng(0)
    buckets, fill = empty_tables(L, nb, cap)
    keys = rng.integers(0, nb, (N, L)).astype(np.int64)
    ids = rng.permutation(N).astype(np.int32)
    insert_keys(buckets, fill, by_table(keys), ids, RESERVOIR, 1, 0)
    return N, buckets, fill


def _queries(n_q, L, nb, seed=1):
    return np.random.default_rng(seed).integers(0, nb, (n_q, L)).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# insertion
# ---------------------------------------------------------------------------------------------
def test_fifo_keeps_last_ids_in_ring_order():
    cap = 5
    buckets, fill = empty_tables(1, 2, cap)
    rng = np.zeros(1, np.uint64)
    for n in (3, 5, 13):
        buckets[:] = -1
        fill[:] = 0
        ids = (np.arange(n) * 7 + 100).astype(np.int32)
        _offer_stream(buckets, fill, 0, 1, ids, FIFO, rng)
        assert fill[0, 1] == n and fill[0, 0] == 0
        kept = buckets[0, 1, : min(n, cap)]
        assert sorted(kept.tolist()) == sorted(ids[-cap:].tolist())
        # slot i % cap holds the i-th id offered: the ring's oldest entry sits at n % cap
        for i in range(max(0, n - cap), n):
            assert buckets[0, 1, i % cap] == ids[i]
        assert np.all(buckets[0, 0] == -1)
    assert rng[0] == 0  # FIFO draws no random numbers


def test_insert_keys_fill_counts_and_fifo_contents():
    L, nb, cap, n = 4, 8, 3, 100
    rng = np.random.default_rng(2)
    keys = rng.integers(0, nb, (n, L)).astype(np.int64)
    ids = rng.permutation(1000)[:n].astype(np.int32)
    buckets, fill = empty_tables(L, nb, cap)
    keys_t = np.zeros((L, 1000), np.int32)  # keys by neuron id; ids are inserted in the order given
    keys_t[:, ids] = keys.T
    insert_keys(buckets, fill, keys_t, ids, FIFO, 3, 0)
    for t in range(L):
        assert np.array_equal(fill[t], np.bincount(keys[:, t], minlength=nb))
        for k in range(nb):
            offered = ids[keys[:, t] == k]
            assert sorted(buckets[t, k, : min(len(offered), cap)].tolist()) == sorted(offered[-cap:].tolist())


def test_reservoir_keeps_every_id_while_not_full_then_a_sample():
    cap = 8
    buckets, fill = empty_tables(1, 1, cap)
    rng = np.array([5], np.uint64)
    ids = np.arange(6, dtype=np.int32)
    _offer_stream(buckets, fill, 0, 0, ids, RESERVOIR, rng)
    assert buckets[0, 0, :6].tolist() == list(range(6)) and fill[0, 0] == 6
    _offer_stream(buckets, fill, 0, 0, np.arange(6, 50, dtype=np.int32), RESERVOIR, rng)
    assert fill[0, 0] == 50
    kept = buckets[0, 0].tolist()
    assert len(set(kept)) == cap and all(0 <= j < 50 for j in kept)


def test_reservoir_inclusion_is_uniform():
    """2000 tables x 3 epochs = 6000 independent streams of 20 ids into 5 slots: every position
    of the stream is kept with probability 1/4. Pearson statistic with the covariance of sampling
    without replacement (Var = S p (1-p), fixed total) ~ chi2(n - 1)."""
    L, n, cap = 2000, 20, 5
    ids = np.arange(n, dtype=np.int32)
    keys = np.zeros((n, L), np.int64)
    counts = np.zeros(n)
    epochs = 3
    for epoch in range(epochs):
        buckets, fill = empty_tables(L, 1, cap)
        insert_keys(buckets, fill, by_table(keys), ids, RESERVOIR, 17, epoch)
        assert np.all(fill == n)
        kept = np.sort(buckets[:, 0, :], axis=1)
        assert np.all(kept[:, 1:] != kept[:, :-1])  # distinct
        counts += np.bincount(kept.ravel(), minlength=n)
    S, p = L * epochs, cap / n
    E = S * p
    stat = np.sum((counts - E) ** 2) / (E * (1 - p) * n / (n - 1))
    assert chi2.sf(stat, n - 1) > 1e-3, counts
    # FIFO for contrast keeps only the last 5
    buckets, fill = empty_tables(2, 1, cap)
    insert_keys(buckets, fill, by_table(keys[:, :2]), ids, FIFO, 17, 0)
    assert sorted(buckets[0, 0].tolist()) == list(range(15, 20))


def test_reservoir_streams_depend_on_seed_and_epoch():
    L, n, cap = 64, 30, 4
    ids = np.arange(n, dtype=np.int32)
    keys = np.zeros((n, L), np.int64)

    def run(seed, epoch):
        buckets, fill = empty_tables(L, 1, cap)
        insert_keys(buckets, fill, by_table(keys), ids, RESERVOIR, seed, epoch)
        return buckets

    a = run(1, 0)
    assert np.array_equal(a, run(1, 0))  # reproducible
    assert not np.array_equal(a, run(1, 1))
    assert not np.array_equal(a, run(2, 0))
    assert len({tuple(sorted(r)) for r in a[:, 0, :].tolist()}) > L // 2  # tables differ


# ---------------------------------------------------------------------------------------------
# select_active
# ---------------------------------------------------------------------------------------------
def test_vanilla_returns_union_without_duplicates(random_tables):
    N, buckets, fill = random_tables
    L, nb, cap = buckets.shape
    sel = Selector(N, L, cap)
    for keys in _queries(10, L, nb):
        got = sel.select(buckets, fill, keys, VANILLA, active_size=10 ** 6)
        union = set(j for lst in retrieved_lists(buckets, fill, keys) for j in lst)
        assert len(got) == len(set(got.tolist())) == len(union)
        assert set(got.tolist()) == union


def test_vanilla_stops_at_budget_visiting_tables_in_random_order(random_tables):
    N, buckets, fill = random_tables
    L, nb, cap = buckets.shape
    sel = Selector(N, L, cap)
    firsts = set()
    for keys in _queries(20, L, nb, seed=2):
        active_size = 7
        got = sel.select(buckets, fill, keys, VANILLA, active_size=active_size)
        lists = retrieved_lists(buckets, fill, keys)
        # reference: union in the table order the kernel drew, truncated at active_size
        order = sel.order.tolist()
        assert sorted(order) == list(range(L))
        seen = []
        for t in order:
            for j in lists[t]:
                if j not in seen:
                    seen.append(j)
        assert got.tolist() == seen[:active_size]
        firsts.add(order[0])
    assert len(firsts) > 3  # the first table visited varies


@pytest.mark.parametrize("active_size", [1, 5, 12, 25, 40])
def test_topk_returns_the_most_frequent_ids(random_tables, active_size):
    N, buckets, fill = random_tables
    L, nb, cap = buckets.shape
    sel = Selector(N, L, cap)
    n_partial = 0
    for keys in _queries(15, L, nb, seed=3):
        got = sel.select(buckets, fill, keys, TOPK, active_size=active_size)
        counts = ref_counts(buckets, fill, keys, N)
        cands = np.flatnonzero(counts)
        assert len(got) == len(set(got.tolist())) == min(active_size, len(cands))
        assert set(got.tolist()) <= set(cands.tolist())
        rest = np.setdiff1d(cands, got)
        if len(rest):
            n_partial += 1
            # every kept id was returned by at least as many tables as any dropped one
            assert counts[got].min() >= counts[rest].max()
            # so the multiset of kept counts is the top of the sorted counts (ties either way)
            assert np.array_equal(np.sort(counts[got])[::-1], np.sort(counts[cands])[::-1][:active_size])
        # the kernel's count buffer agrees with the reference for every candidate
        assert np.array_equal(sel.count[cands], counts[cands])
    if active_size <= 12:
        assert n_partial > 0


@pytest.mark.parametrize("threshold", [1, 2, 3])
def test_threshold_returns_ids_in_enough_tables(random_tables, threshold):
    N, buckets, fill = random_tables
    L, nb, cap = buckets.shape
    sel = Selector(N, L, cap)
    for keys in _queries(15, L, nb, seed=4):
        counts = ref_counts(buckets, fill, keys, N)
        want = set(np.flatnonzero(counts >= threshold).tolist())
        got = sel.select(buckets, fill, keys, THRESHOLD, active_size=10 ** 6, threshold=threshold)
        assert len(got) == len(set(got.tolist()))
        assert set(got.tolist()) == want
        # capped by active_size: a subset of the qualifying ids
        got = sel.select(buckets, fill, keys, THRESHOLD, active_size=3, threshold=threshold)
        assert len(got) == min(3, len(want)) and set(got.tolist()) <= want


@pytest.mark.parametrize("mode", [VANILLA, TOPK, THRESHOLD])
def test_preset_ids_are_kept_and_never_duplicated(random_tables, mode):
    N, buckets, fill = random_tables
    L, nb, cap = buckets.shape
    sel = Selector(N, L, cap)
    for keys in _queries(10, L, nb, seed=5):
        lists = retrieved_lists(buckets, fill, keys)
        union = sorted(set(j for lst in lists for j in lst))
        preset = union[:3] + [j for j in range(N) if j not in union][:2]  # retrieved and not
        active_size = 10
        got = sel.select(buckets, fill, keys, mode, active_size=active_size, threshold=1, preset=preset)
        assert got[: len(preset)].tolist() == preset
        assert len(got) == len(set(got.tolist()))
        added = got[len(preset):]
        # active_size is the size of the whole active set, preset ids included
        assert len(added) == min(active_size - len(preset), len(union) - 3)
        assert not set(added.tolist()) & set(preset)
        assert set(added.tolist()) <= set(union)


def test_tags_need_no_clearing_between_samples(random_tables):
    """The same stamp/count buffers serve many samples; results equal fresh-buffer results."""
    N, buckets, fill = random_tables
    L, nb, cap = buckets.shape
    shared = Selector(N, L, cap)
    for i, keys in enumerate(_queries(12, L, nb, seed=6)):
        mode = (VANILLA, TOPK, THRESHOLD)[i % 3]
        active_size = (200, 9, 200)[i % 3]
        fresh = Selector(N, L, cap)
        fresh.tag = shared.tag  # same tag: VANILLA's random order comes from rng, not the tag
        fresh.rng[:] = shared.rng
        a = shared.select(buckets, fill, keys, mode, active_size, threshold=2)
        b = fresh.select(buckets, fill, keys, mode, active_size, threshold=2)
        assert a.tolist() == b.tolist()


def test_budget_larger_than_layer_and_out_buffer():
    N, L, nb, cap = 30, 5, 4, 20
    rng = np.random.default_rng(7)
    buckets, fill = empty_tables(L, nb, cap)
    keys = rng.integers(0, nb, (N, L)).astype(np.int64)
    insert_keys(buckets, fill, by_table(keys), np.arange(N, dtype=np.int32), FIFO, 0, 0)
    q = rng.integers(0, nb, L)
    union = set(j for lst in retrieved_lists(buckets, fill, q) for j in lst)
    for mode in (VANILLA, TOPK, THRESHOLD):
        sel = Selector(N, L, cap)  # out has room for exactly N ids
        got = sel.select(buckets, fill, q, mode, active_size=10 * N)
        assert set(got.tolist()) == union and len(got) == len(union)
        # an out buffer smaller than active_size caps the result at its size
        small = Selector(N, L, cap, out_size=4)
        got = small.select(buckets, fill, q, mode, active_size=10 * N)
        assert len(got) == min(4, len(union)) and set(got.tolist()) <= union
    # every neuron in every bucket: all N ids, each counted L times
    buckets, fill = empty_tables(L, 1, N)
    insert_keys(buckets, fill, np.zeros((L, N), np.int32), np.arange(N, dtype=np.int32), FIFO, 0, 0)
    sel = Selector(N, L, N)
    got = sel.select(buckets, fill, np.zeros(L), TOPK, active_size=10 * N)
    assert sorted(got.tolist()) == list(range(N))
    assert np.all(sel.count == L)


def test_empty_tables_select_nothing():
    N, L, nb, cap = 10, 3, 4, 2
    buckets, fill = empty_tables(L, nb, cap)
    for mode in (VANILLA, TOPK, THRESHOLD):
        sel = Selector(N, L, cap)
        assert len(sel.select(buckets, fill, [0, 1, 2], mode, active_size=5)) == 0


@pytest.mark.parametrize("mode", [TOPK, THRESHOLD])
def test_zero_budget_adds_nothing_counting_modes(random_tables, mode):
    N, buckets, fill = random_tables
    L, nb, cap = buckets.shape
    sel = Selector(N, L, cap)
    keys = _queries(1, L, nb, seed=8)[0]
    assert len(sel.select(buckets, fill, keys, mode, active_size=0)) == 0
    assert sel.select(buckets, fill, keys, mode, active_size=0, preset=[4]).tolist() == [4]
    # preset ids already fill the active_size: nothing is added
    assert sel.select(buckets, fill, keys, mode, active_size=2, preset=[4, 9]).tolist() == [4, 9]


def test_zero_budget_adds_nothing_vanilla(random_tables):
    N, buckets, fill = random_tables
    L, nb, cap = buckets.shape
    sel = Selector(N, L, cap)
    keys = _queries(1, L, nb, seed=8)[0]
    assert len(sel.select(buckets, fill, keys, VANILLA, active_size=0)) == 0
    assert sel.select(buckets, fill, keys, VANILLA, active_size=1, preset=[4]).tolist() == [4]


# ---------------------------------------------------------------------------------------------
# pad_random
# ---------------------------------------------------------------------------------------------
def test_pad_random_adds_distinct_new_ids():
    N = 50
    stamp = np.zeros(N, np.int64)
    out = np.full(N, -1, np.int32)
    rng = np.array([stream_seed(3, 1, 2)], np.uint64)
    tag = 7
    present = [3, 10, 49]
    for i, j in enumerate(present):
        out[i] = j
        stamp[j] = tag
    stamp[11] = -tag - 1  # "counted" but not active: may be padded in
    stamp[12] = tag + 1  # another sample's tag: irrelevant
    n = pad_random(N, 20, stamp, tag, out, len(present), rng)
    assert n == 20
    assert out[:3].tolist() == present
    assert len(set(out[:n].tolist())) == n
    assert all(0 <= j < N for j in out[:n])
    assert np.all(stamp[out[:n]] == tag)
    # already at or above the target: nothing added
    assert pad_random(N, 10, stamp, tag, out, n, rng) == n
    # a target above the number of neurons stops at all neurons
    n = pad_random(N, 10 ** 6, stamp, tag, out, n, rng)
    assert n == N and sorted(out.tolist()) == list(range(N))
    # a target above the out buffer stops at its size
    small = np.full(5, -1, np.int32)
    assert pad_random(N, 40, np.zeros(N, np.int64), 1, small, 0, rng) == 5
    assert len(set(small.tolist())) == 5


def test_pad_random_is_uniform_and_reproducible():
    N, target, reps = 10, 3, 6000
    hits = np.zeros(N)
    for r in range(reps):
        stamp = np.zeros(N, np.int64)
        out = np.zeros(N, np.int32)
        out[0] = 0
        stamp[0] = 1
        rng = np.array([stream_seed(11, 0, r)], np.uint64)
        n = pad_random(N, target, stamp, 1, out, 1, rng)
        hits[out[1:n]] += 1
    assert hits[0] == 0
    E = reps * (target - 1) / (N - 1)
    p = (target - 1) / (N - 1)
    stat = np.sum((hits[1:] - E) ** 2) / (E * (1 - p) * (N - 1) / (N - 2))
    assert chi2.sf(stat, N - 2) > 1e-3, hits

    def one(seed):
        out = np.zeros(N, np.int32)
        pad_random(N, 6, np.zeros(N, np.int64), 1, out, 0, np.array([seed], np.uint64))
        return out[:6].tolist()

    assert one(5) == one(5) and one(5) != one(6)


def _sequence(ranked, n_distinct, max_tries, seed):
    n = ranked.shape[0]
    seq, seq_try = np.zeros(n, np.int32), np.zeros(n, np.int64)
    rng = np.array([seed], np.uint64)
    k, tries = log_uniform_sequence(ranked, n_distinct, max_tries, rng, np.zeros(n, np.int64), 1, seq, seq_try)
    return seq[:k], seq_try[:k], tries


def test_log_uniform_sequence_draws_ranks_by_the_zipf_law():
    """First draw of many streams: the rank histogram against P(r) = log((r+2)/(r+1)) / log(n+1)."""
    n, reps = 40, 20000
    ranked = np.random.default_rng(0).permutation(n).astype(np.int32)  # rank -> neuron id
    rank_of = np.argsort(ranked)
    hits = np.zeros(n)
    for r in range(reps):
        seq, seq_try, tries = _sequence(ranked, 1, 100, stream_seed(5, 0, r))
        assert seq_try.tolist() == [1] and tries == 1
        hits[rank_of[seq[0]]] += 1
    q = np.log((np.arange(n) + 2.0) / (np.arange(n) + 1.0)) / np.log(n + 1.0)
    assert abs(q.sum() - 1) < 1e-12
    stat = np.sum((hits - reps * q) ** 2 / (reps * q))
    assert chi2.sf(stat, n - 1) > 1e-3, hits


def test_log_uniform_sequence_is_distinct_bounded_and_reproducible():
    n = 200
    ranked = np.arange(n, dtype=np.int32)[::-1].copy()
    seq, seq_try, tries = _sequence(ranked, 60, 10 ** 6, stream_seed(1, 2, 3))
    assert len(seq) == 60 and len(set(seq.tolist())) == 60
    assert np.all(np.diff(seq_try) > 0) and seq_try[-1] == tries and tries >= 60
    assert seq_try[0] == 1  # the first draw is always new
    # the draws are bounded: a tail this rare cannot be reached in 100 draws
    seq2, _, tries2 = _sequence(ranked, n, 100, stream_seed(1, 2, 3))
    assert tries2 == 100 and len(seq2) < 100
    assert _sequence(ranked, 20, 10 ** 4, 9)[0].tolist() == _sequence(ranked, 20, 10 ** 4, 9)[0].tolist()
    assert _sequence(ranked, 20, 10 ** 4, 9)[0].tolist() != _sequence(ranked, 20, 10 ** 4, 10)[0].tolist()


def test_pad_from_sequence_skips_the_head_and_counts_the_draws_used():
    n = 100
    seq = np.array([5, 9, 2, 7, 30, 41], np.int32)
    seq_try = np.array([1, 2, 4, 5, 9, 12], np.int64)
    stamp = np.zeros(n, np.int64)
    tag = 4
    out = np.full(10, -1, np.int32)
    out[:2] = [9, 60]  # already active: 9 is skipped in the sequence
    stamp[[9, 60]] = tag
    stamp[7] = -tag - 1  # "counted" but not active: may be padded in
    m, tries = pad_from_sequence(5, stamp, tag, out, 2, seq, seq_try, len(seq), 15)
    assert m == 5 and out[:5].tolist() == [9, 60, 5, 2, 7] and tries == 5  # 7 came at draw 5
    assert np.all(stamp[out[:5]] == tag)
    # the sequence runs out before the target: every draw made was used
    m, tries = pad_from_sequence(10, stamp, tag, out, m, seq, seq_try, len(seq), 15)
    assert m == 7 and out[5:7].tolist() == [30, 41] and tries == 15
    # nothing to add
    assert pad_from_sequence(3, stamp, tag, out, 7, seq, seq_try, len(seq), 15) == (7, 0)


# ---------------------------------------------------------------------------------------------
# RebuildSchedule
# ---------------------------------------------------------------------------------------------
def _rebuild_batches(sched, n_batches):
    done = []
    for batch in range(1, n_batches + 1):
        if sched.due(batch):
            done.append(batch)
            sched.advance()
    return done


def test_schedule_fixed_period():
    s = RebuildSchedule(50, 0.0)
    assert not s.due(49) and s.due(50)
    assert _rebuild_batches(s, 260) == [50, 100, 150, 200, 250]
    assert s.count == 5 and s.next_at == 300


def test_schedule_growing_intervals():
    first, growth = 10, 0.3
    s = RebuildSchedule(first, growth)
    expected, at, i = [], first, 0
    while at <= 2000:
        expected.append(at)
        i += 1
        at += int(round(first * math.exp(growth * i)))
    assert _rebuild_batches(s, 2000) == expected
    assert expected[:4] == [10, 23, 41, 66]  # intervals 10, 13 (13.499), 18, 25
    assert [s.interval(i) for i in range(4)] == [10, round(10 * math.exp(0.3)), 18, 25]


def test_schedule_max_interval_and_minimum_one():
    s = RebuildSchedule(10, 1.0, max_interval=100)
    assert [s.interval(i) for i in range(5)] == [10, 27, 74, 100, 100]
    done = _rebuild_batches(s, 600)
    gaps = np.diff(done).tolist()
    assert done[0] == 10 and gaps[:2] == [27, 74] and all(g == 100 for g in gaps[2:])
    assert RebuildSchedule(0, 0.0).interval(3) == 1
    assert RebuildSchedule(1, -5.0).interval(2) == 1


def test_schedule_state_round_trip():
    a = RebuildSchedule(10, 0.2, max_interval=40)
    _rebuild_batches(a, 120)
    st = a.state()
    assert st == {"count": a.count, "next_at": a.next_at} and st["count"] > 0
    b = RebuildSchedule(10, 0.2, max_interval=40)
    b.set_state(dict(st))
    rest_a, rest_b = [], []
    for batch in range(121, 600):
        for s, rest in ((a, rest_a), (b, rest_b)):
            if s.due(batch):
                rest.append(batch)
                s.advance()
    assert rest_a == rest_b and len(rest_a) > 5


# ---------------------------------------------------------------------------------------------
# rng
# ---------------------------------------------------------------------------------------------
@njit(cache=False)
def _draw_below(state, n, size):
    out = np.empty(size, np.int64)
    for i in range(size):
        out[i] = rand_below(state, n)
    return out


@njit(cache=False)
def _draw_uniform(state, size):
    out = np.empty(size, np.float64)
    for i in range(size):
        out[i] = rand_uniform(state)
    return out


@njit(cache=False)
def _seed_of(seed, a, b):
    return stream_seed(seed, a, b)


@pytest.mark.parametrize("n", [2, 7, 10, 1000])
def test_rand_below_is_uniform(n):
    size = 200 * n if n < 1000 else 200000
    x = _draw_below(np.array([_seed_of(1, 2, 3)], np.uint64), n, size)
    assert x.min() >= 0 and x.max() < n
    counts = np.bincount(x, minlength=n)
    E = size / n
    stat = np.sum((counts - E) ** 2) / E
    assert chi2.sf(stat, n - 1) > 1e-3, counts


def test_rand_below_large_n_and_uniform_floats():
    state = np.array([_seed_of(9, 0, 0)], np.uint64)
    big = 2 ** 32 - 1
    x = _draw_below(state, big, 10000)
    assert x.min() >= 0 and x.max() < big
    assert abs(x.mean() / big - 0.5) < 4 * math.sqrt(1 / 12 / 10000)
    u = _draw_uniform(state, 20000)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 4 * math.sqrt(1 / 12 / 20000)
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    assert chi2.sf(np.sum((counts - 1000) ** 2) / 1000, 19) > 1e-3
    # consecutive draws are uncorrelated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 4 / math.sqrt(20000)


def test_streams_same_seed_same_stream_different_args_differ():
    def stream(seed, a, b, size=64):
        return _draw_below(np.array([_seed_of(seed, a, b)], np.uint64), 2 ** 31, size)

    assert np.array_equal(stream(1, 2, 3), stream(1, 2, 3))
    variants = [(1, 2, 3), (2, 2, 3), (1, 3, 3), (1, 2, 4), (1, 3, 2), (0, 0, 0), (0, 0, 1), (0, 1, 0)]
    seqs = [stream(*v) for v in variants]
    for i in range(len(seqs)):
        for j in range(i + 1, len(seqs)):
            assert np.mean(seqs[i] == seqs[j]) < 0.05, (variants[i], variants[j])
    seeds = {int(_seed_of(s, a, b)) for s in range(5) for a in range(20) for b in range(20)}
    assert len(seeds) == 5 * 20 * 20
    # adjacent streams (b, b + 1) are uncorrelated, not shifted copies of each other
    u = _draw_uniform(np.array([_seed_of(4, 7, 0)], np.uint64), 5000)
    v = _draw_uniform(np.array([_seed_of(4, 7, 1)], np.uint64), 5000)
    assert abs(np.corrcoef(u, v)[0, 1]) < 4 / math.sqrt(5000)
    assert len(np.intersect1d(u, v)) == 0


def test_state_advances_in_place_and_mix64_is_a_bijection_sample():
    state = np.array([123], np.uint64)
    a = _draw_below(state, 100, 5)
    b = _draw_below(state, 100, 5)
    assert state[0] != 123 and a.tolist() != b.tolist()
    fresh = np.array([123], np.uint64)
    assert np.array_equal(_draw_below(fresh, 100, 10), np.concatenate([a, b]))
    mixed = {int(mix64(np.uint64(z))) for z in range(2000)}
    assert len(mixed) == 2000
    assert int(mix64(np.uint64(0))) == 0  # the SplitMix64 finaliser fixes 0; next_u64 adds the golden ratio first
    st = np.array([0], np.uint64)
    assert next_u64(st) != 0
