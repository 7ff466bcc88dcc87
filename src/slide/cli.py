"""The ``slide`` command: train, evaluate and predict from the shell.

Every training flag is generated from :data:`slide.config.PARAMS`, so ``--learning_rate`` on the
command line, ``learning_rate`` in a ``--config`` TOML file and ``SlideClassifier(learning_rate=)``
are the same parameter (``--learning-rate`` is accepted too). Precedence: defaults < config
file < flags. Errors a user can cause end as one ``slide: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tempfile
import tomllib
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .config import PARAM_BY_NAME, PARAMS, allowed, validate_value
from .errors import DataFormatError, ParameterError, SlideError

BUILTIN = dict(n_samples=20000, n_features=100_000, n_labels=50_000, n_test=2000, random_state=0)


# ----------------------------------------------------------------------------- parsing values
def _parse_flag(p, text: str):
    """Turn a command-line string into the Python value parameter ``p`` expects."""
    t = text.strip()
    k = p.kind
    try:
        if k == "sizes":
            if t == "auto":
                return t
            return tuple(int(v) for v in t.replace(" ", "").split(",") if v != "") if t not in ("", "none") else ()
        if k == "range":
            return t if t == "auto" else tuple(int(v) for v in t.replace(" ", "").split(","))
        if k == "layers":
            if t in ("auto", "output", "all", "none"):
                return t
            return tuple(int(v) for v in t.split(","))
        if k == "bool":
            low = t.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            return t
        if k in ("int_auto", "size_auto", "float_auto") and t == "auto":
            return t
        if k in ("int", "int_auto", "seed", "n_jobs"):
            if k in ("seed", "n_jobs") and t.lower() == "none":
                return None
            return int(t)
        if k == "size_auto":
            return int(t) if t.lstrip("-").isdigit() else float(t)
        if k in ("float", "float_auto"):
            return float(t)
    except ValueError:
        pass
    return t  # validation reports the bad value with the allowed range


def _add_param_flags(ap: argparse.ArgumentParser) -> None:
    groups = {}
    for p in PARAMS:
        if p.group not in groups:
            groups[p.group] = ap.add_argument_group(f"{p.group} parameters (also config-file keys)")
        names = [f"--{p.name}"]
        if "_" in p.name:
            names.append(f"--{p.name.replace('_', '-')}")
        default = p.default if not isinstance(p.default, tuple) else ",".join(map(str, p.default))
        text = f"{p.help}; {allowed(p)} (default: {default})".replace("%", "%%")
        groups[p.group].add_argument(*names, dest=p.name, default=None, metavar="V", help=text)


def _params_from(args, config: dict) -> dict:
    params = {}
    for key, value in config.items():
        if key in ("train", "test", "out"):
            continue
        if key not in PARAM_BY_NAME:
            raise ParameterError(f"{args.config}: unknown key {key!r}. Known keys: train, test, out, "
                                 + ", ".join(p.name for p in PARAMS) + ".")
        p = PARAM_BY_NAME[key]
        if p.kind in ("sizes", "layers", "range") and isinstance(value, list):
            value = tuple(value)
        params[key] = validate_value(p, value, owner=f"the config file {args.config}", api=False)
    for p in PARAMS:
        raw = getattr(args, p.name, None)
        if raw is not None:
            params[p.name] = validate_value(p, _parse_flag(p, raw), owner=f"slide {args.command} (flag --{p.name})",
                                            api=False)
    return params


def _read_config(path):
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise DataFormatError(f"config file {path} does not exist.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: not valid TOML ({e}).") from None
    except OSError as e:  # a folder, no permission, ...: was an IsADirectoryError/OSError traceback
        raise DataFormatError(f"cannot read the config file {path}: {e.strerror or e}.") from None


# ----------------------------------------------------------------------------- data
STDIN = "-"


FORMATS = ("auto", "xmc", "libsvm", "jsonl", "csv", "tsv")
TEXT_FLAGS = dict(text_field="text", label_field="labels", label_sep="|", label_names=None)


def _load(path, fmt="auto", skip_bad_lines=False, text: dict | None = None, labels=True, plain_text=False,
          shard=None):
    """(X, Y) of a data file: a CSR matrix and label matrix for XMC/LIBSVM, or a list of strings
    and their label lists for JSONL/CSV/TSV (``text``: the text flags). ``labels=False`` reads
    a text file's texts only (Y None); ``plain_text``: a file of no known format is one text per line.
    ``shard=(rank, world)``: only a data-parallel worker's rows (rank, rank + world, ...)."""
    from .data import load_libsvm, load_xmc, load_xmc_shard
    from .textfile import load_texts

    text = {**TEXT_FLAGS, **(text or {})}
    with _readable(path) as (local, shown):
        try:
            if fmt == "auto":
                fmt = _sniff(local, shown, plain_text)
            if shard is not None and fmt == "xmc":  # streamed: the worker keeps its rows only
                X, Y = load_xmc_shard(local, *shard, skip_bad_lines=skip_bad_lines)
                skipped = 0  # (load_xmc_shard warns of skipped lines itself)
            elif fmt in ("xmc", "libsvm"):
                loader = load_xmc if fmt == "xmc" else load_libsvm
                X, Y, skipped = loader(local, skip_bad_lines=skip_bad_lines, return_skipped=True)
                if shard is not None:
                    X, Y = X[shard[0]::shard[1]], Y[shard[0]::shard[1]]
            else:
                X, Y, skipped = load_texts(local, fmt, text_field=text["text_field"],
                                           label_field=text["label_field"] if labels else None,
                                           label_sep=text["label_sep"], shown=shown, skip_bad_lines=skip_bad_lines)
                if Y is not None and text["label_names"] is not None:
                    Y = _named(Y, _label_names(text["label_names"]), shown)
        except DataFormatError as e:
            if local == shown:
                raise
            raise _renamed(e, local, shown) from None
    if skipped:
        print(f"{shown}: skipped {skipped:,} bad lines", file=sys.stderr)
    return X, Y


