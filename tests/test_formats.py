"""The one table (stylexport.formats): every name resolves, every file kind maps to one format, every
exported format has a builder, a parity gate and an engine, and the engines' needs are checked the same
way everywhere."""

import pytest
import torch

from stylexport import formats
from stylexport.errors import StylexportError
from stylexport.formats import ENGINES, FORMATS, choose_engine, format_of, get_format, resolve


@pytest.mark.parametrize("name", [f.name for f in FORMATS.values() if f.build])
def test_every_exported_format_has_a_builder_a_gate_and_an_engine(name):
    fmt = FORMATS[name]
    assert callable(resolve(fmt.build))
    assert fmt.tolerance.max_abs is not None or fmt.tolerance.min_psnr_db is not None
    written = f"app/{fmt.suffix}" if fmt.bundle else f"style{fmt.suffix}"
    gated = format_of(fmt.model_file(written)).name  # an app's gate runs its model (a web app's: ONNX)
    assert fmt.check_with and all(gated in ENGINES[e].formats for e in fmt.check_with)
    assert fmt.bundle or all(s.startswith(".") for s in fmt.suffixes)
    assert format_of(written) is fmt  # what export writes, open_runner reads back as the same format


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_runs_known_formats_and_opens_with_a_real_function(name):
    engine = ENGINES[name]
    assert engine.formats and all(f in FORMATS for f in engine.formats)
    assert callable(resolve(engine.open))
    assert all(need in formats.REQUIREMENTS for need in engine.needs)
    assert engine.device in ("cpu", "cuda", "any")


def test_names_are_unique_across_aliases():
    names = [n for f in FORMATS.values() for n in (f.name, *f.aliases)]
    assert len(names) == len(set(names))


def test_file_kinds_by_longest_suffix():
    assert format_of("a/b.fp16.onnx").name == "onnx-fp16"
    assert format_of("b.ONNX").name == "onnx"
    assert format_of("x.aoti-cuda-fp16.pt2").name == "aoti-cuda-fp16"
    assert format_of("x.aoti.pt2").name == "aoti-cpu" and format_of("renamed.pt2").name == "aoti-cpu"
    assert format_of("m.pth").name == "checkpoint" and format_of("e.plan").name == "tensorrt-fp16"
    with pytest.raises(StylexportError, match=r"unknown kind '\.h5'; stylexport reads .*\.onnx \(onnx\)"):
        format_of("keras.h5")


def test_older_names_still_resolve():
    assert get_format("trt").name == get_format("tensorrt-plan").name == "tensorrt-fp16"
    assert get_format("aoti").name == "aoti-cpu"
    with pytest.raises(StylexportError, match="unknown format 'tflite'; choose from onnx, onnx-fp16"):
        get_format("tflite")


