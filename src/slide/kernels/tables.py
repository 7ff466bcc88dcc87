"""Hash tables of neuron ids and active-set selection.

A layer's tables are one int32 array ``buckets`` of shape (L, 2**bucket_bits, bucket_size) and
a fill counter ``fill`` (L, 2**bucket_bits) holding how many ids were offered to each bucket since
the last rebuild. A bucket keeps at most ``bucket_size`` ids: FIFO overwrites the oldest,
reservoir sampling keeps a uniform sample of all ids offered (so no neuron is favoured by the
insertion order).

Selection (per sample) marks ids in a per-thread ``stamp`` array (int64, one slot per neuron):
``stamp[j] == tag`` means "already in this sample's active set" and ``stamp[j] == -tag - 1``
"counted for this sample". Tags are >= 1 and never reused by a thread, so nothing has to be
cleared between samples; ``count`` holds the number of tables that returned j.
"""

import numpy as np
from numba import njit, prange

from .rng import rand_below, rand_uniform, stream_seed

FIFO, RESERVOIR = 0, 1
VANILLA, TOPK, THRESHOLD = 0, 1, 2
UNIFORM, LOG_UNIFORM = 0, 1  # distributions of the random padding


@njit(cache=True, fastmath=False, inline="always")
def insert_id(buckets, fill, t, key, nid, policy, rng):
    """Offer neuron ``nid`` to bucket ``key`` of table ``t``."""
    cap = buckets.shape[2]
    n = fill[t, key]
    if n < cap:
        buckets[t, key, n] = nid
    elif policy == FIFO:
        buckets[t, key, n % cap] = nid
    else:
        r = rand_below(rng, n + 1)
        if r < cap:
            buckets[t, key, r] = nid
    fill[t, key] = n + 1


@njit(cache=True, fastmath=False, parallel=True)
def insert_keys(buckets, fill, keys_t, order, policy, seed, epoch):
    """Insert neurons ``order[0], order[1], ...`` in that order, neuron j into bucket
    ``keys_t[t, j]`` of every table t, in parallel over tables.

    The caller shuffles ``order``, so FIFO overflow does not systematically drop the same
    neurons. A table's keys are one contiguous row (a few MB even at 10^6 neurons), so the
    shuffled reads stay in cache. ``epoch`` distinguishes rebuilds for the RNG streams.
    """
    L = buckets.shape[0]
    n = order.shape[0]
    for t in prange(L):
        rng = np.empty(1, np.uint64)
        rng[0] = stream_seed(seed, epoch, t)
        kt = keys_t[t]
        for r in range(n):
            j = order[r]
            insert_id(buckets, fill, t, kt[j], j, policy, rng)


@njit(cache=True, fastmath=False, inline="always")
def bucket_len(fill, t, key, cap):
    n = fill[t, key]
    return n if n < cap else cap


@njit(cache=True, fastmath=False)
def select_active(buckets, fill, keys, mode, active_size, threshold, stamp, count, tag,
                  cand, out, n_out, table_order, rng):
    """Add retrieved neurons to the active set ``out[:n_out]`` (ids already there are kept and
    must be stamped with ``tag``) until it holds ``active_size`` ids; returns the new size.

    mode VANILLA: union of the buckets, tables visited in random order, stop at ``active_size`` ids.
    mode TOPK: the ``active_size`` ids returned by the most tables (ties: first seen).
    mode THRESHOLD: ids returned by at least ``threshold`` tables, at most ``active_size`` of them.
    ``cand`` is an int32 scratch buffer with room for every id the tables can return.
    """
    n_tables = buckets.shape[0]
    cap = buckets.shape[2]
    if active_size > out.shape[0]:
        active_size = out.shape[0]
    if n_out >= active_size:
        return n_out
    if mode == VANILLA:
        # random table order (Fisher-Yates) so a full active set does not always favour table 0
        for t in range(n_tables):
            table_order[t] = t
        for t in range(n_tables - 1, 0, -1):
            s = rand_below(rng, t + 1)
            tmp = table_order[t]
            table_order[t] = table_order[s]
            table_order[s] = tmp
        for ti in range(n_tables):
            t = table_order[ti]
            key = keys[t]
            n = bucket_len(fill, t, key, cap)
            for e in range(n):
                j = buckets[t, key, e]
                if stamp[j] != tag:
                    stamp[j] = tag
                    out[n_out] = j
                    n_out += 1
                    if n_out >= active_size:
                        return n_out
        return n_out
    # counting modes: ids already in out keep their `tag` and are skipped
    ctag = -tag - 1
    n_cand = 0
    for t in range(n_tables):
        key = keys[t]
        n = bucket_len(fill, t, key, cap)
        for e in range(n):
            j = buckets[t, key, e]
            s = stamp[j]
            if s == tag:
                continue
            if s != ctag:
                stamp[j] = ctag
                count[j] = 1
                cand[n_cand] = j
                n_cand += 1
            else:
                count[j] += 1
    room = active_size - n_out
    if mode == THRESHOLD:
        for c in range(n_cand):
            j = cand[c]
            if count[j] >= threshold and n_out < active_size:
                out[n_out] = j
                n_out += 1
                stamp[j] = tag
        return n_out
    # TOPK: find the smallest count c* such that #(count >= c*) is as large as fits
    if n_cand <= room:
        for c in range(n_cand):
            j = cand[c]
            out[n_out] = j
            n_out += 1
            stamp[j] = tag
        return n_out
    hist = np.zeros(n_tables + 2, np.int64)
    for c in range(n_cand):
        hist[count[cand[c]]] += 1
    above = 0
    cstar = n_tables + 1
    while cstar > 1 and above + hist[cstar - 1] <= room:
        cstar -= 1
        above += hist[cstar]
    # take every id with count >= cstar, then fill with ids of count cstar - 1 in order seen
    for c in range(n_cand):
        j = cand[c]
        if count[j] >= cstar:
            out[n_out] = j
            n_out += 1
            stamp[j] = tag
    if cstar > 1:
        for c in range(n_cand):
            if n_out >= active_size:
                break
            j = cand[c]
            if count[j] == cstar - 1 and stamp[j] != tag:
                out[n_out] = j
                n_out += 1
                stamp[j] = tag
    return n_out


