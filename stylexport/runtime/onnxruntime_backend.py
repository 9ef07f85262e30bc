"""ONNX Runtime backend: CPU and CUDA execution providers (TensorRT EP when present), IO binding on CUDA."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from stylexport.contract import check_contract
from stylexport.errors import StylexportError
from stylexport.formats import FORMATS, format_names
from stylexport.runtime.base import InputSpec, Runner

log = logging.getLogger(__name__)
ONNX_FORMATS = format_names(FORMATS["onnx"]) + format_names(FORMATS["onnx-fp16"])

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE", "cudnn_conv_use_max_workspace": "1"}),
             "CPUExecutionProvider"],
    "tensorrt": [("TensorrtExecutionProvider", {"trt_fp16_enable": True}), "CUDAExecutionProvider",
                 "CPUExecutionProvider"],
}


class OrtRunner(Runner):
    """Run an ONNX style model: ours (contract in metadata) or a third-party one with a single image input."""

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
        if self.metadata:  # ours: the contract it carries is checked like every artifact's
            check_contract(self.metadata, str(self.path), ONNX_FORMATS)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        signature = (", ".join(f"{i.name} {i.shape} {i.type}" for i in inputs) + " -> " +
                     ", ".join(f"{o.name} {o.shape} {o.type}" for o in outputs))
        shape = inputs[0].shape if len(inputs) == 1 else []
        # NCHW (ours and most exports) or NHWC (TensorFlow/Keras conversions): the channel axis must be 3.
        self.nhwc = len(shape) == 4 and shape[3] == 3 and shape[1] != 3
        if len(inputs) != 1 or len(shape) != 4 or len(outputs) < 1 or \
                (shape[1] != 3 and not self.nhwc and (isinstance(shape[1], int) or isinstance(shape[3], int))):
            raise StylexportError(f"ONNX model {self.path} is {signature}; stylexport runs RGB image-to-image "
                                  "style models with one (N, 3, H, W) or (N, H, W, 3) input")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        n, h, w = (shape[0], shape[1], shape[2]) if self.nhwc else (shape[0], shape[2], shape[3])
        fixed = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.spec = InputSpec(name=self.input_name, fixed_hw=fixed, fixed_batch=n if isinstance(n, int) else None)
        self.provider = provider
        self.device = torch.device("cuda" if provider != "cpu" else "cpu")
        self.name = f"ort-{provider}"
        self.value_range = "0-255"
        if not self.metadata:  # a foreign model: what range does it compute in?
            self.value_range = self._probe_range()
            self.metadata = {"value_range": self.value_range, "layout": "NHWC" if self.nhwc else "NCHW"}

    def _probe_range(self) -> str:
        """0-255, 0-1 or -1-1, from the model's output on a real photo given in 0-255: instance-normalised
        style networks answer in their own output range whatever the input's scale. A 0-1 or -1-1 model gets
        its inputs and outputs mapped to and from 0-255 (declared in ``metadata['value_range']``)."""
        from stylexport.image import read_image, resize, sample_paths

        photo = resize(read_image(sample_paths()[0]), self.spec.fixed_hw or (64, 64))[None]
        photo = photo.expand(self.spec.fixed_batch or 1, -1, -1, -1)
        with np.errstate(all="ignore"):
            y = self._session_run(photo)
        if not torch.isfinite(y).all() or y.abs().max() > 1.5:
            return "0-255"
        value_range = "-1-1" if y.min() < -0.05 else "0-1"
        log.warning("%s computes in %s (its output on a photo spans %.2f..%.2f); mapping inputs and outputs to and "
                    "from 0-255", self.path.name, value_range, float(y.min()), float(y.max()))
        return value_range

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        if self.value_range == "0-1":
            return self._session_run(batch / 255.0) * 255.0
        if self.value_range == "-1-1":
            return (self._session_run(batch / 127.5 - 1.0) + 1.0) * 127.5
        return self._session_run(batch)

    def _session_run(self, batch: torch.Tensor) -> torch.Tensor:
        if self.nhwc:  # layout adapted here; the output comes back NCHW like every runner's
            y = self._run_nchw(batch.permute(0, 2, 3, 1).contiguous())
            return y.permute(0, 3, 1, 2).contiguous() if y.dim() == 4 and y.shape[-1] == 3 else y
        return self._run_nchw(batch)

    def _run_nchw(self, batch: torch.Tensor) -> torch.Tensor:
        """One session call on a batch in the model's own layout."""
        if self.provider == "cpu":
            x = batch.detach().cpu().numpy().astype(self.input_dtype, copy=False)
            (y,) = self.session.run([self.output_name], {self.input_name: x})
            return torch.from_numpy(np.asarray(y, dtype=np.float32))
        return self._run_bound(batch)

    def _run_bound(self, batch: torch.Tensor) -> torch.Tensor:
        """IO binding: the input and output stay in GPU memory."""
        dtype = torch.float16 if self.input_dtype == np.float16 else torch.float32
        x = batch.to(self.device, dtype).contiguous()
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", self.device.index or 0, self.input_dtype, tuple(x.shape),
                           x.data_ptr())
        if self.metadata.get("format"):  # ours: the output has the input's shape, so it is bound in place
            out_dtype = self.session.get_outputs()[0].type
            y = torch.empty(x.shape, dtype=torch.float16 if out_dtype == "tensor(float16)" else torch.float32,
                            device=self.device)
            binding.bind_output(self.output_name, "cuda", self.device.index or 0,
                                np.float16 if y.dtype == torch.float16 else np.float32, tuple(y.shape), y.data_ptr())
        else:  # a foreign model may change the size: ONNX Runtime allocates the output on the GPU
            binding.bind_output(self.output_name, "cuda", self.device.index or 0)
        torch.cuda.current_stream().synchronize()
        self.session.run_with_iobinding(binding)
        if not self.metadata.get("format"):
            value = binding.get_outputs()[0]
            try:
                return torch.from_dlpack(value).float()
            except (AttributeError, TypeError, RuntimeError):  # an ONNX Runtime without OrtValue.__dlpack__
                return torch.from_numpy(value.numpy()).to(self.device).float()
        return y.float()


def open_engine(path: Path, engine, device: torch.device) -> OrtRunner:
    return OrtRunner(path, provider=engine.option("provider", "cpu"))
