"""The ``stylexport`` command line: parse, build a config, call the library, print. Nothing else."""

from __future__ import annotations

import inspect
import json
import logging
import sys
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperGroup

from stylexport import __version__
from stylexport.errors import StylexportError
from stylexport.styles import DEFAULT_STYLE

console = Console(stderr=True)


class _Group(TyperGroup):
    """Turn user mistakes into one line on stderr and exit code 2, never a traceback or a boxed usage screen:
    StylexportError from the library, and typer's own option errors (bad values, missing options)."""

    def invoke(self, ctx):
        args = [*getattr(ctx, "protected_args", ()), *ctx.args]  # what the user typed, for the messages
        try:
            return super().invoke(ctx)
        except StylexportError as exc:
            typer.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except typer.TyperException as exc:  # typer's vendored click usage errors derive from it
            if not hasattr(exc, "format_message"):
                raise
            command = " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))
            message = " ".join(exc.format_message().split())
            given = _given(args, getattr(exc, "param", None))
            if given is not None:  # typer's range messages leave out the value: "--size -3: input should be ..."
                reason = " ".join(str(getattr(exc, "message", "")).split())
                message = f"{given[0]} {given[1]}: {reason[:1].lower()}{reason[1:]}"
            typer.echo(f"error: {message} (see {command} --help)", err=True)
            sys.exit(getattr(exc, "exit_code", 2))

    def get_params(self, ctx):
        params = super().get_params(ctx)  # the program's own --version, --verbose, completion and --help
        for param in params:
            _tidy_help(param)
        return params

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            command.help = _reflow(command.help)
            for param in command.get_params(ctx):  # with its --help
                _tidy_help(param)
        return command


def _given(args: list[str], param) -> tuple[str, str] | None:
    """(option, value) as the user typed them for an option that was refused (``--size -3`` or ``--size=-3``);
    None for arguments, flags, or when it cannot be found."""
    opts = [*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())]
    if not opts or getattr(param, "is_flag", False) or getattr(param, "param_type_name", "") != "option":
        return None
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in opts and eq:
            return name, value
        if arg in opts and i + 1 < len(args):
            return arg, args[i + 1]
    return None


def _reflow(text: str | None) -> str | None:
    """A docstring's paragraphs as single lines, for rich to wrap to the terminal: it keeps the source's line
    breaks inside a paragraph, which cut the help into ragged lines (and split a command's summary in the list
    of commands)."""
    if not text:
        return text
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def _tidy_help(param) -> None:
    """Help without noise: flags (--help too) show no '<bool>', arguments read CHECKPOINT / INPUTS... instead of
    '{checkpoint} <path>' and '<list[Path]>'."""
    if getattr(param, "is_flag", False):
        param.metavar = ""
    elif param.param_type_name == "argument" and param.metavar is None:
        param.metavar = name = param.name.upper()  # usage: {NAME} required, [NAME] optional, ... repeated
        param.display_type_rich = lambda ctx: None
        param._rich_display_name = lambda: name + ("..." if param.nargs != 1 else "")