def test_engine_choice_prefers_the_device_then_falls_back(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_engine(FORMATS["onnx"], cpu).name == "ort-cpu"
    assert choose_engine(FORMATS["checkpoint"], cpu).name == "torch-fp32"
    with monkeypatch.context() as m:  # nothing runs: every candidate's reason in one line
        m.setattr(formats, "has_module", lambda module: False)
        with pytest.raises(StylexportError, match="no engine for onnx files runs on cpu here: ort-cpu onnxruntime "
                                                  "is not installed.*; ort-cuda-fp32 needs a CUDA GPU"):
            choose_engine(FORMATS["onnx"], cpu)
        assert choose_engine(FORMATS["checkpoint"], cpu).name == "torch-fp32"  # torch needs nothing
    # a GPU machine: CUDA engines first; without onnxruntime-gpu the CPU provider is used
    monkeypatch.setattr(formats, "_cuda", lambda device: None)
    monkeypatch.setattr(formats, "_ort_cuda", lambda device: "no CUDA provider")
    monkeypatch.setitem(formats.REQUIREMENTS, "cuda", formats._cuda)
    monkeypatch.setitem(formats.REQUIREMENTS, "onnxruntime-cuda", formats._ort_cuda)
    assert choose_engine(FORMATS["onnx"], cuda).name == "ort-cpu"
    assert choose_engine(FORMATS["checkpoint"], cuda).name == "torch-fp16-cl"
    assert choose_engine(FORMATS["checkpoint"], cpu).name == "torch-fp32"  # a CPU run never picks a CUDA engine


def test_an_engine_for_another_format_is_refused(tmp_path, model_and_ckpt):
    from stylexport.runtime import open_runner

    _, ckpt = model_and_ckpt
    with pytest.raises(StylexportError, match=r"engine ort-cpu does not run checkpoint files like .*; for those "
                                              r"use torch-fp32, torch-fp16-cl, torch-compile"):
        open_runner(ckpt, engine="ort-cpu", device="cpu")
    with pytest.raises(StylexportError, match="unknown engine 'fast'"):
        open_runner(ckpt, engine="fast", device="cpu")


def test_an_engine_named_for_a_checkpoint_runs_its_format_from_the_cache(model_and_ckpt, tmp_path, monkeypatch):
    """--backend ort-cpu (or any non-torch engine) on a checkpoint: its format is exported into the cache once
    and run, giving the pixels of the exported file itself; an engine that cannot run here is refused before
    anything is exported, and a failed export is the error, with no fallback to another engine."""
    import dataclasses

    from stylexport.checkpoint import save_checkpoint
    from stylexport.export import export
    from stylexport.fileio import cache_dir, sha256_file
    from stylexport.runtime import open_runner
    from stylexport.stylize import open_model

    from .conftest import random_net

    _, ckpt = model_and_ckpt
    folder = cache_dir() / "engines" / sha256_file(ckpt)
    x = torch.rand(1, 3, 37, 53) * 255
    with open_model(ckpt, device="cpu", engine="ort-cpu") as named:
        assert named.engine == "ort-cpu" and named.path.parent == folder and named.path.suffix == ".onnx"
        y = named.infer(x)
    (report,) = export(ckpt, ["onnx"], tmp_path)
    with open_runner(report.path, engine="ort-cpu", device="cpu") as direct:
        torch.testing.assert_close(y, direct.infer(x), atol=1e-3, rtol=0)
    stamp = named.path.stat().st_mtime_ns
    with open_model(ckpt, device="cpu", engine="ort-cpu") as again:  # from the cache, not exported again
        assert again.path == named.path and again.path.stat().st_mtime_ns == stamp
    before = sorted(folder.iterdir())
    with pytest.raises(StylexportError, match=r"engine tensorrt-fp16 cannot run here: "):
        open_model(ckpt, device="cpu", engine="tensorrt-fp16")
    assert sorted(folder.iterdir()) == before  # refused before any export
    other = save_checkpoint(tmp_path / "other.safetensors", random_net(bias=0.1), {"style_name": "other"})
    strict = dataclasses.replace(formats.FORMATS["onnx"], tolerance=formats.Tolerance(max_abs=0.0))
    monkeypatch.setitem(formats.FORMATS, "onnx", strict)
    with pytest.raises(StylexportError, match="onnx export of .* failed its parity check"):
        open_model(other, device="cpu", engine="ort-cpu")  # the error itself, not torch in its place


def test_runtime_never_imports_the_exporter():
    """A deployed runtime must not need the exporter: import the runtime alone and look."""
    import subprocess
    import sys

    code = ("import sys, stylexport.runtime, stylexport.runtime.onnxruntime_backend, stylexport.runtime.aoti_backend, "
            "stylexport.runtime.tensorrt_backend, stylexport.runtime.onnx_reference, stylexport.formats, "
            "stylexport.stylize, stylexport.video; "
            "print(sorted(m for m in sys.modules if m.startswith(('stylexport.export', 'stylexport.bench', "
            "'stylexport.cli', 'stylexport.train'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_a_checkpoint_runs_on_the_fastest_engine_that_passes_and_is_cached(model_and_ckpt, monkeypatch):
    """No --backend: the first engine of the table's auto order that runs here and whose format exports
    in seconds with a gate of >= 45 dB; exported once into the cache; INT8 and BF16 are never chosen for the user
    (BF16's worst PSNR on real photos was 40.2 dB: benchmarks/results/cpu-engines-avx512.json)."""
    from stylexport.fileio import cache_dir, sha256_file
    from stylexport.stylize import auto_candidates, open_model

    _, ckpt = model_and_ckpt
    cpu = torch.device("cpu")
    with monkeypatch.context() as bf16_cpu:  # BF16 runs on such a CPU, but is never chosen for the user either
        bf16_cpu.setattr("stylexport.devices.cpu_flags", lambda: ("avx2", "avx512f", "avx512_bf16"))
        assert formats.unavailable(formats.ENGINES["openvino-bf16"], cpu) is None
        assert not {"openvino-bf16", "torch-bf16"} & {e.name for e in auto_candidates(cpu)}
    names = [e.name for e in auto_candidates(cpu)]
    assert "openvino-int8" not in names and "aoti-cpu" not in names and names[-1] == "torch-fp32"
    with open_model(ckpt, device="cpu") as first:
        assert first.engine == names[0]
    cached = list((cache_dir() / "engines").rglob("*"))
    with open_model(ckpt, device="cpu") as again:  # reused, not exported again
        assert again.engine == first.engine
    assert list((cache_dir() / "engines").rglob("*")) == cached
    # a cached artifact that no longer opens (older stylexport, cut short): exported again, not skipped forever
    # (the cache is shared by the whole test run: take this checkpoint's own artifact, not another test's)
    fmt = formats.FORMATS[formats.ENGINES[first.engine].formats[0]]
    artifact = next((cache_dir() / "engines" / sha256_file(ckpt)).glob(f"*{fmt.suffix}"))
    artifact.write_bytes(b"truncated")
    with open_model(ckpt, device="cpu") as healed:
        assert healed.engine == first.engine
    assert artifact.stat().st_size > 1000
    # without OpenVINO and ONNX Runtime: torch on the checkpoint itself
    monkeypatch.setattr(formats, "has_module", lambda module: module not in ("openvino", "onnxruntime"))
    with open_model(ckpt, device="cpu") as fallback:
        assert fallback.engine == "torch-fp32"
    with open_model(ckpt, device="cpu", engine="torch-fp32") as named:  # --backend overrides
        assert named.engine == "torch-fp32"


def _off_by_eight(path, engine, device):
    """A torch engine whose output is 8 levels too bright everywhere (30 dB from FP32): an FP16 engine gone wrong."""
    from stylexport.runtime.torch_backend import open_engine

    runner = open_engine(path, engine, device)
    forward = runner._run
    runner._run = lambda batch: forward(batch) + 8
    return runner


def test_a_torch_engine_on_the_checkpoint_must_pass_the_gate_before_it_is_chosen(model_and_ckpt, monkeypatch, caplog):
    """Torch engines in another precision run the checkpoint itself, so no export gate measured them (FP16
    channels_last on a GPU): open_model measures them against torch FP32 on the parity photos and passes over
    one under 45 dB, as it passes over an export that fails its gate."""
    from stylexport.stylize import open_model

    _, ckpt = model_and_ckpt
    torch_open = formats.ENGINES["torch-fp32"].open
    monkeypatch.setitem(formats.ENGINES, "torch-off", formats.Engine(
        "torch-off", ("checkpoint",), "off by 8", "tests.test_formats:_off_by_eight", "any", auto=1))
    monkeypatch.setitem(formats.ENGINES, "torch-cl", formats.Engine(
        "torch-cl", ("checkpoint",), "FP32 channels_last: a few ulps from the reference", torch_open, "any",
        options=(("channels_last", True),), auto=2))
    with caplog.at_level("WARNING"), open_model(ckpt, device="cpu") as runner:
        assert runner.engine == "torch-cl"
    (warning,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("torch-off")]
    assert "30.1 dB from torch-fp32's (max abs 8" in warning and "must reach 45 dB" in warning

    monkeypatch.delitem(formats.ENGINES, "torch-cl")
    with open_model(ckpt, device="cpu") as runner:  # the next engine of the order, never the one that failed
        assert runner.engine not in ("torch-off", "torch-cl")
    with open_model(ckpt, device="cpu", engine="torch-off") as named:  # asked for by name: the user's choice
        assert named.engine == "torch-off"
