"""The stylize pipeline for files: read -> size -> infer (or tile) -> controls -> save.

``plan_outputs`` decides every output path before anything is written (the input tree's layout kept under the
output folder, collisions refused); ``stylize_files`` then processes every image, and a bad one is reported
and skipped, never the end of the batch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from stylexport.controls import apply_controls
from stylexport.errors import StylexportError
from stylexport.fileio import check_not_an_input, check_writable
from stylexport.image import SAVE_FORMATS, check_size, read_image, resize_max_side, save_image

log = logging.getLogger(__name__)
AUTO_MIN_PSNR_DB = 45.0  # an engine chosen for the user must be this close to torch FP32 (INT8 is opt-in)


def auto_candidates(device: torch.device) -> list:
    """Engines a checkpoint may be run on when no engine is named, fastest first (the table's ``auto``
    order, from the benchmarks): those of formats that export in seconds and whose parity gate is at least
    as strict as AUTO_MIN_PSNR_DB, and that run here; torch on the checkpoint itself is always last."""
    from stylexport.formats import CHECKPOINT, ENGINES, FORMATS, unavailable

    out = []
    for engine in sorted((e for e in ENGINES.values() if e.auto is not None), key=lambda e: e.auto):
        fmt = FORMATS[engine.formats[0]]
        strict = fmt.tolerance.min_psnr_db is None or fmt.tolerance.min_psnr_db >= AUTO_MIN_PSNR_DB
        if (fmt is CHECKPOINT or (fmt.quick_build and strict)) and unavailable(engine, device) is None:
            out.append(engine)
    return out


def resolve_model(model: str | os.PathLike | None, style: str | None) -> tuple[Path, str | None]:
    """The model file to run: ``model``, else the installed style named ``style``, else the default shipped
    style. The second item names that default style when it was chosen for the caller (who should say so)."""
    from stylexport.checkpoint import model_file
    from stylexport.styles import default_style, find_style, styles_dir

    if model is not None and style is not None:
        raise StylexportError(f"pass either --model {model} or --style {style}, not both")
    if model is not None:
        return model_file(model), None  # a training run's folder: the weights it has reached
    if style is not None:
        return find_style(style).model, None
    chosen = default_style()
    if chosen is None:
        raise StylexportError(f"no --model or --style given, and no style models are installed in {styles_dir()}; "
                              "pass --model FILE (a checkpoint or an exported engine)")
    return chosen.model, chosen.name


def open_model(path: str | os.PathLike, *, device: str = "auto", engine: str | None = None, tiled: bool = False,
               exporting: Callable[[str], None] | None = None):
    """The runner stylize and video use. An exported artifact: ``open_runner`` (on ``engine`` if named). A
    checkpoint with no engine named: the fastest engine that runs here and passes its parity gate; the
    artifact is exported once into the cache (keyed by the checkpoint's sha256) and reused. A cached artifact
    that no longer opens (written by an older stylexport or library, or cut short) is exported again; an export
    that fails its gate is logged and the next engine tried, down to torch on the checkpoint (a torch engine in
    another precision is held to the same gate first: ``check_own_precision``). A checkpoint with
    an engine named: torch engines run it; any other engine runs its format's artifact from the same cache,
    exported the first time (INT8 too: asked for by name), with no fallback. ``tiled``: a
    runner for ``tiles.stylize_tiled``, which shares instance-norm statistics inside the torch FP32 network, so
    only a checkpoint on torch-fp32 will do. ``exporting`` is told, in one line, when an artifact must first be
    exported into the cache (seconds to minutes, once), so a caller can say why the first run is slow."""
    from stylexport.devices import pick_device
    from stylexport.formats import CHECKPOINT, FORMATS, format_of, open_engine
    from stylexport.runtime import open_runner

    path = Path(path)
    if tiled:
        if path.is_file() and format_of(path) is not CHECKPOINT:
            raise StylexportError(f"--tile needs a checkpoint (.safetensors/.pth), not {path.name}: tiles share "
                                  "instance-norm statistics, which exported engines cannot do")
        if engine not in (None, "torch-fp32"):
            raise StylexportError(f"--tile runs the checkpoint on torch-fp32 (the shared statistics are computed "
                                  f"in its FP32 network), not on {engine}; leave out --backend")
        return open_runner(path, device=device, engine="torch-fp32")
    if not path.is_file() or format_of(path) is not CHECKPOINT:
        return open_runner(path, device=device, engine=engine)
    from stylexport.cache import size_limit
    from stylexport.checkpoint import load_checkpoint
    from stylexport.formats import get_engine, unavailable

    dev = pick_device(device)
    named = get_engine(engine) if engine is not None else None
    if named is not None and (CHECKPOINT.name in named.formats or FORMATS[named.formats[0]].build is None):
        return open_runner(path, device=dev, engine=engine)  # torch engines run the checkpoint itself
    if named is not None and (why := unavailable(named, dev)):
        raise StylexportError(f"engine {named.name} cannot run here: {why}")  # before minutes of exporting
    loaded = load_checkpoint(path)  # a checkpoint we cannot read fails here with its own line, not once per engine
    size_limit()  # so does a STYLEXPORT_CACHE_MAX_SIZE that is not a size
    folder = engine_cache(path)  # hashed once, whichever engines are tried
    if named is not None:  # asked for by name: its artifact, from the cache or exported now; no fallback
        return open_cached(path, named, dev, folder, exporting=exporting)
    for candidate in auto_candidates(dev):
        try:
            if FORMATS[candidate.formats[0]] is not CHECKPOINT:
                return open_cached(path, candidate, dev, folder, exporting=exporting)
            runner = open_engine(candidate, path, dev)
            if candidate.name != REFERENCE_ENGINE:
                try:
                    check_own_precision(runner, loaded.model)
                except StylexportError:
                    runner.close()
                    raise
            return runner
        except StylexportError as exc:
            log.warning("%s: %s; trying the next engine", candidate.name, exc)
    return open_runner(path, device=dev)


REFERENCE_ENGINE = "torch-fp32"  # what every gate compares with


def check_own_precision(runner, reference) -> None:
    """Hold a torch engine that runs the checkpoint itself in another precision (FP16 on a GPU) to the gate an
    exported engine passes before it is chosen for the user: no export measured it, so it is measured here, on
    export's parity photos, against ``reference`` (the checkpoint's FP32 network) with the tolerance of
    AUTO_MIN_PSNR_DB. Milliseconds on a GPU, each open."""
    from stylexport.export import parity_inputs
    from stylexport.formats import Tolerance
    from stylexport.metrics import compare, worst

    reference = reference.eval()
    with torch.inference_mode():
        parity = worst([compare(runner.infer(x).float().cpu(), reference(x)) for x in parity_inputs()])
    if not Tolerance(min_psnr_db=AUTO_MIN_PSNR_DB).passes(parity):
        raise StylexportError(f"its output is {parity.psnr_db:.1f} dB from {REFERENCE_ENGINE}'s (max abs "
                              f"{parity.max_abs:.3g}, finite {parity.finite}) on the parity photos; an engine "
                              f"chosen for you must reach {AUTO_MIN_PSNR_DB:g} dB")


def engine_cache(checkpoint: str | os.PathLike) -> Path:
    """The folder of a checkpoint's exported artifacts in the cache, keyed by its sha256 (shared by stylize,
    video, the Stylizer and bench; listed and cleared by ``stylexport cache``)."""
    from stylexport.cache import engine_folder

    return engine_folder(checkpoint)


def cached_artifacts(folder: Path, fmt) -> list[Path]:
    """The artifacts of format ``fmt`` in a checkpoint's ``engine_cache`` folder (none when not exported yet)."""
    from stylexport.formats import format_of

    return [p for p in folder.glob(f"*{fmt.suffix}") if format_of(p) is fmt]


