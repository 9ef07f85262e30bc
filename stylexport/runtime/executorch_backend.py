"""ExecuTorch backend: a .pte program (XNNPACK delegate) and its JSON sidecar, run by ExecuTorch's Python runtime.

The same program an Android or iOS app loads (docs/deploy.md); here it runs on this machine's CPU through the
one runner protocol, so ``stylize -m model.pte``, ``bench`` and the export's parity gate see what a phone runs.
Programs take one image: a batch is run image by image, as an app runs frames.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import torch

from stylexport.artifacts import read_sidecar, sidecar_path
from stylexport.contract import check_contract
from stylexport.errors import StylexportError
from stylexport.formats import FORMATS, format_names
from stylexport.runtime.base import InputSpec, Runner

EXECUTORCH_FORMATS = format_names(FORMATS["executorch"]) + format_names(FORMATS["executorch-fp16"])
REMAKE = "export it again with stylexport export --executorch"


@contextlib.contextmanager
def _native_stderr_silenced():
    """ExecuTorch's CPU probe prints lines such as 'Failed to open midr file' on x86 machines at load: noise
    for a user. Native code writes to file descriptor 2 directly, so redirect that, not sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class ExecuTorchRunner(Runner):
    held = ("_method", "_program")

    def __init__(self, path: str | os.PathLike):
        pytree = logging.getLogger("torch.utils._pytree")  # torchao, imported by ExecuTorch, warns of a deprecation
        level = pytree.level
        pytree.setLevel(logging.ERROR)
        try:
            from executorch.runtime import Runtime
        finally:
            pytree.setLevel(level)

        self.path = Path(path)
        self.metadata = read_sidecar(self.path, noun="program", remake=REMAKE)
        check_contract(self.metadata, str(sidecar_path(self.path)), EXECUTORCH_FORMATS)
        try:
            with _native_stderr_silenced():
                self._program = Runtime.get().load_program(self.path)
                self._method = self._program.load_method(self.metadata.get("method", "forward"))
        except Exception as exc:  # noqa: BLE001 - truncated or foreign file: one line, not a traceback
            raise StylexportError(f"cannot load ExecuTorch program {self.path} ({str(exc).splitlines()[0][:160]}); "
                                  f"{REMAKE}") from None
        max_side = int(self.metadata["max_side"])
        self.spec = InputSpec(min_side=int(self.metadata["min_side"]), min_shape=(1, 3, 1, 1),
                              max_shape=(1 << 16, 3, max_side, max_side),
                              remedy=f"this program was exported for H and W up to {max_side}: stylize with "
                                     f"--size {max_side}, or {REMAKE} --pte-max-side")
        self.device = torch.device("cpu")
        self.name = "executorch-fp16" if self.metadata.get("precision") == "fp16" else "executorch-fp32"

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        frames = batch.detach().to("cpu", torch.float32).contiguous()
        return torch.cat([self._method.execute([frame[None]])[0] for frame in frames])


def open_engine(path: Path, engine, device: torch.device) -> ExecuTorchRunner:
    return ExecuTorchRunner(path)
