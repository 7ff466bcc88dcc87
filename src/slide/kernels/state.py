"""Named tuples of arrays that the kernels take, so no kernel has dozens of positional arguments.

Per-layer arrays are Numba typed lists indexed by layer number (parallel regions reject tuples
of arrays; typed lists pass through and index with a run-time layer number). Layer 0 reads the
sparse input and stores its weights input-major, shape (n_features, n_out), so one input
feature's weights are one contiguous row; every later layer stores output-major, (n_out, n_in),
so one neuron's weights are one contiguous row. Layers that don't use a piece of state (dense
layers have no hash tables, SGD has no moments) hold empty arrays of the right type.

Numba's parallel regions silently drop a direct store into an array field of a named-tuple
argument (``work.n_active[s, l] = n`` inside ``prange`` is lost), so kernels make such stores
through small called functions.
"""

from typing import NamedTuple

import numpy as np


class Net(NamedTuple):
    sizes: np.ndarray  # int64 (n_layers + 1,): n_features, hidden sizes..., n_labels
    is_lsh: np.ndarray  # int64 (n_layers,)
    dropout: np.ndarray  # float32 (n_layers,): training dropout rate of each layer's output
    input_dropout: float  # training dropout rate of the input's non-zeros
    label_smoothing: float  # share of the target spread over the output layer's active neurons
    W: list  # float32 2-D per layer (layout above)
    b: list  # float32 (n_out,)
    mW: list  # Adam first/second moments, same shapes ((0, 0) / (0,) with SGD)
    vW: list
    mb: list
    vb: list


class LSH(NamedTuple):
    hp: list  # HashParams per layer
    buckets: list  # int32 (L, 2**bucket_bits, bucket_size) per layer
    fill: list  # int32 (L, 2**bucket_bits)
    mips: np.ndarray  # int64 (n_layers,): MIPS transform (query [x, 1, 0]) instead of [x, 1]
    mode: np.ndarray  # int64 (n_layers,): VANILLA / TOPK / THRESHOLD
    active_size: np.ndarray  # int64: most ids in an active set (labels included)
    threshold: np.ndarray  # int64: THRESHOLD mode, minimum number of tables
    min_active: np.ndarray  # int64: active sets are padded with random ids to this size
    correct: np.ndarray  # int64: log-Q correction of the random padding (output layer)
    sampler: np.ndarray  # int64: distribution of the padding, UNIFORM / LOG_UNIFORM
    ranked: list  # int32 (n_out,) for a LOG_UNIFORM layer: neuron ids by decreasing label frequency
    log1mq: list  # float64 (n_out,) for a LOG_UNIFORM layer: log(1 - q_j), q_j = P(draw j)


# Fixed row blocks of an LSH output layer whose backward pass runs row by row: each block sums its
# rows' contributions to a sample's hidden gradient separately, and the blocks are added in block
# order, so the result does not depend on the thread count (threads take whole blocks).
ROW_BLOCKS = 64


class Work(NamedTuple):
    """Buffers of one batch. Per-sample arrays have a leading axis of batch slots (the optimiser
    reads every sample's activations and deltas after the batch); per-thread scratch has a
    leading axis of thread slots."""

    # per sample slot
    x_idx: np.ndarray  # int32 (S, max nnz): the sample's input non-zeros after input dropout
    x_val: np.ndarray  # float32 (S, max nnz)
    x_n: np.ndarray  # int64 (S,)
    act_ids: list  # int32 (S, cap): active neuron ids of each layer
    act: list  # float32 (S, cap): their activations (softmax probabilities at the output)
    delta: list  # float32 (S, cap): dLoss/dz of the active neurons
    n_active: np.ndarray  # int64 (S, n_layers)
    n_head: np.ndarray  # int64 (S, n_layers): labels + retrieved ids (before random padding)
    pad_tries: np.ndarray  # int64 (S, n_layers): draws the sample's padding used (LOG_UNIFORM)
    pad_seq: list  # int32 (min_active,) per layer: the batch's distinct log-uniform draws
    pad_seq_try: list  # int64 (min_active,) per layer: draws made up to each of them
    pad_seq_n: np.ndarray  # int64 (n_layers, 2): length of pad_seq, draws made in all
    # an LSH output layer on a dense hidden one: its backward pass's partial sums per fixed row block
    dpart: np.ndarray  # float32 (ROW_BLOCKS, S, n_hidden), else (0, 0, 0)
    dpart_mark: np.ndarray  # uint8 (ROW_BLOCKS, S): which partial sums the batch wrote
    # per thread slot
    dinput: list  # float32 (T, n_in): dLoss/d(input activation), layers >= 1
    stamp: list  # int64 (T, n_out) for LSH layers
    count: list  # int32 (T, n_out) for LSH layers
    cand: list  # int32 (T, L * bucket_size) for LSH layers
    codes: list  # int64 (T, K * L)
    keys: list  # int64 (T, L)
    order: list  # int64 (T, L)
    qbuf: list  # float32 (T, dim): dense query for LSH layers
    qidx: list  # int32 (T, nnz cap): sparse query indices
    qval: list  # float32 (T, nnz cap)
    hscratch: list  # HashScratch per layer
    tags: np.ndarray  # int64 (T,): last stamp tag used by each thread slot


class Grad(NamedTuple):
    """Scratch of the optimiser pass: a batch's (sample, position) entries grouped by the weight
    row they update (a counting sort), and the first layer's bias gradient."""

    count: list  # int64 (n_rows,) per layer, zero between batches
    start: list  # int64 (n_rows,) per layer
    ent_s: list  # int64 (max entries,) per layer: sample slot of each entry
    ent_k: list  # int64 (max entries,) per layer: position (active index / input non-zero)
    gb: list  # float32 (n_out,) per layer: bias gradient
    bias_mark: list  # uint8 (n_out,) per layer
    # int64 (n_layers,): an LSH output layer computed row by row leaves the batch's entries grouped
    # (train.forward_output_rows, rows split into the fixed blocks); grouped[l] = n > 0 when they
    # are batch slots [0, n), which the optimiser pass then reuses, -1 when they are another
    # range of slots (a data-parallel worker's share), 0 when count[l] is all zeros
    grouped: np.ndarray
