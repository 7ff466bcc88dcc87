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
import tomllib
from pathlib import Path

import numpy as np

from .config import PARAM_BY_NAME, PARAMS, validate_value
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
        groups[p.group].add_argument(*names, dest=p.name, default=None, metavar="V",
                                     help=f"{p.help} (default: {default})")


def _params_from(args, config: dict) -> dict:
    params = {}
    for key, value in config.items():
        if key in ("train", "test", "out"):
            continue
        if key not in PARAM_BY_NAME:
            raise ParameterError(f"{args.config}: unknown key {key!r}. Known keys: train, test, out, "
                                 + ", ".join(p.name for p in PARAMS) + ".")
        p = PARAM_BY_NAME[key]
        if p.kind in ("sizes", "layers") and isinstance(value, list):
            value = tuple(value)
        params[key] = validate_value(p, value, owner=f"the config file {args.config}")
    for p in PARAMS:
        raw = getattr(args, p.name, None)
        if raw is not None:
            params[p.name] = validate_value(p, _parse_flag(p, raw), owner=f"slide {args.command} (flag --{p.name})")
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
def _load(path, fmt="auto", skip_bad_lines=False):
    from .data import load_libsvm, load_xmc

    if fmt == "auto":
        fmt = _sniff(path)
    loader = load_xmc if fmt == "xmc" else load_libsvm
    X, Y, skipped = loader(path, skip_bad_lines=skip_bad_lines, return_skipped=True)
    if skipped:
        print(f"{path}: skipped {skipped:,} bad lines", file=sys.stderr)
    return X, Y


def _sniff(path) -> str:
    """'xmc' if the first line is a 'N D L' header, else 'libsvm'."""
    import gzip

    p = Path(path)
    if not p.exists():
        raise DataFormatError(f"data file {path} does not exist.")
    if p.is_dir():
        raise DataFormatError(f"{path} is a folder; expected a data file.")
    with open(p, "rb") as f:
        magic = f.read(2)
    try:
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(p, "rb") as f:
            first = f.readline(4096)
    except (OSError, EOFError) as e:
        raise DataFormatError(f"{path}: cannot read ({e}).") from None
    parts = first.split()
    if len(parts) == 3 and all(x.isdigit() for x in parts):
        return "xmc"
    return "libsvm"


def _machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine()}


# ----------------------------------------------------------------------------- commands
def _load_data(run: dict):
    """(Xtr, Ytr, Xte, Yte, dataset description) for a run description (see cmd_train)."""
    if run["train"] is None:
        from .datasets import make_extreme

        print(f"No training file given: generating the built-in task (make_extreme, {BUILTIN['n_samples']:,} "
              f"train / {BUILTIN['n_test']:,} test points, {BUILTIN['n_features']:,} features, "
              f"{BUILTIN['n_labels']:,} labels)...", file=sys.stderr)
        Xtr, Ytr, Xte, Yte = make_extreme(**BUILTIN)
        return Xtr, Ytr, Xte, Yte, {"name": "builtin:make_extreme", **BUILTIN}
    print(f"Loading {run['train']}...", file=sys.stderr)
    Xtr, Ytr = _load(run["train"], run["format"], run["skip_bad_lines"])
    Xte = Yte = None
    if run["test"] is not None:
        Xte, Yte = _load(run["test"], run["format"], run["skip_bad_lines"])
        if Xte.shape[1] != Xtr.shape[1] or Yte.shape[1] != Ytr.shape[1]:
            raise DataFormatError(f"{run['test']}: has {Xte.shape[1]} features and {Yte.shape[1]} labels, but "
                                  f"{run['train']} has {Xtr.shape[1]} and {Ytr.shape[1]}; expected the same "
                                  "dimensions.")
    return Xtr, Ytr, Xte, Yte, {"train": run["train"], "test": run["test"]}


