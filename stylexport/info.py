"""``stylexport info``: what a model file is, what it says about itself, how it was checked, what runs it here.

One description for every format of the table: the format's own reader (``Format.info``) gives the metadata
the file carries (a checkpoint's training settings, an artifact's contract and source checkpoint, an engine's
sidecar) and, for ONNX and OpenVINO, the real inputs and outputs, so a third-party model can be looked at
before it is run; the folder's export.json gives the parity numbers the export gate measured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from stylexport.errors import StylexportError


def _export_entry(path: Path) -> dict[str, Any] | None:
    from stylexport.artifacts import read_export_record

    entries = [a for a in read_export_record(path.parent)["artifacts"] if Path(str(a.get("path"))).name == path.name]
    return entries[-1] if entries else None


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-able description of the model file ``path``; one-line StylexportError when it is not one."""
    from stylexport.checkpoint import MODEL_FILE, model_file
    from stylexport.devices import pick_device
    from stylexport.formats import engines_for, format_of, resolve, unavailable

    path = Path(path)
    if not path.exists():
        raise StylexportError(f"model not found: {path}; check the path")
    if path.is_dir() and (path / "index.html").is_file():
        path = path / "index.html"  # an exported web app's folder
    path = model_file(path)  # a training run's folder: the weights it has reached
    if not path.is_file():
        raise StylexportError(f"{path} is a folder, not a model file (nor a web app's folder, no index.html, nor a "
                              f"training run's, no {MODEL_FILE})")
    fmt = format_of(path)
    files = [f for f in fmt.files(path) if f.exists()]
    try:
        own = resolve(fmt.info)(fmt.model_file(path))
    except ImportError as exc:
        raise StylexportError(f"cannot read {path}: {exc.name or exc} is not installed (stylexport doctor says "
                              "which extra brings it)") from None
    dev = pick_device("auto")
    engines = []
    for engine in engines_for(fmt):
        why = unavailable(engine, dev)
        engines.append({"engine": engine.name, "description": engine.description, "runs_here": why is None,
                        "why_not": why})
    described = {"path": str(path), "format": fmt.name, "description": fmt.description, "precision": fmt.precision,
                 "native_code": fmt.native_code, "files": [f.name for f in files], "bytes": fmt.size(path), **own,
                 "export": _export_entry(path), "engines": engines}
    if not own.get("metadata") and not fmt.native_code and any(e["runs_here"] for e in engines):
        described["as_run"] = _as_run(fmt.model_file(path))
    return described


def _as_run(path: Path) -> dict[str, Any]:
    """How stylexport runs a model that carries no contract of its own (a third-party one): the engine, the
    layout and value range it found, a fixed size; or why it cannot."""
    from stylexport.runtime import open_runner

    try:
        with open_runner(path) as runner:
            bound = runner.spec.max_shape
            return {"engine": runner.engine or runner.name, "layout": runner.metadata.get("layout", "NCHW"),
                    "value_range": runner.metadata.get("value_range", "0-255"),
                    "dtype": runner.metadata.get("dtype", "float32"),
                    "fixed_size": list(runner.spec.fixed_hw) if runner.spec.fixed_hw else None,
                    "max_size": list(bound[2:]) if bound else None}
    except StylexportError as exc:
        return {"error": str(exc)}
