"""OpenVINO engines (stylexport/runtime/openvino_backend.py and its builders): FP32 and INT8 IRs of a small
network exported, parity-gated, run through the one runner protocol, and refused when broken."""

import json

import pytest
import torch
from typer.testing import CliRunner

from stylexport.cli import app
from stylexport.errors import StylexportError
from stylexport.runtime import open_runner

pytest.importorskip("openvino", reason="OpenVINO is not installed: pip install 'stylexport[cpu]'")
pytest.importorskip("nncf", reason="NNCF is not installed: pip install 'stylexport[cpu]'")

runner = CliRunner()


@pytest.fixture
def irs(openvino_irs):
    return openvino_irs


def test_ir_pairs_carry_the_contract_and_passed_their_gates(irs):
    report = {a["format"]: a for a in json.loads((irs / "export.json").read_text())["artifacts"]}
    assert report["openvino"]["passed"] and report["openvino"]["parity"]["max_abs"] <= 0.5
    assert report["openvino-int8"]["passed"] and report["openvino-int8"]["parity"]["psnr_db"] >= 30
    assert report["openvino-int8"]["tolerance"] == "PSNR >= 30 dB and no NaN/inf"
    for name, fmt in (("waves.xml", "openvino"), ("waves.int8.xml", "openvino-int8")):
        assert (irs / name).with_suffix(".bin").is_file()
        with open_runner(irs / name) as r:
            assert r.metadata["format"] == fmt and r.metadata["value_range"] == "0-255"
            assert r.engine == ("openvino-fp32" if fmt == "openvino" else "openvino-int8")
    with open_runner(irs / "waves.int8.xml") as r:
        assert "calibration crops" in r.metadata["int8_method"]


def test_int8_quantizes_the_convolutions_and_keeps_instance_norm_inputs_in_floating_point(irs):
    import openvino as ov

    model = ov.Core().read_model(str(irs / "waves.int8.xml"))
    fed = {}  # op type -> how many FakeQuantize outputs feed it
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize":
            for target in op.output(0).get_target_inputs():
                kind = target.get_node().get_type_name()
                fed[kind] = fed.get(kind, 0) + 1
    # 16 convolutions, each behind a reflection pad: all but the first and last take 8-bit inputs
    assert fed.get("Pad", 0) + fed.get("Convolution", 0) == 14, fed
    assert "MVN" not in fed and "Add" not in fed, fed  # instance norm would divide an 8-bit grid's error by a spread


@pytest.mark.parametrize("name", ["waves.xml", "waves.int8.xml"])
def test_openvino_conforms_to_the_runner_protocol(irs, model_and_ckpt, name):
    model, _ = model_and_ckpt
    with open_runner(irs / name) as r:
        with pytest.raises(StylexportError, match=r"expected \(N, 3, H, W\) RGB"):
            r.infer(torch.rand(1, 1, 32, 32))
        with pytest.raises(StylexportError, match="expected H and W >="):
            r.infer(torch.rand(1, 3, 2, 64))
        x = torch.rand(2, 3, 37, 50) * 255  # any size, batch 2: dynamic shapes
        y = r.infer(x)
        assert y.shape == x.shape and y.dtype == torch.float32 and 0 <= float(y.min()) <= float(y.max()) <= 255
        with torch.no_grad():
            expected = model(x)
        err = (y - expected).abs().max()
        assert err < (1.0 if name == "waves.xml" else 80.0)
        assert r.infer_any_size(x[:1]).shape == (1, 3, 37, 50)


def test_a_missing_bin_is_one_line(irs, tmp_path):
    import shutil

    shutil.copy(irs / "waves.xml", tmp_path / "lonely.xml")
    with pytest.raises(StylexportError, match="cannot read OpenVINO model .*lonely.xml.*keep the .xml with its .bin"):
        open_runner(tmp_path / "lonely.xml")


def test_int8_export_is_quiet_and_an_artifact_that_misses_its_gate_is_deleted(model_and_ckpt, tmp_path, monkeypatch,
                                                                              capsys):
    import dataclasses
    import logging

    import stylexport.formats as formats
    from stylexport.export import export

    _, ckpt = model_and_ckpt
    strict = dataclasses.replace(formats.FORMATS["openvino-int8"], tolerance=formats.Tolerance(min_psnr_db=200.0))
    monkeypatch.setitem(formats.FORMATS, "openvino-int8", strict)
    # NNCF logs INFO lines to stdout through a handler of its own, and draws progress bars on stdout: both would
    # land in the middle of the CLI's results
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logging.getLogger("nncf").addHandler(handler)
    try:
        with pytest.raises(StylexportError, match=r"openvino-int8 export .* failed its parity check .*PSNR >= 200"):
            export(ckpt, ["openvino-int8"], tmp_path)
    finally:
        logging.getLogger("nncf").removeHandler(handler)
    assert not list(tmp_path.glob("*.xml")) and not list(tmp_path.glob("*.bin"))
    assert [r.getMessage() for r in records if r.levelno < logging.WARNING] == []
    out = capsys.readouterr().out
    assert "Statistics collection" not in out and "Fast Bias correction" not in out


def test_bench_runs_openvino_beside_torch(irs, model_and_ckpt, tmp_path):
    out = tmp_path / "b.json"
    result = runner.invoke(app, ["bench", str(irs / "waves.xml"), "--sizes", "32x48", "--repeats", "3", "--warmup",
                                 "1", "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["model_format"] == "openvino" and data["reference"].startswith("openvino-fp32")
    # BF16 runs beside FP32 where the CPU has BF16 instructions, and is skipped with the reason where it has not
    bf16 = set() if "openvino-bf16" in data["skipped"] else {"openvino-bf16"}
    assert {r["backend"] for r in data["results"]} == {"openvino-fp32"} | bf16