def open_cached(checkpoint: Path, engine, device: torch.device, folder: Path | None = None, *,
                exporting: Callable[[str], None] | None = None):
    """``engine`` on the checkpoint's artifact of the engine's format in its ``engine_cache`` folder (``folder``
    when the caller has it already), exported and parity-checked the first time (``exporting`` is told so,
    in one line, before it starts); a cached artifact that no longer opens (written by an older stylexport or
    library, or cut short) is exported again."""
    from stylexport.cache import ENGINES, size_limit, touch, trim
    from stylexport.export import export
    from stylexport.fileio import cache_folder
    from stylexport.formats import FORMATS, open_engine

    folder = folder or engine_cache(checkpoint)
    fmt = FORMATS[engine.formats[0]]
    for cached in cached_artifacts(folder, fmt):
        try:
            runner = open_engine(engine, cached, device)
        except StylexportError as exc:
            log.warning("cached %s no longer opens (%s); exporting it again", cached, exc)
            fmt.remove(cached)
        else:
            touch(folder)  # its last use, for `stylexport cache clear --older-than`
            return runner
    limit = size_limit()  # STYLEXPORT_CACHE_MAX_SIZE: a bad value is refused before the export, not after
    folder = cache_folder(ENGINES, folder.name)  # writable, or the error says how to move the cache
    message = (f"exporting {checkpoint.name} to {fmt.name} for engine {engine.name}, once: later runs reuse it "
               f"from {folder}")
    (exporting or log.info)(message)
    # the absolute path: `stylexport cache` tells from it whether the checkpoint is still there
    runner = open_engine(engine, Path(export(Path(os.path.abspath(checkpoint)), [fmt.name], folder)[0].path), device)
    for entry in trim(folder, limit):
        log.info("removed %s's engines (%.1f MB, %s) from the cache to keep it under its size limit",
                 entry.checkpoint or entry.sha256[:12], entry.bytes / 2**20, entry.state)
    return runner


