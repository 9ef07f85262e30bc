"""The exported web app (stylexport/export/web.py, stylexport/web/) in a real browser: an app is exported, served
from 127.0.0.1 by a static file server, driven in Debian's headless Chromium through puppeteer-core
(tests/web/drive.cjs), and the page's pixels are compared with the same ONNX model run by ONNX Runtime in Python
(``stylize -m model.onnx``), with and without the strength and keep-colours controls."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylexport.cli import app
from stylexport.metrics import psnr
from stylexport.web import RUNTIME_FILES, TEMPLATE, find_runtime
from tests.conftest import one_line_error

runner = CliRunner()
DRIVER = Path(__file__).parent / "web" / "drive.cjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SETUP = "see the README's web-deps block (apt-get install chromium; npm ci --prefix stylexport/web)"


def _browser_missing() -> str | None:
    if shutil.which("node") is None:
        return f"node is not installed; {SETUP}"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM}; {SETUP}"
    if not (TEMPLATE / "node_modules" / "puppeteer-core").is_dir():
        return f"puppeteer-core is not installed; {SETUP}"
    if find_runtime() is None:
        return f"onnxruntime-web is not installed; {SETUP}"
    return None


def _require_browser() -> None:
    """Skip with the reason where the browser stack is missing; under STYLEXPORT_REQUIRE_BROWSER=1 (CI, which
    installs it) that is a failure."""
    why = _browser_missing()
    if why and os.environ.get("STYLEXPORT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required: {why}")
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def served_app(model_and_ckpt, tmp_path_factory):
    """An exported app, served on 127.0.0.1 (any free port) for the module's tests."""
    _require_browser()
    _, ckpt = model_and_ckpt
    out = tmp_path_factory.mktemp("webapp")
    result = runner.invoke(app, ["export", str(ckpt), "--web", "-o", str(out)])
    assert result.exit_code == 0, result.output
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".wasm": "application/wasm"}

    def log_message(self, *args):
        pass


def _photo(tmp_path: Path, width: int, height: int) -> Path:
    """The bundled photo at exactly width x height, as a lossless PNG both sides read."""
    from stylexport.bench.timing import photo
    from stylexport.image import save_image

    return save_image(photo(height, width)[0], tmp_path / "photo.png")


def _drive(url: str, photo: Path, out: Path, extra_args: str | None = None) -> dict:
    env = {**os.environ, "NODE_PATH": str(TEMPLATE / "node_modules"), "CHROMIUM": CHROMIUM}
    if extra_args:
        env["CHROMIUM_ARGS"] = extra_args
    done = subprocess.run(["node", str(DRIVER), url, str(photo), str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "page.json").read_text())