def _label_names(path) -> list[str]:
    """--label_names: line i of the file is the name of label id i."""
    from .textfile import load_texts

    names = load_texts(path, "lines", shown=f"--label_names {path}")[0]
    return [n.strip() for n in names]


def _named(Y: list, names: list[str], shown: str) -> list:
    """Label id lists as name lists through --label_names."""
    out = []
    for i, row in enumerate(Y):
        for v in row:
            if not isinstance(v, int):
                raise DataFormatError(f"record {i + 1} holds the label {v!r}, but --label_names maps label ids "
                                      "(ints) to names; this file's labels are names already.", path=shown)
            if v >= len(names):
                raise DataFormatError(f"record {i + 1} holds label id {v}, but --label_names names {len(names):,} "
                                      f"labels (ids 0..{len(names) - 1}).", path=shown)
        out.append([names[v] for v in row])
    return out


def _is_text(X) -> bool:
    return isinstance(X, list)


def _n_labels(Y) -> int:
    """Labels of training targets: a label matrix's columns, or the distinct labels (names) or
    the largest id + 1 of label lists."""
    if not isinstance(Y, list):
        return Y.shape[1]
    seen = {v for row in Y for v in row}
    if seen and all(isinstance(v, int) for v in seen):
        return max(seen) + 1
    return len(seen)


def _known_labels(Ytr: list):
    """The labels training label lists make known: ids 0 .. largest, or the names seen."""
    if all(isinstance(v, int) for row in Ytr for v in row):
        return range(_n_labels(Ytr))
    return {v for row in Ytr for v in row}


def _known_only(Yte: list, known, shown: str) -> list:
    """Test label lists without the labels training never saw (no model can rank them: they
    count as misses, which P@k does anyway); says how many were left out."""
    out, n_gone, rows = [], 0, 0
    for row in Yte:
        kept = [v for v in row if v in known]
        n_gone += len(row) - len(kept)
        rows += len(kept) < len(row)
        out.append(kept)
    if n_gone:
        print(f"{shown}: {n_gone:,} labels on {rows:,} points are not in the training data and cannot be "
              "predicted: they count as misses in P@k (recall and nDCG are over the known labels)", file=sys.stderr)
    return out


@contextmanager
def _readable(path):
    """(a path the loaders may open more than once, the name to show for it). Standard input
    ('-') and other streams (/dev/stdin, a named pipe) are copied to a temporary file first: the
    format sniff, the parse and an error's re-read of a bad line each open the input, and on a
    stream the second open began where the first one's buffer ended, dropping those rows."""
    if path == STDIN:
        source, shown = sys.stdin.buffer, "<stdin>"
    else:
        p = Path(path)
        if not p.exists() or p.is_dir() or p.is_file():  # the loaders report a missing path or a folder
            yield str(path), str(path)
            return
        try:
            source, shown = open(p, "rb"), str(path)
        except OSError as e:
            raise DataFormatError(f"cannot open ({e.strerror or e}).", path=str(path)) from None
    fd, tmp = tempfile.mkstemp(prefix="slide-input-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as f:
            while block := source.read(1 << 20):
                f.write(block)
        if source is not sys.stdin.buffer:
            source.close()
        yield tmp, shown
    finally:
        os.unlink(tmp)


def _renamed(e: DataFormatError, local: str, shown: str) -> DataFormatError:
    """The same error, naming the input as the user gave it rather than its temporary copy."""
    out = DataFormatError(str(e).replace(local, shown))
    out.path, out.line = shown, e.line
    return out


def _sniff(path, shown, plain_text=False) -> str:
    """The format of a data file: 'jsonl', 'csv' or 'tsv' by its name (.gz aside); 'jsonl' if it
    starts with a JSON object; 'xmc' if the first line is a 'N D L' header; else 'libsvm', or
    'lines' (one text per line) with ``plain_text``."""
    from .textfile import open_binary, text_format

    by_name = text_format(path, shown)
    if by_name is not None:
        return by_name
    try:
        with open_binary(path, shown) as f:
            first = f.readline(4096)
    except (OSError, EOFError) as e:
        raise DataFormatError(f"{shown}: cannot read ({e}).") from None
    if first.lstrip().startswith(b"{"):
        return "jsonl"
    parts = first.split()
    if len(parts) == 3 and all(x.isdigit() for x in parts):
        return "xmc"
    if plain_text:
        return "lines"
    return "libsvm"


def _machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine()}


