"""A trained style against Gatys on photos it never saw (issue #20's quality table and the paper's Figure 6).

    python training/evaluate_style.py RUN_DIR -o results.json [--iterations 100,300,500] [--size 256]

For each photo in the run's held_out.txt (train with --hold-out 20), at SIZExSIZE (shorter side resized,
centre crop): the perceptual loss (the run's own loss weights and VGG) of the feed-forward output, and of
Gatys L-BFGS from the photo (``--init noise``: from uniform noise, as Gatys et al. and, we read, Johnson et al.'s
baseline started) after each iteration count. The counts are read off one run of the largest
count (L-BFGS's iterates do not depend on how many follow; a separate shorter run differs only if its
evaluation cap, 2n+10, binds first). Writes the JSON, a Markdown table beside it, and with --figure the
paper's Figure 6: photo | Gatys | feed-forward, one row per photo.

A retrained network of the same style (a fine-tune, e.g. with --edge-pad) is measured against the same baseline
with ``--gatys-from OLD.json``: Gatys does not depend on the network, so its losses at each count are taken from
that evaluation (same photos, size, start, loss and counts, checked), and L-BFGS runs only as far as it takes to
reach the new network's loss (for the iterations-to-match number): to the old match, then twice as far until it
gets there (at most the largest count). The same run also
recrosses the old network's loss, which must happen at the old evaluation's iteration: a check that this machine
retraces the old baseline (``gatys_retraced``). ``--figure-from OLD.jpg`` then takes Figure 6's photo and Gatys
columns from the old figure and puts the new network beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from stylexport.bench.environment import environment
from stylexport.checkpoint import load_checkpoint
from stylexport.devices import pick_device
from stylexport.errors import StylexportError
from stylexport.gatys import GatysConfig, evaluate, style_targets, stylize_gatys
from stylexport.image import read_image, resize_max_side, save_image
from stylexport.losses import LossConfig
from stylexport.train import HELD_OUT_FILE, load_run_config, preview_tiles
from stylexport.vgg import load_vgg


def _first_below(history: list[dict[str, float]], total: float) -> int | None:
    """The first L-BFGS iteration whose loss is at most ``total`` (None: none is)."""
    return next((n for n, h in enumerate(history) if h["total"] <= total), None)


def _earlier(args, config, counts: list[int], held_file: Path) -> dict:
    """The earlier evaluation --gatys-from names, when it measured the same thing (else a one-line exit)."""
    before = json.loads(args.gatys_from.read_text())
    want = {"size": args.size, "init": args.init, "iterations": counts, "loss": dataclasses.asdict(config.loss)}
    got = {"size": before.get("size"), "init": before.get("init") or "content", "iterations": before.get("iterations"),
           "loss": {**before.get("loss", {}), "style_layers": tuple(before.get("loss", {}).get("style_layers", ()))}}
    want["loss"]["style_layers"] = tuple(want["loss"]["style_layers"])
    if differ := [k for k in want if want[k] != got[k]]:
        raise SystemExit(f"error: --gatys-from {args.gatys_from}: its {', '.join(differ)} differ from this "
                         f"evaluation's ({', '.join(f'{k} {got[k]!r}' for k in differ)}); give the same options")
    if Path(before["style"]).name != Path(config.style).name:
        raise SystemExit(f"error: --gatys-from {args.gatys_from} evaluated {Path(before['style']).name}, this run "
                         f"trains on {Path(config.style).name}")
    held = held_file.read_text().splitlines()
    if trained := [r["photo"] for r in before["rows"] if r["photo"] not in held]:
        raise SystemExit(f"error: {', '.join(trained)}: evaluated in {args.gatys_from} but not in {held_file}; "
                         "the run may have trained on them")
    return before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--iterations", default="100,300,500")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--init", choices=("content", "noise"), default="content",
                        help="where Gatys starts: the photo (the harder baseline) or uniform noise (the papers')")
    parser.add_argument("--limit", type=int, default=None, help="only the first N held-out photos")
    parser.add_argument("--only", default=None, help="only these held-out photos, comma-separated (e.g. those whose "
                        "licence lets the figure be published), in this order")
    parser.add_argument("--figure", type=Path, default=None, help="Figure 6 image (first 4 photos)")
    parser.add_argument("--data", type=Path, default=None, help="the photo folder, if it moved since training")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--gatys-from", type=Path, default=None, help="an earlier evaluation of this style: its "
                        "photos and Gatys losses, for a retrained network (see above)")
    parser.add_argument("--figure-from", type=Path, default=None, help="with --gatys-from and --figure: the earlier "
                        "Figure 6, whose photo and Gatys columns are kept")
    args = parser.parse_args()

    config = load_run_config(args.run_dir)
    held_file = args.run_dir / HELD_OUT_FILE
    if not held_file.is_file():
        raise SystemExit(f"error: {args.run_dir} has no {HELD_OUT_FILE}; train with --hold-out 20")
    data = args.data or Path(config.data)
    names = held_file.read_text().splitlines()
    if args.only:
        chosen = [n.strip() for n in args.only.split(",") if n.strip()]
        if unknown := [n for n in chosen if n not in names]:
            raise SystemExit(f"error: --only {', '.join(unknown)}: not in {held_file}; choose from {', '.join(names)}")
        names = chosen
    names = names[: args.limit]
    counts = sorted(int(v) for v in args.iterations.split(","))
    device = pick_device(args.device)
    loss_cfg: LossConfig = config.loss
    before = _earlier(args, config, counts, held_file) if args.gatys_from else None
    if before is not None:
        names = [r["photo"] for r in before["rows"]]
    vgg = load_vgg(config.vgg_weights, device)
    style = resize_max_side(read_image(config.style), config.style_size)[None].to(device)
    targets = style_targets(vgg, style, loss_cfg.style_layers)
    checkpoint = load_checkpoint(args.run_dir / "model.safetensors")
    net = checkpoint.model.to(device).eval()

    def gatys_run(content: torch.Tensor, iterations: int):
        return stylize_gatys(content, style, vgg, GatysConfig(iterations=iterations, loss=loss_cfg, init=args.init))

    rows, figure = [], []
    skipped = {}
    for name in names:
        try:
            (content,) = preview_tiles([read_image(data / name)], args.size)
        except StylexportError as exc:  # training skipped it too (named in the run's log): so does the table
            skipped[name] = str(exc)
            print(f"skipped: {exc}", flush=True)
            continue
        content = content[None].to(device)
        with torch.no_grad():
            cf = vgg(content, (loss_cfg.content_layer,))[loss_cfg.content_layer]
            ff = net(content).clamp(0, 255)
            ff_loss = evaluate(vgg, ff, cf, targets, loss_cfg).as_floats()
        old = next((r for r in before["rows"] if r["photo"] == name), None) if before else None
        t0 = time.perf_counter()
        if old is None:
            result = gatys_run(content, counts[-1])
            gatys = {str(n): result.history[min(n, len(result.history) - 1)] for n in counts}
        else:  # the baseline is the earlier evaluation's; L-BFGS runs only as far as the new match needs
            gatys = old["gatys"]
            reached = old["gatys_iterations_to_match"]  # where it reached the old network
            n = counts[-1] if reached is None else max(reached, 1)
            result = gatys_run(content, n)
            while _first_below(result.history, ff_loss["total"]) is None and n < counts[-1]:
                n = min(2 * n, counts[-1])  # a lower loss than the old network's on this photo: further, by doubling
                result = gatys_run(content, n)
        seconds = time.perf_counter() - t0
        # the paper's single number: how many L-BFGS iterations Gatys needs to reach the network's loss
        match = _first_below(result.history, ff_loss["total"])
        rows.append({"photo": name, "feed_forward": ff_loss, "gatys": gatys,
                     "gatys_seconds": seconds if old is None else old["gatys_seconds"],
                     "gatys_iterates": len(result.history) - 1 if old is None else old["gatys_iterates"],
                     "gatys_iterations_to_match": match})
        if old is not None:
            again = _first_below(result.history, old["feed_forward"]["total"])
            rows[-1].update(gatys_rerun_iterations=len(result.history) - 1, gatys_rerun_seconds=seconds,
                            earlier_feed_forward=old["feed_forward"], gatys_rerun_reached_earlier_at=again,
                            gatys_retraced=again == old["gatys_iterations_to_match"])
        if len(figure) < 4:
            figure.append(torch.cat([content[0], result.image[0].clamp(0, 255), ff[0]], dim=-1).cpu())
        print(f"{name}: feed-forward {ff_loss['total']:.4g}, Gatys " +
              ", ".join(f"@{n} {gatys[str(n)]['total']:.4g}" for n in counts) + f", matched at {match}", flush=True)

    if not rows:
        raise SystemExit(f"error: none of the {len(names)} held-out photos could be read; see the lines above")
    summary = {"feed_forward_mean_total": statistics.mean(r["feed_forward"]["total"] for r in rows)}
    matched = [r["gatys_iterations_to_match"] for r in rows if r["gatys_iterations_to_match"] is not None]
    summary["gatys_iterations_to_match"] = {"median": statistics.median(matched) if matched else None,
                                            "min": min(matched, default=None), "max": max(matched, default=None),
                                            "photos_matched": len(matched)}
    for n in counts:
        summary[f"gatys{n}_mean_total"] = statistics.mean(r["gatys"][str(n)]["total"] for r in rows)
        summary[f"feed_forward_beats_gatys{n}"] = sum(r["feed_forward"]["total"] < r["gatys"][str(n)]["total"]
                                                     for r in rows)
    if before is not None:
        summary["gatys_from"] = str(args.gatys_from)
        summary["gatys_retraced"] = sum(r["gatys_retraced"] for r in rows)
        summary["earlier_feed_forward_mean_total"] = before["summary"]["feed_forward_mean_total"]
    out = {"run": str(args.run_dir), "style": config.style, "size": args.size, "init": args.init,
           "command": " ".join(["python", *sys.argv]),
           "photos": len(rows), "skipped": skipped,
           "iterations": counts, "loss": dataclasses.asdict(loss_cfg),
           "checkpoint_step": checkpoint.metadata.get("step"),
           "device": str(device), "environment": environment(device), "summary": summary, "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2, default=str) + "\n")
    start = "the photo" if args.init == "content" else "uniform noise"
    lines = [f"{Path(config.style).stem}, {len(rows)} held-out photos at {args.size}x{args.size}: mean total loss; "
             f"Gatys starts from {start}",
             "", "| method | mean total loss | photos where feed-forward is lower |", "|---|---|---|",
             f"| feed-forward | {summary['feed_forward_mean_total']:.4g} | |"]
    lines += [f"| Gatys L-BFGS {n} | {summary[f'gatys{n}_mean_total']:.4g} | "
              f"{summary[f'feed_forward_beats_gatys{n}']} of {len(rows)} |" for n in counts]
    m = summary["gatys_iterations_to_match"]
    lines += ["", f"Gatys reaches the network's loss after {m['median']} L-BFGS iterations (median; {m['min']}-"
                  f"{m['max']}) on {m['photos_matched']} of {len(rows)} photos" if matched else
              f"Gatys never reaches the network's loss within {counts[-1]} iterations"]
    if before is not None:
        lines += ["", f"Gatys' losses from [{args.gatys_from.name}]({args.gatys_from.name}) (the earlier network: "
                      f"{summary['earlier_feed_forward_mean_total']:.4g}); this machine retraced its L-BFGS run to the "
                      f"earlier network's loss at the same iteration on {summary['gatys_retraced']} of {len(rows)} "
                      "photos"]
    args.output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if args.figure and figure:
        if args.figure_from:  # the earlier figure's photo and Gatys columns, the new network beside them
            old_figure = read_image(args.figure_from)
            side = args.size
            figure = [torch.cat([old_figure[:, i * side:(i + 1) * side, :2 * side], row[..., 2 * side:]], dim=-1)
                      for i, row in enumerate(figure)]
        save_image(torch.cat(figure, dim=-2), args.figure)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
