"""Models made elsewhere (runtime/foreign.py): the layout, fixed size, element type and value range that a
third-party model declares or computes in are found the same way by every backend that opens such files, so
an ONNX model and the OpenVINO IR converted from it give the same pixels, and an ExecuTorch program without
our sidecar runs as its own signature says."""

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image
from typer.testing import CliRunner

from stylexport.cli import app
from stylexport.errors import StylexportError
from stylexport.runtime import open_runner
from stylexport.runtime.foreign import image_input
from tests.conftest import one_line_error
from tests.test_runtime import foreign_model

runner = CliRunner()

KINDS = {"dynamic": {}, "fixed": {"fixed": (64, 48)}, "nhwc-0-1": {"nhwc": True, "value_range": "0-1"},
         "fixed-nhwc-minus1-1": {"fixed": (40, 56), "nhwc": True, "value_range": "-1-1"}}


@pytest.mark.parametrize(("dims", "nhwc", "fixed", "batch"), [
    ([None, 3, None, None], False, None, None),
    ([1, 3, 224, 224], False, (224, 224), 1),
    ([None, 256, 320, 3], True, (256, 320), None),
    ([None, None, None, None], False, None, None),  # nothing declared: NCHW, as most exports are
    ([1, 3, 5, 3], False, (5, 3), 1),  # 3 on both axes: channels first
])
def test_layout_size_and_batch_are_read_from_the_declared_dims(dims, nhwc, fixed, batch):
    got_nhwc, dtype, spec = image_input(dims, "float32", name="x", what="model m", signature="sig")
    assert (got_nhwc, dtype, spec.fixed_hw, spec.fixed_batch, spec.name) == (nhwc, torch.float32, fixed, batch, "x")


@pytest.mark.parametrize(("dims", "dtype", "words"), [
    ([1, 4, 64, 64], "float32", "with one (N, 3, H, W) or (N, H, W, 3) input"),
    ([1, 64, 64, 1], "float32", "with one (N, 3, H, W) or (N, H, W, 3) input"),
    ([1, 64, 64, None], "float32", "with one (N, 3, H, W) or (N, H, W, 3) input"),
    ([1, 3, 64], "float32", "with one (N, 3, H, W) or (N, H, W, 3) input"),
    ([1, 3, 64, 64], "int64", "its input is int64, and stylexport feeds float32, float16 or uint8 images"),
])
def test_inputs_that_are_not_images_are_refused_with_the_real_signature(dims, dtype, words):
    with pytest.raises(StylexportError, match="^model m is x: f32 SIG; ") as err:
        image_input(dims, dtype, name="x", what="model m", signature="x: f32 SIG")
    assert words in str(err.value)


@pytest.mark.parametrize("kind", KINDS)
def test_an_ir_converted_from_a_foreign_onnx_runs_like_the_onnx(tmp_path, kind, caplog):
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed: pip install 'stylexport[cpu]'")
    path = foreign_model(tmp_path / "m.onnx", **KINDS[kind])
    ov.save_model(ov.convert_model(str(path)), str(tmp_path / "m.xml"))
    x = torch.rand(2, 3, 61, 93) * 255
    with open_runner(path) as by_ort, open_runner(tmp_path / "m.xml") as by_ov:
        assert (by_ort.engine, by_ov.engine) == ("ort-cpu", "openvino-fp32")
        layout = "NHWC" if KINDS[kind].get("nhwc") else "NCHW"
        value_range = KINDS[kind].get("value_range", "0-255")
        assert by_ov.metadata == by_ort.metadata == {"value_range": value_range, "layout": layout,
                                                     "dtype": "float32"}
        assert by_ov.spec.fixed_hw == by_ort.spec.fixed_hw == KINDS[kind].get("fixed")
        y = by_ov.infer_any_size(x)
        assert y.shape == x.shape
        # under a quarter of a level apart (OpenVINO and ONNX Runtime sum the toy net's large activations in other
        # orders); a wrong layout, size or range would be off by tens of levels
        torch.testing.assert_close(y, by_ort.infer_any_size(x), atol=0.25, rtol=0)
    if value_range != "0-255":
        assert f"m.xml computes in {value_range}" in caplog.text


