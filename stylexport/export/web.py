"""``export --web``: a static web app that stylizes photos and the camera in the browser with ONNX Runtime Web.

The folder holds index.html, app.js and app.css (the template in stylexport/web), ``model.onnx`` (the FP32 ONNX
export, contract in its metadata), ``model.json`` (the contract and versions, read by the page) and ``ort/``
(ONNX Runtime Web's runtime files, copied from an installed copy of the pinned npm package). The page is written
last, so a folder with an index.html is a complete app.
"""

from __future__ import annotations

import html
import json
import logging
import shutil
from pathlib import Path

from stylexport.errors import StylexportError
from stylexport.fileio import atomic_path, write_text_atomic

log = logging.getLogger(__name__)


def write_app(proto, out_dir: Path, *, metadata: dict[str, str]) -> Path:
    """Write the app for the ONNX model ``proto`` (its metadata already set) into ``out_dir``; return index.html."""
    from stylexport.export.onnx import save_onnx
    from stylexport.web import (
        PACKAGE,
        RUNTIME_FILES,
        TEMPLATE,
        find_runtime,
        install_hint,
        pinned_version,
        runtime_version,
    )

    dist = find_runtime()
    if dist is None:
        raise StylexportError(f"{PACKAGE}'s runtime files are not found; {install_hint()}")
    version = runtime_version(dist)
    if version != pinned_version():
        log.warning("%s %s found in %s; stylexport is tested with %s", PACKAGE, version, dist, pinned_version())
    out_dir.mkdir(parents=True, exist_ok=True)
    runtime = out_dir / "ort"
    runtime.mkdir(exist_ok=True)
    for name in RUNTIME_FILES:
        with atomic_path(runtime / name) as tmp:
            shutil.copyfile(dist / name, tmp)
    save_onnx(proto, out_dir / "model.onnx")
    contract = {**metadata, "format": "web", "model": "model.onnx", "onnxruntime_web_version": version,
                "controls": "strength: lerp(photo, stylized, s); keep colours: stylized luma with the photo's "
                            "chroma in BT.601 full-range YCbCr (stylexport/controls.py)"}
    write_text_atomic(out_dir / "model.json", json.dumps(contract, indent=2) + "\n")
    for name in ("app.js", "app.css"):
        write_text_atomic(out_dir / name, (TEMPLATE / name).read_text())
    title = html.escape(metadata["style_name"].replace("_", " "))
    page = (TEMPLATE / "index.html").read_text().replace("{{STYLE}}", title)
    write_text_atomic(out_dir / "index.html", page)
    return out_dir / "index.html"
