"""Colour preservation, strength, flicker and stabilization (stylexport/controls.py)."""

import pytest
import torch
from typer.testing import CliRunner

from stylexport.cli import app
from stylexport.controls import Stabilizer, apply_controls, blend, flicker, preserve_colors, rgb_to_ycbcr, ycbcr_to_rgb
from stylexport.errors import StylexportError
from stylexport.image import read_image
from stylexport.runtime import TorchRunner

from .conftest import smooth_image

runner = CliRunner()


def photo(h, w, seed=0):
    return torch.from_numpy(smooth_image(h, w, seed)).permute(2, 0, 1).float()


def test_ycbcr_matches_the_jpeg_formulas_and_round_trips():
    rgb = torch.tensor([255.0, 0.0, 0.0])[:, None, None]  # pure red
    y, cb, cr = rgb_to_ycbcr(rgb)[:, 0, 0].tolist()
    assert y == pytest.approx(0.299 * 255, abs=1e-3)
    assert cb == pytest.approx(128 - 0.168736 * 255, abs=1e-3)
    assert cr == pytest.approx(128 + 0.5 * 255, abs=1e-3)
    x = photo(20, 30)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-3)


def test_preserve_colors_keeps_the_inputs_chroma_and_the_stylized_luma():
    content, stylized = photo(32, 40, seed=1) * 0.5 + 64, photo(32, 40, seed=2) * 0.5 + 64  # mid-range colours
    out = preserve_colors(stylized, content)
    inside = ((out > 1) & (out < 254)).all(dim=0)  # where nothing was clipped
    assert inside.float().mean() > 0.9
    got, want_c, want_s = rgb_to_ycbcr(out), rgb_to_ycbcr(content), rgb_to_ycbcr(stylized)
    assert torch.allclose(got[1:, inside], want_c[1:, inside], atol=1e-2)
    assert torch.allclose(got[0, inside], want_s[0, inside], atol=1e-2)


def test_strength_zero_returns_the_input_and_one_the_stylized():
    content, stylized = photo(16, 16, 1), photo(16, 16, 2)
    assert torch.equal(blend(stylized, content, 0.0), content)
    assert torch.equal(blend(stylized, content, 1.0), stylized)
    assert torch.allclose(blend(stylized, content, 0.25), 0.75 * content + 0.25 * stylized)
    assert torch.equal(apply_controls(stylized, content, strength=0.0, colors=True), content)
    with pytest.raises(StylexportError, match="outside 0..1"):
        blend(stylized, content, 1.5)


def test_flicker_is_zero_for_a_static_clip_and_positive_for_a_noisy_output():
    frames = [photo(24, 24)] * 5
    assert flicker(frames, frames) == 0.0
    assert flicker([f * 0.5 for f in frames], frames) == 0.0  # a static output of a static input
    noisy = [f + torch.randn_like(f) * 10 for f in frames]
    assert flicker(noisy, frames) > 5
    # Output change that only follows the input's own change is not flicker.
    moving = [photo(24, 24, seed=s) for s in range(5)]
    assert flicker(moving, moving) == 0.0


def test_stabilizer_lowers_flicker_on_a_still_scene_and_follows_motion():
    torch.manual_seed(0)
    scene = photo(24, 24)
    inputs = [scene + torch.randn_like(scene) for _ in range(12)]  # a still scene with sensor noise
    outputs = [scene.flip(-1) + torch.randn_like(scene) * 12 for _ in range(12)]  # a flickering network
    stab = Stabilizer(0.7)
    smoothed = [stab(o, i) for o, i in zip(outputs, inputs, strict=True)]
    assert flicker(smoothed, inputs) < 0.6 * flicker(outputs, inputs)
    # A scene cut: the new frame wins almost entirely.
    cut = Stabilizer(0.7)
    cut(photo(24, 24, seed=1), photo(24, 24, seed=1))
    after = cut(photo(24, 24, seed=2) * 0 + 200, photo(24, 24, seed=2) * 0 + 255)
    assert float((after - 200).abs().mean()) < 5
    with pytest.raises(StylexportError, match="--stabilize"):
        Stabilizer(1.0)


def test_stylize_cli_strength_colors_and_tile(random_model, tmp_path, make_image):
    from stylexport.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.safetensors", random_model, {"style_name": "m"})
    src = make_image(h=70, w=90)
    out0 = tmp_path / "zero.png"
    result = runner.invoke(app, ["stylize", str(src), "-m", str(ckpt), "-o", str(out0), "--strength", "0"])
    assert result.exit_code == 0, result.output
    assert torch.equal(read_image(out0), read_image(src))  # strength 0: the photo itself
    tiled, whole = tmp_path / "tiled.png", tmp_path / "whole.png"
    for target, extra in ((tiled, ["--tile", "32"]), (whole, [])):
        result = runner.invoke(app, ["stylize", str(src), "-m", str(ckpt), "-o", str(target), "--preserve-colors",
                                     *extra])
        assert result.exit_code == 0, result.output
    assert float((read_image(tiled) - read_image(whole)).abs().max()) <= 1  # rounding only


def test_torch_runner_and_controls_agree_across_backends(random_model, tmp_path):
    """Controls run after the backend, so any two backends with equal outputs give equal results."""
    from stylexport.export.onnx import save_onnx, torch_to_onnx_proto
    from stylexport.runtime.onnxruntime_backend import OrtRunner

    x = photo(40, 52)[None]
    path = save_onnx(torch_to_onnx_proto(random_model), tmp_path / "m.onnx")
    a = apply_controls(TorchRunner(random_model).infer(x), x, strength=0.6, colors=True)
    b = apply_controls(OrtRunner(path, provider="cpu").infer(x), x, strength=0.6, colors=True)
    assert float((a - b).abs().max()) < 0.05
