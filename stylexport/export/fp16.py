"""FP16 without NaNs: an exact rescaling of the network, then FP16 conversion with FP32 instance norms.

Instance norm on [0,255]-scale activations overflows in FP16: a conv output above 65504 is inf, and the
variance of values above 256 overflows (x² > 65504). This is the classic cause of NaN/black outputs reported
against TensorRT, ONNX Runtime and torch2trt. Two measures, both exact in real arithmetic:

1. Instance norm is invariant to a positive scale of its input: IN(s·x) = IN(x) when its epsilon becomes
   eps·s². Every conv that feeds an instance norm is scaled (weights and bias) so its output has unit RMS on
   a calibration photo, and the norm's epsilon is scaled to match. Activations then sit near 1, far from
   FP16's limit at any image size.
2. The instance-norm nodes keep FP32 inputs, statistics and outputs (Cast nodes around them), so the
   statistics are computed in FP32 whatever the runtime does.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from stylexport.model import ConvBlock, ResidualBlock, TransformerNet


def _conv_norm_pairs(model: TransformerNet) -> list[tuple[nn.Conv2d, nn.InstanceNorm2d]]:
    pairs = []
    for module in model.modules():
        if isinstance(module, ConvBlock):
            pairs.append((module.conv, module.norm))
        elif isinstance(module, ResidualBlock):
            pairs += [(module.conv1, module.norm1), (module.conv2, module.norm2)]
    return pairs


@torch.no_grad()
def rescale_for_fp16(model: TransformerNet, calibration: list[torch.Tensor]) -> TransformerNet:
    """A copy of ``model`` that computes the same function with conv outputs of unit RMS.

    ``calibration``: (1, 3, H, W) [0,255] photos used to measure each conv's output RMS.
    """
    scaled = copy.deepcopy(model).float().eval()
    pairs = _conv_norm_pairs(scaled)
    sums = {id(conv): 0.0 for conv, _ in pairs}
    counts = {id(conv): 0 for conv, _ in pairs}

    def hook(conv, _inputs, output):
        sums[id(conv)] += float(output.double().pow(2).sum())
        counts[id(conv)] += output.numel()

    handles = [conv.register_forward_hook(hook) for conv, _ in pairs]
    try:
        for image in calibration:
            scaled(image.float())
    finally:
        for handle in handles:
            handle.remove()
    for conv, norm in pairs:
        rms = (sums[id(conv)] / max(counts[id(conv)], 1)) ** 0.5
        s = 1.0 / rms if rms > 0 else 1.0
        conv.weight.mul_(s)
        if conv.bias is not None:
            conv.bias.mul_(s)
        norm.eps = norm.eps * s * s
    return scaled


def onnx_to_fp16(model_proto, *, keep_fp32_ops: tuple[str, ...] = ("InstanceNormalization",)):
    """FP16 weights and compute, float32 graph inputs/outputs, ``keep_fp32_ops`` computed in FP32.

    Uses ONNX Runtime's maintained converter (onnxruntime.transformers.float16).
    """
    import onnx_ir
    from onnx_ir.passes.common import TopologicalSortPass
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(model_proto, keep_io_types=True, op_block_list=list(keep_fp32_ops),
                                         disable_shape_infer=False)
    # The converter appends its input Casts at the end of the node list; the ONNX checker wants topological order.
    model = onnx_ir.from_proto(converted)
    TopologicalSortPass()(model)
    return onnx_ir.to_proto(model)
