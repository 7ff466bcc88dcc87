"""Numba kernels that parse and format the XMC-repository and LIBSVM sparse text formats.

The parser reads raw bytes (a ``uint8`` window over the uncompressed file) and writes CSR
pieces straight into flat arrays owned by the caller, so no Python object is created per token.
The caller (:mod:`slide.data`) streams the file, carries the partial last line of a window into
the next one, grows the output arrays when asked (``ST_NEED_SPACE``) and turns the error codes
left in the state array into messages. Keeping all bookkeeping in one ``int64`` state array
lets a call stop anywhere between two lines and resume later with nothing lost.

Values are parsed to the nearest float64 (exactly so for up to 15-16 significant digits with
exponents within +-22, the common case) and then rounded to float32. The formatter writes the
shortest decimal that this parser maps back to the same float32, so save -> load is exact.
"""

import math

import numpy as np
from numba import njit

MODE_XMC = 0
MODE_LIBSVM = 1

# Return statuses of parse_lines.
ST_DONE = 0  # every complete line consumed; st[S_STOP] = first unconsumed byte
ST_NEED_SPACE = 1  # output array st[S_NEED] (NEED_*) is full; resume at st[S_STOP]
ST_ROW_LIMIT = 2  # max_rows rows parsed; resume at st[S_STOP]
ST_ERROR = 3  # a bad line, described by st[S_ERR_*]; nothing of it was kept
ST_SKIPPED_FIRST = 4  # skip mode: the first bad line was dropped; resume at st[S_STOP]

NEED_ROWS, NEED_X, NEED_Y = 0, 1, 2

# Error codes (st[S_ERR_CODE]); slide.data maps them to messages.
E_LABEL = 1  # label id is not an integer
E_LABEL_EMPTY = 2  # empty item in the comma list ("1,,2" or "1,")
E_LABEL_NEG = 3
E_LABEL_RANGE = 4
E_LABEL_DUP = 5
E_NO_COLON = 6
E_FEAT_ID = 7
E_FEAT_NEG = 8
E_FEAT_RANGE = 9
E_FEAT_ZERO = 10  # feature id 0 in a one-based file
E_FEAT_DUP = 11
E_VALUE = 12
E_NONFINITE = 13
E_TOO_MANY = 14  # a point after the N announced by the header

# Slots of the int64 state array shared by Python and the kernel.
S_ROWS = 0  # rows written to the output arrays
S_XNNZ = 1
S_YNNZ = 2
S_LINE = 3  # number of the last line consumed (1-based; the XMC header is line 1)
S_POINTS = 4  # point lines seen (kept + skipped), checked against the header's N
S_SKIPPED = 5
S_MINF = 6  # smallest / largest raw feature id kept (LIBSVM base detection, inferred D)
S_MAXF = 7
S_MAXF_LINE = 8  # line of the largest feature id, to report it if it turns out out of range
S_MAXL = 9
S_STOP = 10
S_NEED = 11
S_NEED_BYTES = 12  # length of the line that did not fit (bounds how much it may need)
S_ERR_CODE = 13
S_ERR_LINE = 14
S_ERR_LSTART = 15  # byte offsets in the window: the bad line and the bad token
S_ERR_LEND = 16
S_ERR_TSTART = 17
S_ERR_TEND = 18
S_ERR_VALUE = 19  # the duplicated id, or the out-of-range id
N_STATE = 20

# Ids grow no further once they reach this, so an absurdly long digit string cannot wrap
# around int64; slide.data keeps every dimension below it, so such an id fails the range check.
ID_SATURATE = 10**17

# Correctly rounded powers of ten (Python's float() of the decimal string is exact-rounding).
_P10 = np.array([float("1e%d" % k) for k in range(309)], dtype=np.float64)
_I10 = np.array([10**k for k in range(19)], dtype=np.int64)


@njit(cache=True, fastmath=False, inline="always")
def _is_digit(c):
    return c >= 48 and c <= 57


@njit(cache=True, fastmath=False)
def _parse_id(buf, a, b):
    """Parse a decimal integer in ``buf[a:b]``: (value, 0 ok | 1 not an integer | 2 negative)."""
    if a >= b:
        return 0, 1
    neg = buf[a] == 45  # '-'
    if neg:
        a += 1
        if a >= b:
            return 0, 1
    v = 0
    for k in range(a, b):
        c = buf[k]
        if not _is_digit(c):
            return 0, 1
        if v < ID_SATURATE:
            v = v * 10 + (c - 48)
    if neg:
        return v, 2
    return v, 0


