"""The Python epoch loop: batches, optimiser steps, table rebuilds, evaluation, checkpoints.

:func:`run` trains a :class:`slide.state.TrainState` in place (it never sees the estimator).
One compiled call runs a batch's samples (:func:`slide.kernels.train.train_batch`), one more
the optimiser pass (:func:`slide.kernels.train.apply_batch`); everything here is orchestration.
A run is fully described by the model's arrays plus a small :class:`Progress` record (epoch,
batch, the permutation generator's state at the start of the epoch, running sums), so a
checkpoint written after any batch resumes into exactly the run that was interrupted: per-sample
random streams are keyed by the global step, the optimiser pass sums gradients in a fixed order,
and the tables and rebuild schedule are part of the checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from .centroids import imprint_output
from .errors import DataFormatError, ParameterError, TrainingError
from .kernels import train as K
from .kernels.optim import ADAM, SGD
from .kernels.timer import cycles_per_second
from .network import input_optimizer

log = logging.getLogger("slide")


def check_callbacks(callback, batch_callback, every) -> None:
    """The callbacks are checked before training, not when first called (after an epoch)."""
    for name, f in (("callback", callback), ("batch_callback", batch_callback)):
        if f is not None and not callable(f):
            raise ParameterError(f"The {name!r} argument of fit must be a callable or None. Got {f!r} instead.")
    if batch_callback is not None and (isinstance(every, bool) or not isinstance(every, (int, np.integer))
                                       or every < 1):
        raise ParameterError(f"batch_callback_every must be a positive int (batches). Got {every!r} instead.")


def seed_of(random_state):
    """random_state as scikit-learn takes it (None, an int, a RandomState or a Generator) reduced
    to an int seed or None; anything else is left for validation to reject."""
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**63 - 1, dtype=np.int64))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    return random_state


def resolve_seed(random_state) -> int:
    """The run's seed: random_state, or fresh OS entropy when it is None."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
    return random_state


def data_fingerprint(X, Y) -> dict:
    """Shapes and CRC32s of the training matrices: a resumed run must see the same data."""
    crc = 0
    for a in (X.indptr, X.indices, X.data, Y.indptr, Y.indices):
        crc = zlib.crc32(np.ascontiguousarray(a).view(np.uint8), crc)
    return {"n_samples": int(X.shape[0]), "n_features": int(X.shape[1]), "n_labels": int(Y.shape[1]),
            "nnz": int(X.nnz), "n_label_entries": int(Y.nnz), "crc32": int(crc)}


