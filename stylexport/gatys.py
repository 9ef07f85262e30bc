"""Optimization-based stylization (Gatys et al.): descend the perceptual loss in pixel space.

This is the slow baseline the paper compares the feed-forward network against. ``scales`` runs it coarse to
fine (as Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer", 2017, and jcjohnson's
neural-style multires recipe do): the image is optimised at a fraction of its size first, upsampled, and
refined, so the painting's large structures appear at full size for a fraction of the full-size iterations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
import torchvision.transforms.v2.functional as TF

from stylexport.losses import LossConfig, LossTerms, gram_matrix, perceptual_loss
from stylexport.vgg import VGG16Features

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")


@dataclasses.dataclass(frozen=True)
class GatysConfig:
    iterations: int | tuple[int, ...] = 100  # one count per scale, or one for every scale
    optimizer: str = "lbfgs"
    lr: float | None = None  # None: 1.0 for L-BFGS (with line search), 4.0 pixel levels for Adam
    init: str = "content"
    seed: int = 0
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    scales: tuple[float, ...] = (1.0,)  # coarse to fine, fractions of the full size; the last must be 1

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if not self.scales or self.scales[-1] != 1.0 or any(not 0 < s <= 1 for s in self.scales) \
                or list(self.scales) != sorted(self.scales):
            raise ValueError(f"scales must rise to 1.0, e.g. (0.5, 0.75, 1.0); got {self.scales}")
        counts = self._counts()
        if len(counts) not in (1, len(self.scales)) or min(counts) < 1:
            raise ValueError(f"iterations must be >= 1, one count or one per scale ({len(self.scales)}); "
                             f"got {self.iterations}")

    def _counts(self) -> tuple[int, ...]:
        return (self.iterations,) if isinstance(self.iterations, int) else tuple(self.iterations)

    def stages(self) -> list[tuple[float, int]]:
        """(scale, iterations) pairs, coarse to fine."""
        counts = self._counts()
        if len(counts) == 1:
            counts = counts * len(self.scales)
        return list(zip(self.scales, counts, strict=True))

    @property
    def total_iterations(self) -> int:
        return sum(n for _, n in self.stages())


@dataclasses.dataclass
class GatysResult:
    image: torch.Tensor  # (1, 3, H, W) in [0, 255]
    losses: dict[str, float]  # final weighted terms and total
    history: list[dict[str, float]]  # one entry per iterate, stage after stage (L-BFGS: each stage's start first)


@torch.no_grad()
def style_targets(vgg: VGG16Features, style: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Gram matrices of the style image (1, 3, H, W) at ``layers``."""
    feats = vgg(style, layers)
    return {name: gram_matrix(feats[name]) for name in layers}


def initial_image(content: torch.Tensor, init: str, seed: int) -> torch.Tensor:
    if init == "content":
        return content.clone(memory_format=torch.contiguous_format)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(content.shape, generator=gen) * 255.0
    return noise.to(content.device)


def evaluate(vgg: VGG16Features, image: torch.Tensor, content_features: torch.Tensor,
             targets: dict[str, torch.Tensor], config: LossConfig) -> LossTerms:
    feats = vgg(image, config.layers())
    return perceptual_loss(image, feats, content_features, targets, config)