@njit(cache=True, fastmath=False)
def pad_random(n_neurons, target, stamp, tag, out, n_out, rng):
    """Add distinct random neurons until the active set has ``target`` ids (or all neurons)."""
    if target > n_neurons:
        target = n_neurons
    if target > out.shape[0]:
        target = out.shape[0]
    while n_out < target:
        j = rand_below(rng, n_neurons)
        if stamp[j] != tag:
            stamp[j] = tag
            out[n_out] = j
            n_out += 1
    return n_out


@njit(cache=True, fastmath=False)
def log_uniform_sequence(ranked, n_distinct, max_tries, rng, stamp, tag, seq, seq_try):
    """Draw neurons from the log-uniform (Zipf) distribution over frequency ranks,
    P(rank r) = log((r + 2) / (r + 1)) / log(n + 1), where ``ranked[r]`` is the neuron of rank r,
    until ``n_distinct`` distinct ones were drawn or ``max_tries`` draws were made (the head of
    the distribution repeats). Writes the distinct neurons in order of first appearance to
    ``seq`` and the number of draws made up to and including each one to ``seq_try``; returns
    (distinct count, draws made). A batch draws one sequence and every sample pads from it
    (:func:`pad_from_sequence`), as sampled softmax shares its negatives. ``stamp``/``tag``: a
    scratch marker array and an unused tag (see the module docstring)."""
    n = ranked.shape[0]
    if n_distinct > n:
        n_distinct = n
    if n_distinct > seq.shape[0]:
        n_distinct = seq.shape[0]
    log_n1 = np.log(n + 1.0)
    tries = 0
    k = 0
    while k < n_distinct and tries < max_tries:
        # inverse CDF: exp(u * log(n + 1)) is in [r + 1, r + 2) with the probability above
        r = np.int64(np.exp(rand_uniform(rng) * log_n1)) - 1
        if r >= n:
            r = n - 1
        tries += 1
        j = ranked[r]
        if stamp[j] != tag:
            stamp[j] = tag
            seq[k] = j
            seq_try[k] = tries
            k += 1
    return k, tries


@njit(cache=True, fastmath=False)
def pad_from_sequence(target, stamp, tag, out, n_out, seq, seq_try, n_seq, total_tries):
    """Add the neurons of a drawn sequence (:func:`log_uniform_sequence`) that are not yet in the
    active set, in order, until it has ``target`` ids. Returns the new size and the number of
    draws this sample used: those up to its last added neuron, or all of them if the sequence
    ran out first (the inclusion probabilities of the sampling correction follow from it)."""
    if target > out.shape[0]:
        target = out.shape[0]
    if n_out >= target:
        return n_out, 0
    for k in range(n_seq):
        j = seq[k]
        if stamp[j] != tag:
            stamp[j] = tag
            out[n_out] = j
            n_out += 1
            if n_out >= target:
                return n_out, seq_try[k]
    return n_out, total_tries
