"""PyTorch backends: eager FP32 (the paper's path), FP16 channels_last, and torch.compile."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from stylexport.devices import pick_device  # noqa: F401 - re-exported
from stylexport.errors import StylexportError
from stylexport.model import TransformerNet
from stylexport.runtime.base import InputSpec, Runner

PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# torch.compile here specializes on each input shape (dynamic=False: one graph per shape, CUDA graphs each).
# Dynamo's default recompile limit (8) would silently run the 9th shape eagerly (a bench of 5 sizes x 2
# batches hit it), so compiled calls run under a higher limit; past it dynamo's own warning says so.
COMPILE_SHAPE_LIMIT = 64


class TorchRunner(Runner):
    """Run a TransformerNet with torch. Inputs and outputs stay float32 [0,255]; compute may be half."""

    held = ("model", "_forward")

    def __init__(self, model: TransformerNet, *, device: torch.device | str = "cpu", precision: str = "fp32",
                 channels_last: bool = False, compile: bool = False, compile_mode: str | None = None,
                 autocast: str | None = None, metadata: dict[str, Any] | None = None):
        if precision not in PRECISIONS:
            raise StylexportError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        if precision == "fp16" and self.device.type == "cpu":
            raise StylexportError("FP16 is not supported by the torch CPU backend; use --precision fp32 or a GPU")
        self.precision = precision
        self.dtype = _DTYPES[precision]
        self.channels_last = channels_last
        self.autocast = _DTYPES[autocast] if autocast else None
        self.metadata = dict(metadata or {})
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, self.dtype, memory_format=memory_format)
        self.spec = InputSpec(min_side=model.min_side)
        self._forward = torch.compile(self.model, mode=compile_mode, dynamic=False) if compile else self.model
        parts = ["torch", precision] + (["channels_last"] if channels_last else []) + (["compile"] if compile else [])
        self.name = "-".join(parts)

    @torch.inference_mode()
    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, self.dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        compiled = self._forward is not self.model
        with contextlib.ExitStack() as stack:
            if compiled:
                stack.enter_context(torch._dynamo.config.patch(recompile_limit=COMPILE_SHAPE_LIMIT))
            if self.autocast is not None:  # weights stay FP32; convolutions run in the autocast dtype
                stack.enter_context(torch.autocast(self.device.type, dtype=self.autocast))
            y = self._forward(x)
        # a CUDA-graph output buffer is overwritten by the next replay: hand out a copy (.float() of a half copies)
        return y.clone() if compiled and y.dtype == torch.float32 else y.float()


def open_engine(path, engine, device: torch.device) -> TorchRunner:
    """A checkpoint on torch, with the engine's options (precision, channels_last, exact FP16 rescaling,
    torch.compile mode)."""
    from stylexport.checkpoint import load_checkpoint

    loaded = load_checkpoint(path)
    model = loaded.model
    if engine.option("rescale"):
        from stylexport.rescale import calibration_photo, rescale_for_fp16

        model = rescale_for_fp16(model, calibration_photo())
    mode = engine.option("compile")
    runner = TorchRunner(model, device=device, precision=engine.option("precision", "fp32"),
                         channels_last=engine.option("channels_last", False), compile=bool(mode), compile_mode=mode,
                         autocast=engine.option("autocast"),
                         metadata={**loaded.metadata, "style_name": loaded.style_name,
                                   "source_sha256": loaded.sha256})
    runner.name = engine.name
    return runner
