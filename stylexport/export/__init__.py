"""``stylexport export``: a checkpoint in, deployable artifacts out, each checked against PyTorch FP32.

One table, FORMATS, drives dispatch, help text and option checks. Every artifact is run on real photos at
two sizes and compared with the checkpoint's own PyTorch FP32 output; one that misses its declared
tolerance is deleted and the export fails, with the measured difference in the message.
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

from stylexport.artifacts import sidecar_path
from stylexport.checkpoint import LoadedModel, load_checkpoint
from stylexport.contract import artifact_metadata
from stylexport.errors import StylexportError
from stylexport.fileio import write_text_atomic
from stylexport.metrics import Parity, compare, worst

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Pass when max_abs <= max_abs and psnr >= min_psnr_db (either may be None) and all values are finite."""

    max_abs: float | None = None
    min_psnr_db: float | None = None

    def passes(self, p: Parity) -> bool:
        return p.finite and (self.max_abs is None or p.max_abs <= self.max_abs) and \
            (self.min_psnr_db is None or p.psnr_db >= self.min_psnr_db)

    def describe(self) -> str:
        parts = ([f"max abs <= {self.max_abs:g}"] if self.max_abs is not None else []) + \
                ([f"PSNR >= {self.min_psnr_db:g} dB"] if self.min_psnr_db is not None else [])
        return " and ".join(parts + ["no NaN/inf"])


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    precision: str
    description: str
    needs: tuple[str, ...]  # "cuda", "tensorrt"
    tolerance: Tolerance
    build: Callable[[ExportJob], Path]
    runner: Callable[[Path], Any]


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
    _cache: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def stem(self) -> str:
        return self.loaded.style_name

    def metadata(self, fmt: Format, **extra: Any) -> dict[str, str]:
        return artifact_metadata(style_name=self.loaded.style_name, source_sha256=self.loaded.sha256,
                                 precision=fmt.precision, fmt=fmt.name, extra=extra)

    def fp16_model(self):
        """The exactly rescaled network used by every FP16 artifact (see export/fp16.py)."""
        if "fp16_model" not in self._cache:
            from stylexport.export.fp16 import rescale_for_fp16

            self._cache["fp16_model"] = rescale_for_fp16(self.loaded.model, self.calibration)
        return self._cache["fp16_model"]

    def scratch(self) -> Path:
        if "scratch" not in self._cache:
            self._cache["scratch_obj"] = tempfile.TemporaryDirectory(prefix="stylexport-export-")
            self._cache["scratch"] = Path(self._cache["scratch_obj"].name)
        return self._cache["scratch"]


def _build_onnx(job: ExportJob) -> Path:
    from stylexport.export.onnx import save_onnx, set_metadata, torch_to_onnx_proto

    proto = torch_to_onnx_proto(job.loaded.model)
    set_metadata(proto, job.metadata(FORMATS["onnx"]))
    return save_onnx(proto, job.out_dir / f"{job.stem}{FORMATS['onnx'].suffix}")


def _rescaled_onnx_proto(job: ExportJob):
    if "rescaled_proto" not in job._cache:
        from stylexport.export.onnx import torch_to_onnx_proto

        job._cache["rescaled_proto"] = torch_to_onnx_proto(job.fp16_model())
    return job._cache["rescaled_proto"]


def _build_onnx_fp16(job: ExportJob) -> Path:
    from stylexport.export.fp16 import onnx_to_fp16
    from stylexport.export.onnx import save_onnx, set_metadata

    proto = onnx_to_fp16(_rescaled_onnx_proto(job))
    set_metadata(proto, job.metadata(FORMATS["onnx-fp16"], fp16_method="exact rescaling + FP32 instance norm"))
    return save_onnx(proto, job.out_dir / f"{job.stem}{FORMATS['onnx-fp16'].suffix}")


def _build_trt(job: ExportJob) -> Path:
    from stylexport.export.fp16 import onnx_to_fp16
    from stylexport.export.onnx import save_onnx
    from stylexport.export.trt import build_engine

    scratch = job.scratch()
    fp32 = save_onnx(_rescaled_onnx_proto(job), scratch / "rescaled_fp32.onnx")
    fp16 = save_onnx(onnx_to_fp16(_rescaled_onnx_proto(job)), scratch / "rescaled_fp16.onnx")
    plan = job.out_dir / f"{job.stem}{FORMATS['trt'].suffix}"
    build_engine(fp32, fp16, plan, metadata=job.metadata(FORMATS["trt"]), min_shape=job.profile.min,
                 opt_shape=job.profile.opt, max_shape=job.profile.max, workspace_gib=job.workspace_gib,
                 timing_cache=job.out_dir / "tensorrt.timing-cache")
    return plan


def _build_aoti(job: ExportJob) -> Path:
    from stylexport.export.aoti import compile_package

    fmt = FORMATS["aoti"]
    package = job.out_dir / f"{job.stem}{fmt.suffix}"
    compile_package(job.loaded.model, package, metadata=job.metadata(fmt), device=torch.device("cpu"))
    return package


