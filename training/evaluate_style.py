"""A trained style against Gatys on photos it never saw (issue #20's quality table and the paper's Figure 6).

    python training/evaluate_style.py RUN_DIR -o results.json [--iterations 100,300,500] [--size 256]

For each photo in the run's held_out.txt (train with --hold-out 20), at SIZExSIZE (shorter side resized,
centre crop): the perceptual loss (the run's own loss weights and VGG) of the feed-forward output, and of
Gatys L-BFGS from the photo (``--init noise``: from uniform noise, as Gatys et al. and, we read, Johnson et al.'s
baseline started) after each iteration count. The counts are read off one run of the largest
count (L-BFGS's iterates do not depend on how many follow; a separate shorter run differs only if its
evaluation cap, 2n+10, binds first). Writes the JSON, a Markdown table beside it, and with --figure the
paper's Figure 6: photo | Gatys | feed-forward, one row per photo.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
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
    vgg = load_vgg(config.vgg_weights, device)
    style = resize_max_side(read_image(config.style), config.style_size)[None].to(device)
    targets = style_targets(vgg, style, loss_cfg.style_layers)
    checkpoint = load_checkpoint(args.run_dir / "model.safetensors")
    net = checkpoint.model.to(device).eval()

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
        t0 = time.perf_counter()
        result = stylize_gatys(content, style, vgg, GatysConfig(iterations=counts[-1], loss=loss_cfg,
                                                                        init=args.init))
        seconds = time.perf_counter() - t0
        gatys = {n: result.history[min(n, len(result.history) - 1)] for n in counts}
        # the paper's single number: how many L-BFGS iterations Gatys needs to reach the network's loss
        match = next((n for n, h in enumerate(result.history) if h["total"] <= ff_loss["total"]), None)
        rows.append({"photo": name, "feed_forward": ff_loss, "gatys": {str(n): v for n, v in gatys.items()},
                     "gatys_seconds": seconds, "gatys_iterates": len(result.history) - 1,
                     "gatys_iterations_to_match": match})
        if len(figure) < 4:
            figure.append(torch.cat([content[0], result.image[0].clamp(0, 255), ff[0]], dim=-1).cpu())
        print(f"{name}: feed-forward {ff_loss['total']:.4g}, Gatys " +
              ", ".join(f"@{n} {gatys[n]['total']:.4g}" for n in counts), flush=True)

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
    out = {"run": str(args.run_dir), "style": config.style, "size": args.size, "init": args.init,
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
    args.output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if args.figure and figure:
        save_image(torch.cat(figure, dim=-2), args.figure)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
