"""The engine cache: the artifacts stylize, video, the Stylizer and bench export for a checkpoint, listed and
cleared (``stylexport cache``).

Each checkpoint's artifacts live in ``<cache>/engines/<checkpoint sha256>/``, with the folder's export.json naming
the checkpoint file they came from. A folder's modification time is its last use: opening a cached artifact
touches it. An entry is *stale* when the checkpoint it was exported from is gone or now holds other weights:
nothing can ask for it again (the folder is found by the sha256 of the weights being run).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from stylexport.fileio import cache_dir, sha256_file

ENGINES = "engines"
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


def select(found: Iterable[Entry], *, everything: bool = False, older_than_days: float | None = None) -> list[Entry]:
    """What ``clear`` removes: everything; or the entries unused for more than ``older_than_days``; or, when
    neither is asked for, the stale ones."""
    found = list(found)
    if everything:
        return found
    if older_than_days is not None:
        cutoff = time.time() - older_than_days * 86400
        return [e for e in found if e.last_used < cutoff]
    return [e for e in found if e.stale]


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
