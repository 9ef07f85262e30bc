"""The benchmark harness: every backend, every size, timed the way inference engineers time.

- Warm-up first (covers compilation, autotuning and the first call after a shape change).
- GPU compute time from CUDA events on the stream the backend runs on; end-to-end time (uint8 frame in host
  memory -> stylized uint8 frame in host memory) timed separately with the host clock after synchronizing.
- Many repeats, p50/p95/p99; backends interleaved in blocks, in rotating order, so drift favours none.
- Inputs are real photos (never zeros), a few different ones in rotation.
- Quality: each backend's output against torch FP32 on the same photo.
- Against the limit: the network's FLOPs (counted from its layers) over the measured matmul rate give the
  compute floor; achieved TFLOP/s and the floor's share are reported per backend and size.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylexport import __version__, backends
from stylexport.devices import cpu_flags, cpu_name, gpu_identity, has_module, ort_providers
from stylexport.errors import StylexportError
from stylexport.metrics import compare
from stylexport.model import TransformerNet, conv_macs_per_pixel

log = logging.getLogger(__name__)

NAMED_SIZES = {"256": (256, 256), "512": (512, 512), "720p": (720, 1280), "1080p": (1080, 1920),
               "4k": (2160, 3840)}
ALL_BACKENDS = backends.NAMES
# Compiled on demand; on a CPU machine that takes minutes, so there they run only when asked for by name.
OPT_IN_ON_CPU = tuple(b.name for b in backends.BACKENDS if b.cpu_opt_in)


class Skip(Exception):
    """A backend that cannot run here; the message is the reason recorded in the results."""


def percentiles(times_ms: list[float]) -> dict[str, float]:
    """p50/p95/p99 (linear interpolation between closest ranks, numpy's default), mean, min."""
    a = np.asarray(times_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(a.mean()),
            "min_ms": float(a.min()), "n": int(a.size)}


def parse_size(text: str) -> tuple[int, int]:
    key = text.strip().lower()
    if key in NAMED_SIZES:
        return NAMED_SIZES[key]
    try:
        h, w = (int(v) for v in key.split("x"))
    except ValueError:
        raise StylexportError(f"size {text!r}: use HxW (e.g. 270x480) or one of {', '.join(NAMED_SIZES)}") from None
    return h, w


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    backends: tuple[str, ...] | None = None  # None: every backend this machine can run
    sizes: tuple[tuple[int, int], ...] = ((256, 256),)
    batches: tuple[int, ...] = (1,)
    warmup: int = 5
    repeats: int = 30
    block: int = 5  # calls per backend before moving to the next one (interleaving)
    gatys_iterations: tuple[int, ...] = ()
    gatys_sizes: tuple[int, ...] = ()
    train_throughput: bool = False
    device: str = "auto"


# ---------------------------------------------------------------- backends


def make_backend(name: str, model: TransformerNet, artifacts: Callable[[str], Path], device: torch.device):
    """A Runner for ``name``, or Skip(reason)."""
    from stylexport.runtime import TorchRunner

    why = backends.unavailable(name, device)  # also refuses unknown names
    if why:
        raise Skip(why)
    if name == "torch-fp32":
        return TorchRunner(model, device=device)
    if name in ("torch-fp16-cl", "torch-compile"):
        from stylexport.export.fp16 import rescale_for_fp16

        compiled = name == "torch-compile"
        return TorchRunner(rescale_for_fp16(model, [_photo(256, 256)]), device=device, precision="fp16",
                           channels_last=True, compile=compiled, compile_mode="max-autotune" if compiled else None)
    if name.startswith("ort-"):
        from stylexport.runtime.onnxruntime_backend import OrtRunner

        if name == "ort-cpu":
            return OrtRunner(artifacts("onnx"), provider="cpu")
        return OrtRunner(artifacts("onnx" if name.endswith("fp32") else "onnx-fp16"), provider="cuda")
    if name == "trt-fp16":
        from stylexport.runtime.tensorrt_backend import TrtRunner

        return TrtRunner(artifacts("trt"))
    from stylexport.runtime.aoti_backend import AotiRunner

    return AotiRunner(artifacts("aoti-cuda-fp16" if name == "aoti-cuda-fp16" else "aoti"))


# ---------------------------------------------------------------- inputs and timing


def _photo(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """The bundled photo resized to HxW, with a little seeded noise so rotated inputs differ."""
    import torchvision.transforms.v2.functional as TF

    from stylexport.image import read_image, sample_paths

    base = TF.resize(read_image(sample_paths()[0]), [h, w], antialias=True)
    if seed:
        gen = torch.Generator().manual_seed(seed)
        base = base + torch.randn(base.shape, generator=gen) * 4.0
    return base.clamp(0, 255)[None]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_compute(runner, x: torch.Tensor, device: torch.device) -> float:
    """One call's compute time in ms (input already on the device)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        runner._run(x)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    runner._run(x)
    return (time.perf_counter() - t0) * 1e3


def _time_end_to_end(runner, frame_u8: torch.Tensor, device: torch.device) -> float:
    """uint8 HWC frame in host memory -> stylized uint8 HWC frame in host memory, in ms."""
    _sync(device)
    t0 = time.perf_counter()
    x = frame_u8.to(device, non_blocking=True).permute(2, 0, 1)[None].float()
    y = runner._run(x)
    out = y[0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).to("cpu", non_blocking=False)
    _sync(device)
    del out
    return (time.perf_counter() - t0) * 1e3


# ---------------------------------------------------------------- device ceilings


def measure_ceilings(device: torch.device) -> dict[str, float]:
    """Matmul rate (TFLOP/s; FP16 on GPU, FP32 on CPU) and copy bandwidth (GB/s, read + write).

    Ceilings are peaks: the best of several runs, not the median.
    """
    if device.type == "cuda":
        n, dtype, reps = 8192, torch.float16, 20
    else:
        n, dtype, reps = 2048, torch.float32, 10
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t0)
    tflops = 2 * n**3 / min(times) / 1e12
    numel = (1 << 28) if device.type == "cuda" else (1 << 24)
    src = torch.rand(numel, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    copies = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        copies.append(time.perf_counter() - t0)
    gbps = 2 * numel * 4 / min(copies) / 1e9
    return {"matmul_tflops": tflops, "matmul_dtype": str(dtype).removeprefix("torch."), "copy_gb_per_s": gbps}


def environment(device: torch.device) -> dict[str, Any]:
    import onnxruntime as ort

    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "stylexport": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "onnxruntime": ort.__version__, "onnxruntime_providers": ort_providers(),
        "tensorrt": None, "device": str(device), "cpu": cpu_name(), "cpu_flags": list(cpu_flags()),
        "cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
    }
    if has_module("tensorrt"):
        import tensorrt

        env["tensorrt"] = tensorrt.__version__
    env.update(gpu_identity(device))
    return env


# ---------------------------------------------------------------- the run


def _artifact_builder(checkpoint: Path, workdir: Path) -> Callable[[str], Path]:
    """Export a format the first time a backend asks for it (parity-checked like `stylexport export`)."""
    made: dict[str, Path] = {}

    def get(fmt: str) -> Path:
        if fmt not in made:
            from stylexport.export import export

            (report,) = export(checkpoint, [fmt], workdir)
            made[fmt] = Path(report.path)
        return made[fmt]

    return get


def run(model_path: str | Path | None, config: BenchConfig,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Benchmark; returns the results dictionary (see ``write_results`` for the files)."""
    from stylexport.checkpoint import load_checkpoint, save_checkpoint
    from stylexport.runtime import pick_device

    device = pick_device(config.device)
    workdir = Path(tempfile.mkdtemp(prefix="stylexport-bench-"))
    if model_path is None:
        torch.manual_seed(0)
        model = TransformerNet().eval()
        checkpoint = save_checkpoint(workdir / "random.safetensors", model, {"style_name": "random-weights"})
        model_desc = "random weights (seed 0): timing only"
    else:
        checkpoint = Path(model_path)
        model = load_checkpoint(checkpoint).model
        model_desc = str(model_path)
    artifacts = _artifact_builder(checkpoint, workdir)
    cpu = device.type == "cpu"
    names = config.backends or tuple(b for b in ALL_BACKENDS if b != "ort-cpu" or cpu)

    runners, skipped = {}, {}
    for name in names:
        if progress:
            progress(f"preparing {name}")
        if cpu and config.backends is None and name in OPT_IN_ON_CPU:
            skipped[name] = f"compiling takes minutes on CPU; ask for it with --backends {name}"
            continue
        try:
            runners[name] = make_backend(name, model, artifacts, device)
        except Skip as why:
            skipped[name] = str(why)
        except StylexportError as exc:
            if name not in ALL_BACKENDS:
                raise
            skipped[name] = str(exc)

    ceilings = measure_ceilings(device)
    flop_per_pixel = 2 * conv_macs_per_pixel(model)
    results = []
    for (h, w) in config.sizes:
        for batch in config.batches:
            results += _bench_shape(runners, model, h, w, batch, device, config, flop_per_pixel, ceilings, progress)
    out = {"environment": environment(device), "model": model_desc, "flop_per_pixel": flop_per_pixel,
           "ceilings": ceilings, "config": {**dataclasses.asdict(config), "backends": list(names)},
           "results": results, "skipped": skipped}
    if config.gatys_iterations and config.gatys_sizes:
        out["gatys"] = bench_gatys(model, config, device, progress)
    if config.train_throughput:
        out["training"] = training_throughput(device)
    return out


def _bench_shape(runners, model, h, w, batch, device, config, flop_per_pixel, ceilings, progress) -> list[dict]:
    inputs = [torch.cat([_photo(h, w, seed=s * 7 + i) for i in range(batch)]) for s in range(3)]
    with torch.no_grad():
        reference = model.float().cpu()(inputs[0])
    on_device = [x.to(device) for x in inputs]
    frames = [(x[0].round().to(torch.uint8).permute(1, 2, 0).contiguous()) for x in inputs]
    if device.type == "cuda":
        frames = [f.pin_memory() for f in frames]
    rows, compute, e2e, failed = {}, {n: [] for n in runners}, {n: [] for n in runners}, {}
    for name, runner in runners.items():
        if progress:
            progress(f"warm-up {name} {h}x{w} batch {batch}")
        try:
            runner.infer(on_device[0])  # validates the input once, then the timed calls go straight to _run
            for i in range(config.warmup):
                runner._run(on_device[i % 3])
            _sync(device)
            rows[name] = compare(runner._run(on_device[0]).float().cpu(), reference)
        except (StylexportError, RuntimeError) as exc:  # e.g. out of memory at this size
            failed[name] = str(exc).splitlines()[0][:300]
    active = [n for n in runners if n not in failed]
    rounds = max(1, math.ceil(config.repeats / config.block))
    for r in range(rounds):
        order = active[r % len(active):] + active[: r % len(active)] if active else []
        for name in order:
            if progress:
                progress(f"timing {name} {h}x{w} batch {batch} ({r + 1}/{rounds})")
            for k in range(config.block):
                compute[name].append(_time_compute(runners[name], on_device[k % 3], device))
            for k in range(max(1, config.block // 2)):
                e2e[name].append(_time_end_to_end(runners[name], frames[k % 3], device) if batch == 1 else math.nan)
    out = []
    flops = flop_per_pixel * h * w * batch
    for name in runners:
        row = {"backend": name, "height": h, "width": w, "batch": batch}
        if name in failed:
            out.append({**row, "error": failed[name]})
            continue
        stats = percentiles(compute[name])
        p50_s = stats["p50_ms"] / 1e3
        floor_ms = flops / (ceilings["matmul_tflops"] * 1e12) * 1e3
        out.append({**row, "compute": stats,
                    "end_to_end": percentiles(e2e[name]) if batch == 1 else None,
                    "fps": batch / p50_s, "achieved_tflops": flops / p50_s / 1e12,
                    "compute_floor_ms": floor_ms, "percent_of_floor": 100.0 * floor_ms / stats["p50_ms"],
                    "quality_vs_torch_fp32": rows[name].as_dict()})
    return out


def bench_gatys(model, config: BenchConfig, device: torch.device, progress) -> list[dict]:
    """Gatys L-BFGS at each size and iteration count, and the same VGG loss on the feed-forward output."""
    from stylexport.gatys import GatysConfig, evaluate, style_targets, stylize_gatys
    from stylexport.image import read_image, resize_max_side, sample_paths
    from stylexport.losses import LossConfig
    from stylexport.vgg import load_vgg

    vgg = load_vgg(None, device)
    loss_cfg = LossConfig()
    style = resize_max_side(read_image(sample_paths()[1]), 256)[None].to(device)
    targets = style_targets(vgg, style, loss_cfg.style_layers)
    net = model.to(device).eval()
    rows = []
    for size in config.gatys_sizes:
        content = _photo(size, size).to(device)
        with torch.no_grad():
            cf = vgg(content, (loss_cfg.content_layer,))[loss_cfg.content_layer]
            ff = net(content)
            ff_loss = evaluate(vgg, ff, cf, targets, loss_cfg).as_floats()
        for iterations in config.gatys_iterations:
            if progress:
                progress(f"gatys {size}x{size} {iterations} iterations")
            _sync(device)
            t0 = time.perf_counter()
            result = stylize_gatys(content, style, vgg, GatysConfig(iterations=iterations, loss=loss_cfg))
            _sync(device)
            rows.append({"size": size, "iterations": iterations, "seconds": time.perf_counter() - t0,
                         "gatys_loss": result.losses, "feed_forward_loss": ff_loss})
    return rows


def training_throughput(device: torch.device, steps: int = 20, batch: int = 4, size: int = 256) -> dict[str, float]:
    """Images/s of the training step (forward, VGG loss, backward, Adam) on real-photo crops."""
    from stylexport.gatys import style_targets
    from stylexport.image import read_image, resize_max_side, sample_paths
    from stylexport.losses import LossConfig, perceptual_loss
    from stylexport.vgg import load_vgg

    vgg = load_vgg(None, device)
    cfg = LossConfig()
    targets = style_targets(vgg, resize_max_side(read_image(sample_paths()[1]), 512)[None].to(device),
                            cfg.style_layers)
    model = TransformerNet().to(device).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.cat([_photo(size, size, seed=i + 1) for i in range(batch)]).to(device)
    amp = torch.bfloat16 if device.type == "cuda" else None

    def step():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            y = model(x, clamp=False)
            feats = vgg(y, cfg.layers())
            with torch.no_grad():
                content = vgg(x, (cfg.content_layer,))[cfg.content_layer]
        loss = perceptual_loss(y, feats, content, targets, cfg).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - t0
    ips = steps * batch / seconds
    return {"images_per_second": ips, "batch": batch, "size": size, "steps": steps,
            "paper_schedule_hours": 2 * 80_000 / ips / 3600}


# ---------------------------------------------------------------- reports


def markdown_table(results: dict[str, Any]) -> str:
    env = results["environment"]
    device = env.get("gpu") or env.get("cpu")
    ceil = results["ceilings"]
    lines = [f"Device: {device}; torch {env['torch']}, onnxruntime {env['onnxruntime']}, TensorRT "
             f"{env.get('tensorrt') or 'not installed'}; `{env['command']}`", "",
             f"Model: {results['model']}. Measured ceilings: matmul {ceil['matmul_tflops']:.3g} TFLOP/s "
             f"({ceil['matmul_dtype']}), copy {ceil['copy_gb_per_s']:.3g} GB/s; the network does "
             f"{results['flop_per_pixel']:,} FLOP per pixel.", "",
             "| backend | size | batch | p50 ms | p95 ms | p99 ms | FPS | end-to-end p50 ms | TFLOP/s | % of floor "
             "| PSNR vs fp32 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["results"]:
        cells = [r["backend"], f"{r['height']}x{r['width']}", str(r["batch"])]
        if "error" in r:
            lines.append("| " + " | ".join(cells + [f"failed: {r['error']}"] + [""] * 7) + " |")
            continue
        c, e = r["compute"], r.get("end_to_end")
        q = r["quality_vs_torch_fp32"]["psnr_db"]
        cells += [f"{c['p50_ms']:.2f}", f"{c['p95_ms']:.2f}", f"{c['p99_ms']:.2f}", f"{r['fps']:.1f}",
                  f"{e['p50_ms']:.2f}" if e else "-", f"{r['achieved_tflops']:.3f}", f"{r['percent_of_floor']:.1f}",
                  "exact" if math.isinf(q) else f"{q:.1f} dB"]
        lines.append("| " + " | ".join(cells) + " |")
    for name, why in results.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {why} | | | | | | | | | |")
    if results.get("gatys"):
        lines += ["", "| Gatys L-BFGS | iterations | seconds | Gatys total loss | feed-forward total loss |",
                  "|---|---|---|---|---|"]
        for g in results["gatys"]:
            lines.append(f"| {g['size']}x{g['size']} | {g['iterations']} | {g['seconds']:.2f} | "
                         f"{g['gatys_loss']['total']:.4g} | {g['feed_forward_loss']['total']:.4g} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Latency vs resolution per backend (log scale), and speedup over torch FP32 (the paper's path)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stylexport.fileio import atomic_path

    rows = [r for r in results["results"] if "error" not in r and r["batch"] == 1]
    if not rows:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    base = {(r["height"], r["width"]): r["compute"]["p50_ms"] for r in rows if r["backend"] == "torch-fp32"}
    for name in dict.fromkeys(r["backend"] for r in rows):
        mine = sorted((r["height"] * r["width"], r["compute"]["p50_ms"], (r["height"], r["width"]))
                      for r in rows if r["backend"] == name)
        mp = [m[0] / 1e6 for m in mine]
        ax1.plot(mp, [m[1] for m in mine], marker="o", label=name)
        if base:
            ax2.plot(mp, [base[m[2]] / m[1] if m[2] in base else math.nan for m in mine], marker="o", label=name)
    env = results["environment"]
    for ax, ylabel in ((ax1, "p50 latency, ms (log)"), (ax2, "speedup over torch FP32 eager")):
        ax.set_xscale("log")
        ax.set_xlabel("megapixels per frame (log)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax1.set_yscale("log")
    fig.suptitle(f"stylexport bench, batch 1, on {env.get('gpu') or env.get('cpu')}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_results(results: dict[str, Any], path: str | os.PathLike) -> list[Path]:
    """RESULTS.json, RESULTS.md and RESULTS.png side by side."""
    from stylexport.fileio import write_text_atomic

    path = Path(path)
    write_text_atomic(path, json.dumps(results, indent=2, default=str) + "\n")
    md = path.with_suffix(".md")
    write_text_atomic(md, markdown_table(results))
    png = path.with_suffix(".png")
    plot(results, png)
    return [path, md, png]
