"""``stylexport video``: decode with PyAV, stylize on any backend, encode; audio, frame rate and duration kept.

Frames move through three stages at once: a decoder thread (demux + decode), the model on the caller's
thread (batched), and an encoder thread (encode + mux); bounded queues between them keep memory flat.
Audio packets are copied as they are (no re-encode) when the output container takes the codec, otherwise
re-encoded to the first of ``AUDIO_REENCODE`` it takes (AAC; Opus for WebM). The output is written to a
temporary file beside the target and renamed at the end: a failure or Ctrl-C never leaves a partial video.
Folders of frames work as input and as output, and so do animated GIFs (written by Pillow, every frame held
until the end: see ``_to_gif``). A failure stops and joins the decoder and encoder threads before the files
are closed (PyAV crashes when a container is closed under a thread still using it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import queue
import re
import struct
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from stylexport.controls import Stabilizer, apply_controls, check_strength, flicker
from stylexport.errors import StylexportError
from stylexport.fileio import atomic_path, check_not_an_input, check_writable, ensure_parent
from stylexport.image import check_size, max_side_size, resize

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v", ".avi", ".webm")
GIF_SUFFIX = ".gif"  # written by Pillow: an adaptive 256-colour palette per frame, dithered; loops forever
# Preferred video codecs per container, best first; the first one this FFmpeg build has is used.
CODECS = {".webm": ("libvpx-vp9", "libvpx"), ".avi": ("mpeg4",)}
DEFAULT_CODECS = ("libx264", "h264", "libopenh264", "mpeg4")
# Encoders whose quality --crf sets (constant quality; VP9 needs its bitrate cap off for it), with their options.
CRF_ENCODERS = {"libx264": {"preset": "medium"}, "libvpx-vp9": {"b": "0"}}
DEFAULT_CRF = 18
# Audio codecs to re-encode to where the output container does not take the input's, best first, with the
# sample rate each needs (None: the input's); Opus runs at 48 kHz
AUDIO_REENCODE = (("aac", None), ("libopus", 48000), ("opus", 48000), ("libvorbis", None), ("libmp3lame", None))
# What every video written says about its colours (FFmpeg's codec options): sRGB frames, as BT.709 in TV range
COLOUR_TAGS = {"colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709", "color_range": "tv"}
_END = object()


def import_av():
    try:
        import av
    except ImportError:
        raise StylexportError("video needs PyAV: pip install 'stylexport[video]'") from None
    av.logging.set_level(av.logging.ERROR)  # FFmpeg's reasons reach PyAV's exceptions
    if not log.isEnabledFor(logging.INFO):  # ... but its log lines never interleave with ours (see -v)
        logging.getLogger("libav").setLevel(logging.CRITICAL + 1)
    return av


@dataclasses.dataclass
class VideoReport:
    frames: int
    width: int
    height: int
    fps: float
    duration_s: float | None
    codec: str
    audio: str  # "copied", "re-encoded (aac)" (or another of AUDIO_REENCODE), "none"
    seconds: float = 0.0
    flicker_raw: float = 0.0  # flicker of the network's output
    flicker_out: float = 0.0  # after stabilization (equal to raw when off)
    warnings: list[str] = dataclasses.field(default_factory=list)
    shown_as: str = ""  # how the input's display matrix turned its frames ("a quarter turn clockwise"), or ""
    tone_mapped: str = ""  # an HDR input's transfer ("HLG", "PQ"), mapped to SDR as it was read, or ""


def short_input_warning(src: Path, n: int, info: dict) -> list[str]:
    """A video that decodes to fewer frames than its container declares is damaged or cut short: say so."""
    count, fps, duration = info.get("count"), info.get("fps") or 0, info.get("duration")
    if not count or n >= count - 1:  # one frame of rounding between duration x rate and the real count
        return []
    declared = f" ({n / fps:.2f} s of {duration:.2f} s)" if fps and duration else ""
    return [f"decoded {n} frames of the {count} that {src.name} declares{declared}: the input looks damaged or "
            "cut short, so the output is shorter"]


def pick_codec(av, suffix: str) -> str:
    for name in CODECS.get(suffix, DEFAULT_CODECS):
        try:
            av.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - this FFmpeg build lacks it
            continue
    raise StylexportError(f"this FFmpeg build has no encoder for {suffix} videos; write .mp4 or a folder of frames")


def _open_input(av, path: Path):
    if not path.exists():
        raise StylexportError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - FFmpeg's own errors, shown in one line
        reason = re.sub(r"^\[Errno -?\d+\] ", "", str(exc).splitlines()[0])  # FFmpeg's reason whole, not cut mid-word
        raise StylexportError(f"cannot read {path} as a video ({reason}); pass a video file FFmpeg can decode, or a "
                              "folder of frames") from None
    if not container.streams.video:
        container.close()
        raise StylexportError(f"{path} has no video stream; pass a video file or a folder of frames")
    return container


class _FrameStats:
    """Running flicker (see controls.flicker) on downscaled frames, before and after stabilization."""

    def __init__(self, side: int = 128):
        self.side = side
        self.prev: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.raw = self.out = 0.0
        self.n = 0

    def _small(self, t: torch.Tensor) -> torch.Tensor:
        h, w = t.shape[-2:]
        scale = self.side / max(h, w)
        if scale >= 1:
            return t.float().cpu()
        return torch.nn.functional.interpolate(t.float().cpu()[None], scale_factor=scale, mode="area")[0]

    def add(self, content: torch.Tensor, raw: torch.Tensor, out: torch.Tensor) -> None:
        cur = (self._small(content), self._small(raw), self._small(out))
        if self.prev is not None:
            self.raw += flicker([self.prev[1], cur[1]], [self.prev[0], cur[0]])
            self.out += flicker([self.prev[2], cur[2]], [self.prev[0], cur[0]])
            self.n += 1
        self.prev = cur


def _stylize_stream(frames: Iterator[tuple[object, np.ndarray]], runner, *, batch: int, strength: float,
                    colors: bool, stabilize: float, emit: Callable[[object, np.ndarray], None],
                    stats: _FrameStats, size: int | None = None, even: bool = False) -> int:
    """Run frames (key, HxWx3 uint8) through the model in batches, each first resized to ``max_side_size`` of
    ``size``; emit (key, uint8 frame) in order, on the encoder thread (the third stage), so encoding overlaps
    the model."""
    stabilizer = Stabilizer(stabilize) if stabilize else None
    encoder = _Background(emit)
    pending: list[tuple[object, np.ndarray]] = []
    count = 0

    def flush() -> None:
        nonlocal count
        if not pending:
            return
        content = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for _, a in pending]).float()
        if size is not None:
            w, h = max_side_size(content.shape[-1], content.shape[-2], size, even=even)
            content = resize(content, (h, w))
        raw = runner.infer_any_size(content)  # the size policy every path shares
        for i, (key, _) in enumerate(pending):
            styled = apply_controls(raw[i], content[i], strength=strength, colors=colors)
            out = stabilizer(styled, content[i]) if stabilizer else styled
            stats.add(content[i], styled, out)
            encoder.submit(key, out.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy())
            count += 1
        pending.clear()

    try:
        for key, array in frames:
            if pending and pending[0][1].shape != array.shape:
                flush()
            pending.append((key, array))
            if len(pending) >= batch:
                flush()
        flush()
    except BaseException:
        encoder.abandon()
        raise
    finally:
        # Stop the reader before the caller closes the container it decodes from: PyAV crashes (SIGSEGV) when
        # a container is closed under a thread still demuxing it.
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    encoder.close()
    return count


class _Background:
    """Calls of ``fn(*args)`` run in order on one worker thread, at most ``maxsize`` waiting (memory stays
    flat). The worker's first error is raised on the next ``submit`` or at ``close``."""

    def __init__(self, fn: Callable, maxsize: int = 8):
        self.fn, self.errors = fn, []
        self.q: queue.Queue = queue.Queue(maxsize=maxsize)
        self.thread = threading.Thread(target=self._loop, name="stylexport-encode", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (item := self.q.get()) is not _END:
            if not self.errors:
                try:
                    self.fn(*item)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    self.errors.append(exc)

    def submit(self, *args) -> None:
        if self.errors:
            raise self.errors[0]
        self.q.put(args)

    def close(self) -> None:
        """Wait for every submitted call; raise the worker's error if there was one."""
        self.q.put(_END)
        self.thread.join()
        if self.errors:
            raise self.errors[0]

    def abandon(self) -> None:
        """Stop after the call in progress, dropping those still queued, without raising (the caller is handling
        an error)."""
        self.errors.append(StylexportError("abandoned"))
        self.q.put(_END)
        self.thread.join()  # no timeout: the caller closes the output next, which must not happen under a mux


def _in_thread(frames: Callable[[], Iterator]) -> Iterator:
    """Read/decode ``frames()`` on its own thread (the first stage)."""
    def produce(put) -> None:
        for item in frames():
            put(item)

    return _threaded(produce, maxsize=8)


def _threaded(produce: Callable[[Callable[[object], None]], None], maxsize: int) -> Iterator:
    """Run ``produce(put)`` in a thread; iterate what it puts. Its exceptions re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    errors: list[BaseException] = []
    stop = threading.Event()

    def put(item) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise SystemExit  # the consumer gave up; end the thread quietly

    def run() -> None:
        try:
            produce(put)
        except SystemExit:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            errors.append(exc)
        put(_END) if not stop.is_set() else None

    thread = threading.Thread(target=run, name="stylexport-read", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                break
            yield item
    finally:
        # No timeout: the reader notices ``stop`` at its next put, within one decode; returning earlier would let
        # the caller close a container the reader is still inside.
        stop.set()
        thread.join()
    if errors:
        raise errors[0]


def check_paths(src: str | os.PathLike, dst: str | os.PathLike, *, fps: float | None = None,
                crf: int | None = None, size: int | None = None) -> dict:
    """Refuse, before a model is opened (an engine may be exported first), a video or frame folder that is not
    there, a frame rate for a video that has its own, a quality for an output that has none to set (frames in a
    folder, an .avi), an output that cannot be written (an unknown suffix, a folder that cannot be made or
    written), an input that cannot be read (a video FFmpeg cannot open, a folder with no images) and a GIF whose
    frames would not fit in memory (``check_gif_memory``). Returns what ``probe`` read of the input."""
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise StylexportError(f"video not found: {src}; pass a video file or a folder of frames")
    if fps is not None and not src.is_dir():
        raise StylexportError(f"--fps {fps:g} sets the frame rate of a folder of frames; the video {src} keeps its "
                              "own (its frames are not resampled): leave --fps out")
    if dst.suffix and dst.suffix.lower() not in (*VIDEO_SUFFIXES, GIF_SUFFIX):
        raise StylexportError(f"output {dst}: unknown video type {dst.suffix!r}; use one of "
                              f"{', '.join((*VIDEO_SUFFIXES, GIF_SUFFIX))} or a folder (no suffix) for frames")
    if crf is not None and not (dst.suffix and dst.suffix.lower() != GIF_SUFFIX and any(
            c in CRF_ENCODERS for c in CODECS.get(dst.suffix.lower(), DEFAULT_CODECS))):
        what = "a folder gets lossless PNG frames" if not dst.suffix else "a GIF has 256 colours a frame and no " \
            "quality setting" if dst.suffix.lower() == GIF_SUFFIX else f"{dst.suffix} is written as MPEG-4 " \
            "Part 2, which has no constant-quality setting"
        raise StylexportError(f"--crf {crf} sets the quality of H.264 (.mp4, .mkv, .mov, .m4v) and VP9 (.webm) "
                              f"output; {what}: write one of those, or leave --crf out")
    check_writable(dst, folder=not dst.suffix)
    check_not_an_input([dst], [src])  # a video over itself, or frames written over the folder's own frames
    info = probe(src, fps)
    if dst.suffix.lower() == GIF_SUFFIX:
        check_gif_memory(src, info, size)
    return info


def probe(src: Path, fps: float | None = None) -> dict:
    """The frame count (None where a container does not declare it), upright size and rate of a video file or a
    folder of frames, read from the container or the first image; a video's first frame is decoded for its
    display matrix (``orientation``), from the one opening of the file that reads the header."""
    if src.is_dir():
        return _folder_info(src, fps)
    av = import_av()
    container = _open_input(av, src)
    try:
        info = _video_info(container)
        info["orientation"] = orientation(container)
        if info["orientation"][0]:  # on its side: upright, its width is the stored height
            info["width"], info["height"] = info["height"], info["width"]
        return info
    finally:
        container.close()


def stylize_video(src: str | os.PathLike, dst: str | os.PathLike, runner, *, batch: int = 1, strength: float = 1.0,
                  colors: bool = False, stabilize: float = 0.0, fps: float | None = None, crf: int | None = None,
                  size: int | None = None, progress: Callable[[int, int | None], None] | None = None,
                  checked: dict | None = None) -> VideoReport:
    """Stylize ``src`` (a video file or a folder of frames) into ``dst`` (a video file or a folder).

    ``size``: the longer side of the output, px (frames are resized before the model; even sides in a video
    file); None keeps the input's size. ``crf``: constant quality of H.264 and VP9 output (lower is better;
    None: 18); refused where there is none to set (a folder of frames, an .avi, an FFmpeg build that has only
    MPEG-4 Part 2). ``checked``: what ``check_paths`` returned for these paths and options, where the caller
    ran the checks already (the command does, before its model opens), so the input is not probed again."""
    import time

    check_strength(strength)
    if batch < 1:
        raise StylexportError(f"--batch {batch}: use 1 or more")
    check_size(size)
    src, dst = Path(src), Path(dst)
    info = checked if checked is not None else check_paths(src, dst, fps=fps, crf=crf, size=size)
    frames_in = _folder_frames(info["paths"]) if src.is_dir() else None  # the folder listed once, by the checks
    start = time.perf_counter()
    if dst.suffix.lower() in VIDEO_SUFFIXES:
        report = _to_video(src, dst, runner, frames_in, info, batch=batch, strength=strength, colors=colors,
                           stabilize=stabilize, crf=crf, size=size, progress=progress)
    elif dst.suffix.lower() == GIF_SUFFIX:
        report = _to_gif(src, dst, runner, frames_in, info, batch=batch, strength=strength, colors=colors,
                         stabilize=stabilize, size=size, progress=progress)
    else:
        report = _to_folder(src, dst, runner, frames_in, info, batch=batch, strength=strength, colors=colors,
                            stabilize=stabilize, size=size, progress=progress)
    report.seconds = time.perf_counter() - start
    return report


def _folder_info(folder: Path, fps: float | None) -> dict:
    """A folder of frames: its images in order (``paths``), their count, the first one's size, the rate."""
    from stylexport.image import find_images, read_image

    paths = find_images([folder], recursive=False)
    first = read_image(paths[0], min_size=1)
    return {"count": len(paths), "width": first.shape[2], "height": first.shape[1], "fps": fps or 25.0,
            "paths": paths}


