"""Tests for slide.data: fixtures, round trips, a plain-Python reference, every error case."""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from slide import data as D
from slide.data import iter_xmc, load_libsvm, load_xmc, save_libsvm, save_xmc
from slide.errors import DataFormatError, ParameterError
from slide.kernels import parse as K

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "data"
# The shared data sets live beside the clone (../shared from the repository root) in CI;
# a user's clone may not have them, and then those tests skip.
DATASETS = HERE.parents[1] / "shared" / "datasets"
SMALL_SETS = ["bibtex", "corel5k", "delicious", "enron", "mediamill-discretized", "rcv1sub1",
              "stackex-cooking", "tmc2007-500"]

# The content of tests/data/tiny.txt (6 points, 5 features, 4 labels).
TINY_X = np.array(
    [[1, 0, 0, 0.5, 0], [0, 2.25, 0, 0, -1], [0, 0, 0, 0, 0], [0, 0, 7, 0, 1e-3], [0, 0, 0, 0, 0], [0, 0.1, 0, 0, 0]],
    dtype=np.float32,
)
TINY_Y = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]], dtype=np.float32)


# --------------------------------------------------------------------------------------
# plain Python reference parser (str.split, float(), one point at a time)
# --------------------------------------------------------------------------------------


def ref_load_xmc(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        n, d, l = (int(t) for t in f.readline().split())
        xs, ys = [], []
        for line in f:
            line = line.rstrip("\r\n")
            parts = line.split()
            if line[:1].isspace() or not line:
                labels, feats = [], parts
            else:
                labels, feats = [int(t) for t in parts[0].split(",")], parts[1:]
            pairs = sorted((int(k), np.float32(float(v))) for k, v in (t.split(":") for t in feats))
            xs.append(pairs)
            ys.append(sorted(labels))
    assert len(xs) == n
    return ref_csr(xs, d), ref_csr([[(j, 1.0) for j in row] for row in ys], l)


def ref_csr(rows, ncols):
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([j for r in rows for j, _ in r], dtype=np.int64)
    values = np.array([v for r in rows for _, v in r], dtype=np.float32)
    return sp.csr_matrix((values, indices, indptr), shape=(len(rows), ncols))


def assert_same(A, B):
    """Same shape, structure and bit-identical values (stored zeros included)."""
    assert A.shape == B.shape
    assert A.dtype == np.float32
    np.testing.assert_array_equal(A.indptr, B.indptr)
    np.testing.assert_array_equal(A.indices, B.indices)
    np.testing.assert_array_equal(A.data.view(np.int32), np.asarray(B.data, dtype=np.float32).view(np.int32))


def assert_wellformed(X, Y):
    for M in (X, Y):
        assert isinstance(M, sp.csr_matrix) and M.dtype == np.float32
        assert M.indices.dtype == M.indptr.dtype
        M.check_format(full_check=True)
        for r in range(M.shape[0]):
            assert np.all(np.diff(M.indices[M.indptr[r] : M.indptr[r + 1]]) > 0)
    assert X.shape[0] == Y.shape[0]
    assert np.all(Y.data == 1)


def write(path, text, gz=False):
    raw = text.encode() if isinstance(text, str) else text
    if gz:
        raw = gzip.compress(raw, mtime=0)
    path.write_bytes(raw)
    return path


# --------------------------------------------------------------------------------------
# fixtures and formats
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny.txt", "tiny.txt.gz"])
def test_tiny_fixture(name):
    X, Y = load_xmc(FIXTURES / name)
    assert_wellformed(X, Y)
    np.testing.assert_array_equal(X.toarray(), TINY_X)
    np.testing.assert_array_equal(Y.toarray(), TINY_Y)
    assert X.nnz == 8 and list(X[5].indices) == [0, 1]  # the explicit "0:0" is kept
    assert X.indptr.dtype == np.int32
    assert_same(X, ref_load_xmc(FIXTURES / name)[0])


def test_tiny_libsvm_fixture():
    X, Y = load_libsvm(FIXTURES / "tiny.svm")  # "auto": no id 0, so 1-based
    keep = [0, 1, 2, 3, 5]  # LIBSVM cannot hold the point with neither labels nor features
    np.testing.assert_array_equal(X.toarray(), TINY_X[keep])
    np.testing.assert_array_equal(Y.toarray(), TINY_Y[keep])
    X1, _ = load_libsvm(FIXTURES / "tiny.svm", zero_based=False)
    assert_same(X1, X)
    X0, _ = load_libsvm(FIXTURES / "tiny.svm", zero_based=True, n_features=6)
    np.testing.assert_array_equal(X0.toarray()[:, 1:], TINY_X[keep])


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("name", ["tiny.txt", "tiny.txt.gz"])
def test_tiny_windows(monkeypatch, name, chunk):
    """Windows and read blocks far smaller than a line: carrying and growing paths."""
    monkeypatch.setattr(D, "_CHUNK_BYTES", chunk)
    monkeypatch.setattr(D, "_BLOCK_BYTES", 5)
    X, Y = load_xmc(FIXTURES / name)
    np.testing.assert_array_equal(X.toarray(), TINY_X)
    np.testing.assert_array_equal(Y.toarray(), TINY_Y)


def test_crlf_no_final_newline_trailing_blank_lines_bom(tmp_path):
    text = (FIXTURES / "tiny.txt").read_text()
    crlf = write(tmp_path / "crlf.txt", text.replace("\n", "\r\n"))
    no_nl = write(tmp_path / "nonl.txt", text.rstrip("\n"))
    blank_tail = write(tmp_path / "blank.txt", text + "\n  \n\n")
    bom = write(tmp_path / "bom.txt", b"\xef\xbb\xbf" + text.encode())
    for path in (crlf, no_nl, blank_tail, bom):
        X, Y = load_xmc(path)
        np.testing.assert_array_equal(X.toarray(), TINY_X)
        np.testing.assert_array_equal(Y.toarray(), TINY_Y)


def test_unsorted_ids_are_sorted(tmp_path):
    feats = " ".join(f"{j}:{j + 0.5}" for j in range(99, -1, -1))  # long row: the argsort path
    X, Y = load_xmc(write(tmp_path / "u.txt", f"2 100 5\n4,0,2 3:1 1:2 2:3\n3,1 {feats}\n"))
    assert_wellformed(X, Y)
    np.testing.assert_array_equal(X[0].toarray()[0, :4], [0, 2, 3, 1])
    np.testing.assert_array_equal(X[1].toarray()[0], np.arange(100) + 0.5)
    np.testing.assert_array_equal(Y.toarray(), [[1, 0, 1, 0, 1], [0, 1, 0, 1, 0]])


def test_value_syntax(tmp_path):
    vals = ["1", "-2", "+3", "0.5", ".25", "4.", "1e3", "1E-3", "-1.5e+2", "007", "0.000", "-0",
            "3.4028235e38", "1e-45", "123456789012345678901234567890", "0.1234567890123456789012"]
    line = " ".join(f"{j}:{v}" for j, v in enumerate(vals))
    X, _ = load_xmc(write(tmp_path / "v.txt", f"1 {len(vals)} 1\n {line}\n"))
    np.testing.assert_array_equal(X.data, np.array([float(v) for v in vals], dtype=np.float32))
    assert np.signbit(X.data[11])  # "-0" keeps its sign


def test_empty_and_header_only(tmp_path):
    X, Y = load_xmc(write(tmp_path / "e.txt", "0 7 3\n"))
    assert X.shape == (0, 7) and Y.shape == (0, 3)
    X, Y = load_xmc(write(tmp_path / "e2.txt", "0 7 3"))
    assert X.shape == (0, 7)


def test_dimension_override(tmp_path):
    X, Y = load_xmc(FIXTURES / "tiny.txt", n_features=9, n_labels=4)
    assert X.shape == (6, 9) and Y.shape == (6, 4)
    np.testing.assert_array_equal(X.toarray()[:, :5], TINY_X)
    with pytest.raises(DataFormatError) as e:
        load_xmc(FIXTURES / "tiny.txt", n_features=4)
    assert "5 features" in str(e.value) and "n_features=4" in str(e.value) and "line 1" in str(e.value)
    with pytest.raises(DataFormatError, match="n_labels=3"):
        load_xmc(FIXTURES / "tiny.txt", n_labels=3)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_parameter_errors(bad):
    with pytest.raises(ParameterError):
        load_xmc(FIXTURES / "tiny.txt", n_features=bad)
    with pytest.raises(ParameterError):
        iter_xmc(FIXTURES / "tiny.txt", chunk_size=bad if bad != "3" else 0)
    with pytest.raises(ParameterError):
        load_libsvm(FIXTURES / "tiny.svm", zero_based="yes")


# --------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------


def random_xy(rng, n=40, d=30, l=12):
    """Random X (any finite float32 bit pattern or short decimals, signed and explicit zeros)
    and binary Y; rows 0-3 have no labels, rows 2-5 no features (so rows 2-3 neither)."""
    xmask = rng.random((n, d)) < 0.2
    xmask[2:6] = False
    xmask[6, :2] = True
    rows, cols = np.nonzero(xmask)
    bits = rng.integers(0, 2**32, size=len(rows), dtype=np.uint64).astype(np.uint32).view(np.float32)
    bits = np.where(np.isfinite(bits), bits, np.float32(1.5))
    short = np.round(rng.normal(size=len(rows)), 3).astype(np.float32)
    vals = np.where(rng.random(len(rows)) < 0.5, bits, short).astype(np.float32)
    first = np.flatnonzero(rows == 6)[:2]
    vals[first] = [-0.0, 0.0]
    X = sp.csr_matrix((vals, (rows, cols)), shape=(n, d), dtype=np.float32)
    ymask = rng.random((n, l)) < 0.15
    ymask[:4] = False
    Y = sp.csr_matrix(ymask.astype(np.float32))
    return X, Y


@pytest.mark.parametrize("suffix", [".txt", ".txt.gz"])
def test_roundtrip_xmc(tmp_path, suffix):
    X, Y = random_xy(np.random.default_rng(0))
    path = tmp_path / ("rt" + suffix)
    save_xmc(path, X, Y)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == suffix.endswith(".gz")
    X2, Y2 = load_xmc(path)
    assert_wellformed(X2, Y2)
    assert_same(X2, X)
    assert_same(Y2, Y)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("zero_based", [False, True])
@pytest.mark.parametrize("suffix", [".svm", ".svm.gz"])
def test_roundtrip_libsvm(tmp_path, suffix, zero_based):
    X, Y = random_xy(np.random.default_rng(1))
    keep = (np.diff(X.indptr) > 0) | (np.diff(Y.indptr) > 0)
    X, Y = X[keep], Y[keep]
    path = tmp_path / ("rt" + suffix)
    save_libsvm(path, X, Y, zero_based=zero_based)
    X2, Y2 = load_libsvm(path, n_features=X.shape[1], n_labels=Y.shape[1], zero_based=zero_based)
    assert_same(X2, X)
    assert_same(Y2, Y)
    X3, Y3 = load_libsvm(path)  # inferred dimensions and base (column 0 is used, so "auto" works)
    assert X3.shape[1] <= X.shape[1] and Y3.shape[1] <= Y.shape[1]
    assert_same(X3, X[:, : X3.shape[1]])


def test_save_accepts_dense_float64_and_duplicates(tmp_path):
    X = sp.coo_matrix(([1.0, 2.0, 0.25], ([0, 0, 1], [2, 2, 0])), shape=(2, 3))  # duplicate sums
    Y = np.array([[1, 0], [0, 1]], dtype=bool)
    save_xmc(tmp_path / "a.txt", X, Y)
    assert (tmp_path / "a.txt").read_text() == "2 3 2\n0 2:3\n1 0:0.25\n"
    X2, Y2 = load_xmc(tmp_path / "a.txt")
    np.testing.assert_array_equal(X2.toarray(), [[0, 0, 3], [0.25, 0, 0]])


def test_save_text_is_shortest_and_stable(tmp_path):
    X = sp.csr_matrix(np.array([[0.1, 1e-7, 123456.0, 1.5e20, -2.0]], dtype=np.float32))
    save_xmc(tmp_path / "s.txt", X, sp.csr_matrix((1, 1), dtype=np.float32))
    assert (tmp_path / "s.txt").read_text() == "1 5 1\n 0:0.1 1:1e-07 2:123456 3:1.5e+20 4:-2\n"
    Y = sp.csr_matrix(np.ones((1, 2), dtype=np.float32))
    save_xmc(tmp_path / "b.txt.gz", X, Y)
    first = (tmp_path / "b.txt.gz").read_bytes()
    save_xmc(tmp_path / "b.txt.gz", X, Y)
    assert (tmp_path / "b.txt.gz").read_bytes() == first  # gzip mtime 0: reproducible files


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_float32_text_roundtrip_and_shortest(bits):
    x = np.array([bits], dtype=np.uint32).view(np.float32)[0]
    assume(np.isfinite(x))
    out = np.zeros(32, dtype=np.uint8)
    n = K.write_f32(out, 0, x)
    text = bytes(out[:n]).decode()
    assert np.array_equal(np.array([np.float32(text)]).view(np.uint32), np.array([x]).view(np.uint32))
    mantissa = np.format_float_scientific(x, unique=True, trim="-").lstrip("-").split("e")[0]
    shortest = len(mantissa.replace(".", "").lstrip("0") or "0")
    digits = text.lstrip("-").split("e")[0].replace(".", "").strip("0") or "0"
    assert len(digits) <= shortest


numbers = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(repr),
    st.floats(min_value=-3e38, max_value=3e38).map(repr),
    st.from_regex(r"[+-]?[0-9]{1,25}(\.[0-9]{0,25})?([eE][+-]?[0-9]{1,2})?", fullmatch=True),
    st.from_regex(r"-?\.[0-9]{1,25}", fullmatch=True),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(numbers, min_size=1, max_size=30))
