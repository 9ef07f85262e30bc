"""stylexport video: synthetic clips made here with PyAV round-trip with frames, size, rate and audio kept."""

import fractions

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stylexport.checkpoint import save_checkpoint
from stylexport.cli import app
from stylexport.errors import StylexportError
from stylexport.image import read_image
from stylexport.runtime import TorchRunner

av = pytest.importorskip("av", reason="PyAV is not installed: pip install 'stylexport[video]'")
from stylexport.video import stylize_video  # noqa: E402

runner = CliRunner()


def make_clip(path, *, frames=12, w=64, h=48, fps=10, audio=True, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = w, h, "yuv444p"
    video.options = {"qp": "0"}  # lossless: a static clip decodes to identical frames
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 80 * np.sin(xx / 7.0), 128 + 80 * np.cos(yy / 5.0), 128 + 60 * np.sin((xx + yy) / 9.0)], -1)
    for i in range(frames):
        img = np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = i, fractions.Fraction(1, fps)
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    out.close()
    if audio:
        _add_audio(path, seconds=frames / fps)
    return path


def _add_audio(path, seconds):
    """Remux with a 440 Hz AAC track (streams must be added before the header is written)."""
    src = av.open(str(path))
    tmp = path.with_name("with_audio" + path.suffix)
    out = av.open(str(tmp), "w")
    vin = src.streams.video[0]
    vout = out.add_stream_from_template(vin)
    aout = out.add_stream("aac", rate=48000)
    aout.layout = "mono"
    for packet in src.demux(vin):
        if packet.dts is None:
            continue
        packet.stream = vout
        out.mux(packet)
    samples = int(48000 * seconds)
    pcm = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)[None]
    for s in range(0, samples, 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, s:s + 1024]), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, s
        out.mux(aout.encode(frame))
    out.mux(aout.encode(None))
    out.close()
    src.close()
    tmp.replace(path)


def probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        return {"frames": n, "size": (v.codec_context.width, v.codec_context.height), "rate": v.average_rate,
                "audio": [s.codec_context.name for s in c.streams.audio], "duration": c.duration / 1e6}


@pytest.fixture
def model_runner(random_model):
    return TorchRunner(random_model)


def test_clip_round_trips_with_frames_size_rate_and_audio(tmp_path, model_runner):
    clip = make_clip(tmp_path / "clip.mp4")
    before = probe(clip)
    assert before["audio"] == ["aac"] and before["frames"] == 12
    report = stylize_video(clip, tmp_path / "out.mp4", model_runner, batch=4)
    after = probe(tmp_path / "out.mp4")
    assert after["frames"] == 12 and after["size"] == (64, 48) and after["rate"] == 10
    assert after["audio"] == ["aac"] and report.audio == "copied"
    assert after["duration"] == pytest.approx(before["duration"], abs=0.1)
    assert report.frames == 12 and report.codec == "libx264"


def test_sound_a_container_cannot_take_is_re_encoded_to_one_it_can(tmp_path, model_runner):
    """`video phone.mp4 -o clip.webm`: a WebM takes no AAC, and the re-encode tried AAC alone, so the command
    ended in a traceback ("'webm' format does not support 'aac' codec"); that WebM's Opus to a .mov ended in
    another ("opus only supported in MP4"). Now the sound is re-encoded to the first codec the container
    takes, tried on a header in memory, its length kept."""
    clip = make_clip(tmp_path / "clip.mp4", frames=10)
    report = stylize_video(clip, tmp_path / "out.webm", model_runner)
    assert report.audio == "re-encoded (libopus)"
    after = probe(tmp_path / "out.webm")
    assert after["audio"] == ["opus"] and after["frames"] == 10
    with av.open(str(tmp_path / "out.webm")) as written:
        seconds = sum(frame.samples for frame in written.decode(audio=0)) / 48000
    assert seconds == pytest.approx(1.0, abs=0.05)  # the clip's second of 440 Hz
    # and back: a QuickTime file takes the Opus stream when it is added, and refuses it as its header is written
    report = stylize_video(tmp_path / "out.webm", tmp_path / "back.mov", model_runner)
    assert report.audio == "re-encoded (aac)" and probe(tmp_path / "back.mov")["audio"] == ["aac"]
    assert stylize_video(clip, tmp_path / "same.mov", model_runner).audio == "copied"


