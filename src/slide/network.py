"""Allocation of a network's arrays: weights, optimiser state, hash tables, thread buffers.

Everything the compiled kernels touch is created here, once, as flat NumPy arrays grouped into
the named tuples of :mod:`slide.kernels.state`; the estimator only orchestrates.
"""

from __future__ import annotations

from dataclasses import dataclass

import math
import mmap

import numpy as np
from numba import njit, typed

from .kernels.hashing import HashParams, make_scratch
from .kernels.rng import fill_uniform
from .kernels.state import LSH, ROW_BLOCKS, Grad, Net, Work
from .kernels.tables import LOG_UNIFORM, THRESHOLD, TOPK, UNIFORM, VANILLA
from .errors import ParameterError
from .lsh import FAMILIES, INSERTIONS, code_bits_of, make_hash_params

SELECTIONS = {"vanilla": VANILLA, "topk": TOPK, "threshold": THRESHOLD}
SAMPLERS = {"uniform": UNIFORM, "log_uniform": LOG_UNIFORM}
AUTO_LSH_MIN_NEURONS = 4096  # lsh_layers='auto': an output layer this wide uses LSH


@njit(cache=True)
def _typed_list_of(items):
    out = typed.List()
    for a in items:
        out.append(a)
    return out


def _tl(items) -> typed.List:
    """Per-layer containers are Numba typed lists: unlike tuples, parallel (prange) regions
    accept them, and a kernel indexes them with a run-time layer number. They are built by a
    cached kernel: ``typed.List`` built from Python compiles its methods afresh in every process
    (about 4 s of every fresh fit's setup); a cached kernel loads from disk."""
    items = tuple(items)
    out = _typed_list_of(items) if items else typed.List()
    # Python reads the layers through ``arrays``, the same NumPy arrays (shared memory): indexing
    # a typed list from Python also compiles afresh in every process
    out.arrays = items
    return out


@dataclass(frozen=True)
class LayerSpec:
    """Resolved settings of one layer (after 'auto' values are decided)."""

    n_in: int
    n_out: int
    lsh: bool
    hash_family: str = "simhash"
    hashes_per_table: int = 1
    n_tables: int = 1
    bucket_bits: int = 1
    bucket_size: int = 1
    insertion: str = "fifo"
    selection: str = "topk"
    active_size: int = 0
    threshold: int = 1
    min_active: int = 0
    center: bool = True
    sample_correction: bool = True
    sampler: str = "uniform"
    mips: bool = False
    wta_bin_size: int = 8
    simhash_density: float = 1.0
    doph_top: int = 32

    @property
    def hash_dim(self) -> int:
        return self.n_in + 2 if self.mips else self.n_in + 1  # [w, b] (+ MIPS coordinate)

    def active_cap(self, max_labels: int) -> int:
        """Room needed for one active set (labels + retrieved + padding)."""
        if not self.lsh:
            return self.n_out
        return int(min(self.n_out, max(self.active_size, self.min_active) + max_labels))


# One rebuild of an LSH layer hashes all n_out neurons (n_out x n_in x hashes_per_table x
# n_tables multiply-adds, in one BLAS product); one batch gathers its samples' active rows
# forward, backward and in the optimiser (about 3 x batch x active x n_in, scattered). Per
# multiply-add the product runs this many times faster (measured on amazon-670k's output layer:
# one rebuild took 1.85 s, as long as 10.7 of its batches, where the counts alone say 232).
REBUILD_GEMM_SPEEDUP = 22.0


def rebuild_cost_batches(spec: LayerSpec, batch_size: int) -> float:
    """About how many training batches one table rebuild of LSH layer ``spec`` costs."""
    rebuild = spec.n_out * spec.n_in * spec.hashes_per_table * spec.n_tables
    batch = 3.0 * batch_size * spec.active_cap(1) * spec.n_in
    return rebuild / (REBUILD_GEMM_SPEEDUP * batch)


