import json
import math

import pytest
import torch
from typer.testing import CliRunner

from stylexport.bench import BenchConfig, Skip, make_backend, parse_size, percentiles, run
from stylexport.cli import app
from stylexport.errors import StylexportError

runner = CliRunner()


def test_percentiles_by_hand():
    # 1..100: rank (n-1)p = 99p from the start, interpolated linearly.
    stats = percentiles([float(i) for i in range(100, 0, -1)])
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p95_ms"] == pytest.approx(95.05)
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["mean_ms"] == pytest.approx(50.5) and stats["min_ms"] == 1.0 and stats["n"] == 100
    assert percentiles([4.0, 1.0, 3.0])["p50_ms"] == 3.0


def test_parse_size():
    assert parse_size("1080p") == (1080, 1920) and parse_size("4K") == (2160, 3840) and parse_size("33x65") == (33, 65)
    assert parse_size("96") == (96, 96) and parse_size(" 64X32 ") == (64, 32)
    for bad in ("huge", "0", "3x4x5", "-2x8", "x"):
        with pytest.raises(StylexportError, match="use HxW"):
            parse_size(bad)
    for small in ("8", "15x64"):  # every engine refuses it: one line, not a table of failed rows
        with pytest.raises(StylexportError, match=f"size '{small}': each side must be at least 16 px"):
            parse_size(small)
    assert parse_size("16x17") == (16, 17)


@pytest.mark.parametrize("options, words", [
    ({"batches": (1, 0)}, "--batch 1, 0: each must be 1 or more"),  # a traceback from torch.cat before
    ({"gatys_iterations": (0,)}, "--gatys-iterations 0: each must be 1 or more"),
    ({"gatys_sizes": (8,)}, "--gatys-sizes 8: each must be at least 16 px"),
    ({"backends": ("torch-fp32", "ort-cpu", "torch-fp32")}, "--backends names torch-fp32 more than once"),
])
def test_bench_config_refuses_what_cannot_be_timed(options, words):
    with pytest.raises(StylexportError, match=words):
        BenchConfig(**options)


def test_unavailable_backend_is_skipped_with_reason(monkeypatch):
    import torch

    import stylexport.formats as formats

    monkeypatch.setattr(formats, "has_module", lambda module: False)
    with pytest.raises(Skip, match="needs a CUDA GPU"):
        make_backend("tensorrt-fp16", None, torch.device("cpu"))
    with pytest.raises(Skip, match="onnxruntime is not installed"):
        make_backend("ort-cpu", None, torch.device("cpu"))
    with pytest.raises(StylexportError, match="unknown engine 'tpu'"):
        make_backend("tpu", None, torch.device("cpu"))


def test_harness_on_cpu_writes_required_fields(tmp_path):
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "--backends", "torch-fp32,ort-cpu,tensorrt-fp16", "--sizes", "32x48",
                                 "--repeats", "4", "--warmup", "1", "-o", str(out),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    env = data["environment"]
    for key in ("date", "command", "torch", "onnxruntime", "device", "cpu", "stylexport"):
        assert env[key], key
    assert data["flop_per_pixel"] == 307584
    assert data["measured"]["matmul_tflops"] > 0 and data["measured"]["copy_gb_per_s"] > 0
    assert set(data["skipped"]) == {"tensorrt-fp16"} and data["skipped"]["tensorrt-fp16"]
    assert f"skipped tensorrt-fp16: {data['skipped']['tensorrt-fp16']}" in result.output  # whole, on one line
    assert "gatys" not in data  # only with --gatys
    rows = {r["backend"]: r for r in data["results"]}
    assert set(rows) == {"torch-fp32", "ort-cpu"}
    for r in rows.values():
        assert r["compute"]["n"] == 4 and r["compute"]["p50_ms"] > 0
        assert r["end_to_end"]["p50_ms"] > 0
        assert r["fps"] == pytest.approx(1000.0 / r["compute"]["p50_ms"])
        flops = 307584 * 32 * 48
        assert r["achieved_tflops"] == pytest.approx(flops / (r["compute"]["p50_ms"] / 1e3) / 1e12)
        assert r["quality"]["finite"]
        assert r["compute"]["p25_ms"] <= r["compute"]["p50_ms"] <= r["compute"]["p75_ms"]
        assert r["compute"]["iqr_ms"] == pytest.approx(r["compute"]["p75_ms"] - r["compute"]["p25_ms"])
        peak = data["peaks"][r["precision"]]["tflops"]
        if peak:  # the limit is the hardware's peak: no engine can exceed 100 % of it
            assert 0 < r["percent_of_peak"] <= 100
    assert math.isinf(rows["torch-fp32"]["quality"]["psnr_db"])
    assert rows["ort-cpu"]["quality"]["max_abs"] < 0.05
    assert out.with_suffix(".md").read_text().count("| torch-fp32 | 32x48 | 1 |") == 1
    assert out.with_suffix(".png").stat().st_size > 1000


