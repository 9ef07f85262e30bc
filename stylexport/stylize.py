"""The stylize pipeline for files: read -> size -> infer (or tile) -> controls -> save.

``plan_outputs`` decides every output path before anything is written (the input tree's layout kept under the
output folder, collisions refused); ``stylize_files`` then processes every image, and a bad one is reported
and skipped, never the end of the batch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from stylexport.controls import apply_controls
from stylexport.errors import StylexportError
from stylexport.image import SAVE_FORMATS, read_image, resize_max_side, save_image


def plan_outputs(files: Sequence[Path], output: Path) -> list[Path]:
    """Where each input goes. One input and an image suffix: ``output`` is the file. Otherwise ``output`` is a
    folder and each image keeps its path relative to the inputs' common folder (``a/x.jpg`` and ``b/x.jpg`` go
    to ``OUT/a/x.jpg`` and ``OUT/b/x.jpg``), with a suffix we cannot write replaced by ``.png``. Two inputs
    that would land on one file are refused here, before anything is written."""
    if len(files) == 1 and output.suffix.lower() in SAVE_FORMATS:
        return [output]
    if output.suffix.lower() in SAVE_FORMATS and not output.is_dir():
        raise StylexportError(f"{len(files)} inputs but output {output} is one image; pass a folder for -o")
    resolved = [Path(os.path.abspath(f)) for f in files]
    base = Path(os.path.commonpath([str(f.parent) for f in resolved]))
    targets: dict[Path, Path] = {}
    plan = []
    for original, path in zip(files, resolved, strict=True):
        suffix = path.suffix.lower() if path.suffix.lower() in SAVE_FORMATS else ".png"
        target = output / path.relative_to(base).with_suffix(suffix)
        if target in targets:
            raise StylexportError(f"{targets[target]} and {original} would both be written to {target}; rename one "
                                  "of them or stylize them into separate folders (nothing was written)")
        targets[target] = original
        plan.append(target)
    return plan


@dataclasses.dataclass
class StylizeReport:
    written: list[Path]
    failed: list[tuple[Path, str]]  # (input, one-line reason)


def stylize_files(runner, files: Sequence[Path], targets: Sequence[Path], *, size: int | None = None,
                  strength: float = 1.0, colors: bool = False,
                  infer: Callable[[torch.Tensor, Path], torch.Tensor] | None = None,
                  progress: Callable[[Path], None] | None = None) -> StylizeReport:
    """Stylize each file into its target. ``infer`` replaces the runner call (tiling); a file that cannot be
    read, run or written is recorded with its reason and the rest go on."""
    report = StylizeReport([], [])
    for path, target in zip(files, targets, strict=True):
        try:
            image = resize_max_side(read_image(path), size)
            result = infer(image, path) if infer is not None else runner.infer_any_size(image[None])
            result = apply_controls(result.float().cpu(), image[None], strength=strength, colors=colors)
            report.written.append(save_image(result, target))
        except StylexportError as exc:
            report.failed.append((path, str(exc)))
        if progress is not None:
            progress(path)
    return report
