"""Forward and backward rules of one layer, each next to the other.

A layer's input ``x`` is one tuple ``(ids, values, count, dense)`` (built by
:func:`slide.kernels.train.layer_input`): the sparse feature vector (layer 0), a dense activation
vector (the previous layer computed every neuron: ``values[:count]``, ``ids`` unused) or a sparse
one (the previous layer was an LSH layer: ``ids[:count]`` its active neuron ids, ``values`` their
activations). Its output is every neuron (dense layer) or the active set
``work.act_ids[l][s][:n_act]`` (LSH layer).

Forward:  z_j = b_j + sum_i W(i, j) x_i for each active j; hidden layers apply ReLU.
Backward: given delta_j = dLoss/dz_j of the active neurons,
          input:   dLoss/dx_i = sum_j delta_j W(i, j), gated by the previous ReLU (x_i > 0)
                   (:func:`backward_input`, per sample, during the batch);
          weights: dW(i, j) = sum over the batch's samples of delta_j x_i, db_j = sum delta_j
                   (:func:`grad_row_output_major` / :func:`grad_row_input_major`, per weight row,
                   in the optimiser pass, see :mod:`slide.kernels.optim`). The output layer's
                   delta comes from :func:`softmax_loss`.
Weights are only read during a batch, so samples run in parallel without locks and no update is
lost; the optimiser pass sums each row's contributions in sample order, so the result does not
depend on the number of threads.

``s`` indexes a sample slot (per-sample buffers), ``t`` a thread slot (scratch).
"""

import numpy as np
from numba import njit

from .rng import rand_uniform
from .tables import UNIFORM

# Re-association lets LLVM vectorise the dot products and axpys; NaN/Inf semantics are kept
# (no 'nnan'/'ninf'), so a diverging run is still detected.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, fastmath=FASTMATH)
def forward_layer(net, work, l, s, x, n_act):
    """z (and ReLU unless output) of the ``n_act`` active neurons of layer ``l`` for input ``x``
    into work.act[l][s]. Weight rows are indexed in place, not taken as views, here and in the
    backward rules: the threads share W, and each view would touch its reference count (see
    :func:`slide.kernels.optim.step_row`)."""
    in_idx, in_val, in_nnz, in_dense = x
    W = net.W[l]
    b = net.b[l]
    z = work.act[l][s]
    ids = work.act_ids[l][s]
    dense_out = net.is_lsh[l] == 0
    n_in = net.sizes[l]
    if l == 0:
        if dense_out:
            for j in range(n_act):
                z[j] = b[j]
            for k in range(in_nnz):
                v = in_val[k]
                f = in_idx[k]
                for j in range(n_act):
                    z[j] += v * W[f, j]
        else:
            for a in range(n_act):
                j = ids[a]
                acc = b[j]
                for k in range(in_nnz):
                    acc += in_val[k] * W[in_idx[k], j]
                z[a] = acc
    else:
        for a in range(n_act):
            j = a if dense_out else ids[a]
            acc = np.float32(0.0)
            if in_dense:
                for i in range(n_in):
                    acc += W[j, i] * in_val[i]
            else:
                for k in range(in_nnz):
                    acc += W[j, in_idx[k]] * in_val[k]
            z[a] = acc + b[j]
    if l < net.is_lsh.shape[0] - 1:  # hidden layers: ReLU
        for a in range(n_act):
            if z[a] < 0:
                z[a] = 0.0


@njit(cache=True, fastmath=False)
def load_input(work, s, idx, val, nnz, rate, rng):
    """Copy a sample's input non-zeros into its batch slot (the optimiser pass reads them
    there), with inverted dropout at ``rate``: each non-zero is dropped with that probability and
    the survivors are scaled by 1 / (1 - rate). Returns the number kept."""
    out_i = work.x_idx[s]
    out_v = work.x_val[s]
    n = 0
    if rate > 0:
        scale = np.float32(1.0 / (1.0 - rate))
        for k in range(nnz):
            if rand_uniform(rng) >= rate:
                out_i[n] = idx[k]
                out_v[n] = val[k] * scale
                n += 1
    else:
        for k in range(nnz):
            out_i[k] = idx[k]
            out_v[k] = val[k]
        n = nnz
    work.x_n[s] = n
    return n