app = typer.Typer(cls=_Group, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Fast neural style transfer you can ship: train, export, benchmark, embed.")


class _Progress(Progress):
    """rich's bar on a terminal; elsewhere (CI logs, pipes) a plain line per task every ``every`` seconds and
    one when a task finishes, so long jobs are never silent: also a step that reports nothing for minutes (an
    ExecuTorch lowering, a TensorRT build) gets a line every ``every`` seconds from a heartbeat thread."""

    every = 10.0

    def __init__(self, *columns, **kwargs):
        super().__init__(*columns, **kwargs)
        self._lines = not self.console.is_terminal
        self._last: dict = {}
        self._stopped = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def start(self) -> None:
        if not self._lines:
            super().start()  # a live display; elsewhere it would only leave a blank line behind when it stops
        elif self._heartbeat is None:
            self._stopped.clear()
            self._heartbeat = threading.Thread(target=self._beat, name="progress-lines", daemon=True)
            self._heartbeat.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        if not self._lines:
            super().stop()

    def _beat(self) -> None:
        while not self._stopped.wait(min(self.every, 1.0) or 0.01):
            with self._lock:
                ids = [t.id for t in self._tasks.values() if not t.finished]
            for task_id in ids:
                self._maybe_print(task_id)

    def update(self, task_id, **kwargs) -> None:
        super().update(task_id, **kwargs)
        if self._lines:
            self._maybe_print(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        if self._lines:
            self._maybe_print(task_id)

    def _maybe_print(self, task_id) -> None:
        """A line every ``every`` seconds (the first after ``every`` seconds, so quick jobs stay quiet), and a
        last one when a task that printed finishes."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:  # removed meanwhile
                return
            now = time.monotonic()
            state = self._last.setdefault(task_id, {"since": now, "printed": False, "done": False})
            if task.completed > 0 and "origin" not in state:  # the pace counts from here: not the set-up before
                state["origin"] = (task.elapsed or 0.0, task.completed)  # it, nor the steps of a resumed run
            if state.get("count") != task.completed:  # when the count last moved: a heartbeat line between two
                state.update(count=task.completed, moved=task.elapsed or 0.0)  # reports keeps the pace of those
            finished = task.total is not None and task.completed >= task.total
            if state["done"] or not (finished and state["printed"] or now - state["since"] >= self.every):
                return
            state.update(since=now, printed=True, done=finished)
        of = f"/{task.total:g}" if task.total is not None else ""
        info = task.fields.get("info", "")
        elapsed = task.elapsed or 0.0
        left = ""
        at, was = state.get("origin", (0.0, task.completed))
        if task.total is not None and was < task.completed < task.total:  # at the pace so far: steady in a log
            moved = state["moved"]
            to_go = (moved - at) / (task.completed - was) * (task.total - task.completed) - (elapsed - moved)
            left = f", about {_duration(max(to_go, 0.0))} left"
            stop_at = task.fields.get("stop_at")  # a time limit (train --max-minutes) that ends it sooner
            if stop_at is not None and stop_at - elapsed < to_go:
                left = f", stopping at its time limit in {_duration(max(stop_at - elapsed, 0.0))}"
        done = f"{task.completed:g}{of}" if task.total is not None or task.completed else "still running"
        print(f"{task.description}: {done} after {elapsed:.0f} s{left}{'; ' if info else ''}{info}",
              file=sys.stderr, flush=True)


def _only_with(option: str, value, given: bool, *, needs: str, add: str) -> None:
    """Refuse an option that was said but changes nothing without another (it would be silently ignored):
    '{option} {value} only {needs}; add {add}, or leave {option} out'."""
    if value is not None and not given:
        raise typer.BadParameter(f"{option} {value} only {needs}; add {add}, or leave {option} out",
                                 param_hint=option)


def _said(ctx: typer.Context, name: str):
    """The value of parameter ``name`` when the user gave it (command line or environment), else None: tells an
    option that was said from its default, also where the default is shown in --help."""
    source = ctx.get_parameter_source(name)
    return ctx.params[name] if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT") else None


def _duration(seconds: float) -> str:
    """90 s, 25 min, 3.5 h: how long, to the precision a log reader needs."""
    if seconds < 99.5:
        return f"{seconds:.0f} s"
    if seconds < 99.5 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _progress() -> Progress:
    return _Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stylexport {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the library does.")] = False,
) -> None:
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_WarningFormatter())
    handler.addFilter(_OnceFilter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


class _WarningFormatter(logging.Formatter):
    """The library's warnings as the CLI's own: "warning: ..." (``-v`` shows the level and the logger)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"


class _OnceFilter(logging.Filter):
    """Each distinct warning once per command: `styles --preview` of a small photo said the same padding line
    for every style."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


GATYS_ITERATIONS = "60,30,15"
GATYS_SCALES = "0.5,0.75,1"
GATYS_LAYER_WEIGHTS = "0.01,0.1,1,1"


class Amp(StrEnum):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    off = "off"


class Optimizer(StrEnum):
    lbfgs = "lbfgs"
    adam = "adam"


class Init(StrEnum):
    content = "content"
    noise = "noise"


VggOption = Annotated[str | None, typer.Option(
    "--vgg-weights", envvar="STYLEXPORT_VGG_WEIGHTS",
    help="VGG16 weights: a file (.pth/.safetensors/.onnx/.whl), 'torchvision' or 'offline'. Default: try each.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda, cuda:N.")]


def _loss_config(content_weight: float, style_weight: float, tv_weight: float, tv_beta: float,
                 style_layers: str | None = None, content_layer: str | None = None,
                 style_layer_weights: tuple[float, ...] | None = None):
    from stylexport.losses import CONTENT_LAYER, STYLE_LAYERS, LossConfig
    from stylexport.vgg import RELU_INDEX

    layers = tuple(s.strip() for s in style_layers.split(",")) if style_layers else STYLE_LAYERS
    for name in (*layers, content_layer or CONTENT_LAYER):
        if name not in RELU_INDEX:
            raise typer.BadParameter(f"unknown VGG layer {name!r}; choose from {', '.join(RELU_INDEX)}")
    if style_layer_weights is not None and len(style_layer_weights) != len(layers):
        raise typer.BadParameter(f"{len(style_layer_weights)} weights for {len(layers)} style layers "
                                 f"({', '.join(layers)}): give one weight per style layer",
                                 param_hint="--style-layer-weights")
    return LossConfig(content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                      tv_beta=tv_beta, style_layers=layers, content_layer=content_layer or CONTENT_LAYER,
                      style_layer_weights=style_layer_weights)


@app.command()
def gatys(
    content: Annotated[Path | None, typer.Argument(help="Content photo. Default: the bundled sample photo.")] = None,
    style: Annotated[Path | None, typer.Argument(help="Style image. Default: the bundled sample painting.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image; a .json of the losses goes beside it.")]
    = Path("stylized.jpg"),
    iterations: Annotated[str, typer.Option(help="Optimizer iterations: one count per scale, or one for all.")]
    = GATYS_ITERATIONS,
    scales: Annotated[str, typer.Option(help="Coarse-to-fine passes as fractions of --size, rising to 1 "
                                        "(1 alone: one pass at full size).")] = GATYS_SCALES,
    optimizer: Annotated[Optimizer, typer.Option(help="Pixel optimizer.")] = Optimizer.lbfgs,
    init: Annotated[Init, typer.Option(help="Start image.")] = Init.content,
    size: Annotated[int, typer.Option(min=16, help="Longer side of the content image, px.")] = 512,
    style_size: Annotated[int | None, typer.Option(min=16, help="Longer side of the style image (default: --size).")]
    = None,
    content_weight: Annotated[float, typer.Option(help="λc in equation (5).")] = 1.0,
    style_weight: Annotated[float, typer.Option(help="λs in equation (5).")] = 1e6,
    style_layer_weights: Annotated[str, typer.Option(help="Weight of each style layer (relu1_2, relu2_2, relu3_3, "
                                                     "relu4_3); 1,1,1,1 is the paper's equal weighting.")]
    = GATYS_LAYER_WEIGHTS,
    tv_weight: Annotated[float, typer.Option(help="λtv in equation (5).")] = 1e-7,
    tv_beta: Annotated[float, typer.Option(help="β of the total-variation term (1 or 2).")] = 2.0,
    lr: Annotated[float | None, typer.Option(help="Step size (default 1 for L-BFGS, 4 for Adam).")] = None,
    seed: int = 0,
    vgg_weights: VggOption = None,
    device: DeviceOption = "auto",
) -> None:
    """Stylize one photo by optimising its pixels against the VGG16 loss (Gatys et al.): slow, the reference.

    Defaults: 512 px, coarse to fine (256 -> 384 -> 512 px), relu1_2 and relu2_2 down-weighted (with equal
    weights relu1_2's Gram term is 136-318x relu4_3's and paints a fine mesh; docs/gatys.md).
    """
    import dataclasses

    import torch

    from stylexport.devices import cpu_flags, cpu_name
    from stylexport.fileio import write_text_atomic
    from stylexport.gatys import GatysConfig, stylize_gatys
    from stylexport.image import check_image_output, read_for_loss, sample_paths, save_image
    from stylexport.runtime import pick_device
    from stylexport.vgg import load_vgg

    default_content, default_style = sample_paths()
    content, style = content or default_content, style or default_style
    check_image_output(output, (content, style))  # not after minutes of optimisation
    dev = pick_device(device)
    counts = tuple(int(v) for v in _floats(iterations, "--iterations"))
    fractions = tuple(_floats(scales, "--scales"))
    loss = _loss_config(content_weight, style_weight, tv_weight, tv_beta,
                        style_layer_weights=tuple(_floats(style_layer_weights, "--style-layer-weights")))
    try:
        cfg = GatysConfig(iterations=counts, scales=fractions, optimizer=optimizer.value, init=init.value, lr=lr,
                          seed=seed, loss=loss)
    except ValueError as exc:
        raise StylexportError(str(exc)) from None
    content_img = read_for_loss(content, size, what="content image", option="--size")[None].to(dev)
    style_img = read_for_loss(style, style_size or size, what="style image",
                              option="--style-size" if style_size else "--size")[None].to(dev)
    vgg = load_vgg(vgg_weights, dev)
    start = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(f"gatys {optimizer.value}", total=cfg.total_iterations, info="")

        def report(step: int, losses: dict[str, float]) -> None:
            bar.update(task, completed=step, info=" ".join(f"{k} {v:.4g}" for k, v in losses.items()))

        result = stylize_gatys(content_img, style_img, vgg, cfg, progress=report)
    seconds = time.perf_counter() - start
    save_image(result.image, output)
    bundled = {default_content: f"bundled:{default_content.name}", default_style: f"bundled:{default_style.name}"}
    report_json = {"content": bundled.get(content, str(content)), "style": bundled.get(style, str(style)),
                   "output": str(output), "command": " ".join(["stylexport", *sys.argv[1:]]),
                   "size": list(result.image.shape[-2:]), "iterations": cfg.total_iterations,
                   "stages": [{"scale": sc, "iterations": n} for sc, n in cfg.stages()], "seconds": seconds,
                   "device": str(dev), "cpu": cpu_name(), "cpu_flags": list(cpu_flags()),
                   "threads": torch.get_num_threads(), "torch": torch.__version__, "losses": result.losses,
                   "config": {"optimizer": optimizer.value, "init": init.value, "lr": lr, "seed": seed,
                              **dataclasses.asdict(cfg.loss)}, **vgg.describe()}
    write_text_atomic(output.with_suffix(".json"), json.dumps(report_json, indent=2) + "\n")
    typer.echo(f"wrote {output} ({result.image.shape[-1]}x{result.image.shape[-2]}, {seconds:.1f} s, "
               f"loss {result.losses['total']:.4g})")


StyleOption = Annotated[str | None, typer.Option("--style", "-s", help="A shipped style by name (stylexport "
                                                "styles lists them), instead of --model. With neither: "
                                                f"{DEFAULT_STYLE}, or the first installed style.")]


def _model_path(model: Path | None, style: str | None) -> Path:
    """--model, else --style NAME, else the default shipped style (said on stderr)."""
    from stylexport.stylize import resolve_model

    path, default = resolve_model(model, style)
    if default is not None:
        typer.echo(f"style {default} (no --model or --style given; stylexport styles lists the others)", err=True)
    _say_run_model(model, path)
    return path


def _say_run_model(given: Path | None, path: Path) -> None:
    """Say which file a training run's folder stood for, and the step its weights reached (stderr)."""
    if given is None or path == given:
        return
    from stylexport.checkpoint import read_metadata

    step = read_metadata(path).get("step")
    typer.echo(f"model {path}: the weights training run {given} has reached"
               + (f" (step {step})" if step is not None else ""), err=True)


def _checkpoint_or_style(path: Path | None, style: str | None, argument: str) -> Path:
    """A model file named on the command line, or the shipped style named by --style; one of the two."""
    if path is None and style is None:
        raise typer.BadParameter(f"pass a checkpoint as {argument}, or a shipped style with --style NAME "
                                 "(stylexport styles lists them)", param_hint=argument)
    if path is not None and style is not None:
        raise typer.BadParameter(f"pass either {argument} ({path}) or --style {style}, not both", param_hint=argument)
    from stylexport.stylize import resolve_model

    resolved = resolve_model(path, style)[0]
    _say_run_model(path, resolved)
    return resolved


def _refuse_an_exported_model(path: Path) -> None:
    """export builds from weights: an artifact given instead (an .onnx, an IR) was called an "unknown suffix"."""
    from stylexport.formats import format_of

    try:
        fmt = format_of(path)
    except StylexportError:
        return  # not a model kind at all: load_checkpoint says which suffixes it reads
    if fmt.name != "checkpoint":
        raise StylexportError(f"{path} is an exported model ({fmt.name}: {fmt.description}), and export builds its "
                              "artifacts from a checkpoint's weights: pass the .safetensors/.pth it came from; "
                              "stylize, video, bench and info run this file as it is")


@app.command()
def styles(
    ctx: typer.Context,
    preview: Annotated[Path | None, typer.Option("--preview", help="A photo: draw it in every installed style, "
                                                 "side by side on one sheet (-o), to choose a style by eye.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="With --preview: the sheet to write.")] = None,
    size: Annotated[int, typer.Option(min=16, help="With --preview: the longer side of each picture, px.")] = 384,
    device: DeviceOption = "auto",
) -> None:
    """List the installed style models, with their paintings' thumbnails; --preview PHOTO -o SHEET.jpg draws a
    photo in each of them."""
    from rich.table import Table

    from stylexport.styles import list_styles, styles_dir

    for option, value in (("-o", output), ("--size", _said(ctx, "size")), ("--device", _said(ctx, "device"))):
        _only_with(option, value, preview is not None, needs="applies with --preview", add="--preview PHOTO")
    if preview is not None and output is None:
        raise typer.BadParameter("--preview needs the sheet to write: add -o SHEET.jpg", param_hint="-o")
    found = list_styles()
    if not found:
        none = (f"no style models installed in {styles_dir()}{' to preview' if preview else ''}; train one "
                "(training/README.md) or set STYLEXPORT_STYLES_DIR to a folder of them")
        if preview is not None:
            raise StylexportError(none)
        typer.echo(none)
        return
    if preview is not None:
        for st in found:
            if st.problem is not None:
                typer.echo(f"left out of the preview: {st.name} cannot be used: {st.problem}", err=True)
        _preview_styles(preview, output, [st for st in found if st.problem is None], size=size, device=device)
        return
    table = Table(title=f"styles in {styles_dir()}")
    for col in ("name", "painting", "licence", "trained", "size", "thumbnail"):
        table.add_column(col)
    for st in found:
        m = st.metadata
        painting = f"cannot be used: {st.problem}" if st.problem else st.painting
        table.add_row(st.name, painting, str(m.get("painting_license", "")), _trained(m),
                      f"{st.model.stat().st_size / 1e6:.1f} MB",
                      st.thumbnail.name if st.thumbnail else "-")  # in the folder the title names
    _stdout().print(table)


def _preview_styles(photo: Path, output: Path, found: list, *, size: int, device: str) -> None:
    from stylexport.image import check_image_output, save_image
    from stylexport.stylize import read_photo, styles_sheet

    check_image_output(output, [photo])  # before the work: its suffix, its folder, not the photo itself
    image = read_photo(photo)
    with _progress() as bar:
        task = bar.add_task("styles", total=len(found), info="")
        sheet = styles_sheet(image, found, size=size, device=device,
                             progress=lambda name: bar.update(task, advance=1, info=name))
    save_image(sheet, output)
    typer.echo(f"wrote {output}: {photo.name} in {len(found)} styles ({', '.join(st.name for st in found)})")


def _trained(metadata: dict) -> str:
    """'3,800 of 20,000 steps on a CPU (bf16)': how far a shipped style's recipe was trained, and where; a
    fine-tune says what it started from first ('..., then 400 steps fine-tuned with edge_pad 32 at lr 0.0002 on
    a CPU', the learning rate where it is not the parent's)."""
    step, training = metadata.get("step"), metadata.get("training") or {}
    if step is None:
        return ""
    parent = metadata.get("fine_tuned_from")
    planned = None if parent else training.get("steps")
    text = f"{step:,} of {planned:,} steps" if planned else f"{step:,} steps"
    if parent:
        pad, lr = training.get("edge_pad"), training.get("lr")
        text = f"{_trained(parent) or 'a checkpoint'}, then {text} fine-tuned" + \
            (f" with edge_pad {pad}" if pad else "") + \
            (f" at lr {lr:g}" if lr and lr != (parent.get("training") or {}).get("lr") else "")
    amp = {"bfloat16": "bf16", "float16": "fp16"}  # torch's dtype names, as runs of 2026-12-01 recorded them
    kinds = sorted({("a GPU" if c.get("device") == "cuda" else "a CPU")
                    + (f" ({amp.get(c['amp'], c['amp'])})" if c.get("amp") else "") for c in metadata.get("calls", [])})
    return text + (f" on {' and '.join(kinds)}" if kinds else "")


def _engine_help() -> str:
    from stylexport.formats import ENGINES

    return ("Engine to run the model on (default: the fastest for its format on --device): "
            + ", ".join(f"{e.name} ({'/'.join(e.formats)})" for e in ENGINES.values()) + ".")


def _open_model(model: Path, *, device: str, backend: str | None, tiled: bool = False):
    """``stylize.open_model``, saying so when a checkpoint's engine must first be exported into the cache (the
    first run of a checkpoint waits seconds to minutes for it), with progress lines while it runs."""
    from stylexport.stylize import open_model

    with _progress() as bar:
        task = None

        def exporting(message: str) -> None:
            nonlocal task
            console.print(message, markup=False, highlight=False, soft_wrap=True)
            if task is None:
                task = bar.add_task("export", total=None, info="")
            bar.update(task, info=message.split(",")[0].removeprefix("exporting "))

        return open_model(model, device=device, engine=backend, tiled=tiled, exporting=exporting)


EngineOption = Annotated[str | None, typer.Option("--backend", "-b", help=_engine_help())]
StrengthOption = Annotated[float, typer.Option(min=0.0, max=1.0, help="Blend: 0 the photo, 1 full style.")]
ColorsOption = Annotated[bool, typer.Option("--preserve-colors", help="Keep the photo's colours: transfer "
                                            "luminance only.")]


@app.command()
def stylize(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image (one input) or folder.")],
    inputs: Annotated[list[Path] | None, typer.Argument(help="Images and/or folders of images. Default: the "
                                                    "bundled sample photo.")] = None,
    model: Annotated[Path | None, typer.Option("--model", "-m", help="A checkpoint (.safetensors/.pth), an .onnx "
                                               "model (ours or a third-party one), an OpenVINO .xml, an "
                                               "ExecuTorch .pte, a TensorRT .plan or an AOTInductor .pt2.")] = None,
    style: StyleOption = None,
    backend: EngineOption = None,
    size: Annotated[int | None, typer.Option(min=16, help="Resize so the longer side is this, px.")] = None,
    strength: StrengthOption = 1.0,
    preserve_colors: ColorsOption = False,
    tile: Annotated[int | None, typer.Option(min=16, help="Stylize in tiles of this many px (for images too "
                                             "large for memory); instance-norm statistics are shared across "
                                             "tiles, so there are no seams. Checkpoints only.")] = None,
    tile_margin: Annotated[int | None, typer.Option(min=0, help="With --tile: context around each tile, px "
                                                    "(multiple of 4; default 64).")] = None,
    device: DeviceOption = "auto",
) -> None:
    """Stylize images with a trained feed-forward network.

    Trust: AOTInductor packages (.pt2) and TensorRT plans (.plan) contain native code that runs when they are
    loaded; load them only from sources you trust. Checkpoints (.safetensors, weights-only .pth) and .onnx
    models are data: stylexport never unpickles code from them.
    """
    from stylexport.image import find_images, sample_paths
    from stylexport.stylize import plan_outputs, read_photo, stylize_files

    _only_with("--tile-margin", tile_margin, tile is not None, needs="applies with --tile", add="--tile SIZE")
    if tile is not None:
        from stylexport.tiles import DEFAULT_MARGIN, check_tiling

        check_tiling(tile, DEFAULT_MARGIN if tile_margin is None else tile_margin)
    model = _model_path(model, style)
    if not inputs:
        inputs = [sample_paths()[0]]
        typer.echo(f"photo {inputs[0]} (the bundled sample; no INPUT given)", err=True)
    files = find_images(inputs)
    targets = plan_outputs(files, output)
    read = read_photo
    if len(files) == 1:  # a photo that cannot be read: its one line before an engine is opened (perhaps exported)
        first = read_photo(files[0])  # read once: decoded once, its warnings (animation, colour profile) said once
        read = lambda path: first if path == files[0] else read_photo(path)  # noqa: E731
    runner = _open_model(model, device=device, backend=backend, tiled=tile is not None)
    with _progress() as bar:
        task = bar.add_task("stylize", total=len(files), info=runner.name)
        infer = None
        if tile is not None:
            from stylexport.tiles import DEFAULT_MARGIN, stylize_tiled

            margin = DEFAULT_MARGIN if tile_margin is None else tile_margin

            def infer(image, path):
                sub = bar.add_task("tiles", total=None, info=path.name)
                try:
                    return stylize_tiled(runner.model, image, tile=tile, margin=margin, device=runner.device,
                                         progress=lambda done, total: bar.update(sub, completed=done, total=total))
                finally:
                    bar.remove_task(sub)

        report = stylize_files(runner, files, targets, size=size, strength=strength, colors=preserve_colors,
                               infer=infer, progress=lambda path: bar.advance(task), read=read)
    if len(targets) == 1 and report.written:
        typer.echo(f"wrote {report.written[0]} (engine {runner.engine or runner.name})")
    elif report.written:
        typer.echo(f"wrote {len(report.written)} images to {output} (engine {runner.engine or runner.name})")
    if len(files) == 1 and report.failed:
        raise StylexportError(report.failed[0][1])
    for path, reason in report.failed:
        typer.echo(f"failed: {path}: {reason}", err=True)
    if report.failed:
        raise StylexportError(f"{len(report.failed)} of {len(files)} images failed (each is listed above); "
                              + ("the others were written" if report.written else "none was written"))


@app.command()
def video(
    source: Annotated[Path, typer.Argument(help="A video file, or a folder of frames.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="A video file (.mp4, .mkv, .mov, .webm, .avi), "
                                         "an animated .gif, or a folder for PNG frames.")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help="A checkpoint, .onnx, .plan or .pt2 model.")]
    = None,
    style: StyleOption = None,
    backend: EngineOption = None,
    batch: Annotated[int, typer.Option(min=1, help="Frames per model call.")] = 1,
    strength: StrengthOption = 1.0,
    preserve_colors: ColorsOption = False,
    stabilize: Annotated[float, typer.Option(min=0.0, max=0.99, help="Temporal smoothing of the output where "
                                             "the input is still (0 off; 0.5 is a good start).")] = 0.0,
    fps: Annotated[float | None, typer.Option(help="Frame rate when the input is a folder of frames "
                                              "(default 25).")] = None,
    crf: Annotated[int | None, typer.Option(min=0, max=51, help="Quality of H.264 and VP9 (.webm) output, "
                                            "lower is better (default 18); frames in a folder are lossless "
                                            "PNG.")] = None,
    size: Annotated[int | None, typer.Option(min=16, help="Resize so the longer side is this, px (even sides in "
                                             "a video file; a GIF is usually 480 or less). Default: the "
                                             "input's size.")] = None,
    device: DeviceOption = "auto",
) -> None:
    """Stylize a video (audio, frame rate and duration kept), an animated GIF, or a folder of frames."""
    from stylexport.video import check_paths, stylize_video

    # before the model opens: its engine may be exported first
    checked = check_paths(source, output, fps=fps, crf=crf, size=size)
    runner = _open_model(_model_path(model, style), device=device, backend=backend)
    with _progress() as bar:
        task = bar.add_task("video", total=None, info=runner.name)
        start = time.perf_counter()

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total,
                       info=f"{runner.name} {done / max(time.perf_counter() - start, 1e-9):.1f} frames/s")

        result = stylize_video(source, output, runner, batch=batch, strength=strength, colors=preserve_colors,
                               stabilize=stabilize, fps=fps, crf=crf, size=size, progress=report,
                               checked=checked)
    flick = f"flicker {result.flicker_raw:.2f}"
    if stabilize:
        flick += f" -> {result.flicker_out:.2f} levels with --stabilize {stabilize:g}"
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    shown = f" (turned as its display matrix says: {result.shown_as})" if result.shown_as else ""
    if result.tone_mapped:
        shown += f" (HDR, {result.tone_mapped}, mapped to SDR)"
    typer.echo(f"wrote {output} (engine {runner.engine or runner.name}): {result.frames} frames "
               f"{result.width}x{result.height}{shown} at {result.fps:.3g} fps, "
               f"{result.codec}, audio {result.audio}; {result.frames / result.seconds:.1f} frames/s; {flick}")


def _shape(text: str, option: str, batch: int) -> tuple[int, int, int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not HxW, e.g. 1080x1920", param_hint=option) from None
    if min(h, w) < 16:
        raise typer.BadParameter(f"{text!r}: each side must be at least 16", param_hint=option)
    return (batch, 3, h, w)


def _format_help(flag: str) -> str:
    from stylexport.formats import FORMATS

    return "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values() if f.flag == flag) + "."


@app.command()
def export(
    ctx: typer.Context,
    checkpoint: Annotated[Path | None, typer.Argument(help="A stylexport or pytorch/examples checkpoint.")] = None,
    style: Annotated[str | None, typer.Option("--style", "-s", help="A shipped style by name (stylexport styles "
                                              "lists them), instead of CHECKPOINT.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the artifacts and export.json.")]
    = Path("exported"),
    onnx: Annotated[bool, typer.Option("--onnx", help=_format_help("onnx"))] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help=_format_help("fp16"))] = False,
    trt: Annotated[bool, typer.Option("--trt", help=_format_help("trt"))] = False,
    aoti: Annotated[bool, typer.Option("--aoti", help=_format_help("aoti") + " The CUDA package only on a GPU.")]
    = False,
    openvino: Annotated[bool, typer.Option("--openvino", help=_format_help("openvino"))] = False,
    int8: Annotated[bool, typer.Option("--int8", help=_format_help("int8"))] = False,
    executorch: Annotated[bool, typer.Option("--executorch", help=_format_help("executorch"))] = False,
    web: Annotated[bool, typer.Option("--web", help=_format_help("web") + " Open it with stylexport serve DIR "
                                      "(or any static file server).")] = False,
    calibration: Annotated[Path | None, typer.Option(help="With --int8: a folder of photos to calibrate on (up to "
                                                     "32; like the ones you will stylize). Default: crops of the "
                                                     "bundled photo and painting.")] = None,
    min_size: Annotated[str, typer.Option("--min", help="TensorRT profile: smallest HxW.")] = "64x64",
    opt_size: Annotated[str, typer.Option("--opt", help="TensorRT profile: HxW to tune for.")] = "1080x1920",
    max_size: Annotated[str, typer.Option("--max", help="TensorRT profile: largest HxW.")] = "2160x3840",
    batch: Annotated[str, typer.Option(help="TensorRT profile batch sizes: min,opt,max.")] = "1,1,1",
    workspace: Annotated[float, typer.Option(help="TensorRT builder workspace, GiB.")] = 4.0,
    pte_max_side: Annotated[int | None, typer.Option("--pte-max-side", min=256, help="ExecuTorch: largest height "
                                                     "and width the program takes (its memory is planned for "
                                                     "it). Default: 1280.")] = None,
) -> None:
    """Export a checkpoint to deployable artifacts; each is checked against PyTorch FP32 before it is kept.

    With no format flag: --onnx and --fp16.
    """
    checkpoint = _checkpoint_or_style(checkpoint, style, "CHECKPOINT")
    _refuse_an_exported_model(checkpoint)
    flags = [name for name, on in (("onnx", onnx), ("fp16", fp16), ("trt", trt), ("aoti", aoti),
                                   ("openvino", openvino), ("int8", int8), ("executorch", executorch),
                                   ("web", web)) if on]
    for name, option, flag in (("calibration", "--calibration", "int8"), ("pte_max_side", "--pte-max-side",
                                                                            "executorch"),
                               ("min_size", "--min", "trt"), ("opt_size", "--opt", "trt"),
                               ("max_size", "--max", "trt"), ("batch", "--batch", "trt"),
                               ("workspace", "--workspace", "trt")):
        _only_with(option, _said(ctx, name), flag in flags, needs=f"changes --{flag} exports", add=f"--{flag}")
    try:
        b_min, b_opt, b_max = (int(v) for v in batch.split(","))
    except ValueError:
        raise typer.BadParameter(f"{batch!r} is not three numbers min,opt,max", param_hint="--batch") from None
    shapes = (_shape(min_size, "--min", b_min), _shape(opt_size, "--opt", b_opt), _shape(max_size, "--max", b_max))
    if not all(a <= b <= c for a, b, c in zip(*shapes, strict=True)):
        raise typer.BadParameter(f"need min <= opt <= max, got {shapes[0]} / {shapes[1]} / {shapes[2]}",
                                 param_hint="--min/--opt/--max")
    from stylexport.formats import FORMATS

    suffixes = {s for f in FORMATS.values() for s in f.suffixes if s.startswith(".")}
    if not output.is_dir() and any(output.name.lower().endswith(s) for s in suffixes):
        raise typer.BadParameter(f"{output} names a model file, but export writes a folder (the artifacts, named after "
                                 f"the style, and export.json); give a folder, e.g. -o {output.parent / 'exported'}",
                                 param_hint="-o")
    import torch  # after the options are checked: its import alone takes seconds
    from rich.table import Table

    from stylexport.export import Profile, formats_for_flags
    from stylexport.export import export as run_export

    profile = Profile(min=shapes[0], opt=shapes[1], max=shapes[2])
    formats = formats_for_flags(flags or ["onnx", "fp16"], cuda=torch.cuda.is_available())
    with _progress() as bar:
        task = bar.add_task("export", total=len(formats), info="")

        def report(name: str) -> None:
            bar.update(task, info=name, completed=formats.index(name))

        reports = run_export(checkpoint, formats, output, profile=profile, workspace_gib=workspace,
                             calibration_dir=calibration, progress=report,
                             pte_max_side=pte_max_side)
        bar.update(task, completed=len(formats), info="")  # a log's last progress line says it finished
    table = Table(title=f"exported {checkpoint.name} -> {output}")
    for col in ("format", "file", "max abs err (0-255)", "PSNR vs torch fp32", "NaN/inf", "size", "build"):
        table.add_column(col)
    for r in reports:
        table.add_row(r.format, Path(r.path).name, f"{r.parity['max_abs']:.3g}", f"{r.parity['psnr_db']:.1f} dB",
                      "none" if r.parity["finite"] else "YES", f"{r.size_bytes / 1e6:.1f} MB",
                      f"{r.build_seconds:.1f} s")
    _stdout().print(table)
    passed = "the artifact passed its parity check" if len(reports) == 1 else \
        f"all {len(reports)} artifacts passed their parity checks"
    typer.echo(f"{passed}; report in {output / 'export.json'}")


@app.command()
def serve(
    folder: Annotated[Path, typer.Argument(help="A folder stylexport export --web wrote (or its index.html).")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 takes any free one.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on. 127.0.0.1: this machine only. Other machines "
                                      "get WebGPU and threads only over HTTPS (browsers' secure-context rule).")]
    = "127.0.0.1",
    isolated: Annotated[bool, typer.Option(help="Send the cross-origin isolation headers, so WebAssembly runs on "
                                           "several threads.")] = True,
) -> None:
    """Serve an exported web app and print its address; Ctrl-C stops.

    Unlike a plain static file server, it sends the headers that let the app run WebAssembly on several
    threads (cross-origin isolation) and the right types for its .mjs and .wasm files.
    """
    import time

    from stylexport.web.server import app_folder, start_server

    folder = app_folder(folder)  # its page (index.html) stands for it
    server, url = start_server(folder, host=host, port=port, isolated=isolated)
    threads = "cross-origin isolated: WebAssembly threads" if isolated else "not isolated: one WebAssembly thread"
    typer.echo(f"serving {folder} at {url} ({threads}); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        server.shutdown()


def _bench_engines_help() -> str:
    from stylexport.formats import BENCH_ENGINES

    return (f"Comma-separated engines: {', '.join(BENCH_ENGINES)}. Default: every engine for the model's format "
            "(those this machine cannot run are reported as skipped).")


@app.command()
def bench(
    model: Annotated[Path | None, typer.Argument(help="A checkpoint (each engine's artifact is exported on "
                                                 "demand, once, into the cache stylize uses) or an exported "
                                                 "artifact (.onnx, .xml, .plan, .pt2). Default: random weights "
                                                 "(timing only).")] = None,
    style: Annotated[str | None, typer.Option("--style", "-s", help="A shipped style by name (stylexport styles "
                                              "lists them), instead of MODEL.")] = None,
    backends: Annotated[str | None, typer.Option(help=_bench_engines_help())] = None,
    sizes: Annotated[str | None, typer.Option(help="Comma-separated HxW or 256, 512, 720p, 1080p, 4k. Default: up "
                                              "to 4k on a GPU, 256,512 on CPU.")] = None,
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1",
    repeats: Annotated[int, typer.Option(min=1, help="Timed calls per engine and shape.")] = 50,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed calls first (compilation, autotuning).")] = 10,
    gatys: Annotated[bool, typer.Option("--gatys", help="Also time Gatys L-BFGS against the feed-forward "
                                        "network (minutes on CPU).")] = False,
    gatys_iterations: Annotated[str | None, typer.Option(help="With --gatys: L-BFGS iteration counts. Default: "
                                                         "100,300,500 on a GPU, 20 on CPU.")] = None,
    gatys_sizes: Annotated[str | None, typer.Option(help="With --gatys: square sizes. Default: 256,512 on a GPU, "
                                                    "256 on CPU.")] = None,
    train_throughput: Annotated[bool, typer.Option("--train-throughput", help="Also time training steps.")] = False,
    exported: Annotated[Path | None, typer.Option(help="A folder stylexport export wrote for this checkpoint: "
                                                  "time those artifacts instead of exporting again (e.g. INT8 "
                                                  "calibrated on your photos).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Results JSON; .md and .png are written beside "
                                         "it.")] = Path("bench.json"),
    device: DeviceOption = "auto",
) -> None:
    """Time every engine at every size against torch FP32 (the paper's path), side by side in one run."""
    from rich.table import Table

    from stylexport.bench import BenchConfig, parse_size, write_results
    from stylexport.bench import run as run_bench
    from stylexport.bench.report import COLUMNS, notes, rows
    from stylexport.fileio import check_writable
    from stylexport.runtime import pick_device

    if style is not None:
        model = _checkpoint_or_style(model, style, "MODEL")
    check_writable(output)  # not after minutes of timing
    for value, option in ((gatys_iterations, "--gatys-iterations"), (gatys_sizes, "--gatys-sizes")):
        _only_with(option, value, gatys, needs="applies with --gatys", add="--gatys")
    gpu = pick_device(device).type == "cuda"
    size_list = tuple(parse_size(v) for v in (sizes or ("256,512,720p,1080p,4k" if gpu else "256,512")).split(","))
    gi = [int(v) for v in _floats(gatys_iterations or ("100,300,500" if gpu else "20"), "--gatys-iterations") if v]
    gs = [int(v) for v in _floats(gatys_sizes or ("256,512" if gpu else "256"), "--gatys-sizes")]
    config = BenchConfig(backends=tuple(b.strip() for b in backends.split(",")) if backends else None,
                         sizes=size_list, batches=tuple(int(v) for v in _floats(batch, "--batch")), warmup=warmup,
                         repeats=repeats, block=min(10, repeats), gatys_iterations=tuple(gi) if gatys else (),
                         gatys_sizes=tuple(gs) if gatys else (),
                         train_throughput=train_throughput, device=device,
                         exported=str(exported) if exported else None)
    with _progress() as bar:
        task = bar.add_task("bench", total=None, info="")
        results = run_bench(model, config, progress=lambda what, done, total: bar.update(
            task, info=what, completed=done, total=total))
    paths = write_results(results, output)
    table = Table(title=f"stylexport bench on {results['environment'].get('gpu') or results['environment']['cpu']}")
    for col in COLUMNS:
        table.add_column(col)
    for cells in rows(results):
        table.add_row(*cells)
    _stdout().print(table)
    for line in notes(results):
        typer.echo(line)
    typer.echo(f"wrote {', '.join(str(p) for p in paths)}")


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint=option) from None
    if not values:
        raise typer.BadParameter("give at least one number", param_hint=option)
    return values