@njit(cache=True, fastmath=False)
def dec_to_f64(m, e):
    """Nearest-ish float64 of ``m * 10**e`` (exactly rounded when m < 2**53 and |e| <= 22)."""
    if m == 0:
        return 0.0
    v = np.float64(m)
    if e >= 0:
        if e <= 308:
            return v * _P10[e]
        return np.inf
    e = -e
    if e <= 308:
        return v / _P10[e]
    if e <= 308 + 40:
        return (v / 1e308) / _P10[e - 308]
    return 0.0


_NONFINITE_WORDS = (b"nan", b"inf", b"infinity")
_WORDS = np.zeros((3, 8), dtype=np.uint8)
_WORD_LEN = np.array([len(w) for w in _NONFINITE_WORDS], dtype=np.int64)
for _k, _w in enumerate(_NONFINITE_WORDS):
    _WORDS[_k, : len(_w)] = np.frombuffer(_w, dtype=np.uint8)


@njit(cache=True, fastmath=False)
def _is_nonfinite_word(buf, a, b):
    """Whether ``buf[a:b]`` spells nan, inf or infinity (any case), as float() accepts."""
    for w in range(_WORDS.shape[0]):
        if b - a == _WORD_LEN[w]:
            same = True
            for k in range(b - a):
                if (buf[a + k] | 32) != _WORDS[w, k]:
                    same = False
                    break
            if same:
                return True
    return False


@njit(cache=True, fastmath=False)
def _parse_value(buf, a, b):
    """Parse a decimal float in ``buf[a:b]``: (float32, 0 ok | 1 not a number | 2 not finite)."""
    k = a
    neg = False
    if k < b and (buf[k] == 43 or buf[k] == 45):
        neg = buf[k] == 45
        k += 1
    body = k
    m = np.uint64(0)
    nd = 0  # significant digits kept in m (at most 19 fit a uint64)
    e = 0
    seen = False
    while k < b and _is_digit(buf[k]):
        seen = True
        if nd < 19:
            if nd > 0 or buf[k] != 48:
                m = m * np.uint64(10) + np.uint64(buf[k] - 48)
                nd += 1
        else:
            e += 1  # dropped integer digit: scale instead
        k += 1
    if k < b and buf[k] == 46:  # '.'
        k += 1
        while k < b and _is_digit(buf[k]):
            seen = True
            if nd < 19:
                if nd > 0 or buf[k] != 48:
                    m = m * np.uint64(10) + np.uint64(buf[k] - 48)
                    nd += 1
                e -= 1
            k += 1
    if not seen:
        if _is_nonfinite_word(buf, body, b):
            return np.float32(0.0), 2
        return np.float32(0.0), 1
    if k < b and (buf[k] == 101 or buf[k] == 69):  # 'e' / 'E'
        k += 1
        eneg = False
        if k < b and (buf[k] == 43 or buf[k] == 45):
            eneg = buf[k] == 45
            k += 1
        if k >= b:
            return np.float32(0.0), 1
        x = 0
        while k < b:
            if not _is_digit(buf[k]):
                return np.float32(0.0), 1
            if x < 100000:
                x = x * 10 + (buf[k] - 48)
            k += 1
        e += -x if eneg else x
    if k != b:
        return np.float32(0.0), 1
    v = dec_to_f64(m, e)
    f = np.float32(-v if neg else v)
    if np.isinf(f):
        return f, 2
    return f, 0


@njit(cache=True, fastmath=False)
def _sort_features(ind, val, a, b):
    """Sort ``ind[a:b]`` (carrying ``val``) ascending; return a duplicated id or -1."""
    n = b - a
    if n <= 32:
        for k in range(a + 1, b):
            ik = ind[k]
            vk = val[k]
            j = k - 1
            while j >= a and ind[j] > ik:
                ind[j + 1] = ind[j]
                val[j + 1] = val[j]
                j -= 1
            ind[j + 1] = ik
            val[j + 1] = vk
    else:
        order = np.argsort(ind[a:b], kind="mergesort")
        ti = ind[a:b].copy()
        tv = val[a:b].copy()
        for k in range(n):
            ind[a + k] = ti[order[k]]
            val[a + k] = tv[order[k]]
    for k in range(a + 1, b):
        if ind[k] == ind[k - 1]:
            return np.int64(ind[k])
    return -1