# ----------------------------------------------------------------------------- commands
def _load_data(run: dict, group=None):
    """(Xtr, Ytr, Xte, Yte, dataset description) for a run description (see cmd_train); in a
    data-parallel ``group`` the training points of this worker's shard, and the test points on
    rank 0 only (it evaluates for the group)."""
    shard = None if group is None else (group.rank, group.world)
    if run["train"] is None:
        from .datasets import make_extreme

        print(f"No training file given: generating the built-in task (make_extreme, {BUILTIN['n_samples']:,} "
              f"train / {BUILTIN['n_test']:,} test points, {BUILTIN['n_features']:,} features, "
              f"{BUILTIN['n_labels']:,} labels)...", file=sys.stderr)
        Xtr, Ytr, Xte, Yte = make_extreme(**BUILTIN)
        if shard is not None:
            Xtr, Ytr = Xtr[shard[0]::shard[1]], Ytr[shard[0]::shard[1]]
        return Xtr, Ytr, Xte, Yte, {"name": "builtin:make_extreme", **BUILTIN}
    print(f"Loading {run['train']}" + ("" if shard is None else f" (worker {shard[0]}'s shard of {shard[1]})")
          + "...", file=sys.stderr)
    text = {k: run.get(k, v) for k, v in TEXT_FLAGS.items()}
    Xtr, Ytr = _load(run["train"], run["format"], run["skip_bad_lines"], text, shard=shard)
    Xte = Yte = None
    if run["test"] is not None and (group is None or group.rank == 0):
        Xte, Yte = _load(run["test"], run["format"], run["skip_bad_lines"], text)
        if _is_text(Xtr) != _is_text(Xte):
            raise DataFormatError(f"{run['test']} is {'text' if _is_text(Xte) else 'feature vectors'} but "
                                  f"{run['train']} is {'text' if _is_text(Xtr) else 'feature vectors'}; expected "
                                  "the same kind.")
        if _is_text(Xtr):
            Yte = _known_only(Yte, _known_labels(Ytr), run["test"])
        elif Xte.shape[1] != Xtr.shape[1] or Yte.shape[1] != Ytr.shape[1]:
            raise DataFormatError(f"{run['test']}: has {Xte.shape[1]} features and {Yte.shape[1]} labels, but "
                                  f"{run['train']} has {Xtr.shape[1]} and {Ytr.shape[1]}; expected the same "
                                  "dimensions.")
    return Xtr, Ytr, Xte, Yte, {"train": run["train"], "test": run["test"]}