@app.command()
def train(
    style: Annotated[Path | None, typer.Option(help="Style image (the painting).")] = None,
    data: Annotated[Path | None, typer.Option(help="Folder tree of training photos (e.g. COCO train2014).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="New run folder.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run saved in this folder.")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Training steps (overrides --epochs).")] = None,
    epochs: Annotated[float | None, typer.Option(min=0.0, help="Passes over the data (paper: 2).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size (paper: 4).")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (paper: 1e-3).")] = None,
    image_size: Annotated[int | None, typer.Option(min=16, help="Training crop size (paper: 256).")] = None,
    style_size: Annotated[int | None, typer.Option(min=16, help="Longer side of the style image.")] = None,
    content_weight: Annotated[float | None, typer.Option(help="λc (paper: 1).")] = None,
    style_weight: Annotated[float | None, typer.Option(help="λs (paper: 1e4-1e5).")] = None,
    tv_weight: Annotated[float | None, typer.Option(help="λtv (paper: 1e-7).")] = None,
    style_layers: Annotated[str | None, typer.Option(help="Comma-separated VGG layers for the style loss.")] = None,
    style_layer_weights: Annotated[str | None, typer.Option(help="Weight of each style layer, e.g. 0.01,0.1,1,1 "
                                                            "(default: equal, as in the paper).")] = None,
    content_layer: Annotated[str | None, typer.Option(help="VGG layer for the content loss.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (weights, data order, crops).")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(min=1, help="Steps between checkpoints.")] = None,
    preview_every: Annotated[int | None, typer.Option(min=1, help="Steps between preview images.")] = None,
    log_every: Annotated[int | None, typer.Option(min=1, help="Steps between loss-history entries.")] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="DataLoader worker processes.")] = None,
    amp: Annotated[Amp | None, typer.Option(help="Mixed precision. CUDA: auto is bf16 where the GPU has it, else "
                                             "fp16. CPU: bf16 where it has AVX-512 BF16 or AMX (1.77x FP32's "
                                             "images/s on a 2-core EPYC); auto trains in FP32.")] = None,
    hold_out: Annotated[int | None, typer.Option(min=0, help="Photos kept out of training for evaluation, evenly "
                                                 "spaced; listed in the run's held_out.txt (previews are the "
                                                 "first of them).")] = None,
    max_minutes: Annotated[float | None, typer.Option(min=0.0, help="Stop after this many minutes of training "
                                                      "with a checkpoint; --resume continues (chunks of a long "
                                                      "run).")] = None,
    edge_pad: Annotated[int | None, typer.Option(min=0, help="Reflection-pad each crop by this many px inside "
                                                 "the network, so it stops painting a band along the edges (32 "
                                                 "does; the network then takes sides >= 36 px). Default: the "
                                                 "--init checkpoint's, else 0.")] = None,
    init: Annotated[str | None, typer.Option(help="Start from this checkpoint's weights (a file, or a shipped "
                                             "style's name) instead of random ones: fine-tuning.")] = None,
    vgg_weights: VggOption = None,
    device: Annotated[str | None, typer.Option(help="auto (CUDA when present), cpu, cuda.")] = None,
) -> None:
    """Train a feed-forward style network (Johnson et al.) on the perceptual loss; resumable."""
    import dataclasses

    from stylexport.train import TrainConfig, load_run_config
    from stylexport.train import train as run_training

    if resume is not None:
        if output is not None and output != resume:
            raise StylexportError(f"--resume {resume} continues that run; drop -o {output}")
        if init is not None:
            raise StylexportError(f"--resume {resume} continues that run from its own weights; drop --init {init}")
        base, run_dir = load_run_config(resume), resume
    else:
        if style is None or data is None or output is None:
            raise StylexportError("train needs --style IMAGE, --data FOLDER and -o RUN_FOLDER (or --resume RUN_FOLDER)")
        base, run_dir = TrainConfig(style=str(style), data=str(data)), output
    loss = base.loss
    if any(v is not None for v in (content_weight, style_weight, tv_weight, style_layers, style_layer_weights,
                                   content_layer)):
        # new layers without new weights: equal weights (the old ones were for other layers)
        layer_weights = tuple(_floats(style_layer_weights, "--style-layer-weights")) if style_layer_weights \
            else None if style_layers else loss.style_layer_weights
        loss = _loss_config(content_weight if content_weight is not None else loss.content_weight,
                            style_weight if style_weight is not None else loss.style_weight,
                            tv_weight if tv_weight is not None else loss.tv_weight, loss.tv_beta,
                            style_layers or ",".join(loss.style_layers), content_layer or loss.content_layer,
                            layer_weights)
    overrides = {"style": str(style) if style else None, "data": str(data) if data else None, "steps": steps,
                 "epochs": epochs, "batch_size": batch_size, "lr": lr, "image_size": image_size,
                 "style_size": style_size, "seed": seed, "checkpoint_every": checkpoint_every,
                 "preview_every": preview_every, "log_every": log_every, "workers": workers,
                 "amp": amp.value if amp else None,
                 "hold_out": hold_out, "max_minutes": max_minutes, "vgg_weights": vgg_weights, "device": device,
                 "edge_pad": edge_pad, "init": init}
    config = dataclasses.replace(base, loss=loss, **{k: v for k, v in overrides.items() if v is not None})
    from stylexport.devices import cpu_bf16_problem, pick_device
    from stylexport.train import autocast_dtype

    on = pick_device(config.device)
    autocast_dtype(config.amp, on)  # one line now, not after the data and VGG are loaded

    with _progress() as bar:
        task = bar.add_task("train", total=None, info="")

        def report(info) -> None:
            losses = " ".join(f"{k} {v:.3g}" for k, v in info.losses.items())
            limit = {} if info.seconds_left is None else {  # on the bar's clock: its elapsed time at the limit
                "stop_at": next(t.elapsed or 0.0 for t in bar.tasks if t.id == task) + info.seconds_left}
            measured = "" if info.losses_step in (None, info.step) else f" (at step {info.losses_step})"
            bar.update(task, total=info.total_steps, completed=info.step,  # counts every step; the losses are
                       info=f"{info.images_per_second:.1f} img/s  {losses}{measured}", **limit)  # every few

        result = run_training(config, run_dir, resume=resume is not None, progress=report,
                              return_on_signal=True)  # it says below how to resume, and exits 128 + the signal
    if not result.main:  # other torchrun ranks: rank 0 reports for the run
        return
    ran = result.steps - result.start_step
    if ran == 0:  # a resumed run that had already reached its steps ('trained 0 steps (steps 4-3 of 3)' before)
        typer.echo(f"{run_dir} is already complete: step {result.steps} of {result.total_steps}, nothing to train; "
                   f"its model is {run_dir / 'model.safetensors'}. To train further: stylexport train --resume "
                   f"{run_dir} --steps N, N above {result.steps}")
        return
    where = f" (steps {result.start_step + 1}-{result.steps} of {result.total_steps})" if result.start_step else ""
    typer.echo(f"trained {ran} steps{where} in {result.seconds:.1f} s ({result.images_per_second:.1f} images/s); "
               f"model {run_dir / 'model.safetensors'}, loss curve {run_dir / 'loss.png'}, previews in "
               f"{run_dir / 'previews'}")
    if result.held_out:
        typer.echo(f"{result.held_out} photos held out of training (not trained on; previews show the first "
                   f"{min(result.held_out, config.previews)})" + (f", listed in {run_dir / 'held_out.txt'}"
                                                                   if config.hold_out else ""))
    if result.time_limited:
        typer.echo(f"stopped at the {config.max_minutes:g}-minute limit after step {result.steps} of "
                   f"{result.total_steps}; continue with: stylexport train --resume {run_dir}")
    if result.skipped_files:
        count = len(result.skipped_files)
        typer.echo(f"skipped {count} unreadable file{'s' if count > 1 else ''} ({result.skipped_files[0]}"
                   f"{' and others' if count > 1 else ''}): each with why, in {run_dir / 'skipped.tsv'}")
    if result.stopped_by is not None:  # Ctrl-C or SIGTERM: the loop finished its step and saved it
        import signal

        by = "Ctrl-C" if result.stopped_by == signal.SIGINT else signal.Signals(result.stopped_by).name
        typer.echo(f"stopped by {by} after step {result.steps} of {result.total_steps}, saved: continue with: "
                   f"stylexport train --resume {run_dir}", err=True)
        raise typer.Exit(128 + result.stopped_by)
    if on.type == "cpu" and config.amp == "auto" and cpu_bf16_problem() is None:
        typer.echo("note: this CPU computes BF16 natively: --amp bf16 trains faster (1.77x the images/s on a "
                   "2-core EPYC; this run: FP32)")


