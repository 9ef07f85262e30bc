import pytest
import torch

from stylexport.model import TransformerNet, conv_macs_per_pixel


@pytest.mark.parametrize("h,w", [(37, 53), (16, 16), (17, 31), (64, 48), (250, 18)])
def test_output_has_input_size_for_any_size(random_model, h, w):
    x = torch.rand(2, 3, h, w) * 255
    y = random_model(x)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 255


def test_clamp_false_returns_raw_output(random_model):
    with torch.no_grad():
        random_model.head.bias.fill_(400.0)  # push outputs above 255
    x = torch.rand(1, 3, 32, 32) * 255
    assert random_model(x, clamp=False).max() > 255
    assert random_model(x).max() == 255


def test_padding_matches_unpadded_interior():
    # At a multiple of 4 no padding happens: the module is then the plain network.
    model = TransformerNet().eval()
    x = torch.rand(1, 3, 32, 40) * 255
    y = model(x, clamp=False)
    z = model.head(model.decoder(model.residuals(model.encoder(x))))
    torch.testing.assert_close(y, z)


def test_flop_count_from_layers_is_307584_per_pixel():
    # Issue numbers: conv1 7,776; conv2 4,608; conv3 4,608; residual 92,160; upsample 18,432 x 2; last 7,776.
    expected_macs = 7776 + 4608 + 4608 + 92160 + 18432 + 18432 + 7776
    assert conv_macs_per_pixel(TransformerNet()) == expected_macs == 153792
    assert 2 * expected_macs == 307584