def _folder_frames(paths: list[Path]) -> Callable[[], Iterator[tuple[Path, np.ndarray]]]:
    from stylexport.image import read_image

    def frames():
        for p in paths:
            yield p, read_image(p, min_size=1).round().to(torch.uint8).permute(1, 2, 0).numpy()

    return frames


# FFmpeg's display matrix (9 int32, 16.16 fixed point), row-major: [a b u; c d v; x y w]
_DISPLAYMATRIX_BYTES = 36


def orientation(container) -> tuple[bool, bool, bool]:
    """How to show an opened video's frames as players do, from its first decoded frame's display matrix (the
    container is read past it: close it after), as (transpose, flip rows, flip columns), applied in that order.

    Phones store portrait video on its side with a display matrix that players apply, and a front camera's
    video may be mirrored by one. FFmpeg's command line applies it (its autorotate: a quarter turn, a half
    turn, a mirror, or a quarter turn and a mirror, read from the matrix's signs as fftools does); stylexport
    does the same to the frames, so the model sees them upright and every output is upright and unmirrored.
    PyAV's ``VideoFrame.rotation`` alone reads a mirror as a half turn (a picture shown upside down): it is
    used only where the frame's side data cannot be read."""
    try:
        frame = next(iter(container.decode(video=0)), None)
    except Exception:  # noqa: BLE001 - the decode proper says what is wrong with a video it cannot read
        return (False, False, False)
    if frame is None:
        return (False, False, False)
    try:  # by name: iterating the side data yields its entries in PyAV 18.0, their types in 18.1 (a Mapping)
        data = frame.side_data.get("DISPLAYMATRIX")
        if data is not None and len(bytes(data)) == _DISPLAYMATRIX_BYTES:
            return _orientation(struct.unpack("<9i", bytes(data)))
    except Exception:  # noqa: BLE001 - a PyAV whose side data reads otherwise: its rotation, below
        pass
    turn = math.radians(getattr(frame, "rotation", 0) or 0)  # counter-clockwise; no mirror known
    return _orientation((round(math.cos(turn) * 65536), round(-math.sin(turn) * 65536), 0,
                         round(math.sin(turn) * 65536), round(math.cos(turn) * 65536)))


