"""Can training remove the band a network paints at the edges? Two fine-tunes of a shipped style, side by side.

From the same shipped weights, the same batches and the same seed, ``--steps`` more training steps of the
style's own recipe (256 px crops, batch 4, Adam, BF16 autocast where the CPU has it, as ``stylexport train``):
one as trained so far (the loss on the network's output), one with each crop reflect-padded by ``--pad`` px
before the network and the output cropped back before the loss (so the network's own edges fall outside the
picture the loss sees). Then each is evaluated the way it trained, on the style's held-out photos of
benchmarks/results/zoo-<style>-quality.json at 256 px: perceptual loss and the band's contrast (border_frames.py's
measure). Writes benchmarks/results/edge-pad-finetune-<style>.{json,md,png}.

    python benchmarks/edge_pad_finetune.py great_wave --steps 200 [--pad 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from stylexport.bench.environment import environment
from stylexport.checkpoint import load_checkpoint
from stylexport.data import PhotoCrops, list_photos
from stylexport.gatys import evaluate, style_targets
from stylexport.image import read_image, resize_max_side, save_image
from stylexport.losses import LossConfig
from stylexport.styles import find_style
from stylexport.train import _held_out_photos, autocast_dtype, loss_function, preview_tiles
from stylexport.vgg import load_vgg

sys.path.insert(0, str(Path(__file__).parent))
from border_frames import frame_contrast, with_edge_pad  # noqa: E402 - the frames table's padding and measure

RESULTS = Path(__file__).parent / "results"


def evaluate_networks(networks: dict[str, torch.nn.Module], quality: dict, vgg, targets, loss_cfg: LossConfig,
                      data: Path, pictures: int = 2) -> tuple[dict[str, dict[str, list[float]]], list[torch.Tensor]]:
    """Each network on the held-out photos of a style's quality table (``quality``, at its size): per photo the
    loss terms and the band's contrast; and the first ``pictures`` photos' outputs side by side."""
    rows = {k: {"total": [], "content": [], "style": [], "tv": [], "frame": []} for k in networks}
    strips = []
    for row in quality["rows"]:
        (photo,) = preview_tiles([read_image(data / row["photo"])], quality["size"])
        photo = photo[None]
        with torch.no_grad():
            features = vgg(photo, (loss_cfg.content_layer,))[loss_cfg.content_layer]
            outs = []
            for key, module in networks.items():
                out = module(photo).clamp(0, 255)
                outs.append(out[0])
                rows[key]["frame"].append(frame_contrast(out[0]))
                for term, value in evaluate(vgg, out, features, targets, loss_cfg).as_floats().items():
                    rows[key][term].append(value)
        if len(strips) < pictures:
            gap = torch.full((3, photo.shape[2], 6), 255.0)
            strips.append(torch.cat([x for o in outs for x in (o, gap)][:-1], dim=-1))
    return rows, strips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("style")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pad", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/photos")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device("cpu")
    quality = json.loads((RESULTS / f"zoo-{args.style}-quality.json").read_text())
    train_config = json.loads((RESULTS / f"zoo-{args.style}-train.config.json").read_text())
    loss_cfg = LossConfig(**quality["loss"])
    vgg = load_vgg("offline")
    painting = resize_max_side(read_image(quality["style"]), train_config["style_size"])[None]
    targets = style_targets(vgg, painting, loss_cfg.style_layers)
    amp = autocast_dtype(train_config.get("amp", "none"), device)
    batch_loss = loss_function(vgg, targets, loss_cfg, device, amp)
    files = list_photos(args.data)
    train_files, held, _ = _held_out_photos(files, train_config["previews"], train_config["hold_out"],
                                            train_config["batch_size"])
    crops = PhotoCrops(train_files, train_config["image_size"], seed=7)
    order = torch.randperm(len(train_files), generator=torch.Generator().manual_seed(7)).tolist()
    size = train_config["batch_size"]
    batches = [torch.stack([crops[(0, order[(s * size + i) % len(order)])][0] for i in range(size)])
               for s in range(args.steps)]
    shipped = find_style(args.style).model
    arms, log = {}, {}
    for name, pad in (("plain", 0), (f"padded {args.pad}", args.pad)):
        net = load_checkpoint(shipped).model.float().train().to(memory_format=torch.channels_last)
        net.edge_pad = pad  # trained padded, as stylexport train --edge-pad does (model.py)
        optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
        start, losses = time.perf_counter(), []
        for step, batch in enumerate(batches, 1):
            optimizer.zero_grad(set_to_none=True)
            terms = batch_loss(net, batch.contiguous(memory_format=torch.channels_last))
            terms.total.backward()
            optimizer.step()
            losses.append(float(terms.total.detach()))
            if step % 25 == 0 or step == args.steps:
                print(f"{name}: step {step}/{args.steps}, loss {statistics.mean(losses[-25:]):.3f} "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
        arms[name] = net.eval()
        log[name] = {"pad": pad, "losses": losses, "seconds": time.perf_counter() - start}

    start_net = load_checkpoint(shipped).model.float().eval()
    evaluated = {"shipped, plain": start_net, f"shipped, padded {args.pad}": with_edge_pad(start_net, args.pad),
                 **{f"fine-tuned {k}": v for k, v in arms.items()}}
    rows, pictures = evaluate_networks(evaluated, quality, vgg, targets, loss_cfg, args.data)
    summary = {k: {t: statistics.mean(v) for t, v in r.items()} for k, r in rows.items()}
    picture = RESULTS / f"edge-pad-finetune-{args.style}.png"
    save_image(torch.cat([torch.cat([p, torch.full((3, 6, p.shape[-1]), 255.0)], dim=1) for p in pictures],
                         dim=1)[:, :-6], picture)
    out = {"what": "two fine-tunes of a shipped style from the same weights and batches: plain, and with the input "
                   "reflect-padded and the output cropped before the loss; evaluated on the held-out photos",
           "command": " ".join(["python", *sys.argv]), "style": args.style, "steps": args.steps, "pad": args.pad,
           "lr": args.lr, "amp": str(amp), "photos": [r["photo"] for r in quality["rows"]], "size": quality["size"],
           "held_out_excluded": [p.name for p in held], "summary": summary, "per_photo": rows, "training": log,
           "figure": {"file": picture.name, "columns": list(evaluated), "rows": [r["photo"] for r in
                                                                                 quality["rows"][:2]]},
           "environment": environment(device)}
    (RESULTS / f"edge-pad-finetune-{args.style}.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"{args.style}: {args.steps} more steps from the shipped weights, plain and padded by {args.pad} px, "
             f"on its {len(quality['rows'])} held-out photos at {quality['size']} px "
             f"([edge-pad-finetune-{args.style}.json](edge-pad-finetune-{args.style}.json), `{out['command']}`)", "",
             "| network, run as | loss | content | style | TV | frame (outer 8 px minus the 24 px inside) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {s['total']:.3f} | {s['content']:.2f} | {s['style']:.2f} | {s['tv']:.2f} | {s['frame']:+.1f} |"
              for k, s in summary.items()]
    (RESULTS / f"edge-pad-finetune-{args.style}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
