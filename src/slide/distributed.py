"""Data-parallel training over ``torch.distributed`` (gloo on CPUs), launched with ``torchrun``.

Each process (a *worker*) holds a shard of the training points and every weight. A global batch
of ``batch_size`` samples is split over the workers (worker q takes ``batch_size // N`` of its
own points, one more for the first ``batch_size % N`` workers); each runs its share HOGWILD on
its cores, exactly as one process runs a batch. Then:

- ``data_parallel='sync'``: the workers all-gather the batch's per-sample records (input
  non-zeros, active ids, activations, deltas: :mod:`slide.kernels.exchange`), the factors from
  which every touched row's gradient follows, and every worker runs the optimiser pass on the
  whole batch. Every replica applies the same lazy-Adam update, so replicas stay identical
  without ever sending a weight, and the run is what one process gets from the same global
  batches (deterministic for a fixed seed and N).
- ``data_parallel='local_sgd'``: every worker updates on its own share of the batch, and every
  ``sync_every`` batches the workers average the weight rows any of them touched since the last
  average (the union of touched ids is gathered first); Adam's moments stay local.

Hash tables are rebuilt by every worker from the identical weights with the shared seed on the
shared schedule, so they agree without being sent. Rank 0 alone writes checkpoints and the
model (atomically); a restarted group (``torchrun --max-restarts``) resumes from the last
checkpoint on every rank. Bytes sent are counted per batch, next to what a ring all-reduce of
the dense gradient of the same model would send.

Every worker runs the whole optimiser pass and every rebuild, and at amazon-670k dimensions that
replicated work, not the network, bounds the speed-up (near 2x: benchmarks/RESULTS.md section 13).

PyTorch is optional: single-process slide never imports it.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
import zlib

import numpy as np

from .data_checks import row_maxima
from .errors import DataFormatError, ParameterError, TrainingError
from .kernels import exchange as KX
from .recipe import DataProfile

TIMEOUT_ENV = "SLIDE_DIST_TIMEOUT"  # seconds a worker waits for the others (joining, each exchange)
# Unset, joining waits as long as torchrun's own rendezvous does (its join_timeout), so a worker
# that never starts is reported after minutes, not half an hour; each exchange waits PyTorch's
# default, since rank 0 evaluates between epochs while the others wait.
DEFAULT_JOIN_TIMEOUT = 600.0
DEFAULT_TIMEOUT = 1800.0


def _timeouts() -> tuple[float, float]:
    """(seconds to wait for every worker to join, seconds each exchange may wait)."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_JOIN_TIMEOUT, DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ParameterError(f"{TIMEOUT_ENV} must be a positive number of seconds. Got {raw!r} instead.")
    return value, value


def _launched() -> bool:
    """Environment set by torchrun (or by hand for init_method='env://') for more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ and "MASTER_ADDR" in os.environ
    except ValueError:
        return False


def restarted() -> bool:
    """Whether torchrun's elastic agent restarted this worker (after a worker of the group failed)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    except ValueError:
        return False


def _torch_dist(required: bool):
    try:
        import torch.distributed as dist
    except ImportError:
        if required:
            raise ParameterError("Data-parallel training needs PyTorch: pip install 'slide[torch]' "
                                 "(or 'slide[distributed]').") from None
        return None
    return dist


