"""Comparing outputs: max absolute error and PSNR on the 0-255 scale, NaN/inf check."""

from __future__ import annotations

import dataclasses
import math

import torch


@dataclasses.dataclass(frozen=True)
class Parity:
    max_abs: float
    psnr_db: float
    finite: bool

    def as_dict(self) -> dict[str, float | bool]:
        return dataclasses.asdict(self)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> float:
    mse = float(torch.mean((a.double() - b.double()) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def compare(output: torch.Tensor, reference: torch.Tensor) -> Parity:
    """``output`` against ``reference`` (same shape), both on the 0-255 scale."""
    if output.shape != reference.shape:
        raise ValueError(f"shape {tuple(output.shape)} differs from the reference's {tuple(reference.shape)}")
    out, ref = output.detach().float().cpu(), reference.detach().float().cpu()
    finite = bool(torch.isfinite(out).all())
    if not finite:
        return Parity(max_abs=math.inf, psnr_db=-math.inf, finite=False)
    return Parity(max_abs=float((out - ref).abs().max()), psnr_db=psnr(out, ref), finite=True)


def worst(parities: list[Parity]) -> Parity:
    return Parity(max_abs=max(p.max_abs for p in parities), psnr_db=min(p.psnr_db for p in parities),
                  finite=all(p.finite for p in parities))
