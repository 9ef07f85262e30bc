import json

import pytest
import torch

from stylexport.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from stylexport.errors import StylexportError

from .examples_net import ExamplesTransformerNet


def test_round_trip_with_metadata(tmp_path, random_model):
    path = save_checkpoint(tmp_path / "m.safetensors", random_model, {"style_name": "waves", "step": 7})
    loaded = load_checkpoint(path)
    assert loaded.metadata["style_name"] == "waves" and loaded.metadata["step"] == 7
    assert loaded.metadata["architecture"] == "transformer-net/1"
    x = torch.rand(1, 3, 40, 36) * 255
    torch.testing.assert_close(loaded.model(x), random_model(x))
    assert len(loaded.sha256) == 64


def test_half_checkpoint_is_smaller_and_close(tmp_path, random_model):
    full = save_checkpoint(tmp_path / "f.safetensors", random_model)
    half = save_checkpoint(tmp_path / "h.safetensors", random_model, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    x = torch.rand(1, 3, 32, 32) * 255
    assert (load_checkpoint(half).model(x) - random_model(x)).abs().max() < 2.0


@pytest.mark.parametrize("variant", ["plain", "running_stats", "module_prefix"])
def test_pytorch_examples_state_dict_gives_same_output(tmp_path, variant):
    torch.manual_seed(3)
    theirs = ExamplesTransformerNet().eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    state = theirs.state_dict()
    if variant == "running_stats":  # models saved with old torch carry InstanceNorm buffers
        for k in [k for k in state if k.startswith("in") and k.endswith(".weight")]:
            c = state[k].shape[0]
            state[k.replace("weight", "running_mean")] = torch.zeros(c)
            state[k.replace("weight", "running_var")] = torch.ones(c)
    if variant == "module_prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / "udnie.pth"
    torch.save(state, path)
    loaded = load_checkpoint(path)
    assert loaded.style_name == "udnie"
    x = torch.rand(1, 3, 64, 48) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), theirs(x).clamp(0, 255), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("key", ["model", "model_state_dict", "state_dict"])
def test_weights_saved_beside_an_optimizer_are_found(tmp_path, random_model, key):
    """Training scripts save {"model": weights, "optimizer": ..., "epoch": ...}: the weights are taken from it."""
    saved = {key: random_model.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "epoch": 3}
    torch.save(saved, tmp_path / "ckpt.pth")
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(tmp_path / "ckpt.pth").model(x), random_model(x))


def test_files_without_weights_say_what_they_hold(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"optimizer": {"state": {}, "param_groups": []}, "scaler": None, "step": 120, "rng": {}},
               run / "state.pt")
    with pytest.raises(StylexportError, match=r"state.pt is a training run's resumable state \(optimizer and step "
                                              r"120\), not a model: use the model.safetensors beside it "
                                              r"\(stylexport train --resume .*run continues the run\)"):
        load_checkpoint(run / "state.pt")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(StylexportError, match=r"holds a dict of epoch, lr, with no state dict of tensors in it"):
        load_checkpoint(tmp_path / "meta.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(StylexportError, match=r"holds a list, not a state dict of tensors"):
        load_checkpoint(tmp_path / "list.pth")


def test_transposed_conv_variant_is_refused(tmp_path):
    state = {"conv1.conv2d.weight": torch.zeros(32, 3, 9, 9), "deconv1.weight": torch.zeros(128, 64, 3, 3)}
    torch.save(state, tmp_path / "old.pth")
    with pytest.raises(StylexportError, match="transposed-convolution variant"):
        load_checkpoint(tmp_path / "old.pth")


def test_unknown_architecture_is_refused(tmp_path, random_model):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in random_model.state_dict().items()}, tmp_path / "x.safetensors",
              metadata={"stylexport": json.dumps({"architecture": "transformer-net/99"})})
    with pytest.raises(StylexportError, match="architecture 'transformer-net/99'"):
        load_checkpoint(tmp_path / "x.safetensors")


def test_other_networks_and_bad_files_are_refused(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(StylexportError, match="not a TransformerNet"):
        load_checkpoint(tmp_path / "other.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(StylexportError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.safetensors")


def test_pickled_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('executed')",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(StylexportError, match="holds pickled Python objects.*can run code") as err:
        load_checkpoint(tmp_path / "evil.pth")
    assert "weights_only=False" not in str(err.value) and "trust" not in str(err.value)


def test_metadata_reader(tmp_path, random_model):
    path = save_checkpoint(tmp_path / "m.safetensors", random_model, {"style_sha256": "ab" * 32})
    assert read_metadata(path)["style_sha256"] == "ab" * 32


def test_edge_pad_travels_with_the_weights(tmp_path):
    from .conftest import random_net

    model = random_net(edge_pad=32)
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"style_name": "waves", "edge_pad": 0})
    assert read_metadata(path)["edge_pad"] == 32  # the model's own, not a caller's stale value
    loaded = load_checkpoint(path)
    assert loaded.model.edge_pad == 32 and loaded.model.min_side == 36
    x = torch.rand(1, 3, 40, 52) * 255
    torch.testing.assert_close(loaded.model(x), model(x))


def test_checkpoints_from_before_edge_pad_run_unpadded(tmp_path, random_model):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in random_model.state_dict().items()}, tmp_path / "old.safetensors",
              metadata={"stylexport": json.dumps({"architecture": "transformer-net/1", "style_name": "old"})})
    assert load_checkpoint(tmp_path / "old.safetensors").model.edge_pad == 0


@pytest.mark.parametrize("value", [-1, "32", 1.5, True, 257])
def test_a_damaged_edge_pad_is_refused(tmp_path, random_model, value):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in random_model.state_dict().items()}, tmp_path / "x.safetensors",
              metadata={"stylexport": json.dumps({"architecture": "transformer-net/1", "edge_pad": value})})
    with pytest.raises(StylexportError, match=rf"x.safetensors: edge_pad {value!r} is not a whole number of pixels "
                                              r"in 0..256; the file's metadata was edited or damaged"):
        load_checkpoint(tmp_path / "x.safetensors")
