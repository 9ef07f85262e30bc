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

from .conftest import smooth_image, swapped_srgb_profile

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

def build_host(folder, **options):
    """``stylexport engines build``'s library call; skips where the C++ toolchain is missing, except in CI."""
    from stylexport.engines import build

    required = os.environ.get("STYLEXPORT_REQUIRE_CPP") == "1"
    try:
        return build(folder, **options)
    except StylexportError as exc:
        if required:
            pytest.fail(f"C++ host did not build: {exc}")
        pytest.skip(f"C++ host not built here: {exc}")


@pytest.fixture(scope="session")
def cpp_host(tmp_path_factory):
    return build_host(tmp_path_factory.mktemp("cpp-build"))


def run_host(program, *args):
    return subprocess.run([str(program), *map(str, args)], capture_output=True, text=True, timeout=600)


def photo_png(tmp_path, side=101):
    """The bundled photo as a PNG, ``side`` px on its longer side (101x76: not a multiple of 4 either way)."""
    photo = resize_max_side(read_image(sample_paths()[0]), side)
    src = tmp_path / "photo.png"
    Image.fromarray(photo.round().to(torch.uint8).permute(1, 2, 0).numpy()).save(src)
    return src


def test_cpp_host_matches_python_within_one_level(cpp_host, aoti_package, tmp_path):
    src = photo_png(tmp_path)
    out = tmp_path / "stylized.png"
    result = run_host(cpp_host, aoti_package, src, out, "--warmup", "1", "--repeat", "3", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backend"] == "aoti-cpu" and summary["repeat"] == 3 and summary["style_name"] == "waves"
    assert (summary["height"], summary["width"]) == tuple(read_image(src).shape[1:])
    assert 0 < summary["p50_ms"] <= summary["p95_ms"]
    times = sorted(summary["times_ms"])
    assert len(times) == 3 and summary["p50_ms"] == pytest.approx(times[1])  # the median of 3 runs

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
    cut = tmp_path / "cut.jpg"  # a JPEG cut short was stylized grey to its end, where Python refuses it
    Image.fromarray(smooth_image(64, 64)).save(tmp_path / "whole.jpg", quality=95)
    cut.write_bytes((tmp_path / "whole.jpg").read_bytes()[:1500])
    cases = [
        ((aoti_package, cut, tmp_path / "o.png"), "cannot decode image " + str(cut) + ": Premature end of JPEG file"),
        ((aoti_package, text, tmp_path / "o.png"), "not a PNG or JPEG"),
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


# --- the C++ host's OpenVINO backend: IRs on the CPU, the contract from the IR itself, no libtorch needed ----


def test_cpp_host_pads_an_image_below_the_engines_smallest_side_as_python_does(cpp_host, aoti_package, tmp_path):
    """The host refused an image with a side under the engine's min_side ("needs H and W >= 36": every photo
    under 36 px for a shipped style, whose networks pad their edges by 32 px). It now reflect-pads it up and
    crops the result, in the rounds of Python's size policy: the pixels `stylexport stylize` gives, within a
    level, on an edge-padded OpenVINO IR (36 px) and the 16 px AOTInductor package; a 1 px side is repeated."""
    from stylexport.checkpoint import save_checkpoint
    from stylexport.export import export

    from .conftest import random_net

    ckpt = save_checkpoint(tmp_path / "padded.safetensors", random_net(bias=0.3, head_gain=20.0, edge_pad=32),
                           {"style_name": "padded"})
    ir = export(ckpt, ["openvino"], tmp_path / "ir")[0].path
    rng = np.random.default_rng(0)
    for engine, (h, w) in ((ir, (20, 30)), (ir, (3, 40)), (ir, (1, 40)), (aoti_package, (8, 40))):
        src, out = tmp_path / f"small-{h}x{w}.png", tmp_path / f"out-{h}x{w}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(src)
        result = run_host(cpp_host, engine, src, out, "--json")
        assert result.returncode == 0, result.stderr
        assert (json.loads(result.stdout)["height"], json.loads(result.stdout)["width"]) == (h, w)
        cpp = np.asarray(Image.open(out).convert("RGB"))
        photo = torch.from_numpy(np.array(Image.open(src))).permute(2, 0, 1).float()[None]
        with open_runner(engine) as python_runner:
            python = to_u8(python_runner.infer_any_size(photo))
        assert cpp.shape == python.shape == (h, w, 3)
        diff = np.abs(cpp.astype(np.int16) - python.astype(np.int16))
        assert diff.max() <= 1, f"{engine.name} {h}x{w}: {(diff > 1).sum()} pixels differ by more than 1 level"


@pytest.mark.parametrize(("name", "backend"), [("waves.xml", "openvino-fp32"), ("waves.int8.xml", "openvino-int8")])
def test_cpp_host_runs_openvino_irs_like_python(cpp_host, openvino_irs, tmp_path, name, backend):
    src, out = photo_png(tmp_path), tmp_path / "stylized.png"
    result = run_host(cpp_host, openvino_irs / name, src, out, "--repeat", "2", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["backend"] == backend and summary["style_name"] == "waves" and summary["repeat"] == 2
    cpp = np.asarray(Image.open(out).convert("RGB"))
    with open_runner(openvino_irs / name) as python_runner:  # float32 NCHW in, where C++ feeds uint8 NHWC
        python = to_u8(python_runner.infer(read_image(src)[None]))
    assert cpp.shape == python.shape
    diff = np.abs(cpp.astype(np.int16) - python.astype(np.int16))
    assert diff.max() <= 1, f"{(diff > 1).sum()} pixels differ by more than 1 level"
    assert cpp.std() > 5  # a real picture, not a flat one


def test_cpp_host_reads_phone_and_print_jpegs_as_python_does(cpp_host, openvino_irs, tmp_path):
    """A phone stores a portrait photo on its side with an EXIF orientation, which Python's reader applies: the
    host stylized it on its side and wrote it so (a 640x427 picture for a 427x640 one). A CMYK JPEG (print) was
    refused ("Unsupported color conversion request"). Both now read as PIL reads them: the same pixels out."""
    pixels = smooth_image(40, 56, seed=5)  # not square: a turn that is missed changes the shape
    cases = {f"orientation-{n}.jpg": n for n in range(1, 9)}
    for name, orientation in cases.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pixels).save(tmp_path / name, quality=95, exif=exif.tobytes())
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    with open_runner(openvino_irs / "waves.xml") as python_runner:
        for name in [*cases, "print.jpg"]:
            out = tmp_path / f"{name}.png"
            result = run_host(cpp_host, openvino_irs / "waves.xml", tmp_path / name, out)
            assert result.returncode == 0, f"{name}: {result.stderr}"
            python = to_u8(python_runner.infer(read_image(tmp_path / name)[None]))  # EXIF applied, CMYK to RGB
            cpp = np.asarray(Image.open(out).convert("RGB"))
            assert cpp.shape == python.shape, name
            assert np.abs(cpp.astype(np.int16) - python.astype(np.int16)).max() <= 1, name
    assert Image.open(tmp_path / "orientation-6.jpg.png").size == (40, 56)  # turned upright: 56 high


def _png16(path, pixels: np.ndarray, color_type: int):
    """A 16-bit PNG written by hand (PIL writes 16-bit grey only): ``pixels`` uint16 (H, W, C)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = pixels.shape[:2]
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)) +
                     chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_cpp_host_reads_every_kind_of_png_as_python_does(cpp_host, openvino_irs, tmp_path):
    """libpng's simplified API, which the host used, blends transparency and converts 16-bit samples in linear
    light: a half-transparent pixel or a 16-bit grey photo came out up to 44 and 32 levels off the picture Python
    reads (PIL: 16-bit grey scaled and rounded, other 16-bit images by their high byte, alpha blended on white in
    8-bit sRGB), and a PNG's EXIF orientation was not applied. Each kind now gives Python's pixels."""
    rgb = smooth_image(40, 56, seed=7)
    rgba = np.dstack([rgb, np.tile(np.linspace(0, 255, 56).astype(np.uint8), (40, 1))])  # 0 to opaque
    wide = rgb.astype(np.uint16) * 256 + 200  # 16-bit: scaling and taking the high byte give other values
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgba).convert("LA").save(tmp_path / "la.png")
    Image.fromarray(wide[..., 0]).save(tmp_path / "grey16.png")  # PIL writes it (and reads it as I;16)
    palette = Image.fromarray(rgb).convert("P")
    palette.save(tmp_path / "palette-transparent.png", transparency=5)
    Image.fromarray(rgb).convert("1").save(tmp_path / "bilevel.png")
    _png16(tmp_path / "rgb16.png", wide, 2)
    _png16(tmp_path / "rgba16.png", np.dstack([wide, wide[..., :1]]), 6)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored on its side (a quarter turn anticlockwise to see it): PIL's exif_transpose turns it
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, k=-1))).save(tmp_path / "turned.png", exif=exif.tobytes())
    names = ["rgba.png", "la.png", "grey16.png", "palette-transparent.png", "bilevel.png", "rgb16.png", "rgba16.png",
             "turned.png"]
    with open_runner(openvino_irs / "waves.xml") as python_runner:
        for name in names:
            out = tmp_path / f"out-{name}"
            result = run_host(cpp_host, openvino_irs / "waves.xml", tmp_path / name, out)
            assert result.returncode == 0, f"{name}: {result.stderr}"
            python = to_u8(python_runner.infer(read_image(tmp_path / name)[None]))
            cpp = np.asarray(Image.open(out).convert("RGB"))
            assert cpp.shape == python.shape == (40, 56, 3), name
            assert np.abs(cpp.astype(np.int16) - python.astype(np.int16)).max() <= 1, name


def test_cpp_host_applies_an_embedded_colour_profile_as_python_does(cpp_host, openvino_irs, tmp_path):
    """A phone's Display P3 photo, an Adobe RGB scan: Python converts it to sRGB through its embedded profile
    (LittleCMS), and the host fed the stored numbers to the engine. Here the profile swaps red and green, so the
    two readings differ by a whole picture. A profile LittleCMS cannot use for the pixels (broken, or an RGB
    profile on a CMYK JPEG) is ignored with a warning on both sides; a grey image's profile is not applied."""
    from PIL import ImageCms

    rgb = smooth_image(40, 56, seed=11)
    swapped = swapped_srgb_profile()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgba = np.dstack([rgb, np.tile(np.linspace(0, 255, 56).astype(np.uint8), (40, 1))])
    Image.fromarray(rgb).save(tmp_path / "swapped.png", icc_profile=swapped)
    Image.fromarray(rgba).save(tmp_path / "swapped-rgba.png", icc_profile=swapped)
    Image.fromarray(rgb).save(tmp_path / "swapped.jpg", icc_profile=swapped, quality=95)
    Image.fromarray(rgb).save(tmp_path / "srgb.jpg", icc_profile=srgb, quality=95)
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.jpg", icc_profile=swapped, quality=95)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk-rgb-profile.jpg", icc_profile=swapped, quality=95)
    Image.fromarray(rgb).save(tmp_path / "broken.png", icc_profile=b"not a colour profile at all" * 8)
    Image.fromarray(rgb).save(tmp_path / "untagged.png")
    assert (read_image(tmp_path / "swapped.png") - read_image(tmp_path / "untagged.png")).abs().max() > 100
    warned = {"broken.png", "cmyk-rgb-profile.jpg"}
    with open_runner(openvino_irs / "waves.xml") as python_runner:
        for name in ("swapped.png", "swapped-rgba.png", "swapped.jpg", "srgb.jpg", "grey.jpg", "cmyk-rgb-profile.jpg",
                     "broken.png"):
            out = tmp_path / f"out-{name}.png"
            result = run_host(cpp_host, openvino_irs / "waves.xml", tmp_path / name, out)
            assert result.returncode == 0, f"{name}: {result.stderr}"
            assert ("ignoring the embedded colour profile of" in result.stderr) == (name in warned), result.stderr
            python = to_u8(python_runner.infer(read_image(tmp_path / name)[None]))
            cpp = np.asarray(Image.open(out).convert("RGB"))
            assert cpp.shape == python.shape == (40, 56, 3), name
            assert np.abs(cpp.astype(np.int16) - python.astype(np.int16)).max() <= 1, name


def edited_ir(openvino_irs, tmp_path, name, **rt_info):
    import openvino as ov

    model = ov.Core().read_model(str(openvino_irs / "waves.xml"))
    for key, value in rt_info.items():
        model.set_rt_info(value, ["stylexport", key])
    ov.save_model(model, str(tmp_path / name), compress_to_fp16=False)
    return tmp_path / name


def foreign_ir(tmp_path):
    """An IR that stylexport did not write: a ReLU over an image, no contract in its runtime info."""
    import openvino as ov
    import openvino.opset13 as ops

    image = ops.parameter([1, 3, -1, -1], ov.Type.f32, name="input")
    ov.save_model(ov.Model([ops.relu(image)], [image], "foreign"), str(tmp_path / "foreign.xml"))
    return tmp_path / "foreign.xml"


def test_cpp_host_refuses_openvino_irs_it_cannot_run(cpp_host, openvino_irs, aoti_package, tmp_path, make_image):
    import openvino as ov

    lonely = tmp_path / "lonely.xml"
    shutil.copy(openvino_irs / "waves.xml", lonely)
    ir = openvino_irs / "waves.xml"
    cases = [
        ((edited_ir(openvino_irs, tmp_path, "v2.xml", contract_version="2"),), "contract_version '2', this host "
         "implements '1'"),
        ((edited_ir(openvino_irs, tmp_path, "unit.xml", value_range="0-1"),), "value_range '0-1', this host feeds"),
        ((edited_ir(openvino_irs, tmp_path, "onnx.xml", format="onnx"),), "format 'onnx' does not match"),
        ((foreign_ir(tmp_path),), "carries no stylexport contract in its runtime info"),
        ((lonely,), "keep the .xml with its .bin"),
        ((tmp_path / "missing.xml",), "engine not found"),
        ((ir, "--device", "cuda"), "OpenVINO IRs run on the CPU in this host"),
        ((ir, "--precision", "fp8"), "unknown precision 'fp8'; OpenVINO runs fp32 or bf16"),
        ((aoti_package, "--precision", "bf16"), "--precision is an OpenVINO option"),
        ((tmp_path / "model.onnx",), "unknown kind '.onnx'"),
    ]
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):  # else it runs: the next test
        cases.append(((ir, "--precision", "bf16"), "this CPU has no BF16 instructions"))
    for (engine, *options), message in cases:
        out = tmp_path / "out.png"
        result = run_host(cpp_host, engine, make_image(), out, *options)
        assert result.returncode == 2, (engine, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and not out.exists()


def test_cpp_host_runs_openvino_bf16_where_the_cpu_has_it(cpp_host, openvino_irs, tmp_path):
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no BF16 instructions (the host refuses --precision bf16 here: tested above)")
    src, out = photo_png(tmp_path), tmp_path / "bf16.png"
    result = run_host(cpp_host, openvino_irs / "waves.xml", src, out, "--precision", "bf16", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "openvino-bf16"
    with open_runner(openvino_irs / "waves.xml") as python_runner:
        python = to_u8(python_runner.infer(read_image(src)[None]))
    error = np.asarray(Image.open(out).convert("RGB")).astype(np.float64) - python
    assert 10 * np.log10(255 ** 2 / max(np.mean(error ** 2), 1e-12)) > 30  # BF16 arithmetic: close, not equal


def test_a_host_without_libtorch_runs_openvino_irs(cpp_host, openvino_irs, aoti_package, tmp_path_factory, tmp_path):
    program = build_host(tmp_path_factory.mktemp("cpp-openvino-only"), aoti=False, openvino=True)
    linked = subprocess.run(["ldd", str(program)], capture_output=True, text=True).stdout
    assert "libopenvino" in linked and "libtorch" not in linked and "libc10" not in linked, linked
    src = photo_png(tmp_path, side=64)
    for host, out in ((program, "alone.png"), (cpp_host, "full.png")):
        result = run_host(host, openvino_irs / "waves.int8.xml", src, tmp_path / out)
        assert result.returncode == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "alone.png")), np.asarray(Image.open(tmp_path / "full.png")))
    result = run_host(program, aoti_package, src, tmp_path / "o.png")
    assert result.returncode == 2 and "this build has no AOTInductor backend" in result.stderr


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


