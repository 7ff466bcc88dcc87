"""The compiled inner loop: one batch of training, then the lazy optimiser pass.

The Python epoch loop (:mod:`slide.estimator`) calls :func:`train_batch` once per batch, then
:func:`apply_batch`. Inside ``train_batch`` each thread slot takes every ``n_threads``-th sample
of the batch and runs it through hashing, selection, forward, loss and backward, keeping the
sample's active sets, activations and deltas in its batch slot; weights are only read, so threads
need no locks. :func:`apply_batch` then updates every touched weight row once (see
:mod:`slide.kernels.optim`). Per-sample random streams are seeded from (seed, batch, slot), so a
run gives the same result for any number of threads.
"""

import numpy as np
from numba import njit, prange

from .hashing import codes_to_keys, hash_dense, hash_sparse
from .layers import (FASTMATH, backward_input, correct_padding, dropout_layer, forward_layer, load_input,
                     softmax_loss)
from .optim import (_offsets, block_rows, count_entries, place_entries, row_groups, set_grouped, ungroup,
                    update_input_major, update_output_major)
from .rng import stream_seed
from .state import ROW_BLOCKS
from .tables import UNIFORM, log_uniform_sequence, pad_from_sequence, pad_random, select_active
from .timer import cycles

# phases timed inside the kernel (cycles summed over threads)
PH_HASH, PH_SELECT, PH_FORWARD, PH_BACKWARD = 0, 1, 2, 3
N_PHASES = 4


@njit(cache=True, fastmath=False, inline="never")
def set_n_active(work, s, l, n):
    """work.n_active[s, l] = n (a called function: see the note in :mod:`.state`)."""
    work.n_active[s, l] = n


@njit(cache=True, fastmath=False)
def layer_input(net, work, l, s, x0):
    """The input ``(ids, values, count, dense)`` of layer ``l`` for sample slot ``s``, given the
    sample's feature vector ``x0`` (the same tuple, sparse)."""
    if l == 0:
        return x0
    prev_lsh = net.is_lsh[l - 1] != 0
    return work.act_ids[l - 1][s], work.act[l - 1][s], work.n_active[s, l - 1], not prev_lsh


@njit(cache=True, fastmath=False)
def hash_input(net, lsh, work, l, t, x):
    """Bucket keys (one per table) of the input ``x`` of LSH layer ``l`` into work.keys[l][t].

    The query is the input with a constant 1 appended, matching the neurons' hashed vectors
    [w, b], so the angle reflects the logit w.x + b rather than w.x alone. With the MIPS
    transform the query is [x, 1, 0] and the neurons [w/M, b/M, sqrt(1 - |(w, b)/M|^2)]."""
    in_idx, in_val, in_nnz, in_dense = x
    hp = lsh.hp[l]
    codes = work.codes[l][t]
    n_in = net.sizes[l]
    if in_dense:
        q = work.qbuf[l][t]
        for i in range(n_in):
            q[i] = in_val[i]
        q[n_in] = 1.0
        if lsh.mips[l] != 0:
            q[n_in + 1] = 0.0
        hash_dense(hp, q, codes, work.hscratch[l], t)
    else:
        qi = work.qidx[l][t]
        qv = work.qval[l][t]
        for k in range(in_nnz):
            qi[k] = in_idx[k]
            qv[k] = in_val[k]
        qi[in_nnz] = n_in
        qv[in_nnz] = 1.0
        hash_sparse(hp, qi, qv, in_nnz + 1, codes, work.hscratch[l], t)
    codes_to_keys(hp, codes, work.keys[l][t])


PAD_STREAM = 1 << 40  # stream numbers of the shared padding; per-sample streams are numbered by slot


@njit(cache=True, fastmath=False)
def select_layer(net, lsh, work, l, s, t, lab, rng, pad_rng, pad):
    """Active set of LSH layer ``l`` into sample slot ``s`` (thread slot ``t``): the labels ``lab``
    first, then retrieved ids (together the "head", whose size goes to work.n_head[s, l]), then,
    if ``pad``, distinct random ids up to min_active: uniform ones drawn from ``pad_rng``, or
    log-uniform ones from the batch's drawn sequence (:func:`draw_padding`; the draws used go to
    work.pad_tries[s, l]). Returns its size."""
    tag = work.tags[t] + 1
    work.tags[t] = tag
    out = work.act_ids[l][s]
    stamp = work.stamp[l][t]
    n = 0
    for c in range(lab.shape[0]):
        j = lab[c]
        if stamp[j] != tag:
            stamp[j] = tag
            out[n] = j
            n += 1
    n = select_active(lsh.buckets[l], lsh.fill[l], work.keys[l][t], lsh.mode[l], lsh.active_size[l],
                      lsh.threshold[l], stamp, work.count[l][t], tag, work.cand[l][t], out, n,
                      work.order[l][t], rng)
    work.n_head[s, l] = n
    if not pad:
        return n
    if lsh.sampler[l] == UNIFORM:
        return pad_random(net.sizes[l + 1], lsh.min_active[l], stamp, tag, out, n, pad_rng)
    n, tries = pad_from_sequence(lsh.min_active[l], stamp, tag, out, n, work.pad_seq[l], work.pad_seq_try[l],
                                 work.pad_seq_n[l, 0], work.pad_seq_n[l, 1])
    work.pad_tries[s, l] = tries
    return n


