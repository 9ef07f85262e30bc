"""The run: every engine, every size, timed the way inference engineers time.

- Engines are the rows of stylexport.formats.ENGINES; a checkpoint is exported on demand to the formats they
  run (parity-checked like ``stylexport export``), an exported artifact runs on the engines of its format.
- Warm-up first (covers compilation, autotuning and the first call after a shape change).
- GPU compute time from CUDA events; end-to-end time (uint8 frame in host memory -> stylized uint8 frame in
  host memory) timed separately with the host clock after synchronizing.
- Many repeats, p50/p95/p99 and the IQR; engines interleaved in blocks, in rotating order, so drift favours
  none; a row whose p95 is far above its p50 is flagged.
- Inputs are real photos (never zeros), a few different ones in rotation.
- Quality: each engine's output against the reference (torch FP32 of the checkpoint, or the first engine
  for an exported artifact) on the same photo.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stylexport.bench.environment import environment, measure_matmul, peak_tflops
from stylexport.bench.timing import instability, percentiles, photo, sync, time_compute, time_end_to_end
from stylexport.contract import MIN_SIDE
from stylexport.errors import StylexportError
from stylexport.formats import (
    BENCH_ENGINES,
    CHECKPOINT,
    ENGINES,
    FORMATS,
    Engine,
    format_of,
    get_engine,
    open_engine,
    unavailable,
)
from stylexport.metrics import compare
from stylexport.model import TransformerNet, conv_macs_per_pixel

log = logging.getLogger(__name__)

NAMED_SIZES = {"256": (256, 256), "512": (512, 512), "720p": (720, 1280), "1080p": (1080, 1920),
               "4k": (2160, 3840)}


class Skip(Exception):
    """An engine that cannot run here; the message is the reason recorded in the results."""


def parse_size(text: str) -> tuple[int, int]:
    """HxW, a named size (720p, 1080p, 4k) or N for a square NxN."""
    key = text.strip().lower()
    if key in NAMED_SIZES:
        return NAMED_SIZES[key]
    parts = key.split("x")
    try:
        h, w = (int(v) for v in (parts * 2 if len(parts) == 1 else parts))
    except ValueError:  # not numbers, or not two of them
        h = w = 0
    if h < 1 or w < 1:
        raise StylexportError(f"size {text!r}: use HxW (e.g. 270x480), N for NxN, or one of "
                              f"{', '.join(NAMED_SIZES)}")
    if min(h, w) < MIN_SIDE:  # every engine would refuse it: one line now, not a table of failed rows
        raise StylexportError(f"size {text!r}: each side must be at least {MIN_SIDE} px")
    return h, w


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    backends: tuple[str, ...] | None = None  # None: every engine for the model that this machine can run
    sizes: tuple[tuple[int, int], ...] = ((256, 256),)
    batches: tuple[int, ...] = (1,)
    warmup: int = 5
    repeats: int = 30
    block: int = 5  # calls per engine before moving to the next one (interleaving)
    gatys_iterations: tuple[int, ...] = ()
    gatys_sizes: tuple[int, ...] = ()
    train_throughput: bool = False
    device: str = "auto"
    exported: str | None = None  # a folder `stylexport export` wrote for this checkpoint: its artifacts are used

    def __post_init__(self):
        for what, values in (("--batch", self.batches), ("--gatys-iterations", self.gatys_iterations),
                             ("--gatys-sizes", self.gatys_sizes)):
            if any(v < 1 for v in values):
                raise StylexportError(f"{what} {', '.join(map(str, values))}: each must be 1 or more")
        if self.gatys_sizes and min(self.gatys_sizes) < MIN_SIDE:
            raise StylexportError(f"--gatys-sizes {min(self.gatys_sizes)}: each must be at least {MIN_SIDE} px")
        twice = sorted({b for b in self.backends or () if self.backends.count(b) > 1})
        if twice:
            raise StylexportError(f"--backends names {', '.join(twice)} more than once; name each engine once")

    @property
    def rounds(self) -> int:
        """Interleaved rounds per shape: each engine runs ``block`` timed calls a round, ``repeats`` in all."""
        return max(1, math.ceil(self.repeats / self.block))


def make_backend(name: str, source: Path | None, device: torch.device,
                 exported: dict[str, Path] | None = None):
    """A runner for engine ``name`` on ``source`` (an artifact of a format the engine runs, or a checkpoint:
    its artifact from ``exported``, else from the engine cache that stylize uses, exported and parity-checked
    there the first time), or Skip(reason)."""
    from stylexport.stylize import open_cached

    engine = get_engine(name)  # refuses unknown names
    why = unavailable(engine, device)
    if why:
        raise Skip(why)
    fmt = format_of(source)
    if fmt.name in engine.formats:
        return open_engine(engine, source, device)
    if fmt is not CHECKPOINT:
        raise Skip(f"runs {'/'.join(engine.formats)} files, not {fmt.name}")
    if exported and engine.formats[0] in exported:
        return open_engine(engine, exported[engine.formats[0]], device)
    return open_cached(source, engine, device)


def exported_artifacts(checkpoint: Path, exported: str) -> dict[str, Path]:
    """The artifacts of ``checkpoint`` (by sha256) in ``exported``, a folder `stylexport export` wrote, by
    format: bench runs these instead of its own exports."""
    from stylexport.artifacts import EXPORT_RECORD, read_export_record
    from stylexport.fileio import sha256_file

    if not (Path(exported) / EXPORT_RECORD).is_file():
        raise StylexportError(f"--exported {exported}: no {EXPORT_RECORD} there; run stylexport export -o "
                              f"{exported}")
    records = read_export_record(exported)["artifacts"]
    sha = sha256_file(checkpoint)
    made = {a["format"]: Path(exported) / Path(a["path"]).name for a in records
            if a.get("passed") and a.get("checkpoint_sha256") == sha}
    if not made:
        others = ", ".join(sorted({str(a.get("checkpoint")) for a in records}))
        held = f"its artifacts come from {others}" if others else f"its {EXPORT_RECORD} records no artifact"
        raise StylexportError(f"--exported {exported} holds no artifact exported from {checkpoint} ({held}); export "
                              f"{checkpoint} there again")
    return made


def _compiles_first(engine: Engine, source: Path, exported: dict[str, Path] | None) -> bool:
    """Whether ``engine`` must compile before it runs ``source``: an engine that compiles the checkpoint when
    it opens it (torch.compile), or an artifact neither given, nor in ``exported``, nor in the engine cache."""
    from stylexport.stylize import cached_artifacts, engine_cache

    fmt = format_of(source)
    if fmt.name in engine.formats:
        return fmt is CHECKPOINT
    artifact = FORMATS[engine.formats[0]]
    return fmt is CHECKPOINT and not ((exported and artifact.name in exported)
                                      or cached_artifacts(engine_cache(source), artifact))


def engine_precision(engine: Engine) -> str:
    """The precision an engine computes in (for the peak it is compared with): an INT8 artifact's, else the
    engine's own (torch FP16, OpenVINO BF16), else its format's."""
    fmt = FORMATS[engine.formats[0]]
    return "int8" if fmt.precision == "int8" else engine.option("precision") or fmt.precision


class _Steps:
    """The bench's progress as steps done of a total, for ``progress(what, done, total)``: preparing each
    engine, each engine's warm-up and timing rounds at every shape, each Gatys run. The total counts every
    engine asked for, and drops those skipped once they are known."""

    def __init__(self, progress: Callable[[str, int, int], None] | None, total: int):
        self.progress, self.done, self.total = progress, 0, total

    def __call__(self, what: str) -> None:
        """A step begins (so the one before it is done)."""
        if self.progress:
            self.progress(what, self.done, self.total)
        self.done += 1

    def skip(self, steps: int) -> None:
        self.total -= steps

    def finish(self) -> None:
        if self.progress:
            self.progress("done", self.total, self.total)


def run(model_path: str | Path | None, config: BenchConfig,
        progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Benchmark; returns the results dictionary (see ``report.write_results`` for the files).
    ``progress(what, done, total)`` is called as each step begins."""
    from stylexport.checkpoint import load_checkpoint, save_checkpoint
    from stylexport.devices import pick_device
    from stylexport.fileio import cache_folder

    device = pick_device(config.device)
    if model_path is None:  # the same bytes every run, so its exports are cached like any checkpoint's
        torch.manual_seed(0)
        checkpoint = save_checkpoint(cache_folder("bench") / "random-weights-seed0.safetensors",
                                     TransformerNet().eval(), {"style_name": "random-weights"})
        source, model_desc = checkpoint, "random weights (seed 0): timing only"
    else:
        source, model_desc = Path(model_path), str(model_path)
        if not source.is_file():
            raise StylexportError(f"model not found: {source}")
    fmt = format_of(source)
    is_checkpoint = fmt is CHECKPOINT
    model = load_checkpoint(source).model if is_checkpoint else None
    exported = exported_artifacts(source, config.exported) if is_checkpoint and config.exported else None
    cpu = device.type == "cpu"
    if config.backends:
        names = config.backends
    else:
        names = tuple(n for n in BENCH_ENGINES if is_checkpoint or fmt.name in ENGINES[n].formats)

    per_engine = len(config.sizes) * len(config.batches) * (1 + config.rounds)  # a warm-up and the rounds a shape
    gatys_runs = len(config.gatys_sizes) * len(config.gatys_iterations)
    step = _Steps(progress, len(names) * (1 + per_engine) + gatys_runs + int(config.train_throughput))
    runners, skipped, precisions = {}, {}, {}
    for name in names:
        step(f"preparing {name}")
        if cpu and config.backends is None and ENGINES[name].cpu_opt_in and _compiles_first(ENGINES[name], source,
                                                                                            exported):
            skipped[name] = f"compiling takes minutes on CPU; ask for it with --backends {name}"
            continue
        try:
            runners[name] = make_backend(name, source, device, exported)
            precisions[name] = engine_precision(ENGINES[name])
        except Skip as why:
            skipped[name] = str(why)
        except StylexportError as exc:
            if name not in ENGINES:
                raise
            skipped[name] = str(exc)
        if name in skipped:
            step.skip(per_engine)
    if not runners:
        raise StylexportError(f"no engine could run {source.name} here: "
                              + "; ".join(f"{n}: {why}" for n, why in skipped.items()))

    artifacts = {n: str(getattr(r, "path", source)) for n, r in runners.items()}  # what each engine ran
    # a model made elsewhere is another network: its FLOP are unknown, so no row is compared with the peak
    foreign = not is_checkpoint and not any(r.metadata.get("format") for r in runners.values())
    flop_per_pixel = None if foreign else 2 * conv_macs_per_pixel(model if model is not None else TransformerNet())
    reference = "torch-fp32 of the checkpoint" if is_checkpoint else f"{next(iter(runners))} (first engine)"
    peaks = {p: peak_tflops(device, p) for p in sorted(set(precisions.values()))}
    results = []
    try:
        sizes, batches, notes = _shapes_it_takes(runners, source, config)
        for (h, w) in sizes:
            for batch in batches:
                results += _bench_shape(runners, model, h, w, batch, device, config, flop_per_pixel, peaks,
                                        precisions, step)
    finally:
        for runner in runners.values():
            runner.close()
    out = {"environment": environment(device), "model": model_desc, "model_format": fmt.name,
           "flop_per_pixel": flop_per_pixel, "reference": reference,
           "peaks": {p: {"tflops": t, "how": how} for p, (t, how) in peaks.items()},
           "measured": measure_matmul(device),
           "config": {**dataclasses.asdict(config), "backends": list(names)}, "results": results,
           "skipped": skipped, "artifacts": artifacts, "notes": notes}
    if config.gatys_iterations and config.gatys_sizes:
        if model is None:
            raise StylexportError("--gatys compares with the checkpoint's own network: give a checkpoint")
        out["gatys"] = bench_gatys(model, config, device, step)
    if config.train_throughput:
        step("training throughput")
        out["training"] = training_throughput(device)
    step.finish()
    return out


