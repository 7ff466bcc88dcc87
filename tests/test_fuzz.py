"""Seeded fuzzing of the four surfaces a user or an attacker reaches: data files, model files,
API inputs and the command line. Every case must end in a correct result or the project's own
error (a :class:`slide.SlideError`; argparse's exit 2 on the command line) within a time bound:
never a crash, a foreign exception or a silently wrong result.

CI runs a fast slice; the long run takes a case count per surface:

    python -m pytest tests/test_fuzz.py --fuzz-cases 1500 -q     # 6,000 cases

Each case is drawn from ``random.Random(f"{surface}-{case}")``, so a failure names its case and
reruns alone (``-k "model_files and 417"``).
"""

from __future__ import annotations

import gzip
import io
import json
import random
import time
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

import slide
from slide import DataFormatError, SlideClassifier, SlideError
from slide.cli import main
from slide.data import load_libsvm, save_libsvm
from slide.datasets import make_extreme
from slide.io import read_arrays, write_arrays

CASE_SECONDS = 20.0  # a bound no legitimate small case comes near (they take milliseconds)


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        n = metafunc.config.getoption("fuzz_cases")
        metafunc.parametrize("case", range(n))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small training set, its libsvm text, and a saved model (LSH output layer) with its
    checkpoint."""
    d = tmp_path_factory.mktemp("fuzz")
    X, Y, Xt, Yt = make_extreme(300, 60, 5000, n_test=40, random_state=1)
    clean = d / "train.svm"
    save_libsvm(clean, X, Y)
    clf = SlideClassifier(hidden_layer_sizes=(8,), lsh_layers="output", epochs=1, batch_size=64, random_state=0,
                          n_jobs=1)
    clf.fit(X, Y, checkpoint_path=d / "ck.npz", checkpoint_every=2)
    clf.save(d / "model.npz")
    test_file = d / "test.svm"
    save_libsvm(test_file, Xt, Yt)
    return {"dir": d, "X": X, "Y": Y, "Xt": Xt, "Yt": Yt, "clean": clean, "ref": load_libsvm(clean),
            "model": d / "model.npz", "ckpt": d / "ck.npz", "test": test_file}


def bounded(fn):
    t0 = time.perf_counter()
    out = fn()
    assert time.perf_counter() - t0 < CASE_SECONDS, "case ran past its time bound"
    return out


def own_error_or(fn):
    """fn()'s result, or None when it raised the project's own error; anything else fails."""
    try:
        return bounded(fn)
    except SlideError:
        return None


# ----------------------------------------------------------------------------- data files
def _same(a, b):
    (Xa, Ya), (Xb, Yb) = a, b
    return Xa.shape == Xb.shape and Ya.shape == Yb.shape and (Xa != Xb).nnz == 0 and (Ya != Yb).nnz == 0


def test_fuzz_data_files(world, tmp_path, case):
    """Mutations of a valid libsvm file with a known answer: layout changes (CRLF, spacing,
    comments, blank lines, gzip, no final newline) must parse to exactly the clean file's
    matrices; a token broken on a chosen row must raise DataFormatError naming that line; random
    byte damage must parse to consistent matrices or raise DataFormatError."""
    r = random.Random(f"data-{case}")
    lines = world["clean"].read_text().splitlines()
    kind = r.choice(["layout", "broken", "bytes"])
    path = tmp_path / "f.svm"
    if kind == "layout":
        out = []
        for line in lines:
            if r.random() < 0.1:
                out.append(r.choice(["", "# a comment", "   "]))
            toks = line.split(" ")
            sep = r.choice([" ", "  ", "\t", " \t "])
            out.append(r.choice(["", " "]) + sep.join(toks) + r.choice(["", " ", "\t"]))
        text = r.choice(["\n", "\r\n"]).join(out) + r.choice(["", "\n"])
        raw = text.encode()
        if r.random() < 0.5:
            raw = gzip.compress(raw, compresslevel=r.randint(1, 9))
            path = tmp_path / "f.svm.gz"
        path.write_bytes(raw)
        got = bounded(lambda: load_libsvm(path))
        assert _same(got, world["ref"]), "a layout change altered the data"
    elif kind == "broken":
        row = r.randrange(len(lines))
        toks = lines[row].split(" ")
        feats = [i for i, t in enumerate(toks) if ":" in t]
        if not feats:
            pytest.skip("row without features")
        i = r.choice(feats)
        f, v = toks[i].split(":")
        toks[i] = r.choice([f"{f}:abc", f"-{f}:{v}", f"{f}{v}", f"{f}:", f"x{f}:{v}", f"{f}:{v}:{v}",
                            f"{f}:nan", f"{f}:1e999"])
        lines[row] = " ".join(toks)
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(DataFormatError) as e:
            bounded(lambda: load_libsvm(path))
        assert e.value.line == row + 1, (e.value.line, row + 1, str(e.value))
    else:
        raw = bytearray(world["clean"].read_bytes())
        for _ in range(r.randint(1, 6)):
            k = r.randrange(len(raw))
            op = r.choice(["set", "insert", "delete"])
            if op == "set":
                raw[k] = r.randrange(256)
            elif op == "insert":
                raw.insert(k, r.randrange(256))
            else:
                del raw[k]
        if r.random() < 0.3:
            raw = bytearray(gzip.compress(bytes(raw)))[: r.randint(1, len(raw) + 40)]
            path = tmp_path / "f.svm.gz"
        path.write_bytes(bytes(raw))
        got = own_error_or(lambda: load_libsvm(path))
        if got is not None:
            Xg, Yg = got
            assert Xg.shape[0] == Yg.shape[0] and np.isfinite(Xg.data).all()
            assert Xg.indices.size == 0 or (Xg.indices.min() >= 0 and Xg.indices.max() < Xg.shape[1])


# ----------------------------------------------------------------------------- model files
_JUNK = [None, -1, 0, 1, 2**31, 2**70, -2**70, 1.5, float("nan"), "x", "", [], [1, "a"], {}, {"a": 1}, True]


def _mutate_meta(r, meta):
    keys = [k for k in meta if k not in ("format", "format_version", "sha256", "meta_sha256")]
    key = r.choice(keys)
    target, name = meta, key
    if isinstance(meta[key], dict) and meta[key] and r.random() < 0.6:
        target, name = meta[key], r.choice(list(meta[key]))
    elif isinstance(meta[key], list) and meta[key] and isinstance(meta[key][0], dict) and r.random() < 0.7:
        target = r.choice(meta[key])
        name = r.choice(list(target))
    target[name] = r.choice(_JUNK)


def _mutate_arrays(r, arrays):
    name = r.choice(sorted(arrays))
    a = arrays[name]
    op = r.choice(["dtype", "shape", "value", "delete", "byteorder"])
    if op == "dtype":
        arrays[name] = a.astype(r.choice([np.float64, np.int64, np.int32, np.float32, np.uint8, np.float16]))
    elif op == "shape":
        arrays[name] = a.reshape(-1)[: max(0, a.size - r.randint(0, 3))] if a.size else np.zeros(3, a.dtype)
    elif op == "value" and a.size:
        b = a.copy()
        flat = b.reshape(-1)
        k = r.randrange(flat.size)
        choices = [-1, 2**31 - 1, -2**31, 10**6, 0] if b.dtype.kind in "iu" else [np.nan, np.inf, -np.inf, 1e30, 0.0]
        v = r.choice(choices)
        try:
            flat[k] = v
        except (OverflowError, ValueError):
            flat[k] = 0
        arrays[name] = b
    elif op == "delete":
        del arrays[name]
    else:
        arrays[name] = a.astype(a.dtype.newbyteorder(">")) if a.dtype.itemsize > 1 else a


def test_fuzz_model_files(world, tmp_path, case):
    """A saved model or checkpoint with random damage: byte flips (caught by the checksums), or
    crafted consistent files (a metadata field or an array changed, checksums recomputed). Each
    must load and then predict in both modes with ids in range, or raise DataFormatError."""
    r = random.Random(f"model-{case}")
    src = world["ckpt"] if r.random() < 0.3 else world["model"]
    path = tmp_path / "m.npz"
    kind = r.choice(["bytes", "meta", "arrays", "both"])
    if kind == "bytes":
        raw = bytearray(src.read_bytes())
        for _ in range(r.randint(1, 4)):
            raw[r.randrange(len(raw))] = r.randrange(256)
        path.write_bytes(bytes(raw))
    else:
        arrays, meta = read_arrays(src)
        if kind in ("meta", "both"):
            _mutate_meta(r, meta)
        if kind in ("arrays", "both"):
            _mutate_arrays(r, arrays)
        try:
            write_arrays(path, arrays, meta)
        except (TypeError, ValueError):  # not JSON-able: nothing a file could hold
            pytest.skip("mutation not representable in a file")
    clf = own_error_or(lambda: slide.load(path))
    if clf is None:
        return
    for mode in ("exact", "lsh"):
        ids = own_error_or(lambda: clf.predict_topk(world["Xt"], k=3, mode=mode)[0])
        if ids is not None:
            assert ids.shape == (world["Xt"].shape[0], 3) and ids.min() >= -1 and ids.max() < clf.n_labels_


# ----------------------------------------------------------------------------- API inputs
def _random_X(r, n, d):
    kind = r.choice(["csr", "dense", "list", "f16", "nan", "complex", "str", "ragged", "1d", "empty", "object"])
    M = sp.random(n, d, density=0.1, format="csr", random_state=r.randrange(1000), dtype=np.float32)
    if kind == "csr":
        return M
    A = M.toarray()
    if kind == "dense":
        return A
    if kind == "list":
        return A.tolist()
    if kind == "f16":
        return A.astype(np.float16)
    if kind == "nan":
        A[r.randrange(n), r.randrange(d)] = r.choice([np.nan, np.inf])
        return A
    if kind == "complex":
        return A.astype(np.complex64)
    if kind == "str":
        return A.astype(str)
    if kind == "ragged":
        rows = A.tolist()
        rows[r.randrange(n)] = rows[0][: d // 2]
        return rows
    if kind == "1d":
        return A[0]
    if kind == "empty":
        return np.zeros((0, d))
    return np.array([[object()] * d] * n, dtype=object)


def _random_Y(r, n, L):
    kind = r.choice(["lists", "names", "vector", "strings", "dense", "sparse", "bad"])
    lists = [[r.randrange(L) for _ in range(r.randint(0, 3))] for _ in range(n)]
    if kind == "lists":
        return lists
    if kind == "names":
        return [[f"l{v}" for v in row] for row in lists]
    if kind == "vector":
        return np.array([r.randrange(L) for _ in range(n)])
    if kind == "strings":
        return [f"c{r.randrange(L)}" for _ in range(n)]
    Y = np.zeros((n, L), np.float32)
    for i, row in enumerate(lists):
        Y[i, row] = 1
    if kind == "dense":
        return Y
    if kind == "sparse":
        return sp.csr_matrix(Y)
    bad = [None, [None], [[1]], [-1], [10**30], [1.5], "x", [float("nan")]]
    if n:
        lists[r.randrange(n)] = r.choice(bad)
    return lists


def test_fuzz_api_inputs(world, case):
    """fit / predict / predict_proba / score / set_params with random inputs: a fitted model
    whose outputs have the right shapes, or the project's own error."""
    r = random.Random(f"api-{case}")
    n, d, L = r.randint(1, 40), r.randint(1, 30), r.randint(1, 12)
    params = dict(hidden_layer_sizes=(r.choice([4, 8]),), epochs=1, batch_size=r.choice([1, 16, 64]),
                  n_jobs=r.choice([1, -1]), random_state=r.choice([0, 1]))
    if r.random() < 0.4:
        name = r.choice(["learning_rate", "dropout", "active_size", "n_tables", "hashes_per_table", "epochs",
                         "batch_size", "n_jobs", "lsh_layers", "hidden_layer_sizes", "optimizer", "random_state"])
        params[name] = r.choice(_JUNK + ["auto", (3,), (0,), "all", 1e9])
    X, Y = _random_X(r, n, d), _random_Y(r, n, L)
    fitted = own_error_or(lambda: SlideClassifier(**params).fit(X, Y))
    if fitted is None:
        return
    Xq = _random_X(r, r.randint(1, 10), d)
    k = r.choice([1, 2, 5, 0, -1, None, 2.5, "3", 10**6])
    ids = own_error_or(lambda: fitted.predict_topk(Xq, k=5 if k is None else k)[0])
    if ids is not None:  # label ids, or the label names a model trained on names returns
        assert ids.ndim == 2 and set(np.unique(ids).tolist()) <= set(fitted.classes_.tolist()) | {-1}
    P = own_error_or(lambda: fitted.predict_proba(Xq, k=k))
    if P is not None:
        assert P.shape[1] == fitted.n_labels_ and np.all(P.data >= 0) and np.all(P.data <= 1 + 1e-6)
    own_error_or(lambda: fitted.score(Xq, _random_Y(r, np.shape(Xq)[0] if hasattr(Xq, "shape") else len(Xq), L)))