def test_plot_labels_each_measured_size_and_marks_real_time():
    """The latency plot's x axis read '4x10^-3' megapixels; it now names each measured size, draws the 30 fps
    line that 'real time' means, and keeps the legend off the data."""
    import matplotlib
    import matplotlib.pyplot as plt

    from stylexport.bench.report import figure

    matplotlib.use("Agg")
    stats = {"p25_ms": 9.0, "p50_ms": 10.0, "p75_ms": 12.0}
    rows = [{"backend": b, "height": h, "width": w, "batch": 1, "compute": {k: v * f * h * w / 4096 for k, v in
                                                                            stats.items()}}
            for b, f in (("torch-fp32", 1.0), ("ort-cpu", 0.5)) for h, w in ((720, 1280), (64, 64), (256, 256))]
    fig = figure({"results": rows, "environment": {"cpu": "test"}})
    latency, speedup = fig.axes
    for ax in (latency, speedup):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["64x64", "256x256", "1280x720"]
        assert ax.get_legend() is None
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["torch-fp32", "ort-cpu"]
    assert any(list(line.get_ydata()) == [1000 / 30] * 2 for line in latency.get_lines())
    assert [float(y) for y in speedup.get_lines()[1].get_ydata()] == pytest.approx([2.0, 2.0, 2.0])
    assert figure({"results": [dict(rows[0], batch=8)], "environment": {}}) is None
    plt.close(fig)


def test_bench_exports_once_into_the_engine_cache_that_stylize_uses(monkeypatch):
    """A second bench (and stylize) reuse the first one's export: on CPU the ExecuTorch programs alone take
    minutes to lower. Nothing is left in a temporary folder."""
    import tempfile
    from pathlib import Path

    import stylexport.export as export_module
    from stylexport.stylize import engine_cache, open_model

    temporaries = set(Path(tempfile.gettempdir()).glob("stylexport-bench-*"))  # what earlier versions left
    real, exports = export_module.export, []
    monkeypatch.setattr(export_module, "export", lambda checkpoint, formats, *a, **k: exports.append(list(formats))
                        or real(checkpoint, formats, *a, **k))
    config = BenchConfig(backends=("torch-fp32", "ort-cpu"), sizes=((32, 48),), repeats=2, block=2, warmup=0,
                         device="cpu")
    first = run(None, config)
    checkpoint = Path(first["artifacts"]["torch-fp32"])  # the random-weights checkpoint itself
    onnx = Path(first["artifacts"]["ort-cpu"])
    assert onnx.parent == engine_cache(checkpoint) and onnx.suffix == ".onnx"
    assert len(exports) <= 1  # none when an earlier test of this run already exported the seed-0 network
    stamp = onnx.stat().st_mtime_ns
    second = run(None, config)
    assert second["artifacts"] == first["artifacts"] and onnx.stat().st_mtime_ns == stamp
    with open_model(checkpoint, device="cpu", engine="ort-cpu") as stylize_runner:
        assert stylize_runner.path == onnx
    assert len(exports) <= 1
    onnx.unlink()  # a cache emptied by hand is filled again
    third = run(None, config)
    assert exports[-1] == ["onnx"] and Path(third["artifacts"]["ort-cpu"]).is_file()
    assert set(Path(tempfile.gettempdir()).glob("stylexport-bench-*")) == temporaries


def test_progress_counts_every_step_once_and_drops_skipped_engines():
    calls = []
    run(None, BenchConfig(backends=("torch-fp32", "torch-fp16-cl"), sizes=((32, 32), (32, 48)), repeats=2, block=1,
                          warmup=0, device="cpu"), progress=lambda *call: calls.append(call))
    # two engines asked for: each a preparation + 2 shapes x (a warm-up + 2 timing rounds) = 7 steps, 14 in all;
    # torch-fp16-cl needs a GPU, so once it is skipped its 6 shape steps leave the total: 8
    assert calls == [("preparing torch-fp32", 0, 14), ("preparing torch-fp16-cl", 1, 14),
                     ("warm-up torch-fp32 32x32 batch 1", 2, 8),
                     ("timing torch-fp32 32x32 batch 1 (round 1/2)", 3, 8),
                     ("timing torch-fp32 32x32 batch 1 (round 2/2)", 4, 8),
                     ("warm-up torch-fp32 32x48 batch 1", 5, 8),
                     ("timing torch-fp32 32x48 batch 1 (round 1/2)", 6, 8),
                     ("timing torch-fp32 32x48 batch 1 (round 2/2)", 7, 8), ("done", 8, 8)]


def test_gatys_rows(vgg):
    from stylexport.bench.report import markdown_table

    data = run(None, BenchConfig(backends=("torch-fp32",), sizes=((48, 48), (32, 48)), repeats=2, block=2, warmup=0,
                                 gatys_iterations=(2,), gatys_sizes=(48, 64), device="cpu"))
    row, other = data["gatys"]
    assert row["size"] == 48 and row["iterations"] == 2 and row["seconds"] > 0
    assert set(row["gatys_loss"]) == set(row["feed_forward_loss"]) == {"total", "content", "style", "tv"}
    # the paper's table: Gatys time over the fastest feed-forward row at the same square size, batch 1
    (ff,) = [r for r in data["results"] if (r["height"], r["width"]) == (48, 48)]
    table = markdown_table(data)
    assert f"| 48x48 | 2 | {row['seconds']:.2f} |" in table
    assert f"| {row['seconds'] * 1e3 / ff['compute']['p50_ms']:,.0f}x (torch-fp32) |" in table
    assert "| 64x64 | 2 |" in table and "- (no row at this size) |" in table


