"""Property tests (Hypothesis) of every boundary a user can feed: data files, estimator
parameters, model files and the command line. Each must either work or fail with the project's
own error (a :class:`slide.SlideError`) and a message that says where; nothing else may leak.

Example counts are set per test (``EXAMPLES``) so the file runs in well under a minute on two
cores; ``SLIDE_HYPOTHESIS_SCALE=10`` multiplies them for a longer hunt.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import slide
from slide import (
    DataFormatError,
    ParameterError,
    SlideClassifier,
    SlideError,
    TrainingError,
)
from slide.cli import main
from slide.config import PARAMS

SCALE = float(os.environ.get("SLIDE_HYPOTHESIS_SCALE", "1"))
EXAMPLES = {"bytes": 200, "xmc": 500, "libsvm": 300, "fit": 300, "model": 300, "cli": 300}


def examples(name):
    return settings(max_examples=max(1, int(EXAMPLES[name] * SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# ============================================================================= data files
def check_matrices(X, Y):
    """A valid result: canonical float32 CSR, ids in range, finite values, binary labels."""
    for M in (X, Y):
        assert isinstance(M, sp.csr_matrix) and M.dtype == np.float32
        M.check_format(full_check=True)
        assert M.has_sorted_indices
        if M.nnz:
            assert M.indices.min() >= 0 and M.indices.max() < M.shape[1]
            for r in range(M.shape[0]):  # strictly increasing ids within each row
                assert (np.diff(M.indices[M.indptr[r]:M.indptr[r + 1]]) > 0).all()
    assert X.shape[0] == Y.shape[0]
    assert np.isfinite(X.data).all() and (Y.data == 1).all()
    event("loaded")


def check_error(e: BaseException, path: Path, text: bytes | None):
    """The project's own error, naming the file and (for a line problem) a plausible line."""
    assert isinstance(e, DataFormatError), f"{type(e).__name__}: {e}"
    event("DataFormatError" + (" with a line" if e.line is not None else ""))
    msg = str(e)
    assert str(path) in msg and e.path == str(path), msg
    if e.line is not None:
        assert f"{path}, line {e.line}: " in msg, msg
        if text is not None:
            assert 1 <= e.line <= text.count(b"\n") + 2, (e.line, msg)


