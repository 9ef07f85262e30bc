"""ExecuTorch programs (stylexport/export/executorch.py, runtime/executorch_backend.py): FP32 and FP16 .pte files
exported with the XNNPACK delegate, parity-gated, run through the one runner protocol by ExecuTorch's own
runtime, bounded in size as their sidecar says, and used by stylize and bench."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylexport.cli import app
from stylexport.errors import StylexportError
from stylexport.runtime import open_runner
from tests.conftest import one_line_error

pytest.importorskip("executorch", reason="ExecuTorch is not installed: pip install 'stylexport[mobile]'")

runner = CliRunner()
BOUND = 256  # the smallest bound export takes: a cheap memory plan, and easy to exceed


@pytest.fixture(scope="module")
def programs(model_and_ckpt, tmp_path_factory):
    _, ckpt = model_and_ckpt
    out = tmp_path_factory.mktemp("executorch")
    result = runner.invoke(app, ["export", str(ckpt), "--executorch", "--pte-max-side", str(BOUND), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_both_programs_pass_their_gates_and_describe_themselves(programs):
    report = {a["format"]: a for a in json.loads((programs / "export.json").read_text())["artifacts"]}
    assert report["executorch"]["passed"] and report["executorch"]["parity"]["max_abs"] <= 0.5
    assert report["executorch-fp16"]["passed"] and report["executorch-fp16"]["parity"]["psnr_db"] >= 45
    assert report["executorch-int8"]["passed"] and report["executorch-int8"]["parity"]["psnr_db"] >= 30
    # INT8 weights: a quarter of the FP32 file (plus the graph, the same in both)
    assert (programs / "waves.int8.pte").stat().st_size < 0.35 * (programs / "waves.pte").stat().st_size
    assert "dynamic INT8" in json.loads((programs / "waves.int8.pte.json").read_text())["int8_method"]
    for name, precision in (("waves.pte", "fp32"), ("waves.fp16.pte", "fp16"), ("waves.int8.pte", "int8")):
        side = json.loads((programs / f"{name}.json").read_text())
        assert side["precision"] == precision and side["delegate"] == "XNNPACK"
        assert side["max_side"] == BOUND and side["value_range"] == "0-255" and side["method"] == "forward"
        assert (programs / name).read_bytes()[4:8] == b"ET12"  # ExecuTorch's flatbuffer file identifier


@pytest.mark.parametrize("ends_in_fp32", [True, False])
def test_int8_keeps_the_first_and_last_convolutions_in_fp32(model_and_ckpt, ends_in_fp32):
    """Which convolutions the INT8 recipe quantizes: a quantized one reads its weight through a dequantize node,
    a float one straight from its parameter. By default the first (pixels in) and last (pixels out) stay FP32."""
    from stylexport.export.executorch import _dynamic_int8

    model, _ = model_and_ckpt
    example = torch.rand(1, 3, 40, 44) * 255
    shapes = ({2: torch.export.Dim.DYNAMIC(min=16, max=64), 3: torch.export.Dim.DYNAMIC(min=16, max=64)},)
    program = torch.export.export(model.eval(), (example,), dynamic_shapes=shapes, strict=False)
    quantized = _dynamic_int8(program, example, shapes, ends_in_fp32=ends_in_fp32)
    convs = [n for n in quantized.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    weights_quantized = ["dequantize" in str(conv.args[1].target) for conv in convs]
    assert len(convs) == 16  # 3 encoder, 10 residual, 2 decoder convolutions and the head
    assert weights_quantized == ([not ends_in_fp32] + [True] * 14 + [not ends_in_fp32])


@pytest.mark.parametrize(("name", "engine", "max_abs", "min_psnr"), [("waves.pte", "executorch-fp32", 0.5, None),
                                                                 # a CPU with AVX512-FP16 (Sapphire Rapids) computes
                                                                 # FP16 natively: 4.4 at worst on one pixel, 48 dB
                                                                 ("waves.fp16.pte", "executorch-fp16", 8.0, 40.0),
                                                                 ("waves.int8.pte", "executorch-int8", None, 30.0)])
def test_programs_conform_to_the_runner_protocol(programs, model_and_ckpt, name, engine, max_abs, min_psnr):
    from stylexport.metrics import compare

    model, _ = model_and_ckpt
    with open_runner(programs / name) as r:
        assert r.engine == r.name == engine
        with pytest.raises(StylexportError, match=r"expected \(N, 3, H, W\) RGB"):
            r.infer(torch.rand(1, 1, 32, 32))
        with pytest.raises(StylexportError, match="expected H and W >="):
            r.infer(torch.rand(1, 3, 2, 64))
        x = torch.rand(2, 3, 37, 50) * 255  # not multiples of 4; a batch runs image by image
        y = r.infer(x)
        assert y.shape == x.shape and y.dtype == torch.float32 and 0 <= float(y.min()) <= float(y.max()) <= 255
        with torch.no_grad():
            parity = compare(y, model(x))
        assert max_abs is None or parity.max_abs < max_abs, parity
        assert min_psnr is None or parity.psnr_db >= min_psnr, parity
        torch.testing.assert_close(r.bind(x)(x), y)
        with pytest.raises(StylexportError, match=f"up to {BOUND}: stylize with --size {BOUND}, or export it again"):
            r.infer(torch.rand(1, 3, 64, BOUND + 4))
    assert not hasattr(r, "_method") and not hasattr(r, "_program")


def test_stylize_with_a_program_matches_the_checkpoint(programs, model_and_ckpt, make_image, tmp_path):
    _, ckpt = model_and_ckpt
    photo = make_image(h=150, w=300)  # wider than the bound: --size brings it inside
    outs = {}
    for label, model in (("pte", programs / "waves.pte"), ("torch", ckpt)):
        out = tmp_path / f"{label}.png"
        extra = ["--backend", "torch-fp32"] if label == "torch" else []
        result = runner.invoke(app, ["stylize", str(photo), "-m", str(model), "-o", str(out), "--size",
                                     str(BOUND), *extra])
        assert result.exit_code == 0, result.output
        outs[label] = np.asarray(Image.open(out), dtype=np.int16)
    assert "engine executorch-fp32" in runner.invoke(app, ["stylize", str(photo), "-m", str(programs / "waves.pte"),
                                                               "-o", str(tmp_path / "again.png"), "--size",
                                                               str(BOUND)]).output
    assert outs["pte"].shape == outs["torch"].shape == (BOUND // 2, BOUND, 3)
    assert np.abs(outs["pte"] - outs["torch"]).max() <= 1


def test_a_photo_over_the_bound_is_one_line_naming_the_fix(programs, make_image, tmp_path):
    result = runner.invoke(app, ["stylize", str(make_image(h=64, w=300)), "-m", str(programs / "waves.pte"), "-o",
                                 str(tmp_path / "o.png")])
    one_line_error(result, f"up to {BOUND}", f"--size {BOUND}", "--pte-max-side")


def test_a_program_without_its_sidecar_runs_as_a_foreign_one_with_the_same_pixels(programs, tmp_path):
    shutil.copy(programs / "waves.pte", tmp_path / "lonely.pte")
    x = torch.rand(1, 3, 40, 56) * 255
    with open_runner(programs / "waves.pte") as ours, open_runner(tmp_path / "lonely.pte") as lonely:
        assert lonely.metadata == {"value_range": "0-255", "layout": "NCHW", "dtype": "float32",
                                   "max_size": f"{BOUND}x{BOUND}"}  # found in the program: dynamic up to its plan
        torch.testing.assert_close(lonely.infer_any_size(x), ours.infer_any_size(x))
        with pytest.raises(StylexportError, match=f"up to {BOUND}x{BOUND}: stylize with --size {BOUND}"):
            lonely.infer(torch.rand(1, 3, 32, BOUND + 4))


def test_broken_programs_are_one_line(programs, tmp_path):
    (tmp_path / "cut.pte").write_bytes((programs / "waves.pte").read_bytes()[:5000])
    shutil.copy(programs / "waves.pte.json", tmp_path / "cut.pte.json")
    with pytest.raises(StylexportError, match="cannot load ExecuTorch program .*cut.pte .*export it again"):
        open_runner(tmp_path / "cut.pte")


def test_bench_runs_a_program(programs, tmp_path):
    out = tmp_path / "b.json"
    result = runner.invoke(app, ["bench", str(programs / "waves.pte"), "--sizes", "32x48", "--repeats", "3",
                                 "--warmup", "1", "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["model_format"] == "executorch"
    assert {r["backend"] for r in data["results"]} == {"executorch-fp32"}
