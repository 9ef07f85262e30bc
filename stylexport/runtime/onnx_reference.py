"""ONNX's reference evaluator as a backend: slow, but it computes in each tensor's declared type.

ONNX Runtime's CPU provider has few FP16 kernels and runs FP16 graphs through inserted casts in FP32, so on
a machine without a GPU it cannot show what FP16 arithmetic does to a model. The reference evaluator can:
an FP16 tensor above 65504 becomes inf here as it would on a GPU. Used for FP16 parity checks on CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from stylexport.contract import contract_min_side
from stylexport.runtime.base import InputSpec, Runner


class OnnxReferenceRunner(Runner):
    held = ("evaluator",)

    def __init__(self, path: str | os.PathLike):
        from onnx.reference import ReferenceEvaluator

        from stylexport.artifacts import load_onnx
        from stylexport.artifacts import read_onnx_metadata as read_metadata

        self.path = Path(path)
        proto = load_onnx(self.path)
        self.metadata = read_metadata(proto)
        self.evaluator = ReferenceEvaluator(proto)
        self.input_name = proto.graph.input[0].name
        self.spec = InputSpec(name=self.input_name, min_side=contract_min_side(self.metadata))
        self.name = f"onnx-reference-{self.metadata.get('precision', 'model')}"

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        with np.errstate(all="ignore"):  # overflow shows up as inf/NaN in the output, which callers check
            (y,) = self.evaluator.run(None, {self.input_name: batch.detach().cpu().numpy().astype(np.float32)})
        return torch.from_numpy(np.asarray(y, dtype=np.float32))


def open_engine(path: Path, engine, device: torch.device) -> OnnxReferenceRunner:
    return OnnxReferenceRunner(path)