def test_bench_on_cpu_runs_aoti_by_default_when_nothing_is_left_to_compile(aoti_package, model_and_ckpt, monkeypatch,
                                                                           tmp_path):
    """aoti-cpu waits to be named on a CPU only because compiling a package takes minutes: a package given, or
    one already in the engine cache, runs by default."""
    import importlib

    from stylexport.stylize import engine_cache

    bench = importlib.import_module("stylexport.bench.run")  # the module, not the run() the package exports
    monkeypatch.setattr(bench, "BENCH_ENGINES", ("torch-fp32", "aoti-cpu"))  # not minutes of other engines
    monkeypatch.setenv("STYLEXPORT_CACHE_DIR", str(tmp_path / "cache"))
    _, ckpt = model_and_ckpt

    def bench_json(model, name):
        result = runner.invoke(app, ["bench", str(model), "--sizes", "32x48", "--repeats", "2", "--warmup", "1",
                                     "--device", "cpu", "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / name).read_text())

    given = bench_json(aoti_package, "given.json")  # before: "no engine could run waves.aoti.pt2 here"
    assert [r["backend"] for r in given["results"]] == ["aoti-cpu"] and not given["skipped"]
    not_built = bench_json(ckpt, "not-built.json")
    assert not_built["skipped"]["aoti-cpu"].startswith("compiling takes minutes on CPU")
    engine_cache(ckpt).mkdir(parents=True)
    copy_package(aoti_package, engine_cache(ckpt))  # what an earlier `bench --backends aoti-cpu` leaves
    cached = bench_json(ckpt, "cached.json")
    assert "aoti-cpu" not in cached["skipped"] and cached["artifacts"]["aoti-cpu"].startswith(str(engine_cache(ckpt)))
    assert {r["backend"] for r in cached["results"]} == {"torch-fp32", "aoti-cpu"}


def test_bench_times_the_aoti_package(aoti_package, model_and_ckpt, monkeypatch, tmp_path):
    import stylexport.stylize as stylize
    from stylexport.formats import open_engine

    _, ckpt = model_and_ckpt
    monkeypatch.setattr(stylize, "open_cached", lambda checkpoint, engine, device: open_engine(engine, aoti_package,
                                                                                             device))
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