@app.command()
def sweep(
    content: Annotated[Path | None, typer.Argument(help="Content photo. Default: the bundled sample photo.")] = None,
    style: Annotated[Path | None, typer.Argument(help="Style image. Default: the bundled sample painting.")] = None,
    style_weights: Annotated[str, typer.Option(help="Comma-separated λs values (columns).")] = "1e4,1e5,1e6",
    tv_weights: Annotated[str, typer.Option(help="Comma-separated λtv values (rows).")] = "1e-7",
    style_layer_weights: Annotated[str, typer.Option(help="Weights of the style layers (relu1_2, relu2_2, relu3_3, "
                                                     "relu4_3); several sets separated by ';' are more rows, e.g. "
                                                     "'1,1,1,1;0.01,0.1,1,1'. Default: equal, as training uses.")]
    = "1,1,1,1",
    output: Annotated[Path, typer.Option("--output", "-o", help="Contact sheet image.")] = Path("sweep.jpg"),
    iterations: Annotated[int, typer.Option(min=1, help="L-BFGS iterations per tile.")] = 50,
    size: Annotated[int, typer.Option(min=16, help="Longer side of the content image, px.")] = 192,
    style_size: Annotated[int | None, typer.Option(min=16, help="Longer side of the style image (default: --size). "
                                                   "Choosing weights for a training recipe: keep the recipe's "
                                                   "ratio of style size to crop size (e.g. 512 for 256 crops).")]
    = None,
    content_weight: float = 1.0,
    seed: int = 0,
    vgg_weights: VggOption = None,
    device: DeviceOption = "auto",
) -> None:
    """Choose loss weights before a long training run: quick Gatys runs over a grid, one labelled sheet."""
    from stylexport.figures import contact_sheet
    from stylexport.fileio import write_text_atomic
    from stylexport.gatys import GatysConfig
    from stylexport.gatys import sweep as run_sweep
    from stylexport.image import check_image_output, read_for_loss, sample_paths, save_image
    from stylexport.runtime import pick_device
    from stylexport.vgg import load_vgg

    sws = _floats(style_weights, "--style-weights")
    tvs = _floats(tv_weights, "--tv-weights")
    layer_sets = [tuple(_floats(part, "--style-layer-weights")) for part in style_layer_weights.split(";")]
    for weights in layer_sets:
        _loss_config(content_weight, 1.0, 0.0, 2.0, style_layer_weights=weights)  # one weight per layer
    default_content, default_style = sample_paths()
    content, style = content or default_content, style or default_style
    check_image_output(output, (content, style))  # not after minutes of optimisation
    dev = pick_device(device)
    content_img = read_for_loss(content, size, what="content image", option="--size")[None].to(dev)
    style_img = read_for_loss(style, style_size or size, what="style image",
                              option="--style-size" if style_size else "--size")[None].to(dev)
    vgg = load_vgg(vgg_weights, dev)
    base = GatysConfig(iterations=iterations, seed=seed, loss=_loss_config(content_weight, 1.0, 0.0, 2.0))
    with _progress() as bar:
        task = bar.add_task("sweep", total=None, info="")
        rows = run_sweep(content_img, style_img, vgg, base, style_weights=sws, tv_weights=tvs,
                         layer_weights=layer_sets,
                         progress=lambda done, total: bar.update(task, completed=done, total=total))
    settings = [(t, w) for t in tvs for w in layer_sets]  # the rows, in run_sweep's order
    labels = [f"tv {t:g}" + (f", layers {','.join(f'{v:g}' for v in w)}" if len(layer_sets) > 1 else "")
              for t, w in settings]
    sheet = contact_sheet([[r.image[0] for r in row] for row in rows], row_labels=labels,
                          col_labels=[f"style {s:g}" for s in sws],
                          title=f"{content.name} x {style.name}, {iterations} L-BFGS iterations")
    save_image(sheet, output)
    report = {"content": str(content), "style": str(style), "content_hw": list(content_img.shape[-2:]),
              "style_hw": list(style_img.shape[-2:]), "iterations": iterations, "content_weight": content_weight,
              "seed": seed, "vgg": vgg.source, "device": str(dev), "stylexport": __version__,
              "tiles": [{"style_weight": s, "tv_weight": t, "style_layer_weights": list(w), **r.losses}
                        for (t, w), row in zip(settings, rows, strict=True) for s, r in zip(sws, row, strict=True)]}
    write_text_atomic(output.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    typer.echo(f"wrote {output} ({len(settings)} x {len(sws)} tiles)")


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON, for scripts.")] = False,
) -> None:
    """What this machine can do with stylexport: versions, GPU, runtimes, compilers, VGG weights, styles, and
    each backend's status (runs here, or why not)."""
    from rich.markup import escape
    from rich.table import Table

    from stylexport.doctor import OK, diagnose

    checks = diagnose()
    if as_json:
        typer.echo(json.dumps([c.as_dict() for c in checks], indent=2))
        return
    table = Table(title="stylexport doctor")
    for col in ("", "check", "status", "detail"):
        table.add_column(col, overflow="fold")
    marks = {OK: "[green]ok[/]", "missing": "[yellow]missing[/]", "info": "", "error": "[red]error[/]"}
    section = None
    for c in checks:
        table.add_row(c.section if c.section != section else "", escape(c.name), marks.get(c.status, c.status),
                      escape(c.detail))
        section = c.section
    _stdout().print(table)


