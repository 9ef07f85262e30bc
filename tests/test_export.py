import importlib.util
import math

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from stylexport.checkpoint import save_checkpoint
from stylexport.cli import app
from stylexport.errors import StylexportError
from stylexport.export import export
from stylexport.export.fp16 import onnx_to_fp16, rescale_for_fp16
from stylexport.export.onnx import read_metadata, save_onnx, torch_to_onnx_proto
from stylexport.metrics import compare, psnr
from stylexport.runtime import InputSpec, TorchRunner, check_batch, open_runner
from stylexport.runtime.onnx_reference import OnnxReferenceRunner
from stylexport.runtime.onnxruntime_backend import OrtRunner

from .conftest import one_line_error, random_net, smooth_image

runner = CliRunner()


def photo(h, w, seed=0):
    return torch.from_numpy(smooth_image(h, w, seed)).permute(2, 0, 1).float()[None].contiguous()


@pytest.fixture(scope="session")
def exported(model_and_ckpt, tmp_path_factory):
    _, ckpt = model_and_ckpt
    out = tmp_path_factory.mktemp("exported")
    reports = export(ckpt, ["onnx", "onnx-fp16"], out)
    return {r.format: r for r in reports}, out


def test_onnx_matches_pytorch_at_two_sizes(model_and_ckpt, exported):
    model, _ = model_and_ckpt
    reports, out = exported
    ort_runner = OrtRunner(out / "waves.onnx")
    for h, w in ((37, 53), (80, 64)):
        x = photo(h, w, seed=h)
        y = ort_runner.infer(x)
        assert y.shape == x.shape
        assert (y - model(x)).abs().max() < 0.05
    batch = torch.cat([photo(40, 48, 1), photo(40, 48, 2)])
    torch.testing.assert_close(ort_runner.infer(batch), model(batch), atol=0.05, rtol=0)
    assert reports["onnx"].passed and reports["onnx"].parity["max_abs"] < 0.05


def test_metadata_round_trips(model_and_ckpt, exported):
    from stylexport.fileio import sha256_file

    _, ckpt = model_and_ckpt
    _, out = exported
    for name, precision in (("waves.onnx", "fp32"), ("waves.fp16.onnx", "fp16")):
        meta = read_metadata(out / name)
        assert meta["style_name"] == "waves" and meta["precision"] == precision
        assert meta["source_sha256"] == sha256_file(ckpt)
        assert meta["color"] == "RGB" and meta["layout"] == "NCHW" and meta["value_range"] == "0-255"
        assert meta["input_name"] == "image" and meta["output_clamped"] == "true"
        proto = onnx.load(str(out / name))
        assert [i.name for i in proto.graph.input] == ["image"]
        assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height",
                                                                                           "width"]
        assert proto.opset_import[0].version >= 17


def test_output_is_clamped_inside_the_graph(model_and_ckpt, exported):
    _, out = exported
    y = OrtRunner(out / "waves.onnx").infer(photo(48, 48) * 0 + 255)
    assert float(y.min()) >= 0 and float(y.max()) <= 255
    assert any(n.op_type == "Clip" for n in onnx.load(str(out / "waves.onnx")).graph.node)


def test_rescaling_is_exact_in_fp32(model_and_ckpt):
    model, _ = model_and_ckpt
    scaled = rescale_for_fp16(model, [photo(64, 64)])
    x = photo(45, 70, seed=7)
    torch.testing.assert_close(scaled(x), model(x), atol=2e-3, rtol=0)
    assert scaled.encoder[0].conv.weight.abs().max() != model.encoder[0].conv.weight.abs().max()


def test_fp16_survives_a_model_built_to_overflow_naive_fp16(tmp_path, model_and_ckpt):
    """Naive FP16 conversion gives inf/NaN on this model; our FP16 ONNX stays finite and within 45 dB."""
    model, _ = model_and_ckpt
    big = type(model)()
    big.load_state_dict(model.state_dict())
    with torch.no_grad():  # first conv outputs reach ~1e6 on bright pixels: far past FP16's 65504
        big.encoder[0].conv.weight.mul_(400.0)
        big.encoder[0].conv.bias.mul_(400.0)
    x = photo(40, 56, seed=3) * 0.5 + 127  # bright photo-like input
    with torch.no_grad():
        reference = big(x)
        raw = big.encoder[0].conv(x)
    assert raw.abs().max() > 65504  # this input really overflows FP16 at the first conv

    # ONNX's reference evaluator computes in the declared FP16, as a GPU would (ONNX Runtime's CPU provider
    # would silently compute these nodes in FP32).
    naive = onnx_to_fp16(torch_to_onnx_proto(big), keep_fp32_ops=())
    save_onnx(naive, tmp_path / "naive.onnx")
    naive_parity = compare(OnnxReferenceRunner(tmp_path / "naive.onnx").infer(x), reference)
    assert not naive_parity.finite

    ours = onnx_to_fp16(torch_to_onnx_proto(rescale_for_fp16(big, [photo(64, 64)])))
    save_onnx(ours, tmp_path / "ours.onnx")
    parity = compare(OnnxReferenceRunner(tmp_path / "ours.onnx").infer(x), reference)
    assert parity.finite and parity.psnr_db >= 45.0, parity


