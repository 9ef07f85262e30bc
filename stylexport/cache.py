"""The engine cache: the artifacts stylize, video, the Stylizer and bench export for a checkpoint, listed and
cleared (``stylexport cache``).

Each checkpoint's artifacts live in ``<cache>/engines/<checkpoint sha256>/``, with the folder's export.json naming
the checkpoint file they came from. A folder's modification time is its last use: opening a cached artifact
touches it. An entry is *stale* when the checkpoint it was exported from is gone or now holds other weights:
nothing can ask for it again (the folder is found by the sha256 of the weights being run).

The cache has no size limit unless one is set: ``STYLEXPORT_CACHE_MAX_SIZE`` (e.g. ``2GB``) trims it, least
recently used first, each time a new engine is exported into it; ``stylexport cache clear --max-size`` once.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from stylexport.errors import StylexportError
from stylexport.fileio import cache_dir, sha256_file

ENGINES = "engines"
MAX_SIZE_ENV = "STYLEXPORT_CACHE_MAX_SIZE"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


def parse_size(text: str, *, name: str = "--max-size") -> int:
    """Bytes in a size such as ``2GB``, ``500 MB``, ``1.5G`` or ``0``: K, M, G, T are powers of 1024, as
    ``cache list`` counts its MB (a bare number is bytes)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        sep = "=" if name.isupper() else " "
        raise StylexportError(f"{name}{sep}{text} is not a size; write it like 2GB, 500MB or 0")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " kmgt".index(unit.lower() or " "))


def engines_root() -> Path:
    return cache_dir() / ENGINES


def engine_folder(checkpoint: str | os.PathLike) -> Path:
    """The folder of a checkpoint's exported artifacts, keyed by its sha256."""
    return engines_root() / sha256_file(checkpoint)


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def touch(folder: Path) -> None:
    """Mark ``folder`` as used now (its modification time), so ``clear --older-than`` keeps what is in use."""
    try:
        os.utime(folder)
    except OSError:  # a read-only cache still runs; it only forgets when it was used
        pass


@dataclasses.dataclass(frozen=True)
class Entry:
    """One checkpoint's folder in the cache."""

    folder: Path
    checkpoint: str | None  # the file it was exported from, as recorded (None: no record)
    formats: tuple[str, ...]
    bytes: int
    last_used: float  # seconds since the epoch
    state: str  # "current", "checkpoint gone", "checkpoint changed" or "no record"

    @property
    def sha256(self) -> str:
        return self.folder.name

    @property
    def stale(self) -> bool:
        return self.state in ("checkpoint gone", "checkpoint changed")

    def as_dict(self) -> dict:
        return {"sha256": self.sha256, "folder": str(self.folder), "checkpoint": self.checkpoint,
                "formats": list(self.formats), "bytes": self.bytes, "last_used": self.last_used, "state": self.state}


def _state(checkpoint: str | None, sha256: str) -> str:
    if not checkpoint or not Path(checkpoint).is_absolute():
        return "no record"  # a relative path from an older stylexport: which folder it meant is unknown
    path = Path(checkpoint)
    if not path.is_file():
        return "checkpoint gone"
    try:
        return "current" if sha256_file(path) == sha256 else "checkpoint changed"
    except OSError:
        return "no record"


def entries() -> list[Entry]:
    """Every checkpoint's folder in the cache, most recently used first (folders not named by a sha256 are not
    the cache's and are left out)."""
    from stylexport.artifacts import read_export_record

    root = engines_root()
    found = []
    for folder in (p for p in root.iterdir() if p.is_dir() and _SHA256.fullmatch(p.name)) if root.is_dir() else ():
        record = [a for a in read_export_record(folder)["artifacts"] if a.get("passed")]
        checkpoint = record[-1].get("checkpoint") if record else None
        found.append(Entry(folder, checkpoint, tuple(sorted({a["format"] for a in record})), folder_bytes(folder),
                           folder.stat().st_mtime, _state(checkpoint, folder.name)))
    return sorted(found, key=lambda e: -e.last_used)


def select(found: Iterable[Entry], *, everything: bool = False, older_than_days: float | None = None,
           max_bytes: int | None = None) -> list[Entry]:
    """What ``clear`` removes: everything; or the entries unused for more than ``older_than_days``; or, with
    ``max_bytes``, the stale ones and then the least recently used until the rest fit in ``max_bytes``; or,
    when none is asked for, the stale ones."""
    found = list(found)
    if everything:
        return found
    if older_than_days is not None:
        cutoff = time.time() - older_than_days * 86400
        return [e for e in found if e.last_used < cutoff]
    removed = [e for e in found if e.stale]
    if max_bytes is not None:
        kept, full = 0, False
        for e in sorted((e for e in found if not e.stale), key=lambda e: -e.last_used):
            full = full or kept + e.bytes > max_bytes  # from the first that does not fit on, all go: an older
            if full:                                   # entry never outlives a newer one
                removed.append(e)
            else:
                kept += e.bytes
    return removed


def size_limit() -> int | None:
    """``STYLEXPORT_CACHE_MAX_SIZE`` in bytes; None when unset (no limit)."""
    limit = os.environ.get(MAX_SIZE_ENV, "").strip()
    return parse_size(limit, name=MAX_SIZE_ENV) if limit else None


def trim(just_used: Path, max_bytes: int | None) -> list[Entry]:
    """After an export into ``just_used``: remove the stale entries and the least recently used others until the
    cache fits in ``max_bytes`` (None: no limit), never ``just_used`` itself. The entries removed."""
    if max_bytes is None:
        return []
    chosen = [e for e in select(entries(), max_bytes=max_bytes) if e.folder.resolve() != just_used.resolve()]
    clear(chosen)
    return chosen


def clear(selected: Iterable[Entry]) -> int:
    """Delete the selected folders; the bytes freed. A later run exports what it needs again."""
    freed = 0
    root = engines_root().resolve()
    for entry in selected:
        folder = entry.folder.resolve()
        if folder.parent != root or not _SHA256.fullmatch(folder.name):  # never anything outside the cache
            continue
        shutil.rmtree(folder, ignore_errors=True)
        freed += entry.bytes
    return freed