@app.command()
def info(
    models: Annotated[list[Path], typer.Argument(help="Model files: checkpoints, exported artifacts (an app's "
                                                  "folder too), third-party ONNX models.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the descriptions as JSON, for scripts.")] = False,
) -> None:
    """What a model file is: its format, what it says about itself (style, source checkpoint, contract,
    training settings), its inputs and outputs, the parity its export measured, and which engines run it here."""
    from rich.markup import escape
    from rich.table import Table

    from stylexport.info import describe

    described, failed = [], []
    for path in models:
        try:
            described.append(describe(path))
        except StylexportError as exc:
            if len(models) == 1:
                raise
            failed.append((path, str(exc)))
    if as_json:
        typer.echo(json.dumps(described, indent=2))
    for d in [] if as_json else described:
        table = Table(title=escape(d["path"]), show_header=False)
        table.add_column("", style="bold")
        table.add_column("", overflow="fold")
        for name, value in _info_rows(d):
            table.add_row(escape(name), escape(value))
        _stdout().print(table)
    for path, reason in failed:
        typer.echo(f"failed: {path}: {reason}", err=True)
    if failed:
        raise StylexportError(f"{len(failed)} of {len(models)} files could not be described (each is listed above)")


def _info_rows(d: dict) -> list[tuple[str, str]]:
    """``stylexport info``'s table: one (name, text) row per fact."""
    def shape(t: dict) -> str:
        dims = t["shape"] if isinstance(t["shape"], str) else "[" + ", ".join(str(x) for x in t["shape"]) + "]"
        return f"{t['name']}: {t['dtype']} {dims}"

    rows = [("format", f"{d['format']}: {d['description']}"),
            ("files", f"{', '.join(d['files'])} ({d['bytes'] / 1e6:.1f} MB)")]
    if d["native_code"]:
        rows.append(("trust", "loading it runs native code from the file: load it only from a source you trust"))
    for key in ("parameters", "stored_as", "sha256", "opset", "producer"):
        if d.get(key) not in (None, ""):
            rows.append((key, f"{d[key]:,}" if isinstance(d[key], int) and key == "parameters" else str(d[key])))
    for key in ("inputs", "outputs"):
        if key in d:
            rows.append((key, "; ".join(shape(t) for t in d[key]) or "none"))
    meta = d.get("metadata") or {}
    if not meta:
        rows.append(("metadata", "none: not made by stylexport"))
    run = d.get("as_run")
    if run is not None and "error" in run:
        rows.append(("stylexport runs it", f"no: {run['error']}"))
    elif run is not None:
        size = f", resized to {run['fixed_size'][0]}x{run['fixed_size'][1]} and back" if run["fixed_size"] else ""
        if run.get("max_size"):
            size = f", H x W up to {run['max_size'][0]}x{run['max_size'][1]}"
        mapped = " (mapped to and from 0-255)" if run["value_range"] != "0-255" else ""
        fed = f", fed as {run['dtype']}" if run.get("dtype", "float32") != "float32" else ""
        rows.append(("stylexport runs it", f"on {run['engine']}: {run['layout']}, values {run['value_range']}"
                                           f"{mapped}{fed}{size}"))
    for key, value in meta.items():
        if key in ("format", "precision") and value == d[key]:
            continue  # said in the first row
        rows.append((key, _readable(value)))
    entry = d.get("export")
    if entry:
        parity = entry.get("parity") or {}
        verdict = "passed" if entry.get("passed") else "FAILED"
        rows.append(("export gate", f"{verdict}: max abs {parity.get('max_abs', float('nan')):.3g}, PSNR "
                                    f"{parity.get('psnr_db', float('nan')):.1f} dB against torch FP32 (required: "
                                    f"{entry.get('tolerance')}); from {entry.get('checkpoint')}"))
    for e in d["engines"]:
        rows.append((f"engine {e['engine']}", "runs here" if e["runs_here"] else f"not here: {e['why_not']}"))
    if not d["engines"]:
        rows.append(("engines", "none in stylexport: it runs where its format says (above)"))
    return rows


