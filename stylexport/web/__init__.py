"""The web app template (index.html, app.js, app.css) and where ONNX Runtime Web's runtime files are found.

``stylexport export --web`` copies the template, the model and the runtime into one folder that any static file
server can serve. The runtime comes from an installed copy of the npm package pinned in ``package.json`` here
(``npm ci --omit=dev --prefix <this folder>``); ``STYLEXPORT_ORT_WEB`` may name another copy's ``dist`` folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent
PACKAGE = "onnxruntime-web"
# What the app loads: the WebGPU+WebAssembly build and the one WebAssembly module it fetches for both (seen in
# headless Chromium on WebAssembly and on WebGPU; tests/test_web.py checks that no other file is asked for).
RUNTIME_FILES = ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")


def pinned_version() -> str:
    return json.loads((TEMPLATE / "package.json").read_text())["dependencies"][PACKAGE]


def install_hint() -> str:
    return (f"install {PACKAGE} {pinned_version()} with: npm ci --omit=dev --prefix {TEMPLATE} (node and npm "
            f"needed), or set STYLEXPORT_ORT_WEB to the dist folder of an installed {PACKAGE}")


def runtime_candidates() -> list[Path]:
    env = os.environ.get("STYLEXPORT_ORT_WEB")
    return ([Path(env)] if env else []) + [TEMPLATE / "node_modules" / PACKAGE / "dist",
                                           Path.cwd() / "node_modules" / PACKAGE / "dist"]


def find_runtime() -> Path | None:
    """The first ``dist`` folder that holds every runtime file the app loads, or None."""
    for dist in runtime_candidates():
        if all((dist / name).is_file() for name in RUNTIME_FILES):
            return dist
    return None


def runtime_version(dist: Path) -> str:
    try:
        return json.loads((dist.parent / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"