def cmd_train(args) -> int:
    from . import SlideClassifier, distributed, load
    from .config import PARAM_BY_NAME, validate_value
    from .io import atomic_write
    from .metrics import evaluate, label_propensities

    if args.resume is None and distributed.restarted():
        # torchrun --max-restarts started this worker again: continue from the group's checkpoint
        again = Path(args.out or _read_config(args.config).get("out") or "slide-run")
        if (again / "checkpoint.npz").is_file() and (again / "run.json").is_file():
            print(f"Restarted by torchrun: resuming from {again / 'checkpoint.npz'}", file=sys.stderr)
            args.resume = str(again)
    if args.resume is not None:
        # everything comes back from the run folder: the command's settings and the checkpoint
        out = Path(args.resume)
        run_file, ckpt = out / "run.json", out / "checkpoint.npz"
        if not run_file.exists():
            raise DataFormatError(f"--resume {out}: no run.json there; expected the --out folder of a run "
                                  "started with --checkpoint_every.")
        if not ckpt.exists():
            done = " (the run finished: see model.npz)" if (out / "model.npz").exists() else ""
            raise DataFormatError(f"--resume {out}: no checkpoint.npz there{done}.")
        # a hand-edited or damaged run.json gave a JSONDecodeError / KeyError traceback
        keys = ("train", "test", "format", "skip_bad_lines", "max_eval", "checkpoint_every")
        try:
            run = json.loads(run_file.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataFormatError(f"--resume {out}: run.json is not valid JSON ({e}).") from None
        if not isinstance(run, dict) or any(k not in run for k in keys):
            raise DataFormatError(f"--resume {out}: run.json is not the record of a run (expected the keys "
                                  f"{', '.join(keys)}).")
        _check_run(run, f"--resume {out}: run.json")
        if args.train is not None:
            run["train"] = args.train  # same data moved elsewhere: checked against the checkpoint
        clf = load(ckpt)
        if clf.state_.progress is None:
            raise DataFormatError(f"--resume {out}: checkpoint.npz holds a finished model, not a checkpoint of a "
                                  "run in progress: nothing to resume.")
        print(f"Resuming {out} from epoch {clf.state_.progress.epoch + 1}, batch {clf.state_.progress.batch} "
              f"(step {clf.state_.step})", file=sys.stderr)
    else:
        config = _read_config(args.config)
        for key in ("out", "train", "test"):
            if key in config and not isinstance(config[key], str):
                raise DataFormatError(f"{args.config}: '{key}' must be a path (a string); got {config[key]!r}.")
        params = _params_from(args, config)
        out = Path(args.out or config.get("out") or "slide-run")
        run = {"train": args.train or config.get("train"), "test": args.test or config.get("test"),
               "format": args.format, "skip_bad_lines": bool(args.skip_bad_lines), "max_eval": args.max_eval,
               "checkpoint_every": args.checkpoint_every,
               **{k: getattr(args, k) for k in TEXT_FLAGS}}
        if run["label_names"] is not None:
            run["label_names"] = str(run["label_names"])
        for key in ("train", "test"):
            run[key] = None if run[key] is None else str(run[key])
        if run["train"] == STDIN and run["test"] == STDIN:
            raise ParameterError("slide train: standard input ('-') can be the training file or the --test file, "
                                 "not both.")
        if run["max_eval"] is not None and run["max_eval"] < 1:
            # 0 failed only after the first epoch ("no rows to evaluate"); -3 silently dropped 3 points
            raise ParameterError(f"--max_eval must be a positive number of test points. Got {run['max_eval']} instead.")
        if run["train"] is None:
            # the SLIDE paper's network for the built-in task: one hidden layer of 128 units
            params.setdefault("hidden_layer_sizes", (128,))
        params.setdefault("verbose", 1)
        clf = SlideClassifier(**params)
    if out.exists() and not out.is_dir():
        raise DataFormatError(f"--out {out} exists and is not a folder.")
    if not args.dry_run:  # before the data is read: a folder that cannot be made fails at once
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataFormatError(f"--out {out}: the folder cannot be made ({e.strerror or e}).") from None
    group = distributed.context(validate_value(PARAM_BY_NAME["data_parallel"], clf.data_parallel),
                                validate_value(PARAM_BY_NAME["sync_every"], clf.sync_every), where="slide train")
    if group is not None:
        resuming = group.gather_ints([args.resume is not None])[:, 0]
        if resuming.min() != resuming.max():
            raise DataFormatError(
                f"Worker {group.rank}: the workers disagree on resuming (workers "
                f"{', '.join(str(q) for q in np.flatnonzero(resuming))} found a checkpoint in {out}, the others "
                "did not): --out must be a folder that every worker sees (storage shared by the nodes).")
    writer = group is None or group.rank == 0  # rank 0 writes the run's files for the group
    t0 = time.perf_counter()
    Xtr, Ytr, Xte, Yte, dataset = _load_data(run, group)
    load_seconds = time.perf_counter() - t0
    if run["max_eval"] is not None and Xte is not None:
        Xte, Yte = Xte[: run["max_eval"]], Yte[: run["max_eval"]]
    if _is_text(Xtr):
        print(f"{len(Xtr):,} training texts, {_n_labels(Ytr):,} labels"
              + (f"; {len(Xte):,} test texts" if Xte is not None else ""), file=sys.stderr)
    if args.dry_run:
        return _dry_run(clf, Xtr, Ytr)
    ckpt_path = out / "checkpoint.npz" if run["checkpoint_every"] is not None else None
    if args.resume is None and writer:
        atomic_write(out / "run.json", lambda f: f.write(json.dumps(run, indent=2).encode()))
    every = None if run["checkpoint_every"] is None else _every(run["checkpoint_every"])
    log_path = out / "log.jsonl"

    def on_epoch(rec):
        if not writer:
            return
        # the whole history each time: after a resume the log continues where the checkpoint was
        text = "".join(json.dumps(r) + "\n" for r in clf.history_)
        atomic_write(log_path, lambda f: f.write(text.encode()))

    k = min(5, _n_labels(Ytr))  # P@1, P@3, P@5 where there are that many labels
    ks = tuple(c for c in (1, 3, 5) if c <= k)
    fit_kw = dict(eval_set=None if Xte is None else (Xte, Yte), eval_k=k, callback=on_epoch,
                  checkpoint_path=ckpt_path, checkpoint_every=every)
    if args.resume is not None:
        clf.resume(Xtr, Ytr, **fit_kw)
    else:
        clf.fit(Xtr, Ytr, **fit_kw)
    if not writer:
        print(f"worker {group.rank} of {group.world}: done ({clf.data_parallel_['bytes_sent']:,} bytes sent)",
              file=sys.stderr)
        return 0
    clf.save(out / "model.npz")  # first: whatever fails after training, the trained model is kept
    if ckpt_path is not None and ckpt_path.exists() and clf.state_.progress is None:
        ckpt_path.unlink()  # the run is complete: model.npz supersedes the checkpoint
    metrics = {}
    if Xte is not None:
        top = clf._topk_ids(Xte, k, None, "slide train")[0]  # label ids, whatever the labels' form
        Ytr_m = clf._targets.encode(Ytr, len(Ytr), "train") if _is_text(Xtr) else Ytr
        Yte_m = clf._targets.encode(Yte, len(Yte), "test") if _is_text(Xte) else Yte
        metrics = evaluate(Yte_m, top, ks=ks, propensities=label_propensities(Ytr_m) if Ytr_m.shape[0] >= 3 else None)
    total_train = sum(r["epoch_seconds"] for r in clf.history_)
    n_seen = clf.history_[-1]["samples_seen"] if clf.history_ else 0
    result = {
        **metrics,
        "train_seconds": total_train,
        "samples_per_second": n_seen / total_train if total_train > 0 else None,
        "load_seconds": load_seconds,
        "epochs": clf.n_iter_,
        "n_train": _n_rows(Xtr) if group is None else clf.data_parallel_["n_samples"],  # every shard's
        "n_test": None if Xte is None else _n_rows(Xte),
        "n_features": int(clf.n_features_in_),
        "n_labels": int(clf.n_labels_),
        "featurise_seconds": clf.timings_.get("featurise"),
        "timings": {k: float(v) for k, v in clf.timings_.items()},
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in clf.get_params().items()},
        "recipe": {c.name: {"value": c.value, "reason": c.reason} for c in clf.recipe_},
        "data_profile": clf.data_profile_.to_dict() if clf.data_profile_ is not None else None,
        "layers": [_layer_record(s) for s in clf.layer_specs_],
        "dataset": dataset,
        "machine": _machine(),
        "data_parallel": clf.data_parallel_,
    }
    atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(result, indent=2).encode()))
    print(_summary(result), file=sys.stdout)
    print(f"wrote {out / 'metrics.json'}, {log_path} and {out / 'model.npz'}", file=sys.stderr)
    return 0


