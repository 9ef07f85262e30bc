"""Backends behind one protocol: ``open_runner(artifact)`` picks the backend from the artifact's kind."""

from __future__ import annotations

import os
from pathlib import Path

from stylexport.errors import StylexportError
from stylexport.runtime.base import INPUT_NAME, OUTPUT_NAME, InputSpec, Runner, check_batch
from stylexport.runtime.torch_backend import TorchRunner, pick_device

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "InputSpec", "Runner", "TorchRunner", "check_batch", "open_runner",
           "pick_device"]


def open_runner(path: str | os.PathLike, *, device: str = "auto", precision: str = "fp32") -> Runner:
    """Load any artifact stylexport reads: a checkpoint (.safetensors/.pth)."""
    from stylexport.checkpoint import CHECKPOINT_SUFFIXES, load_checkpoint

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        loaded = load_checkpoint(path)
        meta = {**loaded.metadata, "style_name": loaded.style_name, "source_sha256": loaded.sha256}
        return TorchRunner(loaded.model, device=pick_device(device), precision=precision, metadata=meta)
    if not path.exists():
        raise StylexportError(f"model not found: {path}; pass a checkpoint")
    raise StylexportError(f"model {path}: unknown kind {suffix!r}; stylexport reads {', '.join(CHECKPOINT_SUFFIXES)}")
