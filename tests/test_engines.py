"""AOTInductor packages (Python) and the C++ host in engines/cpp, end to end on CPU.

The package is compiled once per test session (a few minutes on 2 CPU cores) and the C++ host is built
once with ``stylexport engines build``. Where cmake or the C++ libraries are missing the C++ tests skip with
the reason, except under STYLEXPORT_REQUIRE_CPP=1 (CI), where that is a failure.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylexport.cli import app
from stylexport.errors import StylexportError
from stylexport.fileio import sha256_file
from stylexport.image import read_image, resize_max_side, sample_paths
from stylexport.runtime import open_runner

from .conftest import smooth_image

runner = CliRunner()


@pytest.fixture(scope="session")
def aoti_package(model_and_ckpt, tmp_path_factory):
    _, ckpt = model_and_ckpt
    out = tmp_path_factory.mktemp("aoti")
    result = runner.invoke(app, ["export", str(ckpt), "--aoti", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out / "waves.aoti.pt2"


def to_u8(t: torch.Tensor) -> np.ndarray:
    """What every stylexport host writes: clamp, round half to even, uint8 HWC."""
    return t[0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def copy_package(package, tmp_path, edit=None):
    target = tmp_path / package.name
    shutil.copy(package, target)
    meta = json.loads(open(str(package) + ".json").read())
    if edit:
        edit(meta)
    (tmp_path / (package.name + ".json")).write_text(json.dumps(meta))
    return target


def test_aoti_package_describes_itself_and_passed_parity(aoti_package, model_and_ckpt):
    _, ckpt = model_and_ckpt
    report = json.loads((aoti_package.parent / "export.json").read_text())["artifacts"][0]
    assert report["format"] == "aoti-cpu" and report["passed"]
    assert report["parity"]["max_abs"] <= 0.5
    meta = json.loads(open(str(aoti_package) + ".json").read())
    assert meta["format"] == "aoti-cpu" and meta["device"] == "cpu" and meta["contract_version"] == "1"
    assert meta["source_sha256"] == sha256_file(ckpt)
    assert meta["input_name"] == "image" and meta["value_range"] == "0-255" and meta["style_name"] == "waves"
    # The same contract is inside the package itself.
    embedded = open_runner(aoti_package)._model.loader.get_metadata()
    assert embedded["stylexport.source_sha256"] == meta["source_sha256"]
    assert embedded["stylexport.contract_version"] == "1"


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (1, 3, 37, 53), (2, 3, 45, 61)])
def test_aoti_runner_matches_torch_at_any_size(aoti_package, model_and_ckpt, shape):
    model, _ = model_and_ckpt
    torch.manual_seed(shape[2])
    x = torch.rand(shape) * 255
    with torch.no_grad():
        expected = model(x)
    got = open_runner(aoti_package).infer(x)
    assert got.shape == x.shape
    assert float((got - expected).abs().max()) < 0.05


def test_aoti_runner_refuses_a_mismatched_or_missing_sidecar(aoti_package, tmp_path):
    bad = copy_package(aoti_package, tmp_path, lambda m: m.update(contract_version="2"))
    with pytest.raises(StylexportError, match="contract_version '2'.*re-export"):
        open_runner(bad)
    (tmp_path / (bad.name + ".json")).unlink()
    with pytest.raises(StylexportError, match="has no sidecar"):
        open_runner(bad)


def test_aoti_runner_rejects_small_inputs(aoti_package):
    with pytest.raises(StylexportError, match="expected H and W >= 16"):
        open_runner(aoti_package).infer(torch.zeros(1, 3, 8, 40))


# --- the C++ host -------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def cpp_host(tmp_path_factory):
    from stylexport.engines import build

    required = os.environ.get("STYLEXPORT_REQUIRE_CPP") == "1"
    try:
        return build(tmp_path_factory.mktemp("cpp-build"))
    except StylexportError as exc:
        if required:
            pytest.fail(f"C++ host did not build: {exc}")
        pytest.skip(f"C++ host not built here: {exc}")


def run_host(program, *args):
    return subprocess.run([str(program), *map(str, args)], capture_output=True, text=True, timeout=600)


def test_cpp_host_matches_python_within_one_level(cpp_host, aoti_package, tmp_path):
    photo = resize_max_side(read_image(sample_paths()[0]), 101)  # 101x76: not a multiple of 4 either way
    src = tmp_path / "photo.png"
    Image.fromarray(photo.round().to(torch.uint8).permute(1, 2, 0).numpy()).save(src)
    out = tmp_path / "stylized.png"
    result = run_host(cpp_host, aoti_package, src, out, "--warmup", "1", "--repeat", "3", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backend"] == "aoti-cpu" and summary["repeat"] == 3 and summary["style_name"] == "waves"
    assert (summary["height"], summary["width"]) == tuple(photo.shape[1:])
    assert 0 < summary["p50_ms"] <= summary["p95_ms"]

    cpp = np.asarray(Image.open(out).convert("RGB"))
    python = to_u8(open_runner(aoti_package).infer(read_image(src)[None]))
    assert cpp.shape == python.shape
    diff = np.abs(cpp.astype(np.int16) - python.astype(np.int16))
    assert diff.max() <= 1, f"{(diff > 1).sum()} pixels differ by more than 1 level"
    assert cpp.std() > 5  # a real picture, not a flat one


def test_cpp_host_reads_jpeg_and_writes_jpeg(cpp_host, aoti_package, tmp_path):
    src = tmp_path / "photo.jpg"
    Image.fromarray(smooth_image(40, 72, seed=3)).save(src, quality=95)
    out = tmp_path / "out.jpg"
    result = run_host(cpp_host, aoti_package, src, out)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (72, 40)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(contract_version="2"), "contract_version '2', this host implements '1'"),
    (lambda m: m.update(input_name="input"), "input_name 'input', this host feeds 'image'"),
    (lambda m: m.update(value_range="0-1"), "value_range '0-1', this host feeds '0-255'"),
    (lambda m: m.update(format="tensorrt-plan"), "format 'tensorrt-plan' does not match"),
    (lambda m: m.pop("min_side"), "has no 'min_side'"),
])
def test_cpp_host_refuses_mismatched_metadata(cpp_host, aoti_package, tmp_path, make_image, edit, message):
    bad = copy_package(aoti_package, tmp_path, edit)
    result = run_host(cpp_host, bad, make_image(), tmp_path / "out.png")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no trace
    assert not (tmp_path / "out.png").exists()


def test_cpp_host_bad_inputs_get_one_line(cpp_host, aoti_package, tmp_path, make_image):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cases = [
        ((aoti_package, text, tmp_path / "o.png"), "not a PNG or JPEG"),
        ((aoti_package, make_image("tiny.png", h=8, w=40), tmp_path / "o.png"), "needs H and W >= 16"),
        ((aoti_package, tmp_path / "missing.png", tmp_path / "o.png"), "image not found"),
        ((aoti_package, make_image(), tmp_path / "o.bmp"), "use .png or .jpg"),
        ((tmp_path / "none.pt2", make_image(), tmp_path / "o.png"), "engine not found"),
        ((aoti_package, make_image(), tmp_path / "o.png", "--repeat", "x"), "--repeat 'x' is not a count"),
    ]
    for args, message in cases:
        result = run_host(cpp_host, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    missing_sidecar = tmp_path / "alone.aoti.pt2"
    shutil.copy(aoti_package, missing_sidecar)
    result = run_host(cpp_host, missing_sidecar, make_image(), tmp_path / "o.png")
    assert result.returncode == 2 and "has no metadata sidecar" in result.stderr


def test_engines_build_names_a_missing_source(tmp_path):
    result = runner.invoke(app, ["engines", "build", "--source", str(tmp_path), "-o", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "has no CMakeLists.txt" in result.output


# --- GPU: the CUDA FP16 package through the same host ------------------------------------------------------

@pytest.mark.gpu
def test_cuda_fp16_package_matches_and_cpp_host_runs_it(model_and_ckpt, cpp_host, tmp_path):
    _, ckpt = model_and_ckpt
    from stylexport.export import export

    reports = {r.format: r for r in export(ckpt, ["aoti-cuda-fp16"], tmp_path)}
    assert reports["aoti-cuda-fp16"].passed and reports["aoti-cuda-fp16"].parity["psnr_db"] >= 45
    package = tmp_path / "waves.aoti-cuda-fp16.pt2"
    src = tmp_path / "photo.png"
    Image.fromarray(smooth_image(1080, 1920, seed=1)).save(src)
    result = run_host(cpp_host, package, src, tmp_path / "out.png", "--warmup", "5", "--repeat", "50", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backend"] == "aoti-cuda"
    cpp = np.asarray(Image.open(tmp_path / "out.png").convert("RGB")).astype(np.int16)
    python = to_u8(open_runner(package).infer(read_image(src)[None])).astype(np.int16)
    assert np.abs(cpp - python).max() <= 1
    print(f"C++ host, AOTInductor CUDA FP16, 1080p end-to-end: p50 {summary['p50_ms']:.2f} ms")


def test_bench_times_the_aoti_package(aoti_package, model_and_ckpt, monkeypatch, tmp_path):
    import importlib

    bench = importlib.import_module("stylexport.bench.run")  # the module, not the run() the package exports
    _, ckpt = model_and_ckpt
    monkeypatch.setattr(bench, "_artifact_builder", lambda checkpoint, workdir, exported=None: lambda fmt: aoti_package)
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", str(ckpt), "--backends", "torch-fp32,aoti-cpu,aoti-cuda-fp16", "--sizes",
                                 "32x48", "--repeats", "3", "--warmup", "1", "-o", str(out),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    rows = {r["backend"]: r for r in data["results"]}
    assert rows["aoti-cpu"]["compute"]["n"] == 3
    assert rows["aoti-cpu"]["quality"]["max_abs"] < 0.05
    from stylexport.formats import ENGINES, unavailable

    why = unavailable(ENGINES["aoti-cuda-fp16"], torch.device("cpu"))  # the reason doctor shows too
    assert data["skipped"]["aoti-cuda-fp16"] == why and "needs a CUDA GPU" in why
