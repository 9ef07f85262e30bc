"""Ship a trained style: ``python training/ship_style.py RUN_DIR NAME [--out DIR]``.

Writes stylexport/styles/NAME.safetensors (FP16 weights; the run's metadata plus the painting's title,
licence and source from ../shared/data/MANIFEST.tsv when listed there) and NAME.jpg (a thumbnail of the
painting). ``stylexport styles`` then lists it and ``stylexport stylize photo.jpg --style NAME`` uses it.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from stylexport.styles import ship_style

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT.parent / "shared" / "data" / "MANIFEST.tsv"
SHARED_STYLES = ROOT.parent / "shared" / "data" / "styles"


def provenance(style_image: Path) -> dict[str, str]:
    if not MANIFEST.is_file():
        return {}
    with open(MANIFEST, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if Path(row["path"]).name == style_image.name:
                return {"painting": row["path"], "painting_license": row["license"],
                        "painting_source": row["source_package"], "painting_notes": row.get("notes", "")}
    return {}


def images_seen(config: dict, steps: int) -> int:
    """Steps times images a step, call by call (--batch-size is per process; a resumed call may have another)."""
    calls = config.get("calls") or [{"from_step": 0, "processes": 1}]
    ends = [c["from_step"] for c in calls[1:]] + [steps]
    return sum(max(end - c["from_step"], 0) * config["batch_size"] * c.get("processes", 1)
               for c, end in zip(calls, ends, strict=True))


def training_record(run_dir: Path, config: dict, quality: list[Path] | None) -> dict:
    """What made the model, for its metadata: the recipe's settings, the steps planned and reached, the images
    seen, where each call of the run trained (``calls`` in config.json: CPU or GPU, autocast, from which step),
    the losses over its last logged steps, and the summary of each ``quality`` file (evaluate_style.py's: Gatys
    from the photo as ``quality``, from noise as ``quality_from_noise``)."""
    from stylexport.checkpoint import read_metadata
    from stylexport.train import HISTORY_FILE, read_history

    step = read_metadata(run_dir / "model.safetensors")["step"]  # a run still training has logged past it
    history = read_history(run_dir / HISTORY_FILE, up_to=step)
    if not history:
        raise SystemExit(f"error: {run_dir / 'history.jsonl'} has no step up to the model's ({step})")
    last = history[-10:]
    record = {"training": {key: config.get(key) for key in ("image_size", "style_size", "batch_size", "lr", "seed",
                                                            "steps", "amp", "data_count", "hold_out", "edge_pad",
                                                            "init_sha256")},
              "steps_reached": step,
              "images_seen": images_seen(config, step),
              "calls": config.get("calls", []),
              "final_losses": {k: sum(h[k] for h in last) / len(last) for k in ("total", "content", "style", "tv")},
              "final_losses_over_steps": [last[0]["step"], last[-1]["step"]]}
    for path in quality or []:
        result = json.loads(path.read_text())
        key = "quality" if result.get("init", "content") == "content" else f"quality_from_{result['init']}"
        if key in record:
            raise SystemExit(f"error: --quality {path}: a second evaluation from the same start ({key}); give one")
        record[key] = {k: v for k, v in result.items()
                       if k in ("size", "init", "photos", "iterations", "summary", "device")}
    if config.get("init_sha256"):
        record["fine_tuned_from"] = parent_record(Path(config["init"]), config["init_sha256"])
    return record


LINEAGE_KEYS = ("style_name", "step", "training", "steps_reached", "images_seen", "calls", "final_losses",
                "final_losses_over_steps", "quality", "quality_from_noise", "fine_tuned_from")


def parent_record(init: Path, sha256: str) -> dict:
    """What made the checkpoint a fine-tune started from (a shipped style's own record, with its sha256), so the
    style keeps its whole history; read before shipping, which may write over that very file."""
    from stylexport.checkpoint import read_metadata
    from stylexport.fileio import sha256_file

    if not init.is_file() or sha256_file(init) != sha256:
        raise SystemExit(f"error: the run was fine-tuned from {init} (sha256 {sha256[:12]}...), which is "
                         f"{'gone' if not init.is_file() else 'another file now'}; ship from a checkout that has it")
    meta = read_metadata(init)
    return {"sha256": sha256, **{k: meta[k] for k in LINEAGE_KEYS if k in meta}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("--out", type=Path, default=None, help="Folder (default: stylexport/styles)")
    parser.add_argument("--quality", type=Path, action="append", default=None,
                        help="training/evaluate_style.py's JSON for this run: its summary (feed-forward against Gatys "
                        "on held-out photos) goes into the metadata; once more for the evaluation with --init noise")
    parser.add_argument("--painting", type=Path, default=None, help="the style image, where the run's own path "
                        "is not on this machine (default: the file of that name in ../shared/data/styles)")
    args = parser.parse_args()
    config = json.loads((args.run_dir / "config.json").read_text())
    style_image = Path(config["style"])  # a run trained on the GPU machine names that machine's copy
    style_image = args.painting or (style_image if style_image.is_file() else SHARED_STYLES / style_image.name)
    if not style_image.is_file():
        parser.error(f"painting {style_image} not found; pass --painting")
    style = ship_style(args.run_dir / "model.safetensors", args.name, style_image, out_dir=args.out,
                       provenance={**provenance(style_image), **training_record(args.run_dir, config, args.quality)})
    print(f"shipped {style.name}: {style.model} ({style.model.stat().st_size / 1e6:.1f} MB), {style.thumbnail}")


if __name__ == "__main__":
    main()