def test_values_parse_like_python_float(tmp_path, texts):
    ref = np.array([float(t) for t in texts])
    assume(np.all(np.abs(ref) < 3.4e38))
    line = " ".join(f"{j}:{t}" for j, t in enumerate(texts))
    X, _ = load_xmc(write(tmp_path / "v.txt", f"1 {len(texts)} 1\n {line}\n"))
    np.testing.assert_array_equal(X.data.view(np.int32), ref.astype(np.float32).view(np.int32))


def test_atomic_save_keeps_old_file_on_error(tmp_path, monkeypatch):
    path = tmp_path / "keep.txt"
    path.write_text("old content")
    X, Y = random_xy(np.random.default_rng(2))

    def broken_fsync(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        save_xmc(path, X, Y)
    monkeypatch.undo()
    bad = X.copy()
    bad.data[3] = np.nan
    with pytest.raises(DataFormatError, match="finite"):
        save_xmc(path, bad, Y)
    with pytest.raises(DataFormatError, match="binary"):
        save_xmc(path, X, Y * 2)
    with pytest.raises(ParameterError, match="same number of rows"):
        save_xmc(path, X, Y[:-1])
    with pytest.raises(DataFormatError, match="neither labels nor features"):
        save_libsvm(path, X, Y)
    assert path.read_text() == "old content"
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_save_permissions_follow_umask_or_replaced_file(tmp_path):
    X, Y = random_xy(np.random.default_rng(3))
    save_xmc(tmp_path / "new.txt", X, Y)
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    (tmp_path / "old.txt").write_text("x")
    os.chmod(tmp_path / "old.txt", 0o640)
    save_xmc(tmp_path / "old.txt", X, Y)
    assert (tmp_path / "old.txt").stat().st_mode & 0o777 == 0o640


def test_model_and_json_files_follow_umask_too(tmp_path):
    """Model files, metrics.json and predictions go through the same atomic write as data files:
    not the 0o600 of its temporary file."""
    from slide.io import atomic_write, write_arrays

    mask = os.umask(0o022)
    os.umask(mask)
    write_arrays(tmp_path / "model.npz", {"w": np.zeros(3, np.float32)}, {"x": 1})
    atomic_write(tmp_path / "metrics.json", lambda f: f.write(b"{}"))
    for name in ("model.npz", "metrics.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask
    os.chmod(tmp_path / "metrics.json", 0o640)
    atomic_write(tmp_path / "metrics.json", lambda f: f.write(b"{}"))
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o640



def test_a_folder_that_takes_no_file_names_the_file_asked_for(tmp_path, monkeypatch):
    """Where no file can be created next to the target (read-only folder, /proc), the error is
    the system's kind of OSError naming the path asked for, not the temporary file's."""
    import errno
    import tempfile

    from slide.io import atomic_write

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".m.npz.1.abc.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match=r"cannot write .*m\.npz: no file can be created in .*Permission") as e:
        atomic_write(tmp_path / "m.npz", lambda f: f.write(b"x"))
    assert ".tmp" not in str(e.value) and e.value.errno == errno.EACCES
    assert not (tmp_path / "m.npz").exists()

# --------------------------------------------------------------------------------------
# iter_xmc and skip_bad_lines
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 6, 100])
def test_iter_xmc_chunks(monkeypatch, chunk_size):
    monkeypatch.setattr(D, "_CHUNK_BYTES", 16)
    pieces = list(iter_xmc(FIXTURES / "tiny.txt.gz", chunk_size=chunk_size))
    assert len(pieces) == -(-6 // chunk_size)
    for X, Y in pieces:
        assert 1 <= X.shape[0] <= chunk_size and X.shape[1] == 5 and Y.shape[1] == 4
        assert_wellformed(X, Y)
    X, Y = load_xmc(FIXTURES / "tiny.txt.gz")
    assert_same(sp.vstack([p[0] for p in pieces], format="csr"), X)
    assert_same(sp.vstack([p[1] for p in pieces], format="csr"), Y)


def test_iter_xmc_errors(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        iter_xmc(tmp_path / "missing.txt")  # eagerly, not at the first next()
    it = iter_xmc(write(tmp_path / "short.txt", "3 2 2\n0 1:1\n1 0:1\n"), chunk_size=1)
    assert next(it)[0].shape == (1, 2) and next(it)[0].shape == (1, 2)
    with pytest.raises(DataFormatError, match=r"line 4: expected 3 points"):
        next(it)


BAD_MIX = "6 4 3\n0 1:1\n1 x:1\n2 2:1\n0 1:nan\n 3:1 3:2\n1,2 0:1\n"


def test_skip_bad_lines(tmp_path):
    path = write(tmp_path / "mix.txt", BAD_MIX)
    with pytest.raises(DataFormatError, match="line 3"):
        load_xmc(path)
    with pytest.warns(UserWarning, match=r"skipped 3 bad line\(s\); the first was line 3: .*'x:1'"):
        X, Y, n = load_xmc(path, skip_bad_lines=True, return_skipped=True)
    assert n == 3
    np.testing.assert_array_equal(X.toarray(), [[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(Y.toarray(), [[1, 0, 0], [0, 0, 1], [0, 1, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_xmc(FIXTURES / "tiny.txt", skip_bad_lines=True, return_skipped=True)[2] == 0
    with pytest.warns(UserWarning):
        pieces = list(iter_xmc(path, chunk_size=2, skip_bad_lines=True))
    assert_same(sp.vstack([p[0] for p in pieces], format="csr"), X)
    # the header count still holds: kept + skipped must equal N
    with pytest.raises(DataFormatError, match="3 points and 3 skipped"):
        load_xmc(write(tmp_path / "mix7.txt", BAD_MIX.replace("6 4 3", "7 4 3")), skip_bad_lines=True)
    with pytest.raises(DataFormatError, match="line 7: expected the end of the file after the 5 points"):
        load_xmc(write(tmp_path / "mix5.txt", BAD_MIX.replace("6 4 3", "5 4 3")), skip_bad_lines=True)


def test_skip_bad_lines_across_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_CHUNK_BYTES", 8)
    lines = [f"{i % 3} {i % 4}:1" if i % 5 else f"{i % 3} {i % 4}:?" for i in range(200)]
    path = write(tmp_path / "many.txt", "200 4 3\n" + "\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="skipped 40 bad line.*first was line 2:"):
        X, Y, n = load_xmc(path, skip_bad_lines=True, return_skipped=True)
    assert n == 40 and X.shape == (160, 4)


# --------------------------------------------------------------------------------------
# errors: file, line, what was expected and the offending token
# --------------------------------------------------------------------------------------

# (file content, line number in the message, text the message must contain)
XMC_ERRORS = [
    ("", 1, "empty"),
    ("3 4\n0 1:1\n", 1, "'3 4'"),
    ("a b c\n", 1, "'a b c'"),
    ("3 4 -5\n", 1, "'3 4 -5'"),
    ("1 2 3 4\n0 1:1\n", 1, "'1 2 3 4'"),
    ("0,1 2:1\n", 1, "'0,1 2:1'"),
    ("2 4 3\n0 1:1\n", 3, "expected 2 points"),
    ("1 4 3\n0 1:1\n1 2:1\n", 3, "'1 2:1'"),
    ("2 4 3\n0 1:1\na,1 2:1\n", 3, "'a'"),
    ("2 4 3\n0 1:1\n1:1 2:1\n", 3, "must start with a space"),
    ("1 4 3\n1,,2 2:1\n", 2, "'1,,2'"),
    ("1 4 3\n1, 2:1\n", 2, "'1,'"),
    ("1 4 3\n0 x:1\n", 2, "'x:1'"),
    ("1 4 3\n0 1:abc\n", 2, "'1:abc'"),
    ("1 4 3\n0 1:1.5.2\n", 2, "'1:1.5.2'"),
    ("1 4 3\n0 1:\n", 2, "'1:'"),
    ("1 4 3\n0 1:1e\n", 2, "'1:1e'"),
    ("1 4 3\n0 2:1 15\n", 2, "'15'"),
    ("1 4 3\n0 4:1\n", 2, "'4:1'"),
    ("1 4 3\n0 99999999999999999999999:1\n", 2, "'99999999999999999999999:1'"),
    ("1 4 3\n3 1:1\n", 2, "'3'"),
    ("1 4 3\n-1 1:1\n", 2, "'-1'"),
    ("1 4 3\n0 -2:1\n", 2, "'-2:1'"),
    ("1 4 3\n0 1:nan\n", 2, "'1:nan'"),
    ("1 4 3\n0 1:-Infinity\n", 2, "'1:-Infinity'"),
    ("1 4 3\n0 1:1e39\n", 2, "'1:1e39'"),
    ("2 4 3\n0 1:1\n0 1:1 3:1 1:2\n", 3, "'1:1', '1:2'"),
    ("2 4 3\n0 1:1\n2,1,2 3:1\n", 3, "label id 2 more than once"),
    ("1 4 3\n0 1:1\x002:1\n", 2, "'1:1\\x002:1'"),
    ("1 4 3\n0 1:1 " + "9" * 100 + "\n", 2, "'" + "9" * 40 + "...'"),
]


@pytest.mark.parametrize("content, line, token", XMC_ERRORS)
def test_xmc_errors(tmp_path, content, line, token):
    path = write(tmp_path / "bad.txt", content)
    with pytest.raises(DataFormatError) as e:
        load_xmc(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}, line {line}: "), msg
    assert token in msg, msg
    assert e.value.path == str(path) and e.value.line == line
    assert "expected" in msg


@pytest.mark.parametrize("content, line, token", XMC_ERRORS[6:])
def test_xmc_errors_gzip_and_small_windows(tmp_path, monkeypatch, content, line, token):
    monkeypatch.setattr(D, "_CHUNK_BYTES", 3)
    with pytest.raises(DataFormatError) as e:
        load_xmc(write(tmp_path / "bad.txt.gz", content, gz=True))
    assert f"line {line}: " in str(e.value) and token in str(e.value)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_concatenated_gzip_members_are_read_once(tmp_path, monkeypatch, block):
    # at a member's end zlib's unconsumed_tail repeated bytes already in unused_data; joining both
    # read the next member's first bytes twice ("truncated or corrupt", or extra rows)
    monkeypatch.setattr(D, "_BLOCK_BYTES", block)
    rng = np.random.default_rng(block)
    rows = [f"{i % 7} {1 + i % 50}:{1 + i % 3}" for i in range(400)]
    cuts = np.sort(rng.choice(np.arange(1, 400), size=3, replace=False))
    pieces = ["\n".join(rows[a:b]) + "\n" for a, b in zip([0, *cuts], [*cuts, 400])]
    path = tmp_path / "multi.svm.gz"
    path.write_bytes(b"".join(gzip.compress(p.encode(), compresslevel=1 + i % 9) for i, p in enumerate(pieces)))
    plain = tmp_path / "plain.svm"
    plain.write_text("".join(pieces))
    X, Y = load_libsvm(path)
    Xp, Yp = load_libsvm(plain)
    assert X.shape == Xp.shape == (400, Xp.shape[1]) and (X != Xp).nnz == 0 and (Y != Yp).nnz == 0


def test_a_header_number_of_thousands_of_digits_is_a_format_error(tmp_path):
    # was a bare ValueError from int() (Python refuses to convert over 4,300 digits)
    with pytest.raises(DataFormatError, match="header line"):
        load_xmc(write(tmp_path / "big.txt", "9" * 5000 + " 3 3\n"))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataFormatError) as e:
        load_xmc(tmp_path / "nope.txt")
    assert str(tmp_path / "nope.txt") in str(e.value) and "no such file" in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__
    with pytest.raises(DataFormatError, match="directory"):
        load_libsvm(tmp_path)


@pytest.mark.parametrize("cut", [1, 4, 9, 30])
def test_truncated_gzip(tmp_path, cut):
    raw = (FIXTURES / "tiny.txt.gz").read_bytes()
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(raw[:-cut])
    with pytest.raises(DataFormatError) as e:
        load_xmc(path)
    assert str(path) in str(e.value) and "gzip" in str(e.value)


def test_corrupt_gzip_and_trailing_garbage(tmp_path):
    raw = bytearray((FIXTURES / "tiny.txt.gz").read_bytes())
    raw[-6] ^= 0xFF  # inside the CRC
    with pytest.raises(DataFormatError, match="gzip"):
        load_xmc(write(tmp_path / "crc.txt.gz", bytes(raw)))
    good = (FIXTURES / "tiny.txt.gz").read_bytes()
    with pytest.raises(DataFormatError, match="trailing garbage"):
        load_xmc(write(tmp_path / "junk.txt.gz", good + b"junk"))
    # concatenated members and zero padding are valid gzip
    text = (FIXTURES / "tiny.txt").read_bytes()
    two = gzip.compress(text[:20]) + gzip.compress(text[20:]) + b"\0" * 7
    X, _ = load_xmc(write(tmp_path / "two.txt.gz", two))
    np.testing.assert_array_equal(X.toarray(), TINY_X)


def test_libsvm_errors_and_bases(tmp_path):
    p = write(tmp_path / "z.svm", "# c\n1 0:1 2:1\n\n2 5:1\n")
    X, Y = load_libsvm(p)  # has id 0: taken as 0-based
    assert X.shape == (2, 6) and Y.shape == (2, 3)
    with pytest.raises(DataFormatError) as e:
        load_libsvm(p, zero_based=False)
    assert "line 2:" in str(e.value) and "'0:1'" in str(e.value)
    with pytest.raises(DataFormatError) as e:
        load_libsvm(p, n_features=5)  # 0-based, so id 5 is out of range: known only at the end
    assert "line 4:" in str(e.value) and "'2 5:1'" in str(e.value) and "n_features=5" in str(e.value)
    assert load_libsvm(p, n_features=6)[0].shape == (2, 6)
    with pytest.raises(DataFormatError, match=r"line 4: expected a feature id from 1 to 4 .*'5:1'"):
        load_libsvm(write(tmp_path / "o.svm", "# c\n1 1:1 2:1\n\n2 5:1\n"), zero_based=False, n_features=4)
    with pytest.raises(DataFormatError, match=r"line 2: expected a label id below 2 \(n_labels=2\).*'2'"):
        load_libsvm(write(tmp_path / "l.svm", "0 1:1\n2 1:1\n"), n_labels=2)
    with pytest.raises(DataFormatError, match=r"line 1: .*'x'"):
        load_libsvm(write(tmp_path / "x.svm", "x 1:1\n"))


# --------------------------------------------------------------------------------------
# the real data sets against the reference parser
# --------------------------------------------------------------------------------------


def dataset(name, split):
    path = DATASETS / name / f"{split}.txt.gz"
    if not path.exists():
        pytest.skip(f"{path} not available (the shared data sets sit beside the clone in CI)")
    return path


@pytest.mark.parametrize("name, split", [(n, "test") for n in SMALL_SETS] + [
    (n, "train") if n != "mediamill-discretized" else pytest.param(n, "train", marks=pytest.mark.slow)
    for n in SMALL_SETS
])
def test_real_datasets_match_reference(name, split):
    path = dataset(name, split)
    X, Y = load_xmc(path)
    assert_wellformed(X, Y)
    RX, RY = ref_load_xmc(path)
    assert_same(X, RX)
    assert_same(Y, RY)


def test_real_dataset_iter_and_roundtrip(tmp_path):
    path = dataset("bibtex", "train")
    X, Y = load_xmc(path)
    pieces = list(iter_xmc(path, chunk_size=1000))
    assert [p[0].shape[0] for p in pieces] == [1000] * 4 + [880]
    assert_same(sp.vstack([p[0] for p in pieces], format="csr"), X)
    assert_same(sp.vstack([p[1] for p in pieces], format="csr"), Y)
    save_xmc(tmp_path / "b.txt.gz", X, Y)
    X2, Y2 = load_xmc(tmp_path / "b.txt.gz")
    assert_same(X2, X)
    assert_same(Y2, Y)


# --------------------------------------------------------------------------------------
# property: corrupted input loads or raises DataFormatError, nothing else
# --------------------------------------------------------------------------------------

_TINY = (FIXTURES / "tiny.txt").read_bytes()
_TINY_GZ = (FIXTURES / "tiny.txt.gz").read_bytes()

edits = st.lists(
    st.tuples(st.sampled_from(["set", "insert", "delete"]), st.integers(0, 10**6), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


def corrupt(raw, ops):
    buf = bytearray(raw)
    for op, pos, byte in ops:
        if not buf and op != "insert":
            continue
        k = pos % (len(buf) + (op == "insert"))
        if op == "set":
            buf[k] = byte
        elif op == "insert":
            buf.insert(k, byte)
        else:
            del buf[k]
    return bytes(buf)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=edits, gz=st.booleans(), skip=st.booleans(), truncate=st.integers(0, 100))
def test_corruption_loads_or_raises_dataformaterror(tmp_path, ops, gz, skip, truncate):
    raw = corrupt(_TINY_GZ if gz else _TINY, ops)
    raw = raw[: len(raw) - truncate % 4] if truncate > 80 else raw
    path = tmp_path / "c.txt.gz"
    path.write_bytes(raw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            X, Y = load_xmc(path, skip_bad_lines=skip)
    except DataFormatError as exc:
        assert str(path) in str(exc)
        return
    assert_wellformed(X, Y)