def test_folders_of_frames_in_and_out(tmp_path, model_runner):
    clip = make_clip(tmp_path / "clip.mp4", frames=5, audio=False)
    report = stylize_video(clip, tmp_path / "frames", model_runner)
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"frame_{i:06d}.png" for i in range(5)] and report.frames == 5
    report = stylize_video(tmp_path / "frames", tmp_path / "again.mkv", model_runner, fps=24)
    after = probe(tmp_path / "again.mkv")
    assert after["frames"] == 5 and after["rate"] == 24 and after["audio"] == []


def test_flicker_zero_for_static_clip_and_stabilization_lowers_it_on_a_noisy_one(tmp_path, model_and_ckpt):
    flickery = TorchRunner(model_and_ckpt[0])  # a high-gain random network: it amplifies frame-to-frame noise
    static = stylize_video(make_clip(tmp_path / "static.mp4", audio=False), tmp_path / "s.mp4", flickery)
    assert static.flicker_raw == pytest.approx(0.0, abs=1e-6)
    noisy_clip = make_clip(tmp_path / "noisy.mp4", audio=False, noise=6.0)
    plain = stylize_video(noisy_clip, tmp_path / "n.mp4", flickery)
    stabilized = stylize_video(noisy_clip, tmp_path / "n2.mp4", flickery, stabilize=0.8)
    assert plain.flicker_raw > 0.5 and plain.flicker_out == plain.flicker_raw
    assert stabilized.flicker_raw == pytest.approx(plain.flicker_raw)
    assert stabilized.flicker_out < 0.5 * stabilized.flicker_raw
    print(f"flicker on the noisy clip: {stabilized.flicker_raw:.3f} -> {stabilized.flicker_out:.3f} levels")


