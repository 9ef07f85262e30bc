"""ONNX Runtime backend: CPU and CUDA execution providers (TensorRT EP when present), IO binding on CUDA."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from stylexport.contract import check_contract
from stylexport.errors import StylexportError
from stylexport.formats import FORMATS, format_names
from stylexport.runtime.foreign import AdaptedRunner

NUMPY = {torch.float32: np.float32, torch.float16: np.float16, torch.uint8: np.uint8}
ONNX_FORMATS = format_names(FORMATS["onnx"]) + format_names(FORMATS["onnx-fp16"])

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE", "cudnn_conv_use_max_workspace": "1"}),
             "CPUExecutionProvider"],
    "tensorrt": [("TensorrtExecutionProvider", {"trt_fp16_enable": True}), "CUDAExecutionProvider",
                 "CPUExecutionProvider"],
}


class OrtRunner(AdaptedRunner):
    """Run an ONNX style model: ours (contract in metadata) or a third-party one with a single image input
    (its layout, size, element type and value range adapted by ``AdaptedRunner``)."""

    held = ("session",)

    def __init__(self, path: str | os.PathLike, *, provider: str = "cpu"):
        import onnxruntime as ort

        from stylexport.artifacts import read_onnx_metadata as read_metadata

        self.path = Path(path)
        if provider not in PROVIDERS:
            raise StylexportError(f"unknown ONNX Runtime provider {provider!r}; use {', '.join(PROVIDERS)}")
        wanted = PROVIDERS[provider][0]
        wanted = wanted[0] if isinstance(wanted, tuple) else wanted
        if wanted not in ort.get_available_providers():
            hint = "pip install 'stylexport[gpu]' (onnxruntime-gpu)" if provider != "cpu" else "reinstall onnxruntime"
            raise StylexportError(f"ONNX Runtime has no {wanted} here (available: "
                                  f"{', '.join(ort.get_available_providers())}); {hint}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=PROVIDERS[provider])
        except Exception as exc:  # noqa: BLE001 - corrupt, truncated, unsupported ops
            raise StylexportError(f"cannot load ONNX model {self.path}: {str(exc).splitlines()[0][:200]}; "
                                  "export it again") from None
        self.metadata = read_metadata(self.path)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        signature = (", ".join(f"{i.name} {i.shape} {i.type}" for i in inputs) + " -> " +
                     ", ".join(f"{o.name} {o.shape} {o.type}" for o in outputs))
        if len(inputs) != 1 or len(outputs) < 1:
            raise StylexportError(f"ONNX model {self.path} is {signature}; stylexport runs RGB image-to-image "
                                  "style models with one (N, 3, H, W) or (N, H, W, 3) input")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.provider = provider
        self.device = torch.device("cuda" if provider != "cpu" else "cpu")
        self.name = f"ort-{provider}"
        dims = [d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape]
        what = f"ONNX model {self.path}"
        if self.metadata:  # ours: the contract it carries is checked like every artifact's
            check_contract(self.metadata, str(self.path), ONNX_FORMATS)
        self._take_input(dims, inputs[0].type, name=self.input_name, what=what, signature=signature,
                         source=self.path.name)

    def _call(self, batch: torch.Tensor) -> torch.Tensor:
        """One session call on a batch in the model's own layout and element type."""
        if self.provider == "cpu":
            (y,) = self.session.run([self.output_name], {self.input_name: batch.detach().cpu().numpy()})
            return torch.from_numpy(np.asarray(y))
        return self._run_bound(batch)

    def _run_bound(self, batch: torch.Tensor) -> torch.Tensor:
        """IO binding: the input and output stay in GPU memory."""
        x = batch.to(self.device).contiguous()
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", self.device.index or 0, NUMPY[x.dtype], tuple(x.shape),
                           x.data_ptr())
        if self.metadata.get("format"):  # ours: the output has the input's shape, so it is bound in place
            out_dtype = self.session.get_outputs()[0].type
            y = torch.empty(x.shape, dtype=torch.float16 if out_dtype == "tensor(float16)" else torch.float32,
                            device=self.device)
            binding.bind_output(self.output_name, "cuda", self.device.index or 0, NUMPY[y.dtype], tuple(y.shape),
                                y.data_ptr())
        else:  # a foreign model may change the size: ONNX Runtime allocates the output on the GPU
            binding.bind_output(self.output_name, "cuda", self.device.index or 0)
        torch.cuda.current_stream().synchronize()
        self.session.run_with_iobinding(binding)
        if not self.metadata.get("format"):
            value = binding.get_outputs()[0]
            try:
                return torch.from_dlpack(value)
            except (AttributeError, TypeError, RuntimeError):  # an ONNX Runtime without OrtValue.__dlpack__
                return torch.from_numpy(value.numpy()).to(self.device)
        return y


def open_engine(path: Path, engine, device: torch.device) -> OrtRunner:
    return OrtRunner(path, provider=engine.option("provider", "cpu"))
