"""Reading and writing sparse multi-label data sets in text form.

Two formats are supported, both with one point per line, ``l1,l2,... f:v f:v ...``:

* the Extreme Classification Repository format (``load_xmc`` / ``iter_xmc`` / ``save_xmc``):
  a first line ``N D L`` (points, features, labels), 0-based ids, and a point without labels
  starts with a space;
* the LIBSVM multi-label variant (``load_libsvm`` / ``save_libsvm``): no header, feature ids
  1-based unless told otherwise, ``#`` comments and blank lines ignored.

Files ending in anything may be gzip-compressed (recognised by their magic bytes). Reading
streams the uncompressed text through a fixed-size byte window; a Numba kernel
(:mod:`slide.kernels.parse`) parses the complete lines of each window straight into the CSR
arrays, which grow in place, so peak memory stays close to the size of the result. Every
malformed input raises :class:`~slide.errors.DataFormatError` naming the file, the line, what
was expected and the offending token. Writing is atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import gzip
import os
import queue
import threading
import warnings
import zlib

import numpy as np
import scipy.sparse as sp

from .errors import DataFormatError, ParameterError
from .io import atomic_write
from .kernels import parse as K

__all__ = ["load_xmc", "iter_xmc", "save_xmc", "load_libsvm", "save_libsvm"]

# Bytes of uncompressed text per kernel call: large enough to amortise the call, small enough
# to stay a minor part of peak memory. Read at call time, so tests can make it tiny.
_CHUNK_BYTES = 1 << 22
_WRITE_BYTES = 1 << 23
_BLOCK_BYTES = 1 << 20  # unit of reading / inflating (small enough to reuse heap memory)
_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_MAX = 1 << 16  # a header line longer than this is garbage, not a header
_MAX_DIM = 1 << 40  # keeps every id bound below the kernel's saturation value
_MAX_N = 1 << 62  # fits the kernel's int64 counters
_INT32_MAX = np.iinfo(np.int32).max
_COPY_GROW_BYTES = 32 << 20  # below this, grow by copying into a fresh (untouched) array
_QUOTE_MAX = 40


_MESSAGES = {
    K.E_LABEL: "expected a label id (non-negative integer), found {q}{hint}",
    K.E_LABEL_EMPTY: "expected comma-separated label ids, found an empty id in {q}",
    K.E_LABEL_NEG: "expected a non-negative label id, found {q}",
    K.E_LABEL_RANGE: "expected a label id {label}, found {q}",
    K.E_LABEL_DUP: "expected distinct label ids, found label id {value} more than once: {dups}",
    K.E_NO_COLON: "expected a 'feature:value' pair, found {q} (no colon)",
    K.E_FEAT_ID: "expected a feature id (non-negative integer) before ':', found {q}",
    K.E_FEAT_NEG: "expected a non-negative feature id, found {q}",
    K.E_FEAT_ZERO: "expected 1-based feature ids (zero_based=False), found feature id 0 in {q}",
    K.E_FEAT_RANGE: "expected a feature id {feat}, found {q}",
    K.E_FEAT_DUP: "expected distinct feature ids, found feature id {value} more than once: {dups}",
    K.E_VALUE: "expected a numeric value after ':', found {q}",
    K.E_NONFINITE: "expected a finite float32 value, found {q}",
    K.E_TOO_MANY: "expected the end of the file after the {n} points the header announces, found {q}",
}


def _quote(raw: bytes) -> str:
    """Printable, quoted and truncated form of an offending token for a message."""
    text = raw.decode("utf-8", "backslashreplace")
    if len(text) > _QUOTE_MAX:
        text = text[:_QUOTE_MAX] + "..."
    return repr(text)


def _check_dim(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be None or a non-negative integer, got {value!r}")
    if not 0 <= value <= _MAX_DIM:
        raise ParameterError(f"{name} must be between 0 and {_MAX_DIM}, got {value}")
    return int(value)


def _open(path: str):
    """Open ``path`` for binary reading and say whether it is gzip (by its magic bytes).

    Returns ``(raw, is_gz, estimated_text_bytes)``; the estimate (0 if unknown) only sizes
    the first allocation of the output arrays.
    """
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise DataFormatError("no such file (expected a data file, plain text or .gz)", path=path) from None
    except IsADirectoryError:
        raise DataFormatError("is a directory, expected a data file", path=path) from None
    except OSError as exc:
        raise DataFormatError(f"cannot open the file: {exc.strerror or exc}", path=path) from None
    try:
        is_gz = raw.peek(2)[:2] == _GZIP_MAGIC
        estimate = 0
        if raw.seekable():
            size = estimate = os.fstat(raw.fileno()).st_size
            if is_gz and size >= 18:
                # ISIZE, the last 4 bytes, is the text size modulo 2**32 (of the last member);
                # if implausible (wrapped, multi-member) guess a typical 4x ratio.
                raw.seek(-4, os.SEEK_END)
                isize = int.from_bytes(raw.read(4), "little")
                raw.seek(0)
                estimate = isize if isize >= size else 4 * size
    except BaseException:
        raw.close()
        raise
    return raw, is_gz, estimate


def _text_blocks(raw, is_gz, stop):
    """Yield the file's text in blocks of at most _BLOCK_BYTES.

    Gzip is inflated here with zlib rather than through ``gzip.GzipFile``: its ``readinto``
    allocates a fresh output object of the full request size per call, which for large reads
    means fresh pages every time. zlib checks each member's CRC and length; concatenated
    members and trailing zero padding are accepted, as by gzip(1).
    """
    if not is_gz:
        while not stop.is_set():
            block = raw.read(_BLOCK_BYTES)
            if not block:
                return
            yield block
        return
    d = zlib.decompressobj(wbits=31)
    data = b""
    while not stop.is_set():
        if not data:
            data = raw.read(_BLOCK_BYTES)
            if not data:
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
        out = d.decompress(data, _BLOCK_BYTES)
        data = d.unconsumed_tail
        if out:
            yield out
        if d.eof:
            # at the end of a member zlib moves every input byte left over into unused_data, and
            # unconsumed_tail may still show a copy of the same bytes: read them once
            rest = d.unused_data.lstrip(b"\x00")
            while len(rest) < 2:
                more = raw.read(_BLOCK_BYTES)
                if not more:
                    if rest:
                        raise gzip.BadGzipFile(f"trailing garbage after the gzip data: {rest!r}")
                    return
                rest = (rest + more).lstrip(b"\x00")
            if rest[:2] != _GZIP_MAGIC:
                raise gzip.BadGzipFile(f"trailing garbage after the gzip data: {rest[:8]!r}")
            d = zlib.decompressobj(wbits=31)
            data = rest


class _Prefetch:
    """Runs :func:`_text_blocks` on a background thread, a few blocks ahead.

    zlib, file reads and the parsing kernel all release the GIL, so with two cores
    decompression overlaps parsing. An exception in the thread is re-raised by :meth:`get`.
    """

    _END = object()

    def __init__(self, raw, is_gz):
        self.queue = queue.Queue(maxsize=16)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, args=(raw, is_gz), daemon=True)
        self.thread.start()

    def _put(self, item):
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                pass

    def _work(self, raw, is_gz):
        try:
            for block in _text_blocks(raw, is_gz, self.stop):
                self._put(block)
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)

    def get(self):
        """Next block of text, or None at the end of the file."""
        item = self.queue.get()
        if item is self._END:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        self.stop.set()
        self.thread.join()


class _Parser:
    """Streams one file through the kernel; yields CSR pieces (see :meth:`chunks`)."""

    def __init__(self, path, mode, *, n_features, n_labels, skip_bad_lines, zero_based=True):
        try:
            self.path = os.fsdecode(os.fspath(path))
        except TypeError:
            raise ParameterError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
        self.mode = mode
        self.n_features = _check_dim(n_features, "n_features")
        self.n_labels = _check_dim(n_labels, "n_labels")
        self.skip = bool(skip_bad_lines)
        self.zero_based = zero_based
        self.one_based = zero_based is False
        self.header = None
        self.skipped = 0
        self.first_bad = None  # (line, reason) of the first skipped line

    # ------------------------------------------------------------------ reading the file

    def _fill(self):
        """Copy text into the window until it is full or the file ends."""
        try:
            while self.filled < len(self.buf) and not self.eof:
                if not self.pending:
                    block = self.reader.get()
                    if block is None:
                        self.eof = True
                        break
                    self.pending = memoryview(block)
                n = min(len(self.pending), len(self.buf) - self.filled)
                self.buf[self.filled : self.filled + n] = np.frombuffer(self.pending[:n], dtype=np.uint8)
                self.pending = self.pending[n:]
                self.filled += n
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            where = f"after line {int(self.st[K.S_LINE])}" if self.st[K.S_LINE] else "before the first line"
            raise DataFormatError(f"the gzip data is truncated or corrupt ({exc}); the error came {where}",
                                  path=self.path) from None

    def _consume(self, stop):
        """Drop ``buf[:stop]``, keeping the unparsed tail (a partial line) at the front."""
        tail = self.filled - stop
        if stop == 0 and tail == len(self.buf):
            bigger = np.empty(2 * len(self.buf), dtype=np.uint8)  # one line longer than the window
            bigger[:tail] = self.buf[:tail]
            self.buf = bigger
        elif tail:
            self.buf[:tail] = self.buf[stop : self.filled]
        self.base += stop
        self.filled = tail

    def _read_header(self):
        """Parse the ``N D L`` line at the start of the window; return where the points start."""
        while not self.eof and self.filled < _HEADER_MAX and 10 not in self.buf[: self.filled]:
            self._consume(0)  # the window is full without a newline: double it
            self._fill()
        if self.filled == 0:
            raise DataFormatError("the file is empty; expected a header line 'N D L'", path=self.path, line=1)
        head = bytes(self.buf[: min(self.filled, _HEADER_MAX)])
        nl = head.find(b"\n")
        line = head if nl < 0 else head[:nl]
        parts = line.removeprefix(b"\xef\xbb\xbf").split()  # tolerate a UTF-8 BOM
        # a number longer than 20 digits is out of range anyway (and int() refuses > 4,300 digits)
        ok = (nl >= 0 or self.eof) and len(parts) == 3 and all(p.isdigit() and len(p) <= 20 for p in parts)
        if not ok or int(parts[0]) > _MAX_N or max(int(parts[1]), int(parts[2])) > _MAX_DIM:
            raise DataFormatError(
                f"expected a header line 'N D L' of three non-negative integers (N up to 2**62, D and L "
                f"up to 2**40), found {_quote(line)}", path=self.path, line=1)
        n, d, l = (int(p) for p in parts)
        for given, name, what, word in ((self.n_features, "n_features", d, "features"),
                                        (self.n_labels, "n_labels", l, "labels")):
            if given is not None and what > given:
                raise DataFormatError(f"the header says {what} {word}, more than {name}={given} given by the caller",
                                      path=self.path, line=1)
        self.header = (n, d, l)
        return len(line) + 1 if nl >= 0 else len(line)

    # ------------------------------------------------------------------ output arrays

    def _new_outputs(self, rows, xcap, ycap):
        # int32 row pointers while the entries fit (scipy's own choice), so the result needs
        # no conversion copy; _grow widens them before an array passes 2**31 - 1 entries.
        self.x_indptr = np.empty(rows, dtype=np.int32 if xcap <= _INT32_MAX else np.int64)
        self.y_indptr = np.empty(rows, dtype=np.int32 if ycap <= _INT32_MAX else np.int64)
        self.x_indptr[0] = self.y_indptr[0] = 0
        self.x_ind = np.empty(xcap, dtype=self.fdtype)
        self.x_val = np.empty(xcap, dtype=np.float32)
        self.y_ind = np.empty(ycap, dtype=self.ldtype)
        st = self.st
        st[K.S_ROWS] = st[K.S_XNNZ] = st[K.S_YNNZ] = 0

    def _grow(self, need, line_bytes):
        """Enlarge the outputs after ST_NEED_SPACE, to the size the file so far predicts.

        Small arrays are copied into fresh ``np.empty`` ones: their unused tail is never
        touched, so a generous estimate costs address space, not memory. Large arrays are
        enlarged in place with ``ndarray.resize`` (realloc, i.e. mremap for big blocks), which
        avoids holding the old and the new copy at once; there the margin is kept small.
        """
        st = self.st
        rows, xn, yn = int(st[K.S_ROWS]), int(st[K.S_XNNZ]), int(st[K.S_YNNZ])
        done = self.base + int(st[K.S_STOP]) - self.body_start
        est = rows + 1  # rows this output will end up with, from the text read so far
        if done > 0 and self.rows_before + rows > 0 and self.estimate > 0:
            est = rows + max(self.estimate - self.body_start - done, 0) * (self.rows_before + rows) / done
        if self.expected >= 0:
            est = min(est, rows + self.expected - int(st[K.S_POINTS]))
        if self.max_rows > 0:
            est = min(est, self.max_rows)
        more = max(est - rows, 0)
        x_pred = xn + more * xn / max(rows, 1) * 1.05 + 1024
        y_pred = yn + more * yn / max(rows, 1) * 1.05 + 1024
        plan = (  # name, used, predicted size, what the pending line may need, asked for
            ("x_indptr", rows + 1, rows + 1 + more * 1.02 + 16, rows + 2, need == K.NEED_ROWS),
            ("y_indptr", rows + 1, rows + 1 + more * 1.02 + 16, rows + 2, need == K.NEED_ROWS),
            ("x_ind", xn, x_pred, xn + line_bytes // 4 + 2, need == K.NEED_X),
            ("x_val", xn, x_pred, xn + line_bytes // 4 + 2, need == K.NEED_X),
            ("y_ind", yn, y_pred, yn + line_bytes // 2 + 2, need == K.NEED_Y),
        )
        for name, used, target, minimum, asked in plan:
            arr = getattr(self, name)
            small = used * arr.itemsize < _COPY_GROW_BYTES
            if asked:
                new = int(max(target, minimum, arr.shape[0] * 1.25 + 1024))
            elif small and target > arr.shape[0]:
                new = int(target)
            else:
                continue
            if small:
                fresh = np.empty(new, dtype=arr.dtype)
                fresh[:used] = arr[:used]
                setattr(self, name, fresh)
            else:
                arr.resize(new, refcheck=False)  # nothing else refers to it
        for ptr, ind in (("x_indptr", "x_ind"), ("y_indptr", "y_ind")):
            if len(getattr(self, ind)) > _INT32_MAX and getattr(self, ptr).dtype == np.int32:
                setattr(self, ptr, getattr(self, ptr).astype(np.int64))

    def _take(self):
        """Trim the outputs to their used size and hand them over as (X, Y)."""
        st = self.st
        rows, xn, yn = int(st[K.S_ROWS]), int(st[K.S_XNNZ]), int(st[K.S_YNNZ])
        arrays = []
        for name, n in (("x_indptr", rows + 1), ("x_ind", xn), ("x_val", xn), ("y_indptr", rows + 1), ("y_ind", yn)):
            arr = getattr(self, name)
            setattr(self, name, None)
            arr.resize(n, refcheck=False)  # realloc shrinks in place: no copy, tail returned
            arrays.append(arr)
        x_indptr, x_ind, x_val, y_indptr, y_ind = arrays
        self.rows_before += rows
        return x_indptr, x_ind, x_val, y_indptr, y_ind

    # ------------------------------------------------------------------ errors

    def _reason(self, code, line: bytes, tok: bytes, value):
        """Message (without file and line) for kernel error ``code``."""
        hint = dups = ""
        if code == K.E_LABEL and self.mode == K.MODE_XMC and b":" in line.split()[0]:
            hint = " (a point without labels must start with a space)"
        if code in (K.E_FEAT_DUP, K.E_LABEL_DUP):
            found = _find_id_tokens(line, self.mode, code == K.E_LABEL_DUP, value)
            dups = ", ".join(_quote(t) for t in found) or str(value)
        return _MESSAGES[code].format(q=_quote(tok), hint=hint, dups=dups, value=value, feat=self.feat_desc,
                                      label=self.label_desc, n=self.expected)

    def _error_from_state(self):
        st = self.st
        code = int(st[K.S_ERR_CODE])
        ls, le = int(st[K.S_ERR_LSTART]), int(st[K.S_ERR_LEND])
        ts, te = int(st[K.S_ERR_TSTART]), int(st[K.S_ERR_TEND])
        line = bytes(self.buf[ls:le]).rstrip(b"\r")
        tok = bytes(self.buf[ts:te]) if ts >= 0 else b""
        return int(st[K.S_ERR_LINE]), self._reason(code, line, tok, int(st[K.S_ERR_VALUE]))

    # ------------------------------------------------------------------ main loop

    def chunks(self, max_rows=-1):
        """Parse the file; yield ``(x_indptr, x_ind, x_val, y_indptr, y_ind)`` pieces.

        With ``max_rows = -1`` exactly one piece (possibly empty) is yielded; otherwise one
        per ``max_rows`` rows, and none that is empty.
        """
        raw, is_gz, self.estimate = _open(self.path)
        self.reader = _Prefetch(raw, is_gz)
        self.pending = None
        try:
            yield from self._run(max_rows)
        finally:
            self.reader.close()
            raw.close()

    def _run(self, max_rows):
        chunk = max(int(_CHUNK_BYTES), 1)
        self.buf = np.empty(chunk, dtype=np.uint8)
        self.filled = 0
        self.base = 0  # offset in the text of buf[0]
        self.eof = False
        self.max_rows = max_rows
        self.rows_before = 0
        st = self.st = np.zeros(K.N_STATE, dtype=np.int64)
        st[K.S_MINF] = K.ID_SATURATE
        st[K.S_MAXF] = st[K.S_MAXL] = -1
        self._fill()
        pos = 0
        self.expected = -1
        if self.mode == K.MODE_XMC:
            pos = self._read_header()
            st[K.S_LINE] = 1
            self.expected = self.header[0]
        self._set_limits()
        self.body_start = pos
        self.fdtype = np.int32 if self.feat_limit <= _INT32_MAX else np.int64
        self.ldtype = np.int32 if self.label_limit <= _INT32_MAX else np.int64

        # First window: capacities that cannot overflow within it (each point line takes >= 1
        # byte, a label >= 2, a feature >= 4), so the first resize has a whole window to learn
        # the file's density from. Untouched capacity costs no memory.
        span = max(self.filled - pos, 1)
        rows_cap = span + 2
        if self.expected >= 0:
            rows_cap = min(rows_cap, self.expected + 2)
        if max_rows > 0:
            rows_cap = min(rows_cap, max_rows + 2)
        self._new_outputs(rows_cap, span // 4 + 2, span // 2 + 2)
        while True:
            status = K.parse_lines(
                self.buf, pos, self.filled, self.eof, self.mode, self.one_based, self.skip,
                self.expected, max_rows, self.feat_limit, self.label_limit,
                self.x_indptr, self.x_ind, self.x_val, self.y_indptr, self.y_ind, st,
            )
            pos = int(st[K.S_STOP])
            if status == K.ST_DONE:
                if self.eof:
                    break
                self._consume(pos)
                pos = 0
                self._fill()
            elif status == K.ST_NEED_SPACE:
                self._grow(int(st[K.S_NEED]), int(st[K.S_NEED_BYTES]))
            elif status == K.ST_ROW_LIMIT:
                caps = (len(self.x_indptr), len(self.x_ind), len(self.y_ind))
                yield self._take()
                self._new_outputs(*caps)
            elif status == K.ST_SKIPPED_FIRST:
                self.first_bad = self._error_from_state()
            else:
                line_no, reason = self._error_from_state()
                raise DataFormatError(reason, path=self.path, line=line_no)
        self.skipped = int(st[K.S_SKIPPED])
        if max_rows < 0 or st[K.S_ROWS] > 0:
            yield self._take()
        if self.expected >= 0 and st[K.S_POINTS] != self.expected:
            kept = int(st[K.S_POINTS]) - self.skipped
            found = f"{kept} points" + (f" and {self.skipped} skipped bad lines" if self.skipped else "")
            raise DataFormatError(f"expected {self.expected} points (the header on line 1 says so), found {found} "
                                  "before the end of the file", path=self.path, line=int(st[K.S_LINE]) + 1)

    def _set_limits(self):
        """Bounds on raw ids for the kernel, and how to describe them in messages."""
        nf, nl = self.n_features, self.n_labels
        if self.mode == K.MODE_XMC:
            _, d, l = self.header
            self.feat_limit = nf if nf is not None else d
            self.label_limit = nl if nl is not None else l
            src = "given by n_features" if nf is not None else "in the header"
            self.feat_desc = f"below {self.feat_limit} (the number of features {src})"
            src = "given by n_labels" if nl is not None else "in the header"
            self.label_desc = f"below {self.label_limit} (the number of labels {src})"
            return
        # LIBSVM. Without a given dimension, ids only have to fit the int32 index arrays. With
        # one, a 1-based (or maybe 1-based: "auto") file may use the id n_features itself.
        off = 0 if self.zero_based is True else 1
        self.feat_limit = nf + off if nf is not None else _INT32_MAX - 1 + off
        self.label_limit = nl if nl is not None else _INT32_MAX - 1
        if nf is None:
            self.feat_desc = f"below {self.feat_limit} (the largest supported)"
        elif self.zero_based is True:
            self.feat_desc = f"below {nf} (n_features={nf}, 0-based)"
        elif self.zero_based is False:
            self.feat_desc = f"from 1 to {nf} (n_features={nf}, 1-based)"
        else:
            self.feat_desc = f"of at most {nf} (n_features={nf})"
        self.label_desc = f"below {self.label_limit} " + (f"(n_labels={nl})" if nl is not None else "(the largest supported)")

    def warn_skipped(self, stacklevel):
        if self.skipped:
            line, reason = self.first_bad
            warnings.warn(f"{self.path}: skipped {self.skipped} bad line(s); the first was line {line}: {reason}",
                          UserWarning, stacklevel=stacklevel + 1)


def _find_id_tokens(line: bytes, mode, is_label, value):
    """The tokens of ``line`` that carry id ``value`` (to quote a duplicate)."""
    parts = line.split()
    has_labels = bool(parts) and (
        (mode == K.MODE_XMC and not line[:1].isspace()) or (mode == K.MODE_LIBSVM and b":" not in parts[0])
    )
    if is_label:
        items = parts[0].split(b",") if has_labels else []
        return [t for t in items if t.isdigit() and int(t) == value]
    feats = parts[1:] if has_labels else parts
    return [t for t in feats if t.split(b":", 1)[0].isdigit() and int(t.split(b":", 1)[0]) == value]


def _csr(indptr, indices, data, shape):
    """CSR matrix over the given arrays without copying them (index dtypes made to agree)."""
    if indptr.dtype != indices.dtype:  # only past 2**31 entries or ids
        indptr = indptr.astype(np.int64)
        indices = indices.astype(np.int64)
    m = sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
    m.has_sorted_indices = True  # the kernel sorted every row and rejected duplicates
    return m


def _to_matrices(piece, n_features, n_labels):
    x_indptr, x_ind, x_val, y_indptr, y_ind = piece
    rows = len(x_indptr) - 1
    X = _csr(x_indptr, x_ind, x_val, (rows, n_features))
    Y = _csr(y_indptr, y_ind, np.ones(len(y_ind), dtype=np.float32), (rows, n_labels))
    return X, Y


# ====================================================================================== reading


def load_xmc(path, *, n_features=None, n_labels=None, skip_bad_lines=False, return_skipped=False):
    """Load a data set in the Extreme Classification Repository text format.

    Parameters
    ----------
    path : str or os.PathLike
        File whose first line is ``N D L`` followed by N lines ``l1,l2,... f:v f:v ...``
        (0-based ids; a point without labels starts with a space). Gzip files are recognised
        by their content, whatever their name.
    n_features, n_labels : int, optional
        Dimensions to use instead of the header's D and L, e.g. those of a trained model.
        They may exceed the header's but not fall short of it; ids must be below them.
    skip_bad_lines : bool, default False
        Drop malformed lines (with a warning naming their count and the first one) instead
        of raising. The header's N must then equal kept plus skipped points.
    return_skipped : bool, default False
        Also return the number of skipped lines.

    Returns
    -------
    X : scipy.sparse.csr_matrix of float32, shape (n_points, D)
        Features, values as written; rows have sorted indices without duplicates.
    Y : scipy.sparse.csr_matrix of float32, shape (n_points, L)
        Labels, all stored values 1, sorted indices.
    n_skipped : int
        Only with ``return_skipped=True``.

    Raises
    ------
    DataFormatError
        Missing, empty, truncated or malformed file (the message names file, line, what was
        expected and what was found).
    ParameterError
        Invalid ``n_features`` / ``n_labels``.
    """
    parser = _Parser(path, K.MODE_XMC, n_features=n_features, n_labels=n_labels, skip_bad_lines=skip_bad_lines)
    (piece,) = list(parser.chunks())
    X, Y = _to_matrices(piece, parser.feat_limit, parser.label_limit)
    parser.warn_skipped(stacklevel=2)
    return (X, Y, parser.skipped) if return_skipped else (X, Y)


def load_xmc_shard(path, rank: int, world: int, *, n_features=None, n_labels=None, skip_bad_lines=False,
                   chunk_size=100_000):
    """Points ``rank``, ``rank + world``, ``rank + 2 world``, ... of an XMC-format file: one
    data-parallel worker's shard (:mod:`slide.distributed`). The file is parsed in pieces of
    ``chunk_size`` points and only the shard's rows are kept, so no worker holds the whole data;
    lines are checked as in :func:`load_xmc` (with ``skip_bad_lines`` every worker drops the
    same lines, so the shards still partition the points kept). Returns (X, Y) with the file's
    dimensions."""
    if isinstance(world, bool) or not isinstance(world, (int, np.integer)) or world < 1:
        raise ParameterError(f"world must be a positive number of workers, got {world!r}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < world:
        raise ParameterError(f"rank must be an int in [0, {world}), got {rank!r}")
    parser = _Parser(path, K.MODE_XMC, n_features=n_features, n_labels=n_labels, skip_bad_lines=skip_bad_lines)
    Xs, Ys, start = [], [], 0
    for piece in parser.chunks(max_rows=chunk_size):
        X, Y = _to_matrices(piece, parser.feat_limit, parser.label_limit)
        first = (rank - start) % world
        Xs.append(X[first::world])
        Ys.append(Y[first::world])
        start += X.shape[0]
    parser.warn_skipped(stacklevel=2)
    if not Xs:
        shape_x, shape_y = (0, parser.feat_limit), (0, parser.label_limit)
        return sp.csr_matrix(shape_x, dtype=np.float32), sp.csr_matrix(shape_y, dtype=np.float32)
    return sp.vstack(Xs, format="csr"), sp.vstack(Ys, format="csr")


def iter_xmc(path, *, chunk_size=100_000, n_features=None, n_labels=None, skip_bad_lines=False):
    """Read an XMC-format file in pieces of at most ``chunk_size`` points.

    For files whose matrices do not fit in memory. Lines are checked as in :func:`load_xmc`;
    the check of the header's point count happens after the last piece, so a short file
    raises when the iteration would end.

    Parameters
    ----------
    path : str or os.PathLike
        As in :func:`load_xmc`.
    chunk_size : int, default 100_000
        Maximum number of points per piece.
    n_features, n_labels, skip_bad_lines
        As in :func:`load_xmc`.

    Yields
    ------
    X : scipy.sparse.csr_matrix of float32, shape (m, D)
    Y : scipy.sparse.csr_matrix of float32, shape (m, L)
        ``1 <= m <= chunk_size``; every piece has the full column dimensions.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ParameterError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    parser = _Parser(path, K.MODE_XMC, n_features=n_features, n_labels=n_labels, skip_bad_lines=skip_bad_lines)
    _open(parser.path)[0].close()  # a missing file fails here, not at the first next()
    return _iter_pieces(parser, int(chunk_size))


