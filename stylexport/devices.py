"""Device choice and what this machine has: CUDA, ONNX Runtime providers, the GPU and CPU by name.

Stated once here and imported by the runtime, bench and doctor, so they never disagree about the machine.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from stylexport.errors import StylexportError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI's help and completion start without it
    import torch


def pick_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA when present, else CPU; asking for CUDA without one is an error, not a fallback."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):  # mps, xpu...: not engines of ours; never a silent CPU
        raise StylexportError(f"unknown device {name!r}; use auto, cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StylexportError(f"device {name!r} requested but no CUDA GPU is available; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise StylexportError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                              f"GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def has_module(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (heavy runtimes load only when used)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def ort_providers() -> list[str]:
    """ONNX Runtime's execution providers in this install ([] when onnxruntime cannot be imported)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


CPU_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")


def host_memory() -> int | None:
    """Bytes of physical memory on this machine; None where the OS does not say (sysconf is POSIX)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


@functools.cache
def cpu_flags() -> tuple[str, ...]:
    """The CPU features that decide which CPU engines are fast here (AVX-512, VNNI, BF16, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return tuple(f for f in CPU_FLAGS_OF_INTEREST if f in flags)
    return ()


def cpu_bf16_problem() -> str | None:
    """None where the CPU computes BF16 natively (AVX-512 BF16 or AMX), else why BF16 should not run on it."""
    if {"avx512_bf16", "amx_bf16"} & set(cpu_flags()):
        return None
    return "this CPU has no BF16 instructions (AVX-512 BF16 or AMX); BF16 would be emulated, slower than FP32"


def nvidia_smi() -> dict[str, str]:
    """Driver version and clocks from nvidia-smi; {} where there is none."""
    fields = "driver_version,clocks.sm,clocks.mem,clocks.max.sm,power.limit,temperature.gpu"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return {}
    return dict(zip(fields.split(","), (v.strip() for v in out.split(",")), strict=False))


def gpu_identity(device: torch.device) -> dict[str, object]:
    """Name, compute capability, memory, CUDA/cuDNN versions and driver of a CUDA device; {} on CPU."""
    if device.type != "cuda":
        return {}
    import torch

    props = torch.cuda.get_device_properties(device)
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            # torch's defaults let cuDNN run FP32 convolutions in TF32: the FP32 rows are TF32 where this is true
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32, **nvidia_smi()}