@njit(cache=True, fastmath=False)
def draw_padding(lsh, work, seed, batch_no):
    """The log-uniform padding sequence of each layer that uses one, drawn once per batch (with
    thread slot 0's marker array, before the samples run)."""
    st = np.empty(1, np.uint64)
    for l in range(lsh.sampler.shape[0]):
        if lsh.sampler[l] == UNIFORM or lsh.min_active[l] == 0:
            continue
        tag = work.tags[0] + 1
        work.tags[0] = tag
        st[0] = stream_seed(seed, batch_no, PAD_STREAM + l)
        # the head of the Zipf distribution repeats: bound the draws (the correction counts them)
        max_tries = 64 * lsh.min_active[l] + 1024
        k, tries = log_uniform_sequence(lsh.ranked[l], lsh.min_active[l], max_tries, st, work.stamp[l][0], tag,
                                        work.pad_seq[l], work.pad_seq_try[l])
        work.pad_seq_n[l, 0] = k
        work.pad_seq_n[l, 1] = tries


@njit(cache=True, fastmath=FASTMATH)
def forward_sample(net, lsh, work, s, t, x0, lab, rng, pad_rng, seed, batch_no, timers, training,
                   output_rule=True):
    """Every layer's active set and activations for the sample in slot ``s`` (thread slot ``t``)
    with feature vector ``x0``: hashing and selection in LSH layers (with ``training``: the
    labels ``lab`` join the output layer's active set, random padding fills it, dropout applies),
    then the forward rule (for the output layer only with ``output_rule``: without it the output
    layer's active set is chosen and its logits are left to :func:`forward_output_rows`). Cycles
    per phase accumulate in timers[t]."""
    n_layers = net.is_lsh.shape[0]
    out_l = n_layers - 1
    empty = lab[:0]
    for l in range(n_layers):
        x = layer_input(net, work, l, s, x0)
        if net.is_lsh[l] != 0:
            c0 = cycles()
            hash_input(net, lsh, work, l, t, x)
            c1 = cycles()
            # Random padding is drawn from one stream per batch and layer, so every sample of the
            # batch gets (nearly) the same padding ids, as sampled softmax shares its negatives:
            # per-sample padding touched ~batch x padding distinct rows, and the optimiser pass
            # (memory-bound, one pass over every touched row) paid for them.
            pad_rng[0] = stream_seed(seed, batch_no, PAD_STREAM + l)
            n_act = select_layer(net, lsh, work, l, s, t, lab if l == out_l else empty, rng, pad_rng,
                                 pad=training)
            timers[t, PH_HASH] += c1 - c0
            timers[t, PH_SELECT] += cycles() - c1
        else:
            n_act = net.sizes[l + 1]
        set_n_active(work, s, l, n_act)
        if l == out_l and not output_rule:
            break
        c0 = cycles()
        forward_layer(net, work, l, s, x, n_act)
        if training and net.dropout[l] > 0:
            dropout_layer(work, l, s, n_act, net.dropout[l], rng)
        timers[t, PH_FORWARD] += cycles() - c0


@njit(cache=True, fastmath=FASTMATH)
def output_loss(net, lsh, work, s, lab):
    """Loss of the sample in slot ``s`` and its output layer's delta (the padding's sampling
    correction first, see :func:`correct_padding`)."""
    out_l = net.is_lsh.shape[0] - 1
    n_act = work.n_active[s, out_l]
    if net.is_lsh[out_l] != 0 and lsh.correct[out_l] != 0:
        correct_padding(work.act[out_l][s], work.act_ids[out_l][s], work.n_head[s, out_l], n_act,
                        net.sizes[out_l + 1], lsh.sampler[out_l], work.pad_tries[s, out_l], lsh.log1mq[out_l])
    return softmax_loss(net, work, s, n_act, lab)