def _shapes_it_takes(runners, source: Path, config: BenchConfig):
    """The sizes and batches to time: those asked for, or, for a model that takes one size (or batch) only, that
    one, said in a note (every row would fail otherwise). A size under the network's smallest side (an
    edge-padded network's is its pad + 4) is refused: bench times the engines themselves, which take no less."""
    sizes, batches, notes = list(config.sizes), list(config.batches), []
    least = max(r.spec.min_side for r in runners.values())
    if small := [f"{h}x{w}" for h, w in sizes if min(h, w) < least]:
        raise StylexportError(f"--sizes {','.join(small)}: {source.name} takes sides of at least {least} px"
                              + (" (it pads its edges inside itself)" if least > MIN_SIDE else "")
                              + f"; time sizes of at least {least}x{least}")
    fixed_hw = {r.spec.fixed_hw for r in runners.values()}
    fixed_batch = {r.spec.fixed_batch for r in runners.values()}
    if len(fixed_hw) == 1 and None not in fixed_hw and (hw := fixed_hw.pop()) not in sizes:
        notes.append(f"{source.name} only takes {hw[0]}x{hw[1]} images: timed at that size instead of "
                     f"{', '.join(f'{h}x{w}' for h, w in sizes)}")
        sizes = [hw]
    if len(fixed_batch) == 1 and None not in fixed_batch and (n := fixed_batch.pop()) not in batches:
        notes.append(f"{source.name} only takes batch {n}: timed at that batch instead of "
                     f"{', '.join(map(str, batches))}")
        batches = [n]
    return sizes, batches, notes