def _readable(value, depth: int = 0) -> str:
    """A metadata value for a person (``info --json`` keeps it whole): a dict as "key: value" lines, nested ones
    indented; a list of plain values on one line, a list of dicts as "- " items; floats to 4 significant figures."""
    def nested(v) -> bool:
        return isinstance(v, dict) and bool(v) or isinstance(v, list) and any(isinstance(x, dict | list) for x in v)

    pad = "  " * depth
    if isinstance(value, dict) and value:
        return "\n".join(f"{pad}{key}:" + (f"\n{_readable(v, depth + 1)}" if nested(v) else f" {_readable(v)}")
                         for key, v in value.items())
    if nested(value):
        return "\n".join(f"{pad}- " + _readable(x, depth + 1).lstrip() for x in value)
    if isinstance(value, list | dict):
        return ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in value) or "none"
    return "none" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _stdout() -> Console:
    """Tables on stdout: the terminal's width on a terminal; never cut to 80 columns in a pipe or a log."""
    out = Console()
    return out if out.is_terminal else Console(width=160)


engines_app = typer.Typer(cls=_Group, no_args_is_help=True,
                          help="The C++ host in engines/cpp: build it against the installed torch.")
app.add_typer(engines_app, name="engines")


@engines_app.command("build")
def engines_build(
    build_dir: Annotated[Path, typer.Option("--build-dir", "-o", help="CMake build folder.")] = Path("build/engines"),
    source: Annotated[Path | None, typer.Option(help="engines/cpp folder. Default: this checkout's.")] = None,
    tensorrt_root: Annotated[Path | None, typer.Option(help="TensorRT install prefix: adds the TensorRT backend.")]
    = None,
    tensorrt_headers: Annotated[Path | None, typer.Option(
        help="TensorRT include folder: compile (not link) the TensorRT backend, to type-check it without TensorRT "
             "libraries.")] = None,
    aoti: Annotated[bool, typer.Option(help="The AOTInductor backend (libtorch).")] = True,
    openvino: Annotated[bool | None, typer.Option(
        "--openvino/--no-openvino", help="The OpenVINO backend (.xml IRs on the CPU, from the openvino package's "
        "headers and libraries). Default: when openvino is installed. --no-aoti --openvino: a host without libtorch.",
        show_default=False)] = None,
    clean: Annotated[bool, typer.Option(help="Delete the build folder first.")] = False,
) -> None:
    """Configure and build the C++ `stylize` program and its library with CMake.

    Needs cmake, a C++20 compiler, libpng, libjpeg, LittleCMS and nlohmann/json (Debian: apt install cmake g++
    libpng-dev libjpeg-dev liblcms2-dev nlohmann-json3-dev).
    """
    from stylexport.engines import build

    with console.status(f"building the C++ host in {build_dir} (cmake; a minute or two)"):
        program = build(build_dir, source=source, tensorrt_root=tensorrt_root, tensorrt_include=tensorrt_headers,
                        aoti=aoti, openvino=openvino, clean=clean)
    engine = "MODEL.aoti.pt2" if aoti else "MODEL.plan" if openvino is False else "MODEL.xml"
    typer.echo(f"built {program}\nrun it: {program} {engine} photo.jpg out.png --repeat 50")


