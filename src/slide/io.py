"""Saving and loading models: one ``.npz`` file, no pickle, checksummed, written atomically.

The file is a NumPy ``.npz`` (a zip of ``.npy`` arrays) read with ``allow_pickle=False``, so
loading cannot execute code. It holds every weight and optimiser array and one ``__meta__``
entry: UTF-8 JSON with the format version, the parameters, the resolved layer settings, the
training counters and a SHA-256 digest of every array. Hash tables are not stored: they are
rebuilt on load from the stored weights and the stored seed, which reproduces them exactly.

Writes go to a temporary file in the same directory, are flushed and fsynced, then renamed over
the target, so a crash during a save leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import DataFormatError

try:
    from lzma import LZMAError
except ImportError:  # pragma: no cover  (Python built without lzma: zipfile cannot use it either)
    LZMAError = ValueError

# What zipfile / np.load raise on a damaged archive. Beyond the obvious ones, a damaged central
# directory entry can name another compression method or set the encryption flag, which leaked
# NotImplementedError / RuntimeError ("encrypted"), LZMAError or zlib.error before.
_READ_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, RuntimeError, zlib.error, LZMAError)

FORMAT = "slide-model"
FORMAT_VERSION = 1


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).view(np.uint8).tobytes()).hexdigest()


def new_file_mode(path) -> int:
    """Permissions for a file written at ``path``: those of the file it replaces, else 0o666
    minus the umask (what ``open(path, "w")`` would give; a temporary file starts at 0o600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    try:  # reading the umask without setting it (os.umask would race with other threads)
        with open("/proc/self/status") as f:
            mask = next(int(x.split()[1], 8) for x in f if x.startswith("Umask:"))
    except (OSError, ValueError, StopIteration):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, fsync it and rename it over
    ``path`` with the permissions of :func:`new_file_mode`; on any error the temporary file is
    removed and ``path`` is untouched."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise DataFormatError(f"cannot write {path}: the folder {directory} does not exist.")
    if path.is_dir():  # os.replace would fail late with IsADirectoryError (e.g. `slide predict --out DIR`)
        raise DataFormatError(f"cannot write {path}: it is a folder; expected a file path.")
    mode = new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible everywhere, and not worth failing for
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_arrays(path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``arrays`` and ``meta`` (JSON-able) as a checksummed model file."""
    meta = dict(meta)
    meta["format"] = FORMAT
    meta["format_version"] = FORMAT_VERSION
    meta["sha256"] = {k: _digest(v) for k, v in arrays.items()}
    blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    payload = dict(arrays)
    payload["__meta__"] = blob
    atomic_write(path, lambda f: np.savez(f, **payload))


def read_arrays(path) -> tuple[dict[str, np.ndarray], dict]:
    """Read and verify a model file; raises DataFormatError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"model file {path} does not exist.")
    if path.is_dir():
        raise DataFormatError(f"{path} is a folder; expected a model file written by SlideClassifier.save.")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except _READ_ERRORS as e:
        raise DataFormatError(f"{path} is not a readable slide model file (truncated or corrupted?): {e}") from None
    if "__meta__" not in arrays:
        raise DataFormatError(f"{path} has no __meta__ entry: not a slide model file.")
    try:
        meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(f"{path}: the model metadata is corrupted ({e}).") from None
    if meta.get("format") != FORMAT:
        raise DataFormatError(f"{path}: not a slide model file (format {meta.get('format')!r}).")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise DataFormatError(f"{path}: written by a newer slide (model format {meta.get('format_version')}; "
                              f"this version reads up to {FORMAT_VERSION}). Upgrade slide to load it.")
    sums = meta.get("sha256", {})
    for k in sorted(set(sums) | set(arrays)):
        if k not in arrays:
            raise DataFormatError(f"{path}: the array {k!r} is missing (corrupted file).")
        if k not in sums or _digest(arrays[k]) != sums[k]:
            raise DataFormatError(f"{path}: checksum mismatch for {k!r}: the file is corrupted.")
    return arrays, meta
