"""Reading what an artifact says about itself: JSON sidecars beside engines, metadata inside ONNX files, and
the export.json record of a folder that `stylexport export` (or the engine cache) wrote.

The ground floor for runtimes and exporters alike (a deployed runtime never needs the exporter). Every
failure is one line naming the file and how to make a good one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from stylexport.contract import PREFIX
from stylexport.errors import StylexportError

log = logging.getLogger(__name__)
SIDECAR_SUFFIX = ".json"


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """``engine.plan`` -> ``engine.plan.json``; the sidecar travels with its engine."""
    return Path(str(artifact) + SIDECAR_SUFFIX)


def read_sidecar(artifact: str | os.PathLike, *, noun: str, remake: str) -> dict[str, Any]:
    """The sidecar of ``artifact`` as a dict; ``noun`` names the artifact ("engine", "package") and ``remake``
    says how to make a good one, for the messages."""
    side = sidecar_path(artifact)
    if not side.is_file():
        raise StylexportError(f"{noun} {artifact} has no sidecar {side.name}; {remake} (keep the two files together)")
    try:
        meta = json.loads(side.read_text())
    except UnicodeDecodeError:
        raise StylexportError(f"sidecar {side} is not text (JSON expected); {remake}") from None
    except ValueError as exc:
        raise StylexportError(f"sidecar {side} is not valid JSON ({exc}); {remake}") from None
    except OSError as exc:
        raise StylexportError(f"cannot read sidecar {side}: {exc.strerror or exc}; {remake}") from None
    if not isinstance(meta, dict):
        raise StylexportError(f"sidecar {side} holds a JSON {type(meta).__name__}, not an object; {remake}")
    return meta


def load_onnx(path: str | os.PathLike, *, external_data: bool = True):
    """The ModelProto of an ONNX file (``external_data=False``: the graph and metadata without the weights kept
    beside it); a corrupt or truncated file is one line."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # noqa: BLE001 - corrupt or truncated protobuf
        raise StylexportError(f"cannot read ONNX file {path}: {str(exc).splitlines()[0][:160]}; export it again") \
            from None


def read_onnx_metadata(path_or_proto) -> dict[str, str]:
    """The ``stylexport.`` metadata of an ONNX file, prefix removed ({} for a third-party model)."""
    proto = path_or_proto if hasattr(path_or_proto, "graph") else load_onnx(path_or_proto, external_data=False)
    return {p.key[len(PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(PREFIX)}


def sidecar_description(artifact: str | os.PathLike) -> dict[str, Any]:
    """What an engine with a JSON sidecar says about itself (``stylexport info``)."""
    return {"metadata": read_sidecar(artifact, noun="artifact", remake="export it again with stylexport export")}


def onnx_description(path: str | os.PathLike) -> dict[str, Any]:
    """What an ONNX file says about itself (``stylexport info``): its stylexport metadata ({} for a third-party
    model), its real inputs and outputs (symbolic dimensions by name), opset and producer."""
    import onnx

    proto = load_onnx(path, external_data=False)
    weights = {init.name for init in proto.graph.initializer}  # IR < 4 lists weights among the inputs

    def tensor(value) -> dict[str, Any]:
        kind = value.type.tensor_type
        dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in kind.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(kind.elem_type).name if kind.elem_type else "?"
        return {"name": value.name, "dtype": dtype, "shape": dims}

    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
    return {"metadata": read_onnx_metadata(proto),
            "inputs": [tensor(v) for v in proto.graph.input if v.name not in weights],
            "outputs": [tensor(v) for v in proto.graph.output], "opset": opset,
            "producer": f"{proto.producer_name} {proto.producer_version}".strip()}


EXPORT_RECORD = "export.json"


def read_export_record(out_dir: str | Path) -> dict[str, Any]:
    """A folder's export.json: every artifact exported into it that is still there, each with the checkpoint
    (path and sha256) it came from, its parity numbers and its tolerance. Files written before artifacts named
    their checkpoint take the file's; an unreadable record is an empty one."""
    path = Path(out_dir) / EXPORT_RECORD
    try:
        data = json.loads(path.read_text())
        artifacts = [dict(a) for a in data["artifacts"]]
    except FileNotFoundError:
        return {"artifacts": []}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s is not an export record (%s); it counts as empty (the next export there writes a new "
                    "one)", path, exc)
        return {"artifacts": []}
    for a in artifacts:
        a.setdefault("checkpoint", data.get("checkpoint"))
        a.setdefault("checkpoint_sha256", data.get("checkpoint_sha256"))
        a.setdefault("torch", data.get("torch"))
    return {**data, "artifacts": artifacts}
