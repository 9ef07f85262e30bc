"""Tiled stylization for images too large to run in one piece, with instance-norm statistics shared
across tiles.

Per-tile instance norm gives every tile its own colour balance: visible seams. Here every InstanceNorm2d
of (a copy of) the network normalizes with the statistics of the *whole* image, gathered tile by tile,
one norm layer at a time: pass k runs every tile only as far as norm layer k (earlier layers already use
whole-image statistics) and sums that layer's input over each tile's core; the last pass runs the whole
network and writes each tile's core. With 15 norm layers that costs about 8 untiled runs' worth of
compute (early passes stop early), in exchange for a result equal to the untiled one. Pooling per-tile
statistics and refining them instead was tried first and measured: it does not converge for the deep
layers (the residual blocks amplify the mismatch: the relative variance error at the last norm grew to 3e5
after 4 passes on a random network). tests/test_tiles.py checks the result against the untiled network.

Tiles overlap: each core is extended by ``margin`` pixels of real image on every side, more than the
network's receptive-field radius, so a core's output does not see the tile's own padded border. The image
is reflection-padded to a multiple of 4 once (and by the network's ``edge_pad``), as the network itself does,
so tiles at the image's border see the same border as the untiled network. Peak memory is that of one tile
plus the output image.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stylexport.contract import MIN_SIDE, SIZE_MULTIPLE
from stylexport.errors import StylexportError
from stylexport.image import reflect_pad_to
from stylexport.model import TransformerNet, swap_instance_norms

DEFAULT_MARGIN = 64  # > the network's receptive-field radius (about 61 px at full resolution)


@dataclasses.dataclass
class _Window:
    """The current tile, in padded-image pixels: the tile's origin and size and its core box."""

    h: int = 0
    w: int = 0
    core: tuple[int, int, int, int] = (0, 0, 0, 0)  # y0, y1, x0, x1 relative to the tile


class _Stop(Exception):
    """Raised by the norm layer being gathered: the rest of the network is not needed in this pass."""


