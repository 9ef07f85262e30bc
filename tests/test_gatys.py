import pytest
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


def test_coarse_to_fine_stages_end_at_full_size_and_count_every_iteration(vgg):
    c, s = _pair()
    seen = []
    cfg = GatysConfig(iterations=(4, 3), scales=(0.5, 1.0), loss=LossConfig(style_weight=1e5))
    assert cfg.stages() == [(0.5, 4), (1.0, 3)] and cfg.total_iterations == 7
    result = stylize_gatys(c, s, vgg, cfg, progress=lambda step, losses: seen.append(step))
    assert result.image.shape == c.shape
    assert max(seen) == 7 and seen == sorted(seen)  # progress runs over both stages, never backwards
    # the fine stage starts from the coarse result, not from the photo: its first loss is below the photo's
    one_stage = stylize_gatys(c, s, vgg, GatysConfig(iterations=1, loss=LossConfig(style_weight=1e5)))
    fine_start = result.history[5]  # coarse stage: start + 4 iterations; then the fine stage's start
    assert fine_start["style"] < 0.5 * one_stage.history[0]["style"]


def test_one_iteration_count_applies_to_every_scale():
    assert GatysConfig(iterations=5, scales=(0.25, 0.5, 1.0)).stages() == [(0.25, 5), (0.5, 5), (1.0, 5)]


@pytest.mark.parametrize("kwargs, match", [
    ({"scales": (0.5,)}, "rise to 1.0"),
    ({"scales": (1.0, 0.5)}, "rise to 1.0"),
    ({"scales": (0.0, 1.0)}, "rise to 1.0"),
    ({"scales": (0.5, 1.0), "iterations": (1, 2, 3)}, "one per scale"),
    ({"iterations": 0}, "iterations must be >= 1"),
])
def test_bad_stages_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GatysConfig(**kwargs)


def test_default_layer_weights_keep_relu1_2_from_dominating(vgg):
    """The cause of the main job's mesh: with equal weights the relu1_2 Gram term of the bundled pair is
    100-300x the relu4_3 term; the gatys defaults bring every layer within 20x of the largest."""
    from stylexport.cli import GATYS_LAYER_WEIGHTS
    from stylexport.image import read_image, resize_max_side, sample_paths
    from stylexport.losses import STYLE_LAYERS, gram_matrix

    photo, painting = (resize_max_side(read_image(p), 256)[None] for p in sample_paths())
    fp, fs = vgg(photo, STYLE_LAYERS), vgg(painting, STYLE_LAYERS)
    terms = [float(((gram_matrix(fp[k]) - gram_matrix(fs[k])) ** 2).mean()) for k in STYLE_LAYERS]
    assert terms[0] > 50 * terms[-1]  # equal weights: relu1_2 dominates
    weighted = [w * t for w, t in zip((float(v) for v in GATYS_LAYER_WEIGHTS.split(",")), terms, strict=True)]
    assert max(weighted) < 20 * min(weighted)