@njit(cache=True, fastmath=False)
def _sort_labels(ind, a, b):
    """Sort ``ind[a:b]`` ascending; return a duplicated id or -1."""
    ind[a:b].sort()
    for k in range(a + 1, b):
        if ind[k] == ind[k - 1]:
            return np.int64(ind[k])
    return -1


# Byte classes. _TERM[mode, c]: c ends a token (blank, newline, and '#' in LIBSVM mode).
_SPACE = np.zeros(256, dtype=np.bool_)
_SPACE[[9, 11, 12, 13, 32]] = True
_TERM = np.zeros((2, 256), dtype=np.bool_)
_TERM[:, [9, 10, 11, 12, 13, 32]] = True
_TERM[MODE_LIBSVM, 35] = True


@njit(cache=True, fastmath=False)
def _token_end(buf, a, lim, mode):
    while a < lim and not _TERM[mode, buf[a]]:
        a += 1
    return a


@njit(cache=True, fastmath=False)
def _line_end(buf, a, lim):
    while a < lim and buf[a] != 10:
        a += 1
    return a


@njit(cache=True, fastmath=False)
def _label_error(buf, fa, a, lim, mode):
    """Classify the bad label item starting at ``a`` of the field starting at ``fa``.

    Returns (error code, token start, token end); the slow path, only run for a bad line.
    """
    fb = _token_end(buf, fa, lim, mode)
    c = a
    while c < fb and buf[c] != 44:
        c += 1
    if c == a:
        return E_LABEL_EMPTY, fa, fb
    v, s = _parse_id(buf, a, c)
    if s == 2:
        return E_LABEL_NEG, a, c
    return E_LABEL, a, c


@njit(cache=True, fastmath=False)
def _feature_error(buf, a, lim, mode):
    """Classify the bad ``f:v`` token starting at ``a``: (code, start, end) (slow path)."""
    te = _token_end(buf, a, lim, mode)
    colon = a
    while colon < te and buf[colon] != 58:
        colon += 1
    if colon == te:
        return E_NO_COLON, a, te
    fid, s = _parse_id(buf, a, colon)
    if s == 1:
        return E_FEAT_ID, a, te
    return E_FEAT_NEG, a, te