def _orientation(m: tuple[int, ...]) -> tuple[bool, bool, bool]:
    """fftools' autorotate for a display matrix ``m``: its clockwise angle (get_rotation, from
    av_display_rotation_get), then the transpose filter's four modes at a quarter turn, hflip and vflip at a
    half turn, vflip at none. A matrix at another angle, or a degenerate one, is shown as stored (FFmpeg would
    rotate it by that angle and fill the corners; no camera writes one)."""
    scale = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if not all(scale):
        return (False, False, False)
    theta = math.degrees(math.atan2(m[1] / scale[1], m[0] / scale[0])) % 360  # clockwise
    if abs(theta - 90) < 1:  # transpose=clock; cclock_flip (a transpose) when mirrored
        return (True, False, m[3] <= 0)
    if abs(theta - 270) < 1:  # transpose=cclock; clock_flip when mirrored
        return (True, True, m[3] < 0)
    if abs(theta - 180) < 1:  # hflip, vflip: a half turn, or a mirror
        return (False, m[4] < 0, m[0] < 0)
    if theta < 1 or theta > 359:
        return (False, m[4] < 0, False)
    return (False, False, False)


_SHOWN_AS = {(True, False, True): "a quarter turn clockwise", (True, True, False): "a quarter turn counter-clockwise",
             (False, True, True): "a half turn", (False, False, True): "mirrored left to right",
             (False, True, False): "flipped upside down", (True, False, False): "a quarter turn clockwise, mirrored",
             (True, True, True): "a quarter turn counter-clockwise, mirrored"}


