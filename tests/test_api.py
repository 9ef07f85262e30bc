"""The Python API (``stylexport.Stylizer``): the stylize pipeline on in-memory images, for apps."""

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylexport import StylexportError, Stylizer
from stylexport.cli import app
from stylexport.styles import DEFAULT_STYLE, STYLES_ENV, ship_style
from tests.conftest import random_net, smooth_image

runner = CliRunner()


def test_pil_numpy_and_tensor_give_the_pixels_the_cli_writes(tmp_path, make_image, model_and_ckpt):
    _, ckpt = model_and_ckpt
    photo, out = make_image(h=40, w=52), tmp_path / "cli.png"
    result = runner.invoke(app, ["stylize", str(photo), "-m", str(ckpt), "-o", str(out), "--backend", "torch-fp32",
                                 "--strength", "0.7", "--preserve-colors"])
    assert result.exit_code == 0, result.output
    cli = np.asarray(Image.open(out))
    with Stylizer(ckpt, engine="torch-fp32") as stylizer:
        assert stylizer.engine == "torch-fp32"
        picture = stylizer(Image.open(photo), strength=0.7, preserve_colors=True)
        array = stylizer(np.asarray(Image.open(photo)), strength=0.7, preserve_colors=True)
        tensor = stylizer(torch.from_numpy(np.array(Image.open(photo))).permute(2, 0, 1).float(), strength=0.7,
                          preserve_colors=True)
    assert isinstance(picture, Image.Image) and picture.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(picture), cli)
    assert array.dtype == np.uint8 and array.shape == (40, 52, 3) and array.flags.writeable  # the app's to edit
    np.testing.assert_array_equal(array, cli)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 40, 52)
    np.testing.assert_array_equal(tensor.round().to(torch.uint8).permute(1, 2, 0).numpy(), cli)
    assert cli.std() > 5  # a visible output, not a flat one that any path would match


def test_torchvisions_uint8_images_give_the_pixels_the_cli_writes(tmp_path, make_image, model_and_ckpt):
    """torchvision.io.decode_image gives uint8 (C, H, W), C 1, 3 or 4 as the file has them: refused before
    ("expected a float tensor"), now stylized into a uint8 (3, H, W) of the pixels the CLI writes, grey and
    RGBA converted as files are. (The same tensors made here from PIL: torchvision 0.29 deprecates its decoders.)"""
    def decode_image(path):
        array = np.array(Image.open(path))
        return torch.from_numpy(array[..., None] if array.ndim == 2 else array).permute(2, 0, 1).contiguous()

    _, ckpt = model_and_ckpt
    photo, out = make_image(h=40, w=52), tmp_path / "cli.png"
    assert runner.invoke(app, ["stylize", str(photo), "-m", str(ckpt), "-o", str(out), "--backend",
                               "torch-fp32"]).exit_code == 0
    cli = torch.from_numpy(np.array(Image.open(out))).permute(2, 0, 1)
    grey = make_image("grey.png", 40, 48, seed=4, mode="L")
    rgba = tmp_path / "clear.png"
    Image.fromarray(np.dstack([smooth_image(40, 48, seed=5), np.zeros((40, 48), np.uint8)])).save(rgba)
    with Stylizer(ckpt, engine="torch-fp32") as stylizer:
        picture = stylizer(decode_image(str(photo)))
        assert picture.dtype == torch.uint8 and picture.shape == (3, 40, 52)
        assert torch.equal(picture, cli) and float(cli.float().std()) > 5
        batch = stylizer(torch.stack([decode_image(str(photo))] * 2))
        assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 40, 52) and torch.equal(batch[1], cli)
        one = decode_image(str(grey))
        assert one.shape == (1, 40, 48)
        assert torch.equal(stylizer(one), stylizer(one.expand(3, -1, -1).contiguous()))
        four = decode_image(str(rgba))
        assert four.shape == (4, 40, 48)
        assert torch.equal(stylizer(four), stylizer(torch.full((3, 40, 48), 255, dtype=torch.uint8)))


def test_a_batch_is_the_images_one_by_one(model_and_ckpt):
    _, ckpt = model_and_ckpt
    images = torch.stack([torch.from_numpy(smooth_image(36, 44, seed)).permute(2, 0, 1).float() for seed in (1, 2)])
    with Stylizer(ckpt, engine="torch-fp32") as stylizer:
        batch = stylizer(images)
        singles = torch.stack([stylizer(image) for image in images])
    assert batch.shape == (2, 3, 36, 44)
    torch.testing.assert_close(batch, singles, atol=1e-3, rtol=0)


