"""What the numbers were measured on, and the hardware's limit they are compared with.

The limit is the peak arithmetic rate of the precision in use, worked out from the hardware (CPU: vector
width x FMA ports x clock x threads; GPU: the vendor's dense peak by model), an upper bound no engine can
beat. A measured matmul rate is recorded beside it as information, never used as the limit: engines that
are faster than torch's FP32 GEMM (BF16, INT8, fused kernels) would show "more than 100 %" of it.
"""

from __future__ import annotations

import datetime
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from stylexport import __version__
from stylexport.devices import cpu_flags, cpu_name, gpu_identity, has_module, ort_providers

# Dense peak TFLOP/s by GPU model and precision (vendor data sheets, without sparsity).
GPU_PEAKS: dict[str, dict[str, float]] = {
    "H100 80GB HBM3": {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4, "int8": 1978.9},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0, "int8": 1513.0},
    "H200": {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4, "int8": 1978.9},
    "A100": {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0, "int8": 624.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0, "int8": 242.5},
}


def _cpu_ghz() -> float | None:
    """The highest clock the CPU reports (cpufreq's max, else /proc/cpuinfo's MHz), in GHz."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6
    except (OSError, ValueError):
        pass
    try:
        mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.startswith("cpu MHz")]
        return max(mhz) / 1e3 if mhz else None
    except (OSError, ValueError, IndexError):
        return None


def cpu_flop_per_cycle(flags: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Per thread, upper bounds: two FMA ports of the widest vector unit (FP32), twice that for AVX-512 BF16
    dot products, four times for VNNI INT8; AMX tiles where present."""
    f = set(flags)
    fp32 = 64 if "avx512f" in f else 32 if {"avx2", "fma"} <= f else 8
    peaks = {"fp32": fp32, "fp16": fp32, "bf16": fp32 * (2 if "avx512_bf16" in f else 1),
             "int8": fp32 * (4 if ("avx512_vnni" in f or "avx_vnni" in f) else 2)}
    if "amx_bf16" in f:
        peaks["bf16"] = 1024
    if "amx_int8" in f:
        peaks["int8"] = 2048
    return peaks


def peak_tflops(device: torch.device, precision: str) -> tuple[float | None, str]:
    """(peak TFLOP/s for ``precision`` on ``device``, how it was worked out); None when unknown."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in GPU_PEAKS.items():
            if key in name:
                return peaks.get(precision, peaks["fp32"]), f"{key} data-sheet dense {precision} peak"
        return None, f"no data-sheet peak for {name}"
    ghz = _cpu_ghz()
    if ghz is None:
        return None, "CPU clock unknown"
    threads = torch.get_num_threads()
    per_cycle = cpu_flop_per_cycle(cpu_flags())[precision if precision in ("fp32", "fp16", "bf16", "int8")
                                                 else "fp32"]
    return per_cycle * ghz * threads / 1e3, f"{per_cycle} {precision} FLOP/cycle x {ghz:.2f} GHz x {threads} threads"


def measure_matmul(device: torch.device) -> dict[str, float | str]:
    """torch's matmul rate (FP16 on GPU, FP32 on CPU) and copy bandwidth (GB/s, read + write): the best of
    several runs. Information about the machine, not the limit (see the module docstring)."""
    from stylexport.bench.timing import sync

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
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    tflops = 2 * n**3 / min(times) / 1e12
    numel = (1 << 28) if device.type == "cuda" else (1 << 24)
    src = torch.rand(numel, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    copies = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
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
        "tensorrt": None, "openvino": None, "device": str(device), "cpu": cpu_name(),
        "cpu_flags": list(cpu_flags()), "cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
    }
    for module in ("tensorrt", "openvino"):
        if has_module(module):
            env[module] = __import__(module).__version__
    if has_module("executorch"):  # no __version__ attribute: ask its distribution
        from importlib.metadata import version

        env["executorch"] = version("executorch")
    env.update(gpu_identity(device))
    return env
