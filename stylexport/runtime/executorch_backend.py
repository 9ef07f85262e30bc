"""ExecuTorch backend: a .pte program (XNNPACK delegate) and its JSON sidecar, run by ExecuTorch's Python runtime.

The same program an Android or iOS app loads (docs/deploy.md); here it runs on this machine's CPU through the
one runner protocol, so ``stylize -m model.pte``, ``bench`` and the export's parity gate see what a phone runs.
Programs take one image: a batch is run image by image, as an app runs frames. A program made elsewhere (no
sidecar) is run as its method's planned input says, through the same foreign-model adapter as ONNX and IRs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import sys
from pathlib import Path

import torch

from stylexport.artifacts import read_sidecar, sidecar_path
from stylexport.contract import check_contract, contract_min_side
from stylexport.errors import StylexportError
from stylexport.formats import FORMATS, format_names
from stylexport.runtime.base import InputSpec
from stylexport.runtime.foreign import AdaptedRunner, image_input

EXECUTORCH_FORMATS = tuple(n for f in ("executorch", "executorch-fp16", "executorch-int8")
                           for n in format_names(FORMATS[f]))
REMAKE = "export it again with stylexport export --executorch"


@contextlib.contextmanager
def _native_stderr_silenced():
    """ExecuTorch's CPU probe prints lines such as 'Failed to open midr file' on x86 machines at load, and its
    loader a line of its own before the error we raise for a damaged file: noise for a user. Native code writes to
    file descriptor 2, or, where Python has replaced sys.stderr (a test runner, a notebook, an app), through
    sys.stderr: both are silenced."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# ExecuTorch's scalar type codes (c10::ScalarType) for the element types a foreign program may take
SCALAR_TYPES = {6: "float32", 5: "float16", 0: "uint8"}


def _load(path: Path, method: str | None):
    """The loaded program and method (``method`` None: "forward", or the program's only method)."""
    pytree = logging.getLogger("torch.utils._pytree")  # torchao, imported by ExecuTorch, warns of a deprecation
    level = pytree.level
    pytree.setLevel(logging.ERROR)
    try:
        from executorch.runtime import Runtime
    finally:
        pytree.setLevel(level)

    try:
        with _native_stderr_silenced():
            program = Runtime.get().load_program(path)
            names = sorted(program.method_names)
            if method is None:
                method = "forward" if "forward" in names or len(names) != 1 else names[0]
            if method not in names:
                raise StylexportError(f"ExecuTorch program {path} has methods {', '.join(names) or '(none)'} and "
                                      f"no {method!r}; stylexport runs a style model's forward method")
            return program, program.load_method(method)
    except StylexportError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated or foreign file: one line, not a traceback
        raise StylexportError(f"cannot load ExecuTorch program {path} ({str(exc).splitlines()[0][:160]}); "
                              f"{REMAKE}") from None


def _dtype(info) -> str:
    return SCALAR_TYPES.get(info.dtype(), f"scalar type {info.dtype()}")


def _tensor(info) -> str:
    return f"{list(info.sizes())} {_dtype(info)}"