def describe_orientation(orient: tuple[bool, bool, bool] | None) -> str:
    """``orientation``'s triple in words, as players show the frames ("" when they show them as stored)."""
    return _SHOWN_AS.get(tuple(orient), "") if orient else ""


def upright(array: np.ndarray, orient: tuple[bool, bool, bool]) -> np.ndarray:
    """An HxWx3 frame shown as ``orientation`` says (contiguous, for torch)."""
    transpose, rows, columns = orient
    if not (transpose or rows or columns):
        return array
    if transpose:
        array = array.transpose(1, 0, 2)
    if rows:
        array = array[::-1]
    if columns:
        array = array[:, ::-1]
    return np.ascontiguousarray(array)


# HDR video (HLG: a phone's default since 2020; PQ: HDR10) is mapped to the SDR frames the networks know; read as
# if it were SDR, its BT.2020 colours came out washed out and a PQ video dark. Transfer characteristics as FFmpeg
# numbers them (ISO/IEC 23091-2):
HDR_TRANSFERS = {16: "PQ", 18: "HLG"}
SDR_WHITE_NITS = 203.0  # ITU-R BT.2408: HDR reference white (HLG 75 %), mapped to SDR white before the knee
TONE_KNEE = 0.75  # linear SDR light: below it unchanged, above it compressed towards 1 (white 1.0 -> 0.875)
_BT2020_TO_BT709 = torch.tensor([[1.6605, -0.5876, -0.0728],  # ITU-R BT.2087, linear light
                                 [-0.1246, 1.1329, -0.0083],
                                 [-0.0182, -0.1006, 1.1187]])
