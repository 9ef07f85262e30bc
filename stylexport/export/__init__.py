"""``stylexport export``: a checkpoint in, deployable artifacts out, each checked against PyTorch FP32.

The formats, their builders and tolerances are rows of the one table (stylexport.formats). Every
artifact is run on real photos at two sizes and compared with the checkpoint's own PyTorch FP32 output;
one that misses its declared tolerance is deleted and the export fails, with the measured difference in
the message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stylexport.artifacts import EXPORT_RECORD, read_export_record
from stylexport.checkpoint import LoadedModel, load_checkpoint
from stylexport.contract import artifact_metadata
from stylexport.errors import StylexportError
from stylexport.fileio import check_writable, write_text_atomic
from stylexport.formats import ENGINES, FORMATS, Format, get_format, open_engine, resolve, unavailable, unmet
from stylexport.metrics import compare, worst

log = logging.getLogger(__name__)


PTE_MAX_SIDE = 1280  # ExecuTorch programs: default largest H and W (memory: benchmarks/results/executorch-memory.json)


@dataclasses.dataclass(frozen=True)
class Profile:
    """TensorRT optimization profile over (N, 3, H, W)."""

    min: tuple[int, int, int, int] = (1, 3, 64, 64)
    opt: tuple[int, int, int, int] = (1, 3, 1080, 1920)
    max: tuple[int, int, int, int] = (1, 3, 2160, 3840)


@dataclasses.dataclass
class ExportJob:
    loaded: LoadedModel
    out_dir: Path
    profile: Profile
    workspace_gib: float = 4.0
    calibration: list[torch.Tensor] = dataclasses.field(default_factory=list)
    calibration_dir: Path | None = None  # photos for INT8 calibration; None: crops of the bundled images
    pte_max_side: int = PTE_MAX_SIDE  # ExecuTorch programs: largest H and W (memory is planned for it)
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def stem(self) -> str:
        return self.loaded.style_name

    def metadata(self, fmt: Format, **extra: Any) -> dict[str, str]:
        model = self.loaded.model
        return artifact_metadata(style_name=self.loaded.style_name, source_sha256=self.loaded.sha256,
                                 precision=fmt.precision, fmt=fmt.name, edge_pad=model.edge_pad,
                                 min_side=model.min_side, extra=extra)

    def fp16_model(self):
        """The exactly rescaled network used by every FP16 artifact (see export/fp16.py)."""
        if "fp16_model" not in self.cache:
            from stylexport.export.fp16 import rescale_for_fp16

            self.cache["fp16_model"] = rescale_for_fp16(self.loaded.model, self.calibration)
        return self.cache["fp16_model"]

    @property
    def calibration_source(self) -> str:
        return str(self.calibration_dir) if self.calibration_dir else "the bundled photo and painting"

    def calibration_photos(self, count: int = 32, size: int = 256) -> list[torch.Tensor]:
        """(1, 3, size, size) [0,255] crops for INT8 calibration: up to ``count`` photos from
        ``calibration_dir`` (shorter side resized to ``size``, centre crop), else 8 crops and flips of the
        bundled photo and painting."""
        import torchvision.transforms.v2.functional as TF

        from stylexport.image import find_images, read_image, sample_paths

        if self.calibration_dir is not None:
            paths = find_images([self.calibration_dir])[:count]
            return [TF.center_crop(TF.resize(read_image(p), size, antialias=True), [size, size])[None]
                    for p in paths]
        crops = []
        for path in sample_paths():
            image = TF.resize(read_image(path), int(size * 1.5), antialias=True)
            h, w = image.shape[-2:]
            for top, left in ((0, 0), (h - size, w - size)):
                crop = image[:, top:top + size, left:left + size]
                crops += [crop[None], TF.horizontal_flip(crop)[None]]
        return crops

    def scratch(self) -> Path:
        if "scratch" not in self.cache:
            self.cache["scratch_obj"] = tempfile.TemporaryDirectory(prefix="stylexport-export-")
            self.cache["scratch"] = Path(self.cache["scratch_obj"].name)
        return self.cache["scratch"]


def check_available(fmt: Format) -> None:
    """Refuse, before any work, a format this machine cannot build."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    why = unmet(fmt.needs, device)
    if why:
        raise StylexportError(f"format {fmt.name!r} cannot be built here: {why}"
                              + ("; stylexport does not fall back to FP32" if "cuda" in fmt.needs else ""))


def formats_for_flags(flags: list[str], *, cuda: bool) -> list[str]:
    """The formats that ``export --FLAG`` asks for (``--aoti`` is the CPU package, and the CUDA one on a GPU)."""
    return [f.name for f in FORMATS.values() if f.flag in flags and ("cuda" not in f.needs or cuda or
                                                                     f.flag == "trt")]


def _parity_runner(fmt: Format, path: Path):
    """The first engine in ``fmt.check_with`` that runs here; on CPU, FP16 ONNX runs in ONNX's reference
    evaluator (true FP16 arithmetic)."""
    reasons = []
    for name in fmt.check_with:
        engine = ENGINES[name]
        device = torch.device("cuda") if engine.device == "cuda" else torch.device("cpu")
        why = unavailable(engine, device)
        if why is None:
            return open_engine(engine, path, device)
        reasons.append(f"{name}: {why}")
    raise StylexportError(f"cannot check {path}: no engine for {fmt.name} runs here ({'; '.join(reasons)})")