@pytest.mark.parametrize("flags, amps", [(("avx2",), ["off"]), (("avx2", "avx512_bf16"), ["off", "bf16"])])
def test_training_throughput_rows(vgg, monkeypatch, flags, amps):
    """A CPU times FP32 training steps, and BF16 autocast beside them where it computes BF16 natively; in
    channels_last, as train.py trains, unless both layouts are asked for."""
    from stylexport.bench.report import markdown_table
    from stylexport.bench.run import training_throughput

    monkeypatch.setattr("stylexport.devices.cpu_flags", lambda: flags)
    rows = training_throughput(torch.device("cpu"), batches=(1, 2), steps=3, size=32, block=2)
    assert [(r["batch"], r["amp"], r["channels_last"]) for r in rows] == [(b, a, True) for b in (1, 2) for a in amps]
    assert all(r["steps"] == 3 and len(r["block_images_per_second"]) == 2 for r in rows)  # blocks of 2 + 1
    for r in rows:  # the whole rate lies within its blocks' rates
        assert min(r["block_images_per_second"]) <= r["images_per_second"] <= max(r["block_images_per_second"])
    for r in rows:
        assert r["images_per_second"] > 0
        assert r["paper_schedule_hours"] == pytest.approx(160_000 / r["images_per_second"] / 3600)
    data = run(None, BenchConfig(backends=("torch-fp32",), sizes=((32, 32),), repeats=2, block=2, warmup=0,
                                 device="cpu"))
    table = markdown_table({**data, "training": rows})
    for r in rows:
        assert f"| 32x32 | {r['batch']} | {r['images_per_second']:.1f} | {r['amp']} |" in table
    # benchmarks/cpu_train_layout.py times both memory layouts, each precision in each
    both = training_throughput(torch.device("cpu"), batches=(1,), steps=2, size=32, block=1,
                               channels_last=(False, True))
    assert [(r["amp"], r["channels_last"]) for r in both] == [(a, cl) for cl in (False, True) for a in amps]
    assert all(r["steps"] == 2 and len(r["block_images_per_second"]) == 2 for r in both)


def test_a_foreign_fixed_size_model_is_timed_at_its_size_and_never_against_the_peak(tmp_path):
    """Every row of a 64x48-only model failed ("this model only takes 64x48"), and its '% of peak' would have
    counted stylexport's network's FLOP for a network it is not."""
    from tests.test_runtime import foreign_model

    model = foreign_model(tmp_path / "m.onnx", fixed=(64, 48))
    out = tmp_path / "b.json"
    result = runner.invoke(app, ["bench", str(model), "--backends", "ort-cpu", "--sizes", "32,64", "--repeats", "2",
                                 "--warmup", "0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    (row,) = data["results"]
    assert (row["height"], row["width"], row["batch"]) == (64, 48, 1) and "error" not in row
    assert data["flop_per_pixel"] is None and row["percent_of_peak"] is None and row["achieved_tflops"] is None
    assert data["notes"] == ["m.onnx only takes 64x48 images: timed at that size instead of 32x32, 64x64"]
    assert "only takes 64x48 images" in result.output
    assert "its FLOP per pixel are unknown" in (tmp_path / "b.md").read_text()


def test_sizes_under_an_edge_padded_networks_smallest_side_are_refused_in_one_line(tmp_path):
    """The shipped styles pad their edges by 32 px and take sides of at least 36: `bench --sizes 20x30` ended in
    a traceback from the reference network's reflection pad. Bench times the engines themselves, so it refuses
    the size, naming the smallest it can time, and writes nothing."""
    from stylexport.checkpoint import save_checkpoint
    from tests.conftest import one_line_error, random_net

    ckpt = save_checkpoint(tmp_path / "padded.safetensors", random_net(edge_pad=32), {"style_name": "padded"})
    out = tmp_path / "b.json"
    one_line_error(runner.invoke(app, ["bench", str(ckpt), "--backends", "torch-fp32", "--sizes", "20x30,64,36x40",
                                       "--repeats", "1", "--warmup", "0", "-o", str(out)]),
                   "--sizes 20x30: padded.safetensors takes sides of at least 36 px (it pads its edges inside itself)",
                   "time sizes of at least 36x36")
    assert not out.exists()
    result = runner.invoke(app, ["bench", str(ckpt), "--backends", "torch-fp32", "--sizes", "36x40", "--repeats", "1",
                                 "--warmup", "0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert [(r["height"], r["width"]) for r in json.loads(out.read_text())["results"]] == [(36, 40)]