def cmd_train(args) -> int:
    from . import SlideClassifier, load
    from .io import atomic_write
    from .metrics import evaluate, label_propensities

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
        if args.train is not None:
            run["train"] = args.train  # same data moved elsewhere: checked against the checkpoint
        clf = load(ckpt)
        print(f"Resuming {out} from epoch {clf._progress.epoch + 1}, batch {clf._progress.batch} "
              f"(step {clf._step})", file=sys.stderr)
    else:
        config = _read_config(args.config)
        params = _params_from(args, config)
        out = Path(args.out or config.get("out") or "slide-run")
        run = {"train": args.train or config.get("train"), "test": args.test or config.get("test"),
               "format": args.format, "skip_bad_lines": bool(args.skip_bad_lines), "max_eval": args.max_eval,
               "checkpoint_every": args.checkpoint_every}
        for key in ("train", "test"):
            run[key] = None if run[key] is None else str(run[key])
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
    t0 = time.perf_counter()
    Xtr, Ytr, Xte, Yte, dataset = _load_data(run)
    load_seconds = time.perf_counter() - t0
    if run["max_eval"] is not None and Xte is not None:
        Xte, Yte = Xte[: run["max_eval"]], Yte[: run["max_eval"]]
    if args.dry_run:
        return _dry_run(clf, Xtr, Ytr)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.npz" if run["checkpoint_every"] is not None else None
    if args.resume is None:
        atomic_write(out / "run.json", lambda f: f.write(json.dumps(run, indent=2).encode()))
    every = None if run["checkpoint_every"] is None else _every(run["checkpoint_every"])
    log_path = out / "log.jsonl"

    def on_epoch(rec):
        # the whole history each time: after a resume the log continues where the checkpoint was
        text = "".join(json.dumps(r) + "\n" for r in clf.history_)
        atomic_write(log_path, lambda f: f.write(text.encode()))

    fit_kw = dict(eval_set=None if Xte is None else (Xte, Yte), eval_k=5, callback=on_epoch,
                  checkpoint_path=ckpt_path, checkpoint_every=every)
    if args.resume is not None:
        clf.resume(Xtr, Ytr, **fit_kw)
    else:
        clf.fit(Xtr, Ytr, **fit_kw)
    metrics = {}
    if Xte is not None:
        top = clf.predict(Xte, k=5)
        metrics = evaluate(Yte, top, ks=(1, 3, 5), propensities=label_propensities(Ytr) if Ytr.shape[0] >= 3 else None)
    total_train = sum(r["epoch_seconds"] for r in clf.history_)
    n_seen = clf.history_[-1]["samples_seen"] if clf.history_ else 0
    result = {
        **metrics,
        "train_seconds": total_train,
        "samples_per_second": n_seen / total_train if total_train > 0 else None,
        "load_seconds": load_seconds,
        "epochs": clf.n_iter_,
        "n_train": int(Xtr.shape[0]),
        "n_test": None if Xte is None else int(Xte.shape[0]),
        "n_features": int(Xtr.shape[1]),
        "n_labels": int(Ytr.shape[1]),
        "timings": {k: float(v) for k, v in clf.timings_.items()},
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in clf.get_params().items()},
        "recipe": {c.name: {"value": c.value, "reason": c.reason} for c in clf.recipe_},
        "data_profile": clf.data_profile_.to_dict() if clf.data_profile_ is not None else None,
        "layers": [{"n_in": s.n_in, "n_out": s.n_out, "lsh": s.lsh, **({"K": s.K, "L": s.L, "bucket_bits": s.bucket_bits,
                    "bucket_size": s.bucket_size, "active_size": s.active_size, "min_active": s.min_active}
                                                                 if s.lsh else {})}
                   for s in clf.layer_specs_],
        "dataset": dataset,
        "machine": _machine(),
    }
    atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(result, indent=2).encode()))
    clf.save(out / "model.npz")
    if ckpt_path is not None and ckpt_path.exists() and clf._progress is None:
        ckpt_path.unlink()  # the run is complete: model.npz supersedes the checkpoint
    print(_summary(result), file=sys.stdout)
    print(f"wrote {out / 'metrics.json'}, {log_path} and {out / 'model.npz'}", file=sys.stderr)
    return 0


def _every(text):
    """--checkpoint_every: '500' (batches) or '10m' / '90s' / '1h' (time)."""
    t = str(text).strip()
    return int(t) if t.isdigit() else t


def _dry_run(clf, X, Y) -> int:
    from .memory import available_bytes, fmt

    max_labels = int(np.diff(Y.indptr).max()) if Y.shape[0] else 1
    max_nnz = int(np.diff(X.indptr).max()) if X.shape[0] else 1
    est = clf.estimate_memory(X.shape[1], Y.shape[1], max_labels=max_labels, max_nnz=max(1, max_nnz))
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


def _load_model(path):
    from . import load

    return load(path)


