"""Backends behind one protocol: ``open_runner(artifact)`` picks the backend from the artifact's kind."""

from __future__ import annotations

import os
from pathlib import Path

from stylexport.contract import INPUT_NAME, OUTPUT_NAME
from stylexport.errors import StylexportError
from stylexport.runtime.base import InputSpec, Runner, check_batch
from stylexport.runtime.torch_backend import TorchRunner, pick_device

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "InputSpec", "Runner", "TorchRunner", "check_batch", "open_runner",
           "pick_device"]


ARTIFACT_KINDS = ".safetensors/.pth checkpoints, .onnx models, .plan TensorRT engines, .pt2 AOTInductor packages"


def open_runner(path: str | os.PathLike, *, device: str = "auto", precision: str = "fp32") -> Runner:
    """Load any artifact stylexport reads; the backend follows from the file's kind.

    Checkpoints run on torch (``precision`` fp32/fp16/bf16), .onnx on ONNX Runtime (CUDA when ``device``
    resolves to a GPU and onnxruntime-gpu is installed), .plan on TensorRT, .pt2 on AOTInductor.
    """
    from stylexport.checkpoint import CHECKPOINT_SUFFIXES, load_checkpoint

    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise StylexportError(f"model not found: {path}; pass one of: {ARTIFACT_KINDS}")
    if suffix in CHECKPOINT_SUFFIXES:
        loaded = load_checkpoint(path)
        meta = {**loaded.metadata, "style_name": loaded.style_name, "source_sha256": loaded.sha256}
        return TorchRunner(loaded.model, device=pick_device(device), precision=precision, metadata=meta)
    if suffix == ".onnx":
        from stylexport.runtime.onnxruntime_backend import OrtRunner

        return OrtRunner(path, provider="cuda" if pick_device(device).type == "cuda" else "cpu")
    if suffix == ".plan":
        from stylexport.runtime.tensorrt_backend import TrtRunner

        return TrtRunner(path)
    if suffix == ".pt2":
        from stylexport.runtime.aoti_backend import AotiRunner

        return AotiRunner(path, device=device)
    raise StylexportError(f"model {path}: unknown kind {suffix!r}; stylexport reads {ARTIFACT_KINDS}")