@njit(cache=True, fastmath=False, nogil=True)
def parse_lines(buf, pos, end, final, mode, one_based, skip_bad, expected_points, max_rows,
                feat_bound, label_bound, x_indptr, x_ind, x_val, y_indptr, y_ind, st):
    """Parse the complete lines of ``buf[pos:end]`` into CSR arrays, from the state in ``st``.

    Parameters
    ----------
    buf : uint8 array
        Window of the uncompressed file.
    pos, end : int
        First byte to parse and end of the valid bytes.
    final : bool
        True when ``end`` is the end of the file, so a last line without newline is complete.
    mode : int
        MODE_XMC (labels unless the line starts with a blank) or MODE_LIBSVM (labels unless
        the first token has a colon; ``#`` starts a comment; blank lines are not points).
    one_based : bool
        Reject feature id 0 (LIBSVM files read with ``zero_based=False``).
    skip_bad : bool
        Drop bad lines (counted in ``st[S_SKIPPED]``) instead of stopping at the first.
    expected_points : int
        The header's N (XMC), or -1. Blank lines past it are ignored, other lines are errors.
    max_rows : int
        Stop before the row that would exceed it (-1: no limit).
    feat_bound, label_bound : int
        Raw ids must be below these.
    x_indptr, x_ind, x_val, y_indptr, y_ind : arrays
        Outputs, filled from ``st[S_ROWS]``, ``st[S_XNNZ]`` and ``st[S_YNNZ]`` on.
    st : int64 array of N_STATE
        Counters in and out, the stop position and the description of an error.

    Returns
    -------
    int
        One of the ST_* statuses.
    """
    # Only lines before the window's last newline are complete; finding it once (backwards)
    # lets the per-line code treat '\n' as just another terminator instead of scanning ahead.
    lim = end
    if not final:
        while lim > pos and buf[lim - 1] != 10:
            lim -= 1
    libsvm = mode == MODE_LIBSVM
    term = _TERM[mode]
    rows = st[S_ROWS]
    xn = st[S_XNNZ]
    yn = st[S_YNNZ]
    line_no = st[S_LINE]
    points = st[S_POINTS]
    minf = st[S_MINF]
    maxf = st[S_MAXF]
    maxf_line = st[S_MAXF_LINE]
    maxl = st[S_MAXL]
    status = ST_DONE
    err = 0
    ls = pos
    le = pos
    ts = pos
    te = pos
    ev = 0
    while pos < lim:
        ls = pos
        i = ls
        while i < lim and _SPACE[buf[i]]:
            i += 1
        blank = i >= lim or buf[i] == 10 or (libsvm and buf[i] == 35)
        past_n = expected_points >= 0 and points >= expected_points
        if blank and (libsvm or past_n):
            le = _line_end(buf, i, lim)  # blank or comment line: not a point
            line_no += 1
            pos = le + 1 if le < lim else lim
            continue
        if past_n:
            le = _line_end(buf, i, lim)
            err = E_TOO_MANY
            ts = ls
            te = le
            status = ST_ERROR
            break
        if rows == max_rows:
            status = ST_ROW_LIMIT
            break
        need = -1
        if rows + 1 >= x_indptr.shape[0] or rows + 1 >= y_indptr.shape[0]:
            need = NEED_ROWS
        x0 = xn
        y0 = yn
        lmin = np.int64(ID_SATURATE)
        lmax = np.int64(-1)
        lmaxl = np.int64(-1)
        # Ids usually come sorted; noting order on the fly keeps the sort (a function call,
        # costly per line) off the common path.
        x_sorted = True
        y_sorted = True

        # --- label field: XMC has one unless the line starts with a blank; LIBSVM unless its
        # first token is a feature (has a colon).
        has_labels = i == ls and not blank
        if libsvm and not blank:
            has_labels = True
            j = i
            while j < lim and not term[buf[j]]:
                if buf[j] == 58:
                    has_labels = False
                    break
                j += 1
        if has_labels and need < 0:
            fa = i
            a = i
            while True:
                v = np.int64(0)
                j = a
                while j < lim:
                    d = np.int64(buf[j]) - 48
                    if d < 0 or d > 9:
                        break
                    if v < ID_SATURATE:
                        v = v * 10 + d
                    j += 1
                if j == a or (j < lim and buf[j] != 44 and not term[buf[j]]):
                    err, ts, te = _label_error(buf, fa, a, lim, mode)
                    break
                if v >= label_bound:
                    err = E_LABEL_RANGE
                    ts = a
                    te = j
                    ev = v
                    break
                if yn >= y_ind.shape[0]:
                    need = NEED_Y
                    break
                y_ind[yn] = v
                yn += 1
                if v > lmaxl:
                    lmaxl = v
                elif yn > y0 + 1:
                    y_sorted = False
                if j < lim and buf[j] == 44:
                    a = j + 1
                    continue
                i = j
                break

        # --- features: "id:value" tokens separated by blanks
        while err == 0 and need < 0:
            while i < lim and _SPACE[buf[i]]:
                i += 1
            if i >= lim or buf[i] == 10 or (libsvm and buf[i] == 35):
                break
            a = i
            fid = np.int64(0)
            while i < lim:
                d = np.int64(buf[i]) - 48
                if d < 0 or d > 9:
                    break
                if fid < ID_SATURATE:
                    fid = fid * 10 + d
                i += 1
            if i == a or i >= lim or buf[i] != 58:
                err, ts, te = _feature_error(buf, a, lim, mode)
                break
            ts = a
            if one_based and fid == 0:
                err = E_FEAT_ZERO
                te = _token_end(buf, a, lim, mode)
                break
            if fid >= feat_bound:
                err = E_FEAT_RANGE
                te = _token_end(buf, a, lim, mode)
                ev = fid
                break
            # value: fast path for [-]digits[.digits]; anything else (exponent, more than 18
            # digits, junk, nan) goes through the general parser, which also classifies errors
            i += 1
            vs = i
            neg = False
            if i < lim and buf[i] == 45:
                neg = True
                i += 1
            m = np.int64(0)
            nd = 0
            e = 0
            seen = False
            while i < lim:
                d = np.int64(buf[i]) - 48
                if d < 0 or d > 9:
                    break
                seen = True
                if nd > 0 or d != 0:
                    m = m * 10 + d
                    nd += 1
                i += 1
            if i < lim and buf[i] == 46:
                i += 1
                while i < lim:
                    d = np.int64(buf[i]) - 48
                    if d < 0 or d > 9:
                        break
                    seen = True
                    if nd > 0 or d != 0:
                        m = m * 10 + d
                        nd += 1
                    e += 1
                    i += 1
            if seen and nd <= 18 and (i >= lim or term[buf[i]]):
                fv = np.float64(m)
                if e > 0:
                    fv = fv / _P10[e] if e <= 308 else dec_to_f64(np.uint64(m), -e)
                fv32 = np.float32(-fv if neg else fv)
            else:
                i = _token_end(buf, vs, lim, mode)
                fv32, s = _parse_value(buf, vs, i)
                if s != 0:
                    err = E_VALUE if s == 1 else E_NONFINITE
                    te = i
                    break
            if xn >= x_ind.shape[0]:
                need = NEED_X
                break
            x_ind[xn] = fid
            x_val[xn] = fv32
            xn += 1
            if fid < lmin:
                lmin = fid
            if fid > lmax:
                lmax = fid
            elif xn > x0 + 1:
                x_sorted = False

        if err == 0 and need < 0 and not x_sorted:
            dup = _sort_features(x_ind, x_val, x0, xn)
            if dup >= 0:
                err = E_FEAT_DUP
                ev = dup
                ts = -1
                te = -1
        if err == 0 and need < 0 and not y_sorted:
            dup = _sort_labels(y_ind, y0, yn)
            if dup >= 0:
                err = E_LABEL_DUP
                ev = dup
                ts = -1
                te = -1

        le = i  # already at the newline unless the line was cut short (inline: calls cost)
        while le < lim and buf[le] != 10:
            le += 1
        if need >= 0:
            xn = x0  # forget the partial line: it is parsed again once the caller has grown
            yn = y0
            st[S_NEED] = need
            st[S_NEED_BYTES] = le - ls
            status = ST_NEED_SPACE
            break
        if err != 0:
            xn = x0
            yn = y0
            if not skip_bad:
                status = ST_ERROR
                break
            line_no += 1
            points += 1
            pos = le + 1 if le < lim else lim
            st[S_SKIPPED] += 1
            if st[S_SKIPPED] == 1:
                status = ST_SKIPPED_FIRST  # the caller reads the message while buf holds it
                break
            err = 0
            continue

        rows += 1
        x_indptr[rows] = xn
        y_indptr[rows] = yn
        points += 1
        line_no += 1
        if lmin < minf:
            minf = lmin
        if lmax > maxf:
            maxf = lmax
            maxf_line = line_no
        if lmaxl > maxl:
            maxl = lmaxl
        pos = le + 1 if le < lim else lim

    if err != 0:
        st[S_ERR_CODE] = err
        st[S_ERR_LINE] = line_no if status == ST_SKIPPED_FIRST else line_no + 1
        st[S_ERR_LSTART] = ls
        st[S_ERR_LEND] = le
        st[S_ERR_TSTART] = ts
        st[S_ERR_TEND] = te
        st[S_ERR_VALUE] = ev
    st[S_ROWS] = rows
    st[S_XNNZ] = xn
    st[S_YNNZ] = yn
    st[S_LINE] = line_no
    st[S_POINTS] = points
    st[S_MINF] = minf
    st[S_MAXF] = maxf
    st[S_MAXF_LINE] = maxf_line
    st[S_MAXL] = maxl
    st[S_STOP] = ls if status in (ST_ERROR, ST_ROW_LIMIT, ST_NEED_SPACE) else pos
    return status


