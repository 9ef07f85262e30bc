"""stylexport doctor: one row per capability and per backend, from the same table bench uses; never a traceback."""

import json

import pytest
import torch
from typer.testing import CliRunner

from stylexport import formats
from stylexport.bench import Skip, make_backend
from stylexport.cli import app

runner = CliRunner()


def _doctor_json(monkeypatch=None):
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_backend_has_a_status_and_bench_agrees():
    checks = {c["name"]: c for c in _doctor_json() if c["section"] == "engines"}
    assert list(checks) == list(formats.ENGINES)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for name, check in checks.items():
        why = formats.unavailable(formats.ENGINES[name], device)
        assert check["status"] == ("ok" if why is None else "missing"), check
        if why is not None:
            assert why in check["detail"]
            with pytest.raises(Skip) as skipped:  # bench skips it with the very same reason
                make_backend(name, None, device)  # refused before the model is looked at
            assert str(skipped.value) == why


def test_missing_tensorrt_is_reported_with_its_reason(monkeypatch):
    monkeypatch.setattr(formats, "has_module", lambda module: module != "tensorrt")
    rows = {c["name"]: c for c in _doctor_json()}  # every unmet need, not only the first
    assert rows["tensorrt-fp16"]["status"] == "missing"
    assert "TensorRT is not installed" in rows["tensorrt-fp16"]["detail"]


def test_a_failing_probe_is_a_row_not_a_traceback(monkeypatch):
    import stylexport.doctor as doctor

    def broken():
        raise RuntimeError("libcuda.so: cannot open shared object file\nsecond line")

    monkeypatch.setattr(doctor, "PROBES", (doctor._platform, broken, doctor._backends))
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "RuntimeError: libcuda.so: cannot open shared object file" in result.output
    assert "second line" not in result.output
    assert "torch-fp32" in result.output  # later probes still ran


def test_table_is_not_cut_to_80_columns_in_a_pipe():
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0
    assert max(len(line) for line in result.stdout.splitlines()) > 80
    assert "stylexport[trt]" in result.stdout  # rich markup must not eat the extra's brackets


def test_every_export_format_says_whether_it_builds_here(monkeypatch, tmp_path):
    import stylexport.web

    monkeypatch.setattr(stylexport.web, "runtime_candidates", lambda: [tmp_path])  # no ONNX Runtime Web here
    monkeypatch.setattr(formats, "has_module", lambda module: module != "executorch")
    rows = {c["name"]: c for c in _doctor_json() if c["section"] == "exports"}
    assert list(rows) == [f.name for f in formats.FORMATS.values() if f.build]
    assert rows["onnx"]["status"] == "ok" and rows["onnx"]["detail"].startswith("export --onnx: ")
    assert rows["web"]["status"] == "missing" and "npm ci --omit=dev --prefix" in rows["web"]["detail"]
    for name in ("executorch", "executorch-fp16"):
        assert rows[name]["status"] == "missing" and "pip install 'stylexport[mobile]'" in rows[name]["detail"]


def test_engine_cache_row_says_where_it_is_and_what_it_holds(monkeypatch, tmp_path):
    monkeypatch.setenv("STYLEXPORT_CACHE_DIR", str(tmp_path))
    (row,) = [c for c in _doctor_json() if c["name"] == "engine cache"]
    assert row["detail"].startswith(f"{tmp_path / 'engines'}: empty")
    for sha, sizes in (("a" * 64, (2 * 2**20, 2**20)), ("b" * 64, (2**19,))):
        for i, size in enumerate(sizes):
            (tmp_path / "engines" / sha / "sub").mkdir(parents=True, exist_ok=True)
            (tmp_path / "engines" / sha / "sub" / f"f{i}.onnx").write_bytes(b"\0" * size)
    (row,) = [c for c in _doctor_json() if c["name"] == "engine cache"]
    assert "engines of 2 checkpoints, 3.5 MB" in row["detail"]  # (2 + 1 + 0.5) MiB, worked out by hand
    assert row["detail"].endswith("; no size limit (STYLEXPORT_CACHE_MAX_SIZE=2GB sets one)")
    monkeypatch.setenv("STYLEXPORT_CACHE_MAX_SIZE", "1.5G")
    (row,) = [c for c in _doctor_json() if c["name"] == "engine cache"]
    assert row["detail"].endswith("; limit 1536.0 MB (STYLEXPORT_CACHE_MAX_SIZE)") and row["status"] == "info"
    monkeypatch.setenv("STYLEXPORT_CACHE_MAX_SIZE", "big")
    (row,) = [c for c in _doctor_json() if c["name"] == "engine cache"]
    assert row["status"] == "error" and row["detail"].endswith("STYLEXPORT_CACHE_MAX_SIZE=big is not a size; write "
                                                                  "it like 2GB, 500MB or 0")


def test_default_engine_row_names_what_stylize_picks_and_what_runs_only_by_name(monkeypatch):
    """Which engine a checkpoint runs on without --backend was said nowhere but in the README's prose; on a CPU
    with BF16 the BF16 engines run, but only when named."""
    from stylexport.stylize import auto_candidates

    monkeypatch.setattr("stylexport.devices.cpu_flags", lambda: ("avx2", "avx512f", "avx512_bf16"))
    row = next(c for c in _doctor_json() if c["section"] == "stylize")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    order = [e.name for e in auto_candidates(device)]
    assert row["name"] == "default engine" and row["detail"].startswith(f"a checkpoint given no --backend runs on "
                                                                        f"{order[0]}")
    named = row["detail"].split("only when named with --backend: ")[1].split(", ")
    assert "torch-bf16" in named and not set(named) & set(order)
    if formats.has_module("openvino") and device.type == "cpu":
        assert "openvino-bf16" in named and "openvino-int8" in named


def test_photos_row_says_whether_heic_photos_can_be_read(monkeypatch):
    from stylexport import devices

    real = devices.has_module
    rows = {c["name"]: c for c in _doctor_json()}
    expected = "ok" if real("pillow_heif") else "missing"
    assert rows["HEIC"]["status"] == expected and rows["HEIC"]["detail"].startswith("Pillow ")
    monkeypatch.setattr(devices, "has_module", lambda module: module != "pillow_heif" and real(module))
    rows = {c["name"]: c for c in _doctor_json()}
    assert rows["HEIC"]["status"] == "missing"
    assert "needs pillow-heif: pip install 'stylexport[heic]'" in rows["HEIC"]["detail"]
