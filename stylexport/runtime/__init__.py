"""Backends behind one protocol: ``open_runner(artifact)`` picks the engine from the one table
(stylexport.formats): the file's format from its suffix, then the preferred engine for it that runs here."""

from __future__ import annotations

import os

import torch

from stylexport.checkpoint import model_file
from stylexport.contract import INPUT_NAME, OUTPUT_NAME
from stylexport.devices import pick_device
from stylexport.errors import StylexportError, missing_model
from stylexport.formats import choose_engine, engines_for, format_of, get_engine, kinds, open_engine
from stylexport.runtime.base import InputSpec, Runner, check_batch
from stylexport.runtime.torch_backend import TorchRunner

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "InputSpec", "Runner", "TorchRunner", "check_batch", "open_runner",
           "pick_device"]


def open_runner(path: str | os.PathLike, *, device: str | torch.device = "auto", engine: str | None = None) -> Runner:
    """Load any artifact stylexport reads, on ``engine`` (a name from stylexport.formats.ENGINES) or, when
    None, the preferred engine for the file's format that runs on ``device`` here."""
    path = model_file(path)
    if not path.is_file():
        raise missing_model(path, f"pass one of: {kinds()}")
    fmt = format_of(path)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    if engine is None:
        chosen = choose_engine(fmt, dev)
    else:
        chosen = get_engine(engine)
        if fmt.name not in chosen.formats:
            runs = ", ".join(e.name for e in engines_for(fmt))
            raise StylexportError(f"engine {engine} does not run {fmt.name} files like {path.name}; for those use "
                                  f"{runs}")
    return open_engine(chosen, path, dev)