def resolve_specs(p: dict, n_features: int, n_labels: int) -> list[LayerSpec]:
    """Every layer's settings from validated parameters, with the 'auto' values decided."""
    sizes = [n_features, *p["hidden_layer_sizes"], n_labels]
    n_layers = len(sizes) - 1
    ll = p["lsh_layers"]
    if ll == "auto":
        lsh = {n_layers - 1} if n_labels >= AUTO_LSH_MIN_NEURONS else set()
    elif ll == "output":
        lsh = {n_layers - 1}
    elif ll == "all":
        lsh = set(range(n_layers))
    elif ll == "none":
        lsh = set()
    else:
        bad = [v for v in ll if v >= n_layers]
        if bad:
            raise ParameterError(
                f"The 'lsh_layers' parameter of SlideClassifier names layer(s) {bad}, but the "
                f"network has {n_layers} layers (numbered 0 to {n_layers - 1}; the last is the output).")
        lsh = set(ll)
    specs = []
    for l in range(n_layers):
        n_in, n_out = sizes[l], sizes[l + 1]
        if l not in lsh:
            specs.append(LayerSpec(n_in=n_in, n_out=n_out, lsh=False))
            continue
        specs.append(lsh_spec(p, n_in, n_out, is_output=(l == n_layers - 1)))
    return specs


AUTO_BUCKET_CAP = 256
AUTO_ACTIVE_CAP = 2000
AUTO_ACTIVE_PER_SQRT = 4.5  # active_size='auto' = 4.5 * sqrt(layer size), at most AUTO_ACTIVE_CAP


def auto_active_size(n_out: int) -> int:
    """The 'auto' active-set budget of an LSH layer of ``n_out`` neurons."""
    return int(min(n_out, AUTO_ACTIVE_CAP, round(AUTO_ACTIVE_PER_SQRT * math.sqrt(n_out))))

# Kernel arrays start on a 64-byte boundary, so a vectorised loop that peels elements to reach
# alignment sums in the same order wherever malloc or np.load placed an array. (A 1e-7 drift of
# resumed runs was first blamed on alignment; its causes were kernels inheriting their callers'
# fastmath flags, now stated on every kernel, and Numba's fresh vs cached code: see
# tests/test_resilience.py.)
ALIGN = 64


# Arrays from this size up that training writes at once (the Adam moments) are mapped with their
# pages already present (MAP_POPULATE): the kernel fills the mapping in one call instead of one
# page fault per 4 KiB on first touch. The weights stay NumPy arrays, which ask for transparent
# huge pages, first touched by the parallel draw of their initial values. Both measured best in
# fresh amazon-670k fits on the 2-core virtual machines (weights populated in 4 KiB pages ran at
# 0.85-0.89x, moments in huge pages touched in parallel at 0.84x: benchmarks/RESULTS.md, "where
# its pages come from"); there the weights and Adam moments are 4.4 GB.
PREFAULT_BYTES = 16 << 20


