"""THE table: every file format stylexport writes or reads, and every engine that runs one.

A *format* is a kind of file: its suffix, the precision it computes in, how it is built from a checkpoint and
the tolerance its parity gate holds. An *engine* is one way to run a format (a runtime, a device, options).
``export``, ``open_runner``, ``bench``, ``doctor`` and the CLI's help all read these two tables, and the names
here are the names everywhere: the ``format`` in sidecars and ONNX metadata, ``--backends``, results files.

The ground floor: builders and runners are named as ``"module:function"`` strings and imported only when
used, so this module imports nothing above it and a deployed runtime never loads the exporter.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stylexport.artifacts import sidecar_path
from stylexport.devices import has_module, ort_providers
from stylexport.errors import StylexportError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI's help and completion start without it
    import torch


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Pass when max_abs <= max_abs and psnr >= min_psnr_db (either may be None) and all values are finite."""

    max_abs: float | None = None
    min_psnr_db: float | None = None

    def passes(self, parity) -> bool:
        return parity.finite and (self.max_abs is None or parity.max_abs <= self.max_abs) and \
            (self.min_psnr_db is None or parity.psnr_db >= self.min_psnr_db)

    def describe(self) -> str:
        parts = ([f"max abs <= {self.max_abs:g}"] if self.max_abs is not None else []) + \
                ([f"PSNR >= {self.min_psnr_db:g} dB"] if self.min_psnr_db is not None else [])
        return " and ".join(parts + ["no NaN/inf"])


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]  # the first is the one export writes
    precision: str
    description: str
    build: str | None = None  # "module:function(job) -> Path"; None: not made by export (checkpoints)
    tolerance: Tolerance = Tolerance()
    needs: tuple[str, ...] = ()  # to build it here
    check_with: tuple[str, ...] = ()  # engines for the parity gate, the first that runs here
    native_code: bool = False  # loading runs code from the file: trust its source
    aliases: tuple[str, ...] = ()  # older names found in artifacts written by earlier versions
    flag: str | None = None  # the `export --FLAG` that asks for it
    companions: tuple[str, ...] = ()  # files beside it with these suffixes instead of its last (IR: .bin)
    quick_build: bool = False  # exports in seconds: stylize may make it on the fly for a checkpoint
    bundle: tuple[str, ...] = ()  # an app folder's other files (the first: the model its parity gate runs)
    info: str = "stylexport.artifacts:sidecar_description"  # "module:function(model_file) -> dict", for `info`

    def files(self, path: str | os.PathLike) -> list[Path]:
        """The artifact, its JSON sidecar and its companion files: what travels (and is deleted) together."""
        path = Path(path)
        if self.bundle:
            return [path, *(path.parent / name for name in self.bundle)]
        return [path, sidecar_path(path), *(path.with_suffix(s) for s in self.companions)]

    def size(self, path: str | os.PathLike) -> int:
        """Bytes in ``files`` that exist (an IR's .bin, a web app's runtime folder included)."""
        return sum(f.stat().st_size for file in self.files(path) if file.exists()
                   for f in ([file] if file.is_file() else file.rglob("*")) if f.is_file())

    def remove(self, path: str | os.PathLike) -> None:
        """Delete the artifact and everything in ``files`` (a failed gate, a stale cache entry)."""
        for file in self.files(path):
            if file.is_dir():
                shutil.rmtree(file)
            else:
                file.unlink(missing_ok=True)

    def model_file(self, path: str | os.PathLike) -> Path:
        """The file an engine runs: the artifact itself, or an app's model."""
        return Path(path).parent / self.bundle[0] if self.bundle else Path(path)

    @property
    def suffix(self) -> str:
        return self.suffixes[0]


