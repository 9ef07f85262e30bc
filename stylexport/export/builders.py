"""One builder per exported format (named in stylexport.formats.FORMATS): a job in, the artifact's path out."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from stylexport.formats import FORMATS


def _target(job, name: str) -> tuple[Path, dict[str, str]]:
    fmt = FORMATS[name]
    return job.out_dir / f"{job.stem}{fmt.suffix}", job.metadata(fmt)


def _onnx_proto(job):
    if "onnx_proto" not in job.cache:
        from stylexport.export.onnx import torch_to_onnx_proto

        job.cache["onnx_proto"] = torch_to_onnx_proto(job.loaded.model)
    return job.cache["onnx_proto"]


def build_onnx(job) -> Path:
    from stylexport.export.onnx import save_onnx, set_metadata

    path, meta = _target(job, "onnx")
    proto = copy.deepcopy(_onnx_proto(job))
    set_metadata(proto, meta)
    return save_onnx(proto, path)


def build_web(job) -> Path:
    """The app runs the FP32 ONNX model, so it carries the onnx format's contract (the app's own is model.json)."""
    from stylexport.export.onnx import set_metadata
    from stylexport.export.web import write_app

    proto = copy.deepcopy(_onnx_proto(job))
    set_metadata(proto, job.metadata(FORMATS["onnx"]))
    return write_app(proto, job.out_dir, metadata=job.metadata(FORMATS["web"]))


def _rescaled_onnx_proto(job):
    if "rescaled_proto" not in job.cache:
        from stylexport.export.onnx import torch_to_onnx_proto

        job.cache["rescaled_proto"] = torch_to_onnx_proto(job.fp16_model())
    return job.cache["rescaled_proto"]


def build_onnx_fp16(job) -> Path:
    from stylexport.export.fp16 import onnx_to_fp16
    from stylexport.export.onnx import save_onnx, set_metadata

    path, meta = _target(job, "onnx-fp16")
    proto = onnx_to_fp16(_rescaled_onnx_proto(job))
    set_metadata(proto, {**meta, "fp16_method": "exact rescaling + FP32 instance norm"})
    return save_onnx(proto, path)


def build_tensorrt(job) -> Path:
    from stylexport.export.fp16 import onnx_to_fp16
    from stylexport.export.onnx import save_onnx
    from stylexport.export.trt import build_engine

    plan, meta = _target(job, "tensorrt-fp16")
    scratch = job.scratch()
    fp32 = save_onnx(_rescaled_onnx_proto(job), scratch / "rescaled_fp32.onnx")
    fp16 = save_onnx(onnx_to_fp16(_rescaled_onnx_proto(job)), scratch / "rescaled_fp16.onnx")
    build_engine(fp32, fp16, plan, metadata=meta, min_shape=job.profile.min, opt_shape=job.profile.opt,
                 max_shape=job.profile.max, workspace_gib=job.workspace_gib,
                 timing_cache=job.out_dir / "tensorrt.timing-cache")
    return plan


def build_aoti_cpu(job) -> Path:
    from stylexport.export.aoti import compile_package

    package, meta = _target(job, "aoti-cpu")
    compile_package(job.loaded.model, package, metadata=meta, device=torch.device("cpu"))
    return package


def build_aoti_cuda_fp16(job) -> Path:
    from stylexport.export.aoti import compile_package

    package, meta = _target(job, "aoti-cuda-fp16")
    compile_package(job.fp16_model(), package, metadata={**meta, "fp16_method": "exact rescaling"},
                    device=torch.device("cuda"), fp16=True)
    return package


def _save_ir(model, job, name: str, meta: dict[str, str]) -> Path:
    """Save an OpenVINO model as NAME.xml + .bin in the output folder: written in scratch, then moved (the
    .bin first), so a failure never leaves a half-written pair; the contract goes into its runtime info."""
    import openvino as ov

    from stylexport.runtime.openvino_backend import RT_SECTION

    for key, value in meta.items():
        model.set_rt_info(value, [RT_SECTION, key])
    target, _ = _target(job, name)
    staged = job.scratch() / target.name
    ov.save_model(model, str(staged), compress_to_fp16=False)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    staged.with_suffix(".bin").replace(target.with_suffix(".bin"))
    staged.replace(target)
    return target


def _openvino_fp32(job):
    if "openvino_fp32" not in job.cache:
        import openvino as ov

        from stylexport.export.onnx import save_onnx

        onnx_path = save_onnx(_onnx_proto(job), job.scratch() / "for_openvino.onnx")
        job.cache["openvino_fp32"] = ov.convert_model(str(onnx_path))
    return job.cache["openvino_fp32"]


def build_openvino(job) -> Path:
    _, meta = _target(job, "openvino")
    return _save_ir(_openvino_fp32(job).clone(), job, "openvino", meta)


# op types whose inputs stay in floating point in INT8 IRs (build_openvino_int8 says why;
# benchmarks/int8_recipe.py measures each choice)
INT8_FLOAT_INPUT_TYPES = ("MVN", "Add")


def build_openvino_int8(job) -> Path:
    """Post-training static quantization with NNCF, calibrated on real photos (``job.calibration_photos``);
    the first and last convolutions stay in floating point (they touch pixels directly), and so do the inputs
    of instance norm (MVN) and of the residual additions: instance norm divides each channel by its own spread,
    so the error of a per-tensor 8-bit grid grows by that factor in quiet channels. The convolutions' inputs,
    where INT8 pays, are still quantized (benchmarks/results/int8-recipe.json: quality and speed of each
    choice)."""
    import nncf

    from stylexport.export.onnx import _quiet

    model = _openvino_fp32(job).clone()
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    photos = job.calibration_photos()
    dataset = nncf.Dataset(photos, lambda x: x.numpy())
    with _quiet():  # NNCF's INFO lines and progress bars would land in the CLI's stdout, between its results
        quantized = nncf.quantize(model, dataset, subset_size=len(photos), preset=nncf.QuantizationPreset.MIXED,
                                  ignored_scope=nncf.IgnoredScope(names=[convs[0], convs[-1]],
                                                                  types=list(INT8_FLOAT_INPUT_TYPES)))
    _, meta = _target(job, "openvino-int8")
    meta = {**meta, "int8_method": f"NNCF {nncf.__version__} post-training, {len(photos)} calibration crops "
            f"({job.calibration_source}), first and last convolutions"
            + "".join(f", {t} inputs" for t in INT8_FLOAT_INPUT_TYPES) + " in floating point"}
    return _save_ir(quantized, job, "openvino-int8", meta)


def build_executorch(job) -> Path:
    from stylexport.export.executorch import write_program

    program, meta = _target(job, "executorch")
    write_program(job.loaded.model, program, metadata=meta, max_side=job.pte_max_side)
    return program


def build_executorch_fp16(job) -> Path:
    from stylexport.export.executorch import write_program

    program, meta = _target(job, "executorch-fp16")
    write_program(job.fp16_model(), program, metadata={**meta, "fp16_method": "exact rescaling"}, fp16=True,
                  max_side=job.pte_max_side)
    return program


def build_executorch_int8(job) -> Path:
    from stylexport.export.executorch import write_program

    program, meta = _target(job, "executorch-int8")
    write_program(job.loaded.model, program, metadata=meta, int8=True, max_side=job.pte_max_side)
    return program