cache_app = typer.Typer(cls=_Group, no_args_is_help=True,
                        help="The engine cache: the engines stylize, video and bench exported for each checkpoint.")
app.add_typer(cache_app, name="cache")


def _ago(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:.0f} days ago" if days >= 2 else f"{seconds / 3600:.0f} h ago" if seconds >= 3600 else "just now"


@cache_app.command("list")
def cache_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON, for scripts.")] = False,
) -> None:
    """Each checkpoint's engines in the cache: the checkpoint they came from, formats, size, last use, and
    whether the checkpoint is still there (stale entries can never be used again: `cache clear` removes them)."""
    import time

    from rich.table import Table

    from stylexport.cache import MAX_SIZE_ENV, engines_root, entries, size_limit

    found = entries()
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in found], indent=2))
        return
    if not found:
        typer.echo(f"the engine cache {engines_root()} is empty (stylize and bench export a checkpoint's engines "
                   "into it once)")
        return
    table = Table(title=f"engine cache {engines_root()}", title_justify="left")
    for column in ("checkpoint", "formats", "MB", "last used", "state"):
        table.add_column(column, justify="right" if column == "MB" else "left")
    now = time.time()
    for e in found:
        table.add_row(e.checkpoint or f"(sha256 {e.sha256[:12]})", ", ".join(e.formats) or "none",
                      f"{e.bytes / 2**20:.1f}", _ago(now - e.last_used), e.state)
    _stdout().print(table)
    stale = [e for e in found if e.stale]
    limit = size_limit()
    typer.echo(f"{len(found)} checkpoint{'s' if len(found) != 1 else ''}, {sum(e.bytes for e in found) / 2**20:.1f} MB"
               + (f" (limit {limit / 2**20:.1f} MB: {MAX_SIZE_ENV})" if limit is not None else "")
               + (f"; {len(stale)} stale ({sum(e.bytes for e in stale) / 2**20:.1f} MB): stylexport cache clear "
                  "removes them" if stale else ""))