@dataclasses.dataclass(frozen=True)
class Engine:
    name: str
    formats: tuple[str, ...]  # the formats it runs
    description: str
    open: str  # "module:function(path, engine, device) -> Runner"
    device: str = "cpu"  # where it computes: "cpu", "cuda", or "any" (the device asked for)
    needs: tuple[str, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()
    bench: bool = True  # a row in `stylexport bench`
    cpu_opt_in: bool = False  # minutes of compiling on a CPU: bench runs it there only when named or already built
    auto: int | None = None  # preference when no engine is named (lower first); None: only when named

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


_RT = "stylexport.runtime"
_EX = "stylexport.export.builders"
_ONNX_INFO = "stylexport.artifacts:onnx_description"
_IR_INFO = f"{_RT}.openvino_backend:ir_description"
_PTE_INFO = f"{_RT}.executorch_backend:program_description"

FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("checkpoint", (".safetensors", ".pth", ".pt"), "fp32",
           "Training checkpoint: stylexport's safetensors or a pytorch/examples state dict",
           info="stylexport.checkpoint:checkpoint_description"),
    Format("onnx", (".onnx",), "fp32", "ONNX, FP32, dynamic batch/height/width", f"{_EX}:build_onnx",
           Tolerance(max_abs=0.5), check_with=("ort-cuda-fp32", "ort-cpu"), flag="onnx", quick_build=True,
           info=_ONNX_INFO),
    Format("onnx-fp16", (".fp16.onnx",), "fp16", "ONNX, FP16 compute with FP32 instance norm and float32 I/O",
           f"{_EX}:build_onnx_fp16", Tolerance(min_psnr_db=45.0), check_with=("ort-cuda-fp16", "onnx-reference"),
           flag="fp16", quick_build=True, info=_ONNX_INFO),
    Format("tensorrt-fp16", (".plan",), "fp16",
           "TensorRT FP16 engine (plan + .plan.json sidecar); needs TensorRT and a GPU", f"{_EX}:build_tensorrt",
           Tolerance(min_psnr_db=45.0), ("cuda", "tensorrt"), check_with=("tensorrt-fp16",), native_code=True,
           aliases=("tensorrt-plan", "trt"), flag="trt"),
    Format("aoti-cpu", (".aoti.pt2", ".pt2"), "fp32",
           "AOTInductor package for CPU (Python and the C++ host via libtorch)", f"{_EX}:build_aoti_cpu",
           Tolerance(max_abs=0.5), ("cxx",), check_with=("aoti-cpu",), native_code=True, aliases=("aoti",),
           flag="aoti"),
    Format("aoti-cuda-fp16", (".aoti-cuda-fp16.pt2",), "fp16",
           "AOTInductor package for CUDA, FP16 compute behind float32 I/O; needs a GPU", f"{_EX}:build_aoti_cuda_fp16",
           Tolerance(min_psnr_db=45.0), ("cuda", "cxx"), check_with=("aoti-cuda-fp16",), native_code=True,
           flag="aoti"),
    Format("openvino", (".xml",), "fp32", "OpenVINO IR (.xml + .bin), FP32 weights; runs FP32, or BF16 on CPUs "
           "with AVX-512 BF16/AMX", f"{_EX}:build_openvino", Tolerance(max_abs=0.5), ("openvino",),
           check_with=("openvino-fp32",), flag="openvino", companions=(".bin",), quick_build=True,
           info=_IR_INFO),
    Format("openvino-int8", (".int8.xml",), "int8", "OpenVINO IR quantized to INT8 with NNCF (calibrated on "
           "photos; first and last convolutions, instance norm and residual inputs in floating point)",
           f"{_EX}:build_openvino_int8",
           Tolerance(min_psnr_db=30.0), ("openvino", "nncf"), check_with=("openvino-int8",), flag="int8",
           companions=(".bin",), info=_IR_INFO),
    Format("executorch", (".pte",), "fp32", "ExecuTorch program for phones (Android/iOS), XNNPACK delegate, FP32, "
           "one image of dynamic H and W up to a bound", f"{_EX}:build_executorch", Tolerance(max_abs=0.5),
           ("executorch",), check_with=("executorch-fp32",), flag="executorch", info=_PTE_INFO),
    Format("executorch-fp16", (".fp16.pte",), "fp16", "ExecuTorch program, XNNPACK delegate, FP16 compute behind "
           "float32 I/O (fast on ARM phones with FP16 arithmetic)", f"{_EX}:build_executorch_fp16",
           Tolerance(min_psnr_db=45.0), ("executorch",), check_with=("executorch-fp16",), flag="executorch",
           info=_PTE_INFO),
    Format("executorch-int8", (".int8.pte",), "int8", "ExecuTorch program, XNNPACK delegate, convolutions in dynamic "
           "INT8 (weights per channel, inputs per image at run time; no calibration), a quarter of the FP32 file",
           f"{_EX}:build_executorch_int8", Tolerance(min_psnr_db=30.0), ("executorch",),
           check_with=("executorch-int8",), flag="executorch", info=_PTE_INFO),
    Format("web", ("index.html",), "fp32", "Static web app (HTML, JS, the FP32 ONNX model, ONNX Runtime Web): "
           "WebGPU, or WebAssembly where there is none; photos and the camera stay on the device",
           f"{_EX}:build_web", Tolerance(max_abs=0.5), ("onnxruntime-web",), check_with=("ort-cpu",), flag="web",
           bundle=("model.onnx", "model.json", "app.js", "app.css", "ort"), info=_ONNX_INFO),
)}

ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("torch-fp32", ("checkpoint",), "PyTorch eager FP32 (the paper's path)", f"{_RT}.torch_backend:open_engine",
           "any", auto=90),
    Engine("torch-fp16-cl", ("checkpoint",), "PyTorch FP16, channels_last (exactly rescaled weights)",
           f"{_RT}.torch_backend:open_engine", "cuda", ("cuda",),
           (("precision", "fp16"), ("channels_last", True), ("rescale", True)), auto=40),
    Engine("torch-compile", ("checkpoint",), "torch.compile max-autotune, FP16, CUDA graphs",
           f"{_RT}.torch_backend:open_engine", "cuda", ("cuda", "triton"),
           (("precision", "fp16"), ("channels_last", True), ("rescale", True), ("compile", "max-autotune"))),
    Engine("ort-cpu", ("onnx", "onnx-fp16"), "ONNX Runtime, CPU provider", f"{_RT}.onnxruntime_backend:open_engine",
           needs=("onnxruntime",), options=(("provider", "cpu"),), auto=80),
    Engine("ort-cuda-fp32", ("onnx",), "ONNX Runtime, CUDA provider, FP32", f"{_RT}.onnxruntime_backend:open_engine",
           "cuda", ("cuda", "onnxruntime-cuda"), (("provider", "cuda"),), auto=30),
    Engine("ort-cuda-fp16", ("onnx-fp16",), "ONNX Runtime, CUDA provider, FP16",
           f"{_RT}.onnxruntime_backend:open_engine", "cuda", ("cuda", "onnxruntime-cuda"), (("provider", "cuda"),),
           auto=20),
    Engine("onnx-reference", ("onnx", "onnx-fp16"), "ONNX's reference evaluator: true FP16 arithmetic on a CPU, "
           "slowly (the FP16 parity gate without a GPU)", f"{_RT}.onnx_reference:open_engine", needs=("onnx",),
           bench=False),
    Engine("tensorrt-fp16", ("tensorrt-fp16",), "TensorRT FP16 engine", f"{_RT}.tensorrt_backend:open_engine",
           "cuda", ("cuda", "tensorrt"), auto=10),
    Engine("aoti-cpu", ("aoti-cpu",), "AOTInductor package, CPU, FP32", f"{_RT}.aoti_backend:open_engine",
           needs=("cxx",), cpu_opt_in=True, auto=70),
    Engine("aoti-cuda-fp16", ("aoti-cuda-fp16",), "AOTInductor package, CUDA, FP16",
           f"{_RT}.aoti_backend:open_engine", "cuda", ("cuda", "cxx"), auto=15),
    Engine("torch-bf16", ("checkpoint",), "PyTorch eager, BF16 autocast on the CPU (convolutions in BF16)",
           f"{_RT}.torch_backend:open_engine", needs=("bf16-cpu",), options=(("autocast", "bf16"),)),
    Engine("openvino-fp32", ("openvino",), "OpenVINO CPU, FP32", f"{_RT}.openvino_backend:open_engine",
           needs=("openvino",), options=(("precision", "fp32"),), auto=60),
    # Not chosen for the user (auto None), like INT8: it runs the FP32 IR, so that IR's gate never measured its BF16
    # arithmetic, and on 12 real photos its worst PSNR was 40.2 dB (benchmarks/results/cpu-engines-avx512.json),
    # under stylize.AUTO_MIN_PSNR_DB. Asked for by name it took half the time of OpenVINO FP32 on that CPU.
    Engine("openvino-bf16", ("openvino",), "OpenVINO CPU, BF16 inference precision",
           f"{_RT}.openvino_backend:open_engine", needs=("openvino", "bf16-cpu"), options=(("precision", "bf16"),)),
    Engine("openvino-int8", ("openvino-int8",), "OpenVINO CPU, INT8 (NNCF-quantized IR)",
           f"{_RT}.openvino_backend:open_engine", needs=("openvino",), options=(("precision", "fp32"),), auto=58),
    Engine("executorch-fp32", ("executorch",), "ExecuTorch's runtime, XNNPACK delegate, FP32 (what a phone app "
           "runs), on this CPU", f"{_RT}.executorch_backend:open_engine", needs=("executorch",), auto=85),
    Engine("executorch-fp16", ("executorch-fp16",), "ExecuTorch's runtime, XNNPACK delegate, FP16 program, on this "
           "CPU", f"{_RT}.executorch_backend:open_engine", needs=("executorch",), auto=85),
    # auto: the engine of its own .int8.pte files; a checkpoint never runs on it unnamed (its gate is 30 dB)
    Engine("executorch-int8", ("executorch-int8",), "ExecuTorch's runtime, XNNPACK delegate, dynamic INT8 program, on "
           "this CPU", f"{_RT}.executorch_backend:open_engine", needs=("executorch",), auto=85),
)}

