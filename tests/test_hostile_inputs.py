"""Ordinary and hostile input from the reliability audit: every case ends in one line (or a clean skip), and
nothing already written is lost or left half-written."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from PIL import Image
from typer.testing import CliRunner

from stylexport.cli import app
from stylexport.errors import StylexportError

from .conftest import VGG_SPEC, one_line_error

runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


# ---- 4. decompression bombs: one line naming the file, its pixel count, the limit and how to raise it


def test_decompression_bomb_in_stylize_gatys_and_train(tmp_path, make_image, model_and_ckpt):
    _, ckpt = model_and_ckpt
    big = make_image("big.png", 48, 64)  # 3,072 pixels, over a limit of 1,000
    env = {"STYLEXPORT_MAX_PIXELS": "1000"}
    words = ("big.png", "64x48 = 3,072 pixels", "limit of 1,000", "STYLEXPORT_MAX_PIXELS=3072")
    one_line_error(run("stylize", big, "-m", ckpt, "-o", tmp_path / "o.png", env=env), *words)
    one_line_error(run("gatys", big, big, "-o", tmp_path / "g.png", "--size", "32", env=env), *words)
    one_line_error(run("train", "--style", big, "--data", tmp_path, "-o", tmp_path / "run", "--steps", "1",
                       env=env), *words)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "g.png").exists()
    # raised on purpose, the same image is read
    result = run("stylize", big, "-m", ckpt, "-o", tmp_path / "o.png", env={"STYLEXPORT_MAX_PIXELS": "3072"})
    assert result.exit_code == 0, result.output


def test_a_strip_too_narrow_for_the_vgg16_loss_is_refused_with_the_size_that_runs(tmp_path, make_image, vgg,
                                                                                    monkeypatch):
    """A 400x16 photo at gatys' --size 64 is 64x3: VGG16's third pooling ended gatys, sweep and train in a torch
    traceback ("Output size is too small"); now one line naming the image, its size there and the --size that runs
    it, before the VGG loads."""
    monkeypatch.setattr("stylexport.vgg.load_vgg", _never)
    strip, photo = make_image("strip.png", 16, 400), make_image("photo.png", 48, 64)
    one_line_error(run("gatys", strip, photo, "-o", tmp_path / "g.png", "--size", "64"),
                   f"content image {strip} is 64x3 at --size 64: the VGG16 loss needs at least 16 px a side; use "
                   "--size 400 or more")
    one_line_error(run("gatys", photo, strip, "-o", tmp_path / "g.png", "--size", "64", "--style-size", "100"),
                   f"style image {strip} is 100x4 at --style-size 100", "use --style-size 400 or more")
    one_line_error(run("sweep", photo, strip, "-o", tmp_path / "s.png", "--size", "64"),
                   f"style image {strip} is 64x3 at --size 64")
    one_line_error(run("train", "--style", strip, "--data", tmp_path, "-o", tmp_path / "run", "--steps", "1",
                       "--style-size", "64"), f"style image {strip} is 64x3 at --style-size 64")
    assert not any((tmp_path / name).exists() for name in ("g.png", "s.png", "run"))
    monkeypatch.undo()
    result = run("gatys", strip, photo, "-o", tmp_path / "g.png", "--size", "400", "--iterations", "1",
                 "--scales", "1", "--vgg-weights", VGG_SPEC)  # the size it names runs
    assert result.exit_code == 0, result.output


# ---- 5. one bad image does not stop a folder: every good one is written, every bad one named


def test_folder_with_bad_images_writes_the_good_ones_and_names_the_bad(tmp_path, make_image, model_and_ckpt):
    _, ckpt = model_and_ckpt
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "c.png"):
        make_image(name).rename(src / name)
    (src / "b.jpg").write_bytes(b"not a jpeg")
    (src / "d.png").write_bytes(b"")
    result = run("stylize", src, "-m", ckpt, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
    assert "failed: " + str(src / "b.jpg") in result.stderr and "failed: " + str(src / "d.png") in result.stderr
    assert "is empty" in result.stderr and "cannot read image" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: 2 of 4 images failed")


# ---- 6. outputs keep the input tree's layout; true collisions are refused before anything is written


def test_same_names_in_two_folders_keep_their_folders(tmp_path, make_image, model_and_ckpt):
    _, ckpt = model_and_ckpt
    for sub in ("in1", "in2/deep"):
        (tmp_path / sub).mkdir(parents=True)
        make_image("x.jpg").rename(tmp_path / sub / "x.jpg")
    result = run("stylize", tmp_path / "in1" / "x.jpg", tmp_path / "in2", "-m", ckpt, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.jpg")) == \
        ["in1/x.jpg", "in2/deep/x.jpg"]


def test_true_collision_is_refused_before_writing(tmp_path, make_image, model_and_ckpt):
    _, ckpt = model_and_ckpt
    src = tmp_path / "in"
    src.mkdir()
    make_image("x.png").rename(src / "x.png")
    Image.open(src / "x.png").save(src / "x.gif")  # .gif is saved as .png: the same output file
    result = run("stylize", src, "-m", ckpt, "-o", tmp_path / "out")
    one_line_error(result, "x.gif", "x.png", "would both be written to", "nothing was written")
    assert not (tmp_path / "out").exists()


def test_an_output_that_is_an_input_is_refused_and_the_original_kept(tmp_path, make_image, model_and_ckpt,
                                                                      monkeypatch):
    """`stylize photo.jpg -o photo.jpg`, `-o` the inputs' own folder, or a link to the photo replaced the user's
    original with the stylized image; gatys and video the same. Now one line, before any work."""
    _, ckpt = model_and_ckpt
    monkeypatch.setattr("stylexport.cli._open_model", _never)
    monkeypatch.setattr("stylexport.gatys.stylize_gatys", _never)
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = make_image("a.jpg").rename(photos / "a.jpg")
    make_image("b.png", seed=2).rename(photos / "b.png")
    original = photo.read_bytes()
    (tmp_path / "link.jpg").symlink_to(photo)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"refused before it is decoded")
    for args in (["stylize", photo, "-m", ckpt, "-o", photo],
                 ["stylize", photos, "-m", ckpt, "-o", photos],
                 ["stylize", photos, "-m", ckpt, "-o", tmp_path / "photos" / ".." / "photos"],
                 ["stylize", tmp_path / "link.jpg", "-m", ckpt, "-o", photo],
                 ["gatys", photo, make_image("s.png"), "-o", photo],
                 ["video", clip, "-m", ckpt, "-o", clip]):
        one_line_error(run(*args), "is the input", "itself: writing it would replace your original",
                       "nothing was written")
    assert photo.read_bytes() == original and clip.read_bytes() == b"refused before it is decoded"


# ---- 7. tracebacks that became one line


def test_one_channel_onnx_model_is_refused_with_its_signature(tmp_path, make_image):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["gray"], ["out"])], "g",
                              [helper.make_tensor_value_info("gray", TensorProto.FLOAT, [1, 1, 64, 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 64, 64])])
    model = tmp_path / "gray.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), model)
    one_line_error(run("stylize", make_image(), "-m", model, "-o", tmp_path / "o.png"),
                   "gray [1, 1, 64, 64]", "(N, 3, H, W)")


@pytest.mark.parametrize("content, words", [
    (b"\x89PNG not json", "is not text"),
    (b"{not json", "is not valid JSON"),
    (b"[1, 2]", "holds a JSON list"),
])
def test_plan_sidecar_that_is_not_json(tmp_path, content, words):
    from stylexport.runtime.tensorrt_backend import TrtRunner

    plan = tmp_path / "x.plan"
    plan.write_bytes(b"plan")
    (tmp_path / "x.plan.json").write_bytes(content)
    with pytest.raises(StylexportError, match=words) as err:
        TrtRunner(plan)
    assert "x.plan.json" in str(err.value) and "rebuild it with stylexport export --trt" in str(err.value)


def test_a_cache_that_cannot_be_written_names_the_setting_that_moves_it(tmp_path, make_image, model_and_ckpt):
    """The user chose no path for the cache: 'choose another output path' was the wrong advice."""
    _, ckpt = model_and_ckpt
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    env = {"STYLEXPORT_CACHE_DIR": str(blocked)}
    words = (f"cannot write the cache folder {blocked}", "set STYLEXPORT_CACHE_DIR to a folder you can write")
    one_line_error(run("stylize", make_image(), "-m", ckpt, "--backend", "ort-cpu", "-o", tmp_path / "o.png",
                       env=env), *words)
    one_line_error(run("bench", "--backends", "torch-fp32", "--sizes", "32", "--repeats", "1", "--warmup", "0",
                       "-o", tmp_path / "b.json", env=env), *words)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "b.json").exists()
    result = run("stylize", make_image(), "-m", ckpt, "-o", tmp_path / "auto.png", env=env)  # no engine named
    assert result.exit_code == 0 and "engine torch-fp32" in result.output  # the checkpoint itself, on torch
    assert (tmp_path / "auto.png").is_file()


@pytest.mark.parametrize("target", ["/proc/stylexport-test.png", "/sys/stylexport-test.png"])
def test_outputs_under_proc_and_sys(tmp_path, make_image, model_and_ckpt, target):
    _, ckpt = model_and_ckpt
    one_line_error(run("stylize", make_image(), "-m", ckpt, "-o", target), target)


def test_output_naming_an_existing_folder(tmp_path, make_image, model_and_ckpt):
    _, ckpt = model_and_ckpt
    (tmp_path / "x.png").mkdir()
    (tmp_path / "x.png" / "keep.txt").write_text("mine")
    one_line_error(run("stylize", make_image(), "-m", ckpt, "-o", tmp_path / "x.png"), "is an existing folder")
    assert (tmp_path / "x.png" / "keep.txt").read_text() == "mine"


def _never(*args, **kwargs):
    raise AssertionError("the work started although its output could not be written")


@pytest.mark.parametrize("command, work", [
    ("gatys", "stylexport.gatys.stylize_gatys"),
    ("sweep", "stylexport.gatys.sweep"),
    ("bench", "stylexport.bench.run"),
    ("stylize", "stylexport.cli._open_model"),
    ("video", "stylexport.cli._open_model"),
    ("train", "stylexport.train.load_vgg"),
    ("export", "stylexport.export.parity_inputs"),
])
def test_an_output_that_cannot_be_written_is_refused_before_the_work(tmp_path, make_image, model_and_ckpt,
                                                                     monkeypatch, command, work):
    """A file where the output's folder should be, or a folder that takes no files: one line before minutes of
    optimising, timing, exporting or training (gatys wrote nothing after 160 s of L-BFGS; train's run folder
    under a file was a traceback), and the file in the way is untouched."""
    _, ckpt = model_and_ckpt
    monkeypatch.setattr(work, _never)
    blocker = tmp_path / "taken"
    blocker.write_text("mine")
    photo, clip = make_image(), tmp_path / "frames"
    clip.mkdir()
    make_image("f0.png").rename(clip / "f0.png")
    args = {"gatys": ["gatys", photo, photo, "-o", blocker / "out.jpg"],
            "sweep": ["sweep", photo, photo, "-o", blocker / "sheet.jpg"],
            "bench": ["bench", ckpt, "-o", blocker / "bench.json"],
            "stylize": ["stylize", photo, "-m", ckpt, "-o", blocker / "out.jpg"],
            "video": ["video", clip, "-m", ckpt, "-o", blocker / "out.mp4"],
            "train": ["train", "--style", photo, "--data", clip, "--steps", "1", "-o", blocker / "run"],
            "export": ["export", ckpt, "--onnx", "-o", blocker / "exported"]}[command]
    one_line_error(run(*args), f"cannot write {blocker}/", f"{blocker} is a file, not a folder")
    assert blocker.read_text() == "mine"
    if command in ("train", "export"):  # their output is a folder: a file in its place is refused the same way
        one_line_error(run(*args[:-1], blocker), f"output folder {blocker} is an existing file")
    if command != "bench":  # a folder that takes no new files (bench's default output has no folder to refuse)
        readonly = tmp_path / "readonly"
        readonly.mkdir()
        readonly.chmod(0o500)
        try:
            if os.access(readonly, os.W_OK):  # root writes anywhere: /proc takes no files from anyone
                readonly = "/proc"
            out = f"{readonly}/{args[-1].name}" if hasattr(args[-1], "name") else f"{readonly}/out"
            one_line_error(run(*args[:-1], out), f"cannot write {out}: folder {readonly} takes no new files")
        finally:
            if readonly != "/proc":
                readonly.chmod(0o700)


def test_export_refuses_options_it_would_ignore_and_a_bad_calibration_folder_first(tmp_path, model_and_ckpt,
                                                                                     monkeypatch):
    """--calibration without --int8 (or --pte-max-side without --executorch) was silently ignored; an empty or
    missing calibration folder was found only when the INT8 build reached it, after the other formats."""
    _, ckpt = model_and_ckpt
    monkeypatch.setattr("stylexport.export.parity_inputs", _never)
    out = tmp_path / "exported"
    one_line_error(run("export", ckpt, "--onnx", "--calibration", tmp_path, "-o", out),
                   "--calibration", "only changes --int8 exports; add --int8, or leave --calibration out")
    one_line_error(run("export", ckpt, "--pte-max-side", "512", "-o", out),
                   "--pte-max-side 512 only changes --executorch exports")
    (tmp_path / "empty").mkdir()
    one_line_error(run("export", ckpt, "--onnx", "--int8", "--calibration", tmp_path / "empty", "-o", out),
                   "no images in folder", "empty")
    one_line_error(run("export", ckpt, "--int8", "--calibration", tmp_path / "nope", "-o", out), "nope")
    assert not out.exists()


def test_options_that_would_change_nothing_are_refused(tmp_path, make_image, model_and_ckpt, monkeypatch):
    """`video --fps` on a video file (it keeps its own rate), `bench --gatys-iterations/--gatys-sizes` without
    --gatys and `stylize --tile-margin` without --tile were silently ignored: now one line, before a model is
    opened or anything is timed."""
    _, ckpt = model_and_ckpt
    monkeypatch.setattr("stylexport.cli._open_model", _never)
    monkeypatch.setattr("stylexport.bench.run", _never)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not decoded: refused before")
    one_line_error(run("video", clip, "-m", ckpt, "--fps", "5", "-o", tmp_path / "out.mp4"),
                   "--fps 5 sets the frame rate of a folder of frames", "leave --fps out")
    for option in ("--gatys-iterations", "--gatys-sizes"):
        one_line_error(run("bench", ckpt, option, "64", "-o", tmp_path / "b.json"),
                       f"{option} 64 only applies with --gatys; add --gatys")
    one_line_error(run("stylize", make_image(), "-m", ckpt, "--tile-margin", "32", "-o", tmp_path / "o.png"),
                   "--tile-margin 32 only applies with --tile; add --tile SIZE")
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "b.json").exists()


def test_a_tile_the_network_cannot_run_is_refused_once_before_the_model(tmp_path, make_image, model_and_ckpt,
                                                                          monkeypatch):
    """`stylize FOLDER --tile 18` opened the model, then failed every image with the same line ("2 of 2 images
    failed ... the others were written", none was): now one line naming the option and a tile that runs."""
    _, ckpt = model_and_ckpt
    monkeypatch.setattr("stylexport.cli._open_model", _never)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        make_image(name).rename(folder / name)
    one_line_error(run("stylize", folder, "-m", ckpt, "--tile", "18", "-o", tmp_path / "out"),
                   "--tile 18: a tile must be a multiple of 4 px and at least 16; try --tile 20")
    one_line_error(run("stylize", folder, "-m", ckpt, "--tile", "64", "--tile-margin", "30", "-o", tmp_path / "out"),
                   "--tile-margin 30: the margin must be a multiple of 4 px, 0 or more; try --tile-margin 32")
    assert not (tmp_path / "out").exists()


def test_options_with_shown_defaults_are_refused_only_when_given(tmp_path, make_image, model_and_ckpt, monkeypatch):
    """TensorRT's profile options without --trt and `video --crf` for frames or an .avi changed nothing and were
    accepted silently (their defaults are shown in --help, so a value alone cannot say whether the user gave it):
    refused when said, before the export or the model; their defaults alone stay silent."""
    _, ckpt = model_and_ckpt
    monkeypatch.setattr("stylexport.cli._open_model", _never)
    monkeypatch.setattr("stylexport.export.export", _never)
    out = tmp_path / "exported"
    for option, value in (("--min", "32x32"), ("--opt", "720x1280"), ("--max", "2160x3840"), ("--batch", "1,2,4"),
                          ("--workspace", "2")):
        one_line_error(run("export", ckpt, "--onnx", option, value, "-o", out),
                       f"{option} {value}", "only changes --trt exports; add --trt, or leave " + option)
    assert isinstance(run("export", ckpt, "--onnx", "-o", out).exception, AssertionError)  # defaults: it exports
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not decoded: refused before")
    one_line_error(run("video", clip, "-m", ckpt, "--crf", "23", "-o", tmp_path / "frames"),
                   "--crf 23 sets the quality of H.264", "a folder gets lossless PNG frames", "leave --crf out")
    one_line_error(run("video", clip, "-m", ckpt, "--crf", "23", "-o", tmp_path / "out.avi"),
                   ".avi is written as MPEG-4 Part 2")
    one_line_error(run("video", clip, "-m", ckpt, "--crf", "23", "-o", tmp_path / "o.webm"),  # VP9 takes --crf:
                   f"cannot read {clip} as a video")  # on to reading the input, which is not a video
    assert not out.exists() and not (tmp_path / "frames").exists()


# ---- 8. temporaries left by a killed writer are cleaned by the next write; SIGTERM cleans at once


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path, make_image):
    from stylexport.image import read_image, save_image

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".out.png.{dead}.abc123.tmp.png"
    legacy = tmp_path / ".out.png.k3j2x9ab.tmp.png"  # what earlier versions left (no pid)
    live = tmp_path / f".out.png.{os.getppid()}.zzz.tmp.png"  # a writer that still runs: left alone
    other = tmp_path / f".other.png.{dead}.abc.tmp.png"  # another target's: not ours to touch
    for p in (stale, legacy, live, other):
        p.write_bytes(b"partial")
    save_image(read_image(make_image()), tmp_path / "out.png")
    assert not stale.exists() and not legacy.exists()
    assert live.exists() and other.exists() and (tmp_path / "out.png").is_file()


def test_sigterm_during_a_write_leaves_no_temporary(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, sys
        from stylexport.cli import _terminate
        from stylexport.fileio import atomic_path
        signal.signal(signal.SIGTERM, _terminate)
        with atomic_path({str(tmp_path / "model.onnx")!r}) as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert list(tmp_path.iterdir()) == []
