"""Shipped style models: shipping a trained run, listing, and --style resolution."""

import torch
from typer.testing import CliRunner

from stylexport.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from stylexport.cli import app
from stylexport.fileio import sha256_file
from stylexport.image import read_image
from stylexport.styles import DEFAULT_STYLE, STYLES_ENV, find_style, list_styles, ship_style

runner = CliRunner()


def test_ship_list_and_stylize_by_name(tmp_path, monkeypatch, random_model, make_image):
    zoo = tmp_path / "zoo"
    monkeypatch.setenv(STYLES_ENV, str(zoo))
    run = save_checkpoint(tmp_path / "model.safetensors", random_model, {"style_name": "painting", "step": 20000})
    painting = make_image("painting.png", h=300, w=400)
    shipped = ship_style(run, "my_style", painting, provenance={"painting_license": "public-domain"})
    # FP16 weights: half the size, same network to within FP16 rounding of the weights.
    assert shipped.model.stat().st_size < 0.55 * run.stat().st_size
    meta = read_metadata(shipped.model)
    assert meta["style_name"] == "my_style" and meta["step"] == 20000 and meta["weights_dtype"] == "float16"
    assert meta["painting_license"] == "public-domain"
    x = read_image(make_image(h=40, w=56))[None]
    with torch.no_grad():
        assert float((load_checkpoint(shipped.model).model(x) - random_model(x)).abs().max()) < 1.0
    assert max(read_image(shipped.thumbnail).shape[1:]) == 256

    assert [s.name for s in list_styles()] == ["my_style"] and find_style("my_style").model == shipped.model
    result = runner.invoke(app, ["styles"])
    assert result.exit_code == 0 and "my_style" in result.output and "public-domain" in result.output
    out = tmp_path / "out.png"
    result = runner.invoke(app, ["stylize", str(make_image(h=40, w=56)), "--style", "my_style", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert read_image(out).shape == (3, 40, 56)
    result = runner.invoke(app, ["stylize", str(make_image()), "--style", "nope", "-o", str(out)])
    assert result.exit_code == 2 and "unknown style 'nope'; installed: my_style" in result.output


def test_styles_names_each_painting_by_artist_title_and_year(tmp_path, monkeypatch, random_model, make_image):
    """The painting column showed the scan's file ("styles/durer_lion.jpg"). It names the painting now, from the
    last part of the provenance notes (../shared/data's MANIFEST ends each painting's notes with it); notes that
    name none (a licence line, a style shipped from elsewhere) leave the file, else the style's name."""
    monkeypatch.setenv(STYLES_ENV, str(tmp_path / "zoo"))
    run = save_checkpoint(tmp_path / "model.safetensors", random_model, {"style_name": "painting"})
    painting = make_image("painting.png", h=30, w=40)
    ship_style(run, "lion", painting, provenance={
        "painting": "styles/durer_lion.jpg", "painting_notes": "upstream README in rcc: GPLv3 or later (images from "
        "the WebMuseum, Nicolas Pioch); Albrecht Duerer, Lion (1494)"})
    ship_style(run, "cafe", painting, provenance={
        "painting": "styles/cafe_terrace.jpg", "painting_notes": "upstream README in rcc: copyright: 2000, 2008 "
        "Bruno Coudoin and others; license: Public domain"})
    ship_style(run, "bare", painting)
    assert {s.name: s.painting for s in list_styles()} == {
        "bare": "bare", "cafe": "styles/cafe_terrace.jpg", "lion": "Albrecht Duerer, Lion (1494)"}
    result = runner.invoke(app, ["styles"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Albrecht Duerer, Lion (1494)" in result.output
    assert "styles/durer_lion.jpg" not in result.output and "styles/cafe_terrace.jpg" in result.output
    assert " lion.jpg " in result.output  # the thumbnail, in the folder the table's title names


def test_model_or_style_is_required_and_empty_zoo_is_explained(tmp_path, monkeypatch, make_image):
    monkeypatch.setenv(STYLES_ENV, str(tmp_path / "empty"))
    result = runner.invoke(app, ["stylize", str(make_image()), "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 2 and "no --model or --style given, and no style models are installed" in result.output
    out = str(tmp_path / "o.png")
    result = runner.invoke(app, ["stylize", str(make_image()), "--style", "starry_night", "-o", out])
    assert result.exit_code == 2 and "no style models are installed" in result.output
    result = runner.invoke(app, ["styles"])
    assert result.exit_code == 0 and "no style models installed" in result.output


def test_with_neither_model_nor_style_the_default_style_is_used_and_said(tmp_path, monkeypatch, random_model,
                                                                          make_image):
    zoo = tmp_path / "zoo"
    monkeypatch.setenv(STYLES_ENV, str(zoo))
    run = save_checkpoint(tmp_path / "model.safetensors", random_model, {"style_name": "painting"})
    painting = make_image("painting.png", h=30, w=40)
    photo, out = make_image(h=40, w=56), tmp_path / "out.png"
    ship_style(run, "aaa", painting)  # first by name: used only while the default is not installed
    result = runner.invoke(app, ["stylize", str(photo), "-o", str(out)])
    assert result.exit_code == 0 and "style aaa (no --model or --style given" in result.output, result.output
    ship_style(run, DEFAULT_STYLE, painting)
    result = runner.invoke(app, ["stylize", str(photo), "-o", str(out)])
    assert result.exit_code == 0 and f"style {DEFAULT_STYLE} (no --model" in result.output, result.output
    assert read_image(out).shape == (3, 40, 56)
    result = runner.invoke(app, ["stylize", str(photo), "-m", str(run), "--style", "aaa", "-o", str(out)])
    assert result.exit_code == 2 and f"pass either --model {run} or --style aaa, not both" in result.output


def test_a_damaged_style_file_is_listed_as_such_and_hides_no_other(tmp_path, monkeypatch, random_model, make_image):
    """One truncated .safetensors in the styles folder ended `styles`, `doctor`'s row and every --style (the
    good ones too) in a traceback: now it is listed with its reason, refused by name, skipped as the default."""
    from stylexport.doctor import _styles
    from stylexport.styles import default_style

    zoo = tmp_path / "zoo"
    monkeypatch.setenv(STYLES_ENV, str(zoo))
    ship_style(save_checkpoint(tmp_path / "m.safetensors", random_model, {"style_name": "good"}), "good",
               make_image("painting.png"))
    (zoo / "broken.safetensors").write_bytes(b"\x00" * 7)
    broken, good = list_styles()
    assert (broken.name, good.name) == ("broken", "good") and good.problem is None
    assert broken.problem.startswith(f"cannot read checkpoint {zoo / 'broken.safetensors'}: ")
    assert find_style("good").model == good.model and default_style().name == "good"
    result = runner.invoke(app, ["styles"])
    assert result.exit_code == 0 and "cannot be used: cannot read checkpoint" in " ".join(result.output.split())
    out = tmp_path / "out.png"
    result = runner.invoke(app, ["stylize", str(make_image(h=40, w=56)), "--style", "good", "-o", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["stylize", str(make_image()), "--style", "broken", "-o", str(tmp_path / "b.png")])
    assert result.exit_code == 2 and result.stderr.startswith("error: style 'broken' cannot be used: cannot read "
                                                              "checkpoint") and "Traceback" not in result.output
    assert "reinstall it, or remove" in result.stderr
    rows = _styles()
    assert [(c.name, c.status) for c in rows] == [("installed styles", "ok"), ("broken", "error")]
    assert rows[0].detail == f"1 in {zoo}: good"


def test_export_and_bench_take_a_shipped_style_by_name(tmp_path, monkeypatch, random_model, make_image):
    """A shipped style lives inside the installed package; export and bench take it by name, like stylize."""
    import json

    zoo = tmp_path / "zoo"
    monkeypatch.setenv(STYLES_ENV, str(zoo))
    run = save_checkpoint(tmp_path / "model.safetensors", random_model, {"style_name": "painting"})
    shipped = ship_style(run, "wave", make_image("painting.png"))
    result = runner.invoke(app, ["export", "--style", "wave", "--onnx", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    assert {a["checkpoint_sha256"] for a in record["artifacts"]} == {sha256_file(shipped.model)}
    result = runner.invoke(app, ["export", "--onnx", "-o", str(tmp_path / "none")])
    assert result.exit_code == 2 and "pass a checkpoint as CHECKPOINT, or a shipped style with --style NAME" in \
        " ".join(result.output.split())
    result = runner.invoke(app, ["export", str(run), "--style", "wave", "-o", str(tmp_path / "both")])
    assert result.exit_code == 2 and f"pass either CHECKPOINT ({run}) or --style wave, not both" in \
        " ".join(result.output.split())
    result = runner.invoke(app, ["export", "--style", "nope", "-o", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "unknown style 'nope'; installed: wave" in result.output
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "--style", "wave", "--backends", "torch-fp32", "--sizes", "32",
                                 "--repeats", "2", "--warmup", "0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["model"] == str(shipped.model)


def test_stylize_with_no_input_and_no_model_runs_the_default_style_on_the_bundled_photo(tmp_path, monkeypatch,
                                                                                        random_model, make_image):
    """The newcomer's first command: `stylexport stylize -o out.jpg`, on built-in defaults, says what it took."""
    from stylexport.image import sample_paths

    monkeypatch.setenv(STYLES_ENV, str(tmp_path / "zoo"))
    ship_style(save_checkpoint(tmp_path / "m.safetensors", random_model, {"style_name": "p"}), DEFAULT_STYLE,
               make_image("painting.png"))
    out = tmp_path / "out.png"
    result = runner.invoke(app, ["stylize", "-o", str(out), "--backend", "torch-fp32"])
    assert result.exit_code == 0, result.output
    assert f"photo {sample_paths()[0]} (the bundled sample; no INPUT given)" in result.stderr
    assert f"style {DEFAULT_STYLE} (no --model or --style given" in result.stderr
    assert read_image(out).shape == read_image(sample_paths()[0]).shape


def test_preview_draws_a_photo_in_every_style_on_one_sheet(tmp_path, monkeypatch, make_image):
    """`styles --preview PHOTO -o SHEET`: the photo and each usable style's picture of it side by side, the
    paintings under them, in the order `styles` lists them; each picture is exactly what `stylize --style NAME
    --size N --backend torch-fp32` writes. Options that need --preview, a bad photo or sheet: one line, exit 2,
    nothing written."""
    from stylexport.figures import contact_sheet
    from stylexport.image import resize_max_side

    from .conftest import random_net

    zoo = tmp_path / "zoo"
    monkeypatch.setenv(STYLES_ENV, str(zoo))
    for i, name in enumerate(("blue", "amber")):
        net = random_net(head_gain=1.0 - 0.5 * i)
        ship_style(save_checkpoint(tmp_path / f"{name}.safetensors", net, {"style_name": name}), name,
                   make_image(f"{name}.png", h=30, w=40, seed=i))
    (zoo / "broken.safetensors").write_bytes(b"\x00" * 7)
    photo, sheet = make_image("photo.png", h=60, w=90, seed=7), tmp_path / "sheet.png"
    result = runner.invoke(app, ["styles", "--preview", str(photo), "-o", str(sheet), "--size", "48"])
    assert result.exit_code == 0, result.output
    assert "photo.png in 2 styles (amber, blue)" in result.stdout
    assert "left out of the preview: broken cannot be used" in result.stderr

    pictures = []
    for name in ("amber", "blue"):
        out = tmp_path / f"{name}-48.png"
        done = runner.invoke(app, ["stylize", str(photo), "--style", name, "--size", "48", "--backend", "torch-fp32",
                                   "-o", str(out)])
        assert done.exit_code == 0, done.output
        pictures.append(read_image(out))
    small = resize_max_side(read_image(photo), 48)
    paintings = [read_image(zoo / "amber.jpg"), read_image(zoo / "blue.jpg")]
    expected = contact_sheet([[small, *pictures], [torch.full_like(small, 255.0), *paintings]],
                             row_labels=["picture", "painting"], col_labels=["photo", "amber", "blue"])
    got = read_image(sheet)
    assert got.shape == expected.shape and small.shape[-2:] == (32, 48)
    tallest_painting = max(t.shape[-2] for t in paintings)  # each row as tall as its own tallest picture
    assert got.shape[-2] == 18 + (32 + 4) + (tallest_painting + 4) + 4
    assert (got - expected).abs().max() <= 1  # rounded alike: the sheet and stylize write the same pixels

    for args, fragment in ((["-o", str(tmp_path / "x.png")], "-o"), (["--size", "64"], "--size 64 only applies "
                                                                      "with --preview"),
                           (["--preview", str(photo)], "--preview needs the sheet to write: add -o SHEET.jpg"),
                           (["--preview", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "y.png")],
                            "image not found"),
                           (["--preview", str(photo), "-o", str(tmp_path / "y.xyz")], "unknown image suffix"),
                           (["--preview", str(photo), "-o", str(photo)], "photo.png")):
        result = runner.invoke(app, ["styles", *args])
        assert result.exit_code == 2 and fragment in " ".join(result.output.split()), (args, result.output)
        assert "Traceback" not in result.output
    assert read_image(photo).shape == (3, 60, 90) and not (tmp_path / "y.png").exists()
