"""Training loop: TransformerNet on the perceptual loss, the way the paper does (section 4).

Resumable exactly: ``state.pt`` in the run folder holds optimizer, step, RNG states and scaler, and
``model.safetensors`` the FP32 weights of the same step (two files of at most ~14 MB, so a run can travel
between machines in pieces of 16 MiB); the data position follows from the step because crops are seeded per
(seed, epoch, index). Files are written atomically, so a kill never leaves a half-written checkpoint.
``max_minutes`` ends a call with a checkpoint after that much training (a chunk of a longer run), and
``hold_out`` keeps photos out of training for evaluation (listed in ``held_out.txt``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from stylexport import __version__
from stylexport.checkpoint import (
    MAX_EDGE_PAD,
    MODEL_FILE,
    LoadedModel,
    load_checkpoint,
    model_file,
    save_checkpoint,
    valid_edge_pad,
)
from stylexport.contract import ARCHITECTURE
from stylexport.data import EpochSampler, PhotoCrops, collate, list_photos
from stylexport.errors import StylexportError
from stylexport.figures import plot_history
from stylexport.fileio import atomic_path, check_writable, sha256_file, write_text_atomic
from stylexport.gatys import style_targets
from stylexport.image import read_for_loss, read_image, sample_paths, save_image
from stylexport.losses import LossConfig, perceptual_loss
from stylexport.model import TransformerNet
from stylexport.vgg import load_vgg

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.jsonl"
DATA_FILE = "data.tsv"  # the photos a run trains on: relative path and size, one per line
SKIPPED_FILE = "skipped.tsv"  # training photos that could not be read: path, tab, why; one per line
HELD_OUT_FILE = "held_out.txt"  # photos kept out of training (previews, evaluation): relative paths
# What a run writes before its first checkpoint: a folder holding only these (and no state.pt) is a run that
# died before it saved anything, and a new run may take the folder over.
RUN_FILES = (CONFIG_FILE, HISTORY_FILE, DATA_FILE, HELD_OUT_FILE, SKIPPED_FILE, "loss.png", "previews")
# Changing these would make a resumed run different from the one it continues.
RESUME_MUST_MATCH = ("style_sha256", "image_size", "style_size", "batch_size", "lr", "seed", "loss", "architecture",
                     "edge_pad", "data_count", "data_sha256")
RESUME_DEFAULTS = {"edge_pad": 0}  # what a run saved before the setting existed trained with


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Defaults from the paper: 256x256 crops, batch 4, Adam 1e-3, 2 epochs, λc 1, λs in 1e4-1e5, λtv 1e-7."""

    style: str
    data: str
    image_size: int = 256
    style_size: int | None = 512  # longer side of the style image; None keeps its size
    batch_size: int = 4
    lr: float = 1e-3
    epochs: float = 2.0
    steps: int | None = None  # overrides epochs
    seed: int = 42
    checkpoint_every: int = 1000
    preview_every: int = 500
    log_every: int = 10
    workers: int = 2
    amp: str = "auto"  # auto (bf16 on CUDA when supported), bf16, fp16, off
    channels_last: bool = True
    previews: int = 4
    hold_out: int = 0  # photos kept out of training for evaluation (the previews are the first of them)
    max_minutes: float | None = None  # end this call with a checkpoint after this much training; resume later
    # Reflection-pad each crop by this many px inside the network and crop the output before the loss, so the
    # network's borders fall outside the picture (model.py); None: the --init checkpoint's, else 0.
    edge_pad: int | None = None
    init: str | None = None  # start from this checkpoint's weights (fine-tuning) instead of random ones
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    vgg_weights: str | None = None
    device: str = "auto"

    def total_steps(self, n_images: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * n_images / self.batch_size))