# ----------------------------------------------------------------------------- formatting


@njit(cache=True, fastmath=False, inline="always")
def _n_digits(v):
    n = 1
    while n < 19 and v >= _I10[n]:
        n += 1
    return n


@njit(cache=True, fastmath=False)
def _write_int(out, p, v):
    """Write the non-negative integer ``v`` at ``out[p:]``; return the new end."""
    n = _n_digits(v)
    for k in range(n - 1, -1, -1):
        out[p + k] = 48 + v % 10
        v //= 10
    return p + n


@njit(cache=True, fastmath=False)
def shortest_digits(x):
    """Shortest decimal ``(D, E)`` with ``float32(D * 10**E) == |x|`` under this parser.

    Tries 1 to 9 significant digits; 9 always round-trip a float32, so the loop ends.
    """
    a = abs(np.float64(x))
    target = np.float32(a)
    e10 = int(math.floor(math.log10(a)))
    y = a / _P10[e10] if e10 >= 0 else a * _P10[-e10]
    if y >= 10.0:  # log10 can be one off next to powers of ten
        e10 += 1
    elif y < 1.0:
        e10 -= 1
    d = np.int64(0)
    s = 0
    for p in range(1, 10):
        s = p - 1 - e10
        y = a * _P10[s] if s >= 0 else a / _P10[-s]
        d = np.int64(math.floor(y + 0.5))  # may round up to 10**p: still a valid candidate
        if np.float32(dec_to_f64(np.uint64(d), -s)) == target:
            break
    while d % 10 == 0 and d != 0:
        d //= 10
        s -= 1
    return d, -s