def load_quietly(loader, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skip_bad_lines warns
        return loader(path, return_skipped=True, **kw)


# --- a plain-Python reference for the XMC text format (applied to inputs the reader accepts)
_NUM = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def ref_xmc(text: bytes):
    """(X, Y) dense, or None where the reference finds the text invalid."""
    text = text.removeprefix(b"\xef\xbb\xbf")
    lines = text.split(b"\n")
    head = lines[0].split()
    if len(head) != 3 or not all(h.isdigit() for h in head):
        return None
    n, d, l = (int(h) for h in head)
    body = [ln.rstrip(b"\r") for ln in lines[1:]]
    if len(body) < n or any(ln.strip() for ln in body[n:]):  # N points, then only blank lines
        return None
    X, Y = np.zeros((n, d), np.float32), np.zeros((n, l), np.float32)
    for i, ln in enumerate(body[:n]):
        parts = ln.split()
        has_labels = bool(parts) and not ln[:1].isspace()
        if has_labels:
            ids = parts[0].split(b",")
            if not all(t.isdigit() for t in ids):
                return None
            ids = [int(t) for t in ids]
            if len(set(ids)) != len(ids) or max(ids) >= l:
                return None
            Y[i, ids] = 1
        seen = set()
        for tok in parts[1:] if has_labels else parts:
            k, sep, v = tok.partition(b":")
            if not sep or not k.isdigit() or not _NUM.fullmatch(v):
                return None
            k = int(k)
            val = np.float32(float(v))
            if k >= d or k in seen or not np.isfinite(val):
                return None
            seen.add(k)
            X[i, k] = val
    return X, Y


# --- strategies: valid files, then damaged ones
NUMBERS = st.sampled_from([b"1", b"-2", b"0.5", b".25", b"3.", b"1e3", b"-1.5E-2", b"0", b"-0", b"+7",
                           b"123456789", b"3.4028234e38", b"1e-40"])
BAD_TOKENS = [b"nan", b"NaN", b"inf", b"-inf", b"Infinity", b"1e39", b"-1e39", b"-1", b"-1:1", b"99999999999:1",
              b"99999999999999999999999", b"x", b"", b":", b"1:", b":1", b"1:1:1", b"0x1:1", b"1_0:1", b"1:1_0",
              b"1:1e", b"1,", b",1", b"1,,2", b"+1", b"1:--1", b"\x00", b"\xff\xfe", b"1:\t2", b"\t"]
CHARS = st.sampled_from(list(b"0123456789:,. \n\r\t-+eE#na\x00\xff"))


@st.composite
def xmc_texts(draw):
    """The bytes of a valid XMC file."""
    n, d, l = draw(st.integers(0, 5)), draw(st.integers(1, 8)), draw(st.integers(1, 6))
    lines = [b"%d %d %d" % (n, d, l)]
    for _ in range(n):
        labels = draw(st.lists(st.integers(0, l - 1), unique=True, max_size=3))
        feats = draw(st.lists(st.integers(0, d - 1), unique=True, max_size=4))
        toks = [b"%d:%s" % (j, draw(NUMBERS)) for j in feats]
        head = b",".join(b"%d" % v for v in labels)
        lines.append(head + b" " + b" ".join(toks) if labels else b" " + b" ".join(toks))
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n", b"\n\n  \n"]))


@st.composite
def damaged(draw, text: bytes, header: bool):
    """``text`` with 0-4 damages: bad tokens, bad or wrong headers, raw byte edits, truncation."""
    lines = text.split(b"\n")
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["token", "token", "header", "char", "char", "truncate", "dup"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "token" and lines:
            toks = lines[i].split(b" ")
            toks[draw(st.integers(0, len(toks) - 1))] = draw(st.sampled_from(BAD_TOKENS))
            lines[i] = b" ".join(toks)
        elif kind == "dup" and lines[i].strip():  # duplicate a token of the line
            toks = lines[i].split(b" ")
            lines[i] += b" " + toks[-1]
        elif kind == "header" and header:
            n, d, l = draw(st.integers(0, 7)), draw(st.integers(0, 9)), draw(st.integers(0, 7))
            lines[0] = draw(st.sampled_from([
                b"%d %d %d" % (n, d, l), b"%d %d" % (n, d), b"%d %d %d %d" % (n, d, l, n), b"-1 %d %d" % (d, l),
                b"a b c", b"", b"   ", b"1e3 5 5", b"\xef\xbb\xbf%d %d %d" % (n, d, l), b"%d\t%d %d\r" % (n, d, l),
                b"99999999999999999999 5 5", b"2 1099511627777 3"]))
        elif kind == "char":
            flat = b"\n".join(lines)
            pos = draw(st.integers(0, len(flat)))
            c = bytes([draw(CHARS)])
            op = draw(st.sampled_from(["insert", "delete", "replace"]))
            flat = (flat[:pos] + c + flat[pos:] if op == "insert" else
                    flat[:pos] + flat[pos + 1:] if op == "delete" else flat[:pos] + c + flat[pos + 1:])
            lines = flat.split(b"\n")
        elif kind == "truncate":
            flat = b"\n".join(lines)
            lines = flat[: draw(st.integers(0, len(flat)))].split(b"\n")
    return b"\n".join(lines)


@st.composite
def maybe_gzip(draw, text: bytes):
    if not draw(st.booleans()):
        return text, False
    raw = gzip.compress(text, mtime=0)
    how = draw(st.sampled_from(["ok", "ok", "truncate", "flip", "garbage", "two"]))
    if how == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        pos = draw(st.integers(0, len(raw) - 1))
        raw = raw[:pos] + bytes([raw[pos] ^ draw(st.integers(1, 255))]) + raw[pos + 1:]
    elif how == "garbage":
        raw += draw(st.binary(min_size=1, max_size=8))
    elif how == "two":  # concatenated members: valid gzip
        cut = draw(st.integers(0, len(text)))
        raw = gzip.compress(text[:cut], mtime=0) + gzip.compress(text[cut:], mtime=0)
    return raw, how in ("ok", "two")


@examples("bytes")
@given(raw=st.binary(max_size=300), gz_magic=st.booleans(), skip=st.booleans())
def test_random_bytes_load_or_raise_dataformaterror(tmp_path, raw, gz_magic, skip):
    path = tmp_path / "random.bin"
    raw = b"\x1f\x8b" + raw if gz_magic else raw
    path.write_bytes(raw)
    for loader in (slide.load_xmc, slide.load_libsvm):
        try:
            X, Y, _ = load_quietly(loader, path, skip_bad_lines=skip)
        except Exception as e:  # noqa: BLE001  (the point: which exceptions arrive)
            check_error(e, path, None if gz_magic else raw)
        else:
            check_matrices(X, Y)


@examples("xmc")
@given(data=st.data(), skip=st.booleans())
def test_damaged_xmc_loads_correctly_or_raises_dataformaterror(tmp_path, data, skip):
    text = data.draw(damaged(data.draw(xmc_texts()), header=True))
    raw, plain = data.draw(maybe_gzip(text))
    path = tmp_path / "d.txt"
    path.write_bytes(raw)
    note(repr(text))
    try:
        X, Y, skipped = load_quietly(slide.load_xmc, path, skip_bad_lines=skip)
    except Exception as e:  # noqa: BLE001  (the point: which exceptions arrive)
        check_error(e, path, text if plain else None)
        return
    # accepted (a damaged gzip stream only where gzip allows it: header fields, zero padding): the
    # matrices are those of the text, judged by a plain-Python reference
    check_matrices(X, Y)
    head = text.removeprefix(b"\xef\xbb\xbf").split(b"\n")[0].split()
    n, d, l = (int(h) for h in head)  # accepted: so the header is 'N D L'
    assert X.shape == (n - skipped, d) and Y.shape == (n - skipped, l)
    if not skip:
        ref = ref_xmc(text)
        assert ref is not None, "the reader accepted a file the reference rejects"
        np.testing.assert_array_equal(X.toarray(), ref[0])
        np.testing.assert_array_equal(Y.toarray(), ref[1])


@st.composite
def libsvm_texts(draw):
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        labels = draw(st.lists(st.integers(0, 5), unique=True, max_size=3))
        feats = draw(st.lists(st.integers(1, 8), unique=True, min_size=0 if labels else 1, max_size=4))
        toks = [b"%d:%s" % (j, draw(NUMBERS)) for j in feats]
        rows.append(b" ".join([b",".join(b"%d" % v for v in labels)] * bool(labels) + toks))
        if draw(st.integers(0, 5)) == 0:
            rows.append(draw(st.sampled_from([b"# a comment", b"", b"   ", b"1 2:3 # trailing"])))
    return b"\n".join(rows) + b"\n"


@examples("libsvm")
@given(data=st.data(), skip=st.booleans(), zero_based=st.sampled_from(["auto", True, False]),
       n_features=st.sampled_from([None, None, 3, 9, 10, -1, 2.5]), n_labels=st.sampled_from([None, None, 2, 6]))
def test_damaged_libsvm_loads_or_raises_dataformaterror(tmp_path, data, skip, zero_based, n_features, n_labels):
    text = data.draw(damaged(data.draw(libsvm_texts()), header=False))
    raw, plain = data.draw(maybe_gzip(text))
    path = tmp_path / "d.svm"
    path.write_bytes(raw)
    note(repr(text))
    try:
        X, Y, _ = load_quietly(slide.load_libsvm, path, skip_bad_lines=skip, zero_based=zero_based,
                               n_features=n_features, n_labels=n_labels)
    except ParameterError as e:
        assert n_features in (-1, 2.5) and "n_features" in str(e)
        return
    except Exception as e:  # noqa: BLE001  (the point: which exceptions arrive)
        check_error(e, path, text if plain else None)
        return
    assert n_features not in (-1, 2.5)
    check_matrices(X, Y)
    if n_features is not None:
        assert X.shape[1] == n_features
    if n_labels is not None:
        assert Y.shape[1] == n_labels


# ============================================================================= fit parameters
# Valid values are drawn from cheap sub-ranges (tiny data, a few neurons, one or two epochs);
# invalid ones from outside the PARAMS table's ranges and from wrong types.
CHEAP_HIGH = {"hidden_layer_sizes": 8, "epochs": 2, "batch_size": 64, "n_tables": 8, "bucket_size": 32,
              "bucket_bits": 8, "hashes_per_table": 64, "threshold": 8, "doph_top": 16, "rebuild_first": 50,
              "rebuild_max_interval": 50, "verbose": 1, "wta_bin_size": 16, "init_scale": 10.0,
              "learning_rate": 1.0, "active_size": 6, "min_active": 6}
WRONG_TYPES = [None, "3", "", [1], {}, np.array([1, 2]), np.array(["auto"]), 1 + 2j, object()]


def _valid(p):
    k, hi = p.kind, CHEAP_HIGH.get(p.name, p.high)
    if k == "int":
        return st.integers(int(p.low), int(hi)) | st.integers(int(p.low), int(hi)).map(float)  # 3.0 is an int
    if k == "float":
        lo = p.low if not p.low_open else np.nextafter(p.low, np.inf)
        top = hi if not p.high_open else np.nextafter(hi, -np.inf)
        return st.floats(lo, top) | st.just(lo) | st.just(top)
    if k == "bool":
        return st.sampled_from([True, False, 0, 1])
    if k == "choice":
        return st.sampled_from(p.choices)
    if k == "int_auto":
        return st.just("auto") | st.integers(int(p.low), int(hi))
    if k == "float_auto":
        return st.just("auto") | st.floats(p.low, hi)
    if k == "size_auto":
        low = 1 if p.low_open else 0
        return st.just("auto") | st.integers(low, int(hi)) | st.floats(0.01, 0.99)
    if k == "sizes":
        return st.lists(st.integers(1, 8), max_size=2).map(tuple) | st.integers(1, 8)
    if k == "layers":
        # layer numbers past the last layer are judged in fit, with hidden_layer_sizes
        return st.sampled_from(["auto", "output", "all", "none"]) | st.lists(st.integers(0, 3), max_size=2).map(tuple)
    if k == "range":
        return st.just("auto") | st.tuples(st.integers(1, 3), st.integers(0, 2)).map(lambda t: (t[0], t[0] + t[1]))
    if k == "seed":
        return st.none() | st.integers(0, 2**63 - 1)
    if k == "n_jobs":
        return st.sampled_from([None, -1, 1, 2])
    raise AssertionError(k)


def _invalid(p):
    k = p.kind
    bad = list(WRONG_TYPES)
    if k in ("int", "int_auto"):
        bad += [int(p.low) - 1, int(p.high) + 1, p.low + 0.5, float("nan"), float("inf"), True, "auto" if k == "int" else "Auto"]
    elif k in ("float", "float_auto"):
        bad += [float("nan"), float("inf"), -float("inf"), p.high * 2 + 1, True] + (["Auto"] if k == "float_auto" else [])
        bad += [p.low] if p.low_open else [p.low - 1e-3]
        bad += [p.high] if p.high_open else []
    elif k == "bool":
        bad += [2, -1, 0.5, 1.0, "true", np.True_]
    elif k == "choice":
        bad += ["nope", p.choices[0].upper(), 1]
    elif k == "size_auto":
        bad += [-1, 1.5, float("nan"), True, "AUTO"] + ([0, 0.0] if p.low_open else [])
    elif k in ("sizes", "layers"):
        # any iterable of ints is a tuple of ints: [1], np.array([1, 2]), and "" or {} (empty)
        bad = [b for b in bad if not any(b is ok for ok in WRONG_TYPES[2:6])]
        bad += ([(0,), (-1,), (1.5,), (True,), ((1 << 20) + 1,), 0, (4, "4")] if k == "sizes" else
                [-1, (-1,), (1.5,), "out", "All", (True,)])
    elif k == "range":
        bad = [b for b in bad if b is not WRONG_TYPES[5]]  # np.array([1, 2]) is the pair (1, 2)
        bad += [(2, 1), (0, 1), (1, 11), (1,), (1, 2, 3), (1.5, 2), (True, 2), "1,2", 2]
    elif k == "seed":
        bad += [-1, 2**63, 1.5, True, "1"]
        bad.remove(None)
    elif k == "n_jobs":
        bad += [0, 1.5, True, "2"]
        bad.remove(None)
    return st.sampled_from(bad)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    X = sp.random(40, 12, density=0.4, format="csr", random_state=rng, dtype=np.float32)
    Y = [[i % 6, (i * 7) % 6] for i in range(40)]
    return X, Y


@examples("fit")
@given(data=st.data())
def test_fit_succeeds_or_names_the_bad_parameter(tiny, data):
    X, Y = tiny
    names = data.draw(st.lists(st.sampled_from([p.name for p in PARAMS]), min_size=1, max_size=4, unique=True))
    params = dict(hidden_layer_sizes=(4,), epochs=1, n_jobs=1, random_state=0, verbose=0)
    invalid = []
    for p in PARAMS:
        if p.name not in names:
            continue
        if data.draw(st.integers(0, 2), label=f"{p.name} valid") > 0:  # 2 in 3 valid
            params[p.name] = data.draw(_valid(p), label=p.name)
        else:
            params[p.name] = data.draw(_invalid(p), label=p.name)
            invalid.append(p.name)
    clf = SlideClassifier(**params)
    try:
        clf.fit(X, Y)
    except ParameterError as e:
        msg = str(e)
        event("ParameterError" + ("" if invalid else " (a valid value, judged with the others)"))
        if invalid:  # validated in table order: the first bad one is named, with its value
            assert msg.startswith(f"The '{invalid[0]}' parameter of SlideClassifier"), msg
        else:  # a combination the table alone cannot judge (K vs family, layer numbers, ...)
            assert any(f"'{n}'" in msg for n in names), msg
        return
    except TrainingError as e:  # a huge (valid) step size or scale may diverge: reported, not hidden
        assert not invalid and "non-finite" in str(e)
        event("TrainingError")
        return
    assert not invalid, f"accepted invalid {invalid}"
    event("fitted")
    top = clf.predict_topk(X[:5], k=2)[0]
    assert top.shape == (5, 2) and ((top >= -1) & (top < 6)).all()


# ============================================================================= model files
@pytest.fixture(scope="module")
def saved_model(tiny, tmp_path_factory):
    X, Y = tiny
    clf = SlideClassifier(hidden_layer_sizes=(4,), lsh_layers="output", epochs=1, n_jobs=1, random_state=0)
    clf.fit(X, Y)
    path = tmp_path_factory.mktemp("model") / "m.npz"
    clf.save(path)
    raw = path.read_bytes()
    # byte ranges where a zip or .npy header lives: damage there takes the unusual paths
    spots = []
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():  # local header + name, then the .npy header
            start = info.header_offset + 30 + len(info.filename) + len(info.extra)
            spots += [(info.header_offset, start), (start, start + 10 + int.from_bytes(raw[start + 8:start + 10], "little"))]
    eocd = raw.rfind(b"PK\x05\x06")
    spots.append((eocd, len(raw)))  # end record
    at = int.from_bytes(raw[eocd + 16:eocd + 20], "little")
    while raw[at:at + 4] == b"PK\x01\x02":  # central directory entries: flags, method, sizes, offsets
        n, m, k = (int.from_bytes(raw[at + o:at + o + 2], "little") for o in (28, 30, 32))
        spots += [(at, at + 12)] * 2 + [(at, at + 46)]  # weighted towards version, flags and method
        at += 46 + n + m + k
    return raw, spots, clf.predict_topk(X, k=3), X


@examples("model")
@given(data=st.data())
def test_damaged_model_file_loads_identically_or_raises_slide_error(tmp_path, saved_model, data):
    raw, spots, (labels, scores), X = saved_model
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["set", "set", "xor", "insert", "delete", "truncate", "append"]))
        if data.draw(st.booleans()):  # somewhere in a header
            lo, hi = data.draw(st.sampled_from(spots))
            pos = data.draw(st.integers(lo, max(lo, min(hi, len(buf)) - 1)))
        else:
            pos = data.draw(st.integers(0, max(0, len(buf) - 1)))
        pos = min(pos, max(0, len(buf) - 1))
        if op == "set" and buf:
            buf[pos] = data.draw(st.integers(0, 255) | st.integers(0, 20))  # small: flags, methods, sizes
        elif op == "xor" and buf:
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del buf[pos:pos + data.draw(st.integers(1, 4))]
        elif op == "truncate":
            del buf[pos:]
        else:
            buf += data.draw(st.binary(min_size=1, max_size=16))
    path = tmp_path / "m.npz"
    path.write_bytes(bytes(buf))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about duplicate names
            m = slide.load(path)
    except SlideError as e:
        assert str(path) in str(e), str(e)
        event(type(e).__name__)
        return
    event("loaded, same predictions")
    got_labels, got_scores = m.predict_topk(X, k=3)
    assert np.array_equal(got_labels, labels) and np.array_equal(got_scores, scores)