@njit(cache=True, fastmath=FASTMATH)
def backward_sample(net, lsh, work, s, t, x0, lab):
    """Loss of the sample in slot ``s`` after :func:`forward_sample`, and every layer's delta.
    Returns the loss."""
    out_l = net.is_lsh.shape[0] - 1
    loss = output_loss(net, lsh, work, s, lab)
    for l in range(out_l, 0, -1):
        backward_input(net, work, l, s, t, layer_input(net, work, l, s, x0), work.n_active[s, l])
    return loss


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def forward_output_rows(net, work, grad, l, slot0, n_batch, n_threads, timers):
    """The forward rule of LSH layer ``l`` (dense input h, the last hidden layer's activations)
    for the batch slots slot0 .. slot0 + n_batch - 1, computed row by row: z[s, a] = b_j +
    W(j, :) . h_s for every entry (s, a) with active id j. The batch's samples share most of their
    active rows (a reference-workload batch: 21,800 distinct rows for 154,000 entries) and a wide
    output layer does not fit in cache, so per sample every row is a fresh read from memory; here
    each thread groups the entries of its rows (the optimiser pass's counting sort,
    :mod:`slide.kernels.optim`, in the same arrays) and reads each row once for all its samples,
    whose h stay in cache. The grouping stays for :func:`backward_output_rows` and, when these
    slots are the whole batch, for the optimiser pass (``grad.grouped``), which clears it. Each
    logit is one dot product, so the result does not depend on the thread count."""
    W = net.W[l]
    b = net.b[l]
    n_in = W.shape[1]
    n_out = W.shape[0]
    cnt, start, es, ek = row_groups(grad, l)
    ids = work.act_ids[l]
    n_l = work.n_active[:, l]
    h = work.act[l - 1]
    z = work.act[l]
    s1 = slot0 + n_batch
    if grad.grouped[l] != 0:  # a grouping no optimiser pass consumed (a batch given up)
        ungroup(grad, l)
    first = np.zeros(n_threads, np.int64)
    for t in prange(n_threads):
        c0 = cycles()
        lo, hi = block_rows(t, n_out, n_threads)
        first[t] = count_entries(ids, n_l, slot0, s1, cnt, lo, hi)
        timers[t, PH_FORWARD] += cycles() - c0
    first = _offsets(first)
    for t in prange(n_threads):
        c0 = cycles()
        lo, hi = block_rows(t, n_out, n_threads)
        place_entries(ids, n_l, slot0, s1, cnt, start, es, ek, lo, hi, first[t])
        for j in range(lo, hi):
            if cnt[j] == 0:
                continue
            e1 = start[j]
            bj = b[j]
            for e in range(e1 - cnt[j], e1):
                s = es[e]
                acc = np.float32(0.0)
                for i in range(n_in):
                    acc += W[j, i] * h[s, i]
                z[s, ek[e]] = acc + bj
        timers[t, PH_FORWARD] += cycles() - c0
    set_grouped(grad.grouped, l, n_batch if slot0 == 0 else -1)


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def backward_output_rows(net, work, grad, l, slot0, n_batch, n_threads, timers):
    """The backward rule of :func:`forward_output_rows`' layer to its input, row by row: the
    hidden delta of sample s is sum over its entries (s, a) of delta[s, a] W(j, :), gated by
    the ReLU (and dropout scale) of h_s, into work.delta[l - 1][s]. Each thread adds its rows'
    terms into one partial sum per (fixed row block, sample), rows in index order and entries in
    sample order; the samples then add their blocks' sums in block order. Leaves the grouping
    for the optimiser pass."""
    W = net.W[l]
    n_in = W.shape[1]
    n_out = W.shape[0]
    cnt, start, es, ek = row_groups(grad, l)
    delta = work.delta[l]
    part = work.dpart
    mark = work.dpart_mark
    for t in prange(n_threads):
        c0 = cycles()
        b0, b1 = t * ROW_BLOCKS // n_threads, (t + 1) * ROW_BLOCKS // n_threads
        for blk in range(b0, b1):
            for j in range(blk * n_out // ROW_BLOCKS, (blk + 1) * n_out // ROW_BLOCKS):
                if cnt[j] == 0:
                    continue
                e1 = start[j]
                for e in range(e1 - cnt[j], e1):
                    s = es[e]
                    d = delta[s, ek[e]]
                    if d == 0:
                        continue
                    if mark[blk, s] == 0:
                        mark[blk, s] = 1
                        for i in range(n_in):
                            part[blk, s, i] = d * W[j, i]
                    else:
                        for i in range(n_in):
                            part[blk, s, i] += d * W[j, i]
        timers[t, PH_BACKWARD] += cycles() - c0
    h = work.act[l - 1]
    prev = work.delta[l - 1]
    scale = np.float32(1.0 / (1.0 - net.dropout[l - 1]))
    for t in prange(n_threads):
        c0 = cycles()
        for s in range(slot0 + t, slot0 + n_batch, n_threads):
            for i in range(n_in):
                prev[s, i] = 0.0
            for blk in range(ROW_BLOCKS):
                if mark[blk, s] != 0:
                    mark[blk, s] = 0
                    for i in range(n_in):
                        prev[s, i] += part[blk, s, i]
            for i in range(n_in):
                prev[s, i] = prev[s, i] * scale if h[s, i] > 0 else 0.0
        timers[t, PH_BACKWARD] += cycles() - c0


@njit(cache=True, fastmath=False, inline="always")
def _sample(rows, i, slot0, Y_indptr, Y_indices):
    """The batch slot, data row and labels of the batch's i-th sample."""
    r = rows[i]
    return slot0 + i, r, Y_indices[Y_indptr[r]:Y_indptr[r + 1]]


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def train_batch(net, lsh, work, grad, X_indptr, X_indices, X_data, Y_indptr, Y_indices, rows, slot0, stream0,
                seed, batch_no, n_threads, losses, timers):
    """Forward, loss and backward of the samples ``rows`` (all with >= 1 label) into batch
    slots slot0, slot0 + 1, ..., with the random streams numbered from ``stream0`` (a
    data-parallel worker's samples take the slots and streams they have in the whole batch;
    one process passes 0, 0). losses[t] and timers[t, phase] accumulate per thread slot.

    Where the work buffers hold row-block partial sums (an LSH output layer on a dense hidden
    one, see :func:`slide.network.make_work`), every sample's forward pass up to the output
    layer's active set runs first, then the output layer forward and backward row by row
    (:func:`forward_output_rows`, :func:`backward_output_rows`) around every sample's loss,
    then the deeper layers' backward passes; otherwise each sample runs through all of it."""
    B = rows.shape[0]
    draw_padding(lsh, work, seed, batch_no)
    by_rows = work.dpart.shape[0] > 0
    out_l = net.is_lsh.shape[0] - 1
    for t in prange(n_threads):
        rng = np.empty(1, np.uint64)
        pad_rng = np.empty(1, np.uint64)
        for i in range(t, B, n_threads):
            s, r, lab = _sample(rows, i, slot0, Y_indptr, Y_indices)
            rng[0] = stream_seed(seed, batch_no, stream0 + i)
            p0, p1 = X_indptr[r], X_indptr[r + 1]
            x_n = load_input(work, s, X_indices[p0:p1], X_data[p0:p1], p1 - p0, net.input_dropout, rng)
            x0 = (work.x_idx[s], work.x_val[s], x_n, False)
            forward_sample(net, lsh, work, s, t, x0, lab, rng, pad_rng, seed, batch_no, timers, training=True,
                           output_rule=not by_rows)
            if not by_rows:
                c0 = cycles()
                losses[t] += backward_sample(net, lsh, work, s, t, x0, lab)
                timers[t, PH_BACKWARD] += cycles() - c0
    if not by_rows:
        return
    forward_output_rows(net, work, grad, out_l, slot0, B, n_threads, timers)
    for t in prange(n_threads):
        c0 = cycles()
        for i in range(t, B, n_threads):
            s, r, lab = _sample(rows, i, slot0, Y_indptr, Y_indices)
            losses[t] += output_loss(net, lsh, work, s, lab)
        timers[t, PH_BACKWARD] += cycles() - c0
    backward_output_rows(net, work, grad, out_l, slot0, B, n_threads, timers)
    if out_l >= 2:
        for t in prange(n_threads):
            c0 = cycles()
            for i in range(t, B, n_threads):
                s = slot0 + i
                x0 = (work.x_idx[s], work.x_val[s], work.x_n[s], False)
                for l in range(out_l - 1, 0, -1):
                    backward_input(net, work, l, s, t, layer_input(net, work, l, s, x0), work.n_active[s, l])
            timers[t, PH_BACKWARD] += cycles() - c0


@njit(cache=True, fastmath=False)
def apply_batch(net, work, grad, n_batch, n_threads, opt, lr, beta1, beta2, eps, input_opt, input_lr):
    """The optimiser pass of the ``n_batch`` samples of the last :func:`train_batch`: the first
    layer's weights by ``input_opt`` at ``input_lr``, every other weight and every bias by
    ``opt`` at ``lr``. Adam's step sizes and ``eps`` carry its bias corrections (see
    :func:`slide.kernels.optim.step_row`); the arithmetic is float32, so it vectorises 16 wide."""
    lr32, b1, b2, eps32 = np.float32(lr), np.float32(beta1), np.float32(beta2), np.float32(eps)
    for l in range(net.is_lsh.shape[0]):
        if l == 0:
            update_input_major(net, work, grad, n_batch, n_threads, input_opt, np.float32(input_lr), opt, lr32,
                               b1, b2, eps32)
        else:
            update_output_major(net, work, grad, l, n_batch, n_threads, opt, lr32, b1, b2, eps32)