# ----------------------------------------------------------------------------- command line
_FLAGS = {
    "predict": ["--k", "--predict_mode", "--scores", "--format", "--n_jobs", "--out", "--skip_bad_lines", "--kk"],
    "evaluate": ["--k", "--predict_mode", "--format", "--n_jobs", "--out", "--skip_bad_lines"],
}
_SWITCHES = ("--scores", "--skip_bad_lines")
_VALUES = ["1", "3", "0", "-2", "abc", "1e3", "", "lsh", "exact", "libsvm", "xmc", "auto", "99999999999999999999"]


def test_fuzz_command_line(world, tmp_path, case, capsys):
    """slide predict / evaluate with random flags, values and (damaged) input files: exit 0 with
    output, or exit 2 with one 'slide: error:' line; never a traceback."""
    r = random.Random(f"cli-{case}")
    command = r.choice(["predict", "evaluate"])
    model = str(world["model"]) if r.random() < 0.85 else str(world["test"])
    data = world["test"]
    if r.random() < 0.4:
        raw = bytearray(data.read_bytes())
        for _ in range(r.randint(1, 3)):
            raw[r.randrange(len(raw))] = r.randrange(256)
        data = tmp_path / "t.svm"
        data.write_bytes(bytes(raw))
    argv = [command, model, str(data)]
    for _ in range(r.randint(0, 3)):
        flag = r.choice(_FLAGS[command])
        argv.append(flag)
        if flag == "--out":
            argv.append(str(tmp_path / r.choice(["o.txt", "missing/o.txt", ""])))
        elif flag not in _SWITCHES:
            argv.append(r.choice(_VALUES))
    try:
        code = bounded(lambda: main(argv))
    except SystemExit as e:  # argparse: a usage error
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), (argv, code, err)
    if code == 2 and not err.startswith("usage:"):
        assert err.rstrip("\n").split("\n")[-1].startswith("slide: error:"), (argv, err)