def _n_rows(X) -> int:
    return len(X) if _is_text(X) else int(X.shape[0])


def _layer_record(s) -> dict:
    """A layer's resolved settings for metrics.json, under the parameters' own names."""
    rec = {"n_in": s.n_in, "n_out": s.n_out, "lsh": s.lsh}
    if s.lsh:
        rec.update(hashes_per_table=s.hashes_per_table, n_tables=s.n_tables, bucket_bits=s.bucket_bits, bucket_size=s.bucket_size,
                   active_size=s.active_size, min_active=s.min_active)
    return rec


def _check_run(run: dict, where: str) -> None:
    """The types of a run record (run.json), which a hand edit may have changed."""
    kinds = {"train": (str, type(None)), "test": (str, type(None)), "format": (str,), "skip_bad_lines": (bool,),
             "max_eval": (int, type(None)), "checkpoint_every": (str, type(None))}
    for key, types in kinds.items():
        v = run[key]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise DataFormatError(f"{where}: '{key}' is {v!r}; expected "
                                  + " or ".join("null" if t is type(None) else t.__name__ for t in types) + ".")
    if run["format"] not in FORMATS:
        raise DataFormatError(f"{where}: 'format' is {run['format']!r}; expected one of "
                              f"{', '.join(repr(f) for f in FORMATS)}.")
    for key, default in TEXT_FLAGS.items():  # runs from before text input have none of these
        v = run.setdefault(key, default)
        if not (isinstance(v, str) or (v is None and default is None)):
            raise DataFormatError(f"{where}: '{key}' is {v!r}; expected a string.")
    if run["max_eval"] is not None and run["max_eval"] < 1:
        raise DataFormatError(f"{where}: 'max_eval' is {run['max_eval']}; expected a positive int or null.")


def _every(text):
    """--checkpoint_every: '500' (batches) or '10m' / '90s' / '1h' (time)."""
    t = str(text).strip()
    return int(t) if t.isdigit() else t


def _dry_run(clf, X, Y) -> int:
    from .memory import available_bytes, fmt

    from .data_checks import row_maxima

    if _is_text(X):  # the features the texts will become, and their label matrix
        from .config import validate_params
        from .targets import Targets
        from .text import TextFeatures, resolve

        t0 = time.perf_counter()
        X = TextFeatures.fit(X, resolve(validate_params(clf.get_params()), len(X))[0])[1]
        print(f"featurised the texts in {time.perf_counter() - t0:.1f} s: {X.shape[1]:,} features")
        Y = Targets.fit(Y, n_rows=X.shape[0])[1]
    max_labels, max_nnz = row_maxima(X, Y)
    est = clf.estimate_memory(X.shape[1], Y.shape[1], max_labels=max_labels, max_nnz=max_nnz)
    avail = available_bytes()
    data = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes + Y.data.nbytes + Y.indices.nbytes + Y.indptr.nbytes
    lines = [f"memory estimate for training on {X.shape[0]:,} x {X.shape[1]:,} -> {Y.shape[1]:,} labels:"]
    lines += [f"  {k:16s} {fmt(v):>12s}" for k, v in est.items()]
    lines += [f"  {'total':16s} {fmt(sum(est.values())):>12s}", f"  {'data (loaded)':16s} {fmt(data):>12s}",
              f"  {'available':16s} {fmt(avail) if avail is not None else 'unknown':>12s}"]
    print("\n".join(lines))
    return 0


def _summary(r: dict) -> str:
    lines = []
    keys = [k for k in ("P@1", "P@3", "P@5", "nDCG@5", "PSP@5") if k in r]
    if keys:
        lines.append("  ".join(f"{k} {r[k]:.4f}" for k in keys))
    sps = r.get("samples_per_second")
    lines.append(f"trained {r['epochs']} epochs on {r['n_train']:,} points in {r['train_seconds']:.1f} s"
                 + (f" ({sps:,.0f} samples/s)" if sps else ""))
    return "\n".join(lines)


def _load_model(args):
    """The model of a predict/evaluate command, on the threads --n_jobs asks for."""
    from . import load

    clf = load(args.model)
    if args.n_jobs is not None:
        clf.set_params(n_jobs=_n_jobs_flag(args))
    return clf


def _n_jobs_flag(args):
    """--n_jobs of predict, evaluate and serve, validated by the parameter table."""
    p = PARAM_BY_NAME["n_jobs"]
    return validate_value(p, _parse_flag(p, args.n_jobs), owner=f"slide {args.command} (flag --n_jobs)", api=False)


def _k(args, clf) -> int:
    """--k, or 5 (all labels of a model with fewer); predict_topk checks a given one."""
    return min(5, clf.n_labels_) if args.k is None else args.k


