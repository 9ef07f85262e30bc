"""The runtime's size and layout policy on foreign ONNX style models: the output always has the input's size,
and stylize and video give the same pixels for the same model and frame."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from stylexport.cli import app
from stylexport.runtime import open_runner

runner = CliRunner()


def foreign_model(path, *, fixed=None, nhwc=False, value_range="0-255"):
    """A stride-2 conv and a stride-2 transposed conv, like the transposed-convolution style nets: a 257 px
    side comes back as 258, so such a model needs padding to a multiple of 4 (and a crop) to keep its size.
    ``value_range`` 0-1 or -1-1: the same function computed in that range (input and output rescaled)."""
    rng = np.random.default_rng(0)
    h, w = fixed or ("H", "W")
    shape = ["N", h, w, 3] if nhwc else ["N", 3, h, w]
    nodes, x = [], "image_in"
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["image_in"], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    scale, shift = {"0-255": (1.0, 0.0), "0-1": (255.0, 0.0), "-1-1": (127.5, 1.0)}[value_range]
    nodes += [helper.make_node("Add", [x, "shift"], ["shifted"]),
              helper.make_node("Mul", ["shifted", "scale"], ["x255"])]
    x = "x255"
    out = "out_nchw" if nhwc else "styled"
    nodes += [
        helper.make_node("Conv", [x, "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("ConvTranspose", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["y255"]),
        helper.make_node("Div", ["y255", "scale"], ["y_scaled"]),
        helper.make_node("Sub", ["y_scaled", "shift"], [out]),
    ]
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["out_nchw"], ["styled"], perm=[0, 2, 3, 1]))
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w1", rng.normal(0, 0.2, (8, 3, 3, 3))), ("b1", rng.normal(0, 1, 8)),
        ("w2", rng.normal(0, 0.2, (8, 3, 4, 4))), ("b2", np.full(3, 100.0)),
        ("lo", np.array(0.0)), ("hi", np.array(255.0)), ("scale", np.array(scale)), ("shift", np.array(shift)))]
    graph = helper.make_graph(nodes, "foreign", [helper.make_tensor_value_info("image_in", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("styled", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("kind", ["dynamic", "fixed", "nhwc"])
def test_foreign_models_keep_the_input_size_and_controls_work(tmp_path, make_image, kind):
    model = foreign_model(tmp_path / f"{kind}.onnx", fixed=(64, 64) if kind == "fixed" else None,
                          nhwc=kind == "nhwc")
    photo = make_image("p.png", 161, 257)
    out = tmp_path / "o.png"
    result = runner.invoke(app, ["stylize", str(photo), "-m", str(model), "-o", str(out), "--strength", "0.5",
                                 "--preserve-colors"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (257, 161)


def test_dynamic_foreign_model_is_padded_and_cropped_exactly(tmp_path):
    runner_ = open_runner(foreign_model(tmp_path / "m.onnx"))
    x = torch.rand(1, 3, 61, 93) * 255
    y = runner_.infer_any_size(x)
    assert y.shape == x.shape and y.device.type == "cpu" and y.dtype == torch.float32
    padded = torch.nn.functional.pad(x, (0, 3, 0, 3), mode="reflect")  # 61x93 -> 64x96
    torch.testing.assert_close(y, runner_.infer(padded)[..., :61, :93])
    # learnt once: the next frame runs the model once (padded), not at its own size first
    calls = []
    original = runner_.infer
    runner_.infer = lambda batch: calls.append(tuple(batch.shape)) or original(batch)
    torch.testing.assert_close(runner_.infer_any_size(x), y)
    assert calls == [(1, 3, 64, 96)]


def test_nhwc_model_gives_the_same_pixels_as_its_nchw_twin(tmp_path):
    nchw = open_runner(foreign_model(tmp_path / "a.onnx"))
    nhwc = open_runner(foreign_model(tmp_path / "b.onnx", nhwc=True))
    x = torch.rand(2, 3, 64, 48) * 255
    torch.testing.assert_close(nhwc.infer_any_size(x), nchw.infer_any_size(x))


@pytest.mark.parametrize("value_range", ["0-1", "-1-1"])
def test_models_in_other_ranges_are_detected_and_mapped(tmp_path, value_range, caplog):
    reference = open_runner(foreign_model(tmp_path / "a.onnx"))
    other = open_runner(foreign_model(tmp_path / "b.onnx", value_range=value_range))
    assert reference.metadata["value_range"] == "0-255"
    assert other.metadata["value_range"] == value_range
    assert f"b.onnx computes in {value_range}" in caplog.text
    x = torch.rand(1, 3, 40, 52) * 255
    torch.testing.assert_close(other.infer_any_size(x), reference.infer_any_size(x), atol=2e-3, rtol=1e-5)


@pytest.mark.parametrize("kind", ["ours", "dynamic", "fixed", "0-1"])
def test_stylize_and_video_give_the_same_pixels(tmp_path, model_and_ckpt, kind):
    av = pytest.importorskip("av", reason="PyAV is not installed: pip install 'stylexport[video]'")
    del av
    if kind == "ours":
        _, model = model_and_ckpt
    else:
        model = foreign_model(tmp_path / "m.onnx", fixed=(64, 64) if kind == "fixed" else None,
                              value_range="0-1" if kind == "0-1" else "0-255")
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(frames / "f_000.png")
    video = runner.invoke(app, ["video", str(frames), "-o", str(tmp_path / "v"), "-m", str(model)])
    assert video.exit_code == 0, video.output
    still = runner.invoke(app, ["stylize", str(frames / "f_000.png"), "-m", str(model), "-o",
                                str(tmp_path / "s.png")])
    assert still.exit_code == 0, still.output
    a = np.asarray(Image.open(tmp_path / "v" / "f_000.png"))
    b = np.asarray(Image.open(tmp_path / "s.png"))
    assert a.shape == b.shape == (50, 70, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() == 0


def test_an_image_smaller_than_an_edge_padded_network_takes_is_padded_up_to_it(tmp_path, make_image, caplog):
    """An edge-padded network (the shipped styles pad by 32) takes sides of at least pad + 4 = 36 px; a 20x30
    photo or a video of 24x18 frames ended in "expected H and W >= 36". The size policy now reflect-pads such
    an input to 36 (evenly: 8 px above and below, 3 left and right) and crops the result: on every engine."""
    from stylexport.checkpoint import save_checkpoint
    from stylexport.errors import StylexportError
    from stylexport.export import export

    from .conftest import random_net

    model = random_net(bias=0.3, head_gain=20.0, edge_pad=32)
    ckpt = save_checkpoint(tmp_path / "padded.safetensors", model, {"style_name": "padded"})
    onnx_path = export(ckpt, ["onnx"], tmp_path / "out")[0].path
    x = torch.rand(1, 3, 20, 30) * 255
    with open_runner(ckpt, engine="torch-fp32") as by_torch, open_runner(onnx_path, engine="ort-cpu") as by_ort:
        for r in (by_torch, by_ort):
            assert r.spec.min_side == 36
            with pytest.raises(StylexportError, match="got 20x30, expected H and W >= 36"):
                r.infer(x)  # the engine call itself stays strict; the policy is infer_any_size's
        y = by_torch.infer_any_size(x)
        assert y.shape == (1, 3, 20, 30)
        padded = torch.nn.functional.pad(x, (3, 3, 8, 8), mode="reflect")
        torch.testing.assert_close(y, by_torch.infer(padded)[..., 8:28, 3:33])
        assert float((by_ort.infer_any_size(x) - y).abs().max()) < 1.0  # the same on ONNX Runtime
        by_torch.infer_any_size(x)
    assert caplog.text.count("takes sides of at least 36 px; reflect-padding a 20x30 input") == 2  # once a runner
    photo = make_image("small.png", 20, 30)
    result = runner.invoke(app, ["stylize", str(photo), "-m", str(ckpt), "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "s.png").size == (30, 20)


def test_onnx_contract_is_checked_when_the_model_carries_one(tmp_path):
    from stylexport.contract import CONTRACT, PREFIX
    from stylexport.errors import StylexportError

    path = foreign_model(tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    meta = {**CONTRACT, "format": "onnx", "value_range": "0-1"}
    onnx.helper.set_model_props(proto, {PREFIX + k: v for k, v in meta.items()})
    onnx.save(proto, str(path))
    with pytest.raises(StylexportError, match="value_range '0-1', stylexport feeds '0-255'"):
        open_runner(path)
    meta["value_range"] = "0-255"
    onnx.helper.set_model_props(proto, {PREFIX + k: v for k, v in meta.items()})
    onnx.save(proto, str(path))
    assert open_runner(path).infer_any_size(torch.rand(1, 3, 32, 32) * 255).shape == (1, 3, 32, 32)


# --- every engine that runs on this CPU conforms to the one protocol ----------------------------------------

CPU_ENGINES = [("torch-fp32", "checkpoint"), ("ort-cpu", "onnx"), ("onnx-reference", "onnx-fp16")]


@pytest.fixture(scope="module")
def artifacts(model_and_ckpt, tmp_path_factory):
    from stylexport.export import export

    _, ckpt = model_and_ckpt
    out = tmp_path_factory.mktemp("conformance")
    return {"checkpoint": ckpt, **{r.format: r.path for r in export(ckpt, ["onnx", "onnx-fp16"], out)}}


@pytest.mark.parametrize(("engine", "fmt"), CPU_ENGINES)
def test_engine_conformance(engine, fmt, artifacts, model_and_ckpt):
    from stylexport.errors import StylexportError

    model, _ = model_and_ckpt
    with open_runner(artifacts[fmt], engine=engine, device="cpu") as r:
        assert r.engine == engine
        # input errors: the same message from every engine
        for bad, message in ((torch.rand(1, 1, 32, 32), r"expected \(N, 3, H, W\) RGB"),
                             (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "expected float32 in"),
                             (torch.rand(1, 3, 2, 64), "expected H and W >="),
                             (np.zeros((1, 3, 32, 32)), "expected a torch.Tensor")):
            with pytest.raises(StylexportError, match=f"input '{r.spec.name}'.*{message}"):
                r.infer(bad)
        # output contract: (N, 3, H, W) float in [0, 255]; our models keep any size (not a multiple of 4)
        x = torch.rand(2, 3, 37, 50) * 255
        y = r.infer(x)
        assert y.shape == x.shape and y.is_floating_point()
        assert 0 <= float(y.min()) and float(y.max()) <= 255
        with torch.no_grad():
            expected = model(x)
        assert (y.float().cpu() - expected).abs().max() < 1.0  # every engine computes the same function
        # size policy: float32 on the CPU, the input's size
        z = r.infer_any_size(x[:1])
        assert z.shape == (1, 3, 37, 50) and z.dtype == torch.float32 and z.device.type == "cpu"
        # the timing hook is the backend call itself, validated once
        call = r.bind(x)
        torch.testing.assert_close(call(x).float().cpu(), y.float().cpu())
    assert not hasattr(r, "session") and not hasattr(r, "model") and not hasattr(r, "evaluator")  # released


def test_a_model_that_breaks_the_output_contract_is_refused(tmp_path):
    from stylexport.errors import StylexportError

    path = tmp_path / "grey.onnx"
    graph = helper.make_graph([helper.make_node("ReduceMean", ["image"], ["grey"], axes=[1], keepdims=1)], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("grey", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(StylexportError, match=r"returned shape \(1, 1, 32, 32\).*RGB image-to-image"):
        open_runner(path).infer(torch.rand(1, 3, 32, 32) * 255)


def test_compiled_torch_runner_compiles_every_shape_it_is_given(monkeypatch, random_model):
    """A bench runs 10 shapes (5 sizes x 2 batches) through one compiled runner; dynamo's default limit of 8
    recompiles would run the last ones eagerly under the torch-compile label. Dynamo with a counting backend
    (no inductor: seconds on a CPU) shows every shape reaching the compiler."""
    from stylexport.runtime.torch_backend import TorchRunner

    compiled_shapes = []

    def counting_backend(gm, example_inputs):
        compiled_shapes.append(tuple(example_inputs[-1].shape) if example_inputs else None)
        return gm.forward

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, mode=None, dynamic=None: real_compile(
        model, backend=counting_backend, dynamic=dynamic))
    torch._dynamo.reset()
    runner = TorchRunner(random_model, compile=True)
    shapes = [(b, 3, h, w) for b in (1, 2) for h, w in ((16, 16), (16, 24), (24, 16), (24, 24), (32, 16))]
    for shape in shapes:
        x = torch.rand(shape) * 255
        y = runner.infer(x)
        assert y.shape == x.shape
        assert torch.allclose(y, random_model(x).clamp(0, 255), atol=1e-3)
    torch._dynamo.reset()
    assert len(compiled_shapes) == len(shapes)


def test_every_engine_opens_a_runner_that_runs():
    """Each engine's runner class implements ``_run`` (the base class's is abstract). The TensorRT runner's had
    slipped below ``open_engine`` when the formats table came in, where it was dead code: every TensorRT run
    would have failed. Checked here for every engine of the table, also those this machine cannot run."""
    import importlib
    import inspect

    from stylexport import formats
    from stylexport.runtime.base import Runner

    for engine in formats.ENGINES.values():
        module = importlib.import_module(engine.open.split(":")[0])
        runners = [c for _, c in inspect.getmembers(module, inspect.isclass)
                   if issubclass(c, Runner) and c is not Runner and c.__module__ == module.__name__]
        assert runners, engine.name
        for cls in runners:
            assert cls._run is not Runner._run, f"{engine.name}: {cls.__name__} has no _run"
