"""Model checkpoints: safetensors weights plus metadata describing how they were made.

Our format: a ``.safetensors`` file whose metadata key ``stylexport`` holds JSON (architecture, version,
loss/training configuration, style image name and sha256, step, VGG source). Loading never executes
code from the file: safetensors has none, and ``.pth`` files go through ``torch.load(weights_only=True)``.

Foreign format: state dicts of pytorch/examples' fast_neural_style (same architecture, other module names,
optional InstanceNorm ``running_mean``/``running_var`` buffers, optional ``module.`` prefixes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from stylexport import __version__
from stylexport.contract import ARCHITECTURE
from stylexport.errors import StylexportError, missing_model
from stylexport.fileio import atomic_path, sha256_file
from stylexport.model import TransformerNet

METADATA_KEY = "stylexport"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".model")
MODEL_FILE = "model.safetensors"  # where a training run keeps the weights it has reached (train.py)
MAX_EDGE_PAD = 256  # far past any useful pad (the band is gone by 32 px); a larger value is a damaged file


def valid_edge_pad(value: Any) -> bool:
    """A whole number of pixels in 0..MAX_EDGE_PAD (what a checkpoint and --edge-pad may hold)."""
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= MAX_EDGE_PAD


@dataclasses.dataclass
class LoadedModel:
    model: TransformerNet
    metadata: dict[str, Any]
    path: Path
    sha256: str

    @property
    def style_name(self) -> str:
        return str(self.metadata.get("style_name") or self.path.stem)


def save_checkpoint(path: str | os.PathLike, model: TransformerNet, metadata: dict[str, Any] | None = None, *,
                    half: bool = False) -> Path:
    """Write the model's weights and ``metadata`` atomically. ``half`` stores FP16 weights (half the size)."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": "stylexport-checkpoint", "architecture": ARCHITECTURE, "stylexport_version": __version__,
            **(metadata or {}), "edge_pad": model.edge_pad}
    dtype = torch.float16 if half else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    return path


_EXAMPLES_RENAMES = [
    (r"^conv1\.conv2d\.", "encoder.0.conv."), (r"^in1\.", "encoder.0.norm."),
    (r"^conv2\.conv2d\.", "encoder.1.conv."), (r"^in2\.", "encoder.1.norm."),
    (r"^conv3\.conv2d\.", "encoder.2.conv."), (r"^in3\.", "encoder.2.norm."),
    (r"^res(\d)\.conv(\d)\.conv2d\.", lambda m: f"residuals.{int(m[1]) - 1}.conv{m[2]}."),
    (r"^res(\d)\.in(\d)\.", lambda m: f"residuals.{int(m[1]) - 1}.norm{m[2]}."),
    (r"^deconv1\.conv2d\.", "decoder.0.conv."), (r"^in4\.", "decoder.0.norm."),
    (r"^deconv2\.conv2d\.", "decoder.1.conv."), (r"^in5\.", "decoder.1.norm."),
    (r"^deconv3\.conv2d\.", "head."),
]


