"""OpenVINO backend: an IR (.xml + .bin) with the contract in its runtime info, compiled for the CPU.

FP32 or BF16 arithmetic is chosen when compiling (``INFERENCE_PRECISION_HINT``), so one FP32 IR serves both
engines; INT8 IRs (NNCF post-training quantization) carry FakeQuantize nodes and run in INT8 where the CPU
has the instructions (VNNI/AMX), emulated otherwise. Dynamic height and width; latency hint (batch 1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from stylexport.contract import check_contract
from stylexport.errors import StylexportError
from stylexport.formats import FORMATS, format_names
from stylexport.runtime.foreign import AdaptedRunner

OPENVINO_FORMATS = format_names(FORMATS["openvino"]) + format_names(FORMATS["openvino-int8"])
RT_SECTION = "stylexport"


def read_ir_metadata(model) -> dict[str, str]:
    """The ``stylexport`` section of an OpenVINO model's runtime info ({} for a foreign IR)."""
    if not model.has_rt_info([RT_SECTION]):
        return {}
    section = model.get_rt_info([RT_SECTION])
    items = section.astype(dict) if hasattr(section, "astype") else dict(section)
    return {str(k): str(v.astype(str) if hasattr(v, "astype") else v) for k, v in items.items()}


def _read_model(path: Path, core=None):
    import openvino as ov

    try:
        return (core or ov.Core()).read_model(str(path))
    except Exception as exc:  # noqa: BLE001 - missing .bin, corrupt XML
        raise StylexportError(f"cannot read OpenVINO model {path} ({str(exc).splitlines()[0][:160]}); "
                              "keep the .xml with its .bin, or export it again") from None


def ir_description(path: str | os.PathLike) -> dict[str, Any]:
    """What an OpenVINO IR says about itself (``stylexport info``): its stylexport metadata, inputs, outputs."""
    model = _read_model(Path(path))

    def port(p) -> dict[str, Any]:
        return {"name": p.get_any_name(), "dtype": p.get_element_type().get_type_name(),
                "shape": str(p.get_partial_shape())}

    return {"metadata": read_ir_metadata(model), "inputs": [port(p) for p in model.inputs],
            "outputs": [port(p) for p in model.outputs]}


class OpenVinoRunner(AdaptedRunner):
    """Run an OpenVINO IR: ours (contract in its runtime info) or a foreign one with a single image input (its
    layout, size, element type and value range adapted by ``AdaptedRunner``)."""

    held = ("request", "compiled")

    def __init__(self, path: str | os.PathLike, *, precision: str = "fp32"):
        import openvino as ov

        self.path = Path(path)
        core = ov.Core()
        model = _read_model(self.path, core)
        self.metadata = read_ir_metadata(model)
        if self.metadata:
            check_contract(self.metadata, str(self.path), OPENVINO_FORMATS)
        signature = (", ".join(f"{p.get_any_name()} {p.get_partial_shape()} {p.get_element_type().get_type_name()}"
                               for p in model.inputs) + " -> " +
                     ", ".join(f"{p.get_any_name()} {p.get_partial_shape()}" for p in model.outputs))
        what = f"OpenVINO model {self.path}"
        if len(model.inputs) != 1 or model.inputs[0].get_partial_shape().rank.is_dynamic:
            raise StylexportError(f"{what} is {signature}; stylexport runs RGB image-to-image style models with one "
                                  "(N, 3, H, W) or (N, H, W, 3) input")
        port = model.inputs[0]
        dims = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        dtype = port.get_element_type().get_type_name()
        config = {"PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision]}
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.precision = precision
        self.device = torch.device("cpu")
        self.name = f"openvino-{'int8' if self.metadata.get('precision') == 'int8' else precision}"
        self._take_input(dims, dtype, name=port.get_any_name(), what=what, signature=signature, source=self.path.name)

    def _call(self, batch: torch.Tensor) -> torch.Tensor:
        self.request.infer({0: batch.detach().cpu().numpy()})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


def open_engine(path: Path, engine, device: torch.device) -> OpenVinoRunner:
    return OpenVinoRunner(path, precision=engine.option("precision", "fp32"))
