"""The input/output contract, stated once and carried inside every artifact stylexport writes.

ONNX files hold it in ``metadata_props`` (keys prefixed ``stylexport.``); TensorRT plans and AOTInductor
packages in a JSON sidecar. Hosts (Python runtimes, the C++ host) validate it before running anything.
"""

from __future__ import annotations

from typing import Any

from stylexport import __version__
from stylexport.errors import StylexportError

ARCHITECTURE = "transformer-net/1"  # TransformerNet in model.py: the layout its weights follow
SIZE_MULTIPLE = 4  # two stride-2 convs down, two x2 upsamples back
MIN_SIDE = 16
CONTRACT_VERSION = "1"
INPUT_NAME = "image"
OUTPUT_NAME = "stylized"
PREFIX = "stylexport."

CONTRACT: dict[str, str] = {
    "contract_version": CONTRACT_VERSION,
    "input_name": INPUT_NAME,
    "output_name": OUTPUT_NAME,
    "layout": "NCHW",
    "color": "RGB",
    "dtype": "float32",
    "value_range": "0-255",
    "output_clamped": "true",
    "size_rule": f"any H, W >= {MIN_SIDE}",
    "min_side": str(MIN_SIDE),
}


def artifact_metadata(*, style_name: str, source_sha256: str, precision: str, fmt: str, edge_pad: int = 0,
                      min_side: int = MIN_SIDE, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Everything an artifact says about itself, as strings. ``min_side`` is the network's own (larger than
    MIN_SIDE for one that reflection-pads its edges by ``edge_pad``: model.py)."""
    meta = {**CONTRACT, "size_rule": f"any H, W >= {min_side}", "min_side": str(min_side), "edge_pad": str(edge_pad),
            "style_name": style_name, "source_sha256": source_sha256, "precision": precision,
            "format": fmt, "architecture": ARCHITECTURE, "stylexport_version": __version__}
    for key, value in (extra or {}).items():
        meta[key] = value if isinstance(value, str) else str(value)
    return meta


def check_contract(meta: dict[str, Any], source: str, formats: tuple[str, ...]) -> None:
    """Refuse an artifact whose self-description does not match what stylexport hosts feed it.

    The C++ host (engines/cpp/src/metadata.cpp) applies the same rules with the same wording.
    """
    def get(key: str) -> str:
        if key not in meta:
            raise StylexportError(f"engine metadata {source} has no {key!r}; re-export the engine with "
                                  "stylexport export")
        return str(meta[key])

    version = get("contract_version")
    if version != CONTRACT_VERSION:
        raise StylexportError(f"engine metadata {source}: contract_version {version!r}, this stylexport implements "
                              f"{CONTRACT_VERSION!r}; re-export the engine with this stylexport")
    for key in ("input_name", "layout", "color", "dtype", "value_range"):
        if get(key) != CONTRACT[key]:
            raise StylexportError(f"engine metadata {source}: {key} {get(key)!r}, stylexport feeds {CONTRACT[key]!r}; "
                                  "this engine was not written by stylexport export, or was edited")
    if get("format") not in formats:
        raise StylexportError(f"engine metadata {source}: format {get('format')!r} does not match the engine file "
                              f"(expected {', '.join(formats)}); keep each engine with its own sidecar")


def contract_min_side(metadata: dict[str, Any]) -> int:
    """The smallest side an artifact of ours says it takes (its network's; MIN_SIDE when it does not say). The
    C++ host (engines/cpp/src/metadata.cpp, Metadata::min_side) refuses a damaged value with the same words."""
    text = str(metadata.get("min_side", MIN_SIDE))
    if not text.isdigit():
        raise StylexportError(f"engine metadata: min_side {text!r} is not a number; re-export the engine")
    return int(text)
