"""``stylexport info``: what a model file says about itself, read back from what export and training wrote."""

import importlib.util
import json

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from typer.testing import CliRunner

from stylexport.artifacts import sidecar_path
from stylexport.cli import app
from stylexport.contract import INPUT_NAME, OUTPUT_NAME
from stylexport.errors import StylexportError
from stylexport.export import export
from stylexport.fileio import sha256_file
from stylexport.info import describe
from tests.conftest import one_line_error
from tests.test_runtime import foreign_model

runner = CliRunner()
NO_GPU = not torch.cuda.is_available()


def test_a_checkpoint_says_its_size_sha_training_metadata_and_engines(model_and_ckpt):
    model, ckpt = model_and_ckpt
    d = describe(ckpt)
    assert d["format"] == "checkpoint" and d["files"] == ["waves.safetensors"]
    assert d["parameters"] == sum(p.numel() for p in model.parameters())
    assert d["sha256"] == sha256_file(ckpt) and d["stored_as"] == "F32"
    assert d["metadata"]["style_name"] == "waves" and d["bytes"] == ckpt.stat().st_size
    engines = {e["engine"]: e for e in d["engines"]}
    assert engines["torch-fp32"]["runs_here"] and engines["torch-fp32"]["why_not"] is None
    if NO_GPU:
        assert not engines["torch-fp16-cl"]["runs_here"] and "needs a CUDA GPU" in engines["torch-fp16-cl"]["why_not"]
    assert "as_run" not in d  # ours: the contract says how it runs


def test_nested_metadata_is_shown_as_indented_lines_not_json(tmp_path, random_model):
    """A shipped style's metadata nests (its training calls, the quality of the network it was fine-tuned from):
    `info` printed each as one JSON line that wrapped over the table. Now "key: value" lines, nested ones indented,
    lists of dicts as "- " items, floats to 4 significant figures; --json keeps the values whole."""
    from stylexport.checkpoint import save_checkpoint

    meta = {"style_name": "waves", "final_losses": {"total": 8.209589290618897, "style": 4.373006772994995},
            "calls": [{"device": "cpu", "cpu_flags": ["avx2", "amx_bf16"]}, {"device": "cuda"}],
            "fine_tuned_from": {"quality": {"summary": {"gatys100_mean_total": 7.58609660466512}}}}
    ckpt = save_checkpoint(tmp_path / "waves.safetensors", random_model, meta)
    result = runner.invoke(app, ["info", str(ckpt)])
    assert result.exit_code == 0, result.output
    cells = [line.split("│")[1:3] for line in result.stdout.splitlines() if line.count("│") == 3]
    rows: dict[str, list[str]] = {}
    name = ""
    for key, value in cells:
        name = key.strip() or name
        rows.setdefault(name, []).append(value.rstrip()[1:])  # a cell's text, its indent kept
    assert rows["final_losses"] == ["style: 4.373", "total: 8.21"]  # keys as stored (sorted)
    assert rows["calls"] == ["- cpu_flags: avx2, amx_bf16", "  device: cpu", "- device: cuda"]
    assert rows["fine_tuned_from"] == ["quality:", "  summary:", "    gatys100_mean_total: 7.586"]
    assert "{" not in result.stdout
    described = json.loads(runner.invoke(app, ["info", str(ckpt), "--json"]).stdout)[0]
    assert described["metadata"]["final_losses"]["total"] == 8.209589290618897