def test_video_controls_strength_zero_returns_the_frames(tmp_path, model_runner):
    clip = make_clip(tmp_path / "clip.mp4", frames=3, audio=False)
    stylize_video(clip, tmp_path / "orig", model_runner, strength=0.0)
    from stylexport.image import read_image

    with av.open(str(clip)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    got = read_image(tmp_path / "orig" / "frame_000000.png").permute(1, 2, 0).numpy()
    assert np.array_equal(got.astype(np.uint8), first)


ORANGE = (214, 101, 40)


def _orange_clip(path, w: int, h: int, matrix: str, options: dict, frames: int = 2):
    """``frames`` frames of one orange, converted to YUV 4:4:4 with ``matrix`` (TV range) and encoded losslessly;
    ``options`` may tag the stream (what it says of its colours)."""
    orange = np.zeros((h, w, 3), np.uint8)
    orange[:] = ORANGE
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=10)
    video.width, video.height, video.pix_fmt, video.options = w, h, "yuv444p", {"qp": "0", **options}
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(orange, format="rgb24").reformat(
            format="yuv444p", dst_colorspace=matrix, dst_color_range="MPEG")
        frame.pts, frame.time_base = i, fractions.Fraction(1, 10)
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    out.close()
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_a_video_written_says_its_colours_are_bt709_and_is_converted_so(tmp_path, model_runner, suffix):
    """The frames went to the encoder through FFmpeg's default BT.601 matrix, in a stream that named no colour
    space: a player takes an untagged HD stream for BT.709, so an orange (214, 101, 40) showed as (224, 108, 35).
    Now the stream is tagged BT.709 (matrix, primaries, transfer; TV range) and converted with that matrix: read
    as its tags say, or as a player reads HD, the colour comes back. The input is a phone's kind of video, BT.709
    and tagged so: PyAV before 17 read every such video through BT.601 (the orange as 203, 92, 44), hence
    av>=17."""
    from stylexport.video import COLOUR_TAGS

    clip = _orange_clip(tmp_path / "orange.mp4", 64, 48, "ITU709", COLOUR_TAGS, frames=3)
    stylize_video(clip, tmp_path / f"out{suffix}", model_runner, strength=0.0)  # the frames themselves
    with av.open(str(tmp_path / f"out{suffix}")) as written:
        context = written.streams.video[0].codec_context
        assert (context.colorspace, context.color_primaries, context.color_trc, context.color_range) == (1, 1, 1, 1)
        frame = next(written.decode(video=0))
        for seen in (frame.to_ndarray(format="rgb24"),  # by its tags
                     frame.reformat(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG").to_ndarray()):
            assert np.abs(seen[24, 32].astype(int) - ORANGE).max() <= 2, seen[24, 32]


@pytest.mark.parametrize(("size", "matrix"), [((1280, 720), "ITU709"), ((640, 480), "ITU601")], ids=["hd", "sd"])
def test_a_video_that_names_no_matrix_is_read_as_players_show_it(tmp_path, model_runner, size, matrix):
    """A stream with no colour tags (a screen recording, an old export): FFmpeg converts it as BT.601 whatever
    its size, where players (mpv's rule: 1280 wide or over 576 high) show an HD one as BT.709, so an HD clip's
    orange (214, 101, 40) was read as (203, 92, 44). Now HD is read as BT.709 and SD as BT.601."""
    w, h = size
    clip = _orange_clip(tmp_path / "untagged.mp4", w, h, matrix, {})
    with av.open(str(clip)) as written:
        assert written.streams.video[0].codec_context.colorspace == 2  # unspecified
    stylize_video(clip, tmp_path / "frames", model_runner, strength=0.0)
    got = read_image(tmp_path / "frames" / "frame_000000.png")[:, h // 2, w // 2]
    assert (got - torch.tensor(ORANGE, dtype=torch.float32)).abs().max() <= 2, got.tolist()


def _hdr_clip(path, y10: int, transfer: str, u10: int = 512, v10: int = 512):
    """Three frames of one 10-bit BT.2020 colour (limited range: Y 64..940), tagged HLG or PQ, losslessly."""
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=10)
    video.width, video.height, video.pix_fmt = 64, 48, "yuv444p10le"
    video.options = {"colorspace": "bt2020nc", "color_primaries": "bt2020", "color_range": "tv", "qp": "0",
                     "color_trc": {"HLG": "arib-std-b67", "PQ": "smpte2084"}[transfer]}
    for i in range(3):
        frame = av.VideoFrame(64, 48, "yuv444p10le")
        for plane, value in zip(frame.planes, (y10, u10, v10), strict=True):
            plane.update(np.full(plane.buffer_size // 2, value, "<u2").tobytes())
        frame.pts, frame.time_base = i, fractions.Fraction(1, 10)
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    out.close()
    return path


@pytest.mark.parametrize(("transfer", "y10", "grey"), [
    # HLG 75 % (Y 721): scene light 0.265, 203 nits on a 1000-nit display (OOTF 1000 * 0.265^1.2): reference
    # white, 1.0 SDR light, over the 0.75 knee: 0.75 + 0.25 / (1 + 0.25 / 0.25) = 0.875, gamma 2.4: 241
    ("HLG", 721, 241),
    # HLG 50 % (Y 502): scene 1/12, 1000 * (1/12)^1.2 = 50.7 nits, 0.2497 of white, under the knee: 143
    ("HLG", 502, 143),
    # HLG 100 % (Y 940): 1000 nits, 4.93 x white: 0.75 + 4.18 / (1 + 4.18 / 0.25) = 0.986: 254, not clipped flat
    ("HLG", 940, 254),
    # PQ 58 % (Y 572): 202.7 nits, PQ's EOTF: reference white again: 241 (240 with the 10-bit rounding)
    ("PQ", 572, 241),
], ids=["hlg-white", "hlg-half", "hlg-peak", "pq-white"])
def test_an_hdr_video_is_mapped_to_sdr_as_it_is_read(tmp_path, model_runner, transfer, y10, grey):
    """A phone's HDR video (HLG, BT.2020, 10-bit) was read as if it were SDR: washed out, and a PQ one dark.
    Now each frame goes to display light by its transfer, reference white (203 nits) to SDR white, highlights
    compressed above a knee, BT.2020 to BT.709 primaries: greys land where the worked values say."""
    clip = _hdr_clip(tmp_path / "hdr.mp4", y10, transfer)
    report = stylize_video(clip, tmp_path / "frames", model_runner, strength=0.0)  # the frames themselves
    assert report.tone_mapped == transfer
    got = read_image(tmp_path / "frames" / "frame_000000.png")[:, 24, 32]
    assert (got - grey).abs().max() <= 2, (got.tolist(), grey)


def test_hdr_colours_keep_their_hue_and_sdr_videos_are_not_mapped(tmp_path, model_runner, random_model):
    """A saturated BT.2020 green beyond BT.709 comes out green (clipped to the gamut, its brightest channel
    compressed), and an SDR clip is read as FFmpeg converts it, with no mapping said."""
    green = _hdr_clip(tmp_path / "green.mp4", 600, "HLG", u10=400, v10=400)
    stylize_video(green, tmp_path / "green", model_runner, strength=0.0)
    r, g, b = read_image(tmp_path / "green" / "frame_000000.png")[:, 24, 32].tolist()
    assert g > 200 and g > r + 60 and g > b + 60, (r, g, b)
    sdr = stylize_video(make_clip(tmp_path / "sdr.mp4", frames=2, audio=False), tmp_path / "sdr", model_runner)
    assert sdr.tone_mapped == ""
    ckpt = save_checkpoint(tmp_path / "m.safetensors", random_model, {"style_name": "m"})
    result = runner.invoke(app, ["video", str(green), "-o", str(tmp_path / "out.mp4"), "-m", str(ckpt)])
    assert result.exit_code == 0, result.output
    assert "(HDR, HLG, mapped to SDR)" in result.output


def test_bad_inputs_get_clear_messages_and_leave_nothing(tmp_path, model_runner):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(StylexportError, match="cannot read .* as a video") as err:
        stylize_video(text, tmp_path / "out.mp4", model_runner)
    # FFmpeg's reason whole (it was cut at 120 characters: "... moov )"), without PyAV's "[Errno -1094995529]"
    assert "moov atom not found); pass a video file" in str(err.value) and "Errno" not in str(err.value)
    with pytest.raises(StylexportError, match="video not found"):
        stylize_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", model_runner)
    clip = make_clip(tmp_path / "clip.mp4", frames=2, audio=False)
    with pytest.raises(StylexportError, match="unknown video type '.flv'"):
        stylize_video(clip, tmp_path / "out.flv", model_runner)
    assert not (tmp_path / "out.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_failure_midway_removes_the_partial_output(tmp_path, random_model):
    clip = make_clip(tmp_path / "clip.mp4", frames=6, audio=False)

    class Failing(TorchRunner):
        calls = 0

        def _run(self, batch):
            Failing.calls += 1
            if Failing.calls == 3:
                raise StylexportError("out of memory (simulated)")
            return super()._run(batch)

    with pytest.raises(StylexportError, match="simulated"):
        stylize_video(clip, tmp_path / "out.mp4", Failing(random_model))
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


@pytest.mark.parametrize("out_name", ["out.mp4", "frames"])
def test_a_failure_stops_the_reader_before_the_video_is_closed(tmp_path, random_model, out_name):
    """The reader thread decodes ahead of the model; when the model fails, it must have stopped by the time the
    input is closed and the error reaches the caller (PyAV crashed with SIGSEGV when a container was closed
    under a thread still demuxing it: a flaky segfault in CI)."""
    import threading

    clip = make_clip(tmp_path / "clip.mp4", frames=40, audio=True)

    class Failing(TorchRunner):
        def _run(self, batch):
            raise StylexportError("out of memory (simulated)")

    before = set(threading.enumerate())
    try:
        stylize_video(clip, tmp_path / out_name, Failing(random_model))
    except StylexportError as exc:  # checked while the error is in hand: its traceback keeps the pipeline alive
        assert "simulated" in str(exc)
        assert [t.name for t in threading.enumerate() if t not in before] == []
    else:
        pytest.fail("the model's error was not raised")


def test_an_animated_gif_out_has_every_frame_its_timing_and_the_pictures(tmp_path, random_model):
    """A GIF is written with every frame, its size, the rate GIF can hold (hundredths of a second a frame), looping,
    pictures close to the model's own output (a 256-colour palette a frame), and the audio said to be dropped."""
    from PIL import Image, ImageSequence

    from stylexport.metrics import psnr

    clip = make_clip(tmp_path / "clip.mp4", frames=6, fps=10, audio=True, noise=20)  # no two frames alike
    report = stylize_video(clip, tmp_path / "out.gif", TorchRunner(random_model))
    assert (report.frames, report.codec, report.fps) == (6, "gif", 10)
    assert report.audio == "dropped (a GIF has no sound)"
    with Image.open(tmp_path / "out.gif") as gif:
        assert gif.n_frames == 6 and gif.size == (64, 48) and gif.info["loop"] == 0
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
        gif.seek(3)
        fourth = torch.from_numpy(np.asarray(gif.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
    assert durations == [100] * 6
    with av.open(str(clip)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    expected = random_model(torch.from_numpy(decoded[3]).permute(2, 0, 1).float()[None])[0].detach()
    assert psnr(fourth, expected.clamp(0, 255).round()) > 25  # the fourth frame, in its palette

    # GIF holds hundredths: 30 fps is written as 3/100 s a frame and said to play at 33.3 fps
    assert stylize_video(make_clip(tmp_path / "c30.mp4", frames=3, fps=30, audio=False), tmp_path / "c30.gif",
                         TorchRunner(random_model)).fps == pytest.approx(100 / 3)
    with pytest.raises(StylexportError, match="a GIF has 256 colours a frame and no quality setting"):
        stylize_video(clip, tmp_path / "q.gif", TorchRunner(random_model), crf=20)


def test_video_cli(tmp_path, random_model):
    ckpt = save_checkpoint(tmp_path / "m.safetensors", random_model, {"style_name": "m"})
    clip = make_clip(tmp_path / "clip.mp4", frames=4)
    result = runner.invoke(app, ["video", str(clip), "-m", str(ckpt), "-o", str(tmp_path / "o.mp4"), "--stabilize",
                                 "0.5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "4 frames 64x48" in result.output and "audio copied" in result.output and "flicker" in result.output
    result = runner.invoke(app, ["video", str(clip), "-m", str(ckpt), "-o", str(tmp_path / "s.gif"), "--size", "32"])
    assert result.exit_code == 0, result.output
    assert "4 frames 32x24" in result.output and "gif, audio dropped (a GIF has no sound)" in result.output
    result = runner.invoke(app, ["video", str(tmp_path / "nope.mp4"), "-m", str(ckpt), "-o", str(tmp_path / "x.mp4")])
    assert result.exit_code == 2 and "video not found" in result.output
    assert "Traceback" not in result.output
    turned = make_turned_clip(tmp_path / "phone.mp4", -90, hflip=True)  # the engine is cached by now
    result = runner.invoke(app, ["video", str(turned), "-m", str(ckpt), "-o", str(tmp_path / "t.mp4")])
    assert result.exit_code == 0, result.output
    assert "3 frames 48x64 (turned as its display matrix says: a quarter turn clockwise, mirrored)" in result.output


def test_a_cut_short_video_warns_with_frames_and_duration(tmp_path, random_model):
    clip = make_clip(tmp_path / "clip.mkv", frames=40, audio=False, noise=30)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])  # Matroska declares its duration up front: it still opens
    ckpt = save_checkpoint(tmp_path / "m.safetensors", random_model, {"style_name": "m"})
    result = runner.invoke(app, ["video", str(cut), "-o", str(tmp_path / "out.mp4"), "-m", str(ckpt)])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "of the 40 that cut.mkv declares" in warning[0] and "of 4.00 s" in warning[0]
    assert not any(line.startswith(("[", "ERROR", "libav")) for line in result.stderr.splitlines())
    # the intact clip: no warning
    result = runner.invoke(app, ["video", str(clip), "-o", str(tmp_path / "full.mp4"), "-m", str(ckpt)])
    assert result.exit_code == 0 and "warning" not in result.stderr


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_crf_sets_the_quality_of_h264_and_vp9(tmp_path, model_runner, suffix):
    """--crf was applied to H.264 only; .webm (VP9) ignored it. A lower crf keeps more detail: a larger file (the
    noisy frames themselves, strength 0, so that there is detail to keep)."""
    clip = make_clip(tmp_path / "clip.mp4", frames=6, audio=False, noise=40)
    sizes = {}
    for crf in (4, 45):
        out = tmp_path / f"crf{crf}{suffix}"
        stylize_video(clip, out, model_runner, crf=crf, strength=0.0)
        assert probe(out)["frames"] == 6
        sizes[crf] = out.stat().st_size
    assert sizes[4] > 2 * sizes[45], sizes


def test_max_side_size_scales_the_longer_side_and_rounds_to_even_for_video_files():
    from stylexport.image import max_side_size

    assert max_side_size(1920, 1080, None) == (1920, 1080)
    assert max_side_size(1920, 1080, 480) == (480, 270)
    assert max_side_size(1080, 1920, 480) == (270, 480)  # portrait: the height is the longer side
    assert max_side_size(64, 48, 33) == (33, 25)  # 48 * 33 / 64 = 24.75
    assert max_side_size(64, 48, 33, even=True) == (32, 24)  # 16.5 and 12.4 pairs, rounded
    assert max_side_size(64, 48, 128, even=True) == (128, 96)  # up too, as stylize --size


def test_size_resizes_frames_before_the_model_in_every_output(tmp_path, random_model):
    """--size: each frame is resized (antialiased) so its longer side is SIZE, then stylized; a video file gets
    even sides (4:2:0), frames in a folder are exactly the model's output on the resized frame."""
    from PIL import Image

    from stylexport.image import read_image, resize

    clip = make_clip(tmp_path / "clip.mp4", frames=4, w=64, h=48, noise=20)
    report = stylize_video(clip, tmp_path / "small.mp4", TorchRunner(random_model), size=33)
    after = probe(tmp_path / "small.mp4")
    assert (report.width, report.height) == after["size"] == (32, 24)
    assert after["frames"] == 4 and after["audio"] == ["aac"]

    report = stylize_video(clip, tmp_path / "frames", TorchRunner(random_model), size=33)
    assert (report.width, report.height) == (33, 25)
    with av.open(str(clip)) as c:
        second = torch.from_numpy(list(c.decode(video=0))[1].to_ndarray(format="rgb24")).permute(2, 0, 1).float()
    expected = random_model(resize(second[None], (25, 33)))[0].detach().clamp(0, 255).round()
    got = read_image(tmp_path / "frames" / "frame_000001.png")
    assert got.shape == (3, 25, 33) and (got - expected).abs().max() <= 1

    report = stylize_video(clip, tmp_path / "small.gif", TorchRunner(random_model), size=40)
    with Image.open(tmp_path / "small.gif") as gif:
        assert gif.size == (40, 30) == (report.width, report.height) and gif.n_frames == 4
    with pytest.raises(StylexportError, match="--size 8: the longer side must be a whole number of pixels, at "
                                              "least 16"):
        stylize_video(clip, tmp_path / "tiny.mp4", TorchRunner(random_model), size=8)


def test_a_gif_too_big_for_memory_is_refused_before_the_first_frame_with_the_size_that_fits(tmp_path, random_model,
                                                                                          monkeypatch):
    """A GIF holds every frame until it is written (~2.3 bytes a pixel at the peak of Pillow's writer): five
    minutes of 1080p at 30 fps would be killed for memory after the whole clip was stylized. Refused up front,
    naming the --size that fits in half the memory."""
    import stylexport.devices
    from stylexport.video import check_gif_memory

    clip5min = {"count": 9000, "width": 1920, "height": 1080}
    with pytest.raises(StylexportError) as err:
        check_gif_memory(tmp_path / "long.mp4", clip5min, None, memory=24 * 2**30)
    assert str(err.value) == (f"{tmp_path / 'long.mp4'} as a GIF: 9,000 frames of 1920x1080 are all held in memory "
                              "until the file is written, about 43.5 GB, over half of this machine's 24.0 GB; pass "
                              "--size 1008 or less, write a video file (.mp4, .webm) instead, or cut the clip")
    check_gif_memory(tmp_path / "long.mp4", clip5min, 1008, memory=24 * 2**30)  # the size it named fits
    check_gif_memory(tmp_path / "long.mp4", {**clip5min, "count": None}, None, memory=24 * 2**30)  # unknown length

    calls = []
    model = TorchRunner(random_model)
    monkeypatch.setattr(model, "infer_any_size", lambda x: calls.append(x) or x)
    monkeypatch.setattr(stylexport.devices, "host_memory", lambda: 100_000)  # 12 frames of 64x48 need 92,160 B
    clip = make_clip(tmp_path / "clip.mp4", frames=12, audio=False)
    with pytest.raises(StylexportError, match=r"12 frames of 64x48 .* pass --size 47 or less"):
        stylize_video(clip, tmp_path / "out.gif", model)
    assert calls == [] and not (tmp_path / "out.gif").exists()
    assert stylize_video(clip, tmp_path / "out.gif", model, size=47).frames == 12 and len(calls) == 12


def test_the_command_refuses_a_gif_too_big_and_an_unreadable_video_before_the_model_opens(
        tmp_path, model_and_ckpt, monkeypatch):
    """Both were found only once the model had opened, which for a checkpoint seen for the first time means an
    engine exported (seconds to minutes) before a refusal that needed nothing but the input. Now both come first,
    and the model is never opened."""
    import stylexport.devices

    from .conftest import one_line_error

    def never(*args, **kwargs):
        raise AssertionError("the model was opened before the input was checked")

    _, ckpt = model_and_ckpt
    monkeypatch.setattr("stylexport.cli._open_model", never)
    monkeypatch.setattr(stylexport.devices, "host_memory", lambda: 100_000)  # 12 frames of 64x48 need 92,160 B
    clip = make_clip(tmp_path / "clip.mp4", frames=12, audio=False)
    one_line_error(runner.invoke(app, ["video", str(clip), "-m", str(ckpt), "-o", str(tmp_path / "out.gif")]),
                   "12 frames of 64x48", "pass --size 47 or less")
    frames = tmp_path / "frames"  # a folder of frames is measured from its first image and its count
    frames.mkdir()
    with av.open(str(clip)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            frame.to_image().save(frames / f"f{i:02d}.png")
    one_line_error(runner.invoke(app, ["video", str(frames), "-m", str(ckpt), "-o", str(tmp_path / "out.gif")]),
                   "12 frames of 64x48", "pass --size 47 or less")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    one_line_error(runner.invoke(app, ["video", str(broken), "-m", str(ckpt), "-o", str(tmp_path / "out.mp4")]),
                   f"cannot read {broken} as a video")
    assert not (tmp_path / "out.gif").exists() and not (tmp_path / "out.mp4").exists()


def make_turned_clip(path, rotation, *, hflip=False, vflip=False):
    """A 64x48 clip of 3 dark frames with a white block at the top-left (rows 0-9, columns 0-19), stored with a
    display matrix of ``rotation`` counter-clockwise degrees, then mirrored as asked (PyAV 18 writes flips)."""
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display rotation (PyAV 17 and later can)")
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=10)
    video.width, video.height, video.pix_fmt = 64, 48, "yuv444p"
    video.options = {"qp": "0"}
    try:
        video.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
    except TypeError:  # a PyAV that writes no flips
        out.close()
        pytest.skip("this PyAV cannot write a mirrored display matrix (PyAV 18 can)")
    stored = np.full((48, 64, 3), 20, np.uint8)
    stored[:10, :20] = 235
    for i in range(3):
        frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
        frame.pts, frame.time_base = i, fractions.Fraction(1, 10)
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    out.close()
    return path


@pytest.mark.parametrize("rotation, hflip, vflip, block", [
    (90, False, False, (slice(44, 64), slice(0, 10))),  # counter-clockwise: bottom-left
    (-90, False, False, (slice(0, 20), slice(38, 48))),  # clockwise: top-right
    (180, False, False, (slice(38, 48), slice(44, 64))),  # bottom-right
    (0, True, False, (slice(0, 10), slice(44, 64))),  # a mirror (a front camera's): top-right, not a half turn
    (0, False, True, (slice(38, 48), slice(0, 20))),  # upside down: bottom-left
    (90, True, False, (slice(44, 64), slice(38, 48))),  # counter-clockwise, then mirrored: bottom-right
    (-90, True, False, (slice(0, 20), slice(0, 10)))])  # clockwise, then mirrored (a transpose): top-left
def test_a_phone_video_stored_on_its_side_is_stylized_upright(tmp_path, random_model, rotation, hflip, vflip, block):
    """Phones store portrait video on its side with a display matrix that players apply. Its frames were
    stylized on their side and written with no rotation: the output played sideways. They are now turned
    upright first (as FFmpeg's command line does), so the model sees them upright and every output is upright.
    A mirrored matrix was read by its angle alone: a mirror was shown as a half turn (upside down) and an
    upside-down one as it was stored. The stored frame here is dark with a white block at its top-left (rows 0-9,
    columns 0-19 of 48x64); where the block lands as players show it is worked out by hand per matrix."""
    from stylexport.image import read_image

    path = make_turned_clip(tmp_path / "phone.mp4", rotation, hflip=hflip, vflip=vflip)
    report = stylize_video(path, tmp_path / "frames", TorchRunner(random_model), strength=0.0)  # the frames back
    assert report.shown_as == {(90, False, False): "a quarter turn counter-clockwise",
                               (-90, False, False): "a quarter turn clockwise", (180, False, False): "a half turn",
                               (0, True, False): "mirrored left to right", (0, False, True): "flipped upside down",
                               (90, True, False): "a quarter turn counter-clockwise, mirrored",
                               (-90, True, False): "a quarter turn clockwise, mirrored"}[rotation, hflip, vflip]
    first = read_image(tmp_path / "frames" / "frame_000000.png")
    size = (48, 64) if rotation % 180 else (64, 48)
    assert (report.width, report.height) == size and first.shape == (3, size[1], size[0])
    white = torch.zeros(first.shape[1:], dtype=torch.bool)
    white[block] = True
    assert first[:, white].mean() > 200 and first[:, ~white].mean() < 60

    stylize_video(path, tmp_path / "upright.mp4", TorchRunner(random_model), strength=0.0)
    with av.open(str(tmp_path / "upright.mp4")) as c:
        decoded = next(c.decode(video=0))
        assert (decoded.width, decoded.height) == size and (decoded.rotation or 0) == 0
        again = torch.from_numpy(decoded.to_ndarray(format="rgb24")).permute(2, 0, 1).float()
    assert again[:, white].mean() > 200 and again[:, ~white].mean() < 60


def _count_opens(monkeypatch, clip) -> list:
    opened = []
    real_open = av.open

    def counting_open(file, *args, **kwargs):
        if str(file) == str(clip):
            opened.append(kwargs.get("mode", args[0] if args else "r"))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    return opened


@pytest.mark.parametrize("output", ["out.mp4", "out.gif", "frames"])
def test_a_video_is_opened_once_to_probe_and_once_to_decode(tmp_path, model_runner, monkeypatch, output):
    """The checks read the header and the first frame (its rotation) from one opening, and the stylizing
    reuses what they read: the file was opened four times (the header, then again for the rotation, both
    twice), which for a file on a network share or a slow disk is four seeks through its index."""
    clip = make_clip(tmp_path / "clip.mp4", frames=4, audio=False)
    opened = _count_opens(monkeypatch, clip)
    report = stylize_video(clip, tmp_path / output, model_runner, strength=0.0)
    assert report.frames == 4 and (report.width, report.height) == (64, 48) and report.shown_as == ""
    assert opened == ["r", "r"]


def test_the_command_also_opens_a_video_once_to_probe_and_once_to_decode(tmp_path, model_and_ckpt, monkeypatch):
    """The command checks the input before its model opens (an engine may be exported first) and hands what it
    read to the stylizing, which probed the file again: three openings."""
    _, ckpt = model_and_ckpt
    clip = make_clip(tmp_path / "clip.mp4", frames=4, audio=False)
    opened = _count_opens(monkeypatch, clip)
    result = runner.invoke(app, ["video", str(clip), "-m", str(ckpt), "-o", str(tmp_path / "out.mp4"),
                                 "--backend", "torch-fp32"])
    assert result.exit_code == 0, result.output
    assert "4 frames 64x48" in result.output and opened == ["r", "r"]


@pytest.mark.parametrize("rotation, shown", [(90, (True, True, False)), (-90, (True, False, True)),
                                             (180, (False, True, True)), (0, (False, False, False))])
def test_where_side_data_cannot_be_read_the_frames_rotation_turns_it(rotation, shown):
    """A PyAV whose frame side data reads otherwise still turns a phone video upright by the frame's rotation
    (counter-clockwise degrees): a quarter turn counter-clockwise is np.rot90's (rows flipped after a
    transpose), clockwise the columns flipped, a half turn both."""
    from stylexport.video import orientation, upright

    class Frame:
        rotation = None

        @property
        def side_data(self):
            raise AttributeError("side_data")

    class Container:
        def decode(self, video):
            frame = Frame()
            frame.rotation = rotation
            return iter([frame])

    assert orientation(Container()) == shown
    stored = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    np.testing.assert_array_equal(upright(stored, shown), np.rot90(stored, rotation // 90))
