"""The shipped styles fine-tuned by ``stylexport train --init NAME --edge-pad 32``, against the shipped networks.

Each run folder given was made by the training command itself, from a shipped style's weights and its recipe
(which trains with edge_pad 32), keeping the evaluation photos out:

    python training/train_style.py training/styles/NAME.json RUN --init NAME --steps 200 --hold-out 20 --amp bf16

For each, on the style's held-out photos of benchmarks/results/zoo-<style>-quality.json at their size: the
perceptual loss the style trains on and the band's contrast (border_frames.py's measure) of the shipped network
as stylize runs it, of the shipped network run padded by the same pad, and of the fine-tuned network (which pads
itself). Writes benchmarks/results/edge-pad-zoo.{json,md,png}; the figure shows the first photo in each style.

    python benchmarks/edge_pad_zoo.py RUN [RUN ...] [--out NAME]

``--out`` names the results (default edge-pad-zoo), so a later fine-tune is recorded beside the first ones:
a shipped style's "shipped" row is the network shipped when its run started.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from stylexport.bench.environment import environment
from stylexport.checkpoint import load_checkpoint
from stylexport.gatys import style_targets
from stylexport.image import read_image, resize_max_side, save_image
from stylexport.train import HELD_OUT_FILE, load_run_config, read_history
from stylexport.vgg import load_vgg

sys.path.insert(0, str(Path(__file__).parent))
from border_frames import with_edge_pad  # noqa: E402 - the frames table's padding
from edge_pad_finetune import evaluate_networks  # noqa: E402 - the same evaluation as the great_wave fine-tune

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=None, help="the photo folder, if it moved since training")
    parser.add_argument("--out", default="edge-pad-zoo", help="results name: benchmarks/results/OUT.{json,md,png}")
    args = parser.parse_args()
    vgg = load_vgg("offline")
    styles, strips, names = [], [], []
    for run in args.runs:
        config = load_run_config(run)
        saved = json.loads((run / "config.json").read_text())
        if not config.init or not config.edge_pad:
            raise SystemExit(f"error: {run} is not a fine-tune with an edge pad (--init and --edge-pad)")
        name = Path(config.init).stem
        shipped = load_checkpoint(config.init)
        if shipped.sha256 != saved.get("init_sha256"):
            raise SystemExit(f"error: {config.init} is not the checkpoint {run} started from (sha256 differs)")
        quality = json.loads((RESULTS / f"zoo-{name}-quality.json").read_text())
        held = set((run / HELD_OUT_FILE).read_text().splitlines())
        if trained_on := [r["photo"] for r in quality["rows"] if r["photo"] not in held]:
            raise SystemExit(f"error: {run} trained on evaluation photos {', '.join(trained_on)}")
        tuned = load_checkpoint(run / "model.safetensors")
        painting = resize_max_side(read_image(config.style), config.style_size)[None]
        targets = style_targets(vgg, painting, config.loss.style_layers)
        shipped_net = shipped.model.float().eval()
        networks = {"shipped": shipped_net, f"shipped, padded {config.edge_pad}": with_edge_pad(shipped_net,
                                                                                                 config.edge_pad),
                    f"fine-tuned, edge_pad {tuned.model.edge_pad}": tuned.model.eval()}
        rows, pictures = evaluate_networks(networks, quality, vgg, targets, config.loss,
                                           args.data or Path(config.data), pictures=1)
        summary = {k: {t: statistics.mean(v) for t, v in r.items()} for k, r in rows.items()}
        keys = list(networks)
        history = read_history(run / "history.jsonl", up_to=tuned.metadata["step"])
        styles.append({"style": name, "run": str(run), "steps": tuned.metadata["step"], "edge_pad": config.edge_pad,
                       "lr": config.lr, "amp": config.amp, "init_sha256": shipped.sha256,
                       "calls": saved.get("calls", []),
                       "images_per_second": statistics.mean(h["images_per_second"] for h in history
                                                            if "images_per_second" in h),
                       "photos": [r["photo"] for r in quality["rows"]], "size": quality["size"],
                       "summary": summary, "per_photo": rows,
                       "loss_change_pct": 100 * (summary[keys[2]]["total"] / summary[keys[0]]["total"] - 1)})
        strips.append(pictures[0])
        names.append(name)
        print(f"{name}: loss {summary[keys[0]]['total']:.3f} shipped, {summary[keys[1]]['total']:.3f} padded, "
              f"{summary[keys[2]]['total']:.3f} fine-tuned ({styles[-1]['loss_change_pct']:+.1f} %); frame "
              f"{summary[keys[0]]['frame']:+.1f} / {summary[keys[1]]['frame']:+.1f} / "
              f"{summary[keys[2]]['frame']:+.1f}", flush=True)

    picture = RESULTS / f"{args.out}.png"
    save_image(torch.cat([torch.cat([s, torch.full((3, 6, s.shape[-1]), 255.0)], dim=1) for s in strips],
                         dim=1)[:, :-6], picture)
    out = {"what": "shipped styles fine-tuned by stylexport train --init NAME with the recipe's edge_pad, against "
                   "the shipped networks (plain and padded), on each style's held-out evaluation photos",
           "command": " ".join(["python", *sys.argv]), "styles": styles,
           "figure": {"file": picture.name, "rows": names, "columns": ["shipped", "shipped, padded",
                                                                        "fine-tuned (pads itself)"]},
           "environment": environment(torch.device("cpu"))}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"Shipped styles fine-tuned with `stylexport train --init NAME` and the recipe's edge pad, on each "
             f"style's held-out photos ([{args.out}.json]({args.out}.json), `{out['command']}`)", "",
             "| style | network, run as | loss | content | style | TV | frame (outer 8 px minus the 24 px inside) |",
             "|---|---|---|---|---|---|---|"]
    for entry in styles:
        for key, s in entry["summary"].items():
            lines.append(f"| {entry['style']} | {key} | {s['total']:.3f} | {s['content']:.2f} | {s['style']:.2f} | "
                         f"{s['tv']:.2f} | {s['frame']:+.1f} |")
    lines += ["", "Fine-tuned loss against shipped: " + ", ".join(
        f"{e['style']} {e['loss_change_pct']:+.1f} % ({e['steps']} steps)" for e in styles)]
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