def _iter_pieces(parser, chunk_size):
    for piece in parser.chunks(max_rows=chunk_size):
        yield _to_matrices(piece, parser.feat_limit, parser.label_limit)
    parser.warn_skipped(stacklevel=2)


def load_libsvm(path, *, n_features=None, n_labels=None, zero_based="auto", skip_bad_lines=False,
                return_skipped=False):
    """Load a multi-label LIBSVM file (``l1,l2 f:v f:v ...`` per line, no header).

    Parameters
    ----------
    path : str or os.PathLike
        The file, plain or gzip. A first token containing ``:`` (or a leading space) means a
        point without labels; text after ``#`` and blank lines are ignored, as in
        scikit-learn's ``load_svmlight_file``.
    n_features, n_labels : int, optional
        Dimensions; inferred as the largest id + 1 when not given.
    zero_based : bool or "auto", default "auto"
        Whether feature ids start at 0 (False: 1-based, the LIBSVM convention). "auto" takes
        the file as 1-based unless some feature id is 0. Label ids are taken as they are.
    skip_bad_lines, return_skipped : bool
        As in :func:`load_xmc`.

    Returns
    -------
    X : scipy.sparse.csr_matrix of float32, shape (n_points, n_features)
    Y : scipy.sparse.csr_matrix of float32, shape (n_points, n_labels)
    n_skipped : int
        Only with ``return_skipped=True``.

    Raises
    ------
    DataFormatError
        As in :func:`load_xmc`.
    ParameterError
        Invalid ``zero_based``, ``n_features`` or ``n_labels``.
    """
    if isinstance(zero_based, (bool, np.bool_)):
        zero_based = bool(zero_based)
    elif not (isinstance(zero_based, str) and zero_based == "auto"):
        raise ParameterError(f"zero_based must be True, False or 'auto', got {zero_based!r}")
    parser = _Parser(path, K.MODE_LIBSVM, n_features=n_features, n_labels=n_labels,
                     skip_bad_lines=skip_bad_lines, zero_based=zero_based)
    (piece,) = list(parser.chunks())
    st = parser.st
    minf, maxf, maxl = int(st[K.S_MINF]), int(st[K.S_MAXF]), int(st[K.S_MAXL])
    shift = zero_based is False or (zero_based == "auto" and maxf >= 0 and minf > 0)
    if zero_based == "auto" and not shift and parser.n_features is not None and maxf >= parser.n_features:
        # Only now is it known that the file is 0-based, so the id the kernel let through
        # (it allowed n_features for a 1-based reading) is out of range.
        line_no = int(st[K.S_MAXF_LINE])
        raise DataFormatError(
            f"expected feature ids below n_features={parser.n_features} (the file is 0-based: it "
            f"has feature id 0), found feature id {maxf} in {_quote(_read_line(parser.path, line_no))}",
            path=parser.path,
            line=line_no,
        )
    x_ind = piece[1]
    if shift:
        np.subtract(x_ind, 1, out=x_ind)  # in place: no second copy of the biggest array
    n_feat = parser.n_features if parser.n_features is not None else (maxf + (0 if shift else 1) if maxf >= 0 else 0)
    n_lab = parser.n_labels if parser.n_labels is not None else maxl + 1
    X, Y = _to_matrices(piece, n_feat, n_lab)
    parser.warn_skipped(stacklevel=2)
    return (X, Y, parser.skipped) if return_skipped else (X, Y)


