"""Saving and loading models: one ``.npz`` file, no pickle, checksummed, written atomically.

The file is a NumPy ``.npz`` (a zip of ``.npy`` arrays) read with ``allow_pickle=False``, so
loading cannot execute code. It holds every weight and optimiser array and one ``__meta__``
entry: UTF-8 JSON with the format version, the parameters, the resolved layer settings, the
training counters, a SHA-256 digest of every array and one of the metadata itself. The digests
say a file is intact, not that slide wrote it: what it holds is validated before use
(:mod:`slide.model_checks`).

Writes go to a temporary file in the same directory, are flushed and fsynced, then renamed over
the target, so a crash during a save leaves the previous file intact.
"""

from __future__ import annotations

import glob
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
FORMAT_VERSION = 2  # 2: the metadata has a digest of its own (1 is still read)


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


def _remove_stale_temporaries(directory: Path, name: str) -> None:
    """Delete the temporary files of earlier writes of ``name`` whose process is gone (a
    SIGKILL during a save leaves one behind); those of a live process are left alone."""
    for tmp in directory.glob(f".{glob.escape(name)}.*.tmp"):
        pid = tmp.name[len(name) + 2:].split(".", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running (or not ours to signal): maybe mid-write
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        try:
            tmp.unlink()
        except OSError:
            pass


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, fsync it and rename it over
    ``path`` with the permissions of :func:`new_file_mode`; on any error the temporary file is
    removed and ``path`` is untouched."""
    path = Path(path)
    if path.is_symlink():  # replace what the link points to, not the link
        path = Path(os.path.realpath(path))
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise DataFormatError(f"cannot write {path}: the folder {directory} does not exist.")
    if path.is_dir():  # os.replace would fail late with IsADirectoryError (e.g. `slide predict --out DIR`)
        raise DataFormatError(f"cannot write {path}: it is a folder; expected a file path.")
    if path.exists() and not path.is_file():
        # a FIFO or a device (/dev/null, /dev/stdout): nothing to replace, write through
        with open(path, "wb") as f:
            write(f)
        return
    _remove_stale_temporaries(directory, path.name)
    mode = new_file_mode(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=directory)
    except OSError as e:  # the same kind of error, naming the file asked for, not the temporary one
        raise type(e)(e.errno, f"cannot write {path}: no file can be created in {directory} "
                      f"({e.strerror})") from None
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


def _meta_digest(meta: dict) -> str:
    """SHA-256 of the metadata's canonical JSON, its own digest left out."""
    rest = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode("utf-8")).hexdigest()


def write_arrays(path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``arrays`` and ``meta`` (JSON-able) as a checksummed model file: a digest of every
    array and one of the metadata itself."""
    meta = dict(meta)
    meta["format"] = FORMAT
    meta["format_version"] = FORMAT_VERSION
    meta["sha256"] = {k: _digest(v) for k, v in arrays.items()}
    meta["meta_sha256"] = _meta_digest(meta)
    blob = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    payload = dict(arrays)
    payload["__meta__"] = blob
    atomic_write(path, lambda f: np.savez(f, **payload))


def _read_members(path: Path, skip=None) -> dict[str, np.ndarray]:
    """Every ``.npy`` member of the zip at ``path``, each header checked before its data is
    read: a plain dtype (no objects), and a declared size that the member really holds (a
    header may not claim 10^11 elements and make the reader allocate them)."""
    arrays = {}
    on_disk = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise DataFormatError(f"{path}: member {name!r} is not an array: not a slide model file.")
            # slide writes members uncompressed, so no member can claim more bytes than the file has
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > on_disk:
                raise DataFormatError(f"{path}: member {name!r} is compressed or larger than the file: "
                                      f"not a model file slide wrote.")
            if skip is not None and skip(name[:-4]):
                continue
            with zf.open(info) as f:
                try:
                    version = np.lib.format.read_magic(f)
                    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                                   (2, 0): np.lib.format.read_array_header_2_0}[version]
                    shape, fortran, dtype = read_header(f)
                except Exception as e:  # the header is a Python literal: any parse error is possible
                    raise DataFormatError(f"{path}: the header of array {name[:-4]!r} is damaged "
                                          f"({type(e).__name__}).") from None
                if dtype.hasobject:
                    raise DataFormatError(f"{path}: array {name[:-4]!r} holds Python objects; a model holds numbers.")
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared != info.file_size - f.tell():
                    raise DataFormatError(f"{path}: array {name[:-4]!r} declares {declared} bytes of data but holds "
                                          f"{info.file_size - f.tell()}: the file is corrupted.")
                buf = bytearray(declared)  # read in place: one copy of each array in memory, writable
                view, got = memoryview(buf), 0
                while got < declared:
                    n = f.readinto(view[got:])
                    if not n:
                        raise DataFormatError(f"{path}: array {name[:-4]!r} ends early: the file is truncated.")
                    got += n
                data = np.frombuffer(buf, dtype=dtype)
            arrays[name[:-4]] = data.reshape(shape[::-1]).T if fortran else data.reshape(shape)
    return arrays


def read_arrays(path, skip=None) -> tuple[dict[str, np.ndarray], dict]:
    """Read and verify a model file; raises DataFormatError naming the problem. ``skip(name)``
    true: that array is neither read nor verified (absent from the result)."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"model file {path} does not exist.")
    if path.is_dir():
        raise DataFormatError(f"{path} is a folder; expected a model file written by SlideClassifier.save.")
    try:
        arrays = _read_members(path, skip)
    except _READ_ERRORS as e:
        raise DataFormatError(f"{path} is not a readable slide model file (truncated or corrupted?): {e}") from None
    if "__meta__" not in arrays:
        raise DataFormatError(f"{path} has no __meta__ entry: not a slide model file.")
    blob = arrays.pop("__meta__")
    try:
        if blob.dtype != np.uint8 or blob.ndim != 1:
            raise ValueError(f"__meta__ is {blob.dtype.str}{blob.shape}, expected bytes")
        meta = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DataFormatError(f"{path}: the model metadata is corrupted ({type(e).__name__}: {e}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataFormatError(f"{path}: not a slide model file (format {got!r}).")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DataFormatError(f"{path}: metadata 'format_version' must be an int >= 1; got {version!r}.")
    if version > FORMAT_VERSION:
        raise DataFormatError(f"{path}: written by a newer slide (model format {version}; "
                              f"this version reads up to {FORMAT_VERSION}). Upgrade slide to load it.")
    if version >= 2 and meta.get("meta_sha256") != _meta_digest(meta):
        raise DataFormatError(f"{path}: checksum mismatch for the metadata: the file is corrupted.")
    sums = meta.get("sha256")
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        raise DataFormatError(f"{path}: metadata 'sha256' must be a record of array digests.")
    for k in sorted(set(sums) | set(arrays)):
        if skip is not None and skip(k) and k not in arrays:
            continue
        if k not in arrays:
            raise DataFormatError(f"{path}: the array {k!r} is missing (corrupted file).")
        if k not in sums or _digest(arrays[k]) != sums[k]:
            raise DataFormatError(f"{path}: checksum mismatch for {k!r}: the file is corrupted.")
    return arrays, meta