def test_an_export_says_its_contract_signature_and_the_parity_its_gate_measured(model_and_ckpt, tmp_path):
    _, ckpt = model_and_ckpt
    (report,) = export(ckpt, ["onnx"], tmp_path)
    d = describe(report.path)
    assert d["metadata"]["source_sha256"] == sha256_file(ckpt) and d["metadata"]["style_name"] == "waves"
    assert [t["name"] for t in d["inputs"]] == [INPUT_NAME] and [t["name"] for t in d["outputs"]] == [OUTPUT_NAME]
    assert d["inputs"][0]["dtype"] == "float32" and d["inputs"][0]["shape"][1] == 3
    assert isinstance(d["inputs"][0]["shape"][2], str)  # a named dynamic axis
    assert d["export"]["parity"] == report.parity and d["export"]["passed"]
    assert d["export"]["checkpoint_sha256"] == sha256_file(ckpt)

    result = runner.invoke(app, ["info", report.path])
    assert result.exit_code == 0, result.output
    assert "export gate" in result.output and f"{report.parity['psnr_db']:.1f} dB" in result.output
    result = runner.invoke(app, ["info", report.path, str(ckpt), "--json"])
    assert result.exit_code == 0 and [x["format"] for x in json.loads(result.stdout)] == ["onnx", "checkpoint"]


def test_a_third_party_onnx_says_how_stylexport_will_run_it(tmp_path):
    path = foreign_model(tmp_path / "keras.onnx", fixed=(64, 48), nhwc=True, value_range="0-1")
    d = describe(path)
    assert d["metadata"] == {}
    assert d["inputs"] == [{"name": "image_in", "dtype": "float32", "shape": ["N", 64, 48, 3]}]
    assert d["as_run"] == {"engine": "ort-cpu", "layout": "NHWC", "value_range": "0-1", "dtype": "float32",
                           "fixed_size": [64, 48], "max_size": None}
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0 and "none: not made by stylexport" in result.output
    assert "NHWC, values 0-1 (mapped to and from 0-255), resized to 64x48 and back" in result.output

    two = tmp_path / "two.onnx"
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y"))
    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"])], "g", [x, y],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), two)
    assert "stylexport runs RGB image-to-image" in describe(two)["as_run"]["error"]


def test_an_engine_is_described_from_its_sidecar_without_loading_it(tmp_path):
    plan = tmp_path / "wave.plan"
    plan.write_bytes(b"not a real engine: info must not load it")
    sidecar_path(plan).write_text(json.dumps({"style_name": "wave", "gpu": "NVIDIA H100", "tensorrt_version": "10"}))
    d = describe(plan)
    assert d["native_code"] and d["metadata"]["gpu"] == "NVIDIA H100" and d["files"] == ["wave.plan", "wave.plan.json"]
    assert "as_run" not in d  # native code is never loaded to be described
    result = runner.invoke(app, ["info", str(plan)])
    assert result.exit_code == 0 and "load it only from a source you trust" in result.output


def test_bad_files_are_one_line_errors_and_the_good_ones_are_still_described(tmp_path, model_and_ckpt):
    _, ckpt = model_and_ckpt
    one_line_error(runner.invoke(app, ["info", str(tmp_path / "gone.onnx")]), "model not found", "gone.onnx")
    (tmp_path / "photo.jpg").write_bytes(b"x")
    one_line_error(runner.invoke(app, ["info", str(tmp_path / "photo.jpg")]), "unknown kind '.jpg'")
    if importlib.util.find_spec("executorch"):  # a program without a sidecar is read as a foreign one
        (tmp_path / "lonely.pte").write_bytes(b"x")
        one_line_error(runner.invoke(app, ["info", str(tmp_path / "lonely.pte")]),
                       f"cannot load ExecuTorch program {tmp_path / 'lonely.pte'}")
    (tmp_path / "cut.onnx").write_bytes(b"\x08\x07junk")
    result = runner.invoke(app, ["info", str(ckpt), str(tmp_path / "cut.onnx")])
    assert result.exit_code == 2 and "waves.safetensors" in result.stdout and "parameters" in result.stdout
    assert f"failed: {tmp_path / 'cut.onnx'}: cannot read ONNX file" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: 1 of 2 files could not be described (each is listed above)"
    with pytest.raises(StylexportError, match="is a folder, not a model file"):
        describe(tmp_path)