@cache_app.command("clear")
def cache_clear(
    everything: Annotated[bool, typer.Option("--all", help="Remove every checkpoint's engines.")] = False,
    older_than: Annotated[float | None, typer.Option(
        "--older-than", min=0, metavar="DAYS", help="Remove the engines not used for more than DAYS days.")] = None,
    max_size: Annotated[str | None, typer.Option(
        "--max-size", metavar="SIZE", help="Remove the stale engines, then the least recently used, until the "
        "cache fits in SIZE (e.g. 2GB, 500MB; STYLEXPORT_CACHE_MAX_SIZE does this after every export).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
) -> None:
    """Remove cached engines: by default the stale ones (their checkpoint is gone or now holds other weights).
    Anything removed is exported again the next time its checkpoint is run."""
    from stylexport.cache import clear, engines_root, entries, parse_size, select

    given = ["--all"] if everything else []
    given += [f"--older-than {older_than:g}"] if older_than is not None else []
    given += [f"--max-size {max_size}"] if max_size is not None else []
    if len(given) > 1:
        raise StylexportError(f"pass {' or '.join(given)}, not {'both' if len(given) == 2 else 'all three'}")
    max_bytes = parse_size(max_size) if max_size is not None else None
    chosen = select(entries(), everything=everything, older_than_days=older_than, max_bytes=max_bytes)
    if not chosen:
        why = "nothing is older than that" if older_than is not None else "it fits already" \
            if max_bytes is not None else "no entry is stale" if not everything else "the cache is empty"
        typer.echo(f"nothing to remove from {engines_root()}: {why}")
        return
    for e in chosen:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {e.sha256[:12]} ({e.checkpoint or 'no record'}; "
                   f"{e.state}; {e.bytes / 2**20:.1f} MB)")
    freed = sum(e.bytes for e in chosen) if dry_run else clear(chosen)
    typer.echo(f"{'would free' if dry_run else 'freed'} {freed / 2**20:.1f} MB in {engines_root()}")


def _terminate(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary files are removed and nothing half-written stays behind."""
    raise SystemExit(128 + signum)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    app(prog_name="stylexport")


if __name__ == "__main__":
    main()