def context(mode: str, sync_every: int, *, where: str = "SlideClassifier") -> "DataParallel | None":
    """The group to train in for ``data_parallel=mode``, or None to train alone. An initialised
    torch.distributed group is used as it is; without one, torchrun's environment (WORLD_SIZE > 1)
    starts a gloo group, waiting at most SLIDE_DIST_TIMEOUT seconds (default 600) for every worker."""
    if mode == "off":
        return None
    dist = sys.modules.get("torch.distributed")
    group_ready = dist is not None and dist.is_available() and dist.is_initialized()
    if not group_ready and not _launched():
        if mode == "auto":
            return None
        raise ParameterError(f"The 'data_parallel' parameter of {where} is {mode!r}, but this process is in no "
                             "torch.distributed group: launch it with torchrun (e.g. torchrun --nproc-per-node 2 "
                             "-m slide train ...), or call torch.distributed.init_process_group first.")
    dist = _torch_dist(required=True)
    if not dist.is_initialized():
        timeout, exchange = _timeouts()
        rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
        wait = datetime.timedelta(seconds=timeout)
        try:
            store, rank_, world_ = next(dist.rendezvous("env://", timeout=wait))
            # torchrun's static rendezvous keeps one store across restarts: without a fresh prefix
            # a restarted worker reads the addresses its killed predecessors published there
            store = dist.PrefixStore(f"slide/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
            dist.init_process_group("gloo", store=store, rank=rank_, world_size=world_,
                                    timeout=datetime.timedelta(seconds=exchange))
            _GROUPS["owned"] = True
        except Exception as e:  # torch raises DistStoreError, RuntimeError, TimeoutError ... here
            raise TrainingError(
                f"Worker {rank} of {world}: the process group did not form (waited up to {timeout:g} s for the "
                f"rendezvous at {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}; "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Every worker must start with "
                f"the same WORLD_SIZE and reach that address; {TIMEOUT_ENV} sets the wait.") from None
    world = dist.get_world_size()
    if world == 1:
        return None
    return DataParallel(dist, "sync" if mode == "auto" else mode, sync_every)


def _cpu_group(dist):
    """The group to exchange CPU tensors in: the default one when it runs gloo, else (a user's
    NCCL group, say) a gloo group of the same processes, made once."""
    if dist.get_backend() == "gloo":
        return None
    if "gloo" not in _GROUPS:
        _GROUPS["gloo"] = dist.new_group(backend="gloo")
    return _GROUPS["gloo"]


_GROUPS: dict = {}  # the gloo subgroup made for a user's group; whether slide started the group


def release(dp: "DataParallel | None") -> None:
    """After training: a group slide started (from torchrun's environment) is closed, every worker
    having reached this point. A process that exits with a gloo group still open can abort in its
    C++ teardown ("terminate called without an active exception"); a user's group is left open."""
    if dp is None or not _GROUPS.pop("owned", False):
        return
    try:
        dp.barrier()
    finally:
        _GROUPS.pop("gloo", None)
        dp._dist.destroy_process_group()


class DataParallel:
    """This worker's view of the group: collectives on NumPy arrays, the split of every global
    batch, the exchange after each batch, and the byte counts."""

    def __init__(self, dist, mode: str, sync_every: int):
        import torch

        self._dist, self._torch = dist, torch
        self._group = _cpu_group(dist)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.mode, self.sync_every = mode, int(sync_every)
        self.bytes_sent = 0  # by this worker, in exchanges of training batches
        self.exchanges = 0
        self.copy_seconds = 0.0  # packing and unpacking batch records (this worker's own work)
        self.wait_seconds = 0.0  # inside collectives (transfer, and waiting for the slowest worker)
        self._buf = np.empty(0, np.float32)
        self._marks = None
        self._kernels = None

    # ------------------------------------------------------------------ collectives
    def _call(self, what: str, f, *args):
        t0 = time.perf_counter()
        try:
            return f(*args, group=self._group)
        except Exception as e:  # a peer died (connection reset) or hung (timeout)
            raise TrainingError(
                f"Worker {self.rank} of {self.world}: {what} with the other workers failed ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}). A worker stopped or hung; under torchrun "
                "--max-restarts the group restarts and resumes from the last checkpoint.") from None
        finally:
            self.wait_seconds += time.perf_counter() - t0

    def sum_(self, arrays) -> None:
        """Sum each NumPy array in place over the workers."""
        for a in arrays:
            c = np.ascontiguousarray(a)
            self._call("adding up arrays", self._dist.all_reduce, self._torch.from_numpy(c))
            if c is not a:
                a[...] = c

    def gather_ints(self, values) -> np.ndarray:
        """(world, len(values)) int64: every worker's values."""
        mine = self._torch.tensor(np.asarray(values, np.int64).reshape(-1))
        out = [self._torch.empty_like(mine) for _ in range(self.world)]
        self._call("gathering counts", self._dist.all_gather, out, mine)
        return np.stack([t.numpy() for t in out])

    def broadcast_int(self, value: int) -> int:
        """Rank 0's value, on every worker."""
        t = self._torch.tensor([int(value)], dtype=self._torch.int64)
        self._call("agreeing on a value", self._dist.broadcast, t, 0)
        return int(t.item())

    def any(self, flag: bool) -> bool:
        """True on every worker when it is true on one (a stop request)."""
        return bool(self.gather_ints([int(bool(flag))]).any())

    def barrier(self) -> None:
        self._call("waiting", self._dist.barrier)

    # ------------------------------------------------------------------ the batch plan
    def plan(self, n_local: int, batch_size: int) -> int:
        """Split every global batch over the workers, given this worker's trainable samples;
        returns the batches per epoch (every worker runs the same number: a worker whose shard
        runs out contributes nothing to the last batches, and no point is left out)."""
        self.shard_sizes = self.gather_ints([n_local])[:, 0]
        q = np.arange(self.world)
        self.local_batch = batch_size // self.world + (q < batch_size % self.world).astype(np.int64)
        if (self.local_batch == 0).any():
            raise ParameterError(f"batch_size ({batch_size}) must be at least the number of workers "
                                 f"({self.world}): each worker takes a share of every batch.")
        self.n_batches = int(max(-(-int(n) // int(b)) for n, b in zip(self.shard_sizes, self.local_batch)))
        return self.n_batches

    def batch_counts(self, bi: int) -> np.ndarray:
        """Samples each worker contributes to batch ``bi`` (known to all without a message)."""
        return np.clip(self.shard_sizes - bi * self.local_batch, 0, self.local_batch)

    def batch_share(self, bi: int) -> tuple[int, int, int]:
        """(first, end) of this worker's rows of batch ``bi`` in its epoch order, and the batch
        slot its first sample takes (the samples of lower ranks come first)."""
        counts = self.batch_counts(bi)
        lo = bi * int(self.local_batch[self.rank])
        return lo, lo + int(counts[self.rank]), int(counts[: self.rank].sum())


    def epoch_order(self, trainable: np.ndarray, seed: int, epoch: int) -> np.ndarray:
        """This worker's sample order in ``epoch``: a function of (seed, rank, epoch) alone, so a
        restarted worker finds it again without any saved generator state."""
        rng = np.random.default_rng([int(seed) & (2**63 - 1), self.rank, int(epoch)])
        return trainable[rng.permutation(trainable.size)]

    # ------------------------------------------------------------------ exchanges
    def exchange_batch(self, state, bi: int, slot0: int, n_local: int, loss: float) -> tuple[int, float]:
        """Sync mode, after this worker's samples of batch ``bi`` ran into slots slot0 .. (their
        loss summed to ``loss``): gather every worker's records into their slots; returns the
        batch's sample count and loss."""
        net, work, torch = state.net, state.work, self._torch
        if self._kernels is None:  # the compiled entry points, typed once (see training.compiled)
            from .training import compiled

            f32 = np.zeros(1, np.float32)
            self._kernels = (compiled(KX.records_size, net, work, 0, 0),
                             compiled(KX.pack_records, net, work, 0, 0, f32),
                             compiled(KX.unpack_records, net, work, 0, 0, f32, 0))
        records_size, pack_records, unpack_records = self._kernels
        counts = self.batch_counts(bi)
        size = int(records_size(net, work, slot0, n_local))
        # the workers' losses travel with the sizes (float64 bit patterns): one round trip
        heads = self.gather_ints([size, np.float64(loss).view(np.int64)])
        sizes = heads[:, 0]
        cap = max(1, int(sizes.max()))
        t0 = time.perf_counter()
        if self._buf.size < cap:
            self._buf = np.empty(max(cap, 2 * self._buf.size), np.float32)
        pack_records(net, work, slot0, n_local, self._buf)
        self.copy_seconds += time.perf_counter() - t0
        parts = [torch.empty(cap, dtype=torch.float32) for _ in range(self.world)]
        self._call("exchanging the batch", self._dist.all_gather, parts, torch.from_numpy(self._buf[:cap]))
        t0 = time.perf_counter()
        slot = 0
        for q in range(self.world):
            if q != self.rank and counts[q]:
                got = unpack_records(net, work, slot, int(counts[q]), parts[q].numpy(), state.max_nnz)
                if got != sizes[q]:
                    raise TrainingError(f"Worker {self.rank}: the batch records of worker {q} do not fit this "
                                        "worker's model: every worker must train the same model on data of the "
                                        "same dimensions.")
            slot += int(counts[q])
        self.copy_seconds += time.perf_counter() - t0
        # all-gather: this worker's (padded) share reaches the N - 1 others, plus the size exchange
        self.bytes_sent += (self.world - 1) * (cap * 4 + 8)
        self.exchanges += 1
        return slot, float(np.ascontiguousarray(heads[:, 1]).view(np.float64).sum())

    def note_touched(self, state, n_local: int) -> None:
        """Local-SGD mode, after each local batch: remember the rows it updated."""
        if self._marks is None:
            from .network import _tl

            self._marks = _tl(np.zeros(W.shape[0] if (l == 0 or s.lsh) else 0, np.uint8)
                              for l, (W, s) in enumerate(zip(state.net.W.arrays, state.specs)))
        KX.mark_touched(state.net, state.work, n_local, self._marks)

    def _union(self, ids: np.ndarray) -> np.ndarray:
        sizes = self.gather_ints([ids.size])[:, 0]
        cap = max(1, int(sizes.max()))
        torch = self._torch
        mine = torch.full((cap,), -1, dtype=torch.int64)
        mine[: ids.size] = torch.from_numpy(ids.astype(np.int64))
        parts = [torch.empty(cap, dtype=torch.int64) for _ in range(self.world)]
        self._call("gathering touched rows", self._dist.all_gather, parts, mine)
        self.bytes_sent += (self.world - 1) * (cap * 8 + 8)
        every = np.concatenate([t.numpy() for t in parts])
        return np.unique(every[every >= 0])

    def average_touched(self, state) -> None:
        """Local-SGD mode, every sync_every batches: average every row some worker updated since
        the last average (weights and biases; the untouched rows are equal everywhere already)."""
        if self._marks is None:
            return
        ring = 2 * (self.world - 1) / self.world  # a ring all-reduce sends this many copies of the data
        for l, s in enumerate(state.specs):
            W, b = state.net.W.arrays[l], state.net.b.arrays[l]
            if l == 0 or s.lsh:
                rows = self._union(np.flatnonzero(self._marks.arrays[l]))
                block = W[rows]
                bias = b.copy() if l == 0 else b[rows]  # layer 0's rows are features: every bias averaged
            else:
                rows, block, bias = None, W.copy(), b.copy()
            self.sum_([block, bias])
            block /= self.world
            bias /= self.world
            if rows is None:
                W[...], b[...] = block, bias
            else:
                W[rows] = block
                if l == 0:
                    b[...] = bias
                else:
                    b[rows] = bias
            self.bytes_sent += int(ring * (block.nbytes + bias.nbytes))
        for m in self._marks.arrays:
            m[:] = 0
        self.exchanges += 1

    def report(self, state) -> dict:
        """What the exchanges cost: the estimator's ``data_parallel_``."""
        return {"world_size": self.world, "rank": self.rank, "mode": self.mode,
                "n_samples": int(self.shard_sizes.sum()), "exchanges": self.exchanges,
                "bytes_sent": self.bytes_sent, "copy_seconds": self.copy_seconds,
                "wait_seconds": self.wait_seconds,
                "bytes_sent_per_batch": self.bytes_sent / max(1, state.step),
                "dense_allreduce_bytes_per_batch": self.dense_allreduce_bytes(state)}

    def dense_allreduce_bytes(self, state) -> int:
        """What one worker sends per batch in a ring all-reduce of the whole gradient (data-parallel
        dense training)."""
        n = sum(W.nbytes + b.nbytes for W, b in zip(state.net.W.arrays, state.net.b.arrays))
        return int(2 * (self.world - 1) / self.world * n)


def data_fingerprint(dp: DataParallel, fp: dict) -> dict:
    """The whole data set's fingerprint from every worker's shard fingerprint: a resumed group must
    see the same shards."""
    keys = ("n_samples", "n_features", "n_labels", "nnz", "n_label_entries", "crc32")
    rows = dp.gather_ints([fp[k] for k in keys])
    crc = zlib.crc32(np.ascontiguousarray(rows[:, -1]).view(np.uint8))
    return {"n_samples": int(rows[:, 0].sum()), "n_features": int(rows[0, 1]), "n_labels": int(rows[0, 2]),
            "nnz": int(rows[:, 3].sum()), "n_label_entries": int(rows[:, 4].sum()), "crc32": int(crc),
            "world_size": dp.world}


def shard_profile(dp: DataParallel, X, Y, targets: dict, batch_size: int):
    """(profile of the whole data, batches per epoch, (most labels, most non-zeros) of any row,
    training points per label) from every worker's shard X, Y; the shards must agree on the
    features, labels and label names."""
    names = zlib.crc32(json.dumps(targets, sort_keys=True, default=str).encode())
    rows = dp.gather_ints([X.shape[1], Y.shape[1], names])
    for col, what in ((0, "features"), (1, "labels")):
        if (rows[:, col] != rows[0, col]).any():
            raise DataFormatError(f"Worker {dp.rank}: the workers' shards have different numbers of {what} "
                                  f"({', '.join(f'worker {q}: {int(v)}' for q, v in enumerate(rows[:, col]))}); "
                                  "every worker must load its shard with the same dimensions.")
    if (rows[:, 2] != rows[0, 2]).any():
        raise DataFormatError(f"Worker {dp.rank}: the workers' labels differ in names or order; pass every "
                              "worker a label matrix of the same columns (or the same classes).")
    labelled = np.diff(Y.indptr) > 0
    counts = np.bincount(Y.indices, minlength=Y.shape[1]).astype(np.int64)
    totals = np.array([labelled.sum(), np.diff(X.indptr)[labelled].sum()], np.int64)
    dp.sum_([counts, totals])
    if totals[0] == 0:
        raise ParameterError("Y has no sample with a label on any worker: there is nothing to train on.")
    profile = DataProfile.of_counts(n_samples=int(totals[0]), n_features=int(X.shape[1]), label_counts=counts,
                                    nnz=int(totals[1]))
    n_batches = dp.plan(int(labelled.sum()), batch_size)
    most = dp.gather_ints(row_maxima(X, Y)).max(axis=0)
    return profile, n_batches, (int(most[0]), int(most[1])), counts