def _read_line(path, line_no):
    """Text of line ``line_no`` (1-based) of a file, for an error found after parsing."""
    raw, is_gz, _ = _open(path)
    seen, tail = 0, b""
    try:
        for block in _text_blocks(raw, is_gz, threading.Event()):
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            if seen + len(lines) >= line_no:
                return lines[line_no - 1 - seen].rstrip(b"\r")
            seen += len(lines)
    finally:
        raw.close()
    return tail.rstrip(b"\r")


# ====================================================================================== writing


def _as_csr(A, name):
    """``A`` as canonical CSR (sorted, no duplicates), copying only when needed."""
    if sp.issparse(A):
        A = A.tocsr()
    else:
        arr = np.asarray(A)
        if arr.ndim != 2:
            raise ParameterError(f"{name} must be a 2-D array or sparse matrix, got shape {arr.shape}")
        A = sp.csr_matrix(arr)
    if not A.has_canonical_format:
        A = A.copy()
        A.sum_duplicates()
    return A


def _check_xy(X, Y):
    X = _as_csr(X, "X")
    Y = _as_csr(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ParameterError(f"X and Y must have the same number of rows, got {X.shape[0]} and {Y.shape[0]}")
    with np.errstate(over="ignore", invalid="ignore"):
        data = X.data.astype(np.float32, copy=False)  # the formats hold float32
    for M, bad, what in ((X, ~np.isfinite(data), "X must hold finite float32 values"),
                         (Y, (Y.data != 0) & (Y.data != 1), "Y must be binary (0/1)")):
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            row = int(np.searchsorted(M.indptr, k, side="right") - 1)
            raise DataFormatError(f"{what}, found {M.data[k]!r} at row {row}, column {int(M.indices[k])}")
    if Y.nnz and not Y.data.all():
        Y = Y.copy()
        Y.eliminate_zeros()  # a stored 0 is not a label
    return X, data, Y


def _save(path, X, Y, *, header, id_offset):
    X, data, Y = _check_xy(X, Y)
    if header is None:  # LIBSVM
        header = ""
        empty = (np.diff(X.indptr) == 0) & (np.diff(Y.indptr) == 0)
        if empty.any():
            raise DataFormatError(
                f"row {int(np.flatnonzero(empty)[0])} has neither labels nor features, which the LIBSVM "
                "format cannot represent (readers skip blank lines); use save_xmc"
            )
    path = os.fsdecode(os.fspath(path))

    def write(raw):
        if path.endswith(".gz"):
            # mtime=0 and the final name in the header: the same matrices give the same bytes
            with gzip.GzipFile(filename=os.path.basename(path), mode="wb", fileobj=raw, compresslevel=6,
                               mtime=0) as gz:
                _write_rows(gz, X, data, Y, header, id_offset)
        else:
            _write_rows(raw, X, data, Y, header, id_offset)

    atomic_write(path, write)


def _write_rows(f, X, data, Y, header, id_offset):
    if header:
        f.write(header.encode("ascii"))
    out = np.empty(max(int(_WRITE_BYTES), 64), dtype=np.uint8)
    n = X.shape[0]
    r = 0
    while r < n:
        nxt, nbytes = K.format_rows(X.indptr, X.indices, data, Y.indptr, Y.indices, r, n, id_offset, out)
        if nxt == r:  # one row longer than the buffer
            out = np.empty(2 * len(out), dtype=np.uint8)
            continue
        f.write(memoryview(out)[:nbytes])
        r = nxt


def save_xmc(path, X, Y):
    """Write ``X`` and ``Y`` in the Extreme Classification Repository text format.

    The file is written to a temporary file beside ``path``, flushed to disk and renamed over
    ``path``, so readers never see a partial file and an existing file survives any error.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; gzip-compressed if it ends with ``.gz``.
    X : sparse matrix or 2-D array, shape (N, D)
        Features. Values are stored as float32, written as the shortest decimal that reads
        back to the same float32; explicit zeros are kept.
    Y : sparse matrix or 2-D array, shape (N, L)
        Binary labels (stored zeros are dropped).

    Raises
    ------
    DataFormatError
        Non-finite values in X (after conversion to float32) or non-binary Y.
    ParameterError
        Inputs of the wrong kind or with different numbers of rows.
    """
    X = _as_csr(X, "X")
    Y = _as_csr(Y, "Y")
    _save(path, X, Y, header=f"{X.shape[0]} {X.shape[1]} {Y.shape[1]}\n", id_offset=0)


def save_libsvm(path, X, Y, *, zero_based=False):
    """Write ``X`` and ``Y`` as a multi-label LIBSVM file (``l1,l2 f:v ...``, no header).

    Atomic like :func:`save_xmc`. The format has no header, so the dimensions are not stored:
    pass ``n_features`` / ``n_labels`` to :func:`load_libsvm` to get them back exactly.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; gzip-compressed if it ends with ``.gz``.
    X, Y
        As in :func:`save_xmc`.
    zero_based : bool, default False
        Write feature ids from 0 instead of 1 (the LIBSVM convention). Label ids are
        written as they are.

    Raises
    ------
    DataFormatError
        As in :func:`save_xmc`, and for a row with neither labels nor features, which
        this format cannot represent (a blank line is not a point).
    """
    if not isinstance(zero_based, bool):
        raise ParameterError(f"zero_based must be True or False, got {zero_based!r}")
    _save(path, X, Y, header=None, id_offset=0 if zero_based else 1)