@njit(cache=True, fastmath=False)
def dropout_layer(work, l, s, n_act, rate, rng):
    """Inverted dropout of the active outputs of hidden layer ``l`` (training only): each is
    zeroed with probability ``rate``, the others scaled by 1 / (1 - rate)."""
    z = work.act[l][s]
    scale = np.float32(1.0 / (1.0 - rate))
    for a in range(n_act):
        if rand_uniform(rng) < rate:
            z[a] = 0.0
        else:
            z[a] *= scale


@njit(cache=True, fastmath=FASTMATH)
def backward_input(net, work, l, s, t, x, n_act):
    """Layer ``l`` >= 1 with input ``x``: write the previous layer's delta (the gradient of its
    activations, sum_j delta_j W(j, .), times the derivative of ReLU and dropout: 1 / (1 - rate)
    where the activation is positive, else 0) into work.delta[l - 1][s]."""
    in_idx, in_val, in_nnz, in_dense = x
    W = net.W[l]
    delta = work.delta[l][s]
    ids = work.act_ids[l][s]
    dense_out = net.is_lsh[l] == 0
    n_in = net.sizes[l]
    dh = work.dinput[l][t]
    n_h = n_in if in_dense else in_nnz
    for i in range(n_h):
        dh[i] = 0.0
    for a in range(n_act):
        d = delta[a]
        if d == 0:
            continue
        j = a if dense_out else ids[a]
        if in_dense:
            for i in range(n_in):
                dh[i] += d * W[j, i]
        else:
            for k in range(in_nnz):
                dh[k] += d * W[j, in_idx[k]]
    prev = work.delta[l - 1][s]
    scale = np.float32(1.0 / (1.0 - net.dropout[l - 1]))
    for i in range(n_h):
        prev[i] = dh[i] * scale if in_val[i] > 0 else 0.0


@njit(cache=True, fastmath=False)
def correct_padding(z, ids, n_head, n_act, n_out, sampler, tries, log1mq):
    """Sampling correction of an LSH output layer's random padding (sampled softmax's log-Q
    correction): active positions ``n_head .. n_act`` (after the labels and retrieved ids) are a
    random sample of the other neurons, and each logit gets - log of its neuron's inclusion
    probability pi_j. The softmax denominator then estimates the full one without bias
    (Horvitz-Thompson), so every neuron's expected gradient is its full-softmax one, as in dense
    training; without it the neurons the retrieval rarely returns (a frequent label absent from
    the sample) are rarely pushed down and the label prior is lost.

    uniform: ``n_act - n_head`` distinct ids out of ``n_out - n_head``: pi = their ratio, exact.
    log_uniform: ``tries`` independent draws of which the new distinct ids were kept:
    pi_j = 1 - (1 - q_j) ** tries, ``log1mq[j] = log(1 - q_j)`` (the approximation TensorFlow's
    sampled softmax also uses for unique draws)."""
    if n_act <= n_head:
        return
    if sampler == UNIFORM:
        log_w = np.float32(np.log((n_out - n_head) / (n_act - n_head)))
        for a in range(n_head, n_act):
            z[a] += log_w
    else:
        for a in range(n_head, n_act):
            z[a] -= np.float32(np.log(-np.expm1(tries * log1mq[ids[a]])))


