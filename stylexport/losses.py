"""The perceptual loss of Gatys et al. as written in Wang, Guo & Lu, equations (1)-(5).

Pure functions: none of them modifies its inputs. Gram matrices and losses are computed in float32 even
when the features come from a half-precision forward pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu2_2"


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of equation (5) and the layers they read. Defaults follow the paper (section 4).

    The VGG features are normalised per layer (see ``stylexport.vgg``), so these weights mean the same with
    either VGG weight source.
    """

    content_weight: float = 1.0
    style_weight: float = 1e5
    tv_weight: float = 1e-7
    tv_beta: float = 2.0
    content_layer: str = CONTENT_LAYER
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: equal weights, as in the paper

    def __post_init__(self):
        import math

        from stylexport.errors import StylexportError

        weights = {"content-weight": self.content_weight, "style-weight": self.style_weight,
                   "tv-weight": self.tv_weight, **{f"style-layer-weights (weight {i + 1})": w
                                                   for i, w in enumerate(self.style_layer_weights or ())}}
        for name, value in weights.items():  # a negative weight would maximise its term
            if not (math.isfinite(value) and value >= 0):
                raise StylexportError(f"--{name} {value:g}: loss weights must be finite and 0 or more")
        if not (math.isfinite(self.tv_beta) and self.tv_beta > 0):
            raise StylexportError(f"--tv-beta {self.tv_beta:g}: the total-variation exponent must be above 0")

    def layer_weights(self) -> tuple[float, ...]:
        if self.style_layer_weights is None:
            return (1.0,) * len(self.style_layers)
        if len(self.style_layer_weights) != len(self.style_layers):
            raise ValueError("style_layer_weights must have one weight per style layer")
        return self.style_layer_weights

    def layers(self) -> tuple[str, ...]:
        """Every VGG layer the loss reads, content layer included, without repeats."""
        return tuple(dict.fromkeys((*self.style_layers, self.content_layer)))


@dataclasses.dataclass(frozen=True)
class LossTerms:
    """The weighted terms of equation (5) and their sum (tensors, so ``total`` can be backpropagated)."""

    total: torch.Tensor
    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "content", "style", "tv")}


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Equation (2): G = F Fᵀ / (N·M) for features of shape (B, N, H, W), M = H·W; returns (B, N, N)."""
    b, n, h, w = features.shape
    f = features.reshape(b, n, h * w).float()
    return torch.bmm(f, f.transpose(1, 2)) / (n * h * w)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Equation (1): mean squared difference of the feature maps."""
    return torch.mean((features.float() - target.float()) ** 2)


def style_layer_loss(gram: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Equation (3): mean squared difference of two Gram matrices (target broadcast over the batch)."""
    return torch.mean((gram - target_gram) ** 2)


def style_loss(grams: Mapping[str, torch.Tensor], target_grams: Mapping[str, torch.Tensor],
               layers: Sequence[str], weights: Sequence[float]) -> torch.Tensor:
    """Equation (4): weighted sum of the per-layer style losses."""
    terms = [w * style_layer_loss(grams[name], target_grams[name]) for name, w in zip(layers, weights, strict=True)]
    return torch.stack(terms).sum()


def total_variation(image: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Total variation of a (B, C, H, W) image: sum over pixels of (dx² + dy²)^(β/2), per image, averaged.

    β = 2 gives the sum of squared neighbour differences; β = 1 the (isotropic) sum of gradient magnitudes.
    """
    x = image.float()
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    sq = dx * dx + dy * dy
    if beta == 2.0:
        per_pixel = sq
    else:
        per_pixel = (sq + 1e-8) ** (beta / 2.0)
    return per_pixel.sum() / image.shape[0]


def perceptual_loss(image: torch.Tensor, features: Mapping[str, torch.Tensor],
                    content_features: torch.Tensor, target_grams: Mapping[str, torch.Tensor],
                    config: LossConfig) -> LossTerms:
    """Equation (5): λc·Lc + λs·Ls + λtv·Ltv for an image, its VGG features, and the targets."""
    grams = {name: gram_matrix(features[name]) for name in config.style_layers}
    lc = config.content_weight * content_loss(features[config.content_layer], content_features)
    ls = config.style_weight * style_loss(grams, target_grams, config.style_layers, config.layer_weights())
    ltv = config.tv_weight * total_variation(image, config.tv_beta)
    return LossTerms(total=lc + ls + ltv, content=lc, style=ls, tv=ltv)
