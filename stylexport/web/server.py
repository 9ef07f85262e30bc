"""Serve an exported web app folder: the right types for its modules and WebAssembly, and cross-origin isolation.

ONNX Runtime Web runs WebAssembly on several threads only in a cross-origin isolated page, which takes two
response headers (``Cross-Origin-Opener-Policy: same-origin``, ``Cross-Origin-Embedder-Policy: require-corp``)
that plain static servers do not send; the app then uses up to four of the machine's cores instead of one. Every
file the app loads is its own, so isolation costs it nothing. ``isolated=False`` serves like a plain static
server (the one-thread case, for comparison).
"""

from __future__ import annotations

import functools
import http.server
import logging
import threading
from pathlib import Path

from stylexport.errors import StylexportError

log = logging.getLogger(__name__)

ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
APP_FILES = ("index.html", "model.json")


class AppHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, typed by suffix (``.mjs`` and ``.wasm`` too, whatever the system's MIME table says)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
                      ".onnx": "application/octet-stream"}
    isolated = True

    def end_headers(self) -> None:
        if self.isolated:
            for name, value in ISOLATION_HEADERS.items():
                self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")  # a re-export into the same folder is picked up on reload
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)


def app_folder(path: str | Path) -> Path:
    """The web app at ``path``: its folder, or the folder of its page (index.html); one-line error otherwise."""
    folder = Path(path)
    if folder.name == "index.html" and folder.is_file():
        folder = folder.parent
    check_app_folder(folder)
    return folder


def check_app_folder(folder: Path) -> None:
    if folder.is_file():  # a model file (an .onnx, a checkpoint) given where its app's folder was meant
        raise StylexportError(f"{folder} is a file, not a web app's folder; make an app with stylexport export "
                              f"CHECKPOINT --web -o APP_FOLDER, then stylexport serve APP_FOLDER")
    missing = [name for name in APP_FILES if not (folder / name).is_file()]
    if not folder.is_dir() or missing:
        what = "is not a folder" if not folder.is_dir() else f"has no {' or '.join(missing)}"
        raise StylexportError(f"{folder} {what}: not a web app; make one with "
                              f"stylexport export CHECKPOINT --web -o {folder}")


def start_server(folder: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                 isolated: bool = True) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``folder`` on a background thread; return the server (``shutdown()`` stops it) and the app's URL.
    Port 0 takes any free port."""
    folder = app_folder(folder)
    handler = type("Handler", (AppHandler,), {"isolated": isolated})
    try:
        server = http.server.ThreadingHTTPServer((host, port), functools.partial(handler, directory=str(folder)))
    except OSError as exc:
        raise StylexportError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); choose another --port, or 0 "
                              "for any free one") from None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shown = "localhost" if host in ("0.0.0.0", "") else host
    return server, f"http://{shown}:{server.server_address[1]}/index.html"
