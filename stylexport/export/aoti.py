"""AOTInductor packages (.pt2): the network compiled ahead of time by torch, for Python and the C++ host.

``torch.export`` traces the network with dynamic (batch, height, width); ``aoti_compile_and_package``
compiles it into one .pt2 file that libtorch's ``AOTIModelPackageLoader`` runs without Python. The contract
goes inside the package (``aot_inductor.metadata``, keys prefixed ``stylexport.``) and into a JSON sidecar
``<package>.json`` that the C++ host validates. CUDA FP16 packages run the exactly rescaled network (see
export/fp16.py) in half precision behind float32 input and output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stylexport.artifacts import read_sidecar as _read_sidecar
from stylexport.artifacts import sidecar_path
from stylexport.contract import PREFIX
from stylexport.export.onnx import _quiet
from stylexport.fileio import ensure_parent, write_text_atomic
from stylexport.model import TransformerNet

log = logging.getLogger(__name__)

MAX_SIDE = 8192
MAX_BATCH = 64


class HalfPrecision(nn.Module):
    """float32 [0,255] in and out, FP16 inside: the contract stays float32 for every host."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def export_program(model: TransformerNet, *, device: torch.device, fp16: bool = False):
    """The ``torch.export`` program the package is compiled from: batch, height and width dynamic (height and
    width from the network's ``min_side``), the crop written as a negative pad (model.py)."""
    import copy

    net = copy.deepcopy(model).eval().to(device)
    net.crop_with_pad = True
    if fp16:
        net = HalfPrecision(net)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    height = torch.export.Dim("height", min=model.min_side, max=MAX_SIDE)
    width = torch.export.Dim("width", min=model.min_side, max=MAX_SIDE)
    # A batch of 2 and sizes that are not multiples of 4, so nothing specializes to 1 or to the padding-free case.
    example = torch.rand(2, 3, 66, 75, device=device) * 255
    with _quiet(), torch.no_grad():
        return torch.export.export(net, (example,), dynamic_shapes=({0: batch, 2: height, 3: width},), strict=False)


def compile_package(model: TransformerNet, package: Path, *, metadata: dict[str, str], device: torch.device,
                    fp16: bool = False) -> dict[str, Any]:
    """Compile ``model`` into ``package`` (written atomically) and its sidecar; return the sidecar."""
    start = time.perf_counter()
    program = export_program(model, device=device, fp16=fp16)
    embedded = {PREFIX + key: value for key, value in metadata.items()}
    ensure_parent(package)
    tmp = package.with_name(f".{package.stem}.{os.getpid()}.tmp.pt2")  # the packager wants a .pt2 name
    try:
        with _quiet():
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp),
                                                     inductor_configs={"aot_inductor.metadata": embedded})
        platform = {k: v for k, v in _package_metadata(tmp).items() if k.startswith("AOTI_")}
        os.replace(tmp, package)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    sidecar = {**metadata, "device": device.type, "torch_version": torch.__version__,
               "max_side": MAX_SIDE, "max_batch": MAX_BATCH, "compile_seconds": round(time.perf_counter() - start, 1),
               "aoti_platform": platform}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        sidecar.update(gpu_name=props.name, compute_capability=f"{props.major}.{props.minor}",
                       cuda_version=str(torch.version.cuda))
    write_text_atomic(sidecar_path(package), json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def _package_metadata(package: Path) -> dict[str, str]:
    loaded = torch._inductor.aoti_load_package(str(package))
    return dict(loaded.loader.get_metadata())


def read_sidecar(package: str | os.PathLike) -> dict[str, Any]:
    return _read_sidecar(package, noun="package", remake="export it again with stylexport export --aoti")
