"""How many bytes a configuration needs, and whether the machine has them, before allocating.

The estimate adds up exactly the arrays :mod:`slide.network` allocates: weights and biases, Adam
moments, hash tables, the per-sample batch buffers, the per-thread scratch and the optimiser
pass's scratch, plus the exact-prediction chunk and the label sums of imprinting the trained output rows
(``output_imprint``, at the end of a fit). It leaves out the data set itself (already in
memory when training starts) and the interpreter (~150 MB with Numba loaded).
"""

from __future__ import annotations

import os

from .centroids import IMPRINT_BLOCK_BYTES
from .errors import SlideError
from .kernels.state import ROW_BLOCKS
from .network import input_optimizer, output_by_rows

F32 = I32 = 4
I64 = 8
PREDICT_CHUNK_BYTES = (1 << 24) * 4 * 2  # logits chunk + its copy (see predict.py)


class ResourceError(SlideError, MemoryError):
    """The configuration needs more memory than the machine has available."""


def estimate_bytes(specs, p: dict, n_threads: int, max_labels: int, max_nnz: int) -> dict:
    """Bytes by kind for training ``specs`` with batch size p['batch_size'] on ``n_threads``."""
    B, T = p["batch_size"], n_threads
    adam = p["optimizer"] == "adam"
    adam_in = input_optimizer(p)[0] == "adam"  # 'auto' counts as the other layers' optimiser
    weights = tables = per_sample = per_thread = optim = 0
    for l, s in enumerate(specs):
        w = s.n_in * s.n_out * F32 + s.n_out * F32
        weights += w
        optim += 2 * s.n_in * s.n_out * F32 * (adam_in if l == 0 else adam) + 2 * s.n_out * F32 * adam
        cap = s.active_cap(max_labels)
        per_sample += B * cap * (I32 + F32 + F32)  # act_ids, act, delta
        per_thread += T * (s.n_in * F32 if l > 0 else 0)  # dinput
        if s.lsh:
            n_buckets = 1 << s.bucket_bits
            tables += s.n_tables * n_buckets * (s.bucket_size + 1) * I32
            if s.sampler == "log_uniform":
                tables += s.n_out * (I32 + I64)  # padding sampler: frequency ranks, log(1 - q)
                per_sample += s.min_active * (I32 + I64)  # the batch's drawn sequence
            per_thread += T * (s.n_out * (I64 + I32) + s.n_tables * s.bucket_size * I32
                               + s.hashes_per_table * s.n_tables * (I64 + F32 + I64)
                               + 3 * s.n_tables * I64 + (s.hash_dim + 1) * (F32 + I32 + I64))
        # optimiser pass: counting-sort arrays over rows, entries, gradient rows
        n_rows = s.n_in if l == 0 else s.n_out
        n_ent = B * max_nnz if l == 0 else (B * cap if s.lsh else 0)
        row_len = s.n_out if l == 0 else s.n_in
        optim_scratch = 2 * n_rows * I64 + 2 * n_ent * I64 + T * row_len * F32
        per_thread += optim_scratch
    per_sample += B * max_nnz * (I32 + F32)  # the input after input dropout
    if output_by_rows(specs, B):  # the output layer's backward pass: row-block partial sums
        per_sample += ROW_BLOCKS * B * (specs[-1].n_in * F32 + 1)
    imprint = 0
    if len(specs) > 1 and p.get("output_imprint", 0.0) != 0:  # 'auto' counts: the data decides
        imprint = min(IMPRINT_BLOCK_BYTES, specs[-1].n_out * specs[-1].n_in * F32)
    return {"weights": weights, "optimizer_state": optim, "hash_tables": tables, "batch_buffers": per_sample,
            "scratch": per_thread, "prediction": PREDICT_CHUNK_BYTES, "imprint": imprint}


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else physical memory, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def check_fits(estimate: dict, headroom: float = 0.9) -> None:
    """Raise ResourceError when the estimate exceeds ``headroom`` of the available memory."""
    need = sum(estimate.values())
    avail = available_bytes()
    if avail is not None and need > headroom * avail:
        parts = ", ".join(f"{k} {fmt(v)}" for k, v in estimate.items() if v)
        raise ResourceError(
            f"This configuration needs about {fmt(need)} ({parts}) but only {fmt(avail)} of memory is "
            "available. Reduce hidden_layer_sizes, batch_size, n_tables or bucket_size, use "
            "optimizer='sgd' (no moments), or run on a larger machine. (slide train --dry_run "
            "prints this estimate without training.)")