class SharedStatsNorm(nn.Module):
    """An InstanceNorm2d (affine) that normalizes with given statistics, or gathers them and stops."""

    def __init__(self, norm: nn.InstanceNorm2d, window: _Window):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps
        self.window = window
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None  # whole-image (mean, var) per channel
        self.gathering = False
        self.reset()

    def reset(self) -> None:
        self.sum = self.sq = None
        self.count = 0

    def gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.sum / self.count
        return mean.float(), (self.sq / self.count - mean * mean).clamp(min=0).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gathering:
            scale = self.window.w // x.shape[-1]
            y0, y1, x0, x1 = (v // scale for v in self.window.core)
            core = x[0, :, y0:y1, x0:x1].double()
            s, q = core.sum(dim=(1, 2)), (core * core).sum(dim=(1, 2))
            self.sum = s if self.sum is None else self.sum + s
            self.sq = q if self.sq is None else self.sq + q
            self.count += core.shape[1] * core.shape[2]
            raise _Stop
        if self.stats is None:
            raise RuntimeError("SharedStatsNorm used before its statistics were gathered")
        mean, var = (t.to(x.dtype)[None, :, None, None] for t in self.stats)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight[None, :, None, None] + \
            self.bias[None, :, None, None]


def _with_shared_norms(model: TransformerNet, window: _Window) -> tuple[nn.Module, list[SharedStatsNorm]]:
    net = copy.deepcopy(model).eval()
    norms = swap_instance_norms(net, lambda norm: SharedStatsNorm(norm, window))
    return net, norms


def _spans(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(start, stop) of each tile and (core_start, core_stop), all multiples of 4, covering [0, length).

    Every tile is at least MIN_SIDE px: a sliver of a core left at the end (and a small margin) takes more
    of the image before it as context, since the network cannot run on fewer pixels (its 9x9 convolution
    reflection-pads by 4).
    """
    spans = []
    for c0 in range(0, length, tile):
        c1 = min(length, c0 + tile)
        t0, t1 = max(0, c0 - margin), min(length, c1 + margin)
        spans.append((max(0, min(t0, t1 - MIN_SIDE)), t1, c0, c1))
    return spans


def check_tiling(tile: int, margin: int = DEFAULT_MARGIN) -> None:
    """Refuse a tile or margin the network cannot run, naming the option and the nearest value that runs: before
    a model opens, not once per image."""
    if tile < MIN_SIDE or tile % SIZE_MULTIPLE:
        nearest = max(MIN_SIDE, -(-tile // SIZE_MULTIPLE) * SIZE_MULTIPLE)
        raise StylexportError(f"--tile {tile}: a tile must be a multiple of {SIZE_MULTIPLE} px and at least "
                              f"{MIN_SIDE}; try --tile {nearest} (or 512)")
    if margin < 0 or margin % SIZE_MULTIPLE:
        nearest = max(0, -(-margin // SIZE_MULTIPLE) * SIZE_MULTIPLE)
        raise StylexportError(f"--tile-margin {margin}: the margin must be a multiple of {SIZE_MULTIPLE} px, 0 or "
                              f"more; try --tile-margin {nearest}")


@torch.no_grad()
def stylize_tiled(model: TransformerNet, image: torch.Tensor, *, tile: int = 512, margin: int = DEFAULT_MARGIN,
                  device: torch.device | str = "cpu", progress: Callable[[int, int], None] | None = None
                  ) -> torch.Tensor:
    """Stylize one (3, H, W) or (1, 3, H, W) [0,255] image in tiles of ``tile`` px (core) with shared statistics.

    Returns (1, 3, H, W) float32 on the CPU, clamped to [0, 255].
    """
    check_tiling(tile, margin)
    x = image[None] if image.dim() == 3 else image
    if x.shape[0] != 1:
        raise StylexportError(f"tiled stylization takes one image at a time, got a batch of {x.shape[0]}")
    if min(x.shape[-2:]) < model.min_side:  # as the untiled policy does (runtime/base.py, infer_any_size)
        h, w = x.shape[-2:]
        padded, (top, left) = reflect_pad_to(x.float(), model.min_side)
        out = stylize_tiled(model, padded, tile=tile, margin=margin, device=device, progress=progress)
        return out[..., top:top + h, left:left + w]
    h, w = x.shape[-2:]
    e = model.edge_pad  # padded once here, as the network pads itself (model.py); the tiles run unpadded
    pad_h, pad_w = (-(h + 2 * e)) % SIZE_MULTIPLE, (-(w + 2 * e)) % SIZE_MULTIPLE
    padded = F.pad(x.float(), (e, e + pad_w, e, e + pad_h), mode="reflect") if e or pad_h or pad_w else x.float()
    hp, wp = padded.shape[-2:]
    window = _Window()
    net, norms = _with_shared_norms(model, window)
    net.edge_pad = 0
    net = net.to(device)
    tiles = [(r, c) for r in _spans(hp, tile, margin) for c in _spans(wp, tile, margin)]
    out = torch.empty(1, 3, hp, wp)
    total, done = (len(norms) + 1) * len(tiles), 0

    def each_tile(body: Callable[[torch.Tensor, tuple[int, int, int, int]], None]) -> None:
        nonlocal done
        for (ty0, ty1, cy0, cy1), (tx0, tx1, cx0, cx1) in tiles:
            window.h, window.w = ty1 - ty0, tx1 - tx0
            window.core = (cy0 - ty0, cy1 - ty0, cx0 - tx0, cx1 - tx0)
            body(padded[..., ty0:ty1, tx0:tx1].to(device), (cy0, cy1, cx0, cx1))
            done += 1
            if progress:
                progress(done, total)

    def gather(x: torch.Tensor, _core) -> None:
        try:
            net(x, clamp=False)
        except _Stop:
            return
        raise RuntimeError("the gathering norm layer was never reached")

    def write(x: torch.Tensor, core: tuple[int, int, int, int]) -> None:
        cy0, cy1, cx0, cx1 = core
        y0, x0 = window.core[0], window.core[2]
        y = net(x, clamp=False)
        out[..., cy0:cy1, cx0:cx1] = y[..., y0:y0 + cy1 - cy0, x0:x0 + cx1 - cx0].float().cpu()

    for norm in norms:  # in forward order: each pass needs the earlier layers' whole-image statistics
        norm.reset()
        norm.gathering = True
        each_tile(gather)
        norm.gathering = False
        norm.stats = norm.gathered()
    each_tile(write)
    return out[..., e:e + h, e:e + w].clamp(0, 255)


def tile_count(h: int, w: int, tile: int) -> int:
    return math.ceil(h / tile) * math.ceil(w / tile)
