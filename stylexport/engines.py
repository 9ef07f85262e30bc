"""``stylexport engines build``: configure and build the C++ host (engines/cpp) with the installed torch.

A CUDA build of torch ships a CMake config that insists on finding the CUDA toolkit and NVRTC even for a
CPU-only host; this module finds them (nvcc on PATH or /usr/local/cuda; NVRTC from torch's own nvidia wheels)
so a user needs one command, not a page of -D flags.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from stylexport.errors import StylexportError

# configure-time messages and what to install for them (Debian/Ubuntu package names)
MISSING_HINTS = {
    "Could NOT find PNG": "libpng: apt install libpng-dev",
    "Could NOT find JPEG": "libjpeg: apt install libjpeg-dev",
    "Could NOT find LittleCMS": "LittleCMS: apt install liblcms2-dev",
    'provided by "nlohmann_json"': "nlohmann/json: apt install nlohmann-json3-dev",
    "No CMAKE_CXX_COMPILER could be found": "a C++ compiler: apt install g++",
}


def source_dir() -> Path:
    """engines/cpp of the checkout stylexport runs from (an editable install), or STYLEXPORT_ENGINES_SRC."""
    explicit = os.environ.get("STYLEXPORT_ENGINES_SRC")
    candidate = Path(explicit) if explicit else Path(__file__).resolve().parents[1] / "engines" / "cpp"
    if not (candidate / "CMakeLists.txt").is_file():
        raise StylexportError(f"C++ host sources not found at {candidate}; run from a stylexport checkout "
                              "(pip install -e .) or pass --source path/to/engines/cpp")
    return candidate


def _cuda_toolkit() -> Path | None:
    nvcc = shutil.which("nvcc")
    roots = ([Path(os.path.realpath(nvcc)).parent.parent] if nvcc else []) + \
        [Path(p) for p in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda") if p]
    for root in roots:
        if (root / "include" / "cuda_runtime_api.h").is_file():
            return root
    return None


def _nvrtc(toolkit: Path | None) -> str | None:
    """NVRTC from torch's nvidia-* wheels first (it matches torch), then the toolkit's."""
    import torch

    site = Path(torch.__file__).resolve().parents[1]
    found = sorted(glob.glob(str(site / "nvidia" / "*" / "lib" / "libnvrtc.so*"))) + \
        sorted(glob.glob(str(site / "nvidia" / "cuda_nvrtc" / "lib" / "libnvrtc.so*")))
    if toolkit is not None:
        found += sorted(glob.glob(str(toolkit / "lib64" / "libnvrtc.so*")))
    found = [f for f in found if "builtins" not in f and ".alt." not in f]
    return found[0] if found else None


def openvino_cmake_dir() -> Path | None:
    """The CMake config (OpenVINOConfig.cmake) that the installed ``openvino`` wheel ships beside its headers and
    libraries, or None (not installed, or a build without it)."""
    import importlib.util

    spec = importlib.util.find_spec("openvino")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        if (Path(location) / "cmake" / "OpenVINOConfig.cmake").is_file():
            return Path(location) / "cmake"
    return None


def cmake_args(*, tensorrt_root: Path | None = None, tensorrt_include: Path | None = None,
               aoti: bool = True, openvino: bool | None = None) -> list[str]:
    """The -D flags for engines/cpp on this machine. ``openvino``: None builds the OpenVINO backend when the
    openvino package is installed; True insists on it."""
    import torch
    import torch.utils

    args = [f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", f"-DSTYLEXPORT_WITH_AOTI={'ON' if aoti else 'OFF'}"]
    openvino_dir = openvino_cmake_dir() if openvino is not False else None
    if openvino and openvino_dir is None:
        raise StylexportError("the OpenVINO backend needs the openvino package (its headers, libraries and CMake "
                              "config): pip install 'stylexport[cpu]', or build without it (--no-openvino)")
    args += [f"-DSTYLEXPORT_WITH_OPENVINO={'ON' if openvino_dir else 'OFF'}"] + \
        ([f"-DOpenVINO_DIR={openvino_dir}"] if openvino_dir else [])
    toolkit = _cuda_toolkit()
    needs_cuda = (aoti and torch.version.cuda) or tensorrt_root or tensorrt_include
    if needs_cuda and toolkit is None:
        raise StylexportError("the C++ build needs the CUDA toolkit headers (torch is a CUDA build, or TensorRT was "
                              "asked for) and none was found; install it (nvcc on PATH or /usr/local/cuda) or set "
                              "CUDA_HOME")
    if toolkit is not None:
        args += [f"-DCUDA_TOOLKIT_ROOT_DIR={toolkit}", f"-DCUDAToolkit_ROOT={toolkit}"]
        nvcc = toolkit / "bin" / "nvcc"
        if nvcc.is_file() or shutil.which("nvcc"):
            args.append(f"-DCMAKE_CUDA_COMPILER={nvcc if nvcc.is_file() else shutil.which('nvcc')}")
        if aoti and torch.version.cuda:
            nvrtc = _nvrtc(toolkit)
            if nvrtc is None:
                raise StylexportError("torch's CMake config needs NVRTC (libnvrtc.so) and none was found in torch's "
                                      "nvidia wheels or the CUDA toolkit; pip install nvidia-cuda-nvrtc")
            args.append(f"-DCUDA_nvrtc_LIBRARY={nvrtc}")
    if tensorrt_root is not None:
        args.append(f"-DTensorRT_ROOT={tensorrt_root}")
    if tensorrt_include is not None:
        args += ["-DSTYLEXPORT_TENSORRT_COMPILE_ONLY=ON", f"-DTensorRT_INCLUDE_DIR={tensorrt_include}"]
    return args


def _cmake() -> str:
    found = shutil.which("cmake")
    if found is None:
        raise StylexportError("cmake not found; install it (pip install cmake, or apt install cmake)")
    return found


def _run(cmd: list[str], log: Path, step: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        output = result.stdout + result.stderr
        for needle, hint in MISSING_HINTS.items():
            if needle in output:
                raise StylexportError(f"C++ {step} failed: {hint} is missing; install it and run again (log: {log})")
        if "require your cache to be deleted" in output:
            raise StylexportError(f"C++ {step} failed: {log.parent} was configured with other settings before; run "
                                  "again with --clean")
        lines = [ln.strip() for ln in output.splitlines() if "error" in ln.lower()]
        detail = lines[0][:200] if lines else f"exit code {result.returncode}"
        raise StylexportError(f"C++ {step} failed: {detail}; full log in {log}")


def build(build_dir: Path, *, source: Path | None = None, tensorrt_root: Path | None = None,
          tensorrt_include: Path | None = None, aoti: bool = True, openvino: bool | None = None,
          clean: bool = False) -> Path:
    """Configure and build engines/cpp in ``build_dir``; return the path of the ``stylize`` program."""
    source = Path(source) if source else source_dir()
    if not (source / "CMakeLists.txt").is_file():
        raise StylexportError(f"{source} has no CMakeLists.txt; pass the engines/cpp folder of a stylexport checkout")
    if tensorrt_include is not None and not (Path(tensorrt_include) / "NvInferRuntime.h").is_file():
        raise StylexportError(f"{tensorrt_include} has no NvInferRuntime.h; pass TensorRT's include folder")
    cmake = _cmake()
    if clean and build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "stylexport-build.log"
    log.write_text("")
    generator = ["-G", "Ninja"] if shutil.which("ninja") and not (build_dir / "Makefile").exists() else []
    _run([cmake, "-S", str(source), "-B", str(build_dir), *generator, "-DCMAKE_BUILD_TYPE=Release",
          *cmake_args(tensorrt_root=tensorrt_root, tensorrt_include=tensorrt_include, aoti=aoti, openvino=openvino)],
         log, "configure")
    _run([cmake, "--build", str(build_dir), "--parallel", str(os.cpu_count() or 2)], log, "build")
    program = build_dir / ("stylize.exe" if sys.platform == "win32" else "stylize")
    if not program.is_file():
        raise StylexportError(f"the build finished but {program} is missing; see {log}")
    return program
