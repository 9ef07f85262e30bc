import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from stylexport import formats
from stylexport.checkpoint import save_checkpoint
from stylexport.cli import app
from stylexport.fileio import sha256_file

from .conftest import VGG_SPEC, one_line_error

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def ckpt(tmp_path, random_model):
    return save_checkpoint(tmp_path / "model.safetensors", random_model, {"style_name": "test"})


def test_stylize_one_image_and_a_folder(tmp_path, make_image, ckpt):
    photo = make_image("a.png", 37, 53)
    out = tmp_path / "out" / "a_styled.jpg"
    result = run("stylize", photo, "-m", ckpt, "-o", out)
    assert result.exit_code == 0, result.output
    from stylexport.image import read_image

    assert read_image(out).shape == (3, 37, 53)
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo.rename(inputs / "a.png")
    make_image("b.jpg", 40, 40, seed=3).rename(inputs / "b.jpg")
    result = run("stylize", inputs, "-m", ckpt, "-o", tmp_path / "folder_out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "folder_out").iterdir()) == ["a.png", "b.jpg"]


def test_stylize_says_an_image_warning_once(tmp_path, ckpt, caplog, monkeypatch):
    """A warning about the photo (here: an animation, of which the first frame is used) is said once, though
    the photo is read first on its own to check it before an engine is opened: it is decoded once, and that
    read is the one stylized."""
    from PIL import Image

    import stylexport.image

    opened = []
    real = stylexport.image._open_unchecked
    monkeypatch.setattr(stylexport.image, "_open_unchecked", lambda path: opened.append(path) or real(path))
    frames = [Image.new("RGB", (30, 20), colour) for colour in ((200, 0, 0), (0, 200, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    with caplog.at_level("WARNING"):
        result = run("stylize", tmp_path / "anim.gif", "-m", ckpt, "-b", "torch-fp32", "-o", tmp_path / "o.png")
    assert result.exit_code == 0, result.output
    assert caplog.text.count("has 2 frames: only the first is read") == 1
    assert opened == [tmp_path / "anim.gif"]


def test_stylize_bad_inputs(tmp_path, make_image, ckpt):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "o.jpg"
    one_line_error(run("stylize", bad, "-m", ckpt, "-o", out), "broken.jpg")
    assert not out.exists()

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    one_line_error(run("stylize", empty, "-m", ckpt, "-o", out), "empty.png", "empty")

    (tmp_path / "nothing").mkdir()
    one_line_error(run("stylize", tmp_path / "nothing", "-m", ckpt, "-o", out), "no images in folder")

    tiny = make_image("tiny.png", 8, 30)  # was refused ("at least 16"): the size policy pads it and crops back
    result = run("stylize", tiny, "-m", ckpt, "-o", out)
    assert result.exit_code == 0 and Image.open(out).size == (30, 8), result.output
    out.unlink()

    photo = make_image("ok.png")
    one_line_error(run("stylize", photo, "-m", tmp_path / "missing.safetensors", "-o", out), "missing.safetensors")

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    one_line_error(run("stylize", photo, "-m", ckpt, "-o", blocker / "out.jpg"), "afile")
    assert not out.exists()

    # one photo, -o with a suffix that is no image type: a typo made a folder called out.jgp (photo inside)
    one_line_error(run("stylize", photo, "-m", ckpt, "-o", tmp_path / "out.jgp"), "out.jgp: '.jgp' is not an image "
                   "type stylexport writes (.jpg, .jpeg, .png", "give a name without a suffix or an existing folder")
    assert not (tmp_path / "out.jgp").exists()
    (tmp_path / "results.v2").mkdir()  # an existing folder with a dot in its name is still a folder
    assert run("stylize", photo, "-m", ckpt, "-o", tmp_path / "results.v2").exit_code == 0
    assert (tmp_path / "results.v2" / "ok.png").is_file()


def test_a_training_run_folder_stands_for_the_weights_it_has_reached(tmp_path, make_image, random_model):
    """`stylexport train -o runs/x` says its model is runs/x/model.safetensors; `-m runs/x` runs that file
    (said on stderr with its step) in stylize, export and info, and `train --init runs/x` starts from it.
    A folder that is not a run (or a web app) is called a folder, not 'model not found'."""
    from stylexport.image import read_image

    run_dir = tmp_path / "runs" / "waves"
    run_dir.mkdir(parents=True)
    save_checkpoint(run_dir / "model.safetensors", random_model, {"style_name": "waves", "step": 7})
    photo = make_image("a.png", 37, 53)
    by_folder, by_file = tmp_path / "by_folder.png", tmp_path / "by_file.png"
    result = run("stylize", photo, "-m", run_dir, "-b", "torch-fp32", "-o", by_folder)
    assert result.exit_code == 0, result.output
    assert f"model {run_dir / 'model.safetensors'}: the weights training run {run_dir} has reached (step 7)" \
        in result.stderr
    assert run("stylize", photo, "-m", run_dir / "model.safetensors", "-b", "torch-fp32", "-o", by_file).exit_code == 0
    assert bool((read_image(by_folder) == read_image(by_file)).all())

    result = run("info", run_dir, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["path"] == str(run_dir / "model.safetensors")

    result = run("export", run_dir, "--onnx", "-o", tmp_path / "exported")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exported" / "waves.onnx").is_file()

    (tmp_path / "photos").mkdir()
    one_line_error(run("stylize", photo, "-m", tmp_path / "photos", "-o", tmp_path / "o.png"),
                   "photos is a folder, not a model file", "no model.safetensors")
    one_line_error(run("export", tmp_path / "photos", "--onnx", "-o", tmp_path / "e"), "photos is a folder")
    one_line_error(run("info", tmp_path / "photos"), "photos is a folder")


def test_stylize_unknown_architecture(tmp_path, make_image, random_model):
    from safetensors.torch import save_file

    path = tmp_path / "future.safetensors"
    save_file({k: v.contiguous() for k, v in random_model.state_dict().items()}, path,
              metadata={"stylexport": json.dumps({"architecture": "transformer-net/2"})})
    one_line_error(run("stylize", make_image(), "-m", path, "-o", tmp_path / "o.jpg"), "transformer-net/2")


def test_gatys_writes_image_and_losses(tmp_path, make_image, vgg):
    out = tmp_path / "g" / "out.png"
    result = run("gatys", make_image("c.png", 40, 40), make_image("s.png", 40, 40, seed=5), "-o", out,
                 "--iterations", "3", "--size", "32", "--vgg-weights", VGG_SPEC)
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["iterations"] == 3 * 3 and set(report["losses"]) == {"total", "content", "style", "tv"}
    assert report["stages"] == [{"scale": 0.5, "iterations": 3}, {"scale": 0.75, "iterations": 3},
                                {"scale": 1.0, "iterations": 3}]
    assert report["config"]["style_layer_weights"] == [0.01, 0.1, 1.0, 1.0]
    assert report["vgg_preprocessing"] == "caffe"
    from PIL import Image

    assert Image.open(out).size == (32, 32)


@pytest.mark.parametrize("args, words", [
    (("--scales", "1,0.5"), ("rise to 1.0",)),
    (("--scales", "0.5,1", "--iterations", "1,2,3"), ("one per scale",)),
    (("--style-layer-weights", "1,1"), ("one weight per style layer",)),
    (("--iterations", "ten"), ("--iterations", "comma-separated")),
])
def test_gatys_bad_stage_options_are_one_line(tmp_path, make_image, args, words):
    out = tmp_path / "o.png"
    result = run("gatys", make_image(), make_image("s.png"), "-o", out, "--size", "32", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and all(w in result.output for w in words), result.output
    assert not out.exists()


@pytest.mark.parametrize(("argv", "words"), [
    (["gatys", "--size", "-3"], "error: --size -3: input should be greater than or equal to 16 (see "),
    (["gatys", "--size=abc"], "error: --size abc: input should be a valid integer"),
    (["stylize", "p.png", "-m", "m.onnx", "--strength", "2"], "error: --strength 2: input should be less than or "
                                                              "equal to 1"),
    (["cache", "clear", "--older-than", "-1"], "error: --older-than -1: input should be greater than or equal to 0"),
])
def test_option_values_out_of_range_are_named_in_the_error(argv, words):
    """typer's own range and type messages left out the value ("Invalid value for '--size': Input should be ...")."""
    result = runner.invoke(app, argv)
    one_line_error(result, words, "--help)")


def test_gatys_missing_weights_message(tmp_path, make_image):
    out = tmp_path / "o.png"
    result = run("gatys", make_image(), make_image("s.png"), "-o", out, "--vgg-weights", tmp_path / "no.pth")
    one_line_error(result, "no.pth", "offline-vgg")
    assert not out.exists()


def test_stylize_help_says_which_files_to_trust():
    result = run("stylize", "--help")
    text = " ".join(result.output.split())
    assert "load them only from sources you trust" in text and ".safetensors" in text and "are data" in text


def test_help_shows_flags_without_a_type_and_paragraphs_as_one_line_each():
    """The program's own options and every command's --help read '<bool>' as if they took a value, and the
    docstrings' line breaks cut paragraphs (and the command list's summaries) into ragged lines."""
    wide = CliRunner(env={"COLUMNS": "300"})
    for args in ([], ["engines"], ["engines", "build"], ["doctor"], ["stylize"], ["export"]):
        text = wide.invoke(app, [*args, "--help"]).output
        assert "--help" in text and "<bool>" not in text, args
    listing = wide.invoke(app, ["--help"]).output
    doctor = next(line for line in listing.splitlines() if " doctor " in line)
    assert doctor.rstrip(" │").endswith("each backend's status (runs here, or why not).")
    usage = wide.invoke(app, ["stylize", "--help"]).output
    assert "contain native code that runs when they are loaded; load them only" in usage


def test_help_completion_and_option_errors_answer_without_importing_torch():
    """`--help`, a mistyped option, the cache's listing and shell completion (which runs the program on every TAB)
    never need torch, whose import alone takes seconds on a small CPU: the CLI imports it only in a command's
    body."""
    import os
    import subprocess
    import sys

    code = ("import sys\n"
            "from typer.testing import CliRunner\n"
            "from stylexport.cli import app\n"
            "runner = CliRunner()\n"
            "for args in (['--help'], ['bench', '--help'], ['export', '--help'], ['stylize', 'a.jpg'],\n"
            "             ['cache', 'list'], ['cache', 'clear', '--dry-run']):\n"
            "    print(runner.invoke(app, args).exit_code)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "0", "0", "2", "0", "0", "False"]
    completion = subprocess.run([sys.executable, "-c", "import sys\nfrom stylexport.cli import app\n"
                                 "try:\n    app(prog_name='stylexport')\nfinally:\n"
                                 "    print('torch' in sys.modules)"],
                                env={**os.environ, "_STYLEXPORT_COMPLETE": "complete_bash",
                                     "COMP_WORDS": "stylexport sty", "COMP_CWORD": "1"},
                                capture_output=True, text=True)
    assert completion.stdout.split() == ["styles", "stylize", "False"]


def test_long_jobs_print_progress_lines_when_output_is_not_a_terminal(tmp_path, make_image, vgg, monkeypatch):
    import stylexport.cli as cli

    monkeypatch.setattr(cli._Progress, "every", 0.0)  # every update is "long enough" to report
    result = run("gatys", make_image("c.png", 40, 40), make_image("s.png", 40, 40, seed=5), "-o",
                 tmp_path / "o.png", "--iterations", "2", "--scales", "1", "--size", "32", "--vgg-weights", VGG_SPEC)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("gatys lbfgs: ")]
    assert lines and lines[-1].startswith("gatys lbfgs: 2/2 after")
    assert "━" not in result.stderr  # no bar drawing in a log


def test_a_long_silent_step_still_prints_progress_lines_when_output_is_not_a_terminal(monkeypatch, capsys):
    """A step that reports nothing for a long time (an ExecuTorch lowering, a TensorRT build) is not silent in a
    log: the heartbeat prints its task's line every ``every`` seconds, and stops with the bar."""
    import time

    import stylexport.cli as cli

    monkeypatch.setattr(cli._Progress, "every", 0.05)
    with cli._progress() as bar:
        bar.add_task("export", total=2, info="executorch")
        time.sleep(0.5)  # no update, no advance
    beats = [line for line in capsys.readouterr().err.splitlines() if line.startswith("export: 0/2 after")]
    assert len(beats) >= 2 and beats[0].endswith("executorch")
    time.sleep(0.2)
    assert capsys.readouterr().err == ""  # stopped with the bar


def test_progress_in_a_log_leaves_no_blank_lines_and_a_task_of_unknown_length_says_it_runs(monkeypatch, capsys):
    """Outside a terminal the bar is never drawn, so stopping it prints nothing (rich's live display left a blank
    line per bar in logs); a task with no total (an export, a video of unknown length) says 'still running'."""
    import time

    import stylexport.cli as cli

    monkeypatch.setattr(cli._Progress, "every", 0.05)
    with cli._progress() as bar:
        bar.add_task("export", total=None, info="openvino")
        time.sleep(0.2)
    with cli._progress() as bar:
        bar.add_task("quick", total=1, info="")
    lines = capsys.readouterr().err.split("\n")
    assert lines[-1] == "" and "" not in lines[:-1]
    assert lines[0].startswith("export: still running after 0 s; openvino")


def test_first_stylize_of_a_checkpoint_says_it_exports_its_engine_once(tmp_path, make_image, ckpt, monkeypatch):
    """The first stylize of a checkpoint waits for its engine's export (seconds, minutes for some engines): one
    line says what is exported and where it is cached; the next run reuses it and says nothing of it."""
    monkeypatch.setenv("STYLEXPORT_CACHE_DIR", str(tmp_path / "cache"))  # a cache no other test filled
    photo = make_image("a.png", 40, 48)
    first = run("stylize", photo, "-m", ckpt, "-o", tmp_path / "a1.png")
    assert first.exit_code == 0, first.output
    engine = first.stdout.split("(engine ")[1].rstrip(")\n")
    assert engine != "torch-fp32"  # a format to export exists here (OpenVINO or ONNX Runtime, both in the dev extra)
    said = [line for line in first.stderr.splitlines() if line.startswith("exporting ")]
    assert said == [f"exporting model.safetensors to {formats.ENGINES[engine].formats[0]} for engine {engine}, once: "
                    f"later runs reuse it from {tmp_path / 'cache' / 'engines'}/{sha256_file(ckpt)}"]
    again = run("stylize", photo, "-m", ckpt, "-o", tmp_path / "a2.png")
    assert again.exit_code == 0 and "exporting" not in again.stderr and f"(engine {engine})" in again.stdout


def test_progress_lines_say_how_long_is_left_at_the_pace_so_far(capsys):
    """A log reader of a long run (training for hours) sees the time left, at the pace since the first step
    (not counting the set-up before it, nor the steps a resumed run did before it started)."""
    import stylexport.cli as cli

    now = [0.0]
    bar = cli._Progress(get_time=lambda: now[0])
    bar.every = 0.0
    bar._lines = True  # as when stderr is not a terminal
    task = bar.add_task("train", total=400, info="loss 3.2")
    resumed = bar.add_task("resumed", total=5100, info="")
    now[0] = 10.0
    bar.update(task, completed=1)  # the first step: no pace yet
    bar.update(resumed, completed=5000)
    now[0] = 7200.0
    bar.update(task, completed=100)  # 7190 s for 99 steps, 300 to go: 21788 s
    bar.update(resumed, completed=5010)  # 719 s a step, 90 to go: 64710 s
    now[0] = 7230.0
    bar.update(task, completed=399)  # 7220 s for 398 steps, 1 to go: 18 s
    bar.update(task, completed=400)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("train: ", "resumed: "))]
    assert lines == ["train: 1/400 after 10 s; loss 3.2",
                     "resumed: 5000/5100 after 10 s",
                     "train: 100/400 after 7200 s, about 6.1 h left; loss 3.2",
                     "resumed: 5010/5100 after 7200 s, about 18.0 h left",
                     "train: 399/400 after 7230 s, about 18 s left; loss 3.2",
                     "train: 400/400 after 7230 s; loss 3.2"]
    assert [cli._duration(s) for s in (0.4, 99.4, 99.6, 5969, 5971)] == ["0 s", "99 s", "2 min", "99 min", "1.7 h"]


def test_heartbeat_lines_between_reports_count_down_and_a_time_limit_is_said(capsys):
    """A task that reports now and then (training did, every 10 steps); the heartbeat prints between reports. Its
    line kept the last report's step but divided the time since by it, so in a log the time left jumped up and
    down (9.2 h, 15.3 h, 10.2 h...). Now it counts down from the last report at that report's pace; and a run that its
    --max-minutes limit will stop first says so instead of naming hours it will not run."""
    import stylexport.cli as cli

    now = [0.0]
    bar = cli._Progress(get_time=lambda: now[0])
    bar.every = 0.0
    bar._lines = True
    task = bar.add_task("train", total=1000, info="")
    now[0] = 10.0
    bar.update(task, completed=1)
    now[0] = 110.0
    bar.update(task, completed=11)  # 10 s a step, 989 to go: 9890 s
    now[0] = 1000.0
    bar._maybe_print(task)  # the heartbeat, no new report: 9890 - 890 = 9000 s (not 99 s a step: 27.2 h)
    now[0] = 1100.0
    bar.update(task, completed=21, stop_at=1300.0)  # 54.5 s a step, 979 to go; but 200 s to its limit
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train: ")]
    assert lines == ["train: 1/1000 after 10 s",
                     "train: 11/1000 after 110 s, about 2.7 h left",
                     "train: 11/1000 after 1000 s, about 2.5 h left",
                     "train: 21/1000 after 1100 s, stopping at its time limit in 3 min"]


def test_train_tells_progress_when_its_time_limit_ends_it(tmp_path, make_image, vgg, monkeypatch):
    """train --max-minutes passes the time to its limit with every report, for the line above."""
    import stylexport.cli as cli

    seen = []
    real = cli._Progress.update

    def spy(self, task_id, **kwargs):
        seen.append(kwargs.get("stop_at"))
        return real(self, task_id, **kwargs)

    monkeypatch.setattr(cli._Progress, "update", spy)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        make_image(f"photos/p{i}.png", 40, 40, seed=i)
    args = ("train", "--style", make_image("s.png", 40, 40, seed=9), "--data", photos, "--steps", "2",
            "--image-size", "32", "--style-size", "48", "--batch-size", "1", "--workers", "0",
            "--vgg-weights", VGG_SPEC)
    limited = run(*args, "--max-minutes", "60", "-o", tmp_path / "run")
    assert limited.exit_code == 0, limited.output
    assert seen and all(s is not None and 3500 < s <= 3600 + 60 for s in seen)
    seen.clear()
    assert run(*args, "-o", tmp_path / "run2").exit_code == 0
    assert seen and all(s is None for s in seen)


def test_library_warnings_read_as_the_clis_own_and_each_is_said_once(tmp_path, ckpt):
    """A warning the library logs (here: photos under the network's 16 px smallest side, padded) was printed as
    `WARNING stylexport.runtime.base: ...`, once per photo and once per style in `styles --preview`, beside
    the CLI's own `warning: ...` lines. Now it reads `warning: ...`, each distinct line once; `-v` keeps the
    level and logger."""
    import subprocess
    import sys

    photos = tmp_path / "icons"
    photos.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (12, 10), (200, 40, 40)).save(photos / name)
    command = [sys.executable, "-m", "stylexport", "stylize", str(photos), "-m", str(ckpt), "-b", "torch-fp32"]
    done = subprocess.run([*command, "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    padding = [line for line in done.stderr.splitlines() if "reflect-padding a 10x12 input" in line]
    assert len(padding) == 1 and padding[0].startswith("warning: torch-fp32 takes sides of at least 16 px"), \
        done.stderr
    assert "WARNING" not in done.stderr
    verbose = subprocess.run([*command[:3], "-v", *command[3:], "-o", str(tmp_path / "out-v")], capture_output=True,
                             text=True, timeout=300)
    assert verbose.returncode == 0, verbose.stderr
    assert "WARNING stylexport.runtime.base: torch-fp32 takes sides of at least 16 px" in verbose.stderr
