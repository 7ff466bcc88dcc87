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
        if k in ("int_auto", "size_auto") and t == "auto":
            return t
        if k in ("int", "int_auto", "seed", "n_jobs"):
            if k in ("seed", "n_jobs") and t.lower() == "none":
                return None
            return int(t)
        if k == "size_auto":
            return int(t) if t.lstrip("-").isdigit() else float(t)
        if k == "float":
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
            params[p.name] = validate_value(p, _parse_flag(p, raw), owner="slide train (flag --" + p.name + ")")
    return params


def _read_config(path):
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise DataFormatError(f"config file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as e:
        raise DataFormatError(f"{path}: not valid TOML ({e}).") from None


# ----------------------------------------------------------------------------- data
def _load(path, fmt="auto"):
    from .data import load_libsvm, load_xmc

    if fmt == "auto":
        fmt = _sniff(path)
    return load_xmc(path) if fmt == "xmc" else load_libsvm(path)


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
def cmd_train(args) -> int:
    from . import SlideClassifier
    from .metrics import evaluate, label_propensities

    config = _read_config(args.config)
    params = _params_from(args, config)
    train = args.train or config.get("train")
    test = args.test or config.get("test")
    out = Path(args.out or config.get("out") or "slide-run")
    if out.exists() and not out.is_dir():
        raise DataFormatError(f"--out {out} exists and is not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if train is None:
        from .datasets import make_extreme

        print(f"No training file given: generating the built-in task (make_extreme, {BUILTIN['n_samples']:,} "
              f"train / {BUILTIN['n_test']:,} test points, {BUILTIN['n_features']:,} features, "
              f"{BUILTIN['n_labels']:,} labels)...", file=sys.stderr)
        Xtr, Ytr, Xte, Yte = make_extreme(**BUILTIN)
        dataset = {"name": "builtin:make_extreme", **BUILTIN}
        # the SLIDE paper's network: one hidden layer of 128 units (unless given)
        params.setdefault("hidden_layer_sizes", (128,))
    else:
        print(f"Loading {train}...", file=sys.stderr)
        Xtr, Ytr = _load(train, args.format)
        Xte = Yte = None
        if test is not None:
            Xte, Yte = _load(test, args.format)
            if Xte.shape[1] != Xtr.shape[1] or Yte.shape[1] != Ytr.shape[1]:
                raise DataFormatError(f"{test}: has {Xte.shape[1]} features and {Yte.shape[1]} labels, but "
                                      f"{train} has {Xtr.shape[1]} and {Ytr.shape[1]}; expected the same dimensions.")
        dataset = {"train": str(train), "test": None if test is None else str(test)}
    load_seconds = time.perf_counter() - t0
    if args.max_eval is not None and Xte is not None:
        Xte, Yte = Xte[: args.max_eval], Yte[: args.max_eval]
    params.setdefault("verbose", 1)
    clf = SlideClassifier(**params)
    log_path = out / "log.jsonl"
    log = open(log_path, "w")

    def on_epoch(rec):
        log.write(json.dumps(rec) + "\n")
        log.flush()

    try:
        clf.fit(Xtr, Ytr, eval_set=None if Xte is None else (Xte, Yte), eval_k=5, callback=on_epoch)
    finally:
        log.close()
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
        "layers": [{"n_in": s.n_in, "n_out": s.n_out, "lsh": s.lsh, **({"K": s.K, "L": s.L, "bucket_bits": s.bucket_bits,
                    "bucket_size": s.bucket_size, "active_size": s.active_size} if s.lsh else {})}
                   for s in clf.layer_specs_],
        "dataset": dataset,
        "machine": _machine(),
    }
    from .io import atomic_write

    atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(result, indent=2).encode()))
    clf.save(out / "model.npz")
    print(_summary(result), file=sys.stdout)
    print(f"wrote {out / 'metrics.json'}, {log_path} and {out / 'model.npz'}", file=sys.stderr)
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
    X, Y = _load(args.test, args.format)
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
    X, _ = _load(args.input, args.format)
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
    _add_param_flags(tr)
    ev = sub.add_parser("evaluate", help="P@k / nDCG@k of a saved model on a labelled file")
    ev.add_argument("model")
    ev.add_argument("test")
    ev.add_argument("--k", type=int, default=5)
    ev.add_argument("--predict_mode", "--predict-mode", choices=("exact", "lsh"), default=None)
    ev.add_argument("--format", choices=("auto", "xmc", "libsvm"), default="auto")
    ev.add_argument("--out", help="also write the metrics JSON here")
    pr = sub.add_parser("predict", help="top-k labels of every point of a file")
    pr.add_argument("model")
    pr.add_argument("input")
    pr.add_argument("--k", type=int, default=5)
    pr.add_argument("--scores", action="store_true", help="write label:logit pairs")
    pr.add_argument("--predict_mode", "--predict-mode", choices=("exact", "lsh"), default=None)
    pr.add_argument("--format", choices=("auto", "xmc", "libsvm"), default="auto")
    pr.add_argument("--out", help="write here instead of standard output")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        return cmd_predict(args)
    except SlideError as e:
        print(f"slide: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("slide: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
