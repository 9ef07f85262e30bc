"""Models made elsewhere, fed the way they want: one adapter for every backend that opens foreign files.

stylexport's own artifacts carry their contract (RGB, NCHW, float32 in [0, 255], any size). A third-party model
(a TensorFlow/Keras conversion, a pytorch/examples export, an OpenVINO IR or ExecuTorch program someone else
made) says only its one input's dims and element type. From those this module reads the layout (NCHW or NHWC:
where the 3 channels are), a fixed size and batch (the dims it fixes), the element type to feed (float32,
float16 or uint8), and, from the model's output on a photo, the value range it computes in (0-255, 0-1 or -1..1).
ONNX Runtime, OpenVINO and ExecuTorch runners all adapt through ``AdaptedRunner``, so a model behaves the same
whichever of them runs it, and ``stylexport info`` reports what was found.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import torch

from stylexport.contract import contract_min_side
from stylexport.errors import StylexportError
from stylexport.runtime.base import InputSpec, Runner

log = logging.getLogger(__name__)

# element types a foreign model may take, under the names ONNX, OpenVINO and ExecuTorch give them
DTYPES = {name: dtype for dtype, names in (
    (torch.float32, ("float32", "float", "tensor(float)", "f32", "Float")),
    (torch.float16, ("float16", "tensor(float16)", "f16", "Half")),
    (torch.uint8, ("uint8", "tensor(uint8)", "u8", "Byte")),
) for name in names}

RANGES = {"0-255": (1.0, 0.0), "0-1": (1 / 255.0, 0.0), "-1-1": (1 / 127.5, -1.0)}  # model value = x * a + b


def image_input(dims: Sequence[int | None], dtype: str, *, name: str, what: str,
                signature: str) -> tuple[bool, torch.dtype, InputSpec]:
    """(nhwc, element type, spec) for a model's one image input declared as ``dims`` (None where dynamic) of
    element type ``dtype``; refused in one line with the model's real ``signature`` when it is not an RGB image
    input. NCHW unless only the last axis can be the 3 channels (NHWC: TensorFlow/Keras conversions)."""
    dims = list(dims)
    c1, c3 = (dims[1], dims[3]) if len(dims) == 4 else (None, None)
    nhwc = c3 == 3 and c1 != 3
    if len(dims) != 4 or not (nhwc or c1 == 3 or (c1 is None and c3 is None)):
        raise StylexportError(f"{what} is {signature}; stylexport runs RGB image-to-image style models with one "
                              "(N, 3, H, W) or (N, H, W, 3) input")
    if dtype not in DTYPES:
        raise StylexportError(f"{what} is {signature}; its input is {dtype}, and stylexport feeds float32, float16 or "
                              "uint8 images")
    n, h, w = (dims[0], dims[1], dims[2]) if nhwc else (dims[0], dims[2], dims[3])
    fixed = (h, w) if h is not None and w is not None else None
    return nhwc, DTYPES[dtype], InputSpec(name=name, fixed_hw=fixed, fixed_batch=n)


class AdaptedRunner(Runner):
    """A runner whose file may be foreign. Subclasses implement ``_call`` (one model call on a batch already in
    the model's layout, range and element type; any float or integer result) and call ``_take_input`` once the
    model can run, with ``metadata`` set (the contract of ours, {} for a foreign one); ``_run`` maps
    stylexport's NCHW float32 0-255 to the model's input and its output back. For stylexport's own artifacts
    nothing is mapped."""

    nhwc: bool = False
    input_dtype: torch.dtype = torch.float32
    value_range: str = "0-255"

    def _call(self, batch: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _take_input(self, dims: Sequence[int | None], dtype: str, *, name: str, what: str, signature: str,
                    source: str) -> None:
        """Take the model's one input as it declares it (``image_input``). Ours: its element type and spec, the
        rest is the contract. A foreign one (``metadata`` empty): also its layout, and its value range found on a
        photo, both said in ``metadata`` (what ``info`` shows). ``source`` names the model in the log line."""
        nhwc, self.input_dtype, self.spec = image_input(dims, dtype, name=name, what=what, signature=signature)
        if self.metadata:
            self.spec = dataclasses.replace(self.spec, min_side=contract_min_side(self.metadata))
            return
        self.nhwc = nhwc
        self.value_range = "0-255" if self.input_dtype == torch.uint8 else self._probe_range(source)
        self.metadata = {"value_range": self.value_range, "layout": "NHWC" if self.nhwc else "NCHW",
                         "dtype": str(self.input_dtype).removeprefix("torch.")}

    def _probe_range(self, source: str) -> str:
        """0-255, 0-1 or -1-1, from the model's output on a real photo given in 0-255: instance-normalised style
        networks answer in their own output range whatever the input's scale."""
        from stylexport.image import read_image, resize, sample_paths

        photo = resize(read_image(sample_paths()[0]), self.spec.fixed_hw or (64, 64))[None]
        y = self._run(photo.expand(self.spec.fixed_batch or 1, -1, -1, -1))
        if not torch.isfinite(y).all() or y.abs().max() > 1.5:
            return "0-255"
        value_range = "-1-1" if y.min() < -0.05 else "0-1"
        log.warning("%s computes in %s (its output on a photo spans %.2f..%.2f); mapping inputs and outputs to and "
                    "from 0-255", source, value_range, float(y.min()), float(y.max()))
        return value_range

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        a, b = RANGES[self.value_range]
        x = batch if (a, b) == (1.0, 0.0) else batch * a + b
        if self.nhwc:
            x = x.permute(0, 2, 3, 1)
        if self.input_dtype == torch.uint8:
            x = x.round().clamp(0, 255)
        y = self._call(x.to(self.input_dtype).contiguous())
        if self.nhwc and y.dim() == 4 and y.shape[-1] == 3:  # the result comes back NCHW like every runner's
            y = y.permute(0, 3, 1, 2)
        y = y.float()
        return y if (a, b) == (1.0, 0.0) else (y - b) / a
