"""TensorRT backend: a plan file and its JSON sidecar; torch tensors as device buffers, one CUDA stream.

Untested in the workplace this was written in (TensorRT cannot be installed there); written against the
documented TensorRT 10 name-based API.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from stylexport.artifacts import read_sidecar
from stylexport.contract import check_contract, contract_min_side
from stylexport.errors import StylexportError
from stylexport.formats import FORMATS, format_names
from stylexport.runtime.base import InputSpec, Runner

TRT_FORMATS = format_names(FORMATS["tensorrt-fp16"])


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise StylexportError("TensorRT is not installed; pip install 'stylexport[trt]' on a machine with an NVIDIA "
                              "GPU, or export --onnx/--fp16 and run them with ONNX Runtime") from None
    return trt


def gpu_identity() -> dict[str, str]:
    """The GPU an engine is built for (engines do not move between GPU models)."""
    if not torch.cuda.is_available():
        raise StylexportError("building or running a TensorRT engine needs an NVIDIA GPU; none is visible")
    props = torch.cuda.get_device_properties(0)
    return {"gpu_name": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "cuda_version": str(torch.version.cuda)}


def check_engine_matches_here(plan: Path, sidecar: dict, trt_version: str) -> None:
    """An engine only runs on the GPU model and TensorRT version it was built with."""
    here = gpu_identity()
    for key, now in (("tensorrt_version", trt_version), ("gpu_name", here["gpu_name"]),
                     ("compute_capability", here["compute_capability"])):
        built = sidecar.get(key)
        if built != now:
            raise StylexportError(f"engine {plan} was built for {key} {built!r}, this machine has {now!r}; "
                                  f"rebuild it here with stylexport export --trt")


class TrtRunner(Runner):
    held = ("context", "trt_engine")

    def __init__(self, plan: str | os.PathLike):
        self.path = Path(plan)
        self.metadata = read_sidecar(self.path, noun="engine", remake="rebuild it with stylexport export --trt")
        check_contract(self.metadata, f"{self.path}.json", TRT_FORMATS)
        trt = import_tensorrt()
        check_engine_matches_here(self.path, self.metadata, trt.__version__)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.trt_engine = trt.Runtime(self.logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.trt_engine is None:
            raise StylexportError(f"TensorRT could not load {self.path} (corrupt, truncated, or built elsewhere); "
                                  "rebuild it with stylexport export --trt")
        self.context = self.trt_engine.create_execution_context()
        names = [self.trt_engine.get_tensor_name(i) for i in range(self.trt_engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.trt_engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if self.trt_engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        lo, _opt, hi = self.trt_engine.get_tensor_profile_shape(self.input_name, 0)
        self.spec = InputSpec(name=self.input_name, min_side=contract_min_side(self.metadata), min_shape=tuple(lo),
                              max_shape=tuple(hi))
        self.device = torch.device("cuda")
        self.stream = torch.cuda.Stream()
        self.name = "tensorrt-fp16"

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, torch.float32).contiguous()
        y = torch.empty_like(x)
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, y.data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise StylexportError(f"TensorRT failed to run {self.path} on shape {tuple(x.shape)}")
        torch.cuda.current_stream().wait_stream(self.stream)
        return y


def open_engine(path: Path, engine, device: torch.device) -> TrtRunner:
    return TrtRunner(path)