def test_a_foreign_ir_through_the_cli_keeps_the_photo_size_and_info_says_how(tmp_path, make_image):
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed: pip install 'stylexport[cpu]'")
    path = foreign_model(tmp_path / "keras.onnx", fixed=(64, 48), nhwc=True, value_range="0-1")
    ov.save_model(ov.convert_model(str(path)), str(tmp_path / "keras.xml"))
    result = runner.invoke(app, ["stylize", str(make_image("p.png", 161, 257)), "-m", str(tmp_path / "keras.xml"),
                                 "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 0, result.output  # a traceback from OpenVINO before: fed NCHW at the photo's size
    assert Image.open(tmp_path / "o.png").size == (257, 161)
    result = runner.invoke(app, ["info", str(tmp_path / "keras.xml")])
    assert result.exit_code == 0, result.output
    assert "on openvino-fp32: NHWC, values 0-1 (mapped to and from 0-255), resized to 64x48 and back" in result.output


def typed_model(path, elem_type):
    """255 - x for an input of ``elem_type`` (cast to float inside): the result is worked out by hand."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT), helper.make_node("Sub", ["top", "xf"], ["y"])],
        "typed", [helper.make_tensor_value_info("x", elem_type, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("top", TensorProto.FLOAT, [], [255.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize(("elem_type", "name", "fed"), [
    (TensorProto.UINT8, "uint8", lambda x: x.round()),
    (TensorProto.FLOAT16, "float16", lambda x: x.half().float()),
])
def test_models_that_take_uint8_or_float16_are_fed_that_type(tmp_path, elem_type, name, fed):
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed: pip install 'stylexport[cpu]'")
    path = typed_model(tmp_path / f"{name}.onnx", elem_type)
    ov.save_model(ov.convert_model(str(path)), str(tmp_path / f"{name}.xml"))
    x = torch.rand(1, 3, 20, 28) * 255
    for model in (path, tmp_path / f"{name}.xml"):
        with open_runner(model) as r:
            assert r.metadata == {"value_range": "0-255", "layout": "NCHW", "dtype": name}
            torch.testing.assert_close(r.infer_any_size(x), 255 - fed(x), atol=0, rtol=0)


# --- ExecuTorch programs made elsewhere: no sidecar, only the method's planned tensors ---------------------------

class SigmoidNet(torch.nn.Module):
    """A one-conv net computing in 0-1 on NHWC images, as a TensorFlow-minded exporter would write it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.conv(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)


class TwoInputs(torch.nn.Module):
    def forward(self, a, b):
        return a + b


def lower(module, example, path):
    pytest.importorskip("executorch", reason="ExecuTorch is not installed: pip install 'stylexport[mobile]'")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(module.eval(), example)
    path.write_bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    return path


def test_a_foreign_program_runs_as_its_signature_says(tmp_path, make_image):
    net = SigmoidNet()
    pte = lower(net, (torch.rand(1, 40, 56, 3),), tmp_path / "tf_style.pte")
    x = torch.rand(3, 3, 40, 56) * 255  # a batch: the program takes one image, so it runs frame by frame
    with open_runner(pte) as r:
        assert r.engine == "executorch-fp32"
        assert r.metadata == {"value_range": "0-1", "layout": "NHWC", "dtype": "float32"}
        assert r.spec.fixed_hw == (40, 56) and r.spec.fixed_batch is None
        with torch.no_grad():
            expected = 255 * net(x.permute(0, 2, 3, 1) / 255).permute(0, 3, 1, 2)
        torch.testing.assert_close(r.infer_any_size(x), expected, atol=1e-3, rtol=1e-5)
    result = runner.invoke(app, ["stylize", str(make_image("p.png", 90, 70)), "-m", str(pte), "-o",
                                 str(tmp_path / "o.png")])
    assert result.exit_code == 0, result.output  # refused before: a .pte without our sidecar
    assert Image.open(tmp_path / "o.png").size == (70, 90)
    result = runner.invoke(app, ["info", str(pte)])
    assert result.exit_code == 0, result.output
    assert "input 0: float32 [1, 40, 56, 3]" in result.output
    assert "NHWC, values 0-1 (mapped to and from 0-255), resized to 40x56 and back" in result.output

    two = lower(TwoInputs(), (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)), tmp_path / "two.pte")
    one_line_error(runner.invoke(app, ["stylize", str(tmp_path / "p.png"), "-m", str(two), "-o",
                                       str(tmp_path / "t.png")]),
                   f"ExecuTorch program {two} is [1, 3, 8, 8] float32, [1, 3, 8, 8] float32 -> [1, 3, 8, 8] float32",
                   "one (N, 3, H, W) or (N, H, W, 3) input")
    assert not (tmp_path / "t.png").exists()


def test_images_keep_their_values_through_a_uint8_round_trip():
    """The mapping itself, by hand: an NHWC uint8 0-255 model gets x rounded, and its output comes back NCHW."""
    from stylexport.runtime.foreign import AdaptedRunner

    class Echo(AdaptedRunner):
        def __init__(self):
            self.nhwc, self.input_dtype, self.seen = True, torch.uint8, []

        def _call(self, batch):
            self.seen.append((tuple(batch.shape), batch.dtype))
            return batch

    echo = Echo()
    x = torch.tensor([[[[0.4, 254.6]], [[10.5, 3.0]], [[300.0, -2.0]]]])  # (1, 3, 1, 2)
    y = echo._run(x)
    assert echo.seen == [((1, 1, 2, 3), torch.uint8)] and y.dtype == torch.float32
    assert y.tolist() == [[[[0.0, 255.0]], [[10.0, 3.0]], [[255.0, 0.0]]]]  # round half to even, clamped