def plan_outputs(files: Sequence[Path], output: Path) -> list[Path]:
    """Where each input goes. One input and an image suffix: ``output`` is the file (another suffix is refused,
    unless the folder exists: a typo like ``out.jgp`` made a folder). Otherwise ``output`` is a
    folder and each image keeps its path relative to the inputs' common folder (``a/x.jpg`` and ``b/x.jpg`` go
    to ``OUT/a/x.jpg`` and ``OUT/b/x.jpg``), with a suffix we cannot write replaced by ``.png``. Two inputs
    that would land on one file, an output that is an input, and an output that cannot be written are refused
    here, before anything is written."""
    if len(files) == 1 and output.suffix.lower() in SAVE_FORMATS:
        check_writable(output)
        check_not_an_input([output], files)
        return [output]
    if len(files) == 1 and output.suffix and not output.is_dir():  # a typo or an image type we cannot write
        raise StylexportError(f"output {output}: '{output.suffix}' is not an image type stylexport writes "
                              f"({', '.join(SAVE_FORMATS)}); for a folder, give a name without a suffix or an "
                              "existing folder")
    if output.suffix.lower() in SAVE_FORMATS and not output.is_dir():
        raise StylexportError(f"{len(files)} inputs but output {output} is one image; pass a folder for -o")
    check_writable(output, folder=True)
    resolved = [Path(os.path.abspath(f)) for f in files]
    base = Path(os.path.commonpath([str(f.parent) for f in resolved]))
    targets: dict[Path, Path] = {}
    plan = []
    for original, path in zip(files, resolved, strict=True):
        suffix = path.suffix.lower() if path.suffix.lower() in SAVE_FORMATS else ".png"
        target = output / path.relative_to(base).with_suffix(suffix)
        if target in targets:
            raise StylexportError(f"{targets[target]} and {original} would both be written to {target}; rename one "
                                  "of them or stylize them into separate folders (nothing was written)")
        targets[target] = original
        plan.append(target)
    check_not_an_input(plan, files)  # -o the inputs' own folder: each image would be written over its original
    return plan


def read_photo(path: str | os.PathLike) -> torch.Tensor:
    """``read_image`` for the pipeline, which runs an image of any size (the size policy pads one smaller than the
    network's smallest side: ``Runner.infer_any_size``), so an icon or a thin strip is no error."""
    return read_image(path, min_size=1)