def from_pytorch_examples(state: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """Rename a pytorch/examples fast_neural_style state dict to our module names."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(re.match(r"^deconv\d\.(weight|bias)$", k) for k in state):
        raise StylexportError(f"{source} is the transposed-convolution variant of fast_neural_style, which "
                              "stylexport does not support; use a model with upsample+conv layers (UpsampleConvLayer)")
    out = {}
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # InstanceNorm buffers from old torch versions; unused at inference
        for pattern, repl in _EXAMPLES_RENAMES:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            out[key] = value
    return out


def _looks_like_examples(state: dict[str, torch.Tensor]) -> bool:
    return any(k.removeprefix("module.").startswith(("conv1.conv2d", "in1.", "res1.", "deconv")) for k in state)


def _edge_pad(metadata: dict[str, Any], path: Path) -> int:
    """The checkpoint's ``edge_pad`` (model.py; 0 when absent: every checkpoint made before it existed)."""
    value = metadata.get("edge_pad", 0)
    if not valid_edge_pad(value):
        raise StylexportError(f"checkpoint {path}: edge_pad {value!r} is not a whole number of pixels in "
                              f"0..{MAX_EDGE_PAD}; the file's metadata was edited or damaged")
    return value


def _build(state: dict[str, torch.Tensor], path: Path, edge_pad: int = 0) -> TransformerNet:
    model = TransformerNet(edge_pad)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"lacks {missing[0]!r}" if missing else f"has unknown key {unexpected[0]!r}"
        raise StylexportError(f"checkpoint {path} {what} ({len(missing)} missing, {len(unexpected)} unknown); "
                              "it is not a TransformerNet model stylexport can read")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise StylexportError(f"checkpoint {path}: {key} has shape {tuple(tensor.shape)}, expected "
                                  f"{tuple(expected[key].shape)}; it is a different architecture")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The stylexport metadata of a .safetensors checkpoint ({} for a foreign file)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
        return json.loads(raw) if raw else {}
    except Exception as exc:  # noqa: BLE001 - truncated or not safetensors at all; metadata that is not JSON
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise StylexportError(f"cannot read checkpoint {path}: {reason}") from None


WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # training scripts' {"model": weights, "optimizer": ...}


def _is_weights(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _weights_of(saved: Any, path: Path) -> dict:
    """The state dict in a .pth: the file itself, or the weights a training script saved beside its optimizer
    under one of WRAPPER_KEYS. Anything else is refused naming what the file holds (a training run's
    ``state.pt`` points to the model file beside it)."""
    if _is_weights(saved):
        return saved
    if isinstance(saved, dict):
        for key in WRAPPER_KEYS:
            if _is_weights(saved.get(key)):
                return saved[key]
        if {"optimizer", "step"} <= saved.keys():
            raise StylexportError(f"{path} is a training run's resumable state (optimizer and step "
                                  f"{saved['step']}), not a model: use the model.safetensors beside it "
                                  f"(stylexport train --resume {path.parent} continues the run)")
        keys = ", ".join(map(str, list(saved)[:8])) + (", ..." if len(saved) > 8 else "")
        raise StylexportError(f"checkpoint {path} holds a dict of {keys}, with no state dict of tensors in it "
                              f"(looked under {', '.join(WRAPPER_KEYS)}); save the model's state_dict() alone")
    raise StylexportError(f"checkpoint {path} holds a {type(saved).__name__}, not a state dict of tensors; save "
                          "the model's state_dict()")


def model_file(path: str | os.PathLike) -> Path:
    """``path``; for a training run's folder, the model it has trained so far (RUN/model.safetensors), so
    ``stylexport stylize -m runs/starry_night`` runs the run's latest weights."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() and (path / MODEL_FILE).is_file() else path


def load_checkpoint(path: str | os.PathLike) -> LoadedModel:
    """Load one of our checkpoints or a pytorch/examples model; clear errors for anything else."""
    path = model_file(path)
    if not path.is_file():
        raise missing_model(path, "pass a .safetensors/.pth checkpoint")
    suffix = path.suffix.lower()
    metadata: dict[str, Any] = {}
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
            metadata = read_metadata(path)
        elif suffix in (".pth", ".pt", ".model"):
            state = _weights_of(torch.load(path, map_location="cpu", weights_only=True), path)
        else:
            raise StylexportError(f"model {path}: unknown suffix {suffix!r}; "
                                  f"use one of {', '.join(CHECKPOINT_SUFFIXES)}")
    except StylexportError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated, or pickles with code
        if "Weights only load failed" in str(exc):  # torch's own text goes on to suggest unsafe loading: not ours
            raise StylexportError(f"checkpoint {path} holds pickled Python objects, not only tensors, and a pickle "
                                  "can run code; stylexport loads weights only: save the state dict as "
                                  ".safetensors where the file came from") from None
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise StylexportError(f"cannot read checkpoint {path}: {reason}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StylexportError(f"checkpoint {path} does not hold a state dict of tensors")
    arch = metadata.get("architecture")
    if arch is not None and arch != ARCHITECTURE:
        raise StylexportError(f"checkpoint {path} is for architecture {arch!r}; this stylexport {__version__} "
                              f"reads {ARCHITECTURE!r}")
    if not metadata and _looks_like_examples(state):
        state = from_pytorch_examples(state, str(path))
        metadata = {"format": "pytorch-examples", "style_name": path.stem}
    else:
        state = {k.removeprefix("module."): v for k, v in state.items()}
    model = _build(state, path, _edge_pad(metadata, path))
    return LoadedModel(model=model, metadata=metadata, path=path, sha256=sha256_file(path))


def checkpoint_description(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint says about itself (``stylexport info``): its metadata (training settings, style,
    provenance; a pytorch/examples model has none of its own), its size in parameters and its sha256."""
    from safetensors import safe_open

    loaded = load_checkpoint(path)
    dtypes = set()
    if loaded.path.suffix.lower() == ".safetensors":
        with safe_open(str(path), "pt") as f:
            dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
    return {"metadata": loaded.metadata, "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "stored_as": ", ".join(sorted(dtypes)) or "a torch state dict", "sha256": loaded.sha256}
