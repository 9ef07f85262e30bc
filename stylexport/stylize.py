"""The stylize pipeline for files: read -> size -> infer (or tile) -> controls -> save.

``plan_outputs`` decides every output path before anything is written (the input tree's layout kept under the
output folder, collisions refused); ``stylize_files`` then processes every image, and a bad one is reported
and skipped, never the end of the batch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from stylexport.controls import apply_controls
from stylexport.errors import StylexportError
from stylexport.image import SAVE_FORMATS, read_image, resize_max_side, save_image

log = logging.getLogger(__name__)
AUTO_MIN_PSNR_DB = 45.0  # an engine chosen for the user must be this close to torch FP32 (INT8 is opt-in)


def auto_candidates(device: torch.device) -> list:
    """Engines a checkpoint may be run on when no engine is named, fastest first (the table's ``auto``
    order, from the benchmarks): those of formats that export in seconds and whose parity gate is at least
    as strict as AUTO_MIN_PSNR_DB, and that run here; torch on the checkpoint itself is always last."""
    from stylexport.formats import CHECKPOINT, ENGINES, FORMATS, unavailable

    out = []
    for engine in sorted((e for e in ENGINES.values() if e.auto is not None), key=lambda e: e.auto):
        fmt = FORMATS[engine.formats[0]]
        strict = fmt.tolerance.min_psnr_db is None or fmt.tolerance.min_psnr_db >= AUTO_MIN_PSNR_DB
        if (fmt is CHECKPOINT or (fmt.quick_build and strict)) and unavailable(engine, device) is None:
            out.append(engine)
    return out


def open_model(path: str | os.PathLike, *, device: str = "auto", engine: str | None = None):
    """The runner stylize and video use. An engine named, or an exported artifact: ``open_runner``. A
    checkpoint with no engine named: the fastest engine that runs here and passes its parity gate; the
    artifact is exported once into the cache (keyed by the checkpoint's sha256) and reused. A cached artifact
    that no longer opens (written by an older stylexport or library, or cut short) is exported again; an export
    that fails its gate is logged and the next engine tried, down to torch on the checkpoint."""
    from stylexport.devices import pick_device
    from stylexport.fileio import cache_dir
    from stylexport.formats import CHECKPOINT, FORMATS, format_of, open_engine
    from stylexport.runtime import open_runner

    path = Path(path)
    if engine is not None or not path.is_file() or format_of(path) is not CHECKPOINT:
        return open_runner(path, device=device, engine=engine)
    from stylexport.checkpoint import load_checkpoint
    from stylexport.export import export
    from stylexport.fileio import sha256_file

    load_checkpoint(path)  # a checkpoint we cannot read fails here with its own one line, not once per engine
    dev = pick_device(device)
    folder = cache_dir() / "engines" / sha256_file(path)
    for candidate in auto_candidates(dev):
        fmt = FORMATS[candidate.formats[0]]
        if fmt is CHECKPOINT:
            return open_engine(candidate, path, dev)
        for cached in [p for p in folder.glob(f"*{fmt.suffix}") if format_of(p) is fmt]:
            try:
                return open_engine(candidate, cached, dev)
            except StylexportError as exc:
                log.warning("cached %s no longer opens (%s); exporting it again", cached, exc)
                fmt.remove(cached)
        try:
            log.info("exporting %s to %s for %s (once; cached in %s)", path.name, fmt.name, candidate.name, folder)
            return open_engine(candidate, Path(export(path, [fmt.name], folder)[0].path), dev)
        except StylexportError as exc:
            log.warning("%s: %s; trying the next engine", candidate.name, exc)
    return open_runner(path, device=dev)


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
