"""Pictures people would rather look at than read: contact sheets and loss curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from stylexport.fileio import atomic_path


def contact_sheet(tiles: Sequence[Sequence[torch.Tensor]], *, row_labels: Sequence[str], col_labels: Sequence[str],
                  title: str = "", pad: int = 4) -> torch.Tensor:
    """A grid of (3, H, W) [0,255] images with labels on the left and on top; returns (3, H', W'). Columns are as
    wide as the widest image, each row as tall as its tallest."""
    font = ImageFont.load_default()
    heights = [max(t.shape[-2] for t in row) for row in tiles]
    tw = max(t.shape[-1] for row in tiles for t in row)
    left = max([len(s) for s in row_labels] + [0]) * 7 + 2 * pad
    top = 18 + (16 if title else 0)
    sheet = Image.new("RGB", (left + len(col_labels) * (tw + pad) + pad, top + sum(h + pad for h in heights) + pad),
                      "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 2), title, fill="black", font=font)
    for j, label in enumerate(col_labels):
        draw.text((left + j * (tw + pad), top - 14), label, fill="black", font=font)
    y = top
    for label, row, th in zip(row_labels, tiles, heights, strict=True):
        draw.text((pad, y + th // 2 - 6), label, fill="black", font=font)
        for j, tile in enumerate(row):
            arr = tile.detach().float().cpu().clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            sheet.paste(Image.fromarray(arr), (left + j * (tw + pad), y))
        y += th + pad
    return torch.from_numpy(np.array(sheet)).permute(2, 0, 1).float()


def plot_history(history: Sequence[dict[str, float]], path: str | Path) -> None:
    """Figure 7 of the paper: total, content and style loss against iterations; whole run and first steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    steps = [h["step"] for h in history]
    first = max(1, min(len(history), max(10, len(history) // 10)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, n, title in ((axes[0], len(history), "whole run"), (axes[1], first, f"first {steps[first - 1]} steps")):
        for key in ("total", "content", "style"):
            ax.plot(steps[:n], [h[key] for h in history[:n]], label=key)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("weighted loss")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
