import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from stylexport.checkpoint import load_checkpoint
from stylexport.cli import app
from stylexport.errors import StylexportError
from stylexport.train import TrainConfig, autocast_dtype, train

from .conftest import VGG_SPEC, one_line_error, smooth_image

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


def cli_train(style, data, run, steps, *extra):
    """`stylexport train` arguments for a tiny CLI run (32 px crops, batch 2, no workers)."""
    return [str(a) for a in ["train", "--style", style, "--data", data, "-o", run, "--steps", steps, "--image-size",
                             "32", "--style-size", "48", "--batch-size", "2", "--workers", "0", "--vgg-weights",
                             VGG_SPEC, *extra]]


def cfg(style_path, data_dir, **kw):
    base = dict(style=str(style_path), data=str(data_dir), image_size=48, style_size=64, batch_size=2, steps=8,
                workers=0, checkpoint_every=4, preview_every=4, log_every=1, previews=0, vgg_weights=VGG_SPEC,
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
    (path, why), = (line.split("\t") for line in (tmp_path / "run" / "skipped.tsv").read_text().splitlines())
    assert path == str(data_dir / "broken.jpg") and why.startswith(f"cannot read image {path}: ")
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
    # config.json records where each call trained, from which step: a run in chunks may move between machines
    calls = json.loads((tmp_path / "b" / "config.json").read_text())["calls"]
    assert [c["from_step"] for c in calls] == [0, 4]
    assert all(c["device"] == "cpu" and c["amp"] is None and c["processes"] == 1 and c["hardware"] for c in calls)
    assert len(json.loads((tmp_path / "a" / "config.json").read_text())["calls"]) == 1


def test_a_cpu_trains_in_channels_last_on_the_loss_curve_contiguous_training_follows(tmp_path, vgg, style_path,
                                                                                     data_dir):
    """Training put the network and its batches in channels_last on CUDA only; on a CPU with AMX, oneDNN's
    convolutions run faster in it (benchmarks/results/cpu-train-layout-*). It is the same arithmetic in another
    memory order: the same seeded run follows the same loss curve either way. (Not the same weights: a conv bias
    before instance norm has a zero gradient, and Adam turns its rounding noise into steps of the full rate.)"""
    train(cfg(style_path, data_dir, steps=4, device="cpu"), tmp_path / "nhwc")
    train(cfg(style_path, data_dir, steps=4, device="cpu", channels_last=False), tmp_path / "nchw")
    optimizer = torch.load(tmp_path / "nhwc" / "state.pt", weights_only=True)["optimizer"]
    moments = [s["exp_avg"] for s in optimizer["state"].values() if s["exp_avg"].dim() == 4]
    assert len(moments) == 16  # every convolution's weight (4 outside, 2 per residual block, 2 upsampling)
    assert all(m.is_contiguous(memory_format=torch.channels_last) and not m.is_contiguous() for m in moments)
    nhwc, nchw = ([json.loads(line)["total"] for line in (tmp_path / run / "history.jsonl").read_text().splitlines()]
                  for run in ("nhwc", "nchw"))
    assert nhwc[0] == pytest.approx(nchw[0], rel=1e-5)  # the same weights and batch: only the summation order
    assert nhwc == pytest.approx(nchw, rel=1e-3) and len(nhwc) == 4


def test_progress_counts_every_step_and_says_which_step_its_losses_are_from(tmp_path, vgg, style_path, data_dir):
    """Progress used to hear only of the steps it measured (every 10th), so a log line between two of them
    repeated the old step: training looked stuck. It now hears every step, with the losses labelled by the step
    they were measured at; the first step of each call (a resumed chunk too) is measured."""
    seen = []

    def report(info):
        seen.append((info.step, info.losses_step, info.losses["total"]))

    train(cfg(style_path, data_dir, steps=4, log_every=3), tmp_path / "run", progress=report)
    train(cfg(style_path, data_dir, steps=8, log_every=3), tmp_path / "run", resume=True, progress=report)
    assert [(step, at) for step, at, _ in seen] == [(1, 1), (2, 1), (3, 3), (4, 4),  # 1st, every 3rd, the last
                                                    (5, 5), (6, 6), (7, 6), (8, 8)]  # the resumed call's 1st
    history = {h["step"]: h["total"] for h in map(json.loads, (tmp_path / "run" / "history.jsonl").open())}
    assert sorted(history) == [1, 3, 4, 5, 6, 8]
    assert all(total == pytest.approx(history[at]) for _, at, total in seen)


def test_cli_progress_lines_label_losses_from_an_earlier_step(tmp_path, vgg, style_path, data_dir, monkeypatch):
    """In a log, a line between two measured steps counts the current step and says where its losses are from."""
    import stylexport.cli as cli

    monkeypatch.setattr(cli._Progress, "every", 0.0)  # a line on every update
    result = runner.invoke(app, cli_train(style_path, data_dir, tmp_path / "run", 4, "--log-every", "3"))
    assert result.exit_code == 0, result.output
    first = {}  # each step's first line (the heartbeat repeats it too: 'every' is 0 here)
    for line in result.stderr.splitlines():
        if line.startswith("train: ") and "/4 after" in line:
            first.setdefault(line.split(" after ")[0], line)
    assert list(first) == ["train: 1/4", "train: 2/4", "train: 3/4", "train: 4/4"]
    lines = list(first.values())
    assert [line.endswith(" (at step 1)") for line in lines] == [False, True, False, False]
    assert lines[1].split("; ")[1].split(" (at")[0] == lines[0].split("; ")[1]  # step 1's losses, repeated


def test_ship_style_records_what_made_the_model(tmp_path, vgg, style_path, data_dir, monkeypatch):
    """training/ship_style.py puts the recipe, the steps reached, the images seen call by call, where each call
    trained and the last logged losses into the shipped model's metadata (issue #20: a style says what made it)."""
    import subprocess
    import sys
    from pathlib import Path

    from stylexport.checkpoint import read_metadata

    run = tmp_path / "run"
    train(cfg(style_path, data_dir, steps=3, checkpoint_every=3, edge_pad=8), run)
    train(cfg(style_path, data_dir, steps=5, checkpoint_every=5, edge_pad=8), run, resume=True)
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    with (run / "history.jsonl").open("a") as f:  # a run still training logs past its last checkpoint
        f.write(json.dumps({"step": 6, "total": 1e9, "content": 1e9, "style": 1e9, "tv": 1e9}) + "\n")
    quality = tmp_path / "quality.json"
    quality.write_text(json.dumps({"size": 64, "photos": 2, "iterations": [1, 2], "rows": ["left out"],
                                   "summary": {"feed_forward_beats_gatys1": 2}}))
    script = Path(__file__).resolve().parents[1] / "training" / "ship_style.py"
    from_noise = tmp_path / "quality-noise.json"
    from_noise.write_text(json.dumps({"size": 64, "init": "noise", "photos": 2, "summary": {"gatys1_mean_total": 9}}))
    done = subprocess.run([sys.executable, str(script), str(run), "tiny", "--out", str(tmp_path / "zoo"),
                           "--quality", str(quality), "--quality", str(from_noise)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    meta = read_metadata(tmp_path / "zoo" / "tiny.safetensors")
    assert meta["steps_reached"] == 5 and meta["training"]["steps"] == 5 and meta["training"]["batch_size"] == 2
    assert meta["images_seen"] == 5 * 2 and [c["from_step"] for c in meta["calls"]] == [0, 3]
    assert meta["edge_pad"] == meta["training"]["edge_pad"] == 8  # the shipped network pads as it trained
    assert load_checkpoint(tmp_path / "zoo" / "tiny.safetensors").model.edge_pad == 8
    assert meta["final_losses"]["total"] == pytest.approx(sum(h["total"] for h in history) / len(history))
    assert meta["final_losses_over_steps"] == [1, 5]
    assert meta["quality"] == {"size": 64, "photos": 2, "iterations": [1, 2],
                               "summary": {"feed_forward_beats_gatys1": 2}}
    assert meta["quality_from_noise"] == {"size": 64, "init": "noise", "photos": 2,
                                          "summary": {"gatys1_mean_total": 9}}
    # `stylexport styles` says how far the recipe was trained, and where
    from stylexport.cli import _trained

    assert _trained(meta) == "5 of 5 steps on a CPU"
    meta["calls"] += [{"from_step": 5, "device": "cuda", "amp": "bf16"}]
    assert _trained({**meta, "step": 3800, "training": {"steps": 20000}}) == \
        "3,800 of 20,000 steps on a CPU and a GPU (bf16)"
    assert _trained({**meta, "calls": [{"device": "cpu", "amp": "bfloat16"}]}) == "5 of 5 steps on a CPU (bf16)"
    # a fine-tune of the shipped style (train --init), shipped under the same name: it keeps its whole history,
    # read before the new weights replace the file it started from
    from stylexport.fileio import sha256_file

    shipped = tmp_path / "zoo" / "tiny.safetensors"
    parent_sha = sha256_file(shipped)
    train(cfg(style_path, data_dir, steps=2, checkpoint_every=2, init=str(shipped), edge_pad=12), tmp_path / "ft")
    again = [sys.executable, str(script), str(tmp_path / "ft"), "tiny", "--out", str(tmp_path / "zoo")]
    done = subprocess.run(again, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    tuned = read_metadata(shipped)
    assert tuned["fine_tuned_from"]["sha256"] == parent_sha and tuned["fine_tuned_from"]["steps_reached"] == 5
    assert tuned["fine_tuned_from"]["quality"] == meta["quality"] and tuned["edge_pad"] == 12
    assert _trained(tuned) == "5 of 5 steps on a CPU, then 2 steps fine-tuned with edge_pad 12 on a CPU"
    slower = {**tuned["training"], "lr": tuned["fine_tuned_from"]["training"]["lr"] / 5}  # a fine-tune's own lr
    assert _trained({**tuned, "training": slower}) == \
        f"5 of 5 steps on a CPU, then 2 steps fine-tuned with edge_pad 12 at lr {slower['lr']:g} on a CPU"
    done = subprocess.run(again, capture_output=True, text=True)  # its start has been written over since
    assert done.returncode != 0 and "which is another file now" in done.stderr


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
    args = cli_train(style_path, data_dir, run, 2, "--checkpoint-every", "2")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"skipped 1 unreadable file ({data_dir / 'broken.jpg'}): each with why, in {run / 'skipped.tsv'}" in \
        result.output
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "already exists" in result.stderr
    result = runner.invoke(app, ["train", "--resume", str(run), "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "history.jsonl").read_text().splitlines()[-1])["step"] == 3
    stamp = (run / "model.safetensors").stat().st_mtime_ns
    result = runner.invoke(app, ["train", "--resume", str(run)])  # already at its 3 steps: says so, writes no model
    assert result.exit_code == 0, result.output
    assert " ".join(result.stdout.split()) == (f"{run} is already complete: step 3 of 3, nothing to train; its "
                                               f"model is {run / 'model.safetensors'}. To train further: stylexport "
                                               f"train --resume {run} --steps N, N above 3")
    assert (run / "model.safetensors").stat().st_mtime_ns == stamp
    out = tmp_path / "styled.png"
    result = runner.invoke(app, ["stylize", str(make_image("x.png", 40, 44)), "-m", str(run / "model.safetensors"),
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "model.safetensors").metadata["step"] == 3


def test_cli_train_takes_style_layer_weights(tmp_path, vgg, style_path, data_dir):
    """A recipe can rebalance the style layers (docs/gatys.md: with equal weights relu1_2 dominates); the run
    records the weights, and a count that does not match the layers is one line, before anything is written."""
    run = tmp_path / "run"
    result = runner.invoke(app, cli_train(style_path, data_dir, run, 1, "--style-layer-weights", "0.01,0.1,1,1"))
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["loss"]["style_layer_weights"] == [0.01, 0.1, 1, 1]
    result = runner.invoke(app, cli_train(style_path, data_dir, tmp_path / "two", 1, "--style-layers",
                                          "relu2_2,relu3_3", "--style-layer-weights", "1,2"))
    assert result.exit_code == 0, result.output
    loss = json.loads((tmp_path / "two" / "config.json").read_text())["loss"]
    assert loss["style_layers"] == ["relu2_2", "relu3_3"] and loss["style_layer_weights"] == [1, 2]
    result = runner.invoke(app, cli_train(style_path, data_dir, tmp_path / "bad", 1, "--style-layer-weights", "1,1"))
    assert result.exit_code == 2 and "2 weights for 4 style layers" in result.output
    assert not (tmp_path / "bad").exists()


def test_recipes_use_only_train_options():
    """Each recipe in training/styles/ is `stylexport train` options (training/train_style.py passes them as
    --key value): a key train does not take would fail only on the GPU machine, where time is scarce."""
    from pathlib import Path

    import typer

    repo = Path(__file__).resolve().parents[1]
    train_cmd = typer.main.get_command(app).commands["train"]
    options = {opt.removeprefix("--") for param in train_cmd.params for opt in param.opts}
    recipes = sorted((repo / "training" / "styles").glob("*.json"))
    assert len(recipes) >= 6
    for recipe in recipes:
        unknown = sorted(key for key in json.loads(recipe.read_text()) if key.replace("_", "-") not in options)
        assert not unknown, f"{recipe.name}: {unknown} are not options of stylexport train"


def test_a_length_given_to_the_recipe_script_replaces_the_recipes(tmp_path):
    """The recipes fix steps (20,000) and the README's `train_style.py RECIPE RUN --data COCO --epochs 2` meant two
    passes over COCO, but the recipe's --steps came along and overrode --epochs: 20,000 steps, about one pass.
    --epochs or --steps given after the run folder now replaces both; other options leave them."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "training" / "train_style.py"
    spec = importlib.util.spec_from_file_location("train_style", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"lr": 0.001, "epochs": 2, "steps": 20000}))

    def options(*extra):
        args = script.command_args(recipe, "RUN", list(extra))
        return [(a, b) for a, b in zip(args, args[1:], strict=False) if a.startswith("-")]

    assert options("--epochs", "2") == [("--lr", "0.001"), ("-o", "RUN"), ("--epochs", "2")]
    assert options("--steps=400") == [("--lr", "0.001"), ("-o", "RUN")] and "--steps=400" in \
        script.command_args(recipe, "RUN", ["--steps=400"])
    assert options("--lr", "2e-4") == [("--lr", "0.001"), ("--epochs", "2"), ("--steps", "20000"), ("-o", "RUN"),
                                       ("--lr", "2e-4")]


def test_sweep_writes_one_tile_per_setting(tmp_path, vgg, make_image):
    out = tmp_path / "sheet.png"
    result = runner.invoke(app, ["sweep", str(make_image("c.png", 32, 32)), str(make_image("s.png", 32, 32, seed=4)),
                                 "--style-weights", "1e4,1e5,1e6", "--tv-weights", "1e-7,1e-5", "--iterations", "2",
                                 "--size", "32", "--style-size", "20", "-o", str(out), "--vgg-weights", VGG_SPEC])
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert [(r["style_weight"], r["tv_weight"]) for r in report["tiles"]] == [
        (1e4, 1e-7), (1e5, 1e-7), (1e6, 1e-7), (1e4, 1e-5), (1e5, 1e-5), (1e6, 1e-5)]
    # the sheet says what made it: the style image at its own size (a recipe's style size), the content at --size
    assert report["style_hw"] == [20, 20] and report["content_hw"] == [32, 32] and report["iterations"] == 2
    # sets of style-layer weights are more rows: each tile records its set, and down-weighting the first
    # layers lowers the style term of the same image at the same λs (one L-BFGS iteration: nearly the photo)
    result = runner.invoke(app, ["sweep", str(make_image("c.png", 32, 32)), str(make_image("s.png", 32, 32, seed=4)),
                                 "--style-weights", "1e5", "--style-layer-weights", "1,1,1,1;0.01,0.1,1,1",
                                 "--iterations", "1", "--size", "32", "-o", str(out), "--vgg-weights", VGG_SPEC])
    assert result.exit_code == 0, result.output
    equal, rebalanced = json.loads(out.with_suffix(".json").read_text())["tiles"]
    assert equal["style_layer_weights"] == [1, 1, 1, 1] and rebalanced["style_layer_weights"] == [0.01, 0.1, 1, 1]
    assert rebalanced["style"] < equal["style"]
    result = runner.invoke(app, ["sweep", "--style-layer-weights", "1,1,1"])
    assert result.exit_code == 2 and "3 weights for 4 style layers" in result.output
    from stylexport.image import read_image

    sheet = read_image(out)
    assert sheet.shape[-1] > 3 * 32 and sheet.shape[-2] > 2 * 32
    result = runner.invoke(app, ["sweep", "--style-weights", "a,b"])
    assert result.exit_code == 2 and "not a comma-separated list" in result.output


# ---- faults from the reliability audit


def _mixed_aspect_photos(folder, n=24):
    folder.mkdir()
    for i in range(n):
        h, w = ((40, 90), (90, 40), (64, 64))[i % 3]
        Image.fromarray(smooth_image(h, w, seed=200 + i)).save(folder / f"m{i:02d}.png")
    return folder


def test_mixed_aspect_photos_make_previews_and_the_held_out_are_named(tmp_path, vgg, style_path):
    data = _mixed_aspect_photos(tmp_path / "mixed")
    run = tmp_path / "run"
    result = runner.invoke(app, cli_train(style_path, data, run, 2, "--checkpoint-every", "2", "--preview-every", "1"))
    assert result.exit_code == 0, result.output
    assert "4 photos held out of training (not trained on; previews show the first 4)" in result.output
    preview = Image.open(run / "previews" / "step_0000002.jpg")
    assert preview.size == (4 * 32, 2 * 32)
    assert json.loads((run / "config.json").read_text())["data_count"] == 20


def test_a_failing_preview_never_ends_the_run(tmp_path, vgg, style_path, data_dir, monkeypatch):
    import stylexport.train as trainmod

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(trainmod, "save_image", broken)
    result = train(cfg(style_path, data_dir, steps=4, preview_every=1), tmp_path / "run")
    assert result.steps == 4 and (tmp_path / "run" / "state.pt").is_file()


def test_a_run_that_died_before_its_first_checkpoint_does_not_block_its_folder(tmp_path, vgg, style_path,
                                                                                  data_dir, monkeypatch):
    import stylexport.train as trainmod

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainmod.torch, "save", die)  # killed while writing its first state.pt
    with pytest.raises(KeyboardInterrupt):
        train(cfg(style_path, data_dir, steps=4, checkpoint_every=2), tmp_path / "run")
    monkeypatch.undo()
    assert (tmp_path / "run" / "config.json").is_file()
    assert not (tmp_path / "run" / "state.pt").exists()
    with pytest.raises(StylexportError, match=r"before its first checkpoint\); start it again without --resume"):
        train(cfg(style_path, data_dir, steps=4), tmp_path / "run", resume=True)
    assert train(cfg(style_path, data_dir, steps=4), tmp_path / "run").steps == 4


def test_nan_stop_keeps_only_a_good_checkpoint_and_names_it(tmp_path, vgg, style_path, data_dir):
    from safetensors.torch import load_file

    # lr 1e6: the weights after step 1 are huge; their loss is not finite, so no checkpoint is written
    with pytest.raises(StylexportError) as err:
        train(cfg(style_path, data_dir, steps=6, lr=1e6, checkpoint_every=1), tmp_path / "a")
    assert "no checkpoint was written" in str(err.value)
    assert not (tmp_path / "a" / "model.safetensors").exists()
    # a good run, resumed with a huge learning rate refused: the message names the step really on disk
    train(cfg(style_path, data_dir, steps=2, checkpoint_every=2), tmp_path / "b")
    saved = load_file(tmp_path / "b" / "model.safetensors")
    with pytest.raises(StylexportError, match=r"last good checkpoint \(step 2\) is kept"):
        _resume_with_lr(style_path, data_dir, tmp_path / "b")
    after = load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(saved[k], after[k]) for k in saved)  # the good checkpoint is untouched
    assert all(torch.isfinite(v).all() for v in after.values())


def _resume_with_lr(style_path, data_dir, run):
    import stylexport.train as trainmod

    config = cfg(style_path, data_dir, steps=6, checkpoint_every=1)
    original = torch.optim.Adam

    class Explosive(original):  # the same run, with a step size that blows the weights up after step 2
        def load_state_dict(self, state):
            super().load_state_dict(state)
            for group in self.param_groups:
                group["lr"] = 1e6

    trainmod.torch.optim.Adam = Explosive
    try:
        trainmod.train(config, run, resume=True)
    finally:
        trainmod.torch.optim.Adam = original


def test_resume_refuses_other_data_and_names_the_difference(tmp_path, vgg, style_path, data_dir):
    train(cfg(style_path, data_dir, steps=2, checkpoint_every=2), tmp_path / "run")
    other = tmp_path / "other"
    other.mkdir()
    for i in range(len(list(data_dir.rglob("p*.jpg")))):  # the same count of readable photos, other pictures
        Image.fromarray(smooth_image(72, 90, seed=500 + i)).save(other / f"q{i}.jpg")
    (other / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(StylexportError, match=r"holds other photos than the run was trained on \(5 photo\(s\) "
                                              r"missing or changed, e.g. p0.jpg; 5 photo\(s\) new or changed, "
                                              r"e.g. q0.jpg\)"):
        train(cfg(style_path, other, steps=4), tmp_path / "run", resume=True)
    # the same photos in a copied folder are the same data: resuming with more steps reports what it ran
    import shutil

    shutil.copytree(data_dir, tmp_path / "copy", copy_function=shutil.copy2)
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "run"), "--data", str(tmp_path / "copy"),
                                 "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert "trained 1 steps (steps 3-3 of 3)" in result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"] == str(tmp_path / "copy")


def test_hold_out_keeps_named_photos_out_of_training(tmp_path, vgg, style_path):
    data = _mixed_aspect_photos(tmp_path / "mixed")
    run = tmp_path / "run"
    result = runner.invoke(app, cli_train(style_path, data, run, 1, "--hold-out", "6"))
    assert result.exit_code == 0, result.output
    assert "6 photos held out of training (not trained on; previews show the first 4)" in result.output
    held = (run / "held_out.txt").read_text().splitlines()
    trained = [line.split("\t")[0] for line in (run / "data.tsv").read_text().splitlines()]
    assert held == [f"m{i:02d}.png" for i in (0, 4, 8, 12, 16, 20)]  # every 24 // 6 = 4th of the sorted list
    assert len(trained) == 18 and not set(held) & set(trained)
    assert json.loads((run / "config.json").read_text())["data_count"] == 18

    result = runner.invoke(app, cli_train(style_path, data, tmp_path / "run2", 1, "--hold-out", "23"))
    one_line_error(result, "--hold-out 23 leaves 1 of 24 photos to train on", "fewer than a batch (2)")
    result = runner.invoke(app, cli_train(style_path, data, tmp_path / "run3", 1, "--hold-out", "30"))
    one_line_error(result, "--hold-out 30: the data has only 24 photos", "hold out fewer than 23")  # not "-6 of 24"


def test_chunks_under_a_time_limit_resume_to_the_straight_run(tmp_path, vgg, style_path, data_dir, monkeypatch):
    """Training in time-limited chunks (the GPU machine's 10-minute calls) ends each chunk with a checkpoint
    that resumes exactly: the weights equal an uninterrupted run's. No checkpoint file exceeds 16 MiB."""
    import stylexport.train as trainmod

    straight = train(cfg(style_path, data_dir), tmp_path / "a")
    clock = {"t": 0.0}

    def fake_clock():  # every reading advances 1 s: with a 5 s limit a chunk ends after a few steps
        clock["t"] += 1.0
        return clock["t"]

    monkeypatch.setattr(trainmod.time, "perf_counter", fake_clock)
    chunks, resume = [], False
    while True:
        result = train(cfg(style_path, data_dir, max_minutes=5 / 60), tmp_path / "b", resume=resume)
        chunks.append(result.steps)
        assert torch.load(tmp_path / "b" / "state.pt", weights_only=True)["step"] == result.steps
        if not result.time_limited:
            break
        resume = True
    assert len(chunks) >= 2 and chunks[-1] == straight.steps == 8, chunks
    a = load_checkpoint(tmp_path / "a" / "model.safetensors").model.state_dict()
    b = load_checkpoint(tmp_path / "b" / "model.safetensors").model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert all(f.stat().st_size < 16 * 2**20 for f in (tmp_path / "b").iterdir() if f.is_file())


def test_resume_refuses_a_state_and_model_of_different_steps(tmp_path, vgg, style_path, data_dir):
    import shutil

    train(cfg(style_path, data_dir, steps=4), tmp_path / "a")
    train(cfg(style_path, data_dir, steps=8), tmp_path / "b")
    shutil.copy(tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors")  # step 4 beside 8
    with pytest.raises(StylexportError, match="state.pt is from step 8 but model.safetensors from step 4"):
        train(cfg(style_path, data_dir, steps=12), tmp_path / "b", resume=True)


def test_a_damaged_state_or_a_missing_run_folder_is_one_line_and_the_run_is_kept(tmp_path, vgg, style_path,
                                                                                   data_dir):
    """A state.pt cut short (a copy interrupted, a full disk) ended --resume in a traceback (OSError); a folder
    that does not exist was called 'not a stylexport run folder'."""
    train(cfg(style_path, data_dir, steps=4), tmp_path / "a")
    state = tmp_path / "a" / "state.pt"
    whole = state.read_bytes()
    state.write_bytes(whole[:5000])
    before = sorted((p.name, p.stat().st_size) for p in (tmp_path / "a").iterdir())
    with pytest.raises(StylexportError, match=r"cannot resume .*a: state.pt is damaged \(.*\); its model.safetensors "
                                              r"still stylizes"):
        train(cfg(style_path, data_dir, steps=8), tmp_path / "a", resume=True)
    assert sorted((p.name, p.stat().st_size) for p in (tmp_path / "a").iterdir()) == before
    torch.save({"step": 4}, state)  # a torch file, but not a run's state
    with pytest.raises(StylexportError, match=r"state.pt is damaged \(it lacks optimizer, rng, scaler\)"):
        train(cfg(style_path, data_dir, steps=8), tmp_path / "a", resume=True)
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "nope")])
    one_line_error(result, f"cannot resume {tmp_path / 'nope'}: no such run folder")


NO_BF16 = ("avx2", "fma")
BF16 = ("avx2", "fma", "avx512f", "avx512_bf16")


@pytest.mark.parametrize("amp, flags, words", [
    ("bf16", NO_BF16, "--amp bf16 on the CPU: this CPU has no BF16 instructions (AVX-512 BF16 or AMX)"),
    ("fp16", BF16, "--amp fp16 is mixed precision on CUDA; this run trains on the CPU: use --amp bf16"),
    ("half", BF16, "'half' is not one of 'auto', 'bf16', 'fp16', 'off'")])
def test_amp_the_cpu_cannot_run_is_refused(tmp_path, style_path, data_dir, monkeypatch, amp, flags, words):
    """`--amp bf16` on the CPU trained in FP32 without a word, and an unknown --amp was only refused on a GPU; now
    bf16 runs where the CPU has BF16 instructions and is refused, saying why, where it has none."""
    monkeypatch.setattr("stylexport.devices.cpu_flags", lambda: flags)
    result = runner.invoke(app, cli_train(style_path, data_dir, tmp_path / "run", 1, "--amp", amp, "--device", "cpu"))
    one_line_error(result, "--amp", words)
    assert not (tmp_path / "run").exists()
    with pytest.raises(StylexportError, match="unknown --amp 'half'"):  # the Python API refuses it too, on the CPU
        autocast_dtype("half", torch.device("cpu"))


def test_bf16_on_a_cpu_that_has_it_trains_under_autocast_with_fp32_weights(tmp_path, style_path, data_dir,
                                                                             monkeypatch):
    """On a CPU with AVX-512 BF16 or AMX, --amp bf16 trains the network under BF16 autocast: the same seeded run
    ends near the FP32 one but not on it (the convolutions rounded to BF16), its weights and checkpoint stay
    FP32, and the run records it. Without --amp such a CPU trains in FP32 and says that bf16 is there."""
    monkeypatch.setattr("stylexport.devices.cpu_flags", lambda: BF16)
    result = runner.invoke(app, cli_train(style_path, data_dir, tmp_path / "bf16", 3, "--amp", "bf16",
                                          "--device", "cpu"))
    assert result.exit_code == 0, result.output
    assert "--amp bf16 trains faster" not in result.output
    result = runner.invoke(app, cli_train(style_path, data_dir, tmp_path / "fp32", 3, "--device", "cpu"))
    assert result.exit_code == 0, result.output
    assert "note: this CPU computes BF16 natively: --amp bf16 trains faster" in result.output
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["amp"] == "bf16"
    bf16, fp32 = (load_file(tmp_path / run / "model.safetensors") for run in ("bf16", "fp32"))
    assert {t.dtype for t in bf16.values()} == {torch.float32}
    moved = [(bf16[k] - fp32[k]).abs().max().item() for k in fp32]
    assert 0 < max(moved) < 0.05, max(moved)  # Adam's 3 steps of 1e-3 move a weight by at most ~3e-3
    monkeypatch.setattr("stylexport.devices.cpu_flags", lambda: NO_BF16)
    result = runner.invoke(app, cli_train(style_path, data_dir, tmp_path / "plain", 1, "--device", "cpu"))
    assert result.exit_code == 0 and "note:" not in result.output


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_to_the_whole_group_stops_after_the_step_with_a_checkpoint_of_it(tmp_path, vgg,
                                                                                           style_path, data_dir, sig):
    """A terminal's Ctrl-C and a scheduler's SIGTERM (Slurm's scancel) reach the training process and its
    DataLoader workers. Before, Ctrl-C ended the run where it stood, losing every step since the last checkpoint
    (up to --checkpoint-every 1000: most of an hour on a CPU), and SIGTERM ended it in a DataLoader traceback
    (a worker killed by the signal). Now the run finishes its step, saves it, says how to resume, and exits
    128 + the signal; the resumed run goes on from that step."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    args = cli_train(style_path, data_dir, run, 100000, "--workers", "2", "--log-every", "1")
    proc = subprocess.Popen([sys.executable, "-m", "stylexport", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    history = run / "history.jsonl"
    deadline = time.monotonic() + 300
    while (not history.is_file() or len(history.read_text().splitlines()) < 3) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, getattr(signal, sig))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, sig), err
    assert "Traceback" not in err and "RuntimeError" not in err, err
    step = torch.load(run / "state.pt", weights_only=True)["step"]
    assert step >= 3  # no checkpoint was due (--checkpoint-every 1000): this one is the stop's
    assert load_checkpoint(run / "model.safetensors").metadata["step"] == step
    by = "Ctrl-C" if sig == "SIGINT" else sig
    assert f"stopped by {by} after step {step} of 100000, saved: continue with: stylexport train --resume {run}" \
        in err
    resumed = runner.invoke(app, ["train", "--resume", str(run), "--steps", str(step + 2), "--workers", "0"])
    assert resumed.exit_code == 0, resumed.output
    assert f"(steps {step + 1}-{step + 2} of {step + 2})" in resumed.output


def test_a_run_that_ignores_ctrl_c_keeps_ignoring_it_and_sigterm_still_stops_it(tmp_path, vgg, style_path,
                                                                                 data_dir):
    """A run started in the background of a script (`stylexport train ... &`) inherits an ignored SIGINT; the
    stop handler must not turn Ctrl-C back on for it. SIGTERM still stops it after its step, with a checkpoint."""
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    args = cli_train(style_path, data_dir, run, 100000, "--log-every", "1")
    proc = subprocess.Popen([sys.executable, "-m", "stylexport", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    history = run / "history.jsonl"

    def logged() -> int:
        return len(history.read_text().splitlines()) if history.is_file() else 0

    deadline = time.monotonic() + 300
    while logged() < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    seen = logged()
    while logged() < seen + 3 and time.monotonic() < deadline:  # still training, several steps later
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM after step" in err, err
    assert torch.load(run / "state.pt", weights_only=True)["step"] >= seen + 3


def test_sigterm_to_the_recipe_script_stops_the_run_it_started(tmp_path, style_path, data_dir):
    """training/train_style.py ran `stylexport train` as a child: a SIGTERM to the script's pid (``kill $!``,
    ``pkill -f train_style.py``) ended the script alone and the orphaned run went on training into the same
    folder, so a new run started there had two writers in its history. The script now becomes the run, and the
    run stops after its step with a checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"style": str(style_path), "data": str(data_dir), "image_size": 32,
                                  "style_size": 48, "batch_size": 2, "steps": 100000}))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(repo / "training" / "train_style.py"), str(recipe), str(run),
                             "--workers", "0", "--log-every", "1", "--vgg-weights", VGG_SPEC],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    history = run / "history.jsonl"
    try:
        deadline = time.monotonic() + 300
        while (not history.is_file() or len(history.read_text().splitlines()) < 2) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # to the script's pid only, as kill and pkill send it
        out, err = proc.communicate(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the old script's orphan, if any: not left training
        except ProcessLookupError:
            pass
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM after step" in err, (proc.returncode, err)
    step = torch.load(run / "state.pt", weights_only=True)["step"]
    assert load_checkpoint(run / "model.safetensors").metadata["step"] == step >= 2


def test_a_script_calling_train_stops_on_ctrl_c_after_the_checkpoint(tmp_path, vgg, style_path, data_dir):
    """train() called from a script: Ctrl-C stops the run after its step with a checkpoint, then reaches the
    script as KeyboardInterrupt (before, train() returned and the script went on to its next line, e.g. an
    export); a SIGTERM reaches the script's own handler once, after the checkpoint; return_on_signal=True
    returns instead, naming the signal. The script runs in a fresh interpreter, as a user's would."""
    import subprocess
    import sys
    from pathlib import Path

    script = """
import os, signal, sys
from pathlib import Path
import torch
from stylexport.train import train
from tests.test_train import cfg

style, data, out = map(Path, sys.argv[1:4])

def signal_at(step, sig):
    def report(info):
        if info.step == step:
            os.kill(os.getpid(), sig)
    return report

try:
    train(cfg(style, data, steps=50), out / "a", progress=signal_at(2, signal.SIGINT))
    print("returned after Ctrl-C")
except KeyboardInterrupt:
    print("KeyboardInterrupt at", torch.load(out / "a" / "state.pt", weights_only=True)["step"])
got = []
signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
result = train(cfg(style, data, steps=50), out / "b", progress=signal_at(3, signal.SIGTERM))
print("own SIGTERM handler ran", len(got), "time(s); steps", result.steps, result.stopped_by == signal.SIGTERM)
result = train(cfg(style, data, steps=50), out / "c", progress=signal_at(2, signal.SIGINT), return_on_signal=True)
print("returned: steps", result.steps, result.stopped_by == signal.SIGINT)
"""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script, str(style_path), str(data_dir), str(tmp_path)], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["KeyboardInterrupt at 2", "own SIGTERM handler ran 1 time(s); steps 3 True",
                                        "returned: steps 2 True"], done.stdout + done.stderr


def test_evaluate_style_compares_the_network_with_gatys_from_the_photo_and_from_noise(tmp_path, vgg, style_path,
                                                                                     data_dir):
    """training/evaluate_style.py (issue #20's quality table): on the held-out photos, Gatys' loss never rises with
    more L-BFGS iterations; from noise it starts far above the same run from the photo (whose content loss
    starts at 0); the network's own loss is the same whichever way Gatys starts; an unreadable held-out photo is
    skipped and named, as training skipped it."""
    import subprocess
    import sys
    from pathlib import Path

    run = tmp_path / "run"
    train(cfg(style_path, data_dir, steps=2, checkpoint_every=2, hold_out=3), run)
    held = (run / "held_out.txt").read_text().split()
    assert len(held) == 3 and "broken.jpg" in held  # the first of the sorted files, and evenly spaced
    script = Path(__file__).resolve().parents[1] / "training" / "evaluate_style.py"
    results = {}
    for init in ("content", "noise"):
        out = tmp_path / f"quality-{init}.json"
        done = subprocess.run([sys.executable, str(script), str(run), "-o", str(out), "--iterations", "2,1,6",
                               "--size", "40", "--init", init], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        results[init] = json.loads(out.read_text())
        assert results[init]["init"] == init and results[init]["photos"] == 2
        assert list(results[init]["skipped"]) == ["broken.jpg"] and "skipped: cannot read image" in done.stdout
        assert results[init]["iterations"] == [1, 2, 6]
        assert ("uniform noise" if init == "noise" else "the photo") in out.with_suffix(".md").read_text()
        for row in results[init]["rows"]:
            totals = [row["gatys"][n]["total"] for n in ("1", "2", "6")]
            assert totals == sorted(totals, reverse=True), totals
    for content_row, noise_row in zip(results["content"]["rows"], results["noise"]["rows"], strict=True):
        assert content_row["feed_forward"] == pytest.approx(noise_row["feed_forward"])  # the same network
        assert noise_row["gatys"]["1"]["content"] > 10 * content_row["gatys"]["1"]["content"]
    summary = results["content"]["summary"]
    assert summary["gatys1_mean_total"] == pytest.approx(
        sum(r["gatys"]["1"]["total"] for r in results["content"]["rows"]) / 2)
    # --gatys-from: a retrained network against the same baseline; here the same network, so every number is the
    # earlier one's, and the shorter L-BFGS run retraces the earlier one to its match
    again = tmp_path / "again.json"
    done = subprocess.run([sys.executable, str(script), str(run), "-o", str(again), "--iterations", "1,2,6",
                           "--size", "40", "--init", "noise", "--gatys-from", str(tmp_path / "quality-noise.json")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    redone = json.loads(again.read_text())
    for old, new in zip(results["noise"]["rows"], redone["rows"], strict=True):
        assert new["gatys"] == old["gatys"] and new["feed_forward"] == pytest.approx(old["feed_forward"])
        assert new["gatys_iterations_to_match"] == old["gatys_iterations_to_match"] and new["gatys_retraced"]
        assert new["gatys_rerun_reached_earlier_at"] == old["gatys_iterations_to_match"]
    assert redone["summary"]["gatys_retraced"] == 2 and "retraced" in again.with_suffix(".md").read_text()
    wrong = subprocess.run([sys.executable, str(script), str(run), "-o", str(again), "--iterations", "1,2,6",
                            "--size", "48", "--init", "noise", "--gatys-from", str(tmp_path / "quality-noise.json")],
                           capture_output=True, text=True)
    assert wrong.returncode != 0 and "its size differ from this evaluation's (size 40)" in wrong.stderr


def test_init_fine_tunes_a_checkpoint_and_its_edge_pad_comes_along(tmp_path, vgg, style_path, data_dir):
    from stylexport.checkpoint import save_checkpoint
    from stylexport.fileio import sha256_file

    from .conftest import random_net

    start = save_checkpoint(tmp_path / "start.safetensors", random_net(edge_pad=8), {"style_name": "start"})
    # lr 0: Adam moves nothing, so the run's weights are exactly the ones it started from
    train(cfg(style_path, data_dir, steps=2, checkpoint_every=2, lr=0.0, init=str(start)), tmp_path / "run")
    tuned = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert tuned.model.edge_pad == 8  # not given: the --init checkpoint's
    origin = load_checkpoint(start).model.state_dict()
    assert all(torch.equal(v, origin[k]) for k, v in tuned.model.state_dict().items())
    assert tuned.metadata["train"]["init_sha256"] == sha256_file(start)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["edge_pad"] == 8 and config["init"] == str(start) and config["init_sha256"] == sha256_file(start)
    # given, it wins; and a run from random weights trains and records its own
    train(cfg(style_path, data_dir, steps=2, checkpoint_every=2, edge_pad=0, init=str(start)), tmp_path / "plain")
    assert load_checkpoint(tmp_path / "plain" / "model.safetensors").model.edge_pad == 0
    train(cfg(style_path, data_dir, steps=2, checkpoint_every=2, edge_pad=12), tmp_path / "padded")
    assert load_checkpoint(tmp_path / "padded" / "model.safetensors").model.edge_pad == 12
    # a run's folder stands for the weights it has reached, and the file is what the new run records
    train(cfg(style_path, data_dir, steps=2, checkpoint_every=2, init=str(tmp_path / "padded")), tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["init"] == str(tmp_path / "padded" / "model.safetensors") and again["edge_pad"] == 12
    with pytest.raises(StylexportError, match="cannot resume .*edge_pad was 12, now 4"):
        train(cfg(style_path, data_dir, steps=4, edge_pad=4), tmp_path / "padded", resume=True)


def test_a_run_saved_before_edge_pad_existed_resumes(tmp_path, vgg, style_path, data_dir):
    run = tmp_path / "run"
    train(cfg(style_path, data_dir, steps=2, checkpoint_every=2), run)
    saved = json.loads((run / "config.json").read_text())
    del saved["edge_pad"], saved["init"]
    (run / "config.json").write_text(json.dumps(saved))
    result = runner.invoke(app, ["train", "--resume", str(run), "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "model.safetensors").metadata["step"] == 4


def test_edge_pad_and_init_mistakes_are_one_line(tmp_path, style_path, data_dir):
    one_line_error(runner.invoke(app, cli_train(style_path, data_dir, tmp_path / "r1", 2, "--edge-pad", "32")),
                   "--image-size 32 is too small for --edge-pad 32: the crop must be at least 36 px")
    one_line_error(runner.invoke(app, cli_train(style_path, data_dir, tmp_path / "r2", 2, "--init", "no_such")),
                   "--init no_such: no such checkpoint file, and unknown style 'no_such'; installed: ")
    one_line_error(runner.invoke(app, cli_train(style_path, data_dir, tmp_path / "r3", 2, "--init",
                                                tmp_path / "gone.safetensors")), "gone.safetensors")
    from stylexport.checkpoint import save_checkpoint

    from .conftest import random_net

    padded = save_checkpoint(tmp_path / "padded.safetensors", random_net(edge_pad=40))
    one_line_error(runner.invoke(app, cli_train(style_path, data_dir, tmp_path / "r5", 2, "--init", padded)),
                   "--image-size 32 is too small for edge_pad 40 (the --init checkpoint's): the crop must be at "
                   "least 44 px")
    (tmp_path / "r4").mkdir()
    one_line_error(runner.invoke(app, ["train", "--resume", str(tmp_path / "r4"), "--init", "great_wave"]),
                   "continues that run from its own weights; drop --init great_wave")
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3", "r5"))
