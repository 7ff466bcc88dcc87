"""Point Numba's on-disk cache at a folder named after a hash of slide's kernel sources.

Numba invalidates a cached kernel when the kernel's own file changes, but not when a function it
calls from another file does, so after an edit (or a partial upgrade) a stale kernel can be
loaded silently. Keying the whole cache folder on the sources of every module with compiled code
makes that impossible: any change starts from a fresh folder. Must run before those modules are
imported (``slide/__init__.py`` imports this first). A user's NUMBA_CACHE_DIR is respected (the
hash becomes a subfolder of it); if no cache folder can be created, Numba's default is left.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_COMPILED = ["kernels", "network.py"]  # every module with @njit code


def source_hash() -> str:
    h = hashlib.sha256()
    files = []
    for name in _COMPILED:
        p = _HERE / name
        files += sorted(p.glob("*.py")) if p.is_dir() else [p]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


_FRESH = False  # whether this process found the cache folder empty (kernels will compile)


def first_use() -> bool:
    """True the first time it is asked in a process that found no compiled kernels cached:
    the next fit compiles them (about a minute, once per install)."""
    global _FRESH
    fresh, _FRESH = _FRESH, False
    return fresh


def configure() -> None:
    global _FRESH
    import numba

    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "slide", "numba")
    try:
        folder = Path(base) / source_hash()
        _FRESH = not folder.is_dir() or not any(folder.iterdir())
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            return
    except OSError:
        return
    numba.config.CACHE_DIR = str(folder)


configure()
