"""The exported web app (stylexport/export/web.py, stylexport/web/) in a real browser: an app is exported,
served from 127.0.0.1 by ``stylexport serve``'s server (cross-origin isolated: WebAssembly threads), driven in
Debian's headless Chromium through puppeteer-core (tests/web/drive.cjs), and the page's pixels are compared with
the same ONNX model run by ONNX Runtime in Python (``stylize -m model.onnx``), with and without the strength and
keep-colours controls. The server itself is tested over HTTP without a browser."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylexport.cli import app
from stylexport.metrics import psnr
from stylexport.web import RUNTIME_FILES, TEMPLATE, find_runtime
from stylexport.web.server import start_server
from tests.conftest import one_line_error, swapped_srgb_profile

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
    server, url = start_server(out)
    yield out, url
    server.shutdown()


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
    threads = min(4, page["cores"])  # the app's rule for an isolated page
    assert page["isolated"] is True
    assert page["status"].startswith(f"WebAssembly ({threads} thread") and "200x136" in page["status"]
    assert " ms" in page["status"]
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


def test_a_strip_below_the_models_smallest_side_is_padded_as_python_pads_it(served_app, tmp_path):
    """A side under the model's smallest (16 px here; 36 for a shipped style) was enlarged on its own: a strip
    ran squashed. The page now reflect-pads it as the Python pipeline and the C++ host do, and crops: a 120x10
    strip comes back 120x10, Python's pixels (ONNX Runtime on the same model.onnx, its size policy)."""
    app_dir, url = served_app
    photo = _photo(tmp_path, 120, 10)
    page = _drive(f"{url}?ep=wasm&size=0", photo, tmp_path)
    assert page["state"] == "done", page
    assert "120x10" in page["status"], page["status"]
    got = np.asarray(Image.open(tmp_path / "result.png").convert("RGB"))
    from stylexport.runtime import open_runner

    with open_runner(app_dir / "model.onnx", engine="ort-cpu") as python:
        x = torch.from_numpy(np.array(Image.open(photo).convert("RGB"))).permute(2, 0, 1).float()[None]
        expected = python.infer_any_size(x)[0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert got.shape == expected.shape == (10, 120, 3)
    assert _psnr(got, expected) >= 40.0 and expected.std() > 5


def test_a_phone_photo_stored_on_its_side_is_stylized_upright(served_app, tmp_path):
    """A JPEG with EXIF orientation 6 (a phone's portrait photo): the page stylizes it upright, at the size and
    with the pixels Python writes (a JPEG: the browser's decoder and PIL's may differ by a level here and there)."""
    app_dir, url = served_app
    stored = Image.open(_photo(tmp_path, 96, 64))  # stored 96 wide, 64 high; seen 64 wide, 96 high
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "portrait.jpg"
    stored.save(photo, quality=95, exif=exif.tobytes())
    page = _drive(f"{url}?ep=wasm&size=0", photo, tmp_path)
    assert page["state"] == "done", page
    assert "64x96" in page["status"], page["status"]
    got = np.asarray(Image.open(tmp_path / "result.png").convert("RGB"))
    expected = _python_reference(app_dir, photo, tmp_path / "python.png")
    assert got.shape == expected.shape == (96, 64, 3)
    assert _psnr(got, expected) >= 35.0


def test_a_transparent_png_is_stylized_on_white_as_python_reads_it(served_app, tmp_path):
    """A logo or a sticker: its transparent pixels were fed to the model as whatever colour they store (black
    here), where Python and the C++ host blend them on white."""
    app_dir, url = served_app
    rgba = np.array(Image.open(_photo(tmp_path, 80, 60)).convert("RGBA"))
    rgba[..., 3] = np.tile(np.linspace(0, 255, 80).astype(np.uint8), (60, 1))  # transparent to opaque
    rgba[:, :20, :3] = 0  # the colour stored under the most transparent pixels
    photo = tmp_path / "sticker.png"
    Image.fromarray(rgba).save(photo)
    page = _drive(f"{url}?ep=wasm&size=0", photo, tmp_path)
    assert page["state"] == "done", page
    got = np.asarray(Image.open(tmp_path / "result.png").convert("RGB"))
    expected = _python_reference(app_dir, photo, tmp_path / "python.png")
    assert got.shape == expected.shape == (60, 80, 3)
    assert _psnr(got, expected) >= 40.0


def test_a_photo_tagged_with_a_colour_profile_is_read_in_srgb_as_python_reads_it(served_app, tmp_path):
    """A phone's Display P3 photo, an Adobe RGB scan: Python converts its pixels to sRGB through the embedded
    profile; the page fed the stored numbers to the model untouched. Here the profile swaps red and green, so
    reading it untouched paints a different picture."""
    app_dir, url = served_app
    photo = tmp_path / "tagged.png"
    Image.open(_photo(tmp_path, 80, 60)).save(photo, icc_profile=swapped_srgb_profile())
    page = _drive(f"{url}?ep=wasm&size=0", photo, tmp_path)
    assert page["state"] == "done", page
    got = np.asarray(Image.open(tmp_path / "result.png").convert("RGB"))
    expected = _python_reference(app_dir, photo, tmp_path / "python.png")
    untagged = _python_reference(app_dir, _photo(tmp_path, 80, 60), tmp_path / "untagged.png")
    assert _psnr(expected, untagged) < 36.0  # the profile changes this picture (33 dB here)
    assert got.shape == expected.shape == (60, 80, 3)
    assert _psnr(got, expected) >= 40.0


def test_a_photo_cut_short_is_refused_in_one_line_as_python_refuses_it(served_app, tmp_path):
    """A download that stopped half way: Python refuses it ("image file is truncated"), and so does the C++
    host; the page says it cannot read it, rather than stylizing a grey half."""
    _, url = served_app
    whole = tmp_path / "whole.jpg"
    Image.open(_photo(tmp_path, 200, 136)).save(whole, quality=90)
    photo = tmp_path / "cut.jpg"
    photo.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    page = _drive(f"{url}?ep=wasm&size=0", photo, tmp_path)
    assert page["state"] == "error", page
    assert page["status"].startswith("error: cannot read cut.jpg (") and "try another photo" in page["status"]
    assert not (tmp_path / "result.png").exists()


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


def test_without_isolation_headers_the_page_runs_one_thread(served_app, tmp_path):
    """What a plain static server gives: the same page, not cross-origin isolated, one WebAssembly thread."""
    app_dir, _ = served_app
    server, url = start_server(app_dir, isolated=False)
    try:
        page = _drive(f"{url}?ep=wasm&size=0", _photo(tmp_path, 48, 32), tmp_path)
    finally:
        server.shutdown()
    assert page["isolated"] is False and page["state"] == "done", page
    assert page["status"].startswith("WebAssembly (1 thread)")


def _fake_app(folder: Path) -> Path:
    folder.mkdir()
    for name, data in (("index.html", b"<!doctype html>"), ("model.json", b"{}"), ("app.mjs", b"export {};"),
                       ("ort/x.wasm", b"\0asm")):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("isolated", [True, False], ids=["isolated", "no-isolated"])
def test_serve_sends_isolation_headers_and_module_types_and_stops_on_ctrl_c(tmp_path, isolated):
    """No browser needed: the command's own process, asked over HTTP."""
    import signal
    import sys
    import urllib.request

    folder = _fake_app(tmp_path / "app")
    # the app's page given for its folder serves the folder (only the isolated run: one process is enough)
    given = folder / "index.html" if isolated else folder
    cmd = [sys.executable, "-m", "stylexport", "serve", str(given), "--port", "0"]
    proc = subprocess.Popen(cmd + ([] if isolated else ["--no-isolated"]), stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving {folder} at http://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        base = url.rsplit("/", 1)[0]
        for name, kind in (("index.html", "text/html"), ("app.mjs", "text/javascript"),
                           ("ort/x.wasm", "application/wasm")):
            with urllib.request.urlopen(f"{base}/{name}", timeout=10) as response:
                assert response.headers["Content-Type"].startswith(kind), name
                assert response.headers.get("Cross-Origin-Opener-Policy") == ("same-origin" if isolated else None)
                assert response.headers.get("Cross-Origin-Embedder-Policy") == ("require-corp" if isolated else None)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        proc.kill()


def test_serve_refuses_a_folder_that_is_not_an_app_and_a_busy_port(tmp_path):
    import socket

    result = runner.invoke(app, ["serve", str(tmp_path)])
    one_line_error(result, f"{tmp_path} has no index.html or model.json", "export CHECKPOINT --web")
    model = tmp_path / "waves.onnx"
    model.write_bytes(b"onnx")  # a model file where its app's folder was meant: not "-o waves.onnx" as the fix
    one_line_error(runner.invoke(app, ["serve", str(model)]), "waves.onnx is a file, not a web app's folder",
                   "export CHECKPOINT --web -o APP_FOLDER, then stylexport serve APP_FOLDER")
    folder = _fake_app(tmp_path / "app")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["serve", str(folder), "--port", str(port)])
    one_line_error(result, f"cannot serve on 127.0.0.1:{port}", "choose another --port")


def test_the_app_folder_is_complete_and_describes_itself(model_and_ckpt, tmp_path, make_image):
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
    result = runner.invoke(app, ["stylize", str(make_image()), "-m", str(tmp_path / "index.html"), "-o",
                                 str(tmp_path / "x.png")])  # a real photo: stylize reads a single photo first
    one_line_error(result, "web artifact is not a model stylexport runs", "model.onnx runs here")


def test_a_missing_runtime_is_one_line_saying_how_to_install_it(model_and_ckpt, tmp_path, monkeypatch):
    import stylexport.web

    monkeypatch.setattr(stylexport.web, "runtime_candidates", lambda: [tmp_path / "nowhere"])
    _, ckpt = model_and_ckpt
    result = runner.invoke(app, ["export", str(ckpt), "--web", "-o", str(tmp_path / "app")])
    one_line_error(result, "format 'web' cannot be built here", "npm ci --omit=dev --prefix", "STYLEXPORT_ORT_WEB")
    assert not (tmp_path / "app").exists()