_BT2020_LUMA = torch.tensor([0.2627, 0.6780, 0.0593])


def hdr_to_sdr(signal: np.ndarray, transfer: str) -> np.ndarray:
    """An HDR frame (H, W, 3 float R'G'B' in [0, 1], BT.2020, HLG or PQ: what FFmpeg decodes with the BT.2020
    matrix) as 8-bit SDR (BT.709 primaries, display gamma 2.4): to display light in nits (HLG through its inverse
    OETF and its OOTF for a 1000-nit display, BT.2100; PQ through its EOTF), relative to reference white (203
    nits, BT.2408), BT.2020 to BT.709 primaries (BT.2087; colours outside BT.709 clipped), highlights above
    ``TONE_KNEE`` compressed towards white by each pixel's brightest channel (hue kept), then gamma 2.4 as a
    player shows SDR. A simple documented tone map, not a colourist's. In torch, whose elementwise kernels use
    every core (numpy's use one)."""
    e = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32)).clamp(0.0, 1.0)
    if transfer == "HLG":
        a, b = 0.17883277, 0.28466892
        c = 0.5 - a * math.log(4 * a)
        scene = torch.where(e <= 0.5, e * e / 3.0, (torch.exp((e - c) / a) + b) / 12.0)
        luma = (scene @ _BT2020_LUMA).clamp_min(1e-6).unsqueeze(-1)
        nits = 1000.0 * luma.pow(0.2) * scene  # the OOTF: system gamma 1.2 at 1000 nits
    else:
        m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
        p = e.pow(1.0 / m2)
        nits = 10000.0 * ((p - c1).clamp_min(0.0) / (c2 - c3 * p)).pow(1.0 / m1)
    light = ((nits / SDR_WHITE_NITS) @ _BT2020_TO_BT709.T).clamp_min(0.0)
    peak = light.amax(dim=-1, keepdim=True)
    over = (peak - TONE_KNEE).clamp_min(0.0)
    mapped = torch.where(peak > TONE_KNEE, TONE_KNEE + over / (1.0 + over / (1.0 - TONE_KNEE)), peak)
    light = light * (mapped / peak.clamp_min(1e-6))
    return (255.0 * light.clamp(0.0, 1.0).pow(1 / 2.4)).round().to(torch.uint8).numpy()


