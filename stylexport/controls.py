"""Stylization controls applied to a backend's output, so they behave identically on every backend.

- ``strength``: a blend between the content (0) and the stylized output (1).
- ``preserve_colors``: luminance-only transfer (Gatys et al., "Preserving color in neural artistic style
  transfer"): the stylized luma with the content's chroma, in BT.601 full-range YCbCr (JPEG's).
- ``flicker``: how much a video's output changes from frame to frame beyond the input's own change.
- ``Stabilizer``: motion-aware temporal blending of the output, the stabilization that needs no training.

All work on float tensors (N, 3, H, W) or (3, H, W), RGB in [0, 255].
"""

from __future__ import annotations

import torch

from stylexport.errors import StylexportError

# BT.601 full range (JPEG): Y = 0.299 R + 0.587 G + 0.114 B; Cb, Cr centred on 128.
_RGB_TO_YCC = torch.tensor([[0.299, 0.587, 0.114],
                            [-0.168736, -0.331264, 0.5],
                            [0.5, -0.418688, -0.081312]])
_YCC_OFFSET = torch.tensor([0.0, 128.0, 128.0])


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    m = _RGB_TO_YCC.to(rgb.device, rgb.dtype)
    return torch.einsum("ij,...jhw->...ihw", m, rgb) + _YCC_OFFSET.to(rgb.device, rgb.dtype)[:, None, None]


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    m = torch.linalg.inv(_RGB_TO_YCC.double()).to(ycc.device, ycc.dtype)
    centred = ycc - _YCC_OFFSET.to(ycc.device, ycc.dtype)[:, None, None]
    return torch.einsum("ij,...jhw->...ihw", m, centred)


def preserve_colors(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The stylized image's luminance with the content's chroma."""
    y = rgb_to_ycbcr(stylized.float())[..., :1, :, :]
    cbcr = rgb_to_ycbcr(content.float().to(stylized.device))[..., 1:, :, :]
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=-3)).clamp(0, 255)


def check_strength(strength: float) -> float:
    if not 0.0 <= strength <= 1.0:
        raise StylexportError(f"--strength {strength:g} is outside 0..1; use 0 (the photo) to 1 (full style)")
    return float(strength)


def blend(stylized: torch.Tensor, content: torch.Tensor, strength: float) -> torch.Tensor:
    """``strength`` * stylized + (1 - strength) * content; 0 returns the content exactly."""
    strength = check_strength(strength)
    content = content.float().to(stylized.device)
    if strength == 0.0:
        return content.clone()
    if strength == 1.0:
        return stylized
    return torch.lerp(content, stylized.float(), strength)


def apply_controls(stylized: torch.Tensor, content: torch.Tensor, *, strength: float = 1.0,
                   colors: bool = False) -> torch.Tensor:
    """Colour preservation, then strength: what ``stylize`` and ``video`` do after any backend."""
    out = preserve_colors(stylized, content) if colors else stylized
    return blend(out, content, strength)


def flicker(outputs: list[torch.Tensor], inputs: list[torch.Tensor]) -> float:
    """Mean excess temporal change, in 0-255 levels: mean over frames and pixels of max(0, |ΔO| - |ΔI|).

    Zero when the output changes no more than the input does (a static clip gives a static output); grows
    with change the network adds on its own (flicker). Frames are (3, H, W) or (1, 3, H, W).
    """
    if len(outputs) != len(inputs):
        raise ValueError("outputs and inputs must have the same number of frames")
    if len(outputs) < 2:
        return 0.0
    total = 0.0
    for t in range(1, len(outputs)):
        d_out = (outputs[t].float() - outputs[t - 1].float()).abs()
        d_in = (inputs[t].float() - inputs[t - 1].float()).abs().to(d_out.device)
        total += float((d_out - d_in).clamp(min=0).mean())
    return total / (len(outputs) - 1)


class Stabilizer:
    """Motion-aware exponential blending of consecutive outputs.

    out_t = a * out_{t-1} + (1 - a) * stylized_t, with a per-pixel a = strength * exp(-|I_t - I_{t-1}| / tau):
    where the input is still, the output is smoothed over time; where it moves, the new frame wins, so
    moving edges do not ghost. ``strength`` 0 is off.
    """

    def __init__(self, strength: float, tau: float = 12.0):
        if not 0.0 <= strength < 1.0:
            raise StylexportError(f"--stabilize {strength:g} is outside 0..1 (1 excluded); try 0.5")
        self.strength, self.tau = float(strength), float(tau)
        self._prev_in: torch.Tensor | None = None
        self._prev_out: torch.Tensor | None = None

    def __call__(self, stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        content = content.float().to(stylized.device)
        if self.strength == 0.0 or self._prev_out is None or self._prev_out.shape != stylized.shape:
            out = stylized
        else:
            motion = (content - self._prev_in).abs().mean(dim=-3, keepdim=True)
            a = self.strength * torch.exp(-motion / self.tau)
            out = a * self._prev_out + (1 - a) * stylized
        self._prev_in, self._prev_out = content, out
        return out