def _python_reference(app_dir: Path, photo: Path, out: Path, *options: str) -> np.ndarray:
    result = runner.invoke(app, ["stylize", str(photo), "-m", str(app_dir / "model.onnx"), "-o", str(out), *options])
    assert result.exit_code == 0, result.output
    assert "engine ort-cpu" in result.output
    return np.asarray(Image.open(out).convert("RGB"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return psnr(torch.tensor(a), torch.tensor(b))


@pytest.mark.parametrize(("query", "options"), [("", ()), ("&strength=0.6&colors=1", ("--strength", "0.6",
                                                                                      "--preserve-colors"))],
                         ids=["plain", "strength-and-colours"])
def test_the_page_matches_onnx_runtime_in_python(served_app, tmp_path, query, options):
    app_dir, url = served_app
    photo = _photo(tmp_path, 200, 136)  # not multiples of 4
    page = _drive(f"{url}?ep=wasm&size=0{query}", photo, tmp_path)
    assert page["state"] == "done", page
    assert page["status"].startswith("WebAssembly (") and "200x136" in page["status"] and " ms" in page["status"]
    # self-contained: every request stays on the server, and asks only for the app's own files
    origin = url.rsplit("/", 1)[0]
    assert all(r.startswith(origin + "/") for r in page["requests"]), page["requests"]
    asked = {r.removeprefix(origin + "/").split("?")[0] for r in page["requests"]}
    assert asked <= {"index.html", "app.js", "app.css", "model.json", "model.onnx",
                     *(f"ort/{name}" for name in RUNTIME_FILES)}, asked
    assert not [line for line in page["console"] if line.startswith(("pageerror", "error: Failed to load"))]
    got = np.asarray(Image.open(tmp_path / "result.png").convert("RGB"))
    expected = _python_reference(app_dir, photo, tmp_path / "python.png", *options)
    assert got.shape == expected.shape == (136, 200, 3)
    assert _psnr(got, expected) >= 40.0
    assert (tmp_path / "screenshot.png").stat().st_size > 10_000


def test_the_page_runs_on_webgpu_when_the_browser_has_it(served_app, tmp_path):
    """Chromium's software WebGPU (SwiftShader) stands in for a GPU: slow, so a small photo."""
    app_dir, url = served_app
    photo = _photo(tmp_path, 48, 32)
    page = _drive(f"{url}?ep=webgpu&size=0", photo, tmp_path,
                  "--enable-unsafe-webgpu --enable-features=Vulkan --use-vulkan=swiftshader "
                  "--use-webgpu-adapter=swiftshader --enable-unsafe-swiftshader")
    if "no usable WebGPU adapter" in page.get("status", ""):
        pytest.skip("this Chromium offers no software WebGPU adapter")
    assert page["state"] == "done", page
    assert page["status"].startswith("WebGPU ·")
    got = np.asarray(Image.open(tmp_path / "result.png").convert("RGB"))
    assert _psnr(got, _python_reference(app_dir, photo, tmp_path / "python.png")) >= 40.0


def test_the_app_folder_is_complete_and_describes_itself(model_and_ckpt, tmp_path):
    if find_runtime() is None:
        _require_browser()
    _, ckpt = model_and_ckpt
    result = runner.invoke(app, ["export", str(ckpt), "--web", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    contract = json.loads((tmp_path / "model.json").read_text())
    assert contract["format"] == "web" and contract["model"] == "model.onnx" and contract["style_name"] == "waves"
    assert contract["input_name"] == "image" and contract["value_range"] == "0-255"
    assert contract["onnxruntime_web_version"] == json.loads((TEMPLATE / "package.json").read_text())[
        "dependencies"]["onnxruntime-web"]
    for name in ("index.html", "app.js", "app.css", "model.onnx", *(f"ort/{n}" for n in RUNTIME_FILES)):
        assert (tmp_path / name).is_file(), name
    assert "<title>stylexport · waves</title>" in (tmp_path / "index.html").read_text()
    report = json.loads((tmp_path / "export.json").read_text())["artifacts"][0]
    assert report["format"] == "web" and report["passed"] and report["parity"]["max_abs"] <= 0.5
    assert report["size_bytes"] > (tmp_path / "ort" / RUNTIME_FILES[-1]).stat().st_size  # the runtime counts
    result = runner.invoke(app, ["stylize", str(tmp_path / "model.onnx"), "-m", str(tmp_path / "index.html"), "-o",
                                 str(tmp_path / "x.png")])
    one_line_error(result, "web artifact is not a model stylexport runs", "model.onnx runs here")


def test_a_missing_runtime_is_one_line_saying_how_to_install_it(model_and_ckpt, tmp_path, monkeypatch):
    import stylexport.web

    monkeypatch.setattr(stylexport.web, "runtime_candidates", lambda: [tmp_path / "nowhere"])
    _, ckpt = model_and_ckpt
    result = runner.invoke(app, ["export", str(ckpt), "--web", "-o", str(tmp_path / "app")])
    one_line_error(result, "format 'web' cannot be built here", "npm ci --omit=dev --prefix", "STYLEXPORT_ORT_WEB")
    assert not (tmp_path / "app").exists()
