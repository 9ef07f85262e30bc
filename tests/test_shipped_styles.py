"""The style models that ship inside the package (stylexport/styles/): complete, described, and really stylizing.

These run on the installed package itself (no STYLEXPORT_STYLES_DIR), as a new user gets it."""

import math

import pytest
import torch

from stylexport.checkpoint import load_checkpoint
from stylexport.gatys import evaluate, style_targets
from stylexport.image import read_image, resize_max_side, sample_paths
from stylexport.losses import LossConfig
from stylexport.styles import DEFAULT_STYLE, STYLES_ENV, THUMBNAIL_SIDE, list_styles

from .conftest import VGG_SPEC, needs_offline_vgg


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.delenv(STYLES_ENV, raising=False)
    return list_styles()


def test_the_default_style_ships_and_every_style_says_what_made_it(shipped):
    assert DEFAULT_STYLE in [s.name for s in shipped]  # stylize and video with neither --model nor --style
    for style in shipped:
        meta = style.metadata
        assert style.problem is None, style.problem
        assert meta["weights_dtype"] == "float16" and style.model.stat().st_size < 4e6  # the package stays small
        assert "public domain" in meta["painting_license"] and meta["painting_notes"]  # provenance, from MANIFEST
        assert max(read_image(style.thumbnail).shape[1:]) == THUMBNAIL_SIDE
        assert meta["steps_reached"] == meta["step"] > 0 and meta["calls"] and meta["calls"][0]["from_step"] == 0
        assert meta["images_seen"] >= meta["step"] * meta["training"]["batch_size"]
        assert all(math.isfinite(v) for v in meta["final_losses"].values())
        summary = meta["quality"]["summary"]
        assert summary["feed_forward_mean_total"] > 0 and meta["quality"]["photos"] >= 1


def test_a_fine_tuned_style_keeps_its_parent_and_runs_with_the_pad_it_trained_with(shipped):
    """A style shipped from a fine-tune (``train --init``) says what it started from: the parent's record, whose
    sha256 is the init its training config names, with the parent's own steps and calls. Its
    network pads by the edge_pad it was trained with (or stylize would run it differently from training), and
    the steps and crops it reports are the fine-tune's own, not the parent's plus its own."""
    tuned = [s for s in shipped if "fine_tuned_from" in s.metadata]
    assert tuned, "no shipped style is a fine-tune; this test guards the ones that are (docs/zoo.md)"
    for style in shipped:
        meta, training = style.metadata, style.metadata["training"]
        network = load_checkpoint(style.model).model
        assert network.edge_pad == meta.get("edge_pad", 0) == (training.get("edge_pad") or 0), style.name
        parent = meta.get("fine_tuned_from")
        if parent is None:
            assert not training.get("init_sha256"), style.name  # trained from scratch: no init to name
            continue
        assert training["init_sha256"] == parent["sha256"], style.name
        assert parent["step"] == parent["steps_reached"] > 0 and parent["calls"][0]["from_step"] == 0, style.name
        assert meta["images_seen"] == meta["step"] * training["batch_size"], style.name  # its own steps only
        assert meta["style_name"] == parent["style_name"] == style.name


@needs_offline_vgg
def test_every_shipped_style_moves_a_photo_toward_its_painting_and_keeps_the_photo(shipped):
    """On the bundled photo (not a training photo), with the loss the style was trained on, against its
    painting's thumbnail: the output's style loss is under half the photo's own (the painting's textures and
    colours arrived), and its content loss is under half the painting's (the photo is still there). An
    untrained network, or one that returns its input, fails one of the two."""
    from stylexport.vgg import load_vgg

    vgg = load_vgg(VGG_SPEC, torch.device("cpu"))
    photo = resize_max_side(read_image(sample_paths()[0]), 256)[None]
    for style in shipped:
        loss = LossConfig(**style.metadata["loss"])
        painting = read_image(style.thumbnail)[None]
        targets = style_targets(vgg, painting, loss.style_layers)
        with torch.no_grad():
            out = load_checkpoint(style.model).model.float().eval()(photo).clamp(0, 255)
            content = vgg(photo, (loss.content_layer,))[loss.content_layer]
            terms = {name: evaluate(vgg, image, content, targets, loss).as_floats()
                     for name, image in (("out", out), ("photo", photo),
                                         ("painting", torch.nn.functional.interpolate(painting, photo.shape[-2:])))}
        assert terms["out"]["style"] < 0.5 * terms["photo"]["style"], (style.name, terms)
        assert terms["out"]["content"] < 0.5 * terms["painting"]["content"], (style.name, terms)