def frame_rgb(frame, info: dict) -> np.ndarray:
    """A decoded video frame as HxWx3 uint8 sRGB-like pixels, converted by the frame's matrix and range tags; an
    HDR frame (``info["transfer"]`` "HLG" or "PQ") mapped to SDR by ``hdr_to_sdr``; an HD stream that names no
    matrix (``info["guess_bt709"]``) converted as BT.709, as players show it, where FFmpeg assumes BT.601."""
    if info.get("transfer"):
        return hdr_to_sdr(frame.to_ndarray(format="gbrpf32le"), info["transfer"])  # 17's rgb48le mixed channels
    if info.get("guess_bt709"):
        return frame.reformat(format="rgb24", src_colorspace="ITU709", src_color_range=frame.color_range).to_ndarray()
    return frame.to_ndarray(format="rgb24")


def _video_info(container) -> dict:
    """A video's frame count (None where undeclared), rate, time base and stored size, from its header."""
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    duration = float(container.duration / 1e6) if container.duration else None
    count = stream.frames or (round(duration * float(rate)) if duration else None)
    return {"count": count, "width": stream.codec_context.width, "height": stream.codec_context.height,
            "fps": float(rate), "rate": rate, "time_base": stream.time_base, "duration": duration,
            "transfer": HDR_TRANSFERS.get(int(stream.codec_context.color_trc or 0)),
            # no matrix named (unspecified: 2) on an HD stream: players (mpv's rule: 1280 wide or over 576 high)
            # show it as BT.709, where FFmpeg's conversion would take BT.601
            "guess_bt709": int(stream.codec_context.colorspace or 2) == 2 and (
                stream.codec_context.width >= 1280 or stream.codec_context.height > 576)}


