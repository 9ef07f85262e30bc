"""The only module that reads and writes image files.

Contract used everywhere else: a tensor of shape (3, H, W) for one image or (N, 3, H, W) for a batch,
RGB, float32 with values in [0, 255]. Files on disk are 8-bit RGB.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from stylexport.contract import MIN_SIDE
from stylexport.errors import StylexportError
from stylexport.fileio import atomic_path, check_not_an_input, check_writable

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".heic", ".heif",
                  ".avif")
# HEIF's HEVC brands (an iPhone's photos): Pillow reads them with the pillow-heif plugin (the `heic` extra)
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
MIN_SIZE = MIN_SIDE  # the transformer needs at least this many pixels on each side
MAX_PIXELS_ENV = "STYLEXPORT_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's decompression-bomb error threshold (2 x MAX_IMAGE_PIXELS)


def max_pixels() -> int:
    """The largest image (in pixels) read_image opens; STYLEXPORT_MAX_PIXELS raises it on purpose."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        return int(float(value))
    except ValueError:
        raise StylexportError(f"{MAX_PIXELS_ENV}={value!r} is not a number of pixels, e.g. 300000000") from None
SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP", ".tif": "TIFF",
                ".tiff": "TIFF"}


def _to_srgb(img: Image.Image, what: str = "the image") -> Image.Image:
    """An RGB(A) or CMYK image with an embedded ICC profile (a phone's Display P3, Adobe RGB, a print CMYK) in
    sRGB, the space the networks were trained in and every output is written in (untagged). Without a profile,
    or with one LittleCMS cannot use (said in the log), the pixels are taken as they are."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK"):
        return img
    from PIL import ImageCms

    alpha = img.getchannel("A") if img.mode == "RGBA" else None
    try:
        converted = ImageCms.profileToProfile(img.convert("RGB") if alpha is not None else img,
                                              ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                              ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        log.warning("ignoring the embedded colour profile of %s (%s); its pixels are read as sRGB", what, exc)
        return img
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


def _to_rgb(img: Image.Image, what: str = "the image") -> Image.Image:
    """Any PIL mode to 8-bit sRGB: an embedded colour profile applied, alpha composited on white, 16-bit scaled,
    float grey in [0, 1] scaled, CMYK and palettes converted."""
    img = _to_srgb(img, what)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "F":  # 32-bit float grey: [0, 1] (as float TIFFs from imaging tools hold it) or [0, 255]
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        img = Image.fromarray(np.clip(np.round(arr * scale), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def _open_unchecked(path: Path) -> Image.Image:
    """Image.open without Pillow's global bomb check, which cannot say the image's size. A HEIC/HEIF photo (an
    iPhone's, whatever its name) is opened through pillow-heif, registered with Pillow the first time one comes."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        try:
            return Image.open(path)
        except UnidentifiedImageError:
            if not _is_heif(path):
                raise
            _register_heif(path)
            return Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _is_heif(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(12)
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def _register_heif(path: Path) -> None:
    try:
        import pillow_heif
    except ImportError:
        raise StylexportError(f"{path} is a HEIC/HEIF photo (an iPhone's default format); reading it needs "
                              "pillow-heif: pip install 'stylexport[heic]' (its binary wheels are GPLv2), or "
                              "convert it to JPEG") from None
    pillow_heif.register_heif_opener()


def read_image(path: str | os.PathLike, *, min_size: int = MIN_SIZE) -> torch.Tensor:
    """Read an image file as a (3, H, W) float32 RGB tensor in [0, 255], EXIF orientation applied."""
    path = Path(path)
    if not path.exists():
        raise StylexportError(f"image not found: {path}; check the path")
    if path.is_dir():
        raise StylexportError(f"{path} is a folder, not an image file")
    if path.stat().st_size == 0:
        raise StylexportError(f"image file is empty: {path}; replace it with a readable image")
    limit = max_pixels()
    try:
        img = _open_unchecked(path)  # the header only: our own check below names the size and the fix
        with img:
            w, h = img.size
            if w * h > limit:
                raise StylexportError(f"image {path} is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                                      "that guards against decompression bombs; if you trust the file, raise it "
                                      f"with {MAX_PIXELS_ENV}={w * h}")
            img.load()
            if getattr(img, "is_animated", False):  # a GIF, APNG or WebP animation; a multi-page TIFF
                log.warning("%s has %d frames: only the first is read; stylexport video %s -o OUT.gif (or .mp4) "
                            "stylizes every frame of an animation", path, img.n_frames, path)
            rgb = _to_rgb(ImageOps.exif_transpose(img), str(path))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise StylexportError(f"cannot read image {path}: {reason}; is it a complete image file?") from None
    return _rgb_tensor(rgb, f"image {path}", min_size)


def _rgb_tensor(rgb: Image.Image, what: str, min_size: int) -> torch.Tensor:
    w, h = rgb.size
    if w * h == 0:
        raise StylexportError(f"{what} is {w}x{h}: it has no pixels to stylize")
    if min(w, h) < min_size:
        raise StylexportError(f"{what} is {w}x{h}; each side must be at least {min_size} px")
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().contiguous()


def pil_to_tensor(img: Image.Image, *, min_size: int = MIN_SIZE) -> torch.Tensor:
    """An in-memory PIL image as read_image reads a file: EXIF orientation applied, any mode to RGB (alpha on
    white, 16-bit scaled), a (3, H, W) float32 tensor in [0, 255]."""
    return _rgb_tensor(_to_rgb(ImageOps.exif_transpose(img)), f"{img.mode} image", min_size)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """A (3, H, W) or (1, 3, H, W) tensor in [0, 255] as an 8-bit RGB PIL image (clamped, rounded): the pixels
    save_image writes."""
    return Image.fromarray(tensor_to_uint8(image), mode="RGB")


def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """A (3, H, W) or (1, 3, H, W) tensor in [0, 255] as a writable (H, W, 3) uint8 RGB array (clamped, rounded)."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"one image expected, got a batch of {image.shape[0]}")
        image = image[0]
    return image.detach().float().cpu().clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _save_format(path: Path) -> str:
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise StylexportError(f"cannot save {path}: unknown image suffix {path.suffix!r}; use one of "
                              f"{', '.join(sorted(SAVE_FORMATS))}")
    return fmt


def check_image_output(path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse, before the work that makes it, an image ``save_image`` could not write (its suffix, its folder)
    or should not (one of ``inputs``: the user's original)."""
    _save_format(Path(path))
    check_writable(path)
    check_not_an_input([path], inputs)


def save_image(image: torch.Tensor, path: str | os.PathLike, *, quality: int = 95) -> Path:
    """Write a (3, H, W) or (1, 3, H, W) tensor in [0, 255] as 8-bit RGB, clamped, atomically."""
    path = Path(path)
    fmt = _save_format(path)
    pil = tensor_to_pil(image)
    with atomic_path(path) as tmp:
        kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
        pil.save(tmp, format=fmt, **kwargs)
    return path


def resize(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``image`` (..., H, W) resized to ``size`` (H, W), antialiased, kept in [0, 255]."""
    # imported here, not with this module: torchvision's import pulls in torch._dynamo, seconds on a small CPU
    # that a stylize which resizes nothing need not wait for
    import torchvision.transforms.v2.functional as TF

    return TF.resize(image, list(size), antialias=True).clamp(0, 255)


def max_side_size(width: int, height: int, max_side: int | None, *, even: bool = False) -> tuple[int, int]:
    """(width, height) scaled so the longer side is ``max_side`` (None: as they are); ``even`` rounds each to an
    even number, as H.264 and VP9 in 4:2:0 need."""
    if max_side is None:
        return width, height
    scale = max_side / max(width, height)
    if even:
        return 2 * max(1, round(width * scale / 2)), 2 * max(1, round(height * scale / 2))
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_size(size: int | None, option: str = "--size") -> None:
    """Refuse a longer side the pipeline will not resize to (below MIN_SIDE, or not a whole number of pixels)."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIDE):
        raise StylexportError(f"{option} {size!r}: the longer side must be a whole number of pixels, at least "
                              f"{MIN_SIDE}; use {MIN_SIDE} or more (or leave it out for the input's size)")


def resize_max_side(image: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """Scale so the longer side is ``max_side`` (antialiased); None keeps the size."""
    if max_side is None:
        return image
    w, h = max_side_size(image.shape[-1], image.shape[-2], max_side)
    return resize(image, (h, w))


def read_for_loss(path: str | os.PathLike, max_side: int | None, *, what: str, option: str) -> torch.Tensor:
    """An image the VGG16 loss reads (Gatys' content and painting, a training run's painting): read, its longer
    side scaled to ``max_side``, and refused in one line where a side is then under MIN_SIDE (a strip: VGG16's
    pooling would leave nothing of it), naming the ``option`` value that would run it."""
    original = read_image(path)
    image = resize_max_side(original, max_side)
    h, w = image.shape[-2:]
    if min(h, w) < MIN_SIDE:
        needed = -(-MIN_SIDE * max(original.shape[-2:]) // min(original.shape[-2:]))  # keeps the short side 16
        at = f"at {option} {max_side}" if max_side is not None else "as it is"
        raise StylexportError(f"{what} {path} is {w}x{h} {at}: the VGG16 loss needs at least {MIN_SIDE} px a side; "
                              f"use {option} {needed} or more, or crop it to a less narrow shape")
    return image


def find_images(inputs: Iterable[str | os.PathLike], *, recursive: bool = True) -> list[Path]:
    """Expand files and folders into a sorted list of image files; folders with none are an error."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise StylexportError(f"no images in folder {p} (looked for {', '.join(IMAGE_SUFFIXES)})")
            found.extend(files)
        elif p.exists():
            found.append(p)
        else:
            raise StylexportError(f"input not found: {p}; check the path")
    return found


def sample_paths() -> tuple[Path, Path]:
    """The photo and the style image that ship with the package (public domain, see NOTICE)."""
    assets = Path(__file__).parent / "assets"
    return assets / "sample_photo.jpg", assets / "sample_style.jpg"


def as_batch(images: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """(3,H,W) -> (1,3,H,W); a list of same-sized images -> (N,3,H,W)."""
    if isinstance(images, torch.Tensor):
        return images.unsqueeze(0) if images.dim() == 3 else images
    return torch.stack(list(images))


def reflect_pad_to(batch: torch.Tensor, side: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``batch`` reflect-padded (evenly on both sides of each) so that H and W are at least ``side``, and where
    the original now starts (top, left). A reflection can add at most the side less one, so a very small image
    is padded in rounds (a side of one pixel, which has no reflection, is repeated once first)."""
    top = left = 0
    if min(batch.shape[-2:]) == 1:
        batch = torch.nn.functional.pad(batch, (0, int(batch.shape[-1] == 1), 0, int(batch.shape[-2] == 1)),
                                        mode="replicate")
    while min(batch.shape[-2:]) < side:
        h, w = batch.shape[-2:]
        grow_h, grow_w = (min(max(side - n, 0), 2 * (n - 1)) for n in (h, w))
        t, ll = grow_h // 2, grow_w // 2
        batch = torch.nn.functional.pad(batch, (ll, grow_w - ll, t, grow_h - t), mode="reflect")
        top, left = top + t, left + ll
    return batch, (top, left)
