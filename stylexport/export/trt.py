"""TensorRT FP16 engines from our ONNX files: a plain plan file plus a JSON sidecar.

Written against the documented ``tensorrt`` Python API and kept thin. TensorRT cannot be installed in the
workplace this was written in, so this path is untested here (see the README).

- TensorRT >= 11: a strongly typed network parsed from the FP16 ONNX (its Cast nodes keep instance norm in
  FP32; the precision is the graph's).
- TensorRT 10: the rescaled FP32 ONNX with the FP16 builder flag, and every normalization layer pinned to
  FP32 with OBEY_PRECISION_CONSTRAINTS.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from stylexport.artifacts import sidecar_path
from stylexport.contract import INPUT_NAME
from stylexport.errors import StylexportError
from stylexport.fileio import atomic_path, write_bytes_atomic, write_text_atomic
from stylexport.runtime.tensorrt_backend import gpu_identity, import_tensorrt

log = logging.getLogger(__name__)

def build_engine(onnx_fp32: Path, onnx_fp16: Path, plan: Path, *, metadata: dict[str, str],
                 min_shape: tuple[int, int, int, int], opt_shape: tuple[int, int, int, int],
                 max_shape: tuple[int, int, int, int], workspace_gib: float = 4.0,
                 timing_cache: Path | None = None) -> dict[str, Any]:
    """Build and write ``plan`` and its sidecar; return the sidecar's content."""
    trt = import_tensorrt()
    major = int(trt.__version__.split(".")[0])
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = major >= 11
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    source = onnx_fp16 if strongly_typed else onnx_fp32
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise StylexportError(f"TensorRT could not parse {source}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if not strongly_typed:
        if not builder.platform_has_fast_fp16:
            raise StylexportError("this GPU has no fast FP16; TensorRT FP16 engines are not supported here "
                                  "(stylexport never falls back to FP32 silently)")
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type == trt.LayerType.NORMALIZATION:
                layer.precision = trt.float32
                layer.set_output_type(0, trt.float32)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, min_shape, opt_shape, max_shape)
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise StylexportError(f"TensorRT failed to build an engine from {source}; run with -v for its log")
    seconds = time.perf_counter() - start
    with atomic_path(plan) as tmp:
        tmp.write_bytes(bytes(serialized))
    if timing_cache is not None:
        write_bytes_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    sidecar = {**metadata, "precision": "fp16",
               "tensorrt_version": trt.__version__, "strongly_typed": strongly_typed,
               "profile": {"min": list(min_shape), "opt": list(opt_shape), "max": list(max_shape)},
               "build_seconds": seconds, "onnx_source": source.name, **gpu_identity()}
    write_text_atomic(sidecar_path(plan), json.dumps(sidecar, indent=2) + "\n")
    return sidecar
