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


@pytest.mark.parametrize("crop_with_pad", [False, True])
@pytest.mark.parametrize("h,w", [(36, 36), (40, 52), (52, 44)])
def test_edge_pad_runs_the_network_on_the_reflected_picture(h, w, crop_with_pad):
    """edge_pad 8 is the plain network on the input reflect-padded by 8 px, the 8 px cropped off the output
    (both crops: the slice, and the negative pad the AOTInductor export uses). At sizes that are multiples of 4,
    so the plain network adds no padding of its own (otherwise the network reflects once, by 8 plus the rest)."""
    torch.manual_seed(0)
    padded = TransformerNet(edge_pad=8).eval()
    padded.crop_with_pad = crop_with_pad
    plain = TransformerNet().eval()
    plain.load_state_dict(padded.state_dict())
    x = torch.rand(1, 3, h, w) * 255
    with torch.no_grad():
        expected = plain(torch.nn.functional.pad(x, (8, 8, 8, 8), mode="reflect"), clamp=False)[..., 8:-8, 8:-8]
        got = padded(x, clamp=False)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, plain(x, clamp=False))  # the pad changes the result: it is not a no-op


def test_edge_pad_sets_the_smallest_side():
    assert TransformerNet().min_side == 16
    assert TransformerNet(edge_pad=8).min_side == 16  # 8 + 4 <= 16: the contract's minimum still rules
    assert TransformerNet(edge_pad=32).min_side == 36  # reflection needs the pad (32 + up to 3) below the side
    for h, w in ((36, 37), (37, 53), (39, 38)):  # the smallest it claims runs; sides not multiples of 4 come back
        assert TransformerNet(edge_pad=32).eval()(torch.rand(1, 3, h, w) * 255).shape == (1, 3, h, w)
    with pytest.raises(ValueError, match="edge_pad must be an int >= 0, got -1"):
        TransformerNet(edge_pad=-1)
