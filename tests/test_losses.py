import math

import pytest
import torch

from stylexport.losses import (
    LossConfig,
    content_loss,
    gram_matrix,
    perceptual_loss,
    style_loss,
    total_variation,
)


def test_gram_matrix_by_hand():
    # F is 2 channels x 2 positions: [[1, 2], [3, 4]]; F Fᵀ = [[5, 11], [11, 25]], divided by N*M = 4.
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)
    expected = torch.tensor([[[1.25, 2.75], [2.75, 6.25]]])
    torch.testing.assert_close(gram_matrix(f), expected)


def test_gram_is_float32_for_half_features():
    f = torch.ones(1, 3, 4, 4, dtype=torch.float16) * 300  # 300² = 90000 overflows float16
    g = gram_matrix(f)
    assert g.dtype == torch.float32
    torch.testing.assert_close(g, torch.full((1, 3, 3), 90000.0 / 3))


def test_total_variation_by_hand():
    img = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).reshape(1, 1, 2, 2)
    # Only pixel (0,0) has both neighbours: dx = 1, dy = 2, dx² + dy² = 5.
    assert total_variation(img, beta=2.0).item() == pytest.approx(5.0)
    assert total_variation(img, beta=1.0).item() == pytest.approx(math.sqrt(5.0), rel=1e-6)


def test_total_variation_is_per_image_mean_over_batch():
    img = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).reshape(1, 1, 2, 2)
    assert total_variation(torch.cat([img, torch.zeros_like(img)])).item() == pytest.approx(2.5)


def test_losses_zero_for_identical_inputs_and_inputs_untouched():
    torch.manual_seed(0)
    feats = {name: torch.rand(2, 8, 5, 6) for name in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")}
    before = {k: v.clone() for k, v in feats.items()}
    grams = {k: gram_matrix(v) for k, v in feats.items()}
    assert content_loss(feats["relu2_2"], feats["relu2_2"]).item() == 0.0
    assert style_loss(grams, grams, tuple(grams), (1.0,) * 4).item() == 0.0
    flat = torch.full((1, 3, 8, 8), 17.0)
    cfg = LossConfig()
    terms = perceptual_loss(flat, feats, feats["relu2_2"], grams, cfg)
    assert terms.total.item() == 0.0
    for k in feats:
        assert torch.equal(feats[k], before[k])
    assert torch.equal(flat, torch.full((1, 3, 8, 8), 17.0))


def test_perceptual_loss_weights_terms():
    torch.manual_seed(1)
    a = {n: torch.rand(1, 4, 3, 3) for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")}
    b = {n: torch.rand(1, 4, 3, 3) for n in a}
    img = torch.rand(1, 3, 6, 6) * 255
    grams = {n: gram_matrix(v) for n, v in b.items()}
    one = perceptual_loss(img, a, b["relu2_2"], grams, LossConfig(content_weight=1, style_weight=1, tv_weight=1))
    two = perceptual_loss(img, a, b["relu2_2"], grams, LossConfig(content_weight=2, style_weight=3, tv_weight=5))
    assert two.content.item() == pytest.approx(2 * one.content.item())
    assert two.style.item() == pytest.approx(3 * one.style.item())
    assert two.tv.item() == pytest.approx(5 * one.tv.item())
    assert two.total.item() == pytest.approx(two.content.item() + two.style.item() + two.tv.item())


@pytest.mark.parametrize("field, value, words", [
    ("content_weight", -1.0, "--content-weight -1: loss weights must be finite and 0 or more"),
    ("style_weight", float("nan"), "--style-weight nan: loss weights"),
    ("tv_weight", -1e-7, "--tv-weight -1e-07: loss weights"),
    ("style_layer_weights", (1.0, -1.0, 1.0, 1.0), r"--style-layer-weights \(weight 2\) -1: loss weights"),
    ("tv_beta", 0.0, "--tv-beta 0: the total-variation exponent must be above 0"),
])
def test_negative_or_non_finite_weights_are_refused(field, value, words):
    """A negative weight maximises its term (gatys and train ran with one, to nonsense, without a word)."""
    from stylexport.errors import StylexportError

    with pytest.raises(StylexportError, match=words):
        LossConfig(**{field: value})
    zero = LossConfig(content_weight=0.0, style_weight=0.0, tv_weight=0.0, style_layer_weights=(0.0,) * 4)
    assert zero.layer_weights() == (0.0,) * 4  # 0 switches a term off: allowed