# strict arithmetic: under FASTMATH its sums were re-associated differently when LLVM inlined it
# into a freshly compiled caller than when the caller linked it from the cache, so a fit's result
# depended on the kernel cache (tests/test_kernel_cache.py); strict, it costs nothing measurable
@njit(cache=True, fastmath=False)
def softmax_loss(net, work, s, n_act, lab):
    """Softmax over the ``n_act`` active logits of the output layer and cross-entropy against the
    target: the uniform distribution over the sample's labels ``lab``, with label smoothing eps
    (1 - eps) times that plus eps / n_act on every active neuron. Writes probabilities into
    work.act and delta = p - target into work.delta. In an LSH output layer the labels are the
    first active ids; in a dense one they sit at their own ids. Returns the loss."""
    l = net.is_lsh.shape[0] - 1
    dense_out = net.is_lsh[l] == 0
    n_lab = lab.shape[0]
    z = work.act[l][s]
    delta = work.delta[l][s]
    mx = z[0]
    for a in range(1, n_act):
        if z[a] > mx:
            mx = z[a]
    total = np.float32(0.0)
    for a in range(n_act):
        e = np.exp(z[a] - mx)
        delta[a] = e
        total += e
    log_s = np.log(total)
    eps = np.float32(net.label_smoothing)
    y = (np.float32(1.0) - eps) / n_lab
    u = eps / n_act
    loss = np.float32(0.0)
    for c in range(n_lab):
        pos = lab[c] if dense_out else c
        loss -= y * (z[pos] - mx - log_s)
    inv = np.float32(1.0) / total
    sum_logp = np.float32(0.0)
    for a in range(n_act):
        sum_logp += z[a] - mx - log_s
        p = delta[a] * inv
        z[a] = p
        delta[a] = p - u
    loss -= u * sum_logp
    for c in range(n_lab):
        pos = lab[c] if dense_out else c
        delta[pos] -= y
    return loss


@njit(cache=True, fastmath=FASTMATH, inline="always")
def grad_row_output_major(g, n_in, j, delta, x_act, x_ids, x_n, ent_s, ent_k, e0, e1, in_dense, dense_out):
    """Gradient of neuron row W(j, :) of a layer >= 1 into g[:n_in]: the sum over the batch
    entries (sample s, active position a) of delta[s, a] * input_s, where input_s is
    x_act[s, :n_in] (dense) or x_act[s, :x_n[s]] at ids x_ids[s] (sparse). The entries are
    ent_s/ent_k[e0:e1] in an LSH layer; in a dense one (``dense_out``) every sample
    s in [e0, e1) at position j. Returns the bias gradient. (Per-layer arrays are passed in,
    not looked up per entry: typed-list lookups are slow in a hot loop.)"""
    for i in range(n_in):
        g[i] = 0.0
    gb = np.float32(0.0)
    for e in range(e0, e1):
        if dense_out:
            s = e
            d = delta[s, j]
        else:
            s = ent_s[e]
            d = delta[s, ent_k[e]]
        gb += d
        if d == 0:
            continue
        # 2-D indexing, no row views (see slide.kernels.optim.step_row)
        if in_dense:
            for i in range(n_in):
                g[i] += d * x_act[s, i]
        else:
            for k in range(x_n[s]):
                g[x_ids[s, k]] += d * x_act[s, k]
    return gb


@njit(cache=True, fastmath=FASTMATH, inline="always")
def grad_row_input_major(g, n_out, delta0, ids0, n0, ent_s, ent_k, e0, e1, x_val, dense_out):
    """Gradient of input-feature row W(f, :) of layer 0 into g[:n_out]: the sum over the batch
    entries (sample s, non-zero k of its input x_val[s]) of x_sk * delta0_s (dense, or sparse
    over the active ids ids0[s, :n0[s]])."""
    for j in range(n_out):
        g[j] = 0.0
    for e in range(e0, e1):
        s = ent_s[e]
        v = x_val[s, ent_k[e]]
        if dense_out:
            for j in range(n_out):
                g[j] += v * delta0[s, j]
        else:
            for a in range(n0[s]):
                g[ids0[s, a]] += v * delta0[s, a]
