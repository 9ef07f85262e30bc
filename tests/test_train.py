import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from stylexport.checkpoint import load_checkpoint
from stylexport.cli import app
from stylexport.errors import StylexportError
from stylexport.train import TrainConfig, train

from .conftest import smooth_image

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(smooth_image(72, 90, seed=10 + i)).save(d / ("sub" if i % 2 else ".") / f"p{i}.jpg")
    (d / "broken.jpg").write_bytes(b"this is not a jpeg")
    return d


@pytest.fixture
def style_path(tmp_path):
    p = tmp_path / "style.png"
    Image.fromarray(smooth_image(64, 64, seed=99)).save(p)
    return p


def cfg(style_path, data_dir, **kw):
    base = dict(style=str(style_path), data=str(data_dir), image_size=48, style_size=64, batch_size=2, steps=8,
                workers=0, checkpoint_every=4, preview_every=4, log_every=1, previews=0, vgg_weights="offline",
                loss=TrainConfig.__dataclass_fields__["loss"].default_factory())
    base.update(kw)
    return TrainConfig(**base)


def test_training_lowers_the_loss_and_skips_unreadable(tmp_path, vgg, style_path, data_dir):
    result = train(cfg(style_path, data_dir, steps=12, lr=1e-2), tmp_path / "run")
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    first = sum(h["total"] for h in history[:3]) / 3
    last = sum(h["total"] for h in history[-3:]) / 3
    assert last < first
    assert result.skipped_files == [str(data_dir / "broken.jpg")]
    for name in ("model.safetensors", "state.pt", "config.json", "loss.png"):
        assert (tmp_path / "run" / name).is_file()
    assert sorted(p.name for p in (tmp_path / "run" / "previews").iterdir()) == ["step_0000004.jpg",
                                                                                 "step_0000008.jpg",
                                                                                 "step_0000012.jpg"]


def test_resume_reaches_the_same_weights(tmp_path, vgg, style_path, data_dir, monkeypatch):
    straight = train(cfg(style_path, data_dir), tmp_path / "a")
    assert straight.steps == 8

    # The same run killed right after its step-4 checkpoint, then resumed.
    import stylexport.train as trainmod

    original = trainmod.save_checkpoint

    def die_after_first_checkpoint(path, model, meta, **kw):
        original(path, model, meta, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainmod, "save_checkpoint", die_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(style_path, data_dir), tmp_path / "b")
    monkeypatch.setattr(trainmod, "save_checkpoint", original)
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=True)["step"] == 4
    resumed = train(cfg(style_path, data_dir), tmp_path / "b", resume=True)
    assert resumed.steps == 8
    a = load_checkpoint(tmp_path / "a" / "model.safetensors").model.state_dict()
    b = load_checkpoint(tmp_path / "b" / "model.safetensors").model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    hist = [json.loads(x)["step"] for x in (tmp_path / "b" / "history.jsonl").read_text().splitlines()]
    assert hist == list(range(1, 9))


def test_run_folder_is_never_overwritten(tmp_path, style_path, data_dir):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    with pytest.raises(StylexportError, match="already exists; pass --resume"):
        train(cfg(style_path, data_dir), run)
    assert (run / "keep.txt").read_text() == "precious"


def test_resume_with_a_different_config_is_refused(tmp_path, vgg, style_path, data_dir):
    train(cfg(style_path, data_dir, steps=2, checkpoint_every=2), tmp_path / "run")
    with pytest.raises(StylexportError, match="cannot resume .*batch_size was 2, now 3"):
        train(cfg(style_path, data_dir, steps=4, batch_size=3), tmp_path / "run", resume=True)


def test_bad_data_and_style(tmp_path, style_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StylexportError, match="has no images"):
        train(cfg(style_path, empty), tmp_path / "r1")
    with pytest.raises(StylexportError, match="data folder not found"):
        train(cfg(style_path, tmp_path / "nope"), tmp_path / "r2")
    bad_style = tmp_path / "s.jpg"
    bad_style.write_bytes(b"")
    with pytest.raises(StylexportError, match="s.jpg"):
        train(cfg(bad_style, tmp_path), tmp_path / "r3")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r3").exists()


def test_cli_train_then_stylize_with_its_checkpoint(tmp_path, vgg, style_path, data_dir, make_image):
    run = tmp_path / "run"
    args = ["train", "--style", style_path, "--data", data_dir, "-o", run, "--steps", "2", "--image-size", "32",
            "--style-size", "48", "--batch-size", "2", "--workers", "0", "--vgg-weights", "offline",
            "--checkpoint-every", "2"]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable files" in result.output
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2 and "already exists" in result.stderr
    result = runner.invoke(app, ["train", "--resume", str(run), "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "history.jsonl").read_text().splitlines()[-1])["step"] == 3
    out = tmp_path / "styled.png"
    result = runner.invoke(app, ["stylize", str(make_image("x.png", 40, 44)), "-m", str(run / "model.safetensors"),
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "model.safetensors").metadata["step"] == 3


def test_sweep_writes_one_tile_per_setting(tmp_path, vgg, make_image):
    out = tmp_path / "sheet.png"
    result = runner.invoke(app, ["sweep", str(make_image("c.png", 32, 32)), str(make_image("s.png", 32, 32, seed=4)),
                                 "--style-weights", "1e4,1e5,1e6", "--tv-weights", "1e-7,1e-5", "--iterations", "2",
                                 "--size", "32", "-o", str(out), "--vgg-weights", "offline"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert [(r["style_weight"], r["tv_weight"]) for r in report] == [
        (1e4, 1e-7), (1e5, 1e-7), (1e6, 1e-7), (1e4, 1e-5), (1e5, 1e-5), (1e6, 1e-5)]
    from stylexport.image import read_image

    sheet = read_image(out)
    assert sheet.shape[-1] > 3 * 32 and sheet.shape[-2] > 2 * 32
    result = runner.invoke(app, ["sweep", "--style-weights", "a,b"])
    assert result.exit_code == 2 and "not a comma-separated list" in result.output