def _rescale(image: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1.0:
        return image
    h, w = image.shape[-2:]
    return resize(image, [max(16, round(h * scale)), max(16, round(w * scale))])


def resize(image: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Antialiased bicubic resize of (B, 3, H, W) [0, 255] images, clamped to the range."""
    return TF.resize(image, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True).clamp(0.0, 255.0)


def stylize_gatys(content: torch.Tensor, style: torch.Tensor, vgg: VGG16Features, config: GatysConfig,
                  progress: Callable[[int, dict[str, float]], None] | None = None) -> GatysResult:
    """Optimise an image that keeps ``content``'s features and takes on ``style``'s Gram statistics.

    Both inputs are (1, 3, H, W) RGB [0, 255] on the VGG's device. Neither is modified. With several
    ``config.scales``, each stage starts from the previous stage's result upsampled, and the style image is
    scaled with the content so brush strokes keep their size relative to the picture. ``progress`` gets the
    iteration count over all stages.
    """
    torch.manual_seed(config.seed)
    history: list[dict[str, float]] = []
    image, done = None, 0
    for scale, iterations in config.stages():
        c, s = _rescale(content, scale), _rescale(style, scale)
        start = initial_image(c, config.init, config.seed) if image is None else resize(image, list(c.shape[-2:]))
        stage_progress = None if progress is None else (lambda step, losses, done=done: progress(done + step, losses))
        image, stage_history, final = _optimise(c, s, start, vgg, config, iterations, stage_progress)
        history += stage_history
        done += iterations
    return GatysResult(image=image, losses=final, history=history)


def _optimise(content, style, start, vgg, config: GatysConfig, iterations: int, progress):
    """One stage: ``iterations`` optimizer iterations from ``start`` at ``content``'s size."""
    loss_cfg = config.loss
    with torch.no_grad():
        content_features = vgg(content, (loss_cfg.content_layer,))[loss_cfg.content_layer]
    targets = style_targets(vgg, style, loss_cfg.style_layers)
    image = start.clone(memory_format=torch.contiguous_format).requires_grad_(True)
    run = _run_lbfgs if config.optimizer == "lbfgs" else _run_adam
    history = run(image, vgg, content_features, targets, config, iterations, progress)
    result = image.detach().clamp(0.0, 255.0)
    with torch.no_grad():
        final = evaluate(vgg, result, content_features, targets, loss_cfg).as_floats()
    return result, history, final


def _run_lbfgs(image, vgg, content_features, targets, config: GatysConfig, iterations: int,
               progress) -> list[dict[str, float]]:
    """One L-BFGS call with a strong-Wolfe line search, ``iterations`` iterations.

    The loss's gradient in [0,255] pixel units is tiny (~1e-5) and L-BFGS has absolute thresholds (its
    curvature test ``ys > 1e-10``), so the objective is rescaled for the optimizer so its first gradient
    averages 1 per pixel level. Reported losses are unscaled.
    """
    loss_cfg = config.loss
    terms = evaluate(vgg, image, content_features, targets, loss_cfg)
    (grad,) = torch.autograd.grad(terms.total, image)
    scale = 1.0 / float(grad.abs().mean().clamp_min(1e-30))
    optimizer = torch.optim.LBFGS([image], lr=config.lr or 1.0, max_iter=iterations,
                                  max_eval=2 * iterations + 10, history_size=50,
                                  line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)
    per_iteration: dict[int, dict[str, float]] = {}

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        terms = evaluate(vgg, image, content_features, targets, loss_cfg)
        scaled = terms.total * scale
        scaled.backward()
        iteration = optimizer.state[image].get("n_iter", 0)
        values = terms.as_floats()
        if iteration not in per_iteration or values["total"] < per_iteration[iteration]["total"]:
            per_iteration[iteration] = values
        if progress is not None:
            progress(min(iteration, iterations), values)
        return scaled

    optimizer.step(closure)
    return [per_iteration[k] for k in sorted(per_iteration)]


def _run_adam(image, vgg, content_features, targets, config: GatysConfig, iterations: int,
              progress) -> list[dict[str, float]]:
    optimizer = torch.optim.Adam([image], lr=config.lr or 4.0)
    history = []
    for step in range(1, iterations + 1):
        optimizer.zero_grad(set_to_none=True)
        terms = evaluate(vgg, image, content_features, targets, config.loss)
        terms.total.backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0.0, 255.0)
        history.append(terms.as_floats())
        if progress is not None:
            progress(step, history[-1])
    return history


def sweep(content: torch.Tensor, style: torch.Tensor, vgg: VGG16Features, base: GatysConfig, *,
          style_weights: list[float], tv_weights: list[float],
          layer_weights: Sequence[tuple[float, ...] | None] = (None,),
          progress: Callable[[int, int], None] | None = None) -> list[list[GatysResult]]:
    """The paper's way of choosing weights (its Figures 2 and 3): one Gatys run per (tv, style) pair, and per
    set of style-layer weights (None: the base config's).

    Returns rows by TV weight, then by layer-weight set within it; columns by style weight.
    """
    rows = []
    done, total = 0, len(style_weights) * len(tv_weights) * len(layer_weights)
    for tv in tv_weights:
        for weights in layer_weights:
            row = []
            for sw in style_weights:
                loss = dataclasses.replace(base.loss, style_weight=sw, tv_weight=tv,
                                           style_layer_weights=weights or base.loss.style_layer_weights)
                row.append(stylize_gatys(content, style, vgg, dataclasses.replace(base, loss=loss)))
                done += 1
                if progress is not None:
                    progress(done, total)
            rows.append(row)
    return rows
