"""The one protocol every backend follows, and the input and output checks they all share.

A runner takes a (N, 3, H, W) float32 batch, RGB in [0, 255], and returns (N, 3, H', W') float32 in
[0, 255] on ``runner.device`` (H', W' = H, W for stylexport's own artifacts; ``infer_any_size`` adapts
foreign models and returns the input's size on the CPU). ``Runner.infer`` validates the batch before the
backend's own code runs and the result after, so every backend rejects a bad input with the same message
(Polygraphy's pattern). ``bind`` is the timing hook: validate a shape once, then call the backend directly.
Runners are context managers; ``close`` releases sessions, engines and GPU memory. ``infer`` calls from several
threads take turns on the backend.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

import torch

from stylexport.contract import INPUT_NAME, MIN_SIDE, SIZE_MULTIPLE
from stylexport.errors import StylexportError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a backend accepts. ``None`` bounds mean 'any'."""

    name: str = INPUT_NAME
    min_side: int = MIN_SIDE
    fixed_hw: tuple[int, int] | None = None  # a fixed-size model
    min_shape: tuple[int, int, int, int] | None = None  # an engine's optimization profile (N, C, H, W)
    max_shape: tuple[int, int, int, int] | None = None
    fixed_batch: int | None = None
    remedy: str = "rebuild the engine with --min/--max covering it"  # said when a shape is outside min..max


def check_batch(batch: Any, spec: InputSpec) -> None:
    """Raise a one-line StylexportError naming the tensor, the shape received and the shape expected."""
    if not isinstance(batch, torch.Tensor):
        raise StylexportError(f"input {spec.name!r}: expected a torch.Tensor, got {type(batch).__name__}")
    shape = tuple(batch.shape)
    if batch.dim() != 4 or shape[1] != 3:
        raise StylexportError(f"input {spec.name!r}: got shape {shape}, expected (N, 3, H, W) RGB")
    if not batch.is_floating_point():
        raise StylexportError(f"input {spec.name!r}: got dtype {batch.dtype}, expected float32 in [0, 255]")
    n, _, h, w = shape
    if min(h, w) < spec.min_side:
        raise StylexportError(f"input {spec.name!r}: got {h}x{w}, expected H and W >= {spec.min_side}")
    if spec.fixed_hw is not None and (h, w) != spec.fixed_hw:
        raise StylexportError(f"input {spec.name!r}: got {h}x{w}, this model only takes "
                              f"{spec.fixed_hw[0]}x{spec.fixed_hw[1]}")
    if spec.fixed_batch is not None and n != spec.fixed_batch:
        raise StylexportError(f"input {spec.name!r}: got batch {n}, this model only takes batch {spec.fixed_batch}")
    if spec.min_shape is not None and spec.max_shape is not None:
        lo, hi = spec.min_shape, spec.max_shape
        if not all(a <= b <= c for a, b, c in zip(lo, shape, hi, strict=True)):
            raise StylexportError(f"input {spec.name!r}: shape {shape} is outside the engine's profile "
                                  f"min {lo} .. max {hi}; {spec.remedy}")


def check_output(out: Any, batch: torch.Tensor, source: str) -> torch.Tensor:
    """The output contract: a float (N, 3, H', W') tensor for an (N, 3, H, W) batch."""
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.dim() != 4 or \
            out.shape[0] != batch.shape[0] or out.shape[1] != 3:
        got = f"shape {tuple(out.shape)} {out.dtype}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise StylexportError(f"{source} returned {got} for an input of shape {tuple(batch.shape)}; stylexport "
                              "runs RGB image-to-image models ((N, 3, H, W) in, (N, 3, H, W) out)")
    return out