def cmd_evaluate(args) -> int:
    from .metrics import evaluate

    clf = _load_model(args)
    X, Y = _load(args.test, args.format, args.skip_bad_lines, _text_flags(args))
    if _is_text(X):
        known = set(clf.classes_.tolist()) if clf._targets.named else range(clf.n_labels_)
        Y = clf._targets.encode(_known_only(Y, known, args.test), len(Y), args.test)
    if Y.shape[1] != clf.n_labels_:
        raise DataFormatError(f"{args.test}: has {Y.shape[1]} labels, but the model was trained with {clf.n_labels_}.")
    k = _k(args, clf)
    t0 = time.perf_counter()
    top = clf._topk_ids(X, k, args.predict_mode, "slide evaluate")[0]
    sec = time.perf_counter() - t0
    res = evaluate(Y, top, ks=tuple(c for c in (1, 3, 5) if c <= k) or (k,))
    res["predict_seconds"] = sec
    res["n_test"] = _n_rows(X)
    text = json.dumps(res, indent=2)
    if args.out:
        from .io import atomic_write

        atomic_write(args.out, lambda f: f.write(text.encode()))
    print(text)
    return 0


def cmd_predict(args) -> int:
    clf = _load_model(args)
    X, _ = _load(args.input, args.format, args.skip_bad_lines, _text_flags(args), labels=False,
                 plain_text=clf.vectorizer_ is not None)
    labels, scores = clf.predict_topk(X, k=_k(args, clf), mode=args.predict_mode)
    rows = []
    for i in range(labels.shape[0]):
        ok = np.array([l is not None and not (isinstance(l, (int, np.integer)) and l < 0) for l in labels[i]], bool)
        names = [l.item() if isinstance(l, np.generic) else l for l in labels[i][ok]]
        if args.json:
            rows.append(json.dumps({"labels": names, "scores": [round(float(v), 6) for v in scores[i][ok]]}))
        elif args.scores:
            rows.append(" ".join(f"{l}:{s:.6g}" for l, s in zip(names, scores[i][ok])))
        else:
            rows.append(" ".join(str(l) for l in names))
    text = "\n".join(rows) + ("\n" if rows else "")
    if args.out:
        from .io import atomic_write

        atomic_write(args.out, lambda f: f.write(text.encode()))
    else:
        sys.stdout.write(text)
    return 0


def _text_flags(args) -> dict:
    return {k: getattr(args, k) for k in TEXT_FLAGS if hasattr(args, k)}


def _add_text_flags(ap: argparse.ArgumentParser, labels: bool = True) -> None:
    g = ap.add_argument_group("text files (JSON lines, CSV, TSV)")
    g.add_argument("--text_field", "--text-field", default="text",
                   help="the field (JSON lines) or column (CSV/TSV) that holds the text (default: text)")
    if labels:
        g.add_argument("--label_field", "--label-field", default="labels",
                       help="the field or column of the labels: a JSON list of names or int ids, or one label; in "
                            "CSV/TSV labels separated by --label_sep (default: labels)")
        g.add_argument("--label_sep", "--label-sep", default="|",
                       help="CSV/TSV: what separates the labels of one cell (default: |)")
        g.add_argument("--label_names", "--label-names", default=None, metavar="FILE",
                       help="int label ids to names: line i of FILE (.gz ok) names label i")


def _add_predict_flags(ap: argparse.ArgumentParser) -> None:
    """The flags evaluate and predict share."""
    ap.add_argument("--k", type=int, default=None,
                    help="labels per point, an int in [1, the model's labels] (default: 5, or all labels if fewer)")
    ap.add_argument("--predict_mode", "--predict-mode", choices=("exact", "lsh"), default=None,
                    help="'exact': score every label; 'lsh': only the labels the hash tables retrieve "
                         "(default: the model's predict_mode)")
    ap.add_argument("--n_jobs", "--n-jobs", default=None, metavar="V",
                    help=f"threads: {allowed(PARAM_BY_NAME['n_jobs'])} (default: the model's n_jobs)")
    ap.add_argument("--format", choices=FORMATS + (("lines",) if ap.prog.endswith("predict") else ()),
                    default="auto", help=FORMAT_HELP + (" ('lines': one text per line; auto for a text model's "
                                                        "input of no other format)" if ap.prog.endswith("predict")
                                                        else ""))
    ap.add_argument("--out", help="write here instead of standard output" if ap.prog.endswith("predict")
                    else "also write the metrics JSON here")
    ap.add_argument("--skip_bad_lines", "--skip-bad-lines", action="store_true",
                    help="drop malformed lines (and report how many) instead of stopping")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    try:
        return version("slide")
    except PackageNotFoundError:  # run from a source tree
        return __version__


