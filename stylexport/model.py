"""TransformerNet: Johnson et al.'s feed-forward style network, as in Wang, Guo & Lu, section 3.

conv 9x9 3->32, conv 3x3/2 32->64, conv 3x3/2 64->128, five residual blocks (128),
2 x (nearest upsample x2 + conv 3x3), conv 9x9 32->3. Instance norm (affine) + ReLU after every
conv but the last; reflection padding. Input and output are RGB in [0, 255].

The output has exactly the input's height and width for any size >= 16: the input is reflection-padded
to a multiple of 4 inside ``forward`` and the result cropped, so exported graphs behave the same.

``edge_pad`` (0 unless a network was trained with it) reflection-pads the input by that many pixels on every
side as well, and crops them off the output, so the network's own borders fall outside the picture: trained
that way, a network no longer paints the band along the edges that the perceptual loss rewards there
(benchmarks/results/border-frames.json, edge-pad-finetune-great_wave.json). It belongs to the weights: a
network trained with it is run with it, and every exported graph carries it. Reflection needs the pad smaller
than the side, so such a network takes sides of at least ``edge_pad + SIZE_MULTIPLE`` px (``min_side``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylexport.contract import MIN_SIDE, SIZE_MULTIPLE


class ConvLayer(nn.Conv2d):
    """A convolution with reflection padding that keeps the size (divided by the stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                         padding_mode="reflect")


class ConvBlock(nn.Module):
    """ConvLayer -> InstanceNorm (affine) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv = ConvLayer(in_channels, out_channels, kernel_size, stride)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class UpsampleConvBlock(ConvBlock):
    """Nearest-neighbour x2 upsampling, then a ConvBlock (avoids transposed-conv checkerboards)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResidualBlock(nn.Module):
    """conv-norm-relu-conv-norm plus the identity (He et al.; Gross & Wilber's variant used by Johnson)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.norm1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.norm2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(y))


class TransformerNet(nn.Module):
    """Image transformation network f_W: (N, 3, H, W) RGB [0,255] -> same shape, RGB [0,255]."""

    def __init__(self, edge_pad: int = 0) -> None:
        super().__init__()
        if isinstance(edge_pad, bool) or not isinstance(edge_pad, int) or edge_pad < 0:
            raise ValueError(f"edge_pad must be an int >= 0, got {edge_pad!r}")
        self.edge_pad = edge_pad
        self.encoder = nn.Sequential(ConvBlock(3, 32, 9), ConvBlock(32, 64, 3, 2), ConvBlock(64, 128, 3, 2))
        self.residuals = nn.Sequential(*(ResidualBlock(128) for _ in range(5)))
        self.decoder = nn.Sequential(UpsampleConvBlock(128, 64, 3), UpsampleConvBlock(64, 32, 3))
        self.head = ConvLayer(32, 3, 9)
        self.crop_with_pad = False  # set by the AOTInductor exporter (see forward)

    @property
    def min_side(self) -> int:
        """The smallest height and width this network takes (reflection needs each pad below the side)."""
        return max(MIN_SIDE, self.edge_pad + SIZE_MULTIPLE)

    def forward(self, x: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Stylize; ``clamp=False`` returns the raw output (training uses it so gradients are not cut)."""
        h, w = x.shape[-2], x.shape[-1]
        e = self.edge_pad
        pad_h = (SIZE_MULTIPLE - (h + 2 * e) % SIZE_MULTIPLE) % SIZE_MULTIPLE
        pad_w = (SIZE_MULTIPLE - (w + 2 * e) % SIZE_MULTIPLE) % SIZE_MULTIPLE
        y = F.pad(x, (e, e + pad_w, e, e + pad_h), mode="reflect")
        y = self.head(self.decoder(self.residuals(self.encoder(y))))
        if self.crop_with_pad:
            # The same values as the slice below, but torch.export can prove the shape for every (H, W), so
            # the AOTInductor package stays dynamic without guards. (ONNX keeps the slice: negative Pad is
            # rejected by ONNX's reference evaluator.)
            y = F.pad(y, (-e, -e - pad_w, -e, -e - pad_h))
        else:
            y = y[..., e:e + h, e:e + w]
        return y.clamp(0.0, 255.0) if clamp else y


def swap_instance_norms(module: nn.Module, make) -> list[nn.Module]:
    """Replace every InstanceNorm2d under ``module`` by ``make(norm)``, in place; return the replacements in
    order (tiled inference and the ExecuTorch exporter rewrite the norms this way)."""
    made = []
    for name, child in module.named_children():
        if isinstance(child, nn.InstanceNorm2d):
            made.append(make(child))
            setattr(module, name, made[-1])
        else:
            made += swap_instance_norms(child, make)
    return made


def conv_macs_per_pixel(model: nn.Module) -> int:
    """Multiply-accumulates per input pixel, counted from the conv layers (at a size divisible by 4).

    Each conv's spatial size relative to the input follows from the strides and upsampling; the norms,
    ReLUs and additions are not counted (they are not multiply-accumulates).
    """
    macs = 0.0
    scale = 1.0  # output pixels per input pixel of the layer being visited
    for module in model.modules():
        if isinstance(module, UpsampleConvBlock):
            scale *= 4.0
        if isinstance(module, nn.Conv2d):
            scale /= module.stride[0] * module.stride[1]
            k = module.kernel_size[0] * module.kernel_size[1]
            macs += scale * module.out_channels * module.in_channels // module.groups * k
    return round(macs)
