"""Inputs and clocks: real photos, CUDA events on the stream the work runs on, host clocks end to end,
percentiles with their dispersion."""

from __future__ import annotations

import time

import numpy as np
import torch

UNSTABLE_P95_OVER_P50 = 1.5  # a row whose p95 is this much above its p50 is flagged as unstable


def percentiles(times_ms: list[float]) -> dict[str, float]:
    """p25/p50/p75/p95/p99 (linear interpolation between closest ranks, numpy's default), IQR, mean, min."""
    a = np.asarray(times_ms, dtype=np.float64)
    p25, p50, p75, p95, p99 = np.percentile(a, [25, 50, 75, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "p25_ms": float(p25),
            "p75_ms": float(p75), "iqr_ms": float(p75 - p25), "mean_ms": float(a.mean()), "min_ms": float(a.min()),
            "n": int(a.size)}


def instability(stats: dict[str, float]) -> str | None:
    """Why a row's timing should not be trusted (a noisy, shared machine), or None."""
    ratio = stats["p95_ms"] / stats["p50_ms"] if stats["p50_ms"] > 0 else float("inf")
    if ratio > UNSTABLE_P95_OVER_P50:
        return f"p95 is {ratio:.1f}x p50: the machine was busy; repeat the run or raise --repeats"
    return None


def photo(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """The bundled photo resized to HxW, with a little seeded noise so rotated inputs differ."""
    import torchvision.transforms.v2.functional as TF

    from stylexport.image import read_image, sample_paths

    base = TF.resize(read_image(sample_paths()[0]), [h, w], antialias=True)
    if seed:
        gen = torch.Generator().manual_seed(seed)
        base = base + torch.randn(base.shape, generator=gen) * 4.0
    return base.clamp(0, 255)[None]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_compute(call, x: torch.Tensor, device: torch.device) -> float:
    """One call's compute time in ms (input already on the device). On a GPU, CUDA events on the current
    stream; runners that compute on their own stream (TensorRT) make the current stream wait for it."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call(x)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    call(x)
    return (time.perf_counter() - t0) * 1e3


def time_end_to_end(call, frame_u8: torch.Tensor, device: torch.device) -> float:
    """uint8 HWC frame in host memory -> stylized uint8 HWC frame in host memory, in ms."""
    sync(device)
    t0 = time.perf_counter()
    x = frame_u8.to(device, non_blocking=True).permute(2, 0, 1)[None].float()
    y = call(x)
    out = y[0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).to("cpu", non_blocking=False)
    sync(device)
    del out
    return (time.perf_counter() - t0) * 1e3