def test_strength_zero_returns_the_photo_and_size_resizes(model_and_ckpt):
    _, ckpt = model_and_ckpt
    photo = smooth_image(40, 60, seed=3)
    with Stylizer(ckpt, engine="torch-fp32") as stylizer:
        np.testing.assert_array_equal(stylizer(photo, strength=0.0), photo)
        assert stylizer(photo, size=30).shape == (20, 30, 3)


def test_modes_are_converted_as_files_are(model_and_ckpt):
    """Grey becomes RGB with equal channels; transparent pixels are white; EXIF orientation is applied."""
    _, ckpt = model_and_ckpt
    grey = smooth_image(40, 48, seed=4)[..., 0]
    white = np.full((40, 48, 3), 255, np.uint8)
    rgba = np.dstack([smooth_image(40, 48, seed=5), np.zeros((40, 48), np.uint8)])
    raw = Image.fromarray(smooth_image(40, 56, seed=6))
    exif = raw.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    raw.save(buf, format="JPEG", exif=exif, quality=95)
    buf.seek(0)
    with Stylizer(ckpt, engine="torch-fp32") as stylizer:
        np.testing.assert_array_equal(stylizer(grey), stylizer(np.repeat(grey[..., None], 3, axis=2)))
        np.testing.assert_array_equal(stylizer(rgba), stylizer(white))
        rotated = stylizer(Image.open(buf))
        buf.seek(0)
        upright = Image.fromarray(np.rot90(np.asarray(Image.open(buf)), k=-1))  # clockwise, no EXIF
        assert rotated.size == (40, 56)
        np.testing.assert_array_equal(np.asarray(rotated), np.asarray(stylizer(upright)))


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((32, 32, 3), np.float64), r"numpy image of shape \(32, 32, 3\) and dtype float64: expected uint8"),
    (np.zeros((32, 32, 2), np.uint8), r"numpy image of shape \(32, 32, 2\)"),
    (torch.zeros(2, 32, 32, dtype=torch.uint8), r"tensor image of shape \(2, 32, 32\) and dtype torch.uint8: "
                                                r"expected \(C, H, W\) with C 1, 3 or 4"),
    (torch.zeros(4, 32, 32), r"tensor image of shape \(4, 32, 32\)"),
    ([[0, 1], [2, 3]], r"cannot stylize a builtins.list: pass a PIL image"),
    (np.zeros((0, 40, 3), np.uint8), r"is 40x0: it has no pixels to stylize"),
    (torch.zeros(1, 3, 0, 8), r"tensor image of shape \(1, 3, 0, 8\) is empty"),
    (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), r"tensor image of shape \(0, 3, 8, 8\) is empty"),
    (torch.full((3, 20, 20), float("nan")), r"tensor image of shape \(3, 20, 20\) holds NaN or infinite values"),
    ("photo.jpg", r"cannot stylize a builtins.str: .* for a file, pass Image.open\(path\)"),
])
def test_bad_images_are_refused_with_what_was_given_and_what_is_expected(model_and_ckpt, image, message):
    _, ckpt = model_and_ckpt
    with Stylizer(ckpt, engine="torch-fp32") as stylizer, pytest.raises(StylexportError, match=message):
        stylizer(image)


def test_calls_and_options_a_stylizer_cannot_run_are_refused_in_one_line(model_and_ckpt, caplog):
    _, ckpt = model_and_ckpt
    with pytest.raises(StylexportError, match=r"--tile 18: a tile must be a multiple of 4 px and at least 16; try "
                                              r"--tile 20"):
        Stylizer(ckpt, tile=18)
    with pytest.raises(StylexportError, match=r"--tile-margin 6: .*; try --tile-margin 8"):
        Stylizer(ckpt, tile=32, tile_margin=6)
    stylizer = Stylizer(ckpt, engine="torch-fp32")
    photo = smooth_image(24, 30)
    for size in (10, 0, 100.5):
        with pytest.raises(StylexportError, match=f"size {size}: the longer side must be a whole number of pixels, "
                                                  "at least 16"):
            stylizer(photo, size=size)
    assert stylizer(photo, size=16).shape == (13, 16, 3)
    with caplog.at_level("WARNING"):
        dark = stylizer(torch.from_numpy(photo).permute(2, 0, 1).float() / 255)
    assert dark.shape == (3, 24, 30)
    assert "values lie in [0, 1], but Stylizer takes RGB in [0, 255]" in caplog.text and "multiply it by 255" in \
        caplog.text
    stylizer.close()
    with pytest.raises(StylexportError, match=r"torch-fp32 was closed \(close\(\), or the end of its `with` block\)"):
        stylizer(photo)