# ============================================================================= command line
FAST = ["--epochs", "1", "--hidden_layer_sizes", "4", "--batch_size", "8", "--n_jobs", "1", "--verbose", "0",
        "--random_state", "0"]


@pytest.fixture(scope="module")
def cli_files(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    X, Y = tiny
    Ym = sp.csr_matrix((np.ones(80, np.float32), np.array(Y).ravel(), np.arange(0, 81, 2)), shape=(40, 6))
    Ym.sum_duplicates()
    Ym.data[:] = 1
    slide.save_xmc(d / "train.txt", X, Ym)
    slide.save_xmc(d / "test.txt.gz", X[:10], Ym[:10])
    slide.save_libsvm(d / "train.svm", X, Ym)
    slide.save_xmc(d / "other.txt", sp.random(5, 20, density=0.3, format="csr", dtype=np.float32, random_state=1),
                   Ym[:5, :4])
    (d / "bad.txt").write_text("2 12 6\n0 1:1\n1 99:1\n")
    (d / "good.toml").write_text("epochs = 1\nhidden_layer_sizes = [4]\nverbose = 0\nn_jobs = 1\n")
    (d / "badkey.toml").write_text("epochz = 1\n")
    (d / "badvalue.toml").write_text("learning_rate = -1\n")
    (d / "broken.toml").write_text("epochs = = 1\n")
    (d / "types.toml").write_text('hidden_layer_sizes = "4"\nepochs = [1]\n')
    (d / "binary.toml").write_bytes(b"epochs = 1\n\xff\xfe\n")
    (d / "dir").mkdir()
    assert main(["train", str(d / "train.txt"), "--out", str(d / "done"), "--checkpoint_every", "2", *FAST]) == 0
    (d / "model.npz").write_bytes((d / "done" / "model.npz").read_bytes())
    raw = (d / "model.npz").read_bytes()
    (d / "corrupt.npz").write_bytes(raw[: len(raw) // 2])
    # a run folder to resume: the finished run's run.json plus a checkpoint taken mid-run
    paused = d / "paused"
    paused.mkdir()
    shutil.copy(d / "done" / "run.json", paused / "run.json")
    Xl, Yl = slide.load_xmc(d / "train.txt")
    SlideClassifier(**slide.load(d / "model.npz").get_params()).fit(
        Xl, Yl, checkpoint_path=paused / "checkpoint.npz", checkpoint_every=2,
        batch_callback=lambda r: r["step"] >= 3, batch_callback_every=1)
    assert (paused / "checkpoint.npz").exists()
    return d


def _param_flag_values(p):
    """Text values for a parameter flag: cheap valid ones and invalid ones."""
    valid = {"int": ["1", "2"], "float": [str(p.low if not p.low_open else (p.low + (p.high or 1)) / 2)],
             "bool": ["true", "0", "yes"], "choice": list(p.choices), "int_auto": ["auto", "1", "2"], "float_auto": ["auto", "0", "0.5"],
             "size_auto": ["auto", "0.5", "3"], "sizes": ["4", "", "2,3", "none"], "layers": ["auto", "none", "0"],
             "seed": ["0", "none", "7"], "n_jobs": ["1", "-1", "none"], "range": ["auto", "1,2", "2,4"]}[p.kind]
    invalid = ["abc", "-5", "1e400", "nan", "", "0x10", "1.5", "99999999999999999999999", "--", " ", "auto,1"]
    return st.sampled_from(valid + invalid)


@st.composite
def argvs(draw, d: Path, work: Path):
    f = lambda name: str(d / name)
    files = st.sampled_from([f("train.txt"), f("test.txt.gz"), f("train.svm"), f("other.txt"), f("bad.txt"),
                             f("missing.txt"), f("dir"), f("model.npz")])
    models = st.sampled_from([f("model.npz")] * 3 + [f("corrupt.npz"), f("missing.npz"), f("train.txt"), f("dir")])
    command = draw(st.sampled_from(["train"] * 4 + ["predict", "evaluate", "nonsense", "--version"]))
    argv = [command]
    extra = []
    if command == "train":
        if draw(st.integers(0, 5)) == 0:
            argv += ["--resume", draw(st.sampled_from([str(work / "paused"), f("done"), f("missing"), f("train.txt")]))]
            if draw(st.booleans()):
                argv.append(draw(files))
        else:
            argv.append(draw(files))
            argv += FAST
        for _ in range(draw(st.integers(0, 5))):
            which = draw(st.sampled_from(["param", "param", "param", "test", "out", "config", "format", "max_eval",
                                          "skip", "ckpt", "dry", "unknown"]))
            if which == "param":
                p = draw(st.sampled_from(PARAMS))
                flag = draw(st.sampled_from([f"--{p.name}", f"--{p.name.replace('_', '-')}"]))
                extra += [flag, draw(_param_flag_values(p))]
            elif which == "test":
                extra += ["--test", draw(files)]
            elif which == "out":
                extra += ["--out", draw(st.sampled_from([str(work / "o1"), f("train.txt"), str(work / "a" / "b")]))]
            elif which == "config":
                extra += ["--config", f(draw(st.sampled_from(["good.toml", "badkey.toml", "badvalue.toml",
                                                              "broken.toml", "types.toml", "binary.toml",
                                                              "missing.toml", "dir"])))]
            elif which == "format":
                extra += ["--format", draw(st.sampled_from(["auto", "xmc", "libsvm", "csv"]))]
            elif which == "max_eval":
                extra += ["--max_eval", draw(st.sampled_from(["0", "1", "-3", "x", "100"]))]
            elif which == "skip":
                extra.append("--skip_bad_lines")
            elif which == "ckpt":
                extra += ["--checkpoint_every", draw(st.sampled_from(["1", "0", "-1", "2s", "abc", "1e3", "0m", " 3"]))]
            elif which == "dry":
                extra.append("--dry_run")
            else:
                extra.append(draw(st.sampled_from(["--foo", "--epochs", "-x", "extra_positional", "--n_tables=0"])))
    elif command in ("predict", "evaluate"):
        argv += [draw(models), draw(st.sampled_from([f("test.txt.gz")] * 3) | files)]
        for _ in range(draw(st.integers(0, 4))):
            which = draw(st.sampled_from(["k", "mode", "format", "out", "scores", "skip", "unknown"]))
            if which == "k":
                extra += ["--k", draw(st.sampled_from(["1", "3", "6", "7", "0", "-1", "x", "99999999999"]))]
            elif which == "mode":
                extra += ["--predict_mode", draw(st.sampled_from(["exact", "lsh", "fast"]))]
            elif which == "format":
                extra += ["--format", draw(st.sampled_from(["auto", "xmc", "libsvm"]))]
            elif which == "out":
                extra += ["--out", draw(st.sampled_from([str(work / "p.txt"), str(work / "no" / "p.txt"), f("dir")]))]
            elif which == "scores":
                extra.append("--scores")
            elif which == "skip":
                extra.append("--skip_bad_lines")
            else:
                extra.append(draw(st.sampled_from(["--foo", "--k", "extra"])))
    return argv + extra


@examples("cli")
@given(data=st.data())
def test_cli_exits_cleanly_on_any_argv(cli_files, tmp_path, monkeypatch, capsys, data):
    monkeypatch.chdir(tmp_path)  # where the default --out folder goes
    work = tmp_path / "w"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    shutil.copytree(cli_files / "paused", work / "paused")
    argv = data.draw(argvs(cli_files, work))
    capsys.readouterr()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(argv)
    except SystemExit as e:  # argparse: usage errors exit 2, --help/--version exit 0
        code = e.code
    out, err = capsys.readouterr()
    event(f"{argv[0]}: exit {code}")
    assert "Traceback" not in err + out
    assert code in (0, 2), (code, err)
    if code == 2:
        last = err.strip().splitlines()[-1] if err.strip() else ""
        assert re.match(r"slide( \w+)?: error: .+", last), err
    elif argv[0] == "train":  # argparse accepted the list, so flags and values pair up
        value = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--out", "--resume")}
        if "--dry_run" in argv or "--dry-run" in argv:
            assert "memory estimate for training" in out
        else:
            folder = Path(value.get("--resume") or value.get("--out") or tmp_path / "slide-run")
            assert slide.load(folder / "model.npz").n_labels_ > 0
            assert not (folder / "checkpoint.npz").exists()