def _bench_shape(runners, model, h, w, batch, device, config, flop_per_pixel, peaks, precisions,
                 step: _Steps) -> list[dict]:
    inputs = [torch.cat([photo(h, w, seed=s * 7 + i) for i in range(batch)]) for s in range(3)]
    on_device = {name: [x.to(r.device) for x in inputs] for name, r in runners.items()}
    frames = [(x[0].round().to(torch.uint8).permute(1, 2, 0).contiguous()) for x in inputs]
    if device.type == "cuda":
        frames = [f.pin_memory() for f in frames]
    reference = None
    if model is not None:
        with torch.no_grad():
            reference = model.float().cpu()(inputs[0])
    calls, quality, compute, e2e, failed = {}, {}, {n: [] for n in runners}, {n: [] for n in runners}, {}
    for name, runner in runners.items():
        step(f"warm-up {name} {h}x{w} batch {batch}")
        try:
            call = runner.bind(on_device[name][0])  # validated once; the timed calls go straight to the backend
            for i in range(config.warmup):
                call(on_device[name][i % 3])
            sync(runner.device)
            out = call(on_device[name][0]).float().cpu()
            if reference is None:
                reference = out
            quality[name] = compare(out, reference)
            calls[name] = call
        except (StylexportError, RuntimeError) as exc:  # e.g. out of memory at this size
            failed[name] = str(exc).splitlines()[0][:300]
    active = [n for n in runners if n not in failed]
    rounds = config.rounds
    step.skip(rounds * len(failed))
    for r in range(rounds):
        order = active[r % len(active):] + active[: r % len(active)] if active else []
        for name in order:
            step(f"timing {name} {h}x{w} batch {batch} (round {r + 1}/{rounds})")
            dev = runners[name].device
            for k in range(config.block):
                compute[name].append(time_compute(calls[name], on_device[name][k % 3], dev))
            for k in range(max(1, config.block // 2)):
                e2e[name].append(time_end_to_end(calls[name], frames[k % 3], dev) if batch == 1 else math.nan)
    out = []
    flops = flop_per_pixel * h * w * batch if flop_per_pixel else None
    for name in runners:
        row = {"backend": name, "height": h, "width": w, "batch": batch, "precision": precisions[name]}
        if name in failed:
            out.append({**row, "error": failed[name]})
            continue
        stats = percentiles(compute[name])
        p50_s = stats["p50_ms"] / 1e3
        peak, _how = peaks[precisions[name]]
        floor_ms = flops / (peak * 1e12) * 1e3 if peak and flops else None
        end_to_end = percentiles(e2e[name]) if batch == 1 else None
        warnings = [w for w in (instability(stats),) if w]
        if end_to_end and end_to_end["p50_ms"] < stats["p50_ms"] * 0.9:
            warnings.append("end-to-end p50 is below compute p50: the timings are unreliable")
        out.append({**row, "compute": stats, "end_to_end": end_to_end, "fps": batch / p50_s,
                    "achieved_tflops": flops / p50_s / 1e12 if flops else None, "peak_floor_ms": floor_ms,
                    "percent_of_peak": 100.0 * floor_ms / stats["p50_ms"] if floor_ms else None,
                    "quality": quality[name].as_dict(), "warnings": warnings})
    return out


def bench_gatys(model, config: BenchConfig, device: torch.device, step: Callable[[str], None]) -> list[dict]:
    """Gatys L-BFGS at each size and iteration count, and the same VGG loss on the feed-forward output."""
    from stylexport.gatys import GatysConfig, evaluate, style_targets, stylize_gatys
    from stylexport.image import read_image, resize_max_side, sample_paths
    from stylexport.losses import LossConfig
    from stylexport.vgg import load_vgg

    vgg = load_vgg(None, device)
    loss_cfg = LossConfig()
    style = resize_max_side(read_image(sample_paths()[1]), 256)[None].to(device)
    targets = style_targets(vgg, style, loss_cfg.style_layers)
    net = model.to(device).eval()
    rows = []
    for size in config.gatys_sizes:
        content = photo(size, size).to(device)
        with torch.no_grad():
            cf = vgg(content, (loss_cfg.content_layer,))[loss_cfg.content_layer]
            ff = net(content)
            ff_loss = evaluate(vgg, ff, cf, targets, loss_cfg).as_floats()
        for iterations in config.gatys_iterations:
            step(f"gatys {size}x{size} {iterations} iterations")
            sync(device)
            t0 = time.perf_counter()
            result = stylize_gatys(content, style, vgg, GatysConfig(iterations=iterations, loss=loss_cfg))
            sync(device)
            rows.append({"size": size, "iterations": iterations, "seconds": time.perf_counter() - t0,
                         "gatys_loss": result.losses, "feed_forward_loss": ff_loss})
    return rows


def training_throughput(device: torch.device, batches: tuple[int, ...] = (4, 16), steps: int = 20,
                        size: int = 256, block: int = 5,
                        channels_last: tuple[bool, ...] = (True,)) -> list[dict[str, Any]]:
    """Images/s of the training step (forward, VGG loss, backward, Adam) on real-photo crops, per batch size,
    precision and memory layout: the very loss function and settings train.py uses (channels_last, as train.py
    trains by default; ``channels_last=(False, True)`` times both layouts). CUDA times what ``--amp auto`` trains
    in; a CPU times FP32, and BF16 autocast beside it where the CPU computes BF16 natively. The runs of a batch
    size alternate in blocks of ``block`` steps, so drift on a shared machine cannot favour one."""
    from stylexport.devices import cpu_bf16_problem
    from stylexport.gatys import style_targets
    from stylexport.image import read_image, resize_max_side, sample_paths
    from stylexport.losses import LossConfig
    from stylexport.train import autocast_dtype, loss_function
    from stylexport.vgg import load_vgg

    vgg = load_vgg(None, device)
    cfg = LossConfig()
    targets = style_targets(vgg, resize_max_side(read_image(sample_paths()[1]), 512)[None].to(device),
                            cfg.style_layers)
    cuda = device.type == "cuda"
    amps = [autocast_dtype("auto", device)] if cuda else [None] + ([torch.bfloat16] if not cpu_bf16_problem() else [])
    rows = []
    for batch in batches:
        photos = torch.cat([photo(size, size, seed=i + 1) for i in range(batch)]).to(device)
        runs = []
        for amp, last in ((amp, last) for last in channels_last for amp in amps):
            memory_format = torch.channels_last if last else torch.contiguous_format
            x = photos.contiguous(memory_format=memory_format)
            torch.manual_seed(0)
            model = TransformerNet().to(device, memory_format=memory_format).train()
            opt = torch.optim.Adam(model.parameters(), 1e-3)
            batch_loss = loss_function(vgg, targets, cfg, device, amp)

            def step(model=model, opt=opt, batch_loss=batch_loss, x=x):
                loss = batch_loss(model, x).total
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            for _ in range(3):
                step()
            runs.append((amp, last, step, []))  # (autocast dtype, layout, step, [(steps, seconds) per block])
        while any(sum(n for n, _ in blocks) < steps for *_, blocks in runs):
            for *_, run_step, blocks in runs:
                n = min(block, steps - sum(n for n, _ in blocks))
                sync(device)
                t0 = time.perf_counter()
                for _ in range(n):
                    run_step()
                sync(device)
                blocks.append((n, time.perf_counter() - t0))
        for amp, last, _, blocks in runs:
            done, seconds = sum(n for n, _ in blocks), sum(t for _, t in blocks)
            ips = done * batch / seconds
            rows.append({"images_per_second": ips, "batch": batch, "size": size, "steps": done,
                         "block_images_per_second": [n * batch / t for n, t in blocks if n],
                         "amp": {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp, "off"),
                         "channels_last": last, "paper_schedule_hours": 2 * 80_000 / ips / 3600})
    return rows