@njit(cache=True, fastmath=False)
def write_f32(out, p, x):
    """Write float32 ``x`` (finite) as its shortest round-tripping decimal at ``out[p:]``."""
    if x < 0 or (x == 0 and math.copysign(1.0, x) < 0):
        out[p] = 45
        p += 1
    if x == 0:
        out[p] = 48
        return p + 1
    d, e = shortest_digits(x)
    nd = _n_digits(d)
    sci = nd - 1 + e  # exponent in scientific notation
    if -5 < sci < 16:  # positional, like Python's repr
        if e >= 0:
            p = _write_int(out, p, d)
            for _ in range(e):
                out[p] = 48
                p += 1
            return p
        k = nd + e  # digits before the point
        if k > 0:
            hi = d // _I10[-e]
            p = _write_int(out, p, hi)
            out[p] = 46
            p += 1
            lo = d - hi * _I10[-e]
            for j in range(-e - 1, -1, -1):
                out[p] = 48 + (lo // _I10[j]) % 10
                p += 1
            return p
        out[p] = 48
        out[p + 1] = 46
        p += 2
        for _ in range(-k):
            out[p] = 48
            p += 1
        return _write_int(out, p, d)
    out[p] = 48 + d // _I10[nd - 1]
    p += 1
    if nd > 1:
        out[p] = 46
        p += 1
        for j in range(nd - 2, -1, -1):
            out[p] = 48 + (d // _I10[j]) % 10
            p += 1
    out[p] = 101  # 'e'
    out[p + 1] = 45 if sci < 0 else 43
    p += 2
    if abs(sci) < 10:
        out[p] = 48
        p += 1
    return _write_int(out, p, abs(sci))


@njit(cache=True, fastmath=False, nogil=True)
def format_rows(x_indptr, x_ind, x_val, y_indptr, y_ind, r0, r1, id_offset, out):
    """Write rows ``r0`` .. ``r1 - 1`` as ``l1,l2 f:v f:v`` lines into ``out``.

    Every feature is preceded by a space, so a row without labels starts with one (the XMC
    convention, also read by LIBSVM loaders). Stops before a row that might not fit.

    Returns
    -------
    (next_row, n_bytes)
    """
    p = 0
    cap = out.shape[0]
    for r in range(r0, r1):
        ya = y_indptr[r]
        yb = y_indptr[r + 1]
        xa = x_indptr[r]
        xb = x_indptr[r + 1]
        # ids take <= 20 bytes, a value <= 17, separators 2
        if p + (yb - ya) * 21 + (xb - xa) * 40 + 1 > cap:
            return r, p
        for k in range(ya, yb):
            if k > ya:
                out[p] = 44
                p += 1
            p = _write_int(out, p, np.int64(y_ind[k]))
        for k in range(xa, xb):
            out[p] = 32
            p = _write_int(out, p + 1, np.int64(x_ind[k]) + id_offset)
            out[p] = 58
            p = write_f32(out, p + 1, x_val[k])
        out[p] = 10
        p += 1
    return r1, p