def program_description(path: str | os.PathLike) -> dict:
    """What a program says about itself (``stylexport info``): its sidecar, or, for a program made elsewhere
    (no sidecar), its method's inputs and outputs as ExecuTorch plans them."""
    path = Path(path)
    if sidecar_path(path).exists():
        return {"metadata": read_sidecar(path, noun="program", remake=REMAKE)}
    _, method = _load(path, None)
    meta = method.metadata
    return {"metadata": {},
            "inputs": [_port(f"input {i}", meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
            "outputs": [_port(f"output {i}", meta.output_tensor_meta(i)) for i in range(meta.num_outputs())]}


def _port(name: str, info) -> dict:
    return {"name": name, "dtype": _dtype(info), "shape": list(info.sizes())}


class ExecuTorchRunner(AdaptedRunner):
    """Run a .pte program: ours (its sidecar states the contract and the size bound) or one made elsewhere (no
    sidecar: its input read from the method's planned tensors, adapted by ``AdaptedRunner``)."""

    held = ("_method", "_program")

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.device = torch.device("cpu")
        self._one_frame = True  # programs take one image: a batch is run frame by frame
        if not sidecar_path(self.path).exists():
            self.metadata = {}  # made elsewhere: what it takes is read from the program
            self._program, self._method = _load(self.path, None)
            self.name = "executorch-fp32"
            self._adopt_program()
            return
        self.metadata = read_sidecar(self.path, noun="program", remake=REMAKE)
        check_contract(self.metadata, str(sidecar_path(self.path)), EXECUTORCH_FORMATS)
        self._program, self._method = _load(self.path, self.metadata.get("method", "forward"))
        max_side = int(self.metadata["max_side"])
        self.spec = InputSpec(min_side=contract_min_side(self.metadata), min_shape=(1, 3, 1, 1),
                              max_shape=(1 << 16, 3, max_side, max_side),
                              remedy=f"this program was exported for H and W up to {max_side}: stylize with "
                                     f"--size {max_side}, or {REMAKE} --pte-max-side")
        precision = self.metadata.get("precision")
        self.name = f"executorch-{precision if precision in ('fp16', 'int8') else 'fp32'}"

    def _adopt_program(self) -> None:
        """A program without a sidecar: its one input's planned sizes are a fixed size, or, when it also runs at
        half that size, the upper bound of a dynamic one (memory is planned for the largest)."""
        meta = self._method.metadata
        inputs = ", ".join(_tensor(meta.input_tensor_meta(i)) for i in range(meta.num_inputs()))
        outputs = ", ".join(_tensor(meta.output_tensor_meta(i)) for i in range(meta.num_outputs()))
        signature = f"{inputs} -> {outputs}"
        what = f"ExecuTorch program {self.path}"
        if meta.num_inputs() != 1 or meta.num_outputs() < 1:
            raise StylexportError(f"{what} is {signature}; stylexport runs RGB image-to-image style models with one "
                                  "(N, 3, H, W) or (N, H, W, 3) input")
        info = meta.input_tensor_meta(0)
        dims = list(info.sizes())
        dtype = _dtype(info)
        nhwc, torch_dtype, _ = image_input(dims, dtype, name="input 0", what=what, signature=signature)
        h_axis, w_axis = (1, 2) if nhwc else (2, 3)
        bound = (dims[h_axis], dims[w_axis])
        dynamic = self._runs_at_half_size(dims, torch_dtype, h_axis, w_axis)
        if dynamic:
            dims[h_axis] = dims[w_axis] = None
        self._one_frame = dims[0] == 1
        self._take_input(dims, dtype, name="input 0", what=what, signature=signature, source=self.path.name)
        if self._one_frame:  # any batch: run frame by frame
            self.spec = dataclasses.replace(self.spec, fixed_batch=None)
        if dynamic:
            side = min(bound)
            self.spec = dataclasses.replace(
                self.spec, min_shape=(1, 3, 1, 1), max_shape=(1 << 16, 3, *bound),
                remedy=f"this program's memory is planned for H x W up to {bound[0]}x{bound[1]}: stylize with "
                       f"--size {side}")
            self.metadata["max_size"] = f"{bound[0]}x{bound[1]}"

    def _runs_at_half_size(self, dims: list[int], dtype: torch.dtype, h_axis: int, w_axis: int) -> bool:
        shape = list(dims)
        least = contract_min_side(self.metadata)  # MIN_SIDE for a program made elsewhere
        shape[h_axis], shape[w_axis] = max(least, dims[h_axis] // 2), max(least, dims[w_axis] // 2)
        if shape == dims:
            return False
        try:
            with _native_stderr_silenced():
                out = self._method.execute([torch.zeros(shape, dtype=dtype)])[0]
        except Exception:  # noqa: BLE001 - a static program refuses other shapes
            return False
        return list(out.shape[-3:]) in ([shape[1], shape[2], shape[3]], [3, shape[h_axis], shape[w_axis]])

    def _call(self, batch: torch.Tensor) -> torch.Tensor:
        frames = batch.detach().cpu()
        if not self._one_frame:
            return self._method.execute([frames])[0]
        return torch.cat([self._method.execute([frame[None]])[0] for frame in frames])


def open_engine(path: Path, engine, device: torch.device) -> ExecuTorchRunner:
    return ExecuTorchRunner(path)
