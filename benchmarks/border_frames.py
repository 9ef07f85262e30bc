"""Why the shipped networks paint a frame at the picture's edges, and what padding the input would cost.

For each shipped style, on the held-out photos of its quality table (benchmarks/results/zoo-<style>-quality.json)
at their evaluation size: the frame's contrast (mean brightness of the outer 8 px band minus that of the 24 px
band inside it; the photo's own for comparison) and the perceptual loss the style was trained on (its own
weights, the ImageNet VGG16), for the network run as stylize runs it and on the photo reflect-padded by 8, 16
and 32 px on every side (output cropped back). Writes benchmarks/results/border-frames.{json,md,png}; the
figure shows one photo in the two styles with the strongest frames, plain and padded by 16 px.

    python benchmarks/border_frames.py [--data ../shared/data/photos]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from stylexport.bench.environment import environment
from stylexport.checkpoint import load_checkpoint
from stylexport.gatys import evaluate, style_targets
from stylexport.image import read_image, resize_max_side, save_image
from stylexport.losses import LossConfig
from stylexport.model import TransformerNet
from stylexport.styles import list_styles
from stylexport.train import preview_tiles
from stylexport.vgg import load_vgg

PADS = (0, 8, 16, 32)
BAND, INNER = 8, 24
RESULTS = Path(__file__).parent / "results"


def frame_contrast(image: torch.Tensor) -> float:
    """Mean brightness (channel mean, 0-255) of the outer BAND px minus that of the INNER px band inside it."""
    grey = image.float().mean(dim=-3).reshape(image.shape[-2:])
    outer = torch.ones_like(grey, dtype=torch.bool)
    outer[BAND:-BAND, BAND:-BAND] = False
    ring = torch.zeros_like(outer)
    ring[BAND:-BAND, BAND:-BAND] = True
    ring[BAND + INNER:-BAND - INNER, BAND + INNER:-BAND - INNER] = False
    return float(grey[outer].mean() - grey[ring].mean())


def with_edge_pad(net: TransformerNet, pad: int) -> TransformerNet:
    """A copy of ``net`` run on the photo reflect-padded by ``pad`` px, the output cropped back: the network's own
    ``edge_pad`` (model.py), set on weights trained without it."""
    padded = copy.deepcopy(net)
    padded.edge_pad = pad
    return padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/photos")
    args = parser.parse_args()
    vgg = load_vgg("offline")
    rows, figure = [], {}
    for style in list_styles():
        table = RESULTS / f"zoo-{style.name}-quality.json"
        if not table.is_file():
            print(f"{style.name}: no {table.name}, skipped", flush=True)
            continue
        quality = json.loads(table.read_text())
        loss = LossConfig(**quality["loss"])
        net = load_checkpoint(style.model).model.float().eval()
        painting = resize_max_side(read_image(quality["style"]), 512)[None]
        targets = style_targets(vgg, painting, loss.style_layers)
        per_pad = {pad: {"frame": [], "total": [], "content": [], "style": [], "tv": []} for pad in PADS}
        photo_frames = []
        for row in quality["rows"]:
            (photo,) = preview_tiles([read_image(args.data / row["photo"])], quality["size"])
            photo = photo[None]
            photo_frames.append(frame_contrast(photo[0]))
            with torch.no_grad():
                features = vgg(photo, (loss.content_layer,))[loss.content_layer]
                for pad in PADS:
                    out = with_edge_pad(net, pad)(photo)
                    per_pad[pad]["frame"].append(frame_contrast(out[0]))
                    for term, value in evaluate(vgg, out, features, targets, loss).as_floats().items():
                        per_pad[pad][term].append(value)
        summary = {str(pad): {k: statistics.mean(v) for k, v in values.items()} for pad, values in per_pad.items()}
        base = summary["0"]["total"]
        rows.append({"style": style.name, "photos": [r["photo"] for r in quality["rows"]], "size": quality["size"],
                     "photo_frame": statistics.mean(photo_frames), "by_pad": summary,
                     "loss_change_pct": {str(p): 100 * (summary[str(p)]["total"] / base - 1) for p in PADS[1:]},
                     "frames_per_photo": {str(p): per_pad[p]["frame"] for p in PADS}})
        print(f"{style.name}: frame {summary['0']['frame']:+.1f} plain, {summary['16']['frame']:+.1f} padded 16 px "
              f"(photos {rows[-1]['photo_frame']:+.1f}); loss {base:.3f} plain, "
              + ", ".join(f"{rows[-1]['loss_change_pct'][str(p)]:+.1f} % padded {p}" for p in PADS[1:]), flush=True)
        figure[style.name] = (net, quality)

    strongest = sorted(rows, key=lambda r: -abs(r["by_pad"]["0"]["frame"]))[:2]
    tiles = []
    for row in strongest:
        net, quality = figure[row["style"]]
        photo = resize_max_side(read_image(args.data / quality["rows"][0]["photo"]), 320)[None]
        with torch.no_grad():
            plain, padded = (with_edge_pad(net, pad)(photo)[0] for pad in (0, 16))
        gap = torch.full((3, plain.shape[1], 8), 255.0)
        tiles.append(torch.cat([plain, gap, padded], dim=-1))
    picture = RESULTS / "border-frames.png"
    if tiles:
        width = max(t.shape[-1] for t in tiles)
        tiles = [F.pad(t, (0, width - t.shape[-1]), value=255.0) for t in tiles]
        save_image(torch.cat([torch.cat([t, torch.full((3, 8, width), 255.0)], dim=1) for t in tiles], dim=1)[:, :-8],
                   picture)

    out = {"what": "frame contrast (outer 8 px minus the 24 px inside, brightness 0-255) and perceptual loss of each "
                   "shipped style on its held-out photos, plain and with the input reflect-padded",
           "command": " ".join(["python", *sys.argv]), "pads": list(PADS),
           "figure": {"file": picture.name, "styles": [r["style"] for r in strongest],
                      "photo": [figure[r["style"]][1]["rows"][0]["photo"] for r in strongest],
                      "layout": "each row: plain | padded 16 px, longer side 320"},
           "environment": environment(torch.device("cpu")), "rows": rows}
    (RESULTS / "border-frames.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["Frames at the edges: each shipped style on its held-out photos "
             f"([border-frames.json](border-frames.json), `{out['command']}`). Frame: mean brightness of the "
             f"outer {BAND} px minus the {INNER} px inside it "
             "(0-255); loss: the perceptual loss the style was trained on.", "",
             "| style | frame: photo / plain / padded 8 / 16 / 32 px | loss plain | loss padded 8 / 16 / 32 px |",
             "|---|---|---|---|"]
    for r in rows:
        frames = " / ".join(f"{r['by_pad'][str(p)]['frame']:+.1f}" for p in PADS)
        change = " / ".join(f"{r['loss_change_pct'][str(p)]:+.1f} %" for p in PADS[1:])
        plain = r["by_pad"]["0"]["total"]
        lines.append(f"| {r['style']} | {r['photo_frame']:+.1f} / {frames} | {plain:.3f} | {change} |")
    (RESULTS / "border-frames.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'border-frames.json'}, .md and .png")


if __name__ == "__main__":
    main()