FORMAT_HELP = ("input format (default auto: jsonl/csv/tsv by the file name, jsonl if a line starts with '{', 'xmc' "
               "if the first line is an 'N D L' header, else libsvm)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="slide", allow_abbrev=False,
                                 description="LSH-sparse training of extreme classifiers on CPUs (SLIDE).")
    ap.add_argument("--version", action="version", version=f"slide {_version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_file = ("XMC ('N D L' header line), LIBSVM, or texts as JSON lines, CSV or TSV (see --text_field), "
                 "plain or .gz; '-' reads standard input")
    tr = sub.add_parser("train", allow_abbrev=False, help="train a model (no TRAIN file: a built-in generated task)",
                        description="Train on TRAIN (feature vectors as XMC or LIBSVM, or raw texts as JSON lines, "
                                    "CSV or TSV; .gz ok), evaluate on TEST after every epoch, write "
                                    "DIR/metrics.json, DIR/log.jsonl and DIR/model.npz. A model trained on texts "
                                    "keeps its featuriser (the 'text' parameters) and predicts from raw strings.")
    tr.add_argument("train", nargs="?", help=f"training file: {data_file} (omit for the built-in generated task)")
    tr.add_argument("--test", help=f"test file, evaluated after every epoch: {data_file}")
    tr.add_argument("--out", help="output folder (default: slide-run)")
    tr.add_argument("--config", help="TOML file of parameters (keys as the flags below, plus train/test/out)")
    tr.add_argument("--format", choices=FORMATS, default="auto", help=FORMAT_HELP)
    tr.add_argument("--max_eval", "--max-eval", type=int, default=None,
                    help="evaluate on the first N test points only (N >= 1)")
    tr.add_argument("--skip_bad_lines", "--skip-bad-lines", action="store_true",
                    help="drop malformed lines of the data files (and report how many) instead of stopping")
    tr.add_argument("--checkpoint_every", "--checkpoint-every", default=None, metavar="N|10m",
                    help="write DIR/checkpoint.npz every N batches, or every so many minutes/seconds ('10m', '90s')")
    tr.add_argument("--resume", metavar="DIR", default=None,
                    help="continue the interrupted run in DIR (its --out folder) from its last checkpoint")
    tr.add_argument("--dry_run", "--dry-run", action="store_true",
                    help="load the data, print the memory the training arrays need and what is available, stop")
    _add_text_flags(tr)
    _add_param_flags(tr)
    ev = sub.add_parser("evaluate", allow_abbrev=False, help="P@k / nDCG@k of a saved model on a labelled file",
                        description="Evaluate MODEL on the labelled file TEST; print the metrics as JSON.")
    ev.add_argument("model", help="a model file written by slide train or SlideClassifier.save (model.npz)")
    ev.add_argument("test", help=f"labelled file: {data_file}")
    _add_text_flags(ev)
    _add_predict_flags(ev)
    be = sub.add_parser("bench", allow_abbrev=False,
                        help="SLIDE vs dense / sampled-softmax baselines: P@1 against time",
                        description="Train SLIDE and baselines on the same data, threads and network; evaluate "
                                    "every --eval_every training seconds on a fixed test subset; write "
                                    "OUT/bench.json and OUT/bench.png. Baselines need 'slide[torch]'. "
                                    "--sampler sets the random negatives of both SLIDE's padding and "
                                    "the sampled softmax.")
    be.add_argument("train", nargs="?", help="training file (or use --preset)")
    be.add_argument("--test", help="test file")
    be.add_argument("--preset", choices=("slide-reference", "amazon-670k", "delicious-200k"),
                    help="a generated data set with published dimensions instead of files")
    be.add_argument("--scale", type=float, default=0.1, help="preset: fraction of its points (default 0.1)")
    be.add_argument("--max_train", "--max-train", type=int, default=None, help="use the first N training points")
    be.add_argument("--eval_size", "--eval-size", type=int, default=2000,
                    help="test points evaluated (a fixed shuffle; default 2000)")
    be.add_argument("--eval_first", "--eval-first", action="store_true",
                    help="evaluate on the first --eval_size test points instead of a fixed shuffle")
    be.add_argument("--methods", default="slide,dense", help="comma-separated: slide,dense,sampled,omikuji,pecos")
    be.add_argument("--pecos_python", "--pecos-python", default=None,
                    help="interpreter with libpecos installed, for --methods pecos (default: $SLIDE_PECOS_PYTHON)")
    be.add_argument("--mode", choices=("curve", "threads"), default="curve",
                    help="curve: P@1 vs time; threads: throughput vs thread count")
    be.add_argument("--threads", default="1,2", help="threads mode: thread counts (default 1,2)")
    be.add_argument("--max_seconds", "--max-seconds", type=float, default=None,
                    help="training-time budget per method in seconds (default: the epochs decide)")
    be.add_argument("--eval_every", "--eval-every", type=float, default=60.0,
                    help="evaluate every N seconds of training (default 60)")
    be.add_argument("--n_negatives", "--n-negatives", type=int, default=None,
                    help="sampled softmax: negatives per batch (default 1024)")
    be.add_argument("--config", help="TOML file of model parameters")
    be.add_argument("--out", default="bench", help="output folder (default: bench)")
    _add_param_flags(be)
    pr = sub.add_parser("predict", allow_abbrev=False, help="top-k labels of every point of a file",
                        description="Write the top-k labels of every point of INPUT, one line per point, best "
                                    "first. For a model trained on texts INPUT holds raw texts: JSON lines, CSV, "
                                    "TSV or one text per line ('-': standard input).")
    pr.add_argument("model", help="a model file written by slide train or SlideClassifier.save (model.npz)")
    pr.add_argument("input", help=f"points to label: {data_file} (labels in it are ignored)")
    pr.add_argument("--scores", action="store_true", help="write label:logit pairs")
    pr.add_argument("--json", action="store_true",
                    help='one JSON object per point: {"labels": [...], "scores": [...]} (label names may hold spaces)')
    _add_text_flags(pr, labels=False)
    _add_predict_flags(pr)
    se = sub.add_parser("serve", allow_abbrev=False, help="serve a text model over HTTP (JSON API and a search page)",
                        description="Load MODEL (trained on texts) once and answer POST /predict {\"texts\": [...], "
                                    "\"k\": 5}, GET /health, GET /info and GET / (a search page) with uvicorn. "
                                    "Needs 'slide[serve]'.")
    se.add_argument("model", help="a model file trained on texts (model.npz)")
    se.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    se.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    se.add_argument("--predict_mode", "--predict-mode", choices=("auto", "lsh", "exact"), default="auto",
                    help="default prediction mode: 'lsh' (only the labels the hash tables retrieve), 'exact' (every "
                         "label), or 'auto' (the default: 'lsh' where the model's end-of-training check found LSH "
                         "prediction's top label to be exact prediction's on >= 90%% of its rows, else 'exact'); a "
                         "request may ask for either")
    se.add_argument("--n_jobs", "--n-jobs", default=None, metavar="V",
                    help=f"threads of the model: {allowed(PARAM_BY_NAME['n_jobs'])} (default: the model's n_jobs)")
    se.add_argument("--max_texts", "--max-texts", type=int, default=1000, help="texts per request (default 1000)")
    se.add_argument("--max_text_chars", "--max-text-chars", type=int, default=10_000,
                    help="characters per text (default 10000)")
    se.add_argument("--max_k", "--max-k", type=int, default=100, help="largest k a request may ask (default 100)")
    return ap


