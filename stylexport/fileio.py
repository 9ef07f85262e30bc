"""Atomic file writes: a crash or kill never leaves a half-written artifact behind.

A file is written under a hidden temporary name that carries the writer's process id
(``.NAME.PID.RANDOM.tmpSUFFIX``) and renamed into place. A writer killed with SIGKILL cannot clean up after
itself, so every write first removes the temporaries of the same target left by processes that no longer
run; SIGTERM and Ctrl-C unwind normally (the CLI turns SIGTERM into an exception) and clean up at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from stylexport.errors import StylexportError


def ensure_parent(path: Path) -> None:
    """Create the folder that will hold ``path``; a clear error when that is impossible."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StylexportError(f"cannot create folder {path.parent}: {exc.strerror or exc}; "
                              "choose another output path") from None
    if path.is_dir():
        raise StylexportError(f"output {path} is an existing folder; name a file that is not a folder, or remove "
                              "the folder")
    if not os.access(path.parent, os.W_OK):
        raise StylexportError(f"cannot write to folder {path.parent}: permission denied; choose another output path")


def check_writable(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Refuse, before minutes of work, an output that could not be written at its end: ``path`` (a file, or a
    folder when ``folder``) whose place is taken by the other kind, or below a file, or in a folder that cannot
    be written (permissions, a read-only disk, /proc). Leaves nothing behind: the nearest existing folder is
    probed with a temporary file, which is removed at once."""
    path = Path(os.path.abspath(path))
    if folder and path.exists() and not path.is_dir():
        raise StylexportError(f"output folder {path} is an existing file; choose another output path")
    if not folder and path.is_dir():
        raise StylexportError(f"output {path} is an existing folder; name a file that is not a folder, or remove "
                              "the folder")
    where = path if folder else path.parent
    existing = next(p for p in (where, *where.parents) if p.exists())
    if not existing.is_dir():
        raise StylexportError(f"cannot write {path}: {existing} is a file, not a folder; choose another output path")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".stylexport-probe."):
            pass
    except OSError as exc:
        raise StylexportError(f"cannot write {path}: folder {existing} takes no new files ({exc.strerror or exc}); "
                              "choose another output path") from None


def check_not_an_input(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is one of the inputs (the same file, through any path or link): writing it would
    replace the user's original, which nothing can bring back. Each path is resolved once (a folder of
    thousands of photos is one pass, not one per output)."""
    originals = {os.path.realpath(given): given for given in inputs}
    for output in outputs:
        given = originals.get(os.path.realpath(output))
        if given is not None:
            raise StylexportError(f"output {output} is the input {given} itself: writing it would replace your "
                                  "original; choose another output path (nothing was written)")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    ensure_parent(path)
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp" + path.suffix,
                                   dir=path.parent)
    except OSError as exc:
        raise StylexportError(f"cannot write {path}: {exc.strerror or exc}; choose another output path") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporaries of ``path`` whose writer process is gone (killed before it could rename)."""
    removed = []
    prefix = f".{path.name}."
    suffix = ".tmp" + path.suffix
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix)]
    except OSError:
        return removed
    for tmp in candidates:
        pid = tmp.name[len(prefix):].split(".", 1)[0]  # untagged (older versions): never a live writer's
        if pid.isdigit() and (int(pid) == os.getpid() or _alive(int(pid))):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """stylexport's cache: converted VGG weights, engines exported for a checkpoint (STYLEXPORT_CACHE_DIR)."""
    root = os.environ.get("STYLEXPORT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "stylexport"
    return Path(root).expanduser()


def cache_folder(*parts: str) -> Path:
    """A folder of the cache, made if needed, about to be written: the error names the setting that moves the
    cache, since the user chose no path here."""
    folder = cache_dir().joinpath(*parts)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError as exc:
        why = exc.strerror or str(exc)
    else:
        why = None if writable else "permission denied"
    if why:
        raise StylexportError(f"cannot write the cache folder {folder}: {why}; set STYLEXPORT_CACHE_DIR to a folder "
                              "you can write (it holds converted VGG weights and exported engines)")
    return folder
