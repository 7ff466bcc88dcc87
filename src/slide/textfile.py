"""Texts and their labels from files: JSON lines, CSV, TSV, or one text per line.

What the ``slide`` command reads for a model fitted on strings. Every record is checked as it is
read; a bad one is an error naming the file and line (or, with ``skip_bad_lines``, counted and
reported by the caller), never dropped silently. Files may be gzip-compressed (told by their
first bytes, not their names).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import numbers
import sys
from pathlib import Path

from .errors import DataFormatError

TEXT_FORMATS = ("jsonl", "csv", "tsv", "lines")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv"}


def text_format(path, shown: str | None = None) -> str | None:
    """'jsonl', 'csv' or 'tsv' from a file's name (a .gz suffix aside), else None."""
    suffixes = [s.lower() for s in Path(str(shown or path)).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return _SUFFIXES.get(suffixes[-1]) if suffixes else None


def open_binary(path, shown):
    """The file's bytes, decompressed when it starts with gzip's magic number."""
    p = Path(path)
    if not p.exists():
        raise DataFormatError(f"data file {shown} does not exist.")
    if p.is_dir():
        raise DataFormatError(f"{shown} is a folder; expected a data file.")
    with open(p, "rb") as f:
        magic = f.read(2)
    return gzip.open(p, "rb") if magic == b"\x1f\x8b" else open(p, "rb")


def _open_text(path, shown):
    # newline="" keeps a CSV field's own line breaks for the csv module
    return io.TextIOWrapper(open_binary(path, shown), encoding="utf-8", errors="strict", newline="")


def _label_list(value, shown, line, field):
    """A record's labels: a list of ints (label ids) or of strings (names); one label alone is a list of one."""
    if isinstance(value, (str, numbers.Integral)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
            isinstance(v, str) or (isinstance(v, numbers.Integral) and not isinstance(v, bool)) for v in value):
        raise DataFormatError(f"field {field!r} is {value!r:.80}; expected a label (a string or an int id) or a list "
                              "of them.", path=shown, line=line)
    if any(isinstance(v, int) and v < 0 for v in value):
        raise DataFormatError(f"field {field!r} holds a negative label id in {value!r:.80}; ids are >= 0.",
                              path=shown, line=line)
    return value


def load_texts(path, fmt: str, *, text_field: str = "text", label_field: str | None = "labels",
               label_sep: str = "|", shown: str | None = None, skip_bad_lines: bool = False):
    """(texts, label lists or None, lines skipped) from ``path`` in format ``fmt`` (one of
    :data:`TEXT_FORMATS`). ``label_field=None`` reads texts only (prediction input; labels in
    the file are ignored). CSV and TSV files start with a header naming their columns; their
    label cell holds labels separated by ``label_sep`` (an empty cell: no labels). ``lines`` is
    one text per line, no labels. Labels come back as they were written: ints (label ids) or
    strings (names), one kind per file."""
    shown = str(path) if shown is None else shown
    if fmt not in TEXT_FORMATS:
        raise DataFormatError(f"unknown text format {fmt!r}; expected one of {', '.join(TEXT_FORMATS)}.", path=shown)
    texts, labels, skipped = [], ([] if label_field is not None and fmt != "lines" else None), 0
    kinds = set()
    try:
        with _open_text(path, shown) as f:
            if fmt == "lines":
                for line_no, line in enumerate(f, 1):
                    texts.append(line.rstrip("\r\n"))
                return texts, None, 0
            if fmt == "jsonl":
                records = _jsonl(f, shown, skip_bad_lines)
            else:
                records = _table(f, shown, "," if fmt == "csv" else "\t", text_field, label_field)
            for line_no, rec in records:
                if rec is None:
                    skipped += 1
                    continue
                try:
                    text, labs = _record(rec, shown, line_no, text_field, label_field, label_sep, fmt)
                    if labs:
                        kinds.update(int if isinstance(v, numbers.Integral) else str for v in labs)
                        if len(kinds) > 1:
                            raise DataFormatError(f"field {label_field!r} holds {labs!r:.60}: label ids (ints) and "
                                                  "names (strings) mixed in one file; expected one kind throughout.",
                                                  path=shown, line=line_no)
                except DataFormatError:
                    if not skip_bad_lines:
                        raise
                    skipped += 1
                    continue
                texts.append(text)
                if labels is not None:
                    labels.append(labs)
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not UTF-8 text ({e}).", path=shown) from None
    except (OSError, EOFError) as e:  # a damaged gzip stream
        raise DataFormatError(f"cannot read ({e}).", path=shown) from None
    if not texts:
        raise DataFormatError(f"no {'record' if fmt != 'lines' else 'line'}s to read; expected at least one text.",
                              path=shown)
    return texts, labels, skipped


def _jsonl(f, shown, skip_bad_lines):
    for line_no, line in enumerate(f, 1):
        if not line.strip():
            continue  # a blank line holds no record
        rec = None
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            why = f"not a JSON object ({e.msg} at column {e.colno})."
        except RecursionError:  # "[[[[...": the decoder recurses once per level
            why = "not a JSON object (arrays or objects nested too deeply to read)."
        else:
            why = None if isinstance(rec, dict) else (f"a JSON {type(rec).__name__}, expected an object such as "
                                                      '{"text": "...", "labels": [...]}.')
        if why is not None:
            if not skip_bad_lines:
                raise DataFormatError(why, path=shown, line=line_no) from None
            rec = None
        yield line_no, rec


def _table(f, shown, delimiter, text_field, label_field):
    csv.field_size_limit(sys.maxsize)
    reader = csv.reader(f, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataFormatError("empty; expected a header line naming the columns.", path=shown) from None
    except csv.Error as e:
        raise DataFormatError(f"not {'CSV' if delimiter == ',' else 'TSV'} ({e}).", path=shown, line=1) from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    for field in (text_field, label_field):
        if field is not None and field not in header:
            raise DataFormatError(f"the header has no column {field!r}; its columns are "
                                  f"{', '.join(repr(h) for h in header[:20])}.", path=shown, line=1)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataFormatError(f"not {'CSV' if delimiter == ',' else 'TSV'} ({e}).", path=shown,
                                  line=reader.line_num) from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise DataFormatError(f"{len(row)} columns, but the header has {len(header)}.", path=shown,
                                  line=reader.line_num)
        yield reader.line_num, dict(zip(header, row))


def _record(rec, shown, line_no, text_field, label_field, label_sep, fmt):
    if text_field not in rec:
        raise DataFormatError(f"no field {text_field!r} (fields: {', '.join(repr(k) for k in list(rec)[:10])}); "
                              "--text_field names the text's field.", path=shown, line=line_no)
    text = rec[text_field]
    if not isinstance(text, str):
        raise DataFormatError(f"field {text_field!r} is {type(text).__name__} {text!r:.60}; expected a string.",
                              path=shown, line=line_no)
    if label_field is None:
        return text, None
    if label_field not in rec:
        raise DataFormatError(f"no field {label_field!r} (fields: {', '.join(repr(k) for k in list(rec)[:10])}); "
                              "--label_field names the labels' field.", path=shown, line=line_no)
    value = rec[label_field]
    if fmt != "jsonl":  # a table cell: labels separated by label_sep
        value = [v.strip() for v in value.split(label_sep) if v.strip()]
    return text, _label_list(value, shown, line_no, label_field)


__all__ = ["load_texts", "text_format", "TEXT_FORMATS"]
