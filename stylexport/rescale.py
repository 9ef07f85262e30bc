"""FP16 without overflow, part 1: an exact rescaling of the network (used by every FP16 engine, torch or exported).

Instance norm on [0,255]-scale activations overflows in FP16: a conv output above 65504 is inf, and the
variance of values above 256 overflows (x² > 65504). Instance norm is invariant to a positive scale of its
input: IN(s·x) = IN(x) when its epsilon becomes eps·s². Every conv that feeds an instance norm is scaled
(weights and bias) so its output has unit RMS on a calibration photo, and the norm's epsilon is scaled to
match. Activations then sit near 1, far from FP16's limit at any image size. Part 2 (FP32 instance norms in
FP16 ONNX graphs) is in stylexport/export/fp16.py.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from stylexport.model import ConvBlock, ResidualBlock, TransformerNet


def calibration_photo() -> list[torch.Tensor]:
    """The bundled photo, as the (1, 3, H, W) calibration batch the rescaling measures RMS on."""
    from stylexport.image import read_image, resize_max_side, sample_paths

    return [resize_max_side(read_image(sample_paths()[0]), 161)[None]]


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
