"""ONNX export with torch's current exporter (torch.export based), dynamic batch/height/width.

The graph's contract goes into ``metadata_props``; the ONNX checker runs on every file written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import torch

from stylexport.artifacts import load_onnx  # noqa: F401 - part of this module's API
from stylexport.artifacts import read_onnx_metadata as read_metadata  # noqa: F401
from stylexport.contract import INPUT_NAME, OUTPUT_NAME, PREFIX
from stylexport.fileio import atomic_path
from stylexport.model import TransformerNet

log = logging.getLogger(__name__)

OPSET = 18
DIM_NAMES = ("batch", None, "height", "width")


def _quiet():
    """The exporter prints progress lines and warnings of its own; keep the CLI's output ours."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    levels = {"onnx_ir": logging.WARNING, "onnxscript": logging.WARNING, "torch.onnx": logging.WARNING,
              # AOTInductor's compile warns that no CUDA runtime is found on CPU-only machines: expected there.
              "torch.utils.cpp_extension": logging.ERROR, "torch._inductor": logging.ERROR,
              # importing ExecuTorch's lowering (torchao) warns about a deprecated pytree registration
              "torch.utils._pytree": logging.ERROR,
              # NNCF logs INFO lines to stdout through its own handler (the logger's level still rules them)
              "nncf": logging.WARNING}
    for name, level in levels.items():
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(level)
    return stack


def torch_to_onnx_proto(model: TransformerNet, *, max_side: int = 8192, max_batch: int = 256, opset: int = OPSET):
    """Trace the model into an ONNX ModelProto with dynamic (batch, height, width)."""
    import onnx

    batch = torch.export.Dim("batch", min=1, max=max_batch)
    height = torch.export.Dim("height", min=model.min_side, max=max_side)
    width = torch.export.Dim("width", min=model.min_side, max=max_side)
    example = torch.rand(1, 3, 64, 72) * 255
    with _quiet():
        program = torch.onnx.export(model.eval().float(), (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], opset_version=opset, verbose=False,
                                    dynamic_shapes={"x": {0: batch, 2: height, 3: width}})
    proto = program.model_proto
    # The output has the input's shape; say so with the same dimension names.
    for dim, name in zip(proto.graph.output[0].type.tensor_type.shape.dim, DIM_NAMES, strict=True):
        if name is not None:
            dim.ClearField("dim_value")
            dim.dim_param = name
    del proto.metadata_props[:]
    onnx.checker.check_model(proto, full_check=False)
    return proto


def set_metadata(proto, metadata: dict[str, str]) -> None:
    """Add ``metadata`` (keys prefixed ``stylexport.``) to the model's metadata_props."""
    import onnx

    props = {p.key: p.value for p in proto.metadata_props}
    props.update({PREFIX + key: value for key, value in metadata.items()})
    onnx.helper.set_model_props(proto, props)


def save_onnx(proto, path: str | os.PathLike) -> Path:
    import onnx

    path = Path(path)
    onnx.checker.check_model(proto, full_check=False)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path
