"""AOTInductor backend: a .pt2 package and its JSON sidecar, loaded with torch's AOTI package loader."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from stylexport.artifacts import read_sidecar, sidecar_path
from stylexport.contract import check_contract, contract_min_side
from stylexport.errors import StylexportError
from stylexport.formats import FORMATS, format_names
from stylexport.runtime.base import InputSpec, Runner

AOTI_FORMATS = format_names(FORMATS["aoti-cpu"]) + format_names(FORMATS["aoti-cuda-fp16"])


class AotiRunner(Runner):
    held = ("_model",)

    def __init__(self, package: str | os.PathLike, device: str = "auto"):
        self.path = Path(package)
        self.metadata = read_sidecar(self.path, noun="package", remake="export it again with stylexport export --aoti")
        check_contract(self.metadata, str(sidecar_path(self.path)), AOTI_FORMATS)
        built_for = self.metadata.get("device", "cpu")
        if device not in ("auto", built_for):
            raise StylexportError(f"package {self.path} was compiled for {built_for}, not {device}; export it again "
                                  f"with stylexport export --aoti on a machine with that device")
        if built_for == "cuda" and not torch.cuda.is_available():
            raise StylexportError(f"package {self.path} was compiled for CUDA and no GPU is visible; use the CPU "
                                  "package (.aoti.pt2)")
        built_torch = self.metadata.get("torch_version")
        if built_torch and built_torch.split("+")[0] != torch.__version__.split("+")[0]:
            raise StylexportError(f"package {self.path} was compiled with torch {built_torch}, this is torch "
                                  f"{torch.__version__}; export it again with this torch")
        try:
            self._model = torch._inductor.aoti_load_package(str(self.path))
        except Exception as exc:  # noqa: BLE001 - corrupt zip, wrong platform: one line, not a traceback
            raise StylexportError(f"cannot load AOTInductor package {self.path} ({str(exc).splitlines()[0][:160]}); "
                                  "export it again on this machine") from None
        max_side, max_batch = int(self.metadata["max_side"]), int(self.metadata["max_batch"])
        self.spec = InputSpec(min_side=contract_min_side(self.metadata), min_shape=(1, 3, 1, 1),
                              max_shape=(max_batch, 3, max_side, max_side))
        self.device = torch.device(built_for)
        self.name = "aoti-" + ("cuda-fp16" if built_for == "cuda" else "cpu")

    @torch.inference_mode()
    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        out = self._model(batch.to(self.device, torch.float32).contiguous())
        return out[0] if isinstance(out, (list, tuple)) else out


def open_engine(path: Path, engine, device: torch.device) -> AotiRunner:
    """The package runs where it was compiled for (its sidecar says); ``device`` must agree when not auto."""
    return AotiRunner(path, device="auto")