CHECKPOINT = FORMATS["checkpoint"]
BENCH_ENGINES = tuple(e.name for e in ENGINES.values() if e.bench)  # what bench times, in this order


def _cuda(device: torch.device) -> str | None:
    if device.type != "cuda":
        import torch

        return "needs a CUDA GPU" + ("" if torch.cuda.is_available() else "; none on this machine")
    return None


def _module(module: str, hint: str) -> Callable[[torch.device], str | None]:
    return lambda device: None if has_module(module) else hint


def _ort_cuda(device: torch.device) -> str | None:
    if "CUDAExecutionProvider" in ort_providers():
        return None
    return "ONNX Runtime has no CUDA provider here: pip install 'stylexport[gpu]' (onnxruntime-gpu)"


def _bf16_cpu(device: torch.device) -> str | None:
    from stylexport.devices import cpu_bf16_problem

    return cpu_bf16_problem()


def _ort_web(device: torch.device) -> str | None:
    from stylexport.web import find_runtime, install_hint

    return None if find_runtime() else f"ONNX Runtime Web's runtime files are not found: {install_hint()}"


def _cxx(device: torch.device) -> str | None:
    compiler = os.environ.get("CXX", "g++")
    return None if shutil.which(compiler) else f"AOTInductor compiles C++: no {compiler} on PATH (apt install g++)"