def test_images_smaller_than_the_network_takes_are_padded_not_refused(tmp_path, make_image):
    """The size policy (Runner.infer_any_size) runs any image of a pixel or more: an icon, a thin strip, a single
    pixel (files under 16 px were refused). Python apps and the CLI give the same pixels, at the input's size."""
    from stylexport.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "padded.safetensors", random_net(head_gain=20.0, edge_pad=20))  # sides >= 24
    with Stylizer(ckpt, engine="torch-fp32") as stylizer:
        for h, w in ((1, 1), (3, 40), (10, 10)):
            photo = make_image(f"p{h}x{w}.png", h=h, w=w)
            out = tmp_path / f"out{h}x{w}.png"
            result = runner.invoke(app, ["stylize", str(photo), "-m", str(ckpt), "-o", str(out), "--backend",
                                         "torch-fp32"])
            assert result.exit_code == 0, result.output
            picture = stylizer(Image.open(photo))
            assert picture.size == (w, h) == Image.open(out).size
            np.testing.assert_array_equal(np.asarray(picture), np.asarray(Image.open(out)))


def test_tiles_match_the_whole_image_and_need_a_checkpoint_on_torch(tmp_path, model_and_ckpt):
    from stylexport.export.onnx import save_onnx, torch_to_onnx_proto

    model, ckpt = model_and_ckpt
    photo = torch.from_numpy(smooth_image(72, 88, seed=7)).permute(2, 0, 1).float()
    with Stylizer(ckpt, tile=32) as tiled, Stylizer(ckpt, engine="torch-fp32") as whole:
        assert tiled.engine == "torch-fp32"
        torch.testing.assert_close(tiled(photo), whole(photo), atol=0.01, rtol=0)
    onnx_path = save_onnx(torch_to_onnx_proto(model), tmp_path / "m.onnx")
    with pytest.raises(StylexportError, match="--tile needs a checkpoint"):
        Stylizer(onnx_path, tile=32)
    with pytest.raises(StylexportError, match="not on ort-cpu; leave out --backend"):
        Stylizer(ckpt, engine="ort-cpu", tile=32)


def test_with_no_model_the_default_style_runs(tmp_path, monkeypatch, random_model, make_image):
    from stylexport.checkpoint import save_checkpoint

    monkeypatch.setenv(STYLES_ENV, str(tmp_path / "zoo"))
    with pytest.raises(StylexportError, match="no style models are installed"):
        Stylizer()
    run = save_checkpoint(tmp_path / "model.safetensors", random_model, {"style_name": "painting"})
    ship_style(run, DEFAULT_STYLE, make_image("painting.png"))
    with Stylizer(engine="torch-fp32") as default, Stylizer(style=DEFAULT_STYLE, engine="torch-fp32") as named:
        assert default.model.name == f"{DEFAULT_STYLE}.safetensors"
        photo = smooth_image(32, 40)
        np.testing.assert_array_equal(default(photo), named(photo))


def test_importing_stylexport_does_not_import_torch():
    code = "import sys, stylexport; print('torch' in sys.modules); stylexport.Stylizer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
    import stylexport

    with pytest.raises(AttributeError, match="has no attribute 'Stylise'"):
        stylexport.Stylise  # noqa: B018


@pytest.mark.parametrize("model", ["waves.xml", "waves.int8.xml"])
def test_one_stylizer_serves_many_threads(openvino_irs, model):
    """A web service shares one Stylizer between its worker threads: each call must get its own image back
    (an OpenVINO infer request, like most engine sessions, runs one inference at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    images = [smooth_image(32 + 8 * (i % 3), 48 + 8 * (i % 4), seed=i) for i in range(12)]
    with Stylizer(openvino_irs / model) as stylizer:
        expected = [stylizer(image) for image in images]
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(stylizer, images * 2))
    for i, result in enumerate(results):
        assert np.array_equal(result, expected[i % len(images)]), f"call {i} got another call's pixels"
