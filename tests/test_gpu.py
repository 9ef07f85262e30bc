"""The CUDA paths: each GPU engine against the FP32 network, CUDA-event timing against the wall clock, training
with bf16 autocast, and the benchmark on a GPU. Skipped (with the reason) on a machine without CUDA."""

import json
import time

import pytest
import torch

from stylexport.bench.timing import photo, sync, time_compute
from stylexport.devices import ort_providers
from stylexport.metrics import psnr
from stylexport.runtime import open_runner

from .conftest import smooth_image

pytestmark = pytest.mark.gpu

# engine -> (artifact format it runs, least PSNR against the FP32 network on the CPU)
CUDA_ENGINES = {
    "torch-fp32": ("checkpoint", 60.0),  # cuDNN may use TF32 for FP32 convolutions (torch's default)
    "torch-fp16-cl": ("checkpoint", 45.0),
    "torch-compile": ("checkpoint", 45.0),
    "ort-cuda-fp32": ("onnx", 60.0),
    "ort-cuda-fp16": ("onnx-fp16", 45.0),
    "aoti-cuda-fp16": ("aoti-cuda-fp16", 45.0),
}


def _has_ort_cuda() -> bool:
    return "CUDAExecutionProvider" in ort_providers()


@pytest.fixture(scope="module")
def artifacts(model_and_ckpt, tmp_path_factory):
    """Each format a CUDA engine runs, exported once (ONNX ones only where ONNX Runtime has CUDA)."""
    from stylexport.export import export

    _, ckpt = model_and_ckpt
    out = tmp_path_factory.mktemp("gpu-artifacts")
    formats = ["aoti-cuda-fp16"] + (["onnx", "onnx-fp16"] if _has_ort_cuda() else [])
    reports = {r.format: r for r in export(ckpt, formats, out)}
    paths = {"checkpoint": ckpt}
    for fmt, report in reports.items():
        assert report.passed, (fmt, report)
        paths[fmt] = report.path
    return paths


def _runner(name, artifacts):
    fmt, _ = CUDA_ENGINES[name]
    if fmt not in artifacts:
        pytest.skip("onnxruntime-gpu is not installed (no CUDAExecutionProvider): pip install 'stylexport[gpu]'")
    return open_runner(artifacts[fmt], device="cuda", engine=name)


@pytest.mark.parametrize("name", list(CUDA_ENGINES))
def test_cuda_engine_matches_the_fp32_network(name, artifacts, model_and_ckpt):
    model, _ = model_and_ckpt
    runner = _runner(name, artifacts)
    for h, w in ((270, 480), (256, 256)):  # two shapes: compiled and shape-specialised engines see both
        x = photo(h, w, seed=3)
        y = runner.infer(x.cuda()).float().cpu()
        with torch.no_grad():
            reference = model.float().cpu()(x).clamp(0, 255)
        assert y.shape == x.shape
        assert psnr(y, reference) >= CUDA_ENGINES[name][1], (name, h, w, psnr(y, reference))


@pytest.mark.parametrize("name", list(CUDA_ENGINES))
def test_cuda_events_bracket_the_engines_work(name, artifacts):
    """The bench times GPU work with CUDA events on the current stream. An engine computing on a stream of its
    own that the current stream does not wait for would read near zero; so the event time must cover most of
    the synchronized wall time of the same call (a 1080p frame: milliseconds of work)."""
    runner = _runner(name, artifacts)
    x = photo(1080, 1920, seed=1).cuda()
    call = runner.bind(x)
    for _ in range(5):
        call(x)
    sync(x.device)
    events, walls = [], []
    for _ in range(10):
        events.append(time_compute(call, x, x.device))
        sync(x.device)
        t0 = time.perf_counter()
        call(x)
        sync(x.device)
        walls.append((time.perf_counter() - t0) * 1e3)
    event, wall = sorted(events)[5], sorted(walls)[5]
    assert 0.5 * wall <= event <= 1.2 * wall + 0.5, (name, event, wall)


def test_training_on_cuda_with_bf16_lowers_the_loss(vgg, tmp_path):
    from PIL import Image

    from stylexport.checkpoint import load_checkpoint
    from stylexport.train import TrainConfig, train

    data = tmp_path / "photos"
    data.mkdir()
    for i in range(6):
        Image.fromarray(smooth_image(160, 200, seed=i)).save(data / f"p{i}.png")
    style = tmp_path / "style.png"
    Image.fromarray(smooth_image(128, 128, seed=99)).save(style)
    config = TrainConfig(style=str(style), data=str(data), image_size=128, batch_size=4, steps=60, log_every=5,
                         checkpoint_every=60, preview_every=60, workers=0, device="cuda", amp="bf16")
    result = train(config, tmp_path / "run")
    assert result.steps == 60
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["total"] < 0.7 * history[0]["total"], (history[0], history[-1])
    loaded = load_checkpoint(tmp_path / "run" / "model.safetensors")  # a CUDA run's checkpoint loads on the CPU
    y = loaded.model(photo(64, 64))
    assert torch.isfinite(y).all()


def test_bench_on_cuda_times_batches_end_to_end_and_quality():
    from stylexport.bench import BenchConfig, run

    data = run(None, BenchConfig(backends=("torch-fp32", "torch-fp16-cl"), sizes=((256, 256),), batches=(1, 2),
                                 repeats=10, block=5, warmup=3, device="cuda"))
    assert data["environment"].get("gpu")
    rows = {(r["backend"], r["batch"]): r for r in data["results"]}
    assert set(rows) == {(b, n) for b in ("torch-fp32", "torch-fp16-cl") for n in (1, 2)}
    for (backend, batch), r in rows.items():
        assert "error" not in r, r
        assert r["compute"]["p50_ms"] > 0 and r["fps"] == pytest.approx(batch / r["compute"]["p50_ms"] * 1e3)
        assert (r["end_to_end"] is not None) == (batch == 1)
        if backend == "torch-fp16-cl":
            assert r["quality"]["psnr_db"] >= 45.0
