import torch

from stylexport.gatys import GatysConfig, stylize_gatys
from stylexport.losses import LossConfig

from .conftest import smooth_image


def _pair():
    c = torch.from_numpy(smooth_image(64, 64, 1)).permute(2, 0, 1).float()[None].contiguous()
    s = torch.from_numpy(smooth_image(64, 64, 2)).permute(2, 0, 1).float()[None].contiguous()
    return c, s


def test_lbfgs_lowers_total_loss(vgg):
    c, s = _pair()
    before = c.clone()
    result = stylize_gatys(c, s, vgg, GatysConfig(iterations=15, loss=LossConfig(style_weight=1e5)))
    assert result.history[-1]["total"] < 0.5 * result.history[0]["total"]
    assert result.losses["total"] < result.history[0]["total"]
    assert torch.equal(c, before)
    assert result.image.shape == c.shape and 0 <= result.image.min() and result.image.max() <= 255


def test_adam_from_noise_lowers_total_loss(vgg):
    c, s = _pair()
    result = stylize_gatys(c, s, vgg, GatysConfig(iterations=10, optimizer="adam", init="noise", seed=1))
    assert result.losses["total"] < result.history[0]["total"]
