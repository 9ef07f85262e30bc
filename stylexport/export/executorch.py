"""ExecuTorch programs (.pte) for phones: the network lowered to the XNNPACK delegate, dynamic height and width.

``torch.export`` traces one image (batch 1: what an app feeds per frame) with height and width free between
the network's ``min_side`` and ``max_side``; ``to_edge_transform_and_lower`` hands the convolutions, ReLUs and
additions to XNNPACK (ExecuTorch's CPU delegate on Android, iOS and desktop), instance norm included (written out
as mean, rsqrt and multiply-add), and leaves reflection padding, upsampling and the crop to ExecuTorch's portable
kernels.
ExecuTorch plans its memory for the largest allowed size, so ``max_side`` is a real bound, stated in the
sidecar (default 1280: 720p either way up); export a smaller bound for phones with little memory.

FP16 programs run the exactly rescaled network (export/fp16.py) in half precision behind float32 input and
output, like every stylexport FP16 artifact. INT8 programs quantize the convolutions dynamically (XNNPACK's
quantizer through torchao's PT2E flow): weights per output channel ahead of time, each convolution's input per
image at run time, output in float, so instance norm and the residual additions stay in floating point and no
calibration photos are needed; the first and last convolutions (the photo's pixels in, the picture's out: a
hundredth of the weights) stay FP32, as in the OpenVINO INT8 recipe: 3 dB better at worst and 4.6 dB at the
median on the shipped great_wave (benchmarks/results/executorch-int8.md); the file is about a quarter of the
FP32 one. The contract goes into a JSON sidecar (``model.pte.json``).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stylexport.artifacts import sidecar_path
from stylexport.export.onnx import _quiet
from stylexport.fileio import write_bytes_atomic, write_text_atomic
from stylexport.model import TransformerNet, swap_instance_norms

log = logging.getLogger(__name__)

METHOD = "forward"


class _InstanceNorm(nn.Module):
    """Instance norm written as mean, subtraction, rsqrt and multiply-add: ops XNNPACK takes (the fused
    ``native_batch_norm`` form stays on a portable kernel, which loses about 4 dB in FP16)."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        self.eps = norm.eps
        self.weight = nn.Parameter(norm.weight.detach().reshape(1, -1, 1, 1).clone())
        self.bias = nn.Parameter(norm.bias.detach().reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=(2, 3), keepdim=True)
        var = (centred * centred).mean(dim=(2, 3), keepdim=True)
        return centred * torch.rsqrt(var + self.eps) * self.weight + self.bias


INT8_METHOD = ("XNNPACK dynamic INT8 convolutions (weights symmetric per channel, inputs per image at run time, "
               "outputs float) but the first and last; instance norm, residual additions, padding and upsampling "
               "in FP32")


def _dynamic_int8(program, example: torch.Tensor, dynamic_shapes, *, ends_in_fp32: bool = True):
    """``program`` with its convolutions quantized for XNNPACK's dynamic INT8 kernels, the first and last kept in
    FP32 unless ``ends_in_fp32`` is False (see the module doc)."""
    with _quiet():
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    module = program.module()
    convs = [n.name for n in module.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    float_convs = {convs[0], convs[-1]} if ends_in_fp32 and convs else set()
    quantizer = XNNPACKQuantizer()
    quantizer.set_operator_type(torch.ops.aten.conv2d.default,
                                get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    quantizer.set_filter_function(lambda node: node.name not in float_convs)
    prepared = prepare_pt2e(module, quantizer)
    prepared(example)  # dynamic: nothing to calibrate, but the observers want one pass
    return torch.export.export(convert_pt2e(prepared), (example,), dynamic_shapes=dynamic_shapes, strict=False)


def lower_program(model: TransformerNet, *, fp16: bool = False, int8: bool = False, max_side: int,
                  int8_ends_in_fp32: bool = True) -> bytes:
    """The .pte bytes of ``model`` for (1, 3, H, W) float32 input with its min_side <= H, W <= max_side;
    ``int8_ends_in_fp32=False`` quantizes every convolution (the recipe before; kept to measure against)."""
    from stylexport.export.aoti import HalfPrecision

    with _quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    net = copy.deepcopy(model).eval().float()
    net.crop_with_pad = False  # ExecuTorch's pad kernel refuses the negative pad the AOTI package uses
    swap_instance_norms(net, _InstanceNorm)
    if fp16:
        net = HalfPrecision(net)
    # DYNAMIC, not Dim: the crop back to (H, W) guards on H's remainder mod 4, which torch.export then keeps
    # as a runtime check instead of refusing to export.
    height = torch.export.Dim.DYNAMIC(min=model.min_side, max=max_side)
    width = torch.export.Dim.DYNAMIC(min=model.min_side, max=max_side)
    example = torch.rand(1, 3, 66, 75) * 255  # not multiples of 4, so nothing specializes to the padding-free case
    with _quiet(), torch.no_grad():
        program = torch.export.export(net, (example,), dynamic_shapes=({2: height, 3: width},), strict=False)
        if int8:
            program = _dynamic_int8(program, example, ({2: height, 3: width},), ends_in_fp32=int8_ends_in_fp32)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        return lowered.to_executorch().buffer


def write_program(model: TransformerNet, path: Path, *, metadata: dict[str, str], fp16: bool = False,
                  int8: bool = False, max_side: int) -> dict[str, Any]:
    """Lower ``model`` into ``path`` (written atomically) and its sidecar; return the sidecar."""
    from importlib.metadata import version

    start = time.perf_counter()
    data = lower_program(model, fp16=fp16, int8=int8, max_side=max_side)
    if int8:
        metadata = {**metadata, "int8_method": INT8_METHOD}
    write_bytes_atomic(path, data)
    sidecar = {**metadata, "method": METHOD, "delegate": "XNNPACK", "batch": 1, "max_side": max_side,
               "executorch_version": version("executorch"), "torch_version": torch.__version__,
               "lower_seconds": round(time.perf_counter() - start, 1)}
    write_text_atomic(sidecar_path(path), json.dumps(sidecar, indent=2) + "\n")
    log.info("ExecuTorch program %s: %.1f MB, H and W in %d..%d", path, len(data) / 1e6, model.min_side, max_side)
    return sidecar