@dataclass
class Progress:
    """Where a run stands; JSON-able so it travels in the model file's metadata."""

    n_epochs: int
    rng_state: dict  # permutation generator state at the start of the current epoch
    fingerprint: dict
    epoch: int = 0  # completed epochs
    batch: int = 0  # completed batches of the current epoch
    samples_seen: int = 0
    loss_sum: float = 0.0  # current epoch, so far
    active_sum: int = 0  # current epoch, so far
    epoch_seconds: float = 0.0  # current epoch, so far
    train_seconds: float = 0.0
    done: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d, where="model") -> "Progress":
        """Progress from a model file's record, every field checked (a resume indexes with them)."""
        def bad(what):
            return DataFormatError(f"{where}: metadata 'progress' {what}.")

        if not isinstance(d, dict) or set(d) - set(cls.__dataclass_fields__):
            raise bad("must be a record of the fields " + ", ".join(cls.__dataclass_fields__))
        ints = ("n_epochs", "epoch", "batch", "samples_seen", "active_sum")
        for k in ints:
            v = d.get(k, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if k == "n_epochs" else 0):
                raise bad(f"field {k!r} must be an int >= {1 if k == 'n_epochs' else 0}; got {v!r}")
        if d.get("epoch", 0) > d.get("n_epochs", 1):
            raise bad(f"field 'epoch' ({d.get('epoch')}) exceeds 'n_epochs' ({d.get('n_epochs')})")
        for k in ("loss_sum", "epoch_seconds", "train_seconds"):
            v = d.get(k, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(f"field {k!r} must be a finite number; got {v!r}")
        if not isinstance(d.get("done", False), bool):
            raise bad(f"field 'done' must be true or false; got {d.get('done')!r}")
        fp = d.get("fingerprint")
        if not isinstance(fp, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in fp.values()):
            raise bad("field 'fingerprint' must be a record of ints")
        try:  # the permutation generator's state must be one a generator accepts
            np.random.default_rng().bit_generator.state = d.get("rng_state")
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise bad(f"field 'rng_state' is not a generator state ({type(e).__name__}: {e})") from None
        return cls(**d)


@dataclass
class Checkpointing:
    """Write ``path`` every ``every_batches`` batches and/or every ``every_seconds`` seconds."""

    path: str
    params: dict  # the estimator's parameters, written with the state ...
    targets: object  # ... and its targets.Targets (label names)
    text: object = None  # ... and a text model's featuriser (slide.text.TextFeatures)
    every_batches: int | None = None
    every_seconds: float | None = None
    last_time: float = field(default_factory=time.perf_counter)
    last_batch: int = 0

    def due(self, step: int) -> bool:
        if self.every_batches is not None and step - self.last_batch >= self.every_batches:
            return True
        return self.every_seconds is not None and time.perf_counter() - self.last_time >= self.every_seconds

    def mark(self, step: int) -> None:
        self.last_batch = step
        self.last_time = time.perf_counter()


def compiled(kernel, *args):
    """``kernel``'s compiled entry point for arguments of these types. The epoch loop calls its
    kernels with the same types every batch, and Numba's dispatcher types every field of the
    state's named tuples on every call: 0.3-0.5 ms a call, ~2% of a fit of small batches."""
    from numba import typeof

    return kernel.compile(tuple(typeof(a) for a in args))


_OPT = {"adam": ADAM, "sgd": SGD}


def optimizer_step(state, p: dict, n_rows: int, apply=None) -> None:
    """Advance the global step and run the optimiser pass for the last batch (``apply``: the
    compiled :func:`slide.kernels.train.apply_batch`, see :func:`compiled`). The first layer's
    weights take their own optimiser and step size (:func:`slide.network.input_optimizer`)."""
    state.step += 1
    decay = 1.0
    if p["lr_schedule"] == "linear":
        decay = max(0.0, 1.0 - (state.step - 1) / state.total_steps)
    in_opt, in_lr = input_optimizer(p)
    lr, in_lr = p["learning_rate"] * decay, in_lr * decay
    b1 = b2 = eps = 0.0
    if "adam" in (p["optimizer"], in_opt):
        # the kernel decays the moments with float32 betas: correct for exactly those
        b1, b2 = float(np.float32(p["beta1"])), float(np.float32(p["beta2"]))
        bc1, bc2 = 1.0 - b1 ** state.step, 1.0 - b2 ** state.step
        # bias corrections folded into the step sizes and epsilon (see kernels.optim.step_row)
        eps = p["adam_epsilon"] * math.sqrt(bc2)
        if p["optimizer"] == "adam":
            lr = lr * math.sqrt(bc2) / bc1
        if in_opt == "adam":
            in_lr = in_lr * math.sqrt(bc2) / bc1
    (apply or K.apply_batch)(state.net, state.work, state.grad, n_rows, state.n_threads, _OPT[p["optimizer"]], lr,
                             b1, b2, eps, _OPT[in_opt], in_lr)


def run(state, X, Y, *, eval_set=None, eval_k=5, callback=None, checkpoint: Checkpointing | None = None,
        batch_callback=None, batch_callback_every=None, group=None) -> None:
    """Train ``state`` (a :class:`slide.state.TrainState`, tables built) on validated X, Y from
    where its ``progress`` stands to the last epoch; a finished run clears ``progress``.

    ``batch_callback(record)`` (optional) runs every ``batch_callback_every`` batches with a
    record of epoch, batch, step, samples_seen and train_seconds; the time it takes (say, an
    evaluation) is not counted as training time. Returning True stops training.

    ``group`` (a :class:`slide.distributed.DataParallel`, its batch plan made): X, Y are this
    worker's shard, each batch is this worker's share of a global batch, and the workers
    exchange after it (see :mod:`slide.distributed`); callbacks' stop requests are agreed.

    A run that reaches its last epoch ends by imprinting the output rows (``output_imprint``,
    :func:`slide.centroids.imprint_output`), then rebuilds the tables from the final weights."""
    p = state.config
    progress = state.progress
    n_threads = state.n_threads
    trainable = np.flatnonzero(np.diff(Y.indptr) > 0).astype(np.int64)
    bs = p["batch_size"]
    if group is None:
        n_batches, n_epoch_samples = math.ceil(trainable.size / bs), trainable.size
    else:
        n_batches, n_epoch_samples = group.n_batches, int(group.shard_sizes.sum())
    local_sgd = group is not None and group.mode == "local_sgd"
    agree = (lambda flag: flag) if group is None else group.any
    rate = cycles_per_second()
    timers = np.zeros((n_threads, K.N_PHASES), np.uint64)
    losses = np.zeros(n_threads, np.float64)
    out_lsh = state.specs[-1].lsh
    seed = np.uint64(state.seed)
    rng = np.random.default_rng()
    train_batch = compiled(K.train_batch, state.net, state.lsh, state.work, state.grad, X.indptr, X.indices, X.data,
                           Y.indptr, Y.indices, trainable[:0], 0, 0, seed, state.step, n_threads, losses, timers)
    apply_batch = compiled(K.apply_batch, state.net, state.work, state.grad, 0, n_threads,
                           _OPT[p["optimizer"]], 0.0, 0.0, 0.0, 0.0, _OPT[input_optimizer(p)[0]], 0.0)
    try:
        while progress.epoch < progress.n_epochs:
            if group is None:
                rng.bit_generator.state = progress.rng_state
                order = trainable[rng.permutation(trainable.size)]
            else:
                order = group.epoch_order(trainable, state.seed, progress.epoch)
            t_epoch = time.perf_counter() - progress.epoch_seconds
            bar = _progress_bar(state, n_batches, progress) if group is None or group.rank == 0 else None
            for bi in range(progress.batch, n_batches):
                if group is None:
                    rows, slot0 = order[bi * bs:(bi + 1) * bs], 0
                else:
                    lo, hi, slot0 = group.batch_share(bi)
                    rows = order[lo:hi]
                losses[:] = 0.0
                # a worker's samples take their slots and random streams in the global batch
                # (local SGD updates on its own share alone: slots from 0)
                train_batch(state.net, state.lsh, state.work, state.grad, X.indptr, X.indices, X.data, Y.indptr,
                            Y.indices, rows, 0 if local_sgd else slot0, slot0, seed, state.step, n_threads,
                            losses, timers)
                batch_loss = float(losses.sum())
                n_rows = rows.size
                if group is not None:
                    t0 = time.perf_counter()
                    if local_sgd:
                        group.note_touched(state, rows.size)
                        n_done = int(group.batch_counts(bi).sum())
                    else:
                        n_rows, batch_loss = group.exchange_batch(state, bi, slot0, rows.size, batch_loss)
                        n_done = n_rows
                    state.timings["exchange"] = state.timings.get("exchange", 0.0) + time.perf_counter() - t0
                else:
                    n_done = rows.size
                if not math.isfinite(batch_loss):
                    where = (f"the last good checkpoint is {checkpoint.path} (step {checkpoint.last_batch}), left "
                             "untouched" if checkpoint is not None and checkpoint.last_batch > 0 else
                             "no checkpoint was written")
                    raise TrainingError(
                        f"The training loss became non-finite in epoch {progress.epoch + 1}, batch {bi + 1} "
                        f"(step {state.step + 1}); {where}. Lower learning_rate, or check the input "
                        "for huge values.")
                t0 = time.perf_counter()
                optimizer_step(state, p, n_rows, apply_batch)
                state.timings["optimizer"] += time.perf_counter() - t0
                synced = True
                if local_sgd:
                    synced = state.step % group.sync_every == 0 or bi == n_batches - 1
                    if synced:
                        t0 = time.perf_counter()
                        group.average_touched(state)
                        state.timings["exchange"] += time.perf_counter() - t0
                progress.loss_sum += batch_loss
                progress.samples_seen += n_done
                if out_lsh:
                    progress.active_sum += int(state.work.n_active[:n_rows, -1].sum())
                if state.schedule is not None and state.schedule.due(state.step):
                    # the tables are rebuilt after the last batch anyway (on a short fit of a big
                    # layer each rebuild is one of a handful of whole-layer passes)
                    if state.schedule.worth_making(state.step, state.total_steps):
                        state.rebuild_tables()
                    state.schedule.advance()
                progress.batch = bi + 1
                progress.epoch_seconds = time.perf_counter() - t_epoch
                if bar is not None:
                    bar.update(1)
                    if bi % 10 == 0 or bi == n_batches - 1:
                        done = min(n_epoch_samples, (bi + 1) * bs)
                        bar.set_postfix(loss=f"{progress.loss_sum / max(1, done):.4f}",
                                        samples_s=f"{done / max(progress.epoch_seconds, 1e-9):,.0f}")
                # (local SGD: only right after an average, where the replicas agree)
                if checkpoint is not None and synced and checkpoint.due(state.step) and bi + 1 < n_batches:
                    _write_checkpoint(state, progress, checkpoint, timers, rate)
                if batch_callback is not None and state.step % batch_callback_every == 0:
                    t_cb = time.perf_counter()
                    brec = {"epoch": progress.epoch + 1, "batch": bi + 1, "step": state.step,
                            "samples_seen": progress.samples_seen,
                            "train_seconds": progress.train_seconds + progress.epoch_seconds}
                    stop_now = agree(bool(batch_callback(brec)))
                    t_epoch += time.perf_counter() - t_cb  # callback time is not training time
                    if stop_now:
                        progress.epoch_seconds = time.perf_counter() - t_epoch
                        if bar is not None:
                            bar.close()
                        return _stop_early(state, progress)
            if bar is not None:
                bar.close()
            rec = _end_epoch(state, progress, n_epoch_samples, rng, out_lsh)
            if eval_set is not None:
                t0 = time.perf_counter()
                from .metrics import evaluate
                from .predict import predict_topk

                top = predict_topk(state, eval_set[0], eval_k, p["predict_mode"], n_threads)[0]
                rec.update(evaluate(eval_set[1], top, ks=tuple(k for k in (1, 3, 5) if k <= eval_k)))
                rec["eval_seconds"] = time.perf_counter() - t0
            state.history.append(rec)
            if p["verbose"]:
                shown = [f"epoch {rec['epoch']}/{progress.n_epochs}", f"loss {rec['loss']:.4f}"]
                shown += [f"{k} {rec[k]:.4f}" for k in ("P@1", "P@3", "P@5") if k in rec]
                shown += [f"{rec['samples_per_second']:,.0f} samples/s", f"{rec['train_seconds']:.1f} s"]
                log.info("  ".join(shown))
            stop = agree(callback is not None and bool(callback(rec)))
            if checkpoint is not None and progress.epoch < progress.n_epochs and not stop:
                _write_checkpoint(state, progress, checkpoint, timers, rate)
            if stop:
                break
        progress.done = progress.epoch >= progress.n_epochs
        # (a state built without the recipe, as some tests do, may hold 'auto': no imprinting)
        imprint = p.get("output_imprint", 0.0)
        if progress.done and not isinstance(imprint, str) and imprint > 0 and len(state.specs) > 1:
            t0 = time.perf_counter()
            imprint_output(state.weights, state.biases, X, Y, imprint,
                           reduce=None if group is None else group.sum_)
            state.timings["imprint"] = state.timings.get("imprint", 0.0) + time.perf_counter() - t0
        if state.schedule is not None:
            state.rebuild_tables()  # tables match the final weights (LSH prediction, saving)
        if progress.done:
            state.progress = None
    finally:
        _add_phase_times(state, timers, rate)


def _stop_early(state, progress: Progress) -> None:
    """A batch callback asked to stop mid-epoch: keep the tables in step with the weights."""
    progress.train_seconds += progress.epoch_seconds
    progress.epoch_seconds = 0.0
    if state.schedule is not None:
        state.rebuild_tables()


def _end_epoch(state, progress: Progress, n_trainable: int, rng, out_lsh: bool) -> dict:
    """Close the epoch's books: history record, counters reset, next permutation state."""
    ep_time = progress.epoch_seconds
    progress.train_seconds += ep_time
    rec = {"epoch": progress.epoch + 1, "loss": progress.loss_sum / n_trainable, "epoch_seconds": ep_time,
           "train_seconds": progress.train_seconds, "samples_seen": progress.samples_seen,
           "samples_per_second": n_trainable / ep_time if ep_time > 0 else float("nan")}
    if out_lsh:
        rec["active_mean"] = progress.active_sum / n_trainable
    progress.epoch += 1
    progress.batch = 0
    progress.loss_sum = 0.0
    progress.active_sum = 0
    progress.epoch_seconds = 0.0
    progress.rng_state = rng.bit_generator.state  # the generator after this epoch's permutation
    return rec


def _add_phase_times(state, timers, rate) -> None:
    if rate > 0:
        tot = timers.sum(axis=0).astype(np.float64) / rate
        for name, ph in (("hashing", K.PH_HASH), ("selection", K.PH_SELECT), ("forward", K.PH_FORWARD),
                         ("backward", K.PH_BACKWARD)):
            state.timings[name] += float(tot[ph])
    timers[:] = 0


def _write_checkpoint(state, progress: Progress, checkpoint: Checkpointing, timers, rate) -> None:
    """Atomically replace the checkpoint, unless a weight is non-finite (then stop, keeping the
    previous checkpoint)."""
    if not state.weights_finite():
        # last_batch is 0 until this run writes (or resumes from) a checkpoint: then there is no
        # "last good checkpoint" to name (the path may not even exist), as in run()'s loss check
        where = (f"the last good checkpoint is {checkpoint.path} (step {checkpoint.last_batch}), left untouched"
                 if checkpoint.last_batch > 0 else "no checkpoint was written")
        raise TrainingError(
            f"A weight became non-finite by epoch {progress.epoch + 1}, batch {progress.batch} (step "
            f"{state.step}); {where}. Lower learning_rate, or check the input for huge values.")
    _add_phase_times(state, timers, rate)
    from .persist import save_model

    save_model(checkpoint.path, checkpoint.params, state, checkpoint.targets, checkpoint.text)
    checkpoint.mark(state.step)


def _progress_bar(state, n_batches: int, progress: Progress):
    if not state.config["verbose"]:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=n_batches, initial=progress.batch, desc=f"epoch {progress.epoch + 1}/{progress.n_epochs}",
                unit="batch", leave=False)


def check_same_data(saved: dict, X, Y, path) -> None:
    check_same_fingerprint(saved, data_fingerprint(X, Y), path)


def check_same_fingerprint(saved: dict, now: dict, path) -> None:
    if now != saved:
        diff = ", ".join(f"{k}: {saved.get(k)} then, {now.get(k)} now" for k in {**saved, **now}
                         if saved.get(k) != now.get(k))
        raise DataFormatError(f"{path}: the checkpoint was made on other training data ({diff}); resume "
                              "with the same training file (and the same --skip_bad_lines setting).")
