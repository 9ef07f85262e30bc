"""The engines stylexport can run, one row each, and what each needs from this machine.

``bench`` times these rows, ``doctor`` reports them; a row whose needs are not met is skipped with the
reason that ``unavailable`` gives, worded the same everywhere.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable

import torch

from stylexport.devices import has_module, ort_providers


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    description: str
    needs: tuple[str, ...] = ()
    cpu_opt_in: bool = False  # minutes of compiling on a CPU: runs there only when asked for by name


BACKENDS: tuple[Backend, ...] = (
    Backend("torch-fp32", "PyTorch eager FP32 (the paper's path)"),
    Backend("torch-fp16-cl", "PyTorch FP16, channels_last", ("cuda",)),
    Backend("torch-compile", "torch.compile max-autotune, FP16, CUDA graphs", ("cuda", "triton")),
    Backend("ort-cpu", "ONNX Runtime, CPU provider, FP32", ("onnxruntime",)),
    Backend("ort-cuda-fp32", "ONNX Runtime, CUDA provider, FP32", ("cuda", "onnxruntime-cuda")),
    Backend("ort-cuda-fp16", "ONNX Runtime, CUDA provider, FP16", ("cuda", "onnxruntime-cuda")),
    Backend("trt-fp16", "TensorRT FP16 engine", ("cuda", "tensorrt")),
    Backend("aoti-cpu", "AOTInductor package, CPU, FP32", ("cxx",), cpu_opt_in=True),
    Backend("aoti-cuda-fp16", "AOTInductor package, CUDA, FP16", ("cuda", "cxx")),
)
NAMES = tuple(b.name for b in BACKENDS)


def _cuda(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "needs a CUDA GPU" + ("" if torch.cuda.is_available() else "; none on this machine")
    return None


def _module(module: str, hint: str) -> Callable[[torch.device], str | None]:
    return lambda device: None if has_module(module) else hint


def _ort_cuda(device: torch.device) -> str | None:
    if "CUDAExecutionProvider" in ort_providers():
        return None
    return "ONNX Runtime has no CUDA provider here: pip install 'stylexport[gpu]' (onnxruntime-gpu)"


def _cxx(device: torch.device) -> str | None:
    compiler = os.environ.get("CXX", "g++")
    return None if shutil.which(compiler) else f"AOTInductor compiles C++: no {compiler} on PATH (apt install g++)"


REQUIREMENTS: dict[str, Callable[[torch.device], str | None]] = {
    "cuda": _cuda,
    "triton": _module("triton", "torch.compile on CUDA needs triton (it ships with CUDA builds of torch)"),
    "onnxruntime": _module("onnxruntime", "onnxruntime is not installed: pip install onnxruntime"),
    "onnxruntime-cuda": _ort_cuda,
    "tensorrt": _module("tensorrt", "TensorRT is not installed (pip install 'stylexport[trt]' where NVIDIA's "
                                    "TensorRT wheels can be downloaded)"),
    "cxx": _cxx,
}


def get(name: str) -> Backend:
    from stylexport.errors import StylexportError

    for backend in BACKENDS:
        if backend.name == name:
            return backend
    raise StylexportError(f"unknown backend {name!r}; choose from {', '.join(NAMES)}")


def unavailable(name: str, device: torch.device) -> str | None:
    """None when backend ``name`` can run on ``device`` here, else every unmet need, as one reason."""
    reasons = [why for need in get(name).needs if (why := REQUIREMENTS[need](device))]
    return "; ".join(reasons) or None
