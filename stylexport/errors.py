"""One exception type for user mistakes: the CLI prints its message on one line and exits with 2."""

from pathlib import Path


class StylexportError(Exception):
    """A problem the user can fix (bad input file, wrong option, missing weights).

    The message names the offending value and what to do about it, on one line.
    """


def missing_model(path: Path, fix: str) -> StylexportError:
    """The error for a model path that is not a file: not there at all, or a folder (of the wrong kind)."""
    if path.is_dir():
        return StylexportError(f"model {path} is a folder, not a model file (nor a training run's folder: no "
                               f"model.safetensors in it); {fix}")
    return StylexportError(f"model not found: {path}; {fix}")