def parity_inputs() -> list[torch.Tensor]:
    """Real photos at two sizes, neither a multiple of 4: the bundled sample photo, 161 px and 97 px.

    Small, because on CPU the FP16 check runs in ONNX's (slow) reference evaluator.
    """
    from stylexport.image import read_image, resize_max_side, sample_paths

    photo = read_image(sample_paths()[0])
    return [resize_max_side(photo, 161)[None], resize_max_side(photo, 97)[None]]


@dataclasses.dataclass
class ArtifactReport:
    format: str
    path: str
    precision: str
    size_bytes: int
    build_seconds: float
    parity: dict[str, Any]
    tolerance: str
    passed: bool


def export(checkpoint: str | Path, formats: list[str], out_dir: str | Path, *, profile: Profile = Profile(),
           workspace_gib: float = 4.0, calibration_dir: str | Path | None = None, pte_max_side: int | None = None,
           progress: Callable[[str], None] | None = None) -> list[ArtifactReport]:
    """Export ``checkpoint`` to each of ``formats`` under ``out_dir``; every artifact is parity-checked."""
    chosen = [get_format(name) for name in formats]
    for fmt in chosen:
        if fmt.build is None:
            raise StylexportError(f"{fmt.name} is not an export format; choose from "
                                  f"{', '.join(f.name for f in FORMATS.values() if f.build)}")
    loaded = load_checkpoint(checkpoint)
    least = loaded.model.min_side
    if FORMATS["tensorrt-fp16"] in chosen and min(profile.min[2:]) < least:  # before TensorRT is looked for
        raise StylexportError(f"--min {profile.min[2]}x{profile.min[3]}: {Path(checkpoint).name} takes sides of at "
                              f"least {least} px (it pads its edges by {loaded.model.edge_pad} px inside itself); "
                              f"give --min {least}x{least} or more")
    for fmt in chosen:
        check_available(fmt)
    out_dir = Path(out_dir)
    check_writable(out_dir, folder=True)  # not after minutes of building
    if calibration_dir is not None:  # a missing or empty folder: now, not when the INT8 build reaches it
        from stylexport.image import find_images

        find_images([Path(calibration_dir)])
    inputs = parity_inputs()
    with torch.no_grad():
        references = [loaded.model(x) for x in inputs]
    job = ExportJob(loaded=loaded, out_dir=out_dir, profile=profile, workspace_gib=workspace_gib,
                    calibration=[inputs[0]], calibration_dir=Path(calibration_dir) if calibration_dir else None,
                    pte_max_side=pte_max_side or PTE_MAX_SIDE)
    reports = []
    for fmt in chosen:
        name = fmt.name
        if progress:
            progress(name)
        start = time.perf_counter()
        path = resolve(fmt.build)(job)
        seconds = time.perf_counter() - start
        with _parity_runner(fmt, fmt.model_file(path)) as runner:
            parity = worst([compare(runner.infer(x).float().cpu(), ref)
                            for x, ref in zip(inputs, references, strict=True)])
        report = ArtifactReport(format=name, path=str(path), precision=fmt.precision, size_bytes=fmt.size(path),
                                build_seconds=seconds, parity=parity.as_dict(), tolerance=fmt.tolerance.describe(),
                                passed=fmt.tolerance.passes(parity))
        log.info("exported %s in %.1f s: %s (%.1f MB)", name, seconds, path, report.size_bytes / 1e6)
        if not report.passed:
            fmt.remove(path)
            raise StylexportError(f"{name} export of {checkpoint} failed its parity check against PyTorch FP32: "
                                  f"max abs {parity.max_abs:.3g}, PSNR {parity.psnr_db:.1f} dB, finite "
                                  f"{parity.finite}; required {fmt.tolerance.describe()}. The file was removed")
        reports.append(report)
        record_export(out_dir, checkpoint, loaded.sha256, report)  # each as it passes: a later failure keeps it
    return reports


def record_export(out_dir: Path, checkpoint: str | Path, sha256: str, report: ArtifactReport) -> None:
    """Add ``report`` to the folder's export.json, in place of an earlier record of the same file; records of
    artifacts that are no longer there are dropped, the others kept (another export into the same folder, of
    another format or another checkpoint, loses nothing). The top level names the latest export's checkpoint."""
    name = Path(report.path).name
    kept = [a for a in read_export_record(out_dir)["artifacts"]
            if Path(str(a.get("path"))).name != name and (out_dir / Path(str(a.get("path"))).name).exists()]
    entry = {**dataclasses.asdict(report), "checkpoint": str(checkpoint), "checkpoint_sha256": sha256,
             "torch": torch.__version__}
    write_text_atomic(out_dir / EXPORT_RECORD, json.dumps(
        {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256, "torch": torch.__version__,
         "artifacts": [*kept, entry]}, indent=2) + "\n")