def test_fp16_meets_psnr_bar_on_real_photo(exported):
    reports, _ = exported
    assert reports["onnx-fp16"].parity["finite"] and reports["onnx-fp16"].parity["psnr_db"] >= 45.0
    assert reports["onnx-fp16"].size_bytes < 0.6 * reports["onnx"].size_bytes


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed (it cannot be "
                    "installed in this workplace); the TensorRT path is untested here")
@pytest.mark.gpu
def test_tensorrt_engine_parity(model_and_ckpt, tmp_path):
    _, ckpt = model_and_ckpt
    (report,) = export(ckpt, ["tensorrt-fp16"], tmp_path)
    assert report.passed and report.parity["psnr_db"] >= 45.0
    engine = open_runner(tmp_path / "waves.plan")
    with pytest.raises(StylexportError, match="outside the engine's profile"):
        engine.infer(torch.rand(1, 3, 32, 32).cuda() * 255)


@pytest.mark.gpu
def test_onnxruntime_cuda_fp16_parity(model_and_ckpt, exported):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed: pip install 'stylexport[gpu]'")
    model, _ = model_and_ckpt
    _, out = exported
    x = photo(270, 480, 5)
    y = OrtRunner(out / "waves.fp16.onnx", provider="cuda").infer(x.cuda())
    assert psnr(y.cpu(), model(x)) >= 45.0


def test_same_input_error_on_every_backend(model_and_ckpt, exported):
    model, _ = model_and_ckpt
    _, out = exported
    bad = torch.rand(1, 4, 32, 32)
    messages = set()
    for r in (TorchRunner(model), OrtRunner(out / "waves.onnx")):
        with pytest.raises(StylexportError) as err:
            r.infer(bad)
        messages.add(str(err.value))
    assert messages == {"input 'image': got shape (1, 4, 32, 32), expected (N, 3, H, W) RGB"}


def test_profile_check_message():
    spec = InputSpec(min_shape=(1, 3, 64, 64), max_shape=(1, 3, 1080, 1920))
    with pytest.raises(StylexportError, match=r"shape \(1, 3, 2160, 3840\) is outside the engine's profile "
                                              r"min \(1, 3, 64, 64\) .. max \(1, 3, 1080, 1920\); rebuild"):
        check_batch(torch.zeros(1, 3, 2160, 3840), spec)
    check_batch(torch.zeros(1, 3, 720, 1280), spec)