REQUIREMENTS: dict[str, Callable[[torch.device], str | None]] = {
    "cuda": _cuda,
    "triton": _module("triton", "torch.compile on CUDA needs triton (it ships with CUDA builds of torch)"),
    "onnx": _module("onnx", "onnx is not installed: pip install onnx"),
    "onnxruntime": _module("onnxruntime", "onnxruntime is not installed: pip install onnxruntime"),
    "onnxruntime-cuda": _ort_cuda,
    "tensorrt": _module("tensorrt", "TensorRT is not installed (pip install 'stylexport[trt]' where NVIDIA's "
                                    "TensorRT wheels can be downloaded)"),
    "cxx": _cxx,
    "openvino": _module("openvino", "OpenVINO is not installed: pip install 'stylexport[cpu]'"),
    "nncf": _module("nncf", "NNCF is not installed: pip install 'stylexport[cpu]'"),
    "bf16-cpu": _bf16_cpu,
    "onnxruntime-web": _ort_web,
    "executorch": _module("executorch", "ExecuTorch is not installed: pip install 'stylexport[mobile]'"),
}


def unmet(needs: tuple[str, ...], device: torch.device) -> str | None:
    """None when every need is met on ``device`` here, else every unmet need, as one reason."""
    reasons = [why for need in needs if (why := REQUIREMENTS[need](device))]
    return "; ".join(reasons) or None