def azeros(shape, dtype=np.float32, *, prefault: bool = False) -> np.ndarray:
    """np.zeros(shape, dtype) starting on an ALIGN-byte boundary; with ``prefault`` (for arrays
    about to be written whole) a large one is mapped with its pages present."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if prefault and n >= PREFAULT_BYTES and hasattr(mmap, "MAP_POPULATE"):
        # anonymous mappings are zeroed and page-aligned; the array keeps the mapping alive
        m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
        return np.frombuffer(m, np.uint8, count=n).view(dtype).reshape(shape)
    buf = np.zeros(n + ALIGN, np.uint8)
    off = (-buf.ctypes.data) % ALIGN
    return buf[off:off + n].view(dtype).reshape(shape)


def aligned(a: np.ndarray) -> np.ndarray:
    """``a`` itself if C-contiguous and ALIGN-aligned, else an aligned copy."""
    if a.flags.c_contiguous and a.ctypes.data % ALIGN == 0:
        return a
    out = azeros(a.shape, a.dtype)
    out[...] = a
    return out


def _count(value, n_out: int, auto: int) -> int:
    """A neuron count given as 'auto', a fraction (< 1) of the layer, or a number."""
    if value == "auto":
        return min(n_out, auto)
    if isinstance(value, float) and value < 1:
        return max(1, min(n_out, int(round(value * n_out)))) if value > 0 else 0
    return min(n_out, int(value))


def lsh_spec(p: dict, n_in: int, n_out: int, is_output: bool) -> LayerSpec:
    """Settings of one LSH layer."""
    family = p["hash_family"]
    cb = code_bits_of(family, p["wta_bin_size"])
    # active sets of ~2% at 50k neurons, shrinking as a fraction as layers grow, at most
    # AUTO_ACTIVE_CAP (0.3% at 670k): on amazon-670k dimensions 2,000 instead of 3,684 trained
    # 1.57x faster with no loss of P@1 (0.4085 vs 0.3765 after 2 epochs at scale 0.05); the
    # optimiser pass is memory-bound on the rows a batch touches (benchmarks/RESULTS.md)
    active_size = _count(p["active_size"], n_out, auto_active_size(n_out))
    min_active = _count(p["min_active"], n_out, int(round(1.2 * active_size)) if is_output else 0)
    # tables: the query's buckets together hold ~8x the budget (bucket load N / 2**bits
    # times n_tables tables), so counting how many tables return a neuron has room to rank them
    n_tables = 32 if p["n_tables"] == "auto" else p["n_tables"]
    want_bits = max(1, round(math.log2(max(2.0, n_out * n_tables / (8.0 * active_size)))))
    if p["hashes_per_table"] == "auto":
        hashes_per_table = max(1, min(64 // cb, math.ceil(want_bits / cb)))
    else:
        hashes_per_table = p["hashes_per_table"]
    if hashes_per_table * cb > 64:
        raise ParameterError(
            f"The 'hashes_per_table' parameter of SlideClassifier must be at most {64 // cb} for "
            f"hash_family={family!r} (keys hold hashes_per_table * {cb} bits <= 64). "
            f"Got {hashes_per_table} instead.")
    if p["bucket_bits"] == "auto":
        bits = min(hashes_per_table * cb, want_bits, 22)
    else:
        bits = min(p["bucket_bits"], hashes_per_table * cb)
    if p["bucket_size"] == "auto":
        # room for ~1.25x the mean load; fuller buckets keep a uniform sample (reservoir).
        # Capped at 256: selection scans n_tables * bucket_size ids per sample, so on big layers
        # uncapped buckets made it the slowest phase (amazon-670k: 1024-id buckets, 3.4x the selection
        # time of 256 for the same P@1 after 2 epochs; benchmarks/RESULTS.md).
        load = n_out / float(1 << bits)
        bsize = int(min(AUTO_BUCKET_CAP, max(16, 2 ** math.ceil(math.log2(1.25 * load + 1)))))
    else:
        bsize = p["bucket_size"]
    if p["hash_family"] == "wta" or p["hash_family"] == "dwta":
        dim = n_in + (2 if p["mips"] else 1)
        if p["wta_bin_size"] > dim:
            raise ParameterError(
                f"The 'wta_bin_size' parameter of SlideClassifier must be at most the hashed "
                f"dimension ({dim}). Got {p['wta_bin_size']} instead.")
    return LayerSpec(
        n_in=n_in, n_out=n_out, lsh=True, hash_family=family, hashes_per_table=int(hashes_per_table),
        n_tables=int(n_tables),
        bucket_bits=int(bits), bucket_size=int(bsize), insertion=p["insertion"],
        selection=p["selection"], active_size=int(active_size), threshold=int(p["threshold"]),
        min_active=int(min_active), sample_correction=bool(p["sample_correction"]),
        # label frequencies rank the output neurons only; hidden padding stays uniform
        sampler=p["sampler"] if is_output else "uniform",
        center=bool(p["center"]), mips=bool(p["mips"]), wta_bin_size=int(p["wta_bin_size"]),
        simhash_density=float(p["simhash_density"]), doph_top=int(p["doph_top"]),
    )


def init_weights(specs: list[LayerSpec], rng: np.random.Generator, init_scale: float):
    """Uniform He-style initialisation U(-a, a), a = init_scale * sqrt(6 / fan_in) for ReLU
    layers (fan_in = average non-zeros is unknown here, so the layer width is used), biases 0.
    Drawn in parallel straight into the float32 arrays, one counter-based stream per layer seeded
    from ``rng`` (a 670k x 512 layer once took a 2.7 GB float64 temporary and seconds of a short
    fit); the values do not depend on the thread count."""
    Ws, bs = [], []
    for l, s in enumerate(specs):
        a = init_scale * np.sqrt(6.0 / (s.n_in + s.n_out)) if l > 0 else init_scale * np.sqrt(6.0 / (s.n_out + 1))
        shape = (s.n_in, s.n_out) if l == 0 else (s.n_out, s.n_in)
        W = azeros(shape)
        fill_uniform(W.reshape(-1), np.uint64(rng.integers(0, 2**63)), -float(a), float(a))
        Ws.append(W)
        bs.append(azeros(s.n_out))
    return Ws, bs


def input_optimizer(p: dict) -> tuple[str, float]:
    """(optimiser, learning rate) of the first layer's weights under parameters ``p``: its own
    input_optimizer and input_learning_rate, each 'auto' (not resolved by the recipe) meaning the
    value for every other layer."""
    opt = p.get("input_optimizer", "auto")
    lr = p.get("input_learning_rate", "auto")
    return (p["optimizer"] if opt == "auto" else opt), (p["learning_rate"] if lr == "auto" else lr)


def make_net(specs: list[LayerSpec], Ws: list, bs: list, optimizer: str, dropout: float = 0.0,
             input_dropout: float = 0.0, prefault_moments: bool = True, label_smoothing: float = 0.0,
             input_optimizer: str | None = None) -> Net:
    """Weights and optimiser state; ``dropout`` applies to every hidden layer's output,
    ``input_dropout`` to the input's non-zeros, ``label_smoothing`` to the loss (training only).
    ``input_optimizer`` (default: ``optimizer``) trains the first layer's weights, whose Adam
    moments are empty arrays under SGD; every bias follows ``optimizer``. Without
    ``prefault_moments`` the Adam moments stay lazily mapped zeros (a model loaded for
    prediction never touches them)."""
    sizes = np.array([specs[0].n_in] + [s.n_out for s in specs], np.int64)
    adam = optimizer == "adam"
    adam_w = [(input_optimizer or optimizer) == "adam" if l == 0 else adam for l in range(len(specs))]
    z2 = lambda W, a: azeros(W.shape, prefault=prefault_moments) if a else np.zeros((0, 0), np.float32)  # noqa: E731
    z1 = lambda b: azeros(b.shape) if adam else np.zeros(0, np.float32)  # noqa: E731
    return Net(
        sizes=sizes,
        is_lsh=np.array([int(s.lsh) for s in specs], np.int64),
        dropout=np.array([dropout] * (len(specs) - 1) + [0.0], np.float32),
        input_dropout=float(input_dropout),
        label_smoothing=float(label_smoothing),
        W=_tl(aligned(W) for W in Ws),
        b=_tl(aligned(b) for b in bs),
        mW=_tl(z2(W, a) for W, a in zip(Ws, adam_w)),
        vW=_tl(z2(W, a) for W, a in zip(Ws, adam_w)),
        mb=_tl(z1(b) for b in bs),
        vb=_tl(z1(b) for b in bs),
    )


def make_grad(specs: list[LayerSpec], batch_size: int, max_labels: int, max_nnz: int) -> Grad:
    """Scratch of the optimiser pass for batches of up to ``batch_size`` samples."""
    i64 = np.int64
    count, start, ent_s, ent_k, gb, mark = ([] for _ in range(6))
    for l, s in enumerate(specs):
        if l == 0:
            n_rows, n_ent = s.n_in, batch_size * max_nnz
        else:
            n_rows = s.n_out
            n_ent = batch_size * s.active_cap(max_labels) if s.lsh else 0
        count.append(np.zeros(n_rows, i64))
        start.append(np.zeros(n_rows, i64))
        ent_s.append(np.zeros(n_ent, i64))
        ent_k.append(np.zeros(n_ent, i64))
        gb.append(np.zeros(s.n_out if l == 0 else 0, np.float32))
        mark.append(np.zeros(s.n_out if l == 0 else 0, np.uint8))
    return Grad(count=_tl(count), start=_tl(start), ent_s=_tl(ent_s), ent_k=_tl(ent_k),
                gb=_tl(gb), bias_mark=_tl(mark), grouped=np.zeros(len(specs), i64))


def _dummy_hp() -> HashParams:
    return make_hash_params("simhash", 1, 1, 1, bucket_bits=1, seed=0)


def label_order(Y, n_labels: int) -> np.ndarray:
    """Label ids by decreasing training frequency (ties by id): the ranks of the log-uniform
    padding sampler."""
    return label_order_of_counts(np.bincount(Y.indices, minlength=n_labels))


def label_order_of_counts(counts: np.ndarray) -> np.ndarray:
    """:func:`label_order` from the training points per label."""
    return np.argsort(-counts, kind="stable").astype(np.int32)


def log_uniform_log1mq(ranked: np.ndarray) -> np.ndarray:
    """log(1 - q_j) for every neuron j, q_j = log((r + 2) / (r + 1)) / log(n + 1) at its rank r."""
    n = ranked.shape[0]
    r = np.arange(n, dtype=np.float64)
    q = np.log1p(1.0 / (r + 1.0)) / np.log(n + 1.0)
    out = np.empty(n, np.float64)
    out[ranked] = np.log1p(-q)
    return out


def make_lsh(specs: list[LayerSpec], seed: int, ranked=None) -> tuple[LSH, list[HashParams]]:
    """Hash functions and empty tables of every layer. ``ranked``: output ids by decreasing label
    frequency, for a log-uniform padding sampler (:func:`label_order`). Also returns the
    HashParams as a Python list: read back from the Numba typed list, their uint64 fields come
    out as Python ints that no longer convert to the compiled signature."""
    hps, buckets, fills, rankeds, log1mqs = [], [], [], [], []
    for s in specs:
        if s.lsh and s.sampler == "log_uniform":
            if ranked is None or ranked.shape != (s.n_out,):
                raise ValueError("a log-uniform padding sampler needs the label frequency order")
            rankeds.append(np.ascontiguousarray(ranked, np.int32))
            log1mqs.append(log_uniform_log1mq(ranked))
        else:
            rankeds.append(np.zeros(0, np.int32))
            log1mqs.append(np.zeros(0, np.float64))
    for l, s in enumerate(specs):
        if s.lsh:
            hp = make_hash_params(s.hash_family, s.hashes_per_table, s.n_tables, s.hash_dim, bucket_bits=s.bucket_bits,
                                  seed=seed * 1000003 + l, wta_bin_size=s.wta_bin_size,
                                  simhash_density=s.simhash_density,
                                  doph_top=s.doph_top)
            hps.append(hp)
            buckets.append(np.zeros((s.n_tables, 1 << hp.bucket_bits, s.bucket_size), np.int32))
            fills.append(np.zeros((s.n_tables, 1 << hp.bucket_bits), np.int32))
        else:
            hps.append(_dummy_hp())
            buckets.append(np.zeros((0, 0, 0), np.int32))
            fills.append(np.zeros((0, 0), np.int32))
    arr = lambda f: np.array([f(s) for s in specs], np.int64)  # noqa: E731
    lsh = LSH(
        hp=_tl(hps),
        buckets=_tl(buckets),
        fill=_tl(fills),
        mips=arr(lambda s: int(s.mips)),
        mode=arr(lambda s: SELECTIONS[s.selection]),
        active_size=arr(lambda s: s.active_size),
        threshold=arr(lambda s: s.threshold),
        min_active=arr(lambda s: s.min_active),
        correct=arr(lambda s: int(s.sample_correction)),
        sampler=arr(lambda s: SAMPLERS[s.sampler]),
        ranked=_tl(rankeds),
        log1mq=_tl(log1mqs),
    )
    return lsh, hps


# the most bytes the row-block partial sums of output_by_rows may take
ROW_PARTS_BYTES = 256 << 20


def output_by_rows(specs: list[LayerSpec], n_slots: int) -> bool:
    """Whether training computes the output layer row by row (:func:`slide.kernels.train.
    forward_output_rows`): an LSH output layer fed by a dense hidden layer, whose ROW_BLOCKS
    partial sums of every sample's hidden gradient fit in ROW_PARTS_BYTES (16 MiB at the default
    batch of 128 and 512 hidden units; a larger batch falls back to the per-sample passes). A
    property of the model and the batch size, not of the machine or the thread count, so neither
    changes the result."""
    return (len(specs) >= 2 and specs[-1].lsh and not specs[-2].lsh
            and ROW_BLOCKS * n_slots * specs[-1].n_in * 4 <= ROW_PARTS_BYTES)


def make_work(specs: list[LayerSpec], hps: list[HashParams], n_threads: int, n_slots: int, max_labels: int,
              max_nnz: int, training: bool = True) -> Work:
    """Buffers for ``n_slots`` samples in flight (the batch size in training, the thread count
    in prediction) and ``n_threads`` threads, sized for the largest sample (``max_labels``
    labels, ``max_nnz`` input non-zeros)."""
    T, S = n_threads, n_slots
    f32, i32, i64 = np.float32, np.int32, np.int64
    n_seq = lambda s: s.min_active if s.lsh and s.sampler == "log_uniform" else 0  # noqa: E731
    act_ids, act, delta, dinput = [], [], [], []
    stamp, count, cand, codes, keys, order, qbuf, qidx, qval, hscr = ([] for _ in range(10))
    for l, s in enumerate(specs):
        cap = s.active_cap(max_labels)
        act_ids.append(np.zeros((S, cap), i32))
        act.append(azeros((S, cap), f32))
        delta.append(azeros((S, cap), f32))
        dinput.append(azeros((T, s.n_in if l > 0 else 0), f32))
        hp = hps[l]
        on = s.lsh
        stamp.append(np.zeros((T, s.n_out if on else 0), i64))
        count.append(np.zeros((T, s.n_out if on else 0), i32))
        cand.append(np.zeros((T, s.n_tables * s.bucket_size if on else 0), i32))
        codes.append(np.zeros((T, s.hashes_per_table * s.n_tables if on else 0), i64))
        keys.append(np.zeros((T, s.n_tables if on else 0), i64))
        order.append(np.zeros((T, s.n_tables if on else 0), i64))
        qbuf.append(azeros((T, s.hash_dim if on else 0), f32))
        nq = ((max_nnz if l == 0 else s.n_in) + 1) if on else 0
        qidx.append(np.zeros((T, nq), i32))
        qval.append(np.zeros((T, nq), f32))
        hscr.append(make_scratch(hp, T))
    nb, nbs, nbh = (ROW_BLOCKS, S, specs[-1].n_in) if training and output_by_rows(specs, S) else (0, 0, 0)
    return Work(
        dpart=azeros((nb, nbs, nbh), f32), dpart_mark=np.zeros((nb, nbs), np.uint8),
        x_idx=np.zeros((S, max_nnz), i32), x_val=azeros((S, max_nnz), f32), x_n=np.zeros(S, i64),
        act_ids=_tl(act_ids), act=_tl(act), delta=_tl(delta), n_active=np.zeros((S, len(specs)), i64),
        n_head=np.zeros((S, len(specs)), i64), pad_tries=np.zeros((S, len(specs)), i64),
        pad_seq=_tl(np.zeros(n_seq(s), i32) for s in specs), pad_seq_try=_tl(np.zeros(n_seq(s), i64) for s in specs),
        pad_seq_n=np.zeros((len(specs), 2), i64),
        dinput=_tl(dinput), stamp=_tl(stamp), count=_tl(count), cand=_tl(cand), codes=_tl(codes),
        keys=_tl(keys), order=_tl(order), qbuf=_tl(qbuf), qidx=_tl(qidx), qval=_tl(qval),
        hscratch=_tl(hscr), tags=np.zeros(T, i64),
    )


__all__ = ["LayerSpec", "resolve_specs", "lsh_spec", "init_weights", "make_net", "make_grad", "make_lsh", "make_work", "output_by_rows", "label_order", "SAMPLERS", "FAMILIES", "INSERTIONS", "SELECTIONS"]