class Runner:
    """Base class: subclasses set ``name``/``spec``/``device``, list in ``held`` what ``close`` releases, and
    implement ``_run``."""

    name: str = "runner"
    engine: str = ""  # the row of stylexport.formats.ENGINES it was opened as ("" when made directly)
    spec: InputSpec = InputSpec()
    device: torch.device = torch.device("cpu")
    metadata: dict[str, Any]
    held: tuple[str, ...] = ()  # attributes holding sessions, engines or compiled code: dropped by close()

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """Run one batch. Calls from several threads take turns: an engine session (an OpenVINO infer request, a
        TensorRT execution context, an ExecuTorch method) runs one inference at a time, and a web service shares
        one runner between its worker threads."""
        if self.__dict__.get("_closed"):
            raise StylexportError(f"{self.engine or self.name} was closed (close(), or the end of its `with` block), "
                                  "which released its engine; open the model again to run it")
        check_batch(batch, self.spec)
        with self.__dict__.get("_turns") or self.__dict__.setdefault("_turns", threading.Lock()):
            out = self._run(batch)
        return check_output(out, batch, self.name)

    __call__ = infer

    def bind(self, batch: torch.Tensor):
        """Validate ``batch`` (input and output) once and return the backend's call itself, for timing loops
        that then feed same-shaped batches already on ``self.device``."""
        self.infer(batch)
        return self._run

    def close(self) -> None:
        """Release what the backend holds (sessions, engines, compiled code, GPU memory). Idempotent."""
        for attr in self.held:
            self.__dict__.pop(attr, None)
        self.__dict__["_closed"] = True
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, batch: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def infer_any_size(self, batch: torch.Tensor) -> torch.Tensor:
        """``infer`` for any image size; the result is float32 on the CPU with the input's size (the size policy,
        stated once, for stylize, video and bench's end-to-end timing):

        - a fixed-size model gets the batch resized to its size and the result resized back (warned once);
        - an input with a side below the model's smallest (an edge-padded network's is its pad + 4: 36 px for
          the shipped styles) is reflect-padded up to it and the result cropped back (warned once): the
          network sees more of the mirrored border it pads with anyway, and the photo is not resampled;
        - a dynamic model that returns another size (a third-party net whose strides need a multiple of 4)
          gets the batch reflect-padded to a multiple of 4 and its result cropped; if that still does not
          give the padded size back, the result is resized to the input's size (warned once).
        """
        from stylexport.image import reflect_pad_to, resize

        h, w = batch.shape[-2:]
        fixed = self.spec.fixed_hw
        if fixed is not None and (h, w) != fixed:
            self._warn_once("resize", "%s only takes %dx%d images; resizing %dx%d inputs to it and back", self.name,
                            *fixed, h, w)
            out = self.infer(resize(batch, fixed))
            return resize(out.float().cpu(), (h, w))
        if fixed is None and min(h, w) < self.spec.min_side:
            self._warn_once("small", "%s takes sides of at least %d px; reflect-padding a %dx%d input to it and "
                            "cropping the result", self.name, self.spec.min_side, h, w)
            padded, (top, left) = reflect_pad_to(batch, self.spec.min_side)
            return self.infer_any_size(padded)[..., top:top + h, left:left + w]
        ph, pw = -h % SIZE_MULTIPLE, -w % SIZE_MULTIPLE
        can_pad = (ph or pw) and min(h, w) > max(ph, pw)
        if can_pad and self.__dict__.get("_pads"):  # learnt on an earlier call: one model run, not two
            padded = self._infer_padded(batch, ph, pw)
            if padded is not None:
                return padded
        out = self.infer(batch)
        if tuple(out.shape[-2:]) == (h, w):
            return out.float().cpu()
        if can_pad:
            padded = self._infer_padded(batch, ph, pw)
            if padded is not None:
                self._pads = True
                return padded
        self._warn_once("size", "%s returned %dx%d for a %dx%d input; resizing its output to the input's size",
                        self.name, *out.shape[-2:], h, w)
        return resize(out.float().cpu(), (h, w))

    def _infer_padded(self, batch: torch.Tensor, ph: int, pw: int) -> torch.Tensor | None:
        """Reflect-pad by (ph, pw) to a multiple of 4, run, crop back; None if the model changes that size too."""
        h, w = batch.shape[-2:]
        out = self.infer(torch.nn.functional.pad(batch, (0, pw, 0, ph), mode="reflect"))
        if tuple(out.shape[-2:]) != (h + ph, w + pw):
            return None
        return out[..., :h, :w].float().cpu()

    def _warn_once(self, key: str, message: str, *args) -> None:
        warned = self.__dict__.setdefault("_warned", set())
        if key not in warned:
            warned.add(key)
            log.warning(message, *args)