def test_corrupt_and_truncated_onnx(tmp_path, exported, make_image):
    _, out = exported
    data = (out / "waves.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(StylexportError, match="cannot load ONNX model .*cut.onnx"):
        OrtRunner(tmp_path / "cut.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage")
    result = runner.invoke(app, ["stylize", str(make_image()), "-m", str(tmp_path / "junk.onnx"), "-o",
                                 str(tmp_path / "o.png")])
    one_line_error(result, "cannot load ONNX model", "junk.onnx")


def test_plan_without_sidecar_and_engine_for_another_gpu(tmp_path, monkeypatch):
    from stylexport.runtime import tensorrt_backend

    plan = tmp_path / "x.plan"
    plan.write_bytes(b"plan")
    with pytest.raises(StylexportError, match="has no sidecar x.plan.json; rebuild"):
        tensorrt_backend.TrtRunner(plan)
    monkeypatch.setattr(tensorrt_backend, "gpu_identity",
                        lambda: {"gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})
    with pytest.raises(StylexportError, match="built for gpu_name 'NVIDIA A10G', this machine has 'NVIDIA H100"):
        tensorrt_backend.check_engine_matches_here(plan, {"tensorrt_version": "10.9", "gpu_name": "NVIDIA A10G",
                                                          "compute_capability": "8.6"}, "10.9")
    with pytest.raises(StylexportError, match="tensorrt_version '10.3'.*'10.9'; rebuild"):
        tensorrt_backend.check_engine_matches_here(plan, {"tensorrt_version": "10.3"}, "10.9")


def test_bad_export_requests(model_and_ckpt, tmp_path):
    _, ckpt = model_and_ckpt
    with pytest.raises(StylexportError, match="unknown format 'coreml'"):
        export(ckpt, ["coreml"], tmp_path)
    if not torch.cuda.is_available():
        result = runner.invoke(app, ["export", str(ckpt), "--trt", "-o", str(tmp_path / "t")])
        assert result.exit_code == 2 and "cannot be built here: needs a CUDA GPU" in result.stderr
        assert not (tmp_path / "t").exists()
        with pytest.raises(StylexportError, match="FP16 is not supported by the torch CPU backend"):
            TorchRunner(model_and_ckpt[0], precision="fp16")
    result = runner.invoke(app, ["export", str(ckpt), "--trt", "--min", "10x10"])  # before TensorRT is looked for
    assert result.exit_code == 2 and "at least 16" in result.output
    # -o is a folder: a model file's name there made a folder called model.onnx with waves.onnx inside
    for name in ("model.onnx", "phone.int8.pte", "engine.plan"):
        one_line_error(runner.invoke(app, ["export", str(ckpt), "--onnx", "-o", str(tmp_path / name)]),
                       f"{name} names a model file, but export writes a folder", f"-o {tmp_path / 'exported'}")
        assert not (tmp_path / name).exists()
    # a network that pads its edges by 32 px takes no side under 36: a profile from 32x32 is refused, also
    # before TensorRT is looked for (a CPU says that TensorRT cannot be built here only for a good profile)
    padded = save_checkpoint(tmp_path / "padded.safetensors", random_net(edge_pad=32), {"style_name": "padded"})
    one_line_error(runner.invoke(app, ["export", str(padded), "--trt", "--min", "32x48", "-o", str(tmp_path / "p")]),
                   "--min 32x48: padded.safetensors takes sides of at least 36 px (it pads its edges by 32 px",
                   "give --min 36x36 or more")
    assert not (tmp_path / "p").exists()
    result = runner.invoke(app, ["export", str(padded), "--trt", "--min", "36x36", "-o", str(tmp_path / "p")])
    assert result.exit_code == 2 and "--min" not in result.stderr, result.stderr  # the profile passes
    # an exported model given where its checkpoint was meant was called an "unknown suffix '.onnx'"
    onnx_model = tmp_path / "waves.onnx"
    onnx_model.write_bytes(b"not read: refused by its kind")
    one_line_error(runner.invoke(app, ["export", str(onnx_model), "--openvino", "-o", str(tmp_path / "x")]),
                   f"{onnx_model} is an exported model (onnx: ONNX, FP32", "pass the .safetensors/.pth it came from",
                   "stylize, video, bench and info run this file as it is")
    assert not (tmp_path / "x").exists()


def test_failed_parity_removes_the_artifact(model_and_ckpt, tmp_path, monkeypatch):
    import dataclasses

    import stylexport.formats as formats

    _, ckpt = model_and_ckpt
    strict = dataclasses.replace(formats.FORMATS["onnx"], tolerance=formats.Tolerance(max_abs=0.0,
                                                                                      min_psnr_db=math.inf))
    monkeypatch.setitem(formats.FORMATS, "onnx", strict)
    with pytest.raises(StylexportError, match=r"onnx export of .* failed its parity check .* The file was removed"):
        export(ckpt, ["onnx"], tmp_path)
    assert not (tmp_path / "waves.onnx").exists()


def test_third_party_fixed_size_onnx(tmp_path, model_and_ckpt, make_image):
    """Another tool's export: other names, fixed 64x64; stylize resizes to it and back, with a warning."""
    model, _ = model_and_ckpt
    path = tmp_path / "other.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model, (torch.rand(1, 3, 64, 64) * 255,), dynamo=True, input_names=["input1"],
                                 output_names=["output1"])
    prog.save(str(path))
    r = open_runner(path, device="cpu")
    assert r.spec.fixed_hw == (64, 64) and r.input_name == "input1"
    out = tmp_path / "styled.png"
    result = runner.invoke(app, ["stylize", str(make_image("p.png", 50, 90)), "-m", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    from stylexport.image import read_image

    assert read_image(out).shape == (3, 50, 90)
    y = r.infer_any_size(photo(50, 90))
    assert y.shape == (1, 3, 50, 90) and np.isfinite(y.numpy()).all()


def test_stylize_picks_backend_from_artifact(exported, make_image, tmp_path):
    _, out = exported
    for name in ("waves.onnx", "waves.fp16.onnx"):
        target = tmp_path / f"{name}.png"
        result = runner.invoke(app, ["stylize", str(make_image("q.png", 33, 47)), "-m", str(out / name), "-o",
                                     str(target)])
        assert result.exit_code == 0, result.output
        assert target.is_file()


def test_export_record_keeps_every_artifact_of_every_checkpoint(model_and_ckpt, random_model, tmp_path, monkeypatch,
                                                                 caplog):
    """export.json lists what the folder holds: a second export (another format, another checkpoint) adds to
    it, a re-export replaces its own entry, a deleted artifact leaves it, and bench --exported finds each
    checkpoint's own artifacts."""
    import dataclasses
    import json

    import stylexport.formats as formats
    from stylexport.bench.run import exported_artifacts
    from stylexport.checkpoint import save_checkpoint
    from stylexport.fileio import sha256_file

    _, ckpt = model_and_ckpt
    other = save_checkpoint(tmp_path / "other.safetensors", random_model, {"style_name": "other"})
    out = tmp_path / "out"

    def record():
        data = json.loads((out / "export.json").read_text())
        return {a["path"].rsplit("/", 1)[-1]: a for a in data["artifacts"]}, data

    (first,) = export(ckpt, ["onnx"], out)
    export(ckpt, ["openvino"], out)
    export(other, ["onnx"], out)
    entries, data = record()
    assert sorted(entries) == ["other.onnx", "waves.onnx", "waves.xml"]
    assert entries["waves.onnx"]["parity"] == first.parity  # the first export's numbers, kept
    assert entries["waves.xml"]["checkpoint_sha256"] == sha256_file(ckpt)
    assert entries["other.onnx"]["checkpoint_sha256"] == data["checkpoint_sha256"] == sha256_file(other)

    export(ckpt, ["onnx"], out)  # replaces its own entry
    assert sorted(record()[0]) == ["other.onnx", "waves.onnx", "waves.xml"]
    (out / "other.onnx").unlink()
    strict = dataclasses.replace(formats.FORMATS["onnx"], tolerance=formats.Tolerance(max_abs=0.0))
    monkeypatch.setitem(formats.FORMATS, "onnx", strict)
    with pytest.raises(StylexportError, match="failed its parity check"):
        export(other, ["openvino", "onnx"], out)  # the IR passes and is recorded before the ONNX fails
    assert sorted(record()[0]) == ["other.xml", "waves.onnx", "waves.xml"]

    assert exported_artifacts(ckpt, str(out)) == {"openvino": out / "waves.xml", "onnx": out / "waves.onnx"}
    third = save_checkpoint(tmp_path / "third.safetensors", random_model, {"style_name": "third", "n": 3})
    with pytest.raises(StylexportError, match=r"holds no artifact exported from .*third.safetensors \(its artifacts "
                                              r"come from [^)]*waves.safetensors") as error:
        exported_artifacts(third, str(out))
    assert "other.safetensors" in str(error.value)

    (out / "export.json").write_text("{not json")
    export(ckpt, ["openvino"], out)
    assert sorted(record()[0]) == ["waves.xml"] and "is not an export record" in caplog.text


def test_edge_pad_network_exports_to_every_cpu_format(tmp_path):
    """A network that pads its edges (model.py edge_pad) keeps the pad in every exported graph (export's parity
    gate compares each with PyTorch at 161 and 97 px), says its smallest side in its metadata, and every
    runner refuses a smaller input with the same line, before the engine sees it. The AOTInductor package is
    checked at its torch.export program (compiling it takes 4 minutes on 2 cores: test_engines compiles one)."""
    from stylexport.checkpoint import save_checkpoint
    from stylexport.export.aoti import export_program
    from stylexport.formats import get_format, unmet

    from .conftest import random_net

    model = random_net(bias=0.3, head_gain=20.0, edge_pad=32)
    x, small = photo(36, 41, seed=3), photo(35, 64, seed=3)
    program = export_program(model, device=torch.device("cpu"))
    for h, w in ((36, 41), (37, 53), (161, 97)):
        batch = photo(h, w, seed=h).expand(2, -1, -1, -1)
        with torch.no_grad():
            torch.testing.assert_close(program.module()(batch), model(batch), atol=1e-3, rtol=0)
    ckpt = save_checkpoint(tmp_path / "framed.safetensors", model, {"style_name": "framed"})
    formats = [f for f in ("onnx", "openvino", "executorch") if not unmet(get_format(f).needs, torch.device("cpu"))]
    assert "onnx" in formats
    reports = export(ckpt, formats, tmp_path / "out")
    assert [r.format for r in reports] == formats and all(r.passed for r in reports)
    messages = set()
    for report in reports:
        with open_runner(report.path) as r:
            assert r.metadata["min_side"] == "36" and r.metadata["edge_pad"] == "32", report.format
            with torch.no_grad():
                assert float((r.infer(x) - model(x)).abs().max()) < 0.05, report.format
            with pytest.raises(StylexportError) as err:
                r.infer(small)
            messages.add(str(err.value))
    assert messages == {"input 'image': got 35x64, expected H and W >= 36"}
