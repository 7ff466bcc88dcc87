"""Dense and sampled-softmax baselines in PyTorch (CPU), matched to :class:`slide.SlideClassifier`.

Matched means: the same layer sizes and initial weights (:func:`slide.network.init_weights`
and the centroid initialisation of :mod:`slide.centroids` with the same ``random_state`` give
bit-identical starting arrays), the same recipe (:mod:`slide.recipe` decides the 'auto'
parameters from the same data, the centroid start included), the same loss (cross-entropy
against the uniform distribution over a sample's labels, samples without labels skipped),
dropout on the input's non-zeros and on hidden outputs, Adam with the same hyper-parameters and
the same learning-rate schedule over the planned steps, the same batch size and the same 'auto'
epoch rule. As in SLIDE the batch loss is the *sum* over its samples (not the mean), so Adam's
epsilon and the SGD step size mean the same in both. The first layer is an ``EmbeddingBag``
with per-sample weights whose gradient is sparse, updated by ``SparseAdam`` (lazy Adam on the
touched rows, as SLIDE does) or, where the recipe or the user says ``input_optimizer='sgd'``,
by SGD at ``input_learning_rate`` (its biases stay with the other layers' optimiser, as in
SLIDE); with every output neuron active the output layer's gradient is dense, so it gets
ordinary Adam.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from ..config import PARAM_BY_NAME, Param, validate_value
from ..data_checks import check_eval_set, check_k, check_X, check_Y
from ..errors import NotFittedError, ParameterError, TrainingError
from ..metrics import evaluate
from ..network import LayerSpec, init_weights, input_optimizer
from ..estimator import resolve_n_jobs
from ..centroids import imprint_output, init_output_centroids
from ..recipe import DataProfile, resolve
from ..training import check_callbacks, resolve_seed, seed_of

# The SlideClassifier parameters that mean the same thing here (same names, ranges, defaults).
SHARED = ("hidden_layer_sizes", "dropout", "input_dropout", "label_smoothing", "init_scale", "output_init",
          "centroid_scale", "output_imprint",
          "normalize", "epochs", "batch_size", "learning_rate", "lr_schedule", "optimizer", "input_optimizer",
          "input_learning_rate", "beta1", "beta2", "adam_epsilon", "n_jobs", "random_state", "verbose")

SAMPLED_PARAMS = (
    Param("n_negatives", 1024, "int", "sampled softmax: negatives drawn per batch (shared by its samples)",
          low=1, high=1 << 24),
    PARAM_BY_NAME["sampler"],  # one parameter with SLIDE's padding: the same values and default
)

# Rows of logits computed at once in prediction: bounds the (rows, n_labels) float32 block.
PREDICT_BLOCK_FLOATS = 1 << 25


class _Net(torch.nn.Module):
    """``EmbeddingBag`` (sum, per-sample weights) + bias -> ReLU -> [Linear -> ReLU]* -> output rows."""

    def __init__(self, Ws, bs, sparse_output: bool):
        super().__init__()
        self.first = torch.nn.EmbeddingBag(Ws[0].shape[0], Ws[0].shape[1], mode="sum", sparse=True)
        with torch.no_grad():
            self.first.weight.copy_(torch.from_numpy(Ws[0]))  # (n_features, hidden): input-major, as SLIDE
        self.first_bias = torch.nn.Parameter(torch.from_numpy(bs[0].copy()))
        self.hidden = torch.nn.ModuleList()
        for W, b in zip(Ws[1:-1], bs[1:-1]):
            lin = torch.nn.Linear(W.shape[1], W.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W))
                lin.bias.copy_(torch.from_numpy(b))
            self.hidden.append(lin)
        # Output layer as (n_labels, hidden) rows; in the sampled model its rows are gathered with
        # F.embedding(sparse=True) so only the candidates' rows get gradients and Adam updates.
        self.out_weight = torch.nn.Parameter(torch.from_numpy(Ws[-1].copy()))
        # bias kept as an (n_labels, 1) column so it can be gathered like the weight rows
        self.out_bias = torch.nn.Parameter(torch.from_numpy(bs[-1].copy())[:, None].contiguous())
        self.sparse_output = sparse_output

    def hidden_output(self, idx, offsets, weights, dropout: float):
        h = F.relu(self.first(idx, offsets, per_sample_weights=weights) + self.first_bias)
        if dropout > 0:
            h = F.dropout(h, dropout, self.training)
        for lin in self.hidden:
            h = F.relu(lin(h))
            if dropout > 0:
                h = F.dropout(h, dropout, self.training)
        return h

    def logits(self, h, candidates=None):
        if candidates is None:
            return F.linear(h, self.out_weight, self.out_bias[:, 0])
        W = F.embedding(candidates, self.out_weight, sparse=True)
        b = F.embedding(candidates, self.out_bias, sparse=True)[:, 0]
        return h @ W.T + b


def _batch_tensors(X: sp.csr_matrix, rows: np.ndarray, input_dropout: float, rng):
    Xb = X[rows]
    idx, w, ptr = Xb.indices, Xb.data, Xb.indptr
    if input_dropout > 0:
        # same rule as slide.kernels.layers.load_input: drop non-zeros, scale survivors
        keep = rng.random(w.size) >= input_dropout
        w = w[keep] * np.float32(1.0 / (1.0 - input_dropout))
        idx = idx[keep]
        ptr = np.concatenate(([0], np.cumsum(keep)))[ptr]
    return (torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(ptr[:-1].astype(np.int64)),
            torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))


class DenseClassifier:
    """The network of a :class:`slide.SlideClassifier` trained densely (every output neuron active)
    with PyTorch. Parameters are the SlideClassifier parameters that apply here, with the same
    names, defaults and ranges: ``hidden_layer_sizes, dropout, input_dropout, label_smoothing, init_scale,
    output_init, centroid_scale, output_imprint, normalize, epochs, batch_size, learning_rate, lr_schedule,
    optimizer, beta1, beta2, adam_epsilon, n_jobs, random_state, verbose``; the 'auto' ones are
    decided by SlideClassifier's recipe (``recipe_`` after fit).

    Attributes (after fit): ``n_features_in_``, ``n_labels_``, ``history_`` (one record per
    epoch), ``n_iter_``, ``network_`` (the ``torch.nn.Module``).
    """

    _extra: tuple[Param, ...] = ()
    _method = "dense"

    def __init__(self, *, hidden_layer_sizes="auto", dropout="auto", input_dropout="auto", label_smoothing="auto",
                 init_scale=1.0,
                 output_init="auto", centroid_scale=10.0, output_imprint="auto", normalize="l2", epochs="auto",
                 batch_size=128,
                 learning_rate=3e-3, lr_schedule="auto", optimizer="adam", input_optimizer="auto",
                 input_learning_rate="auto", beta1=0.9, beta2=0.999, adam_epsilon=1e-8, n_jobs=None,
                 random_state=None, verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.label_smoothing = label_smoothing
        self.init_scale = init_scale
        self.output_init = output_init
        self.centroid_scale = centroid_scale
        self.output_imprint = output_imprint
        self.normalize = normalize
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.optimizer = optimizer
        self.input_optimizer = input_optimizer
        self.input_learning_rate = input_learning_rate
        self.beta1 = beta1
        self.beta2 = beta2
        self.adam_epsilon = adam_epsilon
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _param_table(self) -> list[Param]:
        return [PARAM_BY_NAME[n] for n in SHARED] + list(self._extra)

    def get_params(self, deep=True) -> dict:
        return {p.name: getattr(self, p.name) for p in self._param_table()}

    def set_params(self, **params):
        known = {p.name: p for p in self._param_table()}
        for k, v in params.items():
            if k not in known:
                raise ParameterError(f"Unknown parameter {k!r} of {type(self).__name__}. Known: "
                                     f"{', '.join(known)}.")
            validate_value(known[k], v, type(self).__name__)
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        changed = {p.name: getattr(self, p.name) for p in self._param_table() if getattr(self, p.name) != p.default}
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + ")"

    def _validated(self) -> dict:
        owner = type(self).__name__
        values = {q.name: getattr(self, q.name) for q in self._param_table()}
        # random_state as scikit-learn takes it: a RandomState or Generator draws the int seed
        values["random_state"] = seed_of(values["random_state"])
        p = {q.name: validate_value(q, values[q.name], owner) for q in self._param_table()}
        if not p["hidden_layer_sizes"]:
            raise ParameterError(f"The 'hidden_layer_sizes' parameter of {owner} must name at least one "
                                 f"hidden layer. Got {self.hidden_layer_sizes!r} instead.")
        return p

    # ------------------------------------------------------------------ training
    def fit(self, X, Y, *, eval_set=None, eval_k=5, callback=None, batch_callback=None,
            batch_callback_every=100):
        """Train on X (n, n_features) and binary Y (n, n_labels); same arguments and records as
        :meth:`slide.SlideClassifier.fit` (``batch_callback`` time is not counted as training
        time; returning True from a callback stops training). Returns self."""
        p = self._validated()
        X = check_X(X, name="X", normalize=p["normalize"])
        Y = check_Y(Y, n_rows=X.shape[0], name="Y")
        eval_set = check_eval_set(eval_set, n_features=X.shape[1], n_labels=Y.shape[1], normalize=p["normalize"])
        eval_k = check_k(eval_k, name="eval_k", where="fit", n_labels=Y.shape[1])
        check_callbacks(None, batch_callback, batch_callback_every)
        trainable = np.flatnonzero(np.diff(Y.indptr) > 0).astype(np.int64)
        if trainable.size == 0:
            raise ParameterError("Y has no sample with a label: there is nothing to train on.")
        bsz = p["batch_size"]
        n_batches = -(-trainable.size // bsz)
        # the recipe of SlideClassifier, decided from the same data
        p, self.recipe_ = resolve(p, DataProfile.of(X, Y), n_batches)
        seed = resolve_seed(p["random_state"])
        rng = np.random.default_rng(seed)
        sizes = [X.shape[1], *p["hidden_layer_sizes"], Y.shape[1]]
        specs = [LayerSpec(n_in=a, n_out=b, lsh=False) for a, b in zip(sizes[:-1], sizes[1:])]
        Ws, bs = init_weights(specs, rng, p["init_scale"])  # the same arrays SlideClassifier starts from
        if p["output_init"] == "centroid":
            from ..estimator import thread_limits

            with thread_limits(resolve_n_jobs(p["n_jobs"])):
                init_output_centroids(Ws, bs, X, Y, p["centroid_scale"])
        torch.manual_seed(seed)
        self.network_ = _Net(Ws, bs, sparse_output=self._method != "dense")
        del Ws, bs
        self.n_features_in_, self.n_labels_ = X.shape[1], Y.shape[1]
        self._p = p
        self._prepare(Y, p, rng)
        opts = self._optimizers(p)
        n_epochs = p["epochs"]
        total = n_batches * n_epochs
        self.history_ = []
        step, seen, train_seconds = 0, 0, 0.0
        with _torch_threads(p["n_jobs"]):
            for epoch in range(n_epochs):
                order = trainable[rng.permutation(trainable.size)]
                t_epoch, loss_sum = time.perf_counter(), 0.0
                self.network_.train()
                for bi in range(n_batches):
                    rows = order[bi * bsz:(bi + 1) * bsz]
                    step += 1
                    decay = max(0.0, 1.0 - (step - 1) / total) if p["lr_schedule"] == "linear" else 1.0
                    for o in opts:
                        for g in o.param_groups:
                            g["lr"] = g["base_lr"] * decay
                    loss = self._batch_loss(X, Y, rows, p, rng)
                    for o in opts:
                        o.zero_grad(set_to_none=True)
                    loss.backward()
                    for o in opts:
                        o.step()
                    loss_sum += loss.item()
                    seen += rows.size
                    if not math.isfinite(loss_sum):
                        raise TrainingError(f"The training loss of {type(self).__name__} became non-finite in "
                                            f"epoch {epoch + 1}, batch {bi + 1}; lower learning_rate.")
                    if batch_callback is not None and step % batch_callback_every == 0:
                        t_cb = time.perf_counter()
                        stop = batch_callback({"epoch": epoch + 1, "batch": bi + 1, "step": step,
                                               "samples_seen": seen,
                                               "train_seconds": train_seconds + t_cb - t_epoch})
                        t_epoch += time.perf_counter() - t_cb
                        self.network_.train()
                        if stop:
                            self.n_iter_ = len(self.history_)
                            return self
                ep = time.perf_counter() - t_epoch
                train_seconds += ep
                rec = {"epoch": epoch + 1, "loss": loss_sum / trainable.size, "epoch_seconds": ep,
                       "train_seconds": train_seconds, "samples_seen": seen,
                       "samples_per_second": trainable.size / ep}
                if eval_set is not None:
                    t0 = time.perf_counter()
                    top = self.predict(eval_set[0], k=eval_k)
                    rec.update(evaluate(eval_set[1], top, ks=tuple(k for k in (1, 3, 5) if k <= eval_k)))
                    rec["eval_seconds"] = time.perf_counter() - t0
                self.history_.append(rec)
                if p["verbose"]:
                    print(f"{self._method} epoch {epoch + 1}/{n_epochs} loss {rec['loss']:.4f} "
                          + " ".join(f"{k} {rec[k]:.4f}" for k in ("P@1", "P@5") if k in rec)
                          + f" {rec['samples_per_second']:,.0f} samples/s", file=sys.stderr, flush=True)
                if callback is not None and callback(rec):
                    break
            else:  # every planned epoch ran: the end of training, as in SlideClassifier
                if p["output_imprint"] > 0:
                    self._imprint(X, Y, p)
        self.n_iter_ = len(self.history_)
        return self

    def _imprint(self, X, Y, p) -> None:
        """SlideClassifier's end of training (slide.centroids.imprint_output) on this network's
        weights, in place through NumPy views of the tensors."""
        from ..estimator import thread_limits

        net = self.network_
        with torch.no_grad(), thread_limits(resolve_n_jobs(p["n_jobs"])):
            Ws = [net.first.weight.numpy(), *(lin.weight.numpy() for lin in net.hidden), net.out_weight.numpy()]
            bs = [net.first_bias.numpy(), *(lin.bias.numpy() for lin in net.hidden), net.out_bias.numpy()[:, 0]]
            imprint_output(Ws, bs, X, Y, p["output_imprint"])

    def _prepare(self, Y, p, rng) -> None:
        pass

    def _optimizers(self, p):
        """The optimisers, each param group with its ``base_lr`` (the schedule scales it): the
        first layer's weights by input_optimizer at input_learning_rate, the rest by optimizer."""
        net = self.network_
        first = [net.first.weight]
        sparse = [net.out_weight, net.out_bias] if net.sparse_output else []
        dense = [q for q in net.parameters() if all(q is not s for s in first + sparse)]
        kw = dict(betas=(p["beta1"], p["beta2"]), eps=p["adam_epsilon"])
        in_opt, in_lr = input_optimizer(p)
        if in_opt == p["optimizer"] and in_lr == p["learning_rate"]:
            sparse, first = first + sparse, []
        opts = []
        if p["optimizer"] == "sgd":
            opts.append(torch.optim.SGD(sparse + dense, lr=p["learning_rate"]))
        else:
            opts += [torch.optim.SparseAdam(sparse, lr=p["learning_rate"], **kw)] if sparse else []
            opts.append(torch.optim.Adam(dense, lr=p["learning_rate"], **kw))
        if first:
            opts.append(torch.optim.SGD(first, lr=in_lr) if in_opt == "sgd" else
                        torch.optim.SparseAdam(first, lr=in_lr, **kw))
        for o in opts:
            for g in o.param_groups:
                g["base_lr"] = g["lr"]
        return opts

    @staticmethod
    def _targets(Y, rows):
        """(row position, label id, weight 1/|labels|) of every label of the batch's samples."""
        Yb = Y[rows]
        counts = np.diff(Yb.indptr)
        pos = np.repeat(np.arange(rows.size), counts)
        return pos, Yb.indices.astype(np.int64), (1.0 / counts[pos]).astype(np.float32)

    def _batch_loss(self, X, Y, rows, p, rng):
        idx, off, w = _batch_tensors(X, rows, p["input_dropout"], rng)
        h = self.network_.hidden_output(idx, off, w, p["dropout"])
        logp = F.log_softmax(self.network_.logits(h), dim=1)
        pos, lab, tw = self._targets(Y, rows)
        eps = p["label_smoothing"]  # as SlideClassifier: eps / n_labels of each target on every label
        loss = -(1.0 - eps) * (logp[torch.from_numpy(pos), torch.from_numpy(lab)] * torch.from_numpy(tw)).sum()
        return loss - eps * logp.mean(dim=1).sum() if eps > 0 else loss

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self):
        if not hasattr(self, "network_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet: call fit(X, Y) first.")

    def predict_topk(self, X, k=5):
        """(labels, scores): the k highest-scoring labels per row (exact over all labels), best first."""
        self._check_fitted()
        k = check_k(k, n_labels=self.n_labels_)
        X = check_X(X, name="X", n_features=self.n_features_in_, normalize=self._p["normalize"])
        n = X.shape[0]
        out_i = np.empty((n, k), np.int64)
        out_v = np.empty((n, k), np.float32)
        block = max(1, PREDICT_BLOCK_FLOATS // self.n_labels_)
        self.network_.eval()
        with _torch_threads(self._p["n_jobs"]), torch.no_grad():
            for s in range(0, n, block):
                rows = np.arange(s, min(n, s + block))
                idx, off, w = _batch_tensors(X, rows, 0.0, None)
                z = self.network_.logits(self.network_.hidden_output(idx, off, w, 0.0))
                v, i = torch.topk(z, k, dim=1)
                out_i[s:s + rows.size] = i.numpy()
                out_v[s:s + rows.size] = v.numpy()
        return out_i, out_v

    def predict(self, X, k=5) -> np.ndarray:
        """(n, k) label ids, best first."""
        return self.predict_topk(X, k)[0]


class SampledSoftmaxClassifier(DenseClassifier):
    """The same network trained with a sampled softmax: per batch, the candidates are the batch's
    true labels and ``n_negatives`` ids drawn (with replacement, duplicates merged) from
    ``sampler``; each candidate's logit is lowered by log P(candidate drawn), the usual correction
    that makes the sampled loss estimate the full one; for each sample the other samples' labels
    that were not drawn are left out (they are not a sample from the proposal). Prediction is exact.
    Extra parameters: ``n_negatives`` (1024) and ``sampler`` ('log_uniform' or 'uniform')."""

    _extra = SAMPLED_PARAMS
    _method = "sampled"

    def __init__(self, *, n_negatives=1024, sampler="log_uniform", **kw):
        super().__init__(**kw)
        self.n_negatives = n_negatives
        self.sampler = sampler

    def _prepare(self, Y, p, rng) -> None:
        L = Y.shape[1]
        freq = np.bincount(Y.indices, minlength=L)
        if p["sampler"] == "uniform":
            q = np.full(L, 1.0 / L)
            self._rank_to_id = np.arange(L, dtype=np.int64)
        else:
            # log-uniform (Zipf) over labels ranked by training frequency, most frequent first
            self._rank_to_id = np.argsort(-freq, kind="stable").astype(np.int64)
            r = np.arange(L, dtype=np.float64)
            q_rank = np.log((r + 2.0) / (r + 1.0)) / np.log(L + 1.0)
            q = np.empty(L)
            q[self._rank_to_id] = q_rank
        m = p["n_negatives"]
        # P(label in the merged sample of m draws) = 1 - (1 - q)^m
        self._log_inclusion = torch.from_numpy(np.log(-np.expm1(m * np.log1p(-q))).astype(np.float32))

    def _draw(self, rng, sampler, m, L):
        if sampler == "uniform":
            ranks = rng.integers(0, L, size=m)
        else:  # inverse CDF of P(r) = log((r+2)/(r+1)) / log(L+1)
            ranks = np.minimum(np.floor(np.exp(rng.random(m) * np.log(L + 1.0))).astype(np.int64) - 1, L - 1)
        return np.unique(self._rank_to_id[ranks])

    def _batch_loss(self, X, Y, rows, p, rng):
        idx, off, w = _batch_tensors(X, rows, p["input_dropout"], rng)
        h = self.network_.hidden_output(idx, off, w, p["dropout"])
        pos, lab, tw = self._targets(Y, rows)
        drawn = self._draw(rng, p["sampler"], p["n_negatives"], Y.shape[1])
        cand = np.union1d(lab, drawn)
        allowed = np.zeros((rows.size, cand.size), bool)
        allowed[:, np.isin(cand, drawn, assume_unique=True)] = True
        col = np.searchsorted(cand, lab)
        allowed[pos, col] = True
        c = torch.from_numpy(cand)
        z = self.network_.logits(h, c) - self._log_inclusion[c]
        z = z.masked_fill(~torch.from_numpy(allowed), float("-inf"))
        logp = F.log_softmax(z, dim=1)
        eps = p["label_smoothing"]  # spread over each sample's candidates (its active set)
        loss = -(1.0 - eps) * (logp[torch.from_numpy(pos), torch.from_numpy(col)] * torch.from_numpy(tw)).sum()
        if eps > 0:
            mask = torch.from_numpy(allowed)
            loss = loss - eps * (logp.masked_fill(~mask, 0.0).sum(dim=1) / mask.sum(dim=1)).sum()
        return loss


@contextmanager
def _torch_threads(n_jobs):
    """Run PyTorch on resolve_n_jobs(n_jobs) threads, restoring the previous count."""
    old = torch.get_num_threads()
    torch.set_num_threads(resolve_n_jobs(n_jobs))
    try:
        yield
    finally:
        torch.set_num_threads(old)
