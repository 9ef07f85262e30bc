"""The ``stylexport`` command line: parse, build a config, call the library, print. Nothing else."""

from __future__ import annotations

import json
import logging
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import click
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

console = Console(stderr=True)


class _Group(TyperGroup):
    """Turn user mistakes (StylexportError) into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except StylexportError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


app = typer.Typer(cls=_Group, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Fast neural style transfer you can ship: train, export, benchmark, embed.")


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                    transient=True)


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
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


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
                 style_layers: str | None = None, content_layer: str | None = None):
    from stylexport.losses import CONTENT_LAYER, STYLE_LAYERS, LossConfig
    from stylexport.vgg import RELU_INDEX

    layers = tuple(s.strip() for s in style_layers.split(",")) if style_layers else STYLE_LAYERS
    for name in (*layers, content_layer or CONTENT_LAYER):
        if name not in RELU_INDEX:
            raise typer.BadParameter(f"unknown VGG layer {name!r}; choose from {', '.join(RELU_INDEX)}")
    return LossConfig(content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
                      tv_beta=tv_beta, style_layers=layers, content_layer=content_layer or CONTENT_LAYER)


@app.command()
def gatys(
    content: Annotated[Path | None, typer.Argument(help="Content photo. Default: the bundled sample photo.")] = None,
    style: Annotated[Path | None, typer.Argument(help="Style image. Default: the bundled sample painting.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image; a .json of the losses goes beside it.")]
    = Path("stylized.jpg"),
    iterations: Annotated[int, typer.Option(min=1, help="Optimizer iterations.")] = 100,
    optimizer: Annotated[Optimizer, typer.Option(help="Pixel optimizer.")] = Optimizer.lbfgs,
    init: Annotated[Init, typer.Option(help="Start image.")] = Init.content,
    size: Annotated[int, typer.Option(min=16, help="Longer side of the content image, px.")] = 256,
    style_size: Annotated[int | None, typer.Option(min=16, help="Longer side of the style image (default: --size).")]
    = None,
    content_weight: Annotated[float, typer.Option(help="λc in equation (5).")] = 1.0,
    style_weight: Annotated[float, typer.Option(help="λs in equation (5).")] = 1e5,
    tv_weight: Annotated[float, typer.Option(help="λtv in equation (5).")] = 1e-7,
    tv_beta: Annotated[float, typer.Option(help="β of the total-variation term (1 or 2).")] = 2.0,
    lr: Annotated[float | None, typer.Option(help="Step size (default 1 for L-BFGS, 4 for Adam).")] = None,
    seed: int = 0,
    vgg_weights: VggOption = None,
    device: DeviceOption = "auto",
) -> None:
    """Stylize one photo by optimising its pixels against the VGG16 loss (Gatys et al.): slow, the reference."""
    import torch

    from stylexport.fileio import write_text_atomic
    from stylexport.gatys import GatysConfig, stylize_gatys
    from stylexport.image import read_image, resize_max_side, sample_paths, save_image
    from stylexport.runtime import pick_device
    from stylexport.vgg import load_vgg

    default_content, default_style = sample_paths()
    content, style = content or default_content, style or default_style
    dev = pick_device(device)
    cfg = GatysConfig(iterations=iterations, optimizer=optimizer.value, init=init.value, lr=lr, seed=seed,
                      loss=_loss_config(content_weight, style_weight, tv_weight, tv_beta))
    content_img = resize_max_side(read_image(content), size)[None].to(dev)
    style_img = resize_max_side(read_image(style), style_size or size)[None].to(dev)
    vgg = load_vgg(vgg_weights, dev)
    start = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(f"gatys {optimizer.value}", total=iterations, info="")

        def report(step: int, losses: dict[str, float]) -> None:
            bar.update(task, completed=step, info=" ".join(f"{k} {v:.4g}" for k, v in losses.items()))

        result = stylize_gatys(content_img, style_img, vgg, cfg, progress=report)
    seconds = time.perf_counter() - start
    save_image(result.image, output)
    report_json = {"content": str(content), "style": str(style), "output": str(output),
                   "size": list(result.image.shape[-2:]), "iterations": iterations, "seconds": seconds,
                   "device": str(dev), "torch": torch.__version__, "losses": result.losses,
                   "config": {"optimizer": optimizer.value, "init": init.value, "lr": lr, "seed": seed,
                              **cfg.loss.__dict__}, **vgg.describe()}
    write_text_atomic(output.with_suffix(".json"), json.dumps(report_json, indent=2) + "\n")
    typer.echo(f"wrote {output} ({result.image.shape[-1]}x{result.image.shape[-2]}, {seconds:.1f} s, "
               f"loss {result.losses['total']:.4g})")


@app.command()
def stylize(
    inputs: Annotated[list[Path], typer.Argument(help="Images and/or folders of images.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="A checkpoint (.safetensors or .pth).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image (one input) or folder.")],
    size: Annotated[int | None, typer.Option(min=16, help="Resize so the longer side is this, px.")] = None,
    device: DeviceOption = "auto",
) -> None:
    """Stylize images with a trained feed-forward network."""
    from stylexport.image import SAVE_FORMATS, find_images, read_image, resize_max_side, save_image
    from stylexport.runtime import open_runner

    files = find_images(inputs)
    single = len(files) == 1 and output.suffix.lower() in SAVE_FORMATS
    if not single and output.suffix.lower() in SAVE_FORMATS:
        raise StylexportError(f"{len(files)} inputs but output {output} is one image; pass a folder for -o")
    runner = open_runner(model, device=device)
    written = []
    with _progress() as bar:
        task = bar.add_task("stylize", total=len(files), info=runner.name)
        for path in files:
            image = resize_max_side(read_image(path), size)
            result = runner.infer(image[None])
            suffix = path.suffix.lower() if path.suffix.lower() in SAVE_FORMATS else ".png"
            target = output if single else output / (path.stem + suffix)
            written.append(save_image(result, target))
            bar.advance(task)
    typer.echo(f"wrote {written[0] if single else f'{len(written)} images to {output}'}")


def main() -> None:
    app(prog_name="stylexport")


if __name__ == "__main__":
    main()