def get_format(name: str) -> Format:
    for fmt in FORMATS.values():
        if name == fmt.name or name in fmt.aliases:
            return fmt
    exported = ", ".join(f.name for f in FORMATS.values() if f.build)
    raise StylexportError(f"unknown format {name!r}; choose from {exported}")


def get_engine(name: str) -> Engine:
    if name in ENGINES:
        return ENGINES[name]
    raise StylexportError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")


def format_names(fmt: Format) -> tuple[str, ...]:
    """The ``format`` values an artifact of ``fmt`` may carry (its name and older aliases)."""
    return (fmt.name, *fmt.aliases)


def kinds() -> str:
    """What stylexport reads, for messages: '.safetensors/.pth/.pt (checkpoint), .onnx (onnx), ...'."""
    return ", ".join(f"{'/'.join(f.suffixes)} ({f.name})" for f in FORMATS.values())


def format_of(path: str | os.PathLike) -> Format:
    """The format a file is, from its suffix (the longest that matches); one-line error otherwise."""
    name = Path(path).name.lower()
    matches = [(len(s), f) for f in FORMATS.values() for s in f.suffixes if name.endswith(s)]
    if not matches:
        suffix = Path(path).suffix or "(none)"
        raise StylexportError(f"model {path}: unknown kind {suffix!r}; stylexport reads {kinds()}")
    return max(matches, key=lambda m: m[0])[1]


def engines_for(fmt: Format) -> list[Engine]:
    return [e for e in ENGINES.values() if fmt.name in e.formats]


def unavailable(engine: Engine | str, device: torch.device) -> str | None:
    """None when ``engine`` can run here when ``device`` was asked for, else every reason why not, as one line
    (worded the same in bench, doctor and open_runner). A CUDA engine is refused for a CPU run even on a
    machine with a GPU; a CPU engine runs on the CPU whatever was asked for."""
    engine = get_engine(engine) if isinstance(engine, str) else engine
    reasons = []
    if engine.device == "cuda" and device.type != "cuda":
        import torch

        reasons.append(REQUIREMENTS["cuda"](device))
        device = torch.device("cuda")
    needs = tuple(n for n in engine.needs if n != "cuda" or device.type == "cuda")
    others = unmet(needs, engine_device(engine, device))
    return "; ".join(r for r in (*reasons, others) if r) or None


def engine_device(engine: Engine, asked: torch.device) -> torch.device:
    """Where ``engine`` computes when ``asked`` was requested ("any" engines follow the request)."""
    if engine.device == "any" or engine.device == asked.type:
        return asked
    import torch

    return torch.device(engine.device)


def choose_engine(fmt: Format, device: torch.device) -> Engine:
    """The preferred engine for ``fmt`` that runs here: on ``device`` first (lowest ``auto``), then, when a GPU
    was asked for, a CPU engine (a CPU-only artifact on a GPU machine); else a one-line error with each reason."""
    candidates = sorted((e for e in engines_for(fmt) if e.auto is not None),
                        key=lambda e: (e.device not in ("any", device.type), e.auto))
    if not candidates:
        runs = f"its model {fmt.bundle[0]} runs here" if fmt.bundle else "no engine of stylexport runs it"
        raise StylexportError(f"a {fmt.name} artifact is not a model stylexport runs ({fmt.description}); {runs}")
    reasons = []
    for engine in candidates:
        why = unavailable(engine, device)
        if why is None:
            return engine
        reasons.append(f"{engine.name} {why}")
    raise StylexportError(f"no engine for {fmt.name} files runs on {device} here: {'; '.join(reasons)}")


def resolve(dotted: str) -> Callable[..., Any]:
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_engine(engine: Engine | str, path: str | os.PathLike, device: torch.device | None = None):
    """A runner for ``path`` on ``engine`` (refused with the reason when it cannot run here)."""
    import torch

    engine = get_engine(engine) if isinstance(engine, str) else engine
    asked = device or torch.device("cuda" if engine.device == "cuda" else "cpu")
    why = unavailable(engine, asked)
    if why:
        raise StylexportError(f"engine {engine.name} cannot run here: {why}")
    device = engine_device(engine, asked)
    runner = resolve(engine.open)(Path(path), engine, device)
    runner.engine = engine.name
    return runner