def cmd_serve(args) -> int:
    from .serve import Limits, serve

    for name in ("port", "max_texts", "max_text_chars", "max_k"):
        v = getattr(args, name)
        if v < 1 or (name == "port" and v > 65535):
            raise ParameterError(f"--{name} must be {'a port in [1, 65535]' if name == 'port' else 'a positive int'}. "
                                 f"Got {v} instead.")
    n_jobs = None if args.n_jobs is None else _n_jobs_flag(args)
    limits = Limits(max_texts=args.max_texts, max_text_chars=args.max_text_chars, max_k=args.max_k)
    print(f"slide serve: loading {args.model}...", file=sys.stderr)
    serve(args.model, host=args.host, port=args.port, mode=args.predict_mode, n_jobs=n_jobs, limits=limits)
    return 0


def cmd_bench(args) -> int:
    from .bench import METHODS, run_bench

    config = _read_config(args.config)
    params = _params_from(args, config)
    n_jobs = params.pop("n_jobs", None)
    if n_jobs is None:
        n_jobs = 2
    if args.n_negatives is not None:  # a sampled-softmax setting; the other methods ignore it
        params["n_negatives"] = args.n_negatives
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.preset and args.train:
        raise ParameterError("slide bench: give either --preset or TRAIN/--test files, not both.")
    if args.preset:
        data = {"preset": args.preset, "scale": args.scale}
    else:
        if not args.train or not args.test:
            raise ParameterError("slide bench: give --preset NAME, or a TRAIN file and --test TEST.")
        for f in (args.train, args.test):
            if not Path(f).is_file():
                raise DataFormatError(f"slide bench: {f} does not exist or is not a file.")
        data = {"train": args.train, "test": args.test}
    for name, v in (("max_train", args.max_train), ("eval_size", args.eval_size)):
        if v is not None and v < 1:
            raise ParameterError(f"--{name} must be a positive number of points. Got {v} instead.")
    for name, v in (("max_seconds", args.max_seconds), ("eval_every", args.eval_every)):
        if v is not None and not v > 0:
            raise ParameterError(f"--{name} must be a positive number of seconds. Got {v} instead.")
    if args.max_train:
        data["max_train"] = args.max_train
    data["eval_size"] = args.eval_size
    if args.eval_first:
        data["eval_first"] = True
    data["random_state"] = params.pop("random_state", None) or 0
    try:
        threads = tuple(int(t) for t in args.threads.split(","))
    except ValueError:
        raise ParameterError(f"--threads must be a comma-separated list of ints. Got {args.threads!r}.") from None
    if any(t < 1 for t in threads):
        raise ParameterError(f"--threads must be positive. Got {args.threads!r}.")
    if not methods or any(m not in METHODS for m in methods):
        raise ParameterError(f"--methods must be a comma-separated subset of {','.join(METHODS)}. Got {args.methods!r}.")
    res = run_bench(data, methods, params=params, n_jobs=int(n_jobs), max_seconds=args.max_seconds,
                    eval_every=args.eval_every, mode=args.mode, threads=threads, out_dir=args.out,
                    pecos_python=args.pecos_python)
    for m, v in res.get("summary", {}).items():
        print(m, json.dumps(v, default=float))
    print(f"Wrote {Path(args.out) / 'bench.json'} and {Path(args.out) / 'bench.png'}")
    return 0


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "bench":
            return cmd_bench(args)
        if args.command == "serve":
            return cmd_serve(args)
        return cmd_predict(args)
    except SlideError as e:
        print(f"slide: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a folder that cannot be made, a full disk, ...: what the system said, where
        where = f"{e.filename}: " if e.filename else ""
        print(f"slide: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("slide: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
