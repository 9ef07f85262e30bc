"""The style models stylexport ships: FP16 safetensors checkpoints in ``stylexport/styles/``, each beside a
thumbnail of its painting (``<name>.jpg``). ``STYLEXPORT_STYLES_DIR`` points elsewhere (your own zoo).

``stylexport stylize photo.jpg --style NAME`` resolves NAME here; ``stylexport styles`` lists them.
Models get here through ``ship_style`` (training/ship_style.py): the run's weights in FP16 (half the size,
no measurable loss: instance norm follows every conv) with the painting's provenance in the metadata.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from stylexport.errors import StylexportError

STYLES_ENV = "STYLEXPORT_STYLES_DIR"
DEFAULT_STYLE = "great_wave"  # what stylize and video use when given neither a model nor a style
THUMBNAIL_SIDE = 256
_PAINTING = re.compile(r"[^,;:]+, [^;:]+")  # "Artist, Title (c. 1830-33)"; not "licence: ..., ..."


@dataclasses.dataclass(frozen=True)
class Style:
    name: str
    model: Path
    thumbnail: Path | None
    metadata: dict[str, Any]
    problem: str | None = None  # why the file cannot be used (damaged, not a checkpoint); listed, never run

    @property
    def painting(self) -> str:
        """The painting, as a person names it: 'Albrecht Duerer, Lion (1494)'. The provenance notes that
        training/ship_style.py copies from ../shared/data's MANIFEST end with the artist, title and year; where
        they do not (a style shipped from elsewhere), the painting's file, else the style's name."""
        last = str(self.metadata.get("painting_notes") or "").rsplit(";", 1)[-1].strip()
        if _PAINTING.fullmatch(last):
            return last
        return str(self.metadata.get("painting") or self.metadata.get("style_name") or "")


def styles_dir() -> Path:
    return Path(os.environ.get(STYLES_ENV) or Path(__file__).resolve().parent / "styles")


def list_styles() -> list[Style]:
    from stylexport.checkpoint import read_metadata

    folder = styles_dir()
    found = []
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        thumb = path.with_suffix(".jpg")
        try:  # one damaged file must not hide the others (it ended `styles` and every --style in a traceback)
            metadata, problem = read_metadata(path), None
        except StylexportError as exc:
            metadata, problem = {}, str(exc)
        found.append(Style(path.stem, path, thumb if thumb.is_file() else None, metadata, problem))
    return found


def find_style(name: str) -> Style:
    styles = {s.name: s for s in list_styles()}
    if name in styles and styles[name].problem:
        raise StylexportError(f"style {name!r} cannot be used: {styles[name].problem}; reinstall it, or remove "
                              f"{styles[name].model}")
    if name in styles:
        return styles[name]
    if not styles:
        raise StylexportError(f"no style models are installed in {styles_dir()}, so --style {name!r} cannot be "
                              "found; pass a model with --model, or train one (training/README.md)")
    raise StylexportError(f"unknown style {name!r}; installed: {', '.join(styles)} (stylexport styles lists them)")


def default_style() -> Style | None:
    """DEFAULT_STYLE where it is installed, else the first installed style by name; None with no styles."""
    found = [s for s in list_styles() if not s.problem]
    return next((s for s in found if s.name == DEFAULT_STYLE), found[0] if found else None)


def ship_style(checkpoint: str | os.PathLike, name: str, style_image: str | os.PathLike, *,
               out_dir: str | os.PathLike | None = None, provenance: dict[str, Any] | None = None) -> Style:
    """Write ``<out_dir>/<name>.safetensors`` (FP16, with metadata) and ``<name>.jpg`` (the painting's thumbnail)."""
    from stylexport.checkpoint import load_checkpoint, save_checkpoint
    from stylexport.image import read_image, resize_max_side, save_image

    if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", name):
        raise StylexportError(f"style name {name!r}: use lower-case letters, digits and underscores")
    folder = Path(out_dir) if out_dir is not None else styles_dir()
    loaded = load_checkpoint(checkpoint)
    painting = read_image(style_image)
    meta = {**loaded.metadata, **(provenance or {}), "style_name": name, "source_checkpoint_sha256": loaded.sha256,
            "weights_dtype": "float16"}
    model_path = save_checkpoint(folder / f"{name}.safetensors", loaded.model, meta, half=True)
    thumb = save_image(resize_max_side(painting, THUMBNAIL_SIDE), folder / f"{name}.jpg")
    return Style(name, model_path, thumb, meta)