def _video_stream(container):
    """The stream ``probe`` read, set up for decoding."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _to_folder(src: Path, dst: Path, runner, frames_in, info, *, progress, **opts) -> VideoReport:
    from stylexport.image import save_image

    dst.mkdir(parents=True, exist_ok=True)

    def write(key, array) -> None:
        name = key.stem if isinstance(key, Path) else str(key)
        save_image(torch.from_numpy(array).permute(2, 0, 1).float(), dst / f"{name}.png")

    return _each_frame(src, runner, frames_in, info, write=write, codec="png frames",
                       audio_dropped="dropped (frames have no sound)", progress=progress, **opts)


def _to_gif(src: Path, dst: Path, runner, frames_in, info, *, progress, **opts) -> VideoReport:
    """An animated GIF: each frame with its own adaptive 256-colour palette (Pillow's median cut), Floyd-Steinberg
    dithered, looping forever. GIF counts frame time in hundredths of a second, so the rate written is the
    nearest 100/n fps (30 fps plays at 33.3); every frame is held (one byte a pixel) until the file is written,
    so a clip whose frames would not fit in memory is refused up front (``check_paths``)."""
    from PIL import Image

    frames: list[Image.Image] = []

    def write(key, array) -> None:
        frames.append(Image.fromarray(array).quantize(256, dither=Image.Dither.FLOYDSTEINBERG))

    report = _each_frame(src, runner, frames_in, info, write=write, codec="gif",
                         audio_dropped="dropped (a GIF has no sound)", progress=progress, **opts)
    centiseconds = max(2, round(100 / report.fps))  # browsers play 0 and 1 as 10: too slow, not too fast
    with atomic_path(dst) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=10 * centiseconds,
                       loop=0)
    report.fps = 100 / centiseconds
    return report


# bytes a pixel of all frames at the peak of writing a GIF: the held frames (1 byte a pixel, ~1.2-1.8 with the
# allocator's share) and the writer's copies; 2.15-2.32 measured with Pillow 13 (benchmarks/gif_memory.py)
GIF_BYTES_PER_PIXEL = 2.5


def check_gif_memory(src: Path, info: dict, size: int | None, *, memory: int | None = None) -> None:
    """Refuse, before the first frame is stylized, a GIF whose frames would take more than half this machine's
    memory (they are all held until the file is written): name the size that fits, or a video file."""
    from stylexport.devices import host_memory

    count, memory = info.get("count"), memory or host_memory()
    if not count or not memory:  # a length the container does not declare: nothing to tell in advance
        return
    width, height = max_side_size(info["width"], info["height"], size)
    need, limit = GIF_BYTES_PER_PIXEL * count * width * height, memory / 2
    if need <= limit:
        return
    fits = int(max(width, height) * (limit / need) ** 0.5)
    fix = f"pass --size {fits} or less, " if fits >= 16 else ""

    def gb(n):
        return f"{n / 2**30:.1f} GB"

    raise StylexportError(f"{src} as a GIF: {count:,} frames of {width}x{height} are all held in memory until the "
                          f"file is written, about {gb(need)}, over half of this machine's {gb(memory)}; {fix}"
                          "write a video file (.mp4, .webm) instead, or cut the clip")


def _each_frame(src: Path, runner, frames_in, info, *, write: Callable[[object, np.ndarray], None], codec: str,
                audio_dropped: str, progress, **opts) -> VideoReport:
    """Stylize every frame of ``src`` (a video when ``frames_in`` is None, else frames read from a folder)
    and hand each, in order, to ``write``; the report's audio is ``audio_dropped`` where the input had sound."""
    av = None
    container = None
    if frames_in is None:
        av = import_av()
        container = _open_input(av, src)
        stream = _video_stream(container)
        def frames_in():
            for i, frame in enumerate(container.decode(stream)):
                yield f"frame_{i:06d}", upright(frame_rgb(frame, info), info["orientation"])
    audio = "none" if container is None or not container.streams.audio else audio_dropped
    stats = _FrameStats()
    written = 0

    def emit(key, array) -> None:
        nonlocal written
        write(key, array)
        written += 1
        if progress:
            progress(written, info["count"])

    try:
        n = _stylize_stream(_in_thread(frames_in), runner, emit=emit, stats=stats, **opts)
    finally:
        if container is not None:
            container.close()
    if n == 0:
        raise StylexportError(f"{src} has no frames")
    width, height = max_side_size(info["width"], info["height"], opts.get("size"))
    return _report(src, info, n, width, height, info["fps"], codec, audio, stats, video_in=container is not None)


def _to_video(src: Path, dst: Path, runner, frames_in, info, *, crf: int | None, size: int | None, progress,
              **opts) -> VideoReport:
    av = import_av()
    container = None
    audio_in = None
    if frames_in is None:
        container = _open_input(av, src)
        vstream = _video_stream(container)
        audio_in = container.streams.audio[0] if container.streams.audio else None
    rate = info.get("rate") or Fraction(info["fps"]).limit_denominator(1001)
    codec = pick_codec(av, dst.suffix.lower())
    if crf is not None and codec not in CRF_ENCODERS:
        raise StylexportError(f"--crf {crf}: this FFmpeg build writes {dst.suffix} with {codec}, which has no "
                              "constant-quality setting; leave --crf out")
    ensure_parent(dst)
    stats = _FrameStats()
    audio_mode = "none"
    with atomic_path(dst) as tmp:
        out = av.open(str(tmp), mode="w", format=_format_for(dst))
        try:
            ostream = out.add_stream(codec, rate=rate)
            width, height = max_side_size(info["width"], info["height"], size, even=True)
            ostream.width, ostream.height = width, height
            even = width % 2 == 0 and height % 2 == 0
            ostream.pix_fmt = "yuv420p" if even or codec not in ("libx264",) else "yuv444p"
            # The frames are sRGB; the stream says so (BT.709 matrix, primaries and transfer, limited range), and
            # emit() converts with that matrix. Untagged, and converted with FFmpeg's default BT.601 matrix as it
            # was, an HD video played off colour: players take an untagged HD stream for BT.709 (an orange
            # 214,101,40 showed as 224,108,35).
            ostream.options = {**COLOUR_TAGS, **({"crf": str(DEFAULT_CRF if crf is None else crf),
                                                  **CRF_ENCODERS[codec]} if codec in CRF_ENCODERS else {})}
            if not even and codec != "libx264":
                raise StylexportError(f"{codec} needs an even frame size and this video is {width}x{height}; write "
                                      ".mp4 (H.264 takes any size), pass --size (even sides), or write a folder")
            if "time_base" in info:
                ostream.time_base = info["time_base"]
            astream, audio_mode = _audio_stream(av, out, audio_in)
            lock = threading.Lock()
            written = 0

            def mux(packets) -> None:
                with lock:
                    out.mux(packets)

            if container is not None:
                def produce(put) -> None:
                    streams = [vstream] + ([audio_in] if audio_in is not None else [])
                    for packet in container.demux(*streams):
                        if packet.stream.type == "audio":
                            if packet.dts is None:
                                continue
                            put(("audio", packet))
                            continue
                        for frame in packet.decode():
                            put(("video", (frame.pts, frame.time_base,
                                           upright(frame_rgb(frame, info), info["orientation"]))))

                audio_pending: list = []

                def frames() -> Iterator[tuple[object, np.ndarray]]:
                    with contextlib.closing(_threaded(produce, maxsize=8)) as items:  # closed with frames()
                        for kind, item in items:
                            if kind == "audio":
                                audio_pending.append(item)
                                continue
                            pts, tb, array = item
                            yield (pts, tb), array
                frame_iter = frames()
            else:
                audio_pending = []
                def numbered() -> Iterator[tuple[object, np.ndarray]]:
                    with contextlib.closing(_in_thread(frames_in)) as items:  # closed with numbered()
                        for i, (_, a) in enumerate(items):
                            yield (i, Fraction(1) / rate), a
                frame_iter = numbered()

            def emit(key, array) -> None:
                nonlocal written
                pts, tb = key
                frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(
                    format=ostream.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
                frame.pts, frame.time_base = pts, tb
                mux(ostream.encode(frame))
                while audio_pending:
                    _mux_audio(astream, audio_pending.pop(0), mux)
                written += 1
                if progress:
                    progress(written, info["count"])

            n = _stylize_stream(frame_iter, runner, emit=emit, stats=stats, size=size, even=True, **opts)
            if n == 0:
                raise StylexportError(f"{src} has no frames")
            mux(ostream.encode(None))
            while audio_pending:
                _mux_audio(astream, audio_pending.pop(0), mux)
            if audio_mode.startswith("re-encoded"):
                mux(astream.encode(None))
        finally:
            out.close()
            if container is not None:
                container.close()
    return _report(src, info, n, width, height, float(rate), codec, audio_mode, stats, video_in=container is not None)


def _report(src: Path, info: dict, n: int, width: int, height: int, fps: float, codec: str, audio: str,
            stats: _FrameStats, *, video_in: bool) -> VideoReport:
    """What a run wrote: ``n`` frames of ``width`` x ``height``, their flicker, and (for a video input, not a
    folder of frames) the warning when it had fewer frames than its header said, and how it was turned."""
    return VideoReport(frames=n, width=width, height=height, fps=fps, duration_s=info.get("duration"), codec=codec,
                       audio=audio, flicker_raw=stats.raw / max(stats.n, 1), flicker_out=stats.out / max(stats.n, 1),
                       warnings=short_input_warning(src, n, info) if video_in else [],
                       shown_as=describe_orientation(info.get("orientation")),
                       tone_mapped=(info.get("transfer") or "") if video_in else "")


def _format_for(dst: Path) -> str | None:
    return {".m4v": "mp4", ".mkv": "matroska"}.get(dst.suffix.lower())


def _muxer_takes(av, out, codec: str | None = None, rate: int | None = None, template=None) -> bool:
    """Whether ``out``'s muxer takes a stream copied from ``template``, or one encoded with ``codec``: tried
    on a header written in memory, since some muxers refuse a codec only there (QuickTime's "opus only
    supported in MP4", after adding the stream had worked)."""
    try:
        with av.open(io.BytesIO(), "w", format=out.format.name) as trial:
            if template is not None:
                trial.add_stream_from_template(template)
            else:
                trial.add_stream(codec, rate=rate)
            trial.start_encoding()
        return True
    except Exception:  # noqa: BLE001 - ValueError ("'webm' format does not support 'aac' codec") or FFmpeg's
        return False


def _audio_stream(av, out, audio_in):
    """The output's sound: the input's packets copied where the container takes their codec, else a stream of
    the first of ``AUDIO_REENCODE`` that this FFmpeg has and the container takes (a WebM takes no AAC: Opus; a
    QuickTime file no Opus: AAC)."""
    if audio_in is None:
        return None, "none"
    if _muxer_takes(av, out, template=audio_in):
        return out.add_stream_from_template(audio_in), "copied"
    for codec, rate in AUDIO_REENCODE:
        rate = rate or audio_in.rate or 48000
        if codec in av.codecs_available and _muxer_takes(av, out, codec, rate):
            return out.add_stream(codec, rate=rate), f"re-encoded ({codec})"
    raise StylexportError(f"{out.format.name} takes none of the audio codecs this FFmpeg can write "
                          f"({', '.join(c for c, _ in AUDIO_REENCODE)}); write .mp4 or .mkv instead")


def _mux_audio(astream, packet, mux) -> None:
    if astream is None:
        return
    if astream.codec_context.name != packet.stream.codec_context.name:  # re-encoding
        for frame in packet.decode():
            frame.pts = None
            mux(astream.encode(frame))
        return
    packet.stream = astream
    mux(packet)