@dataclasses.dataclass
class StepInfo:
    """Sent after every step, so a progress display counts steps as they happen; the losses and the pace are
    measured every ``log_every`` steps only (a mean over all ranks costs a sync), at step ``losses_step``."""

    step: int
    total_steps: int
    losses: dict[str, float]
    images_per_second: float
    seconds_left: float | None = None  # until the --max-minutes limit ends this call (None: no limit)
    losses_step: int | None = None  # the step the losses and pace were measured at (None: this step)


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    steps: int
    skipped_files: list[str]
    seconds: float
    images_per_second: float
    main: bool = True  # rank 0 (or the only process): the one that writes and reports
    start_step: int = 0  # where this call began (a resumed run's checkpoint)
    held_out: int = 0  # photos kept out of training (previews, evaluation)
    total_steps: int = 0
    time_limited: bool = False  # stopped at max_minutes before total_steps (resume to go on)
    stopped_by: int | None = None  # the signal (Ctrl-C, SIGTERM) that stopped it, with a checkpoint, before then


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``amp`` means on ``device`` (None: FP32), or a StylexportError saying why it cannot run
    there. CUDA: auto is bf16 where the GPU has it, else fp16. CPU: bf16 where the CPU computes it natively
    (AVX-512 BF16 or AMX: 1.77x the images/s of FP32 on a 2-core EPYC, with the same loss curve:
    benchmarks/results/cpu-train-bf16.json); auto stays FP32 there; fp16 is refused (CUDA's)."""
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise StylexportError(f"unknown --amp {amp!r}; use auto, bf16, fp16 or off")
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp == "auto":
            return None
        if amp == "fp16":
            raise StylexportError("--amp fp16 is mixed precision on CUDA; this run trains on the CPU: use --amp bf16 "
                                  "(on a CPU with AVX-512 BF16 or AMX) or leave --amp out (FP32)")
        from stylexport.devices import cpu_bf16_problem

        problem = cpu_bf16_problem()
        if problem:
            raise StylexportError(f"--amp bf16 on the CPU: {problem}; leave --amp out (FP32)")
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp in ("bf16", "auto"):
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if amp == "bf16":
            raise StylexportError("bf16 is not supported on this GPU; use --amp fp16 or --amp off")
        return torch.float16


def _describe(config: TrainConfig, style_sha: str, data: list[str], vgg_desc: dict[str, str]) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d.update(style_sha256=style_sha, style_name=Path(config.style).stem, data_count=len(data),
             data_sha256=hashlib.sha256("\n".join(data).encode()).hexdigest(), architecture=ARCHITECTURE,
             stylexport_version=__version__, **vgg_desc)
    return d


def _this_call(step: int, device: torch.device, amp_dtype: torch.dtype | None, world: int) -> dict[str, Any]:
    from stylexport.devices import cpu_flags, cpu_name

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    extra = {} if device.type == "cuda" else {"cpu_flags": list(cpu_flags()), "threads": torch.get_num_threads()}
    return {"from_step": step, "device": device.type, "hardware": where, **extra, "processes": world,
            "amp": {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype),  # --amp's names; None: FP32
            "torch": torch.__version__, "stylexport_version": __version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _data_manifest(root: str, files: list[Path]) -> list[str]:
    """What identifies the training photos: each one's path under the data folder and its size, sorted."""
    base = Path(root)
    return sorted(f"{f.relative_to(base).as_posix()}\t{f.stat().st_size}" for f in files)


def _data_difference(run_dir: Path, now: list[str]) -> str:
    saved_file = run_dir / DATA_FILE
    if not saved_file.is_file():
        return "the run folder has no data.tsv to compare with"
    saved = set(saved_file.read_text().splitlines())
    gone, new = sorted(saved - set(now)), sorted(set(now) - saved)
    parts = []
    if gone:
        parts.append(f"{len(gone)} photo(s) missing or changed, e.g. {gone[0].split(chr(9))[0]}")
    if new:
        parts.append(f"{len(new)} photo(s) new or changed, e.g. {new[0].split(chr(9))[0]}")
    return "; ".join(parts) or "the same photos in another order"


def _check_resumable(saved: dict[str, Any], now: dict[str, Any], run_dir: Path, data: list[str]) -> None:
    for key in RESUME_MUST_MATCH:
        if saved.get(key, RESUME_DEFAULTS.get(key)) != now.get(key):
            if key in ("data_sha256", "data_count"):
                raise StylexportError(f"cannot resume {run_dir}: --data {now['data']} holds other photos than the "
                                      f"run was trained on ({_data_difference(run_dir, data)}); resume with the "
                                      f"original data ({saved.get('data')}) or start a new run folder")
            raise StylexportError(f"cannot resume {run_dir}: {key} was {saved.get(key)!r}, now {now.get(key)!r}; "
                                  "start a new run folder or use the original settings")


def _saved_model(run_dir: Path, saved: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of the checkpoint state.pt belongs to: model.safetensors of the same step (runs from before
    the split keep them in state.pt)."""
    if "model" in saved:
        return saved["model"]
    from stylexport.checkpoint import load_checkpoint

    loaded = load_checkpoint(run_dir / MODEL_FILE)
    if loaded.metadata.get("step") != saved["step"]:
        raise StylexportError(f"cannot resume {run_dir}: {STATE_FILE} is from step {saved['step']} but {MODEL_FILE} "
                              f"from step {loaded.metadata.get('step')} (a checkpoint was cut off between the two "
                              "files, or one was copied from another run); copy both files of one checkpoint")
    return loaded.model.state_dict()


def _load_state(state_path: Path, run_dir: Path) -> dict[str, Any]:
    """The resumable state, or one line saying it is damaged (a copy cut short, a full disk) and what is left."""
    try:
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
        if lacks := sorted({"optimizer", "step", "rng", "scaler"} - saved.keys()):
            raise ValueError(f"it lacks {', '.join(lacks)}")
        return saved
    except Exception as exc:  # noqa: BLE001 - truncated, not a torch file, another program's state
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise StylexportError(f"cannot resume {run_dir}: {STATE_FILE} is damaged ({reason}); its {MODEL_FILE} "
                              "still stylizes, and a new run folder trains again from the start") from None


def _died_before_first_checkpoint(run_dir: Path) -> bool:
    """A folder holding only what a run writes before its first checkpoint, and no state.pt."""
    return run_dir.is_dir() and not (run_dir / STATE_FILE).exists() and \
        all(p.name in RUN_FILES or p.name.startswith(".") for p in run_dir.iterdir())


def _held_out_photos(files: list[Path], previews: int, hold_out: int,
                     batch_size: int) -> tuple[list[Path], list[Path], list[Path]]:
    """(training photos, held-out photos, preview photos). ``hold_out`` photos, evenly spaced over the sorted
    list, are kept out of training; with none asked for, a few are held for previews when the data set is big
    enough (else previews use the bundled photo). Previews are the first held-out photos."""
    count = hold_out or (previews if len(files) >= 20 else 0)
    if hold_out and len(files) - hold_out < batch_size:
        if hold_out < len(files):
            raise StylexportError(f"--hold-out {hold_out} leaves {len(files) - hold_out} of {len(files)} photos to "
                                  f"train on, fewer than a batch ({batch_size}); hold out fewer photos or add photos")
        why = (f"so none would be left to train on; hold out fewer than {len(files) - batch_size + 1} or add photos"
               if len(files) >= batch_size else f"fewer than a batch ({batch_size}) before any is held out; add photos")
        raise StylexportError(f"--hold-out {hold_out}: the data has only {len(files)} photos, {why}")
    if count > 0:
        step = len(files) // count
        held = [files[i * step] for i in range(count)]
        kept = set(held)
        return [f for f in files if f not in kept], held, held[:previews] or [sample_paths()[0]]
    return files, [], [sample_paths()[0]]


def preview_tiles(photos: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """Photos of any aspect as size x size tiles (shorter side resized, centre cropped), so they line up."""
    import torchvision.transforms.v2.functional as TF

    return [TF.center_crop(TF.resize(p, size, antialias=True), [size, size]).clamp(0, 255) for p in photos]


def _save_previews(model: TransformerNet, photos: list[torch.Tensor], path: Path, device: torch.device) -> None:
    """Photos over their stylized versions. A preview is a convenience: a failure is logged, never fatal."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outs = [model(p[None].to(device))[0].float().cpu() for p in photos]
        save_image(torch.cat([torch.cat(photos, dim=-1), torch.cat(outs, dim=-1)], dim=-2), path)
    except Exception as exc:  # noqa: BLE001 - previews must never end a training run
        log.warning("could not write preview %s: %s", path, exc)
    finally:
        model.train(was_training)


def _read_skipped(path: Path) -> dict[str, str]:
    """A run's list of unreadable training photos (path -> why), as an earlier call of it wrote them."""
    if not path.is_file():
        return {}
    return dict(line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line)


def read_history(path: Path, up_to: int) -> list[dict[str, Any]]:
    """Loss history lines up to step ``up_to``; a line cut short by a kill is ignored."""
    if not path.exists():
        return []
    history = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("step", up_to + 1) <= up_to:
            history.append(entry)
    return history


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        # the loss terms and the stop flag are reduced as CPU tensors: gloo for those beside NCCL on GPUs
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


class _StopRequests:
    """Ctrl-C or SIGTERM while training asks the loop to stop after the step it is in, with a checkpoint of that
    step, instead of ending it where it stands and losing every step since the last checkpoint (up to
    --checkpoint-every: 1000 steps, most of an hour on a CPU); a second signal stops at once. Only the main
    thread can hold signal handlers; elsewhere (a training run in a thread) nothing changes."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is signal.SIG_IGN:  # a run started in the background (`cmd &` in a
                    continue  # script, nohup) ignores Ctrl-C: it keeps ignoring it
                self._previous[sig] = signal.signal(sig, self._asked)
        return self

    def _asked(self, signum: int, frame) -> None:
        if self.signum is not None:  # asked twice: at once, as without this handler
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signum = signum
        log.warning("%s: stopping after this step with a checkpoint of it (%s again stops at once)",
                    signal.Signals(signum).name, "Ctrl-C" if signum == signal.SIGINT else "the same signal")

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM to the training process (a terminal's Ctrl-C and a scheduler's
    SIGTERM reach the whole process group): a worker that died of one ended the run in a DataLoader traceback,
    before it could checkpoint. The workers still end with it: the loader shuts them down, or they see their
    parent gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _any_rank(flag: bool, world: int) -> bool:
    """True on every rank when it is true on one (all ranks must stop at the same step)."""
    if world == 1:
        return flag
    packed = torch.tensor([float(flag)])
    torch.distributed.all_reduce(packed, op=torch.distributed.ReduceOp.MAX)
    return bool(packed.item())


def _global_mean(terms, world: int) -> dict[str, float]:
    """The loss terms averaged over all ranks: the loss of the whole batch, as one process would log it."""
    values = terms.as_floats()
    if world == 1:
        return values
    packed = torch.tensor([values[k] for k in values], dtype=torch.float64)
    torch.distributed.all_reduce(packed)
    return {k: float(v) / world for k, v in zip(values, packed, strict=True)}


def _with_init(config: TrainConfig, resume: bool) -> tuple[TrainConfig, LoadedModel | None]:
    """``config`` with ``edge_pad`` settled (given, else the --init checkpoint's, else 0) and ``init`` as the file
    it names; the --init checkpoint loaded (a file, or a shipped style's name; not on resume, whose weights are
    the run's). One-line errors for a crop too small for the pad and for an init that cannot be read."""
    init = None
    if config.init is not None and not resume:
        from stylexport.styles import find_style

        path = model_file(config.init)  # a run's folder: the weights it has reached
        if not path.exists() and os.sep not in config.init and "." not in config.init:
            try:
                path = find_style(config.init).model  # a shipped style's name
            except StylexportError as exc:
                raise StylexportError(f"--init {config.init}: no such checkpoint file, and {exc}") from None
        init = load_checkpoint(path)
        config = dataclasses.replace(config, init=str(path))
    edge_pad = config.edge_pad if config.edge_pad is not None else init.model.edge_pad if init else 0
    if not valid_edge_pad(edge_pad):
        raise StylexportError(f"--edge-pad {edge_pad!r}: give a whole number of pixels in 0..{MAX_EDGE_PAD} "
                              "(32 pushes the edge band out of the picture)")
    least = TransformerNet(edge_pad).min_side
    if config.image_size < least:
        pad = f"--edge-pad {edge_pad}" if config.edge_pad is not None else \
            f"edge_pad {edge_pad} (the --init checkpoint's)"
        raise StylexportError(f"--image-size {config.image_size} is too small for {pad}: the crop must be at least "
                              f"{least} px; use --image-size 256 (the paper's)")
    return dataclasses.replace(config, edge_pad=edge_pad), init


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig saved in a run folder (to resume it), or a one-line error."""
    config_path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise StylexportError(f"cannot resume {run_dir}: no such run folder; pass the folder a stylexport train -o "
                              "wrote")
    if not config_path.is_file():
        raise StylexportError(f"cannot resume {run_dir}: no {CONFIG_FILE} there; is it a stylexport run folder?")
    try:
        saved = json.loads(config_path.read_text())
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        loss = LossConfig(**{**saved["loss"], "style_layers": tuple(saved["loss"]["style_layers"])})
        return TrainConfig(**{k: v for k, v in saved.items() if k in fields and k != "loss"}, loss=loss)
    except (ValueError, KeyError, TypeError) as exc:
        raise StylexportError(f"cannot resume {run_dir}: {CONFIG_FILE} is damaged ({exc}); start a new run") \
            from None


def loss_function(vgg, targets, loss_cfg, device: torch.device, amp_dtype: torch.dtype | None):
    """``batch_loss(module, x)``: the perceptual loss of ``module`` on the batch ``x``, as a training step
    computes it (forward under autocast; Grams and sums in fp32, outside it). bench times this same step."""

    def batch_loss(module, x: torch.Tensor):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            y = module(x, clamp=False)
            feats = vgg(y, loss_cfg.layers())
            with torch.no_grad():
                content = vgg(x, (loss_cfg.content_layer,))[loss_cfg.content_layer]
        return perceptual_loss(y, feats, content, targets, loss_cfg)

    return batch_loss


def train(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False,
          progress: Callable[[StepInfo], None] | None = None, return_on_signal: bool = False) -> TrainResult:
    """Train a style network into ``run_dir``; ``resume`` continues the run saved there.

    A Ctrl-C or SIGTERM stops the run after the step it is in, with a checkpoint of that step; then the signal is
    delivered again as it would have been without training (KeyboardInterrupt for Ctrl-C, the process's own
    SIGTERM handler or its end), so a script that calls train() stops too. ``return_on_signal`` returns the
    result instead, its ``stopped_by`` naming the signal (the CLI says how to resume)."""
    from stylexport.runtime.torch_backend import pick_device

    run_dir = Path(run_dir)
    rank, world = _distributed()
    device = pick_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    state_path = run_dir / STATE_FILE
    check_writable(run_dir, folder=True)  # a file in its place: one line now, not a traceback after the set-up
    if resume and not state_path.is_file():
        raise StylexportError(f"cannot resume {run_dir}: it has no {STATE_FILE} (the run stopped before its first "
                              "checkpoint); start it again without --resume, the folder is reused")
    if not resume and run_dir.exists() and any(run_dir.iterdir()) and not _died_before_first_checkpoint(run_dir):
        raise StylexportError(f"run folder {run_dir} already exists; pass --resume {run_dir} to continue it, or "
                              "choose a new folder")
    if world > 1:  # every rank has checked the folder before rank 0 starts writing into it
        torch.distributed.barrier()

    config, init = _with_init(config, resume)
    style_image = read_for_loss(config.style, config.style_size, what="style image", option="--style-size")
    files = list_photos(config.data)
    train_files, held_files, preview_files = _held_out_photos(files, config.previews, config.hold_out,
                                                              config.batch_size)
    held_out = len(held_files)
    if held_out:
        log.info("holding out %d of %d photos (not trained on)", held_out, len(files))
    data = _data_manifest(config.data, train_files)
    vgg = load_vgg(config.vgg_weights, device)
    described = _describe(config, sha256_file(config.style), data, vgg.describe())
    if init is not None:
        described["init_sha256"] = init.sha256
    if resume:
        before = json.loads((run_dir / CONFIG_FILE).read_text())
        _check_resumable(before, json.loads(json.dumps(described)), run_dir, data)
        if "init_sha256" in before:
            described["init_sha256"] = before["init_sha256"]
        described["calls"] = list(before.get("calls", []))

    torch.manual_seed(config.seed)
    model = TransformerNet(config.edge_pad)
    if init is not None:
        model.load_state_dict(init.model.state_dict())
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    amp_dtype = autocast_dtype(config.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    step = 0
    if resume:
        saved = _load_state(state_path, run_dir)
        model.load_state_dict(_saved_model(run_dir, saved))
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        step = int(saved["step"])
        _set_rng_state(saved["rng"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if config.channels_last:  # CUDA; on an AMX CPU 1.15x the BF16 step (benchmarks/results/cpu-train-layout-*)
        model = model.to(memory_format=torch.channels_last)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    model.train()

    total_steps = config.total_steps(len(train_files))
    loss_cfg = config.loss
    targets = style_targets(vgg, style_image[None].to(device), loss_cfg.style_layers)
    dataset = PhotoCrops(train_files, config.image_size, config.seed)
    sampler = EpochSampler(len(train_files), config.seed, start=step * config.batch_size * world,
                           total=total_steps * config.batch_size * world, rank=rank, world=world)
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=config.workers, pin_memory=device.type == "cuda",
                        persistent_workers=False, prefetch_factor=4 if config.workers else None,
                        worker_init_fn=_ignore_stop_signals if config.workers else None)
    previews = preview_tiles([read_image(p) for p in preview_files], config.image_size)

    main = rank == 0
    start_step = step
    # where each call (a run, each --resume of it) trained: a run in chunks may move between machines, and a
    # shipped style says what made it
    described.setdefault("calls", []).append(_this_call(step, device, amp_dtype, world))
    if main:
        if not resume and _died_before_first_checkpoint(run_dir):
            log.warning("run folder %s holds a run that stopped before its first checkpoint; starting over in it",
                        run_dir)
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "previews").mkdir(exist_ok=True)
        write_text_atomic(run_dir / CONFIG_FILE, json.dumps(described, indent=2) + "\n")  # a resume may add steps
        write_text_atomic(run_dir / DATA_FILE, "".join(line + "\n" for line in data))
        if held_files:
            base = Path(config.data)
            write_text_atomic(run_dir / HELD_OUT_FILE, "".join(f.relative_to(base).as_posix() + "\n"
                                                               for f in held_files))
    history_path = run_dir / HISTORY_FILE
    history = read_history(history_path, up_to=step)
    if main and resume:  # drop entries logged after the checkpoint we continue from
        write_text_atomic(history_path, "".join(json.dumps(h) + "\n" for h in history))

    last_saved = step if resume else None  # the checkpoint really on disk

    batch_loss = loss_function(vgg, targets, loss_cfg, device, amp_dtype)

    def good_weights(x: torch.Tensor) -> bool:
        """Finite weights whose loss on this batch is finite: only such a model is worth a checkpoint."""
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            return False
        with torch.no_grad():
            return bool(torch.isfinite(batch_loss(model, x).total))

    def kept() -> str:
        return (f"the last good checkpoint (step {last_saved}) is kept in {run_dir}" if last_saved is not None else
                f"no checkpoint was written, so {run_dir} holds nothing to resume")

    def checkpoint(x: torch.Tensor) -> None:
        nonlocal last_saved
        if not good_weights(x):
            raise StylexportError(f"the weights after step {step} are not finite or give a non-finite loss; "
                                  f"{kept()}; lower --lr or --style-weight and start a new run")
        if not main:
            return
        # the weights go to model.safetensors below (same step, checked on resume): state.pt stays under 16 MiB
        trained_state = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "step": step,
                         "rng": _rng_state()}
        with atomic_path(state_path) as tmp:
            torch.save(trained_state, tmp)
        meta = {k: described[k] for k in ("style_name", "style_sha256", "image_size", "vgg_source",
                                          "vgg_preprocessing")}
        save_checkpoint(run_dir / MODEL_FILE, model, {**meta, "step": step, "loss": dataclasses.asdict(loss_cfg),
                                                      "train": {"batch_size": config.batch_size, "lr": config.lr,
                                                                "style_size": config.style_size,
                                                                **({"init_sha256": described["init_sha256"]}
                                                                   if "init_sha256" in described else {})}})
        plot_history(history, run_dir / "loss.png")
        last_saved = step

    skipped = _read_skipped(run_dir / SKIPPED_FILE) if main else {}  # a resumed run's, kept
    start_time = time.perf_counter()
    deadline = start_time + config.max_minutes * 60 if config.max_minutes else math.inf
    out_of_time = False
    images_seen = 0
    window_start, window_images = start_time, 0
    ips, values, logged = 0.0, {}, start_step + 1  # the first step of each call is measured
    stopped = False
    with _StopRequests() as stops:
        for batch, bad in loader:
            if main and not set(dict(bad)) <= set(skipped):
                skipped.update(bad)
                write_text_atomic(run_dir / SKIPPED_FILE, "".join(f"{path}\t{why}\n"
                                                                  for path, why in sorted(skipped.items())))
            if batch is None:
                continue
            x = batch.to(device, non_blocking=True)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            terms = batch_loss(net, x)
            if not torch.isfinite(terms.total):
                raise StylexportError(f"loss became {terms.total.item()} at step {step + 1}; {kept()}; "
                                      "lower --lr or --style-weight and start a new run")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms.total).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            images_seen += x.shape[0] * world
            window_images += x.shape[0] * world
            now = time.perf_counter()
            if step % config.log_every == 0 or step == total_steps or step == start_step + 1:  # and the first
                ips = window_images / max(now - window_start, 1e-9)
                window_start, window_images = now, 0
                values, logged = _global_mean(terms, world), step
                history.append({"step": step, **values, "images_per_second": ips})
                if main:
                    with history_path.open("a") as f:
                        f.write(json.dumps(history[-1]) + "\n")
            if progress is not None and main:
                progress(StepInfo(step, total_steps, values, ips,
                                  None if math.isinf(deadline) else max(deadline - now, 0.0), logged))
            out_of_time = step < total_steps and time.perf_counter() >= deadline  # a chunk ends: preview, checkpoint
            stopped = step < total_steps and _any_rank(stops.signum is not None, world)  # Ctrl-C, SIGTERM: checkpoint
            if main and (step % config.preview_every == 0 or step == total_steps or out_of_time):
                _save_previews(model, previews, run_dir / "previews" / f"step_{step:07d}.jpg", device)
            if step % config.checkpoint_every == 0 or step == total_steps or out_of_time or stopped:
                checkpoint(x)
            if step >= total_steps or out_of_time or stopped:
                break
    seconds = time.perf_counter() - start_time
    if stopped and not return_on_signal:  # the caller's own handlers are back: the signal reaches them now
        log.warning("stopped after step %d of %d with a checkpoint of it; resume with --resume %s",
                    step, total_steps, run_dir)
        signal.raise_signal(stops.signum)
    return TrainResult(run_dir=run_dir, steps=step, skipped_files=sorted(skipped), seconds=seconds,
                       images_per_second=images_seen / max(seconds, 1e-9), main=main, start_step=start_step,
                       held_out=held_out, total_steps=total_steps, time_limited=out_of_time,
                       stopped_by=stops.signum if stopped else None)