def _build_aoti_cuda_fp16(job: ExportJob) -> Path:
    from stylexport.export.aoti import compile_package

    fmt = FORMATS["aoti-cuda-fp16"]
    package = job.out_dir / f"{job.stem}{fmt.suffix}"
    compile_package(job.fp16_model(), package, metadata=job.metadata(fmt, fp16_method="exact rescaling"),
                    device=torch.device("cuda"), fp16=True)
    return package


def _aoti_runner(path: Path):
    from stylexport.runtime.aoti_backend import AotiRunner

    return AotiRunner(path)


def _ort_runner(path: Path):
    import onnxruntime as ort

    from stylexport.runtime.onnxruntime_backend import OrtRunner

    return OrtRunner(path, provider="cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu")


def _fp16_runner(path: Path):
    """True FP16 arithmetic: ONNX Runtime CUDA on a GPU, else ONNX's reference evaluator (see its module)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available():
        from stylexport.runtime.onnxruntime_backend import OrtRunner

        return OrtRunner(path, provider="cuda")
    from stylexport.runtime.onnx_reference import OnnxReferenceRunner

    return OnnxReferenceRunner(path)


def _trt_runner(path: Path):
    from stylexport.runtime.tensorrt_backend import TrtRunner

    return TrtRunner(path)


FORMATS: dict[str, Format] = {
    f.name: f for f in (
        Format("onnx", ".onnx", "fp32", "ONNX, FP32, dynamic batch/height/width", (),
               Tolerance(max_abs=0.5), _build_onnx, _ort_runner),
        Format("onnx-fp16", ".fp16.onnx", "fp16",
               "ONNX, FP16 compute with FP32 instance norm and float32 I/O", (),
               Tolerance(min_psnr_db=45.0), _build_onnx_fp16, _fp16_runner),
        Format("trt", ".plan", "fp16", "TensorRT FP16 engine (plan + .plan.json sidecar); needs TensorRT and a GPU",
               ("cuda", "tensorrt"), Tolerance(min_psnr_db=45.0), _build_trt, _trt_runner),
        Format("aoti", ".aoti.pt2", "fp32", "AOTInductor package for CPU (Python and the C++ host via libtorch)", (),
               Tolerance(max_abs=0.5), _build_aoti, _aoti_runner),
        Format("aoti-cuda-fp16", ".aoti-cuda-fp16.pt2", "fp16",
               "AOTInductor package for CUDA, FP16 compute behind float32 I/O; needs a GPU", ("cuda",),
               Tolerance(min_psnr_db=45.0), _build_aoti_cuda_fp16, _aoti_runner),
    )
}


def check_available(fmt: Format) -> None:
    import importlib.util

    if "cuda" in fmt.needs and not torch.cuda.is_available():
        raise StylexportError(f"format {fmt.name!r} needs an NVIDIA GPU and none is visible; FP16 engines are not "
                              "supported on this machine (stylexport does not fall back to FP32)")
    if "tensorrt" in fmt.needs and importlib.util.find_spec("tensorrt") is None:
        raise StylexportError(f"format {fmt.name!r} needs TensorRT: pip install 'stylexport[trt]'")


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
           workspace_gib: float = 4.0, progress: Callable[[str], None] | None = None) -> list[ArtifactReport]:
    """Export ``checkpoint`` to each of ``formats`` under ``out_dir``; every artifact is parity-checked."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise StylexportError(f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    for name in formats:
        check_available(FORMATS[name])
    loaded = load_checkpoint(checkpoint)
    out_dir = Path(out_dir)
    inputs = parity_inputs()
    with torch.no_grad():
        references = [loaded.model(x) for x in inputs]
    job = ExportJob(loaded=loaded, out_dir=out_dir, profile=profile, workspace_gib=workspace_gib,
                    calibration=[inputs[0]])
    reports = []
    for name in formats:
        fmt = FORMATS[name]
        if progress:
            progress(name)
        start = time.perf_counter()
        path = fmt.build(job)
        seconds = time.perf_counter() - start
        runner = fmt.runner(path)
        parity = worst([compare(runner.infer(x), ref) for x, ref in zip(inputs, references, strict=True)])
        report = ArtifactReport(format=name, path=str(path), precision=fmt.precision, size_bytes=path.stat().st_size,
                                build_seconds=seconds, parity=parity.as_dict(), tolerance=fmt.tolerance.describe(),
                                passed=fmt.tolerance.passes(parity))
        reports.append(report)
        log.info("exported %s in %.1f s: %s (%.1f MB)", name, seconds, path, report.size_bytes / 1e6)
        if not report.passed:
            for artifact in (path, sidecar_path(path)):
                artifact.unlink(missing_ok=True)
            raise StylexportError(f"{name} export of {checkpoint} failed its parity check against PyTorch FP32: "
                                  f"max abs {parity.max_abs:.3g}, PSNR {parity.psnr_db:.1f} dB, finite "
                                  f"{parity.finite}; required {fmt.tolerance.describe()}. The file was removed")
    write_text_atomic(out_dir / "export.json", json.dumps(
        {"checkpoint": str(checkpoint), "checkpoint_sha256": loaded.sha256, "torch": torch.__version__,
         "artifacts": [dataclasses.asdict(r) for r in reports]}, indent=2) + "\n")
    return reports