def cmd_evaluate(args) -> int:
    from .metrics import evaluate

    clf = _load_model(args.model)
    X, Y = _load(args.test, args.format, args.skip_bad_lines)
    if Y.shape[1] != clf.n_labels_:
        raise DataFormatError(f"{args.test}: has {Y.shape[1]} labels, but the model was trained with {clf.n_labels_}.")
    t0 = time.perf_counter()
    top = clf.predict(X, k=args.k, mode=args.predict_mode)
    sec = time.perf_counter() - t0
    res = evaluate(Y, top, ks=tuple(k for k in (1, 3, 5) if k <= args.k) or (args.k,))
    res["predict_seconds"] = sec
    res["n_test"] = int(X.shape[0])
    text = json.dumps(res, indent=2)
    if args.out:
        from .io import atomic_write

        atomic_write(args.out, lambda f: f.write(text.encode()))
    print(text)
    return 0


def cmd_predict(args) -> int:
    clf = _load_model(args.model)
    X, _ = _load(args.input, args.format, args.skip_bad_lines)
    labels, scores = clf.predict_topk(X, k=args.k, mode=args.predict_mode)
    rows = []
    for i in range(labels.shape[0]):
        ok = labels[i] >= 0
        if args.scores:
            rows.append(" ".join(f"{l}:{s:.6g}" for l, s in zip(labels[i][ok], scores[i][ok])))
        else:
            rows.append(" ".join(str(l) for l in labels[i][ok]))
    text = "\n".join(rows) + ("\n" if rows else "")
    if args.out:
        from .io import atomic_write

        atomic_write(args.out, lambda f: f.write(text.encode()))
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="slide", description="LSH-sparse training of extreme classifiers on CPUs (SLIDE).")
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a model (no TRAIN file: a built-in generated task)",
                        description="Train on TRAIN (XMC or LIBSVM text, .gz ok), evaluate on TEST after every "
                                    "epoch, write DIR/metrics.json, DIR/log.jsonl and DIR/model.npz.")
    tr.add_argument("train", nargs="?", help="training file (omit for the built-in generated task)")
    tr.add_argument("--test", help="test file, evaluated after every epoch")
    tr.add_argument("--out", help="output folder (default: slide-run)")
    tr.add_argument("--config", help="TOML file of parameters (keys as the flags below, plus train/test/out)")
    tr.add_argument("--format", choices=("auto", "xmc", "libsvm"), default="auto", help="input format")
    tr.add_argument("--max_eval", "--max-eval", type=int, default=None, help="evaluate on the first N test points only")
    tr.add_argument("--skip_bad_lines", "--skip-bad-lines", action="store_true",
                    help="drop malformed lines of the data files (and report how many) instead of stopping")
    tr.add_argument("--checkpoint_every", "--checkpoint-every", default=None, metavar="N|10m",
                    help="write DIR/checkpoint.npz every N batches, or every so many minutes/seconds ('10m', '90s')")
    tr.add_argument("--resume", metavar="DIR", default=None,
                    help="continue the interrupted run in DIR (its --out folder) from its last checkpoint")
    tr.add_argument("--dry_run", "--dry-run", action="store_true",
                    help="load the data, print the memory the training arrays need and what is available, stop")
    _add_param_flags(tr)
    ev = sub.add_parser("evaluate", help="P@k / nDCG@k of a saved model on a labelled file")
    ev.add_argument("model")
    ev.add_argument("test")
    ev.add_argument("--k", type=int, default=5)
    ev.add_argument("--predict_mode", "--predict-mode", choices=("exact", "lsh"), default=None)
    ev.add_argument("--format", choices=("auto", "xmc", "libsvm"), default="auto")
    ev.add_argument("--out", help="also write the metrics JSON here")
    ev.add_argument("--skip_bad_lines", "--skip-bad-lines", action="store_true", help="drop malformed lines")
    be = sub.add_parser("bench", help="SLIDE vs dense / sampled-softmax baselines: P@1 against time",
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
    pr = sub.add_parser("predict", help="top-k labels of every point of a file")
    pr.add_argument("model")
    pr.add_argument("input")
    pr.add_argument("--k", type=int, default=5)
    pr.add_argument("--scores", action="store_true", help="write label:logit pairs")
    pr.add_argument("--predict_mode", "--predict-mode", choices=("exact", "lsh"), default=None)
    pr.add_argument("--format", choices=("auto", "xmc", "libsvm"), default="auto")
    pr.add_argument("--out", help="write here instead of standard output")
    pr.add_argument("--skip_bad_lines", "--skip-bad-lines", action="store_true", help="drop malformed lines")
    return ap


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
        return cmd_predict(args)
    except SlideError as e:
        print(f"slide: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("slide: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
