"""Tiled stylization with instance-norm statistics shared across tiles (stylexport/tiles.py)."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stylexport.cli import app
from stylexport.errors import StylexportError
from stylexport.image import read_image, sample_paths
from stylexport.tiles import stylize_tiled

from .conftest import random_net, smooth_image

runner = CliRunner()


def photo(h, w, seed=0):
    return torch.from_numpy(smooth_image(h, w, seed)).permute(2, 0, 1).float()


@pytest.mark.parametrize(("tile", "margin"), [(48, 64), (64, 64)])
def test_tiled_stylization_matches_untiled(random_model, tile, margin):
    x = read_image(sample_paths()[0])[None][..., :101, :157]
    with torch.no_grad():
        whole = random_model(x)
    tiled = stylize_tiled(random_model, x, tile=tile, margin=margin)
    assert tiled.shape == whole.shape
    # Stated tolerance: 0.01 levels at every pixel (float32 summation order), with seams included.
    assert float((tiled - whole).abs().max()) < 0.01


def test_a_sliver_of_a_tile_at_the_end_runs_with_context_from_before_it():
    """36x52 in tiles of 16 leaves 4 px cores at the bottom and right: with --tile-margin 0 those tiles
    were 4 px, narrower than the network's 9x9 reflection pad (a RuntimeError and a traceback). They now
    reach back to 16 px of the image before them for context."""
    model = random_net(bias=0.3, head_gain=20.0)  # a visible output range
    x = photo(36, 52)
    with torch.no_grad():
        whole = model(x[None])
    tiled = stylize_tiled(model, x, tile=16, margin=0)
    assert tiled.shape == whole.shape == (1, 3, 36, 52)
    # Margin 0 leaves seams everywhere (each core sees its tile's border); the slivers, which see 12 px of
    # real image before them, are no further from the untiled output than the full 16 px tiles are.
    def error(region):
        return float((tiled[region] - whole[region]).abs().mean())

    full = error(np.s_[..., :32, :48])
    assert error(np.s_[..., 32:, :]) <= 1.2 * full and error(np.s_[..., :, 48:]) <= 1.2 * full


def test_per_tile_statistics_would_show_seams(random_model):
    """The reason for shared statistics: stylizing tiles independently differs visibly."""
    x = read_image(sample_paths()[0])[None][..., :96, :192]
    with torch.no_grad():
        whole = random_model(x)
        halves = torch.cat([random_model(x[..., :96]), random_model(x[..., 96:])], dim=-1)
    shared = stylize_tiled(random_model, x, tile=96)
    assert float((halves - whole).abs().mean()) > 10 * float((shared - whole).abs().mean())


def test_tile_arguments_are_checked(random_model):
    with pytest.raises(StylexportError, match="multiple of 4"):
        stylize_tiled(random_model, photo(64, 64), tile=50)


def test_tile_needs_a_checkpoint(tmp_path, make_image, random_model):
    from stylexport.export.onnx import save_onnx, torch_to_onnx_proto

    onnx_path = save_onnx(torch_to_onnx_proto(random_model), tmp_path / "m.onnx")
    result = runner.invoke(app, ["stylize", str(make_image()), "-m", str(onnx_path), "-o", str(tmp_path / "o.png"),
                                 "--tile", "64"])
    assert result.exit_code == 2 and "--tile needs a checkpoint" in result.output


def test_tiled_edge_pad_network_matches_untiled():
    """A network that pads its edges (model.py edge_pad) is padded once for the whole image, not per tile."""
    from .conftest import random_net

    model = random_net(edge_pad=32)
    x = read_image(sample_paths()[0])[None][..., :101, :157]
    with torch.no_grad():
        whole = model(x)
    tiled = stylize_tiled(model, x, tile=64, margin=64)
    assert tiled.shape == whole.shape
    assert float((tiled - whole).abs().max()) < 0.01
    assert model.edge_pad == 32  # the caller's network is left as it was
    # a strip narrower than the network's 36 px is reflect-padded up to it, as the untiled policy does
    strip = x[..., :30, :]
    with torch.no_grad():
        padded_whole = model(torch.nn.functional.pad(strip, (0, 0, 3, 3), mode="reflect"))[..., 3:33, :]
    assert float((stylize_tiled(model, strip, tile=64) - padded_whole).abs().max()) < 0.01