def stylize_tensor(runner, image: torch.Tensor, *, size: int | None = None, strength: float = 1.0,
                   colors: bool = False, infer: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The pipeline on one (3, H, W) image or an (N, 3, H, W) batch, RGB float in [0, 255]: resize the longer
    side to ``size`` -> the network (``infer`` per image instead: tiling) -> colour and strength controls.
    Returns (N, 3, H', W') float32 on the CPU, H', W' the resized input's size."""
    batch = resize_max_side(image[None] if image.dim() == 3 else image, size)
    if infer is None:
        result = runner.infer_any_size(batch)
    else:
        result = torch.cat([infer(one) for one in batch])
    return apply_controls(result.float().cpu(), batch, strength=strength, colors=colors)


def styles_sheet(image: torch.Tensor, styles: Sequence, *, size: int, device: str = "auto",
                 progress: Callable[[str], None] | None = None) -> torch.Tensor:
    """One photo in every style, to choose one by eye: the photo (longer side ``size``) and each style's picture
    of it side by side, each painting's thumbnail under its picture; the pictures are what ``stylize -s NAME
    --size SIZE --backend torch-fp32`` writes. Returns the sheet, (3, H, W) in [0, 255]."""
    from stylexport.figures import contact_sheet

    photo = resize_max_side(image, size)
    blank = torch.full_like(photo, 255.0)
    pictures, paintings = [photo], [blank]
    for style in styles:
        runner = open_model(style.model, device=device, engine="torch-fp32")  # no engine to export: seconds
        try:
            pictures.append(stylize_tensor(runner, photo)[0])
        finally:
            runner.close()
        paintings.append(read_image(style.thumbnail) if style.thumbnail else blank)
        if progress is not None:
            progress(style.name)
    return contact_sheet([pictures, paintings], row_labels=["picture", "painting"],
                         col_labels=["photo", *(style.name for style in styles)])


@dataclasses.dataclass
class StylizeReport:
    written: list[Path]
    failed: list[tuple[Path, str]]  # (input, one-line reason)


def stylize_files(runner, files: Sequence[Path], targets: Sequence[Path], *, size: int | None = None,
                  strength: float = 1.0, colors: bool = False,
                  infer: Callable[[torch.Tensor, Path], torch.Tensor] | None = None,
                  progress: Callable[[Path], None] | None = None,
                  read: Callable[[Path], torch.Tensor] = read_photo) -> StylizeReport:
    """Stylize each file into its target. ``infer`` replaces the runner call (tiling); ``read`` replaces
    read_photo (a caller that has read a file already); a file that cannot be read, run or written is recorded
    with its reason and the rest go on."""
    report = StylizeReport([], [])
    for path, target in zip(files, targets, strict=True):
        try:
            each = (lambda image, path=path: infer(image, path)) if infer is not None else None
            result = stylize_tensor(runner, read(path), size=size, strength=strength, colors=colors, infer=each)
            report.written.append(save_image(result, target))
        except StylexportError as exc:
            report.failed.append((path, str(exc)))
        if progress is not None:
            progress(path)
    return report


class Stylizer:
    """Stylize images in memory, for Python apps: the pipeline ``stylexport stylize`` runs on files.

    ::

        from PIL import Image
        from stylexport import Stylizer

        with Stylizer("waves.safetensors") as stylizer:  # or Stylizer(style="great_wave"); any model stylize takes
            picture = stylizer(Image.open("photo.jpg"), strength=0.8)

    ``model``, ``style``, ``engine`` (``--backend``), ``device`` and ``tile`` mean what they mean to ``stylexport
    stylize``: with neither a model nor a style the default shipped style is used, and a checkpoint with no engine
    named runs on the fastest engine here that passes its parity gate (exported once into the cache). A call
    returns the kind of image it is given, at the input's size (or ``size`` on the longer side):

    - a PIL image of any mode (EXIF orientation applied, alpha composited on white): an RGB PIL image;
    - a uint8 numpy array, (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA: a (H, W, 3) uint8 RGB array;
    - a float torch tensor, (3, H, W) or (N, 3, H, W), RGB in [0, 255]: float32 on the CPU, same rank, clamped
      to [0, 255] (not rounded);
    - a uint8 torch tensor, what ``torchvision.io.decode_image``/``read_image`` give: (C, H, W) with C 1 (grey),
      3 (RGB) or 4 (RGBA, composited on white), or (N, 3, H, W): uint8 on the CPU, (3, H, W) or (N, 3, H, W),
      rounded as files are written.

    One Stylizer can serve several threads (a web service's workers): their network calls take turns.
    """

    def __init__(self, model: str | os.PathLike | None = None, *, style: str | None = None, engine: str | None = None,
                 device: str = "auto", tile: int | None = None, tile_margin: int = 64):
        if tile is not None:
            from stylexport.tiles import check_tiling

            check_tiling(tile, tile_margin)
        path, default = resolve_model(model, style)
        if default is not None:
            log.info("style %s (no model or style given)", default)
        self.model = path
        self.runner = open_model(path, device=device, engine=engine, tiled=tile is not None)
        self.tile, self.tile_margin = tile, tile_margin

    @property
    def engine(self) -> str:
        """The engine that runs the network (a row of ``stylexport.formats.ENGINES``)."""
        return self.runner.engine or self.runner.name

    def __call__(self, image, *, size: int | None = None, strength: float = 1.0, preserve_colors: bool = False):
        check_size(size, "size")
        tensor, back = _from_image(image)
        infer = None
        if self.tile is not None:
            from stylexport.tiles import stylize_tiled

            def infer(one: torch.Tensor) -> torch.Tensor:
                return stylize_tiled(self.runner.model, one, tile=self.tile, margin=self.tile_margin,
                                     device=self.runner.device)
        return back(stylize_tensor(self.runner, tensor, size=size, strength=strength, colors=preserve_colors,
                                   infer=infer))

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> Stylizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Stylizer({str(self.model)!r}, engine={self.engine!r}, device={str(self.runner.device)!r})"


def _from_image(image) -> tuple[torch.Tensor, Callable[[torch.Tensor], object]]:
    """An app's image as the pipeline's tensor, and the function that turns a result back into its kind."""
    import numpy as np
    from PIL import Image

    from stylexport.image import pil_to_tensor, tensor_to_pil, tensor_to_uint8

    if isinstance(image, Image.Image):
        return pil_to_tensor(image, min_size=1), tensor_to_pil
    if isinstance(image, np.ndarray):
        shape = image.shape
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and shape[2] in (3, 4))):
            raise StylexportError(f"numpy image of shape {shape} and dtype {image.dtype}: expected uint8 (H, W), "
                                  "(H, W, 3) RGB or (H, W, 4) RGBA; for floats in [0, 255] pass a torch tensor "
                                  "(3, H, W)")
        return pil_to_tensor(Image.fromarray(np.ascontiguousarray(image)), min_size=1), tensor_to_uint8
    if isinstance(image, torch.Tensor) and image.numel() == 0:
        raise StylexportError(f"tensor image of shape {tuple(image.shape)} is empty: it has no pixels to stylize")
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
        def to_uint8(t: torch.Tensor) -> torch.Tensor:
            return t.clamp(0, 255).round().to(torch.uint8)

        if image.dim() == 3 and image.shape[0] in (1, 3, 4):  # one image, any of torchvision's read modes
            from torchvision.transforms.v2.functional import to_pil_image

            return pil_to_tensor(to_pil_image(image.detach().cpu()), min_size=1), lambda t: to_uint8(t[0])
        if image.dim() == 4 and image.shape[1] == 3:
            return image.detach().cpu().float(), to_uint8
        raise StylexportError(f"tensor image of shape {tuple(image.shape)} and dtype torch.uint8: expected (C, H, W) "
                              "with C 1, 3 or 4 (as torchvision.io.decode_image gives) or (N, 3, H, W)")
    if isinstance(image, torch.Tensor):
        if not image.is_floating_point() or image.dim() not in (3, 4) or image.shape[-3] != 3:
            raise StylexportError(f"tensor image of shape {tuple(image.shape)} and dtype {image.dtype}: expected a "
                                  "float (3, H, W) or (N, 3, H, W) RGB tensor in [0, 255], or uint8")
        tensor = image.detach().float().cpu()
        if not torch.isfinite(tensor).all():
            raise StylexportError(f"tensor image of shape {tuple(image.shape)} holds NaN or infinite values; pass "
                                  "RGB in [0, 255]")
        if tensor.numel() and 0 < float(tensor.max()) <= 1:
            log.warning("the float tensor's values lie in [0, 1], but Stylizer takes RGB in [0, 255] (as decoded "
                        "files hold): multiply it by 255 (torchvision's to_tensor and to_dtype(scale=True) give "
                        "[0, 1]); stylizing it as an almost black image")
        return tensor, (lambda t: t[0]) if image.dim() == 3 else (lambda t: t)
    hint = "; for a file, pass Image.open(path) (or run `stylexport stylize FILE -o OUT`)" \
        if isinstance(image, str | os.PathLike) else ""
    raise StylexportError(f"cannot stylize a {type(image).__module__}.{type(image).__name__}: pass a PIL image, a "
                          "uint8 numpy array (H, W, 3), a float torch tensor (3, H, W) in [0, 255] or a uint8 "
                          f"one{hint}")
